"""Off-policy estimators on synthetic logs whose truth is known: unbiased within their intervals, intervals that
cover the truth, doubly robust steadier than IPS, no support counted."""

from __future__ import annotations

import numpy as np
import pytest

from analysis.ope import estimate, weights

VALUE = np.array([0.3, 0.3, 2.0])  # currency per unit of each action's objective (the third counts otherwise)
COST = np.array([0.01, 0.05, 0.02])
CONTROL, EXPLORE = 0.10, 0.20


def world(n: int, rng):
    """Customers: a segment, a score, their outcome without contact (units) and each action's true increment."""
    g = rng.integers(0, 4, n)
    z = rng.normal(size=n)
    base = np.exp(0.5 + 0.3 * z) + g
    tau = np.column_stack([0.4 + 0.5 * z, np.where(g == 2, 1.2, -0.3), 0.05 + 0.04 * g])
    eligible = np.column_stack([np.ones(n, bool), np.ones(n, bool), g >= 1])
    return g, z, base, tau, eligible


def net(tau, eligible):
    """Each action's true increment in currency net of cost, -inf where not eligible."""
    return np.where(eligible, VALUE * tau - COST, -np.inf)


def best(values: np.ndarray) -> np.ndarray:
    """The option worth most, -1 (nothing) unless one is worth more than 0."""
    a = values.argmax(axis=1)
    return np.where(values[np.arange(len(a)), a] > 0, a, -1)


def candidates(z, tau, eligible) -> dict[str, np.ndarray]:
    return {"oracle": best(net(tau, eligible)),
            "always_first": np.zeros(len(z), int),
            "score_ranked": np.where(z > 0, 1, -1),
            "nothing": np.full(len(z), -1)}


def true_values(n: int = 2_000_000) -> dict[str, float]:
    g, z, base, tau, eligible = world(n, np.random.default_rng(123))
    inc = net(tau, eligible)
    return {k: float(np.where(d >= 0, inc[np.arange(n), np.maximum(d, 0)], 0.0).mean())
            for k, d in candidates(z, tau, eligible).items()}


def log(n: int, rng, noise: float = 1.5):
    """A log written like nextbest writes it: a control group, then greedy decisions on a noisy estimate with a
    share explored uniformly among the eligible options (nothing included), each with its propensity."""
    g, z, base, tau, eligible = world(n, rng)
    rows = np.arange(n)
    greedy = best(net(tau + rng.normal(0, 0.5, tau.shape), eligible))
    k = eligible.sum(axis=1) + 1
    control = rng.random(n) < CONTROL
    explored = (rng.random(n) < EXPLORE) & ~control
    draw = (rng.random(n) * k).astype(int)  # k - 1: nothing
    position = (np.cumsum(eligible, axis=1) > draw[:, None]).argmax(axis=1)  # the draw-th eligible option
    drawn = np.where(draw < k - 1, position, -1)
    option = np.where(control, -1, np.where(explored, drawn, greedy))
    prop = (1 - CONTROL) * ((1 - EXPLORE) * (option == greedy) + EXPLORE / k) + CONTROL * (option < 0)
    units = base + np.where(option >= 0, tau[rows, np.maximum(option, 0)], 0.0) + rng.normal(0, noise, n)
    return {"g": g, "z": z, "base": base, "tau": tau, "eligible": eligible, "option": option, "propensity": prop,
            "units": units}


def terms(lg, d: np.ndarray, model_error: float = 0.1):
    """What the estimators read for a deterministic candidate `d`, with an outcome model off by `model_error`."""
    o, n = lg["option"], len(lg["option"])
    rows = np.arange(n)
    nothing = o < 0
    p_logged = np.where(nothing, d < 0, d == o).astype(float)
    value_of = lambda a: VALUE[np.maximum(a, 0)] * (a >= 0)  # noqa: E731
    cost_of = lambda a: COST[np.maximum(a, 0)] * (a >= 0)  # noqa: E731
    reward = np.where(nothing, value_of(d) * lg["units"], value_of(o) * lg["units"] - cost_of(o))
    base_hat = lg["base"] * (1 + model_error)
    tau_hat = lg["tau"] * (1 - model_error) + model_error
    inc_hat = lambda a: np.where(a >= 0, value_of(a) * tau_hat[rows, np.maximum(a, 0)] - cost_of(a), 0.0)  # noqa: E731
    q_logged = np.where(nothing, value_of(d) * base_hat, value_of(o) * base_hat + inc_hat(o))
    return dict(propensity=lg["propensity"], nothing=nothing, p_logged=p_logged, reward=reward, q_logged=q_logged,
                q_increment=inc_hat(d))


@pytest.fixture(scope="module")
def truth():
    return true_values()


@pytest.fixture(scope="module")
def repeated(truth):
    """100 logs of 4,000 decisions: every candidate estimated on each."""
    rng = np.random.default_rng(7)
    out = {k: [] for k in truth}
    for rep in range(100):
        lg = log(4000, rng)
        for name, d in candidates(lg["z"], lg["tau"], lg["eligible"]).items():
            out[name].append(estimate(**terms(lg, d), n_boot=200, seed=rep))
    return out


@pytest.mark.parametrize("estimator", ["ips", "snips", "dr"])
def test_estimates_are_unbiased_and_their_intervals_cover_the_truth(repeated, truth, estimator):
    for name in ("oracle", "always_first", "score_ranked"):
        est = np.array([r.estimates[estimator].value for r in repeated[name]])
        lo = np.array([r.estimates[estimator].low for r in repeated[name]])
        hi = np.array([r.estimates[estimator].high for r in repeated[name]])
        t = truth[name]
        assert abs(est.mean() - t) < 3.5 * est.std(ddof=1) / np.sqrt(len(est)), (name, est.mean(), t)
        coverage = ((lo <= t) & (t <= hi)).mean()
        assert coverage >= 0.87, (name, coverage)  # nominal 95%; 3.5 standard errors of 100 repetitions below


