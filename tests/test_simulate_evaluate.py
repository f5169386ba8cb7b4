import json

import numpy as np

from neuromap.evaluate import evaluate
from neuromap.io.fastx import read_fastx
from neuromap.io.sam import reverse_complement
from neuromap.simulate import simulate_reads

from conftest import assert_clean_error, run_cli


def test_simulation_is_deterministic_and_truthful(data_dir, tmp_path):
    a = list(simulate_reads(str(data_dir / "ref.fa"), 200, 100, seed=4, error_rate=0.0))
    b = list(simulate_reads(str(data_dir / "ref.fa"), 200, 100, seed=4, error_rate=0.0))
    assert a == b
    ref = {r.name: r.seq.upper() for r in read_fastx(str(data_dir / "ref.fa"))}
    strands = set()
    for rd in a:
        segment = ref[rd.contig][rd.start : rd.end]
        assert rd.end - rd.start == 100
        expected = segment if rd.strand == "+" else reverse_complement(segment)
        # Without errors the read is the reference (IUPAC codes come out as N).
        assert all(x == y or y not in "ACGT" for x, y in zip(rd.seq, expected))
        strands.add(rd.strand)
    assert strands == {"+", "-"}


def test_errors_follow_the_requested_rate(data_dir):
    ref = {r.name: r.seq.upper() for r in read_fastx(str(data_dir / "ref.fa"))}
    reads = list(simulate_reads(str(data_dir / "ref.fa"), 400, 150, seed=9, error_rate=0.02, indel_fraction=0.0))
    mism = 0
    for rd in reads:
        seg = ref[rd.contig][rd.start : rd.end]
        seg = seg if rd.strand == "+" else reverse_complement(seg)
        mism += sum(x != y for x, y in zip(rd.seq, seg))
    rate = mism / (400 * 150)
    assert 0.012 < rate < 0.03
    quals = np.array([ord(c) - 33 for rd in reads for c in rd.qual])
    assert 2 <= quals.min() and quals.max() <= 41 and 15 < quals.mean() < 35


def test_evaluate_counts_right_and_wrong(tmp_path):
    truth = tmp_path / "truth.tsv"
    truth.write_text("#name\tcontig\tstart\tend\tstrand\nr1\tc\t100\t150\t+\nr2\tc\t500\t550\t-\nr3\tc\t10\t60\t+\nr4\tc\t0\t50\t+\n")
    sam = tmp_path / "a.sam"
    sam.write_text(
        "@SQ\tSN:c\tLN:1000\n"
        "r1\t0\tc\t96\t60\t5S45M\t*\t0\t0\t*\t*\n"  # unclipped start 90 vs 100: within 10
        "r2\t0\tc\t501\t40\t50M\t*\t0\t0\t*\t*\n"  # wrong strand
        "r3\t0\tc\t300\t3\t50M\t*\t0\t0\t*\t*\n"  # wrong place, low MAPQ
        "r4\t4\t*\t0\t0\t*\t*\t0\t0\t*\t*\n"
    )
    res = evaluate(str(truth), str(sam))
    assert (res["reads"], res["mapped"], res["unmapped"], res["correct"], res["wrong"]) == (4, 3, 1, 1, 2)
    at = {r["mapq"]: (r["mapped"], r["wrong"]) for r in res["thresholds"]}
    assert at[60] == (1, 0) and at[30] == (2, 1) and at[1] == (3, 2)
    claimed = np.array([1e-6, 1e-4, 10 ** -0.3])
    assert abs(res["brier"] - np.mean((claimed - np.array([0, 1, 1])) ** 2)) < 1e-12
    cli = run_cli(["evaluate", "--json", "--truth", truth, sam])
    assert json.loads(cli.stdout)["correct"] == 1
    text = run_cli(["evaluate", "--truth", truth, sam]).stdout
    assert "MAPQ>=" in text and "MAPQ_bin" in text


def test_simulate_cli_and_bad_truth(data_dir, tmp_path):
    res = run_cli(["simulate", data_dir / "ref.fa", "-n", "50", "--seed", "3", "-o", tmp_path / "r.fq.gz", "--truth", tmp_path / "t.tsv"])
    assert res.returncode == 0, res.stderr
    assert len(list(read_fastx(str(tmp_path / "r.fq.gz")))) == 50
    bad = tmp_path / "bad.tsv"
    bad.write_text("r1\tc\tx\t1\t+\n")
    assert_clean_error(run_cli(["evaluate", "--truth", bad, tmp_path / "t.tsv"]), "bad.tsv", "line 1")


def test_evaluate_and_simulate_bad_paths(data_dir, tmp_path):
    truth = data_dir / "truth.tsv"
    assert_clean_error(run_cli(["evaluate", "--truth", truth, tmp_path / "missing.sam"]), "missing.sam", "no such file")
    junk = tmp_path / "junk.sam"
    junk.write_bytes(b"\x00\x01not a sam file\n\xff\xfe")
    assert_clean_error(run_cli(["evaluate", "--truth", truth, junk]), "junk.sam")
    sam = tmp_path / "a.sam"
    sam.write_text("@SQ\tSN:chr1\tLN:220000\n")
    res = run_cli(["evaluate", "--truth", truth, sam, "--plot", tmp_path / "no" / "p.png"])
    assert_clean_error(res, "does not exist")
    assert res.stdout == ""
    res = run_cli(["simulate", data_dir / "ref.fa", "-n", "5", "-o", tmp_path / "no" / "r.fq", "--truth", tmp_path / "t.tsv"])
    assert_clean_error(res, "does not exist")
    assert not (tmp_path / "t.tsv").exists()


def test_failed_simulation_leaves_nothing(tmp_path):
    short = tmp_path / "short.fa"
    short.write_text(">c\nACGTACGT\n")  # no contig long enough for 150-bp reads
    res = run_cli(["simulate", short, "-n", "5", "-o", tmp_path / "r.fq", "--truth", tmp_path / "t.tsv"])
    assert_clean_error(res, "short.fa", "long enough")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["short.fa"]


def test_simulate_pairs_bad_arguments_leave_nothing(data_dir, tmp_path):
    out = ["-o", tmp_path / "r1.fq", "--truth", tmp_path / "t.tsv"]
    res = run_cli(["simulate", data_dir / "ref.fa", "-n", "5", *out, "--mate2", tmp_path / "no" / "r2.fq"])
    assert_clean_error(res, "r2.fq", "does not exist")
    res = run_cli(["simulate", data_dir / "ref.fa", "-n", "5", *out, "--mate2", tmp_path / "r2.fq", "--fragment-mean", "-10"])
    assert_clean_error(res, "fragment length")
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_pair_options_without_pairs_are_usage_errors(data_dir):
    res = run_cli(["align", "-I", "400,50", data_dir / "ref.fa", data_dir / "reads.fq"])
    assert res.returncode == 2 and "-I applies to paired reads" in res.stderr and "Traceback" not in res.stderr
    assert res.stdout == ""
