"""Training the NeuralReadMapper on simulated reads (optax), with validation and checkpoints.

Each example is one read with `windows_per_read` reference windows:
  0  the window it comes from (with SNPs between sample and reference, sequencing errors, indels);
  1  a near-identical paralog of that window (`near_paralog`, default 1-4 % divergent), the read
     at the same offset;
  2  a diverged paralog (4-15 %);
  3  a foreign window (unrelated sequence).
The sequences are random with a random GC content, and some carry low-complexity stretches and
tandem repeats. The loss has three parts:
  position   cross-entropy of position_probs in the true window against the true start (0.8) and
             its neighbours (0.1 each: an indel near the start shifts it by one);
  window     cross-entropy over the read's windows of their log_likelihood: the true window must
             out-score its paralogs, which is what the aligner's MAPQ is built on;
  quality    binary cross-entropy of mapping_quality: 1 for the true window when best_position is
             within 2 bp, 0 otherwise.
Examples are generated from (seed, step), so a run is deterministic and resumes exactly.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
import time
from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx, serialization
from tqdm import tqdm

from neuromap.operators.mapping.neural_mapper import (
    NeuralReadMapper,
    NeuralReadMapperConfig,
    config_dict,
    save_parameters,
)


@dataclass
class TrainConfig:
    steps: int = 3000
    batch_size: int = 32  # reads per step (each with windows_per_read windows)
    windows_per_read: int = 4
    min_read_length: int = 50
    read_length: int = 150  # longest training read
    flank: int = 24  # window = read_length + 2 * flank
    learning_rate: float = 2e-3
    weight_decay: float = 1e-4
    seed: int = 0
    validate_every: int = 250
    validation_reads: int = 512
    max_error_rate: float = 0.03
    max_snp_rate: float = 0.01
    near_paralog: tuple[float, float] = (0.01, 0.04)  # divergence of window 1 from the true one


def _random_sequence(rng: np.random.Generator, n: int) -> np.ndarray:
    gc = rng.uniform(0.3, 0.7)
    p = np.array([(1 - gc) / 2, gc / 2, gc / 2, (1 - gc) / 2])
    seq = rng.choice(4, size=n, p=p).astype(np.int8)
    if rng.random() < 0.3:  # a low-complexity or tandem stretch
        unit = rng.integers(0, 4, int(rng.integers(1, 7))).astype(np.int8)
        length = int(rng.integers(15, max(16, n // 2)))
        at = int(rng.integers(0, n - length))
        seq[at : at + length] = np.resize(unit, length)
    return seq


def _mutate(rng: np.random.Generator, seq: np.ndarray, rate: float) -> np.ndarray:
    out = seq.copy()
    sites = np.flatnonzero(rng.random(len(seq)) < rate)
    out[sites] = (out[sites] + rng.integers(1, 4, len(sites))) % 4
    return out


def _sequence_read(rng: np.random.Generator, template: np.ndarray, length: int, error_rate: float) -> np.ndarray:
    """Read `length` bases from `template` with substitution and 1-bp indel errors; N = -1."""
    errors = rng.random(length) < error_rate
    kinds = rng.random(length)
    out, t = [], 0
    for j in range(length):
        if t >= len(template):
            out.append(-1)
            continue
        if errors[j] and kinds[j] < 0.05:  # insertion
            out.append(int(rng.integers(0, 4)))
            continue
        if errors[j] and kinds[j] < 0.10:  # deletion
            t += 1
            if t >= len(template):
                out.append(-1)
                continue
        base = int(template[t])
        if errors[j] and kinds[j] >= 0.10:
            base = (base + int(rng.integers(1, 4))) % 4
        if rng.random() < 0.002:
            base = -1  # an N call
        out.append(base)
        t += 1
    return np.array(out, dtype=np.int8)


def make_examples(rng: np.random.Generator, n_reads: int, cfg: TrainConfig):
    """Arrays for n_reads examples: reads (n, R) int8 (-1 = N/pad), mask (n, R),
    windows (n, K, W) int8, start (n,) true start in window 0."""
    R, K = cfg.read_length, cfg.windows_per_read
    W = R + 2 * cfg.flank
    reads = np.full((n_reads, R), -1, np.int8)
    mask = np.zeros((n_reads, R), np.float32)
    windows = np.zeros((n_reads, K, W), np.int8)
    start = np.zeros(n_reads, np.int64)
    for i in range(n_reads):
        length = int(rng.integers(cfg.min_read_length, R + 1))
        window = _random_sequence(rng, W)
        s = int(rng.integers(0, W - length + 1))
        sample = _mutate(rng, window, rng.uniform(0, cfg.max_snp_rate))
        read = _sequence_read(rng, sample[s:], length, rng.uniform(0, cfg.max_error_rate))
        reads[i, :length] = read
        mask[i, :length] = 1.0
        windows[i, 0] = window
        if K > 1:
            windows[i, 1] = _mutate(rng, window, rng.uniform(*cfg.near_paralog))
        if K > 2:
            windows[i, 2] = _mutate(rng, window, rng.uniform(0.04, 0.15))
        for k in range(3, K):
            windows[i, k] = _random_sequence(rng, W)
        start[i] = s
    return reads, mask, windows, start


def one_hot(codes: np.ndarray) -> jax.Array:
    """int codes (0-3 bases; anything else N) -> one-hot with all-zero rows for N."""
    return jax.nn.one_hot(jnp.asarray(codes, jnp.int32), 4, dtype=jnp.float32)


def _forward(model: NeuralReadMapper, reads, mask, windows):
    n, K, W = windows.shape
    read_k = jnp.repeat(one_hot(reads), K, axis=0)
    mask_k = jnp.repeat(mask, K, axis=0)
    out = model(read_k, one_hot(windows.reshape(n * K, W)), mask_k)
    return jax.tree_util.tree_map(lambda x: x.reshape((n, K) + x.shape[1:]), out)


def loss_fn(model: NeuralReadMapper, reads, mask, windows, start):
    out = _forward(model, reads, mask, windows)
    n, K, W = out["alignment_scores"].shape
    logp = jax.nn.log_softmax(out["alignment_scores"][:, 0], axis=-1)
    pos = jnp.arange(W)[None, :]
    target = 0.8 * (pos == start[:, None]) + 0.1 * (jnp.abs(pos - start[:, None]) == 1)
    target = target / jnp.sum(target, axis=-1, keepdims=True)
    position_loss = -jnp.mean(jnp.sum(target * logp, axis=-1))
    window_loss = -jnp.mean(jax.nn.log_softmax(out["log_likelihood"], axis=-1)[:, 0])
    close = jnp.abs(out["best_position"][:, 0] - start) <= 2
    label = jnp.zeros((n, K)).at[:, 0].set(close.astype(jnp.float32))
    q = jnp.clip(out["mapping_quality"], 1e-6, 1 - 1e-6)
    quality_loss = -jnp.mean(label * jnp.log(q) + (1 - label) * jnp.log(1 - q))
    total = position_loss + window_loss + quality_loss
    return total, (position_loss, window_loss, quality_loss)


@nnx.jit
def train_step(model, optimizer, reads, mask, windows, start):
    (loss, parts), grads = nnx.value_and_grad(loss_fn, has_aux=True)(model, reads, mask, windows, start)
    optimizer.update(model, grads)
    return loss, parts


@nnx.jit
def eval_outputs(model, reads, mask, windows):
    out = _forward(model, reads, mask, windows)
    return out["best_position"], out["log_likelihood"], out["mapping_quality"]


def validate(model: NeuralReadMapper, data) -> dict:
    reads, mask, windows, start = data
    model.eval()
    best, ll, quality = [], [], []
    for lo in range(0, len(reads), 128):
        b, l, q = eval_outputs(model, reads[lo : lo + 128], mask[lo : lo + 128], windows[lo : lo + 128])
        best.append(np.asarray(b))
        ll.append(np.asarray(l))
        quality.append(np.asarray(q))
    best, ll, quality = np.concatenate(best), np.concatenate(ll), np.concatenate(quality)
    model.train()
    return {
        "within_2bp": float(np.mean(np.abs(best[:, 0] - start) <= 2)),
        "true_window_wins": float(np.mean(np.argmax(ll, axis=1) == 0)),
        "quality_true": float(np.mean(quality[:, 0])),
        "quality_foreign": float(np.mean(quality[:, -1])),
    }


def _checkpoint_path(directory: str) -> str:
    return os.path.join(directory, "checkpoint.msgpack")


def _is_key(x) -> bool:
    return hasattr(x, "dtype") and jnp.issubdtype(x.dtype, jax.dtypes.prng_key)


def _to_arrays(state) -> dict:
    """A module's state as plain numpy arrays (PRNG keys as their key data)."""
    return jax.tree_util.tree_map(lambda x: np.asarray(jax.random.key_data(x) if _is_key(x) else x), nnx.to_pure_dict(state))


