"""Paired-end reads end to end: input checks, pairing, rescue, SAM mate fields, determinism."""

import os

import numpy as np
import pysam
import pytest

from conftest import assert_clean_error, run_cli
from neuromap.io.fastx import read_fastx
from neuromap.io.sam import reverse_complement
from neuromap.pairing import InsertModel, choose_pairs, estimate_insert, parse_insert
from neuromap.errors import NeuromapError


def reference(data_dir):
    return {r.name: r.seq.upper() for r in read_fastx(str(data_dir / "ref.fa"))}


def fastq(path, records):
    with open(path, "w") as fh:
        for name, seq in records:
            fh.write(f"@{name}\n{seq}\n+\n{'I' * len(seq)}\n")


def by_mate(path):
    out = {}
    with pysam.AlignmentFile(str(path), check_sq=False) as fh:
        for rec in fh:
            out[(rec.query_name, 1 if rec.is_read1 else 2)] = rec
    return out


def align_pairs(data_dir, tmp_path, extra=(), r1=None, r2=None, out="pe.sam"):
    r1 = r1 or data_dir / "reads_1.fq"
    r2 = r2 or data_dir / "reads_2.fq"
    res = run_cli(["align", "--no-neural", *extra, data_dir / "ref.fa", r1, r2, "-o", tmp_path / out])
    assert res.returncode == 0, res.stderr
    return res


