import gzip
import subprocess
import sys

import numpy as np
import pysam
import pytest

from neuromap.errors import NeuromapError
from neuromap.io.fastx import Record, make_batch, pack, read_fastx, unpack

FQ = "@r1 some comment\nACGTN\n+\nIIIII\n@r2\nacgtRY\n+r2\n!!##~~\n"


def write(tmp_path, name, data):
    p = tmp_path / name
    p.write_bytes(data if isinstance(data, bytes) else data.encode())
    return str(p)


def test_fastq_records_kept_as_given(tmp_path):
    recs = list(read_fastx(write(tmp_path, "a.fq", FQ)))
    assert [(r.name, r.seq, r.qual, r.comment) for r in recs] == [
        ("r1", "ACGTN", "IIIII", "some comment"),
        ("r2", "acgtRY", "!!##~~", ""),
    ]


def test_fasta_multiline(tmp_path):
    recs = list(read_fastx(write(tmp_path, "a.fa", ">c1 d\nACGT\nac\n\n>c2\nGG\n")))
    assert [(r.name, r.seq, r.qual) for r in recs] == [("c1", "ACGTac", None), ("c2", "GG", None)]


def test_gzip_bgzf_concatenated_and_crlf(tmp_path):
    plain = list(read_fastx(write(tmp_path, "a.fq", FQ)))
    gz = write(tmp_path, "a.fq.gz", gzip.compress(FQ.encode()) + gzip.compress(FQ.encode()))
    assert list(read_fastx(gz)) == plain + plain
    bgz = str(tmp_path / "b.fq.gz")
    with pysam.BGZFile(bgz, "wb") as fh:
        fh.write(FQ.encode())
    assert list(read_fastx(bgz)) == plain
    crlf = write(tmp_path, "c.fq", FQ.replace("\n", "\r\n"))
    assert list(read_fastx(crlf)) == plain


def test_empty_file_has_no_records(tmp_path):
    assert list(read_fastx(write(tmp_path, "e.fq", ""))) == []


@pytest.mark.parametrize(
    "content, needle",
    [
        ("@r1\nACGT\n+\nIII\n", "record 1 ('r1'): sequence length 4 != quality length 3"),
        ("@r1\nACGT\n+\nIIII\n@r2\nAC", "record 2 ('r2'): truncated"),
        ("@r1\nACGT\n+\nIIII\nr2\nACGT\n+\nIIII\n", "record 2, line 5"),
        ("@r1\nACGT\nIIII\nIIII\n", "expected '+'"),
        ("ACGT\n", "line 1: not FASTQ or FASTA"),
        ("@r1\nAC1T\n+\nIIII\n", "invalid character '1'"),
        ("@r1\nAC*T\n+\nIIII\n", "invalid character '*'"),
        ("@r1\nACGT\n+\nII I\n", "invalid quality"),
        (b"\x00\x01\x02\xff\xfe garbage", "binary"),
    ],
)
def test_malformed_input_names_file_and_record(tmp_path, content, needle):
    path = write(tmp_path, "bad.fq", content)
    with pytest.raises(NeuromapError) as exc:
        list(read_fastx(path))
    assert path in str(exc.value) and needle in str(exc.value)


