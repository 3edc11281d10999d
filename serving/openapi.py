"""The OpenAPI document served at ``/docs.json``, built once at start from the API's models and the
settings, so it says exactly what the service does: the configured request limit, the catalogue's
action ids, the feedback amount limit, whether a bearer token is required, and every status code
with its body (200 bodies typed, every error an :class:`serving.schemas.ErrorResponse`)."""

from __future__ import annotations

from pydantic.json_schema import models_json_schema

from nextbest.settings import Settings
from nextbest.vocabulary import NO_ACTION
from serving.schemas import (
    ErrorResponse,
    FeedbackRequest,
    FeedbackResponse,
    HealthResponse,
    NextActionRequest,
    NextActionResponse,
)

_REF = "#/components/schemas/{model}"
_ERRORS = {
    "400": "invalid request: the body names the field (do not retry as is)",
    "401": "missing or wrong bearer token",
    "404": "unknown decision_id",
    "409": "the feedback contradicts the decision or earlier feedback (do not retry)",
    "413": "request body larger than serving.max_body_bytes",
    "415": "the body is not application/json",
    "503": "a store the service needs is unavailable: retry later with the same request",
}


def _json(ref: str) -> dict:
    return {"application/json": {"schema": {"$ref": _REF.format(model=ref)}}}


def _errors(*codes: str) -> dict:
    return {c: {"description": _ERRORS[c], "content": _json("ErrorResponse")} for c in codes}


def _text(description: str) -> dict:
    return {"description": description, "content": {"text/plain": {"schema": {"type": "string"}}}}


def _drop_null_defaults(node) -> None:
    """Optional fields may be left out, never null: their schema carries no ``default: null``."""
    if isinstance(node, dict):
        if node.get("default", 0) is None and "anyOf" not in node:
            del node["default"]
        for v in node.values():
            _drop_null_defaults(v)
    elif isinstance(node, list):
        for v in node:
            _drop_null_defaults(v)


def openapi_document(settings: Settings) -> dict:
    models = [NextActionRequest, NextActionResponse, FeedbackRequest, FeedbackResponse, HealthResponse, ErrorResponse]
    _, top = models_json_schema([(m, "validation" if m.__name__.endswith("Request") else "serialization")
                                 for m in models], ref_template=_REF)
    schemas = top["$defs"]
    _drop_null_defaults(schemas)
    sv = settings.serving
    actions = list(settings.actions)
    req = schemas["NextActionRequest"]["properties"]
    for key in ("customers", "customer_ids"):
        req[key]["maxItems"] = sv.max_customers_per_request
    restrict = schemas["RequestContext"]["properties"]["restrict_actions"]
    next(s for s in restrict["anyOf"] if s.get("type") == "array")["items"]["enum"] = [*actions, NO_ACTION]
    schemas["CustomerDecision"]["properties"]["action"]["enum"] = [*actions, NO_ACTION]
    fb = schemas["FeedbackRequest"]["properties"]
    fb["action_id"]["enum"] = actions
    fb["amount"]["maximum"] = sv.max_feedback_amount
    secured = bool(sv.auth_token)

    def op(summary: str, responses: dict, body: str | None = None, public: bool = False) -> dict:
        o = {"summary": summary, "responses": responses}
        if body:
            o["requestBody"] = {"required": True, "content": _json(body)}
        if secured:
            o["security"] = [] if public else [{"bearer": []}]
            if not public:
                o["responses"] = {**o["responses"], **_errors("401")}
        return o

    health = op("Each dependency checked for real: feature store, pressure store, decision log, models", {
        "200": {"description": "every check ok", "content": _json("HealthResponse")},
        "503": {"description": "a check failed", "content": _json("HealthResponse")}})
    doc = {
        "openapi": "3.1.0",
        "info": {"title": "nextbest", "version": "1", "description": (
            "Next best action for journey engines. Errors: one shape (ErrorResponse); 4xx - fix the request, do "
            "not retry; 5xx or a timeout - retry with the same request_id / the same feedback event.")},
        "paths": {
            "/next_action": {"post": op(
                "Which action, on which channel, at what time - or nothing - for each customer, and why",
                {"200": {"description": "one decision per customer, in request order", "content": _json(
                    "NextActionResponse")}, **_errors("400", "413", "415", "503")}, body="NextActionRequest")},
            "/feedback": {"post": op(
                "What happened to a decision's message (idempotent per decision and event)",
                {"200": {"description": "recorded (or recognised as a retry: duplicate true)",
                         "content": _json("FeedbackResponse")}, **_errors("400", "404", "409", "413", "415", "503")},
                body="FeedbackRequest")},
            "/health": {"get": health, "post": health},
            "/livez": {"get": op("Liveness: the process answers", {"200": _text("alive")}, public=True)},
            "/healthz": {"get": op("Liveness (alias of /livez)", {"200": _text("alive")}, public=True)},
            "/readyz": {"get": op("Readiness: every dependency answers (see /health for which)",
                                  {"200": _text("ready"), "503": _text("not ready")}, public=True)},
            "/metrics": {"get": op("Prometheus metrics (bounded labels, no customer data)",
                                   {"200": _text("metrics in the Prometheus text format")})},
            "/docs.json": {"get": op("This document", {"200": {"description": "OpenAPI 3 document", "content": {
                "application/json": {"schema": {"type": "object"}}}}})},
            "/": {"get": op("Swagger UI", {"200": {"description": "HTML page", "content": {
                "text/html": {"schema": {"type": "string"}}}}})},
        },
        "components": {"schemas": schemas},
    }
    if secured:
        doc["components"]["securitySchemes"] = {"bearer": {"type": "http", "scheme": "bearer"}}
        doc["security"] = [{"bearer": []}]
    return doc
