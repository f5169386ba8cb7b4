"""Scoring alignments against known origins, the way minimap2's `paftools.js mapeval` does.

A read is correct when its primary record is on the true contig and strand and its unclipped start
is within `tolerance` bp of the true start. For each MAPQ threshold we count the reads mapped at or
above it and the wrong ones among them; a calibration table compares the error rate MAPQ claims
(10^(-MAPQ/10)) with the one observed, and the Brier score sums that up.
"""

from __future__ import annotations

import json
import os

import numpy as np
import pysam

from neuromap.errors import NeuromapError

THRESHOLDS = (60, 50, 40, 30, 20, 10, 1, 0)
BINS = ((0, 0), (1, 9), (10, 19), (20, 29), (30, 39), (40, 49), (50, 59), (60, 255))


def load_truth(path: str) -> dict[str, tuple[str, int, int, str]]:
    truth = {}
    try:
        fh = open(path)
    except OSError as exc:
        raise NeuromapError(f"{path}: cannot open: {exc.strerror}") from None
    with fh:
        for lineno, line in enumerate(fh, start=1):
            if line.startswith("#") or not line.strip():
                continue
            f = line.rstrip("\n").split("\t")
            if len(f) < 5 or f[4] not in "+-" or not f[2].isdigit() or not f[3].isdigit():
                raise NeuromapError(f"{path}: line {lineno}: expected name, contig, start, end, strand")
            truth[f[0]] = (f[1], int(f[2]), int(f[3]), f[4])
    return truth


def evaluate(truth_path: str, alignments: str, tolerance: int = 10) -> dict:
    truth = load_truth(truth_path)
    if not os.path.exists(alignments):
        raise NeuromapError(f"{alignments}: no such file")
    mapq_list, wrong_list = [], []
    seen = set()
    unmapped = 0
    paired = proper = 0
    try:
        with pysam.AlignmentFile(alignments, "r", check_sq=False) as fh:
            for rec in fh:
                if rec.is_secondary or rec.is_supplementary:
                    continue
                name = rec.query_name
                if rec.is_paired:  # mates share a QNAME; the truth names them name/1 and name/2
                    name += "/1" if rec.is_read1 else "/2"
                    paired += 1
                    proper += rec.is_proper_pair and not rec.is_unmapped
                if name not in truth or name in seen:
                    continue
                seen.add(name)
                if rec.is_unmapped:
                    unmapped += 1
                    continue
                contig, start, _, strand = truth[name]
                cig = rec.cigartuples or []
                clip = cig[0][1] if cig and cig[0][0] in (4, 5) else 0
                ok = (
                    rec.reference_name == contig
                    and ("-" if rec.is_reverse else "+") == strand
                    and abs(rec.reference_start - clip - start) <= tolerance
                )
                mapq_list.append(rec.mapping_quality)
                wrong_list.append(not ok)
    except (ValueError, OSError) as exc:
        raise NeuromapError(f"{alignments}: cannot read alignments: {exc}") from None
    mapq = np.array(mapq_list, dtype=np.int64)
    wrong = np.array(wrong_list, dtype=bool)
    n_total = len(truth)
    claimed = 10.0 ** (-mapq / 10.0)
    rows = []
    for q in THRESHOLDS:
        at = mapq >= q
        rows.append({"mapq": q, "mapped": int(at.sum()), "wrong": int((wrong & at).sum()),
                     "mapped_fraction": float(at.sum() / n_total) if n_total else 0.0,
                     "error_rate": float((wrong & at).sum() / at.sum()) if at.sum() else 0.0})
    calibration = []
    for lo, hi in BINS:
        sel = (mapq >= lo) & (mapq <= hi)
        n = int(sel.sum())
        calibration.append({
            "bin": f"{lo}-{min(hi, 60)}" if lo != hi else str(lo),
            "reads": n,
            "wrong": int(wrong[sel].sum()),
            "observed_error": float(wrong[sel].mean()) if n else None,
            "claimed_error": float(claimed[sel].mean()) if n else None,
        })
    n_correct = int((~wrong).sum())
    return {
        "alignments": alignments,
        "reads": n_total,
        "missing": n_total - len(seen),
        "mapped": int(len(mapq)),
        "unmapped": unmapped,
        "correct": n_correct,
        "correct_pct": 100.0 * n_correct / n_total if n_total else 0.0,
        "wrong": int(wrong.sum()),
        "thresholds": rows,
        "calibration": calibration,
        "brier": float(np.mean((claimed - wrong) ** 2)) if len(mapq) else 0.0,
        "tolerance": tolerance,
        "paired_reads": paired,
        "proper_pair_pct": 100.0 * proper / paired if paired else None,
    }


