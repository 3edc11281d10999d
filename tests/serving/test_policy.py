"""The decision policy, one rule at a time, on hand-built feature rows."""

from __future__ import annotations

import json
import uuid
from datetime import datetime, time, timedelta, timezone
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd
import pytest
from pydantic import ValidationError

from features.context import compute_context
from features.names import customer_features
from nextbest.settings import DEFAULT_CONFIG_DIR, load_settings
from nextbest.vocabulary import CHANNELS, NO_ACTION, STAGES
from serving.policy import FALLBACKS, DecisionInputs, compile_policy, decide, send_times, stable_unit
from serving.schemas import CustomerDecision, FeedbackRequest, NextActionRequest, NextActionResponse

SETTINGS = load_settings(DEFAULT_CONFIG_DIR, environ={})  # the shipped configs/
FI = {f: i for i, f in enumerate(customer_features(tuple(SETTINGS.actions)))}
NOW = datetime(2025, 6, 3, 7, 17, tzinfo=timezone.utc)  # a Tuesday morning


@pytest.fixture(scope="module")
def settings():
    return SETTINGS


def with_control(settings, share: float, exploration: float = 0.0):
    """The settings with this control share and exploration share (off: rules are tested alone)."""
    return settings.model_copy(update={"serving": settings.serving.model_copy(
        update={"control_share": share, "exploration_share": exploration})})


@pytest.fixture(scope="module")
def policy(settings):
    """The shipped catalogue and contact policy, without a control group or exploration (rules are tested
    alone)."""
    return compile_policy(with_control(settings, 0.0))


def customer(stage: str = "active", channels=CHANNELS, **features) -> dict:
    """One feature row: consented and reachable on `channels`, no contact history, nothing else known."""
    row = {
        "stage_code": STAGES.index(stage),
        "tenure_days": 200,
        "rfm_dropped": 0,
        "sent_7d_total": 0,
        "sent_30d_total": 0,
    }
    for c in CHANNELS:
        row[f"consent_{c}"] = float(c in channels)
        row[f"reachable_{c}"] = float(c in channels)
        row[f"sent_7d_{c}"] = row[f"sent_30d_{c}"] = 0
        row[f"consecutive_ignores_{c}"] = 0
    row.update(features)
    return row


def inputs(rows: list[dict], response=None, p_activation=0.3, p_churn=0.1, hour=18, **kw) -> DecisionInputs:
    """DecisionInputs for `rows`; `response` is {channel: P(click)} (0.05 on the others)."""
    n = len(rows)
    X = np.full((n, len(FI)), np.nan, np.float32)
    for i, r in enumerate(rows):
        for k, v in r.items():
            X[i, FI[k]] = v
    p_resp = np.full((n, len(CHANNELS)), 0.05, np.float32)
    for c, p in (response or {}).items():
        p_resp[:, CHANNELS.index(c)] = p
    hour_dist = np.full((n, 24), 0.01, np.float32)
    hour_dist[:, hour] = 0.5
    args = dict(
        customer_ids=[f"cust-{i}" for i in range(n)],
        X=X,
        feature_index=FI,
        timezones=["Europe/Paris"] * n,
        now=NOW,
        p_activation=np.full(n, p_activation, np.float32),
        p_churn=np.full(n, p_churn, np.float32),
        p_response=p_resp,
        hour_dist=hour_dist,
        day_part="afternoon",
    )
    args.update(kw)
    return DecisionInputs(**args)


def one(policy, row: dict, **kw) -> dict:
    return decide(inputs([row], **kw), policy, {"activation": "1"}).to_records()[0]


def codes(rec: dict) -> list[str]:
    return [r["code"] for r in rec["reasons"]]


# --------------------------------------------------------------------------- channels


