"""The shared contact-pressure store: caps and cooldowns hold when many processes reserve at once,
on SQLite (one machine) and Redis (several); confirmed sends count until the features do; releases."""

from __future__ import annotations

import multiprocessing as mp

import numpy as np
import pytest

from nextbest.settings import DEFAULT_CONFIG_DIR, load_settings
from serving.policy import compile_policy
from serving.pressure import (
    CANCELLED,
    MS_DAY,
    RESERVED,
    SENT,
    Contact,
    Limits,
    Overlay,
    PressureStoreUnavailable,
    RedisPressure,
    Reservation,
    SqlitePressure,
    fits,
)

SETTINGS = load_settings(DEFAULT_CONFIG_DIR, environ={})
LIMITS = Limits.from_policy(compile_policy(SETTINGS))
NOW = 1_760_000_000_000  # ms
NAN = float("nan")


def reservation(decision: str, customer: str = "c1", action: str = "cross_sell", channel: str = "in_app",
                base_channel: float = 1, base_overall: float = 1, days_since: float = NAN) -> Reservation:
    return Reservation(decision, customer, action, channel, NOW + 3_600_000, NOW + 3 * 3_600_000,
                       base_channel, base_overall, days_since)


def test_limits_follow_the_contact_policy():
    caps = SETTINGS.contact_policy.caps
    assert LIMITS.cap_max[3] == caps.per_channel["in_app"].max and LIMITS.cap_window[3] == 7  # in_app: 7 days
    assert LIMITS.cap_window[0] == 30 and LIMITS.overall_max == caps.overall.max
    assert LIMITS.cooldown_days[LIMITS.actions.index("cross_sell")] == SETTINGS.actions["cross_sell"].cooldown_days


def test_fits_counts_caps_cooldown_and_ignores_its_own_reservation():
    held = Contact("d0", "c1", "loyalty_reward", "email", RESERVED, NOW + 1, NOW + MS_DAY)
    assert fits(reservation("d1"), [held], LIMITS, NOW, watermark=0)  # overall 1 + 1 held < 3
    assert not fits(reservation("d1", base_overall=2), [held], LIMITS, NOW, 0)  # overall 2 + 1 held = cap 3
    assert fits(reservation("d0", base_overall=2), [held], LIMITS, NOW, 0)  # its own reservation does not count
    assert not fits(reservation("d1", base_channel=5), [], LIMITS, NOW, 0)  # in-app cap 5 reached
    assert not fits(reservation("d1", days_since=3), [], LIMITS, NOW, 0)  # cross_sell cooldown 14 days
    same = Contact("d2", "c1", "cross_sell", "email", SENT, NOW - 2 * MS_DAY, seq=1)
    assert not fits(reservation("d1"), [same], LIMITS, NOW, 0)  # sent 2 days ago, not yet in the features


def test_a_send_counts_until_features_read_after_it_show_it():
    pushed = Contact("d", "c", "cross_sell", "email", SENT, NOW - MS_DAY, seq=5, in_features=True)
    assert pushed.counts(NOW, watermark=4)  # confirmed after the watermark: the features read may miss it
    assert not pushed.counts(NOW, watermark=5)  # features read after its confirmation count it
    late = Contact("d", "c", "cross_sell", "email", SENT, NOW - 10 * MS_DAY, seq=5, in_features=False)
    assert late.counts(NOW, watermark=99)  # older than the feature build: only the store counts it
    assert late.in_window(NOW, 30) and not late.in_window(NOW, 7)  # ... from its own timestamp
    expired = Contact("d", "c", "cross_sell", "email", RESERVED, NOW, expires_ms=NOW - 1)
    assert not expired.counts(NOW, 0)
    assert not Contact("d", "c", "cross_sell", "email", CANCELLED, NOW, NOW + 1).counts(NOW, 0)


def test_overlay_adds_to_the_pressure_columns():
    names = ["sent_7d_in_app", "sent_30d_in_app", "sent_7d_total", "sent_30d_total", "days_since_action_cross_sell"]
    index = {n: i for i, n in enumerate(names)}
    X = np.array([[1, 2, 1, 3, np.nan], [0, 0, 0, 0, 40]], np.float32)
    ov = Overlay(0, {"a": [Contact("d", "a", "cross_sell", "in_app", RESERVED, NOW + 1, NOW + MS_DAY),
                           Contact("e", "a", "cross_sell", "in_app", SENT, NOW - 10 * MS_DAY, seq=1)]})
    ov.apply(X, index, ["a", "b"], NOW, ["cross_sell"])
    assert X[0].tolist() == [2, 4, 2, 5, 0]  # the reservation in both windows, the 10-day-old send in 30 days only
    assert X[1].tolist() == [0, 0, 0, 0, 40]


