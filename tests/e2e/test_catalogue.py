"""The catalogue is the marketer's: an action added to actions.yaml works end to end with no code change
(features, training, batch scoring, the service started with `nextbest serve --config-dir`, the report);
an action removed after the build is refused at start-up with what to run."""

from __future__ import annotations

import subprocess

import pandas as pd
import pytest

from tests.e2e.conftest import BIN, running_server
from tests.support import build_installation, copy_configs, free_port, now_of, settings_env

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

NEW_ACTION = "mens_email"
MENS_EMAIL = {  # its own objective: purchases (not spend) over the next two weeks, 15 each
    "stages": ["active"],
    "objective": {"event": "purchase", "measure": "count", "horizon_days": 14},
    "value": 15.0,
    "cost": {"email": 0.01},
    "driver": "response",
    "lift": 0.5,
    "cooldown_days": 7,
}
LIMIT = 1000


@pytest.fixture(scope="module")
def menswear(tmp_path_factory):
    """A small installation built from a copy of configs/ with one more action and a request limit of 1000."""
    root = tmp_path_factory.mktemp("catalogue")
    configs = copy_configs(root / "configs", add_actions={NEW_ACTION: MENS_EMAIL},
                           serving={"max_customers_per_request": LIMIT})
    return build_installation(root, customers=1500, days=150, max_rows=20000, config_dir=configs)


def _serve_cmd(config_dir, port: int) -> list[str]:
    return [str(BIN / "nextbest"), "serve", "--config-dir", str(config_dir), "--port", str(port)]


def test_the_new_action_gets_features_and_models(menswear):
    from features.store import feature_names
    from nextbest.model_contract import load_champions

    assert f"days_since_action_{NEW_ACTION}" in feature_names(menswear)
    loaded, missing = load_champions(menswear)
    assert not missing, missing
    assert f"days_since_action_{NEW_ACTION}" in loaded["churn"].head.features


def test_the_new_action_is_learned_from_assignments_alone(menswear):
    """No lift needed beyond a prior: the legacy campaigns' randomised sends of the new action teach its effect,
    measured with its own objective."""
    from nextbest.model_contract import load_version
    from nextbest.vocabulary import CHAMPION, EFFECT_MODEL

    contract = load_version(menswear, EFFECT_MODEL, CHAMPION).contract
    assert contract["assignments"][NEW_ACTION] >= menswear.effects.min_assignments
    assert NEW_ACTION in contract["learned"] and NEW_ACTION not in contract["scaled_actions"]
    assert contract["objectives"][NEW_ACTION]["measure"] == "count"


def test_batch_scoring_decides_the_new_action(menswear, tmp_path):
    from serving.batch import score

    score(menswear, None, tmp_path / "scores.parquet")
    out = pd.read_parquet(tmp_path / "scores.parquet")
    sent = out[out["action"].astype(str) == NEW_ACTION]
    assert len(sent) > 0, out["action"].value_counts()
    assert (sent["channel"].astype(str) == "email").all() and (sent["stage"].astype(str) == "active").all()


def test_serve_config_dir_serves_that_folder(menswear, tmp_path):
    """`nextbest serve --config-dir` serves the folder's catalogue and request limit, not configs/."""
    ids = pd.read_parquet(menswear.world_dir / "customers.parquet", columns=["customer_id"])["customer_id"]
    ids = [c for c in ids if c.startswith("C")][:LIMIT]
    assert len(ids) == LIMIT
    env = {k: v for k, v in settings_env(menswear).items() if k != "NEXTBEST_CONFIG_DIR"}  # only --config-dir
    port = free_port()
    with running_server(_serve_cmd(menswear.config_dir, port), env, tmp_path / "server.log", port) as http:
        r = http.post("/next_action", json={"customer_ids": ids, "request_id": "all-of-them"})
        assert r.status_code == 200, r.text
        decisions = r.json()["decisions"]
        assert len(decisions) == LIMIT
        new = [d for d in decisions if d["action"] == NEW_ACTION]
        assert new and all(d["channel"] == "email" and "best_ev" in {x["code"] for x in d["reasons"]} for d in new)
        learned = [x["text"] for d in decisions for x in d["reasons"] if x["code"] == "best_ev"]
        assert any("learned from randomised sends" in t for t in learned)  # served from the effect model
        assert all(d["model_versions"].get("effect") for d in decisions)
        r = http.post("/next_action", json={"customer_ids": [*ids, "one-too-many"]})
        assert r.status_code == 400 and f"at most {LIMIT}" in r.text
        fb = {"decision_id": new[0]["decision_id"], "customer_id": new[0]["customer_id"], "event": "sent",
              "channel": "email", "action_id": NEW_ACTION, "timestamp": now_of(menswear).isoformat()}
        assert http.post("/feedback", json=fb).status_code == 200


def test_the_report_shows_the_new_action(menswear, tmp_path):
    from analysis.report import write_report
    from serving.batch import score

    score(menswear, None, menswear.data_dir / "scores" / "latest.parquet")
    page = write_report(menswear, out=tmp_path / "report.html").read_text()
    assert NEW_ACTION in page or "Mens email" in page


def test_a_removed_action_is_refused_at_start_up(menswear, tmp_path):
    fewer = copy_configs(tmp_path / "fewer", drop_actions=["win_back"], add_actions={NEW_ACTION: MENS_EMAIL})
    env = {k: v for k, v in settings_env(menswear).items() if k != "NEXTBEST_CONFIG_DIR"}
    res = subprocess.run(_serve_cmd(fewer, free_port()), env={**__import__("os").environ, **env},
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 1, res.stdout + res.stderr
    message = " ".join(res.stderr.split())
    assert "win_back" in message and "nextbest features build" in message
    assert "Traceback" not in res.stderr
