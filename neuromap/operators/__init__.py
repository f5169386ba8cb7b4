"""Differentiable operators (Flax NNX)."""

from neuromap.operators.base import TemperatureConfig, TemperatureOperator

__all__ = ["TemperatureConfig", "TemperatureOperator"]
