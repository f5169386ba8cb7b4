"""Property tests of the reader: valid records come back exactly once and intact; a file cut
anywhere gives a prefix of its records or a clean error, never a wrong record."""

import gzip

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from neuromap.errors import NeuromapError
from neuromap.io.fastx import Record, batched, read_fastx

# Up to SAM's 254 characters (longer names are refused: see test_name_longer_than_sam_allows);
# qualities may hold '@' and '+', also at their start.
names = st.text(alphabet=st.characters(min_codepoint=33, max_codepoint=126), min_size=1, max_size=254).filter(lambda n: not n.startswith("@"))
seqs = st.text(alphabet="ACGTNacgtnRY", min_size=0, max_size=300)


@st.composite
def fastq_records(draw):
    n = draw(st.integers(min_value=1, max_value=8))
    out = []
    for _ in range(n):
        seq = draw(seqs)
        qual = draw(st.text(alphabet=st.characters(min_codepoint=33, max_codepoint=126), min_size=len(seq), max_size=len(seq)))
        out.append(Record(draw(names), seq, qual, ""))
    return out


def to_fastq(records, crlf=False, blank_lines=False):
    nl = "\r\n" if crlf else "\n"
    parts = []
    for r in records:
        parts.append(f"@{r.name}{nl}{r.seq}{nl}+{nl}{r.qual}{nl}")
        if blank_lines:
            parts.append(nl)
    return "".join(parts).encode()


def write_cut(tmp_path, name, raw, data, lowest):
    """Write `raw` cut at a drawn byte (at least `lowest`, before the end) to tmp_path/name."""
    cut = data.draw(st.integers(min_value=lowest, max_value=len(raw) - 1))
    path = tmp_path / name
    path.write_bytes(raw[:cut])
    return path, cut


def changed_or_cut(data, raw: bytes, changes: bytes) -> bytes:
    """`raw`, maybe with one byte changed to one of `changes`, maybe cut at a drawn length."""
    raw = bytearray(raw)
    if data.draw(st.booleans()):  # change one byte
        raw[data.draw(st.integers(0, len(raw) - 1))] = data.draw(st.sampled_from(changes))
    if data.draw(st.booleans()):  # cut
        raw = raw[: data.draw(st.integers(1, len(raw)))]
    return bytes(raw)


SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@SETTINGS
@given(fastq_records(), st.booleans(), st.booleans(), st.booleans())
def test_valid_records_come_back_exactly(tmp_path, records, crlf, blank_lines, compress):
    data = to_fastq(records, crlf, blank_lines)
    path = tmp_path / ("r.fq.gz" if compress else "r.fq")
    path.write_bytes(gzip.compress(data) if compress else data)
    assert list(read_fastx(str(path))) == records


@SETTINGS
@given(fastq_records(), st.data())
def test_a_cut_file_gives_a_prefix_or_a_clean_error(tmp_path, records, data):
    path, cut = write_cut(tmp_path, "cut.fq", to_fastq(records), data, 1)
    try:
        got = list(read_fastx(str(path)))
    except NeuromapError as exc:
        assert str(path) in str(exc)
        return
    assert got == records[: len(got)]
    # Without an error, the cut fell on a record boundary (give or take the final newline).
    assert len(to_fastq(got)) in (cut, cut + 1)


@SETTINGS
@given(fastq_records(), st.data())
def test_a_cut_gzip_stream_is_an_error(tmp_path, records, data):
    path, _ = write_cut(tmp_path, "cut.fq.gz", gzip.compress(to_fastq(records)), data, 10)
    try:
        got = list(read_fastx(str(path)))
    except NeuromapError as exc:
        assert str(path) in str(exc)
    else:
        raise AssertionError(f"truncated gzip accepted ({len(got)} records)")


@SETTINGS
@given(fastq_records(), st.data(), st.booleans())
def test_a_flipped_byte_gives_records_or_a_clean_error(tmp_path, records, data, compress):
    """Any byte replaced by any other: a clean error naming the file, or (where the result is
    still valid FASTQ, e.g. a base changed) records that are each well-formed; never a crash.
    In gzip the CRC catches it: an error, or (a flip in the header's flag/time/OS bytes) the
    records unchanged."""
    raw = to_fastq(records)
    if compress:
        raw = gzip.compress(raw)
    at = data.draw(st.integers(min_value=0, max_value=len(raw) - 1))
    new = data.draw(st.integers(min_value=0, max_value=255).filter(lambda b: b != raw[at]))
    path = tmp_path / ("flip.fq.gz" if compress else "flip.fq")
    path.write_bytes(raw[:at] + bytes([new]) + raw[at + 1 :])
    try:
        got = list(read_fastx(str(path)))
    except NeuromapError as exc:
        assert str(path) in str(exc) and "\n" not in str(exc)
        return
    for rec in got:
        assert rec.name and (rec.qual is None or len(rec.qual) == len(rec.seq))
    if compress:
        assert got == records


