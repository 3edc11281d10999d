"""Send time: a prior over the engagement hour, updated by the hours the customer did engage at."""

from __future__ import annotations

import numpy as np

from nextbest.hours import EVIDENCE_INPUTS, KAPPAS, evidence_counts, hour_kernel, hour_posterior
from nextbest.model_contract import Head


def peaked(hour: int, n: int = 1, width: float = 2.0) -> np.ndarray:
    """A prior like the booster's: most mass around `hour`, some everywhere."""
    d = np.exp(-0.5 * ((np.arange(24) - hour + 12) % 24 - 12) ** 2 / width ** 2)
    return np.tile(0.5 * d / d.sum() + 0.5 / 24, (n, 1))


def test_kernel_rows_are_distributions_centred_on_the_preferred_hour():
    K = hour_kernel(1.5)
    assert K.shape == (96, 24) and np.allclose(K.sum(axis=1), 1)
    assert K[4 * 20 + 2].argmax() == 20  # preferred 20:37 -> most engagements in the 20:00 hour
    assert K[4 * 20 + 2, 20] > hour_kernel(0.5)[4 * 20 + 2, 20]  # more concentrated, more in its own hour


def test_own_hours_outweigh_the_prior_and_grow_with_their_number():
    prior = peaked(9, 4)
    counts = np.zeros((4, 24))
    counts[1, 20] = 1
    counts[2, 20] = 30
    counts[3, [19, 20, 21]] = [3, 10, 4]
    post = hour_posterior(prior, counts, 1.5)
    assert np.allclose(post.sum(axis=1), 1)
    assert post[0].argmax() == 9  # no history: the prior's peak
    assert post[2].argmax() == 20 and post[3].argmax() == 20  # tens of engagements at 20:00 win over the prior
    assert post[0, 20] < post[1, 20] < post[2, 20]  # one engagement moves it, thirty settle it


def test_missing_history_reads_as_none():
    ev = np.full((2, EVIDENCE_INPUTS), np.nan)
    ev[1, 20], ev[1, 24] = 1.0, 12  # all of 12 engagements at 20:00
    counts = evidence_counts(ev)
    assert counts[0].sum() == 0 and counts[1, 20] == 12 and counts[1].sum() == 12
    post = hour_posterior(peaked(9, 2), counts, 1.5)
    assert post[0].argmax() == 9 and post[1].argmax() == 20


def test_training_chooses_the_concentration_the_hours_show():
    from training.models import hour_concentration

    rng = np.random.default_rng(3)
    chosen = {}
    for kappa in (0.5, 3.0):
        n = 4000
        pref = rng.uniform(0, 24, n)
        draw = lambda k: np.floor(np.mod(pref[:, None] + rng.vonmises(0, kappa, (n, k)) * 24 / (2 * np.pi), 24))  # noqa: E731
        past, y = draw(20).astype(int), draw(1)[:, 0]
        counts = np.zeros((n, 24))
        np.add.at(counts, (np.repeat(np.arange(n), 20), past.ravel()), 1)
        evidence = np.hstack([counts / 20, np.full((n, 1), 20)])
        chosen[kappa] = hour_concentration(np.full((n, 24), 1 / 24), evidence, y)
    assert chosen[0.5] in KAPPAS and chosen[0.5] <= 1.0 and chosen[3.0] >= 2.0, chosen


def test_a_send_time_head_reads_its_booster_on_all_but_the_evidence(tmp_path):
    import lightgbm as lgb

    rng = np.random.default_rng(0)
    X = rng.random((2400, 3))
    y = np.tile(np.arange(24), 100)
    booster = lgb.train({"objective": "multiclass", "num_class": 24, "verbosity": -1, "num_leaves": 4},
                        lgb.Dataset(X, y), num_boost_round=3)
    evidence = np.zeros((2, EVIDENCE_INPUTS))
    evidence[1, 7], evidence[1, 24] = 1.0, 40
    rows = np.hstack([X[:2], evidence]).astype(np.float32)
    head = Head("send_time", booster, ["a", "b", "c", *(f"e{k}" for k in range(EVIDENCE_INPUTS))], None,
                hour_kappa=1.5)
    dist = head.predict(rows)
    prior = booster.predict(X[:2].astype(np.float32))
    np.testing.assert_allclose(dist[0], hour_posterior(prior[:1], np.zeros((1, 24)), 1.5)[0], atol=1e-6)
    assert dist[1].argmax() == 7 and np.allclose(dist.sum(axis=1), 1)
    if head.compile(tmp_path / "st.so"):  # compiled trees read the same inputs
        np.testing.assert_allclose(head.predict(rows), dist, atol=1e-6)
