"""A customer's engagement hours: a prior over the local hour they engage at, updated by the hours they did.

The send-time head's LightGBM prior says when customers *like this one*
engage (segment, region, sector, channel habits...). A customer's own history
then says when *they* do: engagement hours scatter around a preferred hour
(a von Mises distribution on the 24-hour circle, concentration ``kappa``), so
the posterior over the preferred hour multiplies the prior by the likelihood of
each past engagement hour, and the distribution of the next engagement follows
from it. The booster's distribution serves as the prior of the preferred hour,
so with no history it comes back spread by that scatter, its peak in place;
with tens of engagements the customer's own hours dominate, which a tree model
over 24 hour shares does not learn from a few tens of thousands of rows.

The preferred hour is resolved to a quarter of an hour; engagement hours are
whole local hours (their bin centre h + 0.5).
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

STEPS = 4  # preferred hour on a grid of quarter hours
KAPPAS = (0.5, 0.75, 1.0, 1.25, 1.5, 1.75, 2.0, 2.5, 3.0)  # concentrations training chooses from
EVIDENCE_INPUTS = 25  # the head's last inputs: the 24 hour shares of past engagements, then their number


@lru_cache(maxsize=16)
def hour_kernel(kappa: float) -> np.ndarray:
    """[24 * STEPS, 24]: P(an engagement in local hour h | preferred hour p), p on the quarter-hour grid."""
    pref = (np.arange(24 * STEPS) + 0.5) / STEPS
    hour = np.arange(24) + 0.5
    k = np.exp(kappa * (np.cos(2.0 * np.pi * (pref[:, None] - hour[None, :]) / 24.0) - 1.0))
    k /= k.sum(axis=1, keepdims=True)
    k.setflags(write=False)
    return k


@lru_cache(maxsize=16)
def _float32_kernels(kappa: float) -> tuple[np.ndarray, np.ndarray]:
    """The kernel's log, transposed [24, 24 * STEPS], and the kernel [24 * STEPS, 24], in float32, once per kappa."""
    K = hour_kernel(kappa)
    return np.log(K).T.astype(np.float32), K.astype(np.float32)


def hour_posterior(prior: np.ndarray, counts: np.ndarray, kappa: float) -> np.ndarray:
    """[n, 24] distribution of the next engagement's local hour: `prior` [n, 24] (rows summing to 1) updated by
    `counts` [n, 24] of past engagements per local hour (NaN read as none)."""
    log_k, K = _float32_kernels(float(kappa))
    n = len(prior)
    lp = np.nan_to_num(np.asarray(counts, np.float32)) @ log_k  # [n, 24 * STEPS]
    lp.reshape(n, 24, STEPS)[:] += np.log(np.maximum(np.asarray(prior, np.float32), 1e-9))[:, :, None]
    lp -= lp.max(axis=1, keepdims=True)
    np.exp(lp, out=lp)
    lp /= lp.sum(axis=1, keepdims=True)
    return (lp @ K).astype(np.float64)


def evidence_counts(evidence: np.ndarray) -> np.ndarray:
    """[n, 24] engagements per local hour from the evidence inputs [n, 25] (hour shares, then their number)."""
    ev = np.nan_to_num(np.asarray(evidence, float))
    return ev[:, :24] * ev[:, 24:25]
