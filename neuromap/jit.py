"""The decorator of the compiled kernels (sketch, seeding, DP, traceback).

numba compiles a kernel on its first call and caches the machine code on disk: next to the
package, in NUMBA_CACHE_DIR, or in ~/.cache. Where none of these can be written (a read-only
container with a read-only home) numba refuses to cache at all; the kernels then compile on every
run (a few seconds) instead of failing.
"""

from __future__ import annotations

from numba import njit


def kernel(function=None, **options):
    """`@kernel` or `@kernel(error_model="numpy")`: numba's njit with nogil and an on-disk cache."""

    def wrap(fn):
        try:
            return njit(cache=True, nogil=True, **options)(fn)
        except RuntimeError:  # "cannot cache function ...: no locator available"
            return njit(nogil=True, **options)(fn)

    return wrap(function) if function is not None else wrap
