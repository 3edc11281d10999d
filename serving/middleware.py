"""The front door of the HTTP service: one ASGI middleware in front of BentoML's routes.

In this order, for every request:

1. **Auth.** With ``serving.auth_token`` set, only liveness and readiness (``/livez``, ``/healthz``,
   ``/readyz``) answer without ``Authorization: Bearer <token>``; everything else, unknown paths
   included, is a 401 before anything is read.
2. **Routes.** Unknown paths are a 404, other methods a 405, in the one error shape.
3. **Bodies** of ``/next_action`` and ``/feedback``: ``application/json`` only (a missing
   Content-Type is read as JSON; anything else is a 415), at most ``serving.max_body_bytes`` (413),
   validated strictly against the models of ``serving.schemas`` (400 naming each field).
   ``/next_action`` is then answered here, on the event loop, by the service's ``next_actions``:
   BentoML's request handling around an API method (its context and response wrapping, the hop to a
   worker thread that then contends with the event loop for the GIL) cost more than the decision
   itself - one worker served about twice the single-customer requests per second this way. The
   requests that arrive while a worker is deciding wait for it and are then decided together, in
   one pass (``Batcher``): a lone request waits for nothing, and under load a worker pays the
   fixed cost of a decision (feature read, scoring, policy, log commit) once per batch instead of
   once per request. ``serving.workers`` processes run in parallel. ``/feedback`` (which may
   refresh a customer's online features from disk) goes on to BentoML's API method, with the
   validated request in the ASGI scope, so BentoML never parses, validates or logs a request body.
4. ``/docs.json`` (built once, ``serving.openapi``), ``/metrics`` (labels from a fixed set of route
   names, methods and status codes: no path, id or other customer data) and ``/health`` are
   answered here.

Anything unexpected becomes a 500 in the same shape, logged by exception type only: no log line
at any level carries a request's content.
"""

from __future__ import annotations

import asyncio
import gc
import json
import logging
import time
from dataclasses import dataclass
from functools import lru_cache
from http import HTTPStatus
from typing import Callable

import anyio
from pydantic import BaseModel, ValidationError

from serving.errors import ApiError, invalid
from serving.schemas import FeedbackRequest, NextActionRequest

log = logging.getLogger("nextbest.serving")
INPUT_KEY = "nextbest.input"  # where the validated request waits in the ASGI scope
PROBES = ("/livez", "/healthz", "/readyz")


@dataclass(frozen=True)
class Route:
    name: str  # the metrics label
    methods: tuple[str, ...]
    body: type[BaseModel] | None = None  # validated JSON body, handed on to the BentoML API method
    public: bool = False  # answers without the bearer token


ROUTES = {
    "/next_action": Route("next_action", ("POST",), NextActionRequest),
    "/feedback": Route("feedback", ("POST",), FeedbackRequest),
    "/health": Route("health", ("GET", "POST")),
    "/livez": Route("livez", ("GET",), public=True),
    "/healthz": Route("healthz", ("GET",), public=True),
    "/readyz": Route("readyz", ("GET",), public=True),
    "/metrics": Route("metrics", ("GET",)),
    "/docs.json": Route("docs", ("GET",)),
    "/": Route("ui", ("GET",)),
}
STATIC_PREFIX = "/static_content/"  # the Swagger UI's assets
STATUSES = {int(s) for s in HTTPStatus}


@lru_cache(maxsize=1)
def metrics():
    """The service's metrics, created once per process (BentoML aggregates them across workers)."""
    import bentoml

    return {
        "requests": bentoml.metrics.Counter(
            name="nextbest_requests", documentation="HTTP requests by route, method and status",
            labelnames=["route", "method", "status"]),
        "seconds": bentoml.metrics.Histogram(
            name="nextbest_request_seconds", documentation="HTTP request duration by route", labelnames=["route"],
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)),
        "decisions": bentoml.metrics.Counter(
            name="nextbest_decisions", documentation="decisions by action and channel",
            labelnames=["action", "channel"]),
        "batch": bentoml.metrics.Histogram(
            name="nextbest_batch_requests", documentation="/next_action requests decided together in one pass",
            buckets=(1, 2, 4, 8, 16, 32, 64, 128)),
        "feedback": bentoml.metrics.Counter(
            name="nextbest_feedback", documentation="feedback events recorded (retries excluded)",
            labelnames=["event"]),
    }


def validation_error(e: ValidationError) -> ApiError:
    """A pydantic error as a 400 naming every field (messages only, never the input values)."""
    details = []
    for err in e.errors(include_input=False, include_url=False, include_context=False):
        msg = err["msg"].removeprefix("Value error, ")
        field = ".".join(str(p) for p in err["loc"])
        if not field:  # a rule about the whole body: its message starts with the fields it is about
            head, sep, rest = msg.partition(": ")
            field, msg = (head, rest) if sep and " " not in head.replace(" / ", "/") else ("body", msg)
        if err["type"] == "json_invalid":
            field, msg = "body", f"not valid JSON ({msg})"
        details.append((field, msg))
    first_field, first_msg = details[0]
    more = f" (and {len(details) - 1} more)" if len(details) > 1 else ""
    return ApiError(HTTPStatus.BAD_REQUEST, "invalid_request", f"{first_field}: {first_msg}{more}", details)


