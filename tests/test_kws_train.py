"""Training from typed keywords: a few-second smoke run gives a loadable, streaming model; bad
keyword lists are clear errors before anything is written."""

from __future__ import annotations

import argparse
import json

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from rtaudio.errors import RtAudioError
from rtaudio.kws import models
from rtaudio.kws.calibration import PATIENCES, allocate_false_accepts
from rtaudio.kws.data import IGNORE, build_corpus, calibration_corpus
from rtaudio.kws.features import FeatureConfig
from rtaudio.kws.stage import KeywordSpotter
from rtaudio.kws.train import (
    cmd_train,
    keyword_regions,
    make_streams,
    max_pool_loss,
    phone_ctc_loss,
    phone_loss,
    soft_target_loss,
    train,
)
from rtaudio.stage import AudioFormat


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("RTAUDIO_CACHE", str(tmp_path / "cache"))


def _args(**kw) -> argparse.Namespace:
    base = {"keywords": "lights on,lights off", "out": None, "seed": 0, "minutes": None, "model": None}
    return argparse.Namespace(**{**base, **kw})


def _bare_args(**kw) -> argparse.Namespace:
    """What `rtaudio train` passes when only `kw` are given (no keywords, no seed)."""
    return _args(**{"keywords": None, "seed": None, **kw})


def _runs_in_the_stage(model_dir) -> None:
    """The model loads in the `kws` stage, which passes the audio through untouched."""
    stage = KeywordSpotter(model=str(model_dir))
    stage.setup(AudioFormat(16000, 1, 4096))
    x = np.random.default_rng(0).standard_normal((8000, 1)).astype(np.float32) * 0.1
    assert stage.run(x) is x


@pytest.mark.parametrize(("text", "msg"), [("", "empty"), (" , ", "empty"), ("lights on,42", "cannot say")])
def test_bad_keyword_lists_fail_before_writing(tmp_path, text, msg):
    out = tmp_path / "m"
    with pytest.raises(RtAudioError, match=msg):
        cmd_train(_args(keywords=text, out=str(out)))
    assert not out.exists()


def test_bad_options(tmp_path):
    with pytest.raises(RtAudioError, match="--minutes"):
        cmd_train(_args(minutes=-1.0, out=str(tmp_path / "m")))
    with pytest.raises(RtAudioError, match="--paired-near"):
        cmd_train(_args(paired_near=-1, out=str(tmp_path / "m")))
    with pytest.raises(RtAudioError, match="--mels must be 8 to 128, got 4"):
        cmd_train(_args(mels=4, out=str(tmp_path / "m")))
    with pytest.raises(RtAudioError, match="--fmax must be above 20 Hz and at most 8000 Hz, got 9000"):
        cmd_train(_args(fmax=9000.0, out=str(tmp_path / "m")))
    assert not (tmp_path / "m").exists()


def test_smoke_train_with_another_front_end(tmp_path):
    """`--mels 64 --fmax 8000` (the shipped ensemble's 64-band members): the model reads 64 bands,
    its config says so, and it joins an ensemble with a 40-band model."""
    torch.set_num_threads(1)
    kws = ["lights on", "lights off"]
    wide, narrow = tmp_path / "wide", tmp_path / "narrow"
    opts = {"seed": 1, "minutes": 0.05, "arch": "tcn", "corpus_scale": 0.02, "log": lambda m: None}
    cfg = train(kws, wide, features=FeatureConfig(n_mels=64, fmax=8000.0), **opts)
    assert cfg["features"]["n_mels"] == 64 and cfg["features"]["fmax"] == 8000.0
    model, saved = models.load(wide)
    assert model.mean.shape[0] == 64 and saved["features"] == cfg["features"]
    train(kws, narrow, **opts)
    net, _ = models.ensemble([wide, narrow])
    assert [m.mean.shape[0] for m in net.members] == [64, 40]
    _runs_in_the_stage(wide)


