"""Threads and helper processes: BLAS thread pools, which neuromap never uses, kept to one thread;
and helper processes that end with the process that started them. No numpy import here: the
network's process imports this before JAX, without the pipeline.

numpy's OpenBLAS starts a thread per core when numpy is imported, and each spins on its core for
about 0.06 s before it sleeps; neuromap calls no BLAS routine (its matrix work is JAX's, which has
its own pool). With `align --processes -t 16` on 16 cores that is 15 threads in each of 17
processes spinning while the workers start: about 15 CPU-seconds, a second of the whole machine.
On 2 cores it costs 0.06-0.13 CPU-seconds a process (benchmarks/README.md). A value the user set
is left alone.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from typing import Iterator

BLAS_THREAD_VARS = ("OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


def single_threaded_blas() -> None:
    """For this process, if numpy is not yet imported, and every process it starts."""
    for var in BLAS_THREAD_VARS:
        os.environ.setdefault(var, "1")


@contextlib.contextmanager
def single_threaded_blas_children() -> Iterator[None]:
    """While it lasts, processes started (spawned worker processes) get one BLAS thread; this
    process's environment is put back afterwards (for users of the Python API)."""
    added = [var for var in BLAS_THREAD_VARS if var not in os.environ]
    for var in added:
        os.environ[var] = "1"
    try:
        yield
    finally:
        for var in added:
            if os.environ.get(var) == "1":
                del os.environ[var]


def exit_with_parent(parent: int) -> None:
    """End this worker when the process that started it has gone without stopping it (SIGKILL, the
    OOM killer): a busy pool worker would otherwise wait for its next batch forever."""

    def watch() -> None:
        while True:
            time.sleep(0.5)
            if os.getppid() != parent:
                os._exit(1)

    threading.Thread(target=watch, name="neuromap-parent-watch", daemon=True).start()
