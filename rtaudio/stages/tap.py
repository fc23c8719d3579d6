"""The `tap` stage: a side chain that analyses a copy of the audio while the audio passes untouched.

`tap chain="resample rate=16000 ! kws"` runs keyword spotting (or any analysis) on the stream without
putting the side chain's latency on the main path: a duplex pipeline input -> tap -> output keeps the
device's round trip, with the keyword events on the bus as usual. The side chain's audio output is
discarded; its messages carry sample indices at its own rate, as in a linear chain.
"""

from __future__ import annotations

import numpy as np

from ..errors import ConfigError
from ..params import Param
from ..registry import register
from ..stage import AudioFormat, Stage


@register
class Tap(Stage):
    kind = "tap"
    summary = "Runs a side chain (e.g. 'resample rate=16000 ! kws') on a copy; audio passes, zero latency."
    params = (Param("chain", str, "", help="the side chain's stages, gst-launch style ('a k=v ! b')"),)

    def __init__(self, where: str | None = None, **values) -> None:
        super().__init__(where, **values)
        from ..pipeline import parse_chain

        spec = parse_chain(self.chain, f"{self.where}: chain") if self.chain.strip() else None
        if spec is None or spec.source is not None or spec.sinks or not spec.stages:
            raise ConfigError(f"{self.where}: key 'chain' must list stages only, e.g. "
                              f"'resample rate=16000 ! kws' (got {self.chain!r})")
        self.side: list[Stage] = [s.build("stage") for s in spec.stages]

    def prepare(self, fmt: AudioFormat) -> AudioFormat:
        f = fmt
        for i, st in enumerate(self.side):
            f = st.setup(f, self.bus, f"{self.name}.{i}.{st.kind}")
        return fmt

    def reset(self) -> None:
        for st in self.side:
            st.restart()

    def process(self, block: np.ndarray) -> np.ndarray:
        x = block
        for st in self.side:
            x = st.run(x)
        return block
