"""Single-producer single-consumer ring buffer of float32 frames.

Preallocated, power-of-two capacity, monotonic 64-bit-style write/read counters (Python ints, each
written by one side only, so no lock is needed under the GIL). Nothing is lost without a count:

* `drop_oldest` (analysis input): the producer always writes; a consumer that fell behind skips to
  the newest `capacity` frames and counts what it skipped as `overflow` frames.
* `drop_newest` (never overwrite): a write that does not fit stores what fits and counts the rest.
* `block` (file sources, worker -> playback): the producer waits for space (never in a callback).

Reading more than is available is an `underflow`: `read_into(..., zero_fill=True)` pads with
silence and counts the padded frames (playback), otherwise it returns what there is.
"""

from __future__ import annotations

import time

import numpy as np

POLICIES = ("drop_oldest", "drop_newest", "block")


class RingBuffer:
    def __init__(self, capacity: int, channels: int, policy: str = "drop_oldest") -> None:
        if policy not in POLICIES:
            raise ValueError(f"policy must be one of {POLICIES}")
        size = 1 << max(1, int(capacity - 1).bit_length())
        self.capacity = size
        self.mask = size - 1
        self.channels = channels
        self.policy = policy
        self.buf = np.zeros((size, channels), dtype=np.float32)
        self.written = 0  # frames ever written (producer only)
        self.claimed = 0  # frames written or being written right now (producer only)
        self.read = 0  # frames ever consumed or skipped (consumer only)
        self.overflow = 0  # frames lost because the ring was full (producer side count)
        self.skipped = 0  # frames the consumer skipped over (drop_oldest)
        self.underflow = 0  # frames of silence padded on read
        self.closed = False

    # -- producer -------------------------------------------------------------------------------
    def free(self) -> int:
        return self.capacity - (self.written - self.read)

    def write(self, frames: np.ndarray, timeout: float | None = None) -> int:
        """Append frames; returns how many were stored. Safe in an audio callback unless the policy
        is `block`."""
        n = frames.shape[0]
        if self.policy == "drop_newest":
            free = self.free()
            if n > free:
                self.overflow += n - free
                n = free
        elif self.policy == "block":
            deadline = None if timeout is None else time.monotonic() + timeout
            stored = 0
            while stored < n:
                free = self.free()
                if free == 0:
                    if self.closed or (deadline is not None and time.monotonic() > deadline):
                        self.overflow += n - stored
                        return stored
                    time.sleep(0.0005)
                    continue
                k = min(free, n - stored)
                self._put(frames[stored : stored + k])
                stored += k
            return stored
        elif n > self.capacity:  # drop_oldest: only the newest `capacity` frames can survive
            self.overflow += n - self.capacity
            frames = frames[n - self.capacity :]
            n = self.capacity
        self._put(frames[:n])
        return n

    def _put(self, frames: np.ndarray) -> None:
        n = frames.shape[0]
        if n == 0:
            return
        self.claimed = self.written + n  # published before the copy: readers check it after theirs
        start = self.written & self.mask
        first = min(n, self.capacity - start)
        self.buf[start : start + first] = frames[:first]
        if first < n:
            self.buf[: n - first] = frames[first:]
        self.written += n

    # -- consumer -------------------------------------------------------------------------------
    def available(self) -> int:
        return min(self.written - self.read, self.capacity)

    def _catch_up(self) -> None:
        behind = self.written - self.read - self.capacity
        if behind > 0:
            self.skipped += behind
            self.read += behind

    def read_into(self, out: np.ndarray, zero_fill: bool = False) -> int:
        """Copy up to len(out) frames into `out`; returns the number of real frames copied.

        With `zero_fill` the rest of `out` is silence and counted as underflow."""
        want = out.shape[0]
        if self.policy == "drop_oldest":
            self._catch_up()
        n = min(want, self.written - self.read)
        if n > 0:
            start = self.read & self.mask
            first = min(n, self.capacity - start)
            out[:first] = self.buf[start : start + first]
            if first < n:
                out[first:n] = self.buf[: n - first]
            if self.policy == "drop_oldest":
                # The producer may have lapped us while we copied: those frames are corrupt.
                lapped = self.claimed - self.read - self.capacity
                if lapped > 0:
                    bad = min(lapped, n)
                    self.skipped += bad
                    out[: n - bad] = out[bad:n].copy() if n > bad else out[:0]
                    self.read += n
                    n -= bad
                    if zero_fill and n < want:
                        out[n:] = 0.0
                        self.underflow += want - n
                    return n
            self.read += n
        if n < want and zero_fill:
            out[n:] = 0.0
            self.underflow += want - n
        return n

    @property
    def lost(self) -> int:
        """All frames that never reached the consumer."""
        return self.overflow + self.skipped

    def close(self) -> None:
        self.closed = True
