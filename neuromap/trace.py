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


def check() -> None:
    """A clear error, before any work, where NEUROMAP_TRACE names a folder that is not there or
    cannot be written."""
    if _PREFIX is None:
        return
    from neuromap.errors import NeuromapError

    folder = os.path.dirname(os.path.abspath(_PREFIX))
    if not os.path.isdir(folder):
        raise NeuromapError(f"NEUROMAP_TRACE={_PREFIX}: no folder {folder} for the timeline")
    if not os.access(folder, os.W_OK):
        raise NeuromapError(f"NEUROMAP_TRACE={_PREFIX}: cannot write the timeline in {folder}")


def event(name: str, detail: object = "") -> None:
    """Record `name` now (a no-op unless NEUROMAP_TRACE is set)."""
    if _PREFIX is None:
        return
    line = f"{time.time():.6f}\t{os.getpid()}\t{threading.get_ident()}\t{name}\t{detail}\n"
    try:
        with _LOCK, open(f"{_PREFIX}.{os.getpid()}", "a") as fh:  # the pid now: a forked worker writes its own file
            fh.write(line)
    except OSError:  # a timeline never stops a run (a full disk, the folder gone: align checked it at start)
        pass
