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
from rtaudio.kws.stage import KeywordSpotter
from rtaudio.kws.train import PATIENCES, allocate_false_accepts, cmd_train, train
from rtaudio.stage import AudioFormat


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("RTAUDIO_CACHE", str(tmp_path / "cache"))


def _args(**kw) -> argparse.Namespace:
    base = {"keywords": "lights on,lights off", "out": None, "seed": 0, "minutes": None, "model": None}
    return argparse.Namespace(**{**base, **kw})


@pytest.mark.parametrize(("text", "msg"), [("", "empty"), (" , ", "empty"), ("lights on,42", "cannot say")])
def test_bad_keyword_lists_fail_before_writing(tmp_path, text, msg):
    out = tmp_path / "m"
    with pytest.raises(RtAudioError, match=msg):
        cmd_train(_args(keywords=text, out=str(out)))
    assert not out.exists()


def test_bad_options(tmp_path):
    with pytest.raises(RtAudioError, match="--minutes"):
        cmd_train(_args(minutes=-1.0, out=str(tmp_path / "m")))


@pytest.mark.parametrize("arch", ["gru", "cnn"])
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
    stage = KeywordSpotter(model=str(out))
    stage.setup(AudioFormat(16000, 1, 4096))
    x = np.random.default_rng(0).standard_normal((8000, 1)).astype(np.float32) * 0.1
    assert stage.run(x) is x
    assert model.training is False


def test_false_accept_budget_goes_where_it_buys_most_hits():
    fa = np.array([[3, 1, 0, 0], [2, 2, 1, 0]])
    hits = np.array([[5, 4, 2, 1], [6, 5, 5, 1]])
    assert allocate_false_accepts(fa, hits, 0).tolist() == [2, 3]  # lowest thresholds with no FA
    assert allocate_false_accepts(fa, hits, 2).tolist() == [1, 2]
