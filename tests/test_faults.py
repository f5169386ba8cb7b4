"""Faults: a full disk (a file-size limit, as `ulimit -f`), interrupting `index`, odd references,
memory as the input grows (peak RSS measured, not timed)."""

import os
import select
import signal
import subprocess
import sys
import time

import pysam
import pytest

from conftest import assert_clean_error, run_cli
from neuromap.simulate import synthetic_genome, write_fasta


def run_limited(nbytes, args):
    """`neuromap ARGS` with a file-size limit (as `ulimit -f`): writes beyond it fail with EFBIG,
    as on a full disk. The limit is set in a small launcher, not with preexec_fn (no fork here)."""
    launcher = ("import os, resource, sys; "
                f"resource.setrlimit(resource.RLIMIT_FSIZE, ({nbytes}, {nbytes})); "
                "os.execv(sys.executable, [sys.executable, '-m', 'neuromap', *sys.argv[1:]])")
    return subprocess.run([sys.executable, "-c", launcher, *map(str, args)], capture_output=True, text=True)


def leftovers(directory, keep):
    return sorted(p.name for p in directory.iterdir() if p.name not in keep)


@pytest.mark.parametrize("ext", ["sam", "bam"])
def test_full_disk_while_aligning(data_dir, tmp_path, ext):
    out = tmp_path / f"out.{ext}"
    (tmp_path / "reads.fq").write_bytes((data_dir / "reads.fq").read_bytes())
    res = run_limited(200_000, ["align", "--no-neural", data_dir / "ref.fa", tmp_path / "reads.fq", "-o", out])
    assert_clean_error(res, str(out), "write failed")
    assert leftovers(tmp_path, {"reads.fq"}) == []  # no output, no temporary files


def test_full_disk_while_writing_paired_bam(data_dir, tmp_path):
    out = tmp_path / "pe.bam"
    res = run_limited(300_000, ["align", "--no-neural", data_dir / "ref.fa", data_dir / "reads_1.fq", data_dir / "reads_2.fq", "-o", out])
    assert_clean_error(res, str(out))
    assert leftovers(tmp_path, set()) == []


def test_full_disk_while_indexing(data_dir, tmp_path):
    ref = tmp_path / "ref.fa"
    ref.write_bytes((data_dir / "ref.fa").read_bytes())
    res = run_limited(100_000, ["index", ref])
    assert_clean_error(res, "ref.fa.nmi", "cannot write the index")
    assert leftovers(tmp_path, {"ref.fa"}) == []


@pytest.fixture(scope="module")
def big_reference(tmp_path_factory):
    d = tmp_path_factory.mktemp("big")
    write_fasta(str(d / "big.fa"), synthetic_genome(10_000_000, 5))  # indexing takes a few seconds
    return d / "big.fa"