@pytest.mark.parametrize("arch", ["gru", "tcn", "cnn"])
def test_smoke_train_two_keywords(tmp_path, arch):
    torch.set_num_threads(1)
    out = tmp_path / arch
    cfg = train(
        ["lights on", "lights off"],
        out,
        seed=1,
        minutes=0.05,
        arch=arch,
        corpus_scale=0.02,
        log=lambda m: None,
    )
    assert cfg["classes"] == ["_silence_", "_unknown_", "lights on", "lights off"]
    saved = json.loads((out / "model.json").read_text())
    assert saved["keywords"] == ["lights on", "lights off"] and saved["arch"] == arch
    assert len(saved["decision"]["thresholds"]) == 2 and "recall" in saved["calibration"]
    assert len(saved["decision"]["patience"]) == 2  # calibrated per keyword
    assert all(p in PATIENCES for p in saved["decision"]["patience"])
    assert not list(out.glob("*.tmp"))
    model, _ = models.load(out)
    _runs_in_the_stage(out)
    assert model.training is False


def test_smoke_train_with_near_miss_classes(tmp_path):
    """`train --near-classes`: one more output per keyword; the stage and its decisions still read
    only the keyword columns."""
    torch.set_num_threads(1)
    out = tmp_path / "near"
    kws = ["lights on", "lights off"]
    cfg = train(kws, out, seed=1, minutes=0.05, corpus_scale=0.02, near_classes=True, log=lambda m: None)
    assert cfg["classes"] == ["_silence_", "_unknown_", *kws, "near:lights on", "near:lights off"]
    assert cfg["training"]["near_classes"] is True and len(cfg["decision"]["thresholds"]) == 2
    model, _ = models.load(out)
    assert model.out.out_features == 6
    _runs_in_the_stage(out)


def test_smoke_train_with_the_phone_auxiliary_loss(tmp_path):
    """`phone_aux`: a training-only head; the saved model is the plain GRU of the same keywords."""
    torch.set_num_threads(1)
    out = tmp_path / "ph"
    kws = ["lights on", "lights off"]
    cfg = train(kws, out, seed=1, minutes=0.05, corpus_scale=0.02, phone_aux=0.5, log=lambda m: None)
    assert cfg["training"]["phone_aux"] == 0.5 and cfg["classes"] == ["_silence_", "_unknown_", *kws]
    model, _ = models.load(out)
    assert model.out.out_features == 4


def test_phone_loss_counts_only_steps_with_a_target():
    logits = torch.zeros(2, 3, 4, requires_grad=True)
    tgt = torch.full((2, 3, 4), -1, dtype=torch.int8)
    assert float(phone_loss(logits, tgt).detach()) == 0.0
    tgt[0, 1] = torch.tensor([1, 0, 0, 1], dtype=torch.int8)
    assert float(phone_loss(logits, tgt).detach()) == pytest.approx(np.log(2))
    phone_loss(logits, tgt).backward()
    assert logits.grad[1].abs().sum() == 0 and logits.grad[0, 1].abs().sum() > 0


def test_phone_ctc_loss_reads_only_segments_inside_the_chunk():
    """A word's segment is scored by CTC over its steps; one that runs past the chunk is left out,
    and the loss only reaches the steps of the segments scored."""
    seg = torch.full((1, 30, 17), -1, dtype=torch.int16)
    seg[0, 3, :4] = torch.tensor([9, 1, 2, 1])  # frames 3..11 -> steps 1..3, phones 1 2 1
    seg[0, 24, :3] = torch.tensor([9, 2, 2])  # frames 24..32: past the chunk's 30
    logits = torch.zeros(1, 10, 3, requires_grad=True)
    loss = phone_ctc_loss(logits, seg, 3)
    # uniform outputs over 3 steps: the one alignment of "1 2 1" has probability 3^-3, per phone ln 3
    assert float(loss.detach()) == pytest.approx(np.log(3))
    loss.backward()
    touched = logits.grad.abs().sum(-1)[0] > 0
    assert touched.tolist() == [False, True, True, True] + [False] * 6
    seg[0, 3, 0] = -1
    assert float(phone_ctc_loss(logits, seg, 3).detach()) == 0.0


