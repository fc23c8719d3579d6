"""Level meter widget: RMS bar, peak marker with hold, clip lamp, numeric readout per channel."""

from __future__ import annotations

import time

from PyQt6.QtCore import QRectF, Qt
from PyQt6.QtGui import QColor, QFont, QLinearGradient, QPainter, QPen
from PyQt6.QtWidgets import QSizePolicy, QWidget

SCALE_TICKS = (0, -3, -6, -10, -20, -30, -40, -50, -60, -80, -100, -120)


class LevelMeters(QWidget):
    """Shows the newest `level` message (dBFS RMS and peak per channel) of the `level` stage."""

    CLIP_HOLD = 2.0  # seconds the clip lamp stays lit
    PEAK_HOLD = 1.5  # seconds before the held peak marker falls
    PEAK_FALL = 20.0  # dB/s

    def __init__(self, db_min: float = -60.0, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.db_min, self.db_max = db_min, 0.0
        self.rms: list[float] = []
        self.peak: list[float] = []
        self.held: list[float] = []
        self.held_at: list[float] = []
        self.clip_at = -1e9
        self.setMinimumWidth(120)
        self.setSizePolicy(QSizePolicy.Policy.Fixed, QSizePolicy.Policy.Expanding)
        self.font_small = QFont("DejaVu Sans", 8)
        self.font_value = QFont("DejaVu Sans Mono", 9)

    # -- data -----------------------------------------------------------------------------------
    def set_levels(self, rms_db: list[float], peak_db: list[float], clip: bool) -> None:
        now = time.monotonic()
        if len(self.held) != len(peak_db):
            self.held = list(peak_db)
            self.held_at = [now] * len(peak_db)
        for i, p in enumerate(peak_db):
            fallen = self.held[i] - self.PEAK_FALL * max(0.0, now - self.held_at[i] - self.PEAK_HOLD)
            if p >= fallen:
                self.held[i], self.held_at[i] = p, now
        self.rms, self.peak = list(rms_db), list(peak_db)
        if clip:
            self.clip_at = now
        self.update()

    def held_peak(self, i: int) -> float:
        age = time.monotonic() - self.held_at[i] - self.PEAK_HOLD
        return self.held[i] - self.PEAK_FALL * max(0.0, age)

    @property
    def clipping(self) -> bool:
        return time.monotonic() - self.clip_at < self.CLIP_HOLD

    # -- geometry (also used by tests to read the bar back from a screenshot) -----------------
    def bar_area(self) -> QRectF:
        return QRectF(34, 30, self.width() - 42, self.height() - 30 - 46)

    def bar_rect(self, i: int) -> QRectF:
        area = self.bar_area()
        n = max(1, len(self.rms))
        w = area.width() / n
        return QRectF(area.left() + i * w + 3, area.top(), w - 6, area.height())

    def db_to_y(self, db: float) -> float:
        area = self.bar_area()
        frac = (min(max(db, self.db_min), self.db_max) - self.db_min) / (self.db_max - self.db_min)
        return area.bottom() - frac * area.height()

    # -- painting -------------------------------------------------------------------------------
    def paintEvent(self, event) -> None:  # noqa: N802 (Qt name)
        p = QPainter(self)
        p.fillRect(self.rect(), QColor("#101418"))
        area = self.bar_area()
        p.setFont(self.font_small)
        p.setPen(QColor("#8a96a3"))
        for t in SCALE_TICKS:
            if self.db_min <= t <= self.db_max:
                y = self.db_to_y(t)
                p.drawLine(int(area.left()) - 4, int(y), int(area.left()) - 1, int(y))
                p.drawText(QRectF(0, y - 7, area.left() - 6, 14),
                           Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter, f"{t}")
        # clip lamp
        lamp = QRectF(area.left(), 6, area.width(), 18)
        p.fillRect(lamp, QColor("#e53935") if self.clipping else QColor("#2a2f36"))
        p.setPen(QColor("#ffffff") if self.clipping else QColor("#66707a"))
        p.drawText(lamp, Qt.AlignmentFlag.AlignCenter, "CLIP")
        if not self.rms:
            p.setPen(QColor("#66707a"))
            p.drawText(area, Qt.AlignmentFlag.AlignCenter | Qt.TextFlag.TextWordWrap,
                       "no level\nstage")
            p.end()
            return
        grad = QLinearGradient(0, area.bottom(), 0, area.top())
        grad.setColorAt(0.0, QColor("#2e7d32"))
        grad.setColorAt(max(0.0, 1 - 12 / (self.db_max - self.db_min)), QColor("#c0ca33"))
        grad.setColorAt(max(0.0, 1 - 3 / (self.db_max - self.db_min)), QColor("#fb8c00"))
        grad.setColorAt(1.0, QColor("#e53935"))
        for i, rms in enumerate(self.rms):
            r = self.bar_rect(i)
            p.fillRect(r, QColor("#1b2027"))
            top = self.db_to_y(rms)
            if top < r.bottom():
                p.fillRect(QRectF(r.left(), top, r.width(), r.bottom() - top), grad)
            for db, colour, width in ((self.peak[i], "#e0e0e0", 1), (self.held_peak(i), "#ffb74d", 2)):
                if db > self.db_min:
                    p.setPen(QPen(QColor(colour), width))
                    y = self.db_to_y(db)
                    p.drawLine(int(r.left()), int(y), int(r.right()), int(y))
            p.setFont(self.font_value)
            p.setPen(QColor("#c8d0d8"))
            label = QRectF(r.left() - 3, area.bottom() + 4, r.width() + 6, 40)
            p.drawText(label, Qt.AlignmentFlag.AlignHCenter | Qt.AlignmentFlag.AlignTop,
                       f"{rms:.1f}\n{self.peak[i]:.1f}")
        p.setFont(self.font_small)
        p.setPen(QColor("#8a96a3"))
        p.drawText(QRectF(0, area.bottom() + 4, area.left() - 2, 40),
                   Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignTop, "RMS\npeak")
        p.end()
