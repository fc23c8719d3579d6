"""The `rtaudio` command: run pipelines live, process files offline, list stages and devices."""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
from pathlib import Path
from typing import Any

from . import __version__
from .errors import ConfigError, RtAudioError
from .params import parse_scalar


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return args.func(args) or 0
    except RtAudioError as e:
        print(f"rtaudio: error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("rtaudio: interrupted", file=sys.stderr)
        return 130
    except Exception as e:  # an unexpected failure: still one line, unless --debug
        if os.environ.get("RTAUDIO_DEBUG"):
            raise
        print(f"rtaudio: internal error: {type(e).__name__}: {e} (set RTAUDIO_DEBUG=1 for a traceback)",
              file=sys.stderr)
        return 3


def entry() -> None:
    """The process entry point (`rtaudio`, `python -m rtaudio`): `main`, then exit with its code.

    After a Qt window was open, the process ends without interpreter finalisation: PyQt6 and
    pyqtgraph objects destroyed in Python's arbitrary order at exit crashed the process now and then
    (exit code -11 in one CI run of `rtaudio demo`, after every file was written and closed), the
    known crash that pyqtgraph's own `pg.exit()` works around the same way. So does a process
    whose audio stream PortAudio could not stop (a hung sound server): its thread may call back
    into a finalising interpreter (exit code -11 once here). Everything rtaudio writes is closed
    by then; standard output and error are flushed here."""
    code = main()
    qt = sys.modules.get("PyQt6.QtWidgets")  # imported only by the display
    devices = sys.modules.get("rtaudio.devices")
    if (qt is not None and qt.QApplication.instance() is not None) or (
        devices is not None and devices.streams_left_stopping()
    ):
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    sys.exit(code)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="rtaudio", description=__doc__)
    p.add_argument("--version", action="version", version=f"rtaudio {__version__}")
    sub = p.add_subparsers(metavar="COMMAND")

    r = sub.add_parser("run", help="run a pipeline live (a name in pipelines/, a file, or a chain)")
    r.add_argument("pipeline")
    _live_options(r)
    r.add_argument("--input", metavar="FILE", help="play FILE in real time instead of the source")
    r.add_argument("--seconds", type=float, help="stop after this much audio")
    r.add_argument("--snapshot", metavar="PNG", help="render the window offscreen and save a PNG")
    r.add_argument("--set", action="append", default=[], metavar="STAGE.KEY=VALUE",
                   help="override a stage parameter (stage by kind or 1-based index)")
    r.add_argument("--quiet", action="store_true", help="no live status line")
    r.set_defaults(func=cmd_run)

    pr = sub.add_parser("process", help="process a file offline, as fast as the CPU allows")
    pr.add_argument("pipeline", help="pipeline name/file, or a chain such as 'gain db=-6 ! highpass hz=80'")
    pr.add_argument("input")
    pr.add_argument("output")
    pr.add_argument("--block", type=int, default=None, help="block size in frames")
    pr.add_argument("--set", action="append", default=[], metavar="STAGE.KEY=VALUE")
    pr.add_argument("--quiet", action="store_true", help="no progress bar")
    pr.set_defaults(func=cmd_process)

    s = sub.add_parser("stages", help="list every stage, source and sink with its parameters")
    s.add_argument("kind", nargs="?", help="show only this kind")
    s.set_defaults(func=cmd_stages)

    d = sub.add_parser("devices", help="list audio host APIs and devices")
    d.set_defaults(func=cmd_devices)

    lt = sub.add_parser("latency-test", help="measure the round-trip latency through a loopback")
    _live_options(lt)
    lt.add_argument("--input-device", default=None)
    lt.add_argument("--output-device", default=None)
    lt.add_argument("--rate", type=int, default=48000)
    lt.add_argument("--seconds", type=float, default=3.0)
    lt.add_argument("--jack-loopback", action="store_true",
                    help="connect this client's JACK outputs to its inputs (no cable needed)")
    lt.set_defaults(func=cmd_latency_test)

    tr = sub.add_parser("train", help="train a keyword detector for words you type (TTS data)")
    tr.add_argument("--keywords", default=None,
                    help="comma-separated keywords or phrases (default: the ten Speech Commands words)")
    tr.add_argument("--out", default=None, help="model directory to write")
    tr.add_argument("--seed", type=int, default=None,
                    help="corpus seed (default 0; with --init-from, the model's)")
    tr.add_argument("--init-from", default=None, metavar="MODEL",
                    help="continue training this GRU or TCN model (its keywords, architecture and front end) "
                         "at a fine-tuning learning rate")
    tr.add_argument("--minutes", type=float, default=None, help="training time budget")
    tr.add_argument("--model", choices=("gru", "tcn", "cnn"), default=None,
                    help="tcn (default: causal dilated convolutions), gru or cnn (DS-CNN on windows)")
    tr.add_argument("--mels", type=int, default=None, metavar="N",
                    help="log-mel bands (default 40; the shipped ensemble has members with 64)")
    tr.add_argument("--fmax", type=float, default=None, metavar="HZ",
                    help="top of the mel bands (default 7600; 8000 with --mels 64 in the shipped ensemble)")
    tr.set_defaults(func=cmd_train)

    en = sub.add_parser("ensemble", help="average trained keyword models into one, calibrated anew")
    en.add_argument("models", nargs="+",
                    help="two or more GRU or TCN model dirs of the same keywords (front ends may differ)")
    en.add_argument("--out", required=True, help="model directory to write")
    en.add_argument("--seed", type=int, default=0, help="seed of the held-out calibration set")
    en.add_argument("--combine", choices=("mean", "geo"), default="mean",
                    help="average the members' probabilities (mean) or log-probabilities (geo)")
    en.set_defaults(func=cmd_ensemble)

    th = sub.add_parser("train-hmm", help="train the HMM keyword spotter (hmmlearn) for typed words")
    th.add_argument("--keywords", default="yes,no,up,down,left,right,on,off,stop,go")
    th.add_argument("--out", default=None, help="model directory to write")
    th.add_argument("--seed", type=int, default=0)
    th.add_argument("--train-seconds", type=float, default=None, help="augmented speech to train on")
    th.add_argument("--calib-seconds", type=float, default=3600.0, help="keyword-free speech to calibrate on")
    th.add_argument("--target-fa", type=float, default=10.0, help="false accepts per hour, all keywords")
    th.set_defaults(func=cmd_train_hmm)

    dm = sub.add_parser("demo", help="the main job: live monitor, or the built-in demo with no sound card")
    dm.add_argument("--snapshot", default=None, metavar="PNG", help="default: OUTDIR/demo.png")
    dm.add_argument("--outdir", default="out", help="where the demo writes its files")
    dm.set_defaults(func=cmd_demo)
    return p


