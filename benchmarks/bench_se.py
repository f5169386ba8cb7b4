#!/usr/bin/env python3
"""Single-end benchmark: neuromap beside minimap2 on the same simulated reads, in one run.

    python benchmarks/bench_se.py [--size 5000000] [--reads 100000] [--threads 2] [--workdir DIR]

Simulates a bacterial-size genome with repeats (benchmarks/genome.py), reads from it with
`neuromap simulate` (150 bp, 1 % error, SNPs), builds both indexes, aligns with neuromap (network
on, and --no-neural) and minimap2 at the same thread count, scores both with `neuromap evaluate`, and prints a Markdown report: the machine
and versions, then reads/s (and the ratio to minimap2), peak RSS, index build time, correct %,
wrong reads at MAPQ >= 30 and the Brier score, then each tool's mapeval and calibration tables.
Needs `minimap2` on PATH (Debian: apt-get install minimap2).
"""

from __future__ import annotations

import argparse
import ctypes
import os
import platform
import resource
import shutil
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

from neuromap import __version__  # noqa: E402
from neuromap.evaluate import evaluate, format_report, plot  # noqa: E402
from neuromap.simulate import synthetic_genome, write_fasta  # noqa: E402


BF16 = {"NEUROMAP_COMPUTE_DTYPE": "bfloat16"}


def parent_of(pid: int) -> int | None:
    """A process's parent, from /proc (None: gone)."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return int(fh.read().rsplit(")", 1)[1].split()[1])
    except (OSError, IndexError, ValueError):
        return None


def cmdline(pid: int) -> str:
    """A process's command line, its arguments joined by spaces ("" when it has gone)."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            return fh.read().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def all_pids() -> list[int]:
    return [int(entry) for entry in os.listdir("/proc") if entry.isdigit()]


def tree_pids(root: int) -> list[int]:
    """A process and all its descendants, from /proc."""
    children: dict[int, list[int]] = {}
    for pid in all_pids():
        ppid = parent_of(pid)
        if ppid is not None:
            children.setdefault(ppid, []).append(pid)
    pids, stack = [], [root]
    while stack:
        pid = stack.pop()
        pids.append(pid)
        stack.extend(children.get(pid, []))
    return pids


def _status_kb(pid: int, field: str) -> int:
    """A kB figure of /proc/PID/status (0 for a process that has gone)."""
    try:
        with open(f"/proc/{pid}/status") as fh:
            return next((int(line.split()[1]) for line in fh if line.startswith(field + ":")), 0)
    except (OSError, ValueError):
        return 0


def tree_kb(pids: list[int], field: str) -> int:
    """A /proc/PID/status figure summed over processes (kB): VmRSS, resident memory; RssAnon,
    anonymous (private, not file-backed) resident memory, without the pages of shared libraries
    and memory-mapped files."""
    return sum(_status_kb(pid, field) for pid in pids)


def tree_pss_kb(pids: list[int]) -> int:
    """Proportional set size summed over processes (kB, /proc/PID/smaps_rollup): each page shared
    by n of them counts 1/n in each (forked workers share the pages of Python, numpy and neuromap
    with their fork server, and all share the memory-mapped index through the page cache), so the
    sum is the memory the processes take together; RSS counts a shared page in every process."""
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/smaps_rollup") as fh:
                total += next((int(line.split()[1]) for line in fh if line.startswith("Pss:")), 0)
        except (OSError, ValueError):
            pass
    return total


def tree_memfd_kb(pids: list[int]) -> int:
    """Memory held by neuromap's shared batch memory, counted once (kB allocated): `align
    --processes` passes batches and their SAM through an in-memory file (memfd
    "neuromap-batches", neuromap.slots), which the processes read and write without mapping it,
    so no process's RSS or PSS shows it. (Other in-memory files, as a GPU driver's, are left out:
    they may be mapped, and so counted already.)"""
    seen: dict[tuple[int, int], int] = {}
    for pid in pids:
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
        except OSError:
            continue
        for fd in fds:
            path = f"/proc/{pid}/fd/{fd}"
            try:
                if not os.readlink(path).startswith("/memfd:neuromap-batches"):
                    continue
                st = os.stat(path)
            except OSError:
                continue
            seen[(st.st_dev, st.st_ino)] = st.st_blocks // 2
    return sum(seen.values())


