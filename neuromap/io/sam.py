"""SAM text records and headers; sorted, indexed BAM through htslib (pysam); atomic output."""

from __future__ import annotations

import os
import queue
import sys
import threading
from typing import TYPE_CHECKING

import numpy as np

from neuromap import __version__, kernels, scratch
from neuromap.errors import NeuromapError, OutputClosed
from neuromap.texts import Texts

if TYPE_CHECKING:
    from neuromap.index import Index
    from neuromap.io.fastx import ReadBatch
    from neuromap.pipeline import MappedBatch, PairFields

_COMPLEMENT = str.maketrans(
    "ACGTUNRYSWKMBDHVacgtunryswkmbdhv", "TGCAANYRSWMKVHDBtgcaanyrswmkvhdb"
)


def reverse_complement(seq: str) -> str:
    return seq.translate(_COMPLEMENT)[::-1]


def format_sam(batch: ReadBatch, res: MappedBatch, index: Index, read_group_id: str | None, pairs: PairFields | None = None) -> str:
    """SAM text for one batch, in input order (for pairs: mate 1 then mate 2 of each pair)."""
    return sam_records(batch, res, index, read_group_id, pairs).decode()


def sam_records(batch: ReadBatch, res: MappedBatch, index: Index, read_group_id: str | None, pairs: PairFields | None = None) -> bytes:
    """format_sam's text as UTF-8 bytes, as written out (no decoding and encoding again).
    The numbers of every record are worked out here over whole arrays, and the text is written by
    compiled code (nm_format_sam, which releases the GIL): the per-read Python left is joining
    each string field into one buffer."""
    n_reads = len(batch)
    if n_reads == 0:
        return b""
    mapped = np.ascontiguousarray(res.mapped, dtype=np.bool_)
    reverse = res.reverse.astype(bool)
    contig = res.contig.astype(np.int64)
    position = res.pos.astype(np.int64)
    flag = np.where(mapped, 0, 4) | np.where(mapped & reverse, 16, 0)
    rname = np.where(mapped, contig, -1)
    pos = np.where(mapped, position + 1, 0)
    rnext = np.full(n_reads, -1, np.int64)
    pnext = np.zeros(n_reads, np.int64)
    tlen = np.zeros(n_reads, np.int64)
    mate = np.full(n_reads, -1, np.int64)
    if pairs is None:
        order = np.arange(n_reads, dtype=np.int64)
    else:
        order = np.stack([np.arange(pairs.n), np.arange(pairs.n) + pairs.n], axis=1).ravel().astype(np.int64)
        r = np.arange(n_reads)
        first = r < pairs.n
        m = (r + pairs.n) % n_reads
        mate_mapped = mapped[m]
        flag |= 1 | np.where(first, 0x40, 0x80) | np.where(pairs.proper, 2, 0)
        flag |= np.where(mate_mapped & reverse[m], 0x20, 0) | np.where(mate_mapped, 0, 8)
        # An unmapped read with a mapped mate is placed at its mate (SAM spec).
        rname = np.where(~mapped & mate_mapped, contig[m], rname)
        pos = np.where(~mapped & mate_mapped, position[m] + 1, pos)
        same = mate_mapped & (contig[m] == rname)
        rnext = np.where(mate_mapped, np.where(same, -2, contig[m]), np.where(mapped, -2, -1))
        pnext = np.where(mate_mapped, position[m] + 1, np.where(mapped, pos, 0))
        mate = np.where(mate_mapped, m, -1)
        end = pairs.end.astype(np.int64)
        leftmost = (position < position[m]) | ((position == position[m]) & first)
        span = np.maximum(end, end[m]) - np.minimum(position, position[m])
        tlen = np.where(mapped & same, np.where(leftmost, span, -span), 0)
    # SEQ and QUAL as given; the compiled formatter reverse complements those of reverse-strand
    # reads. Text that is not ASCII (possible only through the Python API) is turned here, by
    # characters rather than bytes.
    quals = batch.quals if isinstance(batch.quals, Texts) or None not in batch.quals else [q or "" for q in batch.quals]  # FASTA: no QUAL
    flip = np.ascontiguousarray(mapped & reverse)
    seq_field, qual_field = _text_field(batch.seqs, n_reads), _text_field(quals, n_reads)
    if not (_is_ascii(seq_field[0]) and _is_ascii(qual_field[0])):
        seqs, oriented_quals = _oriented_text(batch, res)
        seq_field, qual_field = _text_field(seqs, n_reads), _text_field(oriented_quals, n_reads)
        flip = np.zeros(n_reads, np.bool_)
    # P(correct) as text once per distinct value (bit for bit: -0.0 stays apart from 0.0), not
    # once per read.
    distinct, which = np.unique(res.p_correct.astype(np.float64).view(np.int64), return_inverse=True)
    pc_text = Texts.of([f"{v:.6g}" for v in distinct.view(np.float64).tolist()]).take(which.ravel())
    names, cigars, mds, pcs = (_text_field(values, n_reads) for values in (batch.names, res.cigar, res.md, pc_text))
    fields = [names, cigars, mds, seq_field, qual_field, pcs]
    contigs = _text_field(index.names, len(index.names))
    rg = np.frombuffer(f"\tRG:Z:{read_group_id}".encode() if read_group_id else b"", np.uint8)
    longest_contig = max((len(name.encode()) for name in index.names), default=0)
    text_bytes = sum(int((end - start).sum()) + n_reads for _, start, end in fields) + int((cigars[2] - cigars[1]).sum())  # + mates' CIGARs
    cap = text_bytes + n_reads * (2 * longest_contig + len(rg) + 512)
    out = np.empty(cap, np.uint8)
    ints = [np.ascontiguousarray(a, dtype=np.int64) for a in (flag, rname, pos, res.mapq, rnext, pnext, tlen, mate, res.nm, res.score, res.sub_score)]
    length = kernels.call("nm_format_sam", len(order), order, mapped, *ints, flip, _COMPLEMENT_TABLE, *[a for field in fields for a in field],
                          *contigs, rg, len(rg), out, cap)
    if length < 0:
        raise RuntimeError("format_sam: the SAM text outgrew its bound")
    return out[:length].tobytes()


