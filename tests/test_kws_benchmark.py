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


def _posteriors_with_two_words() -> tuple[np.ndarray, np.ndarray]:
    """Steps of (silence, unknown, kw0, kw1): kw0 is said twice (steps 20-29 and 80-89); a
    near-miss class for kw0 lights up just after the first (steps 25-33) and never near the second."""
    post = np.zeros((140, 4))
    post[:, 0] = 1.0
    for a in (20, 80):
        post[a : a + 10, 0], post[a : a + 10, 2] = 0.05, 0.95
    near = np.zeros((140, 2))
    near[25:34, 0] = 0.4
    return post, near


def test_a_near_miss_veto_refuses_the_candidate_its_near_class_claims():
    _spec2 = importlib.util.spec_from_file_location("kws_posteriors", _bench / "kws_posteriors.py")
    kp = importlib.util.module_from_spec(_spec2)
    _spec2.loader.exec_module(kp)
    post, near = _posteriors_with_two_words()
    cfg = {
        "keywords": ["a", "b"],
        "stride": 3,
        "decision": {"thresholds": [0.5, 0.5], "smooth": 1, "patience": 2, "refractory": 0.3, "rearm": 0.5},
    }
    plain = kb.redecide(post, cfg, None)
    assert [e.label for e in plain] == [0, 0]
    # the near class rises at step 25, four steps after the first candidate (step 21): a veto that
    # waits 4 steps hears it and refuses the first word; the second word is not touched
    late = kb.redecide(post, cfg, None, kp.near_accept(near, 0.3, 4), 4)
    assert len(late) == 1 and abs(late[0].sample - plain[1].sample) == 4 * 3 * 160
    # one that decides at once does not hear it, and a level above the near class's never refuses
    assert len(kb.redecide(post, cfg, None, kp.near_accept(near, 0.3, 0), 0)) == 2
    assert len(kb.redecide(post, cfg, None, kp.near_accept(near, 0.5, 4), 4)) == 2
