"""The HMM recipe's model fitting: the filler recovers the density it is trained on."""

import numpy as np
import pytest

from rtaudio.hmm.decoder import StreamingForward
from rtaudio.hmm.train import train_filler


def _two_blobs(rng, n):
    centre = np.where(rng.random(n) < 0.3, -2.0, 2.0)[:, None]
    return centre + rng.normal(0, 0.5, (n, 3))


def _true_loglik(X):
    def comp(mu, w):
        return np.log(w) - 0.5 * (((X - mu) / 0.5) ** 2).sum(1) - 3 * np.log(0.5 * np.sqrt(2 * np.pi))

    return np.logaddexp(comp(-2.0, 0.3), comp(2.0, 0.7))


@pytest.mark.parametrize("n_states", [1, 2])
def test_filler_learns_the_density_of_its_frames(n_states):
    rng = np.random.default_rng(0)
    model = train_filler(_two_blobs(rng, 20_000), n_states=n_states, n_mix=2, n_iter=30, seed=0)
    test = _two_blobs(rng, 5_000)
    fwd = StreamingForward(model)
    got = fwd.push(test).mean()
    # within 0.05 nats per frame of the true density (one Gaussian instead of two: 3.4 nats worse)
    assert abs(got - _true_loglik(test).mean()) < 0.05
    assert model.name == "filler" and model.n_states == n_states