Answer = tuple[int, bytes]  # status and JSON body
YOUNG = 700  # container allocations between two collections of the young generation (CPython's default)
AUTOMATIC_GC = (10 * YOUNG, 10, 10)  # CPython's own collections, only when a worker is never idle (gc.set_threshold)


def collect_between_requests() -> None:
    """Python's garbage collections, run when a flush has answered everything queued: the young generation past
    YOUNG allocations, an older one after ten collections of the one below (CPython's default rhythm). A
    collection then delays no decision already under way (the worker's own collections, with AUTOMATIC_GC, are
    left for the allocations of a worker that is never idle)."""
    young, middle, old = gc.get_count()
    if old >= 10:
        gc.collect(2)
    elif middle >= 10:
        gc.collect(1)
    elif young >= YOUNG:
        gc.collect(0)


class Batcher:
    """Decides the ``/next_action`` requests of one worker on its event loop, together when they arrive together.

    A request joins the queue; the first one schedules a flush for the loop's next turn. The requests read from
    the sockets in the same turn reach the queue a few turns later (BentoML's middlewares await in between), so
    the flush waits turn by turn while the queue still grows (at most ``MAX_TURNS``; each turn with nothing else
    to do costs microseconds, so a lone request hardly waits). A flush decides the queue in batches of at most
    ``max_customers`` customers (one call of ``decide_many``); requests that arrive meanwhile wait for the next
    flush. Should a batch fail unexpectedly, each of its requests is decided alone, so only the one at fault
    gets the 500."""

    MAX_TURNS = 8

    def __init__(self, decide_many: Callable[[list[NextActionRequest]], list[Answer]], max_customers: int):
        self.decide_many, self.max_customers = decide_many, max_customers
        self.queue: list[tuple[NextActionRequest, int, asyncio.Future]] = []
        self.scheduled = False

    async def __call__(self, req: NextActionRequest) -> Answer:
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        self.queue.append((req, len(req.ids()), future))
        if not self.scheduled:
            self.scheduled = True
            loop.call_soon(self.flush, loop, 1, len(self.queue))
        return await future

    def flush(self, loop: asyncio.AbstractEventLoop, turn: int, seen: int) -> None:
        if len(self.queue) > seen and turn < self.MAX_TURNS:  # still growing: let the others arrive
            loop.call_soon(self.flush, loop, turn + 1, len(self.queue))
            return
        self.scheduled = False
        while self.queue:
            batch, customers = [], 0
            while self.queue and (not batch or customers + self.queue[0][1] <= self.max_customers):
                item = self.queue.pop(0)
                batch.append(item)
                customers += item[1]
            self._decide([req for req, _, _ in batch], [f for _, _, f in batch])
        loop.call_soon(collect_between_requests)  # after the answers are written (their tasks run first)

    def _decide(self, reqs: list[NextActionRequest], futures: list[asyncio.Future]) -> None:
        metrics()["batch"].observe(len(reqs))
        try:
            answers = self.decide_many(reqs)
        except Exception as e:
            if len(reqs) > 1:
                for req, future in zip(reqs, futures):
                    self._decide([req], [future])
                return
            if not futures[0].done():
                futures[0].set_exception(e)
            return
        for future, answer in zip(futures, answers):
            if not future.done():  # a client that went away cancelled its wait; its decisions stay logged
                future.set_result(answer)


class Door:
    """What the front door needs, built once by the service at start (settings read once, passed in)."""

    def __init__(self, token: str | None, max_body: int, max_customers: int, document: dict,
                 health: Callable[[], dict], next_actions: Callable[[list[NextActionRequest]], list[Answer]]):
        self.token = token.encode() if token else None
        self.max_body, self.max_customers = max_body, max_customers
        self.document = json.dumps(document).encode()
        self.health = health
        self.next_action = Batcher(next_actions, max_customers)  # validated request -> (status, JSON body)

    def authorised(self, scope) -> bool:
        import hmac

        if self.token is None:
            return True
        header = dict(scope["headers"]).get(b"authorization", b"")
        scheme, _, token = header.partition(b" ")
        return scheme.lower() == b"bearer" and hmac.compare_digest(token.strip(), self.token)

    def check_body(self, route: Route, body: bytes) -> BaseModel:
        try:
            req = route.body.model_validate_json(body, strict=True)
        except ValidationError as e:
            raise validation_error(e) from None
        if isinstance(req, NextActionRequest):
            n = len(req.ids())
            if n > self.max_customers:
                field = "customers" if req.customers is not None else "customer_ids"
                raise invalid(field, f"at most {self.max_customers} customers per request (got {n}); split the call")
        return req


async def respond(send, status: int, body: bytes, content_type: bytes = b"application/json",
                  headers: tuple = ()) -> None:
    await send({"type": "http.response.start", "status": status, "headers": [
        (b"content-type", content_type), (b"content-length", str(len(body)).encode()), *headers]})
    await send({"type": "http.response.body", "body": body})


