"""Off-policy evaluation: what a candidate policy would add against doing nothing, estimated on logged,
randomised assignments (each with the probability the logging process gave it: its propensity).

The value measured is the one nextbest decides on: per decision, the increment of the chosen option against
sending nothing, in currency, net of its cost (``no_action`` is worth 0). Each action values outcomes by its own
objective, so the increment of action ``a`` is ``R_a(a) - R_a(nothing)``: the outcome of sending ``a`` net of its
incentive and cost, minus the outcome without contact valued as ``a`` values it. For a candidate ``pi``::

    V(pi) = E_x[ sum_a pi(a|x) (E[R_a(a) | x] - E[R_a(nothing) | x]) ]

Both terms are estimated from the log: the first on the rows that received an action, the second on the rows
that received nothing (control members and every no_action decision), each weighted by what the candidate would
have done over what the log did. Per logged row ``i`` with logged propensity ``mu_i`` and ``p_i`` the candidate's
probability of the logged option:

* a row that received action ``a`` has weight ``w_i = p_i / mu_i`` and adds ``w_i r_i``, ``r_i`` its outcome net of
  incentive and cost;
* a row that received nothing has weight ``w_i = (1 - p_i) / mu_i`` (the candidate would have sent something) and
  subtracts ``w_i r_i``, ``r_i`` its outcome valued as the candidate's action would value it.

Estimators, each with a bootstrap 95% interval (rows resampled) and the effective sample size
``(sum w)^2 / sum w^2``:

* **IPS** - the mean of the signed, weighted rewards; unbiased when every option the candidate may pick had a
  positive propensity.
* **SNIPS** (self-normalised) - each of the two terms as a weighted mean (``sum w r / sum w``), multiplied by the
  candidate's estimated share of sends (both terms' mean weight): slightly biased, much less variable when weights
  are large.
* **DR** (doubly robust) - an outcome model's increment of the candidate's option, ``q_increment``, corrected by
  the weighted residuals of the logged rows against the model's outcome of the logged option, ``q_logged``:
  unbiased when the propensities are right, whatever the model; small variance when the model is good.

A candidate that picks options the log never tried has no support there: the estimates cannot see those options'
effects. Such rows are counted (``unsupported``) and reported with a warning.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

ESTIMATORS = ("ips", "snips", "dr")
BOOTSTRAP = 500  # resamples for the 95% intervals


@dataclass
class Estimate:
    value: float  # increment per logged decision against doing nothing, in currency
    low: float  # bootstrap 95% interval
    high: float

    def as_dict(self) -> dict:
        return {"value": self.value, "low": self.low, "high": self.high}


@dataclass
class PolicyValue:
    """One candidate's estimated value on a log: IPS, SNIPS and DR with their intervals."""

    n: int  # logged rows
    estimates: dict[str, Estimate]
    ess: float  # effective sample size of the importance weights
    matched: int  # rows whose logged option the candidate would choose (weight > 0)
    unsupported: int  # rows where the candidate picks an option the log never tried
    warnings: list[str] = field(default_factory=list)

    @property
    def dr(self) -> Estimate:
        return self.estimates["dr"]

    def as_dict(self) -> dict:
        return {"n": self.n, **{k: e.as_dict() for k, e in self.estimates.items()}, "ess": self.ess,
                "matched": self.matched, "unsupported": self.unsupported, "warnings": list(self.warnings)}


def weights(propensity: np.ndarray, nothing: np.ndarray, p_logged: np.ndarray) -> np.ndarray:
    """Importance weight of each logged row (see the module docstring)."""
    mu = np.asarray(propensity, float)
    if np.any(~(mu > 0)) or np.any(mu > 1):
        raise ValueError("propensity: every logged row needs a propensity in (0, 1]")
    p = np.clip(np.asarray(p_logged, float), 0.0, 1.0)
    return np.where(nothing, 1.0 - p, p) / mu


