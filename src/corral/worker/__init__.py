"""corral.worker: the worker process's I/O loop (``serve``) and its settings."""

from corral.worker.loop import serve
from corral.worker.settings import WorkerSettings

__all__ = ["WorkerSettings", "serve"]
