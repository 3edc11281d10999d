"""The service under concurrency, retries, late reports and crashes, as journey engines use it:
`nextbest serve` with two workers sharing one pressure store, then a server killed with kill -9 and
restarted at once, ten times over.

Each server here has a contact-pressure store of its own, so what other tests reserved never
changes these counts.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta

import httpx
import numpy as np
import pandas as pd
import psutil
import pytest

from nextbest.vocabulary import CHANNELS, NO_ACTION
from serving.policy import compile_policy
from serving.pressure import Limits
from tests.e2e.conftest import bentoml_cmd, client_for, running_server, serve_cmd, start_server, stop_server
from tests.support import free_port, now_of, settings_env

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


def decide(client, ids, request_id=None, **body) -> list[dict]:
    r = client.post("/next_action", json={"customer_ids": list(ids), "request_id": request_id or str(uuid.uuid4()),
                                          **body})
    assert r.status_code == 200, r.text
    return r.json()["decisions"]


def feedback(client, d: dict, event: str, when: datetime) -> httpx.Response:
    return client.post("/feedback", json={
        "decision_id": d["decision_id"], "customer_id": d["customer_id"], "event": event,
        "channel": d["channel"] or "email", "action_id": d["action"] if d["action"] != NO_ACTION else "welcome",
        "timestamp": when.isoformat()})


def fresh_client(base_url) -> httpx.Client:
    """A client with a connection of its own, so concurrent requests spread over the workers."""
    return httpx.Client(base_url=base_url, timeout=60)


@pytest.fixture(scope="module")
def now(installation) -> datetime:
    return now_of(installation)


@pytest.fixture(scope="module")
def limits(installation) -> Limits:
    return Limits.from_policy(compile_policy(installation))


@pytest.fixture(scope="module")
def two_workers(installation, tmp_path_factory):
    """`nextbest serve` with serving.workers=2 and a pressure store of its own."""
    port = free_port()
    state = tmp_path_factory.mktemp("two-workers")
    env = {**settings_env(installation), "NEXTBEST__SERVING__WORKERS": "2",
           "NEXTBEST__PRESSURE_STORE__SQLITE_PATH": str(state / "pressure.db")}
    with running_server(serve_cmd(port), env, state / "server.log", port) as client:
        client.pressure_path = state / "pressure.db"
        client.log_path = state / "server.log"
        yield client


@pytest.fixture(scope="module")
def base_ids(installation) -> list[str]:
    cust = pd.read_parquet(installation.world_dir / "customers.parquet", columns=["customer_id"])
    return sorted(c for c in cust["customer_id"] if c.startswith("C"))


@pytest.fixture(scope="module")
def senders(two_workers, base_ids, now) -> list[str]:
    """Customers who get a send when nothing is reserved for them (their probe reservation released)."""
    probe = decide(two_workers, base_ids[:300], request_id="probe")
    sends = [d for d in probe if d["action"] != NO_ACTION]
    for d in sends:
        assert feedback(two_workers, d, "cancelled", now).status_code == 200
    return [d["customer_id"] for d in sends]


def pressure(installation, customer: str) -> dict[str, float]:
    """The customer's pressure features as the online store holds them now."""
    from features.store import OnlineFeatures

    online = OnlineFeatures(installation)
    X, found, _ = online.read_customer([customer])
    assert found[0]
    return {n: float(X[0, j]) for j, n in enumerate(online.customer_names)
            if n.startswith(("sent_7d_", "sent_30d_", "days_since_action_"))}


def assert_within_policy(limits: Limits, base: dict[str, float], sends: list[tuple[str, str]]) -> None:
    """The sends (action, channel) made at one instant, on top of the customer's pressure `base`,
    break no cap and no cooldown."""
    count = lambda x: 0.0 if np.isnan(x) else x  # noqa: E731
    for c, ch in enumerate(CHANNELS):
        n = sum(1 for _, x in sends if x == ch)
        if n:
            used = count(base[f"sent_{limits.cap_window[c]}d_{ch}"])
            assert used + n <= limits.cap_max[c], f"{ch}: {used:g} + {n} sends against a cap of {limits.cap_max[c]:g}"
    if sends:
        used = count(base[f"sent_{limits.overall_window}d_total"])
        assert used + len(sends) <= limits.overall_max, f"overall: {used:g} + {len(sends)} sends"
    for a, action in enumerate(limits.actions):
        n = sum(1 for x, _ in sends if x == action)
        since = base[f"days_since_action_{action}"]
        assert n <= 1, f"{action} {n} times inside its {limits.cooldown_days[a]:g}-day cooldown"
        assert n == 0 or np.isnan(since) or since >= limits.cooldown_days[a], f"{action}: sent {since:g} days ago"


