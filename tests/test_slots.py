"""Batches to and from worker processes through shared memory (neuromap.slots)."""

import sys

import pytest

from neuromap.io.fastx import RawBatch, RawPairs, read_fastx
from neuromap.slots import BatchSlots, InSlot, OutSlot, put_text, take_batch

from conftest import run_cli

pytestmark = pytest.mark.skipif(not BatchSlots.available(), reason="needs memfd_create and /proc (Linux)")


def fastq(names, length=40):
    return b"".join(b"@%s\n%s\n+\n%s\n" % (n, b"ACGT" * (length // 4), b"I" * length) for n in names)


def test_a_batch_and_its_text_travel_through_a_slot():
    first = RawBatch("r.fq", fastq([b"a", b"b"]), 10, 40, 2)
    slots = BatchSlots(4, first, reads=2)
    try:
        later = RawBatch("r.fq", fastq([b"c", b"d", b"e"]), 12, 48, 3)
        packed = slots.send(3, later)
        assert isinstance(packed, InSlot) and packed.batch.data == b"" and packed.lengths == (len(later.data),)
        assert take_batch(packed) == later  # in a worker: the same batch, field for field
        text = b"c\t4\t*\t0\t0\t*\t*\t0\t0\tACGT\tIIII\n"
        answer = put_text(packed, text)
        assert answer == OutSlot(3, len(text))
        assert slots.receive(answer) == text
        # A slot's input and its text do not overlap, nor do two slots.
        other = slots.send(2, first)
        assert take_batch(other) == first and slots.receive(answer) == text
    finally:
        slots.close()


@pytest.mark.parametrize("interleaved", [False, True])
def test_pairs_travel_as_both_files_parts(interleaved):
    one = RawBatch("1.fq", fastq([b"p/1", b"q/1"]), 0, 0, 2)
    two = None if interleaved else RawBatch("2.fq", fastq([b"p/2", b"q/2"], length=60), 0, 0, 2)
    pairs = RawPairs(one, two, ("1.fq",) if interleaved else ("1.fq", "2.fq"), 7)
    slots = BatchSlots(2, pairs, reads=4)
    try:
        packed = slots.send(1, pairs)
        assert isinstance(packed, InSlot) and take_batch(packed) == pairs
    finally:
        slots.close()


def test_what_does_not_fit_goes_as_it_is():
    """A batch or a text bigger than the slots (sized from the first batch) is not cut or lost:
    it travels through the pipes as before."""
    slots = BatchSlots(2, RawBatch("r.fq", fastq([b"a"]), 0, 0, 1), reads=1)
    try:
        big = RawBatch("r.fq", fastq([b"long%d" % i for i in range(100)], length=20_000), 1, 4, 100)
        assert len(big.data) > slots.spec.in_size
        assert slots.send(0, big) is big
        small = slots.send(1, RawBatch("r.fq", fastq([b"b"]), 1, 4, 1))
        huge = b"x" * (slots.spec.out_size + 1)
        assert put_text(small, huge) is huge and slots.receive(huge) is huge
    finally:
        slots.close()


def test_processes_with_reads_outgrowing_the_slots(data_dir, tmp_path):
    """--processes, short reads first (which size the slots), then batches of reads 60 x longer
    that no longer fit: the same SAM as one process gives."""
    chr1 = next(r.seq for r in read_fastx(str(data_dir / "ref.fa")) if r.name == "chr1")
    short = [(b"s%d" % i, chr1[i * 97 : i * 97 + 50].encode()) for i in range(400)]
    long = [(b"l%d" % i, chr1[i * 131 : i * 131 + 3000].encode()) for i in range(300)]
    reads = tmp_path / "mixed.fq"
    reads.write_bytes(b"".join(b"@%s\n%s\n+\n%s\n" % (n, s, b"F" * len(s)) for n, s in short + long))
    outs = []
    for workers in (["-t", "1"], ["-t", "2", "--processes"]):
        res = run_cli(["align", "--no-neural", *workers, "-K", "400", data_dir / "ref.fa", reads])
        assert res.returncode == 0, res.stderr
        outs.append([l for l in res.stdout.splitlines() if not l.startswith("@PG")])
    assert outs[0] == outs[1]
    assert len([l for l in outs[0] if not l.startswith("@")]) == 700
    assert sum(l.split("\t")[5] == "3000M" for l in outs[0] if not l.startswith("@")) > 250  # the long reads aligned


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux only")
def test_the_shared_memory_is_gone_with_the_run():
    """The mapping is a memfd: nothing is left in /dev/shm or a temporary folder, whatever the
    run's end, and closing it frees it."""
    slots = BatchSlots(2, RawBatch("r.fq", fastq([b"a"]), 0, 0, 1), reads=1)
    path = slots.spec.path
    slots.close()
    with pytest.raises(FileNotFoundError):
        open(path, "rb")
