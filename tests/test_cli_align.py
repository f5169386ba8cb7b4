import gzip
import json
import os
import signal
import subprocess
import sys
import threading
import time

import pysam
import pytest

from neuromap.io.fastx import read_fastx
from neuromap.io.sam import reverse_complement

from conftest import assert_clean_error, descendants, pids_whose_args, run_cli, worker_pids


def records(sam_text):
    return [l.split("\t") for l in sam_text.splitlines() if l and not l.startswith("@")]


def test_sorted_indexed_bam_is_accurate(data_dir, tmp_path):
    out = tmp_path / "out.bam"
    res = run_cli(["align", "-t", "2", data_dir / "ref.fa", data_dir / "reads.fq", "-o", out])
    assert res.returncode == 0, res.stderr
    assert out.exists() and (tmp_path / "out.bam.bai").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.bam", "out.bam.bai"]  # no leftovers
    pysam.quickcheck(str(out))  # samtools quickcheck: header, EOF block; raises when broken
    with pysam.AlignmentFile(str(out)) as bam:
        assert bam.header["HD"]["SO"] == "coordinate"
        assert [sq["SN"] for sq in bam.header["SQ"]] == ["chr1", "chr2", "plasmid"]
        recs = list(bam)
        assert bam.count(contig="plasmid") > 0  # the .bai works
    assert len(recs) == 3000
    starts = [(r.reference_id, r.reference_start) for r in recs if not r.is_unmapped]
    assert starts == sorted(starts)
    ev = run_cli(["evaluate", "--json", "--truth", data_dir / "truth.tsv", out])
    assert ev.returncode == 0, ev.stderr
    report = json.loads(ev.stdout)
    assert report["correct_pct"] > 98.5
    mapq30 = next(r for r in report["thresholds"] if r["mapq"] == 30)
    assert mapq30["wrong"] == 0 and mapq30["mapped"] > 2900
    # Reads from the planted identical repeat are ambiguous: low MAPQ, not zero-information.
    assert report["calibration"][1]["reads"] > 0  # MAPQ 1-9 bin is populated


def test_sam_on_stdout_header_tags_and_strands(data_dir):
    rg = r"@RG\tID:sample1\tSM:NA1\tPL:ILLUMINA"
    res = run_cli(["align", data_dir / "ref.fa", data_dir / "reads.fq", "-R", rg])
    assert res.returncode == 0, res.stderr
    lines = res.stdout.splitlines()
    header = [l for l in lines if l.startswith("@")]
    assert header[0] == "@HD\tVN:1.6\tSO:unsorted"
    assert header[1].startswith("@SQ\tSN:chr1\tLN:220000\tM5:")
    assert "@RG\tID:sample1\tSM:NA1\tPL:ILLUMINA" in header
    pg = [l for l in header if l.startswith("@PG")][0]
    assert "ID:neuromap" in pg and "CL:neuromap align" in pg and "-R" in pg
    given = {r.name: r for r in read_fastx(str(data_dir / "reads.fq"))}
    recs = records(res.stdout)
    assert [r[0] for r in recs] == list(given)  # every read, once, in input order
    n_rev = 0
    for r in recs:
        flag, seq, qual = int(r[1]), r[9], r[10]
        tags = dict(t.split(":", 1) for t in r[11:])
        assert tags["RG"] == "Z:sample1"
        if flag & 16:
            n_rev += 1
            assert seq == reverse_complement(given[r[0]].seq) and qual == given[r[0]].qual[::-1]
        else:
            assert seq == given[r[0]].seq and qual == given[r[0]].qual
        if not flag & 4:
            assert {"NM", "MD", "AS"} <= set(tags)
            assert 0 <= int(r[4]) <= 60
    assert 1200 < n_rev < 1800
    mapqs = {int(r[4]) for r in recs}
    assert len(mapqs) > 2  # MAPQ is computed, not constant


def test_odd_but_valid_reads_are_kept(data_dir, tmp_path):
    ref = {r.name: r.seq for r in read_fastx(str(data_dir / "ref.fa"))}
    chr1 = ref["chr1"].upper()
    reads = [
        ("lower", chr1[1000:1150].lower()),
        ("allN", "N" * 150),
        ("short", chr1[2000:2015]),
        ("miseq250", chr1[5000:5250]),
        ("miseq300", reverse_complement(chr1[8000:8300])),
        ("dup", chr1[12000:12150]),
        ("dup", chr1[13000:13150]),
        ("empty", ""),
    ]
    fq = tmp_path / "odd.fq"
    fq.write_text("".join(f"@{n}\n{s}\n+\n{'I' * len(s)}\n" for n, s in reads))
    res = run_cli(["align", data_dir / "ref.fa", fq])
    assert res.returncode == 0, res.stderr
    recs = records(res.stdout)
    assert [r[0] for r in recs] == [n for n, _ in reads]
    assert recs[0][9] == reads[0][1] and recs[0][3] == "1001" and recs[0][5] == "150M"
    assert int(recs[1][1]) & 4 and recs[1][9] == "N" * 150
    assert int(recs[2][1]) & 4  # shorter than k: kept, unmapped
    assert recs[3][3] == "5001" and recs[3][5] == "250M"
    assert recs[4][3] == "8001" and recs[4][5] == "300M" and int(recs[4][1]) & 16
    assert recs[5][3] == "12001" and recs[6][3] == "13001"
    assert int(recs[7][1]) & 4 and recs[7][9] == "*"


def test_empty_input_gives_header_only(data_dir, tmp_path):
    empty = tmp_path / "empty.fq"
    empty.write_text("")
    res = run_cli(["align", data_dir / "ref.fa", empty])
    assert res.returncode == 0
    assert res.stdout and all(l.startswith("@") for l in res.stdout.splitlines())
    out = tmp_path / "e.bam"
    assert run_cli(["align", data_dir / "ref.fa", empty, "-o", out]).returncode == 0
    with pysam.AlignmentFile(str(out)) as bam:
        assert list(bam) == []


def test_stdin_and_gzip_input_give_the_same_records(data_dir, tmp_path):
    raw = (data_dir / "reads.fq").read_bytes()[:200_000]
    raw = raw[: raw.rfind(b"\n@") + 1]
    gz = tmp_path / "r.fq.gz"
    gz.write_bytes(gzip.compress(raw))
    a = run_cli(["align", data_dir / "ref.fa", gz])
    b = subprocess.run([sys.executable, "-m", "neuromap", "align", str(data_dir / "ref.fa"), "-"], input=raw, capture_output=True)
    assert a.returncode == 0 and b.returncode == 0
    assert records(a.stdout) == records(b.stdout.decode())


