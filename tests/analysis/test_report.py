"""The marketers' report: every section, self-contained, logged to MLflow, readable in a real browser.

Two worlds go end to end (features -> train -> score -> report): the session's
simulated installation (``installation`` in tests/conftest.py: every model
trained; the report scores the base itself), and a transactions-only world
built here from the CDNOW sample, where the channel and send-time models cannot
exist. The browser test drives headless Chromium over the DevTools protocol on
a pipe (no extra dependency) and saves the first screen to
``tests/artifacts/report.png``.
"""

from __future__ import annotations

import base64
import json
import os
import re
import select
import shutil
import subprocess
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from nextbest.settings import Settings

SECTIONS = (
    "1. The customer base",
    "2. The models",
    "3. Channels and send times",
    "4. What the policy would do today",
    "5. Control group and uplift",
)
MIN_CHARTS = 14  # base 2, models 4 heads x 3-4, channels 3, policy 3-4, uplift 2


def _settings(root: Path, **extra: str) -> Settings:
    from tests.support import settings_for

    return settings_for(root, **{f"NEXTBEST__{k}": v for k, v in extra.items()})


def _fast_training() -> dict[str, str]:
    return {"TRAINING__MAX_ROWS": "4000", "TRAINING__NUM_BOOST_ROUND": "40", "TRAINING__EARLY_STOPPING_ROUNDS": "10"}


@pytest.fixture(scope="module")
def demo(installation):
    """The report of the session's simulated installation (the report runs the batch scoring it needs)."""
    from analysis.report import write_report

    t0 = time.perf_counter()
    path = write_report(installation)
    seconds = time.perf_counter() - t0
    return SimpleNamespace(settings=installation, path=path, html=path.read_text(encoding="utf-8"), seconds=seconds)


@pytest.fixture(scope="module")
def transactions_only(tmp_path_factory, cdnow_path):
    """The CDNOW purchase log: no messages, no consent; the report scores the base itself (no scores yet)."""
    from features import pipeline, store
    from nextbest.importer import import_transactions
    from analysis.report import write_report
    from training.train import train_all

    root = tmp_path_factory.mktemp("report-cdnow")
    s = _settings(root, **_fast_training())
    import_transactions(cdnow_path, s.world_dir)
    pipeline.build(s)
    store.apply(s)
    results = train_all(s, heads=("channel", "send_time"), use_tuned=False)
    assert {r.status for r in results} == {"skipped"}
    path = write_report(s, out=root / "elsewhere" / "cdnow.html")
    return SimpleNamespace(settings=s, path=path, html=path.read_text(encoding="utf-8"))


def _chart_titles(page: str) -> list[str]:
    return re.findall(r'<div class="chart-title">([^<]*)</div>', page)


# ----------------------------------------------------------------------------- content


def test_feature_names_read_as_words():
    from analysis.report import action_text, feature_text

    assert feature_text("click_rate_sms") == "SMS click rate"
    assert feature_text("days_since_last_purchase") == "days since last purchase"
    assert feature_text("hour_share_08") == "share of activity at 08:00 local time"
    assert feature_text("weekday_share_2") == "share of activity on Wednesdays"
    assert feature_text("sent_7d_in_app") == "In-app messages in the last 7 days"
    assert feature_text("frequency_90d") == "purchases in the last 90 days"
    assert feature_text("days_since_action_win_back") == "days since the last 'win-back' message"
    assert action_text("anti_attrition_offer") == "Anti-attrition offer"


@pytest.mark.slow
def test_report_has_every_section_and_enough_charts(demo):
    page = demo.html
    assert demo.path == demo.settings.path(demo.settings.paths.reports_dir) / "report.html"
    for title in SECTIONS:
        assert f"<h2>{title}</h2>" in page, title
    for head in ("Activation", "Churn risk", "Channel response", "Send time"):
        assert f">{head} model <span" in page, head
    assert page.count('<figure class="chart') >= MIN_CHARTS
    assert page.count("<svg") >= MIN_CHARTS
    assert 'class="error"' not in page, re.findall(r'class="error">([^<]*)', page)
    assert "Not trained" not in page
    # the numbers a marketer looks for
    assert "Gains chart on held-out data" in page and "Calibration on held-out data" in page
    assert "Hour accuracy on held-out engagements" in page
    assert "95% CI" in page and "control group" in page
    assert "Why customers get no message today" in page
    assert "<code>nextbest evaluate</code>" in page  # no evaluation results for this world yet


