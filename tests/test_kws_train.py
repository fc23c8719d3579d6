"""Training from typed keywords: a few-second smoke run gives a loadable, streaming model; bad
keyword lists are clear errors before anything is written."""

from __future__ import annotations

import argparse
import json

import numpy as np
import pytest
import torch

from rtaudio.errors import RtAudioError
from rtaudio.kws import models
from rtaudio.kws.calibration import PATIENCES, allocate_false_accepts
from rtaudio.kws.data import build_corpus, calibration_corpus
from rtaudio.kws.features import FeatureConfig
from rtaudio.kws.stage import KeywordSpotter
from rtaudio.kws.train import (
    cmd_train,
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


def test_false_accept_budget_goes_where_it_buys_most_hits():
    fa = np.array([[3, 1, 0, 0], [2, 2, 1, 0]])
    hits = np.array([[5, 4, 2, 1], [6, 5, 5, 1]])
    assert allocate_false_accepts(fa, hits, 0).tolist() == [2, 3]  # lowest thresholds with no FA
    assert allocate_false_accepts(fa, hits, 2).tolist() == [1, 2]


def test_fine_tuning_needs_a_model_of_the_same_keywords(tmp_path):
    torch.set_num_threads(1)
    small = dict(seed=1, minutes=0.05, corpus_scale=0.02, log=lambda m: None)
    train(["lights on", "lights off"], tmp_path / "a", **small)
    kws = ["lights on", "lights off"]
    cfg = train(kws, tmp_path / "b", init_from=tmp_path / "a", **small)
    assert cfg["training"]["init_from"] == str(tmp_path / "a")
    with pytest.raises(RtAudioError, match="not a model of these keywords"):
        train(["lights on", "lights dim"], tmp_path / "c", init_from=tmp_path / "a", **small)
    assert not (tmp_path / "c").exists()


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
     ({"mels": 64}, "--mels")],
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
