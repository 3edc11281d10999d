"""A straightforward next-best-action service, the baseline of ``bench_online.py``.

What a first implementation with the same tools would do: a BentoML service
with default settings (access log on), per request Feast's
``FeatureStore.get_online_features`` on the feature service (scalar views
materialised with ``features.store.materialize(settings, plain=True)``, the
request-context on-demand view computed by Feast), the champions loaded once
with ``mlflow.pyfunc.load_model("models:/nextbest-<head>@champion")`` and
asked through pyfunc on a DataFrame, then the same policy
(``serving.policy.decide``), so its answers are comparable with the real
service's. It does not log decisions (the real service writes them to its
contact history).

    cd benchmarks && PYTHONPATH=.. ../.venv/bin/bentoml serve naive_service:NaiveNextBest --port 3100
"""

from __future__ import annotations

from datetime import datetime, timezone

import bentoml
import numpy as np

from serving.schemas import NextActionRequest


@bentoml.service(name="nextbest-naive")
class NaiveNextBest:
    def __init__(self) -> None:
        import mlflow
        import pandas as pd  # noqa: F401

        from features.names import CONTEXT
        from features.store import feature_names, get_store
        from nextbest.settings import load_settings
        from serving.policy import compile_policy
        from nextbest.model_contract import connect

        self.settings = load_settings()
        self.store = get_store(self.settings)
        self.service = self.store.get_feature_service(self.settings.features.feature_service)
        self.names = feature_names(self.settings, self.store)
        self.context_names = [n for n in self.names if n in CONTEXT]
        self.index = {n: i for i, n in enumerate(self.names)}
        self.policy = compile_policy(self.settings)
        connect(self.settings)
        self.models, self.contracts, self.versions = {}, {}, {}
        from mlflow import MlflowClient

        client = MlflowClient()
        for head in ("activation", "churn", "channel", "send_time"):
            name = f"{self.settings.mlflow.model_prefix}-{head}"
            m = mlflow.pyfunc.load_model(f"models:/{name}@champion")
            self.models[head] = m
            self.contracts[head] = m.metadata.metadata["nextbest"]
            self.versions[head] = client.get_model_version_by_alias(name, "champion").version

    def _predict(self, head: str, frame):
        out = np.asarray(self.models[head].predict(frame))
        cal = self.contracts[head].get("calibration")
        return np.interp(out, cal["x"], cal["y"]) if cal else out

    def _send_time(self, frame):
        """The send-time head as its contract defines it: the booster's prior over the hour from all inputs but the
        customer's own hour evidence, which then updates it (``nextbest.hours``)."""
        from nextbest.hours import EVIDENCE_INPUTS, evidence_counts, hour_posterior

        evidence = self.contracts["send_time"].get("hour_evidence")
        if not evidence:
            return self._predict("send_time", frame)
        # the pyfunc's signature lists every input, the booster reads all but the evidence: call the booster
        booster = self.models["send_time"].get_raw_model()
        prior = np.asarray(booster.predict(frame.iloc[:, :-EVIDENCE_INPUTS])).reshape(len(frame), 24)
        counts = evidence_counts(frame.iloc[:, -EVIDENCE_INPUTS:].to_numpy(np.float32))
        return hour_posterior(prior, counts, evidence["kappa"])

    def _features(self, ids: list[str], cols: dict, now: datetime):
        rows = []
        for i, c in enumerate(ids):
            rows.append({
                "customer_id": c,
                "trigger_timestamp": cols["trigger_timestamp"][i] or now,
                "trigger_event": cols["trigger_event"][i] or "none",
                "trigger_channel": cols["trigger_channel"][i] or "",
                "near_store": int(bool(cols["near_store"][i])),
                "weather": cols["weather"][i] or "unknown",
            })
        df = self.store.get_online_features(features=self.service, entity_rows=rows).to_df()
        X = df.reindex(columns=self.names).to_numpy(dtype=np.float32)
        customer_cols = [n for n in self.names if n not in self.context_names]
        found = df[customer_cols].notna().any(axis=1).to_numpy()
        tz = df["timezone"].where(df["timezone"].notna(), "UTC").tolist() if "timezone" in df else ["UTC"] * len(ids)
        return X, found, tz

    def _scores(self, X: np.ndarray, allowed_hours: np.ndarray):
        import pandas as pd

        from nextbest.vocabulary import CHANNELS
        from serving.scoring import Scores

        n = len(X)

        def frame(head, data):
            feats = self.contracts[head]["features"]
            cols = [self.index[f] for f in feats if f in self.index]
            return pd.DataFrame(data[:, cols] if data is X else data, columns=feats)

        p_act = self._predict("activation", frame("activation", X))
        p_churn = self._predict("churn", frame("churn", X))
        hour_dist = self._send_time(frame("send_time", X)).reshape(n, 24)
        best_hour = np.where(allowed_hours[None, :], hour_dist, -np.inf).argmax(axis=1)
        feats = self.contracts["channel"]["features"]
        k = len(CHANNELS)
        known = [f for f in feats if f in self.index]
        full = pd.DataFrame(np.repeat(X, k, axis=0), columns=self.names)  # one row per (customer, channel)
        rows = full[known].copy()
        code, hour = np.tile(np.arange(k), n), np.repeat(best_hour, k)
        try:  # the message inputs as the training code builds them (channel, hour, that channel's stats)
            from features.message import MESSAGE_INPUTS, message_inputs

            extra = message_inputs(full.to_numpy(np.float32), self.index, code, hour)
            for j, name in enumerate(MESSAGE_INPUTS):
                rows[name] = extra[:, j]
        except ImportError:
            rows["msg_channel_code"], rows["msg_local_hour"] = code.astype(np.float32), hour.astype(np.float32)
        p_resp = self._predict("channel", rows[feats]).reshape(n, k)
        return Scores(p_act, p_churn, p_resp, hour_dist)

    @bentoml.api(route="/next_action", input_spec=NextActionRequest)
    def next_action(self, **fields) -> dict:
        from serving.policy import DecisionInputs, decide

        req = NextActionRequest.model_construct(**fields)
        cols = req.columns()
        ids = cols["customer_id"]
        now = datetime.now(timezone.utc)
        X, found, tz = self._features(ids, cols, now)
        s = self._scores(X, np.asarray(self.policy.allowed_hours, bool))
        inputs = DecisionInputs(
            customer_ids=ids, X=X, feature_index=self.index, found=found, timezones=tz, now=now,
            p_activation=s.p_activation, p_churn=s.p_churn, p_response=s.p_response, hour_dist=s.hour_dist,
            trigger=[t or "none" for t in cols["trigger_event"]], trigger_channel=cols["trigger_channel"],
            near_store=[bool(v) for v in cols["near_store"]], weather=[w or "unknown" for w in cols["weather"]],
            restrict_actions=cols["restrict_actions"], request_id=req.request_id,
        )
        return {"request_id": req.request_id, "decisions": decide(inputs, self.policy, self.versions).to_records()}

    @bentoml.api(route="/health")
    def health(self) -> dict:
        return {"status": "ok", "models": self.versions}
