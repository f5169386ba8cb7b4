"""Strict streaming FASTQ/FASTA reading (plain, gzip, BGZF, stdin) into ReadBatch arrays.

We parse with the standard library rather than pyfastx: pyfastx 2.3 silently drops a record whose
quality length differs from its sequence, reuses a stale quality buffer for a truncated record,
loses the first record read from a pipe and accepts a truncated gzip stream. An aligner must
never lose or invent data, so every record is checked here and a bad one stops the run with the
file, the record number and the line.
"""

from __future__ import annotations

import gzip
import io
import itertools
import operator
import os
import re
import select
import stat
import sys
import zlib
from dataclasses import dataclass
from typing import BinaryIO, Iterator

import numpy as np

from neuromap import kernels
from neuromap.errors import NeuromapError
from neuromap.texts import Texts

try:  # ISA-L's inflate: twice zlib's speed (benchmarks/README.md); zlib where it has no wheel
    from isal import igzip, igzip_threaded
    from isal.isal_zlib import error as _isal_error
except ImportError:  # isal is a dependency; this is for an install without it (tests/test_fastx.py)
    igzip = igzip_threaded = None
    _isal_error = zlib.error

# 2-bit codes: A=0 C=1 G=2 T=3; any other letter (N, IUPAC) = 4.
BASE_CODE = np.full(256, 4, dtype=np.uint8)
for _i, _b in enumerate(b"ACGT"):
    BASE_CODE[_b] = _i
    BASE_CODE[_b + 32] = _i  # lowercase
N_CODE = 4
MAX_NAME = 254  # longest QNAME SAM and BAM can hold



@dataclass
class Record:
    name: str
    seq: str
    qual: str | None  # None for FASTA
    comment: str = ""


@dataclass
class ReadBatch:
    """A batch of reads as arrays; names/seqs/quals kept as given for output (lists, or Texts
    where they come straight from FASTQ records)."""

    names: list[str] | Texts
    seqs: list[str] | Texts
    quals: list[str | None] | Texts
    codes: np.ndarray  # (n, max_len) uint8, padded with N_CODE
    lengths: np.ndarray  # (n,) int32

    def __len__(self) -> int:
        return len(self.names)


def encode(seq: str) -> np.ndarray:
    """Sequence string -> uint8 codes (A0 C1 G2 T3, anything else 4)."""
    return BASE_CODE[np.frombuffer(seq.encode("ascii", "replace"), dtype=np.uint8)]


def make_batch(records: list[Record]) -> ReadBatch:
    return _batch_of([r.name for r in records], [r.seq for r in records], [r.qual for r in records])


def _batch_of(names: list[str], seqs: list[str], quals: list) -> ReadBatch:
    lengths = np.fromiter(map(len, seqs), dtype=np.int32, count=len(seqs))
    return ReadBatch(names=names, seqs=seqs, quals=quals, codes=_codes("".join(seqs), lengths), lengths=lengths)


def _codes(joined: str, lengths: np.ndarray) -> np.ndarray:
    """(reads, longest) base codes, N-padded, from the reads' sequences joined end to end."""
    codes = np.full((len(lengths), max(int(lengths.max()) if len(lengths) else 0, 1)), N_CODE, dtype=np.uint8)
    if len(lengths) and lengths.min() == codes.shape[1]:  # all one length (no empty read)
        codes[:] = encode(joined).reshape(codes.shape)
    elif len(lengths):
        flat = encode(joined)
        rows = np.repeat(np.arange(len(lengths)), lengths)
        starts = np.cumsum(lengths) - lengths
        cols = np.arange(len(flat)) - np.repeat(starts, lengths)
        codes[rows, cols] = flat
    return codes


class _Interruptible(io.RawIOBase):
    """A pipe, FIFO or terminal, read after waits of at most 0.2 s for data. The kernel hands a
    signal sent to the process (Ctrl-C, SIGTERM) to any of its threads, while CPython runs the
    handler in the main thread, and only between bytecodes: a main thread blocked in read() on a
    pipe that stays open would never run it, and the run would hang. Between two waits it does."""

    def __init__(self, fd: int, closefd: bool):
        self.fd, self.closefd = fd, closefd

    def readable(self) -> bool:
        return True

    def fileno(self) -> int:
        return self.fd

    def readinto(self, buffer) -> int:
        while not select.select([self.fd], [], [], 0.2)[0]:
            pass
        return os.readv(self.fd, [buffer])

    def close(self) -> None:
        if not self.closed and self.closefd:
            os.close(self.fd)
        super().close()