def test_two_workers_share_one_pressure_store(two_workers):
    server = psutil.Process(two_workers.server_process.pid)
    workers = [p for p in server.children(recursive=True) if "_bentoml_impl.worker" in " ".join(p.cmdline())]
    assert len(workers) == 2
    assert two_workers.get("/health").json()["workers"] == 2


def test_32_concurrent_decisions_for_one_customer_stay_within_caps(two_workers, senders, installation, limits,
                                                                   now):
    customer = senders[0]
    base = pressure(installation, customer)
    url = two_workers.base_url

    def one(_):
        with fresh_client(url) as c:
            return decide(c, [customer])[0]

    with ThreadPoolExecutor(32) as pool:
        answers = list(pool.map(one, range(32)))
    sends = [(d["action"], d["channel"]) for d in answers if d["action"] != NO_ACTION]
    assert sends, "the customer had headroom: at least one send"
    assert_within_policy(limits, base, sends)
    held = [d for d in answers if d["action"] == NO_ACTION]
    assert all(d["reasons"] for d in held)
    for d in answers:  # release them for the next test
        if d["action"] != NO_ACTION:
            assert feedback(two_workers, d, "cancelled", now).json()["event"] == "cancelled"


def test_concurrent_decide_then_sent_loops_respect_caps_and_count_each_send_once(two_workers, senders, installation,
                                                                                  limits, now):
    customer = senders[1]
    base = pressure(installation, customer)
    url = two_workers.base_url

    def loop(_):
        sent = []
        with fresh_client(url) as c:
            for _ in range(3):
                d = decide(c, [customer])[0]
                if d["action"] == NO_ACTION:
                    continue
                first, retry = feedback(c, d, "sent", now), feedback(c, d, "sent", now)
                assert first.status_code == retry.status_code == 200, (first.text, retry.text)
                assert first.json()["duplicate"] is False and retry.json()["duplicate"] is True
                sent.append(d)
        return sent

    with ThreadPoolExecutor(8) as pool:
        sent = [d for loop_sends in pool.map(loop, range(8)) for d in loop_sends]
    assert sent
    assert_within_policy(limits, base, [(d["action"], d["channel"]) for d in sent])
    ids = [d["decision_id"] for d in sent]
    marks = ",".join("?" * len(ids))
    with sqlite3.connect(installation.serving_dir / "history.db") as db:  # stored once per decision
        stored = db.execute(f"SELECT decision_id, COUNT(*) FROM feedback WHERE event = 'sent' AND decision_id IN "
                            f"({marks}) GROUP BY decision_id", ids).fetchall()
    with sqlite3.connect(installation.features_dir / "live_events.db") as db:  # pushed into the features once
        pushed = db.execute(f"SELECT campaign_id, COUNT(*) FROM events WHERE event_type = 'message_sent' AND "
                            f"campaign_id IN ({marks}) GROUP BY campaign_id", ids).fetchall()
    assert dict(stored) == dict(pushed) == {i: 1 for i in ids}


def test_a_late_send_counts_from_its_own_timestamp(two_workers, senders, installation, now):
    from features.pipeline import read_meta

    customer = senders[2]
    d = decide(two_workers, [customer])[0]
    assert d["action"] != NO_ACTION
    data_end = pd.Timestamp(read_meta(installation.features_dir)["data_end"]).to_pydatetime()
    late = data_end - timedelta(days=1)  # before the feature snapshot: the features never count it
    assert now - late < timedelta(days=installation.serving.timestamp_past_days)
    before = pressure(installation, customer)
    r = feedback(two_workers, d, "sent", late)
    assert r.status_code == 200 and r.json()["features_refreshed"] is False
    assert feedback(two_workers, d, "sent", late).json()["duplicate"] is True
    after = pressure(installation, customer)
    assert [after[f"sent_{w}_{d['channel']}"] for w in ("7d", "30d")] == [
        before[f"sent_{w}_{d['channel']}"] for w in ("7d", "30d")]  # the features do not count it
    nxt = decide(two_workers, [customer])[0]
    assert nxt["action"] != d["action"]
    assert f"cooldown:{d['action']}" in {x["code"] for x in nxt["reasons"]}, nxt["reasons"]


