"""Run the benchmarks in sequence and write ``benchmarks/results/summary.md``.

    .venv/bin/python benchmarks/run_all.py                   # online, batch, training at full sizes
    .venv/bin/python benchmarks/run_all.py --quick           # small sizes (a few minutes)
    .venv/bin/python benchmarks/run_all.py --only online batch
    .venv/bin/python benchmarks/run_all.py --summary-only    # rebuild summary.md from the existing results

Order: training first (it leaves the 100k world that the batch end-to-end run
reuses), then online, then batch. Each benchmark is a child process; a failing
one is reported and the others still run. The summary reads each
benchmark's ``results/<name>.json``.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import RESULTS, ROOT, machine, machine_line  # noqa: E402
from bench_online import TARGET_P50_100_MS, TARGET_P99_1_8_MS, TARGET_P99_1_MS, TARGET_RPS_1_8  # noqa: E402

ORDER = ("training", "online", "batch")


def commands(quick: bool) -> dict[str, list[str]]:
    py = sys.executable
    b = ROOT / "benchmarks"
    if quick:
        return {
            "training": [py, str(b / "bench_training.py"), "--sizes", "20000", "--keep"],
            "online": [py, str(b / "bench_online.py"), "--quick"],
            "batch": [py, str(b / "bench_batch.py"), "--quick"],
        }
    return {
        "training": [py, str(b / "bench_training.py"), "--sizes", "20000", "100000", "1000000", "--keep"],
        "online": [py, str(b / "bench_online.py")],
        "batch": [py, str(b / "bench_batch.py")],
    }


def _load(name: str) -> dict | None:
    p = RESULTS / f"{name}.json"
    return json.loads(p.read_text()) if p.exists() else None


def summary(ran: dict[str, int]) -> str:
    rows = []
    on, ba, tr = _load("online"), _load("batch"), _load("training")
    if on:
        t = on["targets"]
        sc = {(s["customers"], s["clients"]): s for s in on["scenarios"]}
        rows.append(["online: 1 customer, 1 client, p99", f"{t['p99_1_ms']:.2f} ms", f"<= {TARGET_P99_1_MS:g} ms",
                     "yes" if t["p99_1_ok"] else "**no**", f"`{on['command']}`"])
        rows.append(["online: 100 customers, 1 client, p50", f"{t['p50_100_ms']:.2f} ms", f"<= {TARGET_P50_100_MS:g} ms",
                     "yes" if t["p50_100_ok"] else "**no**", f"`{on['command']}`"])
        for key, label in (((1, 8), "online: 1 customer, 8 clients"), ((100, 8), "online: 100 customers, 8 clients")):
            if key in sc:
                nb = sc[key]["nextbest"]
                target, met = "", ""
                if key == (1, 8):
                    target = f">= {TARGET_RPS_1_8:,.0f} req/s at p99 <= {TARGET_P99_1_8_MS:g} ms"
                    met = "yes" if t["rps_1_8_ok"] else "**no**"
                rows.append([label, f"{nb['rps']:,.0f} req/s, p50 {nb['p50_ms']:.1f} ms, p99 {nb['p99_ms']:.1f} ms",
                             target, met, f"`{on['command']}`"])
        for key in ((1, 1), (100, 1)):
            if key in sc:
                nb, nv = sc[key]["nextbest"], sc[key]["naive"]
                rows.append([f"online vs naive, {key[0]} customer(s), p50", f"{nv['p50_ms'] / nb['p50_ms']:.0f}x faster "
                             f"({nb['p50_ms']:.1f} vs {nv['p50_ms']:.1f} ms)", "", "", f"`{on['command']}`"])
        m = on["memory"]["nextbest"]
        rows.append(["online: peak RSS under load (service process tree)", f"{m['peak_tree_mb']:.0f} MB", "", "",
                     f"`{on['command']}`"])
    if ba:
        e = ba.get("e2e")
        if e:
            rate = e["customers"] / e["total_s"]
            rows.append([f"batch end to end (`serving.batch.score`), {e['customers']:,} customers",
                         f"{rate:,.0f} customers/s (decide only {e['decisions_per_s']:,}/s)", ">= 100k/s",
                         "yes" if rate >= 100_000 else "**no**", f"`{ba['command']}`"])
        for r in ba["scoring"]:
            if r["variant"].startswith("compiled, n_jobs=1") or r["variant"].startswith("compiled, n_jobs=2"):
                rows.append([f"batch policy + scoring, {r['rows']:,} rows, {r['variant']}", f"{r['per_s']:,.0f} decisions/s, "
                             f"peak {r['peak_rss_mb']:.0f} MB", ">= 100k/s", "yes" if r["per_s"] >= 100_000 else "**no**",
                             f"`{ba['command']}`"])
    if tr:
        for r in tr["rows"]:
            st = r["stages"]
            tot = sum(st.get(s, 0) for s in ("simulate", "features_build", "apply", "materialize", "train_total"))
            rows.append([f"training pipeline, {r['customers']:,} customers{' (estimate)' if r.get('estimate') else ''}",
                         f"{tot / 60:.1f} min (train {st.get('train_total', 0) / 60:.1f} min)", "", "",
                         f"`{tr['command']}`"])
    info = machine()
    lines = [
        "# Benchmark summary",
        "",
        machine_line(info),
        "",
        "| measure | result | target | met | reproduce (from the project root, with `.venv/bin/python`) |",
        "|---|---|---|---|---|",
        *["| " + " | ".join(r) + " |" for r in rows],
        "",
        "Each result file records the machine's load average during its run: a load above the 2 cores means the "
        "run shared the CPUs and its absolute times are inflated (compared variants are interleaved within a run, "
        "so their ratios hold better). Details: `online.md`, `batch.md`, `training.md` beside this file; `benchmarks/README.md` describes each "
        "script. All: `python benchmarks/run_all.py` (or `--quick`).",
    ]
    failed = [k for k, v in ran.items() if v != 0]
    if failed:
        lines += ["", f"Failed in this run (older results shown, if any): {', '.join(failed)}."]
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", nargs="+", choices=ORDER, default=list(ORDER))
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--summary-only", action="store_true")
    a = ap.parse_args()
    ran: dict[str, int] = {}
    if not a.summary_only:
        cmds = commands(a.quick)
        for name in ORDER:
            if name in a.only:
                print(f"\n=== {name}: {' '.join(cmds[name])}", flush=True)
                ran[name] = subprocess.call(cmds[name], cwd=ROOT)
    out = RESULTS / "summary.md"
    RESULTS.mkdir(parents=True, exist_ok=True)
    out.write_text(summary(ran))
    print(out.read_text())
    sys.exit(1 if any(ran.values()) else 0)


if __name__ == "__main__":
    main()
