"""NeuralReadMapper: where in a reference window does a read start, and how sure is that?

Architecture (shapes for one read of length R against a window of length W, width D):

    read (R, 4), reference (W, 4)
      -> shared k-mer encoder: Linear(4 -> D), then residual 1-D convolutions (kernel
         `kmer_kernel`): each position sees its neighbourhood, so equal k-mers get equal features
         in both sequences, whatever their position
      -> `num_layers` cross-attention blocks: reference positions attend to the read and the read
         attends to the reference (pre-norm multi-head attention + MLP, residual, dropout)
      -> scoring cross-attention: logits A[p, j] = <q(reference_p), k(read_j)> / sqrt(D)
      -> alignment_scores[s] = sum_j A[s + j, j] over the read's real bases: the attention logits
         summed along the diagonal of a read starting at s. Every term moves with a 1-bp shift,
         so the score localises to the base; it is additive over read bases like an alignment
         score, so read chunks add up exactly.
      -> position_probs = softmax(alignment_scores / T); best_position = argmax
      -> mapping_quality = sigmoid(linear(peak over the window's mean, peak over the best start
         more than 2 bp away, read length)): P(the read comes from this window at best_position).

`log_likelihood` (an extra output) is logsumexp of the scores: the evidence that the read comes from
this window at all, comparable between windows of the same read. The aligner normalises it over a
read's candidate windows to get MAPQ.
"""

from __future__ import annotations

import dataclasses
import json
import os
import zipfile
from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from neuromap.operators.base import TemperatureConfig, TemperatureOperator
from neuromap.weights import COMPUTE_DTYPES  # noqa: F401 (re-exported; the config checks against it)
from neuromap.weights import SHIPPED as WEIGHTS_DIR