def test_one_customers_bad_trigger_time_does_not_touch_the_others(two_workers, base_ids, now):
    ids = base_ids[300:800]
    assert len(ids) == 500

    def ask(bad: bool):
        customers = [{"customer_id": c} for c in ids]
        if bad:
            customers[7]["context"] = {"trigger_timestamp": "9999-12-31T23:59:59+00:00"}
        r = two_workers.post("/next_action", json={"customers": customers, "request_id": str(uuid.uuid4())})
        assert r.status_code == 200, r.text
        out = r.json()["decisions"]
        for d in out:  # release, so the second request sees the same state
            if d["action"] != NO_ACTION:
                assert feedback(two_workers, d, "cancelled", now).status_code == 200
        return out

    plain, poisoned = ask(False), ask(True)
    assert sum(d["action"] != NO_ACTION for d in plain) > 20
    strip = lambda d: (d["action"], d["channel"], d["send_at"])  # noqa: E731
    assert [strip(d) for i, d in enumerate(poisoned) if i != 7] == [strip(d) for i, d in enumerate(plain) if i != 7]
    assert "fallback:trigger_timestamp" in {x["code"] for x in poisoned[7]["reasons"]}
    assert poisoned[7]["fallback"] and "trigger_timestamp" in poisoned[7]["fallbacks"]
    assert all("feature_store" not in d["fallbacks"] for d in poisoned)


def test_a_retried_request_gets_the_same_answer(two_workers, senders):
    a = decide(two_workers, senders[3:6], request_id="retry-me")
    b = decide(two_workers, senders[3:6], request_id="retry-me")
    assert a == b


def test_readiness_fails_while_the_pressure_store_is_missing(two_workers):
    path = two_workers.pressure_path
    path.rename(path.with_suffix(".away"))
    try:
        assert two_workers.get("/readyz").status_code == 503
        health = two_workers.get("/health")
        assert health.status_code == 503 and "missing" in health.json()["checks"]["pressure_store"]
        assert not path.exists()  # not silently recreated
    finally:
        path.with_suffix(".away").rename(path)
    assert two_workers.get("/readyz").status_code == 200


def test_the_whole_server_dies_with_nextbest_serve(two_workers):
    serve = psutil.Process(two_workers.server_process.pid)
    rest = serve.children(recursive=True)
    assert len(rest) >= 3  # the BentoML server and its two workers
    serve.kill()  # kill -9 of `nextbest serve` alone
    gone, alive = psutil.wait_procs(rest, timeout=30)
    assert not alive, [p.cmdline() for p in alive]


# --------------------------------------------------------------------------- crash


def _workers_of(proc) -> list[psutil.Process]:
    return [p for p in psutil.Process(proc.pid).children(recursive=True)
            if "_bentoml_impl.worker" in " ".join(p.cmdline())]


def test_decisions_survive_kill_9_and_the_server_restarts_at_once(installation, base_ids, now, tmp_path):
    port = free_port()
    env = {**settings_env(installation), "NEXTBEST__PRESSURE_STORE__SQLITE_PATH": str(tmp_path / "pressure.db")}
    pool = base_ids[800:1800]
    rng = np.random.default_rng(3)
    returned: list[dict] = []
    with open(tmp_path / "server.log", "w") as log:
        for round_ in range(11):
            proc = start_server(bentoml_cmd(port), env, log, port)  # the same port, right after the crash
            try:
                with client_for(port) as client:
                    for d in returned:  # every decision returned before the crash is known
                        r = feedback(client, d, "cancelled", now)
                        if d["action"] == NO_ACTION:
                            assert r.status_code == 409 and r.json()["code"] == "conflicts_with_decision", r.text
                        else:
                            assert r.status_code == 200, r.text
                if round_ == 10:
                    break
                workers = _workers_of(proc)
                assert workers

                def ask(k):
                    with client_for(port) as c:
                        return decide(c, rng.choice(pool, 20, replace=False).tolist(), f"crash-{round_}-{k}")

                with ThreadPoolExecutor(4) as threads:
                    returned = [d for answer in threads.map(ask, range(4)) for d in answer]
                os.kill(proc.pid, signal.SIGKILL)  # the server; its worker runs in a session of its own
                proc.wait()
                gone, alive = psutil.wait_procs(workers, timeout=10)
                assert not alive, "a worker outlived its server"
            finally:
                stop_server(proc)
    assert returned
