"""The world lived one day at a time (`simulator/live.py`)."""

from __future__ import annotations

from datetime import date

import pandas as pd
import pytest

from nextbest.settings import DEFAULT_CONFIG_DIR, load_settings
from simulator.live import LiveWorld

START = date(2025, 3, 3)


@pytest.fixture(scope="module")
def settings():
    return load_settings(DEFAULT_CONFIG_DIR)


def _lived(settings, tail_days: int, days: int) -> LiveWorld:
    w = LiveWorld(settings, 400, 60, 5, 11, START, tail_days=tail_days)
    for _ in range(days):
        w.next_day()
    return w


def test_a_tail_lets_the_world_live_on_without_changing_the_loops_days(settings):
    plain, longer = _lived(settings, 0, 5), _lived(settings, 10, 5)
    assert plain.now == longer.now
    # the same events but on the world's last day, where the shorter world keeps a few late ones inside its end
    before = lambda w: w.events()[lambda e: e["event_timestamp"] < w.now - pd.Timedelta(days=1)]  # noqa: E731
    pd.testing.assert_frame_equal(before(plain), before(longer))
    assert abs(len(plain.events()) - len(longer.events())) < 0.01 * len(plain.events())
    pd.testing.assert_frame_equal(plain.customers(), longer.customers())
    for _ in range(10):
        longer.next_day()
    assert len(longer.events()) > len(plain.events())  # the customers go on buying and visiting
    assert longer.registered().sum() == plain.registered().sum()  # nobody registers in the tail
    with pytest.raises(ValueError, match="over"):
        longer.next_day()
    with pytest.raises(ValueError, match="tail_days not negative"):
        LiveWorld(settings, 400, 60, 5, 11, START, tail_days=-1)
