"""The compiled kernels (neuromap/_kernels.c), called through ctypes.

They are built with the package (`pip install .` compiles one C file), so nothing is compiled
at run time and nothing is cached on disk. ctypes releases Python's GIL around each call, so
batches in worker threads run them in parallel. Each call checks its arrays' types and layout
against the C signature before it passes their addresses: a wrong array is a Python error, not
memory corrupted.
"""

from __future__ import annotations

import ctypes
import importlib.util
from functools import lru_cache

import numpy as np

from neuromap.errors import NeuromapError

# One letter an argument: an array of that numpy type (C-contiguous), or "i" an int64 scalar.
_SIGNATURES = {
    "nm_hash_rows": ("u1", "i", "i", "i", "u8", "b"),
    "nm_select": ("u8", "i", "i", "i", "b"),
    "nm_compact": ("b", "i", "i", "u8", "b", "i8", "i8", "u8", "b"),
    "nm_seed": ("i8", "i8", "u8", "b", "i", "i8", "i", "u8", "i", "any", "i", "i", "any", "i", "b",
                "i", "i", "i", "i", "i", "i", "i", "b", "i8", "b", "i4", "i4"),
    "nm_orient": ("u1", "i", "i8", "i8", "b", "i", "u1", "u1"),
    "nm_gather": ("u1", "i8", "i8", "i8", "i", "i", "i", "u1"),
    "nm_ungapped": ("u1", "i", "i", "i8", "u1", "i", "i", "i4", "i", "i8", "i8", "b"),
    "nm_settled": ("u1", "i", "i", "i8", "u1", "i", "i", "i", "i", "i", "i", "i", "b", "b"),
    "nm_ungapped_md": ("u1", "i", "i", "i8", "u1", "i", "i", "u1", "u1", "i", "i8", "i4"),
    "nm_dp": ("u1", "u1", "i", "i", "i8", "i", "i", "i", "i", "i", "i", "i", "i", "u2", "i4", "i8", "i8"),
    "nm_traceback": ("u2", "i", "i", "i", "i8", "i8", "i8", "i", "u1", "i", "u1", "i", "i8", "u1",
                     "i8", "i8", "i4", "u1", "i8", "u1", "i8", "i"),
    "nm_newlines": ("u1", "i", "i", "i", "i8"),
    "nm_fastq_plain": ("u1", "i", "i", "i", "i8", "i8", "i8", "i8", "i8"),
    "nm_encode_rows": ("u1", "i8", "i8", "i", "i", "u1", "i", "u1"),
    "nm_texts_equal": ("u1", "i8", "i8", "i8", "i8", "i"),
    "nm_pack_rows": ("u1", "i", "i", "i8", "u1"),
    "nm_ref_spans": ("u1", "i8", "i8", "i", "i8"),
    "nm_same_placement": ("f8", "i8", "b", "b", "i", "i", "i"),
    "nm_choose": ("b", "i8", "f8", "i", "i", "i", "i", "i", "b", "i8", "b", "b"),
    "nm_unscored": ("f8", "b", "i8", "i", "i", "i", "f8"),
    "nm_read_bests": ("b", "b", "f8", "i8", "i8", "i", "i", "i", "b", "i8"),
    "nm_rescue_vote": ("u1", "i", "i", "u1", "i", "i8", "i", "i", "i", "i8", "i8"),
    "nm_rescue_need": ("b", "i8", "b", "i4", "i8", "i", "i", "i", "f8", "i", "b"),
    "nm_field_offsets": ("u1", "i", "i", "i8"),
    "nm_format_sam": ("i", "i8", "b", "i8", "i8", "i8", "i8", "i8", "i8", "i8", "i8", "i8", "i8", "i8", "b", "u1",
                      *("u1", "i8", "i8") * 7, "u1", "i", "u1", "i"),
}
_DTYPES = {"u1": np.uint8, "u2": np.uint16, "u8": np.uint64, "i4": np.int32, "i8": np.int64, "f8": np.float64, "b": np.bool_}
_RETURNS_STATUS = {"nm_hash_rows", "nm_select", "nm_seed", "nm_dp", "nm_traceback", "nm_same_placement", "nm_unscored", "nm_rescue_vote"}
_RETURNS_LENGTH = {"nm_format_sam", "nm_newlines", "nm_fastq_plain", "nm_texts_equal", "nm_compact"}  # a length or a value


@lru_cache(maxsize=1)
def _library() -> ctypes.CDLL:
    spec = importlib.util.find_spec("neuromap._kernels")
    if spec is None or not spec.origin:
        raise NeuromapError("neuromap's compiled kernels (neuromap/_kernels.c) are not built: install the package with "
                            "`pip install .` (or `pip install -e .` in a checkout), which compiles them")
    lib = ctypes.CDLL(spec.origin)
    for name, signature in _SIGNATURES.items():
        try:
            fn = getattr(lib, name)
        except AttributeError:
            raise NeuromapError(f"{spec.origin}: the compiled kernels are older than this neuromap (no {name}): rebuild them with "
                                "`pip install .` (or `pip install -e .` in a checkout)") from None
        fn.argtypes = [ctypes.c_int64 if kind == "i" else ctypes.c_void_p for kind in signature]
        fn.restype = ctypes.c_int if name in _RETURNS_STATUS else ctypes.c_int64 if name in _RETURNS_LENGTH else None
    return lib


def call(name: str, *args) -> int | None:
    """Run kernel `name` on `args` (arrays of the signature's types, C-contiguous; ints); the
    kernels that return a length return it."""
    signature = _SIGNATURES[name]
    if len(args) != len(signature):
        raise TypeError(f"{name}: {len(args)} arguments for {len(signature)}")
    converted = []
    for position, (kind, value) in enumerate(zip(signature, args)):
        if kind == "i":
            converted.append(int(value))
            continue
        if not isinstance(value, np.ndarray) or not value.flags.c_contiguous or (kind != "any" and value.dtype != _DTYPES[kind]):
            got = f"{value.dtype} {'contiguous' if value.flags.c_contiguous else 'strided'}" if isinstance(value, np.ndarray) else type(value).__name__
            raise TypeError(f"{name}: argument {position} must be a C-contiguous {kind} array, not {got}")
        converted.append(value.ctypes.data)
    result = getattr(_library(), name)(*converted)
    if name in _RETURNS_LENGTH:
        return result
    if result not in (None, 0):
        raise MemoryError(f"{name}: out of memory")
    return None
