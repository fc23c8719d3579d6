"""The ROC-hull arithmetic behind benchmarks/kws_detectors.py (fusion vs single detectors)."""

import importlib.util
import sys
from pathlib import Path

import pytest

_bench = Path(__file__).resolve().parent.parent / "benchmarks"
sys.path.insert(0, str(_bench))  # kws_detectors imports its sibling kws_compare
_path = _bench / "kws_detectors.py"
_spec = importlib.util.spec_from_file_location("kws_detectors", _path)
kd = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(kd)


def _rows(points):
    return [{"recall": r, "fa_per_hour": fa} for r, fa in points]


def test_hull_interpolates_between_operating_points_and_the_origin():
    pts = _rows([(0.5, 10.0), (1.0, 30.0), (0.6, 40.0)])  # the last is dominated
    assert kd.hull_fa(pts, 0.25) == pytest.approx(5.0)
    assert kd.hull_fa(pts, 0.5) == pytest.approx(10.0)
    assert kd.hull_fa(pts, 0.75) == pytest.approx(20.0)
    assert kd.hull_fa(pts, 0.6) == pytest.approx(14.0)
    assert kd.hull_fa(pts, 1.01) == float("inf")


def test_best_within_a_budget():
    pts = _rows([(0.2, 5.0), (0.4, 12.0), (0.7, 90.0)])
    assert [kd.best_within(pts, b) for b in (1, 10, 30, 100)] == [0.0, 0.2, 0.4, 0.7]


def test_bad_file_is_a_one_line_error(tmp_path):
    bad = tmp_path / "x.json"
    bad.write_text("{}")
    with pytest.raises(SystemExit, match="x.json: not a benchmarks/kws.py --json file"):
        kd.main([str(bad)])
