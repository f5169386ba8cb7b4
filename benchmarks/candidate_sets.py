#!/usr/bin/env python3
"""The network on the aligner's own candidate sets: does it put the true window first?

    python benchmarks/candidate_sets.py [--holdout 777] [--genomes 779 781 783 785] [--reads 200000]
                                        [--weights DIR] [--fine-tune STEPS --output DIR]

Simulates 2 Mb synthetic genomes with repeats (seeds that are neither the calibration genome's,
1001, nor the benchmark's, 42) and 150-bp reads from each (seed + 1), runs neuromap's seeding and
DP (`pipeline.place` without the network, windows of the training width) and keeps each read
whose candidates hold its true window and at least one different window less than 10 alignment
points behind the best: what the network still judges in `align` (`DECIDED_GAP`). An example is
the true window, up to 4 such alternatives, and foreign windows of the genome to make 6.

On the held-out genome it prints how often the network's log-likelihood puts the true window
first, beside the ungapped match count along the best diagonal (what counting mismatches can do:
strictly first, or tied with another window).

With --fine-tune STEPS it fine-tunes the model (the shipped one, or --weights) on the other
genomes' examples, half of each batch, the other half `neuromap train`'s generated reads with the
shipped model's stage-3 recipe (neuromap/weights/CARD.md), writes it to --output and calibrates it.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from neuromap.calibrate import calibrate  # noqa: E402
from neuromap.evaluate import load_truth  # noqa: E402
from neuromap.index import build_index, load_index  # noqa: E402
from neuromap.io.fastx import batched, make_batch, read_fastx  # noqa: E402
from neuromap.pipeline import DECIDED_GAP, AlignOptions, place  # noqa: E402
from neuromap.simulate import simulate_reads, synthetic_genome, write_fasta, write_simulation  # noqa: E402

K, READ, FLANK = 6, 150, 24
WIDTH = READ + 2 * FLANK
GENOMES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "work", "genomes")


def candidate_examples(seed: int, n_reads: int, work: str) -> dict:
    """Examples (reads, mask, windows, start) from the candidate sets of a genome of `seed`."""
    ref, fq, tsv = (os.path.join(work, f"{seed}.{ext}") for ext in ("fa", "fq", "tsv"))
    write_fasta(ref, synthetic_genome(2_000_000, seed))
    write_simulation(simulate_reads(ref, n_reads, READ, seed=seed + 1, snp_rate=0.001, indel_rate=0.0001), fq, tsv)
    index = load_index(build_index(ref))
    truth = {name: (index.names.index(contig), start, strand == "-") for name, (contig, start, _, strand) in load_truth(tsv).items()}
    opts = AlignOptions(neural=False, margin=FLANK)
    rng = np.random.default_rng(seed)
    out: dict[str, list] = {"reads": [], "windows": [], "start": []}
    for records in batched(read_fastx(fq), 4000):
        batch = make_batch(records)
        pl = place(batch, index, opts)
        slot_pair = np.full(pl.valid.shape, -1)
        slot_pair[pl.pairs.read, pl.pairs.slot] = np.arange(len(pl.pairs.read))
        for r in np.flatnonzero((pl.valid.sum(axis=1) > 1) & (batch.lengths == READ)):
            contig, start, reverse = truth[batch.names[r]]
            origin = index.contig_offsets[contig] + start
            slots = np.flatnonzero(pl.valid[r])
            pairs = slot_pair[r, slots]
            is_true = ((pl.cands.contig[r, slots] == contig) & (pl.cands.reverse[r, slots] == reverse)
                       & (np.abs(pl.pairs.window_start[pairs] + FLANK - origin) <= 10))
            if is_true.sum() != 1:
                continue
            t = int(np.argmax(is_true))
            offset = int(origin - pl.pairs.window_start[pairs[t]])
            true_window = pl.pairs.target[pairs[t], :WIDTH]
            if not 0 <= offset <= WIDTH - READ or (true_window >= 4).any():
                continue
            score = pl.slot_score[r, slots]
            near = [pl.pairs.target[pairs[i], :WIDTH] for i in np.argsort(-score, kind="stable")
                    if i != t and score[i] > score.max() - DECIDED_GAP]
            near = [w for w in near if not np.array_equal(w, true_window)][: K - 2]
            if not near:
                continue  # exact copies only: nothing tells them apart
            while len(near) < K - 1:
                at = int(rng.integers(0, len(index.seq) - WIDTH))
                near.append(np.asarray(index.seq[at : at + WIDTH]))
            windows = np.stack([true_window] + near).astype(np.int8)
            windows[windows >= 4] = 0
            read = pl.pairs.query[pairs[t], :READ].astype(np.int8)
            read[read >= 4] = -1
            out["reads"].append(read)
            out["windows"].append(windows)
            out["start"].append(offset)
    data = {name: np.stack(values) for name, values in out.items()}
    data["mask"] = np.ones(data["reads"].shape, np.float32)
    return data


def network_first(weights: str | None, data: dict) -> float:
    from neuromap.operators.mapping import NeuralReadMapper
    from neuromap.train import eval_outputs

    model = NeuralReadMapper.pretrained(weights)
    ll = np.concatenate([np.asarray(eval_outputs(model, data["reads"][lo : lo + 128], data["mask"][lo : lo + 128], data["windows"][lo : lo + 128])[1])
                         for lo in range(0, len(data["start"]), 128)])
    return float(np.mean(np.argmax(ll, axis=1) == 0))


def matches_first(data: dict) -> tuple[float, float]:
    """Shares of examples where the true window has strictly the most, or tied most, matches on
    its best ungapped diagonal."""
    reads, windows = data["reads"], data["windows"]
    diagonals = np.lib.stride_tricks.sliding_window_view(windows, READ, axis=2)  # (n, K, starts, READ)
    best = (diagonals == reads[:, None, None, :]).sum(axis=3).max(axis=2)
    top = best.max(axis=1)
    first = best[:, 0] == top
    alone = first & ((best == top[:, None]).sum(axis=1) == 1)
    return float(alone.mean()), float((first & ~alone).mean())


def fine_tune(weights: str | None, pool: dict, steps: int, output: str) -> None:
    import neuromap.train as training
    from neuromap.operators.mapping import NeuralReadMapperConfig
    from neuromap.training_data import TrainConfig, make_examples
    from neuromap.weights import SHIPPED

    cfg = TrainConfig(steps=steps, batch_size=64, windows_per_read=K, min_read_length=100, max_error_rate=0.02, max_snp_rate=0.002,
                      near_paralog=(0.003, 0.02), init_from=weights or "shipped", position_smoothing=0.02, learning_rate=3e-4,
                      validate_every=200, seed=5, genome_fraction=0.5,
                      genomes=tuple(os.path.join(GENOMES, f) for f in ("lambda_virus.fa", "MT-human.fa", "MT-orang.fa")))
    n = len(pool["start"])

    def batch_for_step(cfg, step):  # half generated (as `neuromap train`), half candidate sets
        rng = np.random.default_rng([cfg.seed, step])
        made = make_examples(rng, cfg.batch_size // 2, cfg)
        pick = rng.integers(0, n, cfg.batch_size - cfg.batch_size // 2)
        return tuple(np.concatenate([a, pool[k][pick]]) for a, k in zip(made, ("reads", "mask", "windows", "start")))

    training.batch_for_step = batch_for_step
    with open(os.path.join(weights or SHIPPED, "config.json")) as fh:
        fields = {k: v for k, v in json.load(fh).items() if k != "compute_dtype"}
    training.train(NeuralReadMapperConfig(**fields), cfg, output, progress=False, log=lambda m: print(m, file=sys.stderr))
    calibrate(output)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--holdout", type=int, default=777)
    ap.add_argument("--genomes", type=int, nargs="+", default=[779, 781, 783, 785])
    ap.add_argument("--reads", type=int, default=200_000)
    ap.add_argument("--weights", help="model directory (default: the shipped one)")
    ap.add_argument("--fine-tune", type=int, metavar="STEPS")
    ap.add_argument("--output", help="where --fine-tune writes its model")
    args = ap.parse_args()
    if args.fine_tune and not args.output:
        ap.error("--fine-tune needs --output")
    with tempfile.TemporaryDirectory() as work:
        held_out = candidate_examples(args.holdout, args.reads, work)
        pool = None
        if args.fine_tune:
            parts = [candidate_examples(seed, args.reads, work) for seed in args.genomes]
            pool = {k: np.concatenate([p[k] for p in parts]) for k in held_out}
    alone, tied = matches_first(held_out)
    print("# The network on the aligner's candidate sets\n")
    print(f"- held-out genome: 2 Mb synthetic, seed {args.holdout}; {args.reads:,} reads; "
          f"{len(held_out['start']):,} reads with a different window less than {DECIDED_GAP} points behind the best\n")
    print("| chooser | true window first | tied first |\n|---|---|---|")
    print(f"| matches on the best ungapped diagonal | {alone:.3f} | {tied:.3f} |")
    print(f"| network log-likelihood ({args.weights or 'shipped'}) | {network_first(args.weights, held_out):.3f} | |")
    if pool is not None:
        fine_tune(args.weights, pool, args.fine_tune, args.output)
        print(f"| network log-likelihood, fine-tuned {args.fine_tune} steps on {len(pool['start']):,} examples "
              f"of genomes {', '.join(map(str, args.genomes))} | {network_first(args.output, held_out):.3f} | |")


if __name__ == "__main__":
    main()
