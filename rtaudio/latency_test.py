"""`rtaudio latency-test`: measure the round trip through a loopback (a cable, a loopback device,
PulseAudio's monitor source, or JACK ports connected back) and compare it with what PortAudio
reports.

One duplex stream plays a chirp train (a 0.25 s log sweep every `period` seconds) and records the
input; the lag is the peak of the cross-correlation of the recording with the played signal. It is
measured for each period separately, so a lag that changes during the run (a silent slip) shows up.
Reported latencies: the callbacks' own time info (`outputBufferDacTime - inputBufferAdcTime`,
median) and `stream.latency` (input + output).
"""

from __future__ import annotations

import subprocess
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy.signal import chirp as _chirp

from .clock import SlipDetector
from .devices import (
    DEFAULT_BLOCKSIZE,
    DEFAULT_LATENCY,
    _Flags,
    _sd,
    device_name,
    find_device,
    parse_latency,
    promote_audio_threads,
)
from .errors import RtAudioError


def chirp_train(rate: int, seconds: float, period: float = 1.0, sweep: float = 0.25,
                level: float = 0.5) -> np.ndarray:
    """A log sweep (100 Hz .. 0.4 rate, Hann-tapered) every `period` s, silence between."""
    n_sweep = int(sweep * rate)
    t = np.arange(n_sweep) / rate
    one = _chirp(t, 100.0, sweep, 0.4 * rate, method="logarithmic") * np.hanning(n_sweep)
    n_per = int(period * rate)
    cycle = np.zeros(n_per)
    cycle[:n_sweep] = level * one
    reps = int(np.ceil(seconds / period))
    return np.tile(cycle, reps)[: int(seconds * rate)].astype(np.float32)


@dataclass
class LoopbackResult:
    rate: int
    blocksize: int
    latency: str | float
    input_device: str
    output_device: str
    lags: list[int] = field(default_factory=list)  # measured lag per period (samples)
    measured: int | None = None  # median lag (samples)
    time_info: float | None = None  # median DAC - ADC (s)
    stream_latency: tuple[float, float] = (0.0, 0.0)
    correlation: float = 0.0  # of the aligned recording with the played signal
    exact: bool = False  # recording == played, sample for sample (after alignment)
    flags: dict[str, int] = field(default_factory=dict)  # after the start-up (`skip`)
    startup_flags: int = 0
    callbacks: int = 0
    clock_slips: dict[str, int] = field(default_factory=dict)  # rtaudio's clock-based detector
    clock_traces: dict[str, list] = field(default_factory=dict)
    settled_periods: int = 0  # trailing periods with the final lag (checked for exactness)
    settled_from: int = 0  # first sample of those periods

    @property
    def measured_seconds(self) -> float | None:
        return None if self.measured is None else self.measured / self.rate

    @property
    def slips(self) -> int:
        """Periods whose lag differs from the previous one (after the first)."""
        return int(np.count_nonzero(np.diff(self.lags))) if len(self.lags) > 1 else 0


def jack_self_loopback() -> list[tuple[str, str]]:
    """Connect this process's newest PortAudio JACK output ports to its newest input ports, after
    removing their other connections (a loopback cable made of JACK connections)."""

    def lsp(*a: str) -> str:
        try:
            return subprocess.run(["jack_lsp", *a], capture_output=True, text=True,
                                  check=True, timeout=10).stdout
        except (OSError, subprocess.SubprocessError) as e:
            raise RtAudioError(f"jack_lsp failed ({e}); is jackd2 installed and running?") from None

    ports = [p.strip() for p in lsp().splitlines() if p.startswith("PortAudio")]

    def newest(kind: str) -> list[str]:
        mine = [p for p in ports if p.split(":", 1)[1].startswith(kind + "_")]
        return sorted(mine, key=lambda p: int(p.rsplit("_", 1)[1]))

    outs, ins = newest("out"), newest("in")
    n = min(len(outs), len(ins))
    if n == 0:
        raise RtAudioError("no PortAudio JACK ports to connect (is the stream open on JACK?)")
    cur = None
    for line in lsp("-c").splitlines():
        if not line.startswith(" "):
            cur = line.strip()
        elif cur in ports:
            subprocess.run(["jack_disconnect", cur, line.strip()], capture_output=True, timeout=10)
    pairs = list(zip(outs[-n:], ins[-n:], strict=True))
    for o, i in pairs:
        subprocess.run(["jack_connect", o, i], check=True, capture_output=True, timeout=10)
    return pairs


