"""Where nextbest's decisions lose value against the oracle policy's, customer by customer.

The oracle policy reads the same rules and inputs and chooses by the true increments, so every customer's
shortfall ``oracle value - nextbest value`` falls into one of a few kinds: the same action and channel at
another send hour (the send-time head), the same action on another channel (the channel head and the
effect model's channel terms), another action (the effect model's ranking of actions), a send where the
oracle sends nothing (an increment learned where there is none, or less than the send's cost) and nothing
where the oracle sends (an increment missed). The kinds add up to the whole gap; where the kind is "another
action", "a send where the oracle sends nothing" or "nothing where the oracle sends", the pairs of actions
(the oracle's, nextbest's) that lose most say which actions the effect model confuses.
"""

from __future__ import annotations

import numpy as np

KINDS = {
    "send_hour": "same action and channel, another send hour",
    "channel": "same action, another channel",
    "action": "another action",
    "extra_send": "a send where the oracle sends nothing",
    "held_back": "nothing where the oracle sends",
}
NOTHING = "nothing"
TOP_PAIRS = 6  # pairs of actions shown


def kinds_of(oracle, nextbest) -> np.ndarray:
    """[n] the kind of difference (a key of KINDS) between the two policies' choices (``policies.Choice``);
    "" where they choose the same: nothing, or the same option at the same hour."""
    o, nb = oracle.sends, nextbest.sends
    both = o & nb
    same_action = both & (oracle.action == nextbest.action)
    kind = np.full(len(o), "", dtype=object)
    kind[same_action & (oracle.channel == nextbest.channel) & (oracle.hour != nextbest.hour)] = "send_hour"
    kind[same_action & (oracle.channel != nextbest.channel)] = "channel"
    kind[both & (oracle.action != nextbest.action)] = "action"
    kind[~o & nb] = "extra_send"
    kind[o & ~nb] = "held_back"
    return kind


def where_lost(actions: list[str], oracle, nextbest, oracle_value: np.ndarray, nextbest_value: np.ndarray,
               top: int | None = None) -> dict:
    """Per kind of difference: customers, the value lost (oracle - nextbest, currency), per 1,000 customers and
    as a share of the oracle's value; and the (oracle action, nextbest action) pairs, those that lose most first
    (the `top` of them; all by default)."""
    vo, vn = np.asarray(oracle_value, float), np.asarray(nextbest_value, float)
    n, total = len(vo), float(vo.sum())
    gap = vo - vn
    kind = kinds_of(oracle, nextbest)
    out: dict = {"customers": n, "oracle_value": total, "nextbest_value": float(vn.sum()), "kinds": {}}
    for k in KINDS:
        m = kind == k
        lost = float(gap[m].sum())
        out["kinds"][k] = {"customers": int(m.sum()), "lost": lost, "per_1000": lost / n * 1000 if n else 0.0,
                           "share_of_oracle": lost / total if total > 0 else None}
    names = np.array([*actions, NOTHING], dtype=object)
    rows = np.flatnonzero(np.isin(kind, ["action", "extra_send", "held_back"]))
    pairs: dict[tuple[str, str], float] = {}
    for a, b, g in zip(names[np.where(oracle.sends, oracle.action, -1)[rows]],
                       names[np.where(nextbest.sends, nextbest.action, -1)[rows]], gap[rows]):
        pairs[(a, b)] = pairs.get((a, b), 0.0) + float(g)
    ranked = sorted(pairs.items(), key=lambda kv: -kv[1])[:top]
    out["pairs"] = [{"oracle": a, "nextbest": b, "lost": v, "per_1000": v / n * 1000 if n else 0.0}
                    for (a, b), v in ranked]
    return out


def waterfall(start: float, lost) -> np.ndarray:
    """The levels of a chart stepping from `start` down by each of `lost` in turn: [start, start - lost[0], ...,
    start - sum(lost)] (the oracle's value, then after each kind of difference, ending at nextbest's)."""
    return float(start) - np.concatenate([[0.0], np.cumsum(np.asarray(lost, float))])