def test_never_picks_a_channel_without_consent_and_reachability(policy):
    rng = np.random.default_rng(3)
    rows, stages = [], ["registered", "activating", "active", "at_risk", "lapsed"]
    for i in range(400):
        row = customer(stages[i % 5], rfm_dropped=float(i % 3 == 0))
        for c in CHANNELS:
            row[f"consent_{c}"] = float(rng.random() < 0.5)
            row[f"reachable_{c}"] = float(rng.random() < 0.5)
        rows.append(row)
    inp = inputs(rows, response={c: 0.4 for c in CHANNELS}, p_churn=0.6)
    d = decide(inp, policy)
    chosen = d.channel_idx >= 0
    assert chosen.sum() > 100  # the test means something
    for i in np.flatnonzero(chosen):
        c = CHANNELS[d.channel_idx[i]]
        assert rows[i][f"consent_{c}"] == 1 and rows[i][f"reachable_{c}"] == 1
    none = [i for i, r in enumerate(rows) if not any(r[f"consent_{c}"] and r[f"reachable_{c}"] for c in CHANNELS)]
    assert none and all(d.action[i] == NO_ACTION and "no_consented_channel" in d.reason_codes(i) for i in none)


def test_consent_without_address_is_not_a_channel(policy):
    row = customer("active", channels=("push",), consent_email=1, reachable_email=0)
    rec = one(policy, row, response={"email": 0.9, "push": 0.05})
    assert rec["channel"] == "push"


def test_cap_reached_blocks_the_channel(policy):
    free = one(policy, customer("active"), response={"email": 0.3})
    assert free["channel"] == "email"
    capped = one(policy, customer("active", sent_30d_email=4), response={"email": 0.3})
    assert capped["channel"] not in (None, "email")
    assert "cap_reached:email" in codes(capped)


def test_caps_read_the_window_of_their_length(policy):
    # push: 3 in 7 days -> the 7-day count decides, however many in 30 days
    busy_month = one(policy, customer("active", channels=("push",), sent_7d_push=1, sent_30d_push=9))
    assert busy_month["channel"] == "push"
    busy_week = one(policy, customer("active", channels=("push",), sent_7d_push=3, sent_30d_push=3))
    assert busy_week["action"] == NO_ACTION and "cap_reached:push" in codes(busy_week)


def test_overall_cap_means_no_action(policy):
    rec = one(policy, customer("active", sent_7d_total=3), response={c: 0.5 for c in CHANNELS})
    assert rec["action"] == NO_ACTION and rec["channel"] is None and rec["send_at"] is None
    assert "cap_reached:overall" in codes(rec)


def test_email_ignorer_is_relayed_to_sms_or_print(policy):
    row = customer("at_risk", rfm_dropped=1, consecutive_ignores_email=5)
    rec = one(policy, row, response={"email": 0.6, "sms": 0.45, "print": 0.4}, p_churn=0.6)
    assert rec["action"] == "anti_attrition_offer"
    assert rec["channel"] in ("sms", "print")
    assert "email_ignored_relay" in codes(rec)
    # below the threshold e-mail is still used
    row["consecutive_ignores_email"] = 3
    assert one(policy, row, response={"email": 0.6, "sms": 0.45, "print": 0.4}, p_churn=0.6)["channel"] == "email"


# --------------------------------------------------------------------------- actions


def test_cooldown_blocks_the_action(policy):
    row = customer("activating", days_since_action_second_use_nudge=2)
    rec = one(policy, row, response={"sms": 0.3})
    assert rec["action"] != "second_use_nudge" and "cooldown:second_use_nudge" in codes(rec)
    row["days_since_action_second_use_nudge"] = 5  # cooldown is 4 days
    assert one(policy, row, response={"sms": 0.3})["action"] == "second_use_nudge"


def test_missing_email_asks_for_it_by_sms(policy):
    row = customer("active", channels=("sms",), consent_email=1)
    rec = one(policy, row, response={"sms": 0.1})
    assert (rec["action"], rec["channel"]) == ("contact_enrichment", "sms")
    # with an e-mail address on file there is nothing to enrich
    row = customer("active", channels=("sms", "email"))
    assert one(policy, row, response={"sms": 0.1})["action"] != "contact_enrichment"


