"""Streaming wavelet-packet denoiser.

Each hop, the last `frame_ms` of input is windowed and decomposed into a full wavelet-packet tree
(bands of `band_hz` or narrower, so the design follows the sample rate). Per band, a causal tracker
follows the noise power (speech-presence MMSE tracking with a minimum-statistics floor, see
`rtaudio.dsp.noise_tracking`; spectral peaks are kept out of it so steady tones pass), and a gain
scales the band's coefficients: decision-directed log-spectral-amplitude (`rtaudio.dsp.suppression`)
by default, or, with `method = "gru"`, a shipped recurrent network (`rtaudio.dsp.gain_net`): one model
for 16 kHz (all bands) and one for 48 kHz, which gives the bands below 8 kHz and leaves the bands
above to the classical gains.
Frames are put back by weighted overlap-add with an asymmetric window pair (Mauler & Martin): a long
analysis window for frequency resolution, a short synthesis window over the last `hop + overlap`
samples only, so the delay is `hop + overlap - 1` samples (9.9 ms by default), not a frame.

`bypass` is live and switches by crossfading to the input delayed by the same latency: no click,
no jump in time. `strength` (0 = untouched, 1 = full), `floor_db` and `adaptation` (noise-tracking
speed) are live too.
"""

from __future__ import annotations

import math

import numpy as np
import pywt

from ..dsp import gain_net
from ..dsp.gain_net import GainNetRunner
from ..dsp.noise_tracking import NoiseTracker
from ..dsp.suppression import DecisionDirectedGain
from ..dsp.wavelet_packet import WaveletPacketBank
from ..errors import AudioFormatError, ConfigError
from ..params import Param
from ..registry import register
from ..stage import AudioFormat, Stage


def asymmetric_windows(n: int, hop: int, overlap: int) -> tuple[np.ndarray, np.ndarray]:
    """Analysis and synthesis windows for frames of `n` at `hop`, whose product is zero but for the
    last `hop + overlap` samples: a flat top with raised-cosine tapers of `overlap` samples, so that
    shifted copies of the product add to one. The analysis window rises slowly over the frame (a
    sine) and falls over the last `overlap` samples; only the product's support adds delay."""
    m = hop + overlap
    taper = 0.5 - 0.5 * np.cos(np.pi * (np.arange(overlap) + 0.5) / overlap)
    product = np.concatenate([taper, np.ones(hop - overlap), taper[::-1]])
    rise_len = n - overlap
    rise = np.sin(0.5 * np.pi * (np.arange(rise_len) + 0.5) / rise_len)
    analysis = np.concatenate([rise, np.sqrt(taper[::-1])])
    synthesis = np.zeros(n)
    synthesis[n - m :] = product / np.maximum(analysis[n - m :], 1e-12)
    return analysis, synthesis


def spectral_peak_guard(noise: np.ndarray, width: int, ratio: float = 4.0) -> np.ndarray:
    """Cap each band of the noise estimate (last axis = bands) at `ratio` times the larger of the
    two minima over the `width` bands on its left and on its right: only a band standing above both
    of its sides (a spectral peak) is lowered.

    A steady tone looks like noise to any tracker; broadband noise has no such isolated peaks, so
    this lets tones through while sloped spectra (pink, brown) are left alone: on a slope a band is
    never above the minimum of its higher side.
    """
    bands = noise.shape[-1]
    pad = np.full((*noise.shape[:-1], width), np.inf)  # beyond the edges: no constraint
    padded = np.concatenate([pad, noise, pad], axis=-1)
    trail = padded[..., : bands + width + 1].copy()  # trail[j] = min(padded[j .. j + width - 1])
    for k in range(1, width):
        np.minimum(trail, padded[..., k : k + bands + width + 1], out=trail)
    left, right = trail[..., :bands], trail[..., width + 1 :]
    return np.minimum(noise, ratio * np.maximum(left, right))


