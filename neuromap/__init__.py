"""neuromap: a short-read DNA aligner with learned placement and mapping quality."""

__version__ = "0.1.0"

from neuromap.errors import NeuromapError  # noqa: E402

__all__ = ["Aligner", "Hit", "NeuromapError", "NeuralReadMapper", "NeuralReadMapperConfig", "__version__"]


def __getattr__(name):
    # The operator pulls in JAX and Flax; import it only when asked for, so the command line and
    # the seeds + DP path start quickly.
    if name in ("Aligner", "Hit"):
        from neuromap import api

        return getattr(api, name)
    if name in ("NeuralReadMapper", "NeuralReadMapperConfig"):
        from neuromap.operators import mapping

        return getattr(mapping, name)
    raise AttributeError(f"module 'neuromap' has no attribute {name!r}")
