"""The original numpy code of pipeline.place's duplicate placements (vectorised over the batch),
kept as the oracle the compiled kernel nm_same_placement must match exactly."""

from __future__ import annotations

import numpy as np


def same_placement_numpy(ll: np.ndarray, start_at: np.ndarray, reverse: np.ndarray, valid: np.ndarray, gap: int) -> np.ndarray:
    """`valid` without the placements that start within `gap` of a likelier valid one of the same
    read on the same strand."""
    valid = valid.copy()
    n_slots = valid.shape[1]
    order = np.argsort(-ll, axis=1, kind="stable")
    l_sorted = np.take_along_axis(start_at, order, 1)
    r_sorted = np.take_along_axis(reverse, order, 1)
    v_sorted = np.take_along_axis(valid, order, 1)
    dup = np.zeros_like(v_sorted)
    for j in range(1, n_slots):
        same = (np.abs(l_sorted[:, :j] - l_sorted[:, j : j + 1]) <= gap) & (r_sorted[:, :j] == r_sorted[:, j : j + 1])
        dup[:, j] = (same & v_sorted[:, :j] & ~dup[:, :j]).any(axis=1)
    np.put_along_axis(valid, order, v_sorted & ~dup, 1)
    return valid
