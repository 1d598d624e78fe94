"""corral.bench: a load generator (ab/wrk closed loop, wrk2 open model) and its API.

Programmatic use::

    from corral.bench import LoadConfig, run_load
    result = run_load(LoadConfig(urls=("http://127.0.0.1:8000/",), duration_s=5, rate=1000))
    result.requests, result.errors, result.latency_ms(99), result.series[-1].latency_ms(99)

``corral bench`` on the command line is ``corral.bench.cli.main``.
"""

from corral.bench.config import BenchConfigError, LoadConfig
from corral.bench.result import ERROR_CLASSES, LoadResult, Progress, SecondStats
from corral.bench.runner import run_load

__all__ = [
    "ERROR_CLASSES",
    "BenchConfigError",
    "LoadConfig",
    "LoadResult",
    "Progress",
    "SecondStats",
    "run_load",
]
