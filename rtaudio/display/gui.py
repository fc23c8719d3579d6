"""The monitor window: spectrum, scrolling spectrogram, level meters, keyword events, xrun counts.

Threads: the engine's worker publishes on the bus; this (main, Qt) thread drains the window sink's
subscription on a QTimer, draws only when something new arrived, and never waits for the worker.
"""

from __future__ import annotations

import contextlib
import math
import os
import signal
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pyqtgraph as pg
from PyQt6.QtCore import (
    QEvent,
    QEventLoop,
    QObject,
    QPointF,
    QRectF,
    Qt,
    QTimer,
    pyqtSignal,
    qInstallMessageHandler,
)
from PyQt6.QtGui import QFont
from PyQt6.QtWidgets import (
    QApplication,
    QGraphicsItem,
    QHBoxLayout,
    QLabel,
    QSizePolicy,
    QVBoxLayout,
    QWidget,
)

from ..bus import Message
from ..errors import ConfigError, RtAudioError
from .freqaxis import LogFreqMap, log_ticks, readout
from .meters import LevelMeters
from .spectrogram import Spectrogram, SpectrogramItem
from .spectrum import SpectrumItem
from .window import WindowSink

BACKGROUND = "#101418"
FOREGROUND = "#c8d0d8"
CURVE = "#4fc3f7"
PEAK = "#ffb74d"
AXIS_HEIGHT = 40
FILL = "#1e3a48"  # the curve colour at 22% over the background, opaque (cheaper to fill)
_LOSS_WORDS = ("overflow", "underflow", "dropped", "skipped", "slip", "xrun")


class _PaintCounter(QObject):
    """Counts paints of the plot viewport and stamps the audio-to-screen delay at each paint."""

    def __init__(self, window: MonitorWindow) -> None:
        super().__init__(window)
        self.window = window

    def eventFilter(self, obj, event) -> bool:  # noqa: N802 (Qt name)
        if event.type() == QEvent.Type.Paint:
            self.window.on_paint()
        return False


