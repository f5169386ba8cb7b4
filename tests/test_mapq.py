import numpy as np

from neuromap.mapq import mapq_from_p, p_correct


def test_identical_copies_get_mapq_3_and_unique_60():
    ll = np.array([[150.0, 150.0], [150.0, -1e9], [150.0, 140.0]])
    valid = np.array([[True, True], [True, False], [True, True]])
    p = p_correct(ll, valid, np.zeros(3, dtype=int))
    assert np.allclose(p[:2], [0.5, 1.0])
    assert mapq_from_p(p).tolist() == [3, 60, 43]


def test_unscored_placements_lower_confidence():
    ll = np.array([[150.0, 120.0]])
    valid = np.array([[True, True]])
    base = p_correct(ll, valid, np.array([0]))
    more = p_correct(ll, valid, np.array([0]), np.array([1000]))
    assert more[0] < base[0]


def test_read_without_candidates():
    p = p_correct(np.zeros((1, 2)), np.zeros((1, 2), bool), np.array([0]))
    assert p.tolist() == [0.0] and mapq_from_p(p).tolist() == [0]