def measure_loopback(device: str | None = "default", input_device: str | None = None,
                     output_device: str | None = None, rate: int = 48000, blocksize: int = 0,
                     latency: str = "high", seconds: float = 3.0, period: float = 1.0,
                     jack_loopback: bool = False, skip: float = 3.0,
                     realtime: bool = True) -> LoopbackResult:
    """Play a chirp train through one duplex stream and measure the lag of what comes back
    during `seconds` after `skip` seconds of start-up (PulseAudio's lag steps once in its
    first ~3 s)."""
    sd = _sd()
    lat = parse_latency(latency, "latency-test")
    i_dev = find_device(input_device or device, "input")
    o_dev = find_device(output_device or device, "output")
    seconds = skip + max(seconds, 2 * period)
    play = chirp_train(rate, seconds, period)
    n = play.shape[0]
    rec = np.zeros(n, dtype=np.float32)
    ncb = int(seconds * rate) // 16 + 64
    dac_adc = np.zeros(ncb)
    t_adc, t_dac, t_pos = np.zeros(ncb), np.zeros(ncb), np.zeros(ncb, dtype=np.int64)
    flags = _Flags(rate)
    flags.settle_frames = int(skip * rate)  # flags before are start-up (counted apart)
    st = {"pos": 0, "k": 0, "tid": 0}

    def callback(indata, outdata, frames, tinfo, status) -> None:
        if status:
            flags.add(status, st["pos"])
        if not st["tid"]:
            st["tid"] = threading.get_native_id()
        p = st["pos"]
        m = min(frames, n - p)
        if m > 0:
            rec[p:p + m] = indata[:m, 0]
            outdata[:m, 0] = play[p:p + m]
        outdata[max(m, 0):, 0] = 0.0
        if outdata.shape[1] > 1:
            outdata[:, 1:] = 0.0
        k = st["k"]
        if k < ncb:
            dac_adc[k] = tinfo.outputBufferDacTime - tinfo.inputBufferAdcTime
            t_adc[k], t_dac[k], t_pos[k] = tinfo.inputBufferAdcTime, tinfo.outputBufferDacTime, p
        st["k"] = k + 1
        st["pos"] = p + frames
        if p + frames >= n:
            raise sd.CallbackStop

    try:
        stream = sd.Stream(samplerate=rate, blocksize=blocksize, device=(i_dev, o_dev),
                           channels=(1, 1), dtype="float32", latency=lat, callback=callback)
    except sd.PortAudioError as e:
        raise RtAudioError(f"latency-test: cannot open the duplex stream ({e})") from None
    with stream:
        if jack_loopback:
            jack_self_loopback()
        deadline = time.monotonic() + seconds + 10.0
        promoted = not realtime
        while stream.active and time.monotonic() < deadline:
            time.sleep(0.05)
            if not promoted and st["tid"]:
                promoted = True
                promote_audio_threads([st["tid"]])
        reported = stream.latency
    res = LoopbackResult(rate, blocksize, lat, device_name(i_dev, "input"),
                         device_name(o_dev, "output"), stream_latency=tuple(reported),
                         flags={**flags.counts}, startup_flags=flags.startup,
                         callbacks=st["k"])
    _analyse(res, play, rec[: min(st["pos"], n)], period, skip)
    k = min(st["k"], dac_adc.shape[0])
    if k:
        # the same stretch as the measured lag: the trailing periods that share it
        settled = t_pos[:k] >= max(int(skip * rate), res.settled_from)
        res.time_info = float(np.median(dac_adc[:k][settled] if settled.any() else dac_adc[:k]))
        for name, times in (("input", t_adc), ("output", t_dac)):
            det = SlipDetector(rate, settle=skip)
            det.feed(times[:k], t_pos[:k], k)
            res.clock_slips[name] = det.slipped
            res.clock_traces[name] = det.trace
    return res


