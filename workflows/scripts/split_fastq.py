#!/usr/bin/env python3
"""Split reads into N chunk files round-robin:

    split_fastq.py READS OUT_0.fq.gz ... OUT_N-1.fq.gz
    split_fastq.py --pairs R1 R2 OUT_0.fq.gz ... OUT_N-1.fq.gz   (chunks hold interleaved pairs)

Reads go through neuromap's strict reader (and mates through its lockstep pair check), so a
malformed input fails here with the file and the record named, instead of in N alignment jobs.
Writes each chunk atomically.
"""

import gzip
import os
import sys

from neuromap.errors import NeuromapError
from neuromap.io.fastx import read_fastx, read_pairs


def main() -> int:
    args = sys.argv[1:]
    if args[0] == "--pairs":
        units, outs = read_pairs(args[1], args[2]), args[3:]
        suffixes = ("/1", "/2")
    else:
        units, outs = ((rec,) for rec in read_fastx(args[0])), args[1:]
        suffixes = ("",)
    tmps = [f"{o}.tmp-{os.getpid()}" for o in outs]
    handles = [gzip.open(t, "wt", compresslevel=1) for t in tmps]
    try:
        for i, unit in enumerate(units):
            fh = handles[i % len(handles)]
            for rec, suffix in zip(unit, suffixes):
                header = rec.name + suffix + (" " + rec.comment if rec.comment else "")
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
