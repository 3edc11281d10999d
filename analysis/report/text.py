"""The report's words: channels, heads, stages, features and actions as marketers read them, the glossary, and
numbers and dates as text."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd

from nextbest.settings import Settings

CHANNEL_LABEL = {"email": "E-mail", "sms": "SMS", "push": "Push", "in_app": "In-app", "print": "Print"}
WEEKDAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
WEEKDAY_NAMES = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")

HEAD_TEXT = {
    "activation": ("Activation", "who will buy soon: a first purchase for people who registered but never bought, "
                   "a second purchase inside the activation window for first-time buyers", "buyers"),
    "churn": ("Churn risk", "who is about to stop buying", "lost customers"),
    "channel": ("Channel response", "who clicks a message, given its channel and its local send hour", "clicks"),
    "send_time": ("Send time", "the local hour at which each customer engages", None),
}


GLOSSARY = (
    ("AUC", "the chance that the model scores a random customer who did it above one who did not: "
            "0.5 is a coin toss, 1 is perfect."),
    ("Lift", "how many times more of the outcome a group picked by the model holds than a random group of "
             "the same size."),
    ("Calibration", "whether a score can be read as a probability: of the customers scored 30%, do about 3 in 10 "
                    "really do it?"),
    ("Top-3 accuracy", "how often the hour at which a customer actually engaged is among the model's three best "
                       "hours for them."),
    ("Baseline", "the simple rule a model must beat to be worth using (for example: the more recent the last "
                 "purchase, the less likely to churn)."),
    ("Best possible", "the score reached with the simulator's hidden truth; known only on simulated data, it "
                      "shows how much room is left."),
    ("Control group", "a random share of the customers a campaign targets who receive nothing, so the effect of "
                      "the message is measured rather than guessed."),
    ("Uplift", "the purchase rate of the customers who got the message minus that of the control group."),
    ("95% confidence interval", "the range the true uplift lies in, 19 times out of 20, given the sample size."),
    ("Expected value", "probability of success x value of a success x the action's lift - cost of the message, "
                       "in the currency units of the action catalogue."),
)


_FEATURE_TEXT = {
    "tenure_days": "tenure in days",
    "segment_code": "customer segment (B2C / B2B)",
    "region_code": "region",
    "company_size_code": "company size",
    "sector_code": "sector or store type",
    "stage_code": "lifecycle stage",
    "days_since_registration": "days since registration",
    "days_since_first_purchase": "days since first purchase",
    "days_since_last_purchase": "days since last purchase",
    "n_purchases": "number of purchases",
    "second_purchase_in_window": "second purchase in the activation window",
    "rfm_segment": "RFM segment this month",
    "rfm_segment_prev": "RFM segment last month",
    "rfm_dropped": "dropped an RFM segment this month",
    "n_engagements": "number of engagements",
    "sent_7d_total": "messages received in the last 7 days",
    "sent_30d_total": "messages received in the last 30 days",
    "msg_channel_code": "channel of the message",
    "msg_local_hour": "local hour the message is sent",
    "ctx_local_hour": "local hour of the trigger",
    "ctx_weekday": "weekday of the trigger",
    "ctx_day_part": "part of the day of the trigger",
    "ctx_trigger_code": "trigger event",
    "ctx_trigger_channel_code": "channel of the trigger",
    "ctx_near_store": "customer near a store",
    "ctx_weather_code": "weather",
}
_ENGAGEMENT_TEXT = {
    "sent": "{c} messages received to date",
    "opened": "{c} messages opened to date",
    "clicked": "{c} messages clicked to date",
    "converted": "{c} messages that led to a conversion",
    "open_rate": "{c} open rate",
    "click_rate": "{c} click rate",
    "consecutive_ignores": "{c} messages ignored in a row",
    "days_since_response": "days since last response to {c}",
}


_ACTION_TEXT = {
    "no_action": "No action",
    "activation_nudge_incentive": "Activation nudge with incentive",
    "second_use_nudge": "Second-use nudge",
    "cross_sell": "Cross-sell",
    "anti_attrition_offer": "Anti-attrition offer",
    "win_back": "Win-back",
}


def action_text(action: str) -> str:
    return _ACTION_TEXT.get(action) or action.replace("_", " ").capitalize()


def feature_text(name: str) -> str:
    """A feature name in words, e.g. ``click_rate_sms`` -> "SMS click rate"."""
    if name in _FEATURE_TEXT:
        return _FEATURE_TEXT[name]
    m = re.fullmatch(r"(frequency|monetary)_(\d+)d", name)
    if m:
        return f"{'purchases' if m.group(1) == 'frequency' else 'spend'} in the last {m.group(2)} days"
    m = re.fullmatch(r"(consent|reachable)_(\w+)", name)
    if m and m.group(2) in CHANNEL_LABEL:
        c = CHANNEL_LABEL[m.group(2)]
        return f"{c} consent" if m.group(1) == "consent" else f"{c} address known"
    m = re.fullmatch(r"hour_share_(\d\d)", name)
    if m:
        return f"share of activity at {m.group(1)}:00 local time"
    m = re.fullmatch(r"weekday_share_(\d)", name)
    if m:
        return f"share of activity on {WEEKDAY_NAMES[int(m.group(1))]}s"
    m = re.fullmatch(r"sent_(7d|30d)_(\w+)", name)
    if m and m.group(2) in CHANNEL_LABEL:
        return f"{CHANNEL_LABEL[m.group(2)]} messages in the last {m.group(1)[:-1]} days"
    m = re.fullmatch(r"days_since_action_(\w+)", name)
    if m:
        return f"days since the last '{action_text(m.group(1)).lower()}' message"
    for key, text in _ENGAGEMENT_TEXT.items():
        if name.startswith(key + "_") and name[len(key) + 1:] in CHANNEL_LABEL:
            return text.format(c=CHANNEL_LABEL[name[len(key) + 1:]])
    return name.replace("_", " ")


def _cap(text: str) -> str:
    return text[:1].upper() + text[1:]


def _rfm_label(segment: str) -> str:
    """An RFM segment name of the vocabulary as marketers read it: never_bought -> Never bought."""
    return segment.replace("_", " ").capitalize()


def _stage_labels(settings: Settings) -> dict[str, str]:
    f = settings.features
    return {
        "registered": "Registered, never bought",
        "activating": f"First purchase, in the {f.activation_window_days}-day window",
        "active": f"Active (bought in the last {f.at_risk_days} days)",
        "at_risk": f"At risk (last purchase {f.at_risk_days}-{f.lapsed_days} days ago)",
        "lapsed": f"Lapsed (no purchase for {f.lapsed_days}+ days)",
    }


def _short_stage(stage: str) -> str:
    return {"registered": "Registered", "activating": "First purchase", "active": "Active", "at_risk": "At risk",
            "lapsed": "Lapsed"}[stage]


def _date(t) -> str:
    t = pd.Timestamp(t)
    return f"{t.day} {t:%b %Y}"


def _n(x) -> str:
    return "-" if x is None or (isinstance(x, float) and not np.isfinite(x)) else f"{x:,.0f}"


def _pct(x, digits: int = 0) -> str:
    return "-" if x is None or not np.isfinite(x) else f"{100 * x:.{digits}f}%"


def _signed(x, digits: int = 0) -> str:
    return f"{x:+,.{digits}f}"