def test_name_longer_than_sam_allows(tmp_path):
    path = tmp_path / "long.fq"
    path.write_text(f"@ok\nACGT\n+\nIIII\n@{'x' * 255}\nACGT\n+\nIIII\n")
    try:
        list(read_fastx(str(path)))
    except NeuromapError as exc:
        assert "record 2" in str(exc) and "254" in str(exc)
    else:
        raise AssertionError("a 255-character name was accepted")


sam_names = st.text(alphabet=st.characters(min_codepoint=33, max_codepoint=126, blacklist_characters="@"), min_size=1, max_size=254)


@st.composite
def mixed_reads(draw, reference):
    """Reads cut from the reference (either strand, some lowercase or with N) and random ones."""
    from neuromap.io.sam import reverse_complement

    n = draw(st.integers(min_value=1, max_value=12))
    out, used = [], set()
    for _ in range(n):
        name = draw(sam_names.filter(lambda x: x not in used))
        used.add(name)
        if draw(st.booleans()):
            start = draw(st.integers(0, len(reference) - 400))
            seq = reference[start : start + draw(st.integers(0, 400))]
            if draw(st.booleans()):
                seq = reverse_complement(seq)
            if draw(st.booleans()):
                seq = seq.lower()
        else:
            seq = draw(seqs)
        qual = draw(st.text(alphabet=st.characters(min_codepoint=33, max_codepoint=126), min_size=len(seq), max_size=len(seq)))
        out.append(Record(name, seq, qual, ""))
    return out


def test_every_valid_record_comes_out_once_intact(data_dir, tmp_path_factory):
    """Through the aligner (seeds + DP, in-process, batches of 5): each record of a valid FASTQ
    appears in the SAM once, in order, with its name, sequence and qualities (reverse-complemented
    back) intact."""
    import pysam

    from neuromap.index import open_index
    from neuromap.io.sam import reverse_complement
    from neuromap.pipeline import AlignOptions, align_records

    chr1 = next(r.seq for r in read_fastx(str(data_dir / "ref.fa")) if r.name == "chr1")[:60_000]
    index = open_index(str(data_dir / "ref.fa"))
    opts = AlignOptions(batch_size=5)
    tmp = tmp_path_factory.mktemp("prop")

    @settings(max_examples=25, deadline=None)
    @given(mixed_reads(chr1), st.booleans())
    def check(records, compress):
        data = to_fastq(records)
        path = tmp / ("r.fq.gz" if compress else "r.fq")
        path.write_bytes(gzip.compress(data) if compress else data)
        sam = tmp / "out.sam"
        header = "".join(f"@SQ\tSN:{n}\tLN:{int(l)}\n" for n, l in zip(index.names, index.contig_lengths))
        sam.write_bytes(header.encode() + b"".join(text for text, _ in align_records(batched(read_fastx(str(path)), opts.batch_size), index, opts)))
        got = []
        with pysam.AlignmentFile(str(sam), check_sq=False) as fh:
            for rec in fh:
                seq, qual = rec.query_sequence or "", pysam.qualities_to_qualitystring(rec.query_qualities) if rec.query_qualities is not None else ""
                if rec.is_reverse:
                    seq, qual = reverse_complement(seq), qual[::-1]
                got.append((rec.query_name, seq, qual))
        # htslib reads SEQ in upper case (BAM has no lower case); the SAM text keeps the case.
        # A one-base read of quality '*' (Q9) is written as '*', which SAM defines as "no
        # qualities": the format cannot tell the two apart, and htslib reads it as absent.
        assert got == [(r.name, r.seq.upper(), "" if r.qual == "*" else r.qual) for r in records]

    check()


