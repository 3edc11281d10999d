"""Benchmark: batch scoring throughput (decisions per second) and peak memory.

Two measurements, each in its own child process (peak memory = the child's
``resource.getrusage(RUSAGE_SELF).ru_maxrss``):

- ``end-to-end``: ``serving.batch.score`` on a whole world (historical
  feature read through the feature service, champions, policy, Parquet
  output) - on the 100k world left by ``bench_training.py --keep`` when it is
  there, else on a world built here (``--e2e-customers``);
- ``policy + scoring``: ``serving.engine.decide_arrays`` with the champions'
  ``Scorer`` on a feature matrix, in chunks of ``serving.batch.CHUNK`` rows
  like the batch command, then ``Decisions.to_frame``. The matrix is
  **synthetic**: rows resampled with replacement from the world's real
  feature rows at its latest snapshot (read once through the feature service),
  with fresh customer ids, at 100k and 1M rows.

The scoring path is run in four variants, interleaved over ``--repeats``:
compiled trees (lleaves) with ``n_jobs=1`` (the online service) and ``n_jobs=2`` (what batch
scoring uses on 2 cores); LightGBM's booster with ``num_threads=1`` and ``2``.
The variants replace ``Head.predict`` inside the child process only.

    .venv/bin/python benchmarks/bench_batch.py            # 100k and 1M rows, end-to-end at 100k
    .venv/bin/python benchmarks/bench_batch.py --quick    # 20k / 100k rows on the demo world
    .venv/bin/python benchmarks/bench_batch.py --world /tmp/nextbest-bench/online   # any prepared world
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import resource
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from _common import (  # noqa: E402
    SCRATCH, ensure_world, machine, machine_line, md_table, median, print_table, scratch_settings, use_scratch,
    write_results,
)

TARGET = 100_000  # customers per second
# name -> (trees, threads, what is scored: "options" = as shipped, the customers with an option left and the
# channel head on the channels their options may use; "customers" = the same customers on every channel;
# "everyone" = every known customer on every channel)
VARIANTS = {
    "compiled, n_jobs=1 (online)": ("compiled", 1, "options"),
    "compiled, n_jobs=2": ("compiled", 2, "options"),
    "compiled, n_jobs=2, every channel of those customers": ("compiled", 2, "customers"),
    "compiled, n_jobs=2, every customer scored": ("compiled", 2, "everyone"),
    "lightgbm, num_threads=1": ("booster", 1, "options"),
    "lightgbm, num_threads=2": ("booster", 2, "options"),
}


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _patch_predict(kind: str, threads: int) -> None:
    from training import models

    plain = models.Head.predict

    def predict(self, X, n_jobs=1):  # the variant's thread count and trees replace the caller's
        return plain(self, X, threads=threads, use_compiled=kind == "compiled")

    models.Head.predict = predict


# --------------------------------------------------------------------------- children


def _base_matrix(root: str, out: str, q) -> None:
    """The world's real feature rows at its latest snapshot, saved for the scoring children."""
    try:
        import pandas as pd

        from features.store import feature_names, historical_features, snapshot_times
        from serving.batch import _ids

        use_scratch(Path(root))
        s = scratch_settings(Path(root))
        names = feature_names(s)
        t = pd.Timestamp(snapshot_times(s)[-1])
        ids = _ids(s, None)
        feats = historical_features(s, pd.DataFrame({"customer_id": ids, "event_timestamp": t}))
        X = feats.reindex(columns=names).to_numpy(dtype=np.float32)
        found = feats[[n for n in names if not n.startswith("ctx_")]].notna().any(axis=1).to_numpy()
        tz = feats["timezone"].fillna("UTC").to_numpy(dtype=object)
        keep = found
        np.savez(out, X=X[keep], tz=tz[keep].astype(str), names=np.array(names), t=np.array([t.value]))
        q.put({"rows": int(keep.sum()), "customers": int(len(ids))})
    except BaseException as e:
        import traceback

        q.put({"error": f"{type(e).__name__}: {e}", "trace": traceback.format_exc()})


def _widen_scoring(scope: str) -> None:
    """The baselines: the channel head on every channel of the customers with an option left ("customers"), or
    the trees of every known customer on every channel, with or without an option ("everyone")."""
    import serving.engine
    from nextbest.vocabulary import CHANNELS

    shipped = serving.engine.channels_to_score
    if scope == "customers":
        serving.engine.channels_to_score = lambda inputs, policy: np.repeat(
            shipped(inputs, policy).any(axis=1)[:, None], len(CHANNELS), axis=1)
    elif scope == "everyone":
        serving.engine.channels_to_score = lambda inputs, policy: np.repeat(
            inputs.found[:, None], len(CHANNELS), axis=1)


