"""The world's probability formulas: the simulator draws from them and the oracle evaluates them."""

from __future__ import annotations

import numpy as np

HABIT_DROPOUT_MULTIPLIER = 0.4  # dropout hazard after a second purchase inside the activation window


def p_first_purchase(lam0, tau, age, horizon):
    """P(first purchase in (age, age+horizon]) under the fading hazard lam0*exp(-t/tau)."""
    age = np.maximum(age, 0.0)
    mass = lam0 * tau * (np.exp(-age / tau) - np.exp(-(age + horizon) / tau))
    return -np.expm1(-mass)


def p_second_in_window(mu, remaining):
    """P(a purchase within the remaining window days) for an alive customer."""
    return -np.expm1(-mu * np.maximum(remaining, 0.0))


def _no_purchase_competing(mu, delta, x):
    """P(no purchase in x days) with purchase rate mu and dropout hazard delta."""
    r = mu + delta
    e = np.exp(-r * x)
    return delta / r * (1.0 - e) + e


def p_no_purchase(mu, delta_after, window_left, horizon):
    """P(no purchase in horizon) for an alive customer: no dropout inside the window, then competing risks."""
    w = np.maximum(window_left, 0.0)
    inside = np.exp(-mu * np.minimum(horizon, w))
    return inside * _no_purchase_competing(mu, delta_after, np.maximum(horizon - w, 0.0))


def hour_factor(hour, pref, kappa):
    """Send-hour multiplier of the click probability: 1 at the preferred local hour."""
    return np.exp(kappa * (np.cos(2.0 * np.pi * (hour - pref) / 24.0) - 1.0))


def hour_distribution(pref, kappa, steps: int = 12) -> np.ndarray:
    """(n, 24) probability of each local hour for von Mises engagement times around `pref`."""
    pref = np.asarray(pref, float)[:, None]
    kappa = np.asarray(kappa, float)[:, None]
    grid = (np.arange(24 * steps) + 0.5) / steps
    dens = np.exp(kappa * (np.cos(2.0 * np.pi * (grid[None, :] - pref) / 24.0) - 1.0))
    bins = dens.reshape(len(pref), 24, steps).sum(axis=2)
    return bins / bins.sum(axis=1, keepdims=True)
