"""The decision engine behind the HTTP service, free of any web framework:
online features + contact pressure -> champion scores -> policy -> reservations -> durable records,
plus feedback.

Everything heavy (feature store connection, boosters, compiled policy) is
built once in the constructor; a request only reads and computes.

A decision request, step by step:

1. A retried request (same ``request_id``) gets the decisions it was answered with before.
2. Each customer's trigger timestamp outside ``[now - serving.timestamp_past_days,
   now + serving.timestamp_future_minutes]`` is replaced by the time of the call, for that customer
   only, flagged ``fallback:trigger_timestamp``.
3. The pressure store's watermark and contacts, then the online features; what the store knows and
   the snapshot may not show is added to the pressure columns (see ``serving.pressure``).
4. Scores and policy; every recommended send is reserved atomically. A customer whose reservation
   lost a race is decided again with the new counts (``serving.reservation_retries`` times), then
   answered ``no_action`` with reason ``reservation_conflict``.
5. The decisions are committed to the decision log, then returned. With ``serving.shadow`` on and a
   @challenger in the registry, the challenger decides too, for the same customers with the same
   inputs (control group and exploration off), and its would-be decisions are logged beside the live
   ones (``nextbest shadow``); they are never returned, reserved or acted on, and a failure of the
   shadow never touches the live answer.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from datetime import datetime, timedelta

import numpy as np
import orjson
import pandas as pd

from features.names import CONTEXT, customer_features
from nextbest.clock import Clock
from nextbest.settings import Settings
from nextbest.vocabulary import CHALLENGER, CHAMPION, CHANNELS, NO_ACTION
from serving import errors
from serving.history import ContactHistory, HistoryUnavailable, contract_events
from serving.policy import DecisionInputs, channels_to_score, compile_policy, decide, decision_ids
from serving.pressure import (
    SENT,
    Limits,
    Overlay,
    PressureStore,
    PressureStoreUnavailable,
    Reservation,
    open_pressure_store,
)
from serving.schemas import FeedbackRequest, NextActionRequest
from serving.scoring import Scorer

log = logging.getLogger("nextbest.serving")
FEATURE_STORE_DOWN = {
    "code": "fallback:feature_store",
    "text": "feature store unavailable: rules-only decision from defaults (nothing known about consent, so no contact)",
}
PRESSURE_STORE_DOWN = {
    "code": "fallback:pressure_store",
    "text": "contact-pressure store unavailable: no send can be reserved, so none is recommended",
}
RESERVATION_CONFLICT = {
    "code": "reservation_conflict",
    "text": "other requests for this customer took the remaining contact capacity while deciding: nothing is sent",
}
_MS = 1_000


def decide_arrays(policy, scorer: Scorer, feature_index: dict, ids, X: np.ndarray, found: np.ndarray,
                  timezones, now, **context):
    """Scores from the champions, then the policy: the one path shared by the service and batch scoring.

    Only the customers with an option left are scored, the channel head only on the channels such an option
    may use (``channels_to_score``): on a typical day most of a base has
    no consented open channel or no eligible action, and their trees are never evaluated."""
    inputs = DecisionInputs(customer_ids=ids, X=X, feature_index=feature_index, found=found, timezones=timezones,
                            now=now, effects=scorer.increments(X), **context)
    ask = channels_to_score(inputs, policy)
    rows = np.flatnonzero(ask.any(axis=1))
    if len(rows):
        whole = len(rows) == inputs.n
        scores = scorer.score(inputs.X if whole else inputs.X[rows], policy, ask if whole else ask[rows])
        inputs.set_scores(rows, scores.p_activation, scores.p_churn, scores.p_response, scores.hour_dist)
    else:
        inputs.set_scores(rows)
    return decide(inputs, policy, scorer.versions)


def _ms(t: datetime) -> int:
    return int(t.timestamp() * _MS)


def _row_request_ids(ids: list[str], request_id: str | None) -> list[str | None]:
    """The request id each row's decision id derives from: a customer's later entries in the same
    request get ``<request_id>#<k>``, so every entry has its own (still reproducible) decision id."""
    if request_id is None:
        return [None] * len(ids)
    seen: dict[str, int] = {}
    out = []
    for c in ids:
        k = seen.get(c, 0)
        seen[c] = k + 1
        out.append(request_id if k == 0 else f"{request_id}#{k}")
    return out


