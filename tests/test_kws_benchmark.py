"""The streams of benchmarks/kws.py: every non-keyword clip is heard once before any is heard again,
so that one clip that fools a detector is one false accept, not one per repetition."""

import importlib.util
import sys
from collections import Counter
from pathlib import Path

import numpy as np

_bench = Path(__file__).resolve().parent.parent / "benchmarks"
_spec = importlib.util.spec_from_file_location("kws_bench", _bench / "kws.py")
kb = importlib.util.module_from_spec(_spec)
sys.modules["kws_bench"] = kb  # dataclasses look their module up by name
_spec.loader.exec_module(kb)


def _clips(n: int) -> list[np.ndarray]:
    """Clip i is 800 + 16 i samples of a constant: its length says which clip it is."""
    return [np.full(800 + 16 * i, 0.1, np.float32) for i in range(n)]


def _heard(y: np.ndarray) -> list[int]:
    """The lengths of the clips in a stream, in order (silence between them)."""
    edges = np.diff(np.concatenate([[0], (y != 0).astype(np.int8), [0]]))
    return (np.flatnonzero(edges == -1) - np.flatnonzero(edges == 1)).tolist()


def test_a_shared_deck_deals_every_clip_once_across_streams():
    other = _clips(60)
    rng = np.random.default_rng(0)
    deck = kb.Deck(len(other), rng)
    a, _ = kb.make_stream([], other, rng, 20.0, 0.0, deck)
    b, _ = kb.make_stream([], other, rng, 20.0, 0.0, deck)
    heard = _heard(a) + _heard(b)
    assert len(heard) > 10
    assert len(set(heard)) == len(heard)  # no clip twice, in either stream or across them
    assert deck.rounds == 1 and len(deck.left) == len(other) - len(heard)


def test_a_deck_reshuffles_only_when_spent(capsys):
    deck = kb.Deck(5, np.random.default_rng(1))
    first = [deck.deal() for _ in range(5)]
    assert sorted(first) == list(range(5))
    assert capsys.readouterr().err == ""
    second = [deck.deal() for _ in range(5)]
    assert sorted(second) == list(range(5))
    assert "reusing" in capsys.readouterr().err
    assert max(Counter(first + second).values()) == 2


def test_redecide_fires_once_per_word_at_the_end_of_its_patience():
    """Steps of (silence, unknown, kw0, kw1): kw0 is said twice (steps 20-29 and 80-89); each word
    fires once, on the step its patience runs out, stamped with that step's last sample; a threshold
    above the posteriors fires nothing."""
    post = np.zeros((140, 4))
    post[:, 0] = 1.0
    for a in (20, 80):
        post[a : a + 10, 0], post[a : a + 10, 2] = 0.05, 0.95
    cfg = {
        "keywords": ["a", "b"],
        "stride": 3,
        "decision": {"thresholds": [0.5, 0.5], "smooth": 1, "patience": 2, "refractory": 0.3, "rearm": 0.5},
    }
    events = kb.redecide(post, cfg, None)
    assert [e.label for e in events] == [0, 0]
    assert [e.sample for e in events] == [(step * 3 + 2) * 160 + 400 for step in (21, 81)]
    assert kb.redecide(post, cfg, 0.99) == []