class MonitorWindow(QWidget):
    finished = pyqtSignal()

    def __init__(
        self, engine, sink: WindowSink, snapshot: str | None = None, seconds: float | None = None
    ) -> None:
        super().__init__()
        self.engine, self.sink = engine, sink
        self.snapshot, self.seconds = snapshot, seconds
        self.rate = engine.in_fmt.rate
        self.limit = int(round(seconds * self.rate)) if seconds is not None else None  # input samples
        self.fmin = sink.fmin
        self.fmax = min(sink.fmax or self.rate / 2, self.rate / 2)
        if not self.fmin < self.fmax:
            raise ConfigError(f"{sink.where}: fmin={self.fmin} must be below fmax={self.fmax}")
        self.db_min, self.db_max = sink.db_min, sink.db_max
        if not self.db_min < self.db_max:
            raise ConfigError(f"{sink.where}: db_min must be below db_max")
        try:
            self.cmap = pg.colormap.get(sink.colormap)
        except Exception:
            raise ConfigError(f"{sink.where}: unknown colormap '{sink.colormap}'") from None
        self.spec_stage: str | None = None
        self.spec_key: tuple | None = None
        self.curve_map: LogFreqMap | None = None
        self.row_map: LogFreqMap | None = None
        self.spectrogram: Spectrogram | None = None
        self.last_db: np.ndarray | None = None
        self.unit = "dBFS"
        self.keywords: list[tuple[float, str, float]] = []
        self.markers: list[tuple[float, pg.InfiniteLine]] = []
        self.drawn_end: int | None = None  # sample index just past the newest drawn frame
        self.drawn_end_time = 0.0  # the same, in seconds of stream time
        self.delays: list[float] = []  # audio-to-screen delay at each paint, seconds
        self.behind: list[float] = []  # the same at each timer tick, before drawing, seconds
        self.paints = 0
        self.paint_clock: tuple | None = None
        self.t_end = 0.0
        self._readout_at = 0.0
        self.fps = 0.0
        self._fps_mark = (time.monotonic(), 0)
        self._status_at = 0.0
        self._closing = False
        self.ended = False
        self._build()
        self.timer = QTimer(self)
        self.timer.setTimerType(Qt.TimerType.PreciseTimer)
        self.timer.setInterval(max(1, int(1000 / sink.fps)))
        self.timer.timeout.connect(self._on_timer)
        self.error: BaseException | None = None  # raised by run_gui once the loop has ended

    # -- layout ---------------------------------------------------------------------------------
    def _build(self) -> None:
        self.setWindowTitle(f"rtaudio monitor — {self.engine.source.kind}")
        self.resize(self.sink.width, self.sink.height)
        self.setStyleSheet(f"background: {BACKGROUND}; color: {FOREGROUND};")
        self.glw = pg.GraphicsLayoutWidget()
        self.glw.setBackground(BACKGROUND)
        self.glw.ci.setContentsMargins(6, 4, 10, 4)
        self.readout = self.glw.addLabel("", row=0, col=0, justify="left", color=FOREGROUND, size="10pt")
        lf = (math.log10(self.fmin), math.log10(self.fmax))
        ticks = log_ticks(self.fmin, self.fmax)

        sp = self.glw.addPlot(row=1, col=0)
        sp.setMenuEnabled(False)
        sp.setMouseEnabled(x=False, y=False)
        sp.hideButtons()
        sp.showGrid(x=True, y=True, alpha=0.18)
        sp.setXRange(*lf, padding=0)
        sp.setYRange(self.db_min, self.db_max, padding=0)
        sp.getAxis("bottom").setTicks(ticks)
        sp.getAxis("left").setTickSpacing(20, 10)
        sp.getAxis("left").setWidth(56)
        sp.setLabel("left", "dBFS")
        self.spec_plot = sp
        self.trace: SpectrumItem | None = None  # made when the first spectrum arrives
        self.cursor_line = pg.InfiniteLine(angle=90, pen=pg.mkPen("#5c6670", width=1))
        self.cursor_line.setVisible(False)
        sp.addItem(self.cursor_line, ignoreBounds=True)
        self.cursor_text = ""
        self.peak_text = ""
        sp.scene().sigMouseMoved.connect(self._mouse_moved)

        sg = self.glw.addPlot(row=2, col=0)
        sg.setMenuEnabled(False)
        sg.setMouseEnabled(x=False, y=False)
        sg.hideButtons()
        sg.setYRange(*lf, padding=0)
        sg.setXRange(-self.sink.history, 0, padding=0)
        sg.getAxis("left").setTicks(ticks)
        sg.getAxis("left").setWidth(56)
        sg.setLabel("left", "Hz")
        sg.setLabel("bottom", "seconds ago")
        self.image: SpectrogramItem | None = None  # made when the first spectrum arrives
        self.colorbar = pg.ColorBarItem(values=(self.db_min, self.db_max), colorMap=self.cmap,
                                        interactive=False, width=10, label="dB")
        self.glw.addItem(self.colorbar, row=2, col=1)
        sg.getAxis("bottom").setHeight(AXIS_HEIGHT)
        sp.getAxis("bottom").setHeight(AXIS_HEIGHT)
        self.colorbar.setContentsMargins(0, 0, 0, AXIS_HEIGHT)  # span the image, not its axis
        self.sg_plot = sg
        for plot in (sp, sg):  # show the end labels (0 dBFS, 20 Hz, 20 kHz) too
            for name in ("left", "bottom"):
                plot.getAxis(name).setStyle(hideOverlappingLabels=False)
        # Axes and grids only change on resize: let Qt keep them as pixmaps instead of replaying
        # their line drawings at every frame.
        for plot in (sp, sg):
            for name in ("left", "bottom"):
                plot.getAxis(name).setCacheMode(QGraphicsItem.CacheMode.DeviceCoordinateCache)
        self.glw.ci.layout.setRowStretchFactor(1, 5)
        self.glw.ci.layout.setRowStretchFactor(2, 4)
        sg.setMinimumHeight(0.36 * self.sink.height)

        self.meters = LevelMeters(self.sink.meter_min)
        self.kw_label = QLabel("keywords\n—")
        self.kw_label.setFont(QFont("DejaVu Sans Mono", 9))
        self.kw_label.setAlignment(Qt.AlignmentFlag.AlignTop | Qt.AlignmentFlag.AlignLeft)
        self.kw_label.setFixedHeight(150)
        self.kw_label.setFixedWidth(170)
        side = QVBoxLayout()
        side.addWidget(self.meters, 1, Qt.AlignmentFlag.AlignHCenter)
        side.addWidget(self.kw_label)
        self.status = QLabel("starting")
        self.status.setFont(QFont("DejaVu Sans", 9))
        self.status.setTextFormat(Qt.TextFormat.RichText)
        self.status.setWordWrap(True)  # many counters must not widen the window
        self.status.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        top = QHBoxLayout()
        top.addWidget(self.glw, 1)
        top.addLayout(side)
        outer = QVBoxLayout(self)
        outer.setContentsMargins(4, 4, 4, 4)
        outer.addLayout(top, 1)
        outer.addWidget(self.status)
        self._counter = _PaintCounter(self)
        self.glw.viewport().installEventFilter(self._counter)

    # -- configuration from the first spectrum ------------------------------------------------
    def _configure(self, data: dict) -> None:
        n_fft, rate = data["n_fft"], data["rate"]
        freqs = np.fft.rfftfreq(n_fft, 1.0 / rate)
        fmax = min(self.fmax, rate / 2)
        self.curve_map = LogFreqMap(freqs, self.fmin, fmax, 1024)
        if self.trace is not None:
            self.spec_plot.removeItem(self.trace)
        self.trace = SpectrumItem(self.curve_map.log_centers, self.db_min, self.db_max, CURVE,
                                  FILL, PEAK)
        self.spec_plot.addItem(self.trace)
        self.row_map = LogFreqMap(freqs, self.fmin, fmax, 384)
        n_cols = 640
        spc = self.sink.history * rate / n_cols
        self.spectrogram = Spectrogram(384, n_cols, spc, (self.db_min, self.db_max),
                                       self.cmap.getLookupTable(nPts=256, alpha=False))
        self.spec_rate = rate
        self.unit = data.get("unit", "dBFS")
        self.spec_plot.setLabel("left", self.unit)
        self.spec_key = (n_fft, rate)
        self.freqs = freqs
        self.info = (f"n_fft {data['frame']}" + (f"×{n_fft // data['frame']}" if n_fft != data["frame"]
                     else "") + f" · hop {data['hop']} · {data.get('window', '')}")
        # drawn at (seconds before now, log10 Hz)
        lf0, lf1 = math.log10(self.fmin), math.log10(fmax)
        if self.image is not None:
            self.sg_plot.removeItem(self.image)
        rect = QRectF(-self.sink.history, lf0, self.sink.history, lf1 - lf0)
        self.image = SpectrogramItem(self.spectrogram, rect)
        self.sg_plot.addItem(self.image)

    # -- the timer: drain, update, draw -----------------------------------------------------------
    def _on_timer(self) -> None:
        # An exception escaping a Qt slot aborts the process (PyQt6): keep it for run_gui.
        try:
            self.tick()
        except BaseException as e:
            self.error = e
            self.timer.stop()
            self.close()

    def tick(self) -> None:
        if self.drawn_end is not None:  # how far the screen is behind, just before this update
            self.behind.append(self.stream_position() / self.rate - self.drawn_end_time)
        newest: Message | None = None
        level: Message | None = None
        # With a time limit (snapshot), only what describes audio before it is shown; messages
        # carry their stage's rate (a stage after a resampler counts at its own rate).
        limit = self.seconds
        for m in self.sink.drain():
            if m.topic == "spectrum":
                d = m.data
                if limit is not None and (m.sample + d["frame"]) / m.rate > limit + 1e-9:
                    continue
                if self.spec_stage is None:
                    self.spec_stage = m.stage
                elif m.stage != self.spec_stage:
                    continue
                if self.spec_key != (d["n_fft"], d["rate"]):
                    self._configure(d)
                db = d["db"]
                mono = db[0] if db.shape[0] == 1 else db.max(axis=0)
                self.spectrogram.add(m.sample + d["frame"] / 2, self.row_map(mono))
                newest = m
            elif m.topic == "level":
                if limit is None or (m.sample + m.data.get("window", 0)) / m.rate <= limit + 1e-9:
                    level = m
            elif m.topic == "keyword":
                if limit is None or m.time <= limit:
                    self._add_keyword(m)
        if newest is not None:
            self._draw_spectrum(newest)
        if level is not None:
            d = level.data
            self.meters.set_levels(d["rms_db"], d["peak_db"], d.get("clip", False))
        now = time.monotonic()
        if now - self._status_at > 0.25:
            self._status_at = now
            self._update_status()
        self._check_end()

    def _draw_spectrum(self, m: Message) -> None:
        d = m.data
        db = d["db"]
        mono = db[0] if db.shape[0] == 1 else db.max(axis=0)
        pk = d.get("peak")
        if pk is not None:
            pk = self.curve_map(pk[0] if pk.shape[0] == 1 else pk.max(axis=0))
        self.trace.set_data(self.curve_map(mono), pk)
        self.last_db = mono
        sg = self.spectrogram
        self.image.update()
        self.t_end = (sg.cur + 1) * sg.spc / self.spec_rate  # stream time at the right edge
        self._place_markers()
        self.drawn_end = m.sample + d["frame"]
        self.drawn_end_time = self.drawn_end / m.rate
        now = time.monotonic()
        if now - self._readout_at > 0.1 or self._closing:  # text is costly: 10 updates a second
            self._readout_at = now
            self.peak_text = self._peak_readout(mono)
            self._show_readout()
        self.sink.drawn += 1

    def _peak_readout(self, db: np.ndarray) -> str:
        band = (self.freqs >= self.fmin) & (self.freqs <= self.fmax)
        idx = np.flatnonzero(band)
        if idx.size == 0:
            return ""
        k = int(idx[np.argmax(db[idx])])
        f, level = self.freqs[k], float(db[k])
        if 0 < k < db.size - 1:  # frequency by parabolic interpolation in dB; the level is the
            a, b, c = float(db[k - 1]), level, float(db[k + 1])  # bin's (a flattop reads true)
            den = a - 2 * b + c
            if den < 0:
                f = (k + 0.5 * (a - c) / den) * self.spec_rate / self.spec_key[0]
        return "peak " + readout(f, level, self.unit)

    def _show_readout(self) -> None:
        gap = "&nbsp;" * 8
        text = f"<span style='color:{PEAK}'>{self.peak_text}</span>"
        if self.cursor_text:
            text += f"{gap}<span style='color:{FOREGROUND}'>cursor {self.cursor_text}</span>"
        self.readout.setText(text)

    def _mouse_moved(self, pos) -> None:
        vb = self.spec_plot.vb
        if not vb.sceneBoundingRect().contains(pos) or self.last_db is None:
            self.cursor_line.setVisible(False)
            self.cursor_text = ""
            return
        x = vb.mapSceneToView(pos).x()
        f = 10**x
        level = float(np.interp(f, self.freqs, self.last_db))
        self.cursor_line.setPos(x)
        self.cursor_line.setVisible(True)
        self.cursor_text = readout(f, level, self.unit)
        self._show_readout()

    def _add_keyword(self, m: Message) -> None:
        d = m.data if isinstance(m.data, dict) else {"label": str(m.data)}
        t = m.time
        label, score = str(d.get("label", "?")), float(d.get("score", 0.0))
        self.keywords.append((t, label, score))
        line = pg.InfiniteLine(pos=t - self.t_end, angle=90, pen=pg.mkPen("#ff5252", width=2), label=label,
                               labelOpts={"position": 0.92, "color": "#ff8a80", "fill": "#101418c0"})
        self.sg_plot.addItem(line, ignoreBounds=True)
        self.markers.append((t, line))
        rows = [f"{tt:8.2f} s {lab[:8]:<8} {sc:.2f}" for tt, lab, sc in self.keywords[-7:]]
        self.kw_label.setText(f"keywords ({len(self.keywords)})\n" + "\n".join(reversed(rows)))

    def _place_markers(self) -> None:
        """Keyword markers sit at their stream time on the 'seconds ago' axis."""
        while self.markers and self.markers[0][0] < self.t_end - self.sink.history:
            self.sg_plot.removeItem(self.markers.pop(0)[1])
        for t, line in self.markers:
            line.setPos(t - self.t_end)

    def _update_status(self) -> None:
        try:
            st = self.engine.status()
        except AttributeError:  # not started yet
            return
        now, paints = time.monotonic(), self.paints
        t_mark, p_mark = self._fps_mark
        if now - t_mark >= 1.0:
            self.fps = (paints - p_mark) / (now - t_mark)
            self._fps_mark = (now, paints)
        parts = [f"{self.rate} Hz · {self.engine.in_fmt.channels} ch"]
        if self.spec_key:
            parts.append(self.info)
        parts.append(f"{st.get('seconds', 0.0):.1f} s")
        for k, v in st.items():
            if isinstance(v, int) and any(w in k for w in _LOSS_WORDS):
                colour = "#ff5252" if v else "#7f8b96"
                parts.append(f"<span style='color:{colour}'>{k} {v}</span>")
        if "lag ms" in st:
            parts.append(f"lag {st['lag ms']:.0f} ms")
        if self.delays:
            parts.append(f"screen delay {1000 * self.delays[-1]:.0f} ms")
        parts.append(f"{self.fps:.0f} fps")
        if self.ended:
            parts.append(f"<b>{self.engine.summary.stopped_by}</b>")
        self.status.setText(" · ".join(parts))

    # -- paints, end, snapshot ------------------------------------------------------------------
    def stream_position(self) -> int:
        ring = self.engine.ring
        return ring.written if ring is not None else self.engine.summary.samples_in

    def on_paint(self) -> None:
        self.paints += 1
        if self.drawn_end is not None:
            self.delays.append(self.stream_position() / self.rate - self.drawn_end_time)
            # main-thread CPU and wall clock from the first data paint (benchmarks read these)
            now = (time.thread_time(), time.monotonic(), self.paints)
            if self.paint_clock is None:
                self.paint_clock = (now, now)
            else:
                self.paint_clock = (self.paint_clock[0], now)

    def _check_end(self) -> None:
        eng = self.engine
        if self._closing:
            return
        done = eng.done.is_set()
        if done and eng.error is not None:
            self.close()  # run_gui re-raises the worker's error
            return
        if self.limit is not None and not done:
            # blocks before the current one are fully processed: their messages are all out
            if eng.summary.samples_in - eng.block < self.limit:
                return
        elif not done:
            return
        if self.limit is not None or self.snapshot:
            self.tick_final()
        elif not self.ended:
            self.ended = True
            self._update_status()

    def tick_final(self) -> None:
        """Take in the last messages, write the snapshot (if asked) and close."""
        self.timer.stop()
        if self.limit is not None and not self.engine.done.is_set():
            self.engine.stop(f"stopped after {self.seconds:g} s")
        self._closing = True
        self.tick()
        if self.last_db is not None:  # the readout is throttled: bring it up to the last frame
            self.peak_text = self._peak_readout(self.last_db)
            self._show_readout()
        self.ended = True
        self._update_status()
        if self.snapshot:
            self.write_snapshot(self.snapshot)
        self.close()

    def write_snapshot(self, path: str) -> None:
        QApplication.processEvents()
        pix = self.grab()
        target = Path(path)
        tmp = target.with_name(f".{target.name}.{os.getpid()}.partial.png")
        try:
            if not pix.save(str(tmp), "PNG"):
                raise OSError("Qt could not save the PNG")
            os.replace(tmp, target)
        except OSError as e:
            with contextlib.suppress(OSError):
                tmp.unlink(missing_ok=True)
            raise RtAudioError(f"{path}: cannot write the snapshot ({e})") from None

    def closeEvent(self, event) -> None:  # noqa: N802 (Qt name)
        self.timer.stop()
        if self.engine.running:
            self.engine.stop("window closed")
        super().closeEvent(event)
        self.finished.emit()

    # -- geometry helpers (tests and benchmarks read pixels back) -------------------------------
    def _to_window(self, plot, x: float, y: float) -> tuple[float, float]:
        scene = plot.vb.mapViewToScene(QPointF(x, y))
        vp = self.glw.mapFromScene(scene)
        p = self.glw.viewport().mapTo(self, vp)
        return float(p.x()), float(p.y())

    def spectrum_pixel(self, hz: float, db: float) -> tuple[float, float]:
        return self._to_window(self.spec_plot, math.log10(hz), db)

    def spectrogram_pixel(self, seconds: float, hz: float) -> tuple[float, float]:
        """Window pixel of stream time `seconds` (as drawn last) and frequency `hz`."""
        return self._to_window(self.sg_plot, seconds - self.t_end, math.log10(hz))

    def plot_rect(self, plot) -> QRectF:
        """The plot's data area in window pixels."""
        r = plot.vb.sceneBoundingRect()
        vp = self.glw.viewport()
        tl = vp.mapTo(self, self.glw.mapFromScene(r.topLeft()))
        br = vp.mapTo(self, self.glw.mapFromScene(r.bottomRight()))
        return QRectF(tl.x(), tl.y(), br.x() - tl.x(), br.y() - tl.y())


