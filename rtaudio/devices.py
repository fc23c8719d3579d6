"""Audio devices through sounddevice/PortAudio: listing, selection, and the live source/sink.

* `input` (a push source): a PortAudio callback copies each device block into the engine's ring
  buffer and counts; the worker runs the chain.
* `output` (a sink): the worker writes into an output ring; the callback copies it to the device,
  playing silence on underflow (counted).
* Duplex: when a pipeline has an `input` source and an `output` sink, the engine calls
  `link_sinks()` during `prepare()` and the source takes the sink over: ONE `sd.Stream` serves
  both sides, so input and output run on one clock.

The callbacks only copy and count: no locks, no logging, no stage calls, no allocation beyond the
small objects sounddevice itself creates. Exceptions in a callback abort the stream and are kept
in `error`, which the engine re-raises on its own thread. A watchdog thread (not the callback)
turns the callback's timestamps into slip counts (`rtaudio.clock`) and notices a stream that
stopped by itself (PortAudio calls no finished-callback when a server dies: the stream just goes
inactive).
"""

from __future__ import annotations

import atexit
import os
import threading
import time
from typing import Any, ClassVar

import numpy as np

from .clock import SlipDetector
from .errors import AudioFormatError, ConfigError, RtAudioError
from .params import Param
from .registry import register
from .ring import RingBuffer
from .sinks import Sink
from .sources import Source
from .stage import AudioFormat

# Defaults chosen from benchmarks/xruns.py (see the README's latency table): on a loaded 2-core
# machine PulseAudio needs latency='high' ('low' underflows and its latency balloons to seconds);
# blocksize 0 lets PortAudio follow JACK's period (round trip = 1 period; a fixed 256 on a
# 256-frame JACK period adds a second one) and did as well as 128/256 on PulseAudio.
DEFAULT_BLOCKSIZE = 0
DEFAULT_LATENCY = "high"
# s of output queued beyond one engine block. In a duplex stream it must also cover one device
# callback (PulseAudio through ALSA: 512 frames = 10.7 ms), whose input arrives with the request for
# its output: at 20 ms the worker had ~9 ms left on PulseAudio and a numpy thread made it miss.
DEFAULT_PREFILL = 0.030
STALL_SECONDS = 2.0  # no callback for this long (after the first) = the device failed
FIRST_CALLBACK_SECONDS = 5.0  # PulseAudio's first callback may take 1.5 s
HALT_SECONDS = 3.0  # longest wait for PortAudio to stop a stream before giving up on it
INIT_SECONDS = 15.0  # longest wait for PortAudio's start-up (device enumeration)
# Streams settle during their first seconds (PulseAudio's round trip steps once or twice, by up to
# 2000 samples, up to ~5 s after the start on a loaded machine; JACK may flag an xrun when the
# client's ports join the graph): flags then are counted apart as "start-up flags" and the slip
# detector starts after it.
SETTLE_SECONDS = 6.0
AUDIO_NICE = -15  # nice value for the audio threads (root or CAP_SYS_NICE)
WORKER_NICE = -10  # the engine's worker feeds the output ring: above other jobs, below the callbacks
# A callback waits for the GIL up to the switch interval (5 ms by default, about one JACK period
# of 256 frames): while a device stream runs, other threads are asked to hand it over sooner.
SWITCH_INTERVAL = 0.0005
_HISTORY = 8192  # callback timestamps kept for the watchdog (power of two)


_PORTAUDIO: dict[str, Any] = {}  # "sd": the module once imported; "left stopping": see _halt


class AudioServerHung(RtAudioError):
    """PortAudio's start-up did not return: it waits on a sound server that does not answer."""


def _sd():
    """The `sounddevice` module, imported on first use in a helper thread bounded to
    INIT_SECONDS: its import runs Pa_Initialize, which enumerates ALSA devices through the
    `pulse` plugin and, on a hung PulseAudio server, never returns (measured: SIGSTOP)."""
    if "sd" in _PORTAUDIO:
        return _PORTAUDIO["sd"]

    def load() -> None:
        try:
            import sounddevice

            _PORTAUDIO["sd"] = sounddevice
        except BaseException as e:
            _PORTAUDIO["error"] = e

    stderr = os.dup(2)  # sounddevice points fd 2 at /dev/null during Pa_Initialize
    try:
        helper = threading.Thread(target=load, name="rtaudio-portaudio-init", daemon=True)
        helper.start()
        helper.join(INIT_SECONDS)
        hung = helper.is_alive()  # read once: it may finish any moment
        if hung:
            os.dup2(stderr, 2)  # so that the error below can be read
    finally:
        os.close(stderr)
    if hung:
        raise AudioServerHung(f"PortAudio did not start within {INIT_SECONDS:.0f} s: it is waiting "
                              "on the sound server (is PulseAudio hung?)")
    error = _PORTAUDIO.pop("error", None)
    if isinstance(error, OSError):  # libportaudio2 missing
        raise RtAudioError(f"PortAudio is not available ({error}); install libportaudio2")
    if error is not None:
        raise error
    return _PORTAUDIO["sd"]


