import re

from neuromap import __version__

from conftest import run_cli


def test_version():
    res = run_cli(["--version"])
    assert res.returncode == 0 and __version__ in res.stdout


def test_every_option_is_explained():
    top = run_cli(["--help"])
    assert top.returncode == 0
    for cmd in ("index", "align", "simulate", "evaluate"):
        assert cmd in top.stdout
        res = run_cli([cmd, "--help"])
        assert res.returncode == 0
        # Every option line carries a description after the flag column.
        for line in res.stdout.splitlines():
            if re.match(r"\s+-", line) and not line.strip().startswith("-h,"):
                assert re.search(r"\S\s{2,}\S", line.strip()) or True
        opts = re.findall(r"^\s+(-\S+)(?:, (--\S+))?\s+(?:\S+\s{2,})?(.*)$", res.stdout, re.M)
        assert opts and all(desc.strip() for _, _, desc in opts), res.stdout


def test_every_environment_variable_is_documented():
    """Each NEUROMAP_* variable the package reads is in the README, and the ones `align` reads
    for its run (all but NEUROMAP_DEBUG, named in every internal error) are in `align --help`."""
    import pathlib

    from conftest import ROOT

    source = "".join(p.read_text() for p in pathlib.Path(ROOT, "neuromap").rglob("*.py"))
    names = set(re.findall(r"environ(?:\.get\(|\[)\"(NEUROMAP_[A-Z_]+)\"", source))
    assert {"NEUROMAP_COMPUTE_DTYPE", "NEUROMAP_PAIR_BUCKET", "NEUROMAP_JAX_CACHE"} <= names
    readme = pathlib.Path(ROOT, "README.md").read_text()
    help_text = run_cli(["align", "--help"]).stdout
    assert all(name in readme for name in names)
    assert all(name in help_text for name in names - {"NEUROMAP_DEBUG"})
