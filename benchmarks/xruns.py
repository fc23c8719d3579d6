"""Xruns and slips of rtaudio's duplex device path, by block size x latency x load x server.

For each setting one duplex stream plays a chirp train and records it through a loopback
(PulseAudio: a float32 null sink's monitor; JACK dummy driver: the client's ports connected back)
for `--seconds`, after 3 s of start-up that are not counted. Reported per run:

* flags    callbacks with PortAudio status flags (input overflow, output underflow, ...)
* slips    lag changes between consecutive 1 s periods of the recording (cross-correlation):
           samples really dropped or inserted, whether or not anything was flagged
* clock    rtaudio's own clock-based slip counters (input/output frames; rtaudio.clock)
* lag      the settled round trip in ms

Loads: `none`; `numpy` (one thread of FFT/ufunc/sort work on 2^20 floats); `chain` (an
rtaudio Engine running the keyword chain `resample rate=16000 ! kws` on the demo clip in real
time in this process, as `rtaudio run keywords` would, plus the numpy thread). Each server is a
private one started with scripts/audio-server (JACK with -R, period = block size).

    python benchmarks/xruns.py --servers pulse,jack --blocks 64,128,256,512,1024 \
        --latencies low,high,0.1 --loads none,chain --seconds 20
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import threading
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from benchmarks.servers import start_server, stop_server  # noqa: E402

CHAIN = "resample rate=16000 ! kws"
FALLBACK_CHAIN = "resample rate=16000 ! highpass hz=80 ! level ! stft n_fft=1024 hop=160"


class Load:
    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.stop = threading.Event()
        self.threads: list[threading.Thread] = []
        self.engine = None
        self.iterations = 0

    def _numpy(self) -> None:
        # single-threaded numpy work (one busy thread; BLAS matmuls would take every core)
        x = np.random.default_rng(0).random(1 << 20)
        while not self.stop.is_set():
            y = np.fft.irfft(np.fft.rfft(x) * 0.5)
            x = np.sort(np.abs(np.sin(y) + np.exp(-y * y)))
            self.iterations += 1

    def __enter__(self) -> Load:
        if self.kind in ("numpy", "chain"):
            self.threads.append(threading.Thread(target=self._numpy, daemon=True))
        if self.kind == "chain":
            from rtaudio import pipeline
            from rtaudio.engine import Engine

            try:
                spec = pipeline.load_any(CHAIN)
            except Exception as e:  # the keyword model may not be trained on this checkout
                print(f"load: {CHAIN!r} unavailable ({e}); using {FALLBACK_CHAIN!r}",
                      file=sys.stderr)
                spec = pipeline.load_any(FALLBACK_CHAIN)
            source = pipeline.ComponentSpec(
                "file", {"path": str(ROOT / "rtaudio/data/demo.flac"), "realtime": True,
                         "loop": True}, "load").build("source")
            stages = [s.build("stage") for s in spec.stages]
            self.engine = Engine(source, stages, [], block=480)
            self.engine.prepare()
            self.engine.start()
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        for t in self.threads:
            t.join()
        if self.engine is not None:
            self.engine.stop()
            self.engine.wait(10)


def run_one(kind: str, device: str, block: int, latency: str, load: str, seconds: float) -> dict:
    from rtaudio.latency_test import measure_loopback

    with Load(load) as ld:
        res = measure_loopback(device, rate=48000, blocksize=block, latency=latency,
                               seconds=seconds, skip=3.0, jack_loopback=kind == "jack")
        chain_lost = ld.engine.summary.dropped if ld.engine is not None else 0
    return {
        "flags": sum(res.flags.values()),
        "startup": res.startup_flags,
        "slips": res.slips,
        "slipped": int(np.abs(np.diff(res.lags)).sum()) if len(res.lags) > 1 else 0,
        "clock": f"{res.clock_slips.get('input', 0)}/{res.clock_slips.get('output', 0)}",
        "lag_ms": None if res.measured is None else 1000 * res.measured / res.rate,
        "time_info_ms": None if res.time_info is None else 1000 * res.time_info,
        "exact": res.exact,
        "chain_lost": chain_lost,
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--servers", default="pulse,jack")
    ap.add_argument("--blocks", default="64,128,256,512,1024")
    ap.add_argument("--latencies", default="low,high")
    ap.add_argument("--loads", default="none,chain")
    ap.add_argument("--seconds", type=float, default=10.0, help="measured after 3 s start-up")
    ap.add_argument("--no-realtime", action="store_true", help="servers without RT scheduling")
    args = ap.parse_args()
    import sounddevice as sd
    from rich.console import Console
    from rich.table import Table

    con = Console(width=200)
    t = Table("server", "block", "latency", "load", "start-up flags", "flags", "slips", "slipped smp",
              "clock in/out", "lag ms", "DAC-ADC ms", "exact", "load1", box=None)
    for kind in args.servers.split(","):
        device = "pulse" if kind == "pulse" else "system"
        periods = [int(b) for b in args.blocks.split(",")] if kind == "jack" else [256]
        for period in periods:
            audio_dir = tempfile.mkdtemp(prefix=f"xruns-{kind}-")
            env = start_server(kind, audio_dir, period, not args.no_realtime)
            os.environ.update(env)
            sd._terminate()
            sd._initialize()
            try:
                blocks = [period] if kind == "jack" else [int(b) for b in args.blocks.split(",")]
                lats = ["high"] if kind == "jack" else args.latencies.split(",")
                for block in blocks:
                    for lat in lats:
                        for load in args.loads.split(","):
                            try:
                                r = run_one(kind, device, block, lat, load, args.seconds)
                            except Exception as e:  # keep sweeping; show what failed
                                t.add_row(kind, str(block), lat, load, f"error: {e}"[:60])
                                continue
                            lag = "-" if r["lag_ms"] is None else f"{r['lag_ms']:.1f}"
                            ti = "-" if r["time_info_ms"] is None else f"{r['time_info_ms']:.1f}"
                            t.add_row(kind, str(block), lat, load, str(r["startup"]),
                                      str(r["flags"]),
                                      str(r["slips"]), str(r["slipped"]), r["clock"], lag, ti,
                                      "yes" if r["exact"] else "no",
                                      f"{os.getloadavg()[0]:.1f}")
                            print(kind, block, lat, load, r, flush=True)
            finally:
                sd._terminate()
                stop_server(kind, audio_dir)
                for k in env:
                    if k != "JACK_NO_START_SERVER":
                        os.environ.pop(k, None)
                sd._initialize()
    con.print(t)
    con.print(f"{args.seconds:g} s measured per row after 3 s start-up; 2 cores shared with other "
              "jobs (load1 = load average at the end of the row)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