def _ensure_platform() -> None:
    if not os.environ.get("DISPLAY") and not os.environ.get("WAYLAND_DISPLAY"):
        os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    qInstallMessageHandler(_qt_messages)


def _qt_messages(mode, context, message: str) -> None:
    """Qt's own warnings, minus the offscreen platform's harmless size-hint notice."""
    if "propagateSizeHints" not in message:
        print(f"qt: {message}", file=sys.stderr)


def _check_snapshot_path(path: str) -> None:
    p = Path(path)
    if p.suffix.lower() != ".png":
        raise RtAudioError(f"--snapshot {path}: the file name must end in .png")
    if p.is_dir():
        raise RtAudioError(f"--snapshot {path}: is a directory")
    if not p.parent.exists():
        raise RtAudioError(f"--snapshot {path}: directory {p.parent} does not exist")


def run_gui(engine, snapshot: str | None = None, seconds: float | None = None) -> MonitorWindow:
    """Show the window, run the engine until the window closes, stop it, re-raise its errors."""
    if snapshot:
        _check_snapshot_path(snapshot)
    if seconds is not None and seconds <= 0:
        raise RtAudioError(f"--seconds {seconds:g}: must be positive")
    sinks = [s for s in engine.sinks if isinstance(s, WindowSink)]
    if not sinks:
        raise ConfigError("the pipeline has no window sink")
    _ensure_platform()
    app = QApplication.instance() or QApplication(sys.argv[:1])
    pg.setConfigOptions(antialias=False, background=BACKGROUND,
                        foreground=FOREGROUND)
    if not engine.prepared:
        engine.prepare()
    sink = sinks[0]
    win = MonitorWindow(engine, sink, snapshot, seconds)
    loop = QEventLoop()
    win.finished.connect(loop.quit)
    old_handler = None
    if threading.current_thread() is threading.main_thread():
        def on_sigint(signum, frame):
            if engine.running:
                engine.stop("stopped by Ctrl-C")
            QTimer.singleShot(0, win.close)
        old_handler = signal.signal(signal.SIGINT, on_sigint)
    sink.attached = True
    win.show()
    try:
        engine.start()
        win.timer.start()
        loop.exec()
    finally:
        sink.attached = False
        win.timer.stop()
        if engine.running:
            engine.stop("window closed")
        if old_handler is not None:
            signal.signal(signal.SIGINT, old_handler)
        del app
    engine.wait()
    if win.error is not None:
        raise win.error
    return win
