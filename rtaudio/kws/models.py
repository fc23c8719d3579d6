"""Streaming keyword classifiers with explicit state, and their on-disk format.

The models map normalised feature frames to per-frame class logits (silence, unknown, keywords):
- `GRUClassifier` carries its recurrent state from frame to frame (trained on long streams with the
  state carried across chunks, exactly as it runs live);
- `TCNClassifier`, causal dilated convolutions that keep the last steps of each block as state;
- `Ensemble` averages several of those (the shipped model: nine TCNs, two front ends), run live as one batched
  network by `StackedTCNs` when its members are equally shaped TCNs (`for_inference`);
- `DSCNN`, a depthwise-separable CNN over a sliding window of the last `window` frames, evaluated
  every `stride` frames.
A model is a plain state dict `model.pt` (loaded with `weights_only=True`) plus `model.json`
(architecture, feature configuration and its fingerprint, classes, decision settings); the shipped
one is `rtaudio/models/kws.pt` + `kws.json`.
"""

from __future__ import annotations

import itertools
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..errors import ConfigError
from .features import FeatureConfig

FORMAT_VERSION = 1
STATEFUL_ARCHS = ("gru", "tcn", "ensemble")  # run step by step with carried state (the DS-CNN: windows)
MEMBER_ARCHS = ("gru", "tcn")  # what `ensemble` combines
COMBINE = ("mean", "geo")  # how an ensemble combines its members' probabilities (`Ensemble`)
DEFAULT_MODEL = Path(__file__).resolve().parent.parent / "models" / "kws.pt"  # + kws.json


