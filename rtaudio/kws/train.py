"""Train a streaming keyword classifier from typed keywords: `rtaudio train --keywords ...`.

Steps: synthesise a training corpus and a held-out calibration corpus (training voices only,
different seeds); build long augmented streams with per-frame labels; train the GRU with its state
carried across chunks (or the DS-CNN on windows); calibrate per-keyword thresholds on held-out
streams to a target false-accept rate (`calibration`); write model.pt + model.json.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import sys
import time
from concurrent.futures import Future, ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..errors import RtAudioError
from . import models
from .calibration import calibrate
from .data import (
    IGNORE,
    LABEL_BEFORE_END,
    PIECE_S,
    Corpus,
    augment,
    build_corpus,
    calibration_corpus,
    class_names,
    frame_labels,
    make_stream,
    parse_keywords,
)
from .decision import DecisionConfig
from .features import FeatureConfig, FeatureExtractor, RunningMeanNorm
from .words import DEFAULT_KEYWORDS

KEYWORD_WEIGHT = 3.0  # keyword frames are ~6% of all frames
POOL_EPOCHS = 1  # epochs per freshly generated data pool
STACK = 3  # frames per model step: the GRU steps (and the CNN is evaluated) every 30 ms
LR = 4e-3
# continuing a trained model (`--init-from`): 12 minutes at this rate from a member's own weights and
# corpus seed raised each of five shipped members' recall within 10 FA/h (docs/kws-experiments.md, stop 37)
FINE_TUNE_LR = 1e-3
MEAN_NORM_S = 2.0  # running feature-mean normalisation time constant (s)


class Bar:
    """A minimal progress bar on stderr."""

    def __init__(self, label: str, total: float, stream=sys.stderr) -> None:
        self.label, self.total, self.stream, self.last = label, total, stream, -1.0

    def update(self, done: float, info: str = "") -> None:
        frac = min(1.0, done / self.total) if self.total else 1.0
        if frac - self.last < 0.01 and frac < 1.0:
            return
        self.last = frac
        n = int(frac * 30)
        self.stream.write(f"\r{self.label} [{'#' * n}{'.' * (30 - n)}] {frac * 100:5.1f}% {info}   ")
        if frac >= 1.0:
            self.stream.write("\n")
        self.stream.flush()


def make_streams(
    corpus: Corpus,
    rng: np.random.Generator,
    cfg: FeatureConfig,
    n_streams: int,
    seconds: float,
    p_kw: float = 0.35,
    vtlp: bool = True,
    mean_norm_s: float = 0.0,
    before_end: float = LABEL_BEFORE_END,
    p_abut: float = 0.15,
) -> tuple[np.ndarray, np.ndarray]:
    """(n_streams, frames, dim) features and (n_streams, frames) labels of augmented streams."""
    feats, labs = [], []
    n_pieces = max(1, int(round(seconds / PIECE_S)))
    for _ in range(n_streams):
        fs, ls = [], []
        for _ in range(n_pieces):
            y, spans = make_stream(corpus, rng, PIECE_S, p_kw, p_abut)
            y = augment(y, spans, rng, corpus.sent)
            warp = float(rng.uniform(0.88, 1.12)) if vtlp and rng.random() < 0.7 else 1.0
            f = FeatureExtractor(cfg, warp).compute(y)
            fs.append(f)
            ls.append(frame_labels(spans, len(f), cfg, before_end))
        f = np.concatenate(fs)
        if mean_norm_s > 0:  # over the whole stream, as it runs live
            f = RunningMeanNorm(mean_norm_s, cfg.hop / cfg.rate).push(f)
        feats.append(f)
        labs.append(np.concatenate(ls))
    n = min(len(f) for f in feats)
    return np.stack([f[:n] for f in feats]), np.stack([lab[:n] for lab in labs])


_POOL_MAKER: dict[str, Any] = {}


def _init_pool_maker(corpus: Corpus, feats: FeatureConfig, stream_opts: dict[str, Any]) -> None:
    """`stream_opts`: keyword arguments of `make_streams` (label start, share of abutting words)."""
    import os

    os.environ.setdefault("OMP_NUM_THREADS", "1")
    torch.set_num_threads(1)
    _POOL_MAKER.update(corpus=corpus, feats=feats, stream_opts=stream_opts)


def _make_pool(seed: int, key: int, n_streams: int, seconds: float) -> tuple[np.ndarray, np.ndarray]:
    """One pool of training streams, in the data worker process (deterministic from seed and key)."""
    rng = np.random.default_rng([seed, key])
    c, f = _POOL_MAKER["corpus"], _POOL_MAKER["feats"]
    return make_streams(c, rng, f, n_streams, seconds, mean_norm_s=MEAN_NORM_S, **_POOL_MAKER["stream_opts"])


def _lr(base: float, frac: float) -> float:
    return base * (0.05 + 0.95 * 0.5 * (1 + np.cos(np.pi * min(1.0, frac))))


def train_gru(
    model: models.GRUClassifier,
    data_fn,
    budget_s: float,
    log=print,
    chunk: int = 201,
    lr: float = LR,
) -> None:
    """Truncated back-propagation through long streams: the state is carried from chunk to chunk
    (detached), as it is carried live. The target of a group of stacked frames is its last frame's;
    cross-entropy on every labelled step, keyword steps weighted `KEYWORD_WEIGHT`."""
    k = model.stack
    chunk = max(k, chunk // k * k)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    t0 = time.monotonic()
    bar = Bar("training", budget_s)
    epoch = steps = 0
    n_kw = model.out.out_features - 2
    weight = torch.tensor([1.0, 1.0] + [KEYWORD_WEIGHT] * n_kw)
    lossf = nn.CrossEntropyLoss(weight=weight, ignore_index=IGNORE)
    while time.monotonic() - t0 < budget_s:
        x, y = (torch.from_numpy(a) for a in data_fn(epoch))
        state = model.init_state(x.shape[0])
        losses, correct, count = [], 0, 0
        model.train()
        for a in range(0, x.shape[1] - chunk + 1, chunk):
            frac = (time.monotonic() - t0) / budget_s
            if frac >= 1:
                break
            for g in opt.param_groups:
                g["lr"] = _lr(lr, frac)
            h, state = model.hidden_states(x[:, a : a + chunk], state)
            logits = model.out(h)
            state = state.detach()
            tgt = y[:, a + k - 1 : a + chunk : k]
            step_loss = lossf(logits.reshape(-1, logits.shape[-1]), tgt.reshape(-1))
            opt.zero_grad()
            step_loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), 5.0)
            opt.step()
            steps += 1
            losses.append(step_loss.item())
            m = tgt >= 2
            correct += int((logits.argmax(-1)[m] == tgt[m]).sum())
            count += int(m.sum())
            bar.update(
                time.monotonic() - t0,
                f"epoch {epoch} loss {np.mean(losses[-20:]):.3f} kw-acc {correct / max(1, count):.2f}",
            )
        epoch += 1
    bar.update(budget_s, f"{epoch} epochs")
    log(f"training: {steps} steps, {epoch} epochs in {time.monotonic() - t0:.0f} s")


def train_cnn(model: models.DSCNN, data_fn, budget_s: float, log=print, batch: int = 96) -> None:
    opt = torch.optim.AdamW(model.parameters(), lr=2e-3, weight_decay=1e-4)
    lossf = nn.CrossEntropyLoss()
    t0 = time.monotonic()
    bar = Bar("training", budget_s)
    rng = np.random.default_rng(0)
    w = model.window
    epoch = 0
    while time.monotonic() - t0 < budget_s:
        x, y = data_fn(epoch)
        pos = np.argwhere((y >= 0) & (np.arange(y.shape[1]) >= w - 1)[None, :])
        kw = pos[y[pos[:, 0], pos[:, 1]] >= 2]
        model.train()
        losses = []
        for _ in range(max(1, len(pos) // batch)):
            frac = (time.monotonic() - t0) / budget_s
            if frac >= 1:
                break
            for g in opt.param_groups:
                g["lr"] = _lr(2e-3, frac)
            pick = np.concatenate(
                [
                    pos[rng.integers(len(pos), size=batch // 2)],
                    kw[rng.integers(len(kw), size=batch - batch // 2)],
                ]
            )
            xb = torch.from_numpy(np.stack([x[i, t - w + 1 : t + 1] for i, t in pick]))
            yb = torch.from_numpy(y[pick[:, 0], pick[:, 1]])
            loss = lossf(model(xb), yb)
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(loss.item())
            bar.update(time.monotonic() - t0, f"epoch {epoch} loss {np.mean(losses[-20:]):.3f}")
        epoch += 1
    bar.update(budget_s, f"{epoch} epochs")


# -- the whole job ----------------------------------------------------------------------------
def train(
    keywords: list[str],
    out_dir: Path,
    seed: int = 0,
    minutes: float = 10.0,
    arch: str = "gru",
    target_fa_per_hour: float = 10.0,
    corpus_scale: float = 1.0,
    label_before_end: float = LABEL_BEFORE_END,
    p_abut: float = 0.15,
    p_near: float = 0.45,
    other_words: int = 1500,
    init_from: Path | None = None,
    lr: float = LR,
    hidden: int = 128,
    features: FeatureConfig | None = None,
    log=print,
) -> dict[str, Any]:
    """Train, calibrate and save a model for `keywords`; returns its config. `other_words` clips
    of non-keywords (at corpus_scale 1), a share `p_near` of them near misses. `init_from`: a
    trained GRU or TCN of the same keywords and features to continue from (fine-tuning).
    `hidden`: the GRU's or TCN's width. `features`: the front end (default `FeatureConfig()`: 40
    mel bands to 7.6 kHz)."""
    feats = features or FeatureConfig()
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    t0 = time.monotonic()
    arch_params = {
        "gru": {"hidden": hidden, "layers": 2, "stack": STACK},
        "tcn": {"hidden": hidden, "dilations": [1, 2, 4, 8, 16], "stack": STACK},
        "cnn": {"channels": 64, "blocks": 4, "window": 100},
    }[arch]
    start = None
    if init_from is not None:  # checked before the corpus is synthesised
        start, start_cfg = models.load(init_from)
        want = {"arch": arch, "arch_params": arch_params, "keywords": list(keywords)}
        want["features"] = feats.to_dict()
        want["label_before_end"] = label_before_end
        want["classes"] = class_names(keywords)
        if any(start_cfg.get(k) != v for k, v in want.items()):
            raise RtAudioError(f"{init_from}: not a model of these keywords, architecture and features")
    n_per = max(4, int(200 * corpus_scale))
    corpus = build_corpus(
        keywords,
        seed,
        n_per,
        max(20, int(other_words * corpus_scale)),
        max(8, int(400 * corpus_scale)),
        progress=log,
        p_near=p_near,
    )
    held = calibration_corpus(keywords, seed, corpus_scale, log)
    log(f"corpus ready in {time.monotonic() - t0:.0f} s: voices {corpus.voices}")
    durations = {
        k: float(np.median([len(c) for c in clips]) / feats.rate)
        for k, clips in zip(keywords, corpus.kw, strict=True)
    }
    config: dict[str, Any] = {
        "arch": arch,
        "arch_params": arch_params,
        "features": feats.to_dict(),
        "keywords": keywords,
        "classes": class_names(keywords),
        "stride": STACK,
        "mean_norm_s": MEAN_NORM_S,
        "keyword_seconds": durations,
        "label_before_end": label_before_end,
        "decision": DecisionConfig([0.5] * len(keywords), smooth=3, patience=2).to_dict(),
        "training": {
            "seed": seed,
            "minutes": minutes,
            "voices": corpus.voices,
            "clips_per_keyword": n_per,
            "p_abut": p_abut,
            "p_near": p_near,
            "other_words": other_words,
            "loss": "ce",
            "init_from": str(init_from) if init_from else None,
            "lr": lr,
        },
    }
    model = models.build(config)
    if start is not None:
        model.load_state_dict(start.state_dict())
    n_streams, seconds = (32, 128.0) if corpus_scale >= 0.5 else (4, 16.0)
    cache: dict[int, tuple[np.ndarray, np.ndarray]] = {}
    # The next pool is made in a worker process while the model trains on the current one: every
    # epoch sees fresh streams (a model that reused a pool for 3 epochs memorised it: its loss jumped
    # on each new pool). A thread was no good: it held the GIL that the training loop needs.
    maker = ProcessPoolExecutor(
        1,
        mp_context=mp.get_context("spawn"),
        initializer=_init_pool_maker,
        initargs=(corpus, feats, {"before_end": label_before_end, "p_abut": p_abut}),
    )
    pending: dict[int, Future] = {}

    def data_fn(epoch: int) -> tuple[np.ndarray, np.ndarray]:
        key = epoch // POOL_EPOCHS  # a fresh pool every POOL_EPOCHS epochs
        if key not in cache:
            cache.clear()
            t = time.monotonic()
            fut = pending.pop(key, None) or maker.submit(_make_pool, seed, key, n_streams, seconds)
            cache[key] = fut.result()
            pending[key + 1] = maker.submit(_make_pool, seed, key + 1, n_streams, seconds)
            if key == 0 and start is None:  # a fine-tuned model keeps its normalisation
                x = cache[0][0].reshape(-1, feats.dim)
                model.mean.copy_(torch.from_numpy(x.mean(0)))
                model.std.copy_(torch.from_numpy(x.std(0) + 1e-3))
            log(f"\ndata pool {key}: {n_streams} x {seconds:.0f} s (waited {time.monotonic() - t:.1f} s)")
        return cache[key]

    data_fn(0)
    reserve = 90 if corpus_scale >= 0.5 else 10  # calibration and saving (measured 40-60 s)
    budget = max(5.0, minutes * 60 - (time.monotonic() - t0) - reserve)
    try:
        if arch in models.STATEFUL_ARCHS:
            train_gru(model, data_fn, budget, log, lr=lr)
        else:
            train_cnn(model, data_fn, budget, log)
    finally:
        maker.shutdown(wait=False, cancel_futures=True)
    model.eval()
    # 3 h of keyword-free speech: at 10 false accepts per hour a 40-minute set allowed 7 in all,
    # and the thresholds it chose gave 50 per hour on the benchmark's streams
    cal_minutes = (20.0, 180.0) if corpus_scale >= 0.5 else (0.15, 0.15)
    config.update(calibrate(model, config, held, rng, target_fa_per_hour, *cal_minutes, log=log))
    models.save(model, config, out_dir)
    log(f"model written to {out_dir} ({time.monotonic() - t0:.0f} s total)")
    return config


def recalibrate(
    model_dir: Path, out_dir: Path, seed: int = 0, target_fa_per_hour: float = 10.0,
    minutes_pos: float = 20.0, minutes_neg: float = 180.0, log=print,
) -> dict[str, Any]:  # fmt: skip
    """Calibrate the thresholds of a trained model again (e.g. on more held-out data) and save it."""
    model, config = models.load(model_dir)
    return _calibrate_and_save(
        model, config, out_dir, seed, target_fa_per_hour, minutes_pos, minutes_neg, log
    )


def build_ensemble(
    model_dirs: list[Path], out_dir: Path, seed: int = 0, target_fa_per_hour: float = 10.0,
    scale: float = 1.0, log=print, combine: str = "mean",
) -> dict[str, Any]:  # fmt: skip
    """Average trained GRU or TCN models (`models.ensemble`, `combine` "mean" or "geo"), calibrate
    the average on held-out training-voice streams as `train` does (`scale` < 1: a smaller set, for
    tests) and save it."""
    model, config = models.ensemble(model_dirs, combine)
    minutes = (20.0 * scale, 180.0 * scale)
    return _calibrate_and_save(model, config, out_dir, seed, target_fa_per_hour, *minutes, log, scale)


def _calibrate_and_save(
    model: nn.Module, config: dict[str, Any], out_dir: Path, seed: int, target_fa_per_hour: float,
    minutes_pos: float, minutes_neg: float, log=print, scale: float = 1.0,
) -> dict[str, Any]:  # fmt: skip
    held = calibration_corpus(config["keywords"], seed, scale, log)
    rng = np.random.default_rng(seed + 1)
    config.update(calibrate(model, config, held, rng, target_fa_per_hour, minutes_pos, minutes_neg, log=log))
    models.save(model, config, out_dir)
    return config


def cmd_ensemble(args: argparse.Namespace) -> int:
    """CLI entry: args.models (dirs), args.out, args.seed, args.combine."""
    out = Path(args.out)
    config = build_ensemble([Path(m) for m in args.models], out, int(args.seed or 0),
                            log=lambda m: print(m, file=sys.stderr),
                            combine=getattr(args, "combine", None) or "mean")  # fmt: skip
    print(json.dumps({"model": str(out), "members": len(args.models), "calibration": config["calibration"]}))
    return 0


def _front_end(mels: int | None, fmax: float | None) -> FeatureConfig:
    """The log-mel front end of `--mels` / `--fmax` (None: FeatureConfig's default)."""
    default = FeatureConfig()
    mels = default.n_mels if mels is None else int(mels)
    fmax = default.fmax if fmax is None else float(fmax)
    if not 8 <= mels <= 128:
        raise RtAudioError(f"--mels must be 8 to 128, got {mels}")
    if not default.fmin < fmax <= default.rate / 2:
        top = default.rate // 2
        raise RtAudioError(f"--fmax must be above {default.fmin:g} Hz and at most {top} Hz, got {fmax:g}")
    return FeatureConfig(n_mels=mels, fmax=fmax)


def _take_settings_of(model_dir: Path, args: argparse.Namespace) -> FeatureConfig:
    """`--init-from`: fill `args` with the keywords, architecture and (unless given) corpus seed of
    the model to continue, so that training goes on where it stopped, and return its front end as
    it is (every field, not only what `--mels`/`--fmax` set); an option given that contradicts the
    model is an error."""
    _, cfg = models.load(model_dir, where="--init-from")
    if cfg["arch"] not in models.MEMBER_ARCHS or cfg.get("arch_params", {}).get("members", 1) != 1:
        kind = cfg["arch"]
        raise RtAudioError(f"--init-from: {model_dir} is of arch {kind!r}; only one GRU or TCN continues")
    feats = FeatureConfig.from_dict(cfg["features"])
    theirs = {
        "keywords": parse_keywords(",".join(cfg["keywords"])),
        "model": cfg["arch"],
        "mels": feats.n_mels,
        "fmax": feats.fmax,
    }
    for key, value in theirs.items():
        given = getattr(args, key, None)
        if key == "keywords" and given is not None:
            given = parse_keywords(given)
        if given not in (None, False) and given != value:
            flag = "--" + key.replace("_", "-")
            raise RtAudioError(f"{flag}: {model_dir} was trained with {value!r}, not {given!r}")
    args.keywords = ",".join(theirs["keywords"])
    args.model = theirs["model"]
    if getattr(args, "seed", None) is None:  # the same corpus draws as its first training
        args.seed = int(cfg.get("training", {}).get("seed", 0))
    return feats


def cmd_train(args: argparse.Namespace) -> int:
    """CLI entry: args.keywords (str), args.out (dir), args.seed, args.minutes,
    args.model ('tcn' by default |'gru'|'cnn'), args.mels, args.fmax (the log-mel front end; None:
    the defaults), args.init_from (a model to continue: `_take_settings_of`)."""
    torch.set_num_threads(max(1, int(getattr(args, "threads", 0) or torch.get_num_threads())))
    init_from = getattr(args, "init_from", None)
    feats = _take_settings_of(Path(init_from), args) if init_from else None
    kw_text = getattr(args, "keywords", None)
    keywords = parse_keywords(kw_text if kw_text is not None else ",".join(DEFAULT_KEYWORDS))
    out = Path(
        getattr(args, "out", None) or ("kws_model_" + "_".join(k.replace(" ", "-") for k in keywords)[:60])
    )
    # the TCN: at 14 minutes it reached 0.40 calibration recall against 0.26-0.35 for GRUs, at 45
    # minutes 0.52 against 0.28-0.38 (docs/kws-experiments.md)
    arch = getattr(args, "model", None) or "tcn"
    if arch not in ("gru", "tcn", "cnn"):
        raise RtAudioError(f"--model must be 'gru', 'tcn' or 'cnn', got {arch!r}")
    minutes = float(getattr(args, "minutes", None) or 12.0)
    if minutes <= 0:
        raise RtAudioError(f"--minutes must be positive, got {minutes}")
    seed = int(getattr(args, "seed", None) or 0)
    feats = feats or _front_end(getattr(args, "mels", None), getattr(args, "fmax", None))
    config = train(
        keywords, out, seed, minutes, arch, features=feats,
        init_from=Path(init_from) if init_from else None, lr=FINE_TUNE_LR if init_from else LR,
        corpus_scale=float(getattr(args, "corpus_scale", 1.0)),  # not on the command line: tests' small runs
        log=lambda m: print(m, file=sys.stderr),
    )
    print(json.dumps({"model": str(out), "keywords": keywords, "calibration": config["calibration"]}))
    return 0
