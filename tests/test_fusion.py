"""Fusion of two detectors' keyword events: either, both, weighted; streaming-exact."""

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from rtaudio.bus import Bus
from rtaudio.stage import AudioFormat, Stage
from rtaudio.stages.fusion import Fuse

RATE = 16000


class ScriptedDetector(Stage):
    """Publishes given events when the stream reaches their sample index (a test source of events)."""

    kind = "scripted"

    def __init__(self, topic: str, events: list[tuple[int, str, float]]):
        super().__init__()
        self.topic, self.events = topic, events

    def process(self, block):
        end = self.position + block.shape[0]
        for s, label, score in self.events:
            if self.position <= s < end:
                self.emit(self.topic, s, {"label": label, "score": score, "threshold": 1.0})
        return block


A = [(1000, "stop", 1.5), (40000, "go", 1.2), (80000, "yes", 3.0)]
B = [(3000, "stop", 1.1), (60000, "go", 1.4), (120000, "no", 1.3)]


def fused(mode: str, sizes: list[int], weight: float = 0.5):
    bus = Bus()
    sub = bus.subscribe({"keyword"})
    chain = [ScriptedDetector("keyword_cls", A), ScriptedDetector("keyword_hmm", B),
             Fuse(mode=mode, weight=weight, window=0.5)]
    for st_ in chain:
        st_.setup(AudioFormat(RATE, 1), bus)
    x = np.zeros((160000, 1), np.float32)
    i = 0
    for n in [*sizes, len(x)]:
        for st_ in chain:
            st_.run(x[i : i + n])
        i += n
        if i >= len(x):
            break
    return [(m.sample, m.data["label"]) for m in sub.drain()]


def test_either_merges_close_events():
    assert fused("either", []) == [(1000, "stop"), (40000, "go"), (60000, "go"), (80000, "yes"),
                                   (120000, "no")]


def test_both_needs_agreement_within_the_window():
    assert fused("both", []) == [(3000, "stop")]  # go: 20000 samples apart > 0.5 s


def test_weighted_margins():
    # stop: 0.5*1.5 + 0.5*1.1 = 1.3 -> fires when the second arrives; yes alone: 0.5*3.0 = 1.5 -> fires
    # at once; go and no alone: 0.6, 0.7 -> no.
    assert fused("weighted", []) == [(3000, "stop"), (80000, "yes")]


@settings(max_examples=30, deadline=None)
@given(sizes=st.lists(st.integers(0, 9000), max_size=30),
       mode=st.sampled_from(["either", "both", "weighted"]))
def test_streaming_exact(sizes, mode):
    assert fused(mode, sizes) == fused(mode, [])


def test_fusion_pipeline_file_fires_on_a_spoken_keyword(tmp_path, monkeypatch):
    """pipelines/keywords_fusion.toml with its input replaced by a file: a word spoken by a training
    voice gives one fused `keyword` event, after both detectors reported it on their own topics."""
    import json

    import soundfile as sf

    from rtaudio import pipeline
    from rtaudio.engine import Engine
    from rtaudio.kws.voices import Voice, synthesize

    monkeypatch.setenv("RTAUDIO_CACHE", str(tmp_path))
    word = synthesize([(Voice("espeak", "en-gb"), "yes")])[0]
    x = np.zeros(3 * RATE, np.float32)
    x[RATE : RATE + len(word)] = word * 0.5
    x += np.random.default_rng(1).standard_normal(len(x)).astype(np.float32) * 5e-4
    sf.write(tmp_path / "yes.wav", x, RATE, subtype="FLOAT")
    spec = pipeline.load("keywords_fusion")
    spec.source = pipeline.ComponentSpec("file", {"path": str(tmp_path / "yes.wav")}, "test")
    spec.sinks = [s for s in spec.sinks if s.kind == "eventlog"]
    spec.sinks[0].values["path"] = str(tmp_path / "events.jsonl")
    source, stages, sinks = spec.build()
    Engine(source, stages, sinks, block=spec.block).run()
    events = [json.loads(line) for line in (tmp_path / "events.jsonl").read_text().splitlines()]
    by_topic = {t: [e for e in events if e["topic"] == t] for t in ("keyword", "keyword_cls", "keyword_hmm")}
    assert [e["data"]["label"] for e in by_topic["keyword_cls"]] == ["yes"]
    assert [e["data"]["label"] for e in by_topic["keyword_hmm"]] == ["yes"]
    assert [e["data"]["label"] for e in by_topic["keyword"]] == ["yes"]
    assert by_topic["keyword"][0]["data"]["detector"] == "fuse-both"
