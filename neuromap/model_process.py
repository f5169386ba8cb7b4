"""The network's process of `align --processes` (ModelServer), the checks a run makes of its
model before starting one, and `neuromap serve`'s socket (serve_socket, connect_server, and the
server `align --server auto` finds or starts: ensure_auto_server). Only the standard library is
imported here: the command starts that process before it imports numpy, and the process itself
imports nothing of the command's (click, the pipeline) before JAX. On the GPU machine the
workers wait for the network until it has loaded (benchmarks/RESULTS-gpu-timeline*.md), so every
0.1 s of that start is 0.1 s of every run."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from functools import lru_cache
from multiprocessing.connection import Connection, Pipe

from neuromap import trace
from neuromap.errors import NeuromapError
from neuromap.threads import sigint_ignored


def compute_dtype() -> str:
    """The network's arithmetic: NEUROMAP_COMPUTE_DTYPE, float32 by default (what the shipped
    calibration was fitted on; benchmarks/README.md has bfloat16's speed and accuracy on a GPU)."""
    return os.environ.get("NEUROMAP_COMPUTE_DTYPE", "float32")


@lru_cache(maxsize=1)
def source_digest() -> bytes:
    """The source of the network's code (neuromap/operators and neuromap/model.py): an export made
    by other code is not used (model.ExportedScorer), and a `neuromap serve` running other code
    refuses a run (greeting). Read once per process (at its model's load, or its first
    greeting): the code it runs, not what may have been installed since."""
    digest = hashlib.sha256()
    package = os.path.dirname(os.path.abspath(__file__))
    root = os.path.join(package, "operators")  # not imported: that loads Flax
    for folder, dirs, files in sorted(os.walk(root)):
        dirs.sort()
        for name in sorted(files):
            if name.endswith(".py"):
                with open(os.path.join(folder, name), "rb") as fh:
                    digest.update(name.encode() + hashlib.sha256(fh.read()).digest())
    with open(os.path.join(package, "model.py"), "rb") as fh:
        digest.update(hashlib.sha256(fh.read()).digest())
    return digest.digest()


GREETING_PROTOCOL = 1


def greeting(weights_dir: str | None) -> dict:
    """What a client of `neuromap serve` says first: the model it wants and what decides its
    numbers (the network's code, the arithmetic, the pairs per call), so that a run through a
    server writes what it would write without one, or stops with an error."""
    from neuromap import __version__

    bucket = os.environ.get("NEUROMAP_PAIR_BUCKET")
    return {"protocol": GREETING_PROTOCOL, "version": __version__, "code": source_digest().hex(), "dtype": compute_dtype(),
            "weights": os.path.abspath(weights_dir) if weights_dir else None, "bucket": int(bucket) if bucket else None}


def python_command(entry: str, *args: str) -> list[str]:
    """A fresh interpreter running `entry` (Python code that reads its arguments from
    sys.argv[2:]) with this process's flags and sys.path, as multiprocessing's spawn passes them:
    the same neuromap and the same packages, whatever the working directory or how this process
    found them."""
    return [sys.executable, *subprocess._args_from_interpreter_flags(), "-c",
            f"import json, sys; sys.path[:] = json.loads(sys.argv[1]); {entry}", json.dumps(sys.path), *args]


def check_weights(weights_dir: str | None) -> None:
    """A clear error, before any work, when a model directory is incomplete."""
    from neuromap.weights import COMPUTE_DTYPES, SHIPPED

    directory = weights_dir or SHIPPED
    for name in ("params.npz", "config.json", "calibration.json"):
        if not os.path.exists(os.path.join(directory, name)):
            raise NeuromapError(f"{directory}: no {name}: not a complete neuromap model (use --no-neural, or train and calibrate one)")
    if compute_dtype() not in COMPUTE_DTYPES:
        raise NeuromapError(f"NEUROMAP_COMPUTE_DTYPE={compute_dtype()!r}: must be one of {', '.join(COMPUTE_DTYPES)}")
    bucket = os.environ.get("NEUROMAP_PAIR_BUCKET")
    if bucket and not (bucket.isdigit() and int(bucket) > 0):
        raise NeuromapError(f"NEUROMAP_PAIR_BUCKET={bucket!r}: must be a positive whole number of pairs per model call")
    preload = os.environ.get("NEUROMAP_PRELOAD_PROGRAMS", "")
    if preload not in ("", "0", "1"):
        raise NeuromapError(f"NEUROMAP_PRELOAD_PROGRAMS={preload!r}: must be 1 (load the kept compiled calls with the model) or 0")