def _waits_for_input(raw) -> bool:
    """Whether reading `raw` may block for ever (anything but a regular file)."""
    try:
        return not stat.S_ISREG(os.fstat(raw.fileno()).st_mode)
    except (OSError, ValueError, io.UnsupportedOperation):
        return False


def open_input(path: str) -> BinaryIO:
    """Open a path (or '-' for stdin) for binary reading, decompressing gzip/BGZF by magic bytes.
    A pipe, FIFO or terminal is read in short waits (_Interruptible)."""
    if path == "-":
        raw: BinaryIO = sys.stdin.buffer
        label = "<stdin>"
        if _waits_for_input(raw):
            raw = io.BufferedReader(_Interruptible(raw.fileno(), closefd=False))  # type: ignore[assignment]
    else:
        label = path
        if not os.path.exists(path):
            raise NeuromapError(f"{path}: no such file")
        if os.path.isdir(path):
            raise NeuromapError(f"{path}: is a directory, not a sequence file")
        try:
            raw = open(path, "rb")
        except OSError as exc:
            raise NeuromapError(f"{path}: cannot open: {exc.strerror}") from None
        if _waits_for_input(raw):
            fd = os.dup(raw.fileno())
            raw.close()
            raw = io.BufferedReader(_Interruptible(fd, closefd=True))  # type: ignore[assignment]
    buffered = raw if isinstance(raw, io.BufferedReader) else io.BufferedReader(raw)  # type: ignore[arg-type]
    try:
        magic = buffered.peek(2)[:2]
    except OSError as exc:
        raise NeuromapError(f"{label}: cannot read: {exc.strerror}") from None
    if magic == b"\x1f\x8b":
        return _gunzip(buffered, path)
    return buffered  # type: ignore[return-value]


def _gunzip(buffered: io.BufferedReader, path: str) -> BinaryIO:
    """The decompressed stream of gzip (or BGZF) input, whose first bytes are in `buffered`.
    A file is decompressed by ISA-L in a thread of its own, ahead of the reader (1M gzipped reads
    cut into batches: 1.75 CPU-seconds and as many of wall with zlib in the reading thread, 1.03
    and 0.75 this way). Standard input is decompressed as it is read, since a thread blocked on
    a pipe that stays open could not be stopped after an error."""
    if igzip_threaded is None:
        return gzip.GzipFile(fileobj=buffered, mode="rb")  # type: ignore[return-value]
    if path == "-":
        return igzip.IGzipFile(fileobj=buffered, mode="rb")  # type: ignore[return-value]
    try:
        return igzip_threaded.open(buffered, "rb", threads=1)  # type: ignore[return-value]
    except OSError as exc:
        raise NeuromapError(f"{path}: cannot read: {exc.strerror}") from None


def _check_seq(seq: str, label: str, recno: int, name: str) -> None:
    """Letters and '.' only: what a SAM SEQ field can carry."""
    if seq.isascii() and seq.replace(".", "").isalpha() or seq == "" or set(seq) == {"."}:
        return
    bad = next((c for c in seq if not (c.isascii() and (c.isalpha() or c == "."))), "?")
    raise NeuromapError(f"{label}: record {recno} ({name!r}): invalid character {bad!r} in sequence")


def read_fastx(path: str) -> Iterator[Record]:
    """Yield records of a FASTQ or FASTA file, checking each; errors name file, record and line."""
    yield from _reading(path, _parse)


def _reading(path: str, parse) -> Iterator:
    """What `parse(handle, label)` yields from the opened file; gzip and read errors name it."""
    label = "<stdin>" if path == "-" else path
    handle = open_input(path)
    try:
        yield from parse(handle, label)
    except (EOFError, zlib.error, _isal_error, gzip.BadGzipFile) as exc:
        raise NeuromapError(f"{label}: corrupt or truncated gzip data ({exc})") from None
    except OSError as exc:
        raise NeuromapError(f"{label}: read error: {exc}") from None
    finally:
        if handle is not sys.stdin.buffer:
            handle.close()


def _decode(line: bytes, label: str, lineno: int) -> str:
    try:
        return line.decode("ascii")
    except UnicodeDecodeError:
        raise NeuromapError(f"{label}: line {lineno}: binary or non-ASCII data") from None


