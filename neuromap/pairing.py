"""Paired-end reads: the insert-size model, mate rescue and the joint choice of both mates.

A batch of n pairs is one batch of 2n reads (mate 1 of pair i is read i, mate 2 is read n + i),
so seeding, scoring (network or DP) and description are exactly the single-end stages. Pairing adds:

* the insert-size model, estimated from pairs whose mates each seed to one place only, FR
  oriented on one contig (outliers beyond 2 IQR dropped, as bwa does), or given with -I;
* rescue: where one mate's top placement has no partner candidate at a concordant distance,
  the window the insert size points to is searched for the partner (exact 11-mers voting on a
  diagonal) and the hit joins the partner's candidates, scored like any other by the model/DP;
* the joint choice: every combination of the two mates' placements gets
  log L(mate 1) + log L(mate 2) + log P(insert), where P(insert) mixes the fitted normal
  density (concordant FR pairs) with a small discordant probability spread uniformly over the
  genome. The best combination is chosen; each mate's P(correct) is the posterior mass of the
  combinations that place it where it was placed, so a mate in a repeat gets the confidence its
  uniquely placed partner lends it (and no more).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from neuromap import kernels
from neuromap.errors import NeuromapError
from neuromap.index import Index
from neuromap.mapq import tie_break
from neuromap.seed import Candidates
from neuromap.windows import gather_windows, oriented_reads

MIN_PAIRS = 25  # confidently placed pairs needed to estimate the insert size
MAX_INSERT = 10_000  # longer "inserts" of uniquely seeded mates are not fragments (SVs, chimeras)
P_DISCORDANT = 1e-3  # prior probability that a pair is not a normal FR fragment
RESCUE_K = 11  # exact k-mer length of the rescue search
RESCUE_ANCHORS = 2  # placements of a mate around which its partner is searched for
RESCUE_MIN_VOTES = 2
RESCUE_HITS = 4  # placements kept per rescue window (shifts in a tandem repeat all tie)
RESCUE_SEPARATION = 12  # rescued placements at least this far apart (diagonals of one indel merge)


@dataclass(frozen=True)
class InsertModel:
    """Insert-size distribution (normal) and the range of a proper pair: as bwa, the wider of
    mean +- 4 sd and the quartiles -+ 3 IQR (about mean +- 4.7 sd for a normal distribution)."""

    mean: float
    std: float
    pairs: int  # pairs it was estimated from; 0 when given by the user
    q1: float | None = None
    q3: float | None = None

    @property
    def low(self) -> float:
        """Shortest insert of a proper pair (at least 1)."""
        low = self.mean - 4 * self.std
        if self.q1 is not None and self.q3 is not None:
            low = min(low, self.q1 - 3 * (self.q3 - self.q1))
        return max(1.0, low)

    @property
    def high(self) -> float:
        high = self.mean + 4 * self.std
        if self.q1 is not None and self.q3 is not None:
            high = max(high, self.q3 + 3 * (self.q3 - self.q1))
        return high

    def describe(self) -> str:
        source = f"estimated from {self.pairs} pairs" if self.pairs else "given with -I"
        return f"insert size mean {self.mean:.1f}, sd {self.std:.1f}, orientation FR ({source}); proper pairs {self.low:.0f}-{self.high:.0f} bp"

    def log_pair_term(self, concordant: np.ndarray, insert: np.ndarray, genome_length: int) -> np.ndarray:
        """log P(the two placements | one fragment): FR on one contig -> normal density mixed with
        the discordant floor; anything else -> the floor (uniform over the genome)."""
        floor = np.log(P_DISCORDANT) - np.log(max(genome_length, 1))
        z = (insert - self.mean) / self.std
        normal = np.log1p(-P_DISCORDANT) - 0.5 * z * z - np.log(self.std * np.sqrt(2 * np.pi))
        return np.where(concordant, np.logaddexp(normal, floor), floor)


def parse_insert(text: str) -> InsertModel:
    """-I MEAN[,STD] (bwa's form; STD defaults to 10 % of MEAN)."""
    parts = text.split(",")
    try:
        mean = float(parts[0])
        std = float(parts[1]) if len(parts) > 1 else 0.1 * mean
    except ValueError:
        raise NeuromapError(f"-I: expected MEAN[,STD] in bp (got {text!r})") from None
    if len(parts) > 2 or not (mean > 0 and std > 0 and np.isfinite(mean) and np.isfinite(std)):
        raise NeuromapError(f"-I: expected a positive MEAN[,STD] in bp (got {text!r})")
    return InsertModel(mean, std, 0)


def _fr_insert(diag_a, rev_a, len_a, diag_b, rev_b, len_b):
    """Insert of placements a and b read as an FR pair: end of the reverse mate - start of the forward one."""
    fwd_start = np.where(rev_a, diag_b, diag_a)
    rev_end = np.where(rev_a, diag_a + len_a, diag_b + len_b)
    return rev_end - fwd_start


def seed_inserts(cands: Candidates, lengths: np.ndarray, n: int) -> np.ndarray:
    """Inserts of pairs whose mates each seed to exactly one placement, FR on one contig."""
    unique = (cands.n_clusters == 1) & cands.valid[:, 0]
    ok = unique[:n] & unique[n:]
    ok &= cands.contig[:n, 0] == cands.contig[n:, 0]
    ok &= cands.reverse[:n, 0] != cands.reverse[n:, 0]
    ins = _fr_insert(cands.diagonal[:n, 0], cands.reverse[:n, 0], lengths[:n].astype(np.int64),
                     cands.diagonal[n:, 0], cands.reverse[n:, 0], lengths[n:].astype(np.int64))
    ok &= (ins > 0) & (ins <= MAX_INSERT)
    return ins[ok].astype(np.int64)


def estimate_insert(inserts: np.ndarray) -> InsertModel | None:
    """Mean and sd of the inserts within 2 IQR of the quartiles; None with too few pairs."""
    if len(inserts) < MIN_PAIRS:
        return None
    q1, q3 = np.percentile(inserts, [25, 75])
    iqr = q3 - q1
    kept = inserts[(inserts >= q1 - 2 * iqr) & (inserts <= q3 + 2 * iqr)].astype(np.float64)
    if len(kept) < MIN_PAIRS:
        return None
    return InsertModel(float(kept.mean()), max(float(kept.std()), 1.0), int(len(kept)), float(q1), float(q3))


def _vote(query: np.ndarray, target: np.ndarray, expect: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per task, up to RESCUE_HITS diagonals (target column of query column 0) with the most
    exact k-mer hits, at least RESCUE_SEPARATION apart; among equal votes the one nearest to
    `expect` (the mean insert) first. Returns (t, RESCUE_HITS) diagonals and votes (0: none).
    Compiled (nm_rescue_vote); tests/reference_pairing.py keeps the numpy it replaced."""
    t = query.shape[0]
    diags = np.zeros((t, RESCUE_HITS), dtype=np.int64)
    votes = np.zeros((t, RESCUE_HITS), dtype=np.int64)
    if t == 0:
        return diags, votes
    if 4**RESCUE_K * (target.shape[1] + 1) >= 1 << 62:
        raise ValueError(f"rescue search: k-mers of {RESCUE_K} in windows of {target.shape[1]:,} bases do not fit the sort keys")
    kernels.call("nm_rescue_vote", np.ascontiguousarray(query, dtype=np.uint8), t, query.shape[1], np.ascontiguousarray(target, dtype=np.uint8),
                 target.shape[1], np.ascontiguousarray(expect, dtype=np.int64), RESCUE_K, RESCUE_HITS, RESCUE_SEPARATION, diags, votes)
    return diags, votes


def add_rescued(cands: Candidates, codes: np.ndarray, lengths: np.ndarray, n: int, index: Index, model: InsertModel) -> Candidates:
    """Candidates with the placements that a search of the window the insert size points to
    (from one of the partner's top RESCUE_ANCHORS placements) finds, up to RESCUE_HITS per
    anchor, in slots after the seeded ones: each read's in the order of its anchors, then of
    their votes, and only as many more slots as the batch's read with the most needs (none when
    nothing is found; RESCUE_ANCHORS x RESCUE_HITS in batches with a mate in a tandem repeat)."""
    n_reads, slots = cands.valid.shape
    anchors = min(RESCUE_ANCHORS, slots)
    if n == 0 or anchors == 0:
        return cands
    length = lengths.astype(np.int64)
    # For read r and anchor slot j of its partner p: is the anchor a placement, and has r no
    # candidate at a concordant distance from it (FR, one contig, insert within the model's range)?
    need = np.zeros((n_reads, anchors), bool)
    kernels.call("nm_rescue_need", np.ascontiguousarray(cands.valid, dtype=np.bool_), np.ascontiguousarray(cands.diagonal, dtype=np.int64),
                 np.ascontiguousarray(cands.reverse, dtype=np.bool_), np.ascontiguousarray(cands.contig, dtype=np.int32), length, n, slots,
                 anchors, np.array([model.low, model.high], np.float64), RESCUE_K, need)
    read, j = np.nonzero(need)
    if len(read) == 0:
        return cands
    partner = np.where(read < n, read + n, read - n)
    a_diag, a_rev, a_ctg, a_len = cands.diagonal[partner, j], cands.reverse[partner, j], cands.contig[partner, j], length[partner]
    r_len = length[read]
    # Range of the rescued read's start (its diagonal) for an insert within [low, high].
    lo_start = np.where(a_rev, a_diag + a_len - int(model.high), a_diag + int(model.low) - r_len)
    hi_start = np.where(a_rev, a_diag + a_len - int(model.low), a_diag + int(np.ceil(model.high)) - r_len)
    c_lo = index.contig_offsets[a_ctg]
    c_hi = c_lo + index.contig_lengths[a_ctg]
    win_lo = np.clip(lo_start, c_lo, c_hi)
    width = int((hi_start - lo_start).max() + r_len.max())
    target = gather_windows(index, a_ctg, win_lo, width)
    # The rescued read lies on the strand opposite to its anchor.
    rev = ~a_rev
    query = oriented_reads(codes, lengths, read, rev)
    expect = np.where(a_rev, a_diag + a_len - int(model.mean), a_diag + int(model.mean) - r_len) - win_lo
    diag, votes = _vote(query, target, expect)
    task, h = np.nonzero(votes >= RESCUE_MIN_VOTES)  # by read, then anchor, then falling votes
    if len(task) == 0:
        return cands
    rd = read[task]
    rank = np.arange(len(rd)) - np.searchsorted(rd, rd)  # the hit's place among its read's
    out = Candidates.empty(n_reads, slots + int(rank.max()) + 1, cands.n_clusters)
    for field in ("valid", "diagonal", "reverse", "contig", "support"):
        getattr(out, field)[:, :slots] = getattr(cands, field)
    col = slots + rank
    out.valid[rd, col] = True
    out.diagonal[rd, col] = win_lo[task] + diag[task, h]
    out.reverse[rd, col] = rev[task]
    out.contig[rd, col] = a_ctg[task]
    out.support[rd, col] = votes[task, h]
    return out


@dataclass
class PairChoice:
    chosen: np.ndarray  # (2n,) slot chosen for each read
    p: np.ndarray  # (2n,) P(correct) of each read's placement, given its mate


def choose_pairs(
    log_p: np.ndarray,
    valid: np.ndarray,
    start: np.ndarray,
    reverse: np.ndarray,
    contig: np.ndarray,
    lengths: np.ndarray,
    extra: np.ndarray,
    single_chosen: np.ndarray,
    single_p: np.ndarray,
    names: list[str],
    model: InsertModel,
    genome_length: int,
    weakest: np.ndarray | None = None,
) -> PairChoice:
    """Joint choice of the two mates' placements (see the module docstring).

    log_p: (2n, S) log-probability scale likelihood of each placement; start: global reference
    position of each placement's first base; extra: placements found but not scored (see below);
    single_chosen, single_p: each read's choice and P(correct) from its own placements alone,
    which stand where its mate has no placement (single_p is read there only);
    weakest: (2n,) log-probability each unscored placement is taken to have (the aligner gives
    `pipeline.unscored_ll`: the median of the mate's other seeded candidates; default: the
    weakest valid one).
    """
    n = log_p.shape[0] // 2
    chosen, p = single_chosen.copy(), single_p.copy()
    count = valid.sum(axis=1)
    both = (count[:n] > 0) & (count[n:] > 0)
    # Most pairs have one placement per mate and nothing unscored: that combination is the choice
    # and holds all the posterior mass (what the general case below computes, exactly).
    lone = both & (count[:n] == 1) & (count[n:] == 1) & (extra[:n] == 0) & (extra[n:] == 0)
    lone_rows = np.flatnonzero(lone)
    for mates in (lone_rows, lone_rows + n):
        chosen[mates] = valid[mates].argmax(axis=1)
        p[mates] = 1.0
    rows = np.flatnonzero(both & ~lone)
    if len(rows) == 0:
        return PairChoice(chosen, p)
    a, b = rows, rows + n
    length = lengths.astype(np.int64)
    la = np.where(valid[a], log_p[a], -np.inf)
    lb = np.where(valid[b], log_p[b], -np.inf)
    ins = _fr_insert(start[a][:, :, None], reverse[a][:, :, None], length[a][:, None, None],
                     start[b][:, None, :], reverse[b][:, None, :], length[b][:, None, None])
    concordant = (contig[a][:, :, None] == contig[b][:, None, :]) & (reverse[a][:, :, None] != reverse[b][:, None, :]) & (ins > 0)
    pair_term = model.log_pair_term(concordant, ins, genome_length)
    joint = la[:, :, None] + lb[:, None, :] + pair_term
    s = joint.shape[1]
    flat = joint.reshape(len(rows), s * s)
    best = flat.max(axis=1)
    pick = flat.argmax(axis=1)
    ties = flat == best[:, None]
    tied = np.flatnonzero(ties.sum(axis=1) > 1)  # equal combinations: by a hash of the name
    if len(tied):
        pick[tied] = tie_break(names, rows[tied], ties[tied])
    ca, cb = pick // s, pick % s
    r = np.arange(len(rows))
    w = np.exp(joint - best[:, None, None])  # -inf -> 0
    total = w.sum(axis=(1, 2))
    num_a = w[r, ca, :].sum(axis=1)
    num_b = w[r, :, cb].sum(axis=1)
    # Placements found by seeding but not scored (beyond -N): each counted as likely as `weakest`
    # says (the aligner gives the median of the mate's other seeded candidates). Whether they lie
    # at a concordant distance is unknown; they are taken to resemble the scored non-chosen
    # placements: in a tandem array those are concordant (so are the extras: low MAPQ), in a
    # dispersed family they are not (so the partner decides). These combinations place the
    # partner where it was placed (they count for it) and this mate elsewhere; where the partner
    # has unscored placements too, the combinations of those with these are counted below,
    # against both mates.
    floor = np.log(P_DISCORDANT) - np.log(max(genome_length, 1))
    if weakest is None:
        fa, fb = (np.where(np.isfinite(lm), lm, np.inf).min(axis=1) for lm in (la, lb))
    else:
        fa, fb = weakest[a], weakest[b]
    masses = []
    for mine, lm, lo, own, partner, term, floor_ll in ((a, la, lb, ca, cb, pair_term[r, :, cb], fa), (b, lb, la, cb, ca, pair_term[r, ca, :], fb)):
        others = np.isfinite(lm)
        others[r, own] = False
        n_others = others.sum(axis=1)
        resemble = np.where(others, np.exp(term), 0.0).sum(axis=1) / np.maximum(n_others, 1)
        resemble = np.where(n_others > 0, resemble, np.exp(floor))
        with np.errstate(divide="ignore"):
            masses.append(extra[mine] * np.exp(floor_ll + lo[r, partner] - best) * resemble)
    mass_a, mass_b = masses
    total = total + mass_a + mass_b
    num_a, num_b = num_a + mass_b, num_b + mass_a
    # Where both mates have unscored placements (a repeat longer than the fragment, a tandem
    # array), those can pair with each other: each of the fewer is taken to have a concordant
    # partner among the other mate's, at the likeliest insert. The scored ones cannot tell: they
    # are the first found, often bunched at one end of an array, and pair with each other badly.
    # These combinations place neither mate where it was placed.
    both_extra = np.minimum(extra[a], extra[b])
    if both_extra.any():
        closest = model.log_pair_term(np.array(True), np.array(model.mean), genome_length)
        # fa + fb <= the best mates' likelihoods, and the closest insert's term exceeds any
        # combination's by at most the discordant floor's depth: no overflow.
        total = total + np.where(both_extra > 0, both_extra * np.exp(np.where(both_extra > 0, fa + fb + closest - best, 0.0)), 0.0)
    chosen[a], chosen[b] = ca, cb
    p[a] = num_a / total
    p[b] = num_b / total
    return PairChoice(chosen, p)
