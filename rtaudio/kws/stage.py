"""The streaming keyword classifier stage (`kws`): audio in (16 kHz), audio out unchanged.

Publishes `posteriors` every model step (30 ms for the shipped model: `{"classes", "probs"}`) and
`keyword` events: message sample = the input sample at which the detection fired, data
`{"label", "score", "detector", "threshold", "start", "end"}` (start/end: the estimated word span in
samples) on the topic `keyword` (or the stage's `topic`, which fusion pipelines set)."""

from __future__ import annotations

import numpy as np

from ..errors import AudioFormatError
from ..params import Param
from ..registry import register
from ..stage import AudioFormat, Stage
from .decision import Decider, DecisionConfig, step_end_sample


@register
class KeywordSpotter(Stage):
    kind = "kws"
    summary = "Streaming keyword classifier (TCN, GRU or DS-CNN on log-mel): posteriors and keyword events."
    params = (
        Param(
            "model", str, None, optional=True, help="model dir or .pt (default: the shipped 10-word model)"
        ),
        Param(
            "threshold",
            float,
            None,
            min=0.0,
            max=1.0,
            optional=True,
            help="one threshold for all keywords (default: calibrated)",
        ),
        Param(
            "smooth", int, None, min=1, max=100, optional=True, unit="frames", help="moving-average length"
        ),
        Param("patience", int, None, min=1, max=100, optional=True, unit="frames"),
        Param("refractory", float, None, min=0.0, max=10.0, optional=True, unit="s"),
        Param("posteriors", bool, True, help="publish 'posteriors' messages"),
        Param("topic", str, "keyword", help="bus topic of the events (fusion pipelines rename it)"),
    )

    def __init__(self, where: str | None = None, **values) -> None:
        super().__init__(where, **values)
        from . import models  # torch is imported only when a kws stage is built

        self.net, self.config = models.load(self.model, where=self.where)
        self.keywords: list[str] = list(self.config["keywords"])
        self.classes: tuple[str, ...] = tuple(self.config["classes"])

    def decision_config(self) -> DecisionConfig:
        d = dict(self.config["decision"])
        if self.threshold is not None:
            d["thresholds"] = [self.threshold] * len(self.keywords)
        for key in ("smooth", "patience", "refractory"):
            if getattr(self, key) is not None:
                d[key] = getattr(self, key)
        return DecisionConfig(**d)

    def prepare(self, fmt: AudioFormat) -> AudioFormat:
        from .infer import Streamer

        self.streamer = Streamer(self.net, self.config)
        rate = self.streamer.cfg.rate
        if fmt.rate != rate:
            raise AudioFormatError(
                f"{self.where}: the model expects {rate} Hz audio, got {fmt.rate} Hz "
                f"(put a 'resample' stage with rate = {rate} before it)"
            )
        self.hop, self.win = self.streamer.cfg.hop, self.streamer.cfg.win
        self.decider = Decider(self.decision_config(), self.hop * self.streamer.stride / rate)
        self.thresholds = list(self.decider.cfg.thresholds)
        self.kw_samples = {k: int(s * rate) for k, s in self.config.get("keyword_seconds", {}).items()}
        self.before_end = int(self.config.get("label_before_end", 0.05) * rate)
        return fmt

    def reset(self) -> None:
        self.streamer.reset()
        self.decider.reset()

    def process(self, block: np.ndarray) -> np.ndarray:
        mono = block.mean(axis=1) if block.shape[1] > 1 else block[:, 0]
        frames, post = self.streamer.push(mono)
        if frames.shape[0] == 0:
            return block
        stride = self.streamer.stride
        if self.posteriors:  # one message per model step, stamped with the step's first frame
            for t, p in zip(frames, post, strict=True):
                first = (int(t) - stride + 1) * self.hop
                self.emit("posteriors", first, {"classes": self.classes, "probs": p})
        _, events = self.decider.step(post)
        for e in events:
            # decider frame j is feature frame j*stride + stride-1; a frame's audio ends at t*hop+win
            fired = step_end_sample(e.frame, stride, self.hop, self.win)
            onset_end = step_end_sample(e.onset_frame, stride, self.hop, self.win)
            label = self.keywords[e.keyword]
            end = min(fired, onset_end + self.before_end)  # estimated end of the word
            self.emit(
                self.topic,
                fired,
                {
                    "label": label,
                    "score": round(e.score, 4),
                    "detector": "kws",
                    "threshold": round(float(self.thresholds[e.keyword]), 4),
                    "end": end,
                    "start": max(0, end - self.kw_samples.get(label, 0)),
                },
            )
        return block