def _reserve_many(args) -> int:
    kind, where, n = args
    store = SqlitePressure(where, LIMITS) if kind == "sqlite" else RedisPressure(LIMITS, "127.0.0.1", where,
                                                                               prefix="t")
    ok = 0
    for k in range(n):
        wm = store.overlay(["shared"]).watermark
        ok += store.reserve([reservation(f"{mp.current_process().pid}-{k}", "shared",
                                         action=LIMITS.actions[k % len(LIMITS.actions)], channel="email",
                                         base_channel=0, base_overall=0)], wm, NOW)[0]
    return ok


@pytest.fixture(params=["sqlite", "redis"])
def store_at(request, tmp_path):
    """(kind, path or port, a store) for each implementation."""
    if request.param == "sqlite":
        path = tmp_path / "pressure.db"
        return "sqlite", path, SqlitePressure(path, LIMITS, create=True)
    port = request.getfixturevalue("redis_port")
    store = RedisPressure(LIMITS, "127.0.0.1", port, prefix="t")
    store.client.flushdb()
    return "redis", port, store


def test_concurrent_processes_never_overbook(store_at):
    kind, where, store = store_at
    with mp.get_context("spawn").Pool(6) as pool:
        accepted = sum(pool.map(_reserve_many, [(kind, where, 5)] * 6))
    # 30 attempts on e-mail for one customer: e-mail cap 4 / 30 days, overall cap 3 / 7 days -> exactly 3
    assert accepted == 3
    contacts = store.overlay(["shared"]).contacts["shared"]
    assert sum(c.state == RESERVED for c in contacts) == 3


def test_confirm_cancel_and_their_order(store_at):
    _, _, store = store_at
    wm = store.overlay(["c1"]).watermark
    assert store.reserve([reservation("d1"), reservation("d2", action="loyalty_reward", channel="email")], wm, NOW) \
        == [True, True]
    assert store.reserve([reservation("d3", action="loyalty_reward", channel="sms")], wm, NOW) == [False]  # cooldown
    assert store.cancel("d2", "c1") == RESERVED and store.state("d2", "c1") == CANCELLED
    assert store.reserve([reservation("d3", action="loyalty_reward", channel="sms")], wm, NOW) == [True]
    assert store.confirm("d1", "c1", "cross_sell", "in_app", NOW, in_features=True) == RESERVED
    assert store.confirm("d1", "c1", "cross_sell", "in_app", NOW, in_features=True) == SENT  # a retry: no change
    assert store.cancel("d1", "c1") == SENT and store.state("d1", "c1") == SENT  # a send is never released
    after = store.overlay(["c1"])
    assert after.watermark == wm + 1
    d1 = next(c for c in after.contacts["c1"] if c.decision_id == "d1")
    assert d1.counts(NOW, wm) and not d1.counts(NOW, after.watermark)
    assert store.reserve([reservation("d1")], after.watermark, NOW) == [True]  # a retried decision: already sent
    assert store.cancel("nothing", "c1") is None


def test_a_missing_store_is_unavailable_and_never_recreated(tmp_path):
    path = tmp_path / "pressure.db"
    SqlitePressure(path, LIMITS, create=True).ping()
    path.unlink()
    worker = SqlitePressure(path, LIMITS)
    with pytest.raises(PressureStoreUnavailable, match="missing"):
        worker.ping()
    with pytest.raises(PressureStoreUnavailable, match="missing"):
        worker.overlay(["c1"])
    assert not path.exists()


def test_redis_down_is_unavailable():
    from tests.support import free_port

    store = RedisPressure(LIMITS, "127.0.0.1", free_port())
    with pytest.raises(PressureStoreUnavailable, match="redis"):
        store.ping()
    with pytest.raises(PressureStoreUnavailable):
        store.reserve([reservation("d1")], 0, NOW)


def test_customer_lock_excludes_other_processes(tmp_path):
    store = SqlitePressure(tmp_path / "p.db", LIMITS, create=True)
    ctx = mp.get_context("spawn")
    with store.customer_lock("c1"):
        q = ctx.Queue()
        p = ctx.Process(target=_try_lock, args=(tmp_path / "p.db", q))
        p.start()
        assert q.get(timeout=60) == "waiting"
        assert q.empty()  # still waiting while we hold the lock
    assert q.get(timeout=60) == "locked"
    p.join(timeout=60)
    assert p.exitcode == 0


def _try_lock(path, q) -> None:
    store = SqlitePressure(path, LIMITS)
    q.put("waiting")
    with store.customer_lock("c1"):
        q.put("locked")