class ModelServer:
    """For `align --processes`: the model lives in a process of its own, where one thread per
    worker pipe answers that worker's model.RemoteModel (model.serve_models); the pipes' worker
    ends go to the workers (`worker_ends`). The main process then imports no JAX and only reads
    the input, hands out batches and writes the output: on a GPU machine with 16 workers that main
    process was what limited the run, and the model's calls (with, it seems, the host thread
    spinning while the device works) took 6.4 of its 15 CPU-seconds over 4M reads
    (benchmarks/README.md).

    The process is a fresh interpreter (fork is unsafe once a device runtime runs) started with
    `python -c`, not multiprocessing's spawn: spawn would first import this process's __main__ (for
    the command, neuromap.cli and click) and unpickle its arguments through neuromap.model (numpy)
    before the first line of JAX. Its end of each pipe is passed as a file descriptor. It starts
    with Ctrl-C ignored (the main process handles it and ends this one) and ends with the process
    that started it (threads.exit_with_parent)."""

    def __init__(self, weights_dir: str | None, n_workers: int):
        self.pipes = [Pipe() for _ in range(n_workers)]
        fds = [own.fileno() for own, _ in self.pipes]
        command = python_command("from neuromap.model_process import main; main(sys.argv[2:])",
                                 str(os.getpid()), weights_dir or "", *map(str, fds))
        trace.event("start-model-process")
        self.released = False
        with sigint_ignored():
            # Its stdout is this process's stderr: nothing it might print can reach the SAM, and
            # a reader of `align`'s stdout sees its end when `align` ends (release).
            self.process = subprocess.Popen(command, pass_fds=fds, stdin=subprocess.DEVNULL, stdout=_stderr_fd(), env=_network_env())
        for own, _ in self.pipes:  # the model's process holds them now
            own.close()

    def worker_ends(self) -> list:
        return [theirs for _, theirs in self.pipes]

    def release(self) -> None:
        """The run is done and its workers have ended: close this process's copies of the workers'
        ends and let the model's process end by itself (its pipes read EOF; it then leaves at once,
        model.serve_models) without waiting for it. Its end is the device's teardown: on the GPU
        machine `align` spent 0.15 s of a 3.4 s run over 1M pairs waiting for it, after the output
        was complete (benchmarks/README.md, ninth lease's py-spy). It holds nothing of the output
        (its stdout is this process's stderr), and should this process end first, it ends too
        (threads.exit_with_parent). Closing after this does nothing."""
        for _, theirs in self.pipes:
            theirs.close()
        self.released = True
        _RELEASED[:] = [p for p in _RELEASED if p.poll() is None]  # (poll reaps those that have ended)
        _RELEASED.append(self.process)  # kept, so that its Popen is not collected (and warned of) while it ends

    def close(self, wait: bool = True) -> None:
        """This process's copies of the workers' ends. The model's process ends when every worker
        has (its pipes then read EOF): waited for (10 s at most), or with `wait` False (Ctrl-C,
        SIGTERM, a run that ended before it was used) ended now. Closing again, or after
        `release`, does nothing."""
        for _, theirs in self.pipes:
            theirs.close()
        if self.released or self.process.poll() is not None:
            return
        if wait:
            try:
                self.process.wait(10)
                return
            except subprocess.TimeoutExpired:
                pass
        self.process.terminate()
        try:
            self.process.wait(5)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def _network_env() -> dict:
    """The environment of the network's process: this one's, with XLA_PYTHON_CLIENT_PREALLOCATE
    false unless it is set. The weights are 167 KB and the calls take what they need, where JAX
    would hold 75 % of a GPU's memory from its start: several runs could not share one GPU, nor
    could a run start while the network's process of the one before it still ends
    (ModelServer.release). The GPU benchmarks all ran this way (benchmarks/gpu_lease.sh)."""
    env = dict(os.environ)
    env.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
    return env


