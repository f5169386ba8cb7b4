"""The compiled kernels (neuromap/_kernels.c) against the numpy implementations they replaced, bit for bit.

tests/reference_align.py and tests/reference_sketch.py hold the original vectorised numpy code;
on random reads and windows (substitutions, Ns, indels, padding, low-complexity rows with tied
hashes) the kernels must give the same scores, ends, CIGARs, MDs, NMs and minimizers.
"""

import numpy as np
import pytest

from neuromap import kernels
from neuromap.align import Scoring, banded_align, traceback, ungapped, ungapped_description
from neuromap.index import open_index
from neuromap.io.fastx import make_batch, read_fastx
from neuromap.seed import SeedParams, find_candidates
from neuromap.sketch import kmer_hashes, sketch_rows, sketch_sequence
from neuromap.windows import gather_windows, oriented_reads
from reference_align import (banded_align_numpy, gather_windows_numpy, reverse_complement_codes_numpy, traceback_numpy, ungapped_description_numpy,
                             ungapped_numpy)
from reference_pairing import rescue_need_numpy, vote_numpy
from reference_place import choose_numpy, read_bests_numpy, same_placement_numpy, unscored_numpy
from reference_seed import find_candidates_numpy
from reference_sketch import kmer_hashes_numpy, sketch_rows_numpy


