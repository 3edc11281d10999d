"""Settings are typed and validated at start; errors name the key and what is allowed."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from nextbest.settings import DEFAULT_CONFIG_DIR, SettingsError, load_settings


def test_defaults_load():
    s = load_settings(environ={})
    assert s.features.activation_window_days == 11
    assert s.tracking_uri.startswith("sqlite:////")
    assert "second_use_nudge" in s.actions and "no_action" not in s.actions
    assert s.contact_policy.caps.per_channel["email"].max >= 1


def test_env_override_is_typed():
    s = load_settings(environ={"NEXTBEST__WORLD__CUSTOMERS": "500", "NEXTBEST__ONLINE_STORE__KIND": "redis"})
    assert s.world.customers == 500 and s.online_store.kind == "redis"


def test_bad_env_value_names_key_and_allowed_values():
    with pytest.raises(SettingsError) as e:
        load_settings(environ={"NEXTBEST__ONLINE_STORE__KIND": "mongo"})
    msg = str(e.value)
    assert "NEXTBEST__ONLINE_STORE__KIND" in msg and "online_store.kind" in msg and "'sqlite' or 'redis'" in msg


def test_unknown_key_is_refused(tmp_path: Path):
    shutil.copytree(DEFAULT_CONFIG_DIR, tmp_path / "c")
    p = tmp_path / "c" / "nextbest.yaml"
    p.write_text(p.read_text().replace("cadence_days: 7", "cadense_days: 7"))
    with pytest.raises(SettingsError) as e:
        load_settings(tmp_path / "c", environ={})
    assert "features.cadense_days" in str(e.value) and "nextbest.yaml" in str(e.value)


def test_bad_action_names_file_and_key(tmp_path: Path):
    shutil.copytree(DEFAULT_CONFIG_DIR, tmp_path / "c")
    p = tmp_path / "c" / "actions.yaml"
    p.write_text(p.read_text().replace("cost: {sms: 0.05}", "cost: {fax: 0.05}"))
    with pytest.raises(SettingsError) as e:
        load_settings(tmp_path / "c", environ={})
    assert "actions.yaml" in str(e.value) and "actions.contact_enrichment.cost.fax" in str(e.value)


def test_inconsistent_thresholds_fail():
    with pytest.raises(SettingsError) as e:
        load_settings(environ={"NEXTBEST__FEATURES__LAPSED_DAYS": "10"})
    assert "lapsed_days" in str(e.value)


def test_file_store_uri_refused():
    with pytest.raises(SettingsError) as e:
        load_settings(environ={"NEXTBEST__MLFLOW__TRACKING_URI": "./mlruns"})
    assert "sqlite:///" in str(e.value)


def test_missing_config_file(tmp_path: Path):
    with pytest.raises(SettingsError) as e:
        load_settings(tmp_path, environ={})
    assert "nextbest.yaml" in str(e.value) and "not found" in str(e.value)
