"""How well the effect model knows what each action changes, at the decision time, against the world's truth.

For every customer and every option the rules leave open (eligible action, open channel, at the customer's
chosen send hour), the effect model's increment beside the true one (both in currency before the send's cost):
per action and channel their means and correlation, and per customer whether the model's best option is the
truly best one and how much of the best option's true increment it keeps.
"""

from __future__ import annotations

import numpy as np

from nextbest.vocabulary import CHANNELS


def effect_accuracy(pol, decisions, effects, truth, candidates: np.ndarray, open_: np.ndarray) -> dict:
    """``decisions``: nextbest's (scores and send hours); ``effects`` / ``truth``: increments of options
    (``serving.policy.rules.Increments``) - the model's and the world's; ``candidates`` [n, A] eligible actions,
    ``open_`` [n, C] open channels."""
    n, A, C = len(decisions.customer_ids), len(pol.actions), len(CHANNELS)
    model = np.full((n, A, C), np.nan)
    true = np.full((n, A, C), np.nan)
    hour = decisions.best_hours[:, 0]
    options = []
    for a, name in enumerate(pol.actions):
        for c, ch in enumerate(CHANNELS):
            rows = np.flatnonzero(candidates[:, a] & open_[:, c]) if pol.allowed[a, c] else np.array([], int)
            if not len(rows):
                continue
            args = (rows, name, c, decisions.p_response[rows, c], decisions.p_activation[rows],
                    decisions.p_churn[rows], hour[rows])
            m, t = np.asarray(effects(*args), float), np.asarray(truth(*args), float)
            ok = np.isfinite(m) & np.isfinite(t)
            model[rows[ok], a, c], true[rows[ok], a, c] = m[ok], t[ok]
            if ok.sum() >= 2:
                corr = float(np.corrcoef(m[ok], t[ok])[0, 1]) if m[ok].std() > 0 and t[ok].std() > 0 else None
                options.append({"action": name, "channel": ch, "customers": int(ok.sum()),
                                "model": float(m[ok].mean()), "true": float(t[ok].mean()), "corr": corr})
    flat_m, flat_t = model.reshape(n, -1), true.reshape(n, -1)
    has = np.isfinite(flat_t).any(axis=1)
    if not has.any():
        return {"options": options, "customers": 0}
    rows = np.flatnonzero(has)
    pick_m = np.nanargmax(np.where(np.isfinite(flat_m[rows]), flat_m[rows], -np.inf), axis=1)
    pick_t = np.nanargmax(np.where(np.isfinite(flat_t[rows]), flat_t[rows], -np.inf), axis=1)
    got, best = flat_t[rows, pick_m], flat_t[rows, pick_t]
    return {"options": options, "customers": int(len(rows)), "same_best_option": float((pick_m == pick_t).mean()),
            "best_option_value_kept": float(got.sum() / best.sum()) if best.sum() > 0 else None}


def by_action(options: list[dict]) -> dict[str, dict]:
    """The options' figures pooled per action (weighted by customers)."""
    out: dict[str, dict] = {}
    for o in options:
        e = out.setdefault(o["action"], {"customers": 0, "model": 0.0, "true": 0.0})
        e["customers"] += o["customers"]
        e["model"] += o["model"] * o["customers"]
        e["true"] += o["true"] * o["customers"]
    for e in out.values():
        e["model"] /= e["customers"]
        e["true"] /= e["customers"]
    return out
