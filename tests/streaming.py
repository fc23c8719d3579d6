"""Helpers for streaming-exactness tests: run a stage over a signal in given blocks."""

from __future__ import annotations

import numpy as np
from hypothesis import strategies as st

from rtaudio.bus import Bus
from rtaudio.stage import AudioFormat, Stage


def run_blocks(stage: Stage, x: np.ndarray, sizes: list[int], rate: int) -> tuple[np.ndarray, list]:
    """Feed `x` to a freshly set-up `stage` in blocks of `sizes` (the rest in one last block)."""
    bus = Bus()
    sub = bus.subscribe(None, maxlen=10**9)
    stage.setup(AudioFormat(rate, x.shape[1], max(1, x.shape[0])), bus)
    outs, i = [], 0
    for n in sizes:
        outs.append(stage.run(x[i : i + n]))
        i += n
        if i >= x.shape[0]:
            break
    outs.append(stage.run(x[i:]))
    outs.append(stage.run(x[:0]))
    return np.concatenate(outs), sub.drain()


def partitions(max_len: int = 600):
    """Block sizes including 0 and 1."""
    return st.lists(st.one_of(st.just(0), st.just(1), st.integers(0, max_len)), max_size=40)


def signals(min_len: int = 0, max_len: int = 4000, channels: tuple[int, ...] = (1, 2)):
    return st.builds(
        lambda n, ch, seed: np.random.default_rng(seed)
        .uniform(-1, 1, (n, ch))
        .astype(np.float32),
        st.integers(min_len, max_len),
        st.sampled_from(channels),
        st.integers(0, 2**31),
    )
