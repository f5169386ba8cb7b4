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


def test_same_evidence_mean_only_joins_a_reads_placements_on_identical_bases():
    from neuromap.pipeline import same_evidence_mean

    rng = np.random.default_rng(0)
    span = rng.integers(0, 4, 20).astype(np.uint8)
    target = rng.integers(0, 4, (5, 30)).astype(np.uint8)  # flanks all differ
    for row, start in zip(range(5), (5, 3, 5, 5, 5)):
        target[row, start : start + 20] = span
    target[3, 5 + 19] = (span[19] + 1) % 4  # one base differs under the read
    read = np.array([0, 0, 0, 0, 1])  # row 4 is another read's placement
    start = np.array([5, 3, 5, 5, 5])
    ll = np.array([-1.0, -2.0, -3.0, -4.0, -5.0])
    out = same_evidence_mean(read, target, start, np.full(5, 20), ll)
    # rows 0, 1, 2 cover the same 20 bases (at different window columns): their mean
    assert np.allclose(out, [-2.0, -2.0, -2.0, -4.0, -5.0])
    assert out[0] == out[1] == out[2]
    # a shorter read covers only 19 bases: row 3 then joins them
    assert np.allclose(same_evidence_mean(read, target, start, np.full(5, 19), ll), [-2.5, -2.5, -2.5, -2.5, -5.0])


def test_unscored_placements_are_valued_like_the_kept_ones():
    """unscored_ll: the median log-likelihood of a read's other seeded candidates; the chosen one
    only when it is alone; rescued slots (after the seeded ones) do not count."""
    from types import SimpleNamespace

    from neuromap.pipeline import unscored_ll

    inf = -np.inf
    ll = np.array([
        [150.0, 150.0, 150.0, 126.0, 10.0],  # an array: one partial hit at its end, one rescued slot
        [150.0, 90.0, 80.0, 70.0, inf],  # a family whose kept copies are weak
        [150.0, inf, inf, inf, inf],  # only the chosen one
        [inf, inf, inf, inf, inf],  # nothing
    ])
    valid = np.isfinite(ll)
    pl = SimpleNamespace(ll=ll, valid=valid, chosen=np.array([0, 0, 0, 0]), seeded=4)
    assert unscored_ll(pl).tolist() == [150.0, 80.0, 150.0, 0.0]
    p = p_correct(ll[:1, :4], valid[:1, :4], np.array([0]), np.array([100]), unscored_ll(pl)[:1])
    assert p[0] < 1 / 100  # a hundred unscored copies as good as the kept ones


def test_unscored_ll_is_the_median_of_each_row():
    """unscored_ll takes the median of one value as that value and leaves np.nanmedian to the
    rows with more: the same numbers as np.nanmedian on every row."""
    import warnings
    from types import SimpleNamespace

    from neuromap.pipeline import unscored_ll

    rng = np.random.default_rng(12)
    ll = np.round(rng.normal(100, 30, (500, 8)))
    valid = rng.random((500, 8)) < rng.random((500, 1))
    ll[~valid] = -np.inf
    chosen = np.array([rng.choice(np.flatnonzero(v)) if v.any() else 0 for v in valid])
    pl = SimpleNamespace(ll=ll, valid=valid, chosen=chosen, seeded=6)
    seeded = valid[:, :6].copy()
    own = chosen < 6
    alone = seeded.sum(axis=1) <= 1
    seeded[np.flatnonzero(own & ~alone), chosen[own & ~alone]] = False
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        middle = np.nanmedian(np.where(seeded, ll[:, :6], np.nan), axis=1)
    expected = np.where(np.isfinite(middle), middle, 0.0)
    assert (seeded.sum(axis=1) == 1).any() and (seeded.sum(axis=1) == 0).any() and (seeded.sum(axis=1) > 2).any()
    assert np.array_equal(unscored_ll(pl), expected)


def test_tie_break_picks_the_named_option_among_each_rows_ties():
    """tie_break takes each read's tied options as a row of a matrix and picks, by the crc32 of
    the read's name, the (crc mod count)-th of them in column order: the same read always gets
    the same one, and different reads spread over the options."""
    import zlib

    from neuromap.mapq import tie_break

    rng = np.random.default_rng(1)
    for trial in range(300):
        n, m = int(rng.integers(1, 20)), int(rng.integers(1, 30))
        ties = rng.random((n, m)) < rng.random()
        ties[np.arange(n), rng.integers(0, m, n)] = True
        names = [f"read{trial}.{i}" for i in range(n + 3)]
        rows = rng.choice(n + 3, n, replace=False)
        want = [np.flatnonzero(t)[zlib.crc32(names[r].encode()) % t.sum()] for r, t in zip(rows, ties)]
        assert tie_break(names, rows, ties).tolist() == want
    spread = tie_break([f"r{i}" for i in range(400)], np.arange(400), np.ones((400, 4), bool))
    assert sorted(set(spread.tolist())) == [0, 1, 2, 3] and np.bincount(spread).min() > 60
    assert tie_break([], np.zeros(0, np.int64), np.zeros((0, 3), bool)).tolist() == []
