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
    assert feedback(server, first, "cancelled", now).status_code == 200  # its capacity is released
    sent = 0
    for _ in range(cap + 2):
        d = one(server, "S-email-only")
        if d["action"] != "no_action":
            assert d["channel"] == "email"
            assert feedback(server, d, "sent", now).status_code == 200
            sent += 1
    assert 0 < sent <= cap
    after = one(server, "S-email-only")
    assert after["action"] == "no_action"
    assert {"cap_reached:email", "cap_reached:overall"} & codes(after) or any(
        c.startswith("cooldown:") for c in codes(after)), after["reasons"]


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
    if plain["action"] != "no_action":  # release what it reserved: the next decision starts from the same counts
        assert feedback(server, plain, "cancelled", now).status_code == 200
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


# --------------------------------------------------------------------------- faults and abuse


def _send_decision(all_decisions) -> dict:
    """A decision with a send, returned (and reserved) by the all_decisions requests."""
    acted = all_decisions[(all_decisions.action != "no_action") & ~all_decisions.control_group]
    return acted.iloc[-1].to_dict()


def test_feedback_is_checked_against_its_decision(server, all_decisions, now):
    d = _send_decision(all_decisions)
    stage = one(server, d["customer_id"])["stage"]

    def post(**change) -> httpx.Response:
        body = {"decision_id": d["decision_id"], "customer_id": d["customer_id"], "event": "sent",
                "channel": d["channel"], "action_id": d["action"], "timestamp": now.isoformat(), **change}
        return server.post("/feedback", json=body)

    for year in ("2100", "2300", "9999", "0001"):
        r = post(timestamp=f"{year}-06-01T10:00:00+00:00")
        assert r.status_code == 400 and r.json()["details"][0]["field"] == "timestamp", r.text
    assert one(server, d["customer_id"])["stage"] == stage  # nothing from 2100 moved the customer
    for amount, field in ((1e308, "amount"), (-1, "amount")):
        r = post(event="converted", amount=amount)
        assert r.status_code == 400 and r.json()["details"][0]["field"] == field, r.text
    raw = (f'{{"decision_id": "{d["decision_id"]}", "customer_id": "{d["customer_id"]}", "event": "converted", '
           f'"channel": "{d["channel"]}", "action_id": "{d["action"]}", "timestamp": "{now.isoformat()}", '
           f'"amount": Infinity}}')
    r = server.post("/feedback", content=raw, headers={"content-type": "application/json"})
    assert r.status_code == 400 and "amount" in r.json()["error"], r.text
    r = post(amount=5.0)
    assert r.status_code == 400 and r.json()["details"][0]["field"] == "amount" and "converted" in r.text
    other = next(c for c in CHANNELS if c != d["channel"])
    r = post(channel=other)
    assert r.status_code == 409 and r.json()["details"][0]["field"] == "channel", r.text
    r = post(action_id="welcome" if d["action"] != "welcome" else "cross_sell")
    assert r.status_code == 409 and r.json()["details"][0]["field"] == "action_id", r.text
    r = post(customer_id="someone-else")
    assert r.status_code == 409 and r.json()["details"][0]["field"] == "customer_id", r.text
    nothing = all_decisions[(all_decisions.action == "no_action") & ~all_decisions.control_group].iloc[0]
    r = server.post("/feedback", json={"decision_id": nothing.decision_id, "customer_id": nothing.customer_id,
                                       "event": "sent", "channel": "email", "action_id": "welcome",
                                       "timestamp": now.isoformat()})
    assert r.status_code == 409 and "no_action" in r.json()["error"], r.text
    first, again = post(), post()
    assert first.status_code == again.status_code == 200
    assert (first.json()["duplicate"], again.json()["duplicate"]) == (False, True)
    r = post(event="cancelled")
    assert r.status_code == 409 and r.json()["details"][0]["field"] == "event" and "cannot be cancelled" in r.text


@pytest.mark.parametrize("body, field", [
    ({"customer_ids": None}, "customer_ids"),
    ({"customers": []}, "customers"),
    ({"customer_ids": ["a"], "request_id": None}, "request_id"),
    ({"customer_ids": [""]}, "customer_ids.0"),
    ({"customer_ids": ["a"], "context": {"near_store": "true"}}, "context.near_store"),
    ({"customer_ids": ["a"], "context": {"trigger_timestamp": 1700000000}}, "context.trigger_timestamp"),
    ({"customers": [{"customer_id": "a"}, {"customer_id": "b", "context": {"restrict_actions": ["free_money"]}}]},
     "customers.1.context.restrict_actions"),
    ({"customer_ids": ["a"], "context": {"restrict_actions": ["free_money"]}}, "context.restrict_actions"),
])
def test_every_refusal_is_a_400_in_one_shape_naming_the_field(server, body, field):
    r = server.post("/next_action", json=body)
    assert r.status_code == 400, r.text
    err = r.json()
    assert set(err) == {"error", "code", "details"} and err["code"] == "invalid_request"
    assert err["details"][0]["field"] == field and err["error"].startswith(field)
    assert all(set(x) == {"field", "message"} for x in err["details"])


