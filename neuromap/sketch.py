"""Minimizer sketches of 2-bit coded sequences, over rows (reads) or chunks (reference); compiled
loops (neuromap/_kernels.c) checked against the numpy original in tests/reference_sketch.py.

A k-mer's hash is minimap2's invertible hash64 of its canonical 2-bit code; a position is a
(w, k)-minimizer when its hash is the smallest of some window of w consecutive k-mers. K-mers that
contain a base other than A/C/G/T are never minimizers.
"""

from __future__ import annotations

import numpy as np

from neuromap import kernels

INVALID_HASH = np.uint64(0xFFFFFFFFFFFFFFFF)


def kmer_hashes(codes: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Hashes of every k-mer of each row, and whether the canonical k-mer is the reverse strand.

    codes: (rows, length) uint8 with A0 C1 G2 T3 and >= 4 for anything else.
    Returns (hashes, reverse) each (rows, length - k + 1); invalid k-mers hash to INVALID_HASH.
    """
    rows, length = codes.shape
    n_kmers = max(length - k + 1, 0)
    hashes = np.empty((rows, n_kmers), dtype=np.uint64)
    is_reverse = np.empty((rows, n_kmers), dtype=bool)
    if n_kmers:
        kernels.call("nm_hash_rows", np.ascontiguousarray(codes, dtype=np.uint8), rows, length, k, hashes, is_reverse)
    return hashes, is_reverse


def minimizer_mask(hashes: np.ndarray, w: int) -> np.ndarray:
    """Boolean (rows, n_kmers): True where the k-mer is the minimum of some window of w k-mers.

    Rows shorter than w k-mers are treated as one window. Ties select every tied position.
    Each k-mer costs O(1): the windows' minima, then the largest minimum over the windows that
    contain each k-mer, are both sliding extremes (van Herk / Gil-Werman); a k-mer is selected
    when that largest minimum is its own hash.
    """
    selected = np.zeros(hashes.shape, dtype=bool)
    if hashes.shape[1]:
        rows, n_kmers = hashes.shape
        kernels.call("nm_select", np.ascontiguousarray(hashes, dtype=np.uint64), rows, n_kmers, w, selected)
    return selected


def sketch_rows(codes: np.ndarray, k: int, w: int):
    """Minimizers of each row: (row, position, hash, is_reverse) flat arrays, row-major order."""
    hashes, is_reverse = kmer_hashes(codes, k)
    selected = np.ascontiguousarray(minimizer_mask(hashes, w))
    n = int(np.count_nonzero(selected))
    row, pos = np.empty(n, np.int64), np.empty(n, np.int64)
    picked, picked_reverse = np.empty(n, np.uint64), np.empty(n, np.bool_)
    # Compiled: np.flatnonzero, divmod and indexing gave the same arrays (tests/reference_sketch.py).
    kernels.call("nm_compact", selected, selected.shape[0], selected.shape[1], np.ascontiguousarray(hashes, dtype=np.uint64),
                 np.ascontiguousarray(is_reverse, dtype=np.bool_), row, pos, picked, picked_reverse)
    return row, pos, picked, picked_reverse


def sketch_sequence(codes: np.ndarray, k: int, w: int, chunk: int = 1 << 22, progress=None):
    """Minimizers of one long sequence, in chunks of bounded memory; `progress(n)` (optional) is
    told how many more bases are done after each chunk.

    Returns (positions int64, hashes uint64, is_reverse bool), sorted by position.
    """
    n_kmers = len(codes) - k + 1
    if n_kmers <= 0:
        return np.zeros(0, np.int64), np.zeros(0, np.uint64), np.zeros(0, bool)
    positions, hashes, strands = [], [], []
    for start in range(0, max(n_kmers - w + 1, 1), chunk):
        # Windows starting at k-mers [start, start + chunk) are wholly inside this slice.
        stop = min(start + chunk + w - 1 + k - 1, len(codes))
        _, pos, h, rev = sketch_rows(codes[None, start:stop], k, w)
        positions.append(pos.astype(np.int64) + start)
        hashes.append(h)
        strands.append(rev)
        if progress is not None:
            progress(min(chunk, len(codes) - start))
    pos = np.concatenate(positions)
    pos, first = np.unique(pos, return_index=True)
    return pos, np.concatenate(hashes)[first], np.concatenate(strands)[first]