def _parse(handle: BinaryIO, label: str) -> Iterator[Record]:
    lineno = 0
    # Skip leading blank lines, then the first character decides the format.
    first = b""
    for first in handle:
        lineno += 1
        if first.strip():
            break
    else:
        return  # empty input: no records
    if first.startswith(b"@"):
        yield from _parse_fastq_blocks(handle, label, first, lineno)
    elif first.startswith(b">"):
        yield from _parse_fasta(handle, label, first, lineno)
    else:
        text = first[:20].decode("ascii", "replace").strip()
        if not text.isprintable():
            raise NeuromapError(f"{label}: line {lineno}: binary data, not FASTQ or FASTA")
        raise NeuromapError(
            f"{label}: line {lineno}: not FASTQ or FASTA (expected '@' or '>' header, got {text!r})"
        )


def _split_header(header: str) -> tuple[str, str]:
    parts = header[1:].strip().split(None, 1)
    if not parts:
        return "", ""
    return parts[0], (parts[1] if len(parts) > 1 else "")


class _Resume:
    """Lines not yet parsed, then the rest of the file, behind one readline()."""

    def __init__(self, lines: list[bytes], handle: BinaryIO):
        self.lines, self.at, self.handle = lines, 0, handle

    def readline(self) -> bytes:
        if self.at < len(self.lines):
            self.at += 1
            return self.lines[self.at - 1]
        return self.handle.readline()


_SEQ_LETTERS = bytes(range(ord("A"), ord("Z") + 1)) + bytes(range(ord("a"), ord("z") + 1)) + b"."
_QUAL_LETTERS = bytes(range(ord("!"), ord("~") + 1))
_BLOCK = 1 << 20


def _parse_fastq_blocks(handle: BinaryIO, label: str, first: bytes, lineno: int) -> Iterator[Record]:
    """FASTQ in blocks of whole records, checked a block at a time (one regex over all its
    sequences, one over all its qualities, the layout record by record).

    Anything this fast path does not expect (a check that fails, a blank line, CR line ends,
    non-ASCII bytes, a truncated last record) hands the rest of the file, from the first record
    of that block, to `_parse_fastq`, which reads it line by line and names the file, record and
    line of the problem; so both paths accept and reject exactly the same input."""
    recno = 0
    carry = [first[:-1] if first.endswith(b"\n") else first]
    unterminated = not first.endswith(b"\n")  # the last line held has no newline (end of file)
    while True:
        data = handle.read(_BLOCK) if not unterminated else b""
        if data and not data.endswith(b"\n"):
            data += handle.readline()  # whole lines only
        if data:
            lines = data.split(b"\n")
            unterminated = lines[-1] != b""
            if not unterminated:
                lines.pop()
            lines = carry + lines
        else:
            lines = carry
        whole = len(lines) - len(lines) % 4
        block, carry = lines[:whole], lines[whole:]
        records = _fast_records(block) if block else []
        if records is None or (not data and carry):
            # Something odd, or a truncated last record: parse strictly from this block on.
            rest = block + carry if records is None else carry
            raw = [line + b"\n" for line in rest]
            if unterminated:
                raw[-1] = rest[-1]
            start = lineno if records is None else lineno + whole
            done = recno if records is None else recno + len(records)
            if records:
                yield from records
            yield from _parse_fastq(_Resume(raw, handle), label, None, start - 1, done)
            return
        yield from records
        recno += len(records)
        lineno += whole
        if not data:
            return


def _checked_rows(text: str) -> tuple[list[str], list[str], list[str]] | None:
    """(headers, sequences, qualities) of `text`, whole 4-line FASTQ records without the last
    newline, when the whole text passes at once what the line-by-line parser checks of each
    record (no CR, '@' and '+' lines, sequence letters, printable qualities of the sequence's
    length); None where the strict parser must look."""
    if "\r" in text:
        return None
    rows = text.split("\n")
    if len(rows) % 4:
        return None
    heads, seqs, pluses, quals = rows[0::4], rows[1::4], rows[2::4], rows[3::4]
    # Letters and '.' in sequences, printable characters in qualities (what the strict parser
    # checks), found by deleting those and looking for anything left: faster than a regex.
    if "".join(seqs).encode("ascii").translate(None, _SEQ_LETTERS) or "".join(quals).encode("ascii").translate(None, _QUAL_LETTERS):
        return None
    n = len(heads)
    if not (all(map(str.startswith, heads, itertools.repeat("@", n))) and all(map(str.startswith, pluses, itertools.repeat("+", n)))):
        return None
    if list(map(len, seqs)) != list(map(len, quals)):
        return None
    return heads, seqs, quals


