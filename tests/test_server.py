"""`neuromap serve` and `align --server`: the network kept loaded between runs, with the same
output as a run that loads it itself, and clear errors when the server cannot serve a run."""

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

import pytest

from conftest import assert_clean_error, pids_whose_args, run_cli


def start_server(path, *options, env=None):
    """`neuromap serve PATH` in the background, once it says it is serving (its stderr line)."""
    proc = subprocess.Popen([sys.executable, "-m", "neuromap", "serve", str(path), *options], stderr=subprocess.PIPE, text=True,
                            start_new_session=True, env=env)
    line = proc.stderr.readline()
    assert "serving the network" in line, line + proc.stderr.read()
    return proc


def stop(proc, sig=signal.SIGTERM):
    if proc.poll() is None:
        proc.send_signal(sig)
    rest = proc.stderr.read()
    proc.wait(30)
    return rest


@pytest.fixture(scope="module")
def socket_dir():
    d = tempfile.mkdtemp(prefix="nm-", dir="/tmp")  # short: a socket's path holds 107 bytes
    yield d
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture(scope="module")
def server(socket_dir):
    path = os.path.join(socket_dir, "s.sock")
    proc = start_server(path)
    yield path
    stop(proc)


def body(sam_text):
    return [line for line in sam_text.splitlines() if not line.startswith("@PG")]


@pytest.mark.parametrize("paired", [False, True])
@pytest.mark.parametrize("workers", [["-t", "1"], ["-t", "2", "--no-processes"], ["-t", "2", "--processes"]])
def test_align_through_the_server_writes_what_a_run_alone_writes(data_dir, server, paired, workers):
    reads = [data_dir / "reads_1.fq", data_dir / "reads_2.fq"] if paired else [data_dir / "reads.fq"]
    alone = run_cli(["align", *workers, data_dir / "ref.fa", *reads])
    served = run_cli(["align", *workers, "--server", server, data_dir / "ref.fa", *reads])
    assert alone.returncode == 0 and served.returncode == 0, alone.stderr + served.stderr
    assert body(served.stdout) == body(alone.stdout)
    assert len(body(served.stdout)) > 2000
    assert "(network, " in served.stderr  # the placement path and the server's device
    pg = [line for line in served.stdout.splitlines() if line.startswith("@PG")][0]
    assert "--server" in pg


def test_spare_workers_through_the_server(data_dir, server, tmp_path):
    """Worker processes beyond -t (NEUROMAP_SPARE_WORKERS) each open their own connection to the
    server, and the output is a run alone's."""
    stats = tmp_path / "run.json"
    reads = [data_dir / "reads_1.fq", data_dir / "reads_2.fq"]
    served = run_cli(["align", "-t", "2", "--processes", "-K", "200", "--server", server, "--stats", stats, data_dir / "ref.fa", *reads],
                     env={**os.environ, "NEUROMAP_SPARE_WORKERS": "2"})
    alone = run_cli(["align", "-t", "2", "--processes", "-K", "200", data_dir / "ref.fa", *reads])
    assert served.returncode == 0 and alone.returncode == 0, served.stderr + alone.stderr
    assert body(served.stdout) == body(alone.stdout)
    assert json.loads(stats.read_text())["workers"] == "2 processes (+2 spare)"


def test_the_server_is_found_from_the_environment_and_the_run_loads_no_jax(data_dir, server, tmp_path):
    # One process (-t 1): the whole run in this interpreter, which must not import JAX.
    code = ("import sys; from neuromap.cli import main; main(['align', '-t', '1', sys.argv[1], sys.argv[2], '-o', sys.argv[3]]); "
            "print('jax' in sys.modules)")
    out = tmp_path / "out.sam"
    res = subprocess.run([sys.executable, "-c", code, str(data_dir / "ref.fa"), str(data_dir / "reads.fq"), str(out)],
                         capture_output=True, text=True, env={**os.environ, "NEUROMAP_SERVER": server})
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "False"
    alone = run_cli(["align", data_dir / "ref.fa", data_dir / "reads.fq"])
    assert body(out.read_text()) == body(alone.stdout)


def test_several_runs_at_once_share_the_server(data_dir, server, tmp_path):
    procs = [subprocess.Popen([sys.executable, "-m", "neuromap", "align", "-t", "2", "--server", server, str(data_dir / "ref.fa"),
                               str(data_dir / "reads_1.fq"), str(data_dir / "reads_2.fq"), "-o", str(tmp_path / f"{i}.sam")],
                              stderr=subprocess.PIPE, text=True) for i in range(3)]
    for proc in procs:
        assert proc.wait(120) == 0, proc.stderr.read()
    first = body((tmp_path / "0.sam").read_text())
    assert len(first) > 2000
    assert body((tmp_path / "1.sam").read_text()) == first
    assert body((tmp_path / "2.sam").read_text()) == first


