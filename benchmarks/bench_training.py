"""Benchmark: the whole pipeline's wall time and peak memory per stage at 20k, 100k, 300k and 1M customers.

For each size, in a scratch folder: simulate the world over 365 days
(``simulator.world.simulate``), build the point-in-time features
(``features.pipeline.build``), register them (``features.store.apply``),
fill the online store (``features.store.materialize``, packed vectors),
train every head into a scratch MLflow (``training.train.train_all``, which
also logs, registers and gates each head) and score the whole base
(``serving.batch.score``). One child process per size; each stage reports its
seconds and the process's peak resident memory while it ran. The table goes
to ``results/training.md``, the time and memory curves against customers to
``results/training.png``.

Sizes whose projected time (from the per-stage rates of the previous size)
exceeds ``--budget-min`` are not run; their row is an estimate and says so.

    .venv/bin/python benchmarks/bench_training.py                  # every size that fits in the budget
    .venv/bin/python benchmarks/bench_training.py --sizes 20000    # quick
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import resource
import shutil
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from _common import SCRATCH, machine, machine_line, md_table, print_table, write_results  # noqa: E402

from nextbest.vocabulary import HEAD_METRIC  # noqa: E402

STAGES = ["simulate", "features_build", "apply", "materialize", "train_load_sources",
          "train_activation", "train_churn", "train_channel", "train_send_time", "train_effect", "train_total",
          "batch_score", "features_build_dask", "batch_score_dask"]
MEMORY_STAGES = ["simulate", "features_build", "apply", "materialize", "train_total", "batch_score"]
PIPELINE = ("features_build", "apply", "materialize", "train_total")  # the target: within 20 min and 10 GB at 1M


def _child(root: str, customers: int, days: int, dask: bool, q) -> None:
    try:
        from _common import build_world

        info = build_world(Path(root), customers, days=days, progress=True, score=True, dask=dask)
        info["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
        q.put(info)
    except BaseException as e:  # report, do not hang the parent
        import traceback

        q.put({"error": f"{type(e).__name__}: {e}", "trace": traceback.format_exc()})


def run_size(root: Path, customers: int, days: int, dask: bool = False) -> dict:
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    t0 = time.perf_counter()
    p = ctx.Process(target=_child, args=(str(root), customers, days, dask, q))
    p.start()
    info = q.get()
    p.join()
    info["wall_s"] = time.perf_counter() - t0
    if "error" in info:
        raise RuntimeError(f"{customers:,} customers: {info['error']}\n{info.get('trace', '')}")
    return info


def estimate(measured: list[dict], customers: int) -> dict:
    """Per-stage projection: a power law through the two largest measured sizes (t ~ N^b, b clipped to
    [0.5, 1.3]), or linear from a single measured size."""
    import math

    prev = measured[-1]
    k = customers / prev["customers"]
    lower = measured[-2] if len(measured) >= 2 else None
    st, exps = {}, {}
    for s, v in prev["stages"].items():
        b = 1.0
        if lower is not None and lower["stages"].get(s, 0) > 0.5 and v > 0.5:
            b = math.log(v / lower["stages"][s]) / math.log(prev["customers"] / lower["customers"])
            b = min(max(b, 0.5), 1.3)
        st[s], exps[s] = v * k ** b, round(b, 2)
    st["train_total"] = sum(v for k_, v in st.items() if k_.startswith("train_") and k_ != "train_total")
    exps.pop("train_total", None)
    return {"customers": customers, "days": prev["days"], "stages": st, "estimate": True,
            "estimated_from": [r["customers"] for r in measured[-2:]], "exponents": exps}


def total(r: dict) -> float:
    st = r["stages"]
    return sum(st.get(s, 0) for s in ("simulate", "features_build", "apply", "materialize", "train_total",
                                      "batch_score"))


def pipeline_total(r: dict, dask: bool = False) -> float:
    """Features + online store + training (the features built on the local Dask cluster with ``dask``)."""
    stages = [("features_build_dask" if dask and s == "features_build" else s) for s in PIPELINE]
    return sum(r["stages"].get(s, 0) for s in stages)


def plot(rows: list[dict], path: Path) -> None:
    """Time and peak memory per stage against customers (log-log, with a linear-growth guide)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    measured = [r for r in rows if not r.get("estimate")]
    if not measured:
        return
    fig, (a, b) = plt.subplots(1, 2, figsize=(12, 4.5))
    n = [r["customers"] for r in measured]
    for stage in MEMORY_STAGES:
        a.plot(n, [r["stages"].get(stage, float("nan")) for r in measured], marker="o", label=stage)
        b.plot(n, [r.get("peak_mb", {}).get(stage, float("nan")) / 1024 for r in measured], marker="o", label=stage)
    a.plot(n, [pipeline_total(r) for r in measured], marker="s", color="black", lw=2, label="features + training")
    for ax in (a, b):
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("customers (365 days)")
        ax.grid(True, which="both", alpha=0.3)
    base = pipeline_total(measured[0])
    a.plot(n, [base * x / n[0] for x in n], ls="--", color="grey", label="linear growth")
    a.axhline(20 * 60, color="red", ls=":", label="target at 1M: 20 min")
    b.axhline(10, color="red", ls=":", label="target at 1M: 10 GB")
    a.set_ylabel("seconds")
    b.set_ylabel("peak resident memory (GB)")
    a.set_title("wall time per stage")
    b.set_title("peak memory per stage")
    a.legend(fontsize=7)
    b.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def markdown(rows: list[dict], info: dict, cmd: str) -> str:
    heads = ["stage"] + [f"{r['customers']:,}{' (estimate)' if r.get('estimate') else ''}" for r in rows]
    body = []
    for s in STAGES:
        body.append([s] + [f"{r['stages'][s]:.1f}" if s in r["stages"] else "" for r in rows])
    body.append(["**total (s)**"] + [f"**{total(r):.0f}**" for r in rows])
    body.append(["total (min)"] + [f"{total(r) / 60:.1f}" for r in rows])
    body.append(["events simulated"] + [f"{r['events']:,}" if r.get("events") else "" for r in rows])
    body.append(["feature rows (snapshots)"] + [f"{r['feature_rows']:,}" if r.get("feature_rows") else "" for r in rows])
    body.append(["**features + online store + training (min)**"] + [f"**{pipeline_total(r) / 60:.1f}**" for r in rows])
    body.append(["the same with the features built on Dask (min)"] + [
        f"{pipeline_total(r, dask=True) / 60:.1f}" if "features_build_dask" in r["stages"] else "" for r in rows])
    for stage in MEMORY_STAGES:
        body.append([f"peak memory, {stage} (MB)"] + [f"{r['peak_mb'][stage]:.0f}" if stage in r.get("peak_mb", {})
                                                       else "" for r in rows])
    body.append(["peak RSS of the run (MB)"] + [str(r.get("peak_rss_mb", "")) for r in rows])
    for head, metric in HEAD_METRIC.items():  # what the models learned at each size (test window)
        vals = [{t["head"]: t for t in r.get("train", [])}.get(head, {}).get("metrics", {}).get(metric) for r in rows]
        body.append([f"test {metric}, {head}"] + [f"{v:.3f}" if v is not None else "" for v in vals])
    body.append(["customers trained on"] + [f"{r['train_customers']:,}" if r.get("train_customers") else ""
                                            for r in rows])
    body.append(["batch scoring: models loaded and compiled (s)"] + [
        f"{r['batch']['load_models_s']:.1f}" if r.get("batch") else "" for r in rows])
    body.append(["batch scoring: customers/s, newest features read + decisions + table written"] + [
        f"{r['customers'] / (r['batch']['total_s'] - r['batch']['load_models_s']):,.0f}" if r.get("batch") else ""
        for r in rows])
    lines = [
        "# Training pipeline wall time",
        "",
        f"Produced by `{cmd}`: in a scratch folder, simulate N customers over 365 days, build the point-in-time "
        "features, register them, fill the online store (packed vectors), train every model - the four LightGBM "
        "heads and the effect model (`training.train.train_all`: datasets, fit, calibration, MLflow logging, "
        "registry, promotion gate) - and score the whole base. "
        "Seconds per stage, one child process per size; peak memory per stage is the process's resident set (with what earlier stages left allocated) "
        "sampled every 50 ms while the stage runs. `batch_score`: `serving.batch.score` of the whole base (models "
        "loaded and compiled, newest features read, decisions, Parquet written).",
        "",
        machine_line(info),
        "",
        *md_table(heads, body),
        "",
        "![time and memory against customers](training.png)",
        "",
        "- `train_<head>`: `HeadResult.seconds` (dataset build with point-in-time feature reads, fit with early "
        "stopping, test metrics, baseline/oracle metrics, MLflow logging and the gate). `train_load_sources`: "
        "reading the world and the snapshot list once for all heads.",
        "- `features_build`: a base of more than `engine.max_partition_customers` customers (50,000) is first split "
        "by customer in one streaming pass, then built a part per core at a time (on threads: the snapshot arithmetic "
        "and the Parquet writes release the interpreter lock), so its memory follows two parts, not the base.",
        "- Training reads a random sample of at most `training.max_customers` customers (200,000; all their rows, "
        "the others never loaded: `customers trained on`) and each head samples at most `training.max_rows` rows, "
        "so past that size the world it reads and the fits stop growing. The build writes the sampled customers' "
        "snapshots in files of their own, so each point-in-time read of a head reads every file's keys but the "
        "features of the sampled customers' files only. `test <metric>`: each model's primary metric on its "
        "held-out time window (the effect model's Qini in currency per customer), to compare across sizes.",
        "- `simulate` runs in a process of its own (its peak is that process's); the pipeline's stages share one.",
        "- `features_build_dask`, `batch_score_dask`: the same build (into a folder of its own) and the same "
        "scoring with `engine.kind: dask` on a local cluster of two worker processes started for the command "
        "(cluster start included; the workers' memory is not in this process's peak). Not in the totals.",
    ]
    est = [r for r in rows if r.get("estimate")]
    for r in est:
        lines.append(
            (f"- {r['customers']:,} customers: **estimate**, not measured - each stage projected with a power law "
             f"through the measured sizes {', '.join(f'{x:,}' for x in r['estimated_from'])} (exponents per stage: "
             f"{', '.join(f'{k} {v}' for k, v in r['exponents'].items())})." if len(r["estimated_from"]) > 1 else
             f"- {r['customers']:,} customers: **estimate**, not measured - every stage scaled linearly from the "
             f"{r['estimated_from'][0]:,} run (an upper bound for the per-head fits, which sample at most "
             "`training.max_rows` rows; a lower bound for nothing).") + " The features build at this size would hold roughly "
            f"{r['customers'] * 48 * 124 * 4 / 2**30:.0f} GiB of snapshot rows (about 48 snapshots per customer x 124 "
            "float32 features); the build writes them part by part, so they are never held whole.")
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs="+", default=[20_000, 100_000, 300_000, 1_000_000])
    ap.add_argument("--days", type=int, default=365)
    ap.add_argument("--budget-min", type=float, default=20.0, help="skip (and estimate) a size projected above this")
    ap.add_argument("--scratch", type=Path, default=SCRATCH / "training")
    ap.add_argument("--keep", action="store_true", help="keep the scratch worlds (bench_batch.py can reuse w<N>)")
    ap.add_argument("--name", default="training")
    ap.add_argument("--dask-max", type=int, default=100_000,
                    help="also time the features build and batch scoring on a local Dask cluster up to this size")
    ap.add_argument("--render-only", action="store_true", help="rewrite results/<name>.md and .png from the .json")
    a = ap.parse_args()
    if a.render_only:
        from _common import RESULTS

        res = json.loads((RESULTS / f"{a.name}.json").read_text())
        measured = [r for r in res["rows"] if not r.get("estimate")]
        res["rows"] = measured + [estimate(measured, r["customers"]) for r in res["rows"] if r.get("estimate")]
        write_results(a.name, markdown(res["rows"], res["machine"], res["command"]), res)
        plot(res["rows"], RESULTS / f"{a.name}.png")
        return
    info = machine()
    rows: list[dict] = []
    for n in sorted(a.sizes):
        prev = rows[-1] if rows else None
        if prev is not None:
            proj = estimate([r for r in rows if not r.get("estimate")], n)
            if total(proj) / 60 > a.budget_min:
                print(f"{n:,} customers: projected {total(proj) / 60:.0f} min > budget {a.budget_min} min; estimating")
                rows.append(proj)
                continue
        root = a.scratch / f"w{n}"
        print(f"== {n:,} customers -> {root}", flush=True)
        r = run_size(root, n, a.days, dask=n <= a.dask_max)
        rows.append(r)
        print(json.dumps({k: v for k, v in r.items() if k != "train"}, default=str, indent=1), flush=True)
        if not a.keep:
            shutil.rmtree(root, ignore_errors=True)
    cmd = "python benchmarks/bench_training.py " + " ".join(sys.argv[1:])
    headers = ["stage"] + [f"{r['customers']:,}{' (est.)' if r.get('estimate') else ''}" for r in rows]
    table = [[s] + [f"{r['stages'].get(s, 0):.1f}" for r in rows] for s in STAGES]
    table.append(["total (s)"] + [f"{total(r):.0f}" for r in rows])
    print_table("training pipeline (seconds)", headers, table)
    md = markdown(rows, info, cmd.strip())
    path = write_results(a.name, md, {"machine": info, "command": cmd.strip(), "rows": rows})
    from _common import RESULTS

    plot(rows, RESULTS / f"{a.name}.png")
    print(f"written: {path}")


if __name__ == "__main__":
    main()
