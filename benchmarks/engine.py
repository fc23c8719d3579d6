"""Engine overhead per block and offline throughput. Prints a table; run by hand:

    python benchmarks/engine.py [--minutes 10]

1. Overhead: the engine loop with an empty chain and a null sink, fed a preallocated block (so the
   source costs nothing), plus a ring-buffer write+read of the block (the live path). Reported in µs
   per block and as a fraction of the block's duration at 48 kHz.
2. Throughput: `rtaudio process` of a 10-minute 48 kHz stereo file through
   highpass ! gain ! level ! lowpass, in multiples of real time.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf

from rtaudio.engine import Engine
from rtaudio.ring import RingBuffer
from rtaudio.sinks import NullSink
from rtaudio.sources import Source
from rtaudio.stage import AudioFormat

RATE = 48000


class ConstantBlocks(Source):
    """The same preallocated block, `count` times: measures the engine, not a generator."""

    kind = "bench-constant"

    def __init__(self, block: int, count: int) -> None:
        super().__init__()
        self.blk = np.zeros((block, 2), np.float32)
        self.count = count

    def open(self) -> AudioFormat:
        self.left = self.count
        return AudioFormat(RATE, 2)

    def read(self, n: int):
        if self.left == 0:
            return None
        self.left -= 1
        return self.blk


def overhead(block: int) -> tuple[float, float]:
    count = max(200, 2_000_000 // block)
    eng = Engine(ConstantBlocks(block, count), [], [NullSink()], block=block)
    t = time.perf_counter()
    eng.run()
    per_block = (time.perf_counter() - t) / count
    ring = RingBuffer(8 * block, 2)
    x = np.zeros((block, 2), np.float32)
    out = np.zeros_like(x)
    t = time.perf_counter()
    for _ in range(count):
        ring.write(x)
        ring.read_into(out)
    per_ring = (time.perf_counter() - t) / count
    return per_block, per_ring


def throughput(minutes: float) -> tuple[float, float]:
    with tempfile.TemporaryDirectory() as d:
        src, dst = Path(d) / "in.wav", Path(d) / "out.wav"
        n = int(minutes * 60 * RATE)
        rng = np.random.default_rng(0)
        with sf.SoundFile(src, "w", RATE, 2, subtype="PCM_16") as f:
            for i in range(0, n, RATE * 10):
                f.write(rng.uniform(-0.5, 0.5, (min(RATE * 10, n - i), 2)).astype(np.float32))
        chain = "highpass hz=80 ! gain db=-3 ! level ! lowpass hz=8000"
        t = time.perf_counter()
        subprocess.run([sys.executable, "-m", "rtaudio", "process", chain, str(src), str(dst), "--quiet"],
                       check=True)
        wall = time.perf_counter() - t
        return n / RATE / wall, wall


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--minutes", type=float, default=10.0)
    args = ap.parse_args()
    print("engine overhead per block (empty chain, null sink; ring = live-path write+read)")
    print(f"{'block':>6} {'µs/block':>9} {'% of block':>10} {'ring µs':>8} {'ring %':>7}")
    for block in (64, 128, 256, 512, 1024, 2048, 4096):
        per, ring = overhead(block)
        dur = block / RATE
        print(f"{block:>6} {per * 1e6:>9.1f} {100 * per / dur:>10.3f} "
              f"{ring * 1e6:>8.1f} {100 * ring / dur:>7.3f}")
    rt, wall = throughput(args.minutes)
    print(f"\nrtaudio process, {args.minutes:g} min 48 kHz stereo, highpass ! gain ! level ! lowpass: "
          f"{wall:.1f} s wall = {rt:.0f}x real time")


if __name__ == "__main__":
    main()