@pytest.fixture(scope="module")
def pe_sam(data_dir, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("pe")
    res = align_pairs(data_dir, tmp)
    return tmp / "pe.sam", res.stderr


def test_pairs_accurate_and_proper(data_dir, pe_sam):
    path, stderr = pe_sam
    assert "insert size mean" in stderr and "orientation FR" in stderr
    mean = float(stderr.split("insert size mean ")[1].split(",")[0])
    assert 380 < mean < 420  # simulated 400 +- 50
    res = run_cli(["evaluate", "--json", "--truth", data_dir / "truth_pairs.tsv", path])
    import json

    ev = json.loads(res.stdout)
    assert ev["reads"] == 2000 and ev["missing"] == 0
    assert ev["correct_pct"] > 99.5
    assert ev["proper_pair_pct"] > 99.0
    assert next(t for t in ev["thresholds"] if t["mapq"] == 30)["wrong"] == 0


def test_mate_fields_consistent(pe_sam):
    recs = by_mate(pe_sam[0])
    assert len(recs) == 2000
    for (name, mate), rec in recs.items():
        other = recs[(name, 3 - mate)]
        assert rec.is_paired and (rec.is_read1 == (mate == 1)) and (rec.is_read2 == (mate == 2))
        assert rec.is_proper_pair == other.is_proper_pair
        if rec.is_unmapped or other.is_unmapped:
            continue
        assert rec.next_reference_name == other.reference_name
        assert rec.next_reference_start == other.reference_start
        assert rec.mate_is_reverse == other.is_reverse
        assert rec.template_length == -other.template_length != 0
        left = min(rec.reference_start, other.reference_start)
        right = max(rec.reference_end, other.reference_end)
        assert abs(rec.template_length) == right - left
        assert rec.get_tag("MC") == other.cigarstring
        assert rec.get_tag("MQ") == other.mapping_quality
        if rec.is_proper_pair:
            assert rec.is_reverse != other.is_reverse


def repeat_pair(data_dir):
    """Mate 1 inside the exact 1.5 kb repeat (chr1:40000-41500 = chr2:20000-21500), mate 2 in
    unique chr1 sequence 250 bp downstream, reverse strand: a 400-bp FR fragment."""
    ref = reference(data_dir)["chr1"]
    m1 = ref[41_300:41_450]
    m2 = reverse_complement(ref[41_550:41_700])
    return m1, m2


def test_repeat_mate_placed_by_unique_partner(data_dir, tmp_path):
    m1, m2 = repeat_pair(data_dir)
    # Single-end, mate 1 is a coin toss between the two copies.
    fastq(tmp_path / "se.fq", [("rep", m1)])
    res = run_cli(["align", "--no-neural", data_dir / "ref.fa", tmp_path / "se.fq", "-o", tmp_path / "se.sam"])
    assert res.returncode == 0, res.stderr
    se = next(iter(pysam.AlignmentFile(str(tmp_path / "se.sam"), check_sq=False)))
    assert se.mapping_quality <= 3
    # Paired, with the real pairs around it so the insert size is estimated.
    r1 = [(r.name, r.seq) for r in read_fastx(str(data_dir / "reads_1.fq"))] + [("rep/1", m1)]
    r2 = [(r.name, r.seq) for r in read_fastx(str(data_dir / "reads_2.fq"))] + [("rep/2", m2)]
    fastq(tmp_path / "r1.fq", r1)
    fastq(tmp_path / "r2.fq", r2)
    for neural in (False, True):
        args = ["align", *(["--no-neural"] if not neural else []), data_dir / "ref.fa", tmp_path / "r1.fq", tmp_path / "r2.fq", "-o", tmp_path / "pe.sam"]
        res = run_cli(args)
        assert res.returncode == 0, res.stderr
        recs = by_mate(tmp_path / "pe.sam")
        a, b = recs[("rep", 1)], recs[("rep", 2)]
        assert (a.reference_name, a.reference_start) == ("chr1", 41_300), neural
        assert (b.reference_name, b.reference_start) == ("chr1", 41_550), neural
        assert a.is_proper_pair and b.is_proper_pair
        assert a.mapping_quality >= 30 and a.get_tag("pc") > 0.999, neural


def test_rescue_finds_mate_that_seeds_miss(data_dir, tmp_path):
    """Mate 2 carries a mismatch every 15 bases: no 21-mer survives, so seeding finds nothing;
    the rescue search (11-mers in the window the insert size points to) must find it."""
    ref = reference(data_dir)["chr1"]
    m1 = ref[170_000:170_150]
    m2 = list(ref[170_250:170_400])
    for i in range(7, 150, 15):
        m2[i] = "A" if m2[i] != "A" else "C"
    m2 = reverse_complement("".join(m2))
    fastq(tmp_path / "se.fq", [("hard", m2)])
    res = run_cli(["align", "--no-neural", data_dir / "ref.fa", tmp_path / "se.fq", "-o", tmp_path / "se.sam"])
    se = next(iter(pysam.AlignmentFile(str(tmp_path / "se.sam"), check_sq=False)))
    assert se.is_unmapped  # on its own it cannot be found
    fastq(tmp_path / "r1.fq", [("hard/1", m1)])
    fastq(tmp_path / "r2.fq", [("hard/2", m2)])
    for neural in (False, True):
        res = run_cli(["align", *([] if neural else ["--no-neural"]), "-I", "400,50", data_dir / "ref.fa", tmp_path / "r1.fq", tmp_path / "r2.fq", "-o", tmp_path / "pe.sam"])
        assert res.returncode == 0, res.stderr
        recs = by_mate(tmp_path / "pe.sam")
        b = recs[("hard", 2)]
        assert not b.is_unmapped and b.reference_start == 170_250 and b.is_reverse, neural
        assert b.get_tag("NM") == 10
        assert b.is_proper_pair and b.template_length == -400


def test_unmapped_mate_placed_at_partner(data_dir, tmp_path):
    rng = np.random.default_rng(3)
    ref = reference(data_dir)["chr2"]
    m1 = ref[30_000:30_150]
    junk = "".join(rng.choice(list("ACGT"), 150))
    fastq(tmp_path / "r1.fq", [("half/1", m1)])
    fastq(tmp_path / "r2.fq", [("half/2", junk)])
    align_pairs(data_dir, tmp_path, ["-I", "400"], tmp_path / "r1.fq", tmp_path / "r2.fq")
    recs = by_mate(tmp_path / "pe.sam")
    a, b = recs[("half", 1)], recs[("half", 2)]
    assert not a.is_unmapped and a.mate_is_unmapped and not a.is_proper_pair
    assert a.next_reference_name == "chr2" and a.next_reference_start == a.reference_start
    assert b.is_unmapped and not b.mate_is_unmapped
    assert (b.reference_name, b.reference_start) == ("chr2", 30_000)  # placed at its mate
    assert b.next_reference_start == 30_000 and b.template_length == 0 and b.mapping_quality == 0
    assert b.get_tag("MC") == a.cigarstring and not a.has_tag("MC")
    assert b.query_sequence == junk


def test_interleaved_equals_two_files(data_dir, tmp_path):
    r1 = list(read_fastx(str(data_dir / "reads_1.fq")))
    r2 = list(read_fastx(str(data_dir / "reads_2.fq")))
    with open(tmp_path / "il.fq", "w") as fh:
        for a, b in zip(r1, r2):
            fh.write(f"@{a.name}\n{a.seq}\n+\n{a.qual}\n@{b.name}\n{b.seq}\n+\n{b.qual}\n")
    align_pairs(data_dir, tmp_path, out="two.sam")
    res = run_cli(["align", "--no-neural", "-p", data_dir / "ref.fa", tmp_path / "il.fq", "-o", tmp_path / "il.sam"])
    assert res.returncode == 0, res.stderr

    def body(p):
        return [l for l in open(p) if not l.startswith("@PG")]

    assert body(tmp_path / "il.sam") == body(tmp_path / "two.sam")


@pytest.mark.parametrize("neural", [False, True])
def test_deterministic_across_threads(data_dir, tmp_path, neural):
    """Several batches (-K 300: 150 pairs each); the insert size comes from the first."""
    outs = []
    for workers in (["-t", 1], ["-t", 2], ["-t", 1], ["-t", 2, "--processes"]):
        args = ["align", *([] if neural else ["--no-neural"]), *workers, "-K", 300, data_dir / "ref.fa", data_dir / "reads_1.fq", data_dir / "reads_2.fq"]
        res = run_cli(args)
        assert res.returncode == 0, res.stderr
        outs.append("\n".join(l for l in res.stdout.splitlines() if not l.startswith("@PG")))
    assert outs[0] == outs[1] == outs[2] == outs[3]
    assert len(outs[0].splitlines()) == 4 + 2000


@pytest.mark.parametrize("neural", [False, True])
def test_insert_estimated_over_several_batches(data_dir, tmp_path, neural):
    """-K 20 (10 pairs a batch, 25 uniquely seeded pairs needed): the estimate is completed by
    the third batch or a later one, whose pairs and all after are paired with it; the batches
    before it place their mates on their own. The same whatever the workers, which map every
    batch at once (the estimate is made from the seeds first)."""
    outs = []
    for workers in (["-t", 1], ["-t", 2], ["-t", 2, "--processes"]):
        args = ["align", *([] if neural else ["--no-neural"]), *workers, "-K", 20, data_dir / "ref.fa",
                data_dir / "reads_1.fq", data_dir / "reads_2.fq", "-o", tmp_path / "pe.sam"]
        res = run_cli(args)
        assert res.returncode == 0, res.stderr
        assert "estimated from" in res.stderr
        outs.append([l for l in open(tmp_path / "pe.sam") if not l.startswith("@PG")])
    assert outs[0] == outs[1] == outs[2]
    with pysam.AlignmentFile(str(tmp_path / "pe.sam"), check_sq=False) as fh:
        recs = [r for r in fh]
    first_batch, rest = recs[:20], recs[20:]
    assert not any(r.is_proper_pair for r in first_batch)  # no estimate yet: no proper pairs
    assert sum(r.is_proper_pair for r in rest) > 0.9 * len(rest)

def test_bam_output_sorted_indexed(data_dir, tmp_path):
    align_pairs(data_dir, tmp_path, out="pe.bam")
    with pysam.AlignmentFile(str(tmp_path / "pe.bam")) as fh:
        assert fh.header["HD"]["SO"] == "coordinate"
        assert fh.count("chr1") > 0  # the index works
    assert os.path.exists(tmp_path / "pe.bam.bai")


def test_too_few_pairs_reported_and_I_overrides(data_dir, tmp_path):
    r1 = list(read_fastx(str(data_dir / "reads_1.fq")))[:10]
    r2 = list(read_fastx(str(data_dir / "reads_2.fq")))[:10]
    fastq(tmp_path / "a.fq", [(r.name, r.seq) for r in r1])
    fastq(tmp_path / "b.fq", [(r.name, r.seq) for r in r2])
    res = align_pairs(data_dir, tmp_path, [], tmp_path / "a.fq", tmp_path / "b.fq")
    assert "too few uniquely placed pairs" in res.stderr
    assert not any(r.is_proper_pair for r in by_mate(tmp_path / "pe.sam").values())
    res = align_pairs(data_dir, tmp_path, ["-I", "400,50"], tmp_path / "a.fq", tmp_path / "b.fq")
    assert "given with -I" in res.stderr
    assert sum(r.is_proper_pair for r in by_mate(tmp_path / "pe.sam").values()) >= 18


def test_bad_pairs_are_clean_errors(data_dir, tmp_path):
    recs = list(read_fastx(str(data_dir / "reads_1.fq")))[:5]
    mates = list(read_fastx(str(data_dir / "reads_2.fq")))[:5]
    fastq(tmp_path / "a.fq", [(r.name, r.seq) for r in recs])
    fastq(tmp_path / "b4.fq", [(r.name, r.seq) for r in mates[:4]])
    fastq(tmp_path / "bswap.fq", [(r.name, r.seq) for r in mates[:2] + [mates[3], mates[2]] + mates[4:]])
    ref = data_dir / "ref.fa"
    out = tmp_path / "out.bam"
    res = run_cli(["align", ref, tmp_path / "a.fq", tmp_path / "b4.fq", "-o", out])
    assert_clean_error(res, "a.fq", "b4.fq", "different lengths")
    res = run_cli(["align", ref, tmp_path / "a.fq", tmp_path / "bswap.fq", "-o", out])
    assert_clean_error(res, "a.fq", "bswap.fq", "record 3", "mate names differ")
    assert not os.path.exists(out)
    fastq(tmp_path / "odd.fq", [(r.name, r.seq) for r in (recs[0], mates[0], recs[1], mates[1], recs[2])])
    res = run_cli(["align", "-p", ref, tmp_path / "odd.fq"])
    assert_clean_error(res, "odd.fq", "no mate")
    assert res.stdout == ""
    res = run_cli(["align", ref, tmp_path / "a.fq", tmp_path / "missing.fq"])
    assert_clean_error(res, "missing.fq")
    res = run_cli(["align", "-I", "abc", ref, tmp_path / "a.fq", tmp_path / "a.fq"])
    assert_clean_error(res, "-I")
    res = run_cli(["align", ref, tmp_path / "a.fq", tmp_path / "a.fq"])
    assert_clean_error(res, "both mate files")
    res = run_cli(["align", "-p", ref, tmp_path / "a.fq", tmp_path / "a.fq"])
    assert res.returncode == 2 and "Traceback" not in res.stderr


def test_insert_estimate_ignores_outliers():
    rng = np.random.default_rng(0)
    ins = np.concatenate([rng.normal(400, 50, 1000), [5000, 9000, 7000]]).astype(np.int64)
    m = estimate_insert(ins)
    assert abs(m.mean - 400) < 5 and abs(m.std - 50) < 5 and 990 <= m.pairs <= 1000  # the 3 outliers dropped
    assert estimate_insert(ins[:10]) is None
    assert parse_insert("300").std == 30.0
    with pytest.raises(NeuromapError):
        parse_insert("-5,1")


def test_joint_posterior_marginals():
    """Mate A unique; mate B has two equal copies, one concordant: B follows A with high P;
    without the concordant copy it stays a coin toss."""
    model = InsertModel(400.0, 50.0, 100)
    valid = np.array([[True, False], [True, True]])
    log_p = np.array([[0.0, -np.inf], [0.0, 0.0]])
    start = np.array([[1000, 0], [1250, 90_000]])
    reverse = np.array([[False, False], [True, True]])
    contig = np.zeros((2, 2), dtype=np.int32)
    lengths = np.array([150, 150])
    c = choose_pairs(log_p, valid, start, reverse, contig, lengths, np.zeros(2, np.int64), np.zeros(2, np.int64), np.array([1.0, 0.5]), ["x", "x"], model, 1_000_000)
    assert c.chosen.tolist() == [0, 0]
    assert c.p[1] > 0.9999 and c.p[0] > 0.9999
    start[1, 0] = 50_000  # now neither copy is concordant
    c = choose_pairs(log_p, valid, start, reverse, contig, lengths, np.zeros(2, np.int64), np.zeros(2, np.int64), np.array([1.0, 0.5]), ["x", "x"], model, 1_000_000)
    assert abs(c.p[1] - 0.5) < 1e-9 and c.p[0] > 0.9999


def test_pairs_with_one_placement_per_mate():
    """One placement per mate and nothing unscored: that pair is chosen with P = 1 whatever its
    insert (the shortcut gives what the joint posterior gives); an unscored placement beyond -N
    sends it through the posterior, where it costs that mate confidence (not its partner)."""
    model = InsertModel(400.0, 50.0, 100)
    # pair 0: lone mates in slot 1 (discordant); pair 1: mate 2 has two equal copies
    valid = np.array([[False, True], [True, False], [False, True], [True, True]])
    log_p = np.where(valid, 0.0, -np.inf)
    start = np.array([[0, 1000], [5000, 0], [0, 70_000], [5250, 60_000]])
    reverse = np.array([[False, False], [False, False], [False, True], [True, True]])
    contig = np.zeros((4, 2), dtype=np.int32)
    lengths = np.full(4, 150)
    args = (start, reverse, contig, lengths)
    c = choose_pairs(log_p, valid, *args, np.zeros(4, np.int64), np.zeros(4, np.int64), np.full(4, 0.5), list("abab"), model, 1_000_000)
    assert c.chosen.tolist() == [1, 0, 1, 0]
    assert c.p[0] == 1.0 and c.p[2] == 1.0
    assert c.p[1] > 0.9999 and c.p[3] > 0.9999
    extra = np.array([3, 0, 0, 0])
    c = choose_pairs(log_p, valid, *args, extra, np.zeros(4, np.int64), np.full(4, 0.5), list("abab"), model, 1_000_000)
    assert c.chosen.tolist() == [1, 0, 1, 0]
    assert 0.2 < c.p[0] < 0.3  # one of four equally likely placements
    assert c.p[2] == 1.0  # every combination puts its partner where it is: its only placement


def test_stats_and_summary_report_proper_pairs(data_dir, tmp_path):
    import json

    res = align_pairs(data_dir, tmp_path, ["--stats", tmp_path / "s.json"])
    stats = json.loads((tmp_path / "s.json").read_text())
    assert stats["reads"] == stats["paired"] == 2000
    assert stats["properly_paired"] == sum(r.is_proper_pair for r in by_mate(tmp_path / "pe.sam").values())
    assert stats["properly_paired_pct"] > 99
    assert "% properly paired" in res.stderr


def test_choose_pairs_counts_unscored_placements_of_both_mates_against_both():
    """Both mates have unscored placements (a tandem array longer than the fragment): the scored
    ones pair only at the chosen combination, but the unscored ones can pair with each other, so
    neither mate is sure (before: P about 1 for both)."""
    model = InsertModel(400.0, 50.0, 100)
    valid = np.array([[True, True], [True, True]])
    log_p = np.zeros((2, 2))
    start = np.array([[10_000, 5_000], [10_250, 2_000]])  # only (slot 0, slot 0) is concordant
    reverse = np.array([[False, False], [True, True]])
    contig = np.zeros((2, 2), dtype=np.int32)
    lengths = np.array([150, 150])
    args = (log_p, valid, start, reverse, contig, lengths)
    rest = (np.zeros(2, np.int64), np.full(2, 0.5), ["x", "x"], model, 1_000_000)
    c = choose_pairs(*args, np.array([0, 0]), *rest)
    assert c.chosen.tolist() == [0, 0] and c.p.min() > 0.9999
    c = choose_pairs(*args, np.array([40, 0]), *rest)  # one mate's extras: its partner decides
    assert c.p[1] > 0.99
    c = choose_pairs(*args, np.array([40, 60]), *rest)
    assert c.chosen.tolist() == [0, 0]
    assert 1 / 45 < c.p[0] < 1 / 38 and 1 / 45 < c.p[1] < 1 / 38  # 40 more concordant combinations


@pytest.mark.parametrize("neural", [[], ["--no-neural"]])
def test_pairs_inside_tandem_array_get_low_mapq(tmp_path, neural):
    """Fragments inside a 3 kb array of a 13-bp unit: each mate has about 200 equally good
    placements, far more than -N scores, and rescue adds weaker ones; no mate may claim its
    placement (before: MAPQ up to 4 here, and 38 for a wrongly placed mate in the benchmark)."""
    rng = np.random.default_rng(7)
    bases = np.array(list("ACGT"))
    unit = "".join(rng.choice(bases, 13))
    flank = lambda: "".join(rng.choice(bases, 20_000))  # noqa: E731
    ref = flank() + unit * 231 + flank()
    (tmp_path / "ref.fa").write_text(f">chr\n{ref}\n")
    r1, r2 = [], []
    for k, lo in enumerate(range(20_000, 20_000 + 13 * 231 - 400, 37)):
        frag = ref[lo : lo + 400]
        mate2 = list(reverse_complement(frag[-150:]))
        for i in rng.choice(150, 2, replace=False):  # two sequencing errors
            mate2[i] = "A" if mate2[i] != "A" else "C"
        r1.append((f"p{k}", frag[:150]))
        r2.append((f"p{k}", "".join(mate2)))
    fastq(tmp_path / "r1.fq", r1)
    fastq(tmp_path / "r2.fq", r2)
    res = run_cli(["align", *neural, "-I", "400,50", tmp_path / "ref.fa", tmp_path / "r1.fq", tmp_path / "r2.fq", "-o", tmp_path / "o.sam"])
    assert res.returncode == 0, res.stderr
    recs = by_mate(tmp_path / "o.sam")
    assert len(recs) == 2 * len(r1)
    assert max(rec.mapping_quality for rec in recs.values()) <= 3


def _odd_pairs(data_dir, kind: str) -> tuple[bytes, bytes | None]:
    """test-data's 1,000 pairs, made odd (valid or not): (mate 1 file, mate 2 file), or
    (interleaved file, None)."""
    one, two = ((data_dir / f"reads_{i}.fq").read_bytes().split(b"\n")[:-1] for i in (1, 2))
    join = lambda lines: b"\n".join(lines) + b"\n"  # noqa: E731
    if kind == "plain":
        return join(one), join(two)
    if kind == "crlf-second":
        return join(one), b"".join(line + b"\r\n" for line in two)
    if kind == "name-mismatch-late":
        two[4 * 777] = b"@other/2"
        return join(one), join(two)
    if kind == "second-shorter":
        return join(one), join(two[: 4 * 900])
    if kind == "bad-base-second-late":
        two[4 * 640 + 1] = b"1" + two[4 * 640 + 1][1:]
        return join(one), join(two)
    if kind == "bad-both-mismatch-first":  # a name mismatch at pair 300, a bad base in mate 1 of pair 800
        two[4 * 299] = b"@other/2"
        one[4 * 799 + 1] = b"1" + one[4 * 799 + 1][1:]
        return join(one), join(two)
    interleaved = [line for i in range(0, len(one), 4) for line in one[i : i + 4] + two[i : i + 4]]
    if kind == "interleaved":
        return join(interleaved), None
    if kind == "interleaved-odd":
        return join(interleaved[:-4]), None
    if kind == "interleaved-mismatch-late":
        interleaved[8 * 555 + 4] = b"@other/2"
        return join(interleaved), None
    raise ValueError(kind)


@pytest.mark.parametrize("kind", ["plain", "crlf-second", "name-mismatch-late", "second-shorter", "bad-base-second-late",
                                  "bad-both-mismatch-first", "interleaved", "interleaved-odd", "interleaved-mismatch-late"])
def test_processes_read_odd_pairs_as_one_process_does(data_dir, tmp_path, kind):
    """The workers parse and pair the mates themselves (the calling thread only cuts the files
    into batches): the pairs that the record-by-record readers (read_pairs, read_interleaved)
    give, the same SAM with one worker and with worker processes, and for bad input the readers'
    one-line error (the first one they meet)."""
    from neuromap.errors import NeuromapError
    from neuromap.io.fastx import read_interleaved, read_pairs

    first, second = _odd_pairs(data_dir, kind)
    (tmp_path / "r1.fq").write_bytes(first)
    files = [tmp_path / "r1.fq"]
    if second is not None:
        (tmp_path / "r2.fq").write_bytes(second)
        files.append(tmp_path / "r2.fq")
    try:
        pairs = read_pairs(str(files[0]), str(files[1])) if second is not None else read_interleaved(str(files[0]))
        expected = [name for r1, r2 in pairs for name in (r1.name, r2.name)]
    except NeuromapError as exc:
        expected = f"neuromap: error: {exc}"
    mode = [] if second is not None else ["-p"]
    runs = [run_cli(["align", "--no-neural", *mode, *workers, "-I", "400,50", "-K", "300", data_dir / "ref.fa", *files])
            for workers in (["-t", "1"], ["-t", "2", "--processes"])]
    one, processes = runs
    assert one.returncode == processes.returncode, (one.stderr, processes.stderr)
    if one.returncode == 0:
        assert kind in ("plain", "crlf-second", "interleaved")
        assert processes.stdout.split("\n@PG")[0] == one.stdout.split("\n@PG")[0]
        assert [l for l in processes.stdout.splitlines() if l[:1] != "@"] == [l for l in one.stdout.splitlines() if l[:1] != "@"]
        assert [l.split("\t")[0] for l in one.stdout.splitlines() if l[:1] != "@"] == expected and len(expected) == 2000
    else:
        error = [line for line in processes.stderr.splitlines() if line.startswith("neuromap: error:")]
        assert len(error) == 1 and "Traceback" not in processes.stderr
        assert error == [line for line in one.stderr.splitlines() if line.startswith("neuromap: error:")] == [expected]
