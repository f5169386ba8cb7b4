"""The model stage: NeuralReadMapper over every (read, candidate window) pair of a batch.

Shapes are bucketed (a fixed number of pairs per call, read and window widths to multiples of 32)
so the network compiles a handful of times per run. The traced network (ExportedScorer) and its
compiled program are kept on disk across runs (`NEUROMAP_JAX_CACHE`, default ~/.cache/neuromap/jax)
where that directory is writable.
A read longer than the model's `read_length` is split into chunks; the chunks' diagonal scores are
shifted by their offsets and added, which is exact for the diagonal-sum score. Nothing is cut.
"""

from __future__ import annotations

import atexit
import hashlib
import json
import os
import platform
import sys
import threading
import time
from dataclasses import dataclass
from functools import lru_cache
from types import SimpleNamespace

import numpy as np

from neuromap import trace
from neuromap.errors import NeuromapError
from neuromap.model_process import GREETING_PROTOCOL, compute_dtype, greeting
from neuromap.model_process import source_digest as _model_source_digest
from neuromap.threads import waiting

WIDTH_BUCKET = 32


@lru_cache(maxsize=1)
def pair_bucket() -> int:
    """(read, window) pairs per model call: one compiled shape. Small on a CPU, where the
    attention tensors of a call must stay in cache (on 2 cores, 16 pairs per call score a pair in
    about 0.7 of the time 64 do: benchmarks/RESULTS-cpu-model.md), large on an accelerator (it wants big
    launches).
    NEUROMAP_PAIR_BUCKET overrides. Each pair is scored alone, but XLA's float rounding depends on
    the shapes it compiles for: with another bucket the likelihoods (and the pc tag) can differ in
    their last digits, so output is byte-identical for one bucket size, i.e. one device kind."""
    if os.environ.get("NEUROMAP_PAIR_BUCKET"):
        return max(1, int(os.environ["NEUROMAP_PAIR_BUCKET"]))
    import jax

    return 16 if jax.default_backend() == "cpu" else 1024


@dataclass
class ModelScores:
    """Per pair: the model's start (window column), evidence and confidence."""

    start: np.ndarray  # (P,) int64 window column where the read starts
    log_likelihood: np.ndarray  # (P,) float64 logsumexp over starts


@dataclass
class Calibration:
    """Fitted on held-out simulated reads; shipped with the weights (calibration.json)."""

    scale: float = 1.0  # log-likelihood -> log-probability across a read's windows

    @classmethod
    def load(cls, directory: str) -> "Calibration":
        path = os.path.join(directory, "calibration.json")
        if not os.path.exists(path):
            return cls()
        try:
            with open(path) as fh:
                fields = json.load(fh)
            return cls(**{k: v for k, v in fields.items() if k in cls.__dataclass_fields__})
        except (ValueError, TypeError, AttributeError) as exc:
            raise ValueError(f"{path}: not a calibration ({exc})") from None


def _cache_folder() -> str | None:
    """The folder of the exported network and its compiled programs (NEUROMAP_JAX_CACHE), made if
    missing; None where it cannot be written (then every run exports and compiles)."""
    directory = os.environ.get("NEUROMAP_JAX_CACHE", os.path.join(os.path.expanduser("~"), ".cache", "neuromap", "jax"))
    try:
        os.makedirs(directory, exist_ok=True)
        if os.access(directory, os.W_OK):
            return directory
    except OSError:
        pass
    return None


def _use_jax_cache(directory: str) -> None:
    """Turn on JAX's persistent compilation cache in `directory`: where the compiled network cannot
    be kept on its own (ExportedScorer._keep_executable), JAX's cache keeps it instead."""
    import jax

    jax.config.update("jax_compilation_cache_dir", directory)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)


_LOADING = threading.Lock()


# Compiled calls loaded ahead by ExportedScorer.preload: a run has at most three sizes of call
# (call_size), for one or two read widths.
PRELOAD_LIMIT = 4


def preload_programs() -> bool:
    """Whether a model's load also loads the compiled calls earlier runs kept
    (ExportedScorer.preload): NEUROMAP_PRELOAD_PROGRAMS=1 or 0, by default off a CPU only. On a
    CPU a run makes calls of one size, and a program loaded for nothing takes a core from the
    workers."""
    setting = os.environ.get("NEUROMAP_PRELOAD_PROGRAMS", "")
    if setting in ("0", "1"):
        return setting == "1"
    import jax

    return jax.default_backend() != "cpu"


def load_model(weights_dir: str | None = None):
    """The shipped (or given) model, its jitted scorer and its calibration; once per process
    (threads asking at once wait for the one load)."""
    with _LOADING:
        return _load_model(weights_dir)


