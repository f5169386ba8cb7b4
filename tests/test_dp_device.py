"""benchmarks/dp_device.py's JAX DP (what a device DP would compute) is the C kernel's, bit for
bit: scores, ends and the whole trace, on reads with mismatches, indels, Ns and clipped ends."""

import os
import sys

import numpy as np
import pytest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "benchmarks"))

from dp_device import as_inputs, jax_dp  # noqa: E402
from neuromap.align import Scoring, banded_align  # noqa: E402


def _pairs(rng, n, rows, margin):
    """Reads cut from random windows with substitutions, indels, Ns and junk ends; some shorter."""
    width = rows + 2 * margin
    target = rng.integers(0, 4, (n, width)).astype(np.uint8)
    target[rng.random((n, width)) < 0.01] = 4  # N in the reference
    target[: n // 8, -margin:] = 5  # past a contig's end
    query = np.full((n, rows), 4, dtype=np.uint8)
    qlen = rng.integers(rows // 2, rows + 1, n)
    for p in range(n):
        seq = list(target[p, margin : margin + rows + margin])
        for _ in range(rng.integers(0, 4)):
            at = rng.integers(0, len(seq))
            kind = rng.integers(0, 3)
            if kind == 0:
                seq[at] = rng.integers(0, 5)
            elif kind == 1:
                del seq[at : at + rng.integers(1, 6)]
            else:
                seq[at:at] = list(rng.integers(0, 4, rng.integers(1, 6)))
        if rng.random() < 0.2:  # a junk start, to be clipped
            seq[:10] = list(rng.integers(0, 4, 10))
        query[p, : qlen[p]] = (seq + [4] * rows)[: qlen[p]]
    return query, qlen.astype(np.int64), target


@pytest.mark.parametrize("sc", [Scoring(), Scoring(match=2, mismatch=3, gap_open=5, gap_extend=2, clip=3)])
def test_jax_dp_is_the_c_kernel(sc):
    rng = np.random.default_rng(11)
    margin, rows = 8, 48
    query, qlen, target = _pairs(rng, 300, rows, margin)
    q_t, t_t, ql = as_inputs(query, qlen, target, margin, 320)  # padded by repeating pairs, as the script does
    expect = banded_align(q_t.T, ql.astype(np.int64), t_t.T, margin, sc)
    got = [np.asarray(a) for a in jax_dp(margin, sc)(q_t, t_t, ql)]
    assert np.array_equal(got[0], expect.score)
    assert np.array_equal(got[1], expect.end_row)
    assert np.array_equal(got[2], expect.end_slot)
    assert np.array_equal(got[3], expect.trace)
    assert ((expect.trace & 4) > 0).any()  # deletions were traced
    assert ((expect.trace & 3) == 2).any() and (expect.end_row < ql - 1).any()  # insertions, clipped ends
