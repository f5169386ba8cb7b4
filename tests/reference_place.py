"""The original numpy code of pipeline.place's duplicate placements and of pipeline.unscored_ll
(vectorised over the batch), kept as the oracles the compiled kernels nm_same_placement and
nm_unscored must match exactly."""

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


def unscored_numpy(values: np.ndarray, valid: np.ndarray, chosen: np.ndarray, seeded_slots: int) -> np.ndarray:
    """Per read, the median of `values` over its valid slots before `seeded_slots`, the chosen one
    left out unless it is the only one; 0 where that is not finite."""
    n = len(chosen)
    if seeded_slots == 0:
        return np.zeros(n)
    seeded = valid[:, :seeded_slots].copy()
    own = chosen < seeded_slots
    alone = seeded.sum(axis=1) <= 1
    seeded[np.flatnonzero(own & ~alone), chosen[own & ~alone]] = False
    values = np.where(seeded, values[:, :seeded_slots], np.nan)
    count = seeded.sum(axis=1)
    middle = np.where(count == 1, np.nanmax(values, axis=1, initial=-np.inf, where=seeded), np.nan)
    many = np.flatnonzero(count > 1)
    if len(many):
        with np.errstate(invalid="ignore"):
            import warnings

            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN rows
                middle[many] = np.nanmedian(values[many], axis=1)
    return np.where(np.isfinite(middle), middle, 0.0)


def choose_numpy(placement: np.ndarray, slot_score: np.ndarray, ll: np.ndarray, min_score: int, one_mismatch: int, neg: int):
    """pipeline.place's choice as numpy before nm_choose: (choosable, chosen, ties, tied rows)."""
    alignable = placement & (slot_score >= min_score)
    choosable = np.where(alignable.any(axis=1)[:, None], alignable, placement)
    best_score = np.where(choosable, slot_score, neg).max(axis=1)
    pickable = choosable & (slot_score > best_score[:, None] - one_mismatch)
    masked = np.where(pickable, ll, -np.inf)
    best_ll = masked.max(axis=1)
    chosen = np.where(np.isfinite(best_ll), masked.argmax(axis=1), 0)
    ties = pickable & (masked == best_ll[:, None])
    return choosable, chosen, ties, ties.sum(axis=1) > 1


def read_bests_numpy(valid: np.ndarray, seeded: np.ndarray, ll: np.ndarray, slot_score: np.ndarray, chosen: np.ndarray, neg: int):
    """pipeline.describe's per-read bests as numpy before nm_read_bests: (has a placement, runner-up score)."""
    n, n_slots = valid.shape
    best_ll = np.where(valid, ll, -np.inf).max(axis=1) if n_slots else np.full(n, -np.inf)
    runner = np.where(valid & (np.arange(n_slots)[None, :] != chosen[:, None]), slot_score, neg).max(axis=1)
    has = seeded.any(axis=1) & np.isfinite(best_ll)
    return has, runner
