"""Names of the customer features: the vocabulary shared by the Feast repo,
the feature pipeline, training and the decision policy.

Declarations only (no computation): `feast apply` imports this module.
"""

CHANNELS = ("email", "sms", "push", "in_app", "print")
STAGES = ("registered", "activating", "active", "at_risk", "lapsed")  # stage code = index
ACTIONS = (
    "welcome",
    "activation_nudge",
    "activation_nudge_incentive",
    "second_use_nudge",
    "cross_sell",
    "loyalty_reward",
    "satisfaction_survey",
    "anti_attrition_offer",
    "win_back",
    "contact_enrichment",
)
ATTRIBUTES = ("segment", "region", "company_size", "sector")  # encoded as stable integer codes
TRIGGERS = ("none", "registration", "purchase", "visit", "cart_abandoned", "location", "message_response", "schedule")
DAY_PARTS = ("night", "breakfast", "morning", "lunch", "afternoon", "evening")  # day-part code = index
WEATHER = ("unknown", "sunny", "cloudy", "rain", "snow", "hot", "cold")

# --- feature views (all float32 in the online vector; NaN = unknown) ---------
PROFILE = (
    "tenure_days",
    *(f"{a}_code" for a in ATTRIBUTES),
    *(f"consent_{c}" for c in CHANNELS),
    *(f"reachable_{c}" for c in CHANNELS),
)
LIFECYCLE = (
    "stage_code",
    "days_since_registration",
    "days_since_first_purchase",
    "days_since_last_purchase",
    "n_purchases",
    "second_purchase_in_window",
)
RFM = (
    "frequency_30d",
    "frequency_90d",
    "frequency_365d",
    "monetary_30d",
    "monetary_90d",
    "monetary_365d",
    "rfm_segment",
    "rfm_segment_prev",
    "rfm_dropped",
)
ENGAGEMENT = tuple(
    f"{m}_{c}"
    for c in CHANNELS
    for m in (
        "sent",
        "opened",
        "clicked",
        "converted",
        "open_rate",
        "click_rate",
        "consecutive_ignores",
        "days_since_response",
    )
)
TIMING = (
    *(f"hour_share_{h:02d}" for h in range(24)),
    *(f"weekday_share_{d}" for d in range(7)),
    "n_engagements",
)
PRESSURE = (
    *(f"sent_7d_{c}" for c in CHANNELS),
    *(f"sent_30d_{c}" for c in CHANNELS),
    "sent_7d_total",
    "sent_30d_total",
    *(f"days_since_action_{a}" for a in ACTIONS),
)
# request-time context, computed on demand from the request and the customer's timezone
CONTEXT = ("ctx_local_hour", "ctx_weekday", "ctx_day_part", "ctx_trigger_code", "ctx_trigger_channel_code", "ctx_near_store", "ctx_weather_code")
CONTEXT_REQUEST = ("trigger_timestamp", "trigger_event", "trigger_channel", "near_store", "weather")

VIEWS = {
    "customer_profile": PROFILE,
    "customer_lifecycle": LIFECYCLE,
    "customer_rfm": RFM,
    "customer_engagement": ENGAGEMENT,
    "customer_timing": TIMING,
    "customer_pressure": PRESSURE,
}
CUSTOMER_FEATURES = tuple(f for cols in VIEWS.values() for f in cols)
