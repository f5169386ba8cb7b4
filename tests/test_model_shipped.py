"""The shipped, trained model: it loads offline, localises reads, and knows a foreign read."""

import json
import os
import shutil
import time

import jax
import numpy as np
import pytest

from neuromap.operators.mapping import NeuralReadMapper
from neuromap.operators.mapping.neural_mapper import WEIGHTS_DIR
from neuromap.train import TrainConfig, make_examples, one_hot

from conftest import run_cli


@pytest.fixture(scope="module")
def model():
    return NeuralReadMapper.pretrained()


@pytest.fixture(scope="module")
def held_out():
    # Training draws examples from seeds [seed, step], validation from [seed, 2**31 - 1];
    # this seed is neither.
    return make_examples(np.random.default_rng(987_654), 300, TrainConfig())


@pytest.fixture(scope="module")
def outputs(model, held_out):
    reads, mask, windows, start = held_out
    n, k, w = windows.shape
    out = jax.jit(lambda r, m, t: model(r, t, m))(
        one_hot(np.repeat(reads, k, axis=0)), np.repeat(mask, k, axis=0), one_hot(windows.reshape(n * k, w))
    )
    return {key: np.asarray(v).reshape((n, k) + np.asarray(v).shape[1:]) for key, v in out.items()}


def test_shipped_files_and_card():
    for name in ("params.npz", "config.json", "calibration.json", "CARD.md"):
        assert os.path.exists(os.path.join(WEIGHTS_DIR, name)), name
    assert os.path.getsize(os.path.join(WEIGHTS_DIR, "params.npz")) < 5 * 2**20  # fits a wheel
    calibration = json.load(open(os.path.join(WEIGHTS_DIR, "calibration.json")))
    # λ minimises the log loss (λ = 1, no scaling, is among the values it tries)
    assert calibration["scale"] > 0 and calibration["log_loss"] <= calibration["log_loss_unscaled"]


def test_pretrained_is_trained_not_initial(model, held_out, outputs):
    untrained = NeuralReadMapper(model.config)
    reads, mask, windows, start = held_out
    out = untrained(one_hot(reads[:50]), one_hot(windows[:50, 0]), mask[:50])
    untrained_hits = np.mean(np.abs(np.asarray(out["best_position"]) - start[:50]) <= 2)
    trained_hits = np.mean(np.abs(outputs["best_position"][:50, 0] - start[:50]) <= 2)
    # With base_identity an untrained model already counts matching bases along each diagonal
    # (its weight starts at 1), which places some reads; the learned layers place the rest.
    if model.config.base_identity:
        assert untrained_hits <= 0.7 and trained_hits >= 0.95, (untrained_hits, trained_hits)
    else:
        assert trained_hits > untrained_hits + 0.5


def test_localises_held_out_reads_within_2bp(outputs, held_out):
    start = held_out[3]
    within = np.mean(np.abs(outputs["best_position"][:, 0] - start) <= 2)
    assert within >= 0.95, within


def test_foreign_read_gets_lower_confidence(outputs):
    true_q, foreign_q = outputs["mapping_quality"][:, 0], outputs["mapping_quality"][:, 3]
    assert np.mean(true_q > foreign_q) >= 0.95
    assert np.mean(outputs["log_likelihood"][:, 0] > outputs["log_likelihood"][:, 3]) >= 0.99


def test_align_runs_the_network_by_default(data_dir, tmp_path):
    out = tmp_path / "nn.bam"
    res = run_cli(["align", data_dir / "ref.fa", data_dir / "reads.fq", "-o", out])
    assert res.returncode == 0, res.stderr
    ev = json.loads(run_cli(["evaluate", "--json", "--truth", data_dir / "truth.tsv", out]).stdout)
    assert ev["correct_pct"] > 98.5
    assert next(r for r in ev["thresholds"] if r["mapq"] == 30)["wrong"] == 0
    import pysam

    with pysam.AlignmentFile(str(out)) as bam:
        pcs = [r.get_tag("pc") for r in bam if not r.is_unmapped]
    assert len(pcs) > 2900 and all(0.0 <= p <= 1.0 for p in pcs) and len(set(pcs)) > 2
    # The switch gives the seeds + DP path, with its own (different) probabilities.
    plain = run_cli(["align", "--no-neural", data_dir / "ref.fa", data_dir / "reads.fq"])
    assert plain.returncode == 0 and "pc:f:" in plain.stdout


def test_incomplete_weights_directory_is_a_clear_error(data_dir, tmp_path):
    res = run_cli(["align", "--weights", tmp_path, data_dir / "ref.fa", data_dir / "reads.fq"])
    assert res.returncode == 1 and "params.npz" in res.stderr and "Traceback" not in res.stderr


