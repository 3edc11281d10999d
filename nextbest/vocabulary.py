"""The product's vocabulary: every fixed name, defined once.

Settings validate against these tuples, the data contract and the feature
repository are built from them, and the API's schemas turn them into enums.
Anything a marketer configures (the action catalogue, caps, boosts) lives in
``configs/`` instead; only the names the code itself depends on are here.
"""

from __future__ import annotations

# --- customers and channels ----------------------------------------------------
CHANNELS: tuple[str, ...] = ("email", "sms", "push", "in_app", "print")
CHANNEL_INDEX: dict[str, int] = {c: i for i, c in enumerate(CHANNELS)}  # channel -> its position in CHANNELS
# lifecycle stage; the stage code stored in the features is the index here
STAGES: tuple[str, ...] = ("registered", "activating", "active", "at_risk", "lapsed")
# monthly RFM segment; the segment code stored in the features is the index here
RFM_SEGMENTS: tuple[str, ...] = ("never_bought", "lapsed", "occasional", "regular", "loyal")
# descriptive customer attributes of the contract (encoded as stable integer codes in the features)
ATTRIBUTES: tuple[str, ...] = ("segment", "region", "company_size", "sector")

# --- events of the data contract -------------------------------------------------
EVENT_TYPES: tuple[str, ...] = (
    "registration",
    "purchase",
    "visit",
    "cart_abandoned",
    "message_sent",
    "message_delivered",
    "message_opened",
    "message_clicked",
    "message_converted",
    "unsubscribed",
)
# events about a message (they carry its channel)
MESSAGE_EVENTS: tuple[str, ...] = tuple(e for e in EVENT_TYPES if e.startswith("message_") or e == "unsubscribed")
# what a journey engine reports back (POST /feedback) -> the contract event it becomes (None: no event,
# `cancelled` only releases the capacity the decision reserved)
FEEDBACK_EVENTS: dict[str, str | None] = {
    "sent": "message_sent",
    "delivered": "message_delivered",
    "opened": "message_opened",
    "clicked": "message_clicked",
    "converted": "message_converted",
    "unsubscribed": "unsubscribed",
    "cancelled": None,
}

# --- request context --------------------------------------------------------------
TRIGGERS: tuple[str, ...] = (
    "none", "registration", "purchase", "visit", "cart_abandoned", "location", "message_response", "schedule",
)
DAY_PARTS: tuple[str, ...] = ("night", "breakfast", "morning", "lunch", "afternoon", "evening")
WEATHER: tuple[str, ...] = ("unknown", "sunny", "cloudy", "rain", "snow", "hot", "cold")

# --- decisions ----------------------------------------------------------------------
NO_ACTION = "no_action"  # built in: never listed in the catalogue
# what drives an action's success in its prior: the outcome model it multiplies by
DRIVERS: tuple[str, ...] = ("response", "activation", "churn")
# events an action's objective may count (purchases may also be summed by amount); message_converted
# counts only the conversions of the action's own messages (a completed survey, a given e-mail address)
OBJECTIVE_EVENTS: tuple[str, ...] = ("purchase", "visit", "message_converted")

# --- models -------------------------------------------------------------------------
HEADS: tuple[str, ...] = ("activation", "churn", "channel", "send_time")
EFFECT_MODEL = "effect"  # what each action changes against doing nothing, learned from randomised assignments
MODELS: tuple[str, ...] = (*HEADS, EFFECT_MODEL)  # everything the registry holds
HEAD_KIND: dict[str, str] = {"activation": "binary", "churn": "binary", "channel": "binary", "send_time": "multiclass",
                             EFFECT_MODEL: "uplift"}
HEAD_METRIC: dict[str, str] = {"activation": "auc", "churn": "auc", "channel": "auc", "send_time": "top3_accuracy",
                               EFFECT_MODEL: "qini"}
CHAMPION, CHALLENGER = "champion", "challenger"

# --- feature store ------------------------------------------------------------------
ENTITY_KEY = "customer_id"
TIMESTAMP_FIELD = "event_timestamp"
DEFAULT_FEATURE_SERVICE = "nba_v1"