def test_activating_customer_gets_second_use_nudge(policy):
    rec = one(policy, customer("activating"), response={"push": 0.2})
    assert rec["stage"] == "activating" and "stage:activating" in codes(rec)
    assert (rec["action"], rec["channel"]) == ("second_use_nudge", "push")


def test_dropped_rfm_segment_gets_anti_attrition_offer(policy):
    # P(churn) 0.3 is under the 0.35 threshold: only the dropped RFM segment makes the offer eligible
    row = customer("at_risk", rfm_dropped=1)
    rec = one(policy, row, response={"email": 0.5}, p_churn=0.3)
    assert rec["action"] == "anti_attrition_offer"
    row["rfm_dropped"] = 0
    assert one(policy, row, response={"email": 0.5}, p_churn=0.3)["action"] != "anti_attrition_offer"


def test_registered_never_bought_gets_activation_nudge_on_best_channel(policy):
    for best in ("email", "sms", "push", "in_app"):
        row = customer("registered", tenure_days=30)
        rec = one(policy, row, response={best: 0.25}, p_activation=0.3)
        assert (rec["action"], rec["channel"]) == ("activation_nudge", best)
        assert rec["expected_value"] > 0 and "best_ev" in codes(rec)


def test_welcome_only_within_its_tenure(policy):
    young = one(policy, customer("registered", tenure_days=3), response={"email": 0.3}, p_activation=0.01)
    old = one(policy, customer("registered", tenure_days=30), response={"email": 0.3}, p_activation=0.01)
    assert young["action"] == "welcome" and old["action"] != "welcome"


def test_near_store_moves_the_decision_to_push_or_in_app(policy):
    row = customer("active", channels=("email", "push", "in_app"))
    resp = {"email": 0.08, "push": 0.06, "in_app": 0.05}
    away = one(policy, row, response=resp)
    near = one(policy, row, response=resp, near_store=True)
    assert away["channel"] == "email"
    assert near["channel"] in ("push", "in_app") and "context:near_store" in codes(near)
    assert "context:near_store" not in codes(away)


def test_breakfast_boosts_push_from_the_local_clock(policy):
    row = customer("active", channels=("email", "push"))
    resp = {"email": 0.08, "push": 0.07}
    at_8 = datetime(2025, 6, 3, 6, 0, tzinfo=timezone.utc)  # 08:00 in Paris
    at_15 = datetime(2025, 6, 3, 13, 0, tzinfo=timezone.utc)
    assert one(policy, row, response=resp, now=at_8, day_part=None)["channel"] == "push"
    assert one(policy, row, response=resp, now=at_15, day_part=None)["channel"] == "email"


def test_context_features_from_the_feature_module(policy):
    row = customer("active", channels=("email", "push", "in_app"))
    resp = {"email": 0.08, "push": 0.06, "in_app": 0.05}
    ctx = compute_context([NOW], ["Europe/Paris"], ["location"], [None], [True], ["sunny"])
    near = one(policy, row, response=resp, context=ctx, day_part=None)
    assert near["channel"] in ("push", "in_app") and "context:near_store" in codes(near)
    with pytest.raises(ValueError, match="context"):
        one(policy, row, context={"ctx_moon_phase": [1.0]})


def test_request_restriction_limits_the_actions(policy):
    row = customer("registered", tenure_days=3)
    rec = one(policy, row, response={"email": 0.3}, restrict_actions=[["activation_nudge"]])
    assert rec["action"] == "activation_nudge" and "restricted" in codes(rec)
    with pytest.raises(ValueError, match="restrict_actions"):
        one(policy, row, restrict_actions=[["free_lunch"]])


def test_nothing_worth_its_cost_means_no_action(policy):
    rec = one(policy, customer("active"), response={c: 0.0005 for c in CHANNELS}, p_churn=0.9)
    assert rec["action"] == NO_ACTION and rec["expected_value"] == 0.0
    assert "nothing_worth_cost" in codes(rec)


