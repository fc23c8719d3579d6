"""Compare classifier models (and averages of them) on the keyword benchmark's streams, from cached
posteriors: computing posteriors is the slow part, re-deciding them at many thresholds is not.

    # posteriors of models on the streams of benchmarks/kws.py (seed 777: 5 min of keywords and
    # 20 min keyword-free per condition); an ensemble is split into its members NAME0, NAME1, ...
    python benchmarks/kws_posteriors.py cache --seed 777 --out p777.pkl ship=rtaudio/models/kws.pt mine=mine
    # the mean over the conditions of the best recall within 10 / 30 / 100 / 300 FA/h; a combo
    # averages its members' probabilities (exactly what `rtaudio ensemble` runs)
    python benchmarks/kws_posteriors.py eval p777.pkl mine ship0+ship1+ship2+ship3 mine+ship0

Posteriors are computed offline (`infer.posteriors_offline`, equal to the stage's: a test holds the
stage to streaming = offline). Operating points: global thresholds 0.5-0.998 and the calibrated
thresholds of `--config` (default: the shipped model), with its smoothing and per-keyword patience.
"""

from __future__ import annotations

import argparse
import pickle
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import kws as B  # noqa: E402

from rtaudio.errors import RtAudioError  # noqa: E402
from rtaudio.kws import models  # noqa: E402
from rtaudio.kws.infer import posteriors_offline  # noqa: E402

GRID = [None, 0.5, 0.6, 0.7, 0.8, 0.85, 0.9, 0.925, 0.95, 0.96, 0.97, 0.98, 0.99, 0.995, 0.998]


def split(name: str, path: str) -> dict[str, tuple[torch.nn.Module, dict]]:
    """NAME -> (model, config); an ensemble gives one entry per member (NAME0, NAME1, ...)."""
    net, cfg = models.load(path)
    if not isinstance(net, models.Ensemble):
        return {name: (net, cfg)}
    singles = models.member_configs(cfg)
    return {f"{name}{i}": (m, c) for i, (m, c) in enumerate(zip(net.members, singles, strict=True))}


def cache(seed: int, out: Path, named: dict[str, str]) -> None:
    nets = {k: v for n, p in named.items() for k, v in split(n, p).items()}
    keywords = next(iter(nets.values()))[1]["keywords"]
    streams = B.make_streams(keywords, seed, 5, 20)
    res: dict = {"seed": seed, "truth": streams.truth, "keywords": keywords, "len": {}}
    res["post"] = {n: {} for n in nets}
    for cond, ys in B.conditions(streams, seed):
        res["len"][cond] = [len(y) for y in ys]
        for n, (net, cfg) in nets.items():
            with torch.no_grad():
                res["post"][n][cond] = [posteriors_offline(net, cfg, y).astype(np.float32) for y in ys]
        print(f"{cond}: {', '.join(nets)}", file=sys.stderr, flush=True)
    tmp = out.with_suffix(out.suffix + ".tmp")
    with open(tmp, "wb") as f:
        pickle.dump(res, f)
    tmp.replace(out)


def load(paths: list[Path]) -> dict:
    res: dict = {"post": {}}
    for p in paths:
        with open(p, "rb") as f:
            r = pickle.load(f)  # our own cache files only (never a downloaded pickle)
        if "seed" in res and r["seed"] != res["seed"]:
            raise SystemExit(f"{p}: streams of seed {r['seed']}, not {res['seed']}")
        res.update({k: r[k] for k in ("seed", "truth", "keywords", "len")})
        res["post"].update(r["post"])
    return res


def combine(posts: list[np.ndarray], how: str) -> np.ndarray:
    """Members' probabilities (steps, classes) as one: their mean (what `rtaudio ensemble` runs),
    or their geometric mean renormalised over the classes (a class is high only where every member
    puts it high)."""
    if how == "mean":
        return np.mean(posts, 0)
    g = np.exp(np.mean(np.log(np.maximum(np.stack(posts), 1e-12)), 0))
    return g / g.sum(-1, keepdims=True)


def evaluate(
    res: dict, combo: str, cfg: dict, how: str = "mean"
) -> tuple[np.ndarray, float, float, list[float]]:
    """Best recall per budget (mean over conditions), the calibrated point (recall, FA/h) and the
    best recall within 10 FA/h per condition. `how`: how the members' probabilities are combined
    (`combine`)."""
    names = combo.split("+")
    missing = [n for n in names if n not in res["post"]]
    if missing:
        raise SystemExit(f"no posteriors cached for {', '.join(missing)} (have {', '.join(res['post'])})")
    nk = len(res["keywords"])
    rows = []
    for cond, lens in res["len"].items():
        # silence, unknown, keywords (a model with more outputs: the rest are left out of the mean)
        posts = [combine([res["post"][n][cond][i][:, : 2 + nk] for n in names], how) for i in range(2)]
        hours = sum(lens) / B.RATE / 3600
        for thr in GRID:
            ev = [B.redecide(p, cfg, thr) for p in posts]
            rows.append(B.summarise(cond, f"c thr={thr}", *ev, res["truth"], res["keywords"], hours, None))
    table = B.budget_table(rows)
    best = np.array([[t["best_recall"][b] for b in B.BUDGETS] for t in table]).mean(0)
    cal = [r for r in rows if r["detector"] == "c thr=None"]
    per10 = [t["best_recall"][10] for t in table]
    recall, fa = (float(np.mean([r[k] for r in cal])) for k in ("recall", "fa_per_hour"))
    return best, recall, fa, per10


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("cache", help="compute and store posteriors")
    c.add_argument("--seed", type=int, default=B.SEED)
    c.add_argument("--out", required=True)
    c.add_argument("models", nargs="+", metavar="NAME=DIR")
    e = sub.add_parser("eval", help="best recall within false-accept budgets")
    e.add_argument("cache", help="cache file(s) of one seed, comma-separated")
    e.add_argument("combos", nargs="+", metavar="NAME[+NAME...]")
    e.add_argument("--config", default=None, help="model dir whose decision settings to use")
    e.add_argument("--combine", choices=models.COMBINE, default="mean", help="how members are combined")
    args = ap.parse_args()
    torch.set_num_threads(1)
    if args.cmd == "cache":
        bad = [m for m in args.models if "=" not in m]
        if bad:
            raise SystemExit(f"models: {bad[0]!r} is not NAME=DIR")
        cache(args.seed, Path(args.out), dict(m.split("=", 1) for m in args.models))
        return 0
    res = load([Path(p) for p in args.cache.split(",")])
    _, cfg = models.load(args.config)
    budgets = " / ".join(f"<={b}" for b in B.BUDGETS)
    print(f"streams {res['seed']}; mean over conditions of the best recall within {budgets} FA/h")
    for combo in args.combos:
        best, rec, fa, per10 = evaluate(res, combo, cfg, args.combine)
        cells = " / ".join(f"{v:.2f}" for v in best)
        print(f"{combo:<24} {cells}   calibrated {rec:.2f} @ {fa:.0f}   <=10 per condition: "
              + " ".join(f"{v:.2f}" for v in per10), flush=True)  # fmt: skip
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except RtAudioError as err:  # a bad model path or file: one line, no traceback
        sys.exit(f"kws_posteriors: {err}")