def _halt(stream, drain: bool) -> bool:
    """Stop `stream` (`drain`: let what is queued play out; else abort), waiting at most
    HALT_SECONDS. On a frozen or vanished PulseAudio server both calls can block inside PortAudio's
    ALSA layer for a minute (measured: 60-80 s with the server stopped by SIGSTOP; abort as well).
    Then the stream is left to the helper thread, and sounddevice's exit-time `Pa_Terminate`,
    which would block the same way, is cancelled; `streams_left_stopping()` tells the process
    to end without interpreter finalisation (PortAudio may still call back into Python). False
    when given up."""

    def call() -> None:
        if drain:
            try:
                stream.stop()
                return
            except Exception:
                pass
        stream.abort(ignore_errors=True)

    helper = threading.Thread(target=call, name="rtaudio-stream-stop", daemon=True)
    helper.start()
    helper.join(HALT_SECONDS)
    if helper.is_alive():
        exit_handler = getattr(_sd(), "_exit_handler", None)
        if exit_handler is not None:
            atexit.unregister(exit_handler)
        _PORTAUDIO["left stopping"] = True
        return False
    return True


def streams_left_stopping() -> bool:
    """True when a stream's stop was given up on (`_halt`): its PortAudio thread is still live."""
    return bool(_PORTAUDIO.get("left stopping"))


class _GilHandover:
    """Shortens sys.setswitchinterval while any device stream runs (process-wide, counted)."""

    users = 0
    saved = 0.005

    @classmethod
    def acquire(cls) -> None:
        import gc
        import sys

        if cls.users == 0:
            cls.saved = sys.getswitchinterval()
            sys.setswitchinterval(min(cls.saved, SWITCH_INTERVAL))
            gc.freeze()  # start-up objects leave the collector's sight: shorter GC pauses
        cls.users += 1

    @classmethod
    def release(cls) -> None:
        import sys

        cls.users -= 1
        if cls.users == 0:
            sys.setswitchinterval(cls.saved)


def promote_audio_threads(tids: list[int], nice: int = AUDIO_NICE) -> bool:
    """Favour the audio threads of this process: the PortAudio callback thread (`tids`) and
    libpulse's client threads ("threaded-ml", used by the ALSA pulse plugin), which are what
    makes PulseAudio slip under CPU starvation. A strong nice value, not SCHED_FIFO: a
    real-time thread that spins in a library's error path would freeze a shared machine.
    Threads that already run real-time (JACK's) are left alone. Needs root or CAP_SYS_NICE;
    False if refused."""
    import os

    try:
        tasks = os.listdir("/proc/self/task")
    except OSError:
        tasks = []
    for t in tasks:
        try:
            with open(f"/proc/self/task/{t}/comm") as f:
                if f.read().strip() == "threaded-ml":
                    tids.append(int(t))
        except OSError:
            continue
    ok = bool(tids)
    for tid in set(tids):
        if not tid:
            continue
        try:
            if os.sched_getscheduler(tid) == os.SCHED_OTHER:
                os.setpriority(os.PRIO_PROCESS, tid, nice)
        except (OSError, AttributeError):
            ok = False
    return ok


def promote_worker(tid: int) -> None:
    """Favour the engine's worker thread (it must keep the output ring filled); best effort."""
    import os

    try:
        if tid and os.sched_getscheduler(tid) == os.SCHED_OTHER:
            os.setpriority(os.PRIO_PROCESS, tid, WORKER_NICE)
    except (OSError, AttributeError):
        pass


# -- device listing and selection -------------------------------------------------------------------
def _label(sd, i: int, dev: dict) -> str:
    api = sd.query_hostapis(dev["hostapi"])["name"]
    return f"[{i}] {dev['name']} ({api}, {dev['max_input_channels']} in, " \
           f"{dev['max_output_channels']} out)"


