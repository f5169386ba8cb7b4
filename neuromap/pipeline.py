"""Batches of reads through the stages: seed -> windows -> align -> mapq -> SAM text.

Only this module knows the order of the stages. Batches are independent, so `threads` workers
(threads, or processes with `processes`) map them concurrently and the results are written in
input order: the output does not depend on the number or kind of workers.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import pickle
import signal
import sys
import threading
from collections import deque
from concurrent.futures import Future, ProcessPoolExecutor, ThreadPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field, replace
from typing import Iterable, Iterator

import numpy as np

from neuromap import kernels, trace
from neuromap.align import NEG, Scoring, banded_align, traceback, ungapped, ungapped_description
from neuromap.errors import NeuromapError, Terminated
from neuromap.index import Index, load_index
from neuromap.io.fastx import RawBatch, RawPairs, ReadBatch, make_batch, pack, parse_raw_batch, parse_raw_pairs_batch, unpack
from neuromap.io.sam import sam_records
from neuromap.mapq import mapq_from_p, p_correct, tie_break
from neuromap.model import calibration_scale, max_window, model_device, on_wait, score_pairs, use_remote, use_server
from neuromap.model_process import ModelServer
from neuromap.pairing import InsertModel, add_rescued, choose_pairs, estimate_insert, seed_inserts
from neuromap.seed import Candidates, SeedParams, find_candidates
from neuromap.slots import BatchSlots, InSlot, put_text, take_batch
from neuromap.threads import (computing, exit_with_parent, sigint_ignored, single_threaded_blas_children, start_worker_server,
                              use_compute_tokens)
from neuromap.texts import Texts
from neuromap.windows import gather_windows, make_pairs


@dataclass
class AlignOptions:
    seed: SeedParams = field(default_factory=SeedParams)
    scoring: Scoring = field(default_factory=Scoring)
    margin: int = 16  # band half-width: indels up to this long are aligned, longer ones clipped
    min_score: int = 30  # a best alignment scoring less leaves the read unmapped (bwa's -T)
    score_scale: float = 1.0  # alignment score -> log-likelihood, for MAPQ on the seed+DP path
    batch_size: int = 4000
    threads: int = 1
    processes: bool = False  # the `threads` workers are processes (each with its own Python and kernels; the model stays here)
    pair_chunk: int = 512  # (read, candidate) pairs aligned per DP call: bounds memory (its trace)
    read_group_id: str | None = None
    neural: bool = False  # the NeuralReadMapper chooses placement and MAPQ (seeds + DP otherwise)
    weights_dir: str | None = None  # None: the weights shipped in the package
    paired: bool = False  # records are (mate 1, mate 2) tuples
    insert: InsertModel | None = None  # given with -I; None: estimated from the first pairs
    server: str | None = None  # the socket of a `neuromap serve` that runs the network (None: this run loads it)
    spare_workers: int = 0  # with processes: workers beyond `threads`, computing while others wait for the network
    park_batches: int = 0  # with processes and the network's process: batches a worker may park while it starts (Parking)
    park_steady: int = 0  # the same, once it has started: while the worker waits for a model call (Parking)


# Alignment points (two mismatches with the default scoring) by which the description at the
# network's start may fall short of the best alignment in the same window.
SHIFT_TOLERANCE = 10

# Alignment points (2 mismatches) by which a window falls short of the read's best one when the
# alignment has decided against it: on held-out reads (the calibration genome) 1 of 5,614 windows
# 10 or more points behind was the read's true origin (the same one at 15 or more; 3 more lie
# 5-9 points behind), while the network put some of them level with the best
# (benchmarks/RESULTS-decided-gap.md). So such a window is not scored, neither chosen nor counted
# in P(correct), and the network's time (30 % of its pairs) goes to the close calls. Where the
# placements beyond -N are valued (unscored_ll), it counts as e^-DECIDED_LL of the best.
DECIDED_GAP = 10
DECIDED_LL = 15.0


def same_evidence_mean(read: np.ndarray, target: np.ndarray, start: np.ndarray, qlen: np.ndarray, ll: np.ndarray) -> np.ndarray:
    """Placements of one read on identical reference bases (from the start over the read's
    length) get the mean of their log-likelihoods: the read says the same of each, so only the
    windows' flanks, which the read does not cover, could tell them apart, and they must not."""
    if len(read) < 2:
        return ll
    # Each placement's bases from its start, the window's last column standing in past its end
    # (masked below anyway): rows of a sliding view over the window padded with that column.
    longest = int(qlen.max())
    padded = np.concatenate([target, np.repeat(target[:, -1:], longest, axis=1)], axis=1)
    span = np.lib.stride_tricks.sliding_window_view(padded, longest, axis=1)[np.arange(len(read)), start]
    span[np.arange(longest)[None, :] >= qlen[:, None]] = 255
    keys = np.concatenate([read.astype(np.int64)[:, None].view(np.uint8), span.astype(np.uint8)], axis=1)
    keys = np.ascontiguousarray(keys).view(np.dtype((np.void, keys.shape[1]))).ravel()
    _, group, count = np.unique(keys, return_inverse=True, return_counts=True)
    group = group.ravel()
    if (count == 1).all():
        return ll
    total = np.zeros(len(count))
    np.add.at(total, group, ll)
    return (total / count)[group]


@dataclass
class MappedBatch:
    """Per-read results of one batch (arrays over reads; strings only where SAM needs them)."""

    mapped: np.ndarray  # bool
    contig: np.ndarray  # int32
    pos: np.ndarray  # int64, 0-based leftmost aligned reference base within the contig
    reverse: np.ndarray  # bool
    mapq: np.ndarray  # int32
    p_correct: np.ndarray  # float64
    score: np.ndarray  # int32 AS
    sub_score: np.ndarray  # int32 XS, NEG when there is no runner-up
    nm: np.ndarray
    cigar: Texts  # "*" where the read has no placement
    md: Texts


def _describe(index: Index, query: np.ndarray, qlen: np.ndarray, contig: np.ndarray, window_start: np.ndarray, opts: AlignOptions):
    """Base-level alignment of reads placed at `window_start + margin` (the DP only describes)."""
    width = int(qlen.max())
    target = gather_windows(index, contig, window_start, width + 2 * opts.margin)
    query = query[:, :width]
    score, exact = ungapped(query, qlen, target, opts.margin, opts.scoring)
    score = score.astype(np.int64)
    n = len(qlen)
    ref_col = np.full(n, opts.margin, dtype=np.int64)
    cigars, mds = [], []  # (reads, their texts) from each way
    nm = np.zeros(n, dtype=np.int32)
    fast = np.flatnonzero(exact)
    if len(fast):
        c, m, k = ungapped_description(query[fast], qlen[fast], target[fast], opts.margin)
        cigars.append((fast, c))
        mds.append((fast, m))
        nm[fast] = k
    slow = np.flatnonzero(~exact)
    if len(slow):
        dp = banded_align(query[slow], qlen[slow], target[slow], opts.margin, opts.scoring)
        aln = traceback(dp, np.arange(len(slow)), query[slow], target[slow], qlen[slow])
        score[slow] = dp.score
        ref_col[slow] = aln.ref_start
        nm[slow] = aln.nm
        cigars.append((slow, aln.cigar))
        mds.append((slow, aln.md))
    return score, window_start + ref_col, Texts.gather(n, "", cigars), Texts.gather(n, "", mds), nm


