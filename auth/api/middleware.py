"""ObservedRequests: each request's id, trace context and metrics, as a pure ASGI middleware.

Pure ASGI rather than BaseHTTPMiddleware: that one runs the app in a task of its own and
wraps every response body, a cost each `GET /users/me` would pay (bench/me_vs_peer.py).
"""

from time import perf_counter

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from auth.api.metrics import ApiMetrics
from infra.observability.trace_context import (
    current_request_id,
    current_trace,
    request_id_from,
    trace_context,
)

REQUEST_ID_HEADER = b"x-request-id"


class ObservedRequests:
    """Sets the request id and trace context for the request, echoes the id, counts it."""

    def __init__(self, app: ASGIApp, metrics: ApiMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Handle one ASGI connection scope (lifespan and websockets pass through)."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given_id = parent = state = None
        for name, value in scope["headers"]:
            if name == REQUEST_ID_HEADER:
                given_id = value.decode("latin-1")
            elif name == b"traceparent":
                parent = value.decode("latin-1")
            elif name == b"tracestate":
                state = value.decode("latin-1")
        request_id = request_id_from(given_id)
        echoed = (REQUEST_ID_HEADER, request_id.encode("ascii"))
        status = 500  # what the server answers if the app raises before it starts a response

        async def send_observed(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message = {**message, "headers": [*message.get("headers", ()), echoed]}
            await send(message)

        id_token = current_request_id.set(request_id)
        trace_token = current_trace.set(trace_context(parent, state))
        started = perf_counter()
        try:
            await self.app(scope, receive, send_observed)
        finally:
            # The route template (`/users/{user_id}`), never the path: one series per route.
            route = getattr(scope.get("route"), "path", None) or "unmatched"
            self.metrics.observe(scope["method"], route, status, perf_counter() - started)
            current_trace.reset(trace_token)
            current_request_id.reset(id_token)
