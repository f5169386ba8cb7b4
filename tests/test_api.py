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


@pytest.mark.parametrize("neural", [True, False])
def test_map_pair(data_dir, chr1, neural):
    # Mate 1 inside the exact repeat chr1:40000-41500 (= chr2:20000-21500), mate 2 unique.
    a = Aligner(str(data_dir / "ref.fa"), neural=neural, insert_size=(400, 50))
    m1, m2 = chr1[41_300:41_450], reverse_complement(chr1[41_550:41_700])
    h1, h2 = list(a.map(m1, m2))
    assert (h1.read_num, h1.ctg, h1.r_st, h1.strand) == (1, "chr1", 41_300, 1)
    assert (h2.read_num, h2.ctg, h2.r_st, h2.r_en, h2.strand) == (2, "chr1", 41_550, 41_700, -1)
    assert h1.is_proper_pair and h2.is_proper_pair and h1.mapq >= 30  # placed by its unique mate
    assert [h.mapq for h in a.map(m1)] == [3]  # alone it is a coin toss


def test_map_pairs_estimates_insert_size(data_dir):
    r1 = [r.seq for r in read_fastx(str(data_dir / "reads_1.fq"))][:300]
    r2 = [r.seq for r in read_fastx(str(data_dir / "reads_2.fq"))][:300]
    a = Aligner(str(data_dir / "ref.fa"), neural=False)
    out = a.map_pairs(zip(r1, r2))
    assert len(out) == 300 and 350 < a.insert.mean < 450
    assert sum(h1[0].is_proper_pair for h1, _ in out if h1) > 290


def test_unknown_preset_is_a_clear_error(data_dir):
    with pytest.raises(NeuromapError, match="preset"):
        Aligner(str(data_dir / "ref.fa"), preset="map-ont")