def find_device(spec: str | int | None, kind: str) -> int | None:
    """The PortAudio index of the `kind` ("input"/"output") device named by `spec`: an index, a
    case-insensitive name substring (an exact name wins), or "default"/None (PortAudio's
    default, returned as None). A wrong or ambiguous name raises RtAudioError listing the
    candidates."""
    sd = _sd()
    key = "max_input_channels" if kind == "input" else "max_output_channels"
    devices = list(sd.query_devices())
    candidates = [(i, d) for i, d in enumerate(devices) if d[key] > 0]
    listing = "; ".join(_label(sd, i, d) for i, d in candidates) or "none"
    if spec is None or (isinstance(spec, str) and spec.strip().lower() in ("", "default")):
        default = sd.default.device[0 if kind == "input" else 1]
        if default is None or default < 0 or not candidates:
            raise RtAudioError(f"no default {kind} device (available: {listing})")
        return None
    text = str(spec).strip()
    if isinstance(spec, int) or text.isdigit():
        i = int(text)
        if i >= len(devices) or devices[i][key] <= 0:
            raise RtAudioError(f"{kind} device {i} does not exist or has no {kind} channels "
                               f"({kind} devices: {listing})")
        return i
    low = text.lower()
    exact = [i for i, d in candidates if d["name"].lower() == low]
    if len(exact) == 1:
        return exact[0]
    found = [
        i for i, d in candidates
        if low in f"{d['name']}, {sd.query_hostapis(d['hostapi'])['name']}".lower()
    ]
    if len(found) == 1:
        return found[0]
    if not found:
        raise RtAudioError(f"no {kind} device matches '{text}' ({kind} devices: {listing})")
    names = "; ".join(_label(sd, i, devices[i]) for i in found)
    raise RtAudioError(f"{kind} device '{text}' is ambiguous: {names} (use the index)")


def device_name(index: int | None, kind: str) -> str:
    sd = _sd()
    dev = sd.query_devices(index, kind=kind) if index is None else sd.query_devices(index)
    return str(dev["name"])


def parse_latency(value: str, where: str) -> str | float:
    """'low', 'high' or seconds (as a string, so one param type serves all three)."""
    v = str(value).strip().lower()
    if v in ("low", "high"):
        return v
    try:
        sec = float(v)
    except ValueError:
        raise ConfigError(f"{where}: key 'latency' must be 'low', 'high' or seconds, "
                          f"got {value!r}") from None
    if not 0.0 < sec <= 10.0:
        raise ConfigError(f"{where}: key 'latency' = {value!r} must be in (0, 10] seconds")
    return sec


def cmd_devices(args: Any = None) -> int:
    """Print host APIs and devices as tables."""
    from rich.console import Console
    from rich.table import Table

    sd = _sd()
    con = Console()
    apis = sd.query_hostapis()
    devices = sd.query_devices()
    if not len(devices):
        con.print("no audio devices (is an audio server running? see scripts/audio-server/)")
        return 0
    t = Table("host API", "devices", "default in", "default out", box=None, pad_edge=False)
    for api in apis:
        t.add_row(api["name"], str(len(api["devices"])), str(api["default_input_device"]),
                  str(api["default_output_device"]))
    con.print(t)
    din, dout = sd.default.device
    t = Table("", "#", "name", "host API", "in", "out", "rate", "in latency low/high ms",
              "out latency low/high ms", box=None, pad_edge=False)
    for i, d in enumerate(devices):
        mark = (">" if i == din else " ") + ("<" if i == dout else " ")
        lat_in = (f"{1000 * d['default_low_input_latency']:.1f}/"
                  f"{1000 * d['default_high_input_latency']:.1f}") if d["max_input_channels"] else ""
        lat_out = (f"{1000 * d['default_low_output_latency']:.1f}/"
                   f"{1000 * d['default_high_output_latency']:.1f}") if d["max_output_channels"] else ""
        t.add_row(mark, str(i), d["name"], apis[d["hostapi"]]["name"], str(d["max_input_channels"]),
                  str(d["max_output_channels"]), f"{d['default_samplerate']:g}", lat_in, lat_out)
    con.print(t)
    con.print("> default input, < default output; choose with --device INDEX or a name substring")
    return 0