@dataclass
class Placements:
    """Every candidate of every read, scored, deduplicated and one chosen per read."""

    cands: object
    pairs: object
    qlen: np.ndarray  # (P,) read length of each pair
    pair_score: np.ndarray  # (P,) alignment score (AS of the placement in that window)
    pair_start: np.ndarray  # (P,) window column where the path places the read start
    ll: np.ndarray  # (n, slots) unscaled log-likelihood of each placement (-inf: none)
    valid: np.ndarray  # (n, slots) real, non-duplicate placements
    chosen: np.ndarray  # (n,) slot of the chosen placement
    extra: np.ndarray  # (n,) placements found by seeding beyond the slots kept
    exact: np.ndarray  # (P,) settled by the ungapped screen (no DP needed)
    pair_diag: np.ndarray  # (P,) window column of the read start by the DP
    traced: list  # (members, Alignment): the DP's description of each pair that went through it
    slot_score: np.ndarray  # (n, slots) alignment score of each slot's pair (NEG: no pair)
    choosable: np.ndarray  # (n, slots) valid placements where the read aligns (see place)
    seeded: int  # the first `seeded` slots come from seeding (after them: rescued mates)

    def of_reads(self, rows: np.ndarray) -> "Placements":
        """The per-read fields of these reads (what single_p reads), the per-pair ones left out
        (None): each read's P(correct) depends only on its own row."""
        return replace(self, ll=self.ll[rows], valid=self.valid[rows], chosen=self.chosen[rows], extra=self.extra[rows],
                       slot_score=self.slot_score[rows], choosable=self.choosable[rows],
                       cands=None, pairs=None, qlen=None, pair_score=None, pair_start=None, exact=None, pair_diag=None, traced=[])


def place(batch: ReadBatch, index: Index, opts: AlignOptions, cands: Candidates | None = None) -> Placements:
    """Seed (unless `cands` are given), gather windows, score every candidate (network or DP) and
    choose one per read."""
    n = len(batch)
    if cands is None:
        cands = find_candidates(batch.codes, batch.lengths, index, opts.seed)
    n_slots = cands.valid.shape[1]
    pairs = make_pairs(batch.codes, batch.lengths, cands, index, opts.margin)
    n_pairs = len(pairs.read)
    qlen = batch.lengths[pairs.read]

    # Alignment scores of every pair (for AS/XS, and the likelihood on the seeds + DP path).
    # Pairs that align on their diagonal with at most one mismatch need no DP (see `ungapped`).
    pair_score, exact = ungapped(pairs.query, qlen, pairs.target, opts.margin, opts.scoring)
    pair_score = pair_score.astype(np.int64)
    pair_diag = np.full(n_pairs, opts.margin, dtype=np.int64)  # window column of the read start
    need_dp = np.flatnonzero(~exact)
    # Each chunk is traced back at once, whichever pair will be chosen, and its trace (rows x band
    # x pairs, about 10 kB a pair) let go: a batch then holds one chunk's trace, not all of them
    # (tracing a pair back costs about 1/30 of aligning it).
    traced = []
    for lo in range(0, len(need_dp), opts.pair_chunk):
        members = need_dp[lo : lo + opts.pair_chunk]
        width = int(qlen[members].max())  # trim padding to this chunk's longest read
        query, target = pairs.query[members, :width], pairs.target[members, : width + 2 * opts.margin]
        dp = banded_align(query, qlen[members], target, opts.margin, opts.scoring)
        pair_score[members] = dp.score
        pair_diag[members] = dp.end_slot  # the diagonal the alignment ends on
        traced.append((members, traceback(dp, np.arange(len(members)), query, target, qlen[members])))
        del dp

    slot_score = np.full((n, n_slots), NEG, dtype=np.int64)  # per read and slot, for XS and the rules below
    slot_score[pairs.read, pairs.slot] = pair_score

    if opts.neural:
        # Reads whose window is wider than the model takes (longer than about 370 bp: not Illumina
        # short reads) keep the DP's placement and likelihood, on the network's probability scale.
        fits = qlen + 2 * opts.margin <= max_window(opts.weights_dir)
        # A read with a single placement (no other candidate, none beyond -N) has P(correct) = 1
        # whatever its likelihood, and a lone mate's likelihood cancels in the pair posterior:
        # there the network has nothing to decide, and the DP's start stands.
        contested = (cands.valid.sum(axis=1) > 1) | (cands.n_clusters > opts.seed.max_candidates)
        fits &= contested[pairs.read]
        decided = fits & (pair_score <= slot_score.max(axis=1)[pairs.read] - DECIDED_GAP)
        fits &= ~decided
        pair_ll = pair_score.astype(np.float64) * opts.score_scale / likelihood_scale(opts)
        pair_start = pair_diag.copy()
        if fits.any():
            members = np.flatnonzero(fits)
            width = int(qlen[members].max())
            model = score_pairs(pairs.query[members, :width], qlen[members], pairs.target[members, : width + 2 * opts.margin], opts.weights_dir)
            pair_start[members] = model.start
            pair_ll[members] = same_evidence_mean(pairs.read[members], pairs.target[members], model.start, qlen[members], model.log_likelihood)
        if decided.any():
            top = np.full(n, -np.inf)
            np.maximum.at(top, pairs.read[fits], pair_ll[fits])
            pair_ll[decided] = top[pairs.read[decided]] - DECIDED_LL / likelihood_scale(opts)
    else:
        pair_ll = pair_score.astype(np.float64)
        pair_start = pair_diag
        decided = np.zeros(n_pairs, dtype=bool)

    # Per read and slot. A placement starting where a likelier one of the same read starts (same
    # strand) is the same placement found twice and must not count against it.
    # (A compiled loop over each read's slots in order of falling likelihood: nm_same_placement.)
    valid = np.ascontiguousarray(cands.valid, dtype=np.bool_).copy()
    ll = np.full((n, n_slots), -np.inf)
    ll[pairs.read, pairs.slot] = pair_ll
    start_at = np.full((n, n_slots), -(1 << 40), dtype=np.int64)
    start_at[pairs.read, pairs.slot] = pairs.window_start + pair_start
    kernels.call("nm_same_placement", ll, start_at, np.ascontiguousarray(cands.reverse, dtype=np.bool_), valid, n, n_slots,
                 opts.seed.max_diag_gap)

    # A window where the read aligns below --min-score is no placement while the read has one
    # where it aligns: it is neither chosen nor counted against the others in P(correct) (a
    # low-complexity read can look likelier to the network in a junk window than in its true one).
    placement = valid.copy()  # windows the alignment has not decided against (see DECIDED_GAP)
    placement[pairs.read[decided], pairs.slot[decided]] = False
    # Choosable: the placements where the read aligns (the others where it aligns nowhere). The
    # choice is among those within one mismatch of its best alignment (P is still taken over all
    # choosable windows), by likelihood. On held-out reads the network preferred a window a
    # mismatch or more behind 24 times in 60,000 and was wrong all 24 times; over the 400,000
    # benchmark reads one of them had MAPQ 40 (benchmarks/README.md). With a mate, the pair's
    # evidence may still overrule the alignment (pairing.choose_pairs). Equal likelihoods: by a
    # hash of the read's name (tie_break). Compiled: nm_choose (tests/reference_place.py keeps the
    # numpy it replaced).
    choosable = np.empty((n, n_slots), dtype=np.bool_)
    ties = np.empty((n, n_slots), dtype=np.bool_)
    chosen = np.empty(n, dtype=np.int64)
    tied = np.empty(n, dtype=np.bool_)
    kernels.call("nm_choose", placement, np.ascontiguousarray(slot_score, dtype=np.int64), np.ascontiguousarray(ll, dtype=np.float64),
                 n, n_slots, opts.min_score, opts.scoring.match + opts.scoring.mismatch, NEG, choosable, chosen, ties, tied)
    tie_rows = np.flatnonzero(tied)
    if len(tie_rows):
        chosen[tie_rows] = tie_break(batch.names, tie_rows, ties[tie_rows])
    extra = np.maximum(cands.n_clusters - opts.seed.max_candidates, 0)
    return Placements(cands, pairs, qlen, pair_score, pair_start, ll, valid, chosen, extra, exact, pair_diag, traced, slot_score, choosable,
                      min(opts.seed.max_candidates, n_slots))