def _scoring(root: str, base: str, rows: int, kind: str, threads: int, scope: str, seed: int, q) -> None:
    try:
        from datetime import datetime, timezone

        from serving.batch import CHUNK
        from serving.engine import decide_arrays
        from serving.policy import compile_policy
        from serving.scoring import Scorer

        use_scratch(Path(root))
        s = scratch_settings(Path(root))
        d = np.load(base, allow_pickle=False)
        names = [str(x) for x in d["names"]]
        index = {n: i for i, n in enumerate(names)}
        scorer = Scorer.from_registry(s, names, compile="now" if kind == "compiled" else "no")
        if kind == "compiled" and not all((scorer.compiled or {}).values()):
            raise RuntimeError(f"compiled trees unavailable: {scorer.compiled}")
        _patch_predict(kind, threads)
        _widen_scoring(scope)
        policy = compile_policy(s)
        rng = np.random.default_rng(seed)
        pick = rng.integers(0, len(d["X"]), rows)
        X_all = d["X"][pick]
        tz_all = d["tz"][pick].astype(object)
        ids_all = np.char.add("B", np.char.zfill(np.arange(rows).astype(str), 8)).astype(object)
        now = datetime.fromtimestamp(int(d["t"][0]) / 1e9, tz=timezone.utc)
        score_s = [0.0]
        inner = scorer.score

        def timed(X, *args):
            t0 = time.perf_counter()
            r = inner(X, *args)
            score_s[0] += time.perf_counter() - t0
            return r

        scorer.score = timed
        t0 = time.perf_counter()
        frame_s = 0.0
        for lo in range(0, rows, CHUNK):
            hi = min(lo + CHUNK, rows)
            X = X_all[lo:hi]
            dec = decide_arrays(policy, scorer, index, ids_all[lo:hi], X, np.ones(hi - lo, bool),
                                tz_all[lo:hi].tolist(), now, request_id="bench:batch")
            t1 = time.perf_counter()
            dec.to_frame()
            frame_s += time.perf_counter() - t1
        total = time.perf_counter() - t0
        q.put({"rows": rows, "total_s": total, "score_s": score_s[0], "policy_s": total - score_s[0] - frame_s,
               "frame_s": frame_s, "per_s": rows / total, "peak_rss_mb": _peak_mb()})
    except BaseException as e:
        import traceback

        q.put({"error": f"{type(e).__name__}: {e}", "trace": traceback.format_exc()})


def _heads(root: str, base: str, rows: int, q) -> None:
    """Seconds per head (compiled trees, n_jobs 1 and 2) on `rows` resampled rows, and each head's tree count."""
    try:
        from serving.scoring import Scorer

        use_scratch(Path(root))
        s = scratch_settings(Path(root))
        d = np.load(base, allow_pickle=False)
        names = [str(x) for x in d["names"]]
        scorer = Scorer.from_registry(s, names, compile="now")
        X = d["X"][np.random.default_rng(0).integers(0, len(d["X"]), rows)]
        out = []
        for head, m in scorer.models.items():
            cols = scorer._cols[head]
            Xh = X[:, cols]
            if head == "channel":  # 5 rows per customer (one per channel) plus the message inputs
                from features.message import MESSAGE_INPUTS

                Xh = np.repeat(Xh, 5, axis=0)
                Xh = np.hstack([Xh, np.zeros((len(Xh), len(MESSAGE_INPUTS)), np.float32)])
            Xh = np.ascontiguousarray(Xh[:, :m.head.booster.num_feature()])  # the trees' own inputs
            r = {"head": head, "trees": m.head.booster.num_trees(), "rows_scored": len(Xh)}
            for j in (1, 2):
                t0 = time.perf_counter()
                m.head.compiled.predict(Xh, n_jobs=j)
                r[f"compiled_{j}_s"] = time.perf_counter() - t0
            t0 = time.perf_counter()
            m.head.booster.predict(Xh, num_threads=1)
            r["lightgbm_1_s"] = time.perf_counter() - t0
            out.append(r)
        q.put({"rows": rows, "heads": out})
    except BaseException as e:
        import traceback

        q.put({"error": f"{type(e).__name__}: {e}", "trace": traceback.format_exc()})


