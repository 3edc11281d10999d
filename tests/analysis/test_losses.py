"""Where nextbest loses value against the oracle: every customer's shortfall in exactly one kind, the kinds adding
up to the whole gap, the pairs of actions that lose most, summarised over worlds and shown in the document."""

from __future__ import annotations

import numpy as np
import pytest

from analysis.evaluation.document import losses_section, plot_losses
from analysis.evaluation.losses import KINDS, kinds_of, where_lost
from analysis.evaluation.policies import Choice
from analysis.evaluation.worlds import losses_over_worlds

ACTIONS = ["welcome", "cross_sell", "win_back"]


def choice(action, channel, hour):
    return Choice(np.array(action, np.int16), np.array(channel, np.int8), np.array(hour, np.int8))


@pytest.fixture
def case():
    # customers: 0 same option same hour, 1 same option other hour, 2 other channel, 3 other action,
    # 4 a send where the oracle sends nothing, 5 nothing where the oracle sends, 6 both nothing
    oracle = choice([0, 1, 2, 2, -1, 1, -1], [0, 0, 1, 0, -1, 2, -1], [10, 10, 9, 9, -1, 12, -1])
    nextbest = choice([0, 1, 2, 1, 1, -1, -1], [0, 0, 3, 0, 0, -1, -1], [10, 14, 9, 9, 18, -1, -1])
    v_oracle = np.array([5.0, 8.0, 20.0, 30.0, 0.0, 6.0, 0.0])
    v_next = np.array([5.0, 6.0, 12.0, 1.0, -4.0, 0.0, 0.0])
    return oracle, nextbest, v_oracle, v_next


def test_each_difference_has_one_kind(case):
    oracle, nextbest, *_ = case
    assert kinds_of(oracle, nextbest).tolist() == ["", "send_hour", "channel", "action", "extra_send",
                                                   "held_back", ""]


def test_the_kinds_add_up_to_the_gap_and_name_the_pairs_that_lose_most(case):
    r = where_lost(ACTIONS, *case)
    k = r["kinds"]
    assert {n: k[n]["lost"] for n in KINDS} == {"send_hour": 2.0, "channel": 8.0, "action": 29.0,
                                                "extra_send": 4.0, "held_back": 6.0}
    assert sum(e["lost"] for e in k.values()) == pytest.approx(r["oracle_value"] - r["nextbest_value"])
    assert k["action"]["share_of_oracle"] == pytest.approx(29.0 / 69.0)
    assert k["action"]["per_1000"] == pytest.approx(29.0 / 7 * 1000)
    assert [(p["oracle"], p["nextbest"], p["lost"]) for p in r["pairs"]] == [
        ("win_back", "cross_sell", 29.0), ("cross_sell", "nothing", 6.0), ("nothing", "cross_sell", 4.0)]
    assert len(where_lost(ACTIONS, *case, top=1)["pairs"]) == 1


def test_over_worlds_each_kind_has_an_interval_and_pairs_are_averaged(case):
    one = where_lost(ACTIONS, *case)
    oracle, nextbest, v_oracle, v_next = case
    two = where_lost(ACTIONS, oracle, nextbest, v_oracle, v_next + np.array([0, 0, 0, 10.0, 0, 0, 0]))
    over = losses_over_worlds([{"losses": one}, {"losses": two}, {"losses": None}])
    assert over["worlds"] == 2
    action = over["kinds"]["action"]["per_1000"]
    assert action["mean"] == pytest.approx((29.0 + 19.0) / 2 / 7 * 1000)
    assert action["low"] < action["mean"] < action["high"]
    assert over["pairs"][0] == {"oracle": "win_back", "nextbest": "cross_sell",
                                "per_1000": pytest.approx((29.0 + 19.0) / 2 / 7 * 1000)}
    assert losses_over_worlds([{"losses": None}]) is None


def test_the_document_shows_the_kinds_and_the_pairs(case):
    doc = {"losses": where_lost(ACTIONS, *case)}
    text = losses_section(doc)
    assert "| another action | 1 | 4,142.9 | 42% |" in text
    assert "the oracle sends `win_back`, nextbest `cross_sell`: 4,142.9 per 1,000 customers" in text
    assert "the oracle sends `cross_sell`, nextbest nothing" in text
    assert losses_section({}) == ""


def test_the_chart_steps_from_the_oracle_to_nextbest(case, tmp_path):
    doc = {"losses": where_lost(ACTIONS, *case), "policies": {"oracle": {"per_1000": 69.0 / 7 * 1000}}}
    assert plot_losses(doc, tmp_path / "losses.png") and (tmp_path / "losses.png").stat().st_size > 5000
    assert "![From the oracle's value to nextbest's](losses.png)" in losses_section(doc, "losses.png")
    assert not plot_losses({}, tmp_path / "none.png") and not (tmp_path / "none.png").exists()
