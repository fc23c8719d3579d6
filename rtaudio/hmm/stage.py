"""The `hmm_kws` stage: MFCC front end + keyword-filler HMM decoding, frame by frame, live."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import AudioFormatError, RtAudioError
from ..params import Param
from ..registry import register
from ..stage import AudioFormat, Stage
from .decoder import KeywordSpotter
from .frontend import FrontEnd, FrontEndConfig
from .params import load_models

DEFAULT_MODEL = Path(__file__).resolve().parent.parent / "models" / "hmm"


def load_spotter(path: Path, sensitivity: float = 0.0) -> tuple[KeywordSpotter, FrontEnd, dict]:
    models, config = load_models(path)
    try:
        fe_cfg = FrontEndConfig(**config["frontend"])
        keywords = {k: models[k] for k in config["keywords"]}
        filler = models["filler"]
        thresholds = {k: float(v) - sensitivity for k, v in config["thresholds"].items()}
        dec = config.get("decoder", {})
    except (KeyError, TypeError) as e:
        raise RtAudioError(f"{path}: HMM model config is incomplete ({e})") from None
    dims = {m.n_features for m in models.values()}
    if dims != {fe_cfg.dim}:
        raise RtAudioError(
            f"{path}: model features have dimension {sorted(dims)}, its front end makes {fe_cfg.dim}"
        )
    spotter = KeywordSpotter(keywords, filler, thresholds, **dec)
    mean, var = np.asarray(config["cmvn_mean"]), np.asarray(config["cmvn_var"])
    return spotter, FrontEnd(fe_cfg, mean, var), config


@register
class HmmKeywordStage(Stage):
    kind = "hmm_kws"
    summary = "HMM keyword spotter (keyword-filler loop, hmmlearn-trained), 16 kHz mono in; audio passes."
    params = (
        Param("model", str, "", help="model directory (default: the shipped ten-word model)"),
        Param("sensitivity", float, 0.0, min=-10.0, max=10.0, live=False,
              help="lowers (+) or raises (-) every calibrated threshold, in score units"),
        Param("topic", str, "keyword", help="bus topic of the events (fusion pipelines rename it)"),
    )

    def prepare(self, fmt: AudioFormat) -> AudioFormat:
        path = Path(self.model) if self.model else DEFAULT_MODEL
        self.spotter, self.frontend, self.config = load_spotter(path, self.sensitivity)
        cfg = self.frontend.cfg
        if fmt.rate != cfg.rate:
            raise AudioFormatError(
                f"{self.where}: needs {cfg.rate} Hz audio, got {fmt.rate} Hz "
                f"(put 'resample rate={cfg.rate}' before it)"
            )
        self.hop, self.win = cfg.hop, cfg.features().win
        self.lag = cfg.latency_frames
        return fmt

    def reset(self) -> None:
        self.spotter.reset()
        self.frontend.reset()

    def process(self, block: np.ndarray) -> np.ndarray:
        if block.shape[0] == 0:
            return block
        mono = block.mean(axis=1) if block.shape[1] > 1 else block[:, 0]
        feats = self.frontend.push(mono)
        if feats.shape[0]:
            first = self.spotter.frame
            scores, found = self.spotter.push(feats)
            self.emit("hmm_scores", (first + feats.shape[0]) * self.hop,
                      dict(zip(self.spotter.names, np.max(scores, axis=0).round(3).tolist(), strict=True)))
            for d in found:
                end = d.frame * self.hop + self.win
                self.emit(self.topic, end, {
                    "label": d.keyword, "score": round(d.score, 3), "detector": "hmm",
                    "threshold": round(float(self.spotter.thresholds[self.spotter.names.index(d.keyword)]),
                                       4),
                    "start": d.start * self.hop, "end": end,
                })
        return block