def test_no_5xx_for_a_multipart_body_without_boundary(server):
    routes = ("/next_action", "/feedback", "/health", "/metrics", "/docs.json", "/livez", "/readyz", "/nowhere")
    for path in routes:
        for method in ("GET", "POST"):
            r = server.request(method, path, content=b"x", headers={"content-type": "multipart/form-data"})
            assert r.status_code < 500, (method, path, r.status_code, r.text)
    r = server.post("/next_action", content=b"x", headers={"content-type": "multipart/form-data"})
    assert r.status_code == 415 and r.json()["details"][0]["field"] == "content-type"
    r = server.post("/next_action", content=b"{" * 10, headers={"content-type": "application/json"})
    assert r.status_code == 400 and r.json()["details"][0]["field"] == "body"


def test_only_liveness_and_readiness_answer_without_the_token(server):
    base = str(server.base_url).rstrip("/")
    for path in ("/livez", "/healthz", "/readyz"):
        assert httpx.get(base + path).status_code == 200, path
    for method, path in (("GET", "/metrics"), ("GET", "/health"), ("POST", "/health"), ("GET", "/docs.json"),
                         ("GET", "/"), ("GET", "/customers/x"), ("POST", "/next_action"), ("POST", "/feedback")):
        r = httpx.request(method, base + path, json={"customer_ids": "not even valid"})
        assert r.status_code == 401 and r.json()["code"] == "unauthorised", (method, path, r.text)


def test_health_checks_each_dependency(server):
    h = server.get("/health")
    assert h.status_code == 200
    assert h.json()["checks"] == {"feature_store": "ok", "pressure_store": "ok", "decision_log": "ok", "models": "ok"}


def test_metrics_have_bounded_labels_and_no_personal_data(server):
    for i in range(50):
        assert server.get(f"/u/visitor-{i}").status_code == 404
    assert server.get("/customers/jane.doe@example.com").status_code == 404
    text = server.get("/metrics").text
    assert "jane.doe" not in text and "visitor-" not in text
    import re

    routes = set(re.findall(r'route="([^"]*)"', text))
    assert "other" in routes and routes <= {"next_action", "feedback", "health", "livez", "healthz", "readyz",
                                            "metrics", "docs", "ui", "static", "other"}
    assert 'nextbest_decisions_total{action=' in text


def test_logs_carry_no_customer_data(server, installation, now):
    marker = "CUSTOMER-MARKER-4242"
    server.post("/next_action", json={"customer_ids": [marker], "context": {"weather": "lava"}})
    server.post("/next_action", json={"customers": [{"customer_id": marker, "context": {"near_store": "x"}}]})
    server.post("/next_action", json={"customer_ids": [marker]})
    server.post("/feedback", json={"decision_id": str(uuid.uuid4()), "customer_id": marker, "event": "sent",
                                   "channel": "email", "action_id": "welcome", "timestamp": now.isoformat()})
    server.get(f"/customers/{marker}")
    assert marker not in (installation.data_dir / "server.log").read_text()


def test_openapi_types_every_answer(server, installation):
    spec = server.get("/docs.json").json()
    ok = spec["paths"]["/next_action"]["post"]["responses"]["200"]["content"]["application/json"]["schema"]
    assert ok == {"$ref": "#/components/schemas/NextActionResponse"}
    req = spec["components"]["schemas"]["NextActionRequest"]["properties"]["customer_ids"]
    assert req["minItems"] == 1 and req["maxItems"] == installation.serving.max_customers_per_request
    for path, ops in spec["paths"].items():
        for method, op in ops.items():
            for code, resp in op["responses"].items():
                if code.startswith(("4", "5")) and path not in ("/readyz", "/health"):
                    schema = resp["content"]["application/json"]["schema"]
                    assert schema["$ref"].endswith("/ErrorResponse"), (path, code)


def test_schemathesis_finds_no_server_error_and_no_conformance_failure(server, tmp_path):
    import subprocess

    from tests.e2e.conftest import BIN, TOKEN

    res = subprocess.run(
        [str(BIN / "st"), "run", f"{str(server.base_url).rstrip('/')}/docs.json", "--checks", "all",
         "--max-examples", "40", "--workers", "1", "--seed", "13", "--no-shrink", "--phases",
         "examples,coverage,fuzzing,stateful", "-H", f"Authorization: Bearer {TOKEN}", "--max-failures", "5"],
        cwd=tmp_path, capture_output=True, text=True, timeout=600)
    tail = res.stdout[-4000:]
    assert res.returncode == 0, tail
    assert "passed" in tail and "failed" not in tail.split("SUMMARY")[-1]