def _rows_args(policy_args: dict, rows) -> dict:
    """The policy's per-customer arguments for `rows`; one request id for every row is passed as one value (the
    vectorised path)."""
    args = {k: [v[i] for i in rows] for k, v in policy_args.items()}
    if len(set(args["request_id"])) == 1:
        args["request_id"] = args["request_id"][0]
    return args


def _withhold(record: dict, reason: dict, fallback: str | None = None) -> None:
    """Turn a recommended send into no_action, saying why: the answer is then the service's, not a draw of the
    assignment, so it carries no propensity."""
    record.update(action=NO_ACTION, channel=None, send_at=None, expected_value=0.0, propensity=None,
                  exploration=False)
    record["reasons"] = [r for r in record["reasons"]
                         if r["code"] not in ("best_ev", "exploration") and not r["code"].startswith("context:")]
    record["reasons"].append(reason)
    if fallback:
        record["fallback"] = True
        record["fallbacks"] = [*record["fallbacks"], fallback]


class Engine:
    def __init__(self, settings: Settings, online=None, scorer: Scorer | None = None,
                 history: ContactHistory | None = None, clock: Clock | None = None,
                 pressure: PressureStore | None = None, shadow: Scorer | None = None):
        self.settings = settings
        self.clock = clock or Clock.from_setting(settings.serving.clock)
        self.policy = compile_policy(settings)
        self.limits = Limits.from_policy(self.policy)
        self.online = online
        self.feature_error: str | None = None
        if self.online is None:
            self.online = self._open_online()
        names = list(self.online.names) if self.online is not None else [
            *customer_features(tuple(settings.actions)), *CONTEXT]
        self.feature_index = {n: i for i, n in enumerate(names)}
        self.scorer = scorer if scorer is not None else Scorer.from_registry(settings, names)
        for head, why in self.scorer.unavailable.items():
            log.warning("model head %s unavailable, rule-based fallback: %s", head, why)
        self.shadow = shadow if shadow is not None else self._open_shadow(names)
        self.shadow_policy = dataclasses.replace(self.policy, control_share=0.0, exploration_share=0.0)
        sv = settings.serving
        self.history = history or ContactHistory(settings.serving_dir / "history.db", sync=sv.decision_log_sync)
        self.pressure = pressure or open_pressure_store(settings, self.limits)
        self.hold_ms = sv.reservation_hold_minutes * 60 * _MS
        self.window = (timedelta(days=sv.timestamp_past_days), timedelta(minutes=sv.timestamp_future_minutes))
        self.started = time.time()

    def _open_shadow(self, names: list[str]) -> Scorer | None:
        """The registry's @challenger versions (the champion where a model has none) when the shadow is on and
        they differ from the champions; otherwise None."""
        if not self.settings.serving.shadow:
            return None
        try:
            shadow = Scorer.from_registry(self.settings, names, aliases=(CHALLENGER, CHAMPION))
        except Exception as e:  # the live service never depends on the shadow
            log.error("shadow off: the challenger could not be loaded (%s: %s)", type(e).__name__, e)
            return None
        if shadow.versions == self.scorer.versions:
            log.info("shadow off: every @challenger is the @champion")
            return None
        log.info("shadow on: %s", shadow.versions)
        return shadow

    def _open_online(self):
        from features.store import CatalogueMismatch, OnlineFeatures, online_store_path

        path = online_store_path(self.settings)
        if path is not None and not path.exists():  # never let the reader create an empty store
            self.feature_error = f"online store {path} is missing: run `nextbest features materialize`"
            log.error("online features unavailable, answering rules-only: %s", self.feature_error)
            return None
        try:
            return OnlineFeatures(self.settings)
        except CatalogueMismatch:
            raise  # a configuration error: refuse to start rather than answer from the wrong layout
        except Exception as e:  # the service still answers, rules-only, flagged
            self.feature_error = f"{type(e).__name__}: {e}"
            log.error("online features unavailable, answering rules-only: %s", self.feature_error)
            return None

    # ------------------------------------------------------------------ decide
    def _accepted(self, t: datetime, now: datetime) -> bool:
        past, ahead = self.window
        return now - past <= t <= now + ahead

    def _window_text(self) -> str:
        sv = self.settings.serving
        return f"[now - {sv.timestamp_past_days} days, now + {sv.timestamp_future_minutes} minutes]"

    def _features(self, ids: list[str], ctx: dict) -> tuple[np.ndarray, np.ndarray, list[str], bool]:
        if self.online is not None:
            try:
                X, found, tz = self.online.read(ids, context=ctx)
                return X, found, tz, True
            except Exception as e:
                log.error("online feature read failed, answering rules-only: %s", type(e).__name__)
        n = len(ids)
        return np.full((n, len(self.feature_index)), np.nan, np.float32), np.zeros(n, bool), ["UTC"] * n, False

    def decide(self, req: NextActionRequest, now: datetime | None = None) -> list[dict]:
        """One decision per customer of ``req``, in order (see the module docstring)."""
        return self.answer(req, now)[0]

    def answer(self, req: NextActionRequest, now: datetime | None = None) -> tuple[list[dict], list[str]]:
        """The decisions and the JSON text of each (as answered and logged)."""
        out = self.answer_many([req], now)[0]
        if isinstance(out, errors.ApiError):
            raise out
        return out

    def answer_many(self, reqs: list[NextActionRequest], now: datetime | None = None
                    ) -> list[tuple[list[dict], list[str]] | errors.ApiError]:
        """Several requests decided in one pass (one feature read, one scoring, one policy call, one log
        transaction): for each, its decisions and their JSON text, or the error it is answered with.

        Each request gets what it would get alone at the same time of the call: the policy decides each row on
        its own (the control group and exploration draw on the row's own request id), the sends are reserved in
        request order (a later request's customer who lost a race is decided again, as between two calls), and
        a request id seen twice (a retry racing its original) is decided once and answered the same."""
        now = now or self.clock.now()
        out: list = [None] * len(reqs)
        jobs = []  # (index, request id, columns, planned decision ids)
        for k, req in enumerate(reqs):
            unknown = req.unknown_actions(self.policy.actions)
            if unknown:
                field, bad = unknown[0]
                out[k] = errors.invalid(field, f"unknown action(s) {bad}; the catalogue has {list(self.policy.actions)}")
                continue
            cols = req.columns()
            cols["request_id"] = _row_request_ids(cols["customer_id"], req.request_id)
            jobs.append((k, req.request_id, cols, []))
        every = decision_ids(np.asarray([c for *_, cols, _ in jobs for c in cols["customer_id"]], dtype=object),
                             [r for *_, cols, _ in jobs for r in cols["request_id"]]).tolist()
        lo = 0
        for *_, cols, planned in jobs:
            planned.extend(every[lo:lo + len(cols["customer_id"])])
            lo += len(planned)
        retried = [d for _, rid, _, planned in jobs if rid is not None for d in planned]
        try:
            done = self.history.answered(retried) if retried else {}
        except HistoryUnavailable:
            return self._all_failed(out, jobs, errors.unavailable("the decision log"))
        row_of: dict[str, int] = {}  # planned decision id -> its row among the fresh ones
        merged: dict[str, list] = {}
        request_ids: list[str | None] = []
        for _, rid, cols, planned in jobs:
            for i, d in enumerate(planned):
                if d in done or d in row_of:
                    continue
                row_of[d] = len(request_ids)
                request_ids.append(rid)
                for name, values in cols.items():
                    merged.setdefault(name, []).append(values[i])
        fresh, shadow = self._decide_fresh(merged, now) if row_of else ([], [])
        texts = [orjson.dumps(r).decode() for r in fresh]  # compact JSON, as json.dumps with (",", ":")
        try:
            self.history.log_decisions(fresh, texts, now.isoformat(), request_ids, shadow)
        except HistoryUnavailable:
            return self._all_failed(out, jobs, errors.unavailable("the decision log"))
        for k, _, _, planned in jobs:
            records, answered = [], []
            for d in planned:
                if d in row_of:
                    records.append(fresh[row_of[d]])
                    answered.append(texts[row_of[d]])
                else:
                    records.append(orjson.loads(done[d]))
                    answered.append(done[d])
            out[k] = (records, answered)
        return out

    @staticmethod
    def _all_failed(out: list, jobs: list, error: errors.ApiError) -> list:
        for k, *_ in jobs:
            out[k] = error
        return out

    def _decide_fresh(self, cols: dict, now: datetime) -> tuple[list[dict], list[dict]]:
        """The live decisions, and the challenger's would-be decisions when a shadow runs."""
        ids = cols["customer_id"]
        n = len(ids)
        ts = list(cols["trigger_timestamp"])
        bad_trigger = [i for i, t in enumerate(ts) if t is not None and not self._accepted(t, now)]
        for i in range(n):
            if ts[i] is None or i in bad_trigger:
                ts[i] = now
        ctx = {k: cols[k] for k in ("trigger_event", "trigger_channel", "near_store", "weather")}
        ctx["trigger_timestamp"] = ts
        try:
            overlay = self.pressure.overlay(ids)
        except PressureStoreUnavailable as e:
            log.error("pressure store unavailable, no send is recommended: %s", type(e).__name__)
            overlay = None
        X, found, tz, features_ok = self._features(ids, ctx)
        base = X.copy()
        now_ms = _ms(now)
        if overlay is not None:
            overlay.apply(X, self.feature_index, ids, now_ms, self.policy.actions)
        policy_args = dict(
            trigger=[t or "none" for t in cols["trigger_event"]], trigger_channel=cols["trigger_channel"],
            near_store=[bool(v) for v in cols["near_store"]], weather=[w or "unknown" for w in cols["weather"]],
            restrict_actions=cols["restrict_actions"], request_id=cols["request_id"],
        )

        def run(rows: list[int], X_rows: np.ndarray) -> list[dict]:
            args = _rows_args(policy_args, rows)
            d = decide_arrays(self.policy, self.scorer, self.feature_index, [ids[i] for i in rows], X_rows,
                              found[rows], [tz[i] for i in rows], now, **args)
            return d.to_records()

        records = run(list(range(n)), X)
        shadow = self._shadow(ids, X, found, tz, now, policy_args) if self.shadow is not None else []
        if overlay is None:
            for r in records:
                if r["action"] != NO_ACTION:
                    _withhold(r, PRESSURE_STORE_DOWN, "pressure_store")
        else:
            self._reserve(records, ids, base, overlay, now_ms, run)
        if not features_ok:
            for r in records:
                r["fallback"], r["cold_start"] = True, False
                r["fallbacks"] = ["feature_store", *r["fallbacks"]]
                r["reasons"] = [FEATURE_STORE_DOWN, *[x for x in r["reasons"] if x["code"] != "cold_start"]]
        for i in bad_trigger:
            r = records[i]
            r["fallback"] = True
            r["fallbacks"] = [*r["fallbacks"], "trigger_timestamp"]
            r["reasons"].append({"code": "fallback:trigger_timestamp", "text": (
                f"trigger_timestamp outside {self._window_text()}: the time of the call was used")})
        return records, shadow

    def _shadow(self, ids, X, found, tz, now, policy_args: dict) -> list[dict]:
        try:
            return decide_arrays(self.shadow_policy, self.shadow, self.feature_index, ids, X, found, tz, now,
                                 **_rows_args(policy_args, range(len(ids)))).to_records()
        except Exception as e:
            log.error("shadow decision failed, live answer unaffected: %s: %s", type(e).__name__, e)
            return []

    def _reservation(self, r: dict, base_row: np.ndarray) -> Reservation:
        pol, idx = self.policy, self.feature_index
        c, a = CHANNELS.index(r["channel"]), r["action"]
        send_at = _ms(datetime.fromisoformat(r["send_at"]))
        return Reservation(
            decision_id=r["decision_id"], customer_id=r["customer_id"], action=a, channel=r["channel"],
            send_at_ms=send_at, expires_ms=send_at + self.hold_ms,
            base_channel=float(base_row[idx[pol.cap_features[c]]]),
            base_overall=float(base_row[idx[pol.overall_feature]]),
            base_days_since=float(base_row[idx[f"days_since_action_{a}"]]),
        )

    def _reserve(self, records: list[dict], ids: list[str], base: np.ndarray, overlay: Overlay, now_ms: int,
                 run) -> None:
        """Reserve every recommended send; re-decide the customers whose reservation lost a race."""
        pending = [i for i, r in enumerate(records) if r["action"] != NO_ACTION]
        for attempt in range(self.settings.serving.reservation_retries + 1):
            if not pending:
                return
            try:
                ok = self.pressure.reserve([self._reservation(records[i], base[i]) for i in pending],
                                           overlay.watermark, now_ms)
            except PressureStoreUnavailable as e:
                log.error("pressure store unavailable while reserving: %s", type(e).__name__)
                for i in pending:
                    _withhold(records[i], PRESSURE_STORE_DOWN, "pressure_store")
                return
            lost = [i for i, k in zip(pending, ok) if not k]
            if not lost or attempt == self.settings.serving.reservation_retries:
                break
            try:  # the same watermark: the features read for this request are still the ones in X
                fresh = Overlay(overlay.watermark, self.pressure.overlay([ids[i] for i in lost]).contacts)
            except PressureStoreUnavailable:
                break
            X_lost = base[lost].copy()
            fresh.apply(X_lost, self.feature_index, [ids[i] for i in lost], now_ms, self.policy.actions)
            for i, r in zip(lost, run(lost, X_lost)):
                records[i] = r
            pending = [i for i in lost if records[i]["action"] != NO_ACTION]
            lost = []
        for i in lost:
            _withhold(records[i], RESERVATION_CONFLICT)

    # ---------------------------------------------------------------- feedback
    def feedback(self, fb: FeedbackRequest) -> dict:
        """Record what happened to a decision's message (once per decision and event), confirm or release
        its reservation, and refresh the customer's online features."""
        try:
            known = self.history.decision(fb.decision_id)
        except HistoryUnavailable:
            raise errors.unavailable("the decision log") from None
        self._check_feedback(fb, known)
        ts = pd.Timestamp(fb.timestamp).tz_convert("UTC")
        try:
            if fb.event == "cancelled":
                return self._cancel(fb, ts)
            with self.pressure.customer_lock(fb.customer_id):
                return self._record(fb, ts)
        except (PressureStoreUnavailable, HistoryUnavailable) as e:
            log.error("feedback not recorded: %s", type(e).__name__)
            raise errors.unavailable("the contact-pressure store or the decision log") from None

    def _check_feedback(self, fb: FeedbackRequest, known: dict | None) -> None:
        if known is None:
            raise errors.unknown_decision(fb.decision_id)
        if known["customer_id"] != fb.customer_id:
            raise errors.conflict("customer_id", f"decision {fb.decision_id} was for another customer")
        if known["action"] == NO_ACTION:
            raise errors.conflict("decision_id", f"decision {fb.decision_id} recommended no_action: nothing was "
                                                 "sent, so it takes no feedback")
        if fb.action_id != known["action"]:
            raise errors.conflict("action_id", f"decision {fb.decision_id} recommended {known['action']}, "
                                               f"not {fb.action_id}")
        if fb.channel != known["channel"]:
            raise errors.conflict("channel", f"decision {fb.decision_id} recommended {known['channel']}, "
                                             f"not {fb.channel}")
        if not self._accepted(fb.timestamp, self.clock.now()):
            raise errors.invalid("timestamp", f"{fb.timestamp.isoformat()} is outside {self._window_text()} of "
                                              "the service's clock")
        if fb.amount is not None and fb.amount > self.settings.serving.max_feedback_amount:
            raise errors.invalid("amount", f"at most {self.settings.serving.max_feedback_amount:g} "
                                           "(serving.max_feedback_amount)")

    def _response(self, fb: FeedbackRequest, duplicate: bool, refreshed: bool = False) -> dict:
        return {"accepted": True, "decision_id": fb.decision_id, "event": fb.event, "duplicate": duplicate,
                "features_refreshed": refreshed}

    def _cancel(self, fb: FeedbackRequest, ts: pd.Timestamp) -> dict:
        before = self.pressure.cancel(fb.decision_id, fb.customer_id)
        if before == SENT:
            raise errors.conflict("event", f"decision {fb.decision_id} was already reported sent: a send cannot be "
                                           "cancelled")
        new = self.history.log_feedback(fb.decision_id, fb.customer_id, fb.event, fb.channel, fb.action_id,
                                        fb.amount, ts)
        return self._response(fb, duplicate=not new)

    def _record(self, fb: FeedbackRequest, ts: pd.Timestamp) -> dict:
        """Under the customer's lock: store the event once, push it into the features, confirm a send."""
        new = self.history.log_feedback(fb.decision_id, fb.customer_id, fb.event, fb.channel, fb.action_id,
                                        fb.amount, ts)
        if fb.event == "sent":
            if not new and self.pressure.state(fb.decision_id, fb.customer_id) == SENT:
                return self._response(fb, duplicate=True)
            counted = self._push(fb, ts) if new else 0  # a retry after a crash confirms without pushing again
            self.pressure.confirm(fb.decision_id, fb.customer_id, fb.action_id, fb.channel, _ms(ts.to_pydatetime()),
                                  in_features=counted > 0)
            return self._response(fb, duplicate=not new, refreshed=counted > 0)
        if not new:
            return self._response(fb, duplicate=True)
        return self._response(fb, duplicate=False, refreshed=self._push(fb, ts) > 0)

    def _push(self, fb: FeedbackRequest, ts: pd.Timestamp) -> int:
        """Push the event into the customer's online features; the number of events the features count."""
        if self.online is None:
            return 0
        events = contract_events(pd.DataFrame([{
            "decision_id": fb.decision_id, "customer_id": fb.customer_id, "event": fb.event, "channel": fb.channel,
            "action_id": fb.action_id, "amount": fb.amount, "event_timestamp": ts}]))
        try:
            return int(self.online.push(events, now=self.clock.now()).get("events_counted", 0))
        except Exception as e:
            log.error("online feature refresh failed after feedback: %s", type(e).__name__)
            return 0

    # ------------------------------------------------------------------ health
    def checks(self) -> dict[str, str]:
        """Each dependency checked for real: "ok" or why not."""
        out = {}
        out["feature_store"] = self._check(self._check_features)
        out["pressure_store"] = self._check(self.pressure.ping)
        out["decision_log"] = self._check(self.history.ping)
        out["models"] = self._check(self._check_models)
        return out

    @staticmethod
    def _check(fn) -> str:
        try:
            fn()
            return "ok"
        except Exception as e:
            return f"unavailable: {type(e).__name__}: {e}"

    def _check_features(self) -> None:
        from features.store import online_store_path

        if self.online is None:
            raise RuntimeError(self.feature_error or "not loaded")
        path = online_store_path(self.settings)
        if path is not None and not path.exists():
            raise FileNotFoundError(f"online store {path} is missing")
        self.online.read_customer(["__nextbest_health__"])  # a real round trip to the store

    def _check_models(self) -> None:
        X = np.full((1, len(self.feature_index)), np.nan, np.float32)
        scores = self.scorer.score(X, self.policy)
        for name in ("p_activation", "p_churn", "p_response", "hour_dist"):
            v = getattr(scores, name)
            if v is not None and not np.isfinite(v).all():
                raise ValueError(f"{name}: not finite on an empty feature row")

    def health(self) -> dict:
        checks = self.checks()
        return {
            "status": "ok" if all(v == "ok" for v in checks.values()) else "unavailable",
            "checks": checks,
            "models": {h: m.version for h, m in self.scorer.models.items()},
            "fallback_heads": self.scorer.unavailable,
            "compiled_trees": self.scorer.compiled,
            "shadow": self.shadow.versions if self.shadow is not None else None,
            "channels": list(CHANNELS),
            "workers": self.settings.serving.worker_count,
            "uptime_s": round(time.time() - self.started, 1),
        }

    def close(self) -> None:
        self.history.close()
        self.pressure.close()

