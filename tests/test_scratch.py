"""neuromap.scratch: temporary folders beside an output are gone however the process ends (short
of SIGKILL), also when it is interrupted between making one and the code that would remove it."""

import os
import subprocess
import sys
import textwrap


def run_python(code: str, cwd) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=cwd, capture_output=True, text=True)


def test_a_folder_left_by_an_interruption_is_removed_at_exit(tmp_path):
    res = run_python("""
        from neuromap import scratch
        path = scratch.make(".", "out.bam.tmp-")
        open(path + "/part", "w").write("x")
        print(path)
        raise KeyboardInterrupt  # before anything removes it
    """, tmp_path)
    assert res.returncode != 0 and "KeyboardInterrupt" in res.stderr
    made = res.stdout.strip()
    assert os.path.basename(made).startswith("out.bam.tmp-") and len(os.path.basename(made)) == len("out.bam.tmp-") + 16
    assert list(tmp_path.iterdir()) == []


def test_removed_and_forgotten_folders_and_a_forked_child(tmp_path):
    """remove() takes it away at once; a folder moved into place and forgotten stays; a forked
    child that exits leaves its parent's folders alone."""
    res = run_python("""
        import os
        from neuromap import scratch
        gone = scratch.make(".", "a.tmp-")
        scratch.remove(gone)
        assert not os.path.exists(gone)
        kept = scratch.make(".", "b.tmp-")
        os.rename(kept, "b.final")
        scratch.forget(kept)
        live = scratch.make(".", "c.tmp-")
        pid = os.fork()
        if pid == 0:
            import sys
            sys.exit(0)  # the child's atexit runs, and must leave the parent's folder
        os.waitpid(pid, 0)
        assert os.path.isdir(live)
        print("ok")
    """, tmp_path)
    assert res.returncode == 0 and res.stdout.strip() == "ok", res.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b.final"]