@pytest.mark.slow
def test_chart_titles_state_a_conclusion_in_plain_words(demo):
    titles = _chart_titles(demo.html)
    assert len(titles) >= MIN_CHARTS
    for t in titles:
        assert "_" not in t, t  # no raw feature or action ids
        assert len(t) > 25, t
    assert any(re.search(r"\d+\.\dx better than chance", t) for t in titles)
    assert any(t.startswith("What the churn risk model looks at most") for t in titles)
    # one-line glosses for the jargon
    for term in ("AUC", "Lift", "Calibration", "Top-3 accuracy", "Control group"):
        assert f"<strong>{term}</strong>:" in demo.html, term


@pytest.mark.slow
def test_report_is_self_contained(demo):
    page = demo.html
    assert "<script" not in page.lower()
    assert "<link" not in page.lower()
    assert "@import" not in page and "@font-face" not in page
    assert not re.search(r"https?://", page), re.findall(r".{40}https?://.{40}", page)[:3]
    for attr, value in re.findall(r'\b(src|href|xlink:href)\s*=\s*"([^"]*)"', page):
        assert value.startswith(("#", "data:")), (attr, value[:80])
    assert not re.search(r"url\((?!#|data:)", page)


@pytest.mark.slow
def test_report_is_logged_to_mlflow(demo):
    import mlflow
    from mlflow import MlflowClient

    from nextbest.model_contract import connect

    connect(demo.settings)
    runs = mlflow.search_runs(experiment_names=[demo.settings.mlflow.experiment],
                              filter_string="tags.kind = 'report'", order_by=["attributes.start_time DESC"],
                              output_format="list")
    assert runs
    run = runs[0]
    assert run.info.run_name.startswith("report-")
    assert [a.path for a in MlflowClient().list_artifacts(run.info.run_id, "report")] == ["report/report.html"]
    local = mlflow.artifacts.download_artifacts(run_id=run.info.run_id, artifact_path="report/report.html")
    assert Path(local).read_text(encoding="utf-8") == demo.html
    assert run.data.metrics["customers"] > 1000
    assert run.data.metrics["report_seconds"] > 0


@pytest.mark.slow
def test_transactions_only_world_says_why_models_are_missing(transactions_only):
    page = transactions_only.html
    for title in SECTIONS:
        assert f"<h2>{title}</h2>" in page, title
    assert 'class="error"' not in page, re.findall(r'class="error">([^<]*)', page)
    assert page.count("<strong>Not trained:</strong>") == 4  # churn and activation were not trained either
    assert "the data holds no sent messages" in page  # channel response
    assert "the data holds no message opens or clicks" in page  # send time
    assert "No customer can be contacted on any channel" in page
    assert "No legacy campaign targets with a control group" in page
    assert "imported customer data" in page
    # the report scored the base itself, as `nextbest score` would
    assert (transactions_only.settings.data_dir / "scores" / "latest.parquet").exists()
    assert transactions_only.path.name == "cdnow.html"


# ----------------------------------------------------------------------------- browser


class _DevTools:
    """The Chrome DevTools protocol over `--remote-debugging-pipe` (fd 3: commands in, fd 4: replies out)."""

    def __init__(self, binary: str, profile: Path, timeout: float = 30.0):
        self.timeout = timeout
        cmd_r, self._w = os.pipe()
        self._r, out_w = os.pipe()
        # park the child's ends above 3 and 4 so that the dup2 below cannot clobber one with the other
        park = (os.dup2(cmd_r, 200), os.dup2(out_w, 201))
        os.close(cmd_r)
        os.close(out_w)

        def child_fds():
            os.dup2(park[0], 3)
            os.dup2(park[1], 4)

        self.proc = subprocess.Popen(
            [binary, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             f"--user-data-dir={profile}", "--remote-debugging-pipe", "--hide-scrollbars", "about:blank"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
            preexec_fn=child_fds, pass_fds=(3, 4))
        for fd in park:
            os.close(fd)
        self._buf = b""
        self._id = 0
        self.events: list[dict] = []

    def call(self, method: str, params: dict | None = None, session: str | None = None) -> dict:
        self._id += 1
        msg = {"id": self._id, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = session
        os.write(self._w, json.dumps(msg).encode() + b"\0")
        while True:
            reply = self._read()
            if reply.get("id") == self._id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})
            self.events.append(reply)

    def wait_for(self, method: str) -> dict:
        for e in self.events:
            if e.get("method") == method:
                return e
        while True:
            e = self._read()
            self.events.append(e)
            if e.get("method") == method:
                return e

    def _read(self) -> dict:
        deadline = time.monotonic() + self.timeout
        while b"\0" not in self._buf:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("headless Chromium did not answer")
            if select.select([self._r], [], [], left)[0]:
                chunk = os.read(self._r, 1 << 20)
                if not chunk:
                    raise RuntimeError("Chromium exited: " + self.proc.stderr.read().decode(errors="replace")[-2000:])
                self._buf += chunk
        msg, _, self._buf = self._buf.partition(b"\0")
        return json.loads(msg)

    def close(self) -> None:
        try:
            self.call("Browser.close")
        except Exception:
            pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        for fd in (self._w, self._r):
            os.close(fd)
        if self.proc.stderr:
            self.proc.stderr.close()