def _stderr_fd():
    """File descriptor 2 (this process's stderr, whatever sys.stderr has become), or /dev/null
    where it is closed."""
    try:
        os.fstat(2)
    except OSError:
        return subprocess.DEVNULL
    return 2


# Model processes let end by themselves (ModelServer.release): reaped by subprocess's own
# bookkeeping as later ones start, or by the system once this process has ended.
_RELEASED: list = []


# XLA's own setting of how a host thread waits for the GPU (TF_CUDA_PLATFORM_GPU_DEVICE_SCHEDULE),
# as CUDA's context flags: the early start must create the context with the flags XLA will ask
# for, or XLA logs an error and keeps the context as it is.
SCHEDULE_FLAGS = {None: 0, "spin": 0x01, "yield": 0x02, "blocking_sync": 0x04}


def _count_setting(name: str, what: str) -> int:
    """A whole number from the environment variable `name` (unset or empty: 0)."""
    value = os.environ.get(name, "").strip() or "0"
    if not value.isdigit():
        raise NeuromapError(f"{name}={value!r}: expected a whole number of {what} (0: none)")
    return int(value)


def spare_workers() -> int:
    """Worker processes beyond -t for `align --processes` with the network (pipeline.align_records):
    NEUROMAP_SPARE_WORKERS, none by default. They are for a network on a GPU, where a worker that
    waits for it leaves its core idle; on the CPU the network needs the cores itself. Not the
    default: on the GPU machine they made 4M reads 15-20 % slower (benchmarks/README.md, ninth lease)."""
    return _count_setting("NEUROMAP_SPARE_WORKERS", "workers")


def park_batches() -> int:
    """Batches a worker process of `align --processes` may park while the network's process
    starts (pipeline.Parking): NEUROMAP_PARK_BATCHES, none by default. On the GPU machine 8 made
    1M pairs 2-6 % faster and 4M single-end reads 1-6 % slower (benchmarks/README.md, tenth and
    eleventh leases): not the default."""
    return _count_setting("NEUROMAP_PARK_BATCHES", "batches")


def park_steady() -> int:
    """Batches a worker process of `align --processes` may park at once, once the network's
    process has started, each while it waits for a model call's answer (pipeline.Parking):
    NEUROMAP_PARK_STEADY, none by default. For a network on a GPU, where a worker waiting for an
    answer leaves its core idle; not measured there yet."""
    return _count_setting("NEUROMAP_PARK_STEADY", "batches")