class _StreamingClassifier(nn.Module):
    """What the stateful classifiers share: normalisation buffers, an input layer over groups of
    `stack` frames, and `forward` = `out(hidden_states(...))`. A subclass creates `out` last, so
    that a seed gives the same initial weights as before this base existed."""

    def __init__(self, n_in: int, hidden: int, stack: int) -> None:
        super().__init__()
        self.register_buffer("mean", torch.zeros(n_in))
        self.register_buffer("std", torch.ones(n_in))
        self.stack, self.hidden = stack, hidden
        self.inp = nn.Sequential(nn.Linear(n_in * stack, hidden), nn.ReLU())

    def forward(
        self, x: torch.Tensor, state: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """x: (batch, frames, n_in) raw features, frames a multiple of `stack` -> logits
        (batch, frames // stack, classes), new state."""
        h, state = self.hidden_states(x, state)
        return self.out(h), state

    def _inputs(self, x: torch.Tensor) -> torch.Tensor:
        """Normalised frames grouped by `stack` through the input layer: (batch, steps, hidden)."""
        b, t, f = x.shape
        return self.inp(((x - self.mean) / self.std).reshape(b, t // self.stack, f * self.stack))

    def init_state(self, batch: int = 1) -> torch.Tensor:
        raise NotImplementedError

    def flat_state(self, state: torch.Tensor) -> torch.Tensor:
        """The state as (batch, n): what an `Ensemble` concatenates across members."""
        raise NotImplementedError

    def unflat_state(self, flat: torch.Tensor) -> torch.Tensor:
        """The inverse of `flat_state` (called every step: no allocation beyond a view or copy)."""
        raise NotImplementedError

    def hidden_states(
        self, x: torch.Tensor, state: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        raise NotImplementedError


class GRUClassifier(_StreamingClassifier):
    """A GRU over groups of `stack` consecutive frames (one step and one output per group)."""

    def __init__(self, n_in: int, n_classes: int, hidden: int = 128, layers: int = 2, stack: int = 1) -> None:
        super().__init__(n_in, hidden, stack)
        self.gru = nn.GRU(hidden, hidden, layers, batch_first=True)
        self.out = nn.Linear(hidden, n_classes)
        self.layers = layers

    def init_state(self, batch: int = 1) -> torch.Tensor:
        return torch.zeros(self.layers, batch, self.hidden)

    def flat_state(self, state: torch.Tensor) -> torch.Tensor:
        return state.transpose(0, 1).reshape(state.shape[1], -1)

    def unflat_state(self, flat: torch.Tensor) -> torch.Tensor:
        return flat.reshape(flat.shape[0], self.layers, self.hidden).transpose(0, 1).contiguous()

    def hidden_states(
        self, x: torch.Tensor, state: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The last GRU layer's outputs (batch, frames // stack, hidden) and the new state."""
        if state is None:
            state = self.init_state(x.shape[0])
        return self.gru(self._inputs(x), state)


class Ensemble(nn.Module):
    """Several streaming classifiers (GRUs, TCNs, or a mix) trained apart, run side by side on the
    same frames. `combine` "mean": their class probabilities are averaged, and the output is the log
    of that mean, so that a softmax of it (as the streamer takes) gives the mean itself. "geo": their
    log-probabilities are averaged, so that the softmax gives the renormalised geometric mean: a
    class is high only where every member puts it high (six TCNs, each way calibrated anew, were
    level: docs/kws-experiments.md, "Six 45-minute TCNs"). The state is the members' states, each flattened
    to (batch, n), concatenated."""

    def __init__(
        self,
        members: list[_StreamingClassifier],
        combine: str = "mean",
        columns: list[tuple[int, int]] | None = None,
    ) -> None:
        super().__init__()
        if combine not in COMBINE:
            raise ConfigError(f"ensemble combine must be one of {', '.join(COMBINE)}, got {combine!r}")
        self.combine = combine
        stacks = {m.stack for m in members}
        if len(stacks) != 1:
            raise ConfigError(f"ensemble members group different numbers of frames (stack {sorted(stacks)})")
        self.members = nn.ModuleList(members)
        # members with their own front ends: each reads its columns (start, end) of the frames,
        # which are the front ends' features side by side (`feature_layout`)
        self.columns = columns
        self.stack = stacks.pop()
        self.sizes = [m.flat_state(m.init_state(1)).shape[1] for m in members]

    def init_state(self, batch: int = 1) -> torch.Tensor:
        return torch.cat([m.flat_state(m.init_state(batch)) for m in self.members], 1)

    def forward(
        self, x: torch.Tensor, state: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        if state is None:
            state = self.init_state(x.shape[0])
        logps, states = [], []
        for i, (m, s) in enumerate(zip(self.members, state.split(self.sizes, 1), strict=True)):
            xm = x if self.columns is None else x[..., self.columns[i][0] : self.columns[i][1]]
            logits, s = m(xm, m.unflat_state(s))
            logps.append(logits.log_softmax(-1))
            states.append(m.flat_state(s))
        logp, state = torch.stack(logps), torch.cat(states, 1)
        if self.combine == "geo":
            return logp.mean(0), state
        return torch.logsumexp(logp, 0) - math.log(len(self.members)), state


class TCNClassifier(_StreamingClassifier):
    """A causal dilated temporal convolution network over groups of `stack` frames, streamed with
    explicit state: each block keeps the last `2 * dilation` steps of its input, so a chunk of any
    length (one step included) gives what the whole stream gives. The decision at a word's end
    sees ~2 s of input through feed-forward paths (dilations 1..16, kernel 3), where a GRU has to
    carry a word's first consonant through its recurrence to the step that decides."""

    def __init__(
        self,
        n_in: int,
        n_classes: int,
        hidden: int = 128,
        dilations: tuple[int, ...] | list[int] = (1, 2, 4, 8, 16),
        stack: int = 1,
    ) -> None:
        super().__init__(n_in, hidden, stack)
        self.dilations = tuple(int(d) for d in dilations)
        # a kernel-3 dilated convolution as one linear map of its three taps: far cheaper than Conv1d
        # on the one-step chunks of live use
        self.convs = nn.ModuleList(nn.Linear(3 * hidden, hidden) for _ in self.dilations)
        self.mix = nn.ModuleList(nn.Linear(hidden, hidden) for _ in self.dilations)
        self.out = nn.Linear(hidden, n_classes)
        self.history = sum(2 * d for d in self.dilations)  # state steps, all blocks together

    def init_state(self, batch: int = 1) -> torch.Tensor:
        return torch.zeros(batch, self.history, self.hidden)

    def flat_state(self, state: torch.Tensor) -> torch.Tensor:
        return state.reshape(state.shape[0], -1)

    def unflat_state(self, flat: torch.Tensor) -> torch.Tensor:
        return flat.reshape(flat.shape[0], self.history, self.hidden)

    def hidden_states(
        self, x: torch.Tensor, state: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The last block's outputs (batch, frames // stack, hidden) and the new state."""
        if state is None:
            state = self.init_state(x.shape[0])
        z = self._inputs(x)
        kept, at = [], 0
        for conv, mix, d in zip(self.convs, self.mix, self.dilations, strict=True):
            past = state[:, at : at + 2 * d]
            at += 2 * d
            full = torch.cat([past, z], 1)  # (batch, 2d + steps, hidden)
            kept.append(full[:, -2 * d :])
            n = z.shape[1]
            taps = torch.cat([full[:, :n], full[:, d : d + n], full[:, 2 * d : 2 * d + n]], 2)
            y = torch.relu(conv(taps))  # (batch, steps, hidden)
            z = z + mix(y)
        return z, torch.cat(kept, 1)


class StackedTCNs(nn.Module):
    """Inference only: an `Ensemble` of equally shaped TCNs run as one network whose every layer is
    a batched matrix product over the members, in numpy. Live, a step is a dozen small products
    whose cost is per call rather than per multiply, and numpy's calls cost less than torch's: the
    `kws` stage with four members in 30 ms blocks costs 0.011 of real time stacked in numpy, 0.031
    stacked in torch, 0.040-0.050 one by one (offline, over whole streams, 1.5 times what torch one
    by one costs: 0.0037 against 0.0024 on one thread). It holds a snapshot of the members'
    weights; its output and state (layout included) are the `Ensemble`'s, as torch tensors."""

    def __init__(
        self,
        members: list[TCNClassifier],
        combine: str = "mean",
        columns: list[tuple[int, int]] | None = None,
    ) -> None:
        super().__init__()
        first = members[0]
        self.combine = combine
        self.stack, self.hidden, self.history, self.dilations = (
            first.stack, first.hidden, first.history, first.dilations,
        )  # fmt: skip
        self.n = len(members)

        def arr(ts: list[torch.Tensor]) -> np.ndarray:
            return np.ascontiguousarray(torch.stack([t.detach() for t in ts]).numpy(), np.float32)

        def weights(layers: list[nn.Linear]) -> tuple[np.ndarray, np.ndarray]:
            # (M, in, out) and (M, 1, out)
            return arr([lin.weight.t() for lin in layers]), arr([lin.bias[None] for lin in layers])

        cols = columns or [(0, first.mean.shape[0])] * self.n
        # members with their own front ends: each run of consecutive members reading the same
        # columns gets one batched input product over those columns (widening every input layer to
        # all the columns with zeros cost 10 % more per step for the nine shipped TCNs: more weights
        # to read on every step)
        # per run: columns a, b; mean, std (Mg, 1, 1, b - a); weights (Mg, stack * (b - a), hidden)
        self.inputs = []
        for (a, b), group in itertools.groupby(zip(cols, members, strict=True), key=lambda cm: cm[0]):
            run = [m for _, m in group]
            mean, std = (arr([getattr(m, k) for m in run])[:, None, None] for k in ("mean", "std"))
            self.inputs.append((a, b, mean, std, arr([m.inp[0].weight.t() for m in run])))
        self.inp_b = arr([m.inp[0].bias[None] for m in members])
        self.out_w, self.out_b = weights([m.out for m in members])
        self.blocks = [
            (*weights([m.convs[i] for m in members]), *weights([m.mix[i] for m in members]))
            for i in range(len(self.dilations))
        ]

    def init_state(self, batch: int = 1) -> torch.Tensor:
        return torch.zeros(batch, self.n * self.history * self.hidden)

    def forward(
        self, x: torch.Tensor, state: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        b, t, _ = x.shape
        m, k, h, n = self.n, self.stack, self.hidden, t // self.stack
        if state is None:
            state = self.init_state(b)
        frames = x.detach().numpy()[None]
        z = np.concatenate([
            np.matmul(((frames[..., a:c] - mean) / std).reshape(len(w), b * n, (c - a) * k), w)
            for a, c, mean, std, w in self.inputs
        ])  # fmt: skip
        z = np.maximum(z + self.inp_b, 0).reshape(m, b, n, h)
        past_all = state.detach().numpy().reshape(b, m, self.history, h).transpose(1, 0, 2, 3)
        kept, at = [], 0
        for (cw, cb, mw, mb), d in zip(self.blocks, self.dilations, strict=True):
            full = np.concatenate([past_all[:, :, at : at + 2 * d], z], 2)
            at += 2 * d
            kept.append(full[:, :, -2 * d :])
            taps = np.concatenate([full[:, :, :n], full[:, :, d : d + n], full[:, :, 2 * d : 2 * d + n]], 3)
            y = np.maximum(np.matmul(taps.reshape(m, b * n, 3 * h), cw) + cb, 0)
            z = z + (np.matmul(y, mw) + mb).reshape(m, b, n, h)
        logits = (np.matmul(z.reshape(m, b * n, h), self.out_w) + self.out_b).reshape(m, b, n, -1)
        logp = logits - logits.max(-1, keepdims=True)
        logp -= np.log(np.exp(logp).sum(-1, keepdims=True))
        if self.combine == "geo":
            out = logp.mean(0)
        else:
            top = logp.max(0)
            out = top + np.log(np.exp(logp - top).sum(0)) - math.log(m)
        new_state = np.concatenate(kept, 2).transpose(1, 0, 2, 3).reshape(b, -1)
        return torch.from_numpy(out), torch.from_numpy(new_state)


def for_inference(model: nn.Module) -> nn.Module:
    """What runs `model` without gradients fastest: `StackedTCNs` for an ensemble of equally shaped
    TCNs (a snapshot of its weights: make it again after changing them), else the model itself."""
    if not isinstance(model, Ensemble) or len(model.members) < 2:
        return model
    shapes = {
        (m.stack, m.hidden, m.dilations, tuple(m.out.weight.shape)) if isinstance(m, TCNClassifier) else None
        for m in model.members
    }
    widths = {m.mean.shape[0] for m in model.members}
    if len(shapes) != 1 or None in shapes or (model.columns is None and len(widths) != 1):
        return model
    return StackedTCNs(list(model.members), model.combine, model.columns).eval()


class _SepBlock(nn.Sequential):
    def __init__(self, ch: int) -> None:
        super().__init__(
            nn.Conv2d(ch, ch, 3, padding=1, groups=ch, bias=False),
            nn.BatchNorm2d(ch),
            nn.ReLU(),
            nn.Conv2d(ch, ch, 1, bias=False),
            nn.BatchNorm2d(ch),
            nn.ReLU(),
        )


class DSCNN(nn.Module):
    """Depthwise-separable CNN over (window frames x features) -> class logits for the last frame."""

    def __init__(
        self, n_in: int, n_classes: int, channels: int = 64, blocks: int = 4, window: int = 100
    ) -> None:
        super().__init__()
        self.register_buffer("mean", torch.zeros(n_in))
        self.register_buffer("std", torch.ones(n_in))
        self.window = window
        self.stem = nn.Sequential(
            nn.Conv2d(1, channels, (10, 4), stride=(2, 2), padding=(5, 1), bias=False),
            nn.BatchNorm2d(channels),
            nn.ReLU(),
        )
        self.body = nn.Sequential(*[_SepBlock(channels) for _ in range(blocks)])
        self.out = nn.Linear(channels, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (batch, window, n_in) raw features -> logits (batch, classes)."""
        z = ((x - self.mean) / self.std).unsqueeze(1)
        z = self.body(self.stem(z))
        return self.out(z.mean(dim=(2, 3)))


def build(config: dict[str, Any]) -> nn.Module:
    arch, n_in, n_cls = (
        config["arch"],
        FeatureConfig.from_dict(config["features"]).dim,
        len(config["classes"]),
    )
    p = config.get("arch_params", {})
    if _is_ensemble(config):
        sets, columns = feature_layout(config)
        members = [build(c) for c in member_configs(config)]
        return Ensemble(members, p.get("combine", "mean"), columns if len(sets) > 1 else None)
    if arch == "gru":
        return GRUClassifier(n_in, n_cls, **{k: v for k, v in p.items() if k != "members"})
    if arch == "tcn":
        return TCNClassifier(n_in, n_cls, **p)
    if arch == "cnn":
        return DSCNN(n_in, n_cls, **p)
    raise ConfigError(f"unknown model architecture {arch!r} (expected 'gru', 'tcn', 'cnn' or 'ensemble')")


def _is_ensemble(config: dict[str, Any]) -> bool:
    """Arch "ensemble", or the older format of equal GRUs (arch "gru", arch_params.members > 1)."""
    p = config.get("arch_params", {})
    return config["arch"] == "ensemble" or (config["arch"] == "gru" and p.get("members", 1) > 1)


def member_configs(config: dict[str, Any]) -> list[dict[str, Any]]:
    """The config of each member of an ensemble config (of either format), as a single model's."""
    if not _is_ensemble(config):
        return [config]
    p = config["arch_params"]
    if config["arch"] == "ensemble":
        return [dict(config, **member) for member in p["members"]]
    single = {k: v for k, v in p.items() if k != "members"}
    return [dict(config, arch_params=single) for _ in range(p["members"])]


def feature_layout(config: dict[str, Any]) -> tuple[list[FeatureConfig], list[tuple[int, int]]]:
    """The distinct front ends of a model (the config's own first, then members' own `features`)
    and each member's columns (start, end) in the frames of all of them side by side. They must
    share rate, window and hop, so that their frames line up."""
    sets: list[FeatureConfig] = [FeatureConfig.from_dict(config["features"])]
    spans = []
    for i, member in enumerate(member_configs(config)):
        fc = FeatureConfig.from_dict(member["features"], where=f"member {i} features")
        if (fc.rate, fc.win, fc.hop) != (sets[0].rate, sets[0].win, sets[0].hop):
            raise ConfigError(f"member {i} features: rate, win and hop must be the ensemble's")
        if fc not in sets:
            sets.append(fc)
        spans.append(sets.index(fc))
    starts = np.cumsum([0] + [f.dim for f in sets])
    return sets, [(int(starts[j]), int(starts[j + 1])) for j in spans]


def save(model: nn.Module, config: dict[str, Any], out_dir: Path) -> None:
    """Write model.pt + model.json atomically (a half-written model never appears)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    cfg = dict(config, format=FORMAT_VERSION)
    cfg["feature_fingerprint"] = FeatureConfig.from_dict(cfg["features"]).fingerprint()
    tmp_pt, tmp_js = out_dir / "model.pt.tmp", out_dir / "model.json.tmp"
    torch.save({k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}, tmp_pt)
    tmp_js.write_text(json.dumps(cfg, indent=1) + "\n")
    tmp_pt.replace(out_dir / "model.pt")
    tmp_js.replace(out_dir / "model.json")


def resolve(path: str | Path | None) -> tuple[Path, Path]:
    """(model.pt, model.json) for a model directory, a .pt file or a .json file."""
    p = Path(path) if path else DEFAULT_MODEL
    if p.is_dir():
        return p / "model.pt", p / "model.json"
    if p.suffix == ".json":
        return p.with_suffix(".pt"), p
    return p, p.with_suffix(".json")


def load(path: str | Path | None = None, where: str = "kws") -> tuple[nn.Module, dict[str, Any]]:
    """Load a model (default: the shipped one); clear errors for missing, corrupt or mismatched files."""
    pt, js = resolve(path)
    for f in (pt, js):
        if not f.is_file():
            raise ConfigError(f"{where}: model file {f} not found")
    try:
        config = json.loads(js.read_text())
        if (
            not isinstance(config, dict)
            or "arch" not in config
            or "features" not in config
            or "classes" not in config
        ):
            raise ValueError("missing arch/features/classes")
        feats = FeatureConfig.from_dict(config["features"], where=f"{where}: {js}")
    except (ValueError, TypeError, UnicodeDecodeError) as e:
        raise ConfigError(f"{where}: model config {js} is corrupt or not an rtaudio model ({e})") from None
    if config.get("feature_fingerprint") != feats.fingerprint():
        raise ConfigError(
            f"{where}: model {pt} was trained with another feature configuration "
            f"(fingerprint {config.get('feature_fingerprint')!r}, config describes {feats.fingerprint()!r})"
        )
    try:
        state = torch.load(pt, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises many types for a damaged file
        raise ConfigError(
            f"{where}: model file {pt} is corrupt ({type(e).__name__}: {str(e)[:120]})"
        ) from None
    try:
        model = build(config)
    except ConfigError as e:
        raise ConfigError(f"{where}: model config {js}: {e}") from None
    if not isinstance(state, dict):
        raise ConfigError(f"{where}: model file {pt} does not hold a state dict")
    try:
        model.load_state_dict(state)
    except RuntimeError as e:
        first = str(e).strip().splitlines()
        detail = next(
            (ln.strip() for ln in first if "size mismatch" in ln or "Missing" in ln or "Unexpected" in ln),
            first[0],
        )
        raise ConfigError(
            f"{where}: model {pt} does not fit its config {js} (another feature configuration or "
            f"architecture?): {detail[:200]}"
        ) from None
    model.eval()
    return model, config


def ensemble(paths: list[str | Path], combine: str = "mean") -> tuple[nn.Module, dict[str, Any]]:
    """One model averaging the single GRU/TCN models at `paths` (same keywords, classes, stride,
    frame grouping and frames: rate, window and hop; a member whose front end differs keeps its own,
    run beside the others': `feature_layout`), their probabilities (`combine` "mean") or their
    log-probabilities ("geo"; `Ensemble`). Its config is the first's with arch "ensemble", each
    member's arch and arch_params (and features, where they differ) and `combine`; its decision
    settings are the first's until it is calibrated again (`train.recalibrate`); `training` lists
    each member's."""
    if len(paths) < 2:
        raise ConfigError(f"an ensemble needs at least two models, got {len(paths)}")
    loaded = [load(p) for p in paths]
    first = loaded[0][1]
    same = ("classes", "keywords", "stride", "mean_norm_s")
    for p, (_, cfg) in zip(paths, loaded, strict=True):
        if cfg["arch"] not in MEMBER_ARCHS or cfg.get("arch_params", {}).get("members", 1) != 1:
            raise ConfigError(f"{p}: an ensemble member must be a single GRU or TCN model")
        diff = [k for k in same if cfg.get(k) != first.get(k)]
        frames = ("rate", "win", "hop")
        diff += [f"features.{k}" for k in frames if cfg["features"].get(k) != first["features"].get(k)]
        stack = cfg.get("arch_params", {}).get("stack", 1)
        if stack != first.get("arch_params", {}).get("stack", 1):
            diff.append("arch_params.stack")
        if diff:
            raise ConfigError(f"{p}: differs from {paths[0]} in {', '.join(diff)}")
    described = [
        {"arch": cfg["arch"], "arch_params": cfg.get("arch_params", {})}
        | ({"features": cfg["features"]} if cfg["features"] != first["features"] else {})
        for _, cfg in loaded
    ]
    config = dict(first, arch="ensemble", arch_params={"members": described, "combine": combine})
    members = [dict(cfg.get("training", {}), path=str(p)) for p, (_, cfg) in zip(paths, loaded, strict=True)]
    config["training"] = {"members": members}
    model = build(config)
    for dst, (src, _) in zip(model.members, loaded, strict=True):
        dst.load_state_dict(src.state_dict())
    return model.eval(), config