def _analyse(res: LoopbackResult, play: np.ndarray, rec: np.ndarray, period: float,
             skip: float) -> None:
    rate = res.rate
    n_per = int(period * rate)
    first = int(np.ceil(skip / period))
    lags = []
    for c in range(first, rec.shape[0] // n_per):
        seg = rec[c * n_per:(c + 1) * n_per].astype(np.float64)
        ref = play[c * n_per:(c + 1) * n_per].astype(np.float64)
        if not np.any(seg):
            continue
        # circular cross-correlation: the played signal is periodic, the lag < one period
        r = np.fft.irfft(np.fft.rfft(seg) * np.conj(np.fft.rfft(ref)), n_per)
        lags.append(int(np.argmax(r)))
    res.lags = lags
    if not lags:
        return
    # The lag of the last periods is the settled one; check the stretch that has it.
    lag = lags[-1]
    run = 1
    while run < len(lags) and lags[-run - 1] == lag:
        run += 1
    res.measured = lag
    res.settled_periods = run
    a = (first + len(lags) - run) * n_per
    res.settled_from = a
    y = rec[a + lag:]
    x = play[a:a + y.shape[0]]
    if x.shape[0] > rate // 10 and np.any(x):
        res.correlation = float(np.corrcoef(x.astype(np.float64), y.astype(np.float64))[0, 1])
        res.exact = bool(np.array_equal(x, y))


def cmd_latency_test(args: Any) -> int:
    """Print the measured round trip beside the reported one; non-zero when nothing came back."""
    from rich.console import Console
    from rich.table import Table

    con = Console()
    latency = args.latency or DEFAULT_LATENCY
    blocksize = DEFAULT_BLOCKSIZE if args.blocksize is None else args.blocksize
    res = measure_loopback(
        device=args.device or "default", input_device=args.input_device,
        output_device=args.output_device, rate=args.rate, blocksize=blocksize,
        latency=latency, seconds=args.seconds,
        jack_loopback=bool(getattr(args, "jack_loopback", False)))
    con.print(f"in: {res.input_device} · out: {res.output_device} · {res.rate} Hz · "
              f"block {res.blocksize} · latency {res.latency!r} · {res.callbacks} callbacks")
    if res.measured is None:
        con.print("[bold red]nothing came back[/]: connect the output to the input (a cable, a "
                  "loopback device, a monitor source; on JACK use --jack-loopback)")
        return 1
    ms = 1000.0 / res.rate
    t = Table("round trip", "ms", "samples", box=None, pad_edge=False)
    t.add_row("measured (cross-correlation)", f"{res.measured * ms:.2f}", str(res.measured))
    if res.time_info is not None:
        t.add_row("reported: callback time info (DAC - ADC)", f"{1000 * res.time_info:.2f}",
                  f"{res.time_info * res.rate:.0f}")
    rep = sum(res.stream_latency)
    t.add_row(f"reported: stream.latency in {1000 * res.stream_latency[0]:.2f} + out "
              f"{1000 * res.stream_latency[1]:.2f}", f"{1000 * rep:.2f}", f"{rep * res.rate:.0f}")
    con.print(t)
    lost = {k: v for k, v in res.flags.items() if v}
    con.print(f"lag per {len(res.lags)} periods: {sorted(set(res.lags))} "
              f"({res.slips} changes; the last {res.settled_periods} compared) · "
              f"correlation {res.correlation:.6f} · "
              f"{'bit-exact' if res.exact else 'not bit-exact'} · flags {lost or 'none'} "
              f"(+{res.startup_flags} in the first 3 s)")
    if lost or res.slips:
        con.print("[bold yellow]the stream xrunned during the measurement[/] (flags or a lag that "
                  "changed): the measured value is the last lag; run it again to confirm it")
    return 0
