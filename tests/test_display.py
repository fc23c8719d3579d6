"""The monitor window, offscreen: a 1 kHz tone is drawn where it belongs, meters read its level."""

from __future__ import annotations

import os

os.environ["QT_QPA_PLATFORM"] = "offscreen"  # before any QApplication exists

import numpy as np  # noqa: E402
import pytest  # noqa: E402

from rtaudio.engine import Engine  # noqa: E402
from rtaudio.errors import RtAudioError  # noqa: E402
from rtaudio.params import Param  # noqa: E402
from rtaudio.sources import ToneSource  # noqa: E402
from rtaudio.stage import Stage  # noqa: E402
from rtaudio.stages.level import LevelMeter  # noqa: E402
from rtaudio.stages.spectral import Stft  # noqa: E402

gui = pytest.importorskip("rtaudio.display.gui")
from PyQt6.QtCore import QPoint, QPointF, QTimer  # noqa: E402
from PyQt6.QtGui import QImage  # noqa: E402
from PyQt6.QtWidgets import QApplication  # noqa: E402

from rtaudio.display.freqaxis import LogFreqMap, format_hz, log_ticks  # noqa: E402
from rtaudio.display.window import WindowSink  # noqa: E402

LEVEL = -20.0  # tone peak, dBFS


def tone_engine(seconds: float = 2.0, realtime: bool = False, extra: list[Stage] | None = None,
                **window) -> Engine:
    src = ToneSource(hz=1000, seconds=seconds, realtime=realtime, level=LEVEL)
    return Engine(src, [LevelMeter(), Stft(n_fft=4096), *(extra or [])], [WindowSink(**window)],
                  block=1024)


def load_rgb(path) -> np.ndarray:
    img = QImage(str(path)).convertToFormat(QImage.Format.Format_RGB888)
    w, h, stride = img.width(), img.height(), img.bytesPerLine()
    buf = np.frombuffer(img.constBits().asstring(stride * h), np.uint8).reshape(h, stride)
    return buf[:, : 3 * w].reshape(h, w, 3).astype(int)


@pytest.fixture(scope="module")
def tone_run(tmp_path_factory):
    path = tmp_path_factory.mktemp("snap") / "tone.png"
    eng = tone_engine()
    win = gui.run_gui(eng, snapshot=str(path), seconds=1.5)
    return eng, win, load_rgb(path)


def test_snapshot_is_written_after_the_requested_audio(tone_run):
    eng, win, img = tone_run
    assert img.shape[:2] == (win.height(), win.width())
    # an offline source may finish before the GUI looks; the picture is still the one at 1.5 s
    assert eng.summary.stopped_by in ("stopped after 1.5 s", "end of input")
    assert not eng.running and eng.summary.counters["bus dropped"] == 0
    # the newest drawn frame is the last one that ends by 1.5 s of audio
    assert win.drawn_end <= 72000 < win.drawn_end + 1024


def test_spectrum_peak_is_drawn_at_the_1khz_column(tone_run):
    _, win, img = tone_run
    r = win.plot_rect(win.spec_plot)
    x0, x1, y0, y1 = int(r.left()) + 2, int(r.right()) - 2, int(r.top()) + 2, int(r.bottom()) - 2
    area = img[y0:y1, x0:x1]
    trace = (area.max(axis=2) - area.min(axis=2)) > 80  # the coloured curves, not grid or text
    tops = np.where(trace.any(axis=0), trace.argmax(axis=0), area.shape[0])
    col = x0 + int(np.argmin(tops))
    want_x, want_y = win.spectrum_pixel(1000.0, LEVEL)
    assert abs(col - want_x) <= 2
    # hann reads a 1 kHz tone (1/3 bin off-centre at n_fft 4096) 0.6 dB low: within 2% of height
    assert abs(y0 + tops.min() - want_y) <= 0.02 * r.height()


def test_spectrogram_shows_a_bright_row_at_1khz(tone_run):
    _, win, img = tone_run
    xa, _ = win.spectrogram_pixel(0.3, 1000.0)
    xb, y_1k = win.spectrogram_pixel(1.3, 1000.0)
    _, y_top = win.spectrogram_pixel(1.0, win.fmax)
    _, y_bottom = win.spectrogram_pixel(1.0, win.fmin)
    rows = img[int(y_top) + 1 : int(y_bottom) - 1, int(xa) : int(xb)].mean(axis=(1, 2))
    bright = int(y_top) + 1 + int(np.argmax(rows))
    assert abs(bright - y_1k) <= 2
    assert rows.max() > 100 and np.median(rows) < 20  # one bright line on black
    _, y_2k = win.spectrogram_pixel(1.0, 2000.0)
    assert rows[int(y_2k) - int(y_top) - 1] < 20  # nothing an octave up
    assert img[int(y_1k), int(win.spectrogram_pixel(-1.0, 1000.0)[0])].sum() < 30  # before t=0


