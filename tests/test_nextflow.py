"""The Nextflow module, checked without Nextflow (not installable here): its structure follows
nf-core, and every option its script and stub use exists in the CLI it calls."""

import os
import re

import yaml

from conftest import ROOT, run_cli

MODULE = os.path.join(ROOT, "workflows", "nextflow", "modules", "neuromap", "align")


def main_nf():
    return open(os.path.join(MODULE, "main.nf")).read()


def block(text, name):
    m = re.search(rf"^\s*{name}:\s*\n(.*?)(?=^\s*(input|output|when|script|stub):\s*$|\Z)", text, re.S | re.M)
    assert m, name
    return m.group(1)


def test_module_shape():
    text = main_nf()
    assert re.search(r"process NEUROMAP_ALIGN \{", text)
    assert text.count("{") == text.count("}")
    inputs = block(text, "input")
    assert "tuple val(meta), path(reads)" in inputs and "path(reference)" in inputs
    outputs = block(text, "output")
    for emit in ("bam", "bai", "versions"):
        assert re.search(rf"emit: {emit}\b", outputs)
    script = block(text, "script")
    assert "task.ext.args" in script and "task.ext.prefix" in script and "versions.yml" in script
    stub = block(text, "stub")
    assert "touch ${prefix}.bam" in stub and "touch ${prefix}.bam.bai" in stub and "versions.yml" in stub


def test_script_uses_only_real_cli_options():
    script = block(main_nf(), "script")
    command = script[script.index("neuromap align") : script.index("cat <<-END_VERSIONS")]
    used = set(re.findall(r"(?<![\w-])(-{1,2}[A-Za-z][\w-]*)", command))
    help_text = run_cli(["align", "--help"]).stdout
    for option in used:
        assert re.search(rf"(^|[\s,]){re.escape(option)}[\s,]", help_text, re.M), option
    # The version line parses what `neuromap --version` prints.
    version = run_cli(["--version"]).stdout.strip()
    assert re.sub(r"^neuromap, version ", "", version) != version


def test_meta_environment_and_tests_files():
    meta = yaml.safe_load(open(os.path.join(MODULE, "meta.yml")))
    assert meta["name"] == "neuromap_align"
    assert [list(x.keys())[0] for x in meta["output"]] == ["bam", "bai", "versions"]
    env = yaml.safe_load(open(os.path.join(MODULE, "environment.yml")))
    assert "bioconda" in env["channels"] and any("neuromap" in d for d in env["dependencies"])
    nf_test = open(os.path.join(MODULE, "tests", "main.nf.test")).read()
    assert 'process "NEUROMAP_ALIGN"' in nf_test and "-stub" in nf_test
    assert "paired-end reads" in nf_test and "reads_2.fq" in nf_test
    pipeline = open(os.path.join(ROOT, "workflows", "nextflow", "main.nf")).read()
    assert "include { NEUROMAP_ALIGN }" in pipeline and "fromFilePairs" in pipeline


def test_script_command_with_two_read_files_is_a_valid_paired_run(data_dir, tmp_path):
    """Nextflow expands `$reads` of a two-file sample to "R1 R2": run the module's command line
    as Nextflow would render it and check the BAM is paired."""
    import pysam

    script = block(main_nf(), "script")
    command = script[script.index("neuromap align") : script.index("cat <<-END_VERSIONS")]
    # Groovy's "\\" is one backslash in the rendered bash script.
    rendered = command.replace("\\\\", "\\").replace("\\\n", " ")
    for var, value in (("$task.cpus", "1"), ("${prefix}", "s1"), ("${meta.id}", "s1"), ("$args", "--no-neural"),
                       ("$reference", str(data_dir / "ref.fa")), ("$reads", f"{data_dir / 'reads_1.fq'} {data_dir / 'reads_2.fq'}")):
        rendered = rendered.replace(var, value)
    import shlex

    argv = shlex.split(rendered)
    assert argv[:2] == ["neuromap", "align"]
    res = run_cli(argv[1:], cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    with pysam.AlignmentFile(str(tmp_path / "s1.bam")) as fh:
        recs = list(fh)
        assert fh.header["RG"][0]["ID"] == "s1"
    assert len(recs) == 2000 and all(r.is_paired for r in recs)
