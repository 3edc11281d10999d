"""`make demo`: the whole main job on the embedded default, stage by stage."""

from __future__ import annotations

import json
import time
from contextlib import contextmanager

from rich.console import Console
from rich.rule import Rule

from nextbest.settings import Settings

console = Console()


@contextmanager
def stage(name: str):
    console.print(Rule(f"[bold]{name}"))
    t0 = time.perf_counter()
    yield
    console.print(f"[dim]{name}: {time.perf_counter() - t0:.1f}s[/dim]")


def _world_is_current(settings: Settings, customers: int) -> bool:
    meta = settings.world_dir / "world.json"
    if not meta.exists():
        return False
    try:
        m = json.loads(meta.read_text())
    except ValueError:
        return False
    w = settings.world
    return (m.get("customers"), m.get("days"), m.get("seed"), str(m.get("start"))) == (
        customers, w.days, w.seed, str(w.start_date))


def run_demo(settings: Settings, customers: int | None = None, serve_after: bool = True) -> dict:
    from analysis.evaluation import evaluate
    from analysis.report import write_report
    from features import pipeline, store
    from nextbest.cli import world_oracle
    from serving.batch import score
    from simulator.world import simulate
    from training.train import train_all

    customers = customers or settings.world.customers
    if serve_after:
        from serving.run import port_free

        if not port_free(settings.serving.host, settings.serving.port):  # say so now, not after the pipeline
            raise SystemExit(f"serving.port: {settings.serving.host}:{settings.serving.port} is already in use - "
                             "stop the other server, set NEXTBEST__SERVING__PORT, or run `nextbest demo --no-serve`")
    out: dict = {}
    t_start = time.perf_counter()
    with stage(f"1/7 simulate a world of {customers:,} customers over {settings.world.days} days"):
        if _world_is_current(settings, customers):
            console.print(f"world already simulated with these parameters: {settings.world_dir}")
        else:
            simulate(settings, customers=customers, days=settings.world.days, seed=settings.world.seed,
                     start=settings.world.start_date, out_dir=settings.world_dir, progress=True)
    with stage("2/7 build point-in-time features"):
        out["features"] = pipeline.build(settings, progress=True)
    with stage("3/7 register the feature repository and materialise the online store"):
        store.apply(settings)
        out["materialize"] = store.materialize(settings, progress=True)
    with stage("4/7 train, track and gate the four heads and the effect model"):
        out["train"] = train_all(settings, progress=True, oracle=world_oracle(settings))
    with stage("5/7 score the whole base (batch, same policy as online)"):
        scores_path = settings.data_dir / "scores" / "latest.parquet"
        out["score"] = score(settings, as_of=None, out=scores_path, ids=None, progress=True)
    with stage("6/7 evaluate the decisions on the world's causal truth"):
        out["evaluate"] = evaluate(settings, out_dir=settings.data_dir / "evaluation",
                                   progress=lambda m: console.print(f"[dim]{m}[/dim]"))
        t = out["evaluate"]["targets"]
        console.print(f"nextbest adds {out['evaluate']['policies']['nextbest']['per_1000']:,.1f} per 1,000 customers "
                      f"against doing nothing: {t['share_of_oracle']:.0%} of the oracle policy's value")
    with stage("7/7 write the marketers' report"):
        report = write_report(settings)
        out["report"] = report
    console.print(Rule("[bold green]pipeline done"))
    console.print(f"pipeline time: {time.perf_counter() - t_start:.0f}s")
    console.print(f"[bold]report:[/bold] {report}")
    s = settings.serving
    console.print(
        "[bold]try it[/bold] once the service is up:\n"
        f"  curl -s -X POST http://{s.host}:{s.port}/next_action -H 'content-type: application/json' \\\n"
        "       -d '{\"customers\": [{\"customer_id\": \"C0000001\"}]}'"
    )
    if serve_after:
        from serving.run import serve

        serve(settings)
    return out
