"""The shipped model: params.npz, config.json, calibration.json (see CARD.md)."""

import os as _os

#: The directory of the shipped model (importing this does not load JAX).
SHIPPED = _os.path.dirname(_os.path.abspath(__file__))