def _e2e(root: str, out: str, q) -> None:
    try:
        from serving.batch import score
        from serving.scoring import Scorer
        from features.store import feature_names

        use_scratch(Path(root))
        s = scratch_settings(Path(root))
        t0 = time.perf_counter()
        scorer = Scorer.from_registry(s, feature_names(s), compile="now")
        load = time.perf_counter() - t0
        st = score(s, None, Path(out), scorer=scorer)
        st["load_models_s"] = load
        st["peak_rss_mb"] = _peak_mb()
        q.put(st)
    except BaseException as e:
        import traceback

        q.put({"error": f"{type(e).__name__}: {e}", "trace": traceback.format_exc()})


def child(target, *args) -> dict:
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    p = ctx.Process(target=target, args=(*args, q))
    p.start()
    r = q.get()
    p.join()
    if "error" in r:
        raise RuntimeError(r["error"] + "\n" + r.get("trace", ""))
    return r


# --------------------------------------------------------------------------- main


def find_world(customers: int) -> Path | None:
    for p in (SCRATCH / "training" / f"w{customers}", SCRATCH / "batch" / f"w{customers}"):
        if (p / "ready.json").exists():
            return p
    return None


def markdown(res: dict, info: dict, cmd: str) -> str:
    lines = [
        "# Batch scoring throughput",
        "",
        f"Produced by `{cmd}`. Target: >= {TARGET:,} customers/s. Each row runs in its own child process; "
        "peak memory is that process's `ru_maxrss`. Timings are medians over the repeats.",
        "",
        machine_line(info),
        "",
    ]
    e = res.get("e2e")
    if e:
        lines += [
            f"## End to end: `serving.batch.score` on a {e['customers']:,}-customer world",
            "",
            *md_table(["customers", "feature read (s)", "policy + scoring + table (s)", "total (s)",
                       "customers/s end to end", "customers/s decide only", "peak RSS (MB)"], [[
                f"{e['customers']:,}", f"{e['feature_read_s']:.1f}", f"{e['decide_s']:.1f}", f"{e['total_s']:.1f}",
                f"{e['customers'] / e['total_s']:,.0f}", f"{e['decisions_per_s']:,}", f"{e['peak_rss_mb']:.0f}"]]),
            "",
            "`total` includes reading the ids, the feature read (each customer's newest snapshot; a point-in-time "
            f"read through `historical_features` with `--as-of`) and writing the Parquet output; loading and compiling the champions "
            f"({e['load_models_s']:.1f} s) is not included.",
            "",
        ]
    rows = []
    for r in res["scoring"]:
        rows.append([f"{r['rows']:,}", r["variant"], f"{r['total_s']:.2f}", f"{r['score_s']:.2f}", f"{r['policy_s']:.2f}",
                     f"{r['frame_s']:.2f}", f"**{r['per_s']:,.0f}**", "yes" if r["per_s"] >= TARGET else "no",
                     f"{r['peak_rss_mb']:.0f}"])
    lines += [
        "## Policy + scoring: `serving.engine.decide_arrays` + `Decisions.to_frame`",
        "",
        f"Synthetic matrix: {res['base']['rows']:,} real feature rows of the {res['base']['customers']:,}-customer "
        "world at its latest snapshot, resampled with replacement to the row count, fresh ids, one decision time.",
        "",
        *md_table(["rows", "trees", "total (s)", "scoring (s)", "policy (s)", "to_frame (s)", "decisions/s",
                   f">= {TARGET // 1000}k/s", "peak RSS (MB)"], rows, "rlrrrrrlr"),
        "",
    ]
    h = res.get("heads")
    if h:
        lines += [
            "",
            f"### Scoring cost per head ({h['rows']:,} customers, one call per head)",
            "",
            *md_table(["head", "trees", "rows scored", "compiled n_jobs=1 (s)", "compiled n_jobs=2 (s)",
                       "lightgbm 1 thread (s)", "share of compiled n_jobs=1"], [
                [x["head"], f"{x['trees']:,}", f"{x['rows_scored']:,}", f"{x['compiled_1_s']:.2f}",
                 f"{x['compiled_2_s']:.2f}", f"{x['lightgbm_1_s']:.2f}",
                 f"{x['compiled_1_s'] / sum(y['compiled_1_s'] for y in h['heads']) * 100:.0f}%"] for x in h["heads"]],
                "lrrrrrr"),
            "",
        ]
    lines += [
        "- `scoring`: `Scorer.score` - activation, churn and send-time heads on every customer with an option left "
        "(`serving.policy.channels_to_score`: known, some eligible action on an open channel), the channel head on "
        "each such customer's channels that an eligible action may use (at the customer's send hour). Two "
        "baselines: `every channel of those customers` asks the channel head about all five channels of the same "
        "customers; `every customer scored` evaluates the trees of every known customer on every channel, with "
        "or without an option.",
        "- `compiled`: lleaves native code (`Head.compiled.predict(X, n_jobs=...)`); `lightgbm`: "
        "`Booster.predict(X, num_threads=...)`. As shipped, `Head.predict` uses compiled trees with one thread online "
        "and all cores for batches of 10,000 rows or more (`Scorer.n_jobs`, set by `serving.batch.score`).",
    ]
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, nargs="+", default=[100_000, 1_000_000])
    ap.add_argument("--e2e-customers", type=int, default=100_000, help="world size of the end-to-end run (0: skip)")
    ap.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--quick", action="store_true", help="20k / 100k rows, end-to-end on the demo world, 1 repeat")
    ap.add_argument("--world", type=Path, help="a scratch world with trained champions (see _common.ensure_world)")
    ap.add_argument("--name", default="batch")
    ap.add_argument("--heads-only", action="store_true",
                    help="only time each head on 100k rows and merge it into the existing results/<name>.json")
    a = ap.parse_args()
    if a.quick:
        a.rows, a.repeats = [20_000, 100_000], 1
    if a.heads_only:
        import json

        from _common import RESULTS

        res = json.loads((RESULTS / f"{a.name}.json").read_text())
        world = a.world or ensure_world(SCRATCH / "online")
        res["heads"] = child(_heads, str(world), str(SCRATCH / "batch-base.npz"), 100_000)
        write_results(a.name, markdown(res, res["machine"], res["command"]), res)
        print(json.dumps(res["heads"], indent=1))
        return
    info = machine()
    res: dict = {"machine": info}
    # the world: the 100k one from bench_training --keep, else the demo copy (quick) or one built here
    world = a.world or (find_world(a.e2e_customers) if a.e2e_customers else None)
    if world is None:
        if a.quick or not a.e2e_customers:
            world = ensure_world(SCRATCH / "online")
        else:
            world = ensure_world(SCRATCH / "batch" / f"w{a.e2e_customers}", customers=a.e2e_customers)
    print(f"world: {world}", flush=True)
    if a.e2e_customers:
        e = child(_e2e, str(world), str(SCRATCH / "batch-scores.parquet"))
        print({k: v for k, v in e.items() if k != "actions"}, flush=True)
        res["e2e"] = e
    base = SCRATCH / "batch-base.npz"
    res["base"] = child(_base_matrix, str(world), str(base))
    raw: dict = {}
    for rep in range(a.repeats):
        for rows in a.rows:
            for v in (a.variants if rep % 2 == 0 else a.variants[::-1]):
                kind, threads, scope = VARIANTS[v]
                r = child(_scoring, str(world), str(base), rows, kind, threads, scope, rep)
                raw.setdefault((rows, v), []).append(r)
                print(f"rep {rep + 1} {rows:>9,} {v:<44} {r['total_s']:.2f}s  {r['per_s']:,.0f}/s  "
                      f"(scoring {r['score_s']:.2f}s, policy {r['policy_s']:.2f}s, frame {r['frame_s']:.2f}s) "
                      f"peak {r['peak_rss_mb']:.0f} MB", flush=True)
    res["scoring"] = [
        {"rows": rows, "variant": v, **{k: median([x[k] for x in xs]) for k in xs[0] if k != "rows"}, "runs": xs}
        for (rows, v), xs in raw.items()
    ]
    cmd = ("python benchmarks/bench_batch.py " + " ".join(sys.argv[1:])).strip()
    res["command"] = cmd
    print_table("batch scoring (median)", ["rows", "variant", "total s", "scoring s", "policy s", "decisions/s", "peak MB"],
                [[f"{r['rows']:,}", r["variant"], f"{r['total_s']:.2f}", f"{r['score_s']:.2f}", f"{r['policy_s']:.2f}",
                  f"{r['per_s']:,.0f}", f"{r['peak_rss_mb']:.0f}"] for r in res["scoring"]])
    path = write_results(a.name, markdown(res, info, cmd), res)
    print(f"written: {path}")


if __name__ == "__main__":
    main()
