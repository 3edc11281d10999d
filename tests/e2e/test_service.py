"""End to end over HTTP: real Feast store, real MLflow registry, real BentoML server.

Covers what a journey engine relies on (decisions for known customers, consent,
caps, control group, cold start, malformed input, auth, feedback changing the
next decision) and the five case studies of DOMAIN.md as scenarios.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta

import httpx
import pandas as pd
import pytest

from nextbest.vocabulary import CHANNELS, STAGES
from tests.support import now_of

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


def decide(server, ids, **body) -> list[dict]:
    r = server.post("/next_action", json={"customer_ids": list(ids), **body})
    assert r.status_code == 200, r.text
    return r.json()["decisions"]


def one(server, cid, **context) -> dict:
    body = {"customer_ids": [cid]}
    if context:
        body["context"] = context
    body["request_id"] = str(uuid.uuid4())
    r = server.post("/next_action", json=body)
    assert r.status_code == 200, r.text
    return r.json()["decisions"][0]


def codes(d: dict) -> set[str]:
    return {r["code"] for r in d["reasons"]}


def feedback(server, d: dict, event: str, when: datetime, channel: str | None = None,
             action: str | None = None) -> httpx.Response:
    return server.post("/feedback", json={
        "decision_id": d["decision_id"], "customer_id": d["customer_id"], "event": event,
        "channel": channel or d["channel"], "action_id": action or d["action"], "timestamp": when.isoformat()})


@pytest.fixture(scope="module")
def now(installation) -> datetime:
    """The service's fixed clock (the morning after the test world's last day)."""
    return now_of(installation)


@pytest.fixture(scope="module")
def base_ids(installation) -> list[str]:
    cust = pd.read_parquet(installation.world_dir / "customers.parquet", columns=["customer_id"])
    return [c for c in cust["customer_id"] if c.startswith("C")]


@pytest.fixture(scope="module")
def all_decisions(server, base_ids) -> pd.DataFrame:
    rows = []
    for lo in range(0, len(base_ids), 500):
        rows += decide(server, base_ids[lo:lo + 500], request_id=f"all-{lo}")
    return pd.DataFrame(rows)


# --------------------------------------------------------------------------- contract


def test_known_customers_get_a_full_decision(all_decisions, installation, now):
    d = all_decisions
    assert len(d) > 2000 and d["decision_id"].is_unique
    acted = d[d.action != "no_action"]
    assert len(acted) > 0, "nobody got an action"
    assert set(acted["action"]) <= set(installation.actions)
    for _, r in acted.head(200).iterrows():
        when = datetime.fromisoformat(r.send_at)
        assert when.tzinfo is not None and now < when <= now + timedelta(days=2)
        assert r.channel in CHANNELS and r.stage in STAGES
        assert set(r.model_versions) == {"activation", "churn", "channel", "send_time", "effect"}
        assert not r.cold_start
        assert "best_ev" in {x["code"] for x in r.reasons}


def test_never_a_channel_without_consent_and_reachability(all_decisions, installation):
    from features.store import OnlineFeatures

    online = OnlineFeatures(installation)
    acted = all_decisions[all_decisions.action != "no_action"]
    X, found, _ = online.read(acted["customer_id"].tolist())
    assert found.all()
    for j, c in enumerate(CHANNELS):
        rows = (acted["channel"] == c).to_numpy()
        ok = (X[rows, online.index(f"consent_{c}")] == 1) & (X[rows, online.index(f"reachable_{c}")] == 1)
        assert ok.all(), f"{(~ok).sum()} decisions on {c} without consent or reachability"


def test_send_times_respect_quiet_hours(all_decisions, installation):
    q = installation.contact_policy.quiet_hours
    acted = all_decisions[all_decisions.action != "no_action"]
    hours = [datetime.fromisoformat(x).hour for x in acted["send_at"]]
    quiet = [h for h in hours if (h >= q.start or h < q.end)]
    assert not quiet, f"{len(quiet)} sends scheduled in quiet hours"


def test_control_group_share_and_answer(all_decisions, installation):
    share = all_decisions["control_group"].mean()
    assert abs(share - installation.serving.control_share) < 0.03
    held = all_decisions[all_decisions.control_group]
    assert (held["action"] == "no_action").all()
    assert held["holdout_action"].notna().all()  # the would-be action is kept for uplift measurement
    assert all("control_group" in {x["code"] for x in r} for r in held["reasons"])


def test_same_request_id_same_decision(server, base_ids):
    a = decide(server, base_ids[:3], request_id="idem-1")
    b = decide(server, base_ids[:3], request_id="idem-1")
    assert [x["decision_id"] for x in a] == [x["decision_id"] for x in b]
    assert [x["action"] for x in a] == [x["action"] for x in b]


def test_unknown_customer_gets_flagged_cold_start(server):
    d = one(server, "never-seen-before-42")
    assert d["cold_start"] and d["fallback"] and "cold_start" in codes(d)
    assert d["action"] == "no_action" and "no_consented_channel" in codes(d)  # nothing known about consent


@pytest.mark.parametrize("body, field", [
    ({}, "customer"),
    ({"customer_ids": "C0000001"}, "customer_ids"),
    ({"customer_ids": []}, "customer_ids"),
    ({"customer_ids": ["a", "a"]}, "duplicate"),
    ({"customers": [{"customer_id": "a", "context": {"trigger_event": "teleport"}}]}, "trigger_event"),
    ({"customer_ids": ["a"], "context": {"near_store": "maybe"}}, "near_store"),
])
def test_malformed_request_is_a_400_naming_the_field(server, body, field):
    r = server.post("/next_action", json=body)
    assert r.status_code == 400, r.text
    assert field in r.text


def test_too_many_customers_is_refused(server, installation):
    n = installation.serving.max_customers_per_request + 1
    r = server.post("/next_action", json={"customer_ids": [f"x{i}" for i in range(n)]})
    assert r.status_code == 400 and "at most" in r.text


def test_bearer_token_required(server):
    r = httpx.post(str(server.base_url).rstrip("/") + "/next_action", json={"customer_ids": ["a"]})
    assert r.status_code == 401 and "Bearer" in r.text
    r = httpx.post(str(server.base_url).rstrip("/") + "/next_action", json={"customer_ids": ["a"]},
                   headers={"authorization": "Bearer wrong"})
    assert r.status_code == 401


def test_feedback_errors(server, base_ids, now):
    d = one(server, base_ids[0])
    bad = feedback(server, {**d, "decision_id": str(uuid.uuid4())}, "sent", now, "email", "welcome")
    assert bad.status_code == 404 and "decision_id" in bad.text
    r = server.post("/feedback", json={"decision_id": d["decision_id"], "customer_id": d["customer_id"],
                                       "event": "teleported", "channel": "email", "action_id": "welcome",
                                       "timestamp": now.isoformat()})
    assert r.status_code == 400 and "event" in r.text
    r = server.post("/feedback", json={"decision_id": d["decision_id"], "customer_id": d["customer_id"],
                                       "event": "sent", "channel": "email", "action_id": "welcome",
                                       "timestamp": "2025-01-01T10:00:00"})
    assert r.status_code == 400 and "timestamp" in r.text


def test_openapi_is_served(server):
    spec = server.get("/docs.json").json()
    assert "/next_action" in spec["paths"] and "/feedback" in spec["paths"]


# --------------------------------------------------------------------------- case studies


def test_first_time_buyer_gets_the_second_use_nudge_and_feedback_changes_the_next_decision(server, now):
    d = one(server, "S-second-use")
    assert d["stage"] == "activating"
    assert d["action"] == "second_use_nudge", d["reasons"]
    assert "best_ev" in codes(d)
    assert feedback(server, d, "sent", now).status_code == 200
    after = one(server, "S-second-use")
    assert after["action"] != "second_use_nudge"  # cooldown: the send was counted in real time
    assert "cooldown:second_use_nudge" in codes(after)


def test_dropped_rfm_segment_gets_the_anti_attrition_offer(server):
    d = one(server, "S-rfm-drop")
    assert d["stage"] == "at_risk"
    assert d["action"] == "anti_attrition_offer", d["reasons"]
    assert d["channel"] in ("email", "sms")


def test_no_email_address_is_asked_for_one_by_sms(server):
    d = one(server, "S-no-email")
    assert d["action"] == "contact_enrichment" and d["channel"] == "sms", d["reasons"]


def test_email_non_opener_is_relayed_to_another_channel(server):
    d = one(server, "S-email-ignorer")
    assert "email_ignored_relay" in codes(d)
    assert d["channel"] != "email"
    assert d["action"] == "no_action" or d["channel"] in ("sms", "print")


def test_nobody_gets_more_emails_than_the_cap(server, installation, now):
    cap = installation.contact_policy.caps.per_channel["email"].max
    first = one(server, "S-email-only")
    assert first["channel"] == "email", first["reasons"]
    for _ in range(cap):
        d = one(server, "S-email-only")
        assert feedback(server, d, "sent", now, "email", "cross_sell").status_code == 200
    after = one(server, "S-email-only")
    assert after["channel"] != "email"
    assert "cap_reached:email" in codes(after)


def test_never_activated_registrant_is_reached_where_they_respond(server):
    """Ignored e-mails, a clicked SMS: the SMS outranks the e-mail, and an activation nudge, if one is worth its
    cost, goes by SMS (the restricted request keeps the journey's own choice of action)."""
    d = one(server, "S-sms-responder", restrict_actions=["activation_nudge", "activation_nudge_incentive"])
    assert d["stage"] == "registered" and "restricted" in codes(d)
    assert d["scores"]["response"]["sms"] > 2 * d["scores"]["response"]["email"]
    assert d["channel"] in (None, "sms"), (d["scores"], d["reasons"])
    assert codes(d) & {"best_ev", "nothing_worth_cost"}


def test_context_trigger_changes_the_decision(server, now):
    plain = one(server, "S-context")
    breakfast = now.replace(hour=6, minute=30)  # 07:30 / 08:30 in Paris
    near = one(server, "S-context", trigger_event="location", near_store=True,
               trigger_timestamp=breakfast.isoformat())
    assert "context:near_store" in codes(near), near["reasons"]
    assert near["channel"] in ("push", "in_app")
    assert (near["action"], near["channel"], near["expected_value"]) != (
        plain["action"], plain["channel"], plain["expected_value"])


def test_control_group_customers_get_nothing(server, all_decisions):
    held = all_decisions[all_decisions.control_group]["customer_id"].head(5).tolist()
    for cid in held:
        d = one(server, cid)
        assert d["control_group"] and d["action"] == "no_action" and d["send_at"] is None