def test_smoke_train_with_the_phone_sequence_loss(tmp_path):
    torch.set_num_threads(1)
    out = tmp_path / "seq"
    cfg = train(["yes", "no"], out, seed=1, minutes=0.05, corpus_scale=0.02, phone_aux=0.5, phone_seq=True,
                hidden=48, log=lambda m: None)  # fmt: skip
    assert cfg["training"]["phone_seq"] is True and cfg["arch_params"]["hidden"] == 48
    model, _ = models.load(out)
    assert model.out.out_features == 4 and model.hidden == 48
    # the head is kept beside the model, for reading what it learnt: one output per phone and a blank
    meta = json.loads((out / "phone_head.json").read_text())
    head = torch.load(out / "phone_head.pt", weights_only=True)
    assert meta["ctc"] and head["weight"].shape == (len(meta["phones"]) + 1, model.hidden)


def test_near_classes_are_for_the_stateful_models_only(tmp_path):
    with pytest.raises(RtAudioError, match="GRU and TCN only"):
        train(["lights on", "lights off"], tmp_path / "m", arch="cnn", near_classes=True, log=lambda m: None)
    with pytest.raises(RtAudioError, match="phone_aux: GRU and TCN only"):
        train(["lights on", "lights off"], tmp_path / "m", arch="cnn", phone_aux=1.0, log=lambda m: None)
    assert not (tmp_path / "m").exists()


def test_false_accept_budget_goes_where_it_buys_most_hits():
    fa = np.array([[3, 1, 0, 0], [2, 2, 1, 0]])
    hits = np.array([[5, 4, 2, 1], [6, 5, 5, 1]])
    assert allocate_false_accepts(fa, hits, 0).tolist() == [2, 3]  # lowest thresholds with no FA
    assert allocate_false_accepts(fa, hits, 2).tolist() == [1, 2]


LABELS = [IGNORE, 0, 1, 2, 3]


@settings(max_examples=60, deadline=None)
@given(st.lists(st.lists(st.sampled_from(LABELS), min_size=1, max_size=12), min_size=1, max_size=3))
def test_keyword_regions_are_the_runs_of_one_keyword_class(rows):
    n = min(len(r) for r in rows)
    tgt = np.array([r[:n] for r in rows])
    regions = keyword_regions(tgt)
    runs = []  # reference: walk each row
    for i, row in enumerate(tgt):
        j = 0
        while j < n:
            if row[j] >= 2:
                k = j
                while k < n and row[k] == row[j]:
                    k += 1
                runs.append(list(range(i * n + j, i * n + k)))
                j = k
            else:
                j += 1
    assert [[int(v) for v in r if v >= 0] for r in regions] == runs


def test_max_pool_loss_trains_only_the_most_confident_step_of_a_keyword():
    w = torch.tensor([1.0, 1.0, 3.0, 3.0])
    tgt = torch.tensor([[0, 1, 2, 2, 2, 1, IGNORE, 3]])
    logits = torch.randn(1, 8, 4, generator=torch.Generator().manual_seed(0))
    logits[0, 3, 2] = 5.0  # step 3 is the most confident of the run 2..4
    logits.requires_grad_(True)
    max_pool_loss(logits, tgt, w).backward()
    g = logits.grad[0].abs().sum(-1)
    assert g[3] > 0 and g[2] == 0 and g[4] == 0 and g[6] == 0  # other steps of the run, ignored step
    assert g[0] > 0 and g[1] > 0 and g[5] > 0 and g[7] > 0  # non-keyword steps and a one-step run
    # with runs of one step it is the weighted cross-entropy
    one = torch.tensor([[0, 1, 2, 1, 3, IGNORE]])
    x = torch.randn(1, 6, 4)
    ce = nn.CrossEntropyLoss(weight=w, ignore_index=IGNORE)(x.reshape(-1, 4), one.reshape(-1))
    assert torch.isclose(max_pool_loss(x, one, w), ce)


def test_fine_tuning_needs_a_model_of_the_same_keywords(tmp_path):
    torch.set_num_threads(1)
    small = dict(seed=1, minutes=0.05, corpus_scale=0.02, log=lambda m: None)
    train(["lights on", "lights off"], tmp_path / "a", **small)
    kws = ["lights on", "lights off"]
    cfg = train(kws, tmp_path / "b", loss="maxpool", init_from=tmp_path / "a", **small)
    assert cfg["training"]["loss"] == "maxpool" and cfg["decision"]["smooth"] == 1
    with pytest.raises(RtAudioError, match="not a model of these keywords"):
        train(["lights on", "lights dim"], tmp_path / "c", init_from=tmp_path / "a", **small)
    assert not (tmp_path / "c").exists()