@pytest.mark.parametrize("phase", ["sketching", "writing"])
@pytest.mark.parametrize("sig, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_interrupted_index_leaves_nothing(big_reference, tmp_path, sig, code, phase):
    ref = tmp_path / "big.fa"
    os.link(big_reference, ref)
    proc = subprocess.Popen([sys.executable, "-m", "neuromap", "index", "--progress", str(ref)], stderr=subprocess.PIPE, start_new_session=True)
    seen = b""
    if phase == "sketching":  # as soon as the progress bar appears: the reference is read
        deadline = time.time() + 60
        while time.time() < deadline and b"indexing" not in seen:
            if select.select([proc.stderr], [], [], 0.1)[0]:
                chunk = os.read(proc.stderr.fileno(), 4096)
                if not chunk:
                    break
                seen += chunk
    else:  # as soon as the temporary index directory appears
        deadline = time.time() + 60
        while time.time() < deadline and proc.poll() is None and not any(".tmp-" in p.name for p in tmp_path.iterdir()):
            time.sleep(0.002)
    os.killpg(proc.pid, sig)
    status = proc.wait(timeout=60)
    err = (seen + proc.stderr.read()).decode()
    assert "Traceback" not in err
    if status == 0:  # it finished before the signal arrived: then the index is whole
        assert phase == "writing"
        from neuromap.index import load_index

        assert load_index(str(ref) + ".nmi").meta["n_minimizers"] > 0
        return
    assert status == code, err
    assert leftovers(tmp_path, {"big.fa"}) == []


def test_odd_contig_names_and_tiny_or_empty_contigs(tmp_path):
    """Names are the first word of the header (as samtools faidx); characters SAM allows are
    kept as they are; a contig shorter than a read, an all-N contig and lowercase are fine."""
    seq = "ACGTTGCAAGGCTTACCGATCGGATCCTAGCTAGGCATCGATCGGCTAAGCTTGCATGCCTAGGCTAGCATCG" * 40
    fa = tmp_path / "odd.fa"
    fa.write_text(
        ">chr1|x.y:1-2 description with spaces\n" + seq + "\n"
        ">tiny\nACGTACGTAC\n"
        ">allN\n" + "N" * 500 + "\n"
        ">lower_case\n" + seq[:900].lower() + "\n"
    )
    reads = tmp_path / "r.fq"
    r = seq[100:250]
    reads.write_text(f"@a\n{r}\n+\n{'I' * 150}\n@b\nACGTACGTAC\n+\nIIIIIIIIII\n@c\n{seq[10:160].lower()}\n+\n{'I' * 150}\n")
    out = tmp_path / "out.bam"
    res = run_cli(["align", "--no-neural", fa, reads, "-o", out])
    assert res.returncode == 0, res.stderr
    with pysam.AlignmentFile(str(out)) as fh:
        assert list(fh.references) == ["chr1|x.y:1-2", "tiny", "allN", "lower_case"]
        assert list(fh.lengths) == [len(seq), 10, 500, 900]
        recs = {r.query_name: r for r in fh}
    assert recs["a"].reference_name == "chr1|x.y:1-2" and not recs["a"].is_unmapped
    assert recs["b"].is_unmapped  # shorter than k: kept, unmapped
    assert not recs["c"].is_unmapped


def test_contig_name_sam_cannot_carry_is_an_error(tmp_path):
    fa = tmp_path / "bad.fa"
    fa.write_text(">*\nACGTACGTACGTACGTACGTACGTACGT\n")
    res = run_cli(["index", fa])
    assert_clean_error(res, "bad.fa", "contig name")
    fa.write_text(">=chr\nACGTACGTACGTACGTACGTACGTACGT\n")
    assert_clean_error(run_cli(["index", fa]), "bad.fa", "contig name")


def peak_rss_mb(args):
    """Peak RSS (MB) of `neuromap ARGS` run as the only child of a fresh Python."""
    code = ("import resource, subprocess, sys; "
            f"r = subprocess.run([sys.executable, '-m', 'neuromap', *{[str(a) for a in args]!r}], stdout=subprocess.DEVNULL); "
            "print(r.returncode, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out[0] == "0"
    return int(out[1]) / 1024


def test_memory_stays_flat_as_reads_grow_tenfold(data_dir, tmp_path):
    """Batches stream through bounded queues: 10 x the reads must not mean 10 x the memory."""
    reads = (data_dir / "reads.fq").read_text()
    (tmp_path / "x10.fq").write_text(reads * 10)
    base = ["align", "--no-neural", "-K", "1000", data_dir / "ref.fa"]
    small = peak_rss_mb(base + [data_dir / "reads.fq"])
    large = peak_rss_mb(base + [tmp_path / "x10.fq"])
    assert large < 1.25 * small + 30, (small, large)


def test_stats_json_that_fails_midway_leaves_nothing(tmp_path):
    """--stats is written to a temporary file and renamed: a failure while writing it (here a value
    JSON cannot hold, after part of the file is out) leaves neither file."""
    from neuromap.cli import write_json_atomic

    path = tmp_path / "stats.json"
    with pytest.raises(TypeError):
        write_json_atomic(str(path), {"reads": 3, "odd": object()})
    assert list(tmp_path.iterdir()) == []
    write_json_atomic(str(path), {"reads": 3})
    assert [p.name for p in tmp_path.iterdir()] == ["stats.json"]