@pytest.mark.parametrize("threads", ["1", "2", "2 --processes"])
@pytest.mark.parametrize("name", ["params.npz", "config.json", "calibration.json"])
def test_corrupt_weights_file_is_a_clear_error_and_no_output(data_dir, tmp_path, name, threads):
    """A damaged file in --weights (the model loads on a background thread while the input is
    read, in each worker process with --processes) is a one-line error naming the file, and -o is
    not written."""
    weights = tmp_path / "model"
    shutil.copytree(WEIGHTS_DIR, weights, ignore=shutil.ignore_patterns("CARD.md", "__*"))
    data = (weights / name).read_bytes()
    (weights / name).write_bytes(data[: len(data) // 2])  # truncated, as by a failed copy
    out = tmp_path / "out.sam"
    res = run_cli(["align", "-t", *threads.split(), "--weights", weights, "-o", out, data_dir / "ref.fa", data_dir / "reads.fq"])
    assert res.returncode == 1 and str(weights / name) in res.stderr, res.stderr
    assert "Traceback" not in res.stderr and len(res.stderr.strip().splitlines()) == 1
    assert not out.exists()


def test_pair_bucket_changes_only_float_rounding(data_dir):
    """Another number of pairs per model call (as on a GPU: 1,024, whose calls here take the
    smaller shapes of call_size) changes no placement or MAPQ here; at most the last digits of
    pc (XLA's rounding depends on the compiled shapes)."""
    outs = []
    for bucket in ("1024", "64", "16"):
        env = dict(os.environ, NEUROMAP_PAIR_BUCKET=bucket)
        res = run_cli(["align", data_dir / "ref.fa", data_dir / "reads.fq"], env=env)
        assert res.returncode == 0, res.stderr
        outs.append([l.split("\t") for l in res.stdout.splitlines() if not l.startswith("@")])
    assert len(outs[0]) == len(outs[1]) == len(outs[2]) == 3000
    for a, b in [pair for other in outs[:2] for pair in zip(other, outs[2])]:
        assert a[:11] == b[:11]  # flag, position, MAPQ, CIGAR, sequence...
        pa = float(next(f for f in a if f.startswith("pc:f:"))[5:]) if a[1] != "4" else 0.0
        pb = float(next(f for f in b if f.startswith("pc:f:"))[5:]) if b[1] != "4" else 0.0
        assert abs(pa - pb) < 1e-4


def test_accelerator_calls_that_fit_a_quarter_of_the_bucket_take_that_shape(monkeypatch):
    """With a bucket of 256 or more pairs per call (an accelerator's), a call of fewer pairs is
    padded to a quarter or a sixteenth of it (not below 64), not to the whole bucket; the scores
    are those of the full shape, up to float rounding. A CPU's bucket keeps its one shape."""
    from neuromap import model as model_stage

    assert [model_stage.call_size(n, 1024) for n in (1, 64, 65, 256, 257, 1024)] == [64, 64, 256, 256, 1024, 1024]
    assert [model_stage.call_size(n, 256) for n in (1, 64, 65, 256)] == [64, 64, 256, 256]
    assert [model_stage.call_size(n, 4096) for n in (1, 256, 257, 4096)] == [256, 256, 1024, 4096]
    assert {model_stage.call_size(n, b) for b in (16, 64) for n in range(1, b + 1)} == {16, 64}
    rng = np.random.default_rng(5)
    query = rng.integers(0, 4, (40, 160)).astype(np.uint8)
    target = rng.integers(0, 5, (40, 192)).astype(np.uint8)
    target[:, 16:176] = query
    lens = np.full(40, 150)
    _, score, _ = model_stage.load_model(None)
    shapes = []
    traced = lambda codes, *rest: shapes.append(codes.shape[0]) or score(codes, *rest)  # noqa: E731
    small = model_stage._model_call(traced, 1024, query, lens, target, 160, 192)
    monkeypatch.setattr(model_stage, "SMALL_CALLS_FROM", 1 << 30)  # one shape: the whole bucket
    full = model_stage._model_call(traced, 1024, query, lens, target, 160, 192)
    assert shapes == [64, 1024]
    np.testing.assert_allclose(small, full, rtol=1e-5, atol=1e-4)
    assert np.array_equal(small.argmax(axis=1), full.argmax(axis=1))


def test_identical_pairs_are_scored_once_with_the_same_result():
    """Pairs from exact repeats repeat the same (read, window); score_pairs scores each distinct
    pair once and shares the result, which must equal scoring every pair."""
    from neuromap import model as model_stage

    rng = np.random.default_rng(3)
    distinct = 40
    query = rng.integers(0, 4, (distinct, 150)).astype(np.uint8)
    target = rng.integers(0, 4, (distinct, 182)).astype(np.uint8)
    target[:, 16:166] = query  # every read sits in its window
    qlen = rng.integers(100, 151, distinct)
    for i in range(distinct):
        query[i, qlen[i]:] = 4
    pick = rng.integers(0, distinct, 130)  # many repeats, in shuffled order
    calls = []
    original = model_stage._score_distinct
    try:
        model_stage._score_distinct = lambda q, *a: calls.append(len(q)) or original(q, *a)
        shared = model_stage.score_pairs(query[pick], qlen[pick], target[pick])
    finally:
        model_stage._score_distinct = original
    assert calls == [len(set(pick.tolist()))]
    each = original(query[pick], qlen[pick], target[pick], None)
    assert np.array_equal(shared.start, each.start)
    np.testing.assert_allclose(shared.log_likelihood, each.log_likelihood, rtol=1e-6)
    assert (shared.start == 16).mean() > 0.9  # and the reads are found where they are


def test_worker_processes_score_with_the_parents_model(tmp_path):
    """`align --processes`: a worker scoring through its pipe (model.use_remote) gets exactly what
    score_pairs gives in the parent, reads longer than the model's read length (chunked calls)
    included; info() gives the model's shapes, scale and device, and the parent's load error
    comes back as the same one-line NeuromapError."""
    from neuromap import model as model_stage
    from neuromap.errors import NeuromapError
    from neuromap.model_process import ModelServer

    rng = np.random.default_rng(5)
    query = rng.integers(0, 4, (30, 368)).astype(np.uint8)  # up to 368 bp: longer than read_length (320)
    target = rng.integers(0, 4, (30, 400)).astype(np.uint8)
    target[:, 16:384] = query
    qlen = rng.integers(100, 369, 30)
    for i in range(30):
        query[i, qlen[i]:] = 4
    server = ModelServer(None, 1)
    environ, deadline = b"", time.time() + 10
    while not environ and time.time() < deadline:  # empty for a moment while the process is being exec'd
        with open(f"/proc/{server.process.pid}/environ", "rb") as fh:
            environ = fh.read()
        time.sleep(0 if environ else 0.05)
    # No GPU memory taken ahead (unless the user says so).
    assert b"XLA_PYTHON_CLIENT_PREALLOCATE=" + os.environ.get("XLA_PYTHON_CLIENT_PREALLOCATE", "false").encode() in environ.split(b"\0")
    config, _, calibration = model_stage.load_model(None)
    want = model_stage.score_pairs(query, qlen, target)
    try:
        model_stage.use_remote(server.worker_ends()[0])
        assert model_stage._REMOTE.info() == (config.read_length, config.reference_window, calibration.scale,
                                              model_stage.device_name(), model_stage.pair_bucket())
        assert model_stage.max_window() == config.reference_window and model_stage.calibration_scale() == calibration.scale
        got = model_stage.score_pairs(query, qlen, target)
    finally:
        model_stage._REMOTE = None
        server.close()
    assert np.array_equal(got.start, want.start) and np.array_equal(got.log_likelihood, want.log_likelihood)
    broken = tmp_path / "model"
    shutil.copytree(WEIGHTS_DIR, broken, ignore=shutil.ignore_patterns("CARD.md", "__*"))
    (broken / "config.json").write_text("{not json")
    server = ModelServer(str(broken), 1)
    try:
        with pytest.raises(NeuromapError, match="config.json"):
            model_stage.RemoteModel(server.worker_ends()[0]).info()
    finally:
        server.close()
        model_stage.load_model.cache_clear()


def test_pretrained_is_a_whole_trainable_model():
    """pretrained() builds the module from shapes and fills it from params.npz: every variable is
    a concrete array (the dropout streams too), and gradients flow to every parameter."""
    from flax import nnx

    model = NeuralReadMapper.pretrained()
    for key, var in nnx.to_flat_state(nnx.state(model)):
        assert isinstance(var.get_value(), jax.Array), key
    rng = np.random.default_rng(0)
    read = one_hot(rng.integers(0, 4, (2, 60)))
    reference = one_hot(rng.integers(0, 4, (2, 90)))
    model.train()
    grads = nnx.grad(lambda m: m(read, reference)["log_likelihood"].sum())(model)
    flat = nnx.to_flat_state(nnx.state(grads, nnx.Param))
    assert flat and all(bool(np.isfinite(np.asarray(v.get_value())).all()) for _, v in flat)


def test_windows_the_alignment_decided_are_not_scored(tmp_path, monkeypatch):
    """A read with a near copy (1 mismatch) and a far copy (10 mismatches) of its window: the
    network scores the true and the near window; the far one (DECIDED_GAP behind) is neither
    scored, chosen nor counted in P(correct); XS still comes from every window."""
    from neuromap import model as model_stage
    from neuromap.index import open_index
    from neuromap.io.fastx import Record, make_batch
    from neuromap import pipeline as pipeline_stage
    from neuromap.pipeline import DECIDED_GAP, DECIDED_LL, AlignOptions, likelihood_scale, map_batch, place

    rng = np.random.default_rng(11)
    bases = np.array(list("ACGT"))
    segment = rng.integers(0, 4, 150)

    def copy(mismatches):
        c = segment.copy()
        at = rng.choice(150, mismatches, replace=False)
        c[at] = (c[at] + 1) % 4
        return c

    def spacer():
        return rng.integers(0, 4, 2000)

    seq = np.concatenate([spacer(), segment, spacer(), copy(1), spacer(), copy(10), spacer()])
    (tmp_path / "ref.fa").write_text(">chr\n" + "".join(bases[seq]) + "\n")
    index = open_index(str(tmp_path / "ref.fa"))
    read = Record("r1", "".join(bases[segment]), "I" * 150)
    opts = AlignOptions(neural=True)

    scored = []  # pairs the real network is given

    def counting(query, qlen, target, weights_dir=None):
        scored.append(len(qlen))
        return model_stage.score_pairs(query, qlen, target, weights_dir)

    monkeypatch.setattr(pipeline_stage, "score_pairs", counting)
    pl = place(make_batch([read]), index, opts)
    scores = pl.slot_score[0][pl.valid[0]]
    assert sorted(scores.tolist(), reverse=True)[:1] == [150] and len(scores) == 3
    far = pl.valid[0] & (pl.slot_score[0] <= 150 - DECIDED_GAP)
    assert far.sum() == 1
    assert scored == [2]  # the true and the near window only
    assert not pl.choosable[0][far].any()
    best = pl.ll[0][pl.choosable[0]].max()
    assert np.isclose(pl.ll[0][far][0], best - DECIDED_LL / likelihood_scale(opts))

    res = map_batch(make_batch([read]), index, opts)
    assert res.mapped[0] and res.pos[0] == 2000 and res.score[0] == 150
    assert res.sub_score[0] == int(np.sort(scores)[-2])  # the near copy


def test_a_read_goes_to_its_best_aligning_window_even_where_the_network_prefers_another(data_dir, monkeypatch):
    """The choice rule: a single read is placed among the windows where it aligns within one
    mismatch of its best. sim1122 of test-data aligns at 140 in one window and 135 (a mismatch
    worse) in the other, and the shipped network prefers the first. Here the network's verdict
    is turned round (its two log-likelihoods swapped), as happened for 24 of 60,000 held-out
    reads, all of them wrong: the read must still go to the 140 window. Its P(correct) is not the
    network's low one: where the chosen window aligns best, P is at least what the alignment
    scores give (up to MAPQ 30; see the floor's own test below)."""
    from neuromap import pipeline
    from neuromap.index import open_index
    from neuromap.io.fastx import make_batch, read_fastx
    from neuromap.mapq import p_correct

    index = open_index(str(data_dir / "ref.fa"))
    opts = pipeline.AlignOptions(neural=True)
    batch = make_batch([r for r in read_fastx(str(data_dir / "reads.fq")) if r.name == "sim1122"])
    honest = pipeline.place(batch, index, opts)
    slots = np.flatnonzero(honest.choosable[0])
    assert len(slots) == 2 and sorted(honest.slot_score[0, slots]) == [135, 140]
    best = slots[np.argmax(honest.slot_score[0, slots])]
    assert honest.chosen[0] == best and honest.ll[0, best] == honest.ll[0, slots].max()

    real = pipeline.score_pairs

    def turned_round(*args, **kwargs):
        scores = real(*args, **kwargs)
        scores.log_likelihood = scores.log_likelihood[::-1].copy()  # this batch's two pairs, swapped
        return scores

    monkeypatch.setattr(pipeline, "score_pairs", turned_round)
    swapped = pipeline.place(batch, index, opts)
    assert swapped.ll[0, best] < swapped.ll[0, slots].max()  # the network now prefers the 135 window
    assert swapped.chosen[0] == best
    scale = pipeline.likelihood_scale(opts)
    network_alone = p_correct(np.where(swapped.choosable, swapped.ll * scale, 0.0), swapped.choosable, swapped.chosen,
                              swapped.extra, pipeline.unscored_ll(swapped) * scale)
    _, ahead, by_score = pipeline.score_bounds(swapped, opts)
    assert network_alone[0] < 0.5 and ahead[0]
    assert pipeline.single_p(swapped, opts)[0] == pytest.approx(min(by_score[0], pipeline.FLOOR_MAX))


def _two_copies(tmp_path, seed, edit_a, edit_b):
    """A random 400-bp segment and the index of a reference holding two copies of it between random
    flanks, each copy with at most one base changed: `edit` = (position, base, the base used where
    the segment already has that one), or None. Returns (segment, index)."""
    from neuromap.index import build_index, load_index

    rng = np.random.default_rng(seed)
    bases = np.array(list("ACGT"))
    segment = "".join(bases[rng.integers(0, 4, 400)])

    def copy(edit):
        if edit is None:
            return segment
        at, base, alternative = edit
        return segment[:at] + (base if segment[at] != base else alternative) + segment[at + 1 :]

    copy_a, copy_b = copy(edit_a), copy(edit_b)
    flank = ["".join(bases[rng.integers(0, 4, 5000)]) for _ in range(3)]
    (tmp_path / "ref.fa").write_text(">chr\n" + flank[0] + copy_a + flank[1] + copy_b + flank[2] + "\n")
    return segment, load_index(build_index(str(tmp_path / "ref.fa")))


def test_on_an_alignment_score_tie_the_network_claims_no_more_than_the_scores_give(tmp_path, monkeypatch):
    """Two copies of a segment, each one base off the other's original at a different place; a
    read of the original across both bases aligns equally well (one mismatch) to each copy. Here
    the network is made sure of one copy (its log-likelihood raised by 8): P(correct) must stay
    at what the alignment scores give, 1/2, not the network's 0.99+. On held-out reads such
    confident calls on ties were wrong 8 times in 13."""
    from neuromap import pipeline
    from neuromap.io.fastx import Record, make_batch
    from neuromap.mapq import p_correct

    segment, index = _two_copies(tmp_path, 21, (100, "A", "C"), (200, "G", "T"))
    batch = make_batch([Record("tie", segment[75:225], "I" * 150)])
    opts = pipeline.AlignOptions(neural=True)
    real = pipeline.score_pairs

    def sure_of_the_first(*args, **kwargs):
        scores = real(*args, **kwargs)
        scores.log_likelihood = scores.log_likelihood.copy()
        scores.log_likelihood[0] += 8.0
        return scores

    monkeypatch.setattr(pipeline, "score_pairs", sure_of_the_first)
    pl = pipeline.place(batch, index, opts)
    slots = np.flatnonzero(pl.choosable[0])
    assert len(slots) == 2 and pl.slot_score[0, slots[0]] == pl.slot_score[0, slots[1]] == 150 - 5
    scale = pipeline.likelihood_scale(opts)
    network_alone = p_correct(np.where(pl.choosable, pl.ll * scale, 0.0), pl.choosable, pl.chosen, pl.extra, pipeline.unscored_ll(pl) * scale)
    assert network_alone[0] > 0.99
    assert pipeline.single_p(pl, opts)[0] == pytest.approx(0.5)


def test_where_the_chosen_window_aligns_best_the_network_claims_no_less_than_the_scores_give(tmp_path):
    """Two copies of a segment, the second one base off the original; a read of the original
    aligns perfectly to the first and with one mismatch to the second, and goes to the first. Here
    the network is made sure of the second (its log-likelihood 8 above the first's): P(correct)
    must stay at what the alignment scores give, not fall to the network's 0.001. On held-out
    reads such doubts, where AS > XS, were never right (86 reads below MAPQ 10, none wrong)."""
    from neuromap import pipeline
    from neuromap.io.fastx import Record, make_batch
    from neuromap.mapq import p_correct

    segment, index = _two_copies(tmp_path, 22, None, (150, "A", "C"))
    batch = make_batch([Record("ahead", segment[75:225], "I" * 150)])
    opts = pipeline.AlignOptions(neural=True)
    pl = pipeline.place(batch, index, opts)
    slots = np.flatnonzero(pl.choosable[0])
    assert len(slots) == 2 and sorted(pl.slot_score[0, slots]) == [145, 150]
    best, other = (slots[0], slots[1]) if pl.slot_score[0, slots[0]] == 150 else (slots[1], slots[0])
    assert pl.chosen[0] == best
    pl.ll[0, other] = pl.ll[0, best] + 8.0
    scale = pipeline.likelihood_scale(opts)
    network_alone = p_correct(np.where(pl.choosable, pl.ll * scale, 0.0), pl.choosable, pl.chosen, pl.extra, pipeline.unscored_ll(pl) * scale)
    tied, ahead, by_score = pipeline.score_bounds(pl, opts)
    assert not tied[0] and ahead[0] and network_alone[0] < 0.01 < 0.5 < by_score[0]
    assert pipeline.single_p(pl, opts)[0] == pytest.approx(by_score[0])
    # and where the network is surer than the scores, its P stands
    pl.ll[0, other] = pl.ll[0, best] - 8.0
    assert pipeline.single_p(pl, opts)[0] > by_score[0]


def test_score_bounds_by_score_is_p_correct_over_every_read(data_dir):
    """score_bounds computes the alignment scores' P(correct) only for reads with more than one
    counted placement (or unscored ones); for the rest it is 1 exactly. Over test-data's reads,
    unique and repeated, that is p_correct over every read, value for value."""
    from neuromap import pipeline
    from neuromap.index import open_index
    from neuromap.io.fastx import make_batch, read_fastx
    from neuromap.mapq import p_correct

    index = open_index(str(data_dir / "ref.fa"), None)
    opts = pipeline.AlignOptions(neural=True)
    pl = pipeline.place(make_batch(list(read_fastx(str(data_dir / "reads.fq")))), index, opts)
    aligned = pl.valid & (pl.slot_score >= opts.min_score)
    counted = np.where(aligned.any(axis=1)[:, None], aligned, pl.valid)
    score = pl.slot_score.astype(np.float64) * opts.score_scale
    want = p_correct(np.where(counted, score, 0.0), counted, pl.chosen, pl.extra, pipeline.unscored_ll(pl, score))
    got = pipeline.score_bounds(pl, opts)[2]
    assert np.array_equal(got, want)
    assert 0 < (want < 1).sum() < len(want)  # both kinds of read are there


@pytest.mark.parametrize("neural", [True, False])
def test_single_p_of_some_reads_is_theirs_from_the_whole_batch(data_dir, neural):
    """map_pairs computes a mate's own P(correct) only where its partner has no placement
    (Placements.of_reads): over test-data's reads, unique and repeated, each read's P is the
    same, value for value, as in single_p over the whole batch, whichever reads are taken."""
    from neuromap import pipeline
    from neuromap.index import open_index
    from neuromap.io.fastx import make_batch, read_fastx

    index = open_index(str(data_dir / "ref.fa"), None)
    opts = pipeline.AlignOptions(neural=neural)
    pl = pipeline.place(make_batch(list(read_fastx(str(data_dir / "reads.fq")))), index, opts)
    whole = pipeline.single_p(pl, opts)
    assert 0 < (whole < 1).sum() < len(whole)  # reads in repeats and unique ones
    rng = np.random.default_rng(11)
    for rows in (np.flatnonzero(whole < 1), np.sort(rng.choice(len(whole), 97, replace=False)), np.arange(1), np.arange(len(whole))):
        assert np.array_equal(pipeline.single_p(pl.of_reads(rows), opts), whole[rows])


_SCORE_IN_A_FRESH_PROCESS = r"""
import json, sys
import numpy as np
from neuromap.model import load_model
config, score, _ = load_model(None)
rng = np.random.default_rng(5)
codes = rng.integers(0, 5, (16, 160)).astype(np.int32)
mask = (np.arange(160)[None, :] < rng.integers(50, 161, 16)[:, None]).astype(np.float32)
windows = rng.integers(0, 5, (16, 192)).astype(np.int32)
out = np.asarray(score(codes, mask, windows))
print(json.dumps({"flax": "flax" in sys.modules, "read_length": config.read_length, "scores": out.tolist()}))
"""


def _score_in_a_fresh_process(cache: str, timeline: str | None = None, **more_env: str) -> dict:
    """The scores of a fixed call in a new process (with `more_env` in its environment); with
    `timeline`, its events are written there (NEUROMAP_TRACE) and listed under "events"."""
    import subprocess
    import sys

    env = {**os.environ, "NEUROMAP_JAX_CACHE": cache, **more_env}
    env.pop("NEUROMAP_TRACE", None)
    if timeline is not None:
        env["NEUROMAP_TRACE"] = timeline
    done = subprocess.run([sys.executable, "-c", _SCORE_IN_A_FRESH_PROCESS], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    if timeline is not None:
        folder, prefix = os.path.split(timeline)
        result["events"] = [line.split("\t")[3] for name in os.listdir(folder) if name.startswith(prefix + ".")
                            for line in open(os.path.join(folder, name))]
    return result


def test_the_exported_network_is_kept_across_runs_and_scores_the_same(tmp_path):
    """The first run traces the model with Flax and exports it to the cache's folder; a later
    run loads that export (no Flax, no tracing) and gets the same numbers, bit for bit. A damaged
    export is made again, and an unwritable cache only costs time."""
    cache = str(tmp_path / "cache")
    first = _score_in_a_fresh_process(cache)
    exports = [os.path.join(folder, f) for folder, _, files in os.walk(os.path.join(cache, "exported")) for f in files]
    assert first["flax"] and any(f.endswith(".bin") for f in exports) and any(f.endswith("config.json") for f in exports)
    assert first["read_length"] == NeuralReadMapper.pretrained().config.read_length
    second = _score_in_a_fresh_process(cache)
    assert not second["flax"] and second["scores"] == first["scores"]
    for f in exports:
        if f.endswith(".bin"):
            with open(f, "wb") as fh:
                fh.write(b"not an export")
    third = _score_in_a_fresh_process(cache)
    assert third["flax"] and third["scores"] == first["scores"]
    assert not _score_in_a_fresh_process(cache)["flax"]  # made again, and kept
    unwritable = tmp_path / "unwritable"
    unwritable.write_text("a file, not a folder")
    assert _score_in_a_fresh_process(str(unwritable))["scores"] == first["scores"]


def test_the_compiled_network_is_kept_and_loaded_by_later_runs(tmp_path):
    """Beside the export, the first run keeps the compiled program for this machine; a later run
    loads it (without lowering the export or asking JAX's cache) and gets the same numbers, bit
    for bit, as the run that compiled it and as a run that keeps nothing. A damaged program is
    compiled again and replaced; one that cannot be kept here is noted, and not tried again."""
    cache = str(tmp_path / "cache")
    first = _score_in_a_fresh_process(cache)
    (folder,) = [os.path.join(cache, "exported", key) for key in os.listdir(os.path.join(cache, "exported"))]
    names = sorted(os.listdir(folder))
    notes = {n: open(os.path.join(folder, n)).read() for n in names if n.endswith(".unusable")}
    assert not notes, notes
    (kept,) = [os.path.join(folder, n) for n in names if n.startswith("executable-") and n.endswith(".bin")]
    second = _score_in_a_fresh_process(cache, str(tmp_path / "second"))
    assert "executable-loaded" in second["events"] and second["scores"] == first["scores"]

    with open(kept, "wb") as fh:
        fh.write(b"not a compiled program")
    third = _score_in_a_fresh_process(cache, str(tmp_path / "third"))
    assert "executable-loaded" not in third["events"] and third["scores"] == first["scores"]
    assert "executable-kept" in third["events"] and "executable-kept" not in second["events"]
    assert os.path.getsize(kept) > 1000  # compiled again, and kept
    assert "executable-loaded" in _score_in_a_fresh_process(cache, str(tmp_path / "fourth"))["events"]
    # Compiled with other XLA flags (or jaxlib, device, instruction set): another program, kept beside.
    other = _score_in_a_fresh_process(cache, str(tmp_path / "other"), XLA_FLAGS="--xla_force_host_platform_device_count=1")
    assert "executable-loaded" not in other["events"] and "executable-kept" in other["events"]
    assert other["scores"] == first["scores"]
    assert len([n for n in os.listdir(folder) if n.startswith("executable-") and n.endswith(".bin")]) == 2

    os.remove(kept)
    fingerprint = os.path.basename(kept).split("-")[1]
    with open(os.path.join(folder, f"executable-{fingerprint}.unusable"), "w") as fh:
        fh.write("as a run where JAX could not serialise it would note")
    fifth = _score_in_a_fresh_process(cache, str(tmp_path / "fifth"))
    assert "executable-loaded" not in fifth["events"] and not os.path.exists(kept)
    assert fifth["scores"] == first["scores"]
    # That run left the program in JAX's cache, as neuromap before this did; kept again, it is
    # compiled afresh (XLA:CPU cannot serialise one from that cache whole), and loads.
    assert [n for n in os.listdir(cache) if n != "exported"]  # JAX's cache entry
    os.remove(os.path.join(folder, f"executable-{fingerprint}.unusable"))
    assert _score_in_a_fresh_process(cache)["scores"] == first["scores"] and os.path.exists(kept)
    last = _score_in_a_fresh_process(cache, str(tmp_path / "last"))
    assert "executable-loaded" in last["events"] and last["scores"] == first["scores"]
    assert not [n for n in os.listdir(folder) if n.endswith(".unusable")]


def test_an_export_of_other_parameters_is_not_used(tmp_path):
    """The exports are keyed by the parameters (and the configuration, the precision, the code
    and JAX): another model's export, in the same cache, is never taken for this one's."""
    from neuromap import model as model_stage

    other = tmp_path / "model"
    shutil.copytree(WEIGHTS_DIR, other, ignore=shutil.ignore_patterns("CARD.md", "__*"))
    with np.load(other / "params.npz") as saved:
        params = {k: saved[k] for k in saved.files}
    name = sorted(params)[0]
    params[name] = params[name] + 1.0
    np.savez(other / "params.npz", **params)
    cache = str(tmp_path / "cache")
    shipped = model_stage.ExportedScorer(WEIGHTS_DIR, "float32", cache)
    changed = model_stage.ExportedScorer(str(other), "float32", cache)
    assert shipped.key != changed.key
    rng = np.random.default_rng(1)
    codes = rng.integers(0, 4, (16, 64)).astype(np.int32)
    mask = np.ones((16, 64), np.float32)
    windows = rng.integers(0, 4, (16, 96)).astype(np.int32)
    assert not np.array_equal(np.asarray(shipped(codes, mask, windows)), np.asarray(changed(codes, mask, windows)))
    assert len(os.listdir(os.path.join(cache, "exported"))) == 2


def test_kept_programs_of_this_runs_call_sizes_are_preloaded_most_recent_first(tmp_path):
    """A model's load can queue the compiled calls earlier runs kept (ExportedScorer.preload: by
    default on an accelerator, where calls come in three sizes): only those of the sizes this
    run's pairs per call can make, the most recently used first, up to the limit, loaded on a
    thread of their own once the first call has its program; a later call of a preloaded shape
    takes that program, with the same numbers."""
    from neuromap import model as model_stage

    cache = str(tmp_path / "cache")
    first = model_stage.ExportedScorer(WEIGHTS_DIR, "float32", cache)
    rng = np.random.default_rng(3)
    calls, scores = {}, {}
    for pairs, width in ((16, 96), (16, 128), (32, 96)):  # 32 pairs: no call size of a 16-pair bucket
        codes = rng.integers(0, 4, (pairs, 64)).astype(np.uint8)
        mask = np.ones((pairs, 64), np.float32)
        windows = rng.integers(0, 4, (pairs, width)).astype(np.uint8)
        shapes = tuple((a.shape, str(a.dtype)) for a in (codes, mask, windows))
        calls[shapes] = (codes, mask, windows)
        scores[shapes] = np.asarray(first(codes, mask, windows))
    folder = first._folder
    kept = {model_stage._call_shapes(n[len(first._executables) + 1:]): n for n in os.listdir(folder)
            if n.startswith(first._executables + "-")}
    assert set(kept) == set(calls)  # each shape's program kept, and its name read back
    assert model_stage._call_shapes("score-16x64-uint8.bin") is None and model_stage._call_shapes("config.json") is None
    narrow, wide, other = calls
    for age, shapes in ((300, narrow), (200, other), (100, wide)):  # wide used last
        os.utime(os.path.join(folder, kept[shapes]), (1e9 - age, 1e9 - age))

    later = model_stage.ExportedScorer(WEIGHTS_DIR, "float32", cache)
    later.preload(16, limit=1)
    assert later._loaded == {} and later.preloading is None  # nothing before the first call's own program
    assert np.array_equal(np.asarray(later(*calls[other])), scores[other])
    later.preloading.join()
    assert set(later._loaded) == {other, wide}
    again = model_stage.ExportedScorer(WEIGHTS_DIR, "float32", cache)
    again.preload(16)
    assert np.array_equal(np.asarray(again(*calls[wide])), scores[wide])
    again.preloading.join()
    assert set(again._loaded) == {narrow, wide} and all(entry[1] is not None for entry in again._loaded.values())
    for shapes, arrays in calls.items():
        assert np.array_equal(np.asarray(again(*arrays)), scores[shapes])
    assert set(again._loaded) == set(calls)


@pytest.mark.parametrize("env", [{"NEUROMAP_DEVICE_EARLY": "0"}, {"JAX_PLATFORMS": "cpu"}, {"CUDA_VISIBLE_DEVICES": ""},
                                 {"TF_CUDA_PLATFORM_GPU_DEVICE_SCHEDULE": "sometimes"}, {}])
def test_device_started_early_only_where_jax_would_use_cuda(monkeypatch, env):
    """The network's process starts CUDA on a thread while JAX imports only where JAX has a CUDA
    plugin and may use it; told not to, or told to use the CPU or no GPU, or given a way of waiting
    for the GPU that XLA does not know, it starts nothing. (Where JAX has no CUDA plugin, as on the
    CPU machines the tests run on, it starts nothing either.)"""
    import importlib.util

    from neuromap.model_process import start_device_early

    for var in ("NEUROMAP_DEVICE_EARLY", "JAX_PLATFORMS", "CUDA_VISIBLE_DEVICES", "TF_CUDA_PLATFORM_GPU_DEVICE_SCHEDULE"):
        monkeypatch.delenv(var, raising=False)
    for var, value in env.items():
        monkeypatch.setenv(var, value)
    has_plugin = any(importlib.util.find_spec(m) for m in ("jax_cuda13_plugin", "jax_cuda12_plugin"))
    thread = start_device_early()
    if env or not has_plugin:
        assert thread is None
    else:
        thread.join(60)
        assert not thread.is_alive()