@SETTINGS
@given(fastq_records(), st.data(), st.booleans())
def test_a_wrong_quality_length_is_an_error_naming_the_record(tmp_path, records, data, compress):
    bad = data.draw(st.integers(min_value=0, max_value=len(records) - 1))
    delta = data.draw(st.sampled_from([-1, 1, 5]))
    rec = records[bad]
    if len(rec.qual) + delta < 0:
        delta = 1
    qual = rec.qual[: len(rec.qual) + delta] if delta < 0 else rec.qual + "I" * delta
    broken = records[:bad] + [Record(rec.name, rec.seq, qual, "")] + records[bad + 1 :]
    raw = to_fastq(broken)
    path = tmp_path / ("q.fq.gz" if compress else "q.fq")
    path.write_bytes(gzip.compress(raw) if compress else raw)
    try:
        list(read_fastx(str(path)))
    except NeuromapError as exc:
        assert str(path) in str(exc)
        assert f"record {bad + 1} " in str(exc), str(exc)  # four lines a record: the broken one
    else:
        raise AssertionError("a quality string of the wrong length was accepted")


def _outcome(path):
    try:
        return list(read_fastx(str(path)))
    except NeuromapError as exc:
        return str(exc)


@SETTINGS
@given(fastq_records(), st.booleans(), st.booleans(), st.data())
def test_block_reader_agrees_with_the_line_reader(tmp_path, records, crlf, blank_lines, data):
    """FASTQ is read in blocks checked all at once, falling back to the line-by-line reader for
    anything unexpected. On valid files, cut files and files with a changed byte, both readers
    give the same records or the same error, whatever the block size."""
    from neuromap.io import fastx

    path = tmp_path / "r.fq"
    path.write_bytes(changed_or_cut(data, to_fastq(records, crlf, blank_lines), b"@+\n\r ACGT!~.\x00\xff"))
    block, fast = fastx._BLOCK, fastx._fast_records
    try:
        fastx._fast_records = lambda lines: None  # always the line reader
        expected = _outcome(path)
        fastx._fast_records = fast
        for size in (1, 5, 64, 1 << 20):
            fastx._BLOCK = size
            assert _outcome(path) == expected, size
    finally:
        fastx._BLOCK, fastx._fast_records = block, fast


def test_header_words_as_the_line_reader_splits_them(tmp_path):
    """Leading, trailing and inner whitespace in headers: the block reader names and comments
    reads as the line reader does."""
    from neuromap.io import fastx

    heads = ["@r1", "@ r2", "@r3 ", "@r4\tc1 c2", "@r5  c3  ", "@\tr6\t", "@r7\x0bc"]
    path = tmp_path / "h.fq"
    path.write_text("".join(f"{h}\nAC\n+\nII\n" for h in heads))
    fast = _outcome(path)
    original = fastx._fast_records
    try:
        fastx._fast_records = lambda lines: None
        assert _outcome(path) == fast
    finally:
        fastx._fast_records = original
    assert [r.name for r in fast] == ["r1", "r2", "r3", "r4", "r5", "r6", "r7"]
    assert [r.comment for r in fast][3:5] == ["c1 c2", "c3"]


def _batch_outcome(path, batch_size, parse):
    """Each batch of fastq_batches as (names, seqs, quals, codes, lengths) via `parse` on the
    unparsed ones (make_batch on those parsed already), or the error."""
    from neuromap.io.fastx import RawBatch, fastq_batches, make_batch

    out = []
    try:
        for batch in fastq_batches(str(path), batch_size):
            b = parse(batch) if isinstance(batch, RawBatch) else make_batch(batch)
            out.append((b.names, b.seqs, b.quals, b.codes.tolist(), b.lengths.tolist(), str(b.lengths.dtype)))
    except NeuromapError as exc:
        out.append(str(exc))
    return out


@SETTINGS
@given(fastq_records(), st.booleans(), st.data())
def test_batch_parser_agrees_with_parsing_records(tmp_path, records, blank_lines, data):
    """The workers' parser (parse_raw_batch: whole-batch checks, no Record per read) gives the
    arrays and errors that parsing the records one by one and batching them gives, on valid,
    changed and cut files, one-word and multi-word headers alike."""
    from neuromap.io.fastx import make_batch, parse_raw, parse_raw_batch

    if data.draw(st.booleans()):  # multi-word headers for some reads
        records = [Record(r.name + (" c" if data.draw(st.booleans()) else ""), r.seq, r.qual, "") for r in records]
    path = tmp_path / "r.fq"
    path.write_bytes(changed_or_cut(data, to_fastq(records, False, blank_lines), b"@+\n\r \tACGTn!~.\x00\xff"))
    size = data.draw(st.sampled_from([1, 3, 4000]))
    assert _batch_outcome(path, size, parse_raw_batch) == _batch_outcome(path, size, lambda b: make_batch(parse_raw(b)))


