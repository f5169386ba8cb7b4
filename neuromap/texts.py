"""Texts: many short ASCII strings as slices of one buffer (a batch's read names, bases and
qualities as read; CIGARs and MDs as the kernels write them). The compiled SAM writer copies them
from there, so a batch needs no Python str per read; one is made only for a string asked for."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from neuromap import kernels


class Texts(Sequence):
    """A sequence of strings, string i being buf[start[i] : end[i]] (ASCII); indexing with an
    array or a slice gives Texts of the same buffer."""

    __slots__ = ("buf", "start", "end")

    def __init__(self, buf: np.ndarray, start: np.ndarray, end: np.ndarray):
        self.buf = buf  # uint8
        self.start = np.ascontiguousarray(start, dtype=np.int64)  # text i is buf[start[i] : end[i]]
        self.end = np.ascontiguousarray(end, dtype=np.int64)

    def __len__(self) -> int:
        return len(self.start)

    def __getitem__(self, i):
        if isinstance(i, (slice, np.ndarray, list)):  # several: a Texts of the same buffer
            return self.take(i)
        return self.buf[self.start[i] : self.end[i]].tobytes().decode("ascii")

    def __eq__(self, other) -> bool:
        return isinstance(other, Sequence) and list(self) == list(other)

    __hash__ = None  # mutable, like a list

    def __repr__(self) -> str:
        return f"Texts({list(self)!r})"

    def take(self, rows: np.ndarray) -> "Texts":
        return Texts(self.buf, self.start[rows], self.end[rows])

    @staticmethod
    def of(strings: list[str]) -> "Texts":
        """ASCII strings (none holding a newline) as Texts of one buffer."""
        buf = np.frombuffer(("\n".join(strings) + "\n").encode("ascii"), np.uint8) if strings else np.zeros(0, np.uint8)
        lengths = np.fromiter(map(len, strings), dtype=np.int64, count=len(strings))
        end = np.cumsum(lengths + 1) - 1
        return Texts(buf, end - lengths, end)

    @staticmethod
    def rows(buf: np.ndarray, lengths: np.ndarray) -> "Texts":
        """Row r's first lengths[r] bytes of a (rows, width) uint8 array (a kernel's text output,
        rows as wide as the longest text could be), copied into a buffer of their own."""
        lengths = np.ascontiguousarray(lengths, dtype=np.int64)
        rows, width = buf.shape
        if len(lengths) != rows or (rows and not 0 <= lengths.min() <= lengths.max() <= width):
            raise ValueError(f"Texts.rows: lengths of {len(lengths)} texts for ({rows}, {width}) bytes")
        end = np.cumsum(lengths)
        out = np.empty(int(end[-1]) if rows else 0, dtype=np.uint8)
        kernels.call("nm_pack_rows", np.ascontiguousarray(buf, dtype=np.uint8), rows, width, lengths, out)
        return Texts(out, end - lengths, end)

    @staticmethod
    def gather(n: int, default: str, parts: list[tuple[np.ndarray, "Texts"]]) -> "Texts":
        """n strings: `default`, except at the rows of each (rows, texts) part, which take its
        texts in order (a later part wins a row). The parts' buffers are joined, not their texts
        copied one by one."""
        bufs = [np.frombuffer(default.encode("ascii"), np.uint8)]
        start, end = np.zeros(n, np.int64), np.full(n, len(bufs[0]), np.int64)
        offset = len(bufs[0])
        for rows, texts in parts:
            start[rows], end[rows] = texts.start + offset, texts.end + offset
            bufs.append(texts.buf)
            offset += len(texts.buf)
        return Texts(np.concatenate(bufs), start, end)