def likelihood_scale(opts: AlignOptions) -> float:
    """Log-likelihood -> log-probability across a read's placements: the network's fitted
    calibration (shipped with the weights), or `score_scale` for alignment scores."""
    return calibration_scale(opts.weights_dir) if opts.neural else opts.score_scale


def map_batch(batch: ReadBatch, index: Index, opts: AlignOptions) -> MappedBatch:
    pl = place(batch, index, opts)
    return describe(index, opts, pl, pl.chosen, single_p(pl, opts))


def single_p(pl: Placements, opts: AlignOptions) -> np.ndarray:
    """P(correct) of each read's chosen placement from its own placements alone (those where it
    aligns; see `place`).

    With the network, P(correct) is held to what the read's alignment scores give (what
    --no-neural would claim), both ways (`score_bounds`, `bounded_p`):
    - at most that where another window aligns as well as the chosen one (AS = XS: 1/2 for two
      equal windows). On such ties the network's confidence was not to be trusted: on 60,000
      held-out reads it claimed P > 0.5 for 13 of them and 8 were wrong; the cap took the wrong
      reads at MAPQ >= 10 from 7 to 4 and the Brier score from 0.01141 to 0.01135 there;
    - at least that, up to MAPQ 30 (FLOOR_MAX), where the chosen window aligns better than every
      other (AS > XS). There the network's doubt was not to be trusted either: on the same held-out
      reads it put 86 such reads below MAPQ 10, claiming 32 of them wrong, and none was
      (benchmarks/README.md)."""
    scale = likelihood_scale(opts)
    p = p_correct(np.where(pl.choosable, pl.ll * scale, 0.0), pl.choosable, pl.chosen, pl.extra, unscored_ll(pl) * scale)
    if not opts.neural:
        return p
    return bounded_p(p, *score_bounds(pl, opts))


# The floor lifts a doubting network at most to this P(correct) (MAPQ 30): beyond it, certainty must
# come from the network itself. (Over 400,000 benchmark reads, an unbounded floor took the one
# wrong read at MAPQ >= 30, a read 650 bp from its origin in a local repeat, from MAPQ 45 to 60.)
FLOOR_MAX = 0.999


def bounded_p(p: np.ndarray, tied: np.ndarray, ahead: np.ndarray, by_score: np.ndarray) -> np.ndarray:
    """The network's P(correct) `p` held to the alignment scores' `by_score`: at most it on ties,
    at least it (up to FLOOR_MAX) where the chosen window aligns best (see `single_p`; `calibrate`
    fits λ with the same)."""
    return np.where(tied, np.minimum(p, by_score), np.where(ahead, np.maximum(p, np.minimum(by_score, FLOOR_MAX)), p))


def score_bounds(pl: Placements, opts: AlignOptions) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per read: whether another window where it may be placed aligns as well as the chosen one
    (`tied`: AS = XS), whether the chosen one aligns better than every other (`ahead`: AS > XS, or
    no other), and P(correct) from the alignment scores alone, as --no-neural computes it
    (`by_score`), which bounds the network's (`bounded_p`)."""
    n = len(pl.chosen)
    if n == 0 or pl.choosable.shape[1] == 0:
        return np.zeros(n, dtype=bool), np.zeros(n, dtype=bool), np.ones(n)
    rows = np.arange(n)
    others = pl.choosable.copy()
    others[rows, pl.chosen] = False
    best_other = np.where(others, pl.slot_score, NEG).max(axis=1)
    mine = pl.slot_score[rows, pl.chosen]
    placed = pl.choosable[rows, pl.chosen]
    tied = placed & (best_other >= mine)
    ahead = placed & (best_other < mine)
    # Over every window where the read aligns, as --no-neural takes it: the windows the alignment
    # decided against (DECIDED_GAP), which the network path does not choose from, count here.
    aligned = pl.valid & (pl.slot_score >= opts.min_score)
    counted = np.where(aligned.any(axis=1)[:, None], aligned, pl.valid)
    score = pl.slot_score.astype(np.float64) * opts.score_scale
    weakest = unscored_ll(pl, score)
    # A read whose one counted placement is the chosen one, with none unscored, has P = 1 exactly
    # (what p_correct gives it: 1 / e^0); p_correct runs over the others only (a tenth of the
    # reads of the benchmark's batches, whose P are the same row by row).
    alone = (counted.sum(axis=1) == 1) & counted[rows, pl.chosen] & (pl.extra == 0)
    by_score = np.ones(n)
    rest = np.flatnonzero(~alone)
    if len(rest):
        by_score[rest] = p_correct(np.where(counted[rest], score[rest], 0.0), counted[rest], pl.chosen[rest], pl.extra[rest], weakest[rest])
    return tied, ahead, by_score