def _live_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--device", help="device index or name substring (input and output)")
    p.add_argument("--latency", help="low, high, or seconds")
    p.add_argument("--blocksize", type=int, help="device block size in frames (0 = driver's choice)")


# -- helpers --------------------------------------------------------------------------------------
def _apply_sets(spec, sets: list[str]) -> None:
    for item in sets:
        target, eq, value = item.partition("=")
        stage, dot, key = target.rpartition(".")
        if not eq or not dot or not stage or not key:
            raise ConfigError(f"--set {item}: expected STAGE.KEY=VALUE")
        matches = [
            s for i, s in enumerate(spec.stages, 1) if s.kind == stage or str(i) == stage
        ]
        if not matches:
            raise ConfigError(f"--set {item}: no stage '{stage}' in {spec.origin}")
        for m in matches:
            m.values[key] = parse_scalar(value)
    if sets:
        spec.validate()


def _apply_live_options(spec, args) -> None:
    for key in ("device", "latency", "blocksize"):
        value = getattr(args, key, None)
        if value is not None:
            if spec.override(key, value if key != "blocksize" else int(value)) == 0:
                raise ConfigError(f"--{key}: no source or sink in {spec.origin} takes a device {key}")
    spec.validate()


def _fmt_counters(c: dict[str, Any]) -> str:
    return "  ".join(f"{k}={v:.1f}" if isinstance(v, float) else f"{k}={v}" for k, v in c.items())