# --------------------------------------------------------------------------- control group


def test_control_group_share_is_stable(settings):
    pol = compile_policy(settings)  # shipped control share
    n = 20_000
    ids = [f"cust-{i}" for i in range(n)]
    rows = [customer("activating")] * n
    d1 = decide(inputs(rows, response={"push": 0.3}, customer_ids=ids), pol)
    share = d1.control_group.mean()
    assert abs(share - settings.serving.control_share) < 0.01
    # same ids, another call and another order: same membership
    order = np.random.default_rng(0).permutation(n)
    d2 = decide(inputs(rows, response={"push": 0.3}, customer_ids=[ids[i] for i in order]), pol)
    assert np.array_equal(d2.control_group, d1.control_group[order])
    # held-out customers get nothing, and the would-be action is kept
    recs = d1.to_records()
    held = [r for r in recs if r["control_group"]]
    assert all(r["action"] == NO_ACTION and r["send_at"] is None for r in held)
    assert all(r["holdout_action"] == "second_use_nudge" and r["holdout_channel"] == "push" for r in held)
    assert all("control_group" in codes(r) for r in held)
    assert all(r["holdout_action"] is None for r in recs if not r["control_group"])
    # the assignment is the documented hash
    hashed = stable_unit(ids, settings.serving.experiment) < settings.serving.control_share
    assert np.array_equal(hashed, d1.control_group)


def test_control_group_depends_on_the_experiment(settings):
    ids = [f"cust-{i}" for i in range(5000)]
    a = stable_unit(ids, "exp-a") < 0.1
    b = stable_unit(ids, "exp-b") < 0.1
    assert 0 < (a & b).sum() < a.sum()


# --------------------------------------------------------------------------- send time


@pytest.mark.parametrize("n", [1, 60])  # the per-row path and the vectorised path
def test_send_at_is_future_outside_quiet_hours_with_the_offset(policy, n):
    zones = ["Europe/Paris", "America/New_York", "Asia/Kolkata", "Australia/Sydney", "UTC", "Pacific/Chatham"]
    nows = [
        NOW,
        datetime(2025, 3, 30, 0, 30, tzinfo=timezone.utc),  # Paris springs forward at 01:00 UTC
        datetime(2025, 11, 2, 5, 30, tzinfo=timezone.utc),  # New York falls back at 06:00 UTC
        datetime(2025, 12, 31, 22, 59, tzinfo=timezone.utc),
    ]
    qh = policy.settings.contact_policy.quiet_hours
    for tz in zones:
        for now in nows:
            for hour in (23, 2, 9, 10, 20):  # 23 and 2 are quiet: the next best allowed hour is used
                rows = [customer("activating")] * n
                d = decide(inputs(rows, {"push": 0.3}, hour=hour, timezones=[tz] * n, now=now), policy)
                for rec in d.to_records():
                    at = datetime.fromisoformat(rec["send_at"])
                    assert at > now, (tz, now, hour, rec["send_at"])
                    assert at - now <= timedelta(hours=25)
                    local = at.astimezone(ZoneInfo(tz))
                    assert at.utcoffset() == local.utcoffset(), (tz, rec["send_at"])
                    assert not (local.hour >= qh.start or local.hour < qh.end), rec["send_at"]
                    assert local.minute == 0 and local.second == 0
                    if hour not in (23, 2):
                        assert local.hour == hour and rec["scores"]["best_hours"][0] == hour


def _reference_send_time(now: datetime, hour: int, zone: ZoneInfo) -> tuple[datetime, timedelta]:
    """The rule, one row at a time with zoneinfo: next hour:00 local strictly after now (fold=0).
    Returns the UTC instant and the offset in force then (aware times in a fold compare unequal
    across zones, so compare instants)."""
    day = now.astimezone(zone).date()
    while (at := datetime.combine(day, time(hour), tzinfo=zone)) <= now:
        day += timedelta(days=1)
    utc = at.astimezone(timezone.utc)
    return utc, utc.astimezone(zone).utcoffset()


