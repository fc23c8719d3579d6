"""The spectrum trace: filled level curve plus peak-hold line, drawn as three polygons.

One item, one `paint`: the polygons live in QPolygonF memory that numpy writes into directly, so a
new spectrum costs a few array copies and no per-frame path building. The fill is drawn as strips
of CHUNK points: Qt's raster engine fills one 1000-vertex polygon about 6x slower than 32 small
ones (measured: 4 ms against 0.7 ms per frame at 1280x800).
"""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PyQt6.QtCore import QRectF, Qt
from PyQt6.QtGui import QBrush, QColor, QPainter, QPen

fn = pg.functions
CHUNK = 32


class SpectrumItem(pg.GraphicsObject):
    def __init__(self, x: np.ndarray, floor: float, top: float, curve: str, fill: str,
                 peak: str) -> None:
        super().__init__()
        n = len(x)
        self.n, self.floor, self.top = n, floor, top
        self.strips = []  # (start, end, polygon, its memory): the area under the curve
        for a in range(0, n - 1, CHUNK):
            b = min(n, a + CHUNK + 1)
            poly = fn.create_qpolygonf(b - a + 2)
            xy = fn.ndarray_from_qpolygonf(poly)
            xy[: b - a, 0] = x[a:b]
            xy[b - a :, 0] = (x[b - 1], x[a])
            xy[:, 1] = floor
            self.strips.append((a, b, poly, xy))
        self.line_poly = fn.create_qpolygonf(n)
        self.line_xy = fn.ndarray_from_qpolygonf(self.line_poly)
        self.peak_poly = fn.create_qpolygonf(n)
        self.peak_xy = fn.ndarray_from_qpolygonf(self.peak_poly)
        for arr in (self.line_xy, self.peak_xy):
            arr[:, 0] = x
            arr[:, 1] = floor
        self.rect = QRectF(float(x[0]), floor, float(x[-1] - x[0]), top - floor)
        self.curve_pen = QPen(QColor(curve), 1)
        self.curve_pen.setCosmetic(True)
        self.peak_pen = QPen(QColor(peak), 1)
        self.peak_pen.setCosmetic(True)
        self.fill_brush = QBrush(QColor(fill))
        self.has_data = self.has_peak = False

    def set_data(self, y: np.ndarray, peak: np.ndarray | None = None) -> None:
        lo, hi = self.floor, self.top + 10.0  # keep coordinates sane; the view clips the rest
        np.clip(y, lo, hi, out=self.line_xy[:, 1])
        y = self.line_xy[:, 1]
        for a, b, _, xy in self.strips:
            xy[: b - a, 1] = y[a:b]
        self.has_peak = peak is not None
        if peak is not None:
            np.clip(peak, lo, hi, out=self.peak_xy[:, 1])
        self.has_data = True
        self.update()

    def boundingRect(self) -> QRectF:  # noqa: N802 (Qt name)
        return self.rect

    def paint(self, painter, *args) -> None:
        if not self.has_data:
            return
        painter.setRenderHint(QPainter.RenderHint.Antialiasing, False)
        painter.setPen(Qt.PenStyle.NoPen)
        painter.setBrush(self.fill_brush)
        for _, _, poly, _ in self.strips:
            painter.drawPolygon(poly)
        painter.setBrush(Qt.BrushStyle.NoBrush)
        painter.setPen(self.curve_pen)
        painter.drawPolyline(self.line_poly)
        if self.has_peak:
            painter.setPen(self.peak_pen)
            painter.drawPolyline(self.peak_poly)