def start_device_early():
    """Start CUDA's driver and the first GPU's primary context on a thread of its own, while this
    process imports numpy and JAX (about 0.7 s on the GPU machine), instead of after. XLA uses
    that same primary context (it retains it once more), so its own start of the device has less
    left to do: the weights were on the device 0.16 s after JAX's import instead of 0.37 s, and
    the network ready 0.1 s sooner (benchmarks/RESULTS-gpu-ab-lease6.md). Only where JAX has a
    CUDA plugin installed and may use it (JAX_PLATFORMS, CUDA_VISIBLE_DEVICES), and the driver
    loads; NEUROMAP_DEVICE_EARLY=0 turns it off. The context gets the flags that XLA's
    TF_CUDA_PLATFORM_GPU_DEVICE_SCHEDULE asks for (SCHEDULE_FLAGS; an unknown value: no early
    start, and XLA reports it). Returns the thread, or None."""
    import importlib.util

    platforms = os.environ.get("JAX_PLATFORMS", "")
    schedule = os.environ.get("TF_CUDA_PLATFORM_GPU_DEVICE_SCHEDULE")
    if (os.environ.get("NEUROMAP_DEVICE_EARLY", "1") == "0"
            or schedule not in SCHEDULE_FLAGS
            or (platforms and not any(p in platforms for p in ("cuda", "gpu")))
            or os.environ.get("CUDA_VISIBLE_DEVICES") in ("", "-1")
            or not any(importlib.util.find_spec(m) for m in ("jax_cuda13_plugin", "jax_cuda12_plugin"))):
        return None
    import ctypes
    import threading

    flags = SCHEDULE_FLAGS[schedule]

    def start() -> None:
        try:
            cuda = ctypes.CDLL("libcuda.so.1")
        except OSError:
            return
        device, context = ctypes.c_int(), ctypes.c_void_p()
        if cuda.cuInit(0) != 0 or cuda.cuDeviceGet(ctypes.byref(device), 0) != 0:
            return
        if flags:
            set_flags = getattr(cuda, "cuDevicePrimaryCtxSetFlags_v2", None) or cuda.cuDevicePrimaryCtxSetFlags
            set_flags(device, ctypes.c_uint(flags))
        cuda.cuDevicePrimaryCtxRetain(ctypes.byref(context), device)  # kept: XLA retains it too
        trace.event("device-started-early", flags)

    thread = threading.Thread(target=start, name="neuromap-device-start", daemon=True)
    thread.start()
    return thread


def main(argv: list[str]) -> None:
    """The model's process (ModelServer): PARENT_PID WEIGHTS_DIR FD... (WEIGHTS_DIR empty: the
    shipped model)."""
    start_device_early()
    parent, weights_dir, fds = int(argv[0]), argv[1] or None, argv[2:]
    conns = [Connection(int(fd)) for fd in fds]
    from neuromap.model import serve_models

    serve_models(weights_dir, conns, parent)


# `neuromap serve`: the network kept loaded on its device between runs, for `align --server`.
# Over 400,000 reads on the GPU machine the network's start (importing JAX, starting the device,
# the first call) was 1.2 s of a 2.6 s run (benchmarks/README.md): a pipeline that maps many
# samples pays it once. The messages are those of the --processes model pipes (model.RemoteModel),
# after a greeting (greeting, above) that checks the two sides run the same network code.

SOCKET_PATH_MAX = 107  # sun_path holds 108 bytes with the terminating NUL


def connect_server(path: str) -> Connection:
    """A connection to the `neuromap serve` at the Unix socket `path`."""
    import socket

    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.connect(path)
    except OSError as exc:
        sock.close()
        raise NeuromapError(f"{path}: no neuromap server answers there ({exc.strerror or exc}); "
                            f"start one with `neuromap serve {path}`, or leave out --server") from None
    return Connection(sock.detach())


# `align --server auto`: the server for this user, machine and model, started by the first run
# that asks for one and found by the next, ending by itself after a while without a client. A
# pipeline that maps many samples or chunks one after another (the Snakemake workflow's scatter)
# then pays the network's start once, with nothing to start or stop around it.
AUTO_SERVER = "auto"
AUTO_IDLE_EXIT = 300.0  # seconds; NEUROMAP_SERVER_IDLE_EXIT sets another


def auto_idle_exit() -> float:
    text = os.environ.get("NEUROMAP_SERVER_IDLE_EXIT")
    if not text:
        return AUTO_IDLE_EXIT
    try:
        seconds = float(text)
    except ValueError:
        seconds = -1.0
    if not seconds > 0:
        raise NeuromapError(f"NEUROMAP_SERVER_IDLE_EXIT={text!r}: must be a positive number of seconds")
    return seconds