def _terms(propensity: np.ndarray, nothing: np.ndarray, p_logged: np.ndarray, reward: np.ndarray,
           q_logged: np.ndarray | None = None, q_increment: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Per row [n, 6], the terms whose sums give every estimator: IPS, DR, then the weighted rewards and weights
    of the rows that received an action and of those that received nothing (SNIPS); and the weights [n]."""
    nothing = np.asarray(nothing, bool)
    n = len(nothing)
    w = weights(propensity, nothing, p_logged)
    r = np.nan_to_num(np.asarray(reward, float))
    q_logged = np.zeros(n) if q_logged is None else np.nan_to_num(np.asarray(q_logged, float))
    q_increment = np.zeros(n) if q_increment is None else np.nan_to_num(np.asarray(q_increment, float))
    sign = np.where(nothing, -1.0, 1.0)
    wr = w * r
    terms = np.column_stack([sign * wr, q_increment + sign * w * (r - q_logged),
                             wr * ~nothing, w * ~nothing, wr * nothing, w * nothing])
    return terms, w


def _estimators(sums: np.ndarray, n: int) -> np.ndarray:
    """IPS, SNIPS and DR [..., 3] from the terms' sums over n rows [..., 6]."""
    ips, dr = sums[..., 0] / n, sums[..., 1] / n
    wrt, wt, wrc, wc = sums[..., 2], sums[..., 3], sums[..., 4], sums[..., 5]
    share = (wt + wc) / (2 * n)  # the candidate's share of sends, estimated by both terms
    with np.errstate(invalid="ignore", divide="ignore"):
        snips = share * (wrt / wt - wrc / wc)  # one term without support: NaN
    snips = np.where(wt + wc == 0, 0.0, snips)  # never sends: worth nothing
    return np.stack([ips, snips, dr], axis=-1)


def _resampled_sums(terms: np.ndarray, n_boot: int, seed: int, chunk_cells: int = 4_000_000) -> np.ndarray:
    """The column sums of `terms` [n, k] over `n_boot` resamples of its rows [n_boot, k]: each resample's row counts
    times the terms, in chunks of about `chunk_cells` counts."""
    n = len(terms)
    rng = np.random.default_rng(seed)
    step = max(1, chunk_cells // max(n, 1))
    out = []
    for lo in range(0, n_boot, step):
        b = min(step, n_boot - lo)
        idx = rng.integers(0, n, (b, n)) + (np.arange(b) * n)[:, None]
        counts = np.bincount(idx.ravel(), minlength=b * n).reshape(b, n).astype(float)
        out.append(counts @ terms)
    return np.concatenate(out) if out else np.full((0, terms.shape[1]), np.nan)


def _interval(samples: np.ndarray) -> tuple[float, float]:
    ok = samples[np.isfinite(samples)]
    if len(ok) < 0.9 * len(samples):
        return float("nan"), float("nan")
    lo, hi = np.quantile(ok, [0.025, 0.975])
    return float(lo), float(hi)


def estimate(propensity: np.ndarray, nothing: np.ndarray, p_logged: np.ndarray, reward: np.ndarray,
             q_logged: np.ndarray | None = None, q_increment: np.ndarray | None = None,
             unsupported: np.ndarray | None = None, n_boot: int = BOOTSTRAP, seed: int = 0) -> PolicyValue:
    """IPS, SNIPS and DR estimates of a candidate's value against doing nothing, per logged row.

    ``propensity``: the logging probability of each row's logged option; ``nothing``: the logged option is
    no_action; ``p_logged``: the candidate's probability of choosing the logged option (0/1 for a deterministic
    candidate); ``reward``: the row's outcome net of incentive and cost for an action, or, for nothing, its
    outcome without contact valued as the candidate's option would value it. ``q_logged``: the outcome model's
    prediction of ``reward``; ``q_increment``: the model's increment of the candidate's choice at the row
    (expected over the candidate's probabilities); without them DR is IPS. ``unsupported``: rows where the
    candidate picks an option the log never tried.
    """
    terms, w = _terms(propensity, nothing, p_logged, reward, q_logged, q_increment)
    n = len(w)
    point = _estimators(terms.sum(axis=0), n)
    boot = _estimators(_resampled_sums(terms, n_boot, seed), n) if n else np.full((0, 3), np.nan)
    estimates = {}
    for k, name in enumerate(ESTIMATORS):
        lo, hi = _interval(boot[:, k]) if len(boot) else (float("nan"), float("nan"))
        estimates[name] = Estimate(float(point[k]), lo, hi)
    ess = float(w.sum() ** 2 / (w ** 2).sum()) if (w > 0).any() else 0.0
    bad = int(np.asarray(unsupported, bool).sum()) if unsupported is not None else 0
    warnings = []
    if bad:
        warnings.append(f"no support: on {bad:,} of {n:,} logged decisions the candidate picks an option the log "
                        "never tried; the estimates cannot see what those options do")
    if 0 < ess < 100:
        warnings.append(f"effective sample size {ess:.0f}: too few logged decisions match the candidate for a "
                        "reliable estimate")
    return PolicyValue(n, estimates, ess, int((w > 0).sum()), bad, warnings)


@dataclass
class Comparison:
    """A challenger against the champion on the same logged decisions (doubly robust, paired)."""

    champion: float  # DR value per logged decision
    challenger: float
    difference: float  # challenger - champion
    low: float  # paired bootstrap 95% interval of the difference
    high: float
    margin: float
    n: int
    better: bool  # the interval's lower bound is above the margin

    @property
    def reason(self) -> str:
        verdict = "beats" if self.better else "does not beat"
        return (f"doubly robust value per logged decision {self.challenger:.4f} against the champion's "
                f"{self.champion:.4f} on the same {self.n:,} logged decisions: difference {self.difference:+.4f}, "
                f"95% interval [{self.low:+.4f}, {self.high:+.4f}]; the challenger {verdict} the champion by the "
                f"margin {self.margin:g} (the interval's lower bound must be above it)")

    def as_dict(self) -> dict:
        return {k: getattr(self, k) for k in ("champion", "challenger", "difference", "low", "high", "margin", "n",
                                              "better")} | {"reason": self.reason}


def compare(champion: dict, challenger: dict, margin: float, n_boot: int = BOOTSTRAP, seed: int = 0) -> Comparison:
    """Whether `challenger` beats `champion` (each the keyword arguments of :func:`estimate` for the same logged
    rows) by `margin` per decision: the doubly robust difference with a paired bootstrap interval (the same rows
    resampled for both), better only when the interval's lower bound is above the margin."""
    keys = ("propensity", "nothing", "p_logged", "reward", "q_logged", "q_increment")
    per_row = [_terms(**{k: t[k] for k in keys if k in t})[0][:, 1] for t in (champion, challenger)]  # DR per row
    diff = (per_row[1] - per_row[0])[:, None]
    n = len(diff)
    low, high = _interval(_resampled_sums(diff, n_boot, seed)[:, 0] / n) if n else (float("nan"), float("nan"))
    champ, chal = float(per_row[0].mean()), float(per_row[1].mean())
    return Comparison(champ, chal, chal - champ, low, high, margin, n, bool(np.isfinite(low) and low > margin))