def preload(weights_dir: str | None = None) -> None:
    """Start loading the model (JAX, Flax, the weights: about 1.5 s on a CPU) on a background
    thread, so that it overlaps reading the index and the input and seeding the first batches.
    A failure is left for the foreground `load_model` call to raise, with its usual message."""

    def load() -> None:
        try:
            load_model(weights_dir)
        except Exception:  # noqa: BLE001 - raised again, where it is reported, by the caller
            pass

    track(threading.Thread(target=load, name="neuromap-load-model", daemon=True)).start()


# Threads that may be inside JAX's C++ code (loading the model, a model call for a worker
# process). The process must not end under them: at exit Python stops a daemon thread where it
# next takes the GIL, by unwinding its stack, and through JAX's C++ frames that aborts the process
# ("FATAL: exception not rethrown", status 134) instead of letting it end as it meant to.
# So they are waited for at exit (atexit runs before Python stops daemon threads), on every way
# out: the normal end, an error, a closed pipe, Ctrl-C.
_BACKGROUND: list[threading.Thread] = []


def track(thread: threading.Thread) -> threading.Thread:
    _BACKGROUND[:] = [t for t in _BACKGROUND if t.is_alive()]
    _BACKGROUND.append(thread)
    return thread


def settle_background(timeout: float = 10.0) -> None:
    """Wait (at most `timeout` seconds in all) for the background model threads to finish: the
    model's load, and the model server's threads, which end when its worker processes have."""
    deadline = time.monotonic() + timeout
    for thread in list(_BACKGROUND):
        if thread is not threading.current_thread():
            thread.join(max(0.0, deadline - time.monotonic()))


atexit.register(settle_background)


@lru_cache(maxsize=4)
def _load_model(weights_dir: str | None):
    """The load itself (see load_model); cached per directory. Returns (config, scorer,
    calibration): the config's fields as attributes, an ExportedScorer, the Calibration."""
    from neuromap.weights import SHIPPED

    directory = weights_dir or SHIPPED
    trace.event("load-model")
    try:  # the errors name the file (check_weights has seen that all three exist)
        scorer = ExportedScorer(directory, compute_dtype(), _cache_folder())
        calibration = Calibration.load(directory)
    except (OSError, ValueError) as exc:
        raise NeuromapError(f"cannot load the model: {exc}") from None
    if preload_programs():
        scorer.preload(pair_bucket())
    trace.event("model-loaded")
    return scorer.config, scorer, calibration


