"""Request and response models of the HTTP API (pydantic v2).

``POST /next_action``
    :class:`NextActionRequest` -> :class:`NextActionResponse`: one decision
    per customer, in request order. Either ``customers`` (each with its own
    optional ``context``) or ``customer_ids`` plus one shared ``context``; at
    most ``serving.max_customers_per_request`` customers (default 500; the
    service applies the configured limit, the schema only the largest one
    allowed, ``MAX_CUSTOMERS_PER_REQUEST``).

``POST /feedback``
    :class:`FeedbackRequest` -> :class:`FeedbackResponse`: what happened to a
    decision (sent, delivered, opened, clicked, converted, unsubscribed, cancelled).

Optional fields may be left out but are never ``null`` unless their type says
so. The HTTP layer validates request bodies strictly (JSON types as written);
every error is an :class:`ErrorResponse` whose ``details`` name the fields.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Literal, Sequence

from pydantic import (
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
    WithJsonSchema,
    field_validator,
    model_validator,
)

from nextbest.settings import MAX_CUSTOMERS_PER_REQUEST, Channel, Stage
from nextbest.vocabulary import FEEDBACK_EVENTS, NO_ACTION, TRIGGERS, WEATHER

Trigger = Literal[TRIGGERS]  # type: ignore[valid-type]
Weather = Literal[WEATHER]  # type: ignore[valid-type]
FeedbackEvent = Literal[tuple(FEEDBACK_EVENTS)]  # type: ignore[valid-type]

CustomerId = Annotated[str, StringConstraints(min_length=1, max_length=128)]  # opaque: taken exactly as sent
ISO_OFFSET_PATTERN = r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?[+-]\d\d:\d\d$"
ACTION_ID_PATTERN = r"^[a-z][a-z0-9_]*$"
ActionId = Annotated[str, StringConstraints(min_length=1, max_length=64, pattern=ACTION_ID_PATTERN)]
RFC3339_PATTERN = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt][0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]+)?([Zz]|[+-][0-9]{2}:[0-9]{2})$"


def _rfc3339(v):
    """An RFC 3339 string -> an aware datetime (other inputs are left to the datetime validation)."""
    if not isinstance(v, str):
        return v
    try:
        if not re.match(RFC3339_PATTERN, v):
            raise ValueError
        return datetime.fromisoformat(v.upper().replace("Z", "+00:00"))
    except ValueError:
        raise ValueError("expected an RFC 3339 time with its offset, e.g. 2025-06-30T10:00:00+02:00") from None


# a point in time as JSON carries it: RFC 3339 with its UTC offset
Timestamp = Annotated[AwareDatetime, BeforeValidator(_rfc3339),
                      WithJsonSchema({"type": "string", "format": "date-time", "pattern": RFC3339_PATTERN})]
UUID_PATTERN = r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


# --------------------------------------------------------------------------- request


class RequestContext(_Model):
    """What just happened: the trigger of the call. Every field is optional."""

    trigger_event: Trigger = Field("none", description=f"trigger of the call: one of {', '.join(TRIGGERS)}")
    trigger_channel: Channel | None = Field(None, description="channel the trigger came through, if any")
    trigger_timestamp: Timestamp | None = Field(
        None, description="when the trigger happened, ISO-8601 with offset; default: the time of the call. A time "
                          "outside [now - serving.timestamp_past_days, now + serving.timestamp_future_minutes] is "
                          "replaced by the time of the call for that customer, flagged fallback:trigger_timestamp"
    )
    near_store: bool = Field(False, description="the customer is near a store (location trigger)")
    weather: Weather = Field("unknown", description=f"local weather: one of {', '.join(WEATHER)}")
    restrict_actions: list[ActionId] | None = Field(
        None,
        description="only these catalogue actions may be recommended (no_action is always possible); an action "
                    "the catalogue does not have is a 400 naming the customer",
        max_length=100,
    )

    @field_validator("restrict_actions")
    @classmethod
    def _unique(cls, v: list[str] | None) -> list[str] | None:
        return v if v is None else list(dict.fromkeys(v))


class CustomerItem(_Model):
    customer_id: CustomerId = Field(description="customer identifier")
    context: RequestContext = Field(None, description="this customer's context; default: the shared context")


def _one_list_schema(schema: dict) -> None:
    schema["oneOf"] = [{"required": ["customers"]}, {"required": ["customer_ids"]}]


class NextActionRequest(_Model):
    """Decide for up to ``serving.max_customers_per_request`` customers (default 500): give exactly one of
    ``customers`` and ``customer_ids``."""

    model_config = ConfigDict(extra="forbid", json_schema_extra=_one_list_schema)

    request_id: str = Field(
        None,
        min_length=1,
        max_length=128,
        description="idempotency key: the same request id gives the same decisions (retry with it after a 5xx or "
                    "a timeout)",
    )
    customers: list[CustomerItem] = Field(None, min_length=1, max_length=MAX_CUSTOMERS_PER_REQUEST,
                                          description="customers, each with an optional own context; a customer "
                                                      "listed twice (two triggers) gets two decisions, the later "
                                                      "one counting the earlier one's reservation")
    customer_ids: list[CustomerId] = Field(None, min_length=1, max_length=MAX_CUSTOMERS_PER_REQUEST,
                                           description="customer ids sharing `context`",
                                           json_schema_extra={"uniqueItems": True})
    context: RequestContext = Field(None, description="context shared by every customer of the request")

    @model_validator(mode="after")
    def _one_list(self) -> "NextActionRequest":
        if (self.customers is None) == (self.customer_ids is None):
            raise ValueError("customers / customer_ids: give exactly one of the two lists")
        ids = self.customer_ids or []
        if len(set(ids)) != len(ids):
            seen, dup = set(), []
            for c in ids:
                if c in seen and c not in dup:
                    dup.append(c)
                seen.add(c)
            raise ValueError(f"customer_ids: duplicate customer id(s) {dup[:5]}; list each customer once (or use "
                             "`customers`, where each entry has its own context)")
        return self

    def ids(self) -> list[str]:
        if self.customers is not None:
            return [c.customer_id for c in self.customers]
        return list(self.customer_ids or [])

    def items(self) -> list[tuple[str, RequestContext]]:
        """(customer_id, context) per customer, the shared context filling the gaps."""
        shared = self.context or RequestContext()
        if self.customers is not None:
            return [(c.customer_id, c.context or shared) for c in self.customers]
        return [(c, shared) for c in self.customer_ids or []]

    def unknown_actions(self, known: Sequence[str]) -> list[tuple[str, list[str]]]:
        """(field, unknown action ids) for every restriction naming an action outside ``known``."""
        allowed = {*known, NO_ACTION}
        where = [("context.restrict_actions", self.context)]
        where += [(f"customers.{i}.context.restrict_actions", c.context) for i, c in enumerate(self.customers or [])]
        out = []
        for field, ctx in where:
            bad = [a for a in (ctx.restrict_actions or []) if a not in allowed] if ctx is not None else []
            if bad:
                out.append((field, bad))
        return out

    def columns(self) -> dict[str, list]:
        """The request as one list per field, in customer order (what ``features.context.compute_context``
        and ``serving.policy.DecisionInputs`` take); ``trigger_timestamp`` None means the time of the call."""
        items = self.items()
        return {
            "customer_id": [c for c, _ in items],
            "trigger_timestamp": [x.trigger_timestamp for _, x in items],
            "trigger_event": [x.trigger_event for _, x in items],
            "trigger_channel": [x.trigger_channel for _, x in items],
            "near_store": [x.near_store for _, x in items],
            "weather": [x.weather for _, x in items],
            "restrict_actions": [x.restrict_actions for _, x in items],
        }


# --------------------------------------------------------------------------- response


class Reason(BaseModel):
    code: str = Field(description="stable machine code, e.g. best_ev, cap_reached:email, control_group")
    text: str = Field(description="human-readable explanation")


class DecisionScores(BaseModel):
    activation: float | None = Field(ge=0, le=1, description="P(activation) used by the decision; null when the "
                                     "customer had no option left, so no model was asked")
    churn: float | None = Field(ge=0, le=1, description="P(churn) used by the decision; null likewise")
    response: dict[Channel, float | None] = Field(description="P(click) per channel at the send hour; null on a "
                                                             "channel no eligible action could use, and likewise")
    best_hours: list[int] = Field(description="best local send hours (outside quiet hours), best first")


class CustomerDecision(BaseModel):
    """One customer's decision. Journey engines branch on ``action``."""

    customer_id: str
    action: str = Field(description="an action id of the catalogue, or no_action")
    channel: Channel | None = Field(description="channel to use; null for no_action")
    send_at: str | None = Field(
        pattern=ISO_OFFSET_PATTERN,
        description="when to send: ISO-8601 local time with the customer's UTC offset; null for no_action",
    )
    stage: Stage
    scores: DecisionScores
    expected_value: float = Field(description="what `action` adds against sending nothing, in currency, net of its "
                                              "cost (0 for no_action)")
    reasons: list[Reason]
    control_group: bool = Field(description="held out of the experiment: nothing is sent")
    holdout_action: str | None = Field(description="for the control group: the action it would have received")
    holdout_channel: Channel | None = Field(None, description="for the control group: the channel it would have used")
    cold_start: bool = Field(description="unknown customer, answered with default rates")
    fallback: bool = Field(description="a default replaced a model score or an input")
    fallbacks: list[str] = Field(description="which defaults were used, e.g. churn_model, timezone")
    propensity: float | None = Field(
        gt=0, le=1, description="the probability the assignment (control group, then exploration) gave this "
                                "decision the option it returned, given the customer: what off-policy evaluation "
                                "divides by; null only when the service withheld the policy's send (contact-pressure "
                                "store unavailable, a reservation conflict), so the answer was not randomised")
    exploration: bool = Field(description="the option was drawn at random among the eligible ones (no_action "
                                          "included; consent, caps, cooldowns and quiet hours still apply): "
                                          "serving.exploration_share of decisions explore")
    model_versions: dict[str, str]
    decision_id: str = Field(pattern=UUID_PATTERN, description="quote it in /feedback")

    @model_validator(mode="after")
    def _consistent(self) -> "CustomerDecision":
        if (self.action == NO_ACTION) != (self.channel is None):
            raise ValueError("channel: null exactly when action is no_action")
        if (self.channel is None) != (self.send_at is None):
            raise ValueError("send_at: null exactly when action is no_action")
        return self


