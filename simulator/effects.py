"""What a message truly does to a customer of the simulated world: the causal truth.

Every customer gets, for every catalogue action, a **persuasion** probability:
the chance that a message of that action, once *seen*, converts them (an extra
purchase, or the action's own conversion for a survey or an e-mail request).
It is heterogeneous and mostly explained by what the features can see:

* a shared persuadability, mostly the customer's general responsiveness to
  messages (the same trait that makes them click, so their history shows it):
  about a quarter of the base, low responders above all, are **lost causes**
  whom nothing moves;
* per action, a random profile over segment, region, sector and company size
  (so each action works for its own kind of customer, and two e-mails of the
  same stage can suit different segments), drawn from the world's seed and
  the action's id, so a marketer's new action gets one too;
* offer sensitivity for actions that pay an incentive.

**Sure things** are not a trait but a consequence: a customer who saw a message of an
incentive action redeems the incentive on any purchase within
:data:`REDEEM_DAYS`, so a customer who would have bought anyway costs the
incentive and adds nothing.

**Sleeping dogs** (about 9% of customers, more among large B2B accounts and in
the east region) react badly to contact: each delivered message makes a
buying customer lapse (drop out) with probability :data:`SLEEPING_DOG_HARM`
and unsubscribe far more often. Everyone else lapses from a message with
probability :data:`BASE_HARM`.

**Fatigue**: the chance to engage falls with the messages of the last 7 days,
``exp(-FATIGUE_PER_SEND * sends)``.

The true persuasion base rates of the default catalogue's actions are in
:data:`BASE_LOGIT`; they do not read the catalogue's ``lift`` (the marketer's
prior), so the simulated world can disagree with it.
"""

from __future__ import annotations

import zlib
from typing import Mapping

import numpy as np

REDEEM_DAYS = 14.0  # a seen incentive message is redeemed on any purchase within this many days
FATIGUE_PER_SEND = 0.25  # engagement x exp(-0.25 x messages sent in the last 7 days)
FATIGUE_DAYS = 7.0
BASE_HARM = 0.002  # P(a delivered message makes a buying customer lapse)
SLEEPING_DOG_HARM = 0.15
SLEEPING_DOG_UNSUB = 12.0  # unsubscribe probability multiplier of a sleeping dog
LOST_CAUSE_LOGIT = -1.3  # about 25% lost causes, most of them among those who rarely click
LOST_CAUSE_FACTOR = 0.05
RESPONSIVE_WEIGHT = 0.6  # persuadability per standard deviation of responsiveness
CONVERSION_SCALE = (0.8, 0.4)  # a converted purchase's amount: basket x (0.8 + 0.4 x offer sensitivity)

# true persuasion of a customer who saw the message, on the logit scale, for the default catalogue (others: DEFAULT_LOGIT)
BASE_LOGIT = {
    "welcome": -1.6,
    "activation_nudge": -1.1,
    "activation_nudge_incentive": -0.6,
    "second_use_nudge": -0.9,
    "cross_sell": -1.5,
    "loyalty_reward": -1.2,
    "satisfaction_survey": -0.4,
    "anti_attrition_offer": -0.8,
    "win_back": -1.3,
    "contact_enrichment": -0.5,
}
DEFAULT_LOGIT = -1.3
PROFILE_SCALE = 0.6  # spread of an action's random profile over the attributes
INCENTIVE_SENSITIVITY = 1.6  # logit gained per unit of offer sensitivity (centred) for incentive actions


def _action_rng(seed: int, action: str) -> np.random.Generator:
    return np.random.default_rng([seed, zlib.crc32(action.encode())])


def attribute_matrix(segment, region, sector_b2c, sector_b2b, size, n_regions, n_b2c, n_b2b, n_sizes) -> np.ndarray:
    """One-hot [n, k] of the customer attributes the features see (segment, region, sector, size)."""
    n = len(segment)
    cols = [np.asarray(segment, float)[:, None]]
    for codes, k in ((region, n_regions), (sector_b2c, n_b2c), (sector_b2b, n_b2b), (size, n_sizes)):
        codes = np.asarray(codes)
        m = np.zeros((n, k))
        ok = codes >= 0
        m[np.flatnonzero(ok), codes[ok]] = 1.0
        cols.append(m)
    return np.hstack(cols)


def persuasion(rng: np.random.Generator, seed: int, actions: Mapping, attrs: np.ndarray,
               offer_sens: np.ndarray, responsiveness: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(persuasion [n, A], persuadability [n]): P(convert | seen) per customer and action. `responsiveness`:
    the customer's standardised propensity to click (the world's channel response trait)."""
    n = len(attrs)
    common = RESPONSIVE_WEIGHT * responsiveness + rng.normal(0.0, 0.4, n)
    lost = rng.random(n) < 1.0 / (1.0 + np.exp(-(LOST_CAUSE_LOGIT - 1.5 * responsiveness)))
    centred = offer_sens - 0.5
    out = np.empty((n, len(actions)))
    for k, (name, act) in enumerate(actions.items()):
        arng = _action_rng(seed, name)
        weights = arng.normal(0.0, PROFILE_SCALE, attrs.shape[1])
        logit = BASE_LOGIT.get(name, DEFAULT_LOGIT) + common + attrs @ weights + arng.normal(0.0, 0.3, n)
        if act.incentive > 0:
            logit = logit + INCENTIVE_SENSITIVITY * centred
        out[:, k] = 1.0 / (1.0 + np.exp(-logit))
    out[lost] *= LOST_CAUSE_FACTOR
    return out, np.where(lost, 0.0, 1.0 / (1.0 + np.exp(-common)))


def sleeping_dogs(rng: np.random.Generator, b2b: np.ndarray, large: np.ndarray, east: np.ndarray) -> np.ndarray:
    """Customers whom a message pushes away (about 9%; more among large B2B accounts and in the east)."""
    logit = -2.7 + 0.9 * b2b + 1.0 * (b2b & large) + 0.9 * east
    return rng.random(len(b2b)) < 1.0 / (1.0 + np.exp(-logit))


def harm(dog: np.ndarray) -> np.ndarray:
    """P(a delivered message makes a buying customer lapse)."""
    return np.where(dog, SLEEPING_DOG_HARM, BASE_HARM)


def fatigue(recent_sends: np.ndarray) -> np.ndarray:
    """Multiplier of the chance to engage after `recent_sends` messages in the last 7 days."""
    return np.exp(-FATIGUE_PER_SEND * np.asarray(recent_sends, float))


def conversion_scale(offer_sens: np.ndarray) -> np.ndarray:
    """Mean amount of a converted purchase relative to the customer's basket."""
    return CONVERSION_SCALE[0] + CONVERSION_SCALE[1] * offer_sens
