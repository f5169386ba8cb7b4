"""SamSink: SAM written by a thread of its own, in order, atomically, and no failed write ever
reported as a finished output."""

import os
import subprocess
import sys

import pytest

from neuromap.errors import OutputClosed
from neuromap.io.sam import SamSink


def test_everything_queued_is_written_in_order(tmp_path):
    out = tmp_path / "out.sam"
    sink = SamSink(str(out), queued=2)  # far fewer places than batches: write() waits for the thread
    chunks = [b"@HD\tVN:1.6\n"] + [b"r%d\t4\t*\t0\t0\t*\t*\t0\t0\tACGT\tIIII\n" % i * (1 + i % 50) for i in range(400)]
    for chunk in chunks:
        sink.write(chunk)
    assert not out.exists()  # only commit makes the file appear
    sink.commit()
    assert out.read_bytes() == b"".join(chunks)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.sam"]  # no temporary left


def test_a_discarded_output_leaves_nothing(tmp_path):
    sink = SamSink(str(tmp_path / "out.sam"))
    sink.write(b"@HD\tVN:1.6\n" * 1000)
    sink.discard()
    assert list(tmp_path.iterdir()) == []


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full")
def test_a_failed_write_is_an_error_not_a_finished_output():
    """stdout on a full disk (/dev/full): the thread's failed write is raised in the caller, by the
    next write or by commit, as neuromap's one-line error."""
    code = ("import sys\n"
            "from neuromap.io.sam import SamSink\n"
            "from neuromap.errors import NeuromapError\n"
            "sink = SamSink(None)\n"
            "try:\n"
            "    for _ in range(50):\n"
            "        sink.write(b'x' * 100_000)\n"
            "    sink.commit()\n"
            "except NeuromapError as exc:\n"
            "    print(exc, file=sys.stderr); sys.exit(3)\n")
    with open("/dev/full", "wb") as full:
        res = subprocess.run([sys.executable, "-c", code], stdout=full, stderr=subprocess.PIPE, text=True, timeout=60)
    assert res.returncode == 3 and res.stderr.strip() == "<stdout>: write failed: No space left on device", res.stderr


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full")
@pytest.mark.parametrize("workers", [["-t", "1"], ["-t", "2", "--processes"]])
def test_align_onto_a_full_disk_is_a_clean_error(data_dir, workers):
    with open("/dev/full", "wb") as full:
        res = subprocess.run([sys.executable, "-m", "neuromap", "align", "--no-neural", *workers, str(data_dir / "ref.fa"),
                              str(data_dir / "reads.fq")], stdout=full, stderr=subprocess.PIPE, text=True, timeout=120)
    assert res.returncode == 1 and "Traceback" not in res.stderr
    assert res.stderr.strip().splitlines() == ["neuromap: error: <stdout>: write failed: No space left on device"]


def test_closed_output_is_raised_as_output_closed():
    """A reader that has gone (EPIPE) is OutputClosed (the quiet status 141 of `| head`), raised
    by commit when the last write met it."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    sink = SamSink(None)
    with os.fdopen(write_end, "wb") as pipe:
        sink._fh = pipe  # the pipe whose reader is gone stands for stdout
        sink.write(b"x" * 1_000_000)
        with pytest.raises(OutputClosed):
            sink.commit()