def test_no_neural_ignores_the_server(data_dir, socket_dir):
    res = run_cli(["align", "--no-neural", "--server", os.path.join(socket_dir, "nobody.sock"), data_dir / "ref.fa", data_dir / "reads.fq"])
    assert res.returncode == 0, res.stderr


def test_errors_name_the_socket_and_leave_no_output(data_dir, server, socket_dir, tmp_path):
    out = tmp_path / "out.bam"
    missing = os.path.join(socket_dir, "nobody.sock")
    res = run_cli(["align", "--server", missing, data_dir / "ref.fa", data_dir / "reads.fq", "-o", out])
    assert_clean_error(res, missing, "neuromap serve")
    assert not out.exists()
    # Another arithmetic than the server's would change the numbers: refused.
    res = run_cli(["align", "--server", server, data_dir / "ref.fa", data_dir / "reads.fq", "-o", out],
                  env={**os.environ, "NEUROMAP_COMPUTE_DTYPE": "bfloat16"})
    assert_clean_error(res, server, "bfloat16", "NEUROMAP_COMPUTE_DTYPE")
    assert not out.exists()
    # An incomplete model: the client's own check, before asking the server.
    res = run_cli(["align", "--server", server, "--weights", tmp_path, data_dir / "ref.fa", data_dir / "reads.fq"])
    assert_clean_error(res, "params.npz")


def test_serve_refuses_a_live_socket_a_file_and_a_missing_directory(server, socket_dir, tmp_path):
    assert_clean_error(run_cli(["serve", server]), server, "already listens")
    plain = tmp_path / "plain"
    plain.write_text("x")
    assert_clean_error(run_cli(["serve", plain]), str(plain), "not a socket")
    assert plain.read_text() == "x"
    assert_clean_error(run_cli(["serve", tmp_path / "no" / "s.sock"]), "does not exist")
    assert_clean_error(run_cli(["serve", "/tmp/" + "x" * 120]), "too long")


def test_the_socket_is_private_and_removed_at_the_end(socket_dir):
    path = os.path.join(socket_dir, "t.sock")
    proc = start_server(path)
    assert oct(os.stat(path).st_mode & 0o777) == "0o600"
    rest = stop(proc)
    assert proc.returncode == 0, rest
    assert "stopped" in rest and "Traceback" not in rest
    assert not os.path.exists(path)


def test_a_killed_servers_socket_is_taken_over(data_dir, socket_dir):
    path = os.path.join(socket_dir, "k.sock")
    proc = start_server(path)
    stop(proc, signal.SIGKILL)
    assert os.path.exists(path)  # left behind: nobody listens
    proc = start_server(path)
    try:
        res = run_cli(["align", "--server", path, data_dir / "ref.fa", data_dir / "reads.fq"])
        assert res.returncode == 0, res.stderr
    finally:
        stop(proc)


def test_idle_exit(socket_dir, data_dir):
    import socket

    path = os.path.join(socket_dir, "i.sock")
    proc = start_server(path, "--idle-exit", "2")
    held = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)  # a client connected keeps it up, however long a run takes to start
    held.connect(path)
    res = run_cli(["align", "--server", path, data_dir / "ref.fa", data_dir / "reads.fq"])
    assert res.returncode == 0, res.stderr
    time.sleep(3)
    assert proc.poll() is None
    held.close()
    assert proc.wait(30) == 0
    assert not os.path.exists(path)


def test_a_server_that_ends_mid_run_is_an_error_not_a_short_output(data_dir, socket_dir, tmp_path):
    path = os.path.join(socket_dir, "m.sock")
    proc = start_server(path)
    big = tmp_path / "big.fq"
    big.write_bytes((data_dir / "reads.fq").read_bytes() * 30)
    out = tmp_path / "out.sam"
    run = subprocess.Popen([sys.executable, "-m", "neuromap", "align", "-K", "200", "--server", path, str(data_dir / "ref.fa"), str(big),
                            "-o", str(out)], stderr=subprocess.PIPE, text=True)
    # Once the run's own connection is up (seen twice: the start's check connects only briefly),
    # the server is killed under it.
    deadline, seen = time.monotonic() + 60, 0
    while seen < 2 and time.monotonic() < deadline and run.poll() is None:
        seen = seen + 1 if _has_client(path) else 0
        time.sleep(0.3)
    stop(proc, signal.SIGKILL)
    err = run.stderr.read()
    assert run.wait(60) == 1, err
    assert f"the neuromap server at {path} ended before answering" in err and "Traceback" not in err, err
    assert len(err.strip().splitlines()) == 1, err
    assert not out.exists()


