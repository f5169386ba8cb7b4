"""Batches to and from worker processes through shared memory instead of pipes.

With `align --processes` the main process hands each batch of FASTQ bytes to a worker and takes
its SAM text back, in input order. Through the pool's pipes each batch costs the main process a
pickling, a feeder thread's writes in 64 KB pieces and as many wake-ups, then the same again
for the SAM coming back; on 16 cores that kept the main process saturated (benchmarks/README.md).
Here the main process copies a batch into a slot of one shared in-memory file (a memfd, which
the workers open through /proc) and sends only where it lies; the worker writes its SAM into the
same slot and answers with its length. Each side copies with pread/pwrite rather than mapping
the file: one copy either way, and the pages then count in no process's RSS (mapped, every
worker would show every slot it ever touched, though they are in memory once).

Slot `b % count` carries batch b: align_records has at most 2 x threads batches in flight and
takes each batch's SAM out of its slot before it sends the next batch, so `count` = 2 x threads
slots are never written twice while in use. A batch or a SAM text too big for its slot (reads far
longer than the first batch's) goes through the pipes as before, as does everything where memfd
is not available (not Linux).
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass

from neuromap.io.fastx import RawBatch, RawPairs


@dataclass(frozen=True)
class SlotSpec:
    """Where the shared file is (a path any process of ours can open) and how it is cut."""

    path: str
    count: int
    in_size: int  # bytes for a batch's FASTQ
    out_size: int  # bytes for its SAM text

    def offset(self, slot: int) -> int:
        return slot * (self.in_size + self.out_size)


@dataclass(frozen=True)
class InSlot:
    """A batch (RawBatch or RawPairs) whose data was left in slot `slot`: `lengths` bytes for each
    file's part, in order."""

    spec: SlotSpec
    slot: int
    lengths: tuple[int, ...]
    batch: RawBatch | RawPairs


@dataclass(frozen=True)
class OutSlot:
    """A batch's SAM text, `length` bytes in slot `slot`."""

    slot: int
    length: int


def _parts(batch: RawBatch | RawPairs) -> list[bytes]:
    if isinstance(batch, RawBatch):
        return [batch.data]
    return [batch.first.data] + ([] if batch.second is None else [batch.second.data])


def _with_parts(batch: RawBatch | RawPairs, parts: list[bytes]) -> RawBatch | RawPairs:
    if isinstance(batch, RawBatch):
        return dataclasses.replace(batch, data=parts[0])
    second = None if batch.second is None else dataclasses.replace(batch.second, data=parts[1])
    return dataclasses.replace(batch, first=dataclasses.replace(batch.first, data=parts[0]), second=second)


def _emptied(batch: RawBatch | RawPairs) -> RawBatch | RawPairs:
    return _with_parts(batch, [b""] * len(_parts(batch)))


class BatchSlots:
    """The main process's side: `count` slots, sized from the first batch sent."""

    def __init__(self, count: int, first: RawBatch | RawPairs, reads: int):
        need = sum(len(p) for p in _parts(first))
        in_size = max(1 << 20, 2 * need)
        out_size = 2 * in_size + 512 * reads  # SAM adds ~150 bytes a read to the FASTQ's
        self._fd = os.memfd_create("neuromap-batches", os.MFD_CLOEXEC)
        self.spec = SlotSpec(f"/proc/{os.getpid()}/fd/{self._fd}", count, in_size, out_size)

    @staticmethod
    def available() -> bool:
        return hasattr(os, "memfd_create") and os.path.isdir(f"/proc/{os.getpid()}/fd")

    def send(self, slot: int, batch: RawBatch | RawPairs) -> InSlot | RawBatch | RawPairs:
        """`batch` as it should travel: its bytes copied into the slot, or itself where they do
        not fit."""
        parts = _parts(batch)
        if sum(len(p) for p in parts) > self.spec.in_size:
            return batch
        at = self.spec.offset(slot)
        for part in parts:
            _write_at(self._fd, part, at)
            at += len(part)
        return InSlot(self.spec, slot, tuple(len(p) for p in parts), _emptied(batch))

    def receive(self, text: OutSlot | bytes) -> bytes:
        """A worker's answer as bytes (a copy: the slot is reused once this batch is written)."""
        if not isinstance(text, OutSlot):
            return text
        return _read_at(self._fd, text.length, self.spec.offset(text.slot) + self.spec.in_size)

    def close(self) -> None:
        os.close(self._fd)


def _write_at(fd: int, data: bytes, at: int) -> None:
    view = memoryview(data)
    while view:
        written = os.pwrite(fd, view, at)
        view, at = view[written:], at + written


def _read_at(fd: int, length: int, at: int) -> bytes:
    data = os.pread(fd, length, at)
    while len(data) < length:  # a short read: not seen for an in-memory file, but allowed
        more = os.pread(fd, length - len(data), at + len(data))
        if not more:
            raise OSError(f"shared batch memory ended {length - len(data)} bytes early")
        data += more
    return data


_OPENED: dict[SlotSpec, int] = {}


def _file(spec: SlotSpec) -> int:
    """A worker's descriptor of the main process's memfd, opened on first use."""
    fd = _OPENED.get(spec)
    if fd is None:
        fd = _OPENED[spec] = os.open(spec.path, os.O_RDWR | os.O_CLOEXEC)
    return fd


def take_batch(packed: InSlot) -> RawBatch | RawPairs:
    """In a worker: the batch with its bytes read out of the slot."""
    fd, at, parts = _file(packed.spec), packed.spec.offset(packed.slot), []
    for length in packed.lengths:
        parts.append(_read_at(fd, length, at))
        at += length
    return _with_parts(packed.batch, parts)


def put_text(packed: InSlot, text: bytes) -> OutSlot | bytes:
    """In a worker: the batch's SAM text into its slot, or itself where it does not fit."""
    if len(text) > packed.spec.out_size:
        return text
    _write_at(_file(packed.spec), text, packed.spec.offset(packed.slot) + packed.spec.in_size)
    return OutSlot(packed.slot, len(text))
