"""The `kws` stage: the shipped model loads and streams exactly; detects a spoken keyword; bad
models and formats are clear errors."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch
from hypothesis import given, settings

from rtaudio.errors import AudioFormatError, ConfigError
from rtaudio.kws import models
from rtaudio.kws.stage import KeywordSpotter
from rtaudio.kws.voices import Voice, synthesize
from rtaudio.registry import lookup
from rtaudio.stage import AudioFormat

from .streaming import partitions, run_blocks

RATE = 16000


def test_registered_and_small():
    assert lookup("kws", "stage") is KeywordSpotter
    assert lookup("logmel", "stage") and lookup("mfcc", "stage")
    pt, js = models.resolve(None)
    assert pt.stat().st_size + js.stat().st_size < 14_000_000  # nine TCNs of 346-355 k parameters: 12.6 MB


def _noise(seed: int, n: int) -> np.ndarray:
    return (np.random.default_rng(seed).standard_normal((n, 1)) * 0.05).astype(np.float32)


@settings(max_examples=12, deadline=None)
@given(sizes=partitions(2000))
def test_stage_streams_exactly(sizes):
    x = _noise(3, 12000)
    x[4000:6000] += np.sin(np.arange(2000) / 5)[:, None].astype(np.float32) * 0.3
    whole_out, whole = run_blocks(KeywordSpotter(), x, [], RATE)
    out, msgs = run_blocks(KeywordSpotter(), x, sizes, RATE)
    np.testing.assert_array_equal(out, x)
    a = [m for m in whole if m.topic == "posteriors"]
    b = [m for m in msgs if m.topic == "posteriors"]
    stride = KeywordSpotter().config["stride"]
    assert len(a) == len(b) == ((len(x) - 400) // 160 + 1) // stride
    assert [m.sample for m in a] == [m.sample for m in b]
    np.testing.assert_allclose(
        np.stack([m.data["probs"] for m in b]), np.stack([m.data["probs"] for m in a]), atol=1e-5
    )
    assert [(m.sample, m.data["label"]) for m in msgs if m.topic == "keyword"] == [
        (m.sample, m.data["label"]) for m in whole if m.topic == "keyword"
    ]


def test_detects_a_spoken_keyword(tmp_path, monkeypatch):
    monkeypatch.setenv("RTAUDIO_CACHE", str(tmp_path))
    word = synthesize([(Voice("espeak", "en-gb"), "off")])[0]
    x = np.zeros(3 * RATE, np.float32)
    x[RATE : RATE + len(word)] = word * 0.5
    x += _noise(1, len(x))[:, 0] * 0.01
    nz = np.flatnonzero(np.abs(word) > 0.02)
    word_end = RATE + nz[-1]
    _, msgs = run_blocks(KeywordSpotter(), x[:, None], [480] * 200, RATE)
    kws = [m for m in msgs if m.topic == "keyword"]
    assert [m.data["label"] for m in kws] == ["off"]
    ev = kws[0]
    assert RATE <= ev.sample <= word_end + 0.5 * RATE
    assert 0 < ev.data["score"] <= 1 and ev.data["start"] < ev.data["end"] <= ev.sample


def test_wrong_rate_is_a_format_error():
    with pytest.raises(AudioFormatError, match="16000 Hz.*resample"):
        KeywordSpotter().setup(AudioFormat(48000, 1))


def test_bad_model_files_are_clear_errors(tmp_path):
    src_pt, src_js = models.resolve(None)
    bad = tmp_path / "m"
    bad.mkdir()
    with pytest.raises(ConfigError, match="not found"):
        KeywordSpotter(model=str(bad))
    shutil.copy(src_js, bad / "model.json")
    (bad / "model.pt").write_bytes(src_pt.read_bytes()[:500])  # truncated
    with pytest.raises(ConfigError, match="corrupt"):
        KeywordSpotter(model=str(bad))
    (bad / "model.json").write_text("{not json")
    with pytest.raises(ConfigError, match="corrupt"):
        KeywordSpotter(model=str(bad))
    # another feature configuration: 64 mels, fingerprint updated, weights still for 40
    cfg = json.loads(src_js.read_text())
    cfg["features"]["n_mels"] = 64
    model, _ = models.load(None)
    models.save(model, cfg, bad)
    with pytest.raises(ConfigError, match="does not fit|feature configuration"):
        KeywordSpotter(model=str(bad))
    # a config edited without its fingerprint
    cfg2 = json.loads(src_js.read_text())
    cfg2["features"]["hop"] = 320
    shutil.copy(src_pt, bad / "model.pt")
    (bad / "model.json").write_text(json.dumps(cfg2))
    with pytest.raises(ConfigError, match="another feature configuration"):
        KeywordSpotter(model=str(bad))
    # a pickle that weights_only refuses
    torch.save({"x": object()}, bad / "model.pt")
    shutil.copy(src_js, bad / "model.json")
    with pytest.raises(ConfigError, match="corrupt"):
        KeywordSpotter(model=str(bad / "model.pt"))


def _tcn_dir(tmp_path) -> str:
    """A TCN of the shipped model's keywords, features and decision (randomly initialised)."""
    _, shipped = models.load(None)
    config = dict(shipped, arch="tcn", arch_params={"hidden": 32, "dilations": [1, 2, 4, 8, 16], "stack": 3})
    config.pop("training", None)
    torch.manual_seed(0)
    models.save(models.build(config), config, tmp_path / "tcn")
    return str(tmp_path / "tcn")


@settings(max_examples=10, deadline=None)
@given(sizes=partitions(6000))
def test_tcn_stage_streams_exactly(tmp_path_factory, sizes):
    """The TCN's state (each block's last 2 x dilation inputs) makes any partition of the audio,
    down to one step per block, give the posteriors of the whole signal."""
    d = _tcn_dir(tmp_path_factory.mktemp("tcn"))
    x = _noise(4, 40000)  # 82 steps: more than the receptive field
    x[3000:7000] += np.sin(np.arange(4000) / 7)[:, None].astype(np.float32) * 0.3
    _, whole = run_blocks(KeywordSpotter(model=d), x, [], RATE)
    _, parts = run_blocks(KeywordSpotter(model=d), x, sizes, RATE)
    a = [m for m in whole if m.topic == "posteriors"]
    b = [m for m in parts if m.topic == "posteriors"]
    assert [m.sample for m in a] == [m.sample for m in b] and len(a) > 70
    pa = np.stack([m.data["probs"] for m in a])
    np.testing.assert_allclose(np.stack([m.data["probs"] for m in b]), pa, atol=1e-5)
    assert np.abs(np.diff(pa, axis=0)).max() > 1e-4  # the posteriors move with the input


def test_tcn_sees_two_seconds_back_and_no_further(tmp_path):
    """Its receptive field is 1 + 2 x (1 + 2 + 4 + 8 + 16) = 63 steps: a change of the input 62 steps
    back moves the output, one 64 steps back does not."""
    model, config = models.load(_tcn_dir(tmp_path))
    x = torch.randn(1, 3 * 200, 40)
    base, _ = model(x)
    for back, moves in ((62, True), (64, False)):
        y = x.clone()
        t = 199 - back
        y[0, 3 * t : 3 * t + 3] += 5.0
        out, _ = model(y)
        assert bool((out[0, 199] - base[0, 199]).abs().max() > 1e-6) is moves
