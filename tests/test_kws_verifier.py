"""The cascade (GRU proposes, DS-CNN verifier confirms): the feature history gives the windows the
offline code gives, the verifier-aware decision layer equals its fast calibration form and streams
exactly, the stage with a verifier streams exactly, and wrong verifier files are clear errors."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from rtaudio.errors import ConfigError
from rtaudio.kws import models
from rtaudio.kws.calibration import count_detections
from rtaudio.kws.data import Span
from rtaudio.kws.decision import Decider, DecisionConfig, Event, single_keyword_events, smoothed
from rtaudio.kws.stage import KeywordSpotter
from rtaudio.kws.verifier import (
    FeatureHistory,
    count_fires,
    file_sha256,
    keyword_step_ranges,
    windows,
)
from rtaudio.kws.voices import Voice, synthesize

from .streaming import partitions, run_blocks

RATE = 16000


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 2**31), sizes=st.lists(st.integers(1, 30), min_size=1, max_size=15))
def test_feature_history_windows_equal_offline_windows(seed, sizes):
    rng = np.random.default_rng(seed)
    feats = rng.standard_normal((sum(sizes), 3)).astype(np.float32)
    pad = np.array([9.0, 8.0, 7.0], np.float32)
    h, first = FeatureHistory(7, pad), 0
    for n in sizes:
        h.push(feats[first : first + n])
        ends = np.arange(first, first + n)
        got = np.stack([h.window_at(int(e)) for e in ends])
        np.testing.assert_array_equal(got, windows(feats, ends, 7, pad))
        first += n
    with pytest.raises(IndexError):
        h.window_at(first)  # not pushed yet


def _verifier_track(rng, n):
    """A verifier's class probabilities per step (2 keywords), independent of the GRU's."""
    return rng.dirichlet(np.ones(4) * 0.5, size=n)


@settings(max_examples=40, deadline=None)
@given(
    seed=st.integers(0, 2**31),
    thr=st.floats(0.2, 0.9),
    vthr=st.floats(0.05, 0.9),
    patience=st.integers(1, 4),
    delay=st.integers(0, 5),
)
def test_fast_single_keyword_events_with_a_verifier_equal_the_decider(seed, thr, vthr, patience, delay):
    """Calibration's form: the first stage's steps, each accepted by the verifier `delay` steps
    later, firing then."""
    rng = np.random.default_rng(seed)
    track = np.clip(np.repeat(rng.uniform(0, 1, 60), rng.integers(1, 12, 60)), 0, 1)
    p = np.zeros((len(track), 4))
    p[:, 2], p[:, 0] = track, 1 - track
    v = _verifier_track(rng, len(track))  # per step the verifier is asked at
    cfg = DecisionConfig(
        [thr, 2.0], smooth=3, patience=patience, refractory=0.05, verify=[vthr, 0.5], verify_delay=delay
    )
    _, ev = Decider(cfg, 0.01, verifier=lambda t: v[t]).step(p)
    assert all(e.verified >= vthr for e in ev)
    s = smoothed(p[:, 2:4], 3)
    accept = np.zeros(len(track), bool)
    accept[: len(track) - delay] = v[delay:, 2] >= vthr
    fast = single_keyword_events(s[:, 0], thr, cfg, 5, patience, accept=accept)
    assert [f + delay for f in fast] == [e.frame for e in ev]
    assert all(e.onset_frame <= e.frame - delay for e in ev)
    # a verifier that accepts everything changes nothing
    plain = DecisionConfig([thr, 2.0], smooth=3, patience=patience, refractory=0.05)
    _, ev0 = Decider(plain, 0.01).step(p)
    _, ev1 = Decider(
        DecisionConfig(**{**plain.to_dict(), "verify": [0.0, 0.0]}), 0.01, verifier=lambda t: v[t]
    ).step(p)
    assert [(e.frame, e.keyword) for e in ev0] == [(e.frame, e.keyword) for e in ev1]


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 2**31), sizes=st.lists(st.integers(0, 40), max_size=20))
def test_decider_with_a_verifier_is_streaming_exact(seed, sizes):
    rng = np.random.default_rng(seed)
    p = rng.dirichlet(np.ones(4) * 0.3, size=300)
    v = _verifier_track(rng, 300)
    cfg = DecisionConfig([0.3, 0.4], smooth=3, patience=1, refractory=0.1, verify=[0.3, 0.5], verify_delay=2)
    _, whole = Decider(cfg, 0.01, verifier=lambda t: v[t]).step(p)
    assert whole, "the example should fire"
    dec, evs, i = Decider(cfg, 0.01, verifier=lambda t: v[t]), [], 0
    for n in [*sizes, 300]:
        evs += dec.step(p[i : i + n])[1]
        i += n
    assert evs == whole


def test_a_verifier_needs_its_thresholds():
    with pytest.raises(ValueError, match="verif"):
        Decider(DecisionConfig([0.5]), 0.01, verifier=lambda t: np.ones(3))
    with pytest.raises(ValueError, match="verif"):
        Decider(DecisionConfig([0.5], verify=[0.5]), 0.01)


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**31))
def test_vectorised_hit_counting_equals_count_detections(seed):
    """Calibration counts hits per keyword on step ranges; it must agree with the benchmark-style
    count (`count_detections`) on the same single-keyword events."""
    rng = np.random.default_rng(seed)
    stride, hop, win, n_steps = 3, 160, 400, 400
    spans, pos = [], 1000
    while pos < n_steps * stride * hop - 20000:
        n = int(rng.integers(2000, 9000))
        kind = "kw" if rng.random() < 0.6 else "neg"
        spans.append(Span(kind, int(rng.integers(2)) if kind == "kw" else -1, pos, pos + n))
        pos += n + int(rng.integers(0, 12000))
    fires = np.unique(rng.integers(0, n_steps, int(rng.integers(0, 40))))
    ranges = keyword_step_ranges(spans, 2, n_steps, stride, hop, win)
    for k in range(2):
        per, fa, _ = count_detections(
            [Event(int(f), k, 0.0, int(f)) for f in fires], spans, 2, hop, win, stride
        )
        # the same unless two of one keyword's ranges overlap (words < 0.5 s apart): skip those
        r = np.asarray(ranges[k]).reshape(-1, 2)
        if len(r) > 1 and (r[1:, 0] <= r[:-1, 1]).any():
            continue
        assert count_fires(fires, r) == (int(per[k, 0]), fa)


# -- the stage with a verifier -------------------------------------------------------------------
def _tiny_verifier(tmp_path, first_stage_pt, verify=0.05):
    """A small randomly initialised verifier for the shipped GRU, saved in the real format."""
    _, gcfg = models.load(None)
    n_kw = len(gcfg["keywords"])
    cfg = {
        "arch": "cnn",
        "role": "verifier",
        "arch_params": {"channels": 8, "blocks": 1, "window": 20},
        "features": gcfg["features"],
        "keywords": gcfg["keywords"],
        "classes": gcfg["classes"],
        "stride": gcfg["stride"],
        "first_stage_sha256": file_sha256(first_stage_pt),
        "cascade": {"thresholds": [0.05] * n_kw, "patience": 1, "verify": [verify] * n_kw, "verify_delay": 3},
    }
    torch.manual_seed(0)
    net = models.build(cfg)
    with torch.no_grad():
        net.out.bias[2:] += 3.0  # keywords likely: the example fires and is verified
    models.save(net, cfg, tmp_path / "ver")
    return tmp_path / "ver"


def _speech(seed: int, n: int) -> np.ndarray:
    """Two spoken keywords (espeak-ng, cached) in a little noise."""
    words = synthesize([(Voice("espeak", "en-us"), "off"), (Voice("espeak", "en-us"), "yes")])
    x = np.random.default_rng(seed).standard_normal(n).astype(np.float32) * 0.002
    for w, at in zip(words, (RATE // 2, 2 * RATE), strict=True):
        x[at : at + len(w)] += w * 0.5
    return x[:, None]


@settings(max_examples=10, deadline=None)
@given(sizes=partitions(3000))
def test_stage_with_a_verifier_streams_exactly(tmp_path_factory, sizes):
    tmp = tmp_path_factory.mktemp("ver")
    ver = _tiny_verifier(tmp, models.resolve(None)[0])
    x = _speech(5, 4 * RATE)
    out, whole = run_blocks(KeywordSpotter(verifier=str(ver), posteriors=False), x, [], RATE)
    ev_whole = [(m.sample, m.data["label"], m.data["verified"]) for m in whole if m.topic == "keyword"]
    assert ev_whole, "the example should fire"
    _, msgs = run_blocks(KeywordSpotter(verifier=str(ver), posteriors=False), x, sizes, RATE)
    ev = [(m.sample, m.data["label"], m.data["verified"]) for m in msgs if m.topic == "keyword"]
    assert [e[:2] for e in ev] == [e[:2] for e in ev_whole]
    np.testing.assert_allclose([e[2] for e in ev], [e[2] for e in ev_whole], atol=1e-3)
    np.testing.assert_array_equal(out, x)


def test_verifier_rejects_what_it_does_not_believe(tmp_path):
    """A verifier threshold no candidate reaches silences the stage; a zero one fires as the GRU
    alone at the cascade's first-stage thresholds would, `verify_delay` steps later."""
    ver = _tiny_verifier(tmp_path, models.resolve(None)[0])
    x = _speech(5, 4 * RATE)
    _, none = run_blocks(KeywordSpotter(verifier=str(ver), verify_threshold=1.0), x, [], RATE)
    assert not [m for m in none if m.topic == "keyword"]
    _, cascade = run_blocks(KeywordSpotter(verifier=str(ver), verify_threshold=0.0), x, [], RATE)
    _, gru = run_blocks(KeywordSpotter(threshold=0.05, patience=1), x, [], RATE)
    key = lambda ms, d=0: [(m.sample - d, m.data["label"]) for m in ms if m.topic == "keyword"]  # noqa: E731
    assert key(cascade, 3 * 3 * 160) == key(gru) and key(gru)