def private_folder() -> str:
    """The folder of the `--server auto` sockets: $XDG_RUNTIME_DIR/neuromap where the session has
    one, else neuromap-UID in the temporary folder; created readable by this user only, and refused
    when another user owns it or may write in it."""
    import stat
    import tempfile

    runtime = os.environ.get("XDG_RUNTIME_DIR")
    folder = (os.path.join(runtime, "neuromap") if runtime and os.path.isdir(runtime)
              else os.path.join(tempfile.gettempdir(), f"neuromap-{os.getuid()}"))
    try:
        os.mkdir(folder, 0o700)
    except FileExistsError:
        pass
    except OSError as exc:
        raise NeuromapError(f"{folder}: cannot create the folder of --server auto ({exc.strerror or exc}): give --server SOCKET") from None
    info = os.lstat(folder)
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid() or info.st_mode & 0o077:
        raise NeuromapError(f"{folder}: not a folder of this user's alone, so --server auto does not use it "
                            "(remove it, or give --server SOCKET)")
    return folder


def auto_server_path(weights_dir: str | None) -> str:
    """The socket of the `--server auto` for this run: one per model and per setting a server must
    share with its clients (what a client's greeting names but the pairs per call, which a server
    takes from each client; the Python; the device JAX is given; the cache), so runs that differ
    in any of them get servers of their own."""
    what = {**{key: value for key, value in greeting(weights_dir).items() if key != "bucket"}, "python": sys.executable,
            **{name: os.environ.get(name) for name in ("JAX_PLATFORMS", "CUDA_VISIBLE_DEVICES", "NEUROMAP_JAX_CACHE")}}
    key = hashlib.sha256(json.dumps(what, sort_keys=True).encode()).hexdigest()[:16]
    path = os.path.join(private_folder(), f"server-{key}.sock")
    if len(os.fsencode(path)) > SOCKET_PATH_MAX:
        raise NeuromapError(f"{path}: too long for a Unix socket: set XDG_RUNTIME_DIR or TMPDIR to a shorter folder, or give --server SOCKET")
    return path


def auto_server_file(path: str, suffix: str) -> str:
    """The lock (".lock") or messages (".log") beside an auto server's socket `path`."""
    return path[: -len(".sock")] + suffix


def _answers(path: str) -> bool:
    try:
        connect_server(path).close()
    except NeuromapError:
        return False
    return True


def ensure_auto_server(weights_dir: str | None, timeout: float = 600.0) -> str:
    """The socket of this run's `--server auto` (auto_server_path), started now if no server
    answers there: `neuromap serve SOCKET --idle-exit NEUROMAP_SERVER_IDLE_EXIT` in a session of its
    own (it outlives this run), its messages in SOCKET's name with .log. A lock file beside the
    socket makes runs that start at once share one server. Returns once the server listens (it
    answers a run's first call when its model has loaded)."""
    import fcntl
    import time

    idle = auto_idle_exit()
    path = auto_server_path(weights_dir)
    log_path = auto_server_file(path, ".log")
    with open(auto_server_file(path, ".lock"), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if _answers(path):
            return path
        command = python_command("from neuromap.cli import main; main(sys.argv[2:])",
                                 "serve", path, "--idle-exit", f"{idle:g}", *(["--weights", weights_dir] if weights_dir else []))
        env = {name: value for name, value in os.environ.items() if name != "NEUROMAP_TRACE"}  # not this run's timeline
        # A server nobody started by hand does not hold 75 % of a GPU's memory from its start (JAX's
        # default) while it waits; the GPU benchmarks all ran this way. Set it to "true" to preallocate.
        env.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
        with open(log_path, "wb") as log:
            server = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=log,
                                      start_new_session=True, env=env)
        trace.event("auto-server-started")
        deadline = time.monotonic() + timeout
        while not _answers(path):
            if server.poll() is not None or time.monotonic() > deadline:
                try:
                    with open(log_path, errors="replace") as fh:
                        said = [line.strip() for line in fh if line.strip()]
                except OSError:
                    said = []
                if server.poll() is None:
                    server.terminate()
                why = said[-1] if said else f"exit status {server.returncode}" if server.returncode is not None else f"not listening after {timeout:g} s"
                raise NeuromapError(f"{path}: the server started for --server auto did not come up ({why}; its messages: {log_path})")
            time.sleep(0.02)
        return path


