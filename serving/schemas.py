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
    decision (sent, delivered, opened, clicked, converted, unsubscribed).

Every validation error names the field it is about (pydantic's ``loc`` and,
for the rules below, the message itself).
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationInfo,
    field_validator,
    model_validator,
)

from nextbest.settings import MAX_CUSTOMERS_PER_REQUEST, Channel, Stage
from nextbest.vocabulary import FEEDBACK_EVENTS, NO_ACTION, TRIGGERS, WEATHER

Trigger = Literal[TRIGGERS]  # type: ignore[valid-type]
Weather = Literal[WEATHER]  # type: ignore[valid-type]
FeedbackEvent = Literal[tuple(FEEDBACK_EVENTS)]  # type: ignore[valid-type]

CustomerId = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=128)]
ISO_OFFSET_PATTERN = r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?[+-]\d\d:\d\d$"
ACTION_ID_PATTERN = r"^[a-z][a-z0-9_]*$"
UUID_PATTERN = r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


# --------------------------------------------------------------------------- request


class RequestContext(_Model):
    """What just happened: the trigger of the call. Every field is optional."""

    trigger_event: Trigger = Field("none", description=f"trigger of the call: one of {', '.join(TRIGGERS)}")
    trigger_channel: Channel | None = Field(None, description="channel the trigger came through, if any")
    trigger_timestamp: AwareDatetime | None = Field(
        None, description="when the trigger happened, ISO-8601 with offset; default: the time of the call"
    )
    near_store: bool = Field(False, description="the customer is near a store (location trigger)")
    weather: Weather = Field("unknown", description=f"local weather: one of {', '.join(WEATHER)}")
    restrict_actions: list[str] | None = Field(
        None,
        description="only these catalogue actions may be recommended (no_action is always possible)",
        max_length=100,
    )

    @field_validator("restrict_actions")
    @classmethod
    def _action_names(cls, v: list[str] | None) -> list[str] | None:
        if v is None:
            return v
        bad = [a for a in v if not re.match(ACTION_ID_PATTERN, a)]
        if bad:
            raise ValueError(f"restrict_actions: {bad} are not action ids (lower_snake_case names of the catalogue)")
        return list(dict.fromkeys(v))


class CustomerItem(_Model):
    customer_id: CustomerId = Field(description="customer identifier")
    context: RequestContext | None = Field(None, description="this customer's context; default: the shared context")


class NextActionRequest(_Model):
    """Decide for up to ``serving.max_customers_per_request`` customers (default 500)."""

    request_id: str | None = Field(
        None,
        min_length=1,
        max_length=128,
        description="idempotency key: the same request id gives the same decision ids",
    )
    customers: list[CustomerItem] | None = Field(None, description="customers, each with an optional own context")
    customer_ids: list[CustomerId] | None = Field(None, description="customer ids sharing `context`")
    context: RequestContext | None = Field(None, description="context shared by every customer of the request")

    @field_validator("customers", "customer_ids")
    @classmethod
    def _size(cls, v: list | None, info: ValidationInfo) -> list | None:
        if v is None:
            return v
        if not v:
            raise ValueError(f"{info.field_name}: give at least one customer")
        if len(v) > MAX_CUSTOMERS_PER_REQUEST:
            raise ValueError(
                f"{info.field_name}: at most {MAX_CUSTOMERS_PER_REQUEST} customers per request (got {len(v)}); "
                "split the call"
            )
        return v

    @model_validator(mode="after")
    def _one_list(self) -> "NextActionRequest":
        if (self.customers is None) == (self.customer_ids is None):
            raise ValueError("customers / customer_ids: give exactly one of the two lists")
        ids = self.ids()
        if len(set(ids)) != len(ids):
            seen, dup = set(), []
            for c in ids:
                if c in seen and c not in dup:
                    dup.append(c)
                seen.add(c)
            field = "customers" if self.customers is not None else "customer_ids"
            raise ValueError(f"{field}: duplicate customer id(s) {dup[:5]}; list each customer once")
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
    activation: float = Field(ge=0, le=1, description="P(activation) used by the decision")
    churn: float = Field(ge=0, le=1, description="P(churn) used by the decision")
    response: dict[Channel, float] = Field(description="P(click) per channel at the customer's best hour")
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


class FeedbackRequest(_Model):
    """What happened to a decision's message."""

    decision_id: str = Field(pattern=UUID_PATTERN, description="decision_id of the /next_action answer")
    customer_id: CustomerId
    event: FeedbackEvent = Field(description="sent | delivered | opened | clicked | converted | unsubscribed")
    channel: Channel
    action_id: str = Field(pattern=ACTION_ID_PATTERN, max_length=64, description="action id of the catalogue")
    timestamp: AwareDatetime = Field(description="when it happened, ISO-8601 with offset")
    amount: float | None = Field(None, ge=0, description="conversion value, for converted events")

    @field_validator("action_id")
    @classmethod
    def _not_no_action(cls, v: str) -> str:
        if v == NO_ACTION:
            raise ValueError("action_id: no_action sends nothing, so it cannot have feedback")
        return v


class FeedbackResponse(BaseModel):
    accepted: bool
    decision_id: str
    event: FeedbackEvent


class ErrorResponse(BaseModel):
    error: str
    detail: Any = None
