"""The shipped model: params.npz, config.json, calibration.json (see CARD.md)."""

import os as _os

#: The directory of the shipped model (importing this does not load JAX).
SHIPPED = _os.path.dirname(_os.path.abspath(__file__))

#: The network's arithmetic types (NeuralReadMapperConfig.compute_dtype); here so that checking
#: an option does not load JAX.
COMPUTE_DTYPES = ("float32", "bfloat16", "float16")
