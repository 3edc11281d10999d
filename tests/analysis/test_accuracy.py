"""The effect model's accuracy against the truth: learned increments beside the true ones per option, and whether
the model's best option is the truly best one."""

from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pytest

from analysis.evaluation.accuracy import by_action, effect_accuracy
from analysis.evaluation.worlds import accuracy_over_worlds, built_world, world_settings
from nextbest.vocabulary import CHANNELS
from serving.policy import compile_policy
from tests.support import settings_for


class Table:
    """Increments from a fixed table [n, A, C] (before cost), as an effect model or the truth would give them."""

    def __init__(self, values, actions):
        self.values, self.actions = values, list(actions)

    def learned(self, action):
        return True

    def __call__(self, rows, action, channel, p_response, p_activation, p_churn, hour):
        return self.values[rows, self.actions.index(action), channel]


@pytest.fixture
def case(tmp_path):
    pol = compile_policy(settings_for(tmp_path))
    n, A, C = 50, len(pol.actions), len(CHANNELS)
    rng = np.random.default_rng(3)
    truth = rng.normal(1.0, 1.0, (n, A, C))
    decisions = SimpleNamespace(customer_ids=np.arange(n).astype(str), best_hours=np.full((n, 3), 10),
                                p_response=np.full((n, C), 0.1), p_activation=np.full(n, 0.5),
                                p_churn=np.full(n, 0.5))
    cand = np.ones((n, A), bool)
    open_ = np.ones((n, C), bool)
    open_[:10] = False  # ten customers with no open channel
    return pol, decisions, truth, cand, open_


def test_a_perfect_model_picks_every_best_option(case):
    pol, d, truth, cand, open_ = case
    r = effect_accuracy(pol, d, Table(truth, pol.actions), Table(truth, pol.actions), cand, open_)
    assert r["customers"] == 40 and r["same_best_option"] == 1.0 and r["best_option_value_kept"] == pytest.approx(1.0)
    assert all(o["model"] == pytest.approx(o["true"]) and o["corr"] == pytest.approx(1.0) for o in r["options"])
    # only the options the catalogue allows are compared
    assert {(o["action"], o["channel"]) for o in r["options"]} == {
        (a, c) for i, a in enumerate(pol.actions) for j, c in enumerate(CHANNELS) if pol.allowed[i, j]}


def test_a_biased_model_shows_its_bias_per_action_and_loses_value(case):
    pol, d, truth, cand, open_ = case
    first = pol.actions[0]
    wrong = truth.copy()
    wrong[:, 0, :] += 10.0  # believes the first action is worth 10 more than it is
    r = effect_accuracy(pol, d, Table(wrong, pol.actions), Table(truth, pol.actions), cand, open_)
    per = by_action(r["options"])
    assert per[first]["model"] == pytest.approx(per[first]["true"] + 10.0)
    assert all(per[a]["model"] == pytest.approx(per[a]["true"]) for a in per if a != first)
    assert r["same_best_option"] < 0.5 and r["best_option_value_kept"] < 1.0
    over = accuracy_over_worlds([{"effect_accuracy": r}, {"effect_accuracy": r}, {"effect_accuracy": None}])
    assert over["worlds"] == 2 and over["actions"][first]["model"]["mean"] == pytest.approx(per[first]["model"])


def test_a_world_is_reused_only_when_built_with_the_same_seed_customers_days_and_start(tmp_path):
    s = world_settings(settings_for(tmp_path), tmp_path / "seed-3", 3)
    assert built_world(s, 100) is None  # nothing built there
    s.data_dir.mkdir(parents=True)
    start = s.world.start_date.isoformat()
    (s.data_dir / "built.json").write_text(json.dumps({"seed": 3, "customers": 200, "days": s.world.days,
                                                       "start": start}))
    assert built_world(s, 100) is None  # built with another number of customers
    (s.data_dir / "built.json").write_text(json.dumps({"seed": 3, "customers": 100, "days": s.world.days,
                                                       "start": "2020-01-06"}))
    assert built_world(s, 100) is None  # built from another first day: other calendars, another world
