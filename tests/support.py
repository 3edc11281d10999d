"""A small but complete nextbest installation for tests: a simulated world plus
hand-written scenario customers from the five case studies, features built and
materialised, the four heads trained and registered, all under one folder.

Everything is pinned in time: the world starts on :data:`WORLD_START` and the
service's clock is fixed shortly after the data's end (:func:`clock_after`),
so no test depends on the day the suite runs.
"""

from __future__ import annotations

import json
import shutil
import socket
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from nextbest.clock import Clock
from nextbest.settings import DEFAULT_CONFIG_DIR, Settings, load_settings
from nextbest.vocabulary import CHANNELS as ALL

WORLD_START = date(2025, 3, 3)  # a Monday; test worlds never move with the calendar
CLOCK_HOURS_AFTER_END = 9.5
SETTINGS_FILE = "settings.json"  # beside a built installation: its settings as environment variables  # the service's fixed "now": this long after the world's last day (09:30 UTC)


def free_port() -> int:
    """A TCP port on 127.0.0.1 nothing listens on now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def clock_after(start: date, days: int) -> str:
    """The fixed instant the test service decides at: the morning after the simulated period."""
    end = datetime(start.year, start.month, start.day) + timedelta(days=days, hours=CLOCK_HOURS_AFTER_END)
    return end.strftime("%Y-%m-%dT%H:%M:%S+00:00")


def copy_configs(dest: Path, drop_actions=(), add_actions: dict | None = None, **nextbest: dict) -> Path:
    """A copy of configs/ with actions removed or added (`add_actions`: id -> definition) and sections of
    nextbest.yaml updated (e.g. serving={"max_customers_per_request": 1000}); returns the folder."""
    shutil.copytree(DEFAULT_CONFIG_DIR, dest, dirs_exist_ok=True)
    cat = yaml.safe_load((dest / "actions.yaml").read_text())
    for a in drop_actions:
        del cat["actions"][a]
    cat["actions"].update(add_actions or {})
    (dest / "actions.yaml").write_text(yaml.safe_dump(cat, sort_keys=False))
    if nextbest:
        main = yaml.safe_load((dest / "nextbest.yaml").read_text())
        for section, values in nextbest.items():
            main.setdefault(section, {}).update(values)
        (dest / "nextbest.yaml").write_text(yaml.safe_dump(main, sort_keys=False))
    return dest


def settings_for(root: Path, config_dir: Path | None = None, **extra: str) -> Settings:
    """Settings whose data, MLflow store and reports all live under `root` (configs/ unless `config_dir`), with
    exploration off unless `extra` turns it on (tests of a decision expect the policy's best option)."""
    env = {
        "NEXTBEST__SERVING__EXPLORATION_SHARE": "0",
        "NEXTBEST__SERVING__WORKERS": "1",
        "NEXTBEST__PATHS__DATA_DIR": str(root / "data"),
        "NEXTBEST__PATHS__MLRUNS_DIR": str(root / "mlruns"),
        "NEXTBEST__PATHS__REPORTS_DIR": str(root / "reports"),
        "NEXTBEST__MLFLOW__TRACKING_URI": f"sqlite:///{root / 'mlruns' / 'mlflow.db'}",
        "NEXTBEST__MLFLOW__ARTIFACT_ROOT": str(root / "mlruns" / "artifacts"),
        **extra,
    }
    return load_settings(config_dir or DEFAULT_CONFIG_DIR, environ=env)


def settings_env(s: Settings) -> dict[str, str]:
    """The same settings as environment variables, for a server started in a subprocess."""
    return {
        "NEXTBEST_CONFIG_DIR": str(s.config_dir),
        "NEXTBEST__PATHS__DATA_DIR": str(s.data_dir),
        "NEXTBEST__PATHS__MLRUNS_DIR": str(s.path(s.paths.mlruns_dir)),
        "NEXTBEST__PATHS__REPORTS_DIR": str(s.path(s.paths.reports_dir)),
        "NEXTBEST__MLFLOW__TRACKING_URI": s.tracking_uri,
        "NEXTBEST__MLFLOW__ARTIFACT_ROOT": str(s.path(s.mlflow.artifact_root)),
        "NEXTBEST__SERVING__CLOCK": s.serving.clock,
        "NEXTBEST__SERVING__EXPLORATION_SHARE": str(s.serving.exploration_share),
        "NEXTBEST__SERVING__WORKERS": str(s.serving.workers),
        "NEXTBEST__TRAINING__MAX_ROWS": str(s.training.max_rows),
        "NEXTBEST__WORLD__DAYS": str(s.world.days),
    }


def now_of(s: Settings) -> datetime:
    """The instant the installation's service decides at."""
    return Clock.from_setting(s.serving.clock).now()


@dataclass
class Scenario:
    customer: dict
    events: list[dict]


def _customer(cid: str, registered: pd.Timestamp, channels=ALL, reachable=None, tz="Europe/Paris") -> dict:
    reachable = channels if reachable is None else reachable
    row = {"customer_id": cid, "registered_at": registered, "timezone": tz, "segment": "b2c", "region": "north",
           "company_size": "none", "sector": "urban"}
    for c in ALL:
        row[f"consent_{c}"] = c in channels
        row[f"reachable_{c}"] = c in reachable
    return row


def _event(cid, ts, kind, channel=None, amount=np.nan, action=None, campaign=None) -> dict:
    return {"customer_id": cid, "event_timestamp": ts, "event_type": kind, "channel": channel, "amount": amount,
            "action_id": action, "campaign_id": campaign}


def _send(cid, ts, channel, action, campaign, opened=False, clicked=False) -> list[dict]:
    out = [_event(cid, ts, "message_sent", channel, action=action, campaign=campaign),
           _event(cid, ts + pd.Timedelta(minutes=1), "message_delivered", channel, action=action, campaign=campaign)]
    if opened or clicked:
        out.append(_event(cid, ts + pd.Timedelta(hours=2), "message_opened", channel, action=action, campaign=campaign))
    if clicked:
        out.append(_event(cid, ts + pd.Timedelta(hours=2, minutes=3), "message_clicked", channel, action=action,
                          campaign=campaign))
    return out


def scenarios(end: pd.Timestamp) -> dict[str, Scenario]:
    """The case studies as customers, relative to the end of the data (`end`, a UTC timestamp)."""
    d = lambda n: end - pd.Timedelta(days=n)  # noqa: E731
    s: dict[str, Scenario] = {}

    # factoring platform: first purchase 5 days ago -> second-use nudge inside the 11-day window
    s["second_use"] = Scenario(_customer("S-second-use", d(40)), [
        _event("S-second-use", d(40), "registration"),
        _event("S-second-use", d(5), "purchase", amount=80.0)])

    # supermarket: a loyal customer whose monthly RFM segment dropped -> anti-attrition offer; shops after work
    # (17:00 UTC, 18:00 or 19:00 in Paris), so the send time that follows their own hours is an allowed one
    snapshot = end.normalize() + pd.Timedelta(days=1)  # the online snapshot: the UTC midnight after the data
    month_start = snapshot.replace(day=1)
    last = month_start - pd.Timedelta(days=50)
    buys = [_event("S-rfm-drop", last + pd.Timedelta(hours=17) - pd.Timedelta(days=7 * k), "purchase", amount=35.0)
            for k in range(40)]
    s["rfm_drop"] = Scenario(_customer("S-rfm-drop", last - pd.Timedelta(days=400), channels=("email", "sms")),
                             [_event("S-rfm-drop", last - pd.Timedelta(days=400), "registration"), *buys])

    # fintech: no e-mail address -> ask for one by SMS
    s["no_email"] = Scenario(
        _customer("S-no-email", d(90), channels=("email", "sms"), reachable=("sms",)),
        [_event("S-no-email", d(90), "registration"),
         *[_event("S-no-email", d(80 - 9 * k), "purchase", amount=20.0) for k in range(8)]])

    # financing firm: ignores e-mail -> relay to SMS / print
    ignored = [x for k in range(6) for x in _send("S-email-ignorer", d(70 - 7 * k), "email", "cross_sell", f"c-ign-{k}")]
    s["email_ignorer"] = Scenario(
        _customer("S-email-ignorer", d(300), channels=("email", "sms", "print")),
        [_event("S-email-ignorer", d(300), "registration"),
         *[_event("S-email-ignorer", d(200 - 12 * k), "purchase", amount=50.0) for k in range(16)], *ignored])

    # e-mail only, for the cap
    s["email_only"] = Scenario(
        _customer("S-email-only", d(200), channels=("email",)),
        [_event("S-email-only", d(200), "registration"),
         *[_event("S-email-only", d(150 - 10 * k), "purchase", amount=30.0) for k in range(14)]])

    # fintech activation: a fresh registrant who never bought, ignored two e-mails, clicked the one SMS
    # (past the welcome's 14-day tenure and the nudge's 10-day cooldown, one SMS of the two a month allowed,
    # nothing in the last 7 days)
    hist = [*_send("S-sms-responder", d(19), "email", "welcome", "c-e-1"),
            *_send("S-sms-responder", d(16), "email", "welcome", "c-e-2"),
            *_send("S-sms-responder", d(12), "sms", "activation_nudge", "c-s-1", opened=True, clicked=True),
            # and is shopping: visits and an abandoned cart these last days
            _event("S-sms-responder", d(3), "visit"), _event("S-sms-responder", d(2), "visit"),
            _event("S-sms-responder", d(2) + pd.Timedelta(minutes=12), "cart_abandoned"),
            _event("S-sms-responder", d(1), "visit")]
    s["sms_responder"] = Scenario(_customer("S-sms-responder", d(20), channels=("email", "sms")),
                                  [_event("S-sms-responder", d(20), "registration"), *hist])

    # coffee chain: context trigger (near a store at breakfast) for an app user
    s["context"] = Scenario(
        _customer("S-context", d(300), channels=("email", "push", "in_app")),
        [_event("S-context", d(300), "registration"),
         *[_event("S-context", d(40 - 3 * k), "purchase", amount=6.0) for k in range(10)]])
    return s


def build_installation(root: Path, customers: int = 2500, days: int = 240, seed: int = 11,
                       max_rows: int = 40000, train: bool = True, config_dir: Path | None = None,
                       start: date = WORLD_START, **extra: str) -> Settings:
    """Simulate from `start`, add the scenario customers, build + apply + materialise features, train the heads.

    The returned settings carry a fixed clock (:func:`clock_after`), as does a server started with
    :func:`settings_env`."""
    from features import pipeline, store
    from nextbest.contract import write_world
    from simulator.oracle import Oracle
    from simulator.world import simulate
    from training.train import train_all

    s = settings_for(root, config_dir, NEXTBEST__TRAINING__MAX_ROWS=str(max_rows), NEXTBEST__WORLD__DAYS=str(days),
                     NEXTBEST__SERVING__CLOCK=clock_after(start, days), **extra)
    world = simulate(s, customers=customers, days=days, seed=seed, start=start, out_dir=s.world_dir)
    end = pd.Timestamp(world.events["event_timestamp"].max()).tz_convert("UTC")
    sc = scenarios(end)
    cust = pd.concat([world.customers, pd.DataFrame([x.customer for x in sc.values()])], ignore_index=True)
    cust["registered_at"] = pd.to_datetime(cust["registered_at"], utc=True)
    ev = pd.concat([world.events, pd.DataFrame([e for x in sc.values() for e in x.events])], ignore_index=True)
    ev["event_timestamp"] = pd.to_datetime(ev["event_timestamp"], utc=True)
    write_world(s.world_dir, cust, ev, world.assignments)
    pipeline.build(s)
    store.apply(s)
    store.materialize(s)
    if train:
        train_all(s, oracle=Oracle.load(s.world_dir))
    (root / SETTINGS_FILE).write_text(json.dumps(settings_env(s), indent=1))
    return s


def reuse_installation(root: Path) -> Settings:
    """The settings of an installation built earlier under `root` (for development: its state is not fresh)."""
    env = json.loads((root / SETTINGS_FILE).read_text())
    return load_settings(env.pop("NEXTBEST_CONFIG_DIR"), environ=env)
