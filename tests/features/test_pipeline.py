from __future__ import annotations

import zlib

import numpy as np
import pandas as pd
import pytest

from features import compute, pipeline
from features.names import customer_features, views
from features.compute import build_snapshots, snapshot_at, snapshot_times
from nextbest.contract import write_world
from nextbest.vocabulary import CHANNELS, RFM_SEGMENTS
from tests.features.world import make_world

T = pd.Timestamp("2025-06-01", tz="UTC")
DAY = pd.Timedelta(days=1)


def customer(cid: str, registered: pd.Timestamp, tz: str = "UTC", **extra) -> dict:
    row = {"customer_id": cid, "registered_at": registered, "timezone": tz, "segment": "b2c", "region": "north",
           "company_size": "unknown", "sector": "retail"}
    row.update({f"consent_{c}": True for c in CHANNELS})
    row.update({f"reachable_{c}": True for c in CHANNELS})
    row.update(extra)
    return row


def event(cid: str, when: pd.Timestamp, etype: str, channel=None, amount=None, action=None) -> dict:
    return {"customer_id": cid, "event_timestamp": when, "event_type": etype, "channel": channel,
            "amount": amount if amount is not None else np.nan, "action_id": action, "campaign_id": None}


def frames(customers: list[dict], events: list[dict]) -> tuple[pd.DataFrame, pd.DataFrame]:
    c = pd.DataFrame(customers)
    e = pd.DataFrame(events, columns=["customer_id", "event_timestamp", "event_type", "channel", "amount", "action_id", "campaign_id"])
    return c, e


def row_of(snaps: dict, cid: str) -> pd.Series:
    merged = None
    for df in snaps.values():
        r = df[df["customer_id"] == cid]
        assert len(r) == 1, f"{cid}: {len(r)} rows"
        merged = r.iloc[0] if merged is None else pd.concat([merged, r.iloc[0].drop(["customer_id", "event_timestamp"])])
    return merged


def test_views_have_the_declared_columns(tiny_world, settings):
    snaps = build_snapshots(*tiny_world, settings)
    VIEWS = views(tuple(settings.actions))
    assert list(snaps) == list(VIEWS)
    for view, df in snaps.items():
        extra = ["timezone"] if view == "customer_profile" else []
        assert list(df.columns) == ["customer_id", "event_timestamp", *VIEWS[view], *extra]
        assert str(df["event_timestamp"].dtype) == "datetime64[ns, UTC]"
        assert all(df[f].dtype == np.float32 for f in VIEWS[view])
    keys = [df[["customer_id", "event_timestamp"]] for df in snaps.values()]
    assert all(k.equals(keys[0]) for k in keys)


def test_snapshot_times_follow_the_cadence_and_end_at_the_data_end(tiny_world, settings):
    customers, events = tiny_world
    times = snapshot_times(customers, events, settings.features.cadence_days)
    first = events["event_timestamp"].min().floor("D")
    end = events["event_timestamp"].max().floor("D") + DAY
    assert times[0] == first + pd.Timedelta(days=7)
    assert times[-1] == end and (events["event_timestamp"] < end).all()
    assert (np.diff(times[:-1].asi8) == 7 * 86400 * 10**9).all()
    snaps = build_snapshots(customers, events, settings)
    last = snaps["customer_profile"]
    assert set(last.loc[last["event_timestamp"] == end, "customer_id"]) == set(customers["customer_id"])


