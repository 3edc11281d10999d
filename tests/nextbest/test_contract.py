"""The input data contract: good data passes, each kind of bad data is named precisely."""

from __future__ import annotations

import pandas as pd
import pytest
from typer.testing import CliRunner

from nextbest.contract import ContractError, load_world, validate_dir, validate_tables, write_world


def good_tables():
    customers = pd.DataFrame(
        {
            "customer_id": ["a", "b", "c"],
            "registered_at": ["2025-01-01T10:00:00+00:00", "2025-01-02T10:00:00+01:00", "2025-01-03T00:00:00Z"],
            "timezone": ["Europe/Paris", "UTC", "America/New_York"],
            "segment": ["b2c", "b2b", "b2c"],
            "consent_email": ["true", "false", "1"],
            "reachable_email": ["true", "true", "0"],
        }
    )
    events = pd.DataFrame(
        {
            "customer_id": ["a", "a", "b", "c"],
            "event_timestamp": [
                "2025-01-05T10:00:00+00:00",
                "2025-01-06T11:00:00+00:00",
                "2025-01-07T12:00:00+02:00",
                "2025-01-08T09:30:00+00:00",
            ],
            "event_type": ["purchase", "message_sent", "visit", "message_opened"],
            "channel": [None, "email", None, "sms"],
            "amount": ["12.5", None, None, None],
            "action_id": [None, "welcome", None, "welcome"],
            "campaign_id": [None, "c1", None, "c1"],
        }
    )
    return customers, events


def write_csv(tmp_path, customers, events):
    customers.to_csv(tmp_path / "customers.csv", index=False)
    events.to_csv(tmp_path / "events.csv", index=False)
    return tmp_path


def problems(tmp_path, customers, events):
    _, _, v = validate_dir(write_csv(tmp_path, customers, events))
    return v


def test_good_data_passes_and_is_typed(tmp_path):
    cust, ev = load_world(write_csv(tmp_path, *good_tables()))
    assert len(cust) == 3 and len(ev) == 4
    assert str(ev["event_timestamp"].dt.tz) == "UTC"
    # +02:00 is converted, not dropped
    assert ev.loc[ev.customer_id == "b", "event_timestamp"].iloc[0] == pd.Timestamp("2025-01-07T10:00:00Z")
    assert cust.set_index("customer_id").loc["a", "consent_email"] is True or cust.consent_email.iloc[0]
    assert not cust.set_index("customer_id").loc["c", "reachable_email"]
    assert cust.set_index("customer_id").loc["b", "consent_sms"] == False  # optional column -> documented default  # noqa: E712
    assert ev["event_timestamp"].is_monotonic_increasing


def test_events_are_loaded_in_time_order_then_by_customer(tmp_path):
    c, e = good_tables()
    e = pd.concat([e, e.assign(customer_id=["c", "b", "a", "b"])]).iloc[::-1]  # shuffled, each time twice
    ev = load_world(write_csv(tmp_path, c, e))[1]
    key = list(zip(ev["event_timestamp"], ev["customer_id"]))
    assert key == sorted(key) and len(ev) == 8
    same_time = ev[ev["event_timestamp"] == pd.Timestamp("2025-01-05T10:00:00Z")]
    assert same_time["customer_id"].tolist() == ["a", "c"]


def test_parquet_round_trip(tmp_path):
    cust, ev = load_world(write_csv(tmp_path, *good_tables()))
    write_world(tmp_path / "pq", cust, ev)
    cust2, ev2 = load_world(tmp_path / "pq")
    pd.testing.assert_frame_equal(ev.reset_index(drop=True), ev2.reset_index(drop=True), check_dtype=False)


def test_missing_column_is_named(tmp_path):
    c, e = good_tables()
    v = problems(tmp_path, c.drop(columns=["registered_at"]), e)
    assert any(x.column == "registered_at" and "missing" in x.problem and x.file.endswith("customers.csv") for x in v)


