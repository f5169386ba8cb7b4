"""Temporary folders and files beside an output (the index being built, the SAM/BAM being written), which
nothing may leave behind, however the run ends short of SIGKILL. A folder is registered before
it is made, so that Ctrl-C or SIGTERM arriving at any point (between making it and the code that
would remove it, say) still finds it: the registry is emptied when the process exits (atexit),
by the process that made the folders. Standard library only."""

from __future__ import annotations

import atexit
import os
import secrets
import shutil
import threading

_LIVE: dict[str, int] = {}  # path -> the process that made it
_LOCK = threading.Lock()


def make(parent: str, prefix: str) -> str:
    """A new, empty folder in `parent` (mode 0700), named `prefix` and 16 random hex digits,
    registered first. The name's 64 random bits make it ours: mkdir's FileExistsError is an error
    like any other."""
    path = os.path.join(parent, prefix + secrets.token_hex(8))
    with _LOCK:
        _LIVE[path] = os.getpid()
    try:
        os.mkdir(path, 0o700)
    except BaseException:
        remove(path)
        raise
    return path


def remove(path: str) -> None:
    """Remove the folder (if it is there) and forget it."""
    shutil.rmtree(path, ignore_errors=True)
    forget(path)


def forget(path: str) -> None:
    """Forget the folder (it was moved into place)."""
    with _LOCK:
        _LIVE.pop(path, None)


def write_atomic(path: str, text: str) -> None:
    """Write `text` to `path` whole or not at all: into `path`.tmp-PID, renamed into place; on
    any failure (a full disk, Ctrl-C) the temporary file is removed and the error raised."""
    tmp = f"{path}.tmp-{os.getpid()}"
    try:
        with open(tmp, "w") as fh:
            fh.write(text)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.remove(tmp)
        except OSError:
            pass
        raise


@atexit.register
def _remove_leftovers() -> None:
    pid = os.getpid()
    for path, owner in list(_LIVE.items()):
        if owner == pid:
            shutil.rmtree(path, ignore_errors=True)