@register
class Denoise(Stage):
    kind = "denoise"
    summary = "Streaming wavelet-packet denoiser (noise tracking + decision-directed gain), ~10 ms."
    params = (
        Param("method", str, "classical", choices=("classical", "gru"),
              help="per-band gains: decision-directed LSA, or the shipped GRU (16 and 48 kHz)"),
        Param("wavelet", str, "db8", help="orthogonal PyWavelets wavelet (db*, sym*, coif*)"),
        Param("band_hz", float, 125.0, min=10.0, max=4000.0, unit="Hz",
              help="widest wavelet-packet band; sets the depth from the sample rate"),
        Param("depth", int, 0, min=0, max=10, help="tree depth; 0 = from band_hz"),
        Param("frame_ms", float, 16.0, min=2.0, max=200.0, unit="ms", help="analysis frame"),
        Param("hop_ms", float, 7.0, min=0.5, max=50.0, unit="ms", help="frame advance"),
        Param("overlap_ms", float, 3.0, min=0.1, max=50.0, unit="ms",
              help="crossfade between frames; latency = hop + overlap - 1 sample"),
        Param("strength", float, 1.0, min=0.0, max=1.0, live=True, help="0 = no change, 1 = full"),
        Param("floor_db", float, -25.0, min=-60.0, max=0.0, unit="dB", live=True,
              help="most attenuation where there is only noise"),
        Param("adaptation", float, 1.0, min=0.1, max=10.0, live=True,
              help="noise-tracking speed (2 = twice as fast)"),
        Param("bypass", bool, False, live=True, help="pass the input, delayed by the same latency"),
        Param("fade_ms", float, 20.0, min=0.0, max=1000.0, unit="ms", help="bypass crossfade"),
    )

    # -- set-up -----------------------------------------------------------------------------------
    def prepare(self, fmt: AudioFormat) -> AudioFormat:
        try:
            wavelet = pywt.Wavelet(self.wavelet)
        except ValueError:
            raise ConfigError(f"{self.where}: wavelet '{self.wavelet}' is not a PyWavelets wavelet") from None
        if not wavelet.orthogonal:
            raise ConfigError(f"{self.where}: wavelet '{self.wavelet}' is not orthogonal")
        rate = fmt.rate
        self.depth_used = self.depth or max(1, math.ceil(math.log2(rate / 2 / self.band_hz)))
        unit = 2**self.depth_used
        self.hop = max(1, round(self.hop_ms * rate / 1000))
        self.overlap = min(self.hop, max(1, round(self.overlap_ms * rate / 1000)))
        n = max(round(self.frame_ms * rate / 1000), self.hop + self.overlap)
        self.n = -(-n // unit) * unit
        if self.n // unit < 2:
            raise AudioFormatError(
                f"{self.where}: frame of {self.n} samples is too short for depth {self.depth_used}"
                f" at {rate} Hz (raise frame_ms or band_hz)"
            )
        self.bank = WaveletPacketBank(self.wavelet, self.depth_used, self.n)
        self.win_a, win_s = asymmetric_windows(self.n, self.hop, self.overlap)
        self.win_s_tail = win_s[self.n - self.hop - self.overlap :]
        self.channels = fmt.channels
        shape = (fmt.channels, self.bank.bands)
        hop_s = self.hop / rate
        self.tracker = NoiseTracker(shape, hop_s, dof=self.bank.width)
        self.peak_width = max(2, round(500.0 / (rate / 2 / self.bank.bands)))  # bands in ~500 Hz
        self.net = self._load_net(fmt) if self.method == "gru" else None
        self.net_bands = self.net.bands if self.net is not None else 0  # bands the network gives
        self.gainer = DecisionDirectedGain((fmt.channels, self.bank.bands - self.net_bands))
        self.fade_step = 1.0 / max(1, round(self.fade_ms * rate / 1000))
        self.on_param_change("adaptation")
        self.reset()
        return fmt

    def _load_net(self, fmt: AudioFormat) -> GainNetRunner:
        if not gain_net.has_model(fmt.rate):
            raise AudioFormatError(
                f"{self.where}: method 'gru' has no model for {fmt.rate} Hz (shipped: "
                + ", ".join(f"{r} Hz" for r in gain_net.SHIPPED_RATES) + "); use method 'classical'"
            )
        try:
            net = gain_net.load(fmt.channels, fmt.rate)
        except ConfigError as e:
            raise ConfigError(f"{self.where}: {e}") from None
        cfg = net.config
        mine = {"rate": fmt.rate, "n": self.n, "hop": self.hop, "overlap": self.overlap,
                "wavelet": self.wavelet, "bands": self.bank.bands}
        wrong = {k: v for k, v in mine.items() if cfg.get(k) != v}
        if not wrong and net.bands > self.bank.bands:
            raise ConfigError(f"{self.where}: the gain network gives {net.bands} bands, more than "
                              f"the {self.bank.bands} of its layout")
        if wrong:
            raise AudioFormatError(
                f"{self.where}: method 'gru' was trained for "
                + ", ".join(f"{k}={cfg.get(k)}" for k in wrong)
                + " but this stage has " + ", ".join(f"{k}={v}" for k, v in wrong.items())
            )
        return net

    @property
    def latency(self) -> int:
        return self.hop + self.overlap - 1 if self.fmt else 0

    def on_param_change(self, name: str) -> None:
        if name == "adaptation" and self.fmt is not None:
            self.tracker.set_speed(self.adaptation)

    def reset(self) -> None:
        c, lat = self.channels, self.latency
        self.hist = np.zeros((c, self.n - self.hop))  # input not yet consumed by a frame (head = zeros)
        self.tail = np.zeros((c, self.overlap))  # the last frame's output beyond its hop
        # finalized output not yet sent; the first frame's first hop ends at sample `overlap`
        self.wet = np.zeros((c, lat - self.overlap))
        self.dry = np.zeros((c, lat))  # the input delayed by the same latency
        self.mix = 0.0 if self.bypass else 1.0
        self.tracker.reset()
        self.gainer.reset()
        if self.net is not None:
            self.net.reset()

    # -- streaming --------------------------------------------------------------------------------
    def process(self, block: np.ndarray) -> np.ndarray:
        frames_in = block.shape[0]
        x = block.T.astype(np.float64)
        self.hist = np.concatenate([self.hist, x], axis=1)
        self.dry = np.concatenate([self.dry, x], axis=1)
        count = (self.hist.shape[1] - self.n) // self.hop + 1
        if count > 0:
            self.wet = np.concatenate([self.wet, self._frames(count)], axis=1)
            self.hist = self.hist[:, count * self.hop :]
        wet, self.wet = self.wet[:, :frames_in], self.wet[:, frames_in:]
        dry, self.dry = self.dry[:, :frames_in], self.dry[:, frames_in:]
        out = self._crossfade(wet, dry)
        return np.ascontiguousarray(out.T, dtype=np.float32)

    def band_powers(self, count: int) -> tuple[np.ndarray, np.ndarray]:
        """Wavelet-packet coefficients `(count, channels, bands, width)` of the next `count` frames
        of the history, and their band powers `(count, channels, bands)`."""
        view = np.lib.stride_tricks.sliding_window_view(self.hist, self.n, axis=1)
        frames = view[:, : (count - 1) * self.hop + 1 : self.hop].transpose(1, 0, 2) * self.win_a
        coeffs = self.bank.analysis(frames)
        return coeffs, np.mean(coeffs * coeffs, axis=-1)

    def track(self, power: np.ndarray) -> np.ndarray:
        """Advance the noise tracker by one frame of band powers; the noise estimate for gains."""
        return spectral_peak_guard(self.tracker.update(power), self.peak_width)

    def _frames(self, count: int) -> np.ndarray:
        """Denoise `count` complete frames from the history; return `count * hop` final samples."""
        coeffs, power = self.band_powers(count)
        gains = np.empty_like(power)
        floor = 10 ** (self.floor_db / 20)
        for i in range(count):
            noise = self.track(power[i])
            if self.net is not None:
                k = self.net_bands
                gains[i, :, :k] = np.maximum(self.net.step(power[i, :, :k], noise[:, :k]), floor)
                if k < gains.shape[-1]:  # above the network's range: the classical gains
                    gains[i, :, k:] = self.gainer.update(power[i, :, k:], noise[:, k:], floor)
            else:
                gains[i] = self.gainer.update(power[i], noise, floor)
        if self.strength != 1.0:
            gains = gains**self.strength
        h, k = self.hop, self.overlap
        tails = self.bank.synthesis(coeffs * gains[..., None])[..., self.n - h - k :]
        tails *= self.win_s_tail  # (count, channels, hop + overlap)
        chunks = tails[..., :h].copy()
        chunks[0, :, :k] += self.tail
        chunks[1:, :, :k] += tails[:-1, :, h:]
        self.tail = tails[-1, :, h:].copy()
        return chunks.transpose(1, 0, 2).reshape(self.channels, count * h)

    def _crossfade(self, wet: np.ndarray, dry: np.ndarray) -> np.ndarray:
        target = 0.0 if self.bypass else 1.0
        n = wet.shape[1]
        if self.mix == target or n == 0:
            if target == 1.0:
                return wet
            return dry if self.mix == 0.0 else dry + self.mix * (wet - dry)
        step = self.fade_step if target > self.mix else -self.fade_step
        ramp = np.clip(self.mix + step * np.arange(1, n + 1), 0.0, 1.0)
        self.mix = float(ramp[-1])
        return dry + ramp * (wet - dry)
