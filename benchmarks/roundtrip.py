"""End-to-end round trip of rtaudio's duplex path with the full keyword chain in the loop.

For each setting a private audio server is started (JACK: jackd -R, dummy driver, period P at
48 kHz) and rtaudio runs

    Engine(DeviceInput(device), [Resample(rate=16000), KeywordSpotter(), Resample(rate=48000)],
           [DeviceOutput(device, prefill=X)], block=B)

(one duplex `sd.Stream`). A bench client (a second duplex stream in this process, copy-only
callback, like tests/test_duplex_load.py) plays band-limited noise (0-6 kHz, so the 16 kHz
resampling passes it) into rtaudio's input and records rtaudio's output:

    JACK:  bench:out -> rtaudio:in,  rtaudio:out -> bench:in      (jack_connect)
    pulse: bench -> null sink rtA -> rtA.monitor -> rtaudio -> null sink rtB -> rtB.monitor -> bench

Columns:

* `total ms`   lag of the bench's recording behind what it played (cross-correlation, median of the
               0.5 s windows of tests/loopback_tools.align; an underflow pads silence and moves
               every later window, so after slips the median is above the initial lag)
* `bench ms`   the bench's own contribution: the same bench alone, its output wired back to its own
               input (JACK ports / the rtA null sink), measured once per server start
* `rt ms`      rtaudio's end-to-end round trip = total - bench. On JACK a client that copied its
               input to its output inside the callback would measure 0 here (the graph's cycle
               costs the same period in both loops); the device round trip of a PortAudio duplex
               client on its own (`rtaudio latency-test --jack-loopback`) equals `bench ms`.
* `chain ms`   the chain's declared latency (sum of the stages' `latency`; Engine.latency_seconds)
* `rt-chain`   rt minus the declared chain latency: what the device path and output queue add
* `rep in/out/q` what rtaudio reports (`eng.source.reported_latency()`): input, output, output queue
* `flags`      device status flags after rtaudio's start-up, summed over the four kinds (a JACK
               xrun sets input overflow and output underflow: 2 per flagged callback); the
               flags during the start-up are counted apart (`start-up`)
* `ring u/o`   output ring underflow frames / input+output ring overflow frames
* `clk slips`  rtaudio's clock-based slip frames (input/output)
* `slips`      lag changes between 0.5 s windows of the recording (align): slips / slipped frames
* `q min ms`   the smallest output-queue level seen while the reference played (polled every 10 ms)
* `late rt/bench` (JACK) cycles jackd's log blames on rtaudio's client / on the bench's
               (`client = X was not finished, state = Running`); clients that were still waiting to
               be woken are not blamed. Needs `--bench-process`: in one process both streams share
               one JACK client ("PortAudio") and the blame cannot be split.
* `load1`      1-minute load average at the end of the row (2 cores shared with other jobs)

An xrun on JACK is flagged to every client of the graph, so rtaudio's `flags` include the bench's.
`benchmarks/jack_floor.py` measures what two C clients get on the same machine (the floor).

    python benchmarks/roundtrip.py --server jack --periods 64,128,256 --blocks 1,2 \
        --prefills 0,0.0025,0.005,0.01,0.02 --seconds 20
    python benchmarks/roundtrip.py --server jack --periods 128 --blocks 2 --prefills 0.005 --seconds 600
    python benchmarks/roundtrip.py --server jack --periods 512 --blocks 1 --prefills 0.01 \
        --layout tap --bench-process --seconds 600
    python benchmarks/roundtrip.py --server pulse --pulse-block 480 --seconds 600
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal as signal_module
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from benchmarks import servers  # noqa: E402
from tests.loopback_tools import Bench, wait_for  # noqa: E402

RATE = 48000


# -- servers --------------------------------------------------------------------------------------
def start_server(kind: str, audio_dir: str, period: int) -> dict[str, str]:
    """A private realtime server; its client environment applied here and PortAudio re-read."""
    import sounddevice as sd

    out = servers.start_server(kind, audio_dir, period, realtime=True)
    os.environ.update(out)
    sd._terminate()
    sd._initialize()
    return out


def stop_server(kind: str, audio_dir: str, env: dict[str, str]) -> None:
    import sounddevice as sd

    sd._terminate()  # PortAudio's JACK host API aborts if it terminates after the server is gone
    servers.stop_server(kind, audio_dir)
    for k in env:
        if k != "JACK_NO_START_SERVER":
            os.environ.pop(k, None)
    sd._initialize()


def null_sink(name: str) -> None:
    subprocess.run(["pactl", "load-module", "module-null-sink", f"sink_name={name}",
                    "format=float32le", f"rate={RATE}", "channels=1"],
                   capture_output=True, text=True, check=True, timeout=20)


@contextmanager
def pulse_env(**values: str):
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


# -- signal and bench -----------------------------------------------------------------------------
def signal(seconds: float, seed: int = 7) -> np.ndarray:
    """White noise low-passed at 6 kHz (passes the 16 kHz resampling), rms ~0.1, float32."""
    from scipy.signal import butter, sosfilt

    rng = np.random.default_rng(seed)
    x = rng.standard_normal(int(seconds * RATE))
    x = sosfilt(butter(8, 6000, fs=RATE, output="sos"), x)
    x *= 0.1 / np.std(x)
    return np.clip(x, -0.9, 0.9).astype(np.float32)


class BenchProcess:
    """The bench in a child process (`--bench-child`): its own JACK client and its own GIL, so
    the JACK log names which client was late (`JackEngine::XRun: client = ...`)."""

    def __init__(self, seconds: float) -> None:
        self.rec_path = tempfile.mktemp(suffix=".npy", prefix="bench-rec-")
        self.proc = subprocess.Popen(
            [sys.executable, __file__, "--bench-child", str(seconds), self.rec_path],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        line = self.proc.stdout.readline().strip()
        if line != "ready":
            raise RuntimeError(f"bench child failed to start: {line!r}")
        self.flags = 0
        self.rec = None

    def play(self) -> None:
        self.proc.stdin.write("play\n")
        self.proc.stdin.flush()

    def finish(self, seconds: float) -> None:
        out, _ = self.proc.communicate(timeout=seconds)
        self.flags = json.loads(out.strip().splitlines()[-1])["flags"]
        self.rec = np.load(self.rec_path)
        os.unlink(self.rec_path)


def bench_child(seconds: float, rec_path: str) -> int:
    from rtaudio.devices import promote_audio_threads

    bench = Bench("system", signal(seconds))
    with bench.stream:
        wait_for(lambda: bench.tid, 10, "the bench stream never started")
        promote_audio_threads([bench.tid])
        print("ready", flush=True)
        if sys.stdin.readline().strip() != "play":
            return 1
        bench.playing = True
        wait_for(lambda: bench.done, seconds + 60, "the bench stalled")
    np.save(rec_path, bench.rec)
    print(json.dumps({"flags": bench.flags}), flush=True)
    return 0


def lag_of(ref: np.ndarray, rec: np.ndarray, skip: float = 1.0):
    from tests.loopback_tools import align

    a = align(ref, rec, RATE, skip=skip)
    if not a.lags:
        raise RuntimeError("no signal came back")
    return a


# -- one measurement ------------------------------------------------------------------------------
def bench_alone(kind: str, device: str, seconds: float = 8.0) -> dict:
    """The bench looped back on itself: its own contribution to the measured lag."""
    from rtaudio.devices import promote_audio_threads
    from tests.loopback_tools import jack_ports, jack_wire, port_of

    ref = signal(seconds, seed=3)
    if kind == "pulse":
        with pulse_env(PULSE_SINK="rtA", PULSE_SOURCE="rtA.monitor"):
            bench = Bench(device, ref)
    else:
        before = jack_ports()
        bench = Bench(device, ref)
        ports = jack_ports() - before
    with bench.stream:
        if kind == "jack":
            jack_wire([(port_of(ports, "out"), port_of(ports, "in"))])
        wait_for(lambda: bench.tid, 10, "the bench stream never started")
        promote_audio_threads([bench.tid])
        time.sleep(1.0 if kind == "jack" else 4.0)  # PulseAudio's lag settles in its first seconds
        bench.playing = True
        wait_for(lambda: bench.done, seconds + 30, "the bench stalled")
    a = lag_of(ref, bench.rec)
    return {"lag": float(np.median(a.lags)), "slips": a.slips, "flags": bench.flags,
            "corr": min(a.corr)}


LAYOUT = "inline"  # or "tap" (--layout)
BENCH_PROCESS = False  # --bench-process


def build_engine(device: str, block: int, prefill: float | None, quality: str):
    from rtaudio.devices import DeviceInput, DeviceOutput
    from rtaudio.engine import Engine
    from rtaudio.kws.stage import KeywordSpotter
    from rtaudio.stages.resample import Resample

    out = DeviceOutput(device=device) if prefill is None else DeviceOutput(device=device,
                                                                           prefill=prefill)
    if LAYOUT == "tap":  # the keyword chain on a side branch: the audio path is untouched
        from rtaudio.stages.tap import Tap

        stages = [Tap(chain=f"resample rate=16000 quality={quality} ! kws")]
    else:
        stages = [Resample(rate=16000, quality=quality), KeywordSpotter(),
                  Resample(rate=48000, quality=quality)]
    return Engine(DeviceInput(device=device), stages, [out], block=block), out


def run_chain(kind: str, device: str, block: int, prefill: float | None, seconds: float,
              quality: str, audio_dir: str, save: str | None = None) -> dict:
    from rtaudio.devices import SETTLE_SECONDS, promote_audio_threads
    from tests.loopback_tools import jack_ports, jack_wire, port_of

    ref = signal(seconds)
    before = jack_ports() if kind == "jack" else set()
    child = BENCH_PROCESS and kind == "jack"
    if kind == "pulse":
        with pulse_env(PULSE_SINK="rtA", PULSE_SOURCE="rtB.monitor"):
            bench = Bench(device, ref)
    elif child:
        bench = BenchProcess(seconds)
    else:
        bench = Bench(device, ref)
    h_ports = jack_ports() - before if kind == "jack" else set()
    rtaudio_client = "PortAudio"
    eng, out = build_engine(device, block, prefill, quality)
    if kind == "pulse":
        with pulse_env(PULSE_SINK="rtB", PULSE_SOURCE="rtA.monitor"):
            eng.prepare()
    else:
        eng.prepare()
    assert out.duplex_with is eng.source, "not one duplex stream"
    r_ports = jack_ports() - before - h_ports if kind == "jack" else set()
    if r_ports:
        rtaudio_client = next(iter(r_ports)).split(":", 1)[0]
    jack_log = Path(audio_dir, "jack.log")  # read after the start-up: which client was late
    log_start = 0
    qmin = np.inf
    levels: list[int] = []
    try:
        eng.start()
        wait_for(lambda: eng.source.clock.k > 0, 10, "rtaudio's stream never started")
        with (contextlib.nullcontext() if child else bench.stream):
            if kind == "jack":
                jack_wire([(port_of(h_ports, "out"), port_of(r_ports, "in")),
                           (port_of(r_ports, "out"), port_of(h_ports, "in"))])
            if not child:
                wait_for(lambda: bench.tid, 10, "the bench stream never started")
                promote_audio_threads([bench.tid])
            time.sleep(SETTLE_SECONDS)  # rtaudio's start-up; its counters begin after it
            if jack_log.exists():
                log_start = jack_log.stat().st_size
            if child:
                bench.play()
            else:
                bench.playing = True
            t_play = time.monotonic()
            deadline = t_play + seconds + 60
            played = (lambda: time.monotonic() - t_play > seconds + 2.5) if child else (
                lambda: bench.done)
            while not (played() or not eng.running):
                if time.monotonic() > deadline:
                    raise TimeoutError("the bench stalled")
                if time.monotonic() - t_play > 1.0:
                    lv = out.queue.level()
                    levels.append(lv)
                    qmin = min(qmin, lv)
                time.sleep(0.01)
            rt_info = eng.source.round_trip_time_info()
            if child:
                bench.finish(60)
    finally:
        eng.stop()
        eng.wait(20)
    by_client = servers.jack_xruns(servers.read_from(jack_log, log_start)) if kind == "jack" else {}
    c = eng.summary.counters
    print(f"counters {c}; bench flags {bench.flags}", flush=True)
    if save:  # the recording, before the (slow) alignment: re-align with --realign
        np.save(save, bench.rec)
    a = lag_of(ref, bench.rec)
    rep = eng.source.reported_latency()
    flags = sum(c.get(k, 0) for k in ("input overflow flags", "input underflow flags",
                                      "output underflow flags", "output overflow flags"))
    return {
        "lag": float(np.median(a.lags)), "lag_first": a.lags[0], "lag_last": a.lags[-1],
        "slips": a.slips, "slipped": a.slipped_frames,
        "min_corr": float(min(a.corr)), "windows": len(a.lags),
        "chain_s": eng.latency_seconds, "prefill_frames": out.prefill_frames,
        "rep_in": rep.get("input"), "rep_out": rep.get("output"), "rep_q": rep.get("output queue"),
        "time_info": rt_info, "startup_flags": c.get("start-up flags", 0), "flags": flags,
        "ring_under": c.get("output ring underflow", 0),
        "ring_over": c.get("ring overflow", 0) + c.get("output ring overflow", 0),
        "clk_in": c.get("input slip frames", 0), "clk_out": c.get("output slip frames", 0),
        "trim": c.get("output start-up trim"), "bench_flags": bench.flags,
        "qmin": float(qmin) if levels else None,
        "qmed": float(np.median(levels)) if levels else None,
        "audio_s": eng.summary.samples_in / RATE, "stopped_by": eng.summary.stopped_by,
        "counters": {k: v for k, v in c.items() if not isinstance(v, float)},
        "late_clients": by_client, "rtaudio_client": rtaudio_client,
        "rtaudio_late": by_client.get(rtaudio_client, 0),
    }


# -- main -----------------------------------------------------------------------------------------
def ms(samples_or_s, scale: float = 1000.0 / RATE) -> str:
    return "-" if samples_or_s is None else f"{samples_or_s * scale:.2f}"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--server", default="jack", choices=("jack", "pulse"))
    ap.add_argument("--periods", default="64,128,256", help="JACK periods (frames)")
    ap.add_argument("--blocks", default="1,2", help="engine block as multiples of the period")
    ap.add_argument("--prefills", default="0,0.0025,0.005,0.01,0.02", help="seconds")
    ap.add_argument("--pulse-block", type=int, default=480, help="engine block on PulseAudio")
    ap.add_argument("--seconds", type=float, default=20.0, help="reference played per row")
    ap.add_argument("--quality", default="HQ", help="Resample quality (HQ = the default)")
    ap.add_argument("--layout", default="inline", choices=("inline", "tap"),
                    help="keyword chain in the audio path, or on a `tap` side chain (audio untouched)")
    ap.add_argument("--json", help="append one JSON line per row to this file")
    ap.add_argument("--save", help="save each recording as PREFIX-server-period-block-prefill.npy")
    ap.add_argument("--bench-process", action="store_true",
                    help="JACK: run the bench client in its own process (xruns attributed per "
                         "client from jackd's log: column `late rt/bench`)")
    ap.add_argument("--bench-child", nargs=2, metavar=("SECONDS", "REC"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.bench_child:
        return bench_child(float(args.bench_child[0]), args.bench_child[1])
    global LAYOUT, BENCH_PROCESS
    LAYOUT = args.layout
    BENCH_PROCESS = args.bench_process
    # a `timeout` (SIGTERM) unwinds through the finally clauses: the servers get stopped
    signal_module.signal(signal_module.SIGTERM, lambda *_: sys.exit(143))
    from rich.console import Console
    from rich.table import Table

    con = Console(width=220)
    t = Table("server", "period", "block", "prefill s", "total ms", "bench ms", "rt ms", "chain ms",
              "rt-chain", "rep in/out/q ms", "start-up", "flags", "ring u/o", "clk slips",
              "slips", "min corr", "q min ms", "bench fl", "late rt/bench", "load1", box=None)
    kind = args.server
    device = "system" if kind == "jack" else "pulse"
    periods = [int(p) for p in args.periods.split(",")] if kind == "jack" else [0]
    for period in periods:
        audio_dir = tempfile.mkdtemp(prefix=f"roundtrip-{kind}-")
        env = start_server(kind, audio_dir, period or 256)
        try:
            if kind == "pulse":
                null_sink("rtA")
                null_sink("rtB")
            try:
                b = bench_alone(kind, device)
            except Exception as e:
                print(f"{kind} {period}: bench alone failed: {e}", flush=True)
                continue
            print(f"{kind} period {period}: bench alone {b}", flush=True)
            if kind == "jack":
                settings = [(m * period, float(x)) for m in map(int, args.blocks.split(","))
                            for x in args.prefills.split(",")]
            else:
                settings = [(args.pulse_block, None)]  # default device settings and prefill
            for block, prefill in settings:
                try:
                    save = (f"{args.save}-{kind}-{period}-{block}-{prefill}.npy" if args.save
                            else None)
                    r = run_chain(kind, device, block, prefill, args.seconds, args.quality, audio_dir,
                                  save)
                except Exception as e:  # keep sweeping; show what failed
                    print(f"{kind} {period} {block} {prefill}: error {type(e).__name__}: {e}",
                          flush=True)
                    t.add_row(kind, str(period), str(block), str(prefill), f"error: {e}"[:60])
                    continue
                load1 = os.getloadavg()[0]
                rt = r["lag"] - b["lag"]
                r.update(server=kind, period=period, block=block, prefill=prefill,
                         bench_lag=b["lag"], bench=b, rt=rt, load1=load1, seconds=args.seconds,
                         quality=args.quality)
                print(json.dumps(r), flush=True)
                if args.json:
                    with open(args.json, "a") as f:
                        f.write(json.dumps(r) + "\n")
                rep = "/".join(ms(r[k], 1000.0) for k in ("rep_in", "rep_out", "rep_q"))
                lc = r["late_clients"]
                others = sum(v for k, v in lc.items()
                             if k != r["rtaudio_client"] and not k.startswith("("))
                late = f"{r['rtaudio_late']}/{others}" if kind == "jack" else "-"
                t.add_row(kind, str(period or "-"), str(block),
                          "default" if prefill is None else f"{prefill:g}",
                          ms(r["lag"]), ms(b["lag"]), ms(rt), ms(r["chain_s"], 1000.0),
                          ms(rt - r["chain_s"] * RATE), rep, str(r["startup_flags"]),
                          str(r["flags"]), f"{r['ring_under']}/{r['ring_over']}",
                          f"{r['clk_in']}/{r['clk_out']}", f"{r['slips']}/{r['slipped']}",
                          f"{r['min_corr']:.4f}", ms(r["qmin"]), str(r["bench_flags"]),
                          late, f"{load1:.2f}")
        finally:
            stop_server(kind, audio_dir, env)
    con.print(t)
    chain = (f"tap chain='resample 16000 ({args.quality}) ! kws' (audio path untouched)"
             if args.layout == "tap" else f"resample 16000 ({args.quality}) ! kws ! resample 48000")
    con.print(f"{args.seconds:g} s of reference per row after rtaudio's 6 s start-up; chain = {chain}; "
              f"48 kHz; {os.cpu_count()} cores shared with other jobs")
    return 0


if __name__ == "__main__":
    sys.exit(main())