@SETTINGS
@given(fastq_records(), fastq_records(), st.booleans(), st.data())
def test_pair_batch_parser_agrees_with_parsing_pairs(tmp_path, records1, records2, interleaved, data):
    """parse_raw_pairs_batch gives the arrays (mates 1 then mates 2, names without /1 and /2) and
    the errors of parsing the pairs record by record, for two files and for one interleaved file,
    with mate names that agree, carry /1 and /2, or differ, and files changed or cut."""
    from neuromap.io.fastx import RawPairs, fastq_pair_batches, make_batch, parse_raw_pairs, parse_raw_pairs_batch

    n = min(len(records1), len(records2))
    suffix = data.draw(st.sampled_from(["", "/1 /2", "differ"]))
    mates1, mates2 = [], []
    for r1, r2 in zip(records1[:n], records2[:n]):
        name2 = r1.name if suffix != "differ" or data.draw(st.booleans()) else r1.name + "x"
        mates1.append(Record(r1.name + ("/1" if suffix == "/1 /2" else ""), r1.seq, r1.qual, ""))
        mates2.append(Record(name2 + ("/2" if suffix == "/1 /2" else ""), r2.seq, r2.qual, ""))
    if interleaved:
        files = [to_fastq([r for pair in zip(mates1, mates2) for r in pair])]
    else:
        files = [to_fastq(mates1), to_fastq(mates2)]
    k = data.draw(st.integers(0, len(files) - 1))
    files[k] = changed_or_cut(data, files[k], b"@+\n ACGT!/12")  # one of the files
    paths = []
    for i, content in enumerate(files):
        paths.append(tmp_path / f"r{i}.fq")
        paths[-1].write_bytes(content)
    size = data.draw(st.sampled_from([1, 2, 2000]))

    def outcome(parse):
        out = []
        try:
            for batch in fastq_pair_batches(str(paths[0]), str(paths[1]) if len(paths) > 1 else None, size):
                b = parse(batch) if isinstance(batch, RawPairs) else make_batch([r1 for r1, _ in batch] + [r2 for _, r2 in batch])
                out.append((b.names, b.seqs, b.quals, b.codes.tolist(), b.lengths.tolist(), str(b.lengths.dtype)))
        except NeuromapError as exc:
            out.append(str(exc))
        return out

    def by_records(raw):
        pairs = parse_raw_pairs(raw)
        return make_batch([r1 for r1, _ in pairs] + [r2 for _, r2 in pairs])

    assert outcome(parse_raw_pairs_batch) == outcome(by_records)


@SETTINGS
@given(fastq_records(), st.booleans(), st.booleans(), st.data())
def test_batch_cutter_gives_the_records_of_the_file(tmp_path, records, crlf, blank_lines, data):
    """fastq_batches (the main process of `align` finds where each batch's records end, reading
    blocks of any size) gives, batch after batch, the records read_fastx reads, or its error, on
    valid, changed and cut files."""
    from neuromap.io import fastx

    path = tmp_path / "r.fq"
    path.write_bytes(changed_or_cut(data, to_fastq(records, crlf, blank_lines), b"@+\n\r ACGT!~.\x00\xff"))
    expected = _outcome(path)
    batch_size = data.draw(st.sampled_from([1, 2, 3, 1000]))
    block = fastx._BLOCK
    try:
        for size in (1, 7, 64, 1 << 20):
            fastx._BLOCK = size
            got = []
            try:
                for batch in fastx.fastq_batches(str(path), batch_size):
                    if isinstance(batch, fastx.RawBatch):  # as the workers parse it, both ways
                        arrays = fastx.parse_raw_batch(batch)
                        batch = fastx.parse_raw(batch)
                        assert [list(arrays.names), list(arrays.seqs), list(arrays.quals)] == [[getattr(r, f) for r in batch] for f in ("name", "seq", "qual")]
                    got.extend(batch)
            except NeuromapError as exc:
                got = str(exc)
            assert got == expected, size
    finally:
        fastx._BLOCK = block
