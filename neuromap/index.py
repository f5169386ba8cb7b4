"""Minimizer index of a reference: packed sequence + sorted minimizer table, memory-mapped.

On disk an index is a directory `PREFIX.nmi/` holding numpy files and `meta.json` (format version,
k, w, contigs, the reference's size/mtime and a SHA-256 of its names and sequence). It is written to
a temporary directory and renamed into place, so a reader never sees half an index, and a stale
index is swapped for the new one in one step.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import re
import shutil
import sys
from dataclasses import dataclass

import numpy as np

from neuromap import __version__, scratch
from neuromap.errors import NeuromapError
from neuromap.io.fastx import BASE_CODE, read_fastx
from neuromap.sketch import sketch_sequence

FORMAT_NAME = "neuromap-index"
FORMAT_VERSION = 1
PAD_CODE = 5  # between contigs and outside them: never matches, never seeds
DEFAULT_K = 21
DEFAULT_W = 11
_ARRAYS = ("seq", "contig_offsets", "contig_lengths", "mm_hash", "mm_pos", "mm_reverse")


@dataclass
class Reference:
    names: list[str]
    lengths: np.ndarray  # int64
    offsets: np.ndarray  # int64: start of each contig in `seq`
    seq: np.ndarray  # uint8 codes, contigs separated by one PAD_CODE
    md5: list[str]
    sha256: str


# SAM 1.6, section 1.2.1: the characters a reference sequence name may hold.
_SAM_NAME = re.compile(r"[0-9A-Za-z!#$%&+./:;?@^_|~-][0-9A-Za-z!#$%&*+./:;=?@^_|~-]*")


def index_path_for(reference: str, prefix: str | None = None) -> str:
    base = prefix if prefix is not None else reference
    return base if base.endswith(".nmi") else base + ".nmi"


def read_reference(path: str) -> Reference:
    """Parse a FASTA reference (plain or gzip) into packed codes, with checksums."""
    names: list[str] = []
    lengths: list[int] = []
    parts: list[np.ndarray] = []
    md5s: list[str] = []
    digest = hashlib.sha256()
    seen: set[str] = set()
    for number, rec in enumerate(read_fastx(path), start=1):
        if rec.qual is not None:
            raise NeuromapError(f"{path}: record {number} ({rec.name!r}): reference must be FASTA, not FASTQ")
        if rec.name in seen:
            raise NeuromapError(f"{path}: record {number}: duplicate contig name {rec.name!r}")
        seen.add(rec.name)
        if not _SAM_NAME.fullmatch(rec.name):
            raise NeuromapError(f"{path}: record {number}: contig name {rec.name!r} is not allowed in SAM (it may not start with '*' or '=', nor hold commas, quotes or brackets)")
        if not rec.seq:
            print(f"neuromap: note: {path}: contig {rec.name!r} is empty and is left out", file=sys.stderr)
            continue
        upper = rec.seq.upper().encode("ascii")
        digest.update(rec.name.encode() + b"\n" + upper + b"\n")
        md5s.append(hashlib.md5(upper).hexdigest())
        names.append(rec.name)
        lengths.append(len(upper))
        parts.append(BASE_CODE[np.frombuffer(upper, dtype=np.uint8)])
        parts.append(np.array([PAD_CODE], dtype=np.uint8))
    if not names:
        raise NeuromapError(f"{path}: reference has no sequence")
    lengths_arr = np.array(lengths, dtype=np.int64)
    offsets = np.concatenate([[0], np.cumsum(lengths_arr + 1)[:-1]]).astype(np.int64)
    return Reference(names, lengths_arr, offsets, np.concatenate(parts), md5s, digest.hexdigest())


@dataclass
class Index:
    path: str
    k: int
    w: int
    names: list[str]
    md5: list[str]
    seq: np.ndarray
    contig_offsets: np.ndarray
    contig_lengths: np.ndarray
    mm_hash: np.ndarray
    mm_pos: np.ndarray
    mm_reverse: np.ndarray
    meta: dict

    def contig_of(self, global_pos: np.ndarray) -> np.ndarray:
        return np.searchsorted(self.contig_offsets, global_pos, side="right") - 1

    def buckets(self) -> tuple[np.ndarray, int]:
        """(offsets, shift): the minimizers whose hash h has top bits h >> shift == b are
        mm_hash[offsets[b]:offsets[b + 1]]. Hashes are uniform (hash64 is a bijection), so a bucket
        holds 4 to 8 entries on one or two cache lines, where a binary search would touch twenty.
        Built on first use by counting top bits in chunks (one pass over the table), kept in
        memory: uint32 offsets, under one byte per minimizer (about 0.5 GB for a human genome)."""
        cached = self.__dict__.get("_buckets")
        if cached is None:
            bits = 2 * self.k
            n = len(self.mm_hash)
            b = min(bits, max(1, n.bit_length() - 3))
            shift = bits - b
            counts = np.zeros(1 << b, dtype=np.int64)
            step = 1 << 24
            for lo in range(0, n, step):
                top = (np.asarray(self.mm_hash[lo : lo + step]) >> np.uint64(shift)).astype(np.intp)
                counts += np.bincount(top, minlength=1 << b)
            offsets = np.zeros((1 << b) + 1, dtype=np.uint32 if n < 2**32 else np.int64)
            offsets[1:] = np.cumsum(counts)
            cached = self.__dict__["_buckets"] = (offsets, shift)
        return cached


def _reference_stat(path: str) -> dict:
    st = os.stat(path)
    return {"path": os.path.abspath(path), "size": st.st_size, "mtime_ns": st.st_mtime_ns}


def _file_sha256(path: str) -> str:
    """Checksum of the file's bytes as they are (gzip included): hashing runs at disk speed,
    where parsing the sequence for its checksum (read_reference) takes about 30 s a Gb."""
    digest = hashlib.sha256()
    try:
        with open(path, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                digest.update(block)
    except OSError as exc:
        raise NeuromapError(f"{path}: cannot read: {exc.strerror or exc}") from None
    return digest.hexdigest()


def _save(path: str, array: np.ndarray) -> None:
    """np.save's format (version 1.0 header), but the data goes through Python's own write, so a
    Ctrl-C or SIGTERM during a long write is raised as itself (numpy's tofile turns it into a
    TypeError) and a full disk as OSError."""
    array = np.ascontiguousarray(array)
    with open(path, "wb") as fh:
        np.lib.format.write_array_header_1_0(fh, np.lib.format.header_data_from_array_1_0(array))
        fh.write(memoryview(array).cast("B"))


def build_index(reference: str, out: str | None = None, k: int = DEFAULT_K, w: int = DEFAULT_W, show_progress: bool = False) -> str:
    """Build the index of `reference`; returns the index directory path. `show_progress` draws a
    bar on stderr over the bases sketched."""
    if not 5 <= k <= 31:
        raise NeuromapError(f"k must be between 5 and 31 (got {k})")
    if not 1 <= w <= 255:
        raise NeuromapError(f"w must be between 1 and 255 (got {w})")
    if reference != "-" and not os.path.isfile(reference):
        raise NeuromapError(f"{reference}: no such file")
    target = index_path_for(reference, out)
    parent = os.path.dirname(os.path.abspath(target))
    if not os.path.isdir(parent):
        raise NeuromapError(f"{target}: output directory {parent} does not exist")
    stat_before = _reference_stat(reference) if reference != "-" else None
    file_sha256 = _file_sha256(reference) if reference != "-" else None
    ref = read_reference(reference)
    if stat_before is not None and _reference_stat(reference) == stat_before:
        stat_before["file_sha256"] = file_sha256  # the bytes that were parsed (unchanged meanwhile)
    from tqdm import tqdm

    with tqdm(total=len(ref.seq), disable=not show_progress, unit="bp", unit_scale=True, desc="indexing", file=sys.stderr) as bar:
        positions, hashes, reverse = sketch_sequence(ref.seq, k, w, progress=bar.update)
    order = np.lexsort((positions, hashes))  # by hash, then position: deterministic
    pos_dtype = np.uint32 if len(ref.seq) < 2**32 else np.int64
    meta = {
        "format": FORMAT_NAME,
        "version": FORMAT_VERSION,
        "neuromap_version": __version__,
        "k": k,
        "w": w,
        "reference": {**(stat_before or {}), "sha256": ref.sha256},
        "contigs": [
            {"name": n, "length": int(l), "offset": int(o), "md5": m}
            for n, l, o, m in zip(ref.names, ref.lengths, ref.offsets, ref.md5)
        ],
        "n_minimizers": int(len(order)),
    }
    try:
        tmp = scratch.make(parent, os.path.basename(target) + ".tmp-")
    except OSError as exc:
        raise NeuromapError(f"{target}: cannot write the index in {parent}: {exc.strerror or exc}") from None
    try:
        _save(os.path.join(tmp, "seq.npy"), ref.seq)
        _save(os.path.join(tmp, "contig_offsets.npy"), ref.offsets)
        _save(os.path.join(tmp, "contig_lengths.npy"), ref.lengths)
        _save(os.path.join(tmp, "mm_hash.npy"), hashes[order])
        _save(os.path.join(tmp, "mm_pos.npy"), positions[order].astype(pos_dtype))
        _save(os.path.join(tmp, "mm_reverse.npy"), reverse[order])
        with open(os.path.join(tmp, "meta.json"), "w") as fh:
            json.dump(meta, fh, indent=1)
        _install(tmp, target)
        scratch.forget(tmp)
    except BaseException as exc:
        scratch.remove(tmp)
        if isinstance(exc, OSError):  # a full disk, a file-size limit, a quota
            raise NeuromapError(f"{target}: cannot write the index: {exc.strerror or exc}") from None
        raise
    return target


def _same_index(a: str, b: str) -> bool:
    try:
        with open(os.path.join(a, "meta.json")) as fa, open(os.path.join(b, "meta.json")) as fb:
            ma, mb = json.load(fa), json.load(fb)
    except (OSError, ValueError):
        return False
    keys = ("format", "version", "k", "w")
    return all(ma.get(k) == mb.get(k) for k in keys) and ma["reference"]["sha256"] == mb["reference"]["sha256"]


def _install(tmp: str, target: str) -> None:
    """Move a finished index into place. Several processes may build the same index at once
    (pipelines that start many jobs on one reference), so there is no look-then-act here: the
    rename itself is the test. Where `target` is missing, the rename installs ours. Where it holds
    the same index (another process was first), ours is dropped and theirs kept untouched. Where
    it holds a different (stale) one, the two are swapped in one step (Linux's RENAME_EXCHANGE),
    so readers never find the path missing; elsewhere the old one is moved aside first."""
    for _ in range(10):
        try:
            os.rename(tmp, target)  # fails where target is a directory with files in it
            return
        except OSError as exc:
            if not os.path.isdir(target):
                if os.path.lexists(target) or exc.errno not in (errno.ENOTEMPTY, errno.EEXIST):
                    raise  # a file in the way, a read-only directory...
                continue  # it went away between the rename and the look (another replacer)
        if _same_index(tmp, target):
            shutil.rmtree(tmp, ignore_errors=True)
            return
        if not _only_index_files(target):
            raise OSError(errno.EEXIST, "the directory is in the way and holds files that are not a neuromap index's")
        if _exchange(tmp, target):
            shutil.rmtree(tmp, ignore_errors=True)  # tmp now holds the stale index
            return
        old = target + f".old-{os.getpid()}"
        try:
            os.rename(target, old)
        except FileNotFoundError:
            continue
        try:
            os.rename(tmp, target)
        finally:
            shutil.rmtree(old, ignore_errors=True)
        return
    raise OSError(errno.EBUSY, "other processes keep replacing the index")


def _only_index_files(path: str) -> bool:
    """True where every entry of the directory is a file an index holds (a stale, old-format or
    damaged index may be replaced; someone's own directory of the same name may not)."""
    ours = {name + ".npy" for name in _ARRAYS} | {"meta.json"}
    try:
        return set(os.listdir(path)) <= ours
    except FileNotFoundError:
        return True
    except OSError:
        return False


def _exchange(a: str, b: str) -> bool:
    """Swap two paths atomically (Linux renameat2 with RENAME_EXCHANGE); False where the system,
    the C library or the file system cannot."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):  # a C library older than glibc 2.28, or musl
        return False
    renameat2.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    at_fdcwd, rename_exchange = -100, 2
    return renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0


def load_index(path: str) -> Index:
    meta_path = os.path.join(path, "meta.json")
    if not os.path.isdir(path):
        raise NeuromapError(f"{path}: no such index")
    try:
        with open(meta_path) as fh:
            meta = json.load(fh)
    except (OSError, ValueError):
        raise NeuromapError(f"{path}: not a neuromap index (missing or unreadable meta.json)") from None
    if meta.get("format") != FORMAT_NAME:
        raise NeuromapError(f"{path}: not a neuromap index")
    if meta.get("version") != FORMAT_VERSION:
        raise NeuromapError(
            f"{path}: index format version {meta.get('version')} is not supported "
            f"(this neuromap reads version {FORMAT_VERSION}); rebuild it with `neuromap index`"
        )
    arrays = {}
    for name in _ARRAYS:
        try:
            arrays[name] = np.load(os.path.join(path, name + ".npy"), mmap_mode="r")
        except (OSError, ValueError) as exc:
            raise NeuromapError(f"{path}: index file {name}.npy is missing or truncated ({exc}); rebuild it") from None
    contigs = meta["contigs"]
    n_mm = meta["n_minimizers"]
    if (
        len(arrays["contig_offsets"]) != len(contigs)
        or len(arrays["mm_hash"]) != n_mm
        or len(arrays["mm_pos"]) != n_mm
        or len(arrays["mm_reverse"]) != n_mm
    ):
        raise NeuromapError(f"{path}: index files are inconsistent with meta.json; rebuild it")
    return Index(
        path=path,
        k=int(meta["k"]),
        w=int(meta["w"]),
        names=[c["name"] for c in contigs],
        md5=[c["md5"] for c in contigs],
        seq=arrays["seq"],
        contig_offsets=np.asarray(arrays["contig_offsets"], dtype=np.int64),
        contig_lengths=np.asarray(arrays["contig_lengths"], dtype=np.int64),
        mm_hash=arrays["mm_hash"],
        mm_pos=arrays["mm_pos"],
        mm_reverse=arrays["mm_reverse"],
        meta=meta,
    )


def reference_matches(index: Index, reference: str) -> bool:
    """True when `reference` is the sequence the index was built from.

    Size and mtime decide quickly. When the mtime moved (a copy, a pipeline staging its inputs),
    the same bytes decide (the file's checksum, at disk speed); when those differ too, the
    sequence's checksum (the same contigs written otherwise, in lowercase or with other line widths, match).
    """
    recorded = index.meta["reference"]
    try:
        now = _reference_stat(reference)
    except OSError:
        raise NeuromapError(f"{reference}: no such file") from None
    if now["size"] == recorded.get("size") and now["mtime_ns"] == recorded.get("mtime_ns"):
        return True
    if now["size"] == recorded.get("size") and recorded.get("file_sha256") and _file_sha256(reference) == recorded["file_sha256"]:
        return True
    return read_reference(reference).sha256 == recorded["sha256"]


def open_index(reference: str, index_path: str | None = None, log=None) -> Index:
    """The index to align against: found next to the reference, built when missing, rebuilt
    when stale; an explicit `index_path` that does not match the reference is an error."""
    log = log or (lambda msg: print(f"neuromap: {msg}", file=sys.stderr))
    if not os.path.exists(reference):
        raise NeuromapError(f"{reference}: no such file")
    explicit = index_path is not None
    path = index_path_for(reference, index_path) if explicit else index_path_for(reference)
    if not os.path.exists(path):
        if explicit:
            raise NeuromapError(f"{path}: no such index")
        log(f"note: no index at {path}; building it")
        build_index(reference)
        return load_index(path)
    index = load_index(path)
    if reference_matches(index, reference):
        return index
    if explicit:
        raise NeuromapError(
            f"{path}: index was built from a different reference than {reference} "
            f"(checksum differs); rebuild it with `neuromap index {reference}`"
        )
    log(f"note: {reference} changed since {path} was built; rebuilding the index")
    build_index(reference, k=index.k, w=index.w)
    return load_index(path)