def _chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail("chromium is not installed; CI must install it (`make test` runs apt-get install chromium)")
    pytest.skip("chromium is not installed (apt-get install chromium; `make test` installs it)")


_PAGE_STATE = """JSON.stringify({
  title: document.title,
  sections: [...document.querySelectorAll('section > h2')].map(e => e.textContent),
  visibleSections: [...document.querySelectorAll('section')].filter(e => e.getBoundingClientRect().height > 100).length,
  charts: [...document.querySelectorAll('figure.chart svg')].filter(e => {
      const r = e.getBoundingClientRect(); return r.width > 200 && r.height > 80; }).length,
  cards: document.querySelectorAll('.summary .card').length,
  firstScreenCharts: [...document.querySelectorAll('figure.chart svg')].filter(e =>
      e.getBoundingClientRect().top < window.innerHeight).length,
  overflowing: document.documentElement.scrollWidth > window.innerWidth,
})"""


@pytest.mark.slow
@pytest.mark.browser
def test_report_in_headless_chromium(demo, artifacts_dir, tmp_path):
    browser = _DevTools(_chromium(), tmp_path / "profile")
    try:
        target = browser.call("Target.createTarget", {"url": "about:blank"})["targetId"]
        sid = browser.call("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        for domain in ("Page", "Runtime", "Log", "Network"):
            browser.call(f"{domain}.enable", session=sid)
        browser.call("Emulation.setDeviceMetricsOverride",
                     {"width": 1280, "height": 900, "deviceScaleFactor": 1, "mobile": False}, session=sid)
        browser.call("Page.navigate", {"url": demo.path.as_uri()}, session=sid)
        browser.wait_for("Page.loadEventFired")
        state = json.loads(browser.call("Runtime.evaluate", {"expression": _PAGE_STATE, "returnByValue": True},
                                        session=sid)["result"]["value"])
        shot = browser.call("Page.captureScreenshot", {"format": "png"}, session=sid)
    finally:
        browser.close()

    problems = [e for e in browser.events if e.get("method") == "Runtime.exceptionThrown"
                or (e.get("method") == "Log.entryAdded" and e["params"]["entry"]["level"] == "error")
                or (e.get("method") == "Runtime.consoleAPICalled" and e["params"]["type"] in ("error", "assert"))
                or e.get("method") == "Network.loadingFailed"]
    assert not problems, problems[:3]
    urls = [e["params"]["request"]["url"] for e in browser.events if e.get("method") == "Network.requestWillBeSent"]
    assert urls and urls[0] == demo.path.as_uri()
    outside = [u[:80] for u in urls if not u.startswith(("file:", "data:"))]
    assert not outside, outside

    assert state["title"].startswith("nextbest report")
    assert state["sections"] == [*SECTIONS, "Glossary"]
    assert state["visibleSections"] == len(SECTIONS) + 1
    assert state["charts"] >= MIN_CHARTS
    assert state["cards"] >= 6
    assert state["firstScreenCharts"] >= 1  # the first screen shows key figures and the first charts
    assert not state["overflowing"]

    png = base64.b64decode(shot["data"])
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 20_000
    (artifacts_dir / "report.png").write_bytes(png)


def test_the_evaluation_shows_where_the_policy_loses_against_the_best_possible():
    from analysis.report.sections.policy import _losses_chart

    kinds = {"send_hour": 50.0, "channel": 100.0, "action": 400.0, "extra_send": -20.0, "held_back": 170.0}
    data = {"policies": {"oracle": {"value": 1000.0}, "nextbest": {"value": 300.0}},
            "losses": {"kinds": {k: {"lost": v} for k, v in kinds.items()}}}
    html = _losses_chart(data)
    assert "Most of the gap to the best possible is another message than the best (400 of 700)" in html
    assert "<svg" in html and "+20" in html and "minus nothing where a message was best" in html
    assert _losses_chart({"policies": data["policies"]}) == ""  # an evaluation written before it had losses
