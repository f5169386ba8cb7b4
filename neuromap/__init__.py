"""neuromap: a short-read DNA aligner with learned placement and mapping quality."""

__version__ = "0.1.0"

from neuromap.errors import NeuromapError  # noqa: E402

__all__ = ["NeuromapError", "__version__"]