def _fast_records(lines: list[bytes]) -> list[Record] | None:
    """Records of whole 4-line groups, or None where the strict parser must look."""
    try:
        rows = _checked_rows(b"\n".join(lines).decode("ascii"))
    except UnicodeDecodeError:
        return None
    if rows is None:
        return None
    out = []
    for head, seq, qual in zip(*rows):
        name = head[1:]
        words = name.split(None, 1)
        if len(words) == 1 and words[0] == name:  # one word, no surrounding space: the common case
            comment = ""
        else:
            name, comment = _split_header(head)
        if not name or len(name) > MAX_NAME:
            return None
        out.append(Record(name, seq, qual, comment))
    return out


def _parse_fastq(handle, label: str, first: bytes | None, lineno: int, recno: int = 0) -> Iterator[Record]:
    """Line by line, from `first` (the header line, which is line `lineno`), or from the next
    non-blank line when `first` is None (then `lineno` is the line before it)."""
    header_line: bytes | None = first
    readline = handle.readline
    while True:
        if header_line is None:
            header_line = readline()
            lineno += 1
            while header_line and not header_line.strip():  # blank lines between records
                header_line = readline()
                lineno += 1
            if not header_line:
                return
        recno += 1
        header = _decode(header_line, label, lineno).rstrip("\r\n")
        if not header.startswith("@"):
            raise NeuromapError(
                f"{label}: record {recno}, line {lineno}: expected a FASTQ header starting with '@'"
            )
        name, comment = _split_header(header)
        if not name:
            raise NeuromapError(f"{label}: record {recno}, line {lineno}: empty read name")
        if len(name) > MAX_NAME:
            raise NeuromapError(f"{label}: record {recno}, line {lineno}: read name longer than {MAX_NAME} characters (SAM's limit)")
        seq_line = readline()
        plus_line = readline()
        qual_line = readline()
        if not qual_line:
            raise NeuromapError(f"{label}: record {recno} ({name!r}): truncated FASTQ record")
        seq = _decode(seq_line, label, lineno + 1).rstrip("\r\n")
        plus = _decode(plus_line, label, lineno + 2).rstrip("\r\n")
        qual = _decode(qual_line, label, lineno + 3).rstrip("\r\n")
        if not plus.startswith("+"):
            raise NeuromapError(
                f"{label}: record {recno} ({name!r}), line {lineno + 2}: expected '+' separator"
            )
        if len(seq) != len(qual):
            if not qual_line.endswith(b"\n") and len(qual) < len(seq):
                raise NeuromapError(f"{label}: record {recno} ({name!r}): truncated FASTQ record")
            raise NeuromapError(
                f"{label}: record {recno} ({name!r}): sequence length {len(seq)} "
                f"!= quality length {len(qual)}"
            )
        _check_seq(seq, label, recno, name)
        if qual and (min(qual) < "!" or max(qual) > "~"):
            raise NeuromapError(f"{label}: record {recno} ({name!r}): invalid quality character")
        lineno += 3
        header_line = None
        yield Record(name, seq, qual, comment)


def _parse_fasta(handle: BinaryIO, label: str, first: bytes, lineno: int) -> Iterator[Record]:
    recno = 1
    name, comment = _split_header(_decode(first, label, lineno))
    if not name:
        raise NeuromapError(f"{label}: record 1, line {lineno}: empty sequence name")
    chunks: list[str] = []
    for raw in handle:
        lineno += 1
        line = _decode(raw, label, lineno).strip()
        if line.startswith(">"):
            seq = "".join(chunks)
            _check_seq(seq, label, recno, name)
            yield Record(name, seq, None, comment)
            recno += 1
            name, comment = _split_header(line)
            if not name:
                raise NeuromapError(f"{label}: record {recno}, line {lineno}: empty sequence name")
            chunks = []
        elif line:
            chunks.append(line)
    seq = "".join(chunks)
    _check_seq(seq, label, recno, name)
    yield Record(name, seq, None, comment)


def batched(records: Iterator[Record], batch_size: int) -> Iterator[list[Record]]:
    batch: list[Record] = []
    for rec in records:
        batch.append(rec)
        if len(batch) >= batch_size:
            yield batch
            batch = []
    if batch:
        yield batch


@dataclass
class RawBatch:
    """Whole FASTQ records as read, not yet parsed: what a worker process of `align --processes`
    parses (`parse_raw`), so that the main process only finds where the records end."""

    label: str  # the file, for error messages
    data: bytes  # the records' lines, each ending in a newline
    recno: int  # records of the file before these
    lineno: int  # lines of the file before these
    n: int  # records


