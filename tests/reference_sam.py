"""The Python SAM formatter that neuromap.io.sam.format_sam replaced (one f-string per read), kept as
the oracle the compiled one (nm_format_sam in neuromap/_kernels.c) must match byte for byte."""

from __future__ import annotations

import numpy as np

from neuromap.align import NEG
from neuromap.io.sam import _oriented_text


def format_sam_python(batch, res, index, read_group_id, pairs=None) -> str:
    """SAM text for one batch, in input order (for pairs: mate 1 then mate 2 of each pair);
    per-read Python only at this edge."""
    rg = f"\tRG:Z:{read_group_id}" if read_group_id else ""
    out = []
    names = index.names
    n_reads = len(batch)
    order = range(n_reads) if pairs is None else [r for i in range(pairs.n) for r in (i, i + pairs.n)]
    # Python lists, not numpy scalars, in the per-read loop (it holds the GIL: keep it short).
    is_mapped, reverse, contig, position = res.mapped.tolist(), res.reverse.tolist(), res.contig.tolist(), res.pos.tolist()
    mapq, nm, score, sub_score = res.mapq.tolist(), res.nm.tolist(), res.score.tolist(), res.sub_score.tolist()
    proper, end = (pairs.proper.tolist(), pairs.end.tolist()) if pairs is not None else ([], [])
    read_names, cigars, mds = batch.names, res.cigar, res.md
    seqs, quals = _oriented_text(batch, res)
    # P(correct) as text once per distinct value (bit for bit: -0.0 stays apart from 0.0), not
    # once per read.
    distinct, which = np.unique(res.p_correct.astype(np.float64).view(np.int64), return_inverse=True)
    texts = [f"{v:.6g}" for v in distinct.view(np.float64).tolist()]
    pc_text = [texts[i] for i in which.ravel().tolist()]
    for r in order:
        seq = seqs[r]
        qual = quals[r]
        mapped = is_mapped[r]
        flag = 0 if mapped else 4
        if mapped and reverse[r]:
            flag |= 16
        rname, pos = (names[contig[r]], position[r] + 1) if mapped else ("*", 0)
        rnext, pnext, tlen, mate_tags = "*", 0, 0, ""
        if pairs is not None:
            m = (r + pairs.n) % n_reads
            flag |= 1 | (0x40 if r < pairs.n else 0x80)
            if proper[r]:
                flag |= 2
            if is_mapped[m]:
                flag |= 0x20 if reverse[m] else 0
                mate_ctg, mate_pos = names[contig[m]], position[m] + 1
                if not mapped:  # an unmapped read is placed at its mate (SAM spec)
                    rname, pos = mate_ctg, mate_pos
                rnext = "=" if mate_ctg == rname else mate_ctg
                pnext = mate_pos
                mate_tags = f"\tMC:Z:{cigars[m]}\tMQ:i:{mapq[m]}"
                if mapped and rnext == "=":
                    left = min(position[r], position[m])
                    right = max(end[r], end[m])
                    leftmost = position[r] < position[m] or (position[r] == position[m] and r < pairs.n)
                    tlen = (right - left) * (1 if leftmost else -1)
            else:
                flag |= 8
                if mapped:
                    rnext, pnext = "=", pos
        if not mapped:
            out.append(f"{read_names[r]}\t{flag}\t{rname}\t{pos}\t0\t*\t{rnext}\t{pnext}\t0\t{seq}\t{qual}{mate_tags}{rg}\n")
            continue
        xs = f"\tXS:i:{sub_score[r]}" if sub_score[r] > NEG else ""
        out.append(
            f"{read_names[r]}\t{flag}\t{rname}\t{pos}\t{mapq[r]}\t{cigars[r]}"
            f"\t{rnext}\t{pnext}\t{tlen}\t{seq}\t{qual}\tNM:i:{nm[r]}\tMD:Z:{mds[r]}\tAS:i:{score[r]}{xs}"
            f"\tpc:f:{pc_text[r]}{mate_tags}{rg}\n"
        )
    return "".join(out)