def test_wrong_type_names_rows(tmp_path):
    c, e = good_tables()
    e.loc[0, "amount"] = "twelve"
    c.loc[1, "consent_email"] = "maybe"
    v = problems(tmp_path, c, e)
    amount = next(x for x in v if x.column == "amount")
    assert amount.rows == [1] and "not a number" in amount.problem and "'twelve'" in amount.describe()
    consent = next(x for x in v if x.column == "consent_email")
    assert consent.rows == [2] and "boolean" in consent.problem


def test_unknown_event_type_lists_allowed_values(tmp_path):
    c, e = good_tables()
    e.loc[2, "event_type"] = "teleported"
    v = problems(tmp_path, c, e)
    x = next(x for x in v if x.column == "event_type")
    assert x.rows == [3] and "allowed" in x.problem and "purchase" in x.problem and x.file.endswith("events.csv")


def test_naive_timestamp_is_rejected(tmp_path):
    c, e = good_tables()
    e.loc[1, "event_timestamp"] = "2025-01-06T11:00:00"
    v = problems(tmp_path, c, e)
    x = next(x for x in v if x.column == "event_timestamp")
    assert x.rows == [2] and "timezone" in x.problem


def test_unknown_customer_in_events(tmp_path):
    c, e = good_tables()
    e.loc[3, "customer_id"] = "zzz"
    v = problems(tmp_path, c, e)
    x = next(x for x in v if x.column == "customer_id" and x.file.endswith("events.csv"))
    assert x.rows == [4] and "not in the customers table" in x.problem


def test_duplicate_ids(tmp_path):
    c, e = good_tables()
    c.loc[2, "customer_id"] = "a"
    v = problems(tmp_path, c, e)
    x = next(x for x in v if "duplicate" in x.problem)
    assert x.rows == [1, 3] and x.count == 2


def test_every_violation_reported_at_once(tmp_path):
    c, e = good_tables()
    c.loc[0, "timezone"] = "Mars/Olympus"
    e.loc[0, "amount"] = "-3"
    e.loc[1, "channel"] = "pigeon"
    e.loc[3, "channel"] = None  # message event without channel
    v = problems(tmp_path, c, e)
    cols = {x.column for x in v}
    assert {"timezone", "amount", "channel"} <= cols
    assert len([x for x in v if x.column == "channel"]) == 2


def test_load_world_raises_with_every_violation(tmp_path):
    c, e = good_tables()
    e.loc[0, "event_type"] = "nope"
    with pytest.raises(ContractError) as exc:
        load_world(write_csv(tmp_path, c, e))
    assert "event_type" in str(exc.value) and "rows 1" in str(exc.value)


def test_missing_files(tmp_path):
    _, _, v = validate_dir(tmp_path)
    assert {x.problem.split(" ")[1] for x in v} == {"customers.csv", "events.csv"}


def test_validate_tables_accepts_typed_frames():
    c, e = good_tables()
    c["registered_at"] = pd.to_datetime(c["registered_at"], utc=True, format="ISO8601")
    e["event_timestamp"] = pd.to_datetime(e["event_timestamp"], utc=True, format="ISO8601")
    _, _, v = validate_tables(c, e)
    assert v == []
    e["event_timestamp"] = e["event_timestamp"].dt.tz_localize(None)
    _, _, v = validate_tables(c, e)
    assert [x.column for x in v] == ["event_timestamp"]


def test_cli_validate_exit_codes(tmp_path):
    from nextbest.cli import app

    c, e = good_tables()
    runner = CliRunner()
    ok = runner.invoke(app, ["validate", str(write_csv(tmp_path, c, e))])
    assert ok.exit_code == 0, ok.output
    e.loc[0, "event_type"] = "nope"
    write_csv(tmp_path, c, e)
    bad = runner.invoke(app, ["validate", str(tmp_path)])
    assert bad.exit_code == 1
    assert "event_type" in bad.output and "events.csv" in bad.output


# --------------------------------------------------------------------------- assignments


def good_assignments() -> pd.DataFrame:
    return pd.DataFrame({
        "customer_id": ["a", "b", "c"],
        "assigned_at": ["2025-01-10T09:00:00+00:00", "2025-01-10T09:00:00+00:00", "2025-01-10T09:00:00+00:00"],
        "action_id": ["cross_sell", "no_action", "welcome"],
        "channel": ["email", None, "push"],
        "propensity": ["0.45", "0.1", None],
        "campaign_id": ["ab-1", "ab-1", "ab-1"],
    })