@dataclass(frozen=True)
class NeuralReadMapperConfig(TemperatureConfig):
    read_length: int = 150
    reference_window: int = 500
    embedding_dim: int = 64
    num_heads: int = 4
    num_layers: int = 4
    dropout_rate: float = 0.1
    kmer_kernel: int = 9  # width of the encoder's convolutions (bases)
    encoder_layers: int = 2  # residual convolutions in the k-mer encoder
    base_identity: bool = False  # add a learned weight x [read base == reference base] to the scoring logits
    # Arithmetic of the encoder and attention ("bfloat16" halves the bytes an accelerator moves);
    # parameters stay float32 and the scores are summed in float32 either way.
    compute_dtype: str = "float32"

    def validate(self) -> None:
        super().validate()
        for name in ("read_length", "reference_window", "embedding_dim", "num_heads", "kmer_kernel", "encoder_layers"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise ValueError(f"{name} must be a positive integer (got {value!r})")
        if not isinstance(self.num_layers, int) or self.num_layers < 0:
            raise ValueError(f"num_layers must be a non-negative integer (got {self.num_layers!r})")
        if self.embedding_dim % self.num_heads:
            raise ValueError(
                f"embedding_dim ({self.embedding_dim}) must be divisible by num_heads ({self.num_heads})"
            )
        if not 0 <= self.dropout_rate < 1:
            raise ValueError(f"dropout_rate must be in [0, 1) (got {self.dropout_rate!r})")
        if not isinstance(self.base_identity, bool):
            raise ValueError(f"base_identity must be a bool (got {self.base_identity!r})")
        if self.compute_dtype not in COMPUTE_DTYPES:
            raise ValueError(f"compute_dtype must be one of {', '.join(COMPUTE_DTYPES)} (got {self.compute_dtype!r})")


class KmerEncoder(nnx.Module):
    """One-hot bases -> per-position features that depend on the local sequence only."""

    def __init__(self, config: NeuralReadMapperConfig, rngs: nnx.Rngs):
        d, dtype = config.embedding_dim, config.compute_dtype
        self.embed = nnx.Linear(4, d, dtype=dtype, rngs=rngs)
        self.convs = nnx.List([nnx.Conv(d, d, config.kmer_kernel, padding="SAME", dtype=dtype, rngs=rngs)
                               for _ in range(config.encoder_layers)])
        self.norm = nnx.LayerNorm(d, dtype=dtype, rngs=rngs)

    def __call__(self, onehot: jax.Array, mask: jax.Array) -> jax.Array:
        """onehot (B, L, 4), mask (B, L) -> (B, L, D), zero where mask is 0."""
        m = mask[..., None].astype(self.embed.dtype)
        x = self.embed(onehot) * m
        for conv in self.convs:
            x = (x + jax.nn.gelu(conv(x))) * m
        return self.norm(x) * m


def single_head_attention(query, key, value, mask=None, dropout_rate=0.0, deterministic=True, **_):
    """`nnx.MultiHeadAttention`'s attention for one head: softmax(q k^T / sqrt(D)) v with the mask
    added as a large negative bias. The same function as flax's default, written with 3-D
    products and an additive mask, which XLA's CPU backend runs about 15 % faster
    (benchmarks/RESULTS-cpu-model.md). query (B, Lq, 1, D), key/value (B, Lk, 1, D), mask
    broadcastable to (B, 1, Lq, Lk) -> (B, Lq, 1, D). Dropout is applied by the caller."""
    if dropout_rate > 0 and not deterministic:
        raise ValueError("single_head_attention applies no dropout; CrossBlock drops out its output")
    q, k, v = query[:, :, 0], key[:, :, 0], value[:, :, 0]
    logits = jnp.einsum("bqd,bkd->bqk", q, k).astype(jnp.float32) / jnp.sqrt(jnp.float32(q.shape[-1]))
    if mask is not None:
        # finite (not -inf): a row with no real key stays a plain average, never NaN
        logits = logits + jnp.where(mask[:, 0], 0.0, -1e9)
    weights = jax.nn.softmax(logits, axis=-1).astype(v.dtype)
    return jnp.einsum("bqk,bkd->bqd", weights, v)[:, :, None, :]


class CrossBlock(nnx.Module):
    """Pre-norm cross-attention of `x` to `context`, then an MLP; both residual."""

    def __init__(self, config: NeuralReadMapperConfig, rngs: nnx.Rngs):
        d, dtype = config.embedding_dim, config.compute_dtype
        self.norm_q = nnx.LayerNorm(d, dtype=dtype, rngs=rngs)
        self.norm_kv = nnx.LayerNorm(d, dtype=dtype, rngs=rngs)
        fast = {"attention_fn": single_head_attention} if config.num_heads == 1 else {}
        self.attention = nnx.MultiHeadAttention(config.num_heads, d, decode=False, dtype=dtype, rngs=rngs, **fast)
        self.norm_mlp = nnx.LayerNorm(d, dtype=dtype, rngs=rngs)
        self.mlp_in = nnx.Linear(d, 2 * d, dtype=dtype, rngs=rngs)
        self.mlp_out = nnx.Linear(2 * d, d, dtype=dtype, rngs=rngs)
        self.dropout = nnx.Dropout(config.dropout_rate, rngs=rngs)

    def __call__(self, x: jax.Array, context: jax.Array, context_mask: jax.Array | None) -> jax.Array:
        # (B, heads, Lq, Lk) broadcast; None: every context position is real (no masking pass)
        mask = None if context_mask is None else context_mask[:, None, None, :].astype(bool)
        attended = self.attention(self.norm_q(x), self.norm_kv(context), mask=mask, deterministic=True)
        x = x + self.dropout(attended)
        return x + self.dropout(self.mlp_out(jax.nn.gelu(self.mlp_in(self.norm_mlp(x)))))


def diagonal_sums(logits: jax.Array, read_mask: jax.Array) -> jax.Array:
    """scores[b, s] = sum_j read_mask[b, j] * logits[b, s + j, j] (terms past the window are 0).

    Done by reshaping, not gathering: pad each read row j of the (R, W) matrix to width W + R,
    flatten, pad R more, and read it back with rows one longer; row j is then shifted left by j.
    """
    batch, n_ref, n_read = logits.shape
    width = n_ref + n_read
    m = jnp.swapaxes(logits, 1, 2) * read_mask[:, :, None]  # (B, R, W)
    m = jnp.pad(m, ((0, 0), (0, 0), (0, n_read)))  # (B, R, W + R)
    flat = jnp.pad(m.reshape(batch, n_read * width), ((0, 0), (0, n_read)))
    skewed = flat.reshape(batch, n_read, width + 1)[:, :, :n_ref]  # [j, s] = logits[s + j, j]
    return jnp.sum(skewed, axis=1)


class NeuralReadMapper(TemperatureOperator):
    """Scores every start position of a read in a reference window (see the module docstring).

    `apply(data, state, metadata)` follows the DiffBio operator interface; `__call__(read,
    reference, read_mask)` is the same computation on arrays.
    """

    def __init__(self, config: NeuralReadMapperConfig | None = None, *, rngs: nnx.Rngs | None = None, name: str | None = None):
        config = config or NeuralReadMapperConfig()
        rngs = rngs if rngs is not None else nnx.Rngs(0)
        super().__init__(config, rngs=rngs, name=name)
        d = config.embedding_dim
        self.encoder = KmerEncoder(config, rngs)
        self.reference_blocks = nnx.List([CrossBlock(config, rngs) for _ in range(config.num_layers)])
        self.read_blocks = nnx.List([CrossBlock(config, rngs) for _ in range(config.num_layers)])
        self.query = nnx.Linear(d, d, dtype=config.compute_dtype, rngs=rngs)
        self.key = nnx.Linear(d, d, dtype=config.compute_dtype, rngs=rngs)
        self.quality = nnx.Linear(3, 1, rngs=rngs)
        if config.base_identity:
            self.identity_weight = nnx.Param(jnp.asarray(1.0, jnp.float32))
        self.eval()

    # -- the computation ------------------------------------------------------------------------
    def __call__(self, read: jax.Array, reference: jax.Array, read_mask: jax.Array | None = None) -> dict:
        """read (B, R, 4), reference (B, W, 4), read_mask (B, R) -> dict of outputs (see apply)."""
        read = jnp.asarray(read, jnp.float32)
        reference = jnp.asarray(reference, jnp.float32)
        if read_mask is None:
            read_mask = jnp.ones(read.shape[:2], jnp.float32)
        read_mask = jnp.asarray(read_mask, jnp.float32)
        ref_mask = jnp.ones(reference.shape[:2], jnp.float32)
        r = self.encoder(read, read_mask)
        t = self.encoder(reference, ref_mask)
        for ref_block, read_block in zip(self.reference_blocks, self.read_blocks):
            t, r = ref_block(t, r, read_mask), read_block(r, t, None) * read_mask[..., None].astype(r.dtype)
        q = self.query(t)
        k = self.key(r)
        logits = jnp.einsum("bwd,brd->bwr", q, k).astype(jnp.float32) / jnp.sqrt(jnp.float32(q.shape[-1]))
        if self.config.base_identity:
            # The learned k-mer features change smoothly with one base; the identity of the bases
            # themselves lets a single mismatch between two copies count in full.
            logits = logits + self.identity_weight[...] * jnp.einsum("bwc,brc->bwr", reference, read)
        scores = diagonal_sums(logits, read_mask)
        probs = self.soft_argmax(scores, axis=-1)
        best = jnp.argmax(scores, axis=-1)
        quality = self._quality(scores, best, read_mask)
        return {
            "alignment_scores": scores,
            "position_probs": probs,
            "best_position": best,
            "mapping_quality": quality,
            "log_likelihood": jax.nn.logsumexp(scores, axis=-1),
            "positions": best,
            "scores": quality,
        }

    def _quality(self, scores: jax.Array, best: jax.Array, read_mask: jax.Array) -> jax.Array:
        """P(read from this window at best_position) from how the peak stands out.

        Scores carry an offset that depends on the read, so the features are relative: the peak
        over the window's mean, and over the best start more than 2 bp away (a second copy or a
        tandem shift), both per sqrt(real bases); and the read's length.
        """
        real = jnp.sum(read_mask, axis=-1)
        norm = jnp.sqrt(jnp.maximum(real, 1.0))
        peak = jnp.take_along_axis(scores, best[:, None], axis=-1)[:, 0]
        away = jnp.abs(jnp.arange(scores.shape[-1])[None, :] - best[:, None]) > 2
        runner_up = jnp.max(jnp.where(away, scores, -jnp.inf), axis=-1)
        runner_up = jnp.where(jnp.isfinite(runner_up), runner_up, jnp.mean(scores, axis=-1))
        features = jnp.stack([(peak - jnp.mean(scores, axis=-1)) / norm, (peak - runner_up) / norm, real / 100.0], axis=-1)
        return jax.nn.sigmoid(self.quality(features)[:, 0])

    # -- the DiffBio operator interface ---------------------------------------------------------
    def apply(self, data: dict, state=None, metadata=None, random_params=None, stats=None):
        """(data, state, metadata) -> (data plus outputs, state, metadata); see the spec."""
        if "read" in data:
            read = jnp.asarray(data["read"])
            reference = jnp.asarray(data["reference"])
            if reference.ndim == 2:
                reference = jnp.broadcast_to(reference, (read.shape[0],) + reference.shape)
        elif "reads" in data:
            read = jnp.asarray(data["reads"])
            reference = jnp.asarray(data["reference"])
            if reference.ndim == 2:
                reference = jnp.broadcast_to(reference, (read.shape[0],) + reference.shape)
        else:
            raise ValueError("data needs 'read' (batch, read_len, 4) or 'reads' (n_reads, read_len, 4), and 'reference'")
        if read.ndim != 3 or read.shape[-1] != 4:
            raise ValueError(f"reads must be one-hot (batch, read_len, 4); got shape {tuple(read.shape)}")
        if reference.ndim != 3 or reference.shape[-1] != 4 or reference.shape[0] != read.shape[0]:
            raise ValueError(f"reference must be one-hot (batch, ref_len, 4) or (ref_len, 4); got shape {tuple(reference.shape)}")
        if read.shape[1] > self.config.read_length:
            raise ValueError(f"read length {read.shape[1]} exceeds the model's read_length {self.config.read_length}")
        if reference.shape[1] > self.config.reference_window:
            raise ValueError(
                f"reference length {reference.shape[1]} exceeds the model's reference_window {self.config.reference_window}"
            )
        mask = data.get("read_mask")
        out = self(read, reference, mask)
        return {**data, **out}, state, metadata

    # -- shipped weights -------------------------------------------------------------------------
    @classmethod
    def pretrained(cls, path: str | None = None, **overrides) -> "NeuralReadMapper":
        """The trained model shipped in neuromap/weights/ (no network access). `overrides` change
        fields that do not change the parameters, e.g. compute_dtype="bfloat16"."""
        directory = path or WEIGHTS_DIR
        config_path = os.path.join(directory, "config.json")
        try:
            with open(config_path) as fh:
                fields = json.load(fh)
            config = NeuralReadMapperConfig(**{**fields, **overrides})
        except (ValueError, TypeError) as exc:
            raise ValueError(f"{config_path}: not a NeuralReadMapper configuration ({exc})") from None
        # Built abstractly (shapes only) and then filled: running every random initialiser only
        # to overwrite it costs a second of start-up in `align`. The dropout streams get the
        # state a fresh `nnx.Rngs(0)` has.
        model = nnx.eval_shape(lambda: cls(config))
        fresh = nnx.Rngs(0)
        for _, var in nnx.to_flat_state(nnx.state(model, nnx.RngKey)):
            var.set_value(fresh.default.key[...])
        for _, var in nnx.to_flat_state(nnx.state(model, nnx.RngCount)):
            var.set_value(jnp.zeros((), jnp.uint32))
        load_parameters(model, os.path.join(directory, "params.npz"))
        model.eval()
        return model


def save_parameters(model: nnx.Module, path: str) -> None:
    """Write every parameter of `model` to an .npz keyed by its path in the module tree."""
    flat = nnx.to_flat_state(nnx.state(model, nnx.Param))
    arrays = {"/".join(map(str, key)): np.asarray(var[...]) for key, var in flat}
    tmp = path + ".tmp.npz"
    np.savez(tmp, **arrays)
    os.replace(tmp, path)


def load_parameters(model: nnx.Module, path: str, missing_ok: bool = False) -> list[str]:
    """Fill `model`'s parameters from an .npz of `save_parameters`; returns the names the file
    lacks (an error unless `missing_ok`: those keep their current values)."""
    state = nnx.state(model, nnx.Param)
    flat = nnx.to_flat_state(state)
    missing, found, values = [], [], []
    try:
        saved = np.load(path)
        names = set(saved.files)
    except (ValueError, EOFError, zipfile.BadZipFile, AttributeError) as exc:
        raise ValueError(f"{path}: not a parameter file ({exc})") from None
    with saved:
        for key, var in flat:
            name = "/".join(map(str, key))
            if name not in names:
                if missing_ok:
                    missing.append(name)
                    continue
                raise ValueError(f"{path}: no parameter {name}")
            try:
                value = saved[name]
            except (ValueError, EOFError, OSError, zipfile.BadZipFile) as exc:
                raise ValueError(f"{path}: parameter {name} is unreadable ({exc})") from None
            expected = var.get_value().shape  # an array, or a ShapeDtypeStruct (see pretrained)
            if value.shape != expected:
                raise ValueError(f"{path}: parameter {name} has shape {value.shape}, model expects {expected}")
            found.append(var)
            values.append(value)
    # One transfer for all of them (one jnp.asarray per parameter costs 0.2 s of start-up).
    for var, value in zip(found, jax.device_put(values)):
        var.set_value(value)
    nnx.update(model, nnx.from_flat_state(flat))
    return missing


def config_dict(config: NeuralReadMapperConfig) -> dict:
    return dataclasses.asdict(config)