def print_summary(engine, file=sys.stderr) -> None:
    from rich.console import Console
    from rich.table import Table

    sm = engine.summary
    con = Console(file=file)
    audio_s = sm.audio_seconds
    rt = audio_s / sm.wall_seconds if sm.wall_seconds > 0 else 0.0
    con.print(
        f"[bold]{sm.stopped_by}[/]: {sm.samples_in} samples in ({audio_s:.2f} s at {sm.rate} Hz), "
        f"{sm.samples_out} out, {sm.blocks} blocks, {sm.wall_seconds:.2f} s wall ({rt:.1f}x real time); "
        f"algorithmic latency {1000 * sm.latency_seconds:.1f} ms"
    )
    t = Table("stage", "total ms", "µs/block", "% of real time", box=None, pad_edge=False)
    for st in sm.stages:
        per = 1e6 * st.seconds / st.calls if st.calls else 0.0
        frac = 100 * st.seconds / audio_s if audio_s else 0.0
        t.add_row(st.name, f"{1000 * st.seconds:.1f}", f"{per:.1f}", f"{frac:.2f}")
    if sm.stages:
        con.print(t)
    losses = {k: v for k, v in sm.counters.items() if isinstance(v, int)}
    con.print("counters: " + _fmt_counters(losses))
    if sm.dropped:
        con.print(f"[bold red]lost or padded samples: {sm.dropped}[/]")
    if sm.counters.get("bus dropped"):
        con.print(f"[yellow]analysis messages dropped by a slow consumer: {sm.counters['bus dropped']}[/]")


def _engine_from_spec(spec):
    from .engine import Engine

    source, stages, sinks = spec.build()
    return Engine(source, stages, sinks, block=spec.block)


# -- commands -------------------------------------------------------------------------------------
def cmd_run(args) -> int:
    from . import pipeline

    spec = pipeline.load_any(args.pipeline)
    if args.input:
        spec.source = pipeline.ComponentSpec(
            "file", {"path": args.input, "realtime": True}, f"--input {args.input}"
        )
    _apply_sets(spec, args.set)
    _apply_live_options(spec, args)
    if args.snapshot and not Path(args.snapshot).resolve().parent.is_dir():
        raise RtAudioError(f"--snapshot {args.snapshot}: directory does not exist")
    engine = _engine_from_spec(spec)
    engine.prepare()
    _print_start(engine, args)
    if any(s.kind == "window" for s in engine.sinks):
        from .display import run_gui

        run_gui(engine, snapshot=args.snapshot, seconds=args.seconds)
    else:
        if args.snapshot:
            raise ConfigError(f"--snapshot: {spec.origin} has no window sink")
        _run_console(engine, args)
    print_summary(engine)
    _print_device_latency(engine)
    return 1 if engine.summary.stopped_by == "error" else 0


def _device_latency(engine) -> dict[str, float]:
    """Device latencies (seconds) reported by the sources and sinks that have a device."""
    dev: dict[str, float] = {}
    for obj in [engine.source, *engine.sinks]:
        rep = getattr(obj, "reported_latency", None)
        if callable(rep):
            dev.update(rep())
    return dev


def _print_device_latency(engine) -> None:
    """The device latency as the running stream reported it (the start line has the opening values)."""
    dev = _device_latency(engine)
    if dev:
        lat = engine.latency_seconds
        print("device latency while running: " + ", ".join(f"{k} {1000 * v:.1f} ms" for k, v in dev.items())
              + f"; with the pipeline's {1000 * lat:.1f} ms: {1000 * (lat + sum(dev.values())):.1f} ms",
              file=sys.stderr)


def _print_start(engine, args) -> None:
    if getattr(args, "quiet", False):
        return
    lat = engine.latency_seconds * 1000
    parts = [f"{engine.in_fmt.rate} Hz × {engine.in_fmt.channels} ch", f"block {engine.block}",
             f"pipeline latency {lat:.1f} ms"]
    dev = _device_latency(engine)
    if dev:
        parts.append("device " + ", ".join(f"{k} {1000 * v:.1f} ms" for k, v in dev.items()))
        parts.append(f"total {lat + 1000 * sum(dev.values()):.1f} ms")
    print("rtaudio: " + " · ".join(parts), file=sys.stderr)


def _run_console(engine, args) -> None:
    stop_requested = threading.Event()

    def on_sigint(signum, frame):
        if stop_requested.is_set():
            raise KeyboardInterrupt
        stop_requested.set()
        engine.stop("stopped by Ctrl-C")

    old = signal.signal(signal.SIGINT, on_sigint)
    show = not args.quiet and sys.stderr.isatty()
    limit = args.seconds
    try:
        engine.start()
        while not engine.wait(0.25):
            st = engine.status()
            if limit is not None and st["seconds"] >= limit:
                engine.stop(f"stopped after {limit:g} s")
            if show:
                line = _fmt_counters(st)
                print(f"\r\033[K{line[: os.get_terminal_size().columns - 1]}", end="", file=sys.stderr)
        if show:
            print(file=sys.stderr)
    finally:
        signal.signal(signal.SIGINT, old)