def unscored_ll(pl: Placements, values: np.ndarray | None = None) -> np.ndarray:
    """Per read, what each of its unscored placements (found by seeding beyond -N) is taken to be
    worth: the median log-likelihood of its other seeded candidates, placements or not (a window
    the alignment decided against counts DECIDED_LL below the read's best). Seeding keeps the
    candidates with the most seed support, and the ones beyond resemble them: in a tandem array
    or a large repeat family they are as good as the kept copies. (Not the weakest kept one: one
    partial hit at an array's end would make hundreds of equal copies count for nothing.) The
    median scales with the likelihoods, so the calibration's λ applies to it as to them.
    `values` (per read and slot) stand in for the log-likelihoods where given: the scaled
    alignment scores of `score_bounds`."""
    n = len(pl.chosen)
    out = np.zeros(n)
    if pl.seeded == 0 or n == 0:
        return out
    # The chosen slot is left out unless it is the read's only one (then the unscored ones are like
    # it); compiled: nm_unscored (tests/reference_place.py keeps the numpy it replaced).
    source = pl.ll if values is None else values
    if source.shape != pl.valid.shape:
        raise ValueError(f"unscored_ll: values of shape {source.shape} for placements of shape {pl.valid.shape}")
    kernels.call("nm_unscored", np.ascontiguousarray(source, dtype=np.float64),
                 np.ascontiguousarray(pl.valid, dtype=np.bool_), np.ascontiguousarray(pl.chosen, dtype=np.int64), n, pl.valid.shape[1],
                 pl.seeded, out)
    return out


def describe(index: Index, opts: AlignOptions, pl: Placements, chosen: np.ndarray, p: np.ndarray) -> MappedBatch:
    """Per-read results for the `chosen` slots (CIGAR, NM, MD, AS, XS) with P(correct) `p`."""
    n = len(chosen)
    n_slots = pl.valid.shape[1]
    rows = np.arange(n)
    cands, pairs, qlen, valid = pl.cands, pl.pairs, pl.qlen, pl.valid
    pair_score, pair_start = pl.pair_score, pl.pair_start
    n_pairs = len(pairs.read)
    mapq = mapq_from_p(p)
    # Per read: a placement (a seeded candidate, and the best likelihood of its valid slots
    # finite), and the runner-up's score (XS). Compiled: nm_read_bests (tests/reference_place.py
    # keeps the numpy it replaced).
    if cands.valid.shape != valid.shape:
        raise ValueError(f"describe: candidates of shape {cands.valid.shape} for placements of shape {valid.shape}")
    has = np.empty(n, dtype=np.bool_)
    runner = np.empty(n, dtype=np.int64)
    kernels.call("nm_read_bests", np.ascontiguousarray(valid, dtype=np.bool_), np.ascontiguousarray(cands.valid, dtype=np.bool_),
                 np.ascontiguousarray(pl.ll, dtype=np.float64), np.ascontiguousarray(pl.slot_score, dtype=np.int64),
                 np.ascontiguousarray(chosen, dtype=np.int64), n, n_slots, NEG, has, runner)

    # Describe the chosen placement. Where the path's start agrees with the DP's (always without
    # the network; almost always with it) the alignment already computed is traced back; where the
    # network chose another start (a shift in a tandem repeat, say) the read is aligned again in a
    # narrow band around the network's start, so the description follows the decision.
    slot_to_pair = np.full((n, n_slots), -1, dtype=np.int64)
    slot_to_pair[pairs.read, pairs.slot] = np.arange(n_pairs)
    score = np.zeros(n, dtype=np.int64)
    pos = np.zeros(n, dtype=np.int64)
    cigars, mds = [], []  # (reads, their texts) from each way of describing them; "*" and "" elsewhere
    nm = np.zeros(n, dtype=np.int32)
    sel = np.flatnonzero(has)  # reads with a placement; everything below indexes only these
    chosen_pair = np.full(n, -1, dtype=np.int64)
    chosen_pair[sel] = slot_to_pair[sel, chosen[sel]]
    contig_of = cands.contig[rows, chosen]
    agree_sel = np.abs(pair_start[chosen_pair[sel]] - pl.pair_diag[chosen_pair[sel]]) <= 4
    other = sel[~agree_sel]
    if len(other):
        cp = chosen_pair[other]
        narrow = AlignOptions(scoring=opts.scoring, margin=4)
        placed = pairs.window_start[cp] + pair_start[cp] - narrow.margin
        shifted = _describe(index, pairs.query[cp], qlen[cp], contig_of[other], placed, narrow)
        # The network's start stands where the read aligns there about as well as anywhere in the
        # window (a shift in a tandem repeat); a start where it aligns clearly worse is a misplaced
        # peak, and the DP's placement in the chosen window describes the read instead.
        stands = shifted[0] >= pair_score[cp] - SHIFT_TOLERANCE
        agree_sel[np.flatnonzero(~agree_sel)[~stands]] = True
        other = other[stands]
        shifted = tuple(x[stands] for x in shifted)

    def put(reads, s, gpos, c, m, k):
        score[reads] = s
        pos[reads] = gpos - index.contig_offsets[contig_of[reads]]
        nm[reads] = k
        cigars.append((reads, c))
        mds.append((reads, m))

    fast = sel[agree_sel & pl.exact[chosen_pair[sel]]]
    if len(fast):
        cp = chosen_pair[fast]
        c, m, k = ungapped_description(pairs.query[cp], qlen[cp], pairs.target[cp], opts.margin)
        put(fast, pair_score[cp], pairs.window_start[cp] + opts.margin, c, m, k)
    in_chunk = np.full(n_pairs, -1, dtype=np.int64)
    local = np.zeros(n_pairs, dtype=np.int64)
    for c_i, (members, _) in enumerate(pl.traced):
        in_chunk[members] = c_i
        local[members] = np.arange(len(members))
    for c_i, (members, aln) in enumerate(pl.traced):
        reads = sel[agree_sel & (in_chunk[chosen_pair[sel]] == c_i)]
        if len(reads):
            cp = chosen_pair[reads]
            j = local[cp]
            put(reads, pair_score[cp], pairs.window_start[cp] + aln.ref_start[j], aln.cigar.take(j), aln.md.take(j), aln.nm[j])
    if len(other):
        put(other, *shifted)
    mapped = has & (score >= opts.min_score)
    return MappedBatch(
        mapped=mapped,
        contig=cands.contig[rows, chosen],
        pos=pos,
        reverse=cands.reverse[rows, chosen],
        mapq=np.where(mapped, mapq, 0).astype(np.int32),
        p_correct=np.where(mapped, p, 0.0),
        score=np.where(mapped, score, 0).astype(np.int32),
        sub_score=np.where(mapped & (runner >= opts.min_score), runner, NEG).astype(np.int32),
        nm=nm,
        cigar=Texts.gather(n, "*", cigars),
        md=Texts.gather(n, "", mds),
    )


