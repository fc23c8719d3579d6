"""The live monitor window (pyqtgraph + PyQt6). Qt is imported only when a window is opened."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..engine import Engine


def run_gui(engine: Engine, snapshot: str | None = None, seconds: float | None = None) -> None:
    """Open the monitor window for `engine`, run it until the window closes (or, with `snapshot`,
    until `seconds` of audio are drawn and the PNG is written), then stop the engine."""
    from .gui import run_gui as _run

    _run(engine, snapshot=snapshot, seconds=seconds)


__all__ = ["run_gui"]