def test_truncated_gzip(tmp_path):
    data = gzip.compress((FQ * 200).encode())
    path = write(tmp_path, "t.fq.gz", data[: len(data) // 2])
    with pytest.raises(NeuromapError, match="truncated gzip"):
        list(read_fastx(path))


def test_missing_file():
    with pytest.raises(NeuromapError, match="no such file"):
        list(read_fastx("/nonexistent/reads.fq"))


def test_batch_codes_lowercase_and_ambiguous(tmp_path):
    batch = make_batch(list(read_fastx(write(tmp_path, "a.fq", FQ))))
    assert batch.codes.shape == (2, 6)
    assert batch.lengths.tolist() == [5, 6]
    assert batch.codes[0].tolist() == [0, 1, 2, 3, 4, 4]  # padded with N
    assert batch.codes[1].tolist() == [0, 1, 2, 3, 4, 4]  # lowercase = upper, IUPAC = N
    assert batch.codes.dtype == np.uint8


@pytest.mark.parametrize("records", [
    [Record("r1", "ACGTN", "IIII#", "BC:Z:1 extra words"), Record("r2", "", "", ""), Record("r 3?", "acgt.", "!!~~!", "")],
    [Record("chr1", "ACGT", None, "a comment"), Record("chr2", "", None, "")],
    [Record("only", "A", "I", "")],
    [],
    [Record("fasta", "ACGT", None, ""), Record("fastq", "ACGT", "IIII", "")],  # mixed: sent as they are
])
def test_pack_unpack_gives_the_records_back(records):
    """What a worker process receives (--processes) is the batch as read, field for field."""
    assert unpack(pack(records)) == records


PLAIN = b"@r1\nACGTacgtN.\n+\nIIIIIIIII#\n@r/2\n\n+r/2 comment\n\n"


@pytest.mark.parametrize("data, plain", [
    (PLAIN, True),  # lowercase, N and '.' bases, an empty read, text after '+'
    (PLAIN.replace(b"@r1", b"@r1 1:N:0:ACGT extra"), True),  # a comment after the name (Illumina's)
    (PLAIN.replace(b"@r1", b"@r1\t"), True),
    (PLAIN.replace(b"@r1", b"@ r1"), False),  # a space before the name: the parser cuts it
    (PLAIN.replace(b"@r1", b"@r1\x0bc"), False),  # other whitespace: left to the parser
    (PLAIN.replace(b"@r1", b"@r1 c\r"), False),
    (PLAIN.replace(b"@r1", b"@r1 caf\xc3\xa9"), False),
    (PLAIN.replace(b"@r1", b"@"), False),  # empty name: an error
    (PLAIN.replace(b"@r1", b"@" + b"x" * 254), True),
    (PLAIN.replace(b"@r1", b"@" + b"x" * 255), False),  # longer than SAM allows: an error
    (PLAIN.replace(b"ACGT", b"AC-T"), False),
    (PLAIN.replace(b"ACGT", b"AC\xc3\xa9"), False),
    (PLAIN.replace(b"I#\n", b"#\n"), False),  # quality shorter than the sequence
    (PLAIN.replace(b"IIII", b"II I"), False),
    (PLAIN.replace(b"\n+\n", b"\n-\n"), False),
    (PLAIN.replace(b"+r/2", b"+r/2\r"), False),
    (PLAIN.replace(b"\n", b"\r\n"), False),
    (PLAIN + b"@r3\n", False),  # more than the records counted
])
def test_plain_records_found_in_place_or_left_to_the_parser(data, plain):
    """The workers' compiled check (plain_records) takes only records the Python parsers accept
    as they are, with the same names, bases and qualities; anything else is left to them
    (parse_raw_batch then gives what parsing record by record gives, or its error)."""
    from neuromap.io.fastx import RawBatch, Texts, parse_raw, parse_raw_batch, plain_records

    assert plain or data != PLAIN  # each case changes the plain records
    found = plain_records(data, 2)
    assert (found is not None) == plain
    raw = RawBatch("r.fq", data, 0, 0, 2)
    try:
        expected = make_batch(parse_raw(raw))
    except NeuromapError as exc:
        with pytest.raises(NeuromapError) as got:
            parse_raw_batch(raw)
        assert str(got.value) == str(exc)
        return
    batch = parse_raw_batch(raw)
    assert isinstance(batch.names, Texts) == plain
    assert (list(batch.names), list(batch.seqs), list(batch.quals)) == (expected.names, expected.seqs, expected.quals)
    assert batch.codes.tolist() == expected.codes.tolist() and batch.lengths.tolist() == expected.lengths.tolist()


def test_plain_pairs_cut_mate_suffixes_and_check_names(tmp_path):
    """Pairs of plain records: names lose /1 and /2 as mate_name cuts them (not a lone "/1", nor
    "/3"); mates whose names differ go the record-by-record way, which names them."""
    from neuromap.io.fastx import RawBatch, RawPairs, Texts, parse_raw_pairs_batch

    def fq(*names):
        return b"".join(b"@%s\nACGT\n+\nIIII\n" % n for n in names)

    def batch(first, second):
        return parse_raw_pairs_batch(RawPairs(RawBatch("a.fq", first, 0, 0, 2), RawBatch("b.fq", second, 0, 0, 2), ("a.fq", "b.fq"), 0))

    b = batch(fq(b"x/1", b"y/3/1"), fq(b"x/2", b"y/3/2"))
    assert isinstance(b.names, Texts) and list(b.names) == ["x", "y/3", "x", "y/3"]
    b = batch(fq(b"/1", b"z"), fq(b"/1", b"z"))
    assert list(b.names) == ["/1", "z", "/1", "z"]
    interleaved = parse_raw_pairs_batch(RawPairs(RawBatch("i.fq", fq(b"x/1", b"x/2", b"y", b"y"), 0, 0, 4), None, ("i.fq",), 0))
    assert isinstance(interleaved.names, Texts) and list(interleaved.names) == ["x", "y", "x", "y"]
    with pytest.raises(NeuromapError, match="mate names differ"):
        batch(fq(b"x/1", b"y/1"), fq(b"x/2", b"w/2"))


def test_without_isal_gzip_is_read_by_the_standard_library(tmp_path):
    """isal is a dependency, but an install without it (pip --no-deps, a platform with no wheel)
    still reads gzip, through the standard library: the same records, and the same one-line
    errors for truncated or corrupt data."""
    raw = b"".join(b"@r%d\nACGTN\n+\nIIIII\n" % i for i in range(2000))
    good, cut, bad = tmp_path / "good.fq.gz", tmp_path / "cut.fq.gz", tmp_path / "bad.fq.gz"
    good.write_bytes(gzip.compress(raw))
    cut.write_bytes(gzip.compress(raw)[:200])
    corrupt = bytearray(gzip.compress(raw))
    corrupt[len(corrupt) // 2] ^= 0xFF
    bad.write_bytes(bytes(corrupt))
    code = ("import sys\n"
            "{block}"
            "from neuromap.errors import NeuromapError\n"
            "from neuromap.io import fastx\n"
            "print(fastx.igzip is None)\n"
            "for path in sys.argv[1:]:\n"
            "    try:\n"
            "        print(len(list(fastx.read_fastx(path))))\n"
            "    except NeuromapError as exc:\n"
            "        print(str(exc).split(' (')[0])\n")
    runs = [subprocess.run([sys.executable, "-c", code.format(block=block), str(good), str(cut), str(bad)], capture_output=True, text=True)
            for block in ("sys.modules['isal'] = None  # as if not installed\n", "")]
    assert [r.returncode for r in runs] == [0, 0], [r.stderr for r in runs]
    without, with_isal = (r.stdout.splitlines() for r in runs)
    assert without[0] == "True" and with_isal[0] == "False"
    assert without[1:] == with_isal[1:] == ["2000", f"{cut}: corrupt or truncated gzip data", f"{bad}: corrupt or truncated gzip data"]