def _restore(obj, saved: dict) -> None:
    state = nnx.state(obj)
    current = nnx.to_pure_dict(state)
    saved = jax.tree_util.tree_map(lambda cur, new: jax.random.wrap_key_data(new) if _is_key(cur) else jnp.asarray(new), current, saved)
    nnx.replace_by_pure_dict(state, saved)
    nnx.update(obj, state)


def save_checkpoint(directory: str, model, optimizer, step: int, history: list) -> None:
    state = {"model": _to_arrays(nnx.state(model)), "optimizer": _to_arrays(nnx.state(optimizer)), "step": step}
    tmp = _checkpoint_path(directory) + ".tmp"
    with open(tmp, "wb") as fh:
        fh.write(serialization.msgpack_serialize(state))
    os.replace(tmp, _checkpoint_path(directory))
    with open(os.path.join(directory, "history.json"), "w") as fh:
        json.dump(history, fh, indent=1)


def load_checkpoint(directory: str, model, optimizer) -> tuple[int, list]:
    with open(_checkpoint_path(directory), "rb") as fh:
        state = serialization.msgpack_restore(fh.read())
    _restore(model, state["model"])
    _restore(optimizer, state["optimizer"])
    history_path = os.path.join(directory, "history.json")
    history = json.load(open(history_path)) if os.path.exists(history_path) else []
    return int(state["step"]), history


