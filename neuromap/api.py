"""Python API in the shape of minimap2's `mappy`:

    from neuromap import Aligner
    a = Aligner("ref.fa")                 # loads the index (builds it when missing)
    for hit in a.map("ACGT..."):
        print(hit.ctg, hit.r_st, hit.r_en, hit.strand, hit.mapq, hit.cigar, hit.NM, hit.p_correct)

    for hit in a.map(read1, read2):       # a pair: hits of both mates, hit.read_num 1 or 2
        ...

Coordinates are 0-based and half-open, as in mappy: r_st/r_en on the reference, q_st/q_en on the
read as given (for a reverse-strand hit, the clipped bases at the read's 3' end come first in the
CIGAR). The command line is a thin layer over the same pipeline.
"""

from __future__ import annotations

import re

import numpy as np
from dataclasses import dataclass
from typing import Iterable, Iterator

from neuromap.errors import NeuromapError
from neuromap.index import open_index
from neuromap.io.fastx import Record, make_batch
from neuromap.pairing import InsertModel
from neuromap.pipeline import AlignOptions, MappedBatch, map_batch, map_pairs, pair_fields
from neuromap.seed import SeedParams

_CIGAR = re.compile(r"(\d+)([MIDNSHP=X])")


@dataclass(frozen=True)
class Hit:
    ctg: str
    ctg_len: int
    r_st: int
    r_en: int
    q_st: int
    q_en: int
    strand: int  # +1 or -1
    mapq: int
    cigar: str
    NM: int
    is_primary: bool
    p_correct: float
    AS: int
    read_num: int = 1  # 1, or 2 for the second mate of a pair
    is_proper_pair: bool = False

    @property
    def cigar_str(self) -> str:  # mappy's name for the string form
        return self.cigar


def _spans(cigar: str) -> tuple[int, int, int]:
    """(reference length, leading clip, trailing clip) of a CIGAR string."""
    ops = [(int(n), op) for n, op in _CIGAR.findall(cigar)]
    ref_len = sum(n for n, op in ops if op in "MDN=X")
    lead = ops[0][0] if ops and ops[0][1] in "SH" else 0
    trail = ops[-1][0] if len(ops) > 1 and ops[-1][1] in "SH" else 0
    return ref_len, lead, trail


class Aligner:
    """An index and the options to map with it; `map` one read, `map_batch` many at once."""

    def __init__(self, reference: str, preset: str = "sr", neural: bool = True, threads: int = 1,
                 index: str | None = None, weights: str | None = None, max_candidates: int = 8,
                 insert_size: tuple[float, float] | None = None):
        """`insert_size=(mean, sd)` of pairs; without it the first `map_pairs` call with enough
        uniquely placed pairs (25) estimates it and later calls keep it."""
        if preset != "sr":
            raise NeuromapError(f"unknown preset {preset!r} (available: sr)")
        self.index = open_index(reference, index)
        self.options = AlignOptions(seed=SeedParams(max_candidates=max_candidates), neural=neural, weights_dir=weights, threads=threads)
        if neural:
            from neuromap.model_process import check_weights

            check_weights(weights)
        self.seq_names = list(self.index.names)
        self.insert = InsertModel(float(insert_size[0]), float(insert_size[1]), 0) if insert_size else None

    def map(self, seq: str, seq2: str | None = None) -> Iterator[Hit]:
        """Hits of one read (at most one, primary; none when unmapped), or with `seq2` of both
        mates of a pair (read_num 1 and 2). A single pair cannot estimate the insert size: give
        `insert_size` to the Aligner, or call `map_pairs` on a batch first."""
        if seq2 is not None:
            yield from (h for hits in self.map_pairs([(seq, seq2)])[0] for h in hits)
            return
        yield from self.map_batch([seq])[0]

    def map_pairs(self, pairs: Iterable[tuple[str, str]]) -> list[tuple[list[Hit], list[Hit]]]:
        """Hits of many pairs placed jointly: [(mate 1 hits, mate 2 hits), ...]."""
        pairs = list(pairs)
        out: list[tuple[list[Hit], list[Hit]]] = []
        size = max(1, self.options.batch_size // 2)
        for lo in range(0, len(pairs), size):
            chunk = pairs[lo : lo + size]
            records = [Record(f"q{lo + i}", p[0], None) for i, p in enumerate(chunk)] + [Record(f"q{lo + i}", p[1], None) for i, p in enumerate(chunk)]
            batch = make_batch(records)
            res, model, _ = map_pairs(batch, self.index, self.options, self.insert, np.zeros(0, np.int64))
            self.insert = self.insert or model
            proper = pair_fields(res, model).proper
            seqs = [r.seq for r in records]
            hits = [self._hits(res, r, seqs[r], 1 if r < len(chunk) else 2, bool(proper[r])) for r in range(len(records))]
            out.extend(zip(hits[: len(chunk)], hits[len(chunk) :]))
        return out

    def map_batch(self, seqs: Iterable[str]) -> list[list[Hit]]:
        """Hits of many reads in one pass through the pipeline (the network sees them batched)."""
        seqs = list(seqs)
        out: list[list[Hit]] = []
        size = self.options.batch_size
        for lo in range(0, len(seqs), size):
            chunk = seqs[lo : lo + size]
            batch = make_batch([Record(f"q{lo + i}", s, None) for i, s in enumerate(chunk)])
            res = map_batch(batch, self.index, self.options)
            out.extend(self._hits(res, r, seq) for r, seq in enumerate(chunk))
        return out

    def _hits(self, res: MappedBatch, r: int, seq: str, read_num: int = 1, proper: bool = False) -> list[Hit]:
        if not res.mapped[r]:
            return []
        ref_len, lead, trail = _spans(res.cigar[r])
        reverse = bool(res.reverse[r])
        q_st, q_en = (trail, len(seq) - lead) if reverse else (lead, len(seq) - trail)
        contig = int(res.contig[r])
        return [Hit(
            ctg=self.index.names[contig], ctg_len=int(self.index.contig_lengths[contig]),
            r_st=int(res.pos[r]), r_en=int(res.pos[r]) + ref_len, q_st=q_st, q_en=q_en,
            strand=-1 if reverse else 1, mapq=int(res.mapq[r]), cigar=res.cigar[r], NM=int(res.nm[r]),
            is_primary=True, p_correct=float(res.p_correct[r]), AS=int(res.score[r]),
            read_num=read_num, is_proper_pair=proper,
        )]
