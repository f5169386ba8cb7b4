"""Calibrating the network's MAPQ on held-out simulated reads.

The aligner turns the network's per-window log-likelihoods into P(correct) by a softmax over a
read's candidate windows with one scale λ. We choose λ to minimise the log loss of P(correct)
against whether each read's chosen placement is right, on reads simulated from a synthetic genome
with repeats that training never saw (its own seed). λ is written to calibration.json beside the
weights together with the fit's figures.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass

import numpy as np

from neuromap import scratch
from neuromap.index import build_index, load_index
from neuromap.io.fastx import batched, make_batch, read_fastx
from neuromap.mapq import p_correct
from neuromap.pipeline import AlignOptions, bounded_p, place, score_bounds, unscored_ll
from neuromap.simulate import simulate_reads, synthetic_genome, write_fasta, write_simulation


def _log_loss(p: np.ndarray, right: np.ndarray) -> float:
    p = np.clip(p, 1e-9, 1 - 1e-9)
    return float(-np.mean(np.where(right, np.log(p), np.log(1 - p))))


@dataclass
class Collected:
    """Per aligned read: its placements' log-likelihoods and alignment scores, which of them
    P(correct) is taken over (as `align` does: `Placements.choosable`), which is chosen, the
    unscored extra placements, what each of those is taken to be worth (`unscored`: the
    log-likelihood of `pipeline.unscored_ll`; `weakest_score`: the weakest scored candidate's
    alignment score), whether the choice is right, and the bounds `align` puts on the network's
    P(correct) from the alignment scores (`pipeline.score_bounds`: `tied`, `ahead`, `p_by_score`)."""

    ll: np.ndarray
    valid: np.ndarray
    chosen: np.ndarray
    extra: np.ndarray
    unscored: np.ndarray
    right: np.ndarray
    score: np.ndarray
    weakest_score: np.ndarray
    tied: np.ndarray
    ahead: np.ndarray
    p_by_score: np.ndarray


def collect(weights_dir: str | None, genome_size: int, n_reads: int, seed: int, workdir: str) -> Collected:
    """Simulate a genome of `seed` and reads from it (seed + 1) in `workdir`, then `collect_reads`."""
    ref = os.path.join(workdir, "calibration.fa")
    write_fasta(ref, synthetic_genome(genome_size, seed))
    reads, truth_path = os.path.join(workdir, "reads.fq"), os.path.join(workdir, "truth.tsv")
    write_simulation(simulate_reads(ref, n_reads, 150, seed=seed + 1, snp_rate=0.001, indel_rate=0.0001), reads, truth_path)
    return collect_reads(load_index(build_index(ref)), reads, truth_path, weights_dir)


def collect_reads(index, reads: str, truth_path: str, weights_dir: str | None = None, neural: bool = True) -> Collected:
    """Align `reads` (simulated, with `truth_path`) and collect what P(correct) is made of."""
    truth = {}
    for line in open(truth_path):
        if not line.startswith("#"):
            name, contig, start, _, strand = line.split()[:5]
            truth[name] = (contig, int(start), strand == "-")
    opts = AlignOptions(neural=neural, weights_dir=weights_dir)
    rows = {name: [] for name in Collected.__dataclass_fields__}
    for records in batched(read_fastx(reads), opts.batch_size):
        batch = make_batch(records)
        pl = place(batch, index, opts)
        n = len(batch)
        slot_pair = np.full(pl.valid.shape, -1)
        slot_pair[pl.pairs.read, pl.pairs.slot] = np.arange(len(pl.pairs.read))
        pair = slot_pair[np.arange(n), pl.chosen]
        floor = unscored_ll(pl)
        floor_score = np.where(pl.valid, pl.slot_score, np.iinfo(np.int64).max).min(axis=1)
        tied, ahead, by_score = score_bounds(pl, opts) if neural else (np.zeros(n, bool), np.zeros(n, bool), np.ones(n))
        for r in range(n):
            if pair[r] < 0 or not pl.valid[r].any():
                continue
            g = int(pl.pairs.window_start[pair[r]] + pl.pair_start[pair[r]])
            contig = int(pl.cands.contig[r, pl.chosen[r]])
            t_contig, t_start, t_rev = truth[batch.names[r]]
            ok = (index.names[contig] == t_contig and bool(pl.cands.reverse[r, pl.chosen[r]]) == t_rev
                  and abs(g - int(index.contig_offsets[contig]) - t_start) <= 10)
            rows["ll"].append(np.where(pl.choosable[r], pl.ll[r], 0.0))
            rows["score"].append(np.where(pl.choosable[r], pl.slot_score[r], 0))
            rows["valid"].append(pl.choosable[r])
            rows["chosen"].append(pl.chosen[r])
            rows["extra"].append(pl.extra[r])
            rows["unscored"].append(floor[r])
            rows["weakest_score"].append(floor_score[r])
            rows["tied"].append(tied[r])
            rows["ahead"].append(ahead[r])
            rows["p_by_score"].append(by_score[r])
            rows["right"].append(ok)
    return Collected(**{name: np.array(values) for name, values in rows.items()})


def fit_scale(data: Collected) -> tuple[float, dict]:
    ll, valid, chosen, extra, unscored, right = data.ll, data.valid, data.chosen, data.extra, data.unscored, data.right

    def p_at(lam: float) -> np.ndarray:  # as `align` computes it, bounded by the alignment scores
        return bounded_p(p_correct(ll * lam, valid, chosen, extra, unscored * lam), data.tied, data.ahead, data.p_by_score)

    # A coarse grid (with λ = 1, no scaling, among its points), then a fine one around its best.
    grid = np.append(np.geomspace(0.01, 20.0, 300), 1.0)
    grid.sort()
    losses = [_log_loss(p_at(lam), right) for lam in grid]
    i = int(np.argmin(losses))
    fine = np.geomspace(grid[max(i - 1, 0)], grid[min(i + 1, len(grid) - 1)], 101)
    fine_losses = [_log_loss(p_at(lam), right) for lam in fine]
    best = float(fine[int(np.argmin(fine_losses))]) if min(fine_losses) < losses[i] else float(grid[i])
    p_fit = p_at(best)
    p_raw = p_at(1.0)
    report = {
        "scale": best,
        "reads": int(len(right)),
        "reads_with_alternatives": int(((valid.sum(axis=1) > 1) | (extra > 0)).sum()),
        "wrong": int((~right).sum()),
        "log_loss_unscaled": _log_loss(p_raw, right),
        "log_loss": _log_loss(p_fit, right),
        "brier_unscaled": float(np.mean((p_raw - right) ** 2)),
        "brier": float(np.mean((p_fit - right) ** 2)),
    }
    return best, report


def calibrate(weights_dir: str, genome_size: int = 1_000_000, n_reads: int = 20_000, seed: int = 1001) -> dict:
    with tempfile.TemporaryDirectory(prefix="neuromap-calibrate-") as workdir:
        data = collect(weights_dir, genome_size, n_reads, seed, workdir)
    _, report = fit_scale(data)
    report.update(genome_size=genome_size, seed=seed, read_length=150)
    path = os.path.join(weights_dir, "calibration.json")
    scratch.write_atomic(path, json.dumps(report, indent=1))
    from neuromap.model import load_model

    load_model.cache_clear()
    return report
