"""Who the simulated customers are: attributes (segment, region, company size, sector, timezone), consent and
reachability per channel, when they register, and the latent traits behind their behaviour (activation,
purchase and dropout rates, click probability per channel, engagement hours, offer sensitivity, baskets and
what each action does to them: :mod:`simulator.effects`). Drawn once per world, in a fixed order, from the
world's random generator.
"""

from __future__ import annotations

import numpy as np

from simulator import effects as FX

PRE_SHARE = 0.40  # share of customers registered during the year before `start`

SEGMENTS = ("b2c", "b2b")
REGIONS = ("north", "south", "east", "west", "central")
COMPANY_SIZES = ("micro", "small", "medium", "large")
B2B_SECTORS = ("retail", "construction", "services", "manufacturing", "hospitality")
B2C_SECTORS = ("hypermarket", "supermarket", "proximity", "online")
TIMEZONES = (
    "Europe/Paris",
    "Europe/Berlin",
    "Europe/London",
    "Europe/Madrid",
    "Europe/Rome",
    "America/New_York",
    "America/Sao_Paulo",
    "Asia/Tokyo",
)
TIMEZONE_P = (0.45, 0.12, 0.12, 0.10, 0.06, 0.06, 0.04, 0.05)

PEAK_CLICK = np.array([0.085, 0.10, 0.075, 0.065, 0.045])  # median peak click probability, per channel

# consent / reachability rates: (b2c, b2b) per channel
CONSENT_P = np.array([[0.72, 0.80], [0.45, 0.35], [0.55, 0.45], [0.85, 0.80], [0.40, 0.50]])
REACH_P = np.array([[0.86, 0.94], [0.78, 0.70], [0.45, 0.30], [0.60, 0.50], [0.93, 0.97]])


def _lognormal(rng, n, sigma):
    return np.exp(rng.normal(0.0, sigma, n))


