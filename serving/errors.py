"""Every error the API answers, in one shape.

An error body is always::

    {"error": "<one line naming the field and what is wrong>", "code": "<machine code>",
     "details": [{"field": "<dotted path, e.g. customers.3.context.trigger_timestamp>", "message": "..."}]}

``details`` is a list (empty when no single field is at fault). What a status code means for a
journey engine's retries: 4xx - do not retry the same request (fix it first); 5xx and timeouts -
retry with the same ``request_id`` (decisions) or the same event (feedback): both are idempotent.
"""

from __future__ import annotations

from http import HTTPStatus
from typing import Iterable


class ApiError(Exception):
    """A request the service refuses, with its status, machine code and the fields at fault."""

    def __init__(self, status: HTTPStatus | int, code: str, message: str,
                 details: Iterable[tuple[str, str]] = ()):
        super().__init__(message)
        self.status, self.code, self.message = int(status), code, message
        self.details = [{"field": f, "message": m} for f, m in details]

    def body(self) -> dict:
        return {"error": self.message, "code": self.code, "details": self.details}


def field_error(status: HTTPStatus | int, code: str, field: str, message: str) -> ApiError:
    """An error about one field: the message starts with the field's name."""
    return ApiError(status, code, f"{field}: {message}", [(field, message)])


def invalid(field: str, message: str) -> ApiError:
    return field_error(HTTPStatus.BAD_REQUEST, "invalid_request", field, message)


def unknown_decision(decision_id: str) -> ApiError:
    return field_error(HTTPStatus.NOT_FOUND, "unknown_decision", "decision_id",
                       f"{decision_id} was not issued by this service")


def conflict(field: str, message: str) -> ApiError:
    """The request contradicts what the service recorded (the decision, earlier feedback)."""
    return field_error(HTTPStatus.CONFLICT, "conflicts_with_decision", field, message)


def unavailable(what: str) -> ApiError:
    return ApiError(HTTPStatus.SERVICE_UNAVAILABLE, "unavailable",
                    f"{what} is unavailable: retry later with the same request")
