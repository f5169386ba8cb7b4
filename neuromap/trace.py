"""A timeline of a run, for finding where a pipeline waits: with NEUROMAP_TRACE=PREFIX in the
environment, each process appends tab-separated lines (wall time, process, thread, event, detail)
to PREFIX.PID as things happen (a batch handed out, a worker's batch begun and ended, a model call
asked for and answered). benchmarks/timeline.py reads them. Without the variable this costs one
check of a global per event. No imports beyond the standard library: the network's process
imports it before JAX."""

from __future__ import annotations

import os
import threading
import time

_PREFIX = os.environ.get("NEUROMAP_TRACE") or None
_LOCK = threading.Lock()


def enabled() -> bool:
    return _PREFIX is not None


def event(name: str, detail: object = "") -> None:
    """Record `name` now (a no-op unless NEUROMAP_TRACE is set)."""
    if _PREFIX is None:
        return
    line = f"{time.time():.6f}\t{os.getpid()}\t{threading.get_ident()}\t{name}\t{detail}\n"
    with _LOCK, open(f"{_PREFIX}.{os.getpid()}", "a") as fh:  # the pid now: a forked worker writes its own file
        fh.write(line)