def test_send_times_match_a_per_row_zoneinfo_reference():
    zones = ["Europe/Paris", "America/New_York", "Australia/Lord_Howe", "Asia/Kathmandu", "America/Santiago", "UTC"]
    rng = np.random.default_rng(5)
    days = ["2025-03-09", "2025-03-30", "2025-04-06", "2025-10-05", "2025-10-26", "2025-11-02"]  # DST changes
    transitions = pd.to_datetime(days, utc=True)
    now = transitions.asi8[rng.integers(0, 6, 600)] + rng.integers(-36 * 3600, 36 * 3600, 600) * 10**9
    hour = rng.integers(0, 24, 600)
    codes = np.repeat(np.arange(len(zones)), 100)
    utc, offset = send_times(now, hour, codes, zones)
    for i in range(600):
        zone = ZoneInfo(zones[codes[i]])
        at = pd.Timestamp(now[i], tz="UTC").to_pydatetime()
        expected, expected_offset = _reference_send_time(at, int(hour[i]), zone)
        assert pd.Timestamp(utc[i], tz="UTC") == expected, (zones[codes[i]], now[i], hour[i])
        assert offset[i] == expected_offset // timedelta(minutes=1)


def test_send_at_is_the_next_occurrence_of_the_best_hour(policy):
    paris = ZoneInfo("Europe/Paris")
    now = datetime(2025, 6, 3, 9, 30, tzinfo=paris)
    later = one(policy, customer("activating"), response={"push": 0.3}, hour=18, now=now)
    tomorrow = one(policy, customer("activating"), response={"push": 0.3}, hour=9, now=now)
    assert later["send_at"] == "2025-06-03T18:00:00+02:00"
    assert tomorrow["send_at"] == "2025-06-04T09:00:00+02:00"


def test_unknown_timezone_falls_back_to_utc(policy):
    rec = one(policy, customer("activating"), response={"push": 0.3}, timezones=["Mars/Olympus"])
    assert rec["send_at"].endswith("+00:00") and "timezone" in rec["fallbacks"]


# --------------------------------------------------------------------------- ids, cold start, fallbacks


def test_same_request_id_gives_same_decision_id(policy):
    rows = [customer("activating")] * 3
    a = decide(inputs(rows, request_id="req-42"), policy).decision_id
    b = decide(inputs(rows, request_id="req-42"), policy).decision_id
    c = decide(inputs(rows, request_id="req-43"), policy).decision_id
    r1, r2 = decide(inputs(rows), policy).decision_id, decide(inputs(rows), policy).decision_id
    assert list(a) == list(b) and len(set(a)) == 3
    assert not set(a) & set(c)
    assert not set(r1) & set(r2) and len(set(r1)) == 3
    assert [uuid.UUID(x).version for x in (a[0], r1[0])] == [8, 4]


def test_unknown_customer_is_a_flagged_cold_start_with_an_answer(policy):
    unknown = {}  # nothing known: no consent either
    known_consent = {f"consent_{c}": 1 for c in ("email", "push")} | {f"reachable_{c}": 1 for c in ("email", "push")}
    d = decide(inputs([unknown, known_consent], found=np.array([False, False])), policy, {"activation": "7"})
    recs = d.to_records()
    for rec in recs:
        CustomerDecision.model_validate(rec)
        assert rec["cold_start"] and rec["stage"] == "registered" and "cold_start" in codes(rec)
        assert rec["fallback"] and {"activation_model", "churn_model", "response_model"} <= set(rec["fallbacks"])
        assert rec["scores"]["best_hours"][0] == 10  # the default hour
    assert recs[0]["action"] == NO_ACTION and "no_consented_channel" in codes(recs[0])
    assert recs[1]["action"] in ("welcome", "activation_nudge") and recs[1]["send_at"]


