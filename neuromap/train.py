"""Training the NeuralReadMapper on simulated reads (optax), with validation and checkpoints.

Each example is one read with `windows_per_read` reference windows: the true one, near-identical
paralogs, a diverged paralog and a foreign window (see `neuromap.training_data`, which makes them).
The loss has three parts:
  position   cross-entropy of position_probs in the true window against the true start (0.8) and
             its neighbours (0.1 each: an indel near the start shifts it by one);
  window     cross-entropy over the read's windows of their log_likelihood: the true window must
             out-score its paralogs, which is what the aligner's MAPQ is built on;
  quality    binary cross-entropy of mapping_quality: 1 for the true window when best_position is
             within 2 bp, 0 otherwise.
Examples are generated from (seed, step), so a run is deterministic and resumes exactly, and
`workers` processes can make them ahead of the device (a GPU step takes less time than making its
batch in one Python thread) without changing a bit of the result.
"""

from __future__ import annotations

import dataclasses
import json
import multiprocessing
import os
import sys
import time
import zipfile
from collections import deque
from concurrent.futures import ProcessPoolExecutor

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx, serialization
from tqdm import tqdm

from neuromap.errors import NeuromapError
from neuromap.operators.mapping.neural_mapper import (
    NeuralReadMapper,
    NeuralReadMapperConfig,
    config_dict,
    load_parameters,
    save_parameters,
)
from neuromap.training_data import TrainConfig, batch_for_step, make_examples, validation_set

__all__ = ["TrainConfig", "make_examples", "one_hot", "train"]


def one_hot(codes: np.ndarray) -> jax.Array:
    """int codes (0-3 bases; anything else N) -> one-hot with all-zero rows for N."""
    return jax.nn.one_hot(jnp.asarray(codes, jnp.int32), 4, dtype=jnp.float32)


def _forward(model: NeuralReadMapper, reads, mask, windows):
    n, K, W = windows.shape
    read_k = jnp.repeat(one_hot(reads), K, axis=0)
    mask_k = jnp.repeat(mask, K, axis=0)
    out = model(read_k, one_hot(windows.reshape(n * K, W)), mask_k)
    return jax.tree_util.tree_map(lambda x: x.reshape((n, K) + x.shape[1:]), out)


def loss_fn(model: NeuralReadMapper, reads, mask, windows, start, smoothing=0.2):
    out = _forward(model, reads, mask, windows)
    n, K, W = out["alignment_scores"].shape
    logp = jax.nn.log_softmax(out["alignment_scores"][:, 0], axis=-1)
    pos = jnp.arange(W)[None, :]
    target = (1 - smoothing) * (pos == start[:, None]) + smoothing / 2 * (jnp.abs(pos - start[:, None]) == 1)
    target = target / jnp.sum(target, axis=-1, keepdims=True)
    position_loss = -jnp.mean(jnp.sum(target * logp, axis=-1))
    window_loss = -jnp.mean(jax.nn.log_softmax(out["log_likelihood"], axis=-1)[:, 0])
    close = jnp.abs(out["best_position"][:, 0] - start) <= 2
    label = jnp.zeros((n, K)).at[:, 0].set(close.astype(jnp.float32))
    q = jnp.clip(out["mapping_quality"], 1e-6, 1 - 1e-6)
    quality_loss = -jnp.mean(label * jnp.log(q) + (1 - label) * jnp.log(1 - q))
    total = position_loss + window_loss + quality_loss
    return total, (position_loss, window_loss, quality_loss)


@nnx.jit(static_argnames="smoothing")
def train_step(model, optimizer, reads, mask, windows, start, smoothing=0.2):
    (loss, parts), grads = nnx.value_and_grad(loss_fn, has_aux=True)(model, reads, mask, windows, start, smoothing)
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


def init_source(init_from: str) -> str:
    """The directory `--init-from` names: "shipped" is the package's weights."""
    from neuromap.weights import SHIPPED

    return SHIPPED if init_from == "shipped" else init_from


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


def batches(cfg: TrainConfig, first_step: int, workers: int = 0):
    """The batches of steps first_step .. cfg.steps - 1, in order. With workers > 0 they are made
    by that many processes, 2 x workers batches ahead (bounded memory); the result is the same."""
    if workers <= 0:
        for step in range(first_step, cfg.steps):
            yield batch_for_step(cfg, step)
        return
    # spawn, not fork: this process already runs JAX's threads.
    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
        pending: deque = deque()
        upcoming = first_step
        while upcoming < cfg.steps and len(pending) < 2 * workers:
            pending.append(pool.submit(batch_for_step, cfg, upcoming))
            upcoming += 1
        while pending:
            batch = pending.popleft().result()
            if upcoming < cfg.steps:
                pending.append(pool.submit(batch_for_step, cfg, upcoming))
                upcoming += 1
            yield batch


def train(model_config: NeuralReadMapperConfig, cfg: TrainConfig, out_dir: str, progress: bool = True, log=print,
          workers: int = 0) -> dict:
    """Train (or resume) into out_dir; writes checkpoint.msgpack, history.json, params.npz, config.json."""
    model = NeuralReadMapper(model_config, rngs=nnx.Rngs(params=cfg.seed, dropout=cfg.seed + 1))
    if cfg.init_from and not os.path.exists(_checkpoint_path(out_dir)):
        # Fine-tuning: the trained parameters; any the model adds (e.g. base_identity's weight)
        # keep their initial values.
        source = init_source(cfg.init_from)
        path = os.path.join(source, "params.npz")
        try:
            missing = load_parameters(model, path, missing_ok=True)
        except (OSError, ValueError, zipfile.BadZipFile) as exc:
            raise NeuromapError(f"cannot start from these parameters: {exc} (--init-from)") from None
        log(f"starting from the parameters in {source}" + (f"; new: {', '.join(missing)}" if missing else ""))
    os.makedirs(out_dir, exist_ok=True)  # after the start is known to load: no empty output on a bad --init-from
    warmup = min(200, cfg.steps // 10 + 1, cfg.steps - 1)  # the cosine needs at least one step after it
    schedule = optax.warmup_cosine_decay_schedule(0.0, cfg.learning_rate, warmup, cfg.steps, cfg.learning_rate / 20)
    tx = optax.chain(optax.clip_by_global_norm(1.0), optax.adamw(schedule, weight_decay=cfg.weight_decay))
    optimizer = nnx.Optimizer(model, tx, wrt=nnx.Param)
    step, history = 0, []
    if os.path.exists(_checkpoint_path(out_dir)):
        step, history = load_checkpoint(out_dir, model, optimizer)
        log(f"resuming from step {step}")
    model.train()
    validation = validation_set(cfg)
    bar = tqdm(total=cfg.steps, initial=step, disable=not progress, file=sys.stderr, unit="step")
    started = time.time()
    for reads, mask, windows, start in batches(cfg, step, workers):
        loss, parts = train_step(model, optimizer, reads, mask, windows, start, smoothing=cfg.position_smoothing)
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