# -- the callback side ------------------------------------------------------------------------------
class _Flags:
    """Counts of PortAudio's callback status flags (written by the callback only)."""

    NAMES = ("input_underflow", "input_overflow", "output_underflow", "output_overflow")

    def __init__(self, rate: int) -> None:
        self.counts = dict.fromkeys(self.NAMES, 0)
        self.flagged = 0
        self.startup = 0  # flagged callbacks during start-up (see SETTLE_SECONDS)
        self.settle_frames = int(SETTLE_SECONDS * rate)

    def add(self, status, frames_so_far: int) -> None:
        if frames_so_far < self.settle_frames:
            self.startup += 1
            return
        self.flagged += 1
        c = self.counts
        for name in self.NAMES:
            if getattr(status, name):
                c[name] += 1


class _OutputQueue:
    """The output ring and its playback rules, shared by a standalone and a duplex stream.

    Standalone: playback starts once `prefill` frames are queued. Duplex (`fill` gets `now`, the
    input frames recorded before this callback): output frame m is played `prefill` frames after
    input frame m was recorded, so the round trip is the device's + the chain's declared latency +
    `prefill`, whatever the start-up did. A chain that emits its declared delay as leading zeros
    (resample) or a worker that was slow on its first blocks would otherwise fill the queue beyond
    `prefill` for good: the level-based rule then set the round trip by the start-up (measured
    89-120 ms instead of 73 + 31 with the keyword chain, benchmarks/roundtrip.py). At the start,
    output frames whose time has passed are dropped (counted in `trimmed`, never played, not a
    loss); playback waits while the chain has not produced the frame due now. Silence before the
    start is priming, not an underflow; after it a short ring pads with silence and counts. In a
    duplex stream the frames an underflow replaced with silence are dropped when they arrive
    (counted in `late_dropped`): the round trip stays what was reported instead of growing by
    every underflow (a 10-minute run drifted from 12.7 to 32 ms that way).

    Underflows during the first `settle` frames played are start-up, counted apart like the
    device's start-up flags: PulseAudio (through ALSA) fills its buffer with a burst of callbacks
    faster than real time when a stream starts, so a duplex output is asked for frames whose input
    arrived microseconds before (one 320-frame underflow at callback 7 in most runs here)."""

    def __init__(self, channels: int, device_channels: int, prefill: int, capacity: int,
                 settle: int = 0) -> None:
        self.ring = RingBuffer(max(capacity, 2 * prefill), channels, "block")
        self.prefill = prefill
        self.settle = settle
        self.position = 0  # frames asked for so far
        self.playing = False
        self.draining = False
        self.underflow = 0
        self.startup_underflow = 0
        self.trimmed = 0  # duplex start-up: frames due before playback started, dropped unplayed
        self.debt = 0  # duplex: frames played as silence by an underflow, to skip when they arrive
        self.startup_debt = 0  # the part of `debt` from start-up underflows
        self.late_dropped = 0
        self.mono_to_many = channels == 1 and device_channels > 1
        self.scratch = np.zeros((16384, 1), dtype=np.float32)

    def fill(self, outdata: np.ndarray, frames: int, now: int | None = None) -> None:
        ring = self.ring
        startup = self.position < self.settle
        self.position += frames
        if not self.playing:
            if now is None:
                if ring.available() < self.prefill:
                    outdata.fill(0.0)
                    return
            else:
                late = now - self.prefill - ring.read  # frames whose playing time has passed
                if late < 0 or ring.available() < late + frames:
                    outdata.fill(0.0)
                    return
                ring.read += late  # consumer side: drop them unplayed
                self.trimmed += late
            self.playing = True
        elif self.debt:
            k = min(self.debt, ring.available())
            ring.read += k  # consumer side: skip the frames whose time has passed
            self.debt -= k
            early = min(k, self.startup_debt)  # already counted as start-up silence
            self.startup_debt -= early
            self.late_dropped += k - early
        if self.mono_to_many:
            dst = self.scratch[:frames]
            n = ring.read_into(dst)
            outdata[:n] = dst[:n]
        else:
            n = ring.read_into(outdata)
        if n < frames:
            outdata[n:] = 0.0
            if not self.draining:
                if startup:
                    self.startup_underflow += frames - n
                else:
                    self.underflow += frames - n
                if now is not None:
                    self.debt += frames - n
                    if startup:
                        self.startup_debt += frames - n

    def level(self) -> int:
        return self.ring.available()


class _StreamClock:
    """Callback timestamps in preallocated arrays (written by the callback, read by the watchdog)."""

    def __init__(self) -> None:
        self.adc = np.zeros(_HISTORY)
        self.dac = np.zeros(_HISTORY)
        self.cur = np.zeros(_HISTORY)
        self.pos = np.zeros(_HISTORY, dtype=np.int64)
        self.k = 0  # callbacks so far (written last, so entries < k are complete)
        self.frames = 0


