"""Monitor window cost: frames per second, GUI CPU per frame, audio-to-screen delay.

Runs the real window (offscreen Qt unless a display is available) on a real-time pink-noise +
tone source at 48 kHz through `level ! stft`, for n_fft 1024..16384, and prints a table.

  nice -n 10 /work/venv/bin/python benchmarks/display.py [--seconds 4] [--hop 512] [--fps 60]

* fps: paints of the plot view per second of wall time (from the first data paint).
* GUI CPU: CPU time of the main (Qt) thread between the first and last paint, per frame and as
  a share of one core.
* delay at paint: at each paint, the stream position (frames the source delivered) minus the
  sample index just past the newest drawn frame (seconds): how old new audio is when it shows.
* behind: the same at every timer tick just before the update, i.e. how stale the screen gets.
  Goal: never more than one hop plus one display frame (the "hop+frame" column).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
if not os.environ.get("DISPLAY") and not os.environ.get("WAYLAND_DISPLAY"):
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import numpy as np  # noqa: E402

from rtaudio.display.gui import run_gui  # noqa: E402
from rtaudio.display.window import WindowSink  # noqa: E402
from rtaudio.engine import Engine  # noqa: E402
from rtaudio.sources import NoiseSource  # noqa: E402
from rtaudio.stages.level import LevelMeter  # noqa: E402
from rtaudio.stages.spectral import Stft  # noqa: E402

RATE = 48000


def measure(n_fft: int, hop: int, fps: float, seconds: float) -> dict:
    src = NoiseSource(color="pink", level=-30.0, rate=RATE, seconds=seconds + 1.0, realtime=True)
    stft = Stft(n_fft=n_fft, hop=hop, average=0.05)
    block = min(hop, 512)  # the engine block is the worker's quantum: keep it <= hop
    eng = Engine(src, [LevelMeter(), stft], [WindowSink(fps=fps)], block=block)
    win = run_gui(eng, seconds=seconds)
    (c0, w0, p0), (c1, w1, p1) = win.paint_clock
    frames = p1 - p0
    delays = 1000 * np.array(win.delays[5:])  # ms; skip the start-up paints
    behind = 1000 * np.array(win.behind[5:])
    stage = next(s for s in eng.summary.stages if s.name == "stft")
    return {
        "n_fft": n_fft,
        "hop": hop,
        "block": block,
        "fps": frames / (w1 - w0),
        "cpu_ms": 1000 * (c1 - c0) / frames,
        "cpu_pct": 100 * (c1 - c0) / (w1 - w0),
        "delay_med": float(np.median(delays)),
        "delay_max": float(delays.max()),
        "behind_max": float(behind.max()),
        "behind_p95": float(np.percentile(behind, 95)),
        "bound": 1000 * (hop / RATE + 1 / fps),
        "stft_us": 1e6 * stage.seconds / max(1, stage.calls),
        "dropped": eng.summary.counters.get("bus dropped", 0),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seconds", type=float, default=4.0)
    ap.add_argument("--hop", type=int, default=512, help="stft hop (0 = n_fft/4)")
    ap.add_argument("--fps", type=float, default=60.0)
    ap.add_argument("--sizes", default="1024,2048,4096,8192,16384")
    args = ap.parse_args()
    print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs; "
          f"Qt platform: {os.environ.get('QT_QPA_PLATFORM', 'default')}, {RATE} Hz, "
          f"window 1280x800, target {args.fps:g} fps, {args.seconds:g} s per row")
    head = (f"{'n_fft':>6} {'hop':>5} {'block':>5} {'fps':>6} {'GUI ms/frame':>13} {'GUI % core':>11} "
            f"{'paint delay med/max ms':>23} {'behind p95/max ms':>18} {'hop+frame ms':>13} "
            f"{'stft µs/block':>14}"
            f" {'bus dropped':>12}")
    print(head)
    print("-" * len(head))
    for n in (int(s) for s in args.sizes.split(",")):
        r = measure(n, args.hop or n // 4, args.fps, args.seconds)
        print(f"{r['n_fft']:>6} {r['hop']:>5} {r['block']:>5} {r['fps']:>6.1f} {r['cpu_ms']:>13.2f} "
              f"{r['cpu_pct']:>11.1f} {r['delay_med']:>11.1f} /{r['delay_max']:>10.1f} "
              f"{r['behind_p95']:>8.1f} /{r['behind_max']:>8.1f} "
              f"{r['bound']:>13.1f} {r['stft_us']:>14.0f} {r['dropped']:>12}", flush=True)


if __name__ == "__main__":
    main()
