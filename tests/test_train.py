"""Training is deterministic given a seed, and a resumed run ends where an uninterrupted one does."""

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
