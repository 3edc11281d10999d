"""The settings compiled into arrays once: the catalogue, the contact policy, the reason vocabulary."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

import numpy as np

from nextbest.settings import Settings
from nextbest.vocabulary import CHANNEL_INDEX as _CH, CHANNELS, DAY_PARTS, DRIVERS, STAGES, TRIGGERS, WEATHER
from serving.policy.common import _C, DEFAULT_SEND_HOUR, FALLBACKS


@dataclass(frozen=True, eq=False)
class CompiledPolicy:
    """Settings turned into arrays once; :func:`decide` only reads them."""

    settings: Settings
    actions: tuple[str, ...]  # catalogue order; index -1 in results = no_action
    stage_ok: np.ndarray  # bool [S, A]
    allowed: np.ndarray  # bool [A, C]: channel listed in Action.cost
    cost: np.ndarray  # float32 [A, C] (0 where not allowed)
    scale: np.ndarray  # float32 [A]: the prior increment of an engaged customer (Action.prior_per_click)
    driver: np.ndarray  # int8 [A]: index into DRIVERS
    cooldown_days: np.ndarray  # float32 [A]
    max_tenure_days: np.ndarray  # float32 [A] (inf = no limit)
    requires_missing_email: np.ndarray  # bool [A]
    requires_churn: np.ndarray  # bool [A]
    cap_features: tuple[str, ...]  # per channel: sent_7d_<c> or sent_30d_<c>
    cap_max: np.ndarray  # float32 [C]
    overall_feature: str
    overall_max: float
    allowed_hours: np.ndarray  # bool [24]
    default_hour: int
    relay_channel: int
    relay_after: int
    boost_keys: tuple[str, ...]
    boost_kind: tuple[str, ...]  # near_store | day_part | weather | trigger
    boost_code: np.ndarray  # int [K]: code of the context value (unused for near_store)
    boost_factor: np.ndarray  # float32 [K, C] (1 where the channel is not boosted)
    min_expected_value: float
    churn_threshold: float
    control_share: float
    exploration_share: float
    experiment: str
    reason_codes: tuple[str, ...]
    reason_texts: tuple[str, ...]
    reason_index: Mapping[str, int]
    required_features: tuple[str, ...]

    @property
    def relay_code(self) -> str:
        return f"{CHANNELS[self.relay_channel]}_ignored_relay"


def compile_policy(settings: Settings) -> CompiledPolicy:
    """Precompute the catalogue and contact policy as arrays (do it once per process)."""
    cp = settings.contact_policy
    actions = tuple(settings.actions)
    A = len(actions)
    stage_ok = np.zeros((len(STAGES), A), bool)
    allowed = np.zeros((A, _C), bool)
    cost = np.zeros((A, _C), np.float32)
    for a, name in enumerate(actions):
        act = settings.actions[name]
        for s in act.stages:
            stage_ok[STAGES.index(s), a] = True
        for c, v in act.cost.items():
            allowed[a, _CH[c]] = True
            cost[a, _CH[c]] = v
    acts = [settings.actions[a] for a in actions]

    cap_features, cap_max = [], np.full(_C, np.inf, np.float32)
    for i, c in enumerate(CHANNELS):
        cap = cp.caps.per_channel.get(c)
        cap_features.append(f"sent_{_window(cap.days if cap else 30)}_{c}")
        if cap is not None:
            cap_max[i] = cap.max
    overall = cp.caps.overall

    qh = cp.quiet_hours
    hours = np.arange(24)
    if qh.start == qh.end:
        quiet = np.zeros(24, bool)
    elif qh.start < qh.end:
        quiet = (hours >= qh.start) & (hours < qh.end)
    else:
        quiet = (hours >= qh.start) | (hours < qh.end)
    allowed_hours = ~quiet
    if not allowed_hours.any():
        raise ValueError("contact_policy.quiet_hours leaves no hour to send in")
    default_hour = next(h % 24 for h in range(DEFAULT_SEND_HOUR, DEFAULT_SEND_HOUR + 24) if allowed_hours[h % 24])

    keys, kinds, codes, factors = [], [], [], []
    for key, boost in cp.context_boosts.items():
        kind, code = _context_kind(key)
        f = np.ones(_C, np.float32)
        for c in boost.channels:
            f[_CH[c]] = boost.factor
        keys.append(key), kinds.append(kind), codes.append(code), factors.append(f)

    relay = cp.ignore_relay
    vocab = _reason_vocabulary(settings, actions, keys)
    required = (
        "stage_code",
        "tenure_days",
        "rfm_dropped",
        *(f"consent_{c}" for c in CHANNELS),
        *(f"reachable_{c}" for c in CHANNELS),
        *dict.fromkeys(cap_features),
        f"sent_{_window(overall.days)}_total",
        f"consecutive_ignores_{relay.channel}",
        *(f"days_since_action_{a}" for a in actions),
        *(f"sent_{c}" for c in CHANNELS),
        *(f"clicked_{c}" for c in CHANNELS),
        *(f"hour_share_{h:02d}" for h in range(24)),
    )
    return CompiledPolicy(
        settings=settings,
        actions=actions,
        stage_ok=stage_ok,
        allowed=allowed,
        cost=cost,
        scale=np.array([a.prior_per_click for a in acts], np.float32),
        driver=np.array([DRIVERS.index(a.driver) for a in acts], np.int8),
        cooldown_days=np.array([a.cooldown_days for a in acts], np.float32),
        max_tenure_days=np.array([a.max_tenure_days or np.inf for a in acts], np.float32),
        requires_missing_email=np.array([a.requires == "missing_email" for a in acts], bool),
        requires_churn=np.array([a.requires == "churn_or_rfm_drop" for a in acts], bool),
        cap_features=tuple(cap_features),
        cap_max=cap_max,
        overall_feature=f"sent_{_window(overall.days)}_total",
        overall_max=float(overall.max),
        allowed_hours=allowed_hours,
        default_hour=int(default_hour),
        relay_channel=_CH[relay.channel],
        relay_after=relay.after_ignored,
        boost_keys=tuple(keys),
        boost_kind=tuple(kinds),
        boost_code=np.array(codes, np.int16),
        boost_factor=np.array(factors, np.float32).reshape(len(keys), _C),
        min_expected_value=float(cp.min_expected_value),
        churn_threshold=float(cp.churn_offer_threshold),
        control_share=float(settings.serving.control_share),
        exploration_share=float(settings.serving.exploration_share),
        experiment=settings.serving.experiment,
        reason_codes=tuple(c for c, _ in vocab),
        reason_texts=tuple(t for _, t in vocab),
        reason_index={c: i for i, (c, _) in enumerate(vocab)},
        required_features=tuple(dict.fromkeys(required)),
    )


def _window(days: int) -> str:
    """Rolling-window feature for a cap: up to 7 days -> the 7-day count, else the 30-day count."""
    return "7d" if days <= 7 else "30d"


def _context_kind(key: str) -> tuple[str, int]:
    if key == "near_store":
        return "near_store", -1
    for kind, vocab in (("day_part", DAY_PARTS), ("weather", WEATHER), ("trigger", TRIGGERS)):
        if key in vocab:
            return kind, vocab.index(key)
    raise ValueError(
        f"contact_policy.context_boosts: unknown context {key!r}; use near_store, a day-part "
        f"{list(DAY_PARTS)}, a weather {list(WEATHER)} or a trigger {list(TRIGGERS)}"
    )


def _reason_vocabulary(settings: Settings, actions: tuple[str, ...], boost_keys: list[str]) -> list[tuple[str, str]]:
    cp, sv = settings.contact_policy, settings.serving
    caps, relay = cp.caps, cp.ignore_relay
    v = [("cold_start", "unknown customer: treated as a new registrant and scored with default rates")]
    v += [(f"stage:{s}", f"lifecycle stage: {s}") for s in STAGES]
    v += [
        (
            "control_group",
            f"in the control group of experiment {sv.experiment!r} ({sv.control_share:.0%} held out): nothing is sent",
        ),
        ("best_ev", "highest incremental value (against no message, net of cost) among the eligible options"),
        ("exploration", f"drawn at random among the eligible options, no_action included ({sv.exploration_share:.0%} "
                        "of decisions explore, so what every option does keeps being measured)"),
        ("nothing_worth_cost", f"no eligible (action, channel) adds more than {cp.min_expected_value:g} "
                               "against sending nothing"),
        ("no_eligible_action", "no catalogue action is eligible (stage, condition, tenure, cooldown or restriction)"),
        ("no_consented_channel", "no channel is both consented and reachable"),
        (
            "cap_reached:overall",
            f"overall contact cap reached: {caps.overall.max} sends in {caps.overall.days} days",
        ),
        ("no_open_channel", "eligible actions exist but none of the channels they use is open (caps, relay)"),
    ]
    for c in CHANNELS:
        cap = caps.per_channel.get(c)
        text = f"{c} cap reached: {cap.max} sends in {cap.days} days" if cap else f"{c} cap reached"
        v.append((f"cap_reached:{c}", text))
    v.append(
        (
            f"{relay.channel}_ignored_relay",
            f"{relay.after_ignored}+ {relay.channel} messages ignored in a row: {relay.channel} is not used, "
            f"the contact goes to {', '.join(relay.relay_to)}",
        )
    )
    for a in actions:
        v.append((f"cooldown:{a}", f"{a} was sent less than {settings.actions[a].cooldown_days} days ago"))
    v.append(("restricted", "the request restricted the candidate actions"))
    for k in boost_keys:
        b = cp.context_boosts[k]
        v.append((f"context:{k}", f"context {k} raises the response on {', '.join(b.channels)} (x{b.factor:g})"))
    texts = {
        "activation_model": "activation model unavailable: prior of the stage used",
        "churn_model": "churn model unavailable: prior of the stage used",
        "response_model": "response model unavailable: own click rate smoothed toward channel base rates used",
        "send_time_model": "send-time model unavailable: own engagement hours or the default hour used",
        "effect_model": "the effect of this action is not learned yet (too few randomised sends, or no effect "
                        "model): the catalogue's prior estimate was used",
        "stage": "lifecycle stage unknown: treated as registered",
        "timezone": "timezone missing or unknown: UTC used",
    }
    v += [(f"fallback:{k}", texts[k]) for k in FALLBACKS]
    return v
