"""The mappy-shaped Python API."""

import pytest

from neuromap import Aligner, NeuromapError
from neuromap.io.fastx import read_fastx
from neuromap.io.sam import reverse_complement


@pytest.fixture(scope="module")
def chr1(data_dir):
    return {r.name: r.seq.upper() for r in read_fastx(str(data_dir / "ref.fa"))}["chr1"]


@pytest.mark.parametrize("neural", [True, False])
def test_map_forward_reverse_clipped_and_unmapped(data_dir, chr1, neural):
    a = Aligner(str(data_dir / "ref.fa"), neural=neural)
    (hit,) = a.map(chr1[1000:1150])
    assert (hit.ctg, hit.r_st, hit.r_en, hit.q_st, hit.q_en, hit.strand) == ("chr1", 1000, 1150, 0, 150, 1)
    assert (hit.cigar, hit.NM, hit.mapq, hit.is_primary) == ("150M", 0, 60, True)
    assert 0.99 < hit.p_correct <= 1.0 and hit.ctg_len == 220_000
    (rev,) = a.map(reverse_complement(chr1[1000:1150]))
    assert (rev.r_st, rev.r_en, rev.strand, rev.q_st, rev.q_en) == (1000, 1150, -1, 0, 150)
    # 20 foreign bases before the read: clipped at the read's start (q_st), whichever the strand.
    junk = "ACGTTGCA" * 2 + "TTAA"
    (clipped,) = a.map(junk + chr1[5000:5130])
    assert (clipped.q_st, clipped.q_en, clipped.r_st, clipped.r_en) == (20, 150, 5000, 5130)
    (clipped_rev,) = a.map(reverse_complement(junk + chr1[5000:5130]))
    assert (clipped_rev.q_st, clipped_rev.q_en, clipped_rev.strand) == (0, 130, -1)
    assert list(a.map("N" * 100)) == [] and list(a.map("ACGT")) == []


def test_map_batch_equals_map(data_dir, chr1):
    a = Aligner(str(data_dir / "ref.fa"), neural=False)
    seqs = [chr1[i : i + 150] for i in range(20_000, 26_000, 600)] + ["N" * 50]
    assert a.map_batch(seqs) == [list(a.map(s)) for s in seqs]


def test_paired_and_unknown_preset_are_clear_errors(data_dir, chr1):
    a = Aligner(str(data_dir / "ref.fa"), neural=False)
    with pytest.raises(NeuromapError, match="paired-end"):
        list(a.map(chr1[:150], chr1[400:550]))
    with pytest.raises(NeuromapError, match="preset"):
        Aligner(str(data_dir / "ref.fa"), preset="map-ont")