def test_soft_target_loss_is_the_weighted_cross_entropy_of_one_hot_targets():
    """One-hot teacher posteriors give the hard loss; an unlabelled step counts with weight 1."""
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 5, 4, generator=g)
    tgt = torch.tensor([[0, 1, 2, 3, 2], [1, 1, 0, 3, 3]])
    weight = torch.tensor([1.0, 1.0, 3.0, 3.0])
    one_hot = nn.functional.one_hot(tgt, 4).float()
    hard = nn.functional.cross_entropy(logits.reshape(-1, 4), tgt.reshape(-1), weight=weight)
    assert torch.allclose(soft_target_loss(logits, one_hot, tgt, weight), hard)
    unlabelled = tgt.clone()
    unlabelled[0, 2] = IGNORE  # weight 3 -> 1
    ce = -(one_hot * logits.log_softmax(-1)).sum(-1)
    w = weight[tgt].clone()
    w[0, 2] = 1.0
    assert torch.allclose(soft_target_loss(logits, one_hot, unlabelled, weight), (ce * w).sum() / w.sum())


def test_calibration_corpus_is_dense_in_near_misses_and_apart_from_training():
    """The thresholds are calibrated where a user's false accepts come from: most of the held-out
    corpus's other words are near misses (the training corpus: under half), and it is drawn from its
    own seed (seed + 10 000), never the training corpus's words."""
    held = calibration_corpus(["stop", "down"], seed=5, scale=0.05, log=lambda m: None)
    train_corpus = build_corpus(["stop", "down"], seed=5, n_per_keyword=2, n_neg=30, n_sent=2)
    assert len(held.neg) >= 25
    near = sum(bool(w) for w in held.neg_near_words) / len(held.neg_near_words)
    near_train = sum(bool(w) for w in train_corpus.neg_near_words) / len(train_corpus.neg_near_words)
    assert near >= 0.75 > near_train
    assert held.neg_words != train_corpus.neg_words[: len(held.neg_words)]
    again = calibration_corpus(["stop", "down"], seed=5, scale=0.05, log=lambda m: None)
    assert again.neg_words == held.neg_words


def test_streams_with_extra_front_ends_are_those_front_ends_side_by_side():
    """A teacher with two front ends reads the 40 bands and the 64 bands of the same augmented audio
    (same warps, same running normalisation per column) as the student's 40 bands."""
    corpus = build_corpus(["yes", "no"], seed=5, n_per_keyword=3, n_neg=4, n_sent=2)
    narrow, wide = FeatureConfig(), FeatureConfig(n_mels=64, fmax=8000.0)

    def streams(cfg, extra=()):
        rng = np.random.default_rng(3)
        return make_streams(corpus, rng, cfg, 2, 16.0, mean_norm_s=2.0, extra=extra)

    both, labels = streams(narrow, (wide,))
    only_narrow, labels_narrow = streams(narrow)
    only_wide, _ = streams(wide)
    assert both.shape[-1] == 104
    np.testing.assert_array_equal(labels, labels_narrow)
    np.testing.assert_allclose(both[..., :40], only_narrow, atol=1e-5)
    np.testing.assert_allclose(both[..., 40:], only_wide, atol=1e-5)


def test_smoke_train_with_a_teacher(tmp_path):
    """`--teacher`: a student learns an ensemble's posteriors (one member with another front end);
    the student is a plain model of its own front end."""
    torch.set_num_threads(1)
    kws = ["lights on", "lights off"]
    opts = {"seed": 1, "minutes": 0.05, "arch": "tcn", "corpus_scale": 0.02, "log": lambda m: None}
    train(kws, tmp_path / "narrow", **opts)
    train(kws, tmp_path / "wide", features=FeatureConfig(n_mels=64, fmax=8000.0), **opts)
    net, cfg = models.ensemble([tmp_path / "narrow", tmp_path / "wide"])
    models.save(net, cfg, tmp_path / "teacher")
    student = tmp_path / "student"
    cfg = train(kws, student, teacher=tmp_path / "teacher", distill=0.7, **opts)
    assert cfg["training"]["teacher"] == str(tmp_path / "teacher") and cfg["training"]["distill"] == 0.7
    model, saved = models.load(student)
    assert saved["arch"] == "tcn" and model.mean.shape[0] == 40
    _runs_in_the_stage(student)