def _pairs(rng, n, rows, margin):
    band = 2 * margin + 1
    t = rng.integers(0, 4, (n, rows + band - 1)).astype(np.uint8)
    q = t[:, margin : margin + rows].copy()
    mutate = rng.random(q.shape) < rng.random() * 0.3
    q[mutate] = rng.integers(0, 5, int(mutate.sum()))
    for p in range(n):
        if rng.random() < 0.5:
            at, d = int(rng.integers(0, rows)), int(rng.integers(1, 6))
            if rng.random() < 0.5:  # insertion in the read
                q[p, at:] = np.concatenate([rng.integers(0, 4, d), q[p, at:]])[: rows - at]
            else:  # deletion from the read
                q[p, at : rows - d] = q[p, at + d : rows].copy()
    t[rng.random(t.shape) < 0.02] = 5  # off-contig padding
    qlen = rng.integers(max(1, rows // 2), rows + 1, n)
    return q, t, qlen


@pytest.mark.parametrize("seed", range(12))
def test_dp_and_traceback_match_the_numpy_original(seed):
    rng = np.random.default_rng(seed)
    rows, margin = int(rng.integers(20, 160)), int(rng.integers(2, 20))
    q, t, qlen = _pairs(rng, 150, rows, margin)
    sc = Scoring() if seed % 2 else Scoring(match=2, mismatch=3, gap_open=5, gap_extend=2, clip=3)
    a = banded_align(q, qlen, t, margin, sc)
    b = banded_align_numpy(q, qlen, t, margin, sc)
    assert np.array_equal(a.score, b.score)
    assert np.array_equal(a.end_row, b.end_row) and np.array_equal(a.end_slot, b.end_slot)
    sel = rng.permutation(len(qlen))[:100]
    x, y = traceback(a, sel, q, t, qlen), traceback_numpy(b, sel, q, t, qlen)
    assert x.cigar == y.cigar and x.md == y.md
    assert np.array_equal(x.nm, y.nm)
    assert np.array_equal(x.ref_start, y.ref_start) and np.array_equal(x.ref_end, y.ref_end)
    assert sum(c.count("I") + c.count("D") for c in x.cigar) > 0  # gaps were exercised


@pytest.mark.parametrize("seed", range(8))
def test_ungapped_screen_matches_the_numpy_original(seed):
    """Scores along the diagonal and which pairs the DP may skip: substitutions, Ns, indels,
    off-contig padding, reads shorter than their row, other scoring."""
    rng = np.random.default_rng(300 + seed)
    rows, margin = int(rng.integers(20, 160)), int(rng.integers(0, 20))
    q, t, qlen = _pairs(rng, 200, rows, margin)
    clean = np.flatnonzero(rng.random(len(q)) < 0.3)  # on the contig, the read as its diagonal, then 0-2 substitutions
    t[clean] = np.where(t[clean] == 5, 0, t[clean])
    q[clean] = t[clean, margin : margin + rows]
    for p in clean:
        q[p, rng.integers(0, rows, int(rng.integers(0, 3)))] = rng.integers(0, 5)
    t[rng.random(t.shape) < 0.005] = 4  # N in the reference
    sc = Scoring() if seed % 2 else Scoring(match=1, mismatch=3, gap_open=5, gap_extend=1, clip=5)
    score, exact = ungapped(q, qlen, t, margin, sc)
    ref_score, ref_exact = ungapped_numpy(q, qlen, t, margin, sc)
    diag = t[:, margin : margin + rows]
    inside = np.arange(rows)[None, :] < qlen[:, None]
    with_n = (inside & ((q == 4) | (diag == 4))).any(axis=1)
    mism = (inside & (q < 4) & (diag < 4) & (q != diag)).sum(axis=1)
    # the original's pairs, less those with an N on the diagonal (the DP may clip Ns at an end)
    assert np.array_equal(score, ref_score) and np.array_equal(exact & (mism <= 1), ref_exact & ~with_n)
    assert exact.any() and not exact.all() and (ref_exact & with_n).any()
    # The pairs with two mismatches that the screen settles since (test_two_mismatch_screen_...)
    # are the only others, and the DP returns their ungapped path.
    extra = np.flatnonzero(exact & ~ref_exact)
    _assert_dp_keeps_the_diagonal(q[extra], qlen[extra], t[extra], margin, sc, score[extra])


def _assert_dp_keeps_the_diagonal(q, qlen, t, margin, sc, score):
    """The DP's best path for each pair is the whole read on slot `margin` without a gap."""
    if len(qlen) == 0:
        return
    dp = banded_align(q, qlen, t, margin, sc)
    aln = traceback(dp, np.arange(len(qlen)), q, t, qlen)
    cigar, md, nm = ungapped_description(q, qlen, t, margin)
    assert np.array_equal(dp.score, score)
    assert np.array_equal(dp.end_slot, np.full(len(qlen), margin)) and np.array_equal(dp.end_row, qlen - 1)
    assert aln.cigar == cigar and aln.md == md and np.array_equal(aln.nm, nm)
    assert np.array_equal(aln.ref_start, np.full(len(qlen), margin))


def _tempting_pairs(rng, n):
    """Reads with two substitutions against their windows, made to tempt the two-mismatch screen:
    tandem repeats of period 1-6 (where another diagonal or a gap can hold the read), mismatches
    near the ends (where a clip can pay), short indels next to them, Ns in the window."""
    rows, margin = int(rng.integers(30, 160)), int(rng.integers(2, 17))
    band = 2 * margin + 1
    t = rng.integers(0, 4, (n, rows + band - 1)).astype(np.uint8)
    for p in range(n):
        if rng.random() < 0.3:  # a tandem array over part or all of the window
            period = int(rng.integers(1, 7))
            lo = int(rng.integers(0, t.shape[1]))
            hi = int(rng.integers(lo, t.shape[1] + 1))
            t[p, lo:hi] = np.resize(rng.integers(0, 4, period), hi - lo)
    q = t[:, margin : margin + rows].copy()
    for p in range(n):
        ends = rng.random() < 0.3
        spots = rng.integers(0, 6, 2) if ends else rng.integers(0, rows, 2)
        if ends and rng.random() < 0.5:
            spots = rows - 1 - spots
        for j in spots:
            q[p, j] = (q[p, j] + int(rng.integers(1, 4))) % 4
        if rng.random() < 0.15:  # a short indel as well
            at, d = int(rng.integers(0, rows)), int(rng.integers(1, 5))
            if rng.random() < 0.5:
                q[p, at:] = np.concatenate([rng.integers(0, 4, d), q[p, at:]])[: rows - at]
            else:
                q[p, at : rows - d] = q[p, at + d : rows].copy()
    t[rng.random(t.shape) < 0.003] = 4
    return q, t, np.full(n, rows, dtype=np.int64), margin


@pytest.mark.parametrize("seed", range(10))
def test_two_mismatch_screen_settles_only_what_the_dp_would_return(seed):
    """Reads with exactly two mismatches on their diagonal skip the DP only where no other path
    in the band scores as well (align._two_settled): on `_tempting_pairs` the DP (checked against
    the numpy original above) must return the ungapped path for every pair settled, and the
    screen must settle many."""
    rng = np.random.default_rng(700 + seed)
    q, t, qlen, margin = _tempting_pairs(rng, 400)
    sc = Scoring()
    score, exact = ungapped(q, qlen, t, margin, sc)
    two = score == qlen - 2 * (sc.match + sc.mismatch)
    settled = np.flatnonzero(exact & two)
    assert len(settled) > len(qlen) // 5 and (two & ~exact).any()
    _assert_dp_keeps_the_diagonal(q[settled], qlen[settled], t[settled], margin, sc, score[settled])
    # and where the DP finds a path as good or better elsewhere, the screen did not settle the pair
    dp = banded_align(q, qlen, t, margin, sc)
    assert not (exact & two & ((dp.score > score) | (dp.end_slot != margin))).any()


@pytest.mark.parametrize("seed", range(12))
def test_two_mismatch_screen_under_other_scorings(seed):
    """`-A/-B/-O/-E/-L` change what a path may spend: the screen's limits follow (or it stands
    aside), and the DP still returns the ungapped path of every pair it settles."""
    rng = np.random.default_rng(900 + seed)
    sc = Scoring(match=int(rng.integers(1, 4)), mismatch=int(rng.integers(1, 8)), gap_open=int(rng.integers(0, 12)),
                 gap_extend=int(rng.integers(1, 4)), clip=int(rng.integers(0, 12)))
    q, t, qlen, margin = _tempting_pairs(rng, 200)
    score, exact = ungapped(q, qlen, t, margin, sc)
    diag = t[:, margin : margin + qlen[0]]
    two = ((q < 4) & (diag < 4) & (q != diag)).sum(axis=1) == 2
    settled = np.flatnonzero(exact & two)
    _assert_dp_keeps_the_diagonal(q[settled], qlen[settled], t[settled], margin, sc, score[settled])


def test_a_read_ending_in_ns_goes_to_the_dp_which_clips_them():
    """Eight Ns at a read's end cost 8 aligned and 5 clipped: the screen leaves the read to the DP
    (before, it kept 150M and AS 134 where the DP gives 142M8S and AS 137)."""
    rng = np.random.default_rng(1)
    t = rng.integers(0, 4, (2, 150 + 32)).astype(np.uint8)
    q = t[:, 16:166].copy()
    q[0, -8:] = 4
    q[1, 70] = 4  # one N inside: the DP keeps the read whole
    qlen = np.array([150, 150])
    score, exact = ungapped(q, qlen, t, 16, Scoring())
    assert score.tolist() == [134, 148] and not exact.any()
    dp = banded_align(q, qlen, t, 16, Scoring())
    assert dp.score.tolist() == [137, 148]
    assert traceback(dp, np.arange(2), q, t, qlen).cigar == ["142M8S", "150M"]


def test_two_mismatch_screen_stands_aside_for_other_scorings():
    """Where the scoring lets a path with a gap or a clip reach two mismatches' score by other
    means than those the screen rules out, nothing is settled by it."""
    rng = np.random.default_rng(9)
    t = rng.integers(0, 4, (50, 140)).astype(np.uint8)
    q = t[:, 10:130].copy()
    q[:, 40] = (q[:, 40] + 1) % 4
    q[:, 80] = (q[:, 80] + 1) % 4
    qlen = np.full(50, 120, dtype=np.int64)
    assert ungapped(q, qlen, t, 10, Scoring())[1].all()
    loose = Scoring(match=1, mismatch=9, gap_open=3, gap_extend=1, clip=5)  # a gap is cheaper than two mismatches
    assert not ungapped(q, qlen, t, 10, loose)[1].any()


@pytest.mark.parametrize("seed", range(6))
def test_read_orientation_and_windows_match_the_numpy_original(seed, data_dir):
    """Reads reverse-complemented (their padding stays N) and reference windows cut across
    contig ends (PAD outside), as the numpy code they replaced gives them."""
    rng = np.random.default_rng(400 + seed)
    n, width = int(rng.integers(1, 60)), int(rng.integers(1, 200))
    codes = rng.integers(0, 5, (n, width)).astype(np.uint8)
    lengths = rng.integers(0, width + 1, n).astype(np.int32)
    for r in range(n):
        codes[r, lengths[r] :] = 4
    rc = reverse_complement_codes_numpy(codes, lengths)
    assert np.array_equal(oriented_reads(codes, lengths, np.arange(n), np.ones(n, dtype=bool)), rc)
    read, reverse = rng.integers(0, n, 80), rng.random(80) < 0.5
    assert np.array_equal(oriented_reads(codes, lengths, read, reverse), np.where(reverse[:, None], rc[read], codes[read]))
    index = open_index(str(data_dir / "ref.fa"))
    contig = rng.integers(0, len(index.names), 100)
    start = index.contig_offsets[contig] + rng.integers(-400, index.contig_lengths[contig] + 400)
    assert np.array_equal(gather_windows(index, contig, start, width), gather_windows_numpy(index, contig, start, width))


@pytest.mark.parametrize("seed", range(20))
def test_sketch_matches_the_numpy_original(seed):
    rng = np.random.default_rng(100 + seed)
    rows, length = int(rng.integers(1, 40)), int(rng.integers(1, 300))
    k, w = int(rng.integers(3, 22)), int(rng.integers(1, 15))
    high = 2 if seed % 3 == 0 else 4  # two-letter rows: many tied hashes
    codes = rng.integers(0, high, (rows, length)).astype(np.uint8)
    codes[rng.random(codes.shape) < 0.02] = 4
    for r in range(rows):  # padding after each read's end, as in a batch
        codes[r, int(rng.integers(0, length + 1)) :] = 4
    for x, y in zip(sketch_rows(codes, k, w), sketch_rows_numpy(codes, k, w)):
        assert np.array_equal(x, y)
    hx, rx = kmer_hashes(codes, k)
    hy, ry = kmer_hashes_numpy(codes, k)
    assert np.array_equal(hx, hy) and np.array_equal(rx, ry)


def test_sketch_of_a_long_sequence_matches_in_chunks():
    codes = np.random.default_rng(7).integers(0, 4, 50_000).astype(np.uint8)
    pos, hashes, rev = sketch_sequence(codes, 21, 11)
    _, p2, h2, r2 = sketch_rows_numpy(codes[None], 21, 11)
    assert np.array_equal(pos, p2) and np.array_equal(hashes, h2) and np.array_equal(rev, r2)


@pytest.mark.parametrize("seed", range(4))
def test_ungapped_description_matches_the_numpy_original(seed):
    rng = np.random.default_rng(200 + seed)
    q, t, qlen = _pairs(rng, 200, int(rng.integers(10, 200)), int(rng.integers(0, 20)))
    margin = (t.shape[1] - q.shape[1]) // 2
    cigar, md, nm = ungapped_description(q, qlen, t, margin)
    cigar_np, md_np, nm_np = ungapped_description_numpy(q, qlen, t, margin)
    assert cigar == cigar_np and md == md_np and np.array_equal(nm, nm_np)


@pytest.mark.parametrize("params", [SeedParams(), SeedParams(max_candidates=3, max_occ=20, max_diag_gap=5, max_span=8)])
def test_seeding_matches_the_numpy_original(data_dir, params):
    """Candidates of the test reads and of reads from the repeats (mutated, both strands, some
    short), with default and tight parameters."""
    index = open_index(str(data_dir / "ref.fa"))
    records = list(read_fastx(str(data_dir / "reads.fq")))[:1500]
    batch = make_batch(records)
    got = find_candidates(batch.codes, batch.lengths, index, params)
    want = find_candidates_numpy(batch.codes, batch.lengths, index, params)
    for name in ("valid", "diagonal", "reverse", "contig", "support", "n_clusters"):
        assert np.array_equal(getattr(got, name), getattr(want, name)), name
    assert got.n_clusters.max() > 1 and got.valid.sum() > len(records)  # repeats were exercised


def test_a_kernel_refuses_arrays_of_the_wrong_type_or_layout():
    """The ctypes layer passes raw addresses: it checks each array against the C signature first,
    so a caller's mistake is a TypeError, not memory written out of bounds."""
    from neuromap import kernels

    codes = np.zeros((2, 20), np.uint8)
    hashes, reverse = np.empty((2, 16), np.uint64), np.empty((2, 16), bool)
    kernels.call("nm_hash_rows", codes, 2, 20, 5, hashes, reverse)  # the right types: runs
    with pytest.raises(TypeError, match="argument 4 must be a C-contiguous u8 array, not int64"):
        kernels.call("nm_hash_rows", codes, 2, 20, 5, hashes.view(np.int64), reverse)
    with pytest.raises(TypeError, match="argument 0 must be a C-contiguous u1 array, not uint8 strided"):
        kernels.call("nm_hash_rows", np.zeros((20, 2), np.uint8).T, 2, 20, 5, hashes, reverse)
    with pytest.raises(TypeError, match="5 arguments for 6"):
        kernels.call("nm_hash_rows", codes, 2, 20, 5, hashes)


def _error_with_kernels_found_as(monkeypatch, spec) -> str:
    """The error a kernel call raises when importlib finds the kernels as `spec`."""
    import importlib.util

    from neuromap import kernels
    from neuromap.errors import NeuromapError

    kernels._library.cache_clear()
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: spec)
    try:
        with pytest.raises(NeuromapError) as raised:
            kernels.call("nm_select", np.zeros((1, 3), np.uint64), 1, 3, 2, np.zeros((1, 3), bool))
    finally:
        monkeypatch.undo()
        kernels._library.cache_clear()
    return str(raised.value)


def test_missing_kernels_name_the_fix(monkeypatch):
    """A checkout used without being installed (the C file not compiled) gets one line that says
    how to build it, not a ctypes traceback."""
    assert "not built: install the package with `pip install .`" in _error_with_kernels_found_as(monkeypatch, None)


def test_kernels_older_than_the_code_name_the_fix(monkeypatch):
    """A checkout updated without rebuilding: the library lacks a kernel the Python now calls
    (here the C library stands in for such a build). One line says to rebuild."""
    import re
    import types

    message = _error_with_kernels_found_as(monkeypatch, types.SimpleNamespace(origin="libc.so.6"))
    assert re.search(r"older than this neuromap \(no nm_\w+\): rebuild them with `pip install \.`", message), message


def _build_plain(lib, *flags):
    """_kernels.c built with gcc as a plain library (no Python headers), loaded through ctypes."""
    import ctypes
    import os
    import shutil
    import subprocess

    from conftest import ROOT

    if shutil.which("gcc") is None:
        pytest.skip("no gcc")
    subprocess.run(["gcc", "-O2", "-std=gnu11", "-shared", "-fPIC", "-DNEUROMAP_NO_PYTHON", *flags, os.path.join(ROOT, "neuromap", "_kernels.c"),
                    "-o", str(lib)], check=True)
    return ctypes.CDLL(str(lib))


def _hashes_agree(lib, rows, length, k, seed):
    """The library's nm_hash_rows gives what the installed kernels give."""
    import ctypes

    codes = np.random.default_rng(seed).integers(0, 5, size=(rows, length), dtype=np.uint8)
    want = kmer_hashes(codes, k)
    hashes, reverse = np.empty((rows, length - k + 1), np.uint64), np.empty((rows, length - k + 1), bool)
    lib.nm_hash_rows.argtypes = [ctypes.c_void_p, ctypes.c_int64, ctypes.c_int64, ctypes.c_int64, ctypes.c_void_p, ctypes.c_void_p]
    lib.nm_hash_rows(codes.ctypes.data, rows, length, k, hashes.ctypes.data, reverse.ctypes.data)
    return np.array_equal(hashes, want[0]) and np.array_equal(reverse, want[1])


def test_the_c_file_also_builds_as_a_plain_library(tmp_path):
    """Without Python's headers (-DNEUROMAP_NO_PYTHON) the same file is a plain shared library that
    ctypes loads and calls the same way: the fallback benchmarks/gpu_lease.sh uses on a machine
    that cannot build the extension."""
    from neuromap import kernels

    plain = _build_plain(tmp_path / "plain.so")
    assert _hashes_agree(plain, 3, 40, 9, seed=5)
    assert all(hasattr(plain, name) for name in kernels._SIGNATURES)


def test_the_default_build_has_an_avx512_clone_and_the_build_without_it_agrees(tmp_path):
    """The SIMD loops have an AVX-512 clone (arch=x86-64-v4) in the default build where GCC 12 or
    later compiles it (the GPU machine's Xeon picks it; on this CPU, whichever clone it picks),
    and -DNEUROMAP_NO_AVX512 builds without it and computes the same."""
    import platform
    import re
    import shutil
    import subprocess

    if platform.machine() != "x86_64":
        pytest.skip("x86-64 only")
    default = _build_plain(tmp_path / "default.so")
    assert _hashes_agree(default, 50, 150, 21, seed=7)
    assert _hashes_agree(_build_plain(tmp_path / "avx2.so", "-DNEUROMAP_NO_AVX512"), 50, 150, 21, seed=7)
    version = subprocess.run(["gcc", "-dumpversion"], capture_output=True, text=True).stdout
    if shutil.which("nm") is None or not re.match(r"\d+", version) or int(re.match(r"\d+", version).group()) < 12:
        pytest.skip("no nm, or a GCC before 12 (no AVX-512 clone)")
    symbols = subprocess.run(["nm", str(tmp_path / "default.so")], capture_output=True, text=True, check=True).stdout
    without = subprocess.run(["nm", str(tmp_path / "avx2.so")], capture_output=True, text=True, check=True).stdout
    assert re.search(r"dp_row\.arch_x86_64_v4", symbols), "no AVX-512 clone of the DP row in the default build"
    assert "arch_x86_64_v4" not in without and re.search(r"dp_row\.avx2", without)


@pytest.mark.parametrize("slots", [1, 2, 8, 70])
def test_same_placement_matches_numpy(slots):
    """Duplicate placements (pipeline.place): the kernel against the numpy it replaced, on reads
    with tied, -inf and NaN likelihoods, starts close and far, both strands, invalid slots, and
    more slots than the kernel's stack holds (70)."""
    rng = np.random.default_rng(slots)
    n, gap = 3000, 12
    ll = rng.choice([-np.inf, np.nan, 0.0, -0.0, -1.5, -3.0], (n, slots)) + np.where(rng.random((n, slots)) < 0.5, rng.normal(size=(n, slots)), 0)
    start = rng.integers(1000, 1000 + 4 * gap, (n, slots)).astype(np.int64)
    start[rng.random((n, slots)) < 0.2] = -(1 << 40)
    reverse = rng.random((n, slots)) < 0.3
    valid = rng.random((n, slots)) < 0.8
    got = valid.copy()
    kernels.call("nm_same_placement", np.ascontiguousarray(ll), start, reverse, got, n, slots, gap)
    want = same_placement_numpy(ll, start, reverse, valid, gap)
    assert np.array_equal(got, want)
    if slots > 1:
        assert (want != valid).sum() > n // 20  # the case is exercised


@pytest.mark.parametrize("slots, seeded", [(1, 1), (8, 8), (10, 8), (70, 66)])
def test_unscored_matches_numpy(slots, seeded):
    """What unscored placements are worth (pipeline.unscored_ll): the kernel against the numpy it
    replaced, with -inf, inf and NaN values, ties, invalid and chosen slots, chosen slots beyond
    the seeded ones (rescued mates), and more slots than the kernel's stack holds."""
    rng = np.random.default_rng(slots + seeded)
    n = 4000
    values = rng.choice([-np.inf, np.inf, np.nan, 0.0, -0.0, -2.5, 7.0], (n, slots))
    values = np.where(rng.random((n, slots)) < 0.6, rng.normal(size=(n, slots)).round(rng.integers(0, 3)), values)
    valid = rng.random((n, slots)) < rng.choice([0.1, 0.5, 0.9], (n, 1))
    chosen = rng.integers(0, slots, n).astype(np.int64)
    got = np.zeros(n)
    kernels.call("nm_unscored", np.ascontiguousarray(values), valid, chosen, n, slots, seeded, got)
    want = unscored_numpy(values, valid, chosen, seeded)
    # Equal values; a zero's sign may differ where -0.0 and 0.0 tie in the middle (numpy's sort is
    # not stable), which no later arithmetic sees.
    assert np.array_equal(got, want)
    assert (want != 0).mean() > 0.3  # the cases are exercised


@pytest.mark.parametrize("q_width, t_width", [(150, 700), (11, 30), (40, 8)])
def test_rescue_vote_matches_numpy(q_width, t_width):
    """Mate rescue's search (pairing._vote): the kernel against the numpy it replaced, on windows
    holding the read (with mismatches and Ns) once, twice or not at all, tandem repeats (tied
    shifts), low-complexity reads (more than 64 places a k-mer), padding, and windows shorter
    than a k-mer."""
    from neuromap.pairing import RESCUE_HITS, RESCUE_K, RESCUE_SEPARATION, _vote

    rng = np.random.default_rng(q_width + t_width)
    n = 300
    target = rng.integers(0, 4, (n, t_width)).astype(np.uint8)
    query = rng.integers(0, 4, (n, q_width)).astype(np.uint8)
    for task in range(n):
        kind = task % 5
        if kind in (0, 1) and t_width > q_width:  # the read once or twice in its window
            for _ in range(kind + 1):
                at = int(rng.integers(0, t_width - q_width + 1))
                target[task, at : at + q_width] = query[task]
        elif kind == 2:  # low complexity: a tandem of a short unit in both
            unit = rng.integers(0, 4, int(rng.integers(1, 4))).astype(np.uint8)
            query[task] = np.resize(unit, q_width)
            target[task] = np.resize(unit, t_width)
        query[task, rng.random(q_width) < 0.02] = 4
        target[task, rng.random(t_width) < 0.01] = int(rng.choice([4, 5]))
    expect = rng.integers(-50, t_width + 50, n).astype(np.int64)
    got = _vote(query, target, expect)
    want = vote_numpy(query, target, expect, RESCUE_K, RESCUE_HITS, RESCUE_SEPARATION)
    assert np.array_equal(got[0], want[0]) and np.array_equal(got[1], want[1])
    if q_width > 2 * RESCUE_K and t_width > q_width:
        assert (want[1] >= 2).sum() > n // 3  # the cases are exercised


@pytest.mark.parametrize("slots, anchors, low, high", [(8, 2, 180.4, 619.6), (8, 2, 181.0, 620.0), (1, 1, 180.4, 619.6), (3, 2, 181.0, 620.0)])
def test_rescue_need_matches_numpy(slots, anchors, low, high):
    """Which mates rescue searches for (pairing.add_rescued): the kernel against the numpy it
    replaced, on mates placed at, just inside, just outside and far from a concordant distance
    (both strands, both orders), on another contig, on the same strand, invalid slots, and
    reads shorter than a k-mer; the bounds fractional, as estimated ones are, or whole."""
    rng = np.random.default_rng(slots * 10 + anchors)
    n = 3000
    lengths = rng.choice([150, 100, 10, 11, 250], 2 * n).astype(np.int32)
    lengths[rng.random(2 * n) < 0.7] = 150
    base = rng.integers(0, 1_000_000, (n, 1))
    mate1 = base + rng.integers(-400, 400, (n, slots))
    insert = rng.choice([180.0, 181.0, 182.0, 400.0, 619.0, 620.0, 621.0, 5000.0, -50.0], (n, slots))
    rev1 = rng.random((n, slots)) < 0.5
    # mate 2 where an FR pair of that insert puts it (from mate 1's slot), or anywhere
    mate2 = np.where(rev1, mate1 + lengths[:n, None] - insert, mate1 + insert - lengths[n:, None]).astype(np.int64)
    mate2 = np.where(rng.random((n, slots)) < 0.3, rng.integers(0, 1_000_000, (n, slots)), mate2)
    diagonal = np.concatenate([mate1, rng.permutation(mate2.T).T]).astype(np.int64)
    reverse = np.concatenate([rev1, np.where(rng.random((n, slots)) < 0.9, ~rev1, rev1)])
    contig = rng.choice([0, 0, 0, 1], (2 * n, slots)).astype(np.int32)
    valid = rng.random((2 * n, slots)) < 0.8
    got = np.zeros((2 * n, anchors), bool)
    kernels.call("nm_rescue_need", valid, diagonal, reverse, contig, lengths.astype(np.int64), n, slots, anchors,
                 np.array([low, high]), 11, got)
    want = rescue_need_numpy(valid, diagonal, reverse, contig, lengths, n, low, high, anchors, 11)
    assert np.array_equal(got, want)
    partner = np.concatenate([np.arange(n, 2 * n), np.arange(n)])
    searchable = valid[partner, :anchors] & (lengths[:, None] >= 11)
    assert (searchable & want).sum() > n // 20 and (searchable & ~want).sum() > n // 20  # both answers are exercised


@pytest.mark.parametrize("seed", range(6))
def test_texts_rows_match_the_numpy_original(seed):
    """Texts.rows (nm_pack_rows) against the boolean mask it replaced: row r's first lengths[r]
    bytes, one after another; empty texts, full rows and no rows at all included."""
    from neuromap.texts import Texts

    rng = np.random.default_rng(500 + seed)
    rows, width = int(rng.integers(0, 60)), int(rng.integers(0, 40))
    buf = rng.integers(33, 127, (rows, width)).astype(np.uint8)
    lengths = rng.integers(0, width + 1, rows).astype(np.int64)
    if rows > 1:
        lengths[0], lengths[-1] = 0, width
    texts = Texts.rows(buf, lengths)
    top = int(lengths.max()) if rows else 0
    expected = buf[:, :top][np.arange(top)[None, :] < lengths[:, None]]
    assert texts.buf.tobytes() == expected.tobytes()
    assert list(texts) == [bytes(buf[r, : lengths[r]]).decode("ascii") for r in range(rows)]
    with pytest.raises(ValueError, match="Texts.rows"):
        Texts.rows(np.zeros((2, 3), np.uint8), np.array([1, 4]))


@pytest.mark.parametrize("slots", [1, 8, 16])
def test_choice_matches_numpy(slots):
    """nm_choose (pipeline.place's choice) against the numpy it replaced, on random rows with
    scores around min_score, equal likelihoods, -inf, +inf and NaN among them, and rows with no
    placement at all."""
    from neuromap.align import NEG

    rng = np.random.default_rng(700 + slots)
    n = 3000
    placement = rng.random((n, slots)) < 0.7
    placement[: n // 20] = False
    score = rng.integers(20, 40, (n, slots)).astype(np.int64)
    score[rng.random((n, slots)) < 0.05] = NEG
    ll = np.round(rng.normal(0, 2, (n, slots)), 1)  # rounded: many equal likelihoods
    special = rng.random((n, slots))
    ll[special < 0.05] = -np.inf
    ll[(special >= 0.05) & (special < 0.06)] = np.inf
    ll[(special >= 0.06) & (special < 0.07)] = np.nan
    choosable, chosen, ties, tied = (np.empty((n, slots), np.bool_), np.empty(n, np.int64), np.empty((n, slots), np.bool_),
                                     np.empty(n, np.bool_))
    kernels.call("nm_choose", placement, score, ll, n, slots, 30, 5, NEG, choosable, chosen, ties, tied)
    for got, want in zip((choosable, chosen, ties, tied), choose_numpy(placement, score, ll, 30, 5, NEG)):
        assert np.array_equal(got, want)
    assert (tied.any() or slots == 1) and (~np.isfinite(ll)).any()


@pytest.mark.parametrize("slots", [1, 3, 8, 16])
def test_read_bests_match_numpy(slots):
    """describe's per-read bests (nm_read_bests) against the numpy they replaced: reads with no
    valid slot, no seeded candidate, NaN, +inf and -inf likelihoods (valid or not), the chosen
    slot the best-scoring one or not, and scores at NEG."""
    from neuromap.align import NEG

    rng = np.random.default_rng(slots)
    n = 4000
    valid = rng.random((n, slots)) < 0.6
    valid[:50] = False  # reads without a placement
    seeded = valid | (rng.random((n, slots)) < 0.1)
    seeded[rng.random(n) < 0.05] = False
    ll = rng.choice([np.nan, np.inf, -np.inf, 0.0, -0.0], (n, slots))
    ll = np.where(rng.random((n, slots)) < 0.8, rng.normal(size=(n, slots)) * 50, ll)
    score = np.where(rng.random((n, slots)) < 0.1, NEG, rng.integers(-50, 300, (n, slots))).astype(np.int64)
    chosen = rng.integers(0, slots, n).astype(np.int64)
    has = np.empty(n, dtype=np.bool_)
    runner = np.empty(n, dtype=np.int64)
    kernels.call("nm_read_bests", valid, seeded, ll, score, chosen, n, slots, NEG, has, runner)
    want_has, want_runner = read_bests_numpy(valid, seeded, ll, score, chosen, NEG)
    assert np.array_equal(has, want_has) and np.array_equal(runner, want_runner)
    assert 0 < has.sum() < n and (runner == NEG).any() and ((runner > NEG).any() or slots == 1)
