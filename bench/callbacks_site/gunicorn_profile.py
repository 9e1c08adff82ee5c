"""Gunicorn hooks for ``bench/callbacks.py --profile``: cProfile each worker, dump at exit.

Loaded with ``gunicorn -c``. Each worker profiles itself from its fork to its
exit and writes ``<BENCH_PROFILE_DIR>/worker-<pid>.pstats``, in CPU time. Since Python 3.12
cProfile sees every thread of the process, so the gthread worker's request
threads are covered as well as the sync worker's one.
"""

from __future__ import annotations

import cProfile
import os
import time
from pathlib import Path
from typing import Any

# CPU time, not wall time: on a machine whose cores the workers, PostgreSQL and
# the load all share, throughput is CPU, and waiting on the socket is someone
# else's CPU (PostgreSQL's, which the bench reports apart).
_profiler = cProfile.Profile(time.process_time)


def post_fork(server: Any, worker: Any) -> None:
    """Start profiling the new worker."""
    _profiler.enable()


def worker_exit(server: Any, worker: Any) -> None:
    """Stop profiling and write the worker's statistics."""
    _profiler.disable()
    directory = Path(os.environ["BENCH_PROFILE_DIR"])
    _profiler.dump_stats(directory / f"worker-{os.getpid()}.pstats")
