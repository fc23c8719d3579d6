"""The engine: a worker that pulls blocks from the source (directly, or from a ring buffer that a
device callback or a real-time pacer fills) and runs the stage chain, then the sinks.

Threads: the producer (PortAudio callback or pacer) only copies into the ring and counts; the
worker runs stages; the caller (CLI or Qt main loop) reads `status()` and the bus.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .bus import Bus
from .errors import AudioFormatError
from .ring import RingBuffer
from .sinks import Sink
from .sources import Source
from .stage import AudioFormat, Stage


@dataclass
class StageTiming:
    name: str
    seconds: float = 0.0
    calls: int = 0


@dataclass
class Summary:
    rate: int
    out_rate: int
    samples_in: int = 0
    samples_out: int = 0
    blocks: int = 0
    wall_seconds: float = 0.0
    latency_seconds: float = 0.0
    stopped_by: str = "end of input"
    counters: dict[str, Any] = field(default_factory=dict)
    stages: list[StageTiming] = field(default_factory=list)

    @property
    def audio_seconds(self) -> float:
        return self.samples_in / self.rate if self.rate else 0.0

    @property
    def dropped(self) -> int:
        return sum(v for k, v in self.counters.items() if isinstance(v, int) and _is_loss(k))


_LOSS_WORDS = ("overflow", "underflow", "dropped", "skipped", "slip", "xrun")


def _is_loss(key: str) -> bool:
    """Counters of lost or padded *samples* (bus counters count messages, reported apart)."""
    return not key.startswith("bus") and any(w in key for w in _LOSS_WORDS)


class Engine:
    def __init__(
        self,
        source: Source,
        stages: list[Stage],
        sinks: list[Sink],
        block: int = 1024,
        bus: Bus | None = None,
        compensate_latency: bool = False,
        ring_seconds: float = 2.0,
    ) -> None:
        self.source = source
        self.stages = stages
        self.sinks = sinks
        self.block = block
        self.bus = bus or Bus()
        self.compensate = compensate_latency
        self.ring_seconds = ring_seconds
        self.ring: RingBuffer | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._pacer: threading.Thread | None = None
        self._param_queue: deque[tuple[int, str, Any]] = deque()
        self.error: BaseException | None = None
        self.done = threading.Event()
        self.prepared = False

    # -- set-up ---------------------------------------------------------------------------------
    def prepare(self) -> AudioFormat:
        self.in_fmt = self.source.open()
        fmt = AudioFormat(self.in_fmt.rate, self.in_fmt.channels, max(self.block, 1))
        names: dict[str, int] = {}
        self.latency_seconds = 0.0
        for st in self.stages:
            n = names.get(st.kind, 0)
            names[st.kind] = n + 1
            name = st.kind if n == 0 else f"{st.kind}#{n + 1}"
            fmt = st.setup(fmt, self.bus, name)
            self.latency_seconds += st.latency / st.fmt.rate
        self.out_fmt = fmt
        self.summary = Summary(self.in_fmt.rate, fmt.rate, latency_seconds=self.latency_seconds)
        self.summary.stages = [StageTiming(st.name) for st in self.stages]
        opened: list[Sink] = []
        try:
            for s in self.sinks:
                s.open(fmt, self.bus)
                opened.append(s)
            # A device source may take over a device sink: one duplex stream, one clock.
            link = getattr(self.source, "link_sinks", None)
            if link is not None:
                link(self.sinks)
        except BaseException:
            for s in opened:
                s.close(keep=False)
            self.source.close()
            raise
        self._trim = int(round(self.latency_seconds * fmt.rate)) if self.compensate else 0
        self.prepared = True
        return fmt

    def set_param(self, stage_index: int, name: str, value: Any) -> None:
        """Change a live parameter; applied by the worker between blocks."""
        st = self.stages[stage_index]
        st.param(name)  # unknown names fail here, in the caller's thread
        self._param_queue.append((stage_index, name, value))

    # -- running --------------------------------------------------------------------------------
    def run(self) -> Summary:
        """Run to the end of input (or until `stop()`), in the calling thread."""
        if not self.prepared:
            self.prepare()
        self._work()
        if self.error is not None:
            raise self.error
        return self.summary

    def start(self) -> None:
        if not self.prepared:
            self.prepare()
        self._thread = threading.Thread(target=self._work, name="rtaudio-worker", daemon=True)
        self._thread.start()

    def stop(self, reason: str = "stopped") -> None:
        if not self._stop.is_set():
            self.summary.stopped_by = reason
        self._stop.set()

    def wait(self, timeout: float | None = None) -> bool:
        """Wait for the worker; re-raise its error in this thread. True when finished."""
        finished = self.done.wait(timeout)
        if finished and self._thread is not None:
            self._thread.join()
        if finished and self.error is not None:
            err, self.error = self.error, None
            raise err
        return finished

    @property
    def running(self) -> bool:
        return self._thread is not None and not self.done.is_set()

    def _work(self) -> None:
        t0 = time.perf_counter()
        keep = True
        try:
            for st in self.stages:
                st.running = True
            if self.source.push or self.source.realtime:
                self._work_live()
            else:
                self._work_pull()
        except BaseException as e:  # surfaced to the caller by run()/wait()
            self.error = e
            self.summary.stopped_by = "error"
            # Live runs keep what was recorded so far; an offline run that failed keeps nothing.
            keep = self.source.push or self.source.realtime
        finally:
            for st in self.stages:
                st.running = False
            self._shutdown(keep)
            self.summary.wall_seconds = time.perf_counter() - t0
            self.done.set()

    def _work_pull(self) -> None:
        src = self.source
        while not self._stop.is_set():
            block = src.read(self.block)
            if block is None:
                break
            self._process(block)
        if self.compensate and not self._stop.is_set():
            self._flush()

    def _work_live(self) -> None:
        src = self.source
        cap = max(int(self.ring_seconds * self.in_fmt.rate), 4 * self.block)
        self.ring = RingBuffer(cap, self.in_fmt.channels, "drop_oldest")
        if src.push:
            src.start(self.ring)
        else:
            self._pacer = threading.Thread(target=self._pace, name="rtaudio-pacer", daemon=True)
            self._pacer.start()
        buf = np.zeros((self.block, self.in_fmt.channels), dtype=np.float32)
        ring = self.ring
        wait = min(0.002, self.block / self.in_fmt.rate / 4)
        try:
            while not self._stop.is_set():
                err = getattr(src, "error", None)
                if err is not None:
                    raise err
                if ring.available() >= self.block:
                    n = ring.read_into(buf)
                    self._process(buf[:n])
                elif ring.closed:
                    n = ring.read_into(buf)
                    if n:
                        self._process(buf[:n])
                    break
                else:
                    time.sleep(wait)
        finally:
            if src.push:
                src.stop()
            ring.close()
            if self._pacer is not None:
                self._pacer.join()

    def _pace(self) -> None:
        """Feed a pull source into the ring at its sample rate, like a device would."""
        src, ring, rate = self.source, self.ring, self.in_fmt.rate
        assert ring is not None
        t0 = time.monotonic()
        sent = 0
        try:
            while not self._stop.is_set() and not ring.closed:  # closed: the worker has ended
                block = src.read(self.block)
                if block is None:
                    break
                due = t0 + sent / rate
                delay = due - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                ring.write(block)
                sent += block.shape[0]
        except BaseException as e:
            self.source.error = e  # type: ignore[attr-defined]
        finally:
            ring.close()

    def _process(self, block: np.ndarray) -> None:
        if self._param_queue:
            while self._param_queue:
                i, name, value = self._param_queue.popleft()
                self.stages[i].set_param(name, value)
        sm = self.summary
        start_in = sm.samples_in
        sm.samples_in += block.shape[0]
        timings = sm.stages
        pc = time.perf_counter
        for i, st in enumerate(self.stages):
            t = pc()
            block = st.run(block)
            timings[i].seconds += pc() - t
            timings[i].calls += 1
        del start_in
        self._emit(block)
        sm.blocks += 1

    def _emit(self, block: np.ndarray) -> None:
        if self._trim:
            k = min(self._trim, block.shape[0])
            block = block[k:]
            self._trim -= k
        if block.dtype != np.float32:
            raise AudioFormatError(f"a stage returned {block.dtype} audio, expected float32")
        sample = self.summary.samples_out
        self.summary.samples_out += block.shape[0]
        for s in self.sinks:
            if s.wants_audio:
                s.write(block, sample)
            s.poll()

    def _flush(self) -> None:
        """Push the chain's delayed tail out with silence, so output length equals input length."""
        want = int(round(self.summary.samples_in * self.out_fmt.rate / self.in_fmt.rate))
        zeros = np.zeros((self.block, self.in_fmt.channels), dtype=np.float32)
        guard = 0
        while self.summary.samples_out < want and guard < 1000:
            block = zeros
            for st in self.stages:
                block = st.run(block)
            missing = want - self.summary.samples_out
            self._emit(block[: max(0, missing + self._trim)])
            guard += 1

    def _shutdown(self, keep: bool) -> None:
        for s in self.sinks:
            try:
                s.poll()
            except Exception:
                pass
            s.close(keep=keep)
        self.source.close()
        self.summary.counters = self.counters()

    # -- reporting ------------------------------------------------------------------------------
    def counters(self) -> dict[str, Any]:
        c: dict[str, Any] = {}
        if self.ring is not None:
            c["ring overflow"] = self.ring.lost
        c.update(self.source.counters())
        for s in self.sinks:
            c.update(s.counters())
        c["bus messages"] = self.bus.published
        c["bus dropped"] = self.bus.dropped
        return c

    def status(self) -> dict[str, Any]:
        """A snapshot for the live status line (read from another thread)."""
        sm = self.summary
        st = {"seconds": sm.samples_in / self.in_fmt.rate, **self.counters()}
        if self.ring is not None:
            st["lag ms"] = 1000.0 * (self.ring.written - sm.samples_in) / self.in_fmt.rate
        return st
