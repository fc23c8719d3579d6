"""Pipeline files, chain syntax, validation errors, and user plug-ins."""

import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from rtaudio import pipeline, registry
from rtaudio.errors import ConfigError, RtAudioError

PIPELINES = sorted((Path(__file__).parent.parent / "pipelines").glob("*.toml"))
PLUGIN_DIR = Path(__file__).parent / "plugin_example"


@pytest.mark.parametrize("path", PIPELINES, ids=lambda p: p.stem)
def test_every_shipped_pipeline_loads_and_round_trips(path):
    spec = pipeline.load(str(path))
    again = pipeline.loads(pipeline.dumps(spec), "<saved>")
    assert again.to_dict() == spec.to_dict()
    assert pipeline.dumps(again) == pipeline.dumps(spec)


def test_pipelines_are_found_by_name():
    assert pipeline.resolve("demo").name == "demo.toml"
    with pytest.raises(RtAudioError, match="unknown pipeline 'nope'.*demo"):
        pipeline.resolve("nope")


def test_a_directory_named_like_a_pipeline_does_not_hide_it(tmp_path, monkeypatch):
    """`rtaudio demo --outdir demo` makes ./demo; running the demo again there used to fail with
    "demo: cannot read (Is a directory)". A file of that name is still taken as given."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "demo").mkdir()
    assert pipeline.resolve("demo").parent.name == "pipelines"
    assert pipeline.load("demo").sinks
    (tmp_path / "mine").write_text('[source]\nkind = "tone"\n[[sinks]]\nkind = "null"\n')
    assert pipeline.resolve("mine") == Path("mine")
    with pytest.raises(RtAudioError, match="sub/x.toml: no such pipeline file"):
        pipeline.resolve("sub/x.toml")


def test_chain_maps_to_the_same_spec_as_a_file():
    chain = pipeline.parse_chain("tone hz=440 seconds=1 ! gain db=-6 ! highpass hz=80 ! null")
    text = textwrap.dedent(
        """
        [source]
        kind = "tone"
        hz = 440
        seconds = 1
        [[stages]]
        kind = "gain"
        db = -6
        [[stages]]
        kind = "highpass"
        hz = 80
        [[sinks]]
        kind = "null"
        """
    )
    assert chain.to_dict() == pipeline.loads(text, "x.toml").to_dict()


def _err(text: str) -> str:
    with pytest.raises(ConfigError) as e:
        pipeline.loads(textwrap.dedent(text), "bad.toml")
    return str(e.value)


def test_errors_name_file_stage_and_key():
    msg = _err('[[stages]]\nkind = "gain"\ndb = 100\n')
    assert msg.startswith("bad.toml: stage 1 'gain': key 'db' = 100.0 is out of range")
    assert "[-120.0, 60.0]" in msg
    msg = _err('[[stages]]\nkind = "gain"\n[[stages]]\nkind = "lowpass"\nfreq = 3\n')
    assert "stage 2 'lowpass': unknown key 'freq'" in msg and "known keys: hz, order" in msg
    msg = _err('[[stages]]\nkind = "reverb"\n')
    assert "bad.toml: stage 1 'reverb': unknown stage kind 'reverb'" in msg and "gain" in msg
    msg = _err('[[stages]]\nkind = "gain"\ndb = "loud"\n')
    assert "key 'db' must be a float" in msg
    msg = _err('[[stages]]\nkind = "gain"\ndb = -6\n[source\n')
    assert msg.startswith("bad.toml: TOML syntax error:") and "line 4" in msg
    msg = _err('[[stages]]\nkind = "tone"\n')
    assert "'tone' is a source, not a stage" in msg
    msg = _err('[[stages]]\ndb = 1\n')
    assert "stage 1: key 'kind' is missing" in msg


def test_user_stage_by_import_path(monkeypatch):
    monkeypatch.syspath_prepend(str(PLUGIN_DIR))
    spec = pipeline.parse_chain("my_stages:Invert odd_only=true ! gain db=0")
    _, stages, _ = pipeline.PipelineSpec(
        source=pipeline.ComponentSpec("tone", {}), stages=spec.stages
    ).build()
    from rtaudio.stage import AudioFormat

    stages[0].setup(AudioFormat(48000, 2))
    out = stages[0].run(np.ones((3, 2), np.float32))
    assert out[:, 0].tolist() == [1, 1, 1] and out[:, 1].tolist() == [-1, -1, -1]


def test_user_stage_through_entry_point(tmp_path, monkeypatch):
    dist = tmp_path / "my_stages_plugin-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: my-stages-plugin\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[rtaudio.stages]\ninvert = my_stages:Invert\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.syspath_prepend(str(PLUGIN_DIR))
    monkeypatch.setattr(registry, "_loaded", False)
    monkeypatch.setattr(registry, "_REGISTRY", {})
    spec = pipeline.loads('[[stages]]\nkind = "invert"\nodd_only = true\n', "plug.toml")
    assert spec.stages[0].build("stage").__class__.__name__ == "Invert"
    assert "invert" in registry.all_kinds()
    sys.modules.pop("my_stages", None)
