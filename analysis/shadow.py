"""`nextbest shadow`: how the @challenger would have decided on live requests, beside what the champion did.

The service logs the challenger's would-be decisions when ``serving.shadow`` is on (``serving/engine.py``).
Compared here on the decisions that were the champion's own choice (not a control-group holdout and not an
exploration draw): how often both pick the same option, and how each spreads its sends over the actions.
"""

from __future__ import annotations

import json
from pathlib import Path

from nextbest.vocabulary import NO_ACTION
from serving.history import ContactHistory


def shadow_summary(log_path: Path | str) -> dict:
    """Counts from the decision log at `log_path`: shadowed decisions, agreement and the actions of each side."""
    history = ContactHistory(log_path, create=False)
    try:
        d = history.shadow_frame()
    finally:
        history.close()
    if d.empty:
        return {"shadowed": 0, "compared": 0}
    own = d[(d["live_control_group"] == 0) & (d["live_exploration"].fillna(0) == 0)]
    same = (own["action"] == own["live_action"]) & (own["channel"].fillna("") == own["live_channel"].fillna(""))
    actions = sorted(set(own["action"]) | set(own["live_action"]), key=lambda a: (a == NO_ACTION, a))
    return {
        "shadowed": int(len(d)), "compared": int(len(own)),
        "agreement": float(same.mean()) if len(own) else None,
        "champion": json.loads(own["live_model_versions"].iloc[-1]) if len(own) else {},
        "challenger": json.loads(own["model_versions"].iloc[-1]) if len(own) else {},
        "actions": {a: {"champion": int((own["live_action"] == a).sum()), "challenger": int((own["action"] == a).sum())}
                    for a in actions},
        "send_rate": {"champion": float((own["live_action"] != NO_ACTION).mean()) if len(own) else None,
                      "challenger": float((own["action"] != NO_ACTION).mean()) if len(own) else None},
        "first": str(d["decided_at"].min()), "last": str(d["decided_at"].max()),
    }
