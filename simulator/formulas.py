"""The world's probability formulas: the simulator draws from them and the oracle evaluates them."""

from __future__ import annotations

import numpy as np

HABIT_DROPOUT_MULTIPLIER = 0.4  # dropout hazard after a second purchase inside the activation window
# per channel, in vocabulary.CHANNELS order
P_DELIVER = np.array([0.96, 0.97, 0.93, 1.0, 0.98])  # delivery rate
SEEN_MULT = np.array([4.0, 5.0, 3.0, 2.5, 3.0])  # messages seen (read) per click


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


# --- expected natural purchases over a horizon (the oracle's "no message" and "after a conversion" worlds) ---
def purchases_alive(mu, delta, horizon):
    """Expected purchases in `horizon` days of an alive customer past the activation window (rate mu until a
    dropout at rate delta)."""
    mu, delta, h = np.asarray(mu, float), np.asarray(delta, float), np.maximum(horizon, 0.0)
    return mu * -np.expm1(-delta * h) / delta


def purchases_in_window(mu, delta, window_left, horizon):
    """Expected purchases in `horizon` days of a customer with one purchase and `window_left` days of the
    activation window left: no dropout inside it; a purchase inside it forms the habit (dropout x 0.4)."""
    w = np.maximum(window_left, 0.0)
    h = np.asarray(horizon, float)
    rest = np.maximum(h - w, 0.0)
    habit = -np.expm1(-mu * w)
    after = habit * purchases_alive(mu, delta * HABIT_DROPOUT_MULTIPLIER, rest) + (1 - habit) * purchases_alive(
        mu, delta, rest)
    return mu * np.minimum(w, h) + after


def purchases_after_habit(mu, delta, window_left, horizon):
    """Expected purchases in `horizon` days when the habit has just formed with `window_left` days of window left."""
    w = np.maximum(window_left, 0.0)
    h = np.asarray(horizon, float)
    return mu * np.minimum(w, h) + purchases_alive(mu, delta * HABIT_DROPOUT_MULTIPLIER, np.maximum(h - w, 0.0))


def purchases_never_bought(lam0, tau, age, mu, delta, window, horizon, steps: int = 64):
    """Expected purchases in `horizon` days of a customer who never bought, `age` days after registration: the
    first purchase (fading hazard lam0 x exp(-t/tau)) and, after it, the window and the alive process.
    Integrated on a midpoint grid of `steps` intervals (vectorised over customers)."""
    lam0, tau, age, mu, delta = (np.asarray(x, float)[:, None] for x in (lam0, tau, age, mu, delta))
    h = float(horizon)
    ds = h / steps
    s = (np.arange(steps) + 0.5)[None, :] * ds  # time of the first purchase after `age`
    a = np.maximum(age, 0.0)
    cum = lam0 * tau * (np.exp(-a / tau) - np.exp(-(a + s) / tau))  # hazard mass up to s
    density = lam0 * np.exp(-(a + s) / tau) * np.exp(-cum)
    after = purchases_in_window(mu, delta, window, h - s)
    return (density * (1.0 + after)).sum(axis=1) * ds
