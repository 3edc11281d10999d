"""What an arm of the loop realised: a world's events valued as the catalogue values them, against no action."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from analysis.loop.realised import outcome_value, realised, unit_values
from tests.support import settings_for


@pytest.fixture(scope="module")
def catalogue(tmp_path_factory):
    return settings_for(tmp_path_factory.mktemp("realised")).actions


def _events(rows):
    return pd.DataFrame(rows, columns=["event_type", "amount", "action_id", "channel"]).assign(
        event_timestamp=pd.Timestamp("2025-06-01", tz="UTC"), customer_id="c1")


def test_purchases_are_one_outcome_valued_at_the_actions_margin_share(catalogue):
    assert unit_values(catalogue) == {("purchase", "amount"): 0.30}
    got = outcome_value(_events([("purchase", 100.0, None, None), ("purchase", 50.0, None, None),
                                 ("visit", np.nan, None, None)]), catalogue)
    assert got["objectives"] == pytest.approx(45.0)  # 0.30 x 150, whichever action asked for purchases
    assert got["total"] == pytest.approx(45.0) and got["sends"] == 0


def test_conversions_count_where_they_are_the_objective_and_incentives_and_sends_are_paid(catalogue):
    events = _events([
        ("message_sent", np.nan, "satisfaction_survey", "email"),
        ("message_converted", np.nan, "satisfaction_survey", "email"),  # an answered survey: 2.0
        ("message_sent", np.nan, "anti_attrition_offer", "print"),
        ("message_converted", np.nan, "anti_attrition_offer", "print"),  # a redeemed voucher: -10.0
        ("message_converted", np.nan, "cross_sell", "email"),  # its purchase counts, not the conversion
        ("message_sent", np.nan, "retired_action", "email"),  # an action no longer in the catalogue costs nothing
    ])
    got = outcome_value(events, catalogue)
    assert got["own_conversions"] == pytest.approx(2.0)
    assert got["incentives"] == pytest.approx(10.0)
    assert got["cost"] == pytest.approx(0.01 + 0.8)
    assert got["sends"] == 3
    assert got["total"] == pytest.approx(2.0 - 10.0 - 0.81)


def test_an_arms_realised_value_is_against_the_mean_no_action_world_with_the_noise_interval():
    arms, noise = realised({"policy": 130.0, "no_action": 100.0}, [100.0, 104.0, 96.0, 100.0])
    sd = np.std([100.0, 104.0, 96.0, 100.0], ddof=1)
    assert noise == {"sd": pytest.approx(sd), "draws": 4, "half_width": pytest.approx(1.96 * sd * np.sqrt(1.25))}
    assert arms["policy"]["value"] == pytest.approx(30.0)
    assert arms["policy"]["low"] == pytest.approx(30.0 - noise["half_width"])
    assert arms["policy"]["high"] == pytest.approx(30.0 + noise["half_width"])
    assert arms["no_action"]["value"] == pytest.approx(0.0)