def test_wrong_verifier_files_are_clear_errors(tmp_path):
    with pytest.raises(ConfigError, match="not a verifier"):
        KeywordSpotter(verifier=str(models.DEFAULT_MODEL))  # the GRU itself
    ver = _tiny_verifier(tmp_path, models.resolve(None)[0])
    cfg = json.loads((ver / "model.json").read_text())
    cfg["first_stage_sha256"] = "0" * 64
    (ver / "model.json").write_text(json.dumps(cfg))
    with pytest.raises(ConfigError, match="another first-stage model"):
        KeywordSpotter(verifier=str(ver))
    with pytest.raises(ConfigError, match="not found"):
        KeywordSpotter(verifier=str(tmp_path / "missing"))


def test_keyword_labels_run_on_over_what_follows():
    from rtaudio.kws.verifier import extend_keyword_labels

    y = np.array([[0, 1, -100, -100, 3, 3, 0, 0, 0, 1, 4, 4, 0, -100, 2, 2, 1, 1]])
    want = [0, 1, -100, -100, 3, 3, 3, 3, 0, 1, 4, 4, 4, -100, 2, 2, 2, 2]
    assert extend_keyword_labels(y, 2)[0].tolist() == want


def test_smoke_train_a_verifier(tmp_path, monkeypatch):
    """A seconds-long run end to end: a tiny first stage, its verifier trained on its candidates,
    the cascade calibrated, saved, and run by the stage."""
    import argparse

    from rtaudio.errors import RtAudioError
    from rtaudio.kws.train import train
    from rtaudio.kws.verifier import cmd_train_verifier, train_verifier

    monkeypatch.setenv("RTAUDIO_CACHE", str(tmp_path / "cache"))
    torch.set_num_threads(1)
    gru = tmp_path / "gru"
    train(["lights on", "lights off"], gru, seed=1, minutes=0.05, corpus_scale=0.02, log=lambda m: None)
    out = tmp_path / "ver"
    cfg = train_verifier(out, gru, minutes=0.1, scale=0.02, log=lambda m: None)
    saved = json.loads((out / "model.json").read_text())
    assert saved["role"] == "verifier" and saved["first_stage_sha256"] == file_sha256(gru / "model.pt")
    assert set(saved["cascade"]) == {"thresholds", "patience", "verify", "verify_delay"}
    assert len(saved["cascade"]["verify"]) == 2 and "recall" in cfg["calibration"]
    assert not list(out.glob("*.tmp"))
    stage = KeywordSpotter(model=str(gru), verifier=str(out))
    _, msgs = run_blocks(stage, _speech(2, 3 * RATE), [480] * 100, RATE)
    assert all(0 <= m.data["verified"] <= 1 for m in msgs if m.topic == "keyword")
    with pytest.raises(RtAudioError, match="--minutes"):
        cmd_train_verifier(argparse.Namespace(model=str(gru), out=str(tmp_path / "x"), seed=0, minutes=0))
    with pytest.raises(ConfigError, match="not found"):
        cmd_train_verifier(
            argparse.Namespace(model=str(tmp_path / "no"), out=str(tmp_path / "x"), seed=0, minutes=1)
        )
    assert not (tmp_path / "x").exists()
