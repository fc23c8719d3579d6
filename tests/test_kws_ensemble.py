"""Keyword model ensembles: the mean of the members' probabilities (or their renormalised geometric
mean), streamed exactly, saved and loaded like any model; members that do not fit together are clear
errors."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from hypothesis import given, settings

from rtaudio.errors import ConfigError
from rtaudio.kws import models
from rtaudio.kws.infer import posteriors_offline
from rtaudio.kws.stage import KeywordSpotter
from rtaudio.kws.train import build_ensemble

from .streaming import partitions, run_blocks

RATE = 16000


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("RTAUDIO_CACHE", str(tmp_path / "cache"))


OWN_FRONT_END = {"n_mels": 24, "fmax": 7000.0}  # what members with their own front end change


def _members(
    tmp_path,
    n: int = 2,
    archs: tuple[str, ...] = ("gru",),
    stack: int | None = None,
    own: dict | None = None,
) -> list:
    """Single models (GRUs, or archs in turn) of the shipped model's keywords and features (with
    `own`: the second, fourth ... member's features changed by it), randomly initialised each with
    its own seed, each saved as a model dir."""
    _, shipped = models.load(None)
    gru = {"hidden": 64, "layers": 2, "stack": 3 if stack is None else stack}
    params = {"gru": gru, "tcn": {"hidden": 32, "dilations": [1, 2, 4], "stack": gru["stack"]}}
    dirs = []
    for i in range(n):
        arch = archs[i % len(archs)]
        config = dict(shipped, arch=arch, arch_params=params[arch])
        if own and i % 2:
            config["features"] = {**shipped["features"], **own}
        config.pop("training", None)
        torch.manual_seed(i)
        models.save(models.build(config), config, tmp_path / f"m{i}")
        dirs.append(tmp_path / f"m{i}")
    return dirs


def _speechy(n: int) -> np.ndarray:
    x = (np.random.default_rng(3).standard_normal(n) * 0.05).astype(np.float32)
    x[n // 3 : n // 2] += np.sin(np.arange(n // 2 - n // 3) / 5).astype(np.float32) * 0.3
    return x


def _assert_mean_of_members_after_save(tmp_path, model, config, dirs) -> None:
    """The ensemble's posteriors are its members' mean, also saved and loaded again, and its
    members split apart again are the models it was made of."""
    x = _speechy(20000)
    each = [posteriors_offline(*models.load(d), x) for d in dirs]
    np.testing.assert_allclose(posteriors_offline(model, config, x), np.mean(each, 0), atol=1e-5)
    models.save(model, config, tmp_path / "ens")
    again, cfg2 = models.load(tmp_path / "ens")
    np.testing.assert_allclose(posteriors_offline(again, cfg2, x), np.mean(each, 0), atol=1e-5)
    for m, c, alone in zip(again.members, models.member_configs(cfg2), each, strict=True):
        np.testing.assert_allclose(posteriors_offline(m, c, x), alone, atol=1e-6)


def _assert_stacked_is_the_ensemble(model, width: int) -> None:
    """`StackedTCNs` gives the output and state of the members one by one, from any state."""
    stacked = models.for_inference(model)
    assert isinstance(stacked, models.StackedTCNs)
    torch.manual_seed(5)
    state = torch.randn(2, model.init_state(2).shape[1])
    x = torch.randn(2, 9, width) * 3 + 1
    with torch.inference_mode():
        want, want_state = model(x, state)
        got, got_state = stacked(x, state)
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(got_state, want_state, atol=1e-6, rtol=1e-6)


def _geo_mean(each: list[np.ndarray]) -> np.ndarray:
    g = np.exp(np.mean(np.log(each), 0))
    return g / g.sum(-1, keepdims=True)


@pytest.mark.parametrize("archs", [("gru", "tcn"), ("tcn",)], ids=["mixed", "stacked-tcns"])
def test_geo_ensemble_is_the_geometric_mean_of_its_members(tmp_path, archs):
    dirs = _members(tmp_path, 3, archs=archs)
    model, config = models.ensemble(dirs, combine="geo")
    assert config["arch_params"]["combine"] == "geo"
    x = _speechy(20000)
    each = [posteriors_offline(*models.load(d), x) for d in dirs]
    want = _geo_mean(each)
    assert np.abs(want - np.mean(each, 0)).max() > 1e-3  # not the mean
    np.testing.assert_allclose(posteriors_offline(model, config, x), want, atol=1e-5)
    models.save(model, config, tmp_path / "ens")
    again, cfg2 = models.load(tmp_path / "ens")
    assert again.combine == "geo" and models.for_inference(again).combine == "geo"
    np.testing.assert_allclose(posteriors_offline(again, cfg2, x), want, atol=1e-5)
    with pytest.raises(ConfigError, match="combine must be one of mean, geo, got 'median'"):
        models.ensemble(dirs, combine="median")
    cfg2["arch_params"]["combine"] = "median"  # a model file edited by hand
    (tmp_path / "ens" / "model.json").write_text(json.dumps(cfg2))
    with pytest.raises(ConfigError, match=r"kws: model config .*ens/model.json: ensemble combine must be"):
        models.load(tmp_path / "ens")


def test_ensemble_is_the_mean_of_its_members(tmp_path):
    dirs = _members(tmp_path, 3)
    model, config = models.ensemble(dirs)
    assert config["arch"] == "ensemble" and len(config["arch_params"]["members"]) == 3
    assert len(config["training"]["members"]) == 3
    x = _speechy(20000)
    each = [posteriors_offline(*models.load(d), x) for d in dirs]
    assert np.abs(each[0] - each[1]).max() > 1e-3  # the members differ
    np.testing.assert_allclose(posteriors_offline(model, config, x), np.mean(each, 0), atol=1e-5)
    models.save(model, config, tmp_path / "ens")
    again, cfg2 = models.load(tmp_path / "ens")
    assert [m["arch"] for m in cfg2["arch_params"]["members"]] == ["gru"] * 3
    np.testing.assert_allclose(posteriors_offline(again, cfg2, x), np.mean(each, 0), atol=1e-5)


def test_mixed_ensemble_is_the_mean_of_its_members(tmp_path):
    dirs = _members(tmp_path, 3, archs=("gru", "tcn"))
    model, config = models.ensemble(dirs)
    assert [m["arch"] for m in config["arch_params"]["members"]] == ["gru", "tcn", "gru"]
    _assert_mean_of_members_after_save(tmp_path, model, config, dirs)


@pytest.mark.parametrize("combine", ["mean", "geo"])
def test_stacked_tcns_are_the_ensemble_they_were_made_from(tmp_path, combine):
    """Equally shaped TCNs run as one batched network (`StackedTCNs`, what the streamer runs): the
    same output and the same state as the members one by one, from any state."""
    dirs = _members(tmp_path, 3, archs=("tcn",))
    model, config = models.ensemble(dirs, combine)
    _assert_stacked_is_the_ensemble(model, model.members[0].mean.shape[0])
    sig = _speechy(20000)
    each = [posteriors_offline(*models.load(d), sig) for d in dirs]
    want = np.mean(each, 0) if combine == "mean" else _geo_mean(each)
    np.testing.assert_allclose(posteriors_offline(model, config, sig), want, atol=1e-5)


@pytest.mark.parametrize("archs", [("tcn",), ("tcn", "gru", "tcn")], ids=["stacked-tcns", "mixed"])
def test_members_with_their_own_front_end(tmp_path, archs):
    """Members whose features differ (here in mel bands) each read their own: the ensemble is the
    mean of the members run alone, stacked or not, saved and loaded, and split apart again."""
    dirs = _members(tmp_path, 3, archs=archs, own=OWN_FRONT_END)
    model, config = models.ensemble(dirs)
    described = config["arch_params"]["members"]
    assert ["features" in m for m in described] == [False, True, False]
    assert described[1]["features"]["n_mels"] == 24 and config["features"]["n_mels"] == 40
    assert model.columns == [(0, 40), (40, 64), (0, 40)]
    assert isinstance(models.for_inference(model), models.StackedTCNs) == (archs == ("tcn",))
    _assert_mean_of_members_after_save(tmp_path, model, config, dirs)
    if archs == ("tcn",):
        _assert_stacked_is_the_ensemble(model, 64)


def test_only_equally_shaped_tcns_are_stacked(tmp_path):
    mixed, _ = models.ensemble(_members(tmp_path / "mixed", 2, archs=("tcn", "gru")))
    assert models.for_inference(mixed) is mixed
    dirs = _members(tmp_path / "a", 1, archs=("tcn",)) + _members(tmp_path / "b", 1, archs=("tcn",))
    cfg = json.loads((dirs[1] / "model.json").read_text())
    cfg["arch_params"]["dilations"] = [1, 2]
    models.save(models.build(cfg), cfg, dirs[1])
    shaped, _ = models.ensemble(dirs)
    assert models.for_inference(shaped) is shaped
    single, _ = models.load(dirs[0])
    assert models.for_inference(single) is single


def test_older_format_of_equal_grus_is_the_mean_of_its_members(tmp_path):
    """Ensembles of equal GRUs were saved as arch "gru" with arch_params.members = N (the shipped
    model until 2026-11-29); they still load, as an `Ensemble`."""
    dirs = _members(tmp_path, 3)
    model, config = models.ensemble(dirs)
    gru = config["arch_params"]["members"][0]["arch_params"]
    older = dict(config, arch="gru", arch_params={**gru, "members": 3})
    models.save(model, older, tmp_path / "older")
    again, cfg = models.load(tmp_path / "older")
    assert isinstance(again, models.Ensemble) and len(models.member_configs(cfg)) == 3
    x = _speechy(16000)
    each = [posteriors_offline(*models.load(d), x) for d in dirs]
    np.testing.assert_allclose(posteriors_offline(again, cfg, x), np.mean(each, 0), atol=1e-5)


@pytest.mark.parametrize(
    "archs,combine,own",
    [
        (("tcn", "gru"), "mean", None),
        (("tcn",), "mean", None),
        (("tcn",), "geo", None),
        (("tcn",), "mean", OWN_FRONT_END),
    ],
    ids=["mixed", "stacked-tcns", "stacked-tcns-geo", "own-front-ends"],
)
@settings(max_examples=8, deadline=None)
@given(sizes=partitions(3000))
def test_ensemble_stage_streams_exactly(tmp_path_factory, archs, combine, own, sizes):
    d = tmp_path_factory.mktemp("ens")
    model, config = models.ensemble(_members(d, archs=archs, own=own), combine)
    models.save(model, config, d / "ens")
    x = _speechy(12000)[:, None]
    _, whole = run_blocks(KeywordSpotter(model=str(d / "ens")), x, [], RATE)
    _, parts = run_blocks(KeywordSpotter(model=str(d / "ens")), x, sizes, RATE)
    a = [m for m in whole if m.topic == "posteriors"]
    b = [m for m in parts if m.topic == "posteriors"]
    assert [m.sample for m in a] == [m.sample for m in b] and a
    np.testing.assert_allclose(
        np.stack([m.data["probs"] for m in b]), np.stack([m.data["probs"] for m in a]), atol=1e-5
    )


def test_members_that_do_not_fit_are_clear_errors(tmp_path):
    dirs = _members(tmp_path)
    with pytest.raises(ConfigError, match="at least two"):
        models.ensemble(dirs[:1])
    cfg = json.loads((dirs[1] / "model.json").read_text())
    cfg["keywords"] = cfg["keywords"][::-1]
    (dirs[1] / "model.json").write_text(json.dumps(cfg))
    with pytest.raises(ConfigError, match=r"m1: differs from .*m0 in keywords"):
        models.ensemble(dirs)
    cfg0 = json.loads((dirs[0] / "model.json").read_text())
    cfg0["arch_params"]["members"] = 1  # a single model may say so
    (dirs[0] / "model.json").write_text(json.dumps(cfg0))
    model, config = models.ensemble([dirs[0], dirs[0]])
    models.save(model, config, tmp_path / "ens")
    with pytest.raises(ConfigError, match="must be a single GRU or TCN"):
        models.ensemble([tmp_path / "ens", dirs[0]])
    other = _members(tmp_path / "stack1", 1, archs=("tcn",), stack=1)
    with pytest.raises(ConfigError, match=r"m0: differs from .*m0 in arch_params.stack"):
        models.ensemble([dirs[0], other[0]])
    # a front end of its own, but frames that do not line up with the others'
    hop = _members(tmp_path / "hop", 2, own={"hop": 128})
    with pytest.raises(ConfigError, match=r"m1: differs from .*m0 in features.hop"):
        models.ensemble(hop)
    model, config = models.ensemble(_members(tmp_path / "own", 2, own=OWN_FRONT_END))
    config["arch_params"]["members"][1]["features"]["hop"] = 128  # a model file edited by hand
    models.save(model, config, tmp_path / "own" / "ens")
    with pytest.raises(ConfigError, match="member 1 features: rate, win and hop must be the ensemble's"):
        models.load(tmp_path / "own" / "ens")


def test_build_ensemble_calibrates_it(tmp_path):
    torch.set_num_threads(1)
    dirs = _members(tmp_path)
    config = build_ensemble(dirs, tmp_path / "ens", scale=0.01, log=lambda m: None)
    _, saved = models.load(tmp_path / "ens")
    assert saved["calibration"] == config["calibration"] and len(saved["arch_params"]["members"]) == 2
    assert len(saved["decision"]["thresholds"]) == len(saved["keywords"])


def test_cli_ensemble_errors_are_one_line(tmp_path):
    dirs = _members(tmp_path)
    cfg = json.loads((dirs[1] / "model.json").read_text())
    cfg["stride"] = 5
    (dirs[1] / "model.json").write_text(json.dumps(cfg))
    out = tmp_path / "e"
    cmd = [sys.executable, "-m", "rtaudio", "ensemble", str(dirs[0]), str(dirs[1]), "--out", str(out)]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert r.stderr.strip().splitlines() == [f"rtaudio: error: {dirs[1]}: differs from {dirs[0]} in stride"]
    assert not out.exists()