def parse_raw_batch(raw: RawBatch) -> ReadBatch:
    """`make_batch(parse_raw(raw))`, the same checks and result, without a Record or a str per
    read in the common case (whole 4-line records, a name and perhaps a comment in the header,
    as Illumina's): compiled code checks the
    records and finds their fields (`plain_records`), which stay in the data as Texts. Anything
    else goes the record-by-record way, which names the problem."""
    plain = plain_records(raw.data, raw.n)
    if plain is not None:
        return _batch_of_texts(*plain)
    fields = _fast_fields(raw.data)
    return make_batch(parse_raw(raw)) if fields is None else _batch_of(*fields)


def plain_records(data: bytes, n: int) -> tuple[Texts, Texts, Texts] | None:
    """(names, sequences, qualities) of the n FASTQ records that make up `data` (with the last
    newline), as Texts of it, when every record is plain (nm_fastq_plain: a name of 1 to MAX_NAME
    characters, perhaps a comment after a space or tab, letters and '.' in the sequence,
    printable qualities as long as it, no CR, ASCII); None otherwise. What it accepts, the
    record-by-record parser (`parse_raw`) accepts with the same names, bases and qualities."""
    buf = np.frombuffer(data, dtype=np.uint8)
    name_start, name_len, seq_start, seq_len, qual_start = (np.empty(n, np.int64) for _ in range(5))
    if n == 0 or kernels.call("nm_fastq_plain", buf, len(buf), n, MAX_NAME, name_start, name_len, seq_start, seq_len, qual_start) != 0:
        return None
    return Texts(buf, name_start, name_start + name_len), Texts(buf, seq_start, seq_start + seq_len), Texts(buf, qual_start, qual_start + seq_len)


def _batch_of_texts(names: Texts, seqs: Texts, quals: Texts) -> ReadBatch:
    """A ReadBatch of Texts from one buffer: the base codes straight from the sequences' bytes."""
    lengths = (seqs.end - seqs.start).astype(np.int32)
    width = max(int(lengths.max()) if len(lengths) else 0, 1)
    codes = np.empty((len(lengths), width), dtype=np.uint8)
    kernels.call("nm_encode_rows", seqs.buf, seqs.start, seqs.end - seqs.start, len(lengths), width, BASE_CODE, N_CODE, codes)
    return ReadBatch(names=names, seqs=seqs, quals=quals, codes=codes, lengths=lengths)


_HAS_SPACE = re.compile(r"\s")


def _fast_fields(data: bytes) -> tuple[list[str], list[str], list[str]] | None:
    """(names, sequences, qualities) of a RawBatch's data when `_checked_rows` passes it and
    every header is one word of 1 to MAX_NAME characters (as `_fast_records` would name them);
    None where a record-by-record look is needed."""
    try:
        rows = _checked_rows(data[:-1].decode("ascii"))  # the data ends with its last newline
    except UnicodeDecodeError:
        return None
    if rows is None:
        return None
    heads, seqs, quals = rows
    head_lengths = np.fromiter(map(len, heads), dtype=np.int64, count=len(heads))
    if _HAS_SPACE.search("".join(heads)) or (len(heads) and (head_lengths.min() < 2 or head_lengths.max() > MAX_NAME + 1)):
        return None
    return list(map(operator.itemgetter(slice(1, None)), heads)), seqs, quals


def parse_raw(raw: RawBatch) -> list[Record]:
    """The records of a RawBatch, checked exactly as `read_fastx` checks them: the fast path, or
    where it finds anything odd the strict parser, whose errors name the file, record and line."""
    lines = raw.data.split(b"\n")
    lines.pop()  # after the last newline
    records = _fast_records(lines)
    return list(_strict_records(raw, lines)) if records is None else records


def _strict_records(raw: RawBatch, lines: list[bytes] | None = None) -> Iterator[Record]:
    """The records of a RawBatch (split into `lines` already, if given) from the line-by-line
    parser, one at a time."""
    if lines is None:
        lines = raw.data.split(b"\n")
        lines.pop()
    return _parse_fastq(_Resume([line + b"\n" for line in lines], io.BytesIO()), raw.label, None, raw.lineno, raw.recno)


@dataclass
class RawPairs:
    """Mates not yet parsed (`fastq_pair_batches`): the same records of two files, or (`second`
    None) the records of an interleaved file, each read followed by its mate."""

    first: RawBatch
    second: RawBatch | None
    paths: tuple[str, ...]  # the two files as given (read_pairs' messages), or the interleaved file's label
    recno: int  # pairs before these


