"""The BentoML service journey engines call: `POST /next_action`, `POST /feedback`.

Run it with `nextbest serve` or `bentoml serve serving.service:NextBest`.
Settings, the online feature store, the @champion boosters and the compiled
policy are loaded once, when the service starts.
"""

from __future__ import annotations

import gc
import hmac
import logging
from http import HTTPStatus

import bentoml
from starlette.responses import JSONResponse

from serving.schemas import FeedbackRequest, NextActionRequest

log = logging.getLogger("nextbest.serving")


def _error(ctx: bentoml.Context, status: HTTPStatus, message: str) -> dict:
    """A domain error as a JSON body {"error": ...} with its status code."""
    ctx.response.status_code = int(status)
    if status == HTTPStatus.UNAUTHORIZED:
        ctx.response.headers["WWW-Authenticate"] = 'Bearer realm="nextbest"'
    return {"error": message}


@bentoml.service(
    name="nextbest",
    workers=1,
    logging={"access": {"enabled": False}},
    traffic={"timeout": 30},
)
class NextBest:
    def __init__(self) -> None:
        from nextbest.settings import load_settings
        from serving.engine import Engine

        self.settings = load_settings()
        self.max_customers = self.settings.serving.max_customers_per_request
        self._token = self.settings.serving.auth_token
        self.engine = Engine(self.settings)
        gc.collect()
        gc.freeze()  # models, store and policy live for the whole process: keep them out of every GC pass
        log.info("nextbest ready: %s", self.engine.health())

    def _unauthorised(self, ctx: bentoml.Context) -> dict | None:
        if not self._token:
            return None
        header = ctx.request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(token.strip(), self._token):
            return _error(ctx, HTTPStatus.UNAUTHORIZED,
                          "authorization: send the header 'Authorization: Bearer <token>' with the configured token")
        return None

    @bentoml.api(route="/next_action", input_spec=NextActionRequest)
    def next_action(self, ctx: bentoml.Context, **fields) -> dict:
        """Which action, on which channel, at what time - or nothing - for each customer, and why."""
        denied = self._unauthorised(ctx)
        if denied:
            return denied
        n = len(fields.get("customers") or fields.get("customer_ids") or [])
        if n > self.max_customers:
            return _error(ctx, HTTPStatus.BAD_REQUEST,
                          f"customers: at most {self.max_customers} customers per request (got {n}); split the call")
        req = NextActionRequest.model_construct(**fields)
        body = {"request_id": req.request_id, "decisions": self.engine.decide(req)}
        return JSONResponse(body)  # serialised once, here (the records are plain JSON types)

    @bentoml.api(route="/feedback", input_spec=FeedbackRequest)
    def feedback(self, ctx: bentoml.Context, **fields) -> dict:
        """What happened to a decision's message: sent, delivered, opened, clicked, converted, unsubscribed."""
        from serving.engine import UnknownDecision

        denied = self._unauthorised(ctx)
        if denied:
            return denied
        try:
            return self.engine.feedback(FeedbackRequest.model_construct(**fields))
        except UnknownDecision as e:
            return _error(ctx, HTTPStatus.NOT_FOUND, str(e))

    @bentoml.api(route="/health")
    def health(self) -> dict:
        """Which models are loaded, which heads fall back, whether the feature store answers."""
        return self.engine.health()