_COMPLEMENT_TABLE = np.frombuffer(reverse_complement(bytes(range(128)).decode())[::-1].encode() + bytes(range(128, 256)), np.uint8).copy()


def _is_ascii(buf: np.ndarray) -> bool:
    return not len(buf) or int(buf.max()) < 128


def _text_field(values, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """`n` strings as nm_format_sam takes them: a buffer, and where each starts and ends in it.
    Texts (the reads' fields as read) are there already; a list is joined (`_field_buffer`)."""
    if isinstance(values, Texts):
        return values.buf, values.start, values.end
    buf, offsets = _field_buffer(values, n)
    return buf, offsets[:-1], offsets[1:] - 1


def _field_buffer(values: list[str], n: int) -> tuple[np.ndarray, np.ndarray]:
    """`n` strings (none holding a newline: names, CIGARs, bases, qualities) as one buffer of
    newline-terminated fields and the offset where each starts (n + 1 of them)."""
    buf = np.frombuffer(("\n".join(values) + "\n").encode(), np.uint8) if n else np.zeros(0, np.uint8)
    offsets = np.empty(n + 1, np.int64)
    kernels.call("nm_field_offsets", buf, len(buf), n, offsets)
    return buf, offsets


def _oriented_text(batch: ReadBatch, res: MappedBatch) -> tuple[list[str], list[str]]:
    """SEQ and QUAL of every read as SAM writes them ("*" when empty or absent), reverse
    complemented and reversed for reads mapped to the reverse strand: all of those in one
    translate and one reversal of their joined text, not one call per read."""
    seqs = [seq or "*" for seq in batch.seqs]
    quals = [qual or "*" for qual in batch.quals]
    rows = np.flatnonzero(res.mapped & res.reverse).tolist()
    if rows:
        # Reversing the newline-joined text reverses each read and their order; "*" stays "*".
        flipped_seqs = reverse_complement("\n".join([seqs[r] for r in rows])).split("\n")[::-1]
        flipped_quals = "\n".join([quals[r] for r in rows])[::-1].split("\n")[::-1]
        for r, seq, qual in zip(rows, flipped_seqs, flipped_quals):
            seqs[r], quals[r] = seq, qual
    return seqs, quals


def parse_read_group(text: str) -> tuple[str, str]:
    """`-R '@RG\\tID:x\\tSM:y'` -> (header line, ID). Accepts literal tabs or '\\t'."""
    line = text.replace("\\t", "\t")
    fields = line.split("\t")
    if fields[0] != "@RG":
        raise NeuromapError(f"read group must start with '@RG' (got {text!r})")
    ids = [f[3:] for f in fields[1:] if f.startswith("ID:")]
    if len(ids) != 1 or not ids[0]:
        raise NeuromapError(f"read group needs exactly one non-empty ID field (got {text!r})")
    for f in fields[1:]:
        if len(f) < 4 or f[2] != ":":
            raise NeuromapError(f"read group field {f!r} is not of the form TAG:value")
    return line, ids[0]


def header_text(names, lengths, md5s, command_line: str, read_group: str | None, sort_order: str = "unsorted") -> str:
    lines = [f"@HD\tVN:1.6\tSO:{sort_order}"]
    for name, length, md5 in zip(names, lengths, md5s):
        lines.append(f"@SQ\tSN:{name}\tLN:{int(length)}\tM5:{md5}")
    if read_group:
        lines.append(read_group)
    cl = command_line.replace("\t", " ").replace("\n", " ")
    lines.append(f"@PG\tID:neuromap\tPN:neuromap\tVN:{__version__}\tCL:{cl}")
    return "\n".join(lines) + "\n"


class SamSink:
    """Where SAM text goes: stdout, or `path` (.sam, or .bam sorted + indexed), atomically.

    The writing is done by a thread of its own, `queued` batches behind: a reader that pauses
    (`| samtools sort` sorting a full buffer, a slow disk) then holds up that thread, not the one
    that hands batches to the workers. A failed write is reported by the next `write` or by
    `commit`, so a run never ends as complete with output lost."""

    def __init__(self, path: str | None, threads: int = 1, queued: int = 8):
        self.path = path
        self.threads = max(1, threads)
        self._tmp_dir: str | None = None
        self._queue: queue.Queue = queue.Queue(queued)
        self._failed: BaseException | None = None
        self._writer: threading.Thread | None = None
        if path is None or path == "-":
            self.path = None
            self._fh = sys.stdout.buffer
            return
        parent = os.path.dirname(os.path.abspath(path)) or "."
        if not os.path.isdir(parent):
            raise NeuromapError(f"{path}: output directory {parent} does not exist")
        if os.path.isdir(path):
            raise NeuromapError(f"{path}: is a directory")
        self.is_bam = path.lower().endswith(".bam")
        try:  # removed by discard(), or, should the run end before that (Ctrl-C just now), at exit
            self._tmp_dir = scratch.make(parent, f".{os.path.basename(path)}.tmp-")
            self._tmp_sam = os.path.join(self._tmp_dir, "unsorted.sam")
            self._fh = open(self._tmp_sam, "wb")
        except OSError as exc:
            if self._tmp_dir is not None:
                scratch.remove(self._tmp_dir)
                self._tmp_dir = None
            raise NeuromapError(f"{path}: cannot write to {parent}: {exc.strerror}") from None

    def write(self, text: bytes) -> None:
        """SAM text, as UTF-8 bytes (the workers' form: pipeline.align_records), queued for the
        writing thread; waits while `queued` batches are already waiting."""
        if not text:
            return
        if self._writer is None:
            self._writer = threading.Thread(target=self._drain, name="neuromap-writer", daemon=True)
            self._writer.start()
        self._put(text)

    def _put(self, item) -> None:
        while True:
            self._check()
            try:
                self._queue.put(item, timeout=0.1)
                return
            except queue.Full:
                pass

    def _check(self) -> None:
        """Raise, here, what the writing thread met."""
        exc = self._failed
        if exc is None:
            return
        if isinstance(exc, BrokenPipeError):
            raise OutputClosed() from None
        if isinstance(exc, OSError):
            raise NeuromapError(f"{self.path or '<stdout>'}: write failed: {exc.strerror or exc}") from None
        raise exc

    def _drain(self) -> None:
        """The writing thread. A buffered writer handed more than its buffer returns what one
        write(2) took, which a pipe closed midway (`| head`, a reader that died) cuts short
        without an error: the rest is written until it is all out or the write fails."""
        while True:
            text = self._queue.get()
            if text is None:
                return
            try:
                view = memoryview(text)
                while view:
                    view = view[self._fh.write(view):]
            except BaseException as exc:  # noqa: BLE001 - reported by the next write or commit
                self._failed = exc
                return

    def _finish_writing(self) -> None:
        """Wait until everything queued is written; raise what went wrong."""
        if self._writer is not None:
            self._put(None)
            self._writer.join()
            self._writer = None
        self._check()

    def commit(self) -> None:
        """Finish the output; only now does `path` appear."""
        try:
            self._finish_writing()
        except BaseException:
            self.discard()
            raise
        if self.path is None:
            try:
                self._fh.flush()
            except BrokenPipeError:
                raise OutputClosed() from None
            return
        try:
            self._fh.close()
            if self.is_bam:
                self._sort_and_index()
            else:
                os.replace(self._tmp_sam, self.path)
        except OSError as exc:
            raise NeuromapError(f"{self.path}: write failed: {exc.strerror or exc}") from None
        finally:
            self.discard()

    def _sort_and_index(self) -> None:
        """The finished SAM, coordinate-sorted into `path` with its .bai (samtools through pysam)."""
        # Imported here: the worker processes never sort, and a run writing SAM does not pay the
        # import (about 50-80 ms at the end of every run on 2 cores).
        import pysam

        tmp_bam = os.path.join(self._tmp_dir, "sorted.bam")
        try:
            pysam.sort("-@", str(self.threads), "-o", tmp_bam, "-T", os.path.join(self._tmp_dir, "sort"), self._tmp_sam, catch_stdout=False)
            pysam.index(tmp_bam)
        except pysam.utils.SamtoolsError as exc:
            raise NeuromapError(f"{self.path}: writing BAM failed: {str(exc).strip().splitlines()[-1]}") from None
        os.replace(tmp_bam, self.path)
        os.replace(tmp_bam + ".bai", self.path + ".bai")

    def discard(self) -> None:
        """Remove temporary files (after an error or interruption, or after commit). What is still
        queued is dropped; a write under way in the writing thread (a daemon) is left to end with
        the process."""
        if self._writer is not None:
            while True:  # empty the queue, so that the writing thread takes its stop
                try:
                    self._queue.get_nowait()
                except queue.Empty:
                    break
            try:
                self._queue.put_nowait(None)
            except queue.Full:
                pass
            self._writer = None
        if self._tmp_dir is not None:
            try:
                if not self._fh.closed:
                    self._fh.close()
            except OSError:
                pass
            scratch.remove(self._tmp_dir)
            self._tmp_dir = None