def test_point_in_time_future_events_change_no_past_snapshot(tiny_world, settings):
    customers, events = tiny_world
    times = snapshot_times(customers, events, settings.features.cadence_days)
    cut = times[len(times) // 2]
    before = build_snapshots(customers, events, settings, times=times)
    # future: purchases and messages at and after the cut (one exactly at it), plus a customer registered later
    rng = np.random.default_rng(5)
    ids = customers["customer_id"].sample(40, random_state=1).tolist()
    extra = []
    for i, cid in enumerate(ids):
        when = cut + pd.Timedelta(hours=int(rng.integers(0, 24 * 30))) if i else cut
        extra.append(event(cid, when, "purchase", amount=99.0))
        extra.append(event(cid, when, "message_sent", channel="sms", action="cross_sell"))
        extra.append(event(cid, when + pd.Timedelta(minutes=5), "message_opened", channel="sms"))
    late = pd.DataFrame([customer("LATE", cut + DAY)])
    customers2 = pd.concat([customers, late], ignore_index=True)
    events2 = pd.concat([events, pd.DataFrame(extra)], ignore_index=True)
    after = build_snapshots(customers2, events2, settings, times=times)
    for view in views(tuple(settings.actions)):
        b, a = before[view], after[view]
        old_b = b[b["event_timestamp"] <= cut].reset_index(drop=True)
        old_a = a[a["event_timestamp"] <= cut].reset_index(drop=True)
        pd.testing.assert_frame_equal(old_b, old_a)
        assert not a[a["event_timestamp"] > cut].reset_index(drop=True).equals(b[b["event_timestamp"] > cut].reset_index(drop=True))
    assert "LATE" not in set(after["customer_profile"].loc[lambda d: d["event_timestamp"] <= cut + DAY, "customer_id"])


def _reference(customers: pd.DataFrame, events: pd.DataFrame, cid: str, t: pd.Timestamp, fs, actions) -> dict:
    """Plain per-row computation of a selection of features (what the vectorised pipeline must equal)."""
    e = events[(events["customer_id"] == cid) & (events["event_timestamp"] < t)].sort_values("event_timestamp", kind="stable")
    tz = customers.set_index("customer_id").loc[cid, "timezone"]
    p = e[e["event_type"] == "purchase"]
    days = lambda x: (t - x) / DAY  # noqa: E731
    out: dict[str, float] = {"n_purchases": len(p)}
    out["days_since_first_purchase"] = days(p["event_timestamp"].iloc[0]) if len(p) else np.nan
    out["days_since_last_purchase"] = days(p["event_timestamp"].iloc[-1]) if len(p) else np.nan
    for d in (30, 90, 365):
        w = p[p["event_timestamp"] >= t - pd.Timedelta(days=d)]
        out[f"frequency_{d}d"] = len(w)
        out[f"monetary_{d}d"] = w["amount"].sum()
    sent7 = 0
    for ch in CHANNELS:
        m = e[e["channel"] == ch]
        sends = m[m["event_type"] == "message_sent"]
        out[f"sent_{ch}"] = len(sends)
        out[f"opened_{ch}"] = (m["event_type"] == "message_opened").sum()
        resp = m[m["event_type"].isin(["message_opened", "message_clicked", "message_converted"])]
        last_r = resp["event_timestamp"].iloc[-1] if len(resp) else None
        out[f"consecutive_ignores_{ch}"] = len(sends) if last_r is None else (sends["event_timestamp"] > last_r).sum()
        out[f"days_since_response_{ch}"] = days(last_r) if last_r is not None else np.nan
        out[f"sent_7d_{ch}"] = (sends["event_timestamp"] >= t - pd.Timedelta(days=7)).sum()
        sent7 += out[f"sent_7d_{ch}"]
        unsub = (m["event_type"] == "unsubscribed").any()
        out[f"consent_{ch}"] = 0.0 if unsub else float(customers.set_index("customer_id").loc[cid, f"consent_{ch}"])
    out["sent_7d_total"] = sent7
    for a in actions:
        s = e[(e["event_type"] == "message_sent") & (e["action_id"] == a)]
        out[f"days_since_action_{a}"] = days(s["event_timestamp"].iloc[-1]) if len(s) else np.nan
    eng = e[e["event_type"].isin(["message_opened", "message_clicked", "visit", "purchase"])]
    local = eng["event_timestamp"].dt.tz_convert(tz)
    out["n_engagements"] = len(eng)
    for h in range(24):
        out[f"hour_share_{h:02d}"] = (local.dt.hour == h).mean() if len(eng) else np.nan
    for d in range(7):
        out[f"weekday_share_{d}"] = (local.dt.dayofweek == d).mean() if len(eng) else np.nan
    return out


def test_vectorised_features_equal_a_plain_per_row_computation(settings):
    customers, events = make_world(n_customers=25, days=120, seed=11, sends_per_day=0.5)
    times = snapshot_times(customers, events, settings.features.cadence_days)
    snaps = build_snapshots(customers, events, settings, times=times)
    wide = snaps["customer_profile"]
    for view in list(views(tuple(settings.actions)))[1:]:
        wide = wide.merge(snaps[view], on=["customer_id", "event_timestamp"])
    rng = np.random.default_rng(0)
    checked = 0
    for i in rng.choice(len(wide), size=min(60, len(wide)), replace=False):
        row = wide.iloc[i]
        ref = _reference(customers, events, row["customer_id"], row["event_timestamp"], settings.features,
                         tuple(settings.actions))
        for name, want in ref.items():
            got = row[name]
            assert np.isclose(got, want, rtol=1e-5, atol=1e-4, equal_nan=True), (row["customer_id"], row["event_timestamp"], name, got, want)
            checked += 1
    assert checked > 1000


def test_lifecycle_stages_on_hand_made_customers(settings):
    fs = settings.features
    reg = T - pd.Timedelta(days=400)
    cs = [customer(c, reg) for c in "ABCDEFG"]
    evs = [
        # A never bought
        event("B", T - pd.Timedelta(days=5), "purchase", amount=10),  # activating
        event("C", T - pd.Timedelta(days=20), "purchase", amount=10),  # window closed without a 2nd purchase
        event("D", T - pd.Timedelta(days=70), "purchase", amount=10),  # 2nd within window, then silence
        event("D", T - pd.Timedelta(days=60), "purchase", amount=10),
        event("E", T - pd.Timedelta(days=200), "purchase", amount=10),  # lapsed
        event("E", T - pd.Timedelta(days=130), "purchase", amount=10),
        event("F", T - pd.Timedelta(days=30), "purchase", amount=10),  # 2nd purchase outside window, active
        event("F", T - pd.Timedelta(days=10), "purchase", amount=10),
        event("G", T, "purchase", amount=10),  # exactly at t: not seen yet
    ]
    snaps = snapshot_at(*frames(cs, evs), T, settings)
    want = {
        "A": (0, np.nan, 0), "B": (1, np.nan, 1), "C": (2, 0.0, 1), "D": (3, 1.0, 2),
        "E": (4, 0.0, 2), "F": (2, 0.0, 2), "G": (0, np.nan, 0),
    }
    for cid, (stage, second, n) in want.items():
        r = row_of(snaps, cid)
        assert r["stage_code"] == stage, cid
        assert np.isclose(r["second_purchase_in_window"], second, equal_nan=True), cid
        assert r["n_purchases"] == n, cid
        assert np.isclose(r["days_since_registration"], 400)
        assert r["tenure_days"] == 400
    assert np.isnan(row_of(snaps, "A")["days_since_last_purchase"])
    assert np.isclose(row_of(snaps, "D")["days_since_last_purchase"], 60)
    assert np.isclose(row_of(snaps, "D")["days_since_first_purchase"], 70)
    assert fs.at_risk_days <= 60 < fs.lapsed_days <= 130


def test_rfm_segment_drop(settings):
    fs = settings.features
    t = pd.Timestamp("2025-06-10", tz="UTC")  # month start 2025-06-01, previous 2025-05-01
    reg = pd.Timestamp("2024-01-01", tz="UTC")
    cs = [customer(c, reg) for c in ("REG", "LOYAL", "NEW")]
    evs = []
    # REG: 5 purchases, the last on 2025-04-10: regular on May 1st (recency 21 days),
    # occasional on June 1st (recency 52 days >= at_risk_days) -> dropped
    for d in ("2024-12-01", "2025-01-15", "2025-02-10", "2025-03-10", "2025-04-10"):
        evs.append(event("REG", pd.Timestamp(d, tz="UTC"), "purchase", amount=20))
    # LOYAL: two purchases a month for a year -> loyal on both dates
    for k in range(24):
        evs.append(event("LOYAL", pd.Timestamp("2024-06-05", tz="UTC") + pd.Timedelta(days=15 * k), "purchase", amount=5))
    # NEW: first purchase in May -> 0 (never bought) on May 1st, occasional on June 1st: a rise, not a drop
    evs.append(event("NEW", pd.Timestamp("2025-05-20", tz="UTC"), "purchase", amount=5))
    snaps = snapshot_at(*frames(cs, evs), t, settings)
    reg_row, loyal, new = row_of(snaps, "REG"), row_of(snaps, "LOYAL"), row_of(snaps, "NEW")
    assert (reg_row["rfm_segment_prev"], reg_row["rfm_segment"], reg_row["rfm_dropped"]) == (3, 2, 1)
    assert (loyal["rfm_segment_prev"], loyal["rfm_segment"], loyal["rfm_dropped"]) == (4, 4, 0)
    assert (new["rfm_segment_prev"], new["rfm_segment"], new["rfm_dropped"]) == (0, 2, 0)
    assert RFM_SEGMENTS[int(loyal["rfm_segment"])] == "loyal"
    # a year later everyone has lapsed
    later = snapshot_at(*frames(cs, evs), pd.Timestamp("2026-06-10", tz="UTC"), settings)
    assert row_of(later, "REG")["rfm_segment"] == 1 and row_of(later, "REG")["rfm_segment_prev"] == 1
    assert fs.lapsed_days < 365


def test_engagement_pressure_timing_and_consent(settings):
    reg = T - pd.Timedelta(days=100)
    cs = [customer("X", reg, tz="Asia/Tokyo")]
    evs = [
        event("X", T - pd.Timedelta(days=40), "message_sent", "email", action="cross_sell"),
        event("X", T - pd.Timedelta(days=39), "message_opened", "email"),
        event("X", T - pd.Timedelta(days=20), "message_sent", "email", action="cross_sell"),
        event("X", T - pd.Timedelta(days=3), "message_sent", "email", action="win_back"),
        event("X", T - pd.Timedelta(days=2), "message_sent", "sms", action="win_back"),
        event("X", T - pd.Timedelta(days=1), "unsubscribed", "sms"),
        # purchases at 08:30 UTC = 17:30 in Tokyo, on a Saturday and a Sunday
        event("X", pd.Timestamp("2025-05-24 08:30", tz="UTC"), "purchase", amount=5),
        event("X", pd.Timestamp("2025-05-25 08:30", tz="UTC"), "purchase", amount=5),
    ]
    r = row_of(snapshot_at(*frames(cs, evs), T, settings), "X")
    assert r["sent_email"] == 3 and r["opened_email"] == 1
    assert np.isclose(r["open_rate_email"], 1 / 3)
    assert r["consecutive_ignores_email"] == 2
    assert np.isclose(r["days_since_response_email"], 39)
    assert np.isnan(r["days_since_response_sms"]) and r["consecutive_ignores_sms"] == 1
    assert np.isnan(r["open_rate_push"]) and r["sent_push"] == 0
    assert (r["sent_7d_email"], r["sent_7d_sms"], r["sent_7d_total"], r["sent_30d_total"]) == (1, 1, 2, 3)
    assert np.isclose(r["days_since_action_win_back"], 2)
    assert np.isclose(r["days_since_action_cross_sell"], 20)
    assert np.isnan(r["days_since_action_welcome"])
    assert r["consent_sms"] == 0 and r["consent_email"] == 1
    assert r["n_engagements"] == 3  # the open and two purchases
    assert np.isclose(r["hour_share_17"], 2 / 3)
    assert np.isclose(r["weekday_share_5"] + r["weekday_share_6"], 2 / 3)
    assert r["timezone"] == "Asia/Tokyo"


def test_attribute_codes_are_stable():
    codes = compute.attribute_code(["b2c", "b2b", "b2c", None])
    assert codes[0] == codes[2] and codes[0] != codes[1]
    assert codes[3] == compute.attribute_code(["unknown"])[0]
    assert 0 <= codes.min() and codes.max() < compute.ATTRIBUTE_CODE_MODULUS
    assert compute.attribute_code(["b2c"])[0] == zlib.crc32(b"b2c") % 997 == 480  # fixed across runs and machines


def test_transactions_only_world_builds_and_says_so_once(settings, capsys):
    customers, events = make_world(n_customers=60, days=90, seed=4, messages=False)
    write_world(settings.world_dir, customers, events)
    summary = pipeline.build(settings)
    err = capsys.readouterr().err
    assert err.count("no message events") == 1, err
    assert "engagement" in err and "timing" in err
    assert summary["warnings"] and summary["rows"] > 0
    eng = pd.read_parquet(settings.features_dir / "customer_engagement.parquet")
    assert (eng["sent_email"] == 0).all() and eng["open_rate_email"].isna().all()
    timing = pd.read_parquet(settings.features_dir / "customer_timing.parquet")
    assert timing["n_engagements"].max() > 0  # purchases and visits still give engagement hours
    for view in views(tuple(settings.actions)):
        assert (settings.features_dir / f"{view}.parquet").exists()
    assert (settings.features_dir / "history" / "events.parquet").exists()
    assert len(pipeline.read_meta(settings.features_dir)["times"]) == summary["snapshots"]


def test_empty_inputs_do_not_crash(settings):
    c, e = frames([customer("A", T - DAY)], [])
    snaps = snapshot_at(c, e, T, settings)
    assert len(snaps["customer_profile"]) == 1
    none = snapshot_at(c, e, T - 2 * DAY, settings)
    assert all(len(df) == 0 for df in none.values())
    by_view = views(tuple(settings.actions))
    assert len(customer_features(tuple(settings.actions))) == sum(len(v) for v in by_view.values())


def test_a_base_split_into_parts_builds_the_same_features_as_a_whole_one(tmp_path, tiny_world):
    from tests.features.conftest import settings_for

    whole, split = settings_for(tmp_path / "whole"), settings_for(tmp_path / "split")
    split = split.model_copy(update={"engine": split.engine.model_copy(update={"max_partition_customers": 50})})
    for s in (whole, split):
        write_world(s.world_dir, *tiny_world)
    a, b = pipeline.build(whole), pipeline.build(split)
    assert b["parts"] > a["parts"] and b["rows"] == a["rows"] and b["events"] == a["events"] == len(tiny_world[1])
    assert not (split.features_dir / ".split").exists()  # the parts are removed once built
    key = ["customer_id", "event_timestamp"]
    for view in views(tuple(whole.actions)):
        want = pd.read_parquet(whole.features_dir / f"{view}.parquet").sort_values(key, ignore_index=True)
        got = pd.read_parquet(split.features_dir / f"{view}.parquet").sort_values(key, ignore_index=True)
        pd.testing.assert_frame_equal(got, want)
    for table in ("customers", "events"):
        want = pd.read_parquet(whole.features_dir / "history" / f"{table}.parquet")
        got = pd.read_parquet(split.features_dir / "history" / f"{table}.parquet")
        assert len(got) == len(want) and set(got["customer_id"]) == set(want["customer_id"])


def test_a_split_base_with_a_bad_row_is_refused_naming_the_file_and_column(tmp_path, tiny_world):
    from nextbest.contract import ContractError
    from tests.features.conftest import settings_for

    s = settings_for(tmp_path / "data")
    s = s.model_copy(update={"engine": s.engine.model_copy(update={"max_partition_customers": 50})})
    customers, events = tiny_world
    events = events.astype({"event_timestamp": str})
    events.loc[len(events) // 2, "event_timestamp"] = "yesterday"
    write_world(s.world_dir, customers, events, fmt="csv")
    with pytest.raises(ContractError) as err:
        pipeline.build(s)
    assert "events.csv" in str(err.value) and "event_timestamp" in str(err.value) and "ISO-8601" in str(err.value)
    assert not (s.features_dir / "customer_profile.parquet").exists()  # nothing half-built is swapped in


@pytest.mark.parametrize("max_partition_customers", [50, 10_000], ids=["split", "whole"])
def test_the_customers_training_reads_get_chunks_of_their_own_and_the_same_features(tmp_path, tiny_world,
                                                                                   max_partition_customers):
    """A base larger than ``training.max_customers``: the sampled customers' snapshots are written in part files
    of their own (a point-in-time read for them skips the other files), and every row is what the build without
    a sample writes."""
    from features.store import apply, historical_features
    from nextbest.partition import customer_ids, training_sample
    from tests.features.conftest import settings_for

    plain, sampled = settings_for(tmp_path / "plain"), settings_for(tmp_path / "sampled")
    engine = sampled.engine.model_copy(update={"max_partition_customers": max_partition_customers})
    sampled = sampled.model_copy(update={"engine": engine,
                                         "training": sampled.training.model_copy(update={"max_customers": 40})})
    for s in (plain, sampled):
        write_world(s.world_dir, *tiny_world)
    pipeline.build(plain)
    pipeline.build(sampled)
    sample = set(training_sample(sampled, customer_ids(sampled.world_dir)))
    assert len(sample) == 40 and training_sample(plain, customer_ids(plain.world_dir)) is None
    key = ["customer_id", "event_timestamp"]
    for view in views(tuple(plain.actions)):
        who = [set(pd.read_parquet(p, columns=["customer_id"])["customer_id"])
               for p in pipeline.snapshot_parts(sampled.features_dir / f"{view}.parquet")]
        assert all(ids <= sample or not ids & sample for ids in who)  # no file mixes the two
        assert any(ids <= sample for ids in who) and any(not ids & sample for ids in who)
        want = pd.read_parquet(plain.features_dir / f"{view}.parquet").sort_values(key, ignore_index=True)
        got = pd.read_parquet(sampled.features_dir / f"{view}.parquet").sort_values(key, ignore_index=True)
        pd.testing.assert_frame_equal(got, want)
    apply(plain)
    apply(sampled)
    meta = pipeline.read_meta(plain.features_dir)
    rows = pd.DataFrame({"customer_id": sorted(sample) + ["unknown-customer"],
                         "event_timestamp": pd.Timestamp(meta["times"][len(meta["times"]) // 2])})
    pd.testing.assert_frame_equal(historical_features(sampled, rows), historical_features(plain, rows))