async def respond_error(send, e: ApiError) -> None:
    headers = ((b"www-authenticate", b'Bearer realm="nextbest"'),) if e.status == 401 else ()
    await respond(send, e.status, json.dumps(e.body()).encode(), headers=headers)


async def read_body(receive, limit: int) -> bytes:
    chunks, size = [], 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ApiError(HTTPStatus.BAD_REQUEST, "invalid_request", "body: the client disconnected")
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise too_large(limit)
        chunks.append(chunk)
        if not message.get("more_body"):
            return b"".join(chunks)


def too_large(limit: int) -> ApiError:
    return ApiError(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, "too_large",
                    f"body: larger than {limit} bytes (serving.max_body_bytes); split the call",
                    [("body", "too large")])


def _json_content_type(headers: dict) -> bool:
    value = headers.get(b"content-type")
    if value is None:
        return True
    media = value.split(b";")[0].strip().lower()
    return media == b"application/json"


class FrontDoor:
    """The ASGI middleware BentoML installs in front of the service's routes (see the module docstring).

    It reads its configuration from the running service instance (its ``door`` attribute), which is
    built in the service's ``__init__`` from the settings loaded there."""

    def __init__(self, app):
        self.app = app
        self._door: Door | None = None

    def door(self) -> Door:
        if self._door is None:
            from _bentoml_sdk.service import get_current_service

            self._door = get_current_service().door
        return self._door

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        t0 = time.perf_counter()
        path, method = scope["path"], scope["method"]
        route = ROUTES.get(path)
        label = route.name if route else ("static" if path.startswith(STATIC_PREFIX) else "other")
        status = {"code": 500}

        async def tracked(message) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            await send(message)

        try:
            await self._handle(scope, receive, tracked, route, path, method)
        except ApiError as e:
            await respond_error(tracked, e)
        except Exception as e:  # a bug: answered in the error shape, logged without any request content
            log.error("unexpected %s on route %s", type(e).__name__, label)
            await respond_error(tracked, ApiError(HTTPStatus.INTERNAL_SERVER_ERROR, "internal_error",
                                                  "internal error: retry later with the same request"))
        finally:
            m = metrics()
            code = status["code"]
            m["requests"].labels(route=label, method=method if method in ("GET", "POST") else "other",
                                 status=str(code) if code in STATUSES else "other").inc()
            m["seconds"].labels(route=label).observe(time.perf_counter() - t0)

    async def _handle(self, scope, receive, send, route: Route | None, path: str, method: str) -> None:
        door = self.door()
        public = route is not None and route.public
        if not public and not door.authorised(scope):
            raise ApiError(HTTPStatus.UNAUTHORIZED, "unauthorised",
                           "authorization: send the header 'Authorization: Bearer <token>' with the configured token",
                           [("authorization", "missing or wrong bearer token")])
        if route is None:
            if path.startswith(STATIC_PREFIX) and method == "GET":
                return await self.app(scope, receive, send)
            raise ApiError(HTTPStatus.NOT_FOUND, "not_found", f"path: not a route of this service; routes: "
                           f"{', '.join(ROUTES)}", [("path", "not a route")])
        if method not in route.methods:
            e = ApiError(HTTPStatus.METHOD_NOT_ALLOWED, "method_not_allowed",
                         f"method: {path} answers {', '.join(route.methods)}", [("method", "not allowed")])
            headers = ((b"allow", ", ".join(route.methods).encode()),)
            return await respond(send, e.status, json.dumps(e.body()).encode(), headers=headers)
        if route.name == "docs":
            return await respond(send, 200, door.document)
        if route.name == "metrics":
            from bentoml._internal.configuration.containers import BentoMLContainer

            client = BentoMLContainer.metrics_client.get()
            text = await anyio.to_thread.run_sync(client.generate_latest)
            return await respond(send, 200, text, content_type=client.CONTENT_TYPE_LATEST.encode())
        if route.name == "health":
            body = await anyio.to_thread.run_sync(door.health)
            return await respond(send, 200 if body["status"] == "ok" else 503, json.dumps(body).encode())
        if route.body is None:
            return await self.app(scope, receive, send)
        headers = dict(scope["headers"])
        if not _json_content_type(headers):
            raise ApiError(HTTPStatus.UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type",
                           "content-type: send the body as application/json", [("content-type", "not JSON")])
        length = headers.get(b"content-length")
        if length is not None and length.isdigit() and int(length) > door.max_body:
            raise too_large(door.max_body)
        body = await read_body(receive, door.max_body)
        req = door.check_body(route, body)
        if route.name == "next_action":  # answered here, on the event loop (see the module docstring)
            status, payload = await door.next_action(req)
            return await respond(send, status, payload)
        # hand the validated request on; BentoML gets an empty JSON object to parse
        inner = dict(scope, headers=[(k, v) for k, v in scope["headers"]
                                     if k not in (b"content-type", b"content-length")]
                     + [(b"content-type", b"application/json"), (b"content-length", b"2")])
        inner[INPUT_KEY] = req
        replayed = False

        async def replay():
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": b"{}", "more_body": False}
            return await receive()

        await self.app(inner, replay, send)
