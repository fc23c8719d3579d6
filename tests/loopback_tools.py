"""Helpers for live-audio tests and benchmarks: test signals, content alignment (slip counting),
JACK wiring, a bench stream that plays and records, and a CPU load thread."""

from __future__ import annotations

import subprocess
import threading
import time
from dataclasses import dataclass, field

import numpy as np
from scipy.signal import fftconvolve


def noise(seconds: float, rate: int = 48000, rms: float = 0.1, seed: int = 7) -> np.ndarray:
    """Non-periodic white noise, float32 mono: every window aligns unambiguously."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(int(seconds * rate)) * rms
    return np.clip(x, -0.9, 0.9).astype(np.float32)


def _xcorr_lag(rec_win: np.ndarray, ref: np.ndarray, lo: int, hi: int, t: int) -> tuple[int, float]:
    """Best lag in [lo, hi] such that rec_win ~ ref[t - lag : t - lag + len]; and its normalised
    correlation."""
    w = rec_win.shape[0]
    a = t - hi
    b = t - lo + w
    pad_left = max(0, -a)
    seg = ref[max(a, 0):min(b, ref.shape[0])].astype(np.float64)
    seg = np.concatenate([np.zeros(pad_left), seg, np.zeros(max(0, b - ref.shape[0]))])
    r = fftconvolve(seg, rec_win[::-1].astype(np.float64), mode="valid")  # len hi - lo + 1
    k = int(np.argmax(r))
    lag = hi - k
    x = seg[k:k + w]
    den = np.sqrt(np.dot(x, x) * np.dot(rec_win.astype(np.float64), rec_win))
    return lag, float(r[k] / den) if den > 0 else 0.0


@dataclass
class Alignment:
    lags: list[int] = field(default_factory=list)  # per window, samples (rec = ref delayed)
    corr: list[float] = field(default_factory=list)  # per window
    exact: list[bool] = field(default_factory=list)  # rec == gain * ref, sample for sample
    window: int = 0
    first: int = 0  # index in rec of the first window

    @property
    def slips(self) -> int:
        return int(np.count_nonzero(np.diff(self.lags))) if len(self.lags) > 1 else 0

    @property
    def slipped_frames(self) -> int:
        return int(np.abs(np.diff(self.lags)).sum()) if len(self.lags) > 1 else 0

    def describe(self) -> str:
        steps = [(i, int(d)) for i, d in enumerate(np.diff(self.lags)) if d] if self.lags else []
        return (f"{len(self.lags)} windows, lag {self.lags[:1]}..{self.lags[-1:]}, "
                f"{self.slips} slips {steps[:10]}, min corr {min(self.corr, default=0):.6f}, "
                f"exact {sum(self.exact)}/{len(self.exact)}")


def align(ref: np.ndarray, rec: np.ndarray, rate: int, gain: float = 1.0, skip: float = 3.0,
          window: float = 0.5, max_lag: float = 1.0, search: float = 0.1) -> Alignment:
    """Align `rec` with `ref` window by window (cross-correlation) over the part of `rec` where
    `ref` is playing, after `skip` seconds; a change of lag between windows is a slip."""
    w = int(window * rate)
    out = Alignment(window=w)
    start = int(skip * rate)
    # global lag from the first full window with signal
    energy = np.flatnonzero(np.abs(rec) > 1e-4)
    if energy.size == 0:
        return out
    t = max(start, int(energy[0]) + int(skip * rate))
    if t + w > rec.shape[0]:
        return out
    lag, _ = _xcorr_lag(rec[t:t + w], ref, 0, int(max_lag * rate), t)
    out.first = t
    s = int(search * rate)
    g32 = np.float32(gain)
    while t + w <= rec.shape[0] and t - lag + w <= ref.shape[0]:
        lag, c = _xcorr_lag(rec[t:t + w], ref, max(0, lag - s), lag + s, t)
        out.lags.append(lag)
        out.corr.append(c)
        expect = ref[t - lag:t - lag + w] * g32 if t - lag >= 0 else None
        out.exact.append(bool(expect is not None and np.array_equal(rec[t:t + w], expect)))
        t += w
    return out


# -- JACK ---------------------------------------------------------------------------------------
def jack_ports() -> set[str]:
    out = subprocess.run(["jack_lsp"], capture_output=True, text=True, check=True, timeout=10)
    return {p.strip() for p in out.stdout.splitlines() if p.strip()}


def jack_wire(pairs: list[tuple[str, str]]) -> None:
    """Remove every connection of the ports named in `pairs`, then connect each (out, in)."""
    names = {p for pair in pairs for p in pair}
    listing = subprocess.run(["jack_lsp", "-c"], capture_output=True, text=True, check=True,
                             timeout=10).stdout
    cur = None
    for line in listing.splitlines():
        if not line.startswith(" "):
            cur = line.strip()
        elif cur in names:
            subprocess.run(["jack_disconnect", cur, line.strip()], capture_output=True, timeout=10)
    for o, i in pairs:
        subprocess.run(["jack_connect", o, i], check=True, capture_output=True, timeout=10)


def port_of(ports: set[str], kind: str) -> str:
    """The single PortAudio `in`/`out` port in `ports`."""
    mine = sorted(p for p in ports if p.split(":", 1)[1].startswith(kind + "_"))
    assert len(mine) == 1, f"expected one {kind} port, got {mine}"
    return mine[0]


# -- load -----------------------------------------------------------------------------------------
class NumpyLoad:
    """A thread doing heavy numpy work until stopped."""

    def __init__(self) -> None:
        self.iterations = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="numpy-load", daemon=True)

    def _run(self) -> None:
        # single-threaded numpy (FFT, transcendental ufuncs, sort on 2^20 floats): exactly one
        # busy thread, unlike BLAS matmuls whose thread pool would take every core
        x = np.random.default_rng(0).random(1 << 20)
        while not self._stop.is_set():
            y = np.fft.irfft(np.fft.rfft(x) * 0.5)
            x = np.sort(np.abs(np.sin(y) + np.exp(-y * y)))
            self.iterations += 1

    def __enter__(self) -> NumpyLoad:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


# -- bench ----------------------------------------------------------------------------------------
class Bench:
    """A second duplex stream (copy-only callback) that plays `ref` into rtaudio's input and records
    rtaudio's output from the same callback position; `tail_seconds` of recording after `ref`.
    `flags`: callbacks with a device status flag while playing."""

    def __init__(self, device: str, ref: np.ndarray, rate: int = 48000, tail_seconds: float = 2.0) -> None:
        import sounddevice as sd

        self.ref = ref
        self.n = ref.shape[0]
        self.rec = np.zeros(self.n + int(tail_seconds * rate), dtype=np.float32)
        self.pos = 0
        self.tid = 0
        self.flags = 0
        self.playing = False
        self.stream = sd.Stream(device=device, samplerate=rate, channels=1, dtype="float32",
                                latency="high", callback=self._callback)

    def _callback(self, indata, outdata, frames, tinfo, status) -> None:
        if not self.tid:
            self.tid = threading.get_native_id()
        if not self.playing:
            outdata.fill(0.0)
            return
        if status:
            self.flags += 1
        p = self.pos
        m = max(0, min(frames, self.n - p))
        outdata[:m, 0] = self.ref[p:p + m]
        outdata[m:, 0] = 0.0
        k = min(frames, self.rec.shape[0] - p)
        if k > 0:
            self.rec[p:p + k] = indata[:k, 0]
        self.pos = p + frames

    @property
    def done(self) -> bool:
        return self.pos >= self.rec.shape[0]


def wait_for(cond, seconds: float, what: str) -> None:
    """Poll `cond` every 20 ms; TimeoutError(`what`) after `seconds`."""
    deadline = time.monotonic() + seconds
    while not cond():
        if time.monotonic() > deadline:
            raise TimeoutError(what)
        time.sleep(0.02)
