#!/usr/bin/env python3
"""Where the processes of `align --processes` spend their time, sampled by py-spy during a run.

    python benchmarks/spy_processes.py GENOME READS [MATES] [--threads 16] [--delay 2] [--seconds 2]
                                       [--rate 200] [--native] [--server] [--no-neural]

Runs `neuromap align --processes -t THREADS` (SAM to /dev/null) and, from `--delay` seconds into
the run for `--seconds`, samples at once with py-spy (`record --nonblocking`): the network's
process (or, with `--server`, a `neuromap serve` started first and warmed by one run) with every
thread, idle or not, and again only where a thread holds the GIL; one worker process; and the main
process. For each it prints the share of samples by the deepest frame in neuromap's own code (with
its line, as it is in this checkout) and by the innermost frame, and, for the GIL, the share of
the time some thread held it. It answers what the seventh GPU lease left open: the network's
process takes about 4 ms a call where the device takes 1.3 ms (benchmarks/README.md).

Needs py-spy (`pip install py-spy`; on the GPU machine from .whl/, see gpu_lease.sh) and a
kernel that lets it read the processes (ptrace; as root in a container it can).
"""

from __future__ import annotations

import argparse
import collections
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench_se import cmdline, compile_package, machine_lines, parent_of, tree_pids  # noqa: E402

from neuromap import __version__  # noqa: E402


def find_processes(root: int) -> dict[str, int]:
    """The run's main process, its network's process and one worker (forked from the fork server)."""
    found = {"main": root}
    fork_server = None
    for pid in tree_pids(root)[1:]:
        text = cmdline(pid)
        if "neuromap.model_process" in text:
            found.setdefault("network", pid)
        elif "forkserver" in text:  # the fork server, and the workers forked from it (the same command line)
            if parent_of(pid) == root:
                fork_server = pid
    if fork_server is not None:
        workers = sorted(pid for pid in tree_pids(fork_server)[1:] if parent_of(pid) == fork_server)
        if workers:
            found["worker"] = workers[0]
    return found



