"""The Snakemake workflow, run for real on test-data/ (scatter on), BAMs checked with pysam."""

import gzip
import os
import shutil
import signal
import subprocess
import sys
import tempfile

import pysam
import pytest
import yaml

from conftest import ROOT, run_cli

SNAKEMAKE = shutil.which("snakemake") or os.path.join(os.path.dirname(sys.executable), "snakemake")


def records(path):
    with pysam.AlignmentFile(str(path)) as bam:
        return sorted((r.query_name, r.flag, r.reference_name, r.reference_start, r.cigarstring, r.mapping_quality) for r in bam)


@pytest.fixture
def workdir(tmp_path, data_dir):
    shutil.copytree(os.path.join(ROOT, "workflows"), tmp_path / "workflows")
    lines = (data_dir / "reads.fq").read_text().splitlines(keepends=True)
    with gzip.open(tmp_path / "small.fq.gz", "wt") as fh:
        fh.writelines(lines[:400])
    return tmp_path


def run_snakemake(workdir, config, **env_extra):
    (workdir / "cfg.yaml").write_text(yaml.safe_dump(config))
    env = dict(os.environ, PATH=os.path.dirname(sys.executable) + os.pathsep + os.environ["PATH"], **env_extra)
    return subprocess.run(
        [SNAKEMAKE, "-s", "workflows/Snakefile", "--configfile", "cfg.yaml", "--cores", "2", "-q"],
        cwd=workdir, capture_output=True, text=True, env=env,
    )


def test_snakemake_scatters_aligns_and_merges(workdir, data_dir):
    config = {
        "reference": str(data_dir / "ref.fa"),
        "samples": {"big": [str(data_dir / "reads.fq")], "small": str(workdir / "small.fq.gz"),
                    "pe": [str(data_dir / "reads_1.fq"), str(data_dir / "reads_2.fq")]},
        "outdir": "out",
        "scatter": 3,
        "threads": 1,
        "extra": "--no-neural",
    }
    res = run_snakemake(workdir, config)
    assert res.returncode == 0, res.stdout + res.stderr
    for sample, n_reads in (("big", 3000), ("small", 100), ("pe", 2000)):
        bam = workdir / "out" / f"{sample}.bam"
        assert (workdir / "out" / f"{sample}.bam.bai").exists()
        pysam.quickcheck(str(bam))
        with pysam.AlignmentFile(str(bam)) as fh:
            assert fh.header["HD"]["SO"] == "coordinate"
            assert [rg["ID"] for rg in fh.header["RG"]] == [sample]
            recs = list(fh)
            assert fh.count(contig="chr2") > 0  # indexed
        assert len(recs) == n_reads and {r.get_tag("RG") for r in recs} == {sample}
        starts = [(r.reference_id, r.reference_start) for r in recs if not r.is_unmapped]
        assert starts == sorted(starts)
    # Pairs: scattered as whole pairs (chunks are interleaved, aligned with -p), mates kept together.
    with pysam.AlignmentFile(str(workdir / "out" / "pe.bam")) as fh:
        recs = list(fh)
    assert all(r.is_paired for r in recs)
    assert sorted((r.query_name, r.is_read1) for r in recs) == sorted((f"sim{i:04d}", m) for i in range(1, 1001) for m in (True, False))
    assert sum(r.is_proper_pair for r in recs) >= 0.98 * len(recs)
    # Scattering changes nothing: the same records as one `neuromap align` of all reads.
    direct = workdir / "direct.bam"
    assert run_cli(["align", "--no-neural", data_dir / "ref.fa", data_dir / "reads.fq", "-o", direct]).returncode == 0
    assert records(workdir / "out" / "big.bam") == records(direct)
    assert not (workdir / "out" / "chunks").exists() or not any((workdir / "out" / "chunks").rglob("*.bam"))


def test_three_files_for_a_sample_is_refused_with_a_clear_message(workdir, data_dir):
    config = {"reference": str(data_dir / "ref.fa"), "samples": {"p": [str(data_dir / "reads.fq")] * 3}, "outdir": "out"}
    res = run_snakemake(workdir, config)
    assert res.returncode != 0 and "R1 and R2" in res.stdout + res.stderr


def test_the_scattered_jobs_share_one_network_through_server_auto(workdir, data_dir):
    """`extra: --server auto`: the first alignment job starts this user's server, the others use it
    (each job skips the network's start); the BAMs hold what one run alone writes."""
    from test_server import servers_under

    runtime = tempfile.mkdtemp(prefix="nmwf-", dir="/tmp")  # short: a socket's path holds 107 bytes
    config = {"reference": str(data_dir / "ref.fa"),
              "samples": {"big": [str(data_dir / "reads.fq")], "pe": [str(data_dir / "reads_1.fq"), str(data_dir / "reads_2.fq")]},
              "outdir": "out", "scatter": 2, "threads": 1, "extra": "--server auto"}
    try:
        res = run_snakemake(workdir, config, XDG_RUNTIME_DIR=runtime, NEUROMAP_SERVER_IDLE_EXIT="60")
        assert res.returncode == 0, res.stdout + res.stderr
        logs = [name for name in os.listdir(os.path.join(runtime, "neuromap")) if name.endswith(".log")]
        assert len(logs) == 1
        assert open(os.path.join(runtime, "neuromap", logs[0])).read().count("serving the network") == 1
        assert len(servers_under(runtime)) == 1
    finally:
        for pid in servers_under(runtime):
            os.kill(pid, signal.SIGTERM)
        shutil.rmtree(runtime, ignore_errors=True)
    direct = workdir / "direct.bam"
    assert run_cli(["align", data_dir / "ref.fa", data_dir / "reads.fq", "-o", direct]).returncode == 0
    assert records(workdir / "out" / "big.bam") == records(direct)
    direct_pe = workdir / "direct-pe.bam"
    assert run_cli(["align", data_dir / "ref.fa", data_dir / "reads_1.fq", data_dir / "reads_2.fq", "-o", direct_pe]).returncode == 0
    assert records(workdir / "out" / "pe.bam") == records(direct_pe)
