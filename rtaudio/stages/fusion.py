"""Fusion of two keyword detectors (e.g. the neural classifier and the HMM spotter).

Both detectors publish their events on their own topics (set their `topic` parameter); this stage
reads them from the bus (earlier stages have already run on the same block) and publishes fused
`keyword` events. Each event's strength is its margin over its own threshold (score / threshold):

* `either`: fire on the first event of a label; the other detector's event within `window` is merged.
* `both`: fire when both detectors report the label within `window` of each other.
* `weighted`: fire when `weight * margin_a + (1 - weight) * margin_b >= 1` within `window`
  (a detector that stays silent contributes 0).
"""

from __future__ import annotations

import numpy as np

from ..errors import AudioFormatError
from ..params import Param
from ..registry import register
from ..stage import AudioFormat, Stage


@register
class Fuse(Stage):
    kind = "fuse"
    summary = "Fuses keyword events of two detectors (either, both, or weighted margins)."
    params = (
        Param("inputs", str, "keyword_cls,keyword_hmm", help="the two detectors' topics, comma-separated"),
        Param("mode", str, "weighted", choices=("either", "both", "weighted"), live=True),
        Param("weight", float, 0.5, min=0.0, max=1.0, live=True, help="weight of the first input"),
        Param("window", float, 0.6, min=0.0, max=5.0, unit="s", help="how far apart the two may fire"),
    )

    def prepare(self, fmt: AudioFormat) -> AudioFormat:
        self.topics = [t.strip() for t in self.inputs.split(",") if t.strip()]
        if len(self.topics) != 2:
            raise AudioFormatError(f"{self.where}: key 'inputs' must name two topics, got {self.inputs!r}")
        self.win = int(round(self.window * fmt.rate))
        self.sub = self.bus.subscribe(set(self.topics), maxlen=4096) if self.bus is not None else None
        self.reset()
        return fmt

    def reset(self) -> None:
        self.pending: dict[str, dict] = {}  # label -> {"first": sample, topic: event data}
        self.quiet: dict[str, int] = {}  # label -> sample until which a fused event was just fired
        if self.sub is not None:
            self.sub.drain()

    def _margin(self, data: dict) -> float:
        th = float(data.get("threshold", 0.0) or 0.0)
        return float(data["score"]) / th if th > 0 else float(data["score"])

    def _fire(self, label: str, sample: int, entry: dict) -> None:
        margins = [self._margin(entry[t]) if t in entry else 0.0 for t in self.topics]
        self.emit("keyword", sample, {
            "label": label, "score": round(float(np.max(margins)), 3), "detector": f"fuse-{self.mode}",
            "margins": dict(zip(self.topics, [round(m, 3) for m in margins], strict=True)),
        })
        self.quiet[label] = sample + self.win

    def _decide(self, label: str, entry: dict, now: int, final: bool) -> bool:
        """True when the pending entry is settled (fired or dropped)."""
        have = [t for t in self.topics if t in entry]
        if self.mode == "both":
            if len(have) == 2:
                self._fire(label, now, entry)
                return True
            return final
        if self.mode == "weighted":
            m = [self._margin(entry[t]) if t in entry else 0.0 for t in self.topics]
            if self.weight * m[0] + (1 - self.weight) * m[1] >= 1.0:
                self._fire(label, now, entry)
                return True
            return final
        return True

    def process(self, block: np.ndarray) -> np.ndarray:
        end = self.position + block.shape[0]
        events = sorted(self.sub.drain(), key=lambda m: m.sample) if self.sub is not None else []
        for msg in events:
            label = msg.data["label"]
            self._expire(msg.sample)
            if msg.sample < self.quiet.get(label, -1):
                continue
            if self.mode == "either":
                self._fire(label, msg.sample, {msg.topic: msg.data})
                continue
            entry = self.pending.setdefault(label, {"first": msg.sample})
            entry[msg.topic] = msg.data
            if self._decide(label, entry, msg.sample, final=False):
                del self.pending[label]
        self._expire(end)
        return block

    def _expire(self, now: int) -> None:
        for label in [k for k, e in self.pending.items() if e["first"] + self.win <= now]:
            entry = self.pending.pop(label)
            self._decide(label, entry, entry["first"] + self.win, final=True)
