"""The NeuralReadMapper contract of ../shared/spec/neural-read-mapper.md, point by point."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from neuromap.operators import TemperatureConfig, TemperatureOperator
from neuromap.operators.mapping import NeuralReadMapper, NeuralReadMapperConfig

TINY = dict(read_length=40, reference_window=64, embedding_dim=16, num_heads=2, num_layers=1)


def onehot(codes):
    return jax.nn.one_hot(jnp.asarray(codes), 4)


def example(batch=3, read_len=30, ref_len=60, seed=0):
    rng = np.random.default_rng(seed)
    ref = rng.integers(0, 4, (batch, ref_len))
    read = np.stack([ref[i, 5 + i : 5 + i + read_len] for i in range(batch)])
    return onehot(read), onehot(ref)


def test_imports_and_reexports():
    import neuromap

    assert neuromap.NeuralReadMapper is NeuralReadMapper
    assert neuromap.NeuralReadMapperConfig is NeuralReadMapperConfig
    assert issubclass(NeuralReadMapperConfig, TemperatureConfig)
    assert issubclass(NeuralReadMapper, TemperatureOperator)


def test_config_defaults_exactly():
    c = NeuralReadMapperConfig()
    assert (c.temperature, c.learnable_temperature, c.read_length, c.reference_window) == (1.0, False, 150, 500)
    assert (c.embedding_dim, c.num_heads, c.num_layers, c.dropout_rate) == (64, 4, 4, 0.1)
    with pytest.raises(dataclasses.FrozenInstanceError):
        c.read_length = 10


@pytest.mark.parametrize(
    "field, value",
    [("read_length", 0), ("reference_window", -5), ("embedding_dim", 0), ("num_heads", 0), ("embedding_dim", 30),
     ("temperature", 0.0), ("temperature", -1.0), ("dropout_rate", 1.0), ("dropout_rate", -0.1), ("compute_dtype", "int8")],
)
def test_invalid_config_names_the_field(field, value):
    kwargs = {field: value}
    if field == "embedding_dim" and value == 30:
        kwargs["num_heads"] = 4
    with pytest.raises(ValueError, match=field):
        NeuralReadMapperConfig(**kwargs)


def test_temperature_param_soft_max_and_soft_argmax():
    fixed = NeuralReadMapper(NeuralReadMapperConfig(**TINY))
    assert isinstance(fixed._temperature, float)
    learn = NeuralReadMapper(NeuralReadMapperConfig(**TINY, temperature=0.5, learnable_temperature=True))
    assert isinstance(learn._temperature, nnx.Param)
    x = jnp.array([[1.0, 3.0, 2.0], [0.0, -1.0, 5.0]])
    for t in (1.0, 0.1, 0.001):
        op = TemperatureOperator(TemperatureConfig(temperature=t))
        sm = op.soft_max(x, axis=-1)
        assert jnp.all(sm >= x.max(-1) - 1e-6)
        probs = op.soft_argmax(x, axis=-1)
        assert jnp.allclose(probs.sum(-1), 1.0)
    assert jnp.allclose(op.soft_max(x, axis=-1), x.max(-1), atol=1e-2)
    assert jnp.allclose(op.soft_argmax(x), jax.nn.one_hot(x.argmax(-1), 3), atol=1e-4)
    assert jnp.allclose(op.expected_index(x), x.argmax(-1), atol=1e-3)
    # Gradients reach a learnable temperature.
    read, ref = example()

    def loss(model):
        data, _, _ = model.apply({"read": read, "reference": ref}, None, None)
        return jnp.sum(data["position_probs"] ** 2)

    grads = nnx.grad(loss)(learn)
    assert float(jnp.abs(grads["_temperature"][...])) > 0


def test_both_input_forms_and_output_shapes():
    model = NeuralReadMapper(NeuralReadMapperConfig(**TINY))
    read, ref = example(batch=3, read_len=30, ref_len=60)
    state, meta = {"s": 1}, {"m": 2}
    out, s2, m2 = model.apply({"read": read, "reference": ref}, state, meta)
    assert s2 is state and m2 is meta
    shapes = {"alignment_scores": (3, 60), "position_probs": (3, 60), "best_position": (3,), "mapping_quality": (3,), "positions": (3,), "scores": (3,)}
    for key, shape in shapes.items():
        assert out[key].shape == shape, key
    assert jnp.allclose(out["position_probs"].sum(-1), 1.0, atol=1e-5)
    assert jnp.all((out["mapping_quality"] >= 0) & (out["mapping_quality"] <= 1))
    assert jnp.array_equal(out["positions"], out["best_position"])
    assert jnp.array_equal(out["scores"], out["mapping_quality"])
    assert jnp.issubdtype(out["best_position"].dtype, jnp.integer)
    assert out["read"] is read  # the input keys stay
    # One reference shared by all reads.
    shared, _, _ = model.apply({"reads": read, "reference": ref[0]}, None, None)
    assert shared["alignment_scores"].shape == (3, 60)
    per_read, _, _ = model.apply({"read": read, "reference": jnp.broadcast_to(ref[0], ref.shape)}, None, None)
    assert jnp.allclose(shared["alignment_scores"], per_read["alignment_scores"], atol=1e-5)


def test_short_reads_masks_and_n_rows():
    model = NeuralReadMapper(NeuralReadMapperConfig(**TINY))
    read, ref = example(batch=2, read_len=30)
    padded = jnp.concatenate([read, jnp.zeros((2, 10, 4))], axis=1)
    mask = jnp.concatenate([jnp.ones((2, 30)), jnp.zeros((2, 10))], axis=1)
    a, _, _ = model.apply({"read": read, "reference": ref}, None, None)
    b, _, _ = model.apply({"read": padded, "reference": ref, "read_mask": mask}, None, None)
    assert jnp.allclose(a["alignment_scores"], b["alignment_scores"], atol=1e-4)
    with_n = read.at[:, 3].set(0.0).at[:, 4].set(0.25)  # N as an all-zero or uniform row
    c, _, _ = model.apply({"read": with_n, "reference": ref}, None, None)
    assert jnp.all(jnp.isfinite(c["alignment_scores"]))


def test_too_long_inputs_are_value_errors_with_sizes():
    model = NeuralReadMapper(NeuralReadMapperConfig(**TINY))
    read, ref = example(batch=1, read_len=41, ref_len=60)
    with pytest.raises(ValueError, match="41.*40"):
        model.apply({"read": read, "reference": ref}, None, None)
    read, ref = example(batch=1, read_len=30, ref_len=65)
    with pytest.raises(ValueError, match="65.*64"):
        model.apply({"read": read, "reference": ref}, None, None)


def test_dropout_only_in_training_and_eval_is_deterministic():
    model = NeuralReadMapper(NeuralReadMapperConfig(**TINY, dropout_rate=0.5), rngs=nnx.Rngs(3))
    read, ref = example()
    data = {"read": read, "reference": ref}
    a = model.apply(data, None, None)[0]["alignment_scores"]
    b = model.apply(data, None, None)[0]["alignment_scores"]
    assert jnp.array_equal(a, b)
    model.train()
    c = model.apply(data, None, None)[0]["alignment_scores"]
    d = model.apply(data, None, None)[0]["alignment_scores"]
    assert not jnp.allclose(c, d)
    model.eval()
    assert jnp.array_equal(model.apply(data, None, None)[0]["alignment_scores"], a)


def test_jit_and_gradients_to_every_parameter_and_the_inputs():
    model = NeuralReadMapper(NeuralReadMapperConfig(**TINY))
    read, ref = example()

    @nnx.jit
    def run(model, read, ref):
        return model.apply({"read": read, "reference": ref}, None, None)[0]["best_position"]

    eager = model.apply({"read": read, "reference": ref}, None, None)[0]["best_position"]
    assert jnp.array_equal(run(model, read, ref), eager)

    def loss(model, read, ref):
        out = model.apply({"read": read, "reference": ref}, None, None)[0]
        return jnp.sum(out["position_probs"][:, :10]) + jnp.sum(out["mapping_quality"])

    grads = nnx.grad(loss, argnums=(0, 1, 2))(model, read, ref)
    flat = nnx.to_flat_state(grads[0])
    assert len(flat) > 10
    for path, g in flat:
        assert jnp.all(jnp.isfinite(g[...])), path
    nonzero = sum(bool(jnp.any(g[...] != 0)) for _, g in flat)
    assert nonzero == len(flat)
    for g in grads[1:]:
        assert jnp.all(jnp.isfinite(g)) and jnp.any(g != 0)


def test_diagonal_sums_match_the_definition():
    from neuromap.operators.mapping.neural_mapper import diagonal_sums

    rng = np.random.default_rng(0)
    logits = rng.normal(size=(2, 12, 5)).astype(np.float32)
    mask = (rng.random((2, 5)) > 0.3).astype(np.float32)
    expected = np.zeros((2, 12))
    for b in range(2):
        for s in range(12):
            expected[b, s] = sum(logits[b, s + j, j] * mask[b, j] for j in range(5) if s + j < 12)
    assert np.allclose(np.asarray(diagonal_sums(jnp.asarray(logits), jnp.asarray(mask))), expected, atol=1e-5)


def test_single_head_attention_is_flax_attention():
    """The one-head fast path computes what flax's dot_product_attention does, masked keys and a
    row with no real key (a padding pair) included, and a one-head model gets finite gradients."""
    from flax.nnx.nn.attention import dot_product_attention

    from neuromap.operators.mapping.neural_mapper import single_head_attention

    rng = np.random.default_rng(1)
    q, k, v = (jnp.asarray(rng.normal(size=shape), jnp.float32) for shape in ((3, 7, 1, 8), (3, 5, 1, 8), (3, 5, 1, 8)))
    mask = jnp.asarray([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1], [0, 0, 0, 0, 0]], bool)[:, None, None, :]
    for m in (mask, None):
        expected = np.asarray(dot_product_attention(q, k, v, mask=m))
        assert np.allclose(np.asarray(single_head_attention(q, k, v, mask=m)), expected, atol=1e-5)
    model = NeuralReadMapper(NeuralReadMapperConfig(**{**TINY, "num_heads": 1}))
    assert model.reference_blocks[0].attention.attention_fn is single_head_attention
    read, ref = example()
    grads = nnx.grad(lambda m: jnp.sum(m(read, ref)["position_probs"][:, :10]))(model)
    assert all(jnp.all(jnp.isfinite(g[...])) for _, g in nnx.to_flat_state(grads))


def test_base_identity_counts_each_matching_base():
    """With base_identity the scoring logits gain identity_weight x [read base == reference base]:
    at a fixed start the score moves by exactly that weight per base that turns into a mismatch,
    and the weight is a trainable parameter with a finite gradient; without it there is none."""
    config = NeuralReadMapperConfig(**{**TINY, "base_identity": True, "dropout_rate": 0.0})
    model = NeuralReadMapper(config, rngs=nnx.Rngs(4))
    assert not hasattr(NeuralReadMapper(NeuralReadMapperConfig(**TINY)), "identity_weight")
    read, ref = example(batch=1)
    on = model(read, ref)["alignment_scores"]
    model.identity_weight[...] = jnp.asarray(0.0)
    off = model(read, ref)["alignment_scores"]
    # Read 0 starts at column 5 of its window: all 30 of its bases match there.
    assert np.isclose(float(on[0, 5] - off[0, 5]), 30.0, atol=1e-3)
    model.identity_weight[...] = jnp.asarray(1.0)
    grads = nnx.grad(lambda m: jnp.sum(m(read, ref)["position_probs"][:, :10]))(model)
    assert jnp.isfinite(grads.identity_weight[...])
    with pytest.raises(ValueError, match="base_identity"):
        NeuralReadMapperConfig(**{**TINY, "base_identity": 1})


def test_bfloat16_compute_keeps_float32_parameters_and_scores():
    """compute_dtype changes the arithmetic only: the same parameters load, scores stay float32 and
    place reads where float32 does."""
    rng = np.random.default_rng(11)
    read = rng.integers(0, 4, (4, 60))
    reference = np.concatenate([rng.integers(0, 4, (4, 20)), read, rng.integers(0, 4, (4, 20))], axis=1)
    one_hot = lambda x: jax.nn.one_hot(x, 4)  # noqa: E731
    full = NeuralReadMapper.pretrained()
    half = NeuralReadMapper.pretrained(compute_dtype="bfloat16")
    a, b = full(one_hot(read), one_hot(reference)), half(one_hot(read), one_hot(reference))
    assert b["alignment_scores"].dtype == jnp.float32
    assert all(v.get_value().dtype == jnp.float32 for _, v in nnx.to_flat_state(nnx.state(half, nnx.Param)))
    assert np.array_equal(np.asarray(a["best_position"]), np.asarray(b["best_position"]))
    assert np.asarray(b["best_position"]).tolist() == [20, 20, 20, 20]
