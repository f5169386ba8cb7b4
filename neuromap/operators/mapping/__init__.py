"""Read-mapping operators."""

from neuromap.operators.mapping.neural_mapper import NeuralReadMapper, NeuralReadMapperConfig

__all__ = ["NeuralReadMapper", "NeuralReadMapperConfig"]
