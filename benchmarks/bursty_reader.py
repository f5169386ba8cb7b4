#!/usr/bin/env python3
"""A reader of standard input that pauses: 0.1 s after every 4 MB (as `samtools sort` stops
reading while it sorts a full buffer). For timing how `neuromap align` copes with such a reader:

    time (neuromap align --no-neural -t 2 genome.fa reads.fq | python benchmarks/bursty_reader.py)
"""

import sys
import time

CHUNK = 4 << 20
PAUSE = 0.1


def main() -> None:
    stream = sys.stdin.buffer
    while True:
        got = 0
        while got < CHUNK:
            block = stream.read1(1 << 16)
            if not block:
                return
            got += len(block)
        time.sleep(PAUSE)


if __name__ == "__main__":
    main()
