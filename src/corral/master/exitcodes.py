"""Exit codes that mean something (gunicorn's 3 and 4 are kept, so tooling that knows them works).

A supervisor that restarts corral can stop a fork loop on BOOT_ERROR or APP_LOAD_ERROR instead of
retrying a broken deployment forever.
"""

OK = 0
ERROR = 1
USAGE = 2  # bad command line or configuration
WORKER_BOOT_ERROR = 3  # workers kept failing before they could serve
APP_LOAD_ERROR = 4  # the application could not be imported
MEMORY_LIMIT = 5  # a worker's own exit: it stopped itself past its memory limit (memguard.py)
