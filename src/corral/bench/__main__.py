"""``python -m corral.bench ARGS`` is ``corral bench ARGS``."""

from corral.bench.cli import main

raise SystemExit(main())