class NextActionResponse(BaseModel):
    request_id: str | None = None
    decisions: list[CustomerDecision]


# --------------------------------------------------------------------------- feedback


def _amount_only_on_conversions(schema: dict) -> None:
    schema["if"] = {"properties": {"event": {"not": {"const": "converted"}}}}
    schema["then"] = {"not": {"required": ["amount"]}}


class FeedbackRequest(_Model):
    """What happened to a decision's message. ``channel`` and ``action_id`` must be the decision's;
    ``cancelled`` releases the capacity the decision reserved (before it is sent)."""

    model_config = ConfigDict(extra="forbid", json_schema_extra=_amount_only_on_conversions)

    decision_id: str = Field(pattern=UUID_PATTERN, description="decision_id of the /next_action answer")
    customer_id: CustomerId
    event: FeedbackEvent = Field(description=" | ".join(FEEDBACK_EVENTS))
    channel: Channel = Field(description="the decision's channel")
    action_id: ActionId = Field(description="the decision's action")
    timestamp: Timestamp = Field(description="when it happened, ISO-8601 with offset, within [now - "
                                                 "serving.timestamp_past_days, now + serving.timestamp_future_minutes]")
    amount: float = Field(None, ge=0, allow_inf_nan=False,
                          description="conversion value, only on converted events, at most serving.max_feedback_amount")

    @model_validator(mode="after")
    def _amount_on_conversions(self) -> "FeedbackRequest":
        if self.amount is not None and self.event != "converted":
            raise ValueError(f"amount: only a converted event carries an amount (got one on {self.event})")
        return self


class FeedbackResponse(BaseModel):
    accepted: bool
    decision_id: str
    event: FeedbackEvent
    duplicate: bool = Field(description="this event was already recorded for the decision: counted once")
    features_refreshed: bool = Field(description="the customer's online features now count the event")


class ErrorDetail(BaseModel):
    field: str = Field(description="dotted path of the field, e.g. customers.3.context.trigger_event")
    message: str


class ErrorResponse(BaseModel):
    """The one shape of every error (see serving/errors.py)."""

    error: str = Field(description="one line naming the field and what is wrong")
    code: str = Field(description="machine code, e.g. invalid_request, unauthorised, unknown_decision")
    details: list[ErrorDetail]


class HealthResponse(BaseModel):
    status: Literal["ok", "unavailable"]
    checks: dict[str, str] = Field(description="feature_store, pressure_store, decision_log, models: ok or why not")
    models: dict[str, str]
    fallback_heads: dict[str, str]
    compiled_trees: dict[str, bool] | None
    shadow: dict[str, str] | None = Field(None, description="versions of the @challenger models deciding in "
                                                            "shadow (logged, never acted on), or null")
    channels: list[str]
    workers: int
    uptime_s: float
