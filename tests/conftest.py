import os
import shutil
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TEST_DATA = os.path.join(ROOT, "test-data")


def pytest_addoption(parser):
    parser.addoption("--runslow", action="store_true", default=False, help="run tests marked slow")


def pytest_collection_modifyitems(config, items):
    if config.getoption("--runslow"):
        return
    skip = pytest.mark.skip(reason="slow: pass --runslow to run")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory):
    """A private copy of test-data/ (reference, reads, truth) with its index built once."""
    d = tmp_path_factory.mktemp("data")
    for name in ("ref.fa", "reads.fq", "truth.tsv", "reads_1.fq", "reads_2.fq", "truth_pairs.tsv"):
        shutil.copy(os.path.join(TEST_DATA, name), d / name)
    res = run_cli(["index", str(d / "ref.fa")])
    assert res.returncode == 0, res.stderr
    return d


def run_cli(args, input=None, cwd=None, **kw):
    """Run the real `neuromap` command line in a subprocess."""
    return subprocess.run(
        [sys.executable, "-m", "neuromap", *map(str, args)],
        input=input,
        capture_output=True,
        text=isinstance(input, str) or input is None,
        cwd=cwd,
        **kw,
    )


def assert_clean_error(res, *needles):
    """A one-line message on stderr naming what went wrong, non-zero exit, no traceback."""
    assert res.returncode != 0
    err = res.stderr if isinstance(res.stderr, str) else res.stderr.decode()
    assert "Traceback" not in err, err
    lines = [l for l in err.strip().splitlines() if l.startswith("neuromap: error:")]
    assert len(lines) == 1, err
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])


def descendants(pid: int) -> dict[int, int]:
    """The processes below `pid` (Linux, from /proc), each with its parent: `align --processes`
    starts the network's process and multiprocessing's fork server, and the fork server forks the
    workers."""
    parent_of = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as fh:
                    parent_of[int(entry)] = int(fh.read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                pass
    found, frontier = {}, [pid]
    while frontier:
        parent = frontier.pop()
        for child, its_parent in parent_of.items():
            if its_parent == parent and child not in found:
                found[child] = parent
                frontier.append(child)
    return found


def pids_whose_args(wanted) -> list[int]:
    """The pids of the processes whose command line (its arguments, a list) `wanted` accepts (Linux, from /proc)."""
    pids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/cmdline", "rb") as fh:
                    args = fh.read().decode(errors="replace").split("\0")
            except OSError:
                continue
            if wanted(args):
                pids.append(int(entry))
    return pids


def worker_pids(pid: int) -> list[int]:
    """The worker processes of the `align --processes` run `pid`: those its fork server forked."""
    return sorted(child for child, parent in descendants(pid).items() if parent != pid)