def test_gzip_on_stdin_and_multi_member_gzip(data_dir, tmp_path):
    """gzip through a pipe (decompressed as read) and a file of several gzip members, as
    concatenated .fq.gz files are (decompressed by a thread of its own): the same records."""
    raw = (data_dir / "reads.fq").read_bytes()
    cut = raw.find(b"\n@", len(raw) // 2) + 1
    multi = tmp_path / "multi.fq.gz"
    multi.write_bytes(gzip.compress(raw[:cut]) + gzip.compress(raw[cut:]))
    a = run_cli(["align", "--no-neural", data_dir / "ref.fa", data_dir / "reads.fq"])
    b = run_cli(["align", "--no-neural", data_dir / "ref.fa", multi])
    c = subprocess.run([sys.executable, "-m", "neuromap", "align", "--no-neural", str(data_dir / "ref.fa"), "-"],
                       input=gzip.compress(raw), capture_output=True)
    assert a.returncode == b.returncode == c.returncode == 0, (b.stderr, c.stderr)
    assert records(a.stdout) == records(b.stdout) == records(c.stdout.decode())
    assert len(records(a.stdout)) == 3000


@pytest.mark.parametrize("neural", [True, False])
def test_output_is_identical_whatever_the_thread_count(data_dir, neural):
    outs = []
    for workers in (["-t", "1"], ["-t", "2"], ["-t", "3"], ["-t", "2", "--processes"]):
        res = run_cli(["align", *([] if neural else ["--no-neural"]), *workers, "-K", "700", data_dir / "ref.fa", data_dir / "reads.fq"])
        assert res.returncode == 0, res.stderr
        outs.append("\n".join(l for l in res.stdout.splitlines() if not l.startswith("@PG")))
    assert outs[0] == outs[1] == outs[2] == outs[3]


def _odd_fastq(data_dir, kind: str) -> bytes:
    """test-data's 3,000 reads, made odd (valid or not) in a way a reader must get right."""
    raw = (data_dir / "reads.fq").read_bytes()
    lines = raw.split(b"\n")[:-1]
    if kind == "crlf":
        return b"".join(line + b"\r\n" for line in lines)
    if kind == "blank-line-late":  # a blank line between records 1,700 and 1,701
        return b"\n".join(lines[: 4 * 1700] + [b""] + lines[4 * 1700 :]) + b"\n"
    if kind == "trailing-blanks":
        return raw + b"\n\n"
    if kind == "unterminated":
        return raw[:-1]
    if kind == "lowercase-n-comments":
        lines[4 * 1200] += b" BC:Z:ACGT extra"
        lines[4 * 1200 + 1] = lines[4 * 1200 + 1].lower()
        lines[4 * 2100 + 1] = b"N" * len(lines[4 * 2100 + 1])
        return b"\n".join(lines) + b"\n"
    if kind == "bad-base-late":
        lines[4 * 1234 + 1] = lines[4 * 1234 + 1][:50] + b"1" + lines[4 * 1234 + 1][51:]
        return b"\n".join(lines) + b"\n"
    if kind == "bad-length-late":
        lines[4 * 2345 + 3] = lines[4 * 2345 + 3][:-1]
        return b"\n".join(lines) + b"\n"
    if kind == "truncated":
        return b"\n".join(lines[:-2]) + b"\n"
    if kind == "fasta":
        return b"".join(b">" + lines[i][1:] + b"\n" + lines[i + 1] + b"\n" for i in range(0, len(lines), 4))
    if kind == "no-plus-late":
        lines[4 * 999 + 2] = b"-"
        return b"\n".join(lines) + b"\n"
    raise ValueError(kind)


@pytest.mark.parametrize("kind", ["fasta", "crlf", "blank-line-late", "trailing-blanks", "unterminated", "lowercase-n-comments",
                                  "bad-base-late", "bad-length-late", "truncated", "no-plus-late"])
@pytest.mark.parametrize("gz", [False, True])
def test_processes_read_odd_input_as_one_process_does(data_dir, tmp_path, kind, gz):
    """The workers parse single-end FASTQ themselves (the calling thread only cuts it into
    batches): every odd but valid input gives the reads that the record-by-record reader
    (read_fastx) gives, the same SAM with one worker and with worker processes, and every bad one
    the reader's one-line error (file, record, line), whichever batch it is in."""
    from neuromap.errors import NeuromapError
    from neuromap.io.fastx import read_fastx

    data = _odd_fastq(data_dir, kind)
    reads = tmp_path / ("reads.fq.gz" if gz else "reads.fq")
    reads.write_bytes(gzip.compress(data) if gz else data)
    try:
        expected = [r.name for r in read_fastx(str(reads))]
    except NeuromapError as exc:
        expected = f"neuromap: error: {exc}"
    runs = [run_cli(["align", "--no-neural", *workers, "-K", "500", data_dir / "ref.fa", reads]) for workers in (["-t", "1"], ["-t", "2", "--processes"])]
    one, processes = runs
    assert one.returncode == processes.returncode
    if one.returncode == 0:
        assert records(one.stdout) == records(processes.stdout) and len(records(one.stdout)) == 3000 - (kind == "truncated")
        assert [fields[0] for fields in records(one.stdout)] == expected
    else:
        assert kind.startswith(("bad", "truncated", "no-plus"))
        assert_clean_error(processes, "reads.fq")
        error = [line for line in processes.stderr.splitlines() if line.startswith("neuromap: error:")]
        assert error == [line for line in one.stderr.splitlines() if line.startswith("neuromap: error:")] == [expected]


@pytest.mark.parametrize("mates", [False, True])
def test_processes_bad_files_leave_no_output(data_dir, tmp_path, mates):
    """--processes reads its input in its own way (fastq_batches, fastq_pair_batches): a truncated
    gzip stream or a missing file is the same one-line error, and -o is not written."""
    cut = tmp_path / "cut.fq.gz"
    cut.write_bytes(gzip.compress((data_dir / "reads.fq").read_bytes())[:150_000])
    out = tmp_path / "out.bam"
    for bad, needle in ((cut, "corrupt or truncated gzip"), (tmp_path / "nope.fq", "no such file")):
        files = [bad, data_dir / "reads_2.fq"] if mates else [bad]
        res = run_cli(["align", "-t", "2", "--processes", "-o", out, data_dir / "ref.fa", *files])
        assert_clean_error(res, bad.name, needle)
        assert sorted(p.name for p in tmp_path.iterdir()) == ["cut.fq.gz"]


def test_sam_output_file(data_dir, tmp_path):
    out = tmp_path / "out.sam"
    res = run_cli(["align", data_dir / "ref.fa", data_dir / "reads.fq", "-o", out])
    assert res.returncode == 0 and res.stdout == ""
    assert len(records(out.read_text())) == 3000


@pytest.mark.parametrize(
    "content, needle",
    [
        ("@r1\nACGT\n+\nIII\n", "sequence length 4 != quality length 3"),
        ("@r1\nACGT\n+\nIIII\n@r2\nACG", "record 2 ('r2'): truncated"),
        ("not a fastq\n", "not FASTQ or FASTA"),
        (b"\x1f\x8b\x08\x00garbage-after-gzip-magic", "gzip"),
    ],
)
def test_bad_reads_leave_no_output(data_dir, tmp_path, content, needle):
    bad = tmp_path / "bad.fq"
    bad.write_bytes(content if isinstance(content, bytes) else content.encode())
    out = tmp_path / "out.bam"
    res = run_cli(["align", data_dir / "ref.fa", bad, "-o", out])
    assert_clean_error(res, "bad.fq", needle)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.fq"]
    res = run_cli(["align", data_dir / "ref.fa", bad])
    assert_clean_error(res, "bad.fq")
    assert res.stdout == ""


def test_missing_inputs_and_bad_output_dir(data_dir, tmp_path):
    assert_clean_error(run_cli(["align", data_dir / "ref.fa", tmp_path / "nope.fq"]), "nope.fq", "no such file")
    assert_clean_error(run_cli(["align", tmp_path / "nope.fa", data_dir / "reads.fq"]), "nope.fa", "no such file")
    assert_clean_error(
        run_cli(["align", data_dir / "ref.fa", data_dir / "reads.fq", "-o", tmp_path / "no" / "dir.bam"]),
        "does not exist",
    )
    assert_clean_error(run_cli(["align", data_dir / "ref.fa", data_dir / "reads.fq", "-R", "ID:x"]), "@RG")


@pytest.mark.parametrize("delay", [0.0, 0.5])
def test_ending_while_the_model_loads_is_a_normal_exit(delay):
    """A run that ends (an error, a closed pipe) while the model still loads in the background
    waits for the load and ends with its own status. Before, Python stopped the loading thread
    inside JAX's C++ code and the process could abort ("FATAL: exception not rethrown", status
    134): `| head` on `align --processes` hit it about once in 30 runs, through the model server's
    threads. An exit handler registered before neuromap's runs after it, and sees the thread."""
    code = ("import atexit, threading, time\n"
            "atexit.register(lambda: print('alive' if any(t.name == 'neuromap-load-model' for t in threading.enumerate()) else 'settled'))\n"
            f"import neuromap.model as m\nm.preload()\ntime.sleep({delay})\nraise SystemExit(3)\n")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert res.returncode == 3 and "FATAL" not in res.stderr and "terminate called" not in res.stderr, res.stderr
    assert res.stdout == "settled\n"


@pytest.mark.parametrize("workers", ["-t 1", "-t 2", "-t 2 --processes", "-t 2 --processes -K 4000"])
def test_closed_pipe_ends_quietly(data_dir, workers):
    """`| head` ends the run at once, silently (status 141, as SIGPIPE gives C tools), and leaves no
    worker process behind (each run has a process group of its own here). With -K 4000 the SAM is
    one write of about 1 MB, which the closed pipe cuts short without an error: it is still
    status 141, not a run reported complete (status 0 and the summary, before)."""
    batch = "" if "-K" in workers else "-K 500"
    cmd = (f"{sys.executable} -m neuromap align {workers} {batch} {data_dir / 'ref.fa'} {data_dir / 'reads.fq'} | head -n 5; "
           "echo status ${PIPESTATUS[0]} >&2")
    proc = subprocess.Popen(["bash", "-c", cmd], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    out, err = proc.communicate(timeout=120)
    assert len(out.splitlines()) == 5, (out, err)
    assert err == "status 141\n", err
    deadline = time.time() + 10
    while time.time() < deadline:
        try:
            os.killpg(proc.pid, 0)  # anything left in the group?
        except ProcessLookupError:
            break
        time.sleep(0.2)
    else:
        pytest.fail("processes of the run are still alive after it ended")


@pytest.mark.parametrize("case", ["missing reads", "bad read group", "bad output folder"])
def test_an_early_error_ends_the_started_network_process(data_dir, tmp_path, case):
    """With worker processes and the network, the network's process is started first thing; a run
    that then fails its checks says so in one line at once and leaves nothing running."""
    args = {"missing reads": [data_dir / "ref.fa", tmp_path / "none.fq"],
            "bad read group": ["-R", "ID:x", data_dir / "ref.fa", data_dir / "reads.fq"],
            "bad output folder": ["-o", tmp_path / "no" / "out.bam", data_dir / "ref.fa", data_dir / "reads.fq"]}[case]
    started = time.time()
    proc = subprocess.Popen([sys.executable, "-m", "neuromap", "align", "-t", "8", *map(str, args)],  # -t 8: processes by default
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 1 and out == "" and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1 and err.startswith("neuromap: error:"), err
    assert time.time() - started < 10
    deadline = time.time() + 10
    while time.time() < deadline:
        try:
            os.killpg(proc.pid, 0)
        except ProcessLookupError:
            break
        time.sleep(0.2)
    else:
        pytest.fail("the network's process outlived the run")


@pytest.mark.parametrize("threads", ["1", "2", "2 --processes"])
@pytest.mark.parametrize("sig, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_interrupt_leaves_no_partial_output(data_dir, tmp_path, sig, code, threads):
    out = tmp_path / "out.bam"
    proc = subprocess.Popen(
        [sys.executable, "-m", "neuromap", "align", "-t", *threads.split(), "-K", "500", str(data_dir / "ref.fa"), "-", "-o", str(out)],
        stdin=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True,
    )
    proc.stdin.write((data_dir / "reads.fq").read_bytes())  # then keep stdin open: still running
    proc.stdin.flush()
    deadline = time.time() + 30
    while time.time() < deadline and not any(".tmp-" in p.name for p in tmp_path.iterdir()):
        time.sleep(0.05)
    time.sleep(0.5)
    os.killpg(proc.pid, sig)  # like Ctrl-C: the whole process group, workers too
    assert proc.wait(timeout=30) == code
    assert list(tmp_path.iterdir()) == []
    err = proc.stderr.read()
    assert b"Traceback" not in err, err
    assert err.strip().splitlines()[-1] in (b"neuromap: interrupted", b"neuromap: terminated")


def test_workers_end_when_the_main_process_is_killed(data_dir, tmp_path):
    """SIGKILL (or the OOM killer) ends the main process of `--processes` with no clean-up: its
    worker processes notice within a second and end too, instead of waiting for work forever."""
    many = tmp_path / "many.fq"
    many.write_bytes((data_dir / "reads.fq").read_bytes() * 20)  # 60,000 reads: the workers are busy when it is killed
    proc = subprocess.Popen(
        [sys.executable, "-m", "neuromap", "align", "-t", "2", "--processes", "-K", "500", str(data_dir / "ref.fa"), str(many)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )
    deadline = time.time() + 60
    while time.time() < deadline and not worker_pids(proc.pid):
        time.sleep(0.1)
    assert worker_pids(proc.pid), "no worker process started"
    workers = list(descendants(proc.pid))  # the workers, their fork server and the network's process
    time.sleep(1)
    proc.kill()
    proc.wait(timeout=10)

    def running(pid: int) -> bool:
        try:
            with open(f"/proc/{pid}/stat") as fh:
                return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
        except OSError:
            return False

    deadline = time.time() + 10
    while time.time() < deadline and any(map(running, workers)):
        time.sleep(0.2)
    alive = [pid for pid in workers if running(pid)]
    for pid in alive:
        os.kill(pid, signal.SIGKILL)
    assert not alive, "worker processes outlived the main process"


def model_processes_of(pid: int) -> list[int]:
    """The network's processes started by the `align` run `pid` (their command line names it as
    the parent they end with: model_process.ModelServer), wherever they now hang."""
    return pids_whose_args(lambda args: any("neuromap.model_process import main" in arg for arg in args) and str(pid) in args)


def test_processes_end_with_complete_output_and_leave_nothing(data_dir, tmp_path):
    """`align --processes` with the network ends once its output is complete: it does not wait
    for the network's process to end (on a GPU, the device's teardown), which ends by itself, and
    it skips the interpreter's teardown after its exit functions. The SAM is whole and the same
    as with threads, stderr holds the summary alone (no leaked semaphore or shared memory
    reported), and nothing of the run is left behind a moment later."""
    reads = [data_dir / "ref.fa", data_dir / "reads_1.fq", data_dir / "reads_2.fq"]
    threads = run_cli(["align", "-t", "2", "--no-processes", *reads])
    assert threads.returncode == 0, threads.stderr
    proc = subprocess.Popen([sys.executable, "-m", "neuromap", "align", "-t", "2", "--processes", *map(str, reads)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    body = lambda text: [l for l in text.splitlines() if not l.startswith("@PG")]  # noqa: E731
    assert body(out) == body(threads.stdout)
    assert [l for l in err.splitlines() if not l.startswith("neuromap: ")] == [], err
    deadline = time.time() + 20
    while model_processes_of(proc.pid) and time.time() < deadline:
        time.sleep(0.2)
    assert not model_processes_of(proc.pid), "the network's process outlived the run"


def test_preloading_the_kept_programs_writes_the_same_records(data_dir, tmp_path):
    """NEUROMAP_PRELOAD_PROGRAMS=1 (the default on an accelerator) loads the compiled calls that
    earlier runs kept with the model, before the workers ask: the same records as without; a
    value other than 0 or 1 is a clean error."""
    reads = [data_dir / "ref.fa", data_dir / "reads_1.fq", data_dir / "reads_2.fq"]
    runs = {}
    for setting in ("0", "1", "1"):  # the second "1" finds the programs the first kept
        res = run_cli(["align", "-t", "2", "--processes", *reads], env={**os.environ, "NEUROMAP_PRELOAD_PROGRAMS": setting,
                                                                         "NEUROMAP_JAX_CACHE": str(tmp_path / "cache")})
        assert res.returncode == 0, res.stderr
        runs.setdefault(setting, []).append([l for l in res.stdout.splitlines() if not l.startswith("@PG")])
    assert runs["1"][0] == runs["1"][1] == runs["0"][0]
    res = run_cli(["align", "-t", "2", "--processes", *reads], env={**os.environ, "NEUROMAP_PRELOAD_PROGRAMS": "yes"})
    assert_clean_error(res, "NEUROMAP_PRELOAD_PROGRAMS='yes'")
    assert res.stdout == ""


def test_worker_processes_import_the_commands_neuromap_whatever_the_folder(data_dir, tmp_path):
    """The workers of `align --processes` import the neuromap the command runs, not one in the
    folder the command runs from (multiprocessing's fork server is `python -c`, which would put
    that folder first on its path: threads.this_path_for_children). An installed `neuromap
    align -t 8` run from its own source checkout, whose neuromap/ has no compiled kernels,
    failed that way."""
    (tmp_path / "neuromap").mkdir()
    (tmp_path / "neuromap" / "__init__.py").write_text("# not the neuromap the command runs: a package of nothing\n")
    args = ["align", "-t", "2", "--processes", "--no-neural", str(data_dir / "ref.fa"), str(data_dir / "reads.fq")]
    # As the console script starts: the command's own folder first on its path, not this one
    # (`python -c`, and this folder taken off again).
    command = [sys.executable, "-c", "import sys; sys.path.pop(0); from neuromap.cli import main; main()"]
    here = subprocess.run([*command, *args], cwd=tmp_path, capture_output=True, text=True)
    assert here.returncode == 0, here.stderr
    body = lambda text: [l for l in text.splitlines() if not l.startswith("@PG")]  # noqa: E731
    assert body(here.stdout) == body(run_cli(args).stdout)


def test_worker_processes_load_no_jax(data_dir):
    """With --processes the network runs in one process of its own: the workers, which map
    batches with the network on, have no JAX library in memory (on a GPU, each would hold a CUDA
    context and about 1 GB more), nor has the main process, which only reads and writes."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "neuromap", "align", "-t", "2", "--processes", "-K", "500", str(data_dir / "ref.fa"), "-"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, start_new_session=True,
    )
    try:
        # About 3 MB (input is read in 1 MB blocks), then stdin stays open: still running. Written
        # from a thread, since the output must be read meanwhile.
        def feed():
            try:
                proc.stdin.write((data_dir / "reads.fq").read_bytes() * 3)
                proc.stdin.flush()
            except BrokenPipeError:  # the run was killed (below) before it read everything
                pass

        threading.Thread(target=feed, daemon=True).start()
        mapped, deadline = b"", time.time() + 120
        while mapped.count(b"\n") < 1000 and time.time() < deadline:  # records out: the network has run
            mapped += proc.stdout.read1(1 << 16)
        assert mapped.count(b"\n") >= 1000

        def has_jax(pid: int) -> bool:
            with open(f"/proc/{pid}/maps") as fh:
                return "jaxlib" in fh.read()

        workers = worker_pids(proc.pid)
        assert len(workers) == 2 and not any(map(has_jax, workers)) and not has_jax(proc.pid)
        # The network's process holds JAX; the others (the fork server the workers were forked
        # from, multiprocessing's resource tracker) do not.
        tree = descendants(proc.pid)
        assert [tree[pid] for pid in tree if has_jax(pid)] == [proc.pid]
        assert not has_jax(tree[workers[0]])
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)


def test_fasta_reads_and_identical_repeat(data_dir, tmp_path):
    ref = {r.name: r.seq.upper() for r in read_fastx(str(data_dir / "ref.fa"))}
    # chr1:40000-41500 and chr2:20000-21500 are identical copies (test-data/make_test_data.py).
    assert ref["chr1"][40_000:41_500] == ref["chr2"][20_000:21_500]
    fa = tmp_path / "reads.fa"
    # edge1/edge2 lie 4 and 3 bases inside the copies' ends: their windows' flanks differ between
    # the copies, the bases they cover do not, and the network must not tell the copies apart.
    fa.write_text(f">rep1\n{ref['chr1'][40_100:40_250]}\n>rep2\n{ref['chr2'][20_700:20_850]}\n>uniq\n{ref['chr1'][60_000:60_150]}\n"
                  f">edge1\n{ref['chr1'][40_004:40_154]}\n>edge2\n{ref['chr2'][21_347:21_497]}\n")
    runs = [run_cli(["align", data_dir / "ref.fa", fa]) for _ in range(2)]
    assert runs[0].returncode == 0 and records(runs[0].stdout) == records(runs[1].stdout)
    recs = records(runs[0].stdout)
    for rec in recs:
        assert rec[10] == "*"  # FASTA reads have no qualities
    rep1, rep2, uniq, edge1, edge2 = recs
    for rec in (rep1, rep2, edge1, edge2):
        assert rec[4] == "3" and "pc:f:0.5" in rec  # P(correct) = 1/2
    assert (rep1[2], int(rep1[3]) - 1) in (("chr1", 40_100), ("chr2", 20_100))
    assert "XS:i:150" in rep1 and "AS:i:150" in rep1
    assert uniq[4] == "60" and "XS" not in " ".join(uniq)


@pytest.mark.parametrize("neural", [[], ["--no-neural"]])
def test_batches_without_any_candidate(data_dir, tmp_path, neural):
    fq = tmp_path / "n.fq"
    fq.write_text("@n1\nNNNNNNNNNNNNNNNNNNNNNNNNNNNNNN\n+\nIIIIIIIIIIIIIIIIIIIIIIIIIIIIII\n@s1\nACGTAC\n+\nIIIIII\n")
    res = run_cli(["align", *neural, data_dir / "ref.fa", fq])
    assert res.returncode == 0, res.stderr
    recs = records(res.stdout)
    assert [r[0] for r in recs] == ["n1", "s1"] and all(int(r[1]) & 4 for r in recs)


def test_summary_stats_json_and_progress(data_dir, tmp_path):
    stats = tmp_path / "run.json"
    res = run_cli(["align", "--no-neural", data_dir / "ref.fa", data_dir / "reads.fq", "-o", tmp_path / "o.bam", "--stats", stats])
    assert res.returncode == 0, res.stderr
    figures = json.loads(stats.read_text())
    assert figures["reads"] == 3000 and figures["bases"] == 450_000
    assert figures["mapped"] + figures["unmapped"] == 3000 and figures["mapped_pct"] > 99
    assert 90 < figures["mapq30_pct"] <= figures["mapped_pct"]
    assert figures["placement"] == "seeds+DP" and figures["reads_per_second"] > 0
    assert "3000 reads" in res.stderr.strip().splitlines()[-1]
    assert "aligning" not in res.stderr  # stderr is not a terminal: no bar
    quiet = run_cli(["align", "--no-neural", "--quiet", data_dir / "ref.fa", data_dir / "reads.fq", "-o", tmp_path / "q.bam"])
    assert quiet.returncode == 0 and quiet.stderr == ""
    forced = run_cli(["align", "--no-neural", "--progress", data_dir / "ref.fa", data_dir / "reads.fq", "-o", tmp_path / "p.bam"])
    assert "aligning" in forced.stderr and "reads" in forced.stderr
    assert_clean_error(run_cli(["align", data_dir / "ref.fa", data_dir / "reads.fq", "--stats", tmp_path / "no" / "s.json"]), "does not exist")


@pytest.mark.parametrize("options, workers", [(["-t", "2"], "2 threads"), (["-t", "2", "--processes"], "2 processes"),
                                              (["-t", "8"], "8 processes"), (["-t", "8", "--no-processes"], "8 threads")])
def test_many_workers_are_processes_unless_told(data_dir, tmp_path, options, workers):
    """From -t 8 up the workers are processes by default (threads share the GIL); --no-processes
    and --processes choose. The run's figures say which ran, and the output is the same."""
    stats = tmp_path / "run.json"
    res = run_cli(["align", "--no-neural", *options, "-K", "1000", "--stats", stats, data_dir / "ref.fa", data_dir / "reads.fq"])
    assert res.returncode == 0, res.stderr
    assert json.loads(stats.read_text())["workers"] == workers
    one = run_cli(["align", "--no-neural", "-K", "1000", data_dir / "ref.fa", data_dir / "reads.fq"])
    assert records(res.stdout) == records(one.stdout)


def test_no_neural_never_loads_jax(data_dir, tmp_path):
    """--no-neural (here with two worker threads) runs seeds + DP only: JAX's runtime (hundreds of
    MB of peak RSS) is never imported."""
    code = (
        "import sys\n"
        "from neuromap.cli import main\n"
        "try:\n"
        f"    main(['align', '--no-neural', '-t', '2', '--quiet', {str(data_dir / 'ref.fa')!r}, {str(data_dir / 'reads.fq')!r}, '-o', {str(tmp_path / 'o.sam')!r}])\n"
        "except SystemExit as e:\n"
        "    assert not e.code, e.code\n"
        "print('jax' in sys.modules)\n"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "False"
    assert len(records((tmp_path / "o.sam").read_text())) == 3000


def test_network_chooses_only_where_the_read_aligns(tmp_path):
    """An AT-rich read of the benchmark genome whose seeds also hit two low-complexity windows
    (test-data/make_regression_data.py). The network finds one of those likelier than the true
    window, but the read aligns there with a score of 13-14: no placement. It is placed in its true
    window, and the junk windows do not count against it (MAPQ 60 like --no-neural)."""
    import shutil

    from conftest import TEST_DATA

    shutil.copy(os.path.join(TEST_DATA, "regressions.fa"), tmp_path / "ref.fa")
    reads = os.path.join(TEST_DATA, "regressions.fq")
    for extra in ([], ["--no-neural"]):
        res = run_cli(["align", *extra, tmp_path / "ref.fa", reads])
        assert res.returncode == 0, res.stderr
        rec = next(r for r in records(res.stdout) if r[0] == "sim053463")
        assert rec[1] == "0" and rec[2] == "true_4726535" and rec[3] == "301"
        assert rec[5] == "150M" and int(rec[4]) == 60, rec[:9]


def test_network_start_that_aligns_worse_falls_back_to_the_dp(tmp_path):
    """A read from a tandem array (test-data/make_regression_data.py) whose network start in its
    window is a shift where it aligns only with a 69-base clip (AS 76); the DP's start in the same
    window aligns it whole (AS 130). The description follows the DP there, never AS < XS."""
    import shutil

    from conftest import TEST_DATA

    shutil.copy(os.path.join(TEST_DATA, "regressions.fa"), tmp_path / "ref.fa")
    res = run_cli(["align", tmp_path / "ref.fa", os.path.join(TEST_DATA, "regressions.fq")])
    assert res.returncode == 0, res.stderr
    rec = next(r for r in records(res.stdout) if r[0] == "sim089504")
    tags = dict(t.split(":", 1) for t in rec[11:])
    assert rec[2] == "tandem_1053700" and "S" not in rec[5], rec[:9]
    assert int(tags["AS"].split(":")[1]) >= int(tags["XS"].split(":")[1]) == 130


def test_bad_compute_dtype_is_a_clean_error(data_dir, tmp_path):
    """NEUROMAP_COMPUTE_DTYPE is checked with the model, before any output is started."""
    out = tmp_path / "out.bam"
    res = run_cli(["align", data_dir / "ref.fa", data_dir / "reads.fq", "-o", out],
                  env={**os.environ, "NEUROMAP_COMPUTE_DTYPE": "int8"})
    assert_clean_error(res, "NEUROMAP_COMPUTE_DTYPE", "int8")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("bucket", ["abc", "0", "-4"])
def test_bad_pair_bucket_is_a_clean_error(data_dir, tmp_path, bucket):
    """NEUROMAP_PAIR_BUCKET is checked with the model too, before any output is started."""
    out = tmp_path / "out.bam"
    res = run_cli(["align", data_dir / "ref.fa", data_dir / "reads.fq", "-o", out],
                  env={**os.environ, "NEUROMAP_PAIR_BUCKET": bucket})
    assert_clean_error(res, "NEUROMAP_PAIR_BUCKET", bucket)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc arenas")
@pytest.mark.parametrize("capped", [True, False])
def test_malloc_arenas_are_capped_by_the_thread_count(capped):
    """`align` caps glibc's malloc arenas (memory freed in one stays there; uncapped, each thread
    that allocates gets its own, up to 8 per core). Eight threads that each allocate once: at
    most 3 arenas (-t 1 + 2) with the cap, one each without. malloc_stats lists them."""
    code = (
        "import ctypes, sys, threading\n"
        "from neuromap.pipeline import limit_malloc_arenas\n"
        f"if {capped}: limit_malloc_arenas(1)\n"
        "libc = ctypes.CDLL(None)\n"
        "libc.malloc.restype = ctypes.c_void_p\n"
        "libc.free.argtypes = [ctypes.c_void_p]\n"
        "barrier = threading.Barrier(8)\n"
        "def work():\n"
        "    libc.free(libc.malloc(1000))\n"
        "    barrier.wait()  # all alive at once: no arena is handed on from a thread that ended\n"
        "threads = [threading.Thread(target=work) for _ in range(8)]\n"
        "[t.start() for t in threads]\n"
        "[t.join() for t in threads]\n"
        "libc.malloc_stats()\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "MALLOC_ARENA_MAX"}
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, env=env)
    arenas = sum(line.startswith("Arena ") for line in res.stderr.splitlines())
    assert res.returncode == 0 and arenas >= 1, res.stderr
    assert (arenas <= 3) if capped else (arenas > 3)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc thresholds")
def test_the_main_process_keeps_freed_batch_buffers():
    """`align --processes` lets glibc keep freed blocks of a few MB (a batch's FASTQ, its SAM) for
    the next ones (pipeline.keep_freed_buffers): 60 blocks of 2-4 MB, each written and freed,
    then fault in about one block's pages (4 MB: 1,024), not fresh pages again and again; a
    GLIBC_TUNABLES in the environment leaves glibc's own thresholds."""
    code = (
        "import ctypes, resource, sys\n"
        "from neuromap.pipeline import keep_freed_buffers\n"
        "keep_freed_buffers()\n"
        "libc = ctypes.CDLL(None)\n"
        "libc.malloc.restype = ctypes.c_void_p\n"
        "libc.malloc.argtypes = [ctypes.c_size_t]\n"
        "libc.free.argtypes = [ctypes.c_void_p]\n"
        "libc.memset.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_size_t]\n"
        "before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt\n"
        "for size in [3 << 20, 2 << 20, 4 << 20] * 20:\n"
        "    block = libc.malloc(size)\n"
        "    libc.memset(block, 1, size)\n"
        "    libc.free(block)\n"
        "print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)\n"
    )
    env = {k: v for k, v in os.environ.items() if k not in ("GLIBC_TUNABLES", "MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_")}
    kept = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, env=env)
    glibc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                           env={**env, "GLIBC_TUNABLES": "glibc.malloc.check=0"})
    assert kept.returncode == 0 and glibc.returncode == 0, kept.stderr + glibc.stderr
    assert int(kept.stdout) < 1.5 * 1024 and int(kept.stdout) <= int(glibc.stdout)  # here (glibc 2.36): 1,014 against 2,808


def _without_blas_vars() -> dict:
    return {k: v for k, v in os.environ.items() if k not in ("OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")}


@pytest.mark.parametrize("given", [None, "3"])
def test_the_command_keeps_blas_to_one_thread(given):
    """numpy's OpenBLAS starts a spinning thread per core on import and neuromap calls no BLAS:
    the command sets one thread before numpy is imported (so for itself and every worker it
    starts), unless the user set a number."""
    env = _without_blas_vars() | ({"OPENBLAS_NUM_THREADS": given} if given else {})
    code = "import os, sys\nimport neuromap.cli\nprint(os.environ['OPENBLAS_NUM_THREADS'], os.environ['MKL_NUM_THREADS'], 'numpy' in sys.modules)"
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, env=env)
    assert res.returncode == 0, res.stderr
    assert res.stdout.split() == [given or "1", "1", "False"]


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_api_worker_processes_get_one_blas_thread(data_dir):
    """Through the Python API (numpy already imported, the variables unset): the worker processes
    of `align_records` are spawned with one BLAS thread, and the caller's environment is as it
    was once the run ends."""
    code = (
        "import multiprocessing, os\n"
        "from neuromap.index import open_index\n"
        "from neuromap.io.fastx import batched, read_fastx\n"
        "from neuromap.pipeline import AlignOptions, align_records\n"
        f"index = open_index({str(data_dir / 'ref.fa')!r})\n"
        "opts = AlignOptions(threads=2, processes=True, batch_size=500)\n"
        "seen = set()\n"
        f"for text, stats in align_records(batched(read_fastx({str(data_dir / 'reads.fq')!r}), 500), index, opts):\n"
        "    for child in multiprocessing.active_children():\n"
        "        with open(f'/proc/{child.pid}/environ', 'rb') as fh:\n"
        "            seen.add(b'OPENBLAS_NUM_THREADS=1' in fh.read().split(b'\\0'))\n"
        "print(sorted(seen), 'OPENBLAS_NUM_THREADS' in os.environ, 'MKL_NUM_THREADS' in os.environ)\n"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, env=_without_blas_vars())
    assert res.returncode == 0, res.stderr
    assert res.stdout.split() == ["[True]", "False", "False"]


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
@pytest.mark.parametrize("fork_server", [True, False])
def test_api_worker_processes_with_and_without_the_fork_server(data_dir, fork_server):
    """Worker processes are forked from multiprocessing's fork server (which has imported the
    pipeline); where it cannot start (no socket for it), they are spawned. Either way the records
    are those of one process, and the workers end with the run."""
    code = (
        "import multiprocessing, multiprocessing.forkserver, os\n"
        "from neuromap.index import open_index\n"
        "from neuromap.io.fastx import batched, read_fastx\n"
        "from neuromap.pipeline import AlignOptions, align_records\n"
        f"if not {fork_server}:\n"
        "    def refuse(): raise OSError('no socket')\n"
        "    multiprocessing.forkserver.ensure_running = refuse\n"
        f"index = open_index({str(data_dir / 'ref.fa')!r})\n"
        f"reads = list(read_fastx({str(data_dir / 'reads.fq')!r}))\n"
        "texts, parents = {}, set()\n"
        "for processes in (False, True):\n"
        "    opts = AlignOptions(threads=2, processes=processes, batch_size=500, neural=False)\n"
        "    texts[processes] = b''\n"
        "    for text, _ in align_records(batched(iter(reads), 500), index, opts):\n"
        "        texts[processes] += text\n"
        "        for child in multiprocessing.active_children():\n"
        "            with open(f'/proc/{child.pid}/stat') as fh:\n"
        "                parents.add(int(fh.read().rsplit(')', 1)[1].split()[1]) == os.getpid())\n"
        "print(texts[True] == texts[False], len(texts[True]) > 0, sorted(parents), multiprocessing.active_children())\n"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    # Forked workers' parent is the fork server; spawned ones', this process.
    assert res.stdout.split() == ["True", "True", "[False]" if fork_server else "[True]", "[]"]


def test_processes_with_a_temporary_folder_too_long_for_the_fork_server(data_dir, tmp_path):
    """The fork server listens on a Unix socket in the temporary folder, whose path may not exceed
    107 bytes; under a deeper TMPDIR (a pipeline's work folder) the workers are spawned instead,
    with the same records."""
    deep = tmp_path / ("t" * 60) / ("u" * 60)
    deep.mkdir(parents=True)
    args = ["align", "--no-neural", "-t", "2", data_dir / "ref.fa", data_dir / "reads.fq"]
    env = {**os.environ, "TMPDIR": str(deep)}
    method = subprocess.run([sys.executable, "-c", "from neuromap.threads import start_worker_server\nprint(start_worker_server().get_start_method())"],
                            capture_output=True, text=True, env=env)
    assert method.stdout.strip() == "spawn", method.stderr
    workers = run_cli([*args, "--processes"], env=env)
    threads = run_cli([*args, "--no-processes"])
    assert workers.returncode == 0 and threads.returncode == 0, workers.stderr
    assert records(workers.stdout) == records(threads.stdout) and len(records(workers.stdout)) == 3000


def _align_and_kill_a_child(args, pick=lambda pid: True, settle: float = 0.0, candidates=worker_pids) -> tuple[int, str]:
    """Run `neuromap align ARGS` (in a session of its own), SIGKILL the first of its processes
    (`candidates(pid)`: the worker processes by default) that `pick` accepts, `settle` seconds
    after it is seen; return the run's status and stderr."""
    proc = subprocess.Popen([sys.executable, "-m", "neuromap", "align", *map(str, args)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        found = []
        deadline = time.time() + 120
        while not found and time.time() < deadline and proc.poll() is None:
            found = [pid for pid in candidates(proc.pid) if pick(pid)]
            time.sleep(0.1)
        assert found, "no such process found"
        time.sleep(settle)
        os.kill(found[0], signal.SIGKILL)
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)
    return proc.returncode, err


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="finds the workers with pgrep")
@pytest.mark.parametrize("how", ["no-neural", "spares", "parked", "steady"])
def test_a_killed_worker_process_is_a_clean_error(data_dir, tmp_path, monkeypatch, how):
    """--processes: a worker killed mid-run (the OOM killer) ends the run with one line that says
    so (not "internal error, please report it"), status 1, and no output file; also with the
    network and spare workers, where the killed one may hold a compute token that the others then
    wait for, and with batches parked while the network starts (NEUROMAP_PARK_BATCHES), whose SAM
    the killed one will never send: the run must not wait for it; the same with batches parked
    while waiting for a model call (NEUROMAP_PARK_STEADY)."""
    many = tmp_path / "many.fq"
    many.write_bytes((data_dir / "reads.fq").read_bytes() * 20)
    out = tmp_path / "out.sam"
    if how == "spares":
        monkeypatch.setenv("NEUROMAP_SPARE_WORKERS", "2")
    if how == "parked":  # killed 0.3 s after it starts: the network is still starting, batches are parked
        monkeypatch.setenv("NEUROMAP_PARK_BATCHES", "8")
    if how == "steady":  # killed 1 s after it starts: the network answers, batches are parked while they wait for it
        monkeypatch.setenv("NEUROMAP_PARK_STEADY", "2")
    options = ["--no-neural"] if how == "no-neural" else []
    status, err = _align_and_kill_a_child([*options, "-t", "2", "--processes", "-K", "500", "-o", out, data_dir / "ref.fa", many],
                                          settle={"no-neural": 0.0, "spares": 1.0, "parked": 0.3, "steady": 1.0}[how])
    assert status == 1, err
    assert err.strip().splitlines() == ["neuromap: error: a worker process ended before finishing its batch (out of memory, or killed?)"], err
    assert not out.exists() and sorted(p.name for p in tmp_path.iterdir()) == ["many.fq"]


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
@pytest.mark.parametrize("park, steady", [("0", "0"), ("8", "0"), ("0", "2")])
def test_a_killed_network_process_is_a_clean_error(data_dir, tmp_path, monkeypatch, park, steady):
    """--processes: if the network's process dies (the OOM killer), the workers waiting on it
    report it, and the run ends with one line, no traceback, and no output file; also where the
    workers have parked batches while it started or while they wait for its answers (the error
    comes from a parked batch's thread)."""
    monkeypatch.setenv("NEUROMAP_PARK_BATCHES", park)
    monkeypatch.setenv("NEUROMAP_PARK_STEADY", steady)
    many = tmp_path / "many.fq"
    many.write_bytes((data_dir / "reads.fq").read_bytes() * 20)
    out = tmp_path / "out.sam"

    def has_jax(pid: int) -> bool:
        try:
            with open(f"/proc/{pid}/maps") as fh:
                return "jaxlib" in fh.read()
        except OSError:
            return False

    # 1 s after it is seen, the workers are calling it.
    status, err = _align_and_kill_a_child(["-t", "2", "--processes", "-K", "500", "-o", out, data_dir / "ref.fa", many], has_jax, settle=1,
                                          candidates=lambda pid: sorted(descendants(pid)))
    assert status != 0
    assert "Traceback" not in err and "the network's process ended" in err, err
    assert len([line for line in err.splitlines() if line.strip()]) == 1, err
    assert not out.exists()


def test_trace_writes_a_timeline_and_changes_nothing(data_dir, tmp_path):
    """NEUROMAP_TRACE=PREFIX: `align --processes` with the network writes a timeline per process
    (the main one, the network's, each worker) that benchmarks/timeline.py reads, and the SAM is
    the same as without it. Run from another working directory: the network's process (started
    with `python -c`) still finds the same neuromap."""
    args = ["align", "-t", "2", "--processes", "-K", "500", data_dir / "ref.fa", data_dir / "reads.fq"]
    plain = run_cli(args, cwd=tmp_path)
    assert plain.returncode == 0, plain.stderr
    prefix = tmp_path / "trace" / "tl"
    prefix.parent.mkdir()
    traced = run_cli(args, cwd=tmp_path, env={**os.environ, "NEUROMAP_TRACE": str(prefix)})
    assert traced.returncode == 0, traced.stderr
    assert traced.stdout == plain.stdout
    events: dict[int, set] = {}
    for path in prefix.parent.iterdir():
        for line in path.read_text().splitlines():
            t, pid, _, name, _ = line.split("\t")
            assert path.name == f"tl.{pid}" and float(t) > 0
            events.setdefault(int(pid), set()).add(name)
    main = [pid for pid, names in events.items() if "align" in names]
    model = [pid for pid, names in events.items() if "model-loaded" in names]
    workers = [pid for pid, names in events.items() if "batch" in names]
    assert len(main) == 1 and {"start-model-process", "submit", "written", "all-written", "workers-ended", "committed", "exit"} <= events[main[0]]
    assert "model-process-ended" not in events[main[0]]  # let end by itself (ModelServer.release), not waited for
    assert len(model) == 1 and {"model-process", "jax-imported", "serve", "served"} <= events[model[0]]
    assert len(workers) == 2 and all({"worker", "ask", "answered", "batch-done"} <= events[w] for w in workers)
    script = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "benchmarks", "timeline.py")
    report = subprocess.run([sys.executable, script, str(prefix)], capture_output=True, text=True, check=True).stdout
    assert "| model-loaded |" in report and "| all | 6 |" in report  # 3,000 reads in batches of 500
    assert "\nend: the last batch done at " in report and "exit +" in report


def test_trace_into_a_missing_folder_is_a_clear_error(data_dir, tmp_path):
    """NEUROMAP_TRACE naming a folder that is not there: a one-line error before any work, no SAM."""
    out = tmp_path / "out.sam"
    res = run_cli(["align", "-o", out, data_dir / "ref.fa", data_dir / "reads.fq"],
                  env={**os.environ, "NEUROMAP_TRACE": str(tmp_path / "missing" / "tl")})
    assert_clean_error(res, "NEUROMAP_TRACE=", "missing")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("reads_arg", ["-", "fifo"])
def test_a_signal_taken_by_another_thread_still_ends_a_run_waiting_for_input(data_dir, tmp_path, reads_arg):
    """The kernel hands a signal sent to the process to any of its threads; CPython runs the
    handler in the main thread, which may be waiting for more input on a pipe that stays open.
    SIGTERM sent to a worker thread (tgkill) must still end the run (143, no output) at once."""
    import ctypes
    import platform

    tgkill = {"x86_64": 234, "aarch64": 131}.get(platform.machine())
    if tgkill is None or not sys.platform.startswith("linux"):
        pytest.skip("tgkill's syscall number is known here for Linux on x86-64 and aarch64 only")
    out = tmp_path / "out.bam"
    reads = "-"
    if reads_arg == "fifo":
        reads = str(tmp_path / "reads.fifo")
        os.mkfifo(reads)
    proc = subprocess.Popen(
        [sys.executable, "-m", "neuromap", "align", "-t", "2", "--no-neural", "-K", "500", str(data_dir / "ref.fa"), reads, "-o", str(out)],
        stdin=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True,
    )
    feeder = proc.stdin if reads == "-" else open(reads, "wb")  # noqa: SIM115 - kept open: the run waits for more
    feeder.write((data_dir / "reads.fq").read_bytes() * 2)  # more than one read of the input: batches go to the workers
    feeder.flush()
    deadline = time.time() + 30
    others: list[int] = []
    while time.time() < deadline and not (any(".tmp-" in p.name for p in tmp_path.iterdir()) and others):
        others = [int(t) for t in os.listdir(f"/proc/{proc.pid}/task") if int(t) != proc.pid]
        time.sleep(0.05)
    time.sleep(0.5)  # every batch read so far is mapped: the main thread waits for input
    assert others, "no thread besides the main one"
    libc = ctypes.CDLL(None, use_errno=True)
    assert libc.syscall(tgkill, proc.pid, others[0], signal.SIGTERM) == 0  # to a thread that is not the main one
    try:
        assert proc.wait(timeout=20) == 143
    finally:
        if proc.poll() is None:
            proc.kill()
        feeder.close()
    assert not out.exists() and not [p for p in tmp_path.iterdir() if ".tmp-" in p.name]
    err = proc.stderr.read()
    assert b"Traceback" not in err, err
    assert err.strip().splitlines()[-1] == b"neuromap: terminated"


def computing_intervals(prefix):
    """Per worker process, from a NEUROMAP_TRACE timeline: the intervals it computed in (a batch's
    start to its first model call, from each answer to the next call or the batch's end)."""
    import glob

    events = []
    for path in glob.glob(f"{prefix}.*"):
        with open(path) as fh:
            events += [line.rstrip("\n").split("\t") for line in fh]
    intervals, since = [], {}
    for t, pid, _, name, _ in sorted(events, key=lambda e: float(e[0])):
        if name in ("batch", "answered"):
            since[pid] = float(t)
        elif name in ("ask", "batch-done") and pid in since:
            intervals.append((pid, since.pop(pid), float(t)))
    return intervals


@pytest.mark.parametrize("paired", [False, True])
def test_spare_workers_compute_only_while_others_wait_for_the_network(data_dir, tmp_path, paired):
    """Worker processes beyond -t (NEUROMAP_SPARE_WORKERS, for a network on a GPU): each computes
    only while it holds one of -t tokens, which a worker gives back while it waits for the network. So more than -t workers map batches, never more
    than -t at once, and the output is that of -t workers alone."""
    reads = [data_dir / "reads_1.fq", data_dir / "reads_2.fq"] if paired else [data_dir / "reads.fq"]
    stats, prefix = tmp_path / "run.json", tmp_path / "tl"
    args = ["align", "-t", "2", "--processes", "-K", "200", data_dir / "ref.fa", *reads]
    spare = run_cli([*args, "--stats", stats], env={**os.environ, "NEUROMAP_SPARE_WORKERS": "2", "NEUROMAP_TRACE": str(prefix)})
    alone = run_cli(args, env={**os.environ, "NEUROMAP_SPARE_WORKERS": "0"})
    assert spare.returncode == 0 and alone.returncode == 0, spare.stderr + alone.stderr
    assert records(spare.stdout) == records(alone.stdout) and len(records(alone.stdout)) == (2000 if paired else 3000)
    assert json.loads(stats.read_text())["workers"] == "2 processes (+2 spare)"
    intervals = computing_intervals(prefix)
    assert len({pid for pid, _, _ in intervals}) > 2  # more workers than -t mapped batches
    edges = sorted([(start, 1) for _, start, _ in intervals] + [(end, -1) for _, _, end in intervals])  # ends first at a tie
    running = [0]
    for _, step in edges:
        running.append(running[-1] + step)
    assert max(running) <= 2


def _parking_runs(data_dir, tmp_path, paired: bool, traced_env: dict, both_env: dict):
    """`align -t 2 --processes -K 200` on test-data's pairs or single-end reads without parking,
    with `traced_env` (and a timeline and --stats) and with `both_env`: checks that the three
    write the same records, and returns the traced run's --stats and its timeline, (time, event,
    detail) in time order."""
    import glob

    reads = [data_dir / "reads_1.fq", data_dir / "reads_2.fq"] if paired else [data_dir / "reads.fq"]
    prefix = tmp_path / "tl"
    args = ["align", "-t", "2", "--processes", "-K", "200", data_dir / "ref.fa", *reads]
    alone = run_cli(args, env={**os.environ, "NEUROMAP_PARK_BATCHES": "0", "NEUROMAP_PARK_STEADY": "0"})
    stats = tmp_path / "run.json"
    traced = run_cli([*args, "--stats", stats], env={**os.environ, **traced_env, "NEUROMAP_TRACE": str(prefix)})
    both = run_cli(args, env={**os.environ, **both_env})
    assert alone.returncode == 0 and traced.returncode == 0 and both.returncode == 0, alone.stderr + traced.stderr + both.stderr
    assert records(traced.stdout) == records(alone.stdout) == records(both.stdout)
    assert len(records(alone.stdout)) == (2000 if paired else 3000)
    timeline = sorted((float(t), name, detail) for path in glob.glob(f"{prefix}.*") for t, _, _, name, detail in
                      (line.split("\t") for line in open(path).read().splitlines()))
    return json.loads(stats.read_text()), timeline


@pytest.mark.parametrize("paired", [False, True])
def test_batches_parked_while_the_network_starts_change_nothing(data_dir, tmp_path, paired):
    """NEUROMAP_PARK_BATCHES=N: while the network's process starts, a worker process that would
    wait for it with a batch parks the batch on a thread of its own (which finishes it once the
    network answers) and maps the next one up to the network. Batches are parked (the timeline
    says so), more are in flight than without, and the output is the same record for record;
    also with spare workers, whose compute tokens the parked batches' threads then hold in turn."""
    stats, timeline = _parking_runs(data_dir, tmp_path, paired, {"NEUROMAP_PARK_BATCHES": "4"},
                                    {"NEUROMAP_PARK_BATCHES": "2", "NEUROMAP_SPARE_WORKERS": "1"})
    assert stats["workers"] == "2 processes, up to 4 batches each parked while the network starts"
    events = [name for _, name, _ in timeline]
    assert 1 <= events.count("parked") == events.count("parked-done") <= 2 * 4
    assert events.count("batch") == (10 if paired else 15)
    # Before the network first answered, more batches went out than the 2 x -t in flight without parking.
    assert events[: events.index("answered")].count("submit") > 2 * 2


@pytest.mark.parametrize("paired", [False, True])
def test_batches_parked_while_waiting_for_a_model_call_change_nothing(data_dir, tmp_path, paired):
    """NEUROMAP_PARK_STEADY=N: once the network has started, a worker process parks a batch that
    is about to wait for a model call's answer (its thread finishes it) and maps the next one
    meanwhile, up to N parked at once. Batches are parked only after the network's first answer
    (none while it starts, without NEUROMAP_PARK_BATCHES), and the output is the same record for
    record; also with both settings and with spare workers."""
    stats, timeline = _parking_runs(data_dir, tmp_path, paired, {"NEUROMAP_PARK_STEADY": "2"},
                                    {"NEUROMAP_PARK_STEADY": "1", "NEUROMAP_PARK_BATCHES": "2", "NEUROMAP_SPARE_WORKERS": "1"})
    assert stats["workers"] == "2 processes, up to 2 parked while waiting for the network"
    events = [name for _, name, _ in timeline]
    first_answer = next(i for i, (_, name, detail) in enumerate(timeline) if name == "answered" and detail == "info")
    assert "parked" not in events[:first_answer]
    assert 1 <= events.count("parked") == events.count("parked-done")
    assert events.count("batch") == (10 if paired else 15)


def test_park_steady_setting_must_be_a_number(data_dir):
    res = run_cli(["align", "-t", "2", "--processes", data_dir / "ref.fa", data_dir / "reads.fq"],
                  env={**os.environ, "NEUROMAP_PARK_STEADY": "x"})
    assert_clean_error(res, "NEUROMAP_PARK_STEADY")
    assert res.stdout == ""


def test_park_batches_setting_must_be_a_number(data_dir):
    res = run_cli(["align", "-t", "2", "--processes", data_dir / "ref.fa", data_dir / "reads.fq"],
                  env={**os.environ, "NEUROMAP_PARK_BATCHES": "-1"})
    assert_clean_error(res, "NEUROMAP_PARK_BATCHES")
    assert res.stdout == ""


def test_spare_workers_setting_must_be_a_number(data_dir, tmp_path):
    res = run_cli(["align", "-t", "2", "--processes", data_dir / "ref.fa", data_dir / "reads.fq"],
                  env={**os.environ, "NEUROMAP_SPARE_WORKERS": "many"})
    assert_clean_error(res, "NEUROMAP_SPARE_WORKERS")
    assert res.stdout == ""
    # none by default, and none without the network (nothing to wait for)
    stats = tmp_path / "run.json"
    env = {k: v for k, v in os.environ.items() if k != "NEUROMAP_SPARE_WORKERS"}
    for extra in ([], ["--no-neural"]):
        res = run_cli(["align", "-t", "2", "--processes", *extra, "--stats", stats, data_dir / "ref.fa", data_dir / "reads.fq"],
                      env=env if not extra else {**env, "NEUROMAP_SPARE_WORKERS": "2"})
        assert res.returncode == 0 and json.loads(stats.read_text())["workers"] == "2 processes", res.stderr
