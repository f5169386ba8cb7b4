#!/usr/bin/env python3
"""Split reads into N chunk files round-robin: split_fastq.py READS OUT_0.fq.gz ... OUT_N-1.fq.gz

Reads go through neuromap's strict reader, so a malformed input fails here with the file and the
record named, instead of in N alignment jobs. Writes each chunk atomically.
"""

import gzip
import os
import sys

from neuromap.errors import NeuromapError
from neuromap.io.fastx import read_fastx


def main() -> int:
    reads, outs = sys.argv[1], sys.argv[2:]
    tmps = [f"{o}.tmp-{os.getpid()}" for o in outs]
    handles = [gzip.open(t, "wt", compresslevel=1) for t in tmps]
    try:
        for i, rec in enumerate(read_fastx(reads)):
            fh = handles[i % len(handles)]
            header = rec.name + (" " + rec.comment if rec.comment else "")
            if rec.qual is None:
                fh.write(f">{header}\n{rec.seq}\n")
            else:
                fh.write(f"@{header}\n{rec.seq}\n+\n{rec.qual}\n")
        for fh in handles:
            fh.close()
        for t, o in zip(tmps, outs):
            os.replace(t, o)
    except NeuromapError as exc:
        print(f"neuromap: error: {exc}", file=sys.stderr)
        return 1
    finally:
        for fh, t in zip(handles, tmps):
            fh.close()
            if os.path.exists(t):
                os.remove(t)
    return 0


if __name__ == "__main__":
    sys.exit(main())