def train(model_config: NeuralReadMapperConfig, cfg: TrainConfig, out_dir: str, progress: bool = True, log=print) -> dict:
    """Train (or resume) into out_dir; writes checkpoint.msgpack, history.json, params.npz, config.json."""
    os.makedirs(out_dir, exist_ok=True)
    model = NeuralReadMapper(model_config, rngs=nnx.Rngs(params=cfg.seed, dropout=cfg.seed + 1))
    schedule = optax.warmup_cosine_decay_schedule(0.0, cfg.learning_rate, min(200, cfg.steps // 10 + 1), cfg.steps, cfg.learning_rate / 20)
    tx = optax.chain(optax.clip_by_global_norm(1.0), optax.adamw(schedule, weight_decay=cfg.weight_decay))
    optimizer = nnx.Optimizer(model, tx, wrt=nnx.Param)
    step, history = 0, []
    if os.path.exists(_checkpoint_path(out_dir)):
        step, history = load_checkpoint(out_dir, model, optimizer)
        log(f"resuming from step {step}")
    model.train()
    validation = make_examples(np.random.default_rng([cfg.seed, 2**31 - 1]), cfg.validation_reads, cfg)
    bar = tqdm(total=cfg.steps, initial=step, disable=not progress, file=sys.stderr, unit="step")
    started = time.time()
    while step < cfg.steps:
        rng = np.random.default_rng([cfg.seed, step])
        reads, mask, windows, start = make_examples(rng, cfg.batch_size, cfg)
        loss, parts = train_step(model, optimizer, reads, mask, windows, start)
        step += 1
        bar.update(1)
        if progress:  # reading the loss waits for the device; only when someone is watching
            bar.set_postfix(loss=f"{float(loss):.3f}", refresh=False)
        if step % cfg.validate_every == 0 or step == cfg.steps:
            metrics = validate(model, validation)
            metrics.update(step=step, loss=float(loss), position_loss=float(parts[0]), window_loss=float(parts[1]),
                           quality_loss=float(parts[2]), seconds=round(time.time() - started, 1))
            history.append(metrics)
            log(json.dumps(metrics))
            save_checkpoint(out_dir, model, optimizer, step, history)
    bar.close()
    model.eval()
    save_parameters(model, os.path.join(out_dir, "params.npz"))
    with open(os.path.join(out_dir, "config.json"), "w") as fh:
        json.dump(config_dict(model_config), fh, indent=1)
    with open(os.path.join(out_dir, "train_config.json"), "w") as fh:
        json.dump(dataclasses.asdict(cfg), fh, indent=1)
    return history[-1] if history else {}
