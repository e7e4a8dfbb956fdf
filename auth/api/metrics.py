"""The API's metrics, in a registry of its own app: requests, latency, logins, 429s, hashing."""

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from auth.domain.passwords import PasswordHasher

# The routes that log a caller in (a user's password, or a service client's secret).
LOGIN_ROUTES = frozenset({"/auth/login", "/auth/token"})
# A login's answer, by status: what the caller was told.
_LOGIN_OUTCOME = {
    200: "success",
    401: "invalid_credentials",
    403: "refused",
    422: "invalid_request",
    429: "rate_limited",
    503: "unavailable",
}
# From a cached bearer request (~1 ms) up to a login flood's queueing.
_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class ApiMetrics:
    """The metrics one API app counts; made by create_app, never shared between apps."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "userbus_http_requests",
            "HTTP requests answered, by route template and status",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "userbus_http_request_duration_seconds",
            "time from a request's arrival to the end of its answer, by route template",
            ["method", "route"],
            buckets=_BUCKETS,
            registry=self.registry,
        )
        self.logins = Counter(
            "userbus_logins",
            "login attempts by outcome (POST /auth/login and /auth/token)",
            ["route", "outcome"],
            registry=self.registry,
        )
        self.rate_limited = Counter(
            "userbus_http_rate_limited",
            "requests answered 429 Too Many Requests, by route template",
            ["route"],
            registry=self.registry,
        )
        self.hash_queue = Gauge(
            "userbus_password_hash_queue_depth",
            "password hashing jobs waiting for a free hashing thread",
            registry=self.registry,
        )
        # Label children by key: `labels()` on every request would cost more than the
        # counting itself (a lock and a dict built per call).
        self._children: dict[tuple[str, str, int], tuple[Counter, Histogram]] = {}

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        """Count one answered request."""
        key = (method, route, status)
        children = self._children.get(key)
        if children is None:
            children = (
                self.requests.labels(method, route, str(status)),
                self.latency.labels(method, route),
            )
            self._children[key] = children
        children[0].inc()
        children[1].observe(seconds)
        if status == 429:
            self.rate_limited.labels(route).inc()
        if route in LOGIN_ROUTES and method == "POST":
            self.logins.labels(route, _LOGIN_OUTCOME.get(status, "error")).inc()

    def watch_hasher(self, hasher: PasswordHasher) -> None:
        """Report the hasher's queue at each scrape (a hasher without a queue reports 0)."""
        self.hash_queue.set_function(lambda: float(getattr(hasher, "waiting", 0)))
