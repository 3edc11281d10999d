"""The decision engine behind the HTTP service, free of any web framework:
online features -> champion scores -> policy -> records, plus feedback.

Everything heavy (feature store connection, boosters, compiled policy) is
built once in the constructor; a request only reads and computes.
"""

from __future__ import annotations

import logging
import time
from datetime import datetime

import numpy as np
import pandas as pd

from features.names import CONTEXT, customer_features
from nextbest.clock import Clock
from nextbest.settings import Settings
from nextbest.vocabulary import CHANNELS, FEEDBACK_EVENTS
from serving.history import ContactHistory
from serving.policy import DecisionInputs, compile_policy, decide
from serving.schemas import FeedbackRequest, NextActionRequest
from serving.scoring import Scorer

log = logging.getLogger("nextbest.serving")
FEATURE_STORE_DOWN = {
    "code": "fallback:feature_store",
    "text": "feature store unavailable: rules-only decision from defaults (nothing known about consent, so no contact)",
}


def decide_arrays(policy, scorer: Scorer, feature_index: dict, ids, X: np.ndarray, found: np.ndarray,
                  timezones, now, **context):
    """Scores from the champions, then the policy: the one path shared by the service and batch scoring."""
    scores = scorer.score(X, np.asarray(policy.allowed_hours, bool)) if found.any() else None
    inputs = DecisionInputs(
        customer_ids=ids, X=X, feature_index=feature_index, found=found, timezones=timezones, now=now,
        p_activation=None if scores is None else scores.p_activation,
        p_churn=None if scores is None else scores.p_churn,
        p_response=None if scores is None else scores.p_response,
        hour_dist=None if scores is None else scores.hour_dist,
        effects=scorer.increments(X),
        **context,
    )
    return decide(inputs, policy, scorer.versions)


class UnknownDecision(LookupError):
    """Feedback quotes a decision id this service never issued."""


class Engine:
    def __init__(self, settings: Settings, online=None, scorer: Scorer | None = None,
                 history: ContactHistory | None = None, clock: Clock | None = None):
        from features.store import CatalogueMismatch

        self.settings = settings
        self.clock = clock or Clock.from_setting(settings.serving.clock)
        self.policy = compile_policy(settings)
        self.online = online
        self.feature_error: str | None = None
        if self.online is None:
            try:
                from features.store import OnlineFeatures

                self.online = OnlineFeatures(settings)
            except CatalogueMismatch:
                raise  # a configuration error: refuse to start rather than answer from the wrong layout
            except Exception as e:  # the service still answers, rules-only, flagged
                self.feature_error = f"{type(e).__name__}: {e}"
                log.error("online features unavailable, answering rules-only: %s", self.feature_error)
        names = list(self.online.names) if self.online is not None else [
            *customer_features(tuple(settings.actions)), *CONTEXT]
        self.feature_index = {n: i for i, n in enumerate(names)}
        self.scorer = scorer if scorer is not None else Scorer.from_registry(settings, names)
        for head, why in self.scorer.unavailable.items():
            log.warning("model head %s unavailable, rule-based fallback: %s", head, why)
        self.history = history or ContactHistory(settings.data_dir / "serving" / "history.db")
        self.started = time.time()

    # ------------------------------------------------------------------ decide
    def _features(self, ids: list[str], cols: dict) -> tuple[np.ndarray, np.ndarray, list[str], bool]:
        ctx = {k: cols[k] for k in ("trigger_timestamp", "trigger_event", "trigger_channel", "near_store", "weather")}
        if any(v is None for v in ctx["trigger_timestamp"]):
            now = self.clock.now()
            ctx["trigger_timestamp"] = [v or now for v in ctx["trigger_timestamp"]]
        if self.online is not None:
            try:
                X, found, tz = self.online.read(ids, context=ctx)
                return X, found, tz, True
            except Exception as e:
                log.error("online feature read failed, answering rules-only: %s", type(e).__name__)
        n = len(ids)
        return np.full((n, len(self.feature_index)), np.nan, np.float32), np.zeros(n, bool), ["UTC"] * n, False

    def decide(self, req: NextActionRequest, now: datetime | None = None) -> list[dict]:
        cols = req.columns()
        ids = cols["customer_id"]
        now = now or self.clock.now()
        X, found, tz, features_ok = self._features(ids, cols)
        decisions = decide_arrays(
            self.policy, self.scorer, self.feature_index, ids, X, found, tz, now,
            trigger=[t or "none" for t in cols["trigger_event"]],
            trigger_channel=cols["trigger_channel"],
            near_store=[bool(v) for v in cols["near_store"]],
            weather=[w or "unknown" for w in cols["weather"]],
            restrict_actions=cols["restrict_actions"],
            request_id=req.request_id,
        )
        records = decisions.to_records()
        if not features_ok:
            for r in records:
                r["fallback"], r["cold_start"] = True, False
                r["fallbacks"] = ["feature_store", *r["fallbacks"]]
                r["reasons"] = [FEATURE_STORE_DOWN, *[x for x in r["reasons"] if x["code"] != "cold_start"]]
        self.history.log_decisions(records, now.isoformat(), req.request_id)
        return records

    # ---------------------------------------------------------------- feedback
    def feedback(self, fb: FeedbackRequest) -> dict:
        """Record what happened to a decision's message and refresh the customer's online features."""
        known = self.history.decision(fb.decision_id)
        if known is None:
            raise UnknownDecision(f"decision_id: {fb.decision_id} was not issued by this service")
        if known["customer_id"] != fb.customer_id:
            raise UnknownDecision(f"customer_id: decision {fb.decision_id} was for another customer")
        ts = pd.Timestamp(fb.timestamp).tz_convert("UTC")
        self.history.log_feedback(fb.decision_id, fb.customer_id, fb.event, fb.channel, fb.action_id, fb.amount, ts)
        rows = [{"event_type": FEEDBACK_EVENTS[fb.event], "amount": np.nan}]
        if fb.event == "converted" and fb.amount is not None:
            rows.append({"event_type": "purchase", "amount": float(fb.amount)})
        events = pd.DataFrame([{
            "customer_id": fb.customer_id, "event_timestamp": ts, "channel": fb.channel if r["event_type"] != "purchase" else None,
            "action_id": fb.action_id, "campaign_id": fb.decision_id, **r} for r in rows])
        refreshed = False
        if self.online is not None:
            try:
                self.online.push(events, now=self.clock.now())
                refreshed = True
            except Exception as e:
                log.error("online feature refresh failed after feedback: %s", type(e).__name__)
        return {"accepted": True, "decision_id": fb.decision_id, "event": fb.event, "features_refreshed": refreshed}

    def health(self) -> dict:
        return {
            "status": "ok",
            "feature_store": "ok" if self.online is not None else f"unavailable: {self.feature_error}",
            "models": {h: m.version for h, m in self.scorer.models.items()},
            "fallback_heads": self.scorer.unavailable,
            "compiled_trees": self.scorer.compiled,
            "channels": list(CHANNELS),
            "uptime_s": round(time.time() - self.started, 1),
        }
