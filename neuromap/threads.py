"""Threads and helper processes: BLAS thread pools, which neuromap never uses, kept to one thread;
helper processes that end with the process that started them; the fork server that starts the
worker processes; the compute tokens of spare worker processes (computing / waiting). No numpy
import here: the network's process imports this before JAX, without the pipeline.

numpy's OpenBLAS starts a thread per core when numpy is imported, and each spins on its core for
about 0.06 s before it sleeps; neuromap calls no BLAS routine (its matrix work is JAX's, which has
its own pool). With `align --processes -t 16` on 16 cores that is 15 threads in each of 17
processes spinning while the workers start: about 15 CPU-seconds, a second of the whole machine.
On 2 cores it costs 0.06-0.13 CPU-seconds a process (benchmarks/README.md). A value the user set
is left alone.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import select
import signal
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


@contextlib.contextmanager
def this_path_for_children() -> Iterator[None]:
    """While it lasts, Python processes started here search this process's sys.path for modules,
    and nothing before it. The fork server is `python -c`, which puts its working directory first
    on sys.path, and Python 3.11's ignores the sys.path multiprocessing hands it: run from a folder
    holding another neuromap/ (a source checkout beside an installed copy, say), it and the
    workers it forks imported that one (an installed `neuromap align -t 8` in its own checkout
    failed: "compiled kernels ... are not built"). So it gets this sys.path as PYTHONPATH, and
    PYTHONSAFEPATH (Python 3.11) keeps the working directory out; this process's environment is
    put back afterwards."""
    import sys

    saved = {name: os.environ.get(name) for name in ("PYTHONPATH", "PYTHONSAFEPATH")}
    os.environ["PYTHONPATH"] = os.pathsep.join(os.path.abspath(entry) for entry in sys.path)
    os.environ["PYTHONSAFEPATH"] = "1"
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


@contextlib.contextmanager
def sigint_ignored() -> Iterator[None]:
    """While it lasts, Ctrl-C is ignored here, and so in every process started meanwhile: a child
    inherits an ignored SIGINT through exec, Python then leaves it ignored, and Ctrl-C during its
    start-up prints nothing (this process handles it and stops the children). Off the main
    thread, where no handler can be set, nothing changes."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


# What the fork server imports once, for every worker process it forks: the pipeline, and the
# command's module, which each worker of the `neuromap` command runs as its __main__ (0.02 CPU-s a
# worker less on 2 cores).
WORKER_MODULES = ["neuromap.pipeline", "neuromap.cli"]


def start_worker_server():
    """The multiprocessing context `align --processes` starts its worker processes with: forked
    from multiprocessing's fork server, a process of its own, started here once (exec'd: it holds
    none of this process's threads nor a device runtime, so forking it is safe), which imports
    WORKER_MODULES meanwhile. A worker then starts in about 0.07 CPU-seconds instead of the 0.38 a
    spawned one spends importing Python, numpy and neuromap (2 cores, benchmarks/worker_start.py;
    16 spawned workers spent about 17 CPU-seconds starting on the GPU machine). The fork server
    starts with one BLAS thread and Ctrl-C ignored, which the workers it forks inherit; a running
    one is kept. Spawned workers where there is no fork server (Windows) or it cannot start.
    (set_forkserver_preload is multiprocessing's global setting: a fork server the caller has
    already started is used as it is, and only starts workers more slowly.)"""
    try:
        context = multiprocessing.get_context("forkserver")
    except ValueError:
        return multiprocessing.get_context("spawn")
    context.set_forkserver_preload(WORKER_MODULES)
    from multiprocessing import forkserver

    with sigint_ignored(), single_threaded_blas_children(), this_path_for_children():
        try:
            forkserver.ensure_running()
        except OSError:  # no socket to be had for it (a read-only temporary folder)
            return multiprocessing.get_context("spawn")
    return context


def exit_with_parent(parent: int) -> None:
    """End this process when process `parent` (the one that started the run) has ended without
    stopping it (SIGKILL, the OOM killer): a busy pool worker would otherwise wait for its next
    batch forever. Watched through a pidfd where there is one (Linux), else every 0.5 s (which
    misses a parent that has ended but is not yet reaped). Not through this process's parent: a
    worker's is the fork server, which lives as long as the workers do."""
    try:
        pidfd = os.pidfd_open(parent)
    except ProcessLookupError:  # gone already
        os._exit(1)
    except (AttributeError, OSError):  # no pidfd here: look every 0.5 s
        pidfd = None

    def watch() -> None:
        if pidfd is not None:
            select.select([pidfd], [], [])  # readable once it has ended
            os._exit(1)
        while True:
            time.sleep(0.5)
            try:
                os.kill(parent, 0)
            except ProcessLookupError:
                os._exit(1)
            except OSError:
                pass

    threading.Thread(target=watch, name="neuromap-parent-watch", daemon=True).start()


# Worker processes beyond -t (`align --processes` with the network on a GPU): each worker holds
# one of -t compute tokens while it computes and gives it back while it waits for the network, so
# at most -t workers compute at once and a waiting worker's core goes to another worker's batch.
# A worker process maps one batch at a time, but while the network starts a batch may be parked on
# a thread of its own (pipeline.Parking): so each thread holds its own token.
_TOKENS = None  # the workers' shared semaphore of -t tokens, or None (no spare workers)
_HELD = threading.local()  # .token: this thread holds one


def use_compute_tokens(tokens) -> None:
    """In a worker process: compute only while holding one of `tokens` (a semaphore shared by the
    workers; None: no limit)."""
    global _TOKENS
    _TOKENS = tokens


@contextlib.contextmanager
def computing() -> Iterator[None]:
    """While it lasts this thread holds a compute token (if the workers share any)."""
    if _TOKENS is None or getattr(_HELD, "token", False):
        yield
        return
    _TOKENS.acquire()
    _HELD.token = True
    try:
        yield
    finally:
        _HELD.token = False
        _TOKENS.release()


@contextlib.contextmanager
def waiting() -> Iterator[None]:
    """While it lasts (a wait for the network) this thread's token is another's to take."""
    if _TOKENS is None or not getattr(_HELD, "token", False):
        yield
        return
    _TOKENS.release()
    _HELD.token = False
    try:
        yield
    finally:
        _TOKENS.acquire()
        _HELD.token = True