def test_level_meter_reads_the_tone_level(tone_run):
    _, win, img = tone_run
    rms = LEVEL - 10 * np.log10(2)  # a sine's RMS is 3.01 dB below its peak
    assert win.meters.rms[0] == pytest.approx(rms, abs=0.1)
    assert win.meters.peak[0] == pytest.approx(LEVEL, abs=0.1)
    bar = win.meters.bar_rect(0)
    origin = win.meters.mapTo(win, QPoint(0, 0))
    x = origin.x() + int(bar.center().x())
    column = img[origin.y() + int(bar.top()) : origin.y() + int(bar.bottom()), x]
    dark = np.flatnonzero(column[:, 1] < 60)  # the fill is green to yellow, the bar is dark
    top = origin.y() + int(bar.top()) + dark.max() + 1  # top of the fill rising from the bottom
    expected = origin.y() + win.meters.db_to_y(rms)
    assert abs(top - expected) <= 1.5  # one pixel is 0.15 dB at this size
    assert not win.meters.clipping


def test_cursor_readout_names_frequency_and_level(tone_run):
    _, win, _ = tone_run
    vb = win.spec_plot.vb
    scene = vb.mapViewToScene(QPointF(np.log10(1000.0), -50.0))
    win._mouse_moved(scene)
    level = float(np.interp(1000.0, win.freqs, win.last_db))
    assert win.cursor_text == f"1.000 kHz  {level:+.1f} dBFS"
    assert level > -25.0  # the tone, not the cursor's height
    assert win.cursor_line.isVisible() and win.cursor_line.value() == pytest.approx(3.0, abs=1e-3)
    assert "cursor 1.000 kHz" in win.readout.text
    win._mouse_moved(QPointF(-10.0, -10.0))  # outside the plot: no readout
    assert win.cursor_text == "" and not win.cursor_line.isVisible()


class KeywordAt(Stage):
    """A test stage that publishes one keyword event at a given sample, like a detector would."""

    kind = "test-keyword"
    params = (Param("at", int, 0),)

    def process(self, block):
        if self.position <= self.at < self.position + block.shape[0]:
            self.emit("keyword", self.at, {"label": "marvin", "score": 0.93})
        return block


class Boom(Stage):
    kind = "test-boom"

    def process(self, block):
        if self.position > 20000:
            raise RuntimeError("boom in the worker")
        return block


def test_keyword_events_are_marked_and_listed(tmp_path):
    eng = tone_engine(extra=[KeywordAt(at=48000)])
    win = gui.run_gui(eng, snapshot=str(tmp_path / "kw.png"), seconds=1.5)
    assert "marvin" in win.kw_label.text() and "0.93" in win.kw_label.text()
    assert [t for t, _ in win.markers] == [1.0] and win.keywords[0][1:] == ("marvin", 0.93)
    assert win.markers[0][1].value() == pytest.approx(1.0 - win.t_end)
    img = load_rgb(tmp_path / "kw.png")
    x, _ = win.spectrogram_pixel(1.0, 1000.0)
    _, y = win.spectrogram_pixel(1.0, 100.0)
    r, g, b = img[int(y), int(round(x)) - 1 : int(round(x)) + 2].max(axis=0)
    assert r > 200 and g < 120  # the red marker line


def test_snapshot_at_end_of_input_and_counters_in_status(tmp_path):
    eng = tone_engine(seconds=0.5, realtime=True)
    win = gui.run_gui(eng, snapshot=str(tmp_path / "end.png"), seconds=5.0)
    assert (tmp_path / "end.png").exists()
    assert eng.summary.stopped_by == "end of input"
    text = win.status.text()
    assert "ring overflow 0" in text and "bus dropped 0" in text
    assert win.paints > 0 and win.delays  # painted while live, delay measured