def test_missing_model_is_flagged_and_replaced(policy):
    rows = [customer("at_risk", rfm_dropped=1)] * 2
    rec = decide(inputs(rows, {"email": 0.5}, p_churn=None), policy).to_records()[0]
    assert rec["fallback"] and rec["fallbacks"] == ["churn_model", "effect_model"] and "fallback:churn_model" in codes(rec)
    assert rec["scores"]["churn"] == pytest.approx(0.45)  # the at-risk prior
    p_act = np.array([0.3, np.nan], np.float32)
    d = decide(inputs([customer("registered", tenure_days=30)] * 2, {"email": 0.3}, p_activation=p_act), policy)
    assert d.fallbacks[:, FALLBACKS.index("activation_model")].tolist() == [False, True]
    d = decide(inputs(rows, p_response=None, hour_dist=None), policy)
    assert set(d.to_records()[0]["fallbacks"]) == {"response_model", "send_time_model", "effect_model"}
    assert len(FALLBACKS) == d.fallbacks.shape[1]


def test_missing_policy_feature_is_named(policy):
    fi = {k: v for k, v in FI.items() if k != "consent_sms"}
    with pytest.raises(ValueError, match="consent_sms"):
        decide(inputs([customer()], feature_index=fi), policy)


# --------------------------------------------------------------------------- outputs and schemas


def test_records_and_frame_match_the_contract(settings):
    pol = compile_policy(settings)
    rows = [customer(s) for s in ("registered", "activating", "active", "at_risk", "lapsed")] * 40
    ids = [f"c{i}" for i in range(200)]
    d = decide(inputs(rows, {"email": 0.3, "sms": 0.2}, request_id="r", customer_ids=ids), pol, {"churn": "3"})
    recs = d.to_records()
    assert json.loads(json.dumps(recs)) == recs  # plain Python types only
    resp = NextActionResponse.model_validate({"request_id": "r", "decisions": recs})
    assert len(resp.decisions) == 200 and resp.decisions[0].model_versions == {"churn": "3"}
    df = d.to_frame()
    assert len(df) == 200
    assert list(df["action"].astype(str)) == [r["action"] for r in recs]
    assert list(df["decision_id"]) == [r["decision_id"] for r in recs]
    assert df["reasons"].astype(str).iloc[0] == ";".join(codes(recs[0]))
    assert set(df["action"].astype(str)) <= set(SETTINGS.actions) | {NO_ACTION}


def test_request_schema_names_the_field():
    body = {"request_id": "r", "customer_ids": ["a", "b"], "context": {"near_store": True}}
    ok = NextActionRequest.model_validate(body)
    assert [c for c, _ in ok.items()] == ["a", "b"] and ok.columns()["near_store"] == [True, True]
    from nextbest.settings import MAX_CUSTOMERS_PER_REQUEST

    too_many = {"customer_ids": [f"c{i}" for i in range(MAX_CUSTOMERS_PER_REQUEST + 1)]}
    with pytest.raises(ValidationError, match=f"customer_ids\n.*at most {MAX_CUSTOMERS_PER_REQUEST} items"):
        NextActionRequest.model_validate(too_many)
    with pytest.raises(ValidationError, match="customers / customer_ids"):
        NextActionRequest.model_validate({})
    with pytest.raises(ValidationError, match="trigger_timestamp"):
        NextActionRequest.model_validate(
            {"customers": [{"customer_id": "a", "context": {"trigger_timestamp": "2025-01-01T10:00:00"}}]}
        )
    with pytest.raises(ValidationError, match="duplicate"):
        NextActionRequest.model_validate({"customer_ids": ["a", "a"]})


def test_feedback_schema():
    fb = {
        "decision_id": str(uuid.uuid4()),
        "customer_id": "a",
        "event": "clicked",
        "channel": "sms",
        "action_id": "win_back",
        "timestamp": "2025-06-03T10:00:00+02:00",
    }
    FeedbackRequest.model_validate(fb)
    with pytest.raises(ValidationError, match="event"):
        FeedbackRequest.model_validate(fb | {"event": "bounced"})
