"""Scrolling spectrogram: float32 dB history plus its colour image, only new columns written.

Memory is row-major `(rows, 2 * n_cols)`: row r is log-frequency cell r (lowest first), column c
is a time slot. Each new time column is written twice (at c mod n and c mod n + n, friture's trick)
so the newest `n_cols` columns are always one contiguous rectangle of the image, drawn with a
single `drawImage` from a sub-rectangle. Colours come from a 256-entry LUT with explicit levels;
only the new columns are coloured, never the whole image.
"""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PyQt6.QtCore import QRectF
from PyQt6.QtGui import QImage


class Spectrogram:
    def __init__(self, rows: int, n_cols: int, spc: float, levels: tuple[float, float],
                 lut: np.ndarray) -> None:
        self.rows, self.n, self.spc = rows, n_cols, spc
        self.data = np.full((rows, 2 * n_cols), levels[0], dtype=np.float32)
        self.rgb = np.zeros((rows, 2 * n_cols), dtype=np.uint32)
        lut = np.asarray(lut, dtype=np.uint32)
        if lut.shape != (256, 3):
            raise ValueError("the colour map must have 256 RGB entries")
        self.lut32 = (0xFF000000 | (lut[:, 0] << 16) | (lut[:, 1] << 8) | lut[:, 2]).astype(np.uint32)
        self.cur: int | None = None
        self.set_levels(levels)

    def set_levels(self, levels: tuple[float, float]) -> None:
        """New colour levels: the one time every column is recoloured."""
        self.lo, hi = levels
        self.k = 255.0 / (hi - self.lo)
        self.rgb[:] = self.colour(self.data)

    def colour(self, values: np.ndarray) -> np.ndarray:
        idx = np.clip((values - self.lo) * self.k, 0, 255).astype(np.uint8)
        return self.lut32[idx]

    def _write(self, col: int, values: np.ndarray) -> None:
        r = col % self.n
        rgb = self.colour(values)
        self.data[:, r] = values
        self.data[:, r + self.n] = values
        self.rgb[:, r] = rgb
        self.rgb[:, r + self.n] = rgb

    def add(self, center_sample: float, values: np.ndarray) -> None:
        """A spectrum (one value per row) for the frame centred on `center_sample`."""
        c = int(center_sample // self.spc)
        if self.cur is None or c > self.cur:
            first = c if self.cur is None else max(self.cur + 1, c - self.n + 1)
            for col in range(first, c + 1):
                self._write(col, values)
            self.cur = c
        elif c == self.cur:  # several frames in one column: keep the loudest
            self._write(c, np.maximum(self.data[:, c % self.n], values))

    @property
    def start(self) -> int:
        """Memory column of the oldest shown time slot."""
        return (self.cur % self.n) + 1 if self.cur is not None else 0

    def view(self) -> np.ndarray:
        """The shown dB values, oldest column first (a view, no copy)."""
        return self.data[:, self.start : self.start + self.n]


class SpectrogramItem(pg.GraphicsObject):
    """Draws the newest `n_cols` columns of a Spectrogram into `rect` (view coordinates)."""

    def __init__(self, sg: Spectrogram, rect: QRectF) -> None:
        super().__init__()
        self.sg, self.rect = sg, rect
        self.qimage = pg.functions.ndarray_to_qimage(sg.rgb, QImage.Format.Format_RGB32)

    def boundingRect(self) -> QRectF:  # noqa: N802 (Qt name)
        return self.rect

    def paint(self, painter, *args) -> None:
        sg = self.sg
        painter.drawImage(self.rect, self.qimage, QRectF(sg.start, 0, sg.n, sg.rows))