def listen(path: str):
    """The listening socket of `neuromap serve`, readable and writable by this user only. A socket
    file left by a server that did not end cleanly is replaced; one where a server answers, or a
    file that is no socket, is an error."""
    import socket
    import stat

    if len(os.fsencode(path)) > SOCKET_PATH_MAX:
        raise NeuromapError(f"{path}: too long for a Unix socket ({SOCKET_PATH_MAX} bytes at most): choose a shorter path")
    parent = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(parent):
        raise NeuromapError(f"{path}: directory {parent} does not exist")
    if os.path.lexists(path):
        if not stat.S_ISSOCK(os.lstat(path).st_mode):
            raise NeuromapError(f"{path}: exists and is not a socket")
        try:
            connect_server(path).close()
        except NeuromapError:
            os.unlink(path)  # nobody listens: left by a server that was killed
        else:
            raise NeuromapError(f"{path}: a neuromap server already listens there")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old = os.umask(0o177)  # the socket file is created rw------- (no window where others may connect)
    try:
        sock.bind(path)
    except OSError as exc:
        sock.close()
        raise NeuromapError(f"{path}: cannot listen there ({exc.strerror or exc})") from None
    finally:
        os.umask(old)
    sock.listen(64)
    return sock


def serve_socket(path: str, weights_dir: str | None, idle_exit: float | None, say) -> None:
    """`neuromap serve`: load the model (`weights_dir`, or the shipped one), then answer each
    client that connects to `path` on a thread of its own, until SIGTERM or Ctrl-C (raised here as
    Terminated / KeyboardInterrupt) or, with `idle_exit`, that many seconds without a client. The
    socket file is removed at the end."""
    import select
    import socket
    import threading
    import time

    start_device_early()
    sock = listen(path)
    identity = os.stat(path).st_ino
    clients: dict = {}  # thread -> connection
    lock = threading.Lock()
    try:
        from neuromap.model import device_name, load_model, serve_client, track

        check_weights(weights_dir)
        load_model(weights_dir)
        say(f"neuromap: serving the network ({device_name()}, {compute_dtype()}) at {path} (pid {os.getpid()})"
            + (f"; ends after {idle_exit:g} s without a client" if idle_exit is not None else "; Ctrl-C or SIGTERM ends it"))

        def client(conn) -> None:
            try:
                serve_client(conn, weights_dir)
            finally:
                with lock:
                    clients.pop(threading.current_thread(), None)

        last = time.monotonic()
        while True:
            ready, _, _ = select.select([sock], [], [], 0.5)
            if ready:
                try:
                    peer, _ = sock.accept()
                except OSError:
                    continue
                conn = Connection(peer.detach())
                last = time.monotonic()  # a client that came and went still counts: its run may connect again at once
                thread = track(threading.Thread(target=client, args=(conn,), name="neuromap-serve-client", daemon=True))
                with lock:
                    clients[thread] = conn
                thread.start()
            now = time.monotonic()
            with lock:
                if clients:
                    last = now
            if idle_exit is not None and now - last >= idle_exit:
                return
    finally:
        sock.close()
        try:
            if os.stat(path).st_ino == identity:  # still ours (not replaced by another server)
                os.unlink(path)
        except OSError:
            pass
        with lock:
            conns = list(clients.values())
        for conn in conns:  # a client still connected reads EOF; its thread ends after any call in progress
            try:
                other = socket.socket(fileno=os.dup(conn.fileno()))
                other.shutdown(socket.SHUT_RDWR)
                other.close()
            except OSError:
                pass
