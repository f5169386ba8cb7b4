"""The Brier floor of benchmarks/brier_split.py: the copies it counts for a read's origin."""

import os
import sys

import numpy as np
import pytest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "benchmarks"))

from brier_split import copy_odds  # noqa: E402

_COMPLEMENT = str.maketrans("ACGT", "TGCA")


def _random(rng, n):
    return "".join(rng.choice(list("ACGT"), n))


def test_copies_on_both_strands_and_contigs():
    rng = np.random.default_rng(5)
    repeat = _random(rng, 400)
    flipped = repeat.translate(_COMPLEMENT)[::-1]
    chrom = _random(rng, 3000) + repeat + _random(rng, 3000) + flipped + _random(rng, 3000)
    genome = {"chr": chrom, "plasmid": _random(rng, 1000) + repeat + _random(rng, 1000)}
    truth = {
        "in_repeat": ("chr", 3100, 3250, "+"),  # three copies: here, on the other strand, on the plasmid
        "unique": ("chr", 500, 650, "-"),
        "straddles": ("chr", 2950, 3100, "+"),  # half in the repeat: one copy
        "pair/1": ("chr", 2900, 3050, "+"),  # the mate /2 is in the repeat, the fragment is not,
        "pair/2": ("chr", 3250, 3400, "-"),  # and its other copies are too far from /1 for a fragment
        "both/1": ("chr", 3010, 3160, "+"),  # the whole fragment is in the repeat
        "both/2": ("chr", 3230, 3380, "-"),
    }
    odds = copy_odds(genome, truth)
    assert odds == {"in_repeat": 1 / 3, "both/1": 1 / 3, "both/2": 1 / 3}


def test_a_pair_is_as_ambiguous_as_its_reads_not_as_its_fragment():
    """Two copies of a 1 kb segment that differ only between the mates: the fragments differ,
    the sequenced ends do not."""
    rng = np.random.default_rng(8)
    copy = _random(rng, 1000)
    other = copy[:500] + ("A" if copy[500] != "A" else "C") + copy[501:]
    genome = {"chr": _random(rng, 2000) + copy + _random(rng, 2000) + other + _random(rng, 2000)}
    truth = {"p/1": ("chr", 2300, 2450, "+"), "p/2": ("chr", 2550, 2700, "-")}
    assert copy_odds(genome, truth) == {"p/1": 0.5, "p/2": 0.5}


def test_a_tandem_array_counts_the_copies_within_the_tolerance_as_correct():
    rng = np.random.default_rng(6)
    unit = _random(rng, 7)
    genome = {"chr": _random(rng, 2000) + unit * 100 + _random(rng, 2000)}
    truth = {"tandem": ("chr", 2000 + 7 * 40, 2000 + 7 * 40 + 150, "+")}
    (q,) = copy_odds(genome, truth).values()
    # 700 bp of array hold 700 - 150 + 1 = 551 windows of 150 bp; every 7th is this one's sequence,
    # and its own start and one period either side lie within 10 bp
    assert q == 3 / len(range(0, 551, 7))


def test_a_mate_in_a_tandem_array_beside_its_partner():
    """The fragment is unique (it reaches out of the array), but the mate inside could sit one
    period further or nearer: the fragment length decides, as the simulator drew it."""
    rng = np.random.default_rng(7)
    unit = _random(rng, 60)
    genome = {"chr": _random(rng, 2000) + unit * 20 + _random(rng, 2000)}
    truth = {"f/1": ("chr", 1700, 1850, "+"), "f/2": ("chr", 2000 + 60 * 3, 2000 + 60 * 3 + 150, "-")}
    odds = copy_odds(genome, truth)
    assert set(odds) == {"f/2"}
    # /2's copies start every 60 bp along the array; fragment lengths 1700 .. y + 150
    starts = np.arange(2000, 2000 + 60 * 20 - 150 + 1, 60)
    w = np.exp(-0.5 * ((starts + 150 - 1700 - 400) / 50) ** 2)
    assert odds["f/2"] == pytest.approx(w[3] / w.sum())