def test_a_teacher_must_fit_the_student(tmp_path):
    torch.set_num_threads(1)
    kws = ["lights on", "lights off"]
    opts = {"seed": 1, "minutes": 0.05, "corpus_scale": 0.02, "log": lambda m: None}
    train(kws, tmp_path / "t", arch="tcn", **opts)
    out = tmp_path / "s"
    bad = [
        ({"keywords": ["lights on", "lights dim"]}, "other keywords"),
        ({"features": FeatureConfig(n_mels=64, fmax=8000.0)}, "own front end is not the student's"),
        ({"distill": 0.0}, "--distill must be above 0"),
        ({"arch": "cnn"}, "GRU and TCN students only"),
        ({"teacher": tmp_path / "missing"}, "--teacher: model file"),
        ({"phone_aux": 0.5}, "not with the phones' auxiliary loss"),
        ({"near_classes": True}, "other keywords or classes"),  # the teacher has no near-miss classes
    ]
    for change, msg in bad:
        args = {"keywords": kws, "out_dir": out, "arch": "tcn", "teacher": tmp_path / "t", **opts, **change}
        with pytest.raises(RtAudioError, match=msg):
            train(**args)
        assert not out.exists()
    with pytest.raises(RtAudioError, match="--distill"):
        cmd_train(_args(keywords=",".join(kws), out=str(out), teacher=str(tmp_path / "t"), distill=1.5))
    assert not out.exists()


def test_init_from_continues_a_model_with_its_own_settings(tmp_path):
    torch.set_num_threads(1)
    kws = ["lights on", "lights off"]
    train(kws, tmp_path / "a", seed=3, minutes=0.05, arch="tcn", corpus_scale=0.02, log=lambda m: None)
    out = tmp_path / "b"
    args = _bare_args(init_from=str(tmp_path / "a"), out=str(out), minutes=0.05, corpus_scale=0.02)
    assert cmd_train(args) == 0
    cfg = json.loads((out / "model.json").read_text())
    a = json.loads((tmp_path / "a" / "model.json").read_text())
    assert cfg["keywords"] == kws and cfg["arch"] == "tcn" and cfg["features"] == a["features"]
    assert cfg["training"]["seed"] == 3  # the model's corpus seed, as none was given
    assert cfg["training"]["init_from"] == str(tmp_path / "a") and cfg["training"]["lr"] < a["training"]["lr"]
    _runs_in_the_stage(out)


@pytest.mark.parametrize(
    ("given", "flag"),
    [({"keywords": "lights on,lights dim"}, "--keywords"), ({"model": "gru"}, "--model"),
     ({"mels": 64}, "--mels"), ({"near_classes": True}, "--near-classes")],
)
def test_init_from_rejects_options_that_contradict_the_model(tmp_path, given, flag):
    torch.set_num_threads(1)
    train(["lights on", "lights off"], tmp_path / "a", seed=1, minutes=0.05, arch="tcn", corpus_scale=0.02,
          log=lambda m: None)
    out = tmp_path / "b"
    with pytest.raises(RtAudioError, match=f"^{flag}: .* was trained with"):
        cmd_train(_bare_args(init_from=str(tmp_path / "a"), out=str(out), **given))
    assert not out.exists()


def test_init_from_needs_a_single_readable_model(tmp_path):
    out = tmp_path / "b"
    with pytest.raises(RtAudioError, match="only one GRU or TCN"):
        cmd_train(_bare_args(init_from=str(models.DEFAULT_MODEL), out=str(out)))
    with pytest.raises(RtAudioError, match="^--init-from: model file .* not found"):
        cmd_train(_bare_args(init_from=str(tmp_path / "none"), out=str(out)))
    assert not out.exists()
