import numpy as np
import pysam
import pytest

from neuromap.align import Scoring, banded_align, traceback
from neuromap.index import PAD_CODE
from neuromap.io.fastx import encode


def align_one(read, window, margin=4):
    q = encode(read)[None]
    width = len(read) + 2 * margin
    t = np.full((1, width), PAD_CODE, np.uint8)
    codes = encode(window)[:width]
    t[0, : len(codes)] = codes
    dp = banded_align(q, np.array([len(read)]), t, margin, Scoring())
    aln = traceback(dp, np.array([0]), q, t, np.array([len(read)]))
    return int(dp.score[0]), int(aln.ref_start[0]), aln.cigar[0], aln.md[0], int(aln.nm[0])


@pytest.mark.parametrize(
    "read, window, expected",
    [
        ("ACGTACGTTTGACCA", "GGGGACGTACGTTTGACCAGGGG", (15, 4, "15M", "15", 0)),
        ("ACGTACGTTAGACCA", "GGGGACGTACGTTTGACCAGGGG", (10, 4, "15M", "9T5", 1)),
        ("ACGTACGTTTGAAACCATTGCAGGACTT", "GGGGACGTACGTTTGACCATTGCAGGACTTGGGG", (18, 4, "11M2I15M", "26", 2)),
        ("ACGTACGTTTGACCATTGCAGGACTT", "GGGGACGTACGTTTGACGGCCATTGCAGGACTTGGGG", (17, 4, "12M3D14M", "12^CGG14", 3)),
        ("TTTTTACGTACGTTTGACCATTGCAGG", "GGGGCCCCCACGTACGTTTGACCATTGCAGGCC", (17, 9, "5S22M", "22", 0)),
    ],
)
def test_known_alignments(read, window, expected):
    assert align_one(read, window) == expected


def test_read_never_aligns_past_the_contig_end():
    # The window runs off the contig after 10 bases: the rest of the read must be clipped.
    read = "ACGTACGTTTGACCATTGCA"
    window = "GGGGACGTACGTTT"
    score, start, cigar, md, nm = align_one(read, window)
    assert cigar.endswith("S") and start == 4


def test_random_edits_give_consistent_cigar_md_nm():
    """CIGAR, MD and NM of many random reads agree with htslib's view of the alignment."""
    rng = np.random.default_rng(5)
    margin, n, length = 16, 300, 120
    letters = np.array(list("ACGT"))
    reads, windows = [], []
    for _ in range(n):
        window = "".join(letters[rng.integers(0, 4, length + 2 * margin)])
        true = list(window[margin : margin + length + 5])
        for _ in range(rng.integers(0, 4)):  # substitutions
            i = rng.integers(0, length)
            true[i] = "ACGT"[("ACGT".index(true[i]) + 1) % 4]
        if rng.random() < 0.5:
            i = int(rng.integers(20, length - 20))
            if rng.random() < 0.5:
                true[i:i] = list(letters[rng.integers(0, 4, rng.integers(1, 4))])
            else:
                del true[i : i + int(rng.integers(1, 4))]
        reads.append("".join(true[:length]))
        windows.append(window)
    q = np.stack([encode(r) for r in reads])
    t = np.stack([encode(w) for w in windows])
    lens = np.full(n, length)
    dp = banded_align(q, lens, t, margin, Scoring())
    aln = traceback(dp, np.arange(n), q, t, lens)
    header = pysam.AlignmentHeader.from_dict({"SQ": [{"SN": "w", "LN": length + 2 * margin}]})
    for p in range(n):
        seg = pysam.AlignedSegment(header)
        seg.query_name, seg.reference_id = "r", 0
        seg.reference_start = int(aln.ref_start[p])
        seg.cigarstring = aln.cigar[p]
        seg.query_sequence = reads[p]
        seg.set_tag("MD", aln.md[p])
        assert seg.query_length == length == seg.infer_read_length()
        assert seg.reference_end == aln.ref_end[p]
        ref_seq = windows[p][seg.reference_start : seg.reference_end]
        # htslib rebuilds the reference from the read, CIGAR and MD: it must be the window's.
        assert seg.get_reference_sequence().upper() == ref_seq
        mism = sum(1 for qp, rp, b in seg.get_aligned_pairs(with_seq=True) if qp is not None and rp is not None and b.islower())
        indel = sum(l for op, l in seg.cigartuples if op in (1, 2))
        assert aln.nm[p] == mism + indel
        # The DP score is the score of the reported alignment.
        assert dp.score[p] >= length - 5 * aln.nm[p] - 40
