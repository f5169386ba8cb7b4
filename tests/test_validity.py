"""Every kind of output neuromap writes passes Picard's ValidateSamFile and samtools quickcheck:
single-end and paired, mapped and unmapped reads and mates, read groups, SAM and BAM, network on
and off. Picard (Debian's picard-tools) is a Java program; the tests skip where it is absent. Picard
reports a file without any @RG as an error (MISSING_READ_GROUP), so every run here gives -R, as
a GATK-bound pipeline would."""

import shutil
import subprocess

import pysam
import pytest

from conftest import run_cli
from neuromap.io.fastx import read_fastx

PICARD = shutil.which("PicardCommandLine") or shutil.which("picard")
needs_picard = pytest.mark.skipif(PICARD is None, reason="picard not installed (Debian: apt-get install picard-tools)")

RG = r"@RG\tID:grp1\tSM:sample1\tPL:ILLUMINA\tLB:lib1"


def validate(path):
    res = subprocess.run([PICARD, "ValidateSamFile", f"I={path}", "MODE=VERBOSE", "IGNORE_WARNINGS=true", "MAX_OUTPUT=20"],
                         capture_output=True, text=True)
    assert res.returncode == 0 and "No errors found" in res.stdout + res.stderr, res.stdout[-3000:] + res.stderr[-3000:]


@pytest.fixture(scope="module")
def odd_pairs(data_dir, tmp_path_factory):
    """Real pairs plus pairs with one mate or both unmappable (junk, all-N, shorter than k)."""
    d = tmp_path_factory.mktemp("odd")
    r1 = list(read_fastx(str(data_dir / "reads_1.fq")))[:300]
    r2 = list(read_fastx(str(data_dir / "reads_2.fq")))[:300]
    extra = [
        ("junk2", r1[0].seq, "ACGTTTGACCATGACGGTACCAGTTGACAGTCCAGTGACAAACGTGGT" * 3),
        ("junk1", "TTTGACGGTACCAGTCAGTCAGGTTGACCAGTGACACGTACCAGTACGGG" * 3, r2[1].seq),
        ("bothn", "N" * 150, "N" * 150),
        ("short", "ACGTAC", "TTGA"),
    ]
    with open(d / "r1.fq", "w") as f1, open(d / "r2.fq", "w") as f2:
        for a, b in zip(r1, r2):
            f1.write(f"@{a.name}\n{a.seq}\n+\n{a.qual}\n")
            f2.write(f"@{b.name}\n{b.seq}\n+\n{b.qual}\n")
        for name, s1, s2 in extra:
            f1.write(f"@{name}/1\n{s1}\n+\n{'I' * len(s1)}\n")
            f2.write(f"@{name}/2\n{s2}\n+\n{'I' * len(s2)}\n")
    return d


@needs_picard
@pytest.mark.parametrize("neural", [False, True])
@pytest.mark.parametrize("ext", ["sam", "bam"])
def test_paired_output_is_valid(data_dir, odd_pairs, tmp_path, neural, ext):
    out = tmp_path / f"pe.{ext}"
    args = ["align", *([] if neural else ["--no-neural"]), "-R", RG, "-I", "400,50", data_dir / "ref.fa", odd_pairs / "r1.fq", odd_pairs / "r2.fq", "-o", out]
    res = run_cli(args)
    assert res.returncode == 0, res.stderr
    validate(out)
    pysam.quickcheck(str(out))
    recs = list(pysam.AlignmentFile(str(out), check_sq=False))
    assert len(recs) == 2 * 304
    assert any(r.is_unmapped and not r.mate_is_unmapped for r in recs)
    assert any(r.is_unmapped and r.mate_is_unmapped for r in recs)


@needs_picard
@pytest.mark.parametrize("neural", [False, True])
def test_single_end_output_is_valid(data_dir, tmp_path, neural):
    for ext in ("sam", "bam"):
        out = tmp_path / f"se.{ext}"
        args = ["align", *([] if neural else ["--no-neural"]), "-R", RG, data_dir / "ref.fa", data_dir / "reads.fq", "-o", out]
        res = run_cli(args)
        assert res.returncode == 0, res.stderr
        validate(out)
        pysam.quickcheck(str(out))


@needs_picard
def test_header_only_output_is_valid(data_dir, tmp_path):
    (tmp_path / "empty.fq").write_text("")
    (tmp_path / "empty2.fq").write_text("")
    for mates in ([], [tmp_path / "empty2.fq"]):
        out = tmp_path / "empty.bam"
        res = run_cli(["align", "--no-neural", "-R", RG, data_dir / "ref.fa", tmp_path / "empty.fq", *mates, "-o", out])
        assert res.returncode == 0, res.stderr
        validate(out)
