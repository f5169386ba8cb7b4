import numpy as np

from neuromap.sketch import INVALID_HASH, kmer_hashes, sketch_rows, sketch_sequence


def test_chunking_does_not_change_the_sketch():
    seq = np.random.default_rng(0).integers(0, 4, 20_000).astype(np.uint8)
    a = sketch_sequence(seq, 21, 11)
    b = sketch_sequence(seq, 21, 11, chunk=777)
    for x, y in zip(a, b):
        assert np.array_equal(x, y)
    # About 2/(w+1) of positions are minimizers.
    assert 0.12 < len(a[0]) / len(seq) < 0.22


def test_reverse_complement_has_the_same_minimizers():
    seq = np.random.default_rng(1).integers(0, 4, 5_000).astype(np.uint8)
    rc = (3 - seq[::-1]).astype(np.uint8)
    pos, hashes, rev = sketch_sequence(seq, 15, 10)
    pos_rc, hashes_rc, rev_rc = sketch_sequence(rc, 15, 10)
    assert sorted(hashes) == sorted(hashes_rc)
    assert set(pos_rc) == set(len(seq) - 15 - pos)


def test_kmers_with_n_are_never_minimizers():
    seq = np.random.default_rng(2).integers(0, 4, 200).astype(np.uint8)
    seq[100] = 4
    hashes, _ = kmer_hashes(seq[None], 21)
    assert (hashes[0, 80:101] == INVALID_HASH).all()
    pos, _, _ = sketch_sequence(seq, 21, 11)
    assert not ((pos > 79) & (pos < 101)).any()


def test_rows_match_single_sequences():
    rng = np.random.default_rng(3)
    rows = rng.integers(0, 4, (4, 150)).astype(np.uint8)
    r, p, h, _ = sketch_rows(rows, 21, 11)
    for i in range(4):
        pos, hashes, _ = sketch_sequence(rows[i], 21, 11)
        assert np.array_equal(p[r == i], pos) and np.array_equal(h[r == i], hashes)
