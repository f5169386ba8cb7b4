"""Python API in the shape of minimap2's `mappy`:

    from neuromap import Aligner
    a = Aligner("ref.fa")                 # loads the index (builds it when missing)
    for hit in a.map("ACGT..."):
        print(hit.ctg, hit.r_st, hit.r_en, hit.strand, hit.mapq, hit.cigar, hit.NM, hit.p_correct)

Coordinates are 0-based and half-open, as in mappy: r_st/r_en on the reference, q_st/q_en on the
read as given (for a reverse-strand hit, the clipped bases at the read's 3' end come first in the
CIGAR). The command line is a thin layer over the same pipeline.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Iterable, Iterator

from neuromap.errors import NeuromapError
from neuromap.index import open_index
from neuromap.io.fastx import Record, make_batch
from neuromap.pipeline import AlignOptions, map_batch
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
                 index: str | None = None, weights: str | None = None, max_candidates: int = 8):
        if preset != "sr":
            raise NeuromapError(f"unknown preset {preset!r} (available: sr)")
        self.index = open_index(reference, index)
        self.options = AlignOptions(seed=SeedParams(max_candidates=max_candidates), neural=neural, weights_dir=weights, threads=threads)
        if neural:
            from neuromap.model import check_weights

            check_weights(weights)
        self.seq_names = list(self.index.names)

    def map(self, seq: str, seq2: str | None = None) -> Iterator[Hit]:
        """Hits of one read (at most one, primary; none when unmapped)."""
        if seq2 is not None:
            raise NeuromapError("paired-end mapping is not available yet: map each mate alone")
        yield from self.map_batch([seq])[0]

    def map_batch(self, seqs: Iterable[str]) -> list[list[Hit]]:
        """Hits of many reads in one pass through the pipeline (the network sees them batched)."""
        seqs = list(seqs)
        out: list[list[Hit]] = []
        size = self.options.batch_size
        for lo in range(0, len(seqs), size):
            chunk = seqs[lo : lo + size]
            batch = make_batch([Record(f"q{lo + i}", s, None) for i, s in enumerate(chunk)])
            res = map_batch(batch, self.index, self.options)
            for r, seq in enumerate(chunk):
                if not res.mapped[r]:
                    out.append([])
                    continue
                ref_len, lead, trail = _spans(res.cigar[r])
                reverse = bool(res.reverse[r])
                q_st, q_en = (trail, len(seq) - lead) if reverse else (lead, len(seq) - trail)
                contig = int(res.contig[r])
                out.append([Hit(
                    ctg=self.index.names[contig], ctg_len=int(self.index.contig_lengths[contig]),
                    r_st=int(res.pos[r]), r_en=int(res.pos[r]) + ref_len, q_st=q_st, q_en=q_en,
                    strand=-1 if reverse else 1, mapq=int(res.mapq[r]), cigar=res.cigar[r], NM=int(res.nm[r]),
                    is_primary=True, p_correct=float(res.p_correct[r]), AS=int(res.score[r]),
                )])
        return out