def test_doubly_robust_is_steadier_than_ips(repeated):
    for name in ("oracle", "always_first", "score_ranked"):
        ips = np.std([r.estimates["ips"].value for r in repeated[name]])
        dr = np.std([r.estimates["dr"].value for r in repeated[name]])
        assert dr < 0.8 * ips, (name, dr, ips)


def test_doing_nothing_is_worth_nothing(repeated):
    for r in repeated["nothing"]:
        assert all(e.value == 0 and e.low == 0 and e.high == 0 for e in r.estimates.values())
        assert r.ess == 0


def test_the_candidates_are_ranked_like_the_truth(repeated, truth):
    mean = {k: np.mean([r.dr.value for r in v]) for k, v in repeated.items()}
    assert sorted(mean, key=mean.get) == sorted(truth, key=truth.get)


def test_effective_sample_size_and_no_support():
    rng = np.random.default_rng(1)
    n = 1000
    even = estimate(np.full(n, 0.5), np.zeros(n, bool), np.ones(n), rng.normal(size=n), n_boot=50)
    assert even.ess == pytest.approx(n)  # equal weights: every row counts
    lg = log(3000, rng)
    d = np.full(3000, 2)  # the third action for everyone: ineligible (never tried) in segment 0
    unsupported = (lg["g"] == 0)
    r = estimate(**terms(lg, d), unsupported=unsupported, n_boot=50)
    assert r.unsupported == int(unsupported.sum()) > 0
    assert any("no support" in w for w in r.warnings)
    assert 0 < r.ess < r.matched <= 3000


def test_a_row_without_propensity_is_refused():
    with pytest.raises(ValueError, match="propensity"):
        weights(np.array([0.5, 0.0]), np.zeros(2, bool), np.ones(2))


def test_logged_rows_as_the_estimators_read_them():
    """A send the candidate repeats counts its outcome net of cost; a no_action row where the candidate sends
    counts the outcome without contact valued as the candidate's action values it; support is judged within a
    campaign of several rows, across the log for one-row campaigns (the product's own decisions)."""
    import pandas as pd

    from analysis.evaluation.logged import Logged, candidate_terms
    from analysis.evaluation.policies import Choice
    from nextbest.settings import DEFAULT_CONFIG_DIR, load_settings

    s = load_settings(DEFAULT_CONFIG_DIR, environ={})
    acts = list(s.actions)
    cross = acts.index("cross_sell")
    frame = pd.DataFrame({
        "campaign_id": ["d1", "d2", "d3", "camp", "camp"], "propensity": [0.5, 0.2, 0.1, 0.4, 0.1],
        "y": [12.0, 3.0, np.nan, 7.0, np.nan],
        **{f"y_{a}": [np.nan, np.nan, 9.0, np.nan, 4.0] for a in acts}})
    email, push = 0, 2
    log = Logged(frame, np.array([cross, cross, -1, cross, -1]), np.array([email, push, -1, email, -1]),
                 np.full(5, 2))
    choice = Choice(np.array([cross, cross, cross, cross, cross], np.int16),
                    np.array([email, email, email, push, push], np.int8), np.full(5, 10, np.int8))
    t = candidate_terms(s, log, choice, lambda a, c: np.where(a >= 0, 1.5, 0.0), np.full((5, len(acts)), 2.0),
                        log.tried())
    cost = s.actions["cross_sell"].cost
    assert list(t["p_logged"]) == [1, 0, 0, 0, 0]  # row 3: the candidate sends, so it is not the logged no_action
    assert t["reward"][0] == pytest.approx(12.0 - cost["email"]) and t["reward"][2] == 9.0
    assert list(t["nothing"]) == [False, False, True, False, True]
    assert t["q_logged"][0] == pytest.approx(2.0 + 1.5) and t["q_logged"][2] == 2.0
    assert list(t["q_increment"]) == [1.5] * 5
    # the product's decisions: cross_sell by e-mail was tried in the log; the campaign never tried push
    assert list(t["unsupported"]) == [False, False, False, True, True]


def test_the_gate_refuses_a_worse_challenger_and_promotes_a_better_one(truth):
    """On one log of 40,000 decisions: the worse policy as challenger is refused, with both estimates and the
    difference's interval in the reason; the better one is promoted; a margin above the gain refuses it too."""
    from analysis.ope import compare

    lg = log(40_000, np.random.default_rng(3))
    c = candidates(lg["z"], lg["tau"], lg["eligible"])
    good, bad = terms(lg, c["oracle"]), terms(lg, c["always_first"])
    worse = compare(good, bad, margin=0.0, n_boot=300)
    assert not worse.better and worse.difference < 0 and worse.high < 0
    assert f"{worse.challenger:.4f}" in worse.reason and f"{worse.champion:.4f}" in worse.reason
    assert f"[{worse.low:+.4f}, {worse.high:+.4f}]" in worse.reason and "does not beat" in worse.reason
    better = compare(bad, good, margin=0.0, n_boot=300)
    assert better.better and better.low > 0 and "beats the champion" in better.reason
    assert better.difference == pytest.approx(truth["oracle"] - truth["always_first"], abs=3 * (better.high - better.low) / 4)
    assert not compare(bad, good, margin=better.high + 0.01, n_boot=300).better