def ref_spans(cigars: Texts) -> np.ndarray:
    """Reference bases each CIGAR covers (0 for "*")."""
    out = np.empty(len(cigars), dtype=np.int64)
    kernels.call("nm_ref_spans", cigars.buf, cigars.start, cigars.end, len(cigars), out)
    return out


@dataclass
class PairFields:
    """What SAM needs to link mates: mate 1 of pair i is read i, mate 2 is read n + i."""

    n: int  # pairs
    proper: np.ndarray  # (2n,) bool: both mates mapped FR on one contig, insert in the proper range
    end: np.ndarray  # (2n,) int64 end (exclusive) of each read's alignment on the reference


def pair_fields(res: MappedBatch, model) -> PairFields:
    n = len(res.mapped) // 2
    end = res.pos + ref_spans(res.cigar)
    if model is None or n == 0:
        return PairFields(n, np.zeros(2 * n, dtype=bool), end)
    a, b = np.arange(n), np.arange(n, 2 * n)
    fwd_start = np.where(res.reverse[a], res.pos[b], res.pos[a])
    rev_end = np.where(res.reverse[a], end[a], end[b])
    ins = rev_end - fwd_start
    ok = res.mapped[a] & res.mapped[b] & (res.contig[a] == res.contig[b]) & (res.reverse[a] != res.reverse[b])
    ok &= (ins >= model.low) & (ins <= model.high)
    return PairFields(n, np.concatenate([ok, ok]), end)


@dataclass
class RunStats:
    """Figures of a run, summed over batches (printed at the end and written by --stats)."""

    reads: int = 0
    mapped: int = 0
    mapq30: int = 0
    bases: int = 0
    paired: int = 0  # reads that are mates of a pair
    proper: int = 0  # reads flagged as part of a proper pair
    device: str = ""  # where the network ran (told by the process that ran it)

    def add(self, other: "RunStats") -> None:
        self.reads += other.reads
        self.mapped += other.mapped
        self.mapq30 += other.mapq30
        self.bases += other.bases
        self.paired += other.paired
        self.proper += other.proper
        self.device = self.device or other.device


