"""TemperatureConfig / TemperatureOperator: the base of neuromap's differentiable operators.

A temperature T turns hard decisions into smooth ones: `soft_max` is T * logsumexp(x / T), an upper
bound of max(x) that tends to it as T -> 0; `soft_argmax` is softmax(x / T), a distribution over
positions that tends to the one-hot argmax. With `learnable_temperature=True` `_temperature` is a trainable
`nnx.Param` (gradients reach it); otherwise it is a plain float.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import jax
import jax.numpy as jnp
from flax import nnx


@dataclass(frozen=True)
class TemperatureConfig:
    temperature: float = 1.0
    learnable_temperature: bool = False

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        if not isinstance(self.temperature, (int, float)) or not self.temperature > 0:
            raise ValueError(f"temperature must be > 0 (got {self.temperature!r})")
        if not isinstance(self.learnable_temperature, bool):
            raise ValueError(f"learnable_temperature must be a bool (got {self.learnable_temperature!r})")

    def replace(self, **changes) -> "TemperatureConfig":
        return dataclasses.replace(self, **changes)


class TemperatureOperator(nnx.Module):
    """Base operator holding a (possibly learnable) temperature."""

    def __init__(self, config: TemperatureConfig, *, rngs: nnx.Rngs | None = None, name: str | None = None):
        self.config = config
        self.name = name or type(self).__name__
        if config.learnable_temperature:
            self._temperature = nnx.Param(jnp.asarray(config.temperature, jnp.float32))
        else:
            self._temperature = float(config.temperature)

    def temperature_value(self):
        """T for computation: the Param's value (kept above a floor so it stays positive under any
        gradient step), or the fixed float."""
        if isinstance(self._temperature, nnx.Param):
            return jnp.maximum(self._temperature[...], 1e-3)
        return self._temperature

    def soft_max(self, values: jax.Array, axis: int | None = None) -> jax.Array:
        """T * logsumexp(values / T): >= max(values), -> max as T -> 0."""
        t = self.temperature_value()
        return t * jax.nn.logsumexp(values / t, axis=axis)

    def soft_argmax(self, logits: jax.Array, axis: int = -1) -> jax.Array:
        """softmax(logits / T) along `axis`: a differentiable one-hot argmax (hard as T -> 0)."""
        return jax.nn.softmax(logits / self.temperature_value(), axis=axis)

    def expected_index(self, logits: jax.Array, axis: int = -1) -> jax.Array:
        """The soft index: the mean position under `soft_argmax` (the hard argmax as T -> 0)."""
        probs = self.soft_argmax(logits, axis=axis)
        index = jnp.arange(logits.shape[axis], dtype=probs.dtype)
        shape = [1] * probs.ndim
        shape[axis] = -1
        return jnp.sum(probs * index.reshape(shape), axis=axis)
