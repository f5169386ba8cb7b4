"""Training is deterministic given a seed, and a resumed run ends where an uninterrupted one does."""

import dataclasses
import json
import os

import numpy as np

from neuromap.operators.mapping import NeuralReadMapper, NeuralReadMapperConfig
from neuromap.operators.mapping.neural_mapper import load_parameters
from neuromap.train import TrainConfig, train

from conftest import assert_clean_error, run_cli

TINY = NeuralReadMapperConfig(read_length=64, reference_window=96, embedding_dim=8, num_heads=2, num_layers=1, dropout_rate=0.1)


def cfg(steps):
    return TrainConfig(steps=steps, batch_size=4, read_length=48, min_read_length=30, flank=8, validate_every=2, validation_reads=8)


def params(directory):
    with np.load(os.path.join(directory, "params.npz")) as z:
        return {k: z[k] for k in z.files}


def test_resumed_training_equals_uninterrupted(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    train(TINY, cfg(4), str(a), progress=False, log=lambda m: None)
    train(TINY, cfg(2), str(b), progress=False, log=lambda m: None)
    train(TINY, cfg(4), str(b), progress=False, log=lambda m: None)  # resumes at step 2
    pa, pb = params(a), params(b)
    assert pa.keys() == pb.keys()
    assert all(np.array_equal(pa[k], pb[k]) for k in pa)
    history = json.load(open(b / "history.json"))
    assert [h["step"] for h in history] == [2, 4]
    assert {"within_2bp", "true_window_wins", "quality_true", "quality_foreign", "loss"} <= set(history[-1])
    # The result loads into a model of the recorded configuration.
    config = NeuralReadMapperConfig(**json.load(open(a / "config.json")))
    load_parameters(NeuralReadMapper(config), str(a / "params.npz"))


def test_train_and_calibrate_bad_arguments(tmp_path):
    assert_clean_error(run_cli(["train", "-o", tmp_path / "m", "--embedding-dim", "30", "--num-heads", "4", "--steps", "1"]), "embedding_dim")
    assert_clean_error(run_cli(["calibrate", tmp_path]), "params.npz")


def test_train_command_records_its_example_options(tmp_path):
    """`neuromap train` passes the example generator's options through and records them, so a
    model's card can give the exact recipe."""
    out = tmp_path / "m"
    res = run_cli(["train", "-o", out, "--steps", "1", "--batch-size", "2", "--validate-every", "1", "--embedding-dim", "8",
                   "--num-heads", "1", "--read-length", "160", "--reference-window", "200", "--max-error-rate", "0.02",
                   "--max-snp-rate", "0.002", "--near-paralog", "0.003", "0.02", "--quiet"])
    assert res.returncode == 0, res.stderr
    recorded = json.load(open(out / "train_config.json"))
    assert recorded["max_error_rate"] == 0.02 and recorded["max_snp_rate"] == 0.002
    assert recorded["near_paralog"] == [0.003, 0.02]
    bad = run_cli(["train", "-o", out, "--max-error-rate", "0.9"])  # a usage error, as click reports them
    assert bad.returncode == 2 and "--max-error-rate" in bad.stderr and "Traceback" not in bad.stderr


def test_worker_processes_give_the_same_training(tmp_path):
    """Batches made ahead by worker processes are the batches of the same steps: same weights."""
    a, b = tmp_path / "a", tmp_path / "b"
    train(TINY, cfg(3), str(a), progress=False, log=lambda m: None)
    train(TINY, cfg(3), str(b), progress=False, log=lambda m: None, workers=2)
    pa, pb = params(a), params(b)
    assert all(np.array_equal(pa[k], pb[k]) for k in pa)


def test_windows_per_read_layout():
    """Window 0 is the true one, then near paralogs, a diverged paralog and a foreign window."""
    from neuromap.training_data import make_examples

    config = TrainConfig(windows_per_read=6, near_paralog=(0.01, 0.02), max_error_rate=0.0, max_snp_rate=0.0)
    reads, mask, windows, start = make_examples(np.random.default_rng(5), 200, config)
    differs = (windows != windows[:, :1]).mean(axis=(0, 2))
    assert differs[0] == 0
    assert all(0.005 < d < 0.025 for d in differs[1:4])  # near paralogs
    assert 0.04 < differs[4] < 0.15  # diverged
    assert differs[5] > 0.5  # foreign
    # Error-free reads are the true window's bases from their start (N calls aside).
    for i in range(20):
        n = int(mask[i].sum())
        read, template = reads[i, :n], windows[i, 0, start[i] : start[i] + n]
        assert np.all((read == template) | (read == -1))


def test_calibrate_writes_the_fit_beside_the_weights(tmp_path):
    """`neuromap calibrate` on a copy of the shipped model (a small held-out genome): the fitted
    scale and its figures land in calibration.json, and nothing else is left behind."""
    import shutil

    from neuromap.weights import SHIPPED

    model_dir = tmp_path / "model"
    model_dir.mkdir()
    for name in ("params.npz", "config.json"):
        shutil.copy(os.path.join(SHIPPED, name), model_dir / name)
    res = run_cli(["calibrate", model_dir, "--genome-size", 200_000, "-n", 400])
    assert res.returncode == 0, res.stderr
    fit = json.load(open(model_dir / "calibration.json"))
    assert fit == json.loads(res.stdout)
    assert fit["scale"] > 0 and fit["reads"] > 300 and 0 < fit["reads_with_alternatives"] < fit["reads"]
    assert fit["log_loss"] <= fit["log_loss_unscaled"]
    assert sorted(p.name for p in model_dir.iterdir()) == ["calibration.json", "config.json", "params.npz"]


def test_fine_tune_starts_from_a_trained_model(tmp_path):
    """--init-from takes a trained model's architecture and parameters; a parameter the model adds
    (the base-identity weight) starts at its initial value. With a learning rate of 0 nothing
    moves: the result is the trained model plus that weight."""
    small = ["--steps", "1", "--batch-size", "2", "--validate-every", "1", "--read-length", "160", "--reference-window", "200", "--quiet"]
    base = tmp_path / "base"
    assert run_cli(["train", "-o", base, "--embedding-dim", "8", "--num-heads", "1", *small]).returncode == 0
    out = tmp_path / "ft"
    res = run_cli(["train", "-o", out, "--init-from", base, "--base-identity", "--lr", "0", "--embedding-dim", "16",
                   "--position-smoothing", "0", *small])
    assert res.returncode == 0, res.stderr
    assert "new: identity_weight" in res.stderr
    trained, tuned = params(base), params(out)
    assert set(tuned) == set(trained) | {"identity_weight"} and float(tuned["identity_weight"]) == 1.0
    assert all(np.array_equal(tuned[k], trained[k]) for k in trained)
    config = json.load(open(out / "config.json"))
    assert config["embedding_dim"] == 8 and config["base_identity"] is True  # the base's width, not 16
    recorded = json.load(open(out / "train_config.json"))
    assert recorded["init_from"] == str(base) and recorded["position_smoothing"] == 0
    # 'shipped': the package's weights, recorded as such
    res = run_cli(["train", "-o", tmp_path / "s", "--init-from", "shipped", "--lr", "0", *small])
    assert res.returncode == 0, res.stderr
    from neuromap.weights import SHIPPED

    shipped = params(SHIPPED)
    assert all(np.array_equal(params(tmp_path / "s")[k], shipped[k]) for k in shipped)
    assert json.load(open(tmp_path / "s" / "train_config.json"))["init_from"] == "shipped"
    assert_clean_error(run_cli(["train", "-o", tmp_path / "x", "--init-from", tmp_path]), "not a trained neuromap model")
    for name, broken in (("config.json", "{not json"), ("params.npz", "PK\x03\x04 truncated")):
        bad = tmp_path / f"bad-{name}"
        bad.mkdir()
        for part in ("config.json", "params.npz"):
            (bad / part).write_bytes((base / part).read_bytes())
        (bad / name).write_text(broken)
        assert_clean_error(run_cli(["train", "-o", tmp_path / "y", "--init-from", bad, *small]), f"{bad / name}")
        assert not (tmp_path / "y").exists()  # nothing written


def test_position_smoothing_shapes_the_position_target():
    """The position loss puts 1 - s on the true start and s/2 on each neighbour: with s = 0 a
    model whose scores peak sharply at the true start has almost no position loss, with the
    default 0.2 it pays for the sharpness."""
    from neuromap.train import loss_fn

    rng = np.random.default_rng(0)
    reads = rng.integers(0, 4, (2, 20))
    windows = rng.integers(0, 4, (2, 3, 40))
    windows[:, 0, 5:25] = reads
    mask = np.ones((2, 20), np.float32)
    start = np.array([5, 5])
    sharp = NeuralReadMapper(dataclasses.replace(TINY, base_identity=True))
    sharp.identity_weight.set_value(np.float32(50.0))  # the identity term dominates: a sharp peak at 5
    _, (pos0, _, _) = loss_fn(sharp, reads, mask, windows, start, smoothing=0.0)
    _, (pos2, _, _) = loss_fn(sharp, reads, mask, windows, start, smoothing=0.2)
    assert float(pos0) < 1e-3 < 1.0 < float(pos2)


def test_training_windows_from_real_genomes(tmp_path):
    """With genomes, the given share of the examples' windows are taken from them (either strand,
    N replaced by random bases), deterministically; without, the examples are those of before."""
    import gzip

    from neuromap.training_data import genome_windows, make_examples

    rng = np.random.default_rng(0)
    seq = "".join(rng.choice(list("ACGT"), 3000))
    seq = seq[:1000] + "N" * 50 + seq[1050:]
    fa = tmp_path / "g.fa.gz"
    with gzip.open(fa, "wt") as fh:
        fh.write(f">g\n{seq}\n>short\nACGT\n")
    lut = np.full(256, -1, np.int8)
    lut[list(b"ACGT")] = [0, 1, 2, 3]
    codes = lut[np.frombuffer(seq.encode(), np.uint8)]
    forward = codes
    reverse = np.where(codes >= 0, 3 - codes, -1)[::-1].astype(np.int8)

    def on_genome(w):
        """w matches the genome (either strand) at every base but the N run's."""
        for strand in (forward, reverse):
            for s in range(len(strand) - len(w) + 1):
                ref = strand[s : s + len(w)]
                if np.all((ref == w) | (ref < 0)):
                    return True
        return False

    windows = genome_windows(np.random.default_rng(1), (str(fa),), 40, 100)
    assert windows.shape == (40, 100) and windows.min() >= 0 and windows.max() <= 3
    assert all(on_genome(w) for w in windows)
    strands = [any(np.array_equal(w, forward[s : s + 100]) for s in range(0, 2901)) for w in windows]
    assert 0 < sum(strands) < 40  # both strands
    base = TrainConfig(batch_size=8, read_length=48, min_read_length=30, flank=8)
    assert all(np.array_equal(x, y) for x, y in zip(make_examples(np.random.default_rng(5), 8, base),
                                                    make_examples(np.random.default_rng(5), 8, dataclasses.replace(base, genome_fraction=1.0))))
    real = dataclasses.replace(base, genomes=(str(fa),), genome_fraction=1.0)
    a, b = make_examples(np.random.default_rng(5), 8, real), make_examples(np.random.default_rng(5), 8, real)
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    assert all(on_genome(w) for w in a[2][:, 0]) and all(on_genome(w) for w in a[2][:, -1])  # true and foreign windows
    res = run_cli(["train", "-o", tmp_path / "m", "--genome", fa, "--genome-fraction", "0.5", "--steps", "1", "--batch-size", "2",
                   "--validate-every", "1", "--embedding-dim", "8", "--num-heads", "1", "--read-length", "160", "--reference-window", "200", "--quiet"])
    assert res.returncode == 0, res.stderr
    recorded = json.load(open(tmp_path / "m" / "train_config.json"))
    assert recorded["genomes"] == [str(fa)] and recorded["genome_fraction"] == 0.5
    (tmp_path / "tiny.fa").write_text(">t\nACGTACGT\n")
    assert_clean_error(run_cli(["train", "-o", tmp_path / "x", "--genome", tmp_path / "tiny.fa", "--steps", "1"]), "no sequence of 198 bp")
    assert_clean_error(run_cli(["train", "-o", tmp_path / "x", "--genome", tmp_path / "missing.fa", "--steps", "1"]), "missing.fa")


def test_the_calibration_fit_applies_the_cap_on_ties_as_align_does():
    """fit_scale scores each λ with P(correct) as `align` computes it: on a read whose chosen
    window ties on alignment score with another, the network's P is capped at the score's P (½
    here). The tied read below is wrong and the network sure of it; capped, its P is ½ whatever
    λ, so the Brier score is exactly (½² + 0) / 2 (uncapped, the best λ leaves it above ½)."""
    import numpy as np

    import pytest

    from neuromap.calibrate import Collected, fit_scale

    data = Collected(
        ll=np.array([[5.0, 0.0], [3.0, 0.0]]), valid=np.array([[True, True], [True, False]]), chosen=np.array([0, 0]),
        extra=np.array([0, 0]), unscored=np.zeros(2), right=np.array([False, True]), score=np.array([[145, 145], [150, 0]]),
        weakest_score=np.array([145, 150]), tied=np.array([True, False]), ahead=np.array([False, True]),
        p_by_score=np.array([0.5, 1.0]),
    )
    _, report = fit_scale(data)
    assert report["brier"] == pytest.approx(0.125)


def test_the_calibration_fit_applies_the_floor_where_the_chosen_window_aligns_best():
    """...and on a read whose chosen window aligns better than every other (AS > XS), the
    network's P is raised to the alignment scores' P where it is below. Here the network doubts a
    right read (its other window 4 log-units more likely) while the scores give 0.9: P is 0.9
    whatever λ, so the Brier score is exactly 0.1² (unbounded, no λ gets the read above ½)."""
    import numpy as np

    import pytest

    from neuromap.calibrate import Collected, fit_scale

    data = Collected(
        ll=np.array([[0.0, 4.0]]), valid=np.array([[True, True]]), chosen=np.array([0]), extra=np.array([0]),
        unscored=np.zeros(1), right=np.array([True]), score=np.array([[150, 145]]), weakest_score=np.array([145]),
        tied=np.array([False]), ahead=np.array([True]), p_by_score=np.array([0.9]),
    )
    _, report = fit_scale(data)
    assert report["brier"] == pytest.approx(0.01)
    assert report["brier_unscaled"] == pytest.approx(0.01)