@pytest.fixture(scope="module")
def catalogue():
    from nextbest.settings import DEFAULT_CONFIG_DIR, load_settings

    return load_settings(DEFAULT_CONFIG_DIR, environ={}).actions


def test_assignments_are_optional_and_loaded_typed(tmp_path, catalogue):
    from nextbest.contract import load_assignments

    c, e = good_tables()
    write_world(tmp_path, c, e, fmt="csv")
    assert load_assignments(tmp_path, catalogue) is None
    write_world(tmp_path, c, e, good_assignments(), fmt="csv")
    a = load_assignments(tmp_path, catalogue, load_world(tmp_path)[0])
    assert str(a["assigned_at"].dtype) == "datetime64[ns, UTC]"
    assert a["propensity"].tolist()[:2] == [0.45, 0.1] and pd.isna(a["propensity"].iloc[2])
    assert a["randomised"].tolist() == [True, True, False]  # no propensity: not randomised


@pytest.mark.parametrize("column, value, problem", [
    ("action_id", "free_money", "not an action of the catalogue"),
    ("propensity", "1.5", "(0, 1]"),
    ("propensity", "0", "(0, 1]"),
    ("assigned_at", "2024-12-01T00:00:00+00:00", "before the customer registered"),
    ("customer_id", "zed", "not in the customers table"),
    ("assigned_at", "2025-01-10 09:00", "timezone"),
])
def test_each_bad_assignment_is_named(tmp_path, catalogue, column, value, problem):
    c, e = good_tables()
    a = good_assignments()
    a.loc[0, column] = value
    write_world(tmp_path, c, e, a, fmt="csv")
    _, _, violations = validate_dir(tmp_path, catalogue)
    text = "\n".join(v.describe() for v in violations)
    assert "assignments.csv" in text and f"'{column}'" in text and problem in text and "rows 1" in text, text


def test_channels_of_assignments_follow_the_catalogue(tmp_path, catalogue):
    c, e = good_tables()
    a = good_assignments()
    a.loc[1, "channel"] = "email"  # a held-out customer was sent nothing
    a.loc[0, "channel"] = None  # an action needs its channel
    a.loc[2, "channel"] = "print"  # welcome is not sent by print
    write_world(tmp_path, c, e, a, fmt="csv")
    text = "\n".join(v.describe() for v in validate_dir(tmp_path, catalogue)[2])
    assert "no_action sends nothing" in text and "needs its channel" in text and "does not allow" in text


def test_a_control_may_say_which_action_it_was_held_out_from(tmp_path, catalogue):
    from nextbest.contract import load_assignments

    c, e = good_tables()
    a = good_assignments()
    a["holdout_action"] = [None, "cross_sell", None]
    write_world(tmp_path, c, e, a, fmt="csv")
    loaded = load_assignments(tmp_path, catalogue, load_world(tmp_path)[0])
    assert loaded.set_index("customer_id")["holdout_action"].to_dict() == {"a": None, "b": "cross_sell", "c": None}
    a["holdout_action"] = ["welcome", "free_money", None]  # a send is not held out; an unknown action
    write_world(tmp_path, c, e, a, fmt="csv")
    text = "\n".join(v.describe() for v in validate_dir(tmp_path, catalogue)[2])
    assert "'holdout_action'" in text and "only a no_action row is held out" in text and "rows 1" in text, text
    assert "not an action of the catalogue" in text and "rows 2" in text, text


def test_cli_validate_reads_the_catalogue(tmp_path):
    from nextbest.cli import app

    c, e = good_tables()
    a = good_assignments()
    a.loc[0, "action_id"] = "free_money"
    write_world(tmp_path, c, e, a, fmt="csv")
    res = CliRunner().invoke(app, ["validate", str(tmp_path)])
    assert res.exit_code == 1 and "free_money" in res.output and "action_id" in res.output