def _has_client(path: str) -> bool:
    """Whether a connection to the socket at `path` is open (Linux: /proc/net/unix lists the
    server's end of each, named by the path, in state 03)."""
    with open("/proc/net/unix") as fh:
        rows = [line.split() for line in fh.read().splitlines()[1:]]
    return any(len(row) == 8 and row[5] == "03" and row[7] == path for row in rows)


def test_a_stray_client_does_not_disturb_the_server(data_dir, socket_dir):
    import socket

    path = os.path.join(socket_dir, "x.sock")
    proc = start_server(path)
    try:
        for payload in (b"GET / HTTP/1.0\r\n\r\n", b"\x00\x00\x00\x05hello", b""):
            stray = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            stray.connect(path)
            stray.sendall(payload)
            stray.close()
        res = run_cli(["align", "--server", path, data_dir / "ref.fa", data_dir / "reads.fq"])
        assert res.returncode == 0, res.stderr
    finally:
        rest = stop(proc)
    assert "Traceback" not in rest and "Exception" not in rest, rest


def test_a_clients_own_model_and_many_workers(data_dir, server, tmp_path):
    """--weights travels to the server, which loads that model for the client (a copy of the
    shipped one: the same output; a damaged one: the server's error, naming the file, in the
    client); eight worker processes each have a connection of their own."""
    from neuromap.weights import SHIPPED

    weights, damaged = tmp_path / "w", tmp_path / "bad"
    for folder in (weights, damaged):
        folder.mkdir()
        for name in ("params.npz", "config.json", "calibration.json"):
            shutil.copy(os.path.join(SHIPPED, name), folder / name)
    (damaged / "params.npz").write_bytes(b"not a zip file")
    reads = [data_dir / "ref.fa", data_dir / "reads_1.fq", data_dir / "reads_2.fq"]
    alone = run_cli(["align", "-t", "8", "--processes", "--weights", weights, *reads])
    served = run_cli(["align", "-t", "8", "--processes", "--weights", weights, "--server", server, *reads])
    assert alone.returncode == 0 and served.returncode == 0, alone.stderr + served.stderr
    assert body(served.stdout) == body(alone.stdout)
    res = run_cli(["align", "--weights", damaged, "--server", server, *reads])
    assert_clean_error(res, server, "cannot load the model")
    assert res.stdout == ""


# `align --server auto`: this user's server for the model, started by the first run and found by the next.


def servers_under(folder):
    """The pids of the `neuromap serve` processes whose socket lies in `folder` (from /proc)."""
    return pids_whose_args(lambda args: "serve" in args and any(arg.startswith(str(folder)) for arg in args))


@pytest.fixture
def runtime_dir():
    """A private XDG_RUNTIME_DIR (short: a socket's path holds 107 bytes); its auto servers ended at the end."""
    d = tempfile.mkdtemp(prefix="nmrt-", dir="/tmp")
    yield d
    for pid in servers_under(d):
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    shutil.rmtree(d, ignore_errors=True)