def draw_population(sim, pre_days: int) -> np.ndarray:
    """Draw the customers of `sim` (a :class:`simulator.world._Sim` before its first day) and set them on it:
    attributes, consent and reachability, registration day, latent traits and persuasion. Returns each
    customer's total activation hazard (P(never buys) = exp(-total)), which schedules the first purchase."""
    rng, n = sim.rng, sim.n
    b2b = rng.random(n) < 0.30
    sim.segment = b2b.astype(np.int8)
    sim.region = rng.choice(len(REGIONS), n, p=[0.22, 0.20, 0.18, 0.20, 0.20]).astype(np.int8)
    size = rng.choice(len(COMPANY_SIZES), n, p=[0.45, 0.30, 0.17, 0.08])
    sim.size = np.where(b2b, size, -1).astype(np.int8)
    sec_b2b = rng.choice(len(B2B_SECTORS), n, p=[0.25, 0.20, 0.30, 0.15, 0.10])
    sec_b2c = rng.choice(len(B2C_SECTORS), n, p=[0.30, 0.30, 0.20, 0.20])
    sim.sector_b2b = np.where(b2b, sec_b2b, -1).astype(np.int8)
    sim.sector_b2c = np.where(b2b, -1, sec_b2c).astype(np.int8)
    sim.tz = rng.choice(len(TIMEZONES), n, p=TIMEZONE_P).astype(np.int8)

    seg = sim.segment.astype(int)
    sim.consent = rng.random((n, 5)) < CONSENT_P[:, seg].T
    sim.reach = rng.random((n, 5)) < REACH_P[:, seg].T

    # registration: 40% in the year before start, the rest over the simulated period
    pre = rng.random(n) < PRE_SHARE
    day = np.where(pre, rng.random(n) * pre_days, sim.S + rng.random(n) * sim.days)
    sim.reg_day = np.floor(day)

    # --- latent traits -------------------------------------------------------
    r, s2b, s2c, sz = sim.region, sim.sector_b2b, sim.sector_b2c, sim.size
    on_b2c = lambda table: np.where(s2c >= 0, np.asarray(table)[np.maximum(s2c, 0)], 0.0)  # noqa: E731
    on_b2b = lambda table: np.where(s2b >= 0, np.asarray(table)[np.maximum(s2b, 0)], 0.0)  # noqa: E731
    on_size = lambda table: np.where(sz >= 0, np.asarray(table)[np.maximum(sz, 0)], 0.0)  # noqa: E731

    # activation: total hazard A = lam0 * tau, P(never buys) = exp(-A)
    log_a = (
        -0.35
        + 0.25 * b2b
        + np.array([0.0, -0.15, -0.25, 0.10, 0.20])[r]
        + on_b2c([0.0, 0.10, -0.15, 0.35])
        + on_b2b([0.10, -0.20, 0.15, 0.0, 0.20])
        + rng.normal(0.0, 0.9, n)
    )
    total = np.exp(log_a)
    sim.tau = np.where(b2b, 18.0, 11.0) * _lognormal(rng, n, 0.35)
    sim.lam0 = total / sim.tau

    # purchase rate per day while alive
    log_mu = (
        np.log(1 / 30)
        + np.log(2.4) * b2b
        + on_size([0.0, 0.20, 0.45, 0.70])
        + on_b2c([0.0, 0.25, 0.50, -0.25])
        + on_b2b([0.30, -0.10, 0.0, 0.10, 0.40])
        + np.array([0.0, 0.08, -0.08, 0.0, 0.05])[r]
        + rng.normal(0.0, 0.5, n)
    )
    sim.mu = np.clip(np.exp(log_mu), 0.003, 1.0)

    # dropout hazard per day after the activation window (without the habit)
    log_delta = (
        np.log(1 / 150)
        + np.log(0.6) * b2b
        + on_size([0.0, -0.10, -0.20, -0.35])
        + on_b2c([0.0, -0.10, -0.20, 0.30])
        + np.array([0.0, 0.10, 0.15, -0.05, 0.0])[r]
        + rng.normal(0.0, 0.45, n)
    )
    sim.delta = np.exp(log_delta)
    sim.delta_eff = np.full(n, np.nan)

    # channel responsiveness: peak click probability per channel
    shift = np.zeros((n, 5))
    shift += b2b[:, None] * np.array([0.30, -0.30, -0.50, -0.20, 0.20])
    region_shift = np.array(
        [
            [0.20, 0.0, 0.0, 0.0, 0.0],  # north: e-mail
            [0.0, 0.40, 0.0, 0.0, 0.10],  # south: sms
            [0.0, 0.0, 0.0, 0.0, 0.35],  # east: print
            [0.0, 0.0, 0.10, 0.10, 0.0],  # west
            [-0.10, 0.0, 0.30, 0.30, -0.20],  # central: push / in-app
        ]
    )
    shift += region_shift[r]
    online = s2c == 3
    shift += online[:, None] * np.array([0.0, -0.20, 0.30, 0.35, -0.40])
    shift += (s2c == 2)[:, None] * np.array([0.0, 0.20, 0.0, 0.0, 0.10])
    shift += (s2b == 4)[:, None] * np.array([-0.15, 0.30, 0.0, 0.0, 0.0])
    sim.responsiveness = rng.normal(0.0, 1.0, n)  # a general propensity to click (standardised)
    common = 0.40 * sim.responsiveness[:, None]
    own = rng.normal(0.0, 0.55, (n, 5))
    sim.resp = np.clip(PEAK_CLICK[None, :] * np.exp(shift + common + own - 0.2), 0.0005, 0.6)

    # preferred local engagement hour
    comp = rng.random(n)
    b2c_hour = np.select(
        [comp < 0.40, comp < 0.65, comp < 0.85],
        [rng.normal(20.0, 1.3, n), rng.normal(12.5, 0.9, n), rng.normal(8.3, 0.9, n)],
        rng.normal(16.0, 1.4, n),
    )
    b2b_hour = np.select(
        [comp < 0.50, comp < 0.80], [rng.normal(10.0, 1.2, n), rng.normal(14.5, 1.3, n)], rng.normal(8.5, 0.8, n)
    )
    pref = np.where(b2b, b2b_hour, b2c_hour) + np.array([0.0, 0.6, -0.2, 0.0, 0.2])[r]
    sim.pref = np.mod(pref, 24.0)
    sim.kappa = rng.uniform(1.0, 2.6, n)

    # offers and baskets
    sim.offer_sens = 1.0 / (
        1.0 + np.exp(-(rng.normal(0.0, 1.0, n) + 0.5 * ~b2b + on_b2c([0.4, 0.0, 0.2, -0.2]) - 0.3))
    )
    base_basket = np.where(b2b, 320.0, 48.0) * np.exp(on_size([0.0, 0.3, 0.7, 1.2]))
    sim.basket = base_basket * np.exp(-0.4 * sim.offer_sens + 0.2) * _lognormal(rng, n, 0.35)

    # what a message does (simulator/effects.py): persuasion per action, sleeping dogs
    attrs = FX.attribute_matrix(sim.segment, sim.region, sim.sector_b2c, sim.sector_b2b, sim.size,
                                len(REGIONS), len(B2C_SECTORS), len(B2B_SECTORS), len(COMPANY_SIZES))
    sim.persuasion, sim.persuadability = FX.persuasion(rng, sim.seed, sim.actions, attrs, sim.offer_sens,
                                                       sim.responsiveness)
    sim.dog = FX.sleeping_dogs(rng, b2b, sz == COMPANY_SIZES.index("large"), r == REGIONS.index("east"))
    sim.harm = FX.harm(sim.dog)
    return total