def cmd_process(args) -> int:
    from . import pipeline
    from .engine import Engine

    spec = pipeline.load_any(args.pipeline)
    _apply_sets(spec, args.set)
    if Path(args.output).resolve() == Path(args.input).resolve():
        raise RtAudioError(f"{args.output}: output would overwrite the input")
    source = pipeline.ComponentSpec("file", {"path": args.input}, f"input {args.input}").build("source")
    stages = [s.build("stage") for s in spec.stages]
    sinks = [pipeline.ComponentSpec("wav", {"path": args.output}, f"output {args.output}").build("sink")]
    sinks += [s.build("sink") for s in spec.sinks if s.kind in ("eventlog", "wav")]
    engine = Engine(source, stages, sinks, block=args.block or spec.block, compensate_latency=True)
    engine.prepare()
    total = source.total_frames or 0
    show = not args.quiet and sys.stderr.isatty() and total > 30 * engine.in_fmt.rate
    if show:
        from rich.progress import Progress

        with Progress(transient=True) as prog:
            task = prog.add_task(Path(args.input).name, total=total)
            engine.start()
            while not engine.wait(0.1):
                prog.update(task, completed=engine.summary.samples_in)
    else:
        engine.run()
    if not args.quiet:
        print_summary(engine)
    return 0


def cmd_stages(args) -> int:
    from rich.console import Console
    from rich.table import Table

    from .registry import all_kinds, lookup

    con = Console()
    kinds = {args.kind: lookup(args.kind)} if args.kind else all_kinds()
    for role in ("source", "stage", "sink"):
        for kind, cls in kinds.items():
            if cls.role != role:
                continue
            con.print(f"[bold]{kind}[/] ({role}) — {cls.summary}")
            if cls.params:
                t = Table("param", "type/range", "default", "unit", "live", "help", box=None,
                          pad_edge=False, padding=(0, 2, 0, 2))
                for p in cls.params:
                    t.add_row(p.name, p.describe_range(), repr(p.default), p.unit,
                              "yes" if p.live else "", p.help)
                con.print(t)
    return 0


def cmd_devices(args) -> int:
    from .devices import cmd_devices as run

    return run(args)


def cmd_latency_test(args) -> int:
    from .latency_test import cmd_latency_test as run

    return run(args)


def cmd_train(args) -> int:
    from .kws.train import cmd_train as run

    return run(args)


def cmd_ensemble(args) -> int:
    from .kws.train import cmd_ensemble as run

    return run(args)


def cmd_train_hmm(args) -> int:
    from .hmm.train import cmd_train_hmm as run

    return run(args)


def cmd_demo(args) -> int:
    """Live monitor when there is a microphone; otherwise the built-in demo clip, written to files."""
    from . import pipeline

    has_input = _has_input_device()
    if has_input:
        print("rtaudio: microphone found: opening the live monitor (close the window to stop)",
              file=sys.stderr)
        ns = build_parser().parse_args(["run", "monitor"])
        return cmd_run(ns)
    out = Path(args.outdir)
    out.mkdir(parents=True, exist_ok=True)
    args.snapshot = args.snapshot or str(out / "demo.png")
    print("rtaudio: no sound card here: running the demo pipeline on the built-in clip",
          file=sys.stderr)
    spec = pipeline.load("demo")
    for s in spec.sinks:
        if "path" in s.values:
            s.values["path"] = str(out / Path(s.values["path"]).name)
    engine = _engine_from_spec(spec)
    engine.prepare()
    _print_start(engine, args)
    if any(s.kind == "window" for s in engine.sinks):
        from .display import run_gui

        run_gui(engine, snapshot=args.snapshot, seconds=None)
    else:
        engine.run()
    print_summary(engine)
    for s in engine.sinks:
        if "path" in s.values:
            print(f"wrote {s.values['path']}", file=sys.stderr)
    if Path(args.snapshot).exists():
        print(f"wrote {args.snapshot}", file=sys.stderr)
    return 0


def _has_input_device() -> bool:
    from .devices import AudioServerHung, _sd

    try:
        dev = _sd().query_devices(kind="input")
        return bool(dev and dev["max_input_channels"] > 0)
    except AudioServerHung:
        raise  # a sound server that hangs is not "no sound card": say so
    except Exception:
        return False


if __name__ == "__main__":
    entry()