def test_auto_server_is_started_once_shared_by_runs_and_ends_when_idle(data_dir, runtime_dir, tmp_path):
    env = {**os.environ, "XDG_RUNTIME_DIR": runtime_dir, "NEUROMAP_SERVER_IDLE_EXIT": "6"}
    env.pop("NEUROMAP_SERVER", None)
    alone = run_cli(["align", "-t", "2", data_dir / "ref.fa", data_dir / "reads.fq"])
    # Three runs start at once: one of them starts the server, the others wait for it and use it.
    procs = [subprocess.Popen([sys.executable, "-m", "neuromap", "align", "-t", "2", "--server", "auto", str(data_dir / "ref.fa"),
                               str(data_dir / "reads.fq"), "-o", str(tmp_path / f"{i}.sam")], stderr=subprocess.PIPE, text=True, env=env)
             for i in range(3)]
    for proc in procs:
        assert proc.wait(180) == 0, proc.stderr.read()
    for i in range(3):
        assert body((tmp_path / f"{i}.sam").read_text()) == body(alone.stdout)
    folder = os.path.join(runtime_dir, "neuromap")
    assert oct(os.stat(folder).st_mode & 0o777) == "0o700"
    sockets = [name for name in os.listdir(folder) if name.endswith(".sock")]
    assert len(sockets) == 1, os.listdir(folder)
    log = [name for name in os.listdir(folder) if name.endswith(".log")]
    said = open(os.path.join(folder, log[0])).read()
    assert said.count("serving the network") == 1
    assert servers_under(runtime_dir) == [int(said.split("(pid ")[1].split(")")[0])]  # the log names the server's pid
    with open(f"/proc/{servers_under(runtime_dir)[0]}/environ", "rb") as fh:
        server_env = dict(item.split(b"=", 1) for item in fh.read().split(b"\0") if b"=" in item)
    assert server_env[b"XLA_PYTHON_CLIENT_PREALLOCATE"] == b"false"  # no GPU memory held ahead while it waits
    # A later run finds the same server (NEUROMAP_SERVER=auto works as --server auto); the run loads no network itself.
    inode = os.stat(os.path.join(folder, sockets[0])).st_ino
    later = run_cli(["align", "-t", "1", data_dir / "ref.fa", data_dir / "reads.fq"], env={**env, "NEUROMAP_SERVER": "auto"})
    assert later.returncode == 0, later.stderr
    assert body(later.stdout) == body(alone.stdout)
    assert os.stat(os.path.join(folder, sockets[0])).st_ino == inode
    # Idle for NEUROMAP_SERVER_IDLE_EXIT seconds, it ends and removes its socket.
    deadline = time.monotonic() + 60
    while servers_under(runtime_dir) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert not servers_under(runtime_dir)
    assert not os.path.exists(os.path.join(folder, sockets[0]))
    # The next run starts a fresh one.
    again = run_cli(["align", "--server", "auto", data_dir / "ref.fa", data_dir / "reads.fq"], env=env)
    assert again.returncode == 0, again.stderr
    assert body(again.stdout) == body(alone.stdout)
    assert len(servers_under(runtime_dir)) == 1


def test_auto_server_refuses_a_folder_others_may_use_and_a_bad_idle_time(data_dir, runtime_dir, tmp_path):
    env = {**os.environ, "XDG_RUNTIME_DIR": runtime_dir}
    env.pop("NEUROMAP_SERVER", None)
    folder = os.path.join(runtime_dir, "neuromap")
    os.mkdir(folder)
    os.chmod(folder, 0o777)
    out = tmp_path / "out.sam"
    res = run_cli(["align", "--server", "auto", data_dir / "ref.fa", data_dir / "reads.fq", "-o", out], env=env)
    assert_clean_error(res, folder, "--server SOCKET")
    assert not out.exists() and not servers_under(runtime_dir)
    os.chmod(folder, 0o700)
    res = run_cli(["align", "--server", "auto", data_dir / "ref.fa", data_dir / "reads.fq", "-o", out],
                  env={**env, "NEUROMAP_SERVER_IDLE_EXIT": "soon"})
    assert_clean_error(res, "NEUROMAP_SERVER_IDLE_EXIT", "soon")
    assert not out.exists() and not servers_under(runtime_dir)
    # A model whose files are there (the run's own check passes) but do not load: the server it
    # started ends; the run says so and where the server's messages are.
    from neuromap.weights import SHIPPED

    broken = tmp_path / "broken"
    broken.mkdir()
    for name in ("config.json", "calibration.json"):
        shutil.copy(os.path.join(SHIPPED, name), broken / name)
    (broken / "params.npz").write_bytes(b"not a parameter file")
    res = run_cli(["align", "--server", "auto", "--weights", broken, data_dir / "ref.fa", data_dir / "reads.fq", "-o", out], env=env)
    assert_clean_error(res, ".log")
    assert not out.exists()
    deadline = time.monotonic() + 30
    while servers_under(runtime_dir) and time.monotonic() < deadline:  # the failed server may still be ending
        time.sleep(0.2)
    assert not servers_under(runtime_dir)
    logs = [name for name in os.listdir(folder) if name.endswith(".log")]
    assert any("params.npz" in open(os.path.join(folder, name)).read() for name in logs)
    # A runtime folder too deep for a socket's path: said, with what to do.
    deep = os.path.join(runtime_dir, "d" * 90)
    os.mkdir(deep, 0o700)
    res = run_cli(["align", "--server", "auto", data_dir / "ref.fa", data_dir / "reads.fq", "-o", out], env={**env, "XDG_RUNTIME_DIR": deep})
    assert_clean_error(res, "too long for a Unix socket", "XDG_RUNTIME_DIR")
    assert not out.exists() and not servers_under(deep)
    # Without the network there is nothing to serve: no server, no folder needed.
    res = run_cli(["align", "--no-neural", "--server", "auto", data_dir / "ref.fa", data_dir / "reads.fq"], env=env)
    assert res.returncode == 0, res.stderr
    assert not servers_under(runtime_dir)
