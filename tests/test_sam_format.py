"""The compiled SAM formatter (nm_format_sam) against the Python one it replaced
(tests/reference_sam.py), byte for byte: single reads and pairs, mapped and unmapped reads,
mates of every kind (both mapped, one unmapped, on different contigs), a read group, reads
without a sequence or quality, names that are not ASCII."""

from __future__ import annotations

import numpy as np
import pytest

from neuromap.index import build_index, load_index, open_index
from neuromap.io.fastx import Record, make_batch, read_fastx
from neuromap.pairing import parse_insert
from neuromap.io.sam import format_sam
from neuromap.pipeline import AlignOptions, map_batch, map_pairs, pair_fields

from reference_sam import format_sam_python

RNG = np.random.default_rng(3)


def rand(n):
    return "".join(np.array(list("ACGT"))[RNG.integers(0, 4, n)])


def odd_records(ref_seq: str) -> list[Record]:
    """Reads of every kind a batch may hold, from a reference sequence."""
    chunk = ref_seq[1000:1150]
    return [
        Record("plain", chunk, "I" * 150),
        Record("lower-and-N", chunk[:70].lower() + "N" * 5 + chunk[75:], "5" * 150),
        Record("short", chunk[:12], "I" * 12),  # shorter than k: unmapped
        Record("foreign", rand(150), "#" * 150),  # from nowhere: unmapped
        Record("all-N", "N" * 100, "!" * 100),
        Record("fasta-like", chunk[:100], None),  # no quality: QUAL "*"
        Record("empty", "", ""),
        Record("n\u00e4me-\u00fcnicode", chunk[5:130], "J" * 125),
        Record("a" * 250, chunk[2:152], "F" * 150),  # a long name
    ]


@pytest.mark.parametrize("neural", [False, True])
@pytest.mark.parametrize("read_group", [None, "sample-1"])
def test_single_reads_match_the_python_formatter(data_dir, neural, read_group):
    index = open_index(str(data_dir / "ref.fa"))
    seq = "".join("ACGTN"[c] for c in np.asarray(index.seq[: int(index.contig_lengths[0])]))
    records = list(read_fastx(str(data_dir / "reads.fq")))[:1500] + odd_records(seq)
    batch = make_batch(records)
    res = map_batch(batch, index, AlignOptions(neural=neural))
    assert res.mapped.any() and not res.mapped.all() and (res.reverse & res.mapped).any()
    assert format_sam(batch, res, index, read_group) == format_sam_python(batch, res, index, read_group)


def test_pairs_match_the_python_formatter(data_dir, tmp_path):
    index = open_index(str(data_dir / "ref.fa"))
    r1 = list(read_fastx(str(data_dir / "reads_1.fq")))[:400]
    r2 = list(read_fastx(str(data_dir / "reads_2.fq")))[:400]
    seq = "".join("ACGTN"[c] for c in np.asarray(index.seq[: int(index.contig_lengths[0])]))
    odd = odd_records(seq)
    # mates: one unmapped, both unmapped, mapped far apart, swapped
    r1 += odd
    r2 += [r2[0], odd[3], odd[2], r1[5], odd[1], r2[7], odd[6], r2[9], odd[0]]
    batch = make_batch(r1 + r2)
    opts = AlignOptions(neural=False, paired=True)
    res, model, _ = map_pairs(batch, index, opts, parse_insert("400,50"), np.zeros(0, np.int64))
    fields = pair_fields(res, model)
    text = format_sam(batch, res, index, "rg", fields)
    assert text == format_sam_python(batch, res, index, "rg", fields)
    flags = [int(line.split("\t")[1]) for line in text.splitlines()]
    assert any(f & 8 for f in flags) and any(f & 4 for f in flags) and any(f & 2 for f in flags)


def test_pairs_on_two_contigs_match_the_python_formatter(tmp_path):
    a, b = rand(20_000), rand(20_000)
    ref = tmp_path / "ref.fa"
    ref.write_text(f">chrA some words\n{a}\n>chrB\n{b}\n")
    index = load_index(build_index(str(ref)))
    comp = str.maketrans("ACGT", "TGCA")
    r1 = [Record(f"p{i}", a[1000 * i: 1000 * i + 150], "I" * 150) for i in range(1, 10)]
    r2 = [Record(f"p{i}", (b if i % 2 else a)[1000 * i + 300: 1000 * i + 450].translate(comp)[::-1], "I" * 150) for i in range(1, 10)]
    batch = make_batch(r1 + r2)
    res, model, _ = map_pairs(batch, index, AlignOptions(neural=False, paired=True), parse_insert("450,30"), np.zeros(0, np.int64))
    fields = pair_fields(res, model)
    text = format_sam(batch, res, index, None, fields)
    assert text == format_sam_python(batch, res, index, None, fields)
    assert "\tchrB\t" in text and "\tchrA\t" in text  # RNEXT names the other contig


def test_an_empty_batch_is_no_text(data_dir):
    index = open_index(str(data_dir / "ref.fa"))
    batch = make_batch([])
    res = map_batch(batch, index, AlignOptions(neural=False))
    assert format_sam(batch, res, index, None) == format_sam_python(batch, res, index, None) == ""


def test_text_that_is_not_ascii_is_turned_by_characters(data_dir):
    """Only the Python API can hand over such text; it is reversed by characters, as before."""
    index = open_index(str(data_dir / "ref.fa"))
    seq = "".join("ACGTN"[c] for c in np.asarray(index.seq[: int(index.contig_lengths[0])]))
    comp = str.maketrans("ACGT", "TGCA")
    rev = seq[3000:3150].translate(comp)[::-1]
    records = [Record("rev", rev[:140] + "\u00e9" + rev[141:], "I" * 149 + "\u00fc"), Record("fwd", seq[5000:5150], "I" * 150)]
    batch = make_batch(records)
    res = map_batch(batch, index, AlignOptions(neural=False))
    assert res.mapped.all() and res.reverse[0]
    text = format_sam(batch, res, index, None)
    assert text == format_sam_python(batch, res, index, None)
    assert text.split("\t")[10].startswith("\u00fc")