def _become_subreaper() -> None:
    """Processes orphaned below this one (a command's fork server, which ends just after the
    command) come to this one instead of init (Linux), which reaps them, so that getrusage counts
    their CPU and that of the workers they reaped."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(36, 1, 0, 0, 0)  # PR_SET_CHILD_SUBREAPER
    except (OSError, AttributeError):
        pass


def run_measured(cmd: list[str], stdout_path: str | None = None, env: dict | None = None, anon: list | None = None,
                 cpu: list | None = None, pss: list | None = None, shared: list | None = None) -> tuple[float, int]:
    """Run a command (with `env` added to the environment); return (wall seconds, peak RSS in MB of
    its whole process tree). With `anon` (a list), its peak anonymous memory in MB is appended;
    with `pss`, its peak proportional set size in MB (tree_pss_kb; sampled every 0.25 s, as it
    costs more to read). The RSS and PSS include neuromap's shared batch memory (tree_memfd_kb),
    which no process's own figures count; with `shared` (a list), its peak in MB is appended.
    With `cpu` (a list), (CPU seconds of the command's own process, CPU seconds of its whole tree)
    is appended: the first as last sampled from /proc before it ended (to 0.05 s), the second from
    getrusage over every descendant reaped (worker processes included; those that outlive the
    command by a moment, such as its fork server, are waited for)."""
    _become_subreaper()
    out = open(stdout_path, "wb") if stdout_path else subprocess.DEVNULL
    peak = peak_anon = peak_pss = peak_memfd = 0
    seen: set[int] = set()
    own_cpu = 0.0
    tick = os.sysconf("SC_CLK_TCK")
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.PIPE, env={**os.environ, **(env or {})})
    stop = threading.Event()

    def sample():
        nonlocal peak, peak_anon, peak_pss, peak_memfd, own_cpu
        rounds = 0
        memfd = 0
        while not stop.is_set():
            pids = tree_pids(proc.pid)
            seen.update(pids)
            if rounds % 5 == 0:  # grows with the first batches, then stays
                memfd = tree_memfd_kb(pids)
                peak_memfd = max(peak_memfd, memfd)
            peak = max(peak, tree_kb(pids, "VmRSS") + memfd)
            if anon is not None:
                peak_anon = max(peak_anon, tree_kb(pids, "RssAnon"))
            if pss is not None and rounds % 5 == 0:
                peak_pss = max(peak_pss, tree_pss_kb(pids) + memfd)
            rounds += 1
            if cpu is not None:
                try:
                    with open(f"/proc/{proc.pid}/stat") as f:
                        fields = f.read().rsplit(")", 1)[1].split()
                    own_cpu = (int(fields[11]) + int(fields[12])) / tick  # utime + stime
                except (OSError, IndexError, ValueError):
                    pass
            time.sleep(0.05)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    _, err = proc.communicate()
    wall = time.perf_counter() - start
    stop.set()
    sampler.join()
    for pid in seen - {proc.pid}:  # orphans now this process's children (_become_subreaper)
        try:
            os.waitpid(pid, 0)
        except ChildProcessError:  # not ours: reaped by its own parent, whose CPU counts it
            pass
    if stdout_path:
        out.close()
    if proc.returncode != 0:
        sys.exit(f"failed: {' '.join(cmd)}\n{err.decode()[-2000:]}")
    if anon is not None:
        anon.append(peak_anon // 1024)
    if pss is not None:
        pss.append(peak_pss // 1024)
    if shared is not None:
        shared.append(peak_memfd // 1024)
    if cpu is not None:
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu.append((own_cpu, after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime))
    return wall, peak // 1024


WARM_NOTE = ("the network's exported and compiled program was in the cache (NEUROMAP_JAX_CACHE) before the timed runs, "
             "as for every run after a machine's first (`warm_up`: one untimed run on 9,000 reads or 4,500 pairs)")


def count_reads(path: str) -> int:
    """Records in a FASTQ file (its lines / 4)."""
    with open(path, "rb") as fh:
        return sum(1 for _ in fh) // 4


def head_fastq(path: str, records: int, out: str) -> str:
    """The first `records` records of the FASTQ `path` (four lines each) copied to `out`; returns `out`."""
    with open(path, "rb") as src, open(out, "wb") as dst:
        for i, line in enumerate(src):
            if i >= 4 * records:
                break
            dst.write(line)
    return out


def warm_up(genome: str, *reads: str, env: dict | None = None) -> None:
    """One untimed `align` with the network on the first 9,000 reads (4,500 pairs) of `reads`, so
    that every timed run finds the network traced, exported and compiled in the cache, as every
    run after a machine's first does (the first takes about 1.5 s more on 2 cores, 4 s on an H200).
    That is two whole batches and a quarter of one: on an accelerator the model's calls take
    three shapes by their number of pairs (model.call_size), and whole batches bring about 150
    pairs (a 256-pair call), a short last batch fewer (64)."""
    import tempfile

    records = 9000 if len(reads) == 1 else 4500
    with tempfile.TemporaryDirectory() as tmp:
        heads = [head_fastq(path, records, os.path.join(tmp, f"head{k}.fq")) for k, path in enumerate(reads)]
        subprocess.run([sys.executable, "-m", "neuromap", "align", "--quiet", genome, *heads], check=True,
                       stdout=subprocess.DEVNULL, env={**os.environ, **(env or {})})


def version_of(cmd: list[str]) -> str:
    try:
        return subprocess.run(cmd, capture_output=True, text=True).stdout.strip().splitlines()[0]
    except (OSError, IndexError):
        return "?"


def cpu_model() -> str:
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "?"


def common_args(ap: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Options every alignment benchmark takes."""
    ap.add_argument("--size", type=int, default=5_000_000, help="genome size (bp)")
    ap.add_argument("--length", type=int, default=150, help="read length")
    ap.add_argument("--threads", type=int, default=2, help="threads of every tool")
    ap.add_argument("--seed", type=int, default=42, help="seed of the genome (reads use seed + 1 or + 2)")
    ap.add_argument("--workdir", default=os.path.join(HERE, "work"))
    ap.add_argument("--no-network", action="store_true", help="skip the network run (seeds + DP vs the others only)")
    ap.add_argument("--plot", help="write the mapeval/calibration plot of all runs to this PNG")
    ap.add_argument("--weights", metavar="DIR", help="model of the network run (neuromap align --weights; default: the shipped one)")
    ap.add_argument("--bf16", action="store_true", help="add a network run in bfloat16 (NEUROMAP_COMPUTE_DTYPE=bfloat16)")
    ap.add_argument("--processes", action="store_true", help="add neuromap runs with worker processes (align --processes)")
    ap.add_argument("--prepare-only", action="store_true", help="write the genome and reads into --workdir, then stop")
    ap.add_argument("--reuse-data", action="store_true",
                    help="take the genome and reads already in --workdir (from --prepare-only with the same options)")
    ap.add_argument("--gzip", action="store_true", help="every tool reads the reads gzipped (gzip -6), as sequencers deliver them")
    return ap


def gzipped(path: str, wanted: bool) -> str:
    """`path`, or with `wanted` a gzip -6 copy of it (path + '.gz', made afresh)."""
    if not wanted:
        return path
    with open(path, "rb") as src, open(path + ".gz", "wb") as out:
        subprocess.run(["gzip", "-6", "-c"], stdin=src, stdout=out, check=True)
    return path + ".gz"


def network_options(args) -> list[str]:
    return ["--weights", args.weights] if args.weights else []


def with_process_rows(runs: list, args) -> list:
    """With --processes, each neuromap run with threads (`align --no-processes`: from -t 8 up
    processes are the default), then again with `align --processes`, after it."""
    if not args.processes:
        return runs
    out = []
    for name, cmd, sam, *rest in runs:
        if not name.startswith("neuromap"):
            out.append((name, cmd, sam, *rest))
            continue
        out.append((name, [*cmd[:4], "--no-processes", *cmd[4:]], sam, *rest))
        if "bf16" not in name:
            out.append((f"{name}, --processes", [*cmd[:4], "--processes", *cmd[4:]], sam.replace(".sam", "-processes.sam"), *rest))
    return out


def compile_package() -> None:
    """Byte-compile neuromap's modules if they are not (as `pip install` does, and Python on the
    first import unless PYTHONDONTWRITEBYTECODE is set): otherwise every process of every timed run
    compiles them again, about 80 ms of a run's start on 2 cores, which no installed copy pays."""
    import compileall

    import neuromap

    compileall.compile_dir(os.path.dirname(neuromap.__file__), quiet=1)


def machine_lines() -> str:
    """The date and machine lines every benchmark report starts with."""
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return (f"- date: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}\n"
            f"- machine: {cpu_model()}, {os.cpu_count()} cores, {memory:.0f} GiB, {platform.platform()}")


def main() -> None:
    ap = common_args(argparse.ArgumentParser(description=__doc__.splitlines()[0]))
    ap.add_argument("--reads", type=int, default=100_000)
    args = ap.parse_args()
    compile_package()
    if not shutil.which("minimap2"):
        sys.exit("minimap2 not found on PATH (Debian: apt-get install minimap2)")
    os.makedirs(args.workdir, exist_ok=True)
    w = lambda name: os.path.join(args.workdir, name)  # noqa: E731
    neuromap = [sys.executable, "-m", "neuromap"]

    if not args.reuse_data:
        write_fasta(w("genome.fa"), synthetic_genome(args.size, args.seed))
        subprocess.run([*neuromap, "simulate", w("genome.fa"), "-n", str(args.reads), "-l", str(args.length),
                        "--seed", str(args.seed + 1), "--snp-rate", "0.001", "--indel-rate", "0.0001",
                        "-o", w("reads.fq"), "--truth", w("truth.tsv")], check=True, capture_output=True)
    if args.prepare_only:
        return
    # Both indexes are built (and timed) afresh.
    shutil.rmtree(w("genome.fa.nmi"), ignore_errors=True)
    if os.path.exists(w("genome.mmi")):
        os.remove(w("genome.mmi"))

    rows = []
    reads = gzipped(w("reads.fq"), args.gzip)
    t_idx_nm, rss_idx_nm = run_measured([*neuromap, "index", w("genome.fa")])
    t_idx_mm, rss_idx_mm = run_measured(["minimap2", "-x", "sr", "-d", w("genome.mmi"), w("genome.fa")])
    runs = [
        ("neuromap (network)", [*neuromap, "align", "-t", str(args.threads), *network_options(args), w("genome.fa"), reads], "neuromap.sam", t_idx_nm),
        ("neuromap --no-neural", [*neuromap, "align", "--no-neural", "-t", str(args.threads), w("genome.fa"), reads], "neuromap-no-neural.sam", t_idx_nm),
        ("minimap2 -x sr", ["minimap2", "-t", str(args.threads), "-ax", "sr", w("genome.mmi"), reads], "minimap2.sam", t_idx_mm),
    ]
    if args.bf16:
        runs.insert(1, ("neuromap (network, bf16)", runs[0][1], "neuromap-bf16.sam", t_idx_nm))
    if args.no_network:
        runs = [run for run in runs if "network" not in run[0]]
    runs = with_process_rows(runs, args)
    if not args.no_network:
        warm_up(w("genome.fa"), w("reads.fq"))
        if args.bf16:
            warm_up(w("genome.fa"), w("reads.fq"), env=BF16)
    measured = []
    for name, cmd, out, t_idx in runs:
        t, rss = run_measured(cmd, w(out), env=BF16 if "bf16" in name else None)
        measured.append((name, t, rss, t_idx, evaluate(w("truth.tsv"), w(out))))
    t_mm = measured[-1][1]
    for name, t, rss, t_idx, ev in measured:
        wrong = {r["mapq"]: r["wrong"] for r in ev["thresholds"]}
        rows.append((name, args.reads / t, t_mm / t, rss, t_idx, ev["correct_pct"], wrong[60], wrong[30], wrong[10], ev["brier"]))

    import jax

    print("# Single-end benchmark\n")
    print(machine_lines())
    print(f"- versions: neuromap {__version__}, Python {platform.python_version()}, minimap2 {version_of(['minimap2', '--version'])}, "
          f"JAX {jax.__version__} on {jax.default_backend()} ({jax.devices()[0].device_kind})")
    print(f"- data: {args.size:,} bp synthetic genome with repeats (seed {args.seed}), {args.reads:,} x {args.length} bp "
          f"single-end reads{' (gzip -6)' if args.gzip else ''}, 1 % sequencing error, SNP rate 0.001, indel rate 0.0001")
    print(f"- threads: {args.threads} for both tools; wall-clock times include start-up and index loading; {WARM_NOTE}\n")
    print("| tool | reads/s | ratio to minimap2 | peak RSS (MB) | index build (s) | correct % | wrong at MAPQ>=60 | >=30 | >=10 | Brier |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for name, rps, ratio, rss, t_idx, correct, w60, w30, w10, brier in rows:
        print(f"| {name} | {rps:,.0f} | {ratio:.2f} | {rss} | {t_idx:.2f} | {correct:.3f} | {w60} | {w30} | {w10} | {brier:.5f} |")
    print(f"\nindex build: neuromap/minimap2 time ratio {t_idx_nm / t_idx_mm:.1f}; "
          f"peak RSS while indexing: neuromap {rss_idx_nm} MB, minimap2 {rss_idx_mm} MB\n")
    print_reports([(m[0], m[4]) for m in measured], args.plot)


def print_reports(evaluations: list, plot_path: str | None) -> None:
    """Each tool's mapeval/calibration tables (`evaluations`: (name, evaluation) pairs) and, when
    asked, the plot of all of them."""
    for name, ev in evaluations:
        print(f"## {name}\n\n```\n{format_report(ev)}```\n")
    if plot_path:
        plot([ev for _, ev in evaluations], plot_path)
        print(f"calibration plot: {os.path.relpath(plot_path, os.path.dirname(HERE))}")


if __name__ == "__main__":
    main()
