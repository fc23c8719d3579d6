"""Compare classifier runs of `benchmarks/kws.py` side by side, from their --json files.

    python benchmarks/kws_compare.py shipped=a.json,b.json mine=c.json,d.json

Per condition and run: the calibrated point (recall @ FA/h) and the best recall within
<= 10 / 30 / 100 / 300 FA/h over all the classifier's rows (calibrated and global thresholds; a
best-of-thresholds figure chooses the threshold on the benchmark itself); then the calibrated
point's mean over the noise conditions.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

BUDGETS = (10, 30, 100, 300)
CALIBRATED = "classifier calibrated"


def load_rows(files: str, detector: str = "classifier") -> list[dict]:
    """The rows of comma-separated kws.py --json files whose detector starts with `detector`."""
    rows: list[dict] = []
    for f in files.split(","):
        try:
            rows += json.loads(Path(f).read_text())["rows"]
        except (OSError, ValueError, KeyError) as e:
            raise SystemExit(f"{f}: not a benchmarks/kws.py --json file ({e})") from None
    return [r for r in rows if r["detector"].startswith(detector)]


def best_within(rows: list[dict], budget: float) -> float:
    return max([r["recall"] for r in rows if r["fa_per_hour"] <= budget] or [0.0])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("runs", nargs="+", help="NAME=FILE.json[,FILE.json...]")
    args = ap.parse_args(argv)
    runs = {}
    for spec in args.runs:
        name, sep, files = spec.partition("=")
        if not sep or not files:
            raise SystemExit(f"kws_compare: {spec!r}: expected NAME=FILE.json[,FILE.json...]")
        runs[name] = load_rows(files)
    conditions = list(dict.fromkeys(r["condition"] for rows in runs.values() for r in rows))
    width = max(len(n) for n in runs)
    budgets = " / ".join(f"<={b}" for b in BUDGETS)
    print(f"{'condition':14s} {'run':{width}s}  calibrated      best recall {budgets} FA/h")
    for c in conditions:
        for name, rows in runs.items():
            rs = [r for r in rows if r["condition"] == c]
            cal = next((r for r in rs if r["detector"] == CALIBRATED), None)
            if not rs:
                continue
            point = f"{cal['recall']:.2f} @ {cal['fa_per_hour']:5.1f}" if cal else "-"
            best = " / ".join(f"{best_within(rs, b):.2f}" for b in BUDGETS)
            print(f"{c:14s} {name:{width}s}  {point:14s}  {best}")
    print("\ncalibrated point, mean over the noise conditions (the keyword-free hour excluded)")
    for name, rows in runs.items():
        # one calibrated row per condition (several files of one run may repeat it)
        by_cond = {r["condition"]: r for r in rows if r["detector"] == CALIBRATED}
        cal = [r for c, r in by_cond.items() if not c.startswith("kw-free")]
        if cal:
            rec = sum(r["recall"] for r in cal) / len(cal)
            fa = sum(r["fa_per_hour"] for r in cal) / len(cal)
            print(f"{name:{width}s}  recall {rec:.2f} @ {fa:.1f} FA/h over {len(cal)} conditions")
    return 0


if __name__ == "__main__":
    sys.exit(main())
