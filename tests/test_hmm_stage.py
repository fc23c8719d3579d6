"""The hmm_kws stage: streaming-exact, rate checked, bad model directories rejected clearly."""

import json
import shutil

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rtaudio.errors import AudioFormatError, RtAudioError
from rtaudio.hmm.frontend import FrontEnd, FrontEndConfig
from rtaudio.hmm.stage import DEFAULT_MODEL, HmmKeywordStage
from rtaudio.hmm.train import calibrate
from rtaudio.stage import AudioFormat

from .streaming import run_blocks


@pytest.fixture(scope="module")
def speech():
    """Keywords and other words from espeak-ng (a training voice), 16 kHz."""
    import io
    import subprocess

    import soundfile as sf
    import soxr

    wav = subprocess.run(["espeak-ng", "-v", "en-us", "--stdout", "yes. the table. no. stop. yesterday. go."],
                         check=True, capture_output=True).stdout
    x, rate = sf.read(io.BytesIO(wav), dtype="float32")
    return soxr.resample(x, rate, 16000).astype(np.float32)[:, None]


def test_frontend_streaming_equals_whole():
    x = np.random.default_rng(0).normal(0, 0.1, 16000 * 2)
    fe = FrontEnd(FrontEndConfig())
    whole = fe.push(x)
    fe.reset()
    parts = np.concatenate([fe.push(x[i : i + 1234]) for i in range(0, len(x), 1234)])
    np.testing.assert_array_equal(parts, whole)


@settings(max_examples=12, deadline=None)
@given(sizes=st.lists(st.one_of(st.just(0), st.just(1), st.integers(0, 5000)), max_size=25))
def test_stage_streaming_exact(speech, sizes):
    out_w, msgs_w = run_blocks(HmmKeywordStage(sensitivity=2.0), speech, [], 16000)
    out_p, msgs_p = run_blocks(HmmKeywordStage(sensitivity=2.0), speech, sizes, 16000)
    np.testing.assert_array_equal(out_p, speech)
    kw_w = [(m.sample, m.data["label"]) for m in msgs_w if m.topic == "keyword"]
    kw_p = [(m.sample, m.data["label"]) for m in msgs_p if m.topic == "keyword"]
    assert kw_p == kw_w


def test_wrong_rate_is_a_clear_error():
    with pytest.raises(AudioFormatError, match="needs 16000 Hz audio, got 48000 Hz.*resample rate=16000"):
        HmmKeywordStage().setup(AudioFormat(48000, 1))


def test_bad_model_directories(tmp_path):
    with pytest.raises(RtAudioError, match="not an HMM model directory"):
        HmmKeywordStage(model=str(tmp_path)).setup(AudioFormat(16000, 1))
    bad = tmp_path / "m"
    shutil.copytree(DEFAULT_MODEL, bad)
    (bad / "hmm.npz").write_bytes(b"garbage")
    with pytest.raises(RtAudioError, match="corrupt HMM model"):
        HmmKeywordStage(model=str(bad)).setup(AudioFormat(16000, 1))
    other = tmp_path / "o"
    shutil.copytree(DEFAULT_MODEL, other)
    cfg = json.loads((other / "hmm.json").read_text())
    cfg["frontend"]["n_mfcc"] = 20
    (other / "hmm.json").write_text(json.dumps(cfg))
    with pytest.raises(RtAudioError, match="dimension"):
        HmmKeywordStage(model=str(other)).setup(AudioFormat(16000, 1))


def test_calibration_meets_its_false_accept_target():
    """One threshold for all keywords: their events together stay within the target, and it is the
    lowest such threshold (a little lower lets one more through)."""
    rng = np.random.default_rng(0)
    trace = rng.normal(0, 1, (360_000, 2))  # one hour of frames at 100 per second
    trace[:, 1] += 0.5  # a keyword whose near misses score higher takes more of the budget

    def events(th):
        n = []
        for k in range(2):
            above = np.flatnonzero(trace[:, k] > th)
            n.append(1 + np.count_nonzero(np.diff(above) > 50) if len(above) else 0)
        return n

    th = calibrate(trace, hours=1.0, target_fa_per_hour=6, refractory=50)
    assert sum(events(th)) <= 6
    assert sum(events(th - 0.01)) > 6
    assert events(th)[1] > events(th)[0]


def test_train_hmm_rejects_bad_keyword_lists(tmp_path):
    import subprocess
    import sys

    for kws, expect in (("", "keyword list is empty"), ("yes,42", "cannot say")):
        r = subprocess.run([sys.executable, "-m", "rtaudio", "train-hmm", "--keywords", kws,
                            "--out", str(tmp_path / "m")], capture_output=True, text=True, timeout=120)
        assert r.returncode == 1 and expect in r.stderr and "Traceback" not in r.stderr
        assert not (tmp_path / "m").exists()
