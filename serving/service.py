"""The BentoML service journey engines call: `POST /next_action`, `POST /feedback`.

Run it with `nextbest serve` (``serving.workers`` processes) or `bentoml serve serving.service:NextBest`.
`/next_action` is answered by the front door with :meth:`NextBest.next_actions`; `/feedback` by the BentoML API
method below. Settings, the online feature store, the pressure store, the decision log, the @champion boosters and
the compiled policy are loaded once, when a worker starts. Every request first passes the front door
(``serving.middleware``): auth, routes, strict body validation, one error shape, docs and metrics.
"""

from __future__ import annotations

import gc
import json
import logging

import bentoml
from starlette.responses import JSONResponse

from serving.middleware import INPUT_KEY, FrontDoor

log = logging.getLogger("nextbest.serving")


class _NoRequestContent(logging.Filter):
    """BentoML logs a failed request with its traceback (which can quote the input): keep the line, drop the rest."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg, record.args = "a request failed inside BentoML (%s)", (record.levelname,)
        record.exc_info, record.exc_text, record.stack_info = None, None, None
        return True


@bentoml.service(
    name="nextbest",
    workers=1,  # `nextbest serve` sets serving.workers
    logging={"access": {"enabled": False}},
    metrics={"enabled": False},  # the front door serves /metrics with bounded labels
    traffic={"timeout": 30},
    # no OpenTelemetry span per decision request: about 0.4 ms of a single-customer request's 3 ms; an operator who
    # exports traces and wants these spans drops the entry (BENTOML_CONFIG_OVERRIDES, services.nextbest.tracing)
    tracing={"excluded_urls": ["/next_action"]},
)
class NextBest:
    def __init__(self) -> None:
        from nextbest.settings import load_settings
        from serving.engine import Engine
        from serving.middleware import AUTOMATIC_GC, Door
        from serving.openapi import openapi_document
        from serving.run import die_with_parent

        die_with_parent()  # the worker dies with its server (BentoML starts it in a session of its own)
        logging.getLogger("bentoml._internal.server.http_app").addFilter(_NoRequestContent())
        settings = load_settings()
        sv = settings.serving
        self.engine = Engine(settings)
        self.door = Door(sv.auth_token, sv.max_body_bytes, sv.max_customers_per_request,
                         openapi_document(settings), self.engine.health, self.next_actions)
        gc.collect()
        gc.freeze()  # models, store and policy live for the whole process: keep them out of every GC pass
        gc.set_threshold(*AUTOMATIC_GC)  # collections run between requests (middleware.collect_between_requests)
        log.info("nextbest ready: %s", self.engine.checks())

    def __is_ready__(self) -> bool:
        return all(v == "ok" for v in self.engine.checks().values())

    def next_actions(self, reqs: list) -> list[tuple[int, bytes]]:
        """Which action, on which channel, at what time - or nothing - for each customer, and why: the status and
        JSON body answered to each of several ``POST /next_action`` requests decided together (by the front
        door itself, see ``serving.middleware``)."""
        from serving.errors import ApiError
        from serving.middleware import metrics

        counter = metrics()["decisions"]
        out = []
        for req, res in zip(reqs, self.engine.answer_many(reqs)):
            if isinstance(res, ApiError):
                out.append((res.status, json.dumps(res.body()).encode()))
                continue
            records, texts = res
            for r in records:
                counter.labels(action=r["action"], channel=r["channel"] or "none").inc()
            body = '{"request_id":' + json.dumps(req.request_id) + ',"decisions":[' + ",".join(texts) + "]}"
            out.append((200, body.encode()))  # each decision serialised once
        return out

    @bentoml.api(route="/feedback")
    def feedback(self, ctx: bentoml.Context) -> dict:
        """What happened to a decision's message: sent, delivered, opened, clicked, converted, unsubscribed,
        cancelled."""
        from serving.errors import ApiError
        from serving.middleware import metrics

        fb = ctx.request.scope[INPUT_KEY]
        try:
            out = self.engine.feedback(fb)
        except ApiError as e:
            ctx.response.status_code = e.status  # BentoML answers with the context's status
            return JSONResponse(e.body(), status_code=e.status)
        if not out["duplicate"]:
            metrics()["feedback"].labels(event=fb.event).inc()
        return JSONResponse(out)


NextBest.add_asgi_middleware(FrontDoor)
