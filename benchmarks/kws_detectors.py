"""Compare the keyword detectors of `benchmarks/kws.py --json` runs: HMM vs PocketSphinx, fusion vs
the better single detector.

    python benchmarks/kws_detectors.py run_A.json run_B.json [sphinx_A.json ...]

Rows of all files are pooled (the benchmark's streams are deterministic, so runs over other
conditions or other operating points of the same streams add up). Printed:

1. per condition and detector family, the best recall within <= 10 / 30 / 100 / 300 FA/h;
2. the HMM against PocketSphinx in each of those cells (the issue's goal: the HMM at least matches);
3. fusion against the better single detector at equal recall: at the recall the classifier or the
   HMM reaches within each budget, the false accepts per hour each family needs for it on its ROC
   convex hull (a detector reaches any point between two of its operating points by switching
   between them), and their ratio (the goal: <= 0.5).
"""

from __future__ import annotations

import argparse
import sys

from kws_compare import BUDGETS, best_within, load_rows

SINGLES = ("classifier", "hmm")


def family(det: str) -> str:
    return det.split(" ")[0]


def hull_fa(rows: list[dict], recall: float) -> float:
    """Fewest false accepts per hour that reach `recall` by switching between two operating points
    (or with one): the lower ROC convex hull at that recall. inf when no point reaches it."""
    pts = [(0.0, 0.0), *((r["recall"], r["fa_per_hour"]) for r in rows)]
    best = min([fa for r, fa in pts if r >= recall] or [float("inf")])
    for ra, fa_a in pts:
        for rb, fa_b in pts:
            if ra < recall < rb:
                best = min(best, fa_a + (fa_b - fa_a) * (recall - ra) / (rb - ra))
    return best


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("files", nargs="+", help="benchmarks/kws.py --json files")
    files = ",".join(ap.parse_args(argv).files)
    pts: dict[str, dict[str, list[dict]]] = {}  # condition -> detector family -> rows
    for r in load_rows(files, detector=""):
        if not r["condition"].startswith("kw-free"):
            pts.setdefault(r["condition"], {}).setdefault(family(r["detector"]), []).append(r)
    head = " / ".join(f"<={b}" for b in BUDGETS)
    print(f"1. best recall within {head} FA/h")
    for cond, fams in pts.items():
        for fam, p in fams.items():
            print(f"{cond:14s} {fam:16s} " + " / ".join(f"{best_within(p, b):.2f}" for b in BUDGETS))
    print("\n2. HMM vs PocketSphinx, best recall within each budget ('<': a cell the HMM loses)")
    lost = compared = 0
    for cond, fams in pts.items():
        if "hmm" not in fams or "pocketsphinx" not in fams:
            continue
        compared += 1
        cells = []
        for b in BUDGETS:
            h, s = best_within(fams["hmm"], b), best_within(fams["pocketsphinx"], b)
            lost += h < s
            cells.append(f"{h:.2f} vs {s:.2f}{' <' if h < s else '  '}")
        print(f"{cond:14s} " + "  ".join(cells))
    print(f"HMM below PocketSphinx in {lost} cells" if compared else "(no condition has both HMM and "
          "PocketSphinx rows)")
    print("\n3. fusion vs the better single detector at equal recall (FA/h on each ROC hull, ratio)")
    for cond, fams in pts.items():
        fusion = [r for fam, rs in fams.items() if fam.startswith("fusion") for r in rs]
        singles = {f: fams[f] for f in SINGLES if f in fams}
        if not fusion or not singles:
            continue
        cells = []
        for b in BUDGETS[:3]:
            rec = max(best_within(p, b) for p in singles.values())
            if rec == 0:
                cells.append(f"<={b}: -")
                continue
            single = min(hull_fa(p, rec) for p in singles.values())
            fused = hull_fa(fusion, rec)
            ratio = fused / single if single > 0 else (1.0 if fused == 0 else float("inf"))
            cells.append(f"<={b}: r {rec:.2f} single {single:5.1f} fusion {fused:5.1f} ({ratio:.2f}x)")
        print(f"{cond:14s} " + " | ".join(cells))
    return 0


if __name__ == "__main__":
    sys.exit(main())
