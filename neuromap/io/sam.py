"""SAM text records and headers; sorted, indexed BAM through htslib (pysam); atomic output."""

from __future__ import annotations

import os
import shutil
import sys
import tempfile

import pysam

from neuromap import __version__
from neuromap.errors import NeuromapError, OutputClosed

_COMPLEMENT = str.maketrans(
    "ACGTUNRYSWKMBDHVacgtunryswkmbdhv", "TGCAANYRSWMKVHDBtgcaanyrswmkvhdb"
)


def reverse_complement(seq: str) -> str:
    return seq.translate(_COMPLEMENT)[::-1]


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
    """Where SAM text goes: stdout, or `path` (.sam, or .bam sorted + indexed), atomically."""

    def __init__(self, path: str | None, threads: int = 1):
        self.path = path
        self.threads = max(1, threads)
        self._tmp_dir: str | None = None
        if path is None or path == "-":
            self.path = None
            self._fh = sys.stdout
            return
        parent = os.path.dirname(os.path.abspath(path)) or "."
        if not os.path.isdir(parent):
            raise NeuromapError(f"{path}: output directory {parent} does not exist")
        if os.path.isdir(path):
            raise NeuromapError(f"{path}: is a directory")
        self.is_bam = path.lower().endswith(".bam")
        try:
            self._tmp_dir = tempfile.mkdtemp(prefix=f".{os.path.basename(path)}.tmp-", dir=parent)
        except OSError as exc:
            raise NeuromapError(f"{path}: cannot write to {parent}: {exc.strerror}") from None
        self._tmp_sam = os.path.join(self._tmp_dir, "unsorted.sam")
        self._fh = open(self._tmp_sam, "w")

    def write(self, text: str) -> None:
        try:
            self._fh.write(text)
        except OSError as exc:
            if isinstance(exc, BrokenPipeError):
                raise OutputClosed() from None
            raise NeuromapError(f"{self.path or '<stdout>'}: write failed: {exc.strerror or exc}") from None

    def commit(self) -> None:
        """Finish the output; only now does `path` appear."""
        if self.path is None:
            try:
                self._fh.flush()
            except BrokenPipeError:
                raise OutputClosed() from None
            return
        try:
            self._fh.close()
            if self.is_bam:
                tmp_bam = os.path.join(self._tmp_dir, "sorted.bam")
                pysam.sort(
                    "-@", str(self.threads), "-o", tmp_bam, "-T", os.path.join(self._tmp_dir, "sort"), self._tmp_sam,
                    catch_stdout=False,
                )
                pysam.index(tmp_bam)
                os.replace(tmp_bam, self.path)
                os.replace(tmp_bam + ".bai", self.path + ".bai")
            else:
                os.replace(self._tmp_sam, self.path)
        except pysam.utils.SamtoolsError as exc:
            raise NeuromapError(f"{self.path}: writing BAM failed: {str(exc).strip().splitlines()[-1]}") from None
        except OSError as exc:
            raise NeuromapError(f"{self.path}: write failed: {exc.strerror or exc}") from None
        finally:
            self.discard()

    def discard(self) -> None:
        """Remove temporary files (after an error or interruption, or after commit)."""
        if self._tmp_dir is not None:
            try:
                if not self._fh.closed:
                    self._fh.close()
            except OSError:
                pass
            shutil.rmtree(self._tmp_dir, ignore_errors=True)
            self._tmp_dir = None
