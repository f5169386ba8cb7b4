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