# -- the input source -------------------------------------------------------------------------------
_DEVICE_PARAMS = (
    Param("device", str, "default", help="index or name substring (see `rtaudio devices`)"),
    Param("blocksize", int, DEFAULT_BLOCKSIZE, min=0, max=16384, unit="frames",
          help="device block; 0 = PortAudio's choice"),
    Param("latency", str, DEFAULT_LATENCY, help="'low', 'high' or seconds"),
    Param("realtime", bool, True, help="raise the audio threads' priority (nice -15, the engine's "
          "worker -10; if permitted)"),
)


@register
class DeviceInput(Source):
    kind = "input"
    summary = "Records from an audio device (PortAudio); duplex with an `output` sink."
    push: ClassVar[bool] = True
    params = (
        _DEVICE_PARAMS[0],
        Param("rate", int, 48000, min=1000, max=384000, unit="Hz"),
        Param("channels", int, 1, min=1, max=64),
        *_DEVICE_PARAMS[1:],
    )

    def __init__(self, where: str | None = None, **values: Any) -> None:
        super().__init__(where, **values)
        self.latency_setting = parse_latency(self.latency, self.where)
        self.error: BaseException | None = None
        self.stream = None
        self.output: DeviceOutput | None = None
        self._stopping = False
        self.halted = True  # False when PortAudio did not stop the stream in HALT_SECONDS
        self.callback_tid = 0
        self.realtime_granted: bool | None = None
        self._watchdog: threading.Thread | None = None
        self._wake = threading.Event()

    # -- set-up -------------------------------------------------------------------------------------
    def open(self) -> AudioFormat:
        sd = _sd()
        self.index = find_device(self.device, "input")
        try:
            sd.check_input_settings(self.index, channels=self.channels, dtype="float32",
                                    samplerate=self.rate)
        except sd.PortAudioError as e:
            name = device_name(self.index, "input")
            raise AudioFormatError(f"{self.where}: device '{name}' cannot record "
                                   f"{self.channels} ch at {self.rate} Hz ({e})") from None
        self.flags = _Flags(self.rate)
        self.clock = _StreamClock()
        self.in_slips = SlipDetector(self.rate, settle=SETTLE_SECONDS)
        self.out_slips = SlipDetector(self.rate, settle=SETTLE_SECONDS)
        self.ring: RingBuffer | None = None
        return AudioFormat(self.rate, self.channels)

    def link_sinks(self, sinks: list) -> None:
        """Called by the engine after the sinks are open: take over one `output` sink at our rate
        (one duplex stream), then open the device stream (errors surface in `prepare`)."""
        for s in sinks:
            if isinstance(s, DeviceOutput) and s.fmt.rate == self.rate and s.duplex_with is None:
                s.duplex_with = self
                self.output = s
                break
        self._open_stream()

    def _open_stream(self) -> None:
        if self.stream is not None:
            return
        sd = _sd()
        kw: dict[str, Any] = dict(samplerate=self.rate, blocksize=self.blocksize, dtype="float32",
                                  latency=self.latency_setting,
                                  finished_callback=self._finished)
        try:
            if self.output is None:
                self.stream = sd.InputStream(device=self.index, channels=self.channels,
                                             callback=self._make_callback(False), **kw)
            else:
                out = self.output
                self.stream = sd.Stream(device=(self.index, out.index),
                                        channels=(self.channels, out.device_channels),
                                        callback=self._make_callback(True), **kw)
        except sd.PortAudioError as e:
            raise RtAudioError(f"{self.where}: cannot open device '{self.device}' ({e})") from None
        # asked once, here: at close the device may be gone (a server that stopped), and asking
        # then raised in the engine's shutdown
        self._jack = self._on_jack()

    # -- running ------------------------------------------------------------------------------------
    def start(self, ring: RingBuffer) -> None:
        self.ring = ring
        if self.realtime:  # start() runs on the engine's worker thread
            promote_worker(threading.get_native_id())
        self._open_stream()
        self._stopping = False
        self._wake.clear()
        _GilHandover.acquire()
        self._gil = True
        self.stream.start()
        self.started_at = time.monotonic()
        self._watchdog = threading.Thread(target=self._watch, name="rtaudio-watchdog", daemon=True)
        self._watchdog.start()

    def _make_callback(self, duplex: bool):
        clock, flags = self.clock, self.flags
        adc, dac, cur, pos = clock.adc, clock.dac, clock.cur, clock.pos
        mask = _HISTORY - 1
        queue = self.output.queue if duplex else None

        def callback(indata, *rest) -> None:
            # rest = (outdata, frames, time, status) in duplex, else (frames, time, status)
            try:
                if duplex:
                    outdata, frames, tinfo, status = rest
                else:
                    frames, tinfo, status = rest
                if status:
                    flags.add(status, clock.frames)
                k = clock.k
                if k == 0:
                    self.callback_tid = threading.get_native_id()
                j = k & mask
                adc[j] = tinfo.inputBufferAdcTime
                dac[j] = tinfo.outputBufferDacTime
                cur[j] = tinfo.currentTime
                pos[j] = clock.frames
                now = clock.frames
                clock.frames = now + frames
                self.ring.write(indata)
                if queue is not None:
                    queue.fill(outdata, frames, now)
                clock.k = k + 1
            except BaseException as e:  # surfaced on the worker thread via `error`
                self.error = RtAudioError(f"{self.where}: audio callback failed: "
                                          f"{type(e).__name__}: {e}")
                raise _sd().CallbackAbort from None

        return callback

    def _finished(self) -> None:
        if not self._stopping and self.error is None:
            self.error = RtAudioError(f"{self.where}: device '{self.device}' stopped after "
                                      f"{self.clock.frames / self.rate:.2f} s (server gone or "
                                      "device lost)")
        self._wake.set()

    def _watch(self) -> None:
        """Slip accounting and failure detection, off the audio thread."""
        last_k, last_change = 0, time.monotonic()
        while not self._wake.wait(0.2):
            k = self.clock.k
            now = time.monotonic()
            self._feed_clocks(k)
            if k != last_k:
                last_k, last_change = k, now
            if self.realtime and self.realtime_granted is None and self.callback_tid:
                self.realtime_granted = promote_audio_threads([self.callback_tid])
            limit = STALL_SECONDS if k else FIRST_CALLBACK_SECONDS
            if self.error is None and not self._stopping:
                if not self.stream.active:
                    self.error = RtAudioError(
                        f"{self.where}: device '{self.device}' failed: the stream stopped "
                        f"after {self.clock.frames / self.rate:.2f} s (server gone or device lost)")
                elif now - last_change > limit:
                    self.error = RtAudioError(
                        f"{self.where}: device '{self.device}' delivered no audio for "
                        f"{now - last_change:.1f} s")

    def _feed_clocks(self, k: int) -> None:
        c = self.clock
        start = self.in_slips.seen
        if k - start > _HISTORY:  # the watchdog was starved: skip what was overwritten
            start = k - _HISTORY
        if k <= start:
            return
        idx = np.arange(start, k) & (_HISTORY - 1)
        pos = c.pos[idx]
        self.in_slips.feed(c.adc[idx], pos, k)
        if self.output is not None:
            self.out_slips.feed(c.dac[idx], pos, k)

    def stop(self) -> None:
        self._stopping = True
        if self.output is not None:  # the worker has stopped writing: what follows is the tail
            self.output.queue.draining = True
        self._wake.set()
        if self._watchdog is not None:
            self._watchdog.join()
            self._watchdog = None
        if self.stream is not None:
            self.halted = _halt(self.stream, drain=self.error is None)  # a lost device: abort
            self._feed_clocks(self.clock.k)
        if getattr(self, "_gil", False):
            self._gil = False
            _GilHandover.release()

    def close(self) -> None:
        if self.stream is not None:
            self._stopping = True
            self.reported_latency()  # kept for the summary printed after close
            if self.halted:  # else PortAudio is stuck stopping it: closing would block as well
                self.stream.close(ignore_errors=True)
            self.stream = None

    # -- reporting ----------------------------------------------------------------------------------
    def counters(self) -> dict[str, Any]:
        if not hasattr(self, "flags"):
            return {}
        f = self.flags.counts
        c: dict[str, Any] = {
            "start-up flags": self.flags.startup,
            "input overflow flags": f["input_overflow"],
            "input underflow flags": f["input_underflow"],
        }
        if self.output is not None:
            c["output underflow flags"] = f["output_underflow"]
            c["output overflow flags"] = f["output_overflow"]
        c["input slip frames"] = self.in_slips.slipped
        if self.output is not None:
            c["output slip frames"] = self.out_slips.slipped
        if not self.halted:
            c["input stream left stopping"] = 1
        return c

    def reported_latency(self) -> dict[str, float]:
        """Achieved device latency in seconds: from the callbacks' time info once they run
        (median of the last 200 callbacks), else what PortAudio reported when opening."""
        if self.stream is None:
            return dict(getattr(self, "_last_latency", {}))
        lat = self.stream.latency
        if self.output is None:
            out = {"input": float(lat)}
        else:
            out = {"input": float(lat[0]), "output": float(lat[1])}
        c = self.clock
        k = c.k
        # JACK: stream.latency is exact (whole periods, measured) and the time info is not (its
        # DAC - ADC was 3x the measured round trip); ALSA/PulseAudio: the reverse (time info
        # within 0.3 ms, stream.latency ~10 ms high). See tests/test_loopback.py.
        if k >= 8 and not self._jack:
            idx = np.arange(k - min(k, _HISTORY, 200), k) & (_HISTORY - 1)
            out["input"] = float(np.median(c.cur[idx] - c.adc[idx]))
            if self.output is not None:
                out["output"] = float(np.median(c.dac[idx] - c.cur[idx]))
        if self.output is not None:
            out.update(self.output.reported_latency())
        self._last_latency = out
        return out

    def _on_jack(self) -> bool:
        sd = _sd()
        try:
            dev = sd.query_devices(self.index, kind="input") if self.index is None \
                else sd.query_devices(self.index)
            return "JACK" in sd.query_hostapis(dev["hostapi"])["name"]
        except sd.PortAudioError:
            return False

    def round_trip_time_info(self) -> float | None:
        """Median outputBufferDacTime - inputBufferAdcTime over recent callbacks (duplex only)."""
        c = self.clock
        k = c.k
        if self.output is None or k < 8:
            return None
        idx = np.arange(k - min(k, _HISTORY, 200), k) & (_HISTORY - 1)
        return float(np.median(c.dac[idx] - c.adc[idx]))


