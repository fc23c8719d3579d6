"""The ring buffer with a real producer thread and a real consumer thread, millions of samples."""

import threading

import numpy as np
import pytest

from rtaudio.ring import RingBuffer

TOTAL = 2_000_000


def _produce(ring: RingBuffer, seed: int, pause_every: int = 0) -> None:
    rng = np.random.default_rng(seed)
    sent = 0
    while sent < TOTAL:
        n = int(min(rng.integers(1, 700), TOTAL - sent))
        block = (sent + np.arange(n, dtype=np.float64)).astype(np.float32)[:, None]
        ring.write(block)
        sent += n
    ring.close()


def _consume(ring: RingBuffer, seed: int, out: list, slow: bool) -> None:
    rng = np.random.default_rng(seed)
    buf = np.zeros((1024, 1), np.float32)
    while True:
        n = ring.read_into(buf[: int(rng.integers(1, 1024))])
        if n:
            out.append(buf[:n, 0].astype(np.int64).copy())
        elif ring.closed and ring.available() == 0:
            return
        if slow and rng.random() < 0.01:
            threading.Event().wait(0.001)


def _run(policy: str, slow_consumer: bool) -> tuple[RingBuffer, np.ndarray]:
    # float32 holds integers exactly up to 2**24 > TOTAL, so each sample is its own index.
    ring = RingBuffer(4096, 1, policy)
    got: list = []
    c = threading.Thread(target=_consume, args=(ring, 2, got, slow_consumer))
    p = threading.Thread(target=_produce, args=(ring, 1))
    c.start()
    p.start()
    p.join()
    c.join()
    return ring, np.concatenate(got)


def test_block_policy_delivers_every_sample_once_in_order():
    ring, got = _run("block", slow_consumer=True)
    assert np.array_equal(got, np.arange(TOTAL))
    assert ring.lost == 0


@pytest.mark.parametrize("policy", ["drop_oldest", "drop_newest"])
def test_lossy_policies_count_every_lost_sample(policy):
    ring, got = _run(policy, slow_consumer=True)
    assert np.all(np.diff(got) > 0), "samples arrive in order, never twice"
    assert len(got) + ring.lost == TOTAL, "every sample arrives or is counted as lost"
    assert ring.lost > 0, "the slow consumer must have lost some (the test exercises loss)"


def test_power_of_two_capacity_and_zero_fill_underflow():
    ring = RingBuffer(1000, 2, "drop_oldest")
    assert ring.capacity == 1024
    ring.write(np.ones((10, 2), np.float32))
    out = np.full((16, 2), 7.0, np.float32)
    assert ring.read_into(out, zero_fill=True) == 10
    assert np.all(out[:10] == 1) and np.all(out[10:] == 0)
    assert ring.underflow == 6


def test_drop_oldest_keeps_newest_when_a_write_exceeds_capacity():
    ring = RingBuffer(8, 1, "drop_oldest")
    ring.write(np.arange(20, dtype=np.float32)[:, None])
    out = np.zeros((8, 1), np.float32)
    assert ring.read_into(out) == 8
    assert out[:, 0].tolist() == list(range(12, 20))
    assert ring.lost == 12
