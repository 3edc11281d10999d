"""`nextbest`: one command line for the whole pipeline.

Every command is a thin wrapper around a plain function; heavy libraries are
imported inside the commands so that `nextbest --help` stays instant.
"""

from __future__ import annotations

import sys
from datetime import date
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console

app = typer.Typer(
    help="nextbest: next-best-action scoring for CRM journeys (which action, which channel, when - or nothing).",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
features_app = typer.Typer(no_args_is_help=True, add_completion=False)
app.add_typer(features_app, name="features", help="Build, register and materialise customer features (Feast).")
console = Console()
err = Console(stderr=True)

ConfigDir = typer.Option(None, "--config-dir", help="Folder holding nextbest.yaml, actions.yaml, contact_policy.yaml "
                                                     "(default: configs/, or $NEXTBEST_CONFIG_DIR)")


def settings_or_exit(config_dir: Optional[Path] = None):
    """Load and validate the settings once, at the entry point; print the offending key and exit 2 on a bad value."""
    from nextbest.quiet import quiet_third_party
    from nextbest.settings import SettingsError, load_settings

    quiet_third_party()
    try:
        return load_settings(config_dir)
    except SettingsError as e:
        err.print(f"[red]{e}[/red]")
        raise typer.Exit(2) from None


def fail(message: object, code: int = 1):
    """Print a user-facing error and exit (no traceback)."""
    err.print(f"[red]{message}[/red]", highlight=False)
    raise typer.Exit(code)


def world_oracle(settings):
    """The simulator's oracle when the data folder holds a simulated world (truth.parquet), else None."""
    if not (settings.world_dir / "truth.parquet").exists():
        return None
    from simulator.oracle import Oracle

    return Oracle.load(settings.world_dir)


def _show(title: str, items: dict) -> None:
    from rich.table import Table

    t = Table(title=title, show_header=False, title_justify="left")
    for k, v in items.items():
        t.add_row(str(k), str(v))
    console.print(t)


@app.command()
def validate(
    directory: Path = typer.Argument(..., help="Folder with customers, events and optional assignments (.csv or .parquet)"),
    config_dir: Optional[Path] = ConfigDir,
):
    """Check a data folder against the input contract and the action catalogue; list every violation, exit 1 if any."""
    from nextbest.contract import validate_dir

    s = settings_or_exit(config_dir)
    cust, ev, violations = validate_dir(directory, s.actions)
    if violations:
        err.print(f"[red]{len(violations)} contract violation(s) in {directory}:[/red]")
        for v in violations:
            err.print("  - " + v.describe(), markup=False, highlight=False)
        raise typer.Exit(1)
    console.print(f"[green]ok[/green]: {len(cust):,} customers, {len(ev):,} events follow the contract")


@app.command("import-transactions")
def import_transactions(
    file: Path = typer.Argument(..., help="Purchase log: CDNOW-style whitespace file or a CSV with a header"),
    out: Path = typer.Option(..., "--out", help="Folder to write customers.parquet and events.parquet to"),
    fmt: str = typer.Option("auto", "--format", help="auto | cdnow | csv"),
    customer_col: str = typer.Option("customer_id", help="CSV column with the customer id"),
    date_col: str = typer.Option("date", help="CSV column with the purchase date"),
    amount_col: str = typer.Option("amount", help="CSV column with the purchase amount"),
    consent: str = typer.Option("", help="Channels every customer consented to and is reachable on, e.g. email,sms"),
    timezone: str = typer.Option("UTC", help="Timezone of the log's dates and of the customers"),
):
    """Convert a transactions-only log into the data contract (registration = first purchase)."""
    from nextbest.importer import ImportError_, import_transactions as run

    try:
        cust, ev = run(
            file,
            out,
            fmt=fmt,
            customer_col=customer_col,
            date_col=date_col,
            amount_col=amount_col,
            consent=tuple(c.strip() for c in consent.split(",") if c.strip()),
            timezone=timezone,
        )
    except ImportError_ as e:
        err.print(f"[red]{e}[/red]")
        raise typer.Exit(1) from None
    console.print(f"wrote {len(cust):,} customers and {len(ev):,} events to {out}")
    if not consent:
        console.print("no consent given (--consent): every channel is closed, decisions will be 'no_action'")


@app.command()
def simulate(
    customers: Optional[int] = typer.Option(None, help="Number of customers (default: world.customers)"),
    days: Optional[int] = typer.Option(None, help="Days simulated (default: world.days)"),
    seed: Optional[int] = typer.Option(None, help="Random seed (default: world.seed)"),
    start: Optional[str] = typer.Option(None, help="First simulated day, YYYY-MM-DD (default: world.start)"),
    out: Optional[Path] = typer.Option(None, "--out", help="Output folder (default: <data_dir>/world)"),
    config_dir: Optional[Path] = ConfigDir,
):
    """Simulate a CRM world with known truth (customers, events, truth for the oracle)."""
    from simulator.world import simulate as run

    s = settings_or_exit(config_dir)
    out = out or s.world_dir
    world = run(
        s,
        customers=customers or s.world.customers,
        days=days or s.world.days,
        seed=s.world.seed if seed is None else seed,
        start=date.fromisoformat(start) if start else s.world.start_date,
        out_dir=out,
        progress=True,
    )
    console.print(f"wrote {len(world.customers):,} customers and {len(world.events):,} events to {out}")


@app.command()
def train(
    models: list[str] = typer.Argument(None, help="Heads to train: activation churn channel send_time (default: all)"),
    tuned: bool = typer.Option(True, help="Use the best parameters of a stored Optuna study when there is one"),
    logged: Optional[Path] = typer.Option(None, "--logged", help="Gate on logged decisions instead: the new "
                                          "versions become champion together only if their doubly robust value on "
                                          "this folder's log beats the champions' (as `nextbest gate`)"),
    config_dir: Optional[Path] = ConfigDir,
):
    """Train the LightGBM heads, log them to MLflow, register them as @challenger and gate promotion (each on its
    held-out metric, or all together on logged decisions with --logged)."""
    from training.train import train_all

    s = settings_or_exit(config_dir)
    if logged is not None and not logged.is_dir():
        fail(f"--logged: {logged} is not a folder of logged decisions")
    results = train_all(s, heads=models or None, use_tuned=tuned, progress=True, oracle=world_oracle(s),
                        hold=logged is not None)
    if logged is None:
        return
    if not any(r.status == "trained" and not r.promoted for r in results):
        console.print("no new version waits as @challenger (first champions, or nothing trained): nothing to gate")
        return
    _policy_gate(s, logged, None, force=False)


@app.command()
def tune(
    model: str = typer.Option(..., "--model", help="activation | churn | channel | send_time | effect"),
    trials: int = typer.Option(20, "--trials", min=1),
    config_dir: Optional[Path] = ConfigDir,
):
    """Tune one head with Optuna (pruning; the study is stored and resumable)."""
    from training.tune import tune as run

    s = settings_or_exit(config_dir)
    run(s, model, trials)


@app.command()
def promote(
    model: str = typer.Option(..., "--model", help="activation | churn | channel | send_time | effect"),
    version: Optional[int] = typer.Option(None, help="Version to promote (default: @challenger)"),
    force: bool = typer.Option(False, help="Promote even if it does not beat the champion"),
    config_dir: Optional[Path] = ConfigDir,
):
    """Make a challenger the champion if it beats the current champion on the same held-out window."""
    from training.registry import promote as run

    s = settings_or_exit(config_dir)
    result = run(s, model, version=version, force=force)
    console.print(result.message)
    if not result.promoted:
        raise typer.Exit(1)


@app.command()
def gate(
    logged: Path = typer.Option(..., "--logged", help="Folder of logged randomised decisions (e.g. from export-log)"),
    challenger_config: Optional[Path] = typer.Option(None, "--challenger-config",
                                                     help="A changed configuration folder to judge as challenger"),
    force: bool = typer.Option(False, help="Promote even if the challenger does not win"),
    config_dir: Optional[Path] = ConfigDir,
):
    """Make the @challenger models (and/or a challenger configuration) champion only if their doubly robust value
    on logged decisions beats the champion's by training.policy_margin, the interval's lower bound above it."""
    s = settings_or_exit(config_dir)
    other = settings_or_exit(challenger_config) if challenger_config is not None else None
    _policy_gate(s, logged, other, force)


def _policy_gate(s, logged: Path, other, force: bool) -> None:
    """Run the policy gate and say its verdict; exit 1 when the challenger stays challenger."""
    from analysis.gate import policy_gate
    from nextbest.contract import ContractError

    try:
        r = policy_gate(s, logged, other, force=force, progress=lambda m: console.print(f"[dim]{m}[/dim]"))
    except ContractError as e:
        fail(e)
    models = ", ".join(f"{h} v{v['challenger']}" for h, v in r["changes"].items()) or "the configuration"
    console.print(f"{'promoted' if r['promoted'] else 'stays challenger'} ({models}): {r['reason']}", highlight=False)
    if not r["promoted"]:
        raise typer.Exit(1)


@app.command()
def models(config_dir: Optional[Path] = ConfigDir):
    """List registered models: versions, aliases and metrics side by side."""
    from training.registry import models_table

    s = settings_or_exit(config_dir)
    console.print(models_table(s))


@app.command()
def serve(
    port: Optional[int] = typer.Option(None, help="Port (default: serving.port)"),
    config_dir: Optional[Path] = ConfigDir,
):
    """Serve POST /next_action and POST /feedback with BentoML (loads the @champion models once)."""
    from serving.run import CannotServe, PortInUse, serve as run

    s = settings_or_exit(config_dir)
    try:
        code = run(s, port=port)
    except (PortInUse, CannotServe) as e:
        fail(e)
    raise typer.Exit(code)


@app.command()
def score(
    as_of: Optional[str] = typer.Option(None, "--as-of", help="Decision time, ISO-8601 (default: the data's end)"),
    out: Path = typer.Option(..., "--out", help="Output file (.parquet or .csv)"),
    ids: Optional[Path] = typer.Option(None, "--ids", help="File with one customer id per line (default: everyone)"),
    config_dir: Optional[Path] = ConfigDir,
):
    """Batch: decide for the whole base from historical features, with the same policy as online."""
    from serving.batch import score as run

    s = settings_or_exit(config_dir)
    run(s, as_of=as_of, out=out, ids=ids, progress=True)


@app.command("export-log")
def export_log(
    out: Path = typer.Option(..., "--out", help="Folder to write customers, events and assignments to"),
    log: Optional[Path] = typer.Option(None, "--log", help="Decision log (default: <data_dir>/serving/history.db)"),
    merge: bool = typer.Option(False, "--merge", help="Also write the data folder's own events and assignments, "
                                                      "so OUT is a complete data folder for the next retrain"),
    config_dir: Optional[Path] = ConfigDir,
):
    """The decision log and its feedback as the contract's assignments and events (validated), so the next
    retrain learns from what the product itself did."""
    from nextbest.contract import ContractError
    from serving.export import export_log as run
    from serving.history import HistoryUnavailable

    s = settings_or_exit(config_dir)
    try:
        r = run(s, out, log_path=log, merge=merge)
    except (ContractError, HistoryUnavailable) as e:
        fail(e)
    console.print(f"{r['assignments']:,} assignments ({r['controls']:,} no_action, {r['not_randomised']:,} without a "
                  f"propensity) and {r['feedback_events']:,} feedback events ({r['purchases']:,} purchases) written "
                  f"to {r['out']}; left out: {r['unknown_customers']:,} decisions for customers the data folder does "
                  f"not know, {r['before_registration']:,} dated before registration")


@app.command()
def shadow(
    log: Optional[Path] = typer.Option(None, "--log", help="Decision log (default: <data_dir>/serving/history.db)"),
    config_dir: Optional[Path] = ConfigDir,
):
    """How the @challenger decided in shadow on live requests (serving.shadow), beside the champion."""
    from rich.table import Table

    from analysis.shadow import shadow_summary
    from serving.history import HistoryUnavailable

    s = settings_or_exit(config_dir)
    try:
        r = shadow_summary(log or s.serving_dir / "history.db")
    except HistoryUnavailable as e:
        fail(e)
    if not r["compared"]:
        console.print(f"no shadow decisions to compare ({r['shadowed']:,} logged): set serving.shadow: true with a "
                      "@challenger in the registry and serve")
        return
    table = Table(title=f"{r['compared']:,} live decisions shadowed ({r['first']} .. {r['last']})")
    for h in ("action", "champion", "challenger"):
        table.add_column(h, justify="left" if h == "action" else "right")
    for a, c in r["actions"].items():
        table.add_row(a, f"{c['champion']:,}", f"{c['challenger']:,}")
    console.print(table)
    console.print(f"same option {r['agreement']:.1%}; send rate champion {r['send_rate']['champion']:.1%}, "
                  f"challenger {r['send_rate']['challenger']:.1%}; champion {r['champion']}, "
                  f"challenger {r['challenger']}", highlight=False)


@app.command()
def report(
    out: Optional[Path] = typer.Option(None, "--out", help="HTML file (default: <reports_dir>/report.html)"),
    config_dir: Optional[Path] = ConfigDir,
):
    """Write the marketers' HTML report (self-contained) and log it to MLflow."""
    from analysis.report import write_report

    s = settings_or_exit(config_dir)
    path = write_report(s, out=out)
    console.print(f"report: {path}")


@app.command()
def evaluate(
    seeds: int = typer.Option(0, "--seeds", min=0, help="Evaluate on this many fresh simulated worlds (each built and "
                                                         "learned from scratch) instead of the data folder's world"),
    customers: Optional[int] = typer.Option(None, "--customers", min=10,
                                            help="Customers per fresh world / sampled from the data folder's world"),
    logged: Optional[Path] = typer.Option(None, "--logged", help="Judge the policies off-policy on this folder's "
                                                                  "randomised assignments and events (e.g. from "
                                                                  "export-log --merge)"),
    reuse: bool = typer.Option(False, "--reuse", help="With --seeds: evaluate again the worlds already built (same "
                                                      "seed, customers, days and start) instead of rebuilding them"),
    start: Optional[str] = typer.Option(None, help="With --seeds: first day of every fresh world, YYYY-MM-DD "
                                                   "(default: world.start; `auto` ends the worlds today)"),
    config_dir: Optional[Path] = ConfigDir,
):
    """What the decisions add against doing nothing, on a simulated world's causal truth, beside the oracle,
    the response-ranked policy, the calendar, random and no action (writes docs/evaluation.*); with --logged,
    estimated on logged decisions instead (IPS, self-normalised IPS, doubly robust)."""
    from rich.table import Table

    from analysis.evaluation import evaluate as run
    from analysis.evaluation.document import HEADER, rows

    s = settings_or_exit(config_dir)
    if logged is not None:
        _evaluate_logged(s, logged)
        return
    if start is not None:
        try:
            first = "auto" if start == "auto" else date.fromisoformat(start)
        except ValueError:
            raise typer.BadParameter(f"{start!r} is not a date (YYYY-MM-DD) or auto", param_hint="--start")
        s = s.model_copy(update={"world": s.world.model_copy(update={"start": first})})
    doc = run(s, seeds=seeds, customers=customers, progress=lambda m: console.print(f"[dim]{m}[/dim]"), reuse=reuse)
    table = Table(title="true incremental value of one decision per customer")
    for h in HEADER:
        table.add_column(h, justify="left" if h == "policy" else "right")
    for r in rows(doc):
        table.add_row(*r)
    console.print(table)
    t = doc["targets"]
    console.print(f"nextbest reaches {t['share_of_oracle']:.0%} of the oracle policy's value "
                  f"({'met' if t['share_of_oracle_met'] else 'target 90% not met'}); written {doc['paths']['md']}")


@app.command("simulate-loop")
def simulate_loop(
    days: int = typer.Option(90, "--days", min=1, help="Days the loop runs from day 0"),
    customers: int = typer.Option(10_000, "--customers", min=200, help="Customers in the simulated world"),
    legacy_days: int = typer.Option(365, "--legacy-days", min=60,
                                    help="Days of the legacy calendar before day 0 (the day-0 models learn from them)"),
    retrain_every: int = typer.Option(7, "--retrain-every", min=1, help="Days between two retrains of the effect "
                                                                         "model of the learning arm"),
    seed: Optional[int] = typer.Option(None, help="Random seed (default: world.seed)"),
    start: Optional[str] = typer.Option(None, help="First legacy day, YYYY-MM-DD (default: world.start)"),
    out: Optional[Path] = typer.Option(None, "--out", help="Folder of loop.{md,png,json} (default: docs/)"),
    config_dir: Optional[Path] = ConfigDir,
):
    """The learning loop day by day on a causal world: nextbest learning (weekly retrains through the gate),
    nextbest frozen at day 0, the oracle policy, the legacy calendar and no action live the same future; one
    chart per measure over time (writes docs/loop.*)."""
    from rich.table import Table

    from analysis.loop.document import header, rows
    from analysis.loop.run import simulate_loop as run, write

    s = settings_or_exit(config_dir)
    if seed is not None:
        s = s.model_copy(update={"world": s.world.model_copy(update={"seed": seed})})
    doc = run(s, days=days, customers=customers, legacy_days=legacy_days, retrain_every=retrain_every,
              start=date.fromisoformat(start) if start else None,
              progress=lambda m: console.print(f"[dim]{m}[/dim]"))
    paths = write(doc, out or s.root / "docs")
    table = Table(title=f"the learning loop over {days} days ({customers:,} customers)")
    for h in header(doc):
        table.add_column(h, justify="left" if h == "policy" else "right")
    for r in rows(doc):
        table.add_row(*r)
    console.print(table)
    console.print(f"written {paths['md']}, {paths['png']}")


@app.command("check-estimator")
def check_estimator(
    repetitions: int = typer.Option(20, "--repetitions", min=1, help="Independent futures of the world, each "
                                                                      "logging its own decisions"),
    customers: int = typer.Option(6000, "--customers", min=200, help="Customers in the simulated world"),
    legacy_days: int = typer.Option(150, "--legacy-days", min=60, help="Days of the legacy calendar before day 0"),
    log_days: int = typer.Option(14, "--log-days", min=1, help="Days of logged decisions per repetition"),
    exploration: float = typer.Option(0.2, "--exploration", min=0.01, max=1.0,
                                      help="Share of the logged decisions drawn at random among the eligible options"),
    out: Optional[Path] = typer.Option(None, "--out", help="Folder of estimator.{md,json} (default: docs/)"),
    config_dir: Optional[Path] = ConfigDir,
):
    """Is the off-policy estimate right? On logs of a simulated world, each candidate's doubly robust estimate
    (evaluate --logged) beside its true value: error and interval coverage over the repetitions."""
    from analysis.loop.estimator import check_estimator as run, markdown, write

    s = settings_or_exit(config_dir)
    doc = run(s, repetitions=repetitions, customers=customers, legacy_days=legacy_days, log_days=log_days,
              exploration=exploration, progress=lambda m: console.print(f"[dim]{m}[/dim]"))
    paths = write(doc, out or s.root / "docs")
    console.print(markdown(doc).split("\n\n", 2)[2])
    console.print(f"written {paths['md']}")


def _evaluate_logged(s, directory: Path) -> None:
    import json

    from rich.table import Table

    from analysis.evaluation.logged import evaluate_logged
    from analysis.ope import ESTIMATORS
    from nextbest.contract import ContractError

    try:
        doc = evaluate_logged(s, directory, progress=lambda m: console.print(f"[dim]{m}[/dim]"))
    except ContractError as e:
        fail(e)
    names = {"ips": "IPS", "snips": "self-normalised IPS", "dr": "doubly robust"}
    table = Table(title=f"value per 1,000 decisions against doing nothing, estimated on {doc['decisions']:,} logged "
                        f"decisions ({doc['from'][:10]} .. {doc['to'][:10]}), 95% bootstrap intervals")
    for h in ["policy", *(names[e] for e in ESTIMATORS), "effective sample", "sends / decision", "no support"]:
        table.add_column(h, justify="left" if h == "policy" else "right")
    k = lambda x: "-" if x is None or x != x else f"{1000 * x:,.1f}"  # noqa: E731
    for p in doc["policies"].values():
        table.add_row(p["label"], *(f"{k(p[e]['value'])} [{k(p[e]['low'])}, {k(p[e]['high'])}]" for e in ESTIMATORS),
                      f"{p['ess']:,.0f}", f"{p['send_rate']:.2f}", f"{p['unsupported']:,}")
    console.print(table)
    for p in doc["policies"].values():
        for w in p["warnings"]:
            err.print(f"[yellow]{p['label']}: {w}[/yellow]", highlight=False)
    out = s.data_dir / "evaluation" / "logged.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(doc, indent=2, default=str) + "\n")
    console.print(f"written {out}")


@app.command()
def demo(
    customers: Optional[int] = typer.Option(None, help="Customers in the simulated world (default: world.customers)"),
    serve_after: bool = typer.Option(True, "--serve/--no-serve", help="Start the service at the end"),
    config_dir: Optional[Path] = ConfigDir,
):
    """The whole main job on the embedded default: simulate, features, train, report, serve."""
    from nextbest.demo import run_demo

    s = settings_or_exit(config_dir)
    run_demo(s, customers=customers, serve_after=serve_after)


# --------------------------------------------------------------------------- nextbest features ...


@features_app.command("build")
def features_build(
    config_dir: Optional[Path] = ConfigDir,
    world_dir: Optional[Path] = typer.Option(None, "--world-dir", help="input data (default: <data_dir>/world)"),
    progress: bool = typer.Option(True, "--progress/--quiet"),
) -> None:
    """Compute the point-in-time feature snapshots from the world and write them as Parquet."""
    from features import pipeline
    from nextbest.contract import ContractError

    s = settings_or_exit(config_dir)
    try:
        summary = pipeline.build(s, world_dir=world_dir, progress=progress)
    except (ContractError, FileNotFoundError) as e:
        fail(e)
    _show("feature build", {
        "customers": f"{summary['customers']:,}",
        "events": f"{summary['events']:,}",
        "snapshots": f"{summary['snapshots']} (every {s.features.cadence_days} days, last at {summary['data_end']})",
        "rows per view": f"{summary['rows']:,} in {summary['parts']} parts",
        "engine": summary["engine"] + (f" ({s.engine.address or f'local cluster of {s.engine.workers} processes'})"
                                       if summary["engine"] == "dask" else ""),
        "features": summary["n_features"],
        "written to": summary["features_dir"],
        "seconds": summary["seconds"]["total"],
    })


@features_app.command("apply")
def features_apply(config_dir: Optional[Path] = ConfigDir) -> None:
    """Register the feature repository (entity, views, on-demand context, feature service) in Feast."""
    from features import store

    s = settings_or_exit(config_dir)
    try:
        summary = store.apply(s)
    except store.CatalogueMismatch as e:
        fail(e)
    _show("feast apply", {
        "registry": summary["registry"],
        "online store": summary["online_store"],
        "feature service": f"{summary['feature_service']} ({summary['n_features']} features)",
        "feature views": ", ".join(summary["feature_views"]),
        "on-demand views": ", ".join(summary["on_demand_feature_views"]),
    })


@features_app.command("materialize")
def features_materialize(
    config_dir: Optional[Path] = ConfigDir,
    plain: bool = typer.Option(False, "--plain", help="Feast's standard materialize of the scalar views (slow baseline)"),
    progress: bool = typer.Option(False, "--progress"),
) -> None:
    """Write every customer's latest features to the online store."""
    from features import store

    s = settings_or_exit(config_dir)
    try:
        stats = store.materialize(s, progress=progress, plain=plain)
    except (FileNotFoundError, RuntimeError) as e:
        fail(e)
    _show(f"materialize ({stats['mode']})", {
        "online store": stats["online_store"],
        "customers": f"{stats['customers']:,}",
        "features": stats["n_features"],
        "seconds": stats["seconds"],
        "customers / s": f"{stats['customers_per_second']:,}",
        "real-time customers re-applied": stats["live_refreshed"],
    })


def main() -> None:  # pragma: no cover - console entry point
    app()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