def insert_from_seeds(batch: ReadBatch, index: Index, opts: AlignOptions, samples: np.ndarray,
                      cands: Candidates | None = None) -> tuple[InsertModel | None, np.ndarray]:
    """The insert-size model from the inserts of uniquely seeded pairs in earlier batches
    (`samples`) and in this batch of 2n mates (None: too few pairs so far), and the samples so
    far. Seeding alone (unless the batch's candidates are given): no window is aligned."""
    if cands is None:
        cands = find_candidates(batch.codes, batch.lengths, index, opts.seed)
    samples = np.concatenate([samples, seed_inserts(cands, batch.lengths, len(batch) // 2)])
    return estimate_insert(samples), samples


def map_pairs(batch: ReadBatch, index: Index, opts: AlignOptions, model: InsertModel | None,
              samples: np.ndarray | None) -> tuple[MappedBatch, InsertModel | None, np.ndarray | None]:
    """Map a batch of 2n mates (mate 1 of pair i is read i, mate 2 is read n + i).

    Without an insert-size model yet, one is estimated from `samples` (inserts of earlier
    batches) plus this batch's uniquely seeded pairs (`insert_from_seeds`), unless `samples` is
    None; returns the model used (None: too few pairs so far, or none asked for: mates placed on
    their own) and the samples collected.
    """
    n = len(batch) // 2
    cands = find_candidates(batch.codes, batch.lengths, index, opts.seed)
    if model is None and samples is not None:
        model, samples = insert_from_seeds(batch, index, opts, samples, cands)
    if model is None:
        pl = place(batch, index, opts, cands)
        return describe(index, opts, pl, pl.chosen, single_p(pl, opts)), None, samples
    cands = add_rescued(cands, batch.codes, batch.lengths, n, index, model)
    pl = place(batch, index, opts, cands)
    slots = pl.valid.shape[1]
    start = np.full((2 * n, slots), 0, dtype=np.int64)
    start[pl.pairs.read, pl.pairs.slot] = pl.pairs.window_start + pl.pair_start
    scale = likelihood_scale(opts)
    choice = choose_pairs(
        np.where(pl.choosable, pl.ll * scale, -np.inf), pl.choosable, start, pl.cands.reverse, pl.cands.contig,
        batch.lengths, pl.extra, pl.chosen, mates_alone_p(pl, opts), batch.names, model, int(index.contig_lengths.sum()),
        weakest=unscored_ll(pl) * scale,
    )
    return describe(index, opts, pl, choice.chosen, choice.p), model, samples


def mates_alone_p(pl: Placements, opts: AlignOptions) -> np.ndarray:
    """For 2n mates: single_p of each mate whose partner has no placement, 0 for the others. A
    mate's P(correct) from its own placements counts only there (choose_pairs places the other
    pairs jointly, and overwrote it): computed for those mates alone, 1.4 ms a batch of 4,000 mates
    less without the network and 2.8 ms with it (benchmarks/pairs_p_alone.py)."""
    alone = np.flatnonzero(partner_unplaced(pl))
    p = np.zeros(len(pl.chosen))
    if len(alone):
        p[alone] = single_p(pl.of_reads(alone), opts)
    return p


def partner_unplaced(pl: Placements) -> np.ndarray:
    """For 2n mates (mate 1 of pair i is read i, mate 2 read n + i): whether the pair has a mate
    without a choosable placement (the mates choose_pairs does not place jointly)."""
    n = len(pl.chosen) // 2
    placed = pl.choosable.any(axis=1)
    return ~np.tile(placed[:n] & placed[n:], 2)


def _parse(records, paired: bool) -> ReadBatch:
    """A batch as `align_records` gets it (see there), parsed; pairs as 2n mates (see map_pairs)."""
    # Batches not yet parsed come from fastx.fastq_batches (RawBatch) and fastq_pair_batches (RawPairs).
    if not paired:
        return parse_raw_batch(records) if isinstance(records, RawBatch) else make_batch(records)
    return (parse_raw_pairs_batch(records) if isinstance(records, RawPairs)
            else make_batch([r1 for r1, _ in records] + [r2 for _, r2 in records]))


def _work(records: list, index: Index, opts: AlignOptions, model: InsertModel | None = None):
    """One batch: (SAM text as bytes, figures). Pairs are placed with the insert-size `model`, or
    without one (None: mates on their own)."""
    batch = _parse(records, opts.paired)
    if not opts.paired:
        res = map_batch(batch, index, opts)
        fields = None
    else:
        res, model, _ = map_pairs(batch, index, opts, model, None)
        fields = pair_fields(res, model)
    stats = RunStats(len(batch), int(res.mapped.sum()), int((res.mapped & (res.mapq >= 30)).sum()), int(batch.lengths.sum()))
    if fields is not None:
        stats.paired, stats.proper = len(batch), int(fields.proper.sum())
    if opts.neural:
        stats.device = model_device()
    return sam_records(batch, res, index, opts.read_group_id, fields), stats


_WORKER_STATE: tuple[Index, AlignOptions] | None = None


def limit_malloc_arenas(threads: int) -> None:
    """Cap glibc's malloc arenas at `threads` + 2 (the mapping threads, the reader, JAX's pool) for
    this process. By default each thread that allocates while another holds an arena gets one of
    its own, up to 8 per core, and memory freed in an arena stays there: on 100,000 reads with
    -t 2 the cap lowers peak RSS by about 20 MB at the same speed (benchmarks/README.md). A
    MALLOC_ARENA_MAX in the environment is left to decide; other C libraries are left alone."""
    if "MALLOC_ARENA_MAX" in os.environ:
        return
    mallopt = _mallopt()
    if mallopt is not None:
        mallopt(_M_ARENA_MAX, threads + 2)


# glibc's mallopt parameters (malloc.h)
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD, _M_ARENA_MAX = -1, -3, -8


def _mallopt():
    """glibc's mallopt, or None (another C library, or none to be had)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        return ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return None


def keep_freed_buffers() -> None:
    """In the main process of `align --processes`: let glibc's malloc keep the memory of freed
    batch buffers (the FASTQ read, the SAM taken out of shared memory: 1-2 MB each) for the next
    batch instead of handing it back to the kernel and faulting fresh zeroed pages in again (up to
    16 MB a block from the heap, up to 64 MB free at its top). On 1M reads with -t 2 this took the
    main process's page faults from about 60,000 to 9,000 and its CPU time by a fifth, at the same
    peak RSS (benchmarks/RESULTS-main-process-cpu.md): with many workers that process hands out and takes
    back every batch. (Setting one of the two alone is worse than neither: glibc then stops
    adapting the other.) A MALLOC_MMAP_THRESHOLD_, MALLOC_TRIM_THRESHOLD_ or GLIBC_TUNABLES in the
    environment is left to decide."""
    if any(name in os.environ for name in ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "GLIBC_TUNABLES")):
        return
    mallopt = _mallopt()
    if mallopt is None:
        return
    mallopt(_M_MMAP_THRESHOLD, 16 << 20)
    mallopt(_M_TRIM_THRESHOLD, 64 << 20)


@dataclass(frozen=True)
class Parked:
    """A worker's answer for a batch it parked (Parking): its SAM comes later, under `key`, on the
    queue of parked results."""

    key: tuple[int, int]


class Parking:
    """In a worker process while the network's process starts (JAX's import and the model's load
    take about a second, during which every worker would wait with its first batch mapped up to
    the network): a batch that would wait is parked instead. It goes on on a thread of its own,
    which waits for the network and then finishes it, and the worker answers Parked at once and
    takes the next batch, whose seeds, windows and DP are thus done while the network starts. At
    most `limit` batches are parked in a worker at once (each holds its windows and alignments:
    a few MB); past that, and once the network has answered (unless `steady`, below), batches are
    mapped as usual. A parked batch's SAM (or its error) goes to the main process through
    `results` (a multiprocessing queue), pickled here so that nothing can fail on the queue's own
    thread. The output is the same: each batch is mapped as it would be.

    With `steady` (NEUROMAP_PARK_STEADY), once the network has started too: up to that many
    batches parked at once, each when it is about to wait for a model call's answer, so that the
    worker maps the next batch meanwhile instead of leaving its core idle for the answer (on the
    GPU machine a worker waited about 10 ms a batch of 4,000 reads so, besides the network's
    start: benchmarks/RESULTS-gpu-pe-why-lease9.md)."""

    def __init__(self, limit: int, results, remote, steady: int = 0):
        self.limit, self.results, self.remote = limit, results, remote  # remote: this worker's model.RemoteModel
        self.steady = steady
        self._lock = threading.Lock()
        self._parked = 0
        self._count = 0

    def wanted(self) -> bool:
        return self._parked < (self.steady if self.remote.ready else self.limit)

    def run(self, work, *args):
        """`work(*args)` on a thread of its own: its result, or Parked if the thread is about to
        wait for the network's first answer first (then the result goes to `results`)."""
        self._count += 1
        key = (os.getpid(), self._count)
        box: dict = {}
        decided = threading.Event()

        def park() -> None:  # in the batch's thread, before it waits for the network
            with self._lock:
                if "parked" not in box:
                    box["parked"] = True
                    self._parked += 1
            decided.set()

        def body() -> None:
            on_wait(park, calls=self.steady > 0)
            try:
                outcome = (True, work(*args))
            except BaseException as exc:  # noqa: BLE001 - handed on: raised where the batch is written
                outcome = (False, exc)
            with self._lock:
                parked = box.get("parked", False)
                if parked:
                    self._parked -= 1
                else:
                    box["outcome"] = outcome
            decided.set()
            if parked:
                trace.event("parked-done")
                self.results.put((key, _pickled(outcome)))

        threading.Thread(target=body, name="neuromap-parked", daemon=True).start()
        decided.wait()
        with self._lock:  # either the batch was done before it had to wait, or it is parked for good
            outcome = box.get("outcome")
        if outcome is not None:
            ok, value = outcome
            if ok:
                return value
            raise value
        trace.event("parked")
        return Parked(key)


def _pickled(outcome: tuple) -> bytes:
    """(ok, value) pickled; an error that cannot be pickled becomes a NeuromapError with its text."""
    try:
        return pickle.dumps(outcome, protocol=pickle.HIGHEST_PROTOCOL)
    except Exception:  # noqa: BLE001
        ok, value = outcome
        return pickle.dumps((False, NeuromapError(f"a parked batch failed: {value!r}")), protocol=pickle.HIGHEST_PROTOCOL)


_PARKING: Parking | None = None


def _init_worker(index_path: str, opts: AlignOptions, model_pipes: list, slots, parent: int, tokens=None,
                 parked_results=None) -> None:
    """A worker process: its own view of the memory-mapped index (the pages are shared through the
    page cache) and its own kernels. The network is in the model's process (model_process.ModelServer),
    which scores the worker's pairs over a pipe of its own (model.RemoteModel): no JAX here.
    `tokens`: with spare workers, the semaphore of `opts.threads` compute tokens the workers share
    (threads.computing). `parked_results`: where batches parked while the network starts are
    answered (Parking; None: none are parked)."""
    global _WORKER_STATE, _PARKING
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent handles Ctrl-C and cleans up
    limit_malloc_arenas(1)
    exit_with_parent(parent)
    use_compute_tokens(tokens)
    trace.event("worker")
    _WORKER_STATE = (load_index(index_path), opts)
    if opts.neural and opts.server:
        use_server(opts.server, opts.weights_dir)
    elif opts.neural:
        remote = use_remote(model_pipes[slots.get()])
        if parked_results is not None and (opts.park_batches > 0 or opts.park_steady > 0):
            _PARKING = Parking(opts.park_batches, parked_results, remote, opts.park_steady)


def _pack_batch(records, paired: bool):
    """A batch as a worker process receives it: the reads' fields as joined strings (`pack`), or
    the file's lines as read (RawBatch)."""
    if isinstance(records, (RawBatch, RawPairs)):
        return records
    if paired:
        return pack([r1 for r1, _ in records]), pack([r2 for _, r2 in records])
    return pack(records)


def _work_in_worker(packed, model=None):
    if _PARKING is not None and _PARKING.wanted():
        return _PARKING.run(_map_in_worker, packed, model)
    return _map_in_worker(packed, model)


def _map_in_worker(packed, model=None):
    assert _WORKER_STATE is not None
    index, opts = _WORKER_STATE
    with computing():  # one of the compute tokens, with spare workers
        trace.event("batch")
        if isinstance(packed, InSlot):  # the batch's bytes, and then its SAM, in shared memory
            text, stats = _work(take_batch(packed), index, opts, model)
            trace.event("batch-done")
            return put_text(packed, text), stats
        if isinstance(packed, (RawBatch, RawPairs)):
            records = packed
        else:
            records = list(zip(unpack(packed[0]), unpack(packed[1]))) if opts.paired else unpack(packed)
        return _work(records, index, opts, model)


class ParkedAnswers:
    """The main process's side of Parking: each batch a worker answered Parked for gets its SAM
    (or its error) later on `queue`, which a thread of its own reads. `follow` gives, for the
    pool's future of a batch, a future of its SAM either way; `parked` counts the batches parked
    and not yet answered, which align_records lets be in flight beyond its usual bound. A worker
    that dies (killed, out of memory) with batches parked ends the wait for them with
    BrokenProcessPool, as it ends the pool's own futures."""

    def __init__(self, queue):
        self.queue = queue
        self.pool: ProcessPoolExecutor | None = None
        self.parked = 0
        self._changed = threading.Condition()
        self._futures: dict = {}  # key -> the future of a batch parked, its SAM not yet here
        self._early: dict = {}  # key -> a SAM that came before the worker's Parked answer
        self._reader = threading.Thread(target=self._read, name="neuromap-parked-answers", daemon=True)
        self._reader.start()

    def _read(self) -> None:
        while True:
            try:
                item = self.queue.get()
            except (EOFError, OSError):
                return
            if item is None:
                return
            key, payload = item
            with self._changed:
                future = self._futures.pop(key, None)
                if future is None:
                    self._early[key] = payload
                else:
                    self.parked -= 1
            if future is not None:
                self._settle(future, payload)

    def _settle(self, future: Future, payload: bytes) -> None:
        ok, value = pickle.loads(payload)
        if ok:
            future.set_result(value)
        else:
            future.set_exception(value)

    def _notify(self, _=None) -> None:
        with self._changed:
            self._changed.notify_all()

    def follow(self, submitted: Future) -> Future:
        final: Future = Future()
        final.add_done_callback(self._notify)

        def answered(f: Future) -> None:
            try:
                result = f.result()
            except BaseException as exc:  # noqa: BLE001 - raised where the batch is written
                final.set_exception(exc)
                return
            if not isinstance(result, Parked):
                final.set_result(result)
                return
            with self._changed:
                payload = self._early.pop(result.key, None)
                if payload is None:
                    self._futures[result.key] = final
                    self.parked += 1
                    self._changed.notify_all()
            if payload is not None:
                self._settle(final, payload)

        submitted.add_done_callback(answered)
        return final

    def _check_pool(self) -> None:
        if self.pool is not None and getattr(self.pool, "_broken", False):
            raise BrokenProcessPool("a worker process ended")

    def wait_for(self, predicate) -> None:
        """Wait until `predicate()` holds (BrokenProcessPool where a worker died meanwhile)."""
        with self._changed:
            while not predicate():
                self._check_pool()
                self._changed.wait(0.25)

    def result(self, future: Future):
        """`future.result()`, or BrokenProcessPool where its worker died with it parked."""
        self.wait_for(future.done)
        return future.result()

    def close(self) -> None:
        try:
            self.queue.put(None)
        except (OSError, ValueError):
            pass
        self._reader.join(timeout=5)
        self.queue.close()


def align_records(batches: Iterable, index: Index, opts: AlignOptions, on_insert=None,
                  model_server: ModelServer | None = None) -> Iterator[tuple[bytes, RunStats]]:
    """Yield (SAM text as UTF-8 bytes, figures) per batch, in input order. `batches` hold `opts.batch_size` reads
    (half as many pairs when `opts.paired`): as fastx.fastq_batches and fastq_pair_batches cut
    them, which the workers parse, or lists of Records, or of (mate 1, mate 2) tuples
    (`batched(read_fastx(path), opts.batch_size)`).

    With threads > 1 the batches go to that many worker threads of this process. The heavy stages
    (sketch, seeding, DP, traceback, the network) are compiled code that releases the GIL, so
    threads scale and share one index, one copy of the compiled kernels and one JAX runtime.
    The calling thread reads the batches ahead of the workers. At most
    2 x threads batches are in flight (plus one per spare worker, below), which bounds memory.

    With `opts.processes` the workers are processes instead (forked from multiprocessing's fork
    server, which has imported this module: threads.start_worker_server): the per-read Python of a batch (batching, SAM text, the pair posterior) holds the GIL,
    which caps what threads of one process reach on many cores; processes do not share it, at the
    price of a copy of Python, numpy and the kernels in each. With the network, one more process
    holds the model and answers the workers' calls (model_process.ModelServer). Batches of FASTQ bytes go
    to the workers, and their SAM comes back, through shared memory (neuromap.slots). The output
    is the same.

    Spare workers (`opts.spare_workers`, with processes and the network: NEUROMAP_SPARE_WORKERS,
    for a network on a GPU): that many more worker processes,
    of which only `threads` compute at once. Each holds one of `threads` tokens (a semaphore) while
    it computes and gives it back while it waits for the network (threads.computing, waiting), so
    the core of a worker waiting for the network goes to another's batch, and while the network
    starts twice as many batches get their seeds and DP done. The output is the same.

    Pairs: until the insert size is known (from -I), it is estimated here, in input order, from
    the seeds of the batches so far (`insert_from_seeds`), before each batch goes to the workers:
    a batch is mapped with the estimate its seeds completed, or with mates on their own while there
    are too few pairs, so the output is the same whatever the number of threads.
    `on_insert(model, samples)` is called once: when the model is fixed, or at the end if there
    were too few pairs to estimate it.

    With `opts.server` the network runs in that `neuromap serve` (model.ServerModel) instead:
    no model's process is started, and each worker, thread or process, has a connection of its
    own. The output is the same.

    `model_server`: with worker processes and the network, the model's process already started
    (spawned, for opts.threads + opts.spare_workers workers), which this then owns and closes; by
    default it is started here.
    """
    model = opts.insert
    samples = np.zeros(0, np.int64)
    if model is not None and on_insert is not None and opts.paired:
        on_insert(model, 0)
    pool = shared = None
    server = model_server
    use_shared = opts.processes and BatchSlots.available()
    spare = opts.spare_workers if opts.processes and opts.neural and opts.threads > 1 else 0
    in_flight = 2 * opts.threads + spare  # a batch waiting for each computing worker, besides the workers' own
    # Batches the workers may park while the network's process starts, or after (Parking): beyond in_flight.
    parking = opts.processes and opts.neural and not opts.server and opts.threads > 1
    park = max(opts.park_batches, opts.park_steady) if parking else 0
    most_in_flight = in_flight + park * (opts.threads + spare)
    answers: ParkedAnswers | None = None
    sent = 0  # batches sent through slots: the b-th travels in slot b % most_in_flight

    def submit(recs, *args):
        nonlocal shared, sent, use_shared
        if pool is None:
            done: Future = Future()
            done.set_result(_work(recs, index, opts, *args))
            return done
        if isinstance(pool, ProcessPoolExecutor):
            # Worker processes are started inside submit().
            with sigint_ignored():
                packed = _pack_batch(recs, opts.paired)
                if use_shared and shared is None and isinstance(packed, (RawBatch, RawPairs)):
                    try:
                        shared = BatchSlots(most_in_flight, packed, opts.batch_size)
                    except OSError:  # no shared memory to be had: the pipes, as without memfd
                        use_shared = False
                if shared is not None and isinstance(packed, (RawBatch, RawPairs)):
                    packed = shared.send(sent % shared.spec.count, packed)
                    sent += 1
                if answers is not None:
                    return answers.follow(pool.submit(_work_in_worker, packed, *args))
                return pool.submit(_work_in_worker, packed, *args)
        return pool.submit(_work, recs, index, opts, *args)

    interrupted = finished = False
    cleanup = contextlib.ExitStack()
    try:  # the pool is started in here, so that `finally` stops whatever of it has started
        if opts.neural and opts.server and not (opts.threads > 1 and opts.processes):
            # This process's workers score through the server; each worker process connects itself.
            cleanup.callback(use_server, None)
            cleanup.callback(use_server(opts.server, opts.weights_dir).close)
        if opts.threads > 1 and opts.processes:
            cleanup.enter_context(single_threaded_blas_children())  # the processes started from here on
            pipes: list = []
            if opts.neural and not opts.server:  # a fresh interpreter (fork is unsafe once a device runtime runs), and first: its start is the longest
                server = server or ModelServer(opts.weights_dir, opts.threads + spare)
                pipes = server.worker_ends()
            context = start_worker_server()
            slots = context.Queue()
            for slot in range(len(pipes)):
                slots.put(slot)
            tokens = context.BoundedSemaphore(opts.threads) if spare else None
            if park:  # (so the network's process is this run's: the pipes above)
                answers = ParkedAnswers(context.Queue())
                cleanup.callback(answers.close)
            pool = ProcessPoolExecutor(opts.threads + spare, mp_context=context, initializer=_init_worker,
                                       initargs=(index.path, opts, pipes, slots, os.getpid(), tokens,
                                                 None if answers is None else answers.queue))
            if answers is not None:
                answers.pool = pool
        elif opts.threads > 1:
            pool = ThreadPoolExecutor(opts.threads, thread_name_prefix="neuromap-map")
        pending: deque = deque()

        def done(future: Future) -> tuple:
            text, stats = future.result() if answers is None else answers.result(future)
            return (text if shared is None else shared.receive(text)), stats

        def full() -> bool:  # as many batches in flight as may be, the parked ones beyond in_flight
            return len(pending) >= (in_flight if answers is None else min(in_flight + answers.parked, most_in_flight))

        for recs in batches:
            if opts.paired and model is None:
                # The insert size from the seeds of the batches so far, estimated here (seeding a
                # batch takes tens of ms) so that this batch too goes to the workers at once, to
                # be mapped with the estimate its own seeds completed, whatever the workers.
                model, samples = insert_from_seeds(_parse(recs, True), index, opts, samples)
                if model is not None and on_insert is not None:
                    on_insert(model, len(samples))
            trace.event("submit")
            pending.append(submit(recs, model))
            while full():
                if answers is not None:
                    answers.wait_for(lambda: pending[0].done() or not full())
                    if not pending[0].done():
                        continue  # room for another batch: one in flight was parked
                yield done(pending.popleft())
                trace.event("written")
        while pending:
            yield done(pending.popleft())
        trace.event("all-written")
        if opts.paired and model is None and on_insert is not None:
            on_insert(None, len(samples))
        finished = True
    except BrokenProcessPool:  # SIGKILL, the OOM killer (seen by result() or by the next submit): not a bug of ours
        raise NeuromapError("a worker process ended before finishing its batch (out of memory, or killed?)") from None
    except (KeyboardInterrupt, Terminated):
        interrupted = True
        raise
    finally:
        if pool is not None:
            # After an error, the workers are let finish their batch (and one still starting up,
            # its start): were this process to end first, they would print tracebacks. Ctrl-C and
            # SIGTERM stop at once (they reach the workers too, as a process group).
            pool.shutdown(wait=not interrupted, cancel_futures=True)
            trace.event("workers-ended")
        if server is not None and finished and pool is not None:
            server.release()  # every batch is written and every worker has ended: not waited for
        elif server is not None:
            server.close(wait=not interrupted)
            trace.event("model-process-ended")
        if shared is not None:
            shared.close()
        cleanup.close()