def summarise(path: str, title: str, rate: int, seconds: float, only: str | None = None, top: int = 12) -> str:
    """A py-spy raw (collapsed) file as two tables: samples by the deepest neuromap frame and by
    the innermost frame; with `only`, the samples of stacks that hold that text (the threads that
    do the work, not those that watch or join)."""
    deepest: collections.Counter = collections.Counter()
    innermost: collections.Counter = collections.Counter()
    threads: set = set()
    total = 0
    try:
        with open(path) as fh:
            lines = fh.read().splitlines()
    except OSError:
        return f"### {title}\n\nno samples (py-spy wrote nothing)\n"
    for line in lines:
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        if only is not None and only not in stack:
            continue
        frames = stack.split(";")
        if frames and frames[0].startswith("thread ("):  # py-spy --threads: the thread first
            threads.add(frames[0])
            frames = frames[1:]
        total += n
        ours = [f for f in frames if "neuromap/" in f]
        deepest[ours[-1] if ours else "(outside neuromap's code)"] += n
        innermost[frames[-1] if frames else "(no frame)"] += n
    if total == 0:
        return f"### {title}\n\nno samples\n"
    expected = rate * seconds
    out = [f"### {title}", "",
           f"{total:,} samples in {seconds:.2f} s at {rate}/s: {total / expected:.2f} thread-seconds per second"
           + (f" over {len(threads)} threads" if threads else "") + (f" (stacks through `{only}`)" if only else ""), ""]
    for name, counter in (("deepest frame in neuromap's code", deepest), ("innermost frame", innermost)):
        out += [f"| {name} | share of samples |", "|---|---|"]
        for frame, n in counter.most_common(top):
            out.append(f"| `{frame}` | {100 * n / total:.1f} % |")
        rest = total - sum(n for _, n in counter.most_common(top))
        if rest:
            out.append(f"| (the rest) | {100 * rest / total:.1f} % |")
        out.append("")
    return "\n".join(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("genome")
    ap.add_argument("reads")
    ap.add_argument("mates", nargs="?")
    ap.add_argument("--threads", type=int, default=16)
    ap.add_argument("--delay", type=float, default=2.0, help="seconds into the run the sampling starts")
    ap.add_argument("--seconds", type=float, default=2.0, help="seconds sampled")
    ap.add_argument("--rate", type=int, default=200, help="samples per second")
    ap.add_argument("--native", action="store_true", help="native frames too (py-spy --native; it pauses each process while it samples it)")
    ap.add_argument("--server", action="store_true", help="the network in a `neuromap serve` (align --server)")
    ap.add_argument("--no-neural", action="store_true", help="no network: the workers and the main process only")
    args = ap.parse_args()
    spy = shutil.which("py-spy")
    if spy is None:
        sys.exit("py-spy not found on PATH (pip install py-spy)")
    compile_package()
    neuromap = [sys.executable, "-m", "neuromap"]
    tmp = tempfile.mkdtemp(prefix="nmspy-", dir="/tmp")
    base = [*neuromap, "align", "--quiet", "--processes", "-t", str(args.threads)] + (["--no-neural"] if args.no_neural else [])
    server = None
    if args.server and not args.no_neural:
        sock = os.path.join(tmp, "s.sock")
        server = subprocess.Popen([*neuromap, "serve", sock], stderr=subprocess.DEVNULL)
        while not os.path.exists(sock) and server.poll() is None:
            time.sleep(0.05)
        base += ["--server", sock]
        warm = os.path.join(tmp, "warm.fq")
        with open(args.reads, "rb") as fh, open(warm, "wb") as out:  # one untimed run through it: compiled, as for every later run
            out.writelines(line for _, line in zip(range(36000), fh))
        subprocess.run([*base, args.genome, warm], stdout=subprocess.DEVNULL, check=True)
    align = [*base, args.genome, args.reads] + ([args.mates] if args.mates else [])
    print("# Where the processes of `align --processes` spend their time (py-spy)\n")
    print(machine_lines())
    print(f"- versions: neuromap {__version__}, Python {platform.python_version()}, "
          f"{subprocess.run([spy, '--version'], capture_output=True, text=True).stdout.strip()}")
    print(f"- command: {' '.join(align)}")
    print(f"- sampled from {args.delay:g} s into the run for {args.seconds:g} s at {args.rate}/s"
          f"{', native frames' if args.native else ''}; the lines are this checkout's\n")
    started = time.perf_counter()
    run = subprocess.Popen(align, stdout=subprocess.DEVNULL)
    time.sleep(args.delay)
    found = find_processes(run.pid)
    if server is not None:
        found["network"] = server.pid
    spies = []
    # (process, title, py-spy's options, only the stacks through)
    plan = [("main", "main process, every thread", ["--idle", "--threads"], None),
            ("worker", "one worker process, its batches", ["--idle"], "_process_worker")]
    if not args.no_neural:
        plan += [("network", "the network's process, the threads that answer the workers", ["--idle", "--threads"], "_serve (neuromap/model.py"),
                 ("network", "the network's process, where a thread holds the GIL (thread-seconds per second: the share of the time the GIL was held)", ["--gil"], None)]
    sampling = time.perf_counter()
    for key, title, extra, only in plan:
        if key not in found:
            print(f"({title}: not found {args.delay:g} s into the run)\n")
            continue
        out = os.path.join(tmp, f"{len(spies)}.txt")
        # Native frames need the process paused while it is sampled (py-spy refuses --nonblocking with them).
        cmd = [spy, "record", "--format", "raw", "-r", str(args.rate), "-d", str(int(args.seconds + 0.999)),
               "-o", out, "-p", str(found[key]), *extra] + (["--native"] if args.native else ["--nonblocking"])
        spies.append((title, out, only, subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)))
    for title, out, _, proc in spies:
        _, err = proc.communicate()
        if proc.returncode != 0:
            print(f"({title}: py-spy failed: {err.strip().splitlines()[-1] if err.strip() else proc.returncode})\n")
    run.wait()
    ended = time.perf_counter()
    wall = ended - started
    seconds = min(int(args.seconds + 0.999), ended - sampling)  # the run may end before the sampling does
    if server is not None:
        server.send_signal(signal.SIGTERM)
        server.wait()
    print(f"The run took {wall:.2f} s (exit status {run.returncode}); sampling it slows it somewhat.\n")
    for title, out, only, _ in spies:
        print(summarise(out, title, args.rate, seconds, only))
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