def parse_raw_pairs(raw: RawPairs) -> list[tuple[Record, Record]]:
    """The pairs of a RawPairs, checked as `read_pairs` / `read_interleaved` check them. Where any
    check fails, the pairs are read again record by record in the order those read them, so the
    error raised is the one they would raise first."""
    try:
        if raw.second is None:
            records = parse_raw(raw.first)
            return [_check_mates(records[i], records[i + 1], _interleaved_where(raw.paths[0], raw.recno * 2 + i + 2))
                    for i in range(0, len(records), 2)]
        return [_check_mates(r1, r2, f"{raw.paths[0]} / {raw.paths[1]}: record {raw.recno + i + 1}")
                for i, (r1, r2) in enumerate(zip(parse_raw(raw.first), parse_raw(raw.second)))]
    except NeuromapError:
        if raw.second is None:
            return list(_interleave(_strict_records(raw.first), raw.paths[0], raw.recno * 2))
        return list(_pair_up(_strict_records(raw.first), _strict_records(raw.second), *raw.paths, raw.recno))


def parse_raw_pairs_batch(raw: RawPairs) -> ReadBatch:
    """The batch that `make_batch` makes of parse_raw_pairs(raw)'s mates 1 then mates 2 (names
    without /1 and /2), without a Record per read where every check passes at once; anything
    else, mismatched names included, goes the record-by-record way, which raises the error."""
    plain = _plain_pairs(raw)
    if plain is not None:
        return plain
    first = _fast_fields(raw.first.data)
    if raw.second is None:  # interleaved: each read followed by its mate
        halves = None if first is None or len(first[0]) % 2 else ([f[0::2] for f in first], [f[1::2] for f in first])
    else:
        second = _fast_fields(raw.second.data)
        halves = None if first is None or second is None or len(first[0]) != len(second[0]) else (first, second)
    if halves is not None:
        (names1, seqs1, quals1), (names2, seqs2, quals2) = halves
        names1, names2 = list(map(mate_name, names1)), list(map(mate_name, names2))
        if names1 == names2:
            return _batch_of(names1 + names2, seqs1 + seqs2, quals1 + quals2)
    pairs = parse_raw_pairs(raw)
    return make_batch([r1 for r1, _ in pairs] + [r2 for _, r2 in pairs])


def _plain_pairs(raw: RawPairs) -> ReadBatch | None:
    """parse_raw_pairs_batch's batch where every record is plain (`plain_records`) and the mates'
    names agree once /1 and /2 are cut (`mate_name`), from one buffer of both files' data (or
    the interleaved file's); None where the record-by-record way must look."""
    if raw.second is None:
        if raw.first.n % 2:
            return None
        plain = plain_records(raw.first.data, raw.first.n)
        order = np.concatenate([np.arange(0, raw.first.n, 2), np.arange(1, raw.first.n, 2)])  # mates 1, then mates 2
    else:
        if raw.first.n != raw.second.n:
            return None
        plain = plain_records(raw.first.data + raw.second.data, raw.first.n + raw.second.n)
        order = None
    if plain is None:
        return None
    names, seqs, quals = plain if order is None else (texts.take(order) for texts in plain)
    # mate_name: a name ending in /1 or /2 (and longer than that) loses the suffix.
    buf, end, length = names.buf, names.end, names.end - names.start
    long_enough = length > 2
    tail = end[long_enough]
    cut = np.zeros(len(names), dtype=bool)
    cut[long_enough] = (buf[tail - 2] == ord("/")) & ((buf[tail - 1] == ord("1")) | (buf[tail - 1] == ord("2")))
    names = Texts(buf, names.start, end - 2 * cut)
    half = len(names) // 2
    length = names.end - names.start
    if not kernels.call("nm_texts_equal", buf, names.start[:half], length[:half], names.start[half:], length[half:], half):
        return None
    return _batch_of_texts(names, seqs, quals)


class _Prefixed(io.RawIOBase):
    """Bytes already read, then the rest of a stream, as one stream."""

    def __init__(self, head: bytes, rest: BinaryIO):
        self.head, self.rest = memoryview(head), rest

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        if self.head.nbytes:
            n = min(len(buffer), self.head.nbytes)
            buffer[:n] = self.head[:n]
            self.head = self.head[n:]
            return n
        data = self.rest.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)


def fastq_batches(path: str, batch_size: int) -> Iterator[RawBatch | list[Record]]:
    """The reads of `path` in batches of `batch_size` (the last one smaller), as `batched(read_fastx(path))`
    gives them, but unparsed (RawBatch) while the file is plain FASTQ: four lines a record, '@'
    and '+' where they belong (found with numpy, a few milliseconds a batch). From the first batch
    that is not (FASTA, blank lines, a truncated record...) on, the records are parsed here as
    `read_fastx` parses them; errors are the same, from here or from `parse_raw`."""
    yield from _reading(path, lambda handle, label: _raw_batches(handle, label, batch_size))


