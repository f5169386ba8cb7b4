"""The original numpy implementation of the minimizer sketch (vectorised over rows), kept as the
oracle the compiled kernel in neuromap.sketch must match exactly."""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from neuromap.sketch import INVALID_HASH


def hash64_numpy(key: np.ndarray, mask: np.uint64) -> np.ndarray:
    """minimap2's invertible integer hash on 2k bits (uint64 arithmetic wraps, as in C)."""
    key = key.astype(np.uint64, copy=True)
    with np.errstate(over="ignore"):
        key = (~key + (key << np.uint64(21))) & mask
        key = key ^ (key >> np.uint64(24))
        key = ((key + (key << np.uint64(3))) + (key << np.uint64(8))) & mask
        key = key ^ (key >> np.uint64(14))
        key = ((key + (key << np.uint64(2))) + (key << np.uint64(4))) & mask
        key = key ^ (key >> np.uint64(28))
        key = (key + (key << np.uint64(31))) & mask
    return key


def kmer_hashes_numpy(codes: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Hashes of every k-mer of each row, and whether the canonical k-mer is the reverse strand.

    codes: (rows, length) uint8 with A0 C1 G2 T3 and >= 4 for anything else.
    Returns (hashes, reverse) each (rows, length - k + 1); invalid k-mers hash to INVALID_HASH.
    """
    rows, length = codes.shape
    n_kmers = length - k + 1
    if n_kmers <= 0:
        empty = np.zeros((rows, 0), dtype=np.uint64)
        return empty, np.zeros((rows, 0), dtype=bool)
    base = np.minimum(codes, 3).astype(np.uint64)
    complement = np.uint64(3) - base
    forward = np.zeros((rows, n_kmers), dtype=np.uint64)
    reverse = np.zeros((rows, n_kmers), dtype=np.uint64)
    shifted = np.empty((rows, n_kmers), dtype=np.uint64)
    two = np.uint64(2)
    for j in range(k):  # in place: no temporary arrays per base
        forward <<= two
        forward |= base[:, j : j + n_kmers]
        np.left_shift(complement[:, j : j + n_kmers], np.uint64(2 * j), out=shifted)
        reverse |= shifted
    bad = np.concatenate(
        [np.zeros((rows, 1), dtype=np.int32), np.cumsum(codes >= 4, axis=1, dtype=np.int32)], axis=1
    )
    invalid = (bad[:, k:] - bad[:, :n_kmers]) > 0
    is_reverse = reverse < forward
    canonical = np.where(is_reverse, reverse, forward)
    mask = np.uint64((1 << (2 * k)) - 1)
    hashes = hash64_numpy(canonical, mask)
    hashes[invalid] = INVALID_HASH
    return hashes, is_reverse


def minimizer_mask_numpy(hashes: np.ndarray, w: int) -> np.ndarray:
    """Boolean (rows, n_kmers): True where the k-mer is the minimum of some window of w k-mers.

    Rows shorter than w k-mers are treated as one window. Ties select every tied position.
    """
    rows, n_kmers = hashes.shape
    if n_kmers == 0:
        return np.zeros((rows, 0), dtype=bool)
    width = min(w, n_kmers)
    window_min = sliding_window_view(hashes, width, axis=1).min(axis=2)
    # A position is selected when the largest minimum among the windows containing it equals its
    # own hash (every such minimum is <= its hash).
    padded = np.zeros((rows, window_min.shape[1] + 2 * (width - 1)), dtype=np.uint64)
    padded[:, width - 1 : width - 1 + window_min.shape[1]] = window_min
    containing_max = sliding_window_view(padded, width, axis=1).max(axis=2)
    return (containing_max == hashes) & (hashes != INVALID_HASH)


def sketch_rows_numpy(codes: np.ndarray, k: int, w: int):
    """Minimizers of each row: (row, position, hash, is_reverse) flat arrays, row-major order."""
    hashes, is_reverse = kmer_hashes_numpy(codes, k)
    selected = minimizer_mask_numpy(hashes, w)
    row, pos = np.nonzero(selected)
    return row, pos, hashes[row, pos], is_reverse[row, pos]