class ExportedScorer:
    """The network's compiled call, (read_codes (P, R) int, read_mask (P, R), window_codes (P, W)
    int) -> alignment_scores (P, W), for `align` and everything that scores through it; codes >= 4
    (N, padding) become all-zero one-hot rows.

    For each input shape the model is traced once with Flax and exported (`jax.export`: its
    StableHLO, with the parameters as arguments), and the export is kept in the compilation
    cache's folder (`exported/`), keyed by the parameters, the configuration, the precision, the
    model's source code, the JAX version and the backend. A later run loads those exports and
    their compiled code from the cache: it neither imports Flax nor builds or traces the model
    (`align` starts 0.6 s sooner on a GPU machine, 0.7 s on 2 CPU cores: benchmarks/README.md).
    Beside each export the compiled program itself is kept, for this machine's jaxlib, device
    and instruction set (`_keep_executable`): a later run loads it and neither lowers the export
    nor looks it up in JAX's cache (the first call 0.25 s sooner on 2 CPU cores). A run always
    calls the exported program, whether it made it, found it or found it compiled, so the
    numbers are the same every way. Where the folder is not writable (or `flatbuffers`, which
    serialises an export, is missing) the exports live for the run only. Thread-safe."""

    def __init__(self, directory: str, dtype: str, cache_dir: str | None):
        import jax

        trace.event("jax-imported")
        self.directory, self.dtype = directory, dtype
        self._lock = threading.Lock()
        self._build_lock = threading.Lock()
        self._calls: dict = {}  # by the arrays' shapes and dtypes as they come: the compiled call
        self._loaded: dict = {}  # by _call_name's shapes: [lock, the compiled call or None] (_ensure)
        self._queued: list = []  # shapes whose kept programs are to be loaded after the first (preload)
        self.preloading: threading.Thread | None = None
        self._model = None
        self._folder = None
        digest = hashlib.sha256()
        for name in ("params.npz", "config.json"):
            with open(os.path.join(directory, name), "rb") as fh:
                digest.update(hashlib.sha256(fh.read()).digest())
        digest.update(_model_source_digest())
        digest.update(f"{dtype} jax {jax.__version__} {jax.default_backend()}".encode())
        self.key = digest.hexdigest()[:32]
        if cache_dir is not None:
            self._folder = os.path.join(cache_dir, "exported", self.key)
        # The compiled programs are kept here, beside the exports, unless an earlier run found that
        # they cannot be (then JAX's own cache keeps them: _keep_executable).
        self._executables = f"executable-{_machine_fingerprint()}"  # their names' start on this machine
        self._unusable_note = f"{self._executables}.unusable"
        self._keeps_executables = self._folder is not None and self._read(self._unusable_note) is None
        if self._folder is not None and not self._keeps_executables:
            _use_jax_cache(cache_dir)
        meta = self._read("config.json")
        if meta is None:  # never loaded here: build the model now (its checks, its errors)
            config = self._build().config
            fields = {f: getattr(config, f) for f in config.__dataclass_fields__}
            self._write("config.json", json.dumps(fields, sort_keys=True).encode())
        else:
            fields = json.loads(meta)
        self.config = SimpleNamespace(**fields)
        with np.load(os.path.join(directory, "params.npz")) as saved:
            self._names = sorted(saved.files)
            self._params = dict(zip(self._names, jax.device_put([saved[n] for n in self._names])))
        trace.event("params-on-device")

    def _build(self):
        """The Flax model (only when an export is missing)."""
        with self._build_lock:  # calls of two shapes may be compiled at once (_ensure)
            if self._model is None:
                from neuromap.operators.mapping.neural_mapper import NeuralReadMapper

                self._model = NeuralReadMapper.pretrained(self.directory, compute_dtype=self.dtype)
        return self._model

    def _ensure(self, shapes):
        """The compiled call for `shapes`, loaded or compiled once (_compiled): calls of other
        shapes are not held up meanwhile, and the preloading thread (preload) and a call that
        needs the same shape wait for the one load."""
        with self._lock:
            entry = self._loaded.get(shapes)
            if entry is None:
                entry = self._loaded[shapes] = [threading.Lock(), None]
        with entry[0]:
            if entry[1] is None:
                entry[1] = self._compiled(shapes)
        if self._queued:
            self._start_preloading()
        return entry[1]

    def preload(self, bucket: int, limit: int = PRELOAD_LIMIT) -> None:
        """Queue the compiled calls that earlier runs kept on this machine (`_keep_executable`)
        for the pairs per call this run can make (`call_size` of `bucket`), the most recently used
        first, at most `limit`, to be loaded one after another on a thread of their own once this
        run's first call has its program (`_ensure`): never ahead of that one, which every
        worker's first batch waits for. On an accelerator calls come in three sizes; a run's are
        mostly of one, and a call of another (a batch with more or fewer pairs than most, the
        last one) then finds its program loaded instead of waiting mid-run for its load (0.1-0.2 s
        on the H200 for the first)."""
        if self._folder is None or not self._keeps_executables:
            return
        sizes = {call_size(n, bucket) for n in (1, SMALLEST_CALL, max(1, bucket // 4), bucket)}
        prefix = f"{self._executables}-"
        kept = []
        try:
            names = os.listdir(self._folder)
        except OSError:
            return
        for name in names:
            shapes = _call_shapes(name[len(prefix):]) if name.startswith(prefix) else None
            if shapes is not None and shapes[0][0][0] in sizes:
                try:
                    kept.append((os.path.getmtime(os.path.join(self._folder, name)), name, shapes))
                except OSError:
                    pass
        kept.sort(reverse=True)
        with self._lock:
            self._queued = [shapes for _, _, shapes in kept[:limit]]

    def _start_preloading(self) -> None:
        """Start loading the queued programs (preload), once."""
        with self._lock:
            queued, self._queued = self._queued, []
        if queued:
            self.preloading = track(threading.Thread(target=self._preload_all, args=(queued,), name="neuromap-preload", daemon=True))
            self.preloading.start()

    def _preload_all(self, queued) -> None:
        for shapes in queued:
            try:
                self._ensure(shapes)
            except Exception:  # noqa: BLE001 - a call of this shape, if one comes, meets the error itself
                with self._lock:
                    self._loaded.pop(shapes, None)

    def _read(self, name: str) -> bytes | None:
        if self._folder is None:
            return None
        try:
            with open(os.path.join(self._folder, name), "rb") as fh:
                return fh.read()
        except OSError:
            return None

    def _write(self, name: str, data: bytes) -> None:
        if self._folder is None:
            return
        try:
            os.makedirs(self._folder, exist_ok=True)
            tmp = os.path.join(self._folder, f".{name}.{os.getpid()}.{threading.get_ident()}")
            with open(tmp, "wb") as fh:
                fh.write(data)
            os.replace(tmp, os.path.join(self._folder, name))  # whole or not at all, for other runs
        except OSError:
            pass

    def _export(self, shapes):
        import jax
        import jax.numpy as jnp
        from jax import export
        from flax import nnx

        graphdef, params, rest = nnx.split(self._build(), nnx.Param, ...)
        flat = nnx.to_flat_state(params)
        names = ["/".join(map(str, key)) for key, _ in flat]
        if sorted(names) != self._names:
            raise NeuromapError(f"{self.directory}: params.npz does not hold the model's parameters")

        def score(values, read_codes, read_mask, window_codes):
            state = nnx.from_flat_state([(key, var.replace(values[name])) for name, (key, var) in zip(names, flat)])
            model = nnx.merge(graphdef, state, rest)
            read = jax.nn.one_hot(read_codes, 4, dtype=jnp.float32)
            window = jax.nn.one_hot(window_codes, 4, dtype=jnp.float32)
            return model(read, window, read_mask)["alignment_scores"]

        return export.export(jax.jit(score))(*self._specs(shapes))

    def _compiled(self, shapes):
        import jax
        from jax import export

        name = _call_name(shapes)
        executable_name = f"{self._executables}-{name}"
        if self._keeps_executables:
            compiled = self._load_executable(executable_name, shapes)
            if compiled is not None:
                return compiled
        data = self._read(name)
        exported = None
        if data is not None:
            try:
                exported = export.deserialize(bytearray(data))
            except Exception:  # noqa: BLE001 - a damaged or foreign file: made again below
                exported = None
        if exported is None:
            exported = self._export(shapes)
            try:
                self._write(name, exported.serialize())
            except ImportError:  # no flatbuffers: this run's only
                pass
        call = jax.jit(exported.call)
        if self._keeps_executables:
            return self._keep_executable(executable_name, call, shapes) or call
        return call

    def _specs(self, shapes) -> list:
        """A call's arguments as shapes and dtypes only: the parameters, then the inputs."""
        import jax

        params = {n: jax.ShapeDtypeStruct(v.shape, v.dtype) for n, v in self._params.items()}
        return [params, *(jax.ShapeDtypeStruct(shape, dtype) for shape, dtype in shapes)]

    def _trees(self):
        """The argument and result structures of a call (a serialised executable leaves them out)."""
        import jax

        args = ((dict.fromkeys(self._params, 0), 0, 0, 0), {})
        return jax.tree_util.tree_structure(args), jax.tree_util.tree_structure(0)

    def _probe(self, shapes, seed: int | None = None) -> list:
        """Inputs of the call's shapes: zeros, or (with `seed`) random codes, N and padding included."""
        if seed is None:
            return [np.zeros(shape, dtype) for shape, dtype in shapes]
        rng = np.random.default_rng(seed)
        (codes_shape, codes_dtype), (mask_shape, mask_dtype), (windows_shape, windows_dtype) = shapes
        mask = np.arange(mask_shape[1])[None, :] < rng.integers(1, mask_shape[1] + 1, mask_shape[0])[:, None]
        return [rng.integers(0, 6, codes_shape).astype(codes_dtype), mask.astype(mask_dtype),
                rng.integers(0, 6, windows_shape).astype(windows_dtype)]

    def _load_executable(self, name: str, shapes):
        """The compiled call kept by an earlier run on this machine (`_keep_executable`), or None
        (none kept, or one that does not load or run here: then the export is compiled again)."""
        data = self._read(name)
        if data is None:
            return None
        try:
            from jax.experimental import serialize_executable

            compiled = serialize_executable.deserialize_and_load(data, *self._trees())
            np.asarray(compiled(self._params, *self._probe(shapes)))  # its first run: a broken one fails here, not in a batch
        except Exception:  # noqa: BLE001 - damaged, or made by another jaxlib or device: compiled again
            return None
        trace.event("executable-loaded", shapes[0][0][0])
        try:  # its time of last use, for preload's order
            os.utime(os.path.join(self._folder, name))
        except OSError:
            pass
        return compiled

    def _keep_executable(self, name: str, call, shapes):
        """Compile `call` for `shapes` and keep the compiled program in the export's folder, so
        that later runs load it instead of lowering the export again (about 0.25 s of the first
        call on 2 CPU cores: benchmarks/README.md). It is compiled here, not taken from JAX's
        persistent cache, which stays off while programs are kept this way: XLA:CPU (jaxlib 0.10)
        serialises a program that came from that cache without its compiled functions. Kept only
        where a copy loaded back gives the same numbers, bit for bit, on random inputs. Where it
        cannot be (this JAX or device cannot compile ahead or serialise), a note in the folder
        sends this machine's later runs to JAX's cache instead, as before. Returns the compiled
        call, or None (then `call` is used)."""
        compiled = None
        try:
            from jax.experimental import serialize_executable

            compiled = call.lower(*self._specs(shapes)).compile()
            payload, in_tree, out_tree = serialize_executable.serialize(compiled)
            if (in_tree, out_tree) != self._trees():
                raise ValueError(f"the call's structure changed: {in_tree}, {out_tree}")
            again = serialize_executable.deserialize_and_load(payload, in_tree, out_tree)
            probe = self._probe(shapes, seed=7)
            if not np.array_equal(np.asarray(compiled(self._params, *probe)), np.asarray(again(self._params, *probe))):
                raise ValueError("loaded back, it computes other numbers")
        except Exception as error:  # noqa: BLE001 - not kept here: JAX's cache from the next run on
            self._write(self._unusable_note, f"{name}: {error!r}\n".encode())
            self._keeps_executables = False
            trace.event("executable-unusable")
            return compiled
        self._write(name, payload)
        trace.event("executable-kept")
        return compiled

    def __call__(self, read_codes, read_mask, window_codes):
        # The key as it comes (dtypes hash): their names, for the export's file, only when it is new.
        key = (read_codes.shape, read_codes.dtype, read_mask.shape, read_mask.dtype, window_codes.shape, window_codes.dtype)
        call = self._calls.get(key)
        if call is None:
            call = self._calls[key] = self._ensure(tuple((tuple(a.shape), str(a.dtype)) for a in (read_codes, read_mask, window_codes)))
        return call(self._params, read_codes, read_mask, window_codes)


def _call_name(shapes) -> str:
    """The file name of a call's export (and, after the machine's prefix, of its compiled
    program): score-1024x160-uint8-1024x160-float32-1024x192-uint8.bin."""
    return "score-" + "-".join("x".join(map(str, shape)) + f"-{dtype}" for shape, dtype in shapes) + ".bin"


def _call_shapes(name: str):
    """The shapes a `_call_name` names, or None for another name."""
    if not (name.startswith("score-") and name.endswith(".bin")):
        return None
    parts = name[len("score-"):-len(".bin")].split("-")
    if len(parts) != 6:
        return None
    try:
        shapes = tuple((tuple(int(d) for d in parts[i].split("x")), parts[i + 1]) for i in range(0, 6, 2))
    except ValueError:
        return None
    return shapes if _call_name(shapes) == name else None


@lru_cache(maxsize=1)
def _machine_fingerprint() -> str:
    """What a compiled program depends on beyond the export: jaxlib, the device and its runtime,
    XLA's flags and, on a CPU, the instruction set it was compiled for (a cache folder may be
    shared by machines of a cluster)."""
    import jax
    import jaxlib

    device = jax.devices()[0]
    parts = [jaxlib.__version__, device.platform, device.device_kind, device.client.platform_version,
             os.environ.get("XLA_FLAGS", ""), platform.machine()]
    if device.platform == "cpu":
        # The first core's model and instruction-set extensions (x86: "flags"; Arm: "Features",
        # "CPU implementer", "CPU part"); elsewhere what Python knows of the processor.
        described = {}
        try:
            with open("/proc/cpuinfo") as fh:
                for line in fh:
                    field = line.split(":", 1)[0].strip()
                    if field in ("model name", "flags", "Features", "CPU implementer", "CPU part"):
                        described.setdefault(field, line.strip())
        except OSError:
            pass
        parts += [described[field] for field in sorted(described)] or [platform.processor()]
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:16]


load_model.cache_clear = _load_model.cache_clear  # `calibrate` rewrites a model's files


def _round_up(x: int, step: int) -> int:
    return max(step, -(-x // step) * step)


@lru_cache(maxsize=1)
def device_name() -> str:
    """The device the network runs on, e.g. "cpu" or "gpu (NVIDIA H200)"."""
    import jax

    backend, kind = jax.default_backend(), jax.devices()[0].device_kind
    return backend if kind.lower() == backend.lower() else f"{backend} ({kind})"


def max_window(weights_dir: str | None = None) -> int:
    if _REMOTE is not None:
        return _REMOTE.info()[1]
    return load_model(weights_dir)[0].reference_window


def calibration_scale(weights_dir: str | None = None) -> float:
    """The fitted log-likelihood -> log-probability scale shipped with the model."""
    if _REMOTE is not None:
        return _REMOTE.info()[2]
    return load_model(weights_dir)[2].scale


def model_device() -> str:
    """Where this process's network runs (in a worker of `align --processes`: the model process's)."""
    if _REMOTE is not None:
        return _REMOTE.info()[3]
    return device_name()


class RemoteModel:
    """The model as a worker process of `align --processes` uses it: the model's process
    (model_process.ModelServer) holds the one copy (one JAX runtime, one set of compiled kernels, one device context: on a GPU about
    1 GB less per worker, and no JAX start-up in each), and the worker sends it the padded model
    calls of `_score_distinct` over a pipe (the Python around them stays in the worker). Each
    call is the one the worker would make, with the same shapes, so the output is the same as in
    one process. `who` names the other end in errors."""

    def __init__(self, conn, who: str = "the network's process"):
        self.conn = conn
        self.who = who
        self._info: tuple | None = None
        self._lock = threading.Lock()  # one question at a time on the pipe (a parked batch's thread asks too)
        self._info_lock = threading.Lock()  # one "info" asked, however many threads want it

    @property
    def ready(self) -> bool:
        """Whether the other end has answered once (it answers once the model is loaded)."""
        return self._info is not None

    def _ask(self, *message):
        trace.event("ask", message[0])
        try:
            with waiting(), self._lock:  # a worker beyond -t may compute meanwhile (threads.computing)
                self.conn.send(message)
                reply = self.conn.recv()
            trace.event("answered", message[0])
        except (EOFError, OSError):
            raise NeuromapError(f"{self.who} ended before answering (out of memory, or stopped?)") from None
        if isinstance(reply, BaseException):
            raise reply
        return reply

    def info(self) -> tuple:
        """(read_length, reference_window, calibration scale, device name, pairs per call)"""
        if self._info is None:
            before = getattr(_BEFORE_WAIT, "hook", None)
            if before is not None:  # this thread is about to wait for the network to start
                before()
            if not self._info_lock.acquire(blocking=False):
                with waiting():  # another thread of this worker asks: no compute token held meanwhile
                    self._info_lock.acquire()
            try:
                if self._info is None:
                    self._info = self._ask("info")
            finally:
                self._info_lock.release()
        return self._info

    def call(self, codes: np.ndarray, lens: np.ndarray, windows: np.ndarray, read_width: int, padded_width: int) -> np.ndarray:
        if getattr(_BEFORE_WAIT, "calls", False):  # this thread is about to wait for a model call
            _BEFORE_WAIT.hook()
        return self._ask("call", codes, lens, windows, read_width, padded_width)


# Per thread: called once the thread is about to wait for the network's first answer
# (RemoteModel.info), which comes once the model is loaded, and with `calls` before each model
# call's answer too (pipeline.Parking).
_BEFORE_WAIT = threading.local()


def on_wait(hook, calls: bool = False) -> None:
    """Call `hook()` (None: nothing) in this thread when it is about to wait for a RemoteModel's
    first answer, and with `calls` for each of its model calls' too."""
    _BEFORE_WAIT.hook = hook
    _BEFORE_WAIT.calls = calls and hook is not None


class ServerModel:
    """The model as `align --server SOCKET` uses it: a `neuromap serve` process holds it, loaded
    and compiled by earlier runs, and each thread of this process that scores has a connection of
    its own (the server answers each on a thread of its own). The calls are those of RemoteModel."""

    def __init__(self, path: str, weights_dir: str | None):
        self.path, self.weights_dir = path, weights_dir
        self._local = threading.local()
        self._lock = threading.Lock()
        self._opened: list = []

    def _remote(self) -> RemoteModel:
        remote = getattr(self._local, "remote", None)
        if remote is None:
            from neuromap.model_process import connect_server

            remote = RemoteModel(connect_server(self.path), f"the neuromap server at {self.path}")
            with self._lock:
                self._opened.append(remote.conn)
            try:
                remote._info = remote._ask("hello", greeting(self.weights_dir))
            except NeuromapError as exc:
                raise NeuromapError(f"{self.path}: {exc}") from None
            self._local.remote = remote
        return remote

    def info(self) -> tuple:
        return self._remote().info()

    def call(self, *args) -> np.ndarray:
        return self._remote().call(*args)

    def close(self) -> None:
        with self._lock:
            opened, self._opened = self._opened, []
        for conn in opened:
            conn.close()


_REMOTE: RemoteModel | ServerModel | None = None


def use_remote(conn) -> RemoteModel:
    """In a worker process: score with the model's process over `conn` (see RemoteModel); returns it."""
    global _REMOTE
    _REMOTE = RemoteModel(conn)
    return _REMOTE


def use_server(path: str | None, weights_dir: str | None = None) -> ServerModel | None:
    """Score through the `neuromap serve` at `path` in this process from now on (None: in this
    process, or the model's process, again); returns the ServerModel, which `close` ends."""
    global _REMOTE
    _REMOTE = ServerModel(path, weights_dir) if path else None
    return _REMOTE


def serve_models(weights_dir: str | None, conns: list, parent: int) -> None:
    """The model's process of `align --processes` (model_process.ModelServer): loads the model
    and answers each worker's pipe on a thread of its own until every worker has gone."""
    import signal

    from neuromap.threads import exit_with_parent  # not from the pipeline: its imports would delay JAX's

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the main process handles Ctrl-C and ends this one
    exit_with_parent(parent)
    trace.event("model-process")
    preload(weights_dir)
    threads = [track(threading.Thread(target=_serve, args=(conn, weights_dir), name="neuromap-model-server", daemon=True)) for conn in conns]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    settle_background()
    # Every worker has gone and every answer is sent; the compilation cache and the exports were
    # written when made. So end here, without Python's and JAX's teardown (0.25 s of a one-read
    # run on 2 cores, which the main process waits for: model_process.ModelServer.close).
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


def _serve(conn, weights_dir: str | None, bucket: int | None = None) -> None:
    """Answer one worker's RemoteModel until the worker has gone (`bucket`: pairs per call, by
    default pair_bucket())."""
    while True:
        try:
            message = conn.recv()
        except Exception:  # noqa: BLE001 - every worker has ended (EOF: each holds all the pipes' ends), or not a message of ours (a stray client of `neuromap serve`)
            conn.close()
            return
        try:
            trace.event("serve", message[0] if message[0] == "info" else message[1].shape[0])
            if message[0] == "info":
                reply = _info(weights_dir, bucket)
            else:
                reply = _model_call(load_model(weights_dir)[1], _pairs_per_call(bucket), *message[1:])
        except Exception as exc:  # noqa: BLE001 - raised again in the worker, then reported
            reply = exc
        trace.event("served")
        if not _send(conn, reply):
            return


def _pairs_per_call(bucket: int | None) -> int:
    """A client's own pairs per call (its NEUROMAP_PAIR_BUCKET), else this process's pair_bucket()."""
    return pair_bucket() if bucket is None else bucket


def _info(weights_dir: str | None, bucket: int | None) -> tuple:
    """RemoteModel.info's answer: (read_length, reference_window, calibration scale, device name,
    pairs per call)."""
    config, _, calibration = load_model(weights_dir)
    return config.read_length, config.reference_window, calibration.scale, device_name(), _pairs_per_call(bucket)


def _send(conn, reply) -> bool:
    """Send a reply (an exception that does not pickle as a RuntimeError); False: the other end has gone."""
    try:
        try:
            conn.send(reply)
        except (TypeError, AttributeError, ValueError) as exc:  # an exception that does not pickle
            conn.send(RuntimeError(f"{type(reply).__name__}: {reply}") if isinstance(reply, BaseException) else exc)
    except OSError:
        conn.close()
        return False
    return True


def serve_client(conn, default_weights: str | None) -> None:
    """One client of `neuromap serve` (ServerModel): its greeting, answered with the model's info
    or with why it cannot be served, then its calls (`_serve`) until it goes."""
    from neuromap.model_process import check_weights

    try:
        message = conn.recv()
    except Exception:  # noqa: BLE001 - gone, or not a neuromap client
        conn.close()
        return
    hello = message[1] if isinstance(message, tuple) and len(message) == 2 and message[0] == "hello" and isinstance(message[1], dict) else {}
    weights_dir = hello.get("weights", default_weights)
    bucket = hello.get("bucket")
    try:
        if hello.get("protocol") != GREETING_PROTOCOL or not (bucket is None or (isinstance(bucket, int) and bucket > 0)):
            raise NeuromapError("the server does not understand this client (another neuromap version?)")
        mine = greeting(None)
        if hello.get("code") != mine["code"]:
            raise NeuromapError(f"the server runs other network code (neuromap {mine['version']}; this run: {hello.get('version')}): "
                                "restart it with this installation of neuromap")
        if hello.get("dtype") != mine["dtype"]:
            raise NeuromapError(f"the server computes in {mine['dtype']}, this run in {hello.get('dtype')}: "
                                "set NEUROMAP_COMPUTE_DTYPE alike for both")
        check_weights(weights_dir)
        reply = _info(weights_dir, bucket)
    except Exception as exc:  # noqa: BLE001 - raised again in the client, then reported
        reply = exc
    if _send(conn, reply) and not isinstance(reply, BaseException):
        _serve(conn, weights_dir, bucket)
    else:
        conn.close()


def score_pairs(query: np.ndarray, qlen: np.ndarray, target: np.ndarray, weights_dir: str | None = None) -> ModelScores:
    """Run the model on oriented reads `query` (P, Lq) against windows `target` (P, W).

    A read from an exact repeat brings one identical (read, window) pair per copy: on a bacterial
    genome about half of the pairs that reach the network. Each distinct pair is scored once (the
    first of each kind, in input order) and its result shared."""
    n_pairs = len(qlen)
    if n_pairs == 0:
        return ModelScores(np.zeros(0, np.int64), np.zeros(0))
    lengths = np.ascontiguousarray(qlen, dtype=np.int64)[:, None].view(np.uint8)
    keys = np.ascontiguousarray(np.concatenate([query.astype(np.uint8), target.astype(np.uint8), lengths], axis=1))
    _, first, inverse = np.unique(keys.view(np.dtype((np.void, keys.shape[1]))).ravel(), return_index=True, return_inverse=True)
    if len(first) == n_pairs:
        return _score_distinct(query, qlen, target, weights_dir)
    order = np.argsort(first)  # distinct pairs in input order
    position = np.empty_like(order)
    position[order] = np.arange(len(order))
    reps = first[order]
    scored = _score_distinct(query[reps], qlen[reps], target[reps], weights_dir)
    shared = position[inverse.ravel()]
    return ModelScores(start=scored.start[shared], log_likelihood=scored.log_likelihood[shared])


# Buckets from this size up (an accelerator's) also have calls of a quarter and a sixteenth of
# the bucket, not below SMALLEST_CALL pairs, for the calls that fit one (see call_size).
SMALL_CALLS_FROM = 256
SMALLEST_CALL = 64


def call_size(n: int, bucket: int) -> int:
    """The pairs a model call of n pairs (at most `bucket`) is padded to. A batch of 4,000
    single-end reads brings about 150 pairs to the network (benchmarks/README.md): padded to an
    accelerator's bucket of 1,024 that is six times the work, and the host thread that waits for
    the device may spin meanwhile (CUDA's default wait on a machine with more cores than
    devices). So a call that fits a quarter of the bucket (or a sixteenth) takes that shape
    instead: three compiled shapes, and the size depends only on n, so the output does not depend
    on threads, processes or timing. Smaller buckets (a CPU's 16) have one shape."""
    size = bucket
    while bucket >= SMALL_CALLS_FROM and size // 4 >= max(n, SMALLEST_CALL) and size // 4 >= bucket // 16:
        size //= 4
    return size


def _model_call(score, bucket: int, codes: np.ndarray, lens: np.ndarray, windows: np.ndarray, read_width: int, padded_width: int) -> np.ndarray:
    """One compiled call on up to `bucket` pairs, padded to a fixed shape (`call_size`):
    (pairs, window width) float32 scores of the read starting at each column."""
    n, width = windows.shape
    bucket = call_size(n, bucket)
    # Codes as bytes (the model one-hot encodes them on the device): a quarter of the bytes to
    # fill here and to copy to an accelerator, and the same one-hot rows as from int32.
    padded_codes = np.full((bucket, read_width), 4, dtype=np.uint8)
    padded_codes[:n, : codes.shape[1]] = codes
    padded_lens = np.zeros(bucket, dtype=np.int64)
    padded_lens[:n] = lens
    mask = (np.arange(read_width)[None, :] < padded_lens[:, None]).astype(np.float32)
    padded_windows = np.full((bucket, padded_width), 4, dtype=np.uint8)
    padded_windows[:n, :width] = windows
    # Cut the padding off on the host: slicing the device array compiles a small XLA program for
    # every (n, width) seen (14 on 100,000 reads, each held in memory for the rest of the run).
    return np.asarray(score(padded_codes, mask, padded_windows))[:n, :width]


def _score_distinct(query: np.ndarray, qlen: np.ndarray, target: np.ndarray, weights_dir: str | None) -> ModelScores:
    if _REMOTE is not None:  # a worker process: the calls go to the parent's model
        read_length, reference_window, _, _, bucket = _REMOTE.info()
        call = _REMOTE.call
    else:
        config, score, _ = load_model(weights_dir)
        read_length, reference_window, bucket = config.read_length, config.reference_window, pair_bucket()
        call = lambda *args: _model_call(score, bucket, *args)  # noqa: E731
    n_pairs, width = target.shape
    if n_pairs == 0:
        return ModelScores(np.zeros(0, np.int64), np.zeros(0))
    if width > reference_window:
        raise ValueError(f"window {width} exceeds the model's reference_window {reference_window}")
    # Pad the window to a bucketed width (N columns, never chosen) so shapes repeat across batches.
    padded_width = min(_round_up(width, WIDTH_BUCKET), reference_window)
    chunk = read_length
    total = np.zeros((n_pairs, width), dtype=np.float64)
    longest = int(qlen.max())
    for offset in range(0, longest, chunk):
        piece_len = np.clip(qlen - offset, 0, chunk)
        read_width = min(_round_up(int(piece_len.max()), WIDTH_BUCKET), chunk)
        codes_all = query[:, offset : offset + read_width]
        # A fixed number of pairs per call: one compiled shape, and the attention tensors of a call
        # stay small (memory, not arithmetic, is what a whole batch at once would cost).
        for lo in range(0, n_pairs, bucket):
            hi = min(lo + bucket, n_pairs)
            scores = call(codes_all[lo:hi], piece_len[lo:hi], target[lo:hi], read_width, padded_width).astype(np.float64)
            # This chunk starts `offset` bases into the read: its score at column p votes for a
            # read start at p - offset.
            if offset < width:
                live = piece_len[lo:hi, None] > 0
                total[lo:hi, : width - offset] += np.where(live, scores[:, offset:], 0.0)
    start = total.argmax(axis=1)
    peak = total.max(axis=1, keepdims=True)
    log_likelihood = peak[:, 0] + np.log(np.exp(total - peak).sum(axis=1))
    return ModelScores(start=start.astype(np.int64), log_likelihood=log_likelihood)