# -- the output sink --------------------------------------------------------------------------------
@register
class DeviceOutput(Sink):
    kind = "output"
    summary = "Plays the chain's audio on a device (PortAudio); silence on underflow (counted)."
    params = (
        *_DEVICE_PARAMS,
        Param("channels", int, 0, min=0, max=64, help="0 = the pipeline's channel count"),
        Param("prefill", float, DEFAULT_PREFILL, min=0.0, max=10.0, unit="s",
              help="output queued beyond one engine block before playback starts (duplex: "
                   "the output plays one block + prefill behind the input)"),
    )

    def __init__(self, where: str | None = None, **values: Any) -> None:
        super().__init__(where, **values)
        self.latency_setting = parse_latency(self.latency, self.where)
        self.duplex_with: DeviceInput | None = None
        self.stream = None
        self.callback_tid = 0
        self.realtime_granted: bool | None = None
        self.error: BaseException | None = None
        self._stopping = False
        self.halted = True  # False when PortAudio did not stop the stream in HALT_SECONDS

    def open(self, fmt: AudioFormat, bus) -> None:
        super().open(fmt, bus)
        sd = _sd()
        self.index = find_device(self.device, "output")
        dev_ch = self.channels or fmt.channels
        if dev_ch != fmt.channels and fmt.channels != 1:
            raise AudioFormatError(f"{self.where}: the pipeline gives {fmt.channels} channels, "
                                   f"the device is set to {dev_ch}")
        try:
            sd.check_output_settings(self.index, channels=dev_ch, dtype="float32",
                                     samplerate=fmt.rate)
        except sd.PortAudioError as e:
            name = device_name(self.index, "output")
            raise AudioFormatError(f"{self.where}: device '{name}' cannot play {dev_ch} ch at "
                                   f"{fmt.rate} Hz ({e})") from None
        self.device_channels = dev_ch
        block = max(fmt.max_block, 1)
        self.prefill_frames = block + int(round(self.prefill * fmt.rate))
        capacity = self.prefill_frames + 4 * block + 4 * max(self.blocksize, 256)
        self.queue = _OutputQueue(fmt.channels, dev_ch, self.prefill_frames, capacity,
                                  settle=int(SETTLE_SECONDS * fmt.rate))
        self.flags = _Flags(fmt.rate)
        self.frames = 0
        self.frames_played = 0

    def _open_stream(self) -> None:
        sd = _sd()
        queue, flags = self.queue, self.flags

        def callback(outdata, frames, tinfo, status) -> None:
            try:
                if not self.callback_tid:
                    self.callback_tid = threading.get_native_id()
                if status:
                    flags.add(status, self.frames_played)
                self.frames_played += frames
                queue.fill(outdata, frames)
            except BaseException as e:
                self.error = RtAudioError(f"{self.where}: audio callback failed: "
                                          f"{type(e).__name__}: {e}")
                raise sd.CallbackAbort from None

        def finished() -> None:
            if not self._stopping and self.error is None:
                self.error = RtAudioError(f"{self.where}: device '{self.device}' stopped "
                                          "(server gone or device lost)")

        try:
            self.stream = sd.OutputStream(
                samplerate=self.fmt.rate, blocksize=self.blocksize, device=self.index,
                channels=self.device_channels, dtype="float32", latency=self.latency_setting,
                callback=callback, finished_callback=finished)
            _GilHandover.acquire()
            self._gil = True
            self.stream.start()
        except sd.PortAudioError as e:
            raise RtAudioError(f"{self.where}: cannot open device '{self.device}' ({e})") from None

    def write(self, block: np.ndarray, sample: int) -> None:
        if self.duplex_with is None:
            if self.stream is None:
                self._open_stream()
                if self.realtime:  # write() runs on the engine's worker thread
                    promote_worker(threading.get_native_id())
            if self.error is not None:
                raise self.error
            if not self.stream.active and not self._stopping:
                raise RtAudioError(f"{self.where}: device '{self.device}' failed: the stream "
                                   "stopped (server gone or device lost)")
            if self.realtime and self.realtime_granted is None and self.callback_tid:
                self.realtime_granted = promote_audio_threads([self.callback_tid])
        # A full ring means the device is slower than the worker (a file source): wait for it,
        # but never forever (a dead device); what cannot be queued is counted.
        timeout = 2.0 * self.queue.ring.capacity / self.fmt.rate + 1.0
        stored = self.queue.ring.write(block, timeout=timeout)
        self.frames += block.shape[0]
        if stored < block.shape[0] and self.duplex_with is None:
            raise RtAudioError(f"{self.where}: device '{self.device}' took no audio for "
                               f"{timeout:.1f} s (server frozen or device lost)")

    def close(self, keep: bool = True) -> None:
        q = getattr(self, "queue", None)
        if self.stream is not None:
            if keep and self.error is None and self.stream.active:
                # Play out what is queued (a file's tail), then stop.
                q.draining = True
                if not q.playing:
                    q.prefill = 0
                deadline = time.monotonic() + q.ring.capacity / self.fmt.rate + 1.0
                while q.level() > 0 and time.monotonic() < deadline and self.stream.active:
                    time.sleep(0.005)
                lat = self.stream.latency
                time.sleep(min(float(lat), 1.0))
            self._stopping = True
            # Failed, or the tail did not play out (a frozen server): abort, as the input does.
            self.halted = _halt(self.stream, drain=self.error is None and q.level() == 0)
            if self.halted:
                self.stream.close(ignore_errors=True)
            self.stream = None
        if getattr(self, "_gil", False):
            self._gil = False
            _GilHandover.release()
        if q is not None:
            q.ring.close()

    def counters(self) -> dict[str, Any]:
        q = getattr(self, "queue", None)
        if q is None:
            return {}
        c: dict[str, Any] = {}
        if self.duplex_with is None:
            c["start-up flags"] = self.flags.startup
            c["output underflow flags"] = self.flags.counts["output_underflow"]
            c["output overflow flags"] = self.flags.counts["output_overflow"]
        c["output ring underflow"] = q.underflow
        c["output start-up silence frames"] = q.startup_underflow
        if self.duplex_with is not None:
            c["output start-up trim"] = q.trimmed
            c["output late frames dropped"] = q.late_dropped
        c["output ring overflow"] = q.ring.overflow
        c["output queue ms"] = 1000.0 * q.level() / self.fmt.rate
        if not self.halted:
            c["output stream left stopping"] = 1
        return c

    def reported_latency(self) -> dict[str, float]:
        out: dict[str, float] = {}
        if not hasattr(self, "queue"):
            return out
        if self.duplex_with is None and self.stream is not None:
            out["output"] = float(self.stream.latency)
        # Playback runs `prefill_frames` behind (duplex: behind the input; standalone: it starts
        # with that much queued): that much is added to the round trip.
        out["output queue"] = self.prefill_frames / self.fmt.rate
        return out