def _newlines(data: bytes, limit: int, base: int, out: np.ndarray) -> int:
    """Where the first `limit` newlines of `data` are, plus `base`, into `out`; how many."""
    return kernels.call("nm_newlines", np.frombuffer(data, dtype=np.uint8), len(data), limit, base, out)


def _raw_batches(handle: BinaryIO, label: str, batch_size: int) -> Iterator[RawBatch | list[Record]]:
    need = 4 * batch_size  # lines
    pending, eof = b"", False
    recno = lineno = 0
    ends = np.empty(need, dtype=np.int64)  # where the batch's lines end (compiled memchr: nm_newlines)
    while True:
        chunks, size = [pending], len(pending)
        n_lines = _newlines(pending, need, 0, ends)
        while not eof and n_lines < need:
            chunk = handle.read(_BLOCK)
            eof = not chunk
            chunks.append(chunk)
            n_lines += _newlines(chunk, need - n_lines, size, ends[n_lines:])
            size += len(chunk)
        if n_lines == need:  # the batch's bytes joined at once (one copy); the rest stays where it was read
            data, pending = _take(chunks, int(ends[n_lines - 1]) + 1)
        else:  # fewer lines: the input has ended, and these are all of its newlines
            data, pending = b"".join(chunks), b""
            if not data:
                return
        codes = np.frombuffer(data, dtype=np.uint8)
        whole = n_lines % 4 == 0 and (n_lines == need or data.endswith(b"\n"))
        if whole and n_lines:
            starts = np.concatenate([[0], ends[: n_lines - 1] + 1])
            whole = bool((codes[starts[0::4]] == ord("@")).all() and (codes[starts[2::4]] == ord("+")).all())
        if not whole:  # not plain FASTQ from here: parse it here, strictly, batch by batch
            rest = io.BufferedReader(_Prefixed(b"".join([data, pending]), handle))  # type: ignore[arg-type]
            if recno == 0:
                yield from batched(_parse(rest, label), batch_size)
            else:
                yield from batched(_parse_fastq(rest, label, None, lineno, recno), batch_size)
            return
        yield RawBatch(label, data, recno, lineno, n_lines // 4)  # (at the end: all of data, which ends in a newline)
        recno += n_lines // 4
        lineno += n_lines


def _take(chunks: list, end: int) -> tuple[bytes, memoryview | bytes]:
    """The first `end` bytes of the chunks joined, and a view of the rest (not copied)."""
    taken = 0
    for i, chunk in enumerate(chunks):
        if taken + len(chunk) >= end:
            view = memoryview(chunk)
            data = b"".join([*chunks[:i], view[: end - taken]])
            rest = view[end - taken :]
            return data, (rest if i == len(chunks) - 1 else b"".join([rest, *chunks[i + 1 :]]))
        taken += len(chunk)
    raise ValueError(f"_take: {end} bytes asked of {taken}")


def pack(records: list[Record]) -> tuple | list[Record]:
    """Records as four newline-joined strings, which a worker process receives far faster than
    the pickled objects (no field can hold a newline). `unpack` gives them back equal."""
    quals = [r.qual for r in records]
    if None in quals and any(q is not None for q in quals):
        return records  # FASTA and FASTQ mixed: sent as they are
    return (len(records), "\n".join(r.name for r in records), "\n".join(r.seq for r in records),
            None if records and quals[0] is None else "\n".join(quals), "\n".join(r.comment for r in records))  # type: ignore[arg-type]


def unpack(packed: tuple | list[Record]) -> list[Record]:
    if isinstance(packed, list):
        return packed
    n, names, seqs, quals, comments = packed
    if n == 0:
        return []
    qual_list = [None] * n if quals is None else quals.split("\n")
    return [Record(*fields) for fields in zip(names.split("\n"), seqs.split("\n"), qual_list, comments.split("\n"))]


def mate_name(name: str) -> str:
    """A mate's read name without its /1 or /2 suffix (the shared QNAME of the pair)."""
    return name[:-2] if len(name) > 2 and name[-2] == "/" and name[-1] in "12" else name


def _check_mates(r1: Record, r2: Record, where: str) -> tuple[Record, Record]:
    n1, n2 = mate_name(r1.name), mate_name(r2.name)
    if n1 != n2:
        raise NeuromapError(f"{where}: mate names differ ({r1.name!r} vs {r2.name!r}); are the files paired and in the same order?")
    return Record(n1, r1.seq, r1.qual, r1.comment), Record(n2, r2.seq, r2.qual, r2.comment)


def _check_pair_paths(path1: str, path2: str) -> None:
    if path1 == path2 and path1 != "-":
        raise NeuromapError(f"{path1}: given as both mate files (use -p for interleaved pairs)")
    if path1 == "-" and path2 == "-":
        raise NeuromapError("stdin given for both mate files (use -p for interleaved pairs on stdin)")


def read_pairs(path1: str, path2: str) -> Iterator[tuple[Record, Record]]:
    """Mates from two files in lockstep. A name mismatch or a file that ends first is an error
    naming both files and the record: a silent mis-pairing would corrupt every later pair."""
    _check_pair_paths(path1, path2)
    yield from _pair_up(read_fastx(path1), read_fastx(path2), path1, path2, 0)


def _pair_up(it1: Iterator[Record], it2: Iterator[Record], path1: str, path2: str, recno: int) -> Iterator[tuple[Record, Record]]:
    """Mates from two record streams in lockstep, `recno` pairs into the files."""
    while True:
        r1 = next(it1, None)
        r2 = next(it2, None)
        recno += 1
        if r1 is None and r2 is None:
            return
        if r1 is None or r2 is None:
            short, long_ = (path1, path2) if r1 is None else (path2, path1)
            raise NeuromapError(f"{short} ends at record {recno - 1} but {long_} has more records: the mate files have different lengths")
        yield _check_mates(r1, r2, f"{path1} / {path2}: record {recno}")


def read_interleaved(path: str) -> Iterator[tuple[Record, Record]]:
    """Mates from one file in which each read is followed by its mate (bwa's -p)."""
    label = "<stdin>" if path == "-" else path
    yield from _interleave(read_fastx(path), label, 0)


def _interleaved_where(label: str, recno: int) -> str:
    return f"{label}: records {recno - 1} and {recno} (interleaved, -p)"


def _interleave(records: Iterator[Record], label: str, recno: int) -> Iterator[tuple[Record, Record]]:
    """Mates from a record stream in which each read is followed by its mate, `recno` records
    into the file."""
    for r1 in records:
        recno += 2
        r2 = next(records, None)
        if r2 is None:
            raise NeuromapError(f"{label}: odd number of records: record {recno - 1} ({r1.name!r}) has no mate (interleaved input, -p)")
        yield _check_mates(r1, r2, _interleaved_where(label, recno))


def _records_of(batches) -> Iterator[Record]:
    """The records of fastq_batches' batches, parsed here, one at a time."""
    for batch in batches:
        yield from _strict_records(batch) if isinstance(batch, RawBatch) else batch


def fastq_pair_batches(path1: str, path2: str | None, batch_pairs: int) -> Iterator[RawPairs | list[tuple[Record, Record]]]:
    """Pairs in batches of `batch_pairs`, as `batched(read_pairs(...))` (or, with `path2` None,
    `batched(read_interleaved(path1))`) gives them, but unparsed (RawPairs) while the files are
    plain FASTQ with as many records each: the worker processes of `align --processes` parse and
    pair them. From the first batch where that fails they are paired here, record by record."""
    if path2 is None:
        label = "<stdin>" if path1 == "-" else path1
        batches = fastq_batches(path1, 2 * batch_pairs)
        done = 0
        for batch in batches:
            if not isinstance(batch, RawBatch) or batch.n % 2:
                rest = _records_of(itertools.chain([batch], batches))
                yield from batched(_interleave(rest, label, 2 * done), batch_pairs)
                return
            yield RawPairs(batch, None, (label,), done)
            done += batch.n // 2
        return
    _check_pair_paths(path1, path2)
    batches1, batches2 = fastq_batches(path1, batch_pairs), fastq_batches(path2, batch_pairs)
    done = 0
    while True:
        b1, b2 = next(batches1, None), next(batches2, None)
        if b1 is None and b2 is None:
            return
        if not (isinstance(b1, RawBatch) and isinstance(b2, RawBatch) and b1.n == b2.n):
            rest1 = _records_of(itertools.chain([b1] if b1 is not None else [], batches1))
            rest2 = _records_of(itertools.chain([b2] if b2 is not None else [], batches2))
            yield from batched(_pair_up(rest1, rest2, path1, path2, done), batch_pairs)
            return
        yield RawPairs(b1, b2, (path1, path2), done)
        done += b1.n