def test_stages_after_a_resampler_are_placed_by_their_own_rate(tmp_path):
    from rtaudio.stages.resample import Resample

    src = ToneSource(hz=1000, seconds=2.0, realtime=False, level=LEVEL)
    eng = Engine(src, [Resample(rate=16000), Stft(n_fft=1024, hop=256)], [WindowSink()], block=1024)
    win = gui.run_gui(eng, snapshot=str(tmp_path / "r.png"), seconds=1.0)
    assert win.spec_rate == 16000 and win.fmax == 24000  # axis to the input's Nyquist
    assert 1.0 - 256 / 16000 < win.drawn_end_time <= 1.0
    peak_hz = float(win.peak_text.split()[1])
    assert win.peak_text.split()[2] == "kHz" and peak_hz == pytest.approx(1.0, abs=0.005)


def test_peak_readout_with_a_flattop_reads_the_tone_level(tmp_path):
    src = ToneSource(hz=1234.5, seconds=1.0, realtime=False, level=LEVEL)
    eng = Engine(src, [Stft(n_fft=2048, window="flattop")], [WindowSink()], block=512)
    win = gui.run_gui(eng, snapshot=str(tmp_path / "f.png"))
    words = win.peak_text.split()  # "peak 1.234 kHz  -20.0 dBFS"
    bin_khz = 48000 / 2048 / 1000  # parabolic interpolation on a flat top: off by up to ~0.1 bin
    assert float(words[1]) == pytest.approx(1.2345, abs=0.15 * bin_khz)
    assert words[3:] == ["-20.0", "dBFS"]
    assert "no level" not in win.status.text() and win.meters.rms == []  # no level stage


def test_clip_lamp_lights_on_a_full_scale_tone(tmp_path):
    src = ToneSource(hz=1000, seconds=0.5, realtime=False, level=0.0)
    eng = Engine(src, [LevelMeter()], [WindowSink()], block=512)
    win = gui.run_gui(eng, snapshot=str(tmp_path / "c.png"))
    assert win.meters.clipping
    img = load_rgb(tmp_path / "c.png")
    lamp = win.meters.mapTo(win, QPoint(int(win.meters.bar_area().center().x()), 12))
    r, g, b = img[lamp.y(), lamp.x()]
    assert r > 200 and g < 90 and b < 90  # red


def test_closing_the_window_stops_the_engine():
    eng = tone_engine(seconds=0.0, realtime=True)  # endless

    def close_it():
        for w in QApplication.topLevelWidgets():
            if isinstance(w, gui.MonitorWindow):
                w.close()

    QTimer.singleShot(400, close_it)
    gui.run_gui(eng)
    assert eng.done.is_set() and eng.summary.stopped_by == "window closed"
    assert eng.summary.samples_in > 0


def test_worker_error_closes_the_window_and_is_raised(tmp_path):
    eng = tone_engine(extra=[Boom()])
    with pytest.raises(RuntimeError, match="boom in the worker"):
        gui.run_gui(eng, snapshot=str(tmp_path / "x.png"))
    assert not (tmp_path / "x.png").exists()


def test_bad_snapshot_path_fails_before_starting(tmp_path):
    eng = tone_engine()
    with pytest.raises(RtAudioError, match="does not exist"):
        gui.run_gui(eng, snapshot=str(tmp_path / "nope" / "x.png"))
    with pytest.raises(RtAudioError, match=r"\.png"):
        gui.run_gui(eng, snapshot=str(tmp_path / "x.jpg"))
    assert not eng.running and not eng.prepared


def test_log_frequency_map_keeps_peaks_and_ticks_read_well():
    freqs = np.fft.rfftfreq(4096, 1 / 48000)
    db = np.full(freqs.size, -100.0)
    db[1234] = -3.0  # one bin: must survive the reduction to 300 cells
    m = LogFreqMap(freqs, 20.0, 24000.0, 300)
    out = m(db)
    assert out.max() == np.float32(-3.0)
    cell = int(np.argmax(out))
    assert m.edges[cell] <= freqs[1234] < m.edges[cell + 1]
    assert [format_hz(f) for f in (20, 500, 1000, 1500, 20000)] == ["20", "500", "1k", "1.5k",
                                                                      "20k"]
    major = [label for _, label in log_ticks(20, 24000)[0]]
    assert major == ["20", "50", "100", "200", "500", "1k", "2k", "5k", "10k", "20k"]


def test_a_snapshot_that_cannot_be_written_is_an_error_not_a_crash(tmp_path):
    path = tmp_path / ("x" * 250 + ".png")  # the file system refuses a name this long
    eng = tone_engine(seconds=0.5)
    with pytest.raises(RtAudioError, match="cannot write the snapshot"):
        gui.run_gui(eng, snapshot=str(path))
    assert not eng.running and list(tmp_path.iterdir()) == []
