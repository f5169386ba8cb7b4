"""Mapping quality as a probability.

Each candidate placement of a read gets a log-likelihood (here the alignment score times
`scale`; the network provides its own in the next stage). Normalised over all of the read's
placements they give P(correct) for the chosen one, and MAPQ = -10 log10 P(wrong), capped at 60.
Two identical copies give P = 0.5, MAPQ 3.
"""

from __future__ import annotations

import zlib

import numpy as np

MAX_MAPQ = 60


def tie_break(names: list[str], rows: np.ndarray, ties: np.ndarray) -> np.ndarray:
    """Among equally likely options (the True columns of `ties[i]`, at least one, for read
    `rows[i]`) pick one by a hash of the read name: deterministic, and reads from a repeat spread
    over its copies instead of piling onto the first. The pick is the (crc32(name) mod count)-th
    option in column order."""
    if len(rows) == 0:
        return np.zeros(0, dtype=np.int64)
    ties = np.asarray(ties, dtype=bool)
    k = np.array([zlib.crc32(names[r].encode()) for r in rows], dtype=np.int64) % ties.sum(axis=1)
    return (np.cumsum(ties, axis=1) > k[:, None]).argmax(axis=1).astype(np.int64)


def p_correct(log_likelihood: np.ndarray, valid: np.ndarray, chosen: np.ndarray, n_unscored: np.ndarray | None = None,
              weakest: np.ndarray | None = None) -> np.ndarray:
    """P(the chosen placement is right) for each read.

    log_likelihood, valid: (n_reads, n_candidates); chosen: (n_reads,) slot index.
    n_unscored: placements found but not scored (beyond the kept candidates), so a read in a
    large repeat family is not overconfident; each is counted as likely as `weakest` (the
    aligner gives the median of the read's other seeded candidates: `pipeline.unscored_ll`), or
    without it as the weakest valid one; never as more likely than the chosen one.
    """
    n = log_likelihood.shape[0]
    if n == 0:
        return np.zeros(0)
    rows = np.arange(n)
    best = log_likelihood[rows, chosen]
    rel = np.where(valid, log_likelihood - best[:, None], -np.inf)
    weights = np.exp(rel)
    total = weights.sum(axis=1)
    if n_unscored is not None:
        floor = np.where(valid, rel, np.inf).min(axis=1) if weakest is None else np.minimum(weakest - best, 0.0)
        floor = np.where(np.isfinite(floor), floor, 0.0)
        total = total + n_unscored * np.exp(floor)
    # A read without any scored placement has total 0; it is unmapped and gets p = 0.
    return np.divide(1.0, total, out=np.zeros(n), where=total > 0)


def mapq_from_p(p: np.ndarray) -> np.ndarray:
    """MAPQ = round(-10 log10(1 - p)) capped at MAX_MAPQ."""
    wrong = np.clip(1.0 - np.asarray(p, dtype=np.float64), 1e-12, 1.0)
    q = np.rint(-10.0 * np.log10(wrong))
    return np.clip(q, 0, MAX_MAPQ).astype(np.int32)