def format_report(res: dict) -> str:
    out = [
        f"# {res['alignments']}",
        f"reads\t{res['reads']}\tmapped\t{res['mapped']}\tunmapped\t{res['unmapped']}\tmissing\t{res['missing']}",
        f"correct\t{res['correct']}\t({res['correct_pct']:.3f}%)\twrong\t{res['wrong']}\tbrier\t{res['brier']:.6f}",
    ]
    if res.get("proper_pair_pct") is not None:
        out.append(f"paired_reads\t{res['paired_reads']}\tproper_pairs\t{res['proper_pair_pct']:.3f}%")
    out += [
        "",
        "MAPQ>=\tmapped\twrong\tmapped_frac\terror_rate",
    ]
    for r in res["thresholds"]:
        out.append(f"{r['mapq']}\t{r['mapped']}\t{r['wrong']}\t{r['mapped_fraction']:.4f}\t{r['error_rate']:.6f}")
    out += ["", "MAPQ_bin\treads\twrong\tobserved_error\tclaimed_error"]
    for c in res["calibration"]:
        obs = "-" if c["observed_error"] is None else f"{c['observed_error']:.6f}"
        cl = "-" if c["claimed_error"] is None else f"{c['claimed_error']:.6f}"
        out.append(f"{c['bin']}\t{c['reads']}\t{c['wrong']}\t{obs}\t{cl}")
    return "\n".join(out) + "\n"


def to_json(res: dict) -> str:
    return json.dumps(res, indent=1) + "\n"


def plot(results: list[dict], path: str) -> None:
    """Two panels: the mapeval curve (wrong vs mapped fraction over MAPQ thresholds) and the
    calibration curve (observed vs claimed error per MAPQ bin), one line per alignment file."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise NeuromapError("--plot needs matplotlib: pip install 'neuromap[plot]'") from None
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4.5))
    for res in results:
        label = os.path.basename(res["alignments"])
        rows = [r for r in res["thresholds"] if r["mapped"]]
        ax1.plot([r["wrong"] / max(res["reads"], 1) for r in rows], [r["mapped_fraction"] for r in rows], marker="o", label=label)
        for r in rows:
            ax1.annotate(str(r["mapq"]), (r["wrong"] / max(res["reads"], 1), r["mapped_fraction"]), fontsize=7)
        cal = [c for c in res["calibration"] if c["reads"]]
        claimed = [max(c["claimed_error"], 1e-7) for c in cal]
        observed = [max(c["observed_error"], 1e-7) for c in cal]
        ax2.scatter(claimed, observed, s=[10 + 40 * np.log10(1 + c["reads"]) for c in cal], label=label, alpha=0.7)
    ax1.set_xscale("symlog", linthresh=1e-5)
    ax1.set_xlabel("wrong mappings / all reads (MAPQ >= threshold)")
    ax1.set_ylabel("mapped fraction (MAPQ >= threshold)")
    ax1.set_title("mapeval: MAPQ thresholds 60 ... 0")
    ax1.legend(fontsize=8)
    lim = (1e-7, 1.0)
    ax2.plot(lim, lim, color="grey", linestyle="--", linewidth=1)
    ax2.set_xscale("log")
    ax2.set_yscale("log")
    ax2.set_xlim(*lim)
    ax2.set_ylim(*lim)
    ax2.set_xlabel("claimed error 10^(-MAPQ/10), per MAPQ bin")
    ax2.set_ylabel("observed error (1e-7 = none)")
    ax2.set_title("calibration")
    ax2.legend(fontsize=8)
    fig.tight_layout()
    tmp = path + ".tmp.png"
    fig.savefig(tmp, dpi=120)
    plt.close(fig)
    os.replace(tmp, path)
