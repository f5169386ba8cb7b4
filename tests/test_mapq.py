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


def test_unscored_placements_weigh_as_the_weakest_scored_candidate():
    """`weakest` stands for scored candidates that are no placements (below --min-score): the
    unscored ones are worth that much, not as much as the only real placement."""
    ll = np.array([[150.0, -1e9]])
    only_one = np.array([[True, False]])
    alone = p_correct(ll, only_one, np.array([0]), np.array([3]))
    assert alone[0] == 0.25  # without a weaker candidate the extras count as much as the read's own
    with_floor = p_correct(ll, only_one, np.array([0]), np.array([3]), weakest=np.array([20.0]))
    assert with_floor[0] > 1 - 1e-12 and mapq_from_p(with_floor).tolist() == [60]
    # Given the weakest valid placement's value, the result is the default one.
    two = np.array([[True, True]])
    ll2 = np.array([[150.0, 140.0]])
    assert np.allclose(p_correct(ll2, two, np.array([0]), np.array([2]), weakest=np.array([140.0])),
                       p_correct(ll2, two, np.array([0]), np.array([2])))
