"""A small but complete nextbest installation for tests: a simulated world plus
hand-written scenario customers from the five case studies, features built and
materialised, the four heads trained and registered, all under one folder."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import pandas as pd

from nextbest.settings import Settings, load_settings

ALL = ("email", "sms", "push", "in_app", "print")


def settings_for(root: Path, **extra: str) -> Settings:
    """Settings whose data, MLflow store and reports all live under `root`."""
    env = {
        "NEXTBEST__PATHS__DATA_DIR": str(root / "data"),
        "NEXTBEST__PATHS__MLRUNS_DIR": str(root / "mlruns"),
        "NEXTBEST__PATHS__REPORTS_DIR": str(root / "reports"),
        "NEXTBEST__MLFLOW__TRACKING_URI": f"sqlite:///{root / 'mlruns' / 'mlflow.db'}",
        "NEXTBEST__MLFLOW__ARTIFACT_ROOT": str(root / "mlruns" / "artifacts"),
        **extra,
    }
    return load_settings(environ=env)


def settings_env(s: Settings) -> dict[str, str]:
    """The same settings as environment variables, for a server started in a subprocess."""
    return {
        "NEXTBEST__PATHS__DATA_DIR": str(s.data_dir),
        "NEXTBEST__PATHS__MLRUNS_DIR": str(s.path(s.paths.mlruns_dir)),
        "NEXTBEST__PATHS__REPORTS_DIR": str(s.path(s.paths.reports_dir)),
        "NEXTBEST__MLFLOW__TRACKING_URI": s.tracking_uri,
        "NEXTBEST__MLFLOW__ARTIFACT_ROOT": str(s.path(s.mlflow.artifact_root)),
    }


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

    # supermarket: a loyal customer whose monthly RFM segment dropped -> anti-attrition offer
    snapshot = end.normalize() + pd.Timedelta(days=1)  # the online snapshot: the UTC midnight after the data
    month_start = snapshot.replace(day=1)
    last = month_start - pd.Timedelta(days=50)
    buys = [_event("S-rfm-drop", last - pd.Timedelta(days=7 * k), "purchase", amount=35.0) for k in range(40)]
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

    # fintech activation: registered, never bought, responds by SMS and ignores e-mail
    hist = []
    for k in range(3):  # older than the 30-day caps and the nudge cooldown
        hist += _send("S-sms-responder", d(56 - 8 * k), "email", "welcome", f"c-e-{k}")
        hist += _send("S-sms-responder", d(55 - 8 * k), "sms", "activation_nudge", f"c-s-{k}", opened=True, clicked=True)
    s["sms_responder"] = Scenario(_customer("S-sms-responder", d(60), channels=("email", "sms")),
                                  [_event("S-sms-responder", d(60), "registration"), *hist])

    # coffee chain: context trigger (near a store at breakfast) for an app user
    s["context"] = Scenario(
        _customer("S-context", d(300), channels=("email", "push", "in_app")),
        [_event("S-context", d(300), "registration"),
         *[_event("S-context", d(40 - 3 * k), "purchase", amount=6.0) for k in range(10)]])
    return s


def build_installation(root: Path, customers: int = 2500, days: int = 240, seed: int = 11,
                       max_rows: int = 40000, train: bool = True, **extra: str) -> Settings:
    """Simulate, add the scenario customers, build + apply + materialise features, train the heads."""
    from features import pipeline, store
    from nextbest.contract import write_world
    from nextbest.simulator import simulate
    from training.train import train_all

    s = settings_for(root, NEXTBEST__TRAINING__MAX_ROWS=str(max_rows), NEXTBEST__WORLD__DAYS=str(days), **extra)
    start = date.today() - timedelta(days=days)
    world = simulate(customers=customers, days=days, seed=seed, start=start, out_dir=s.world_dir)
    end = pd.Timestamp(world.events["event_timestamp"].max()).tz_convert("UTC")
    sc = scenarios(end)
    cust = pd.concat([world.customers, pd.DataFrame([x.customer for x in sc.values()])], ignore_index=True)
    cust["registered_at"] = pd.to_datetime(cust["registered_at"], utc=True)
    ev = pd.concat([world.events, pd.DataFrame([e for x in sc.values() for e in x.events])], ignore_index=True)
    ev["event_timestamp"] = pd.to_datetime(ev["event_timestamp"], utc=True)
    write_world(s.world_dir, cust, ev)
    pipeline.build(s)
    store.apply(s)
    store.materialize(s)
    if train:
        train_all(s)
    return s
