"""The API's metrics, in a registry of its own app: requests, latency, logins, 429s, hashing.

Every request is counted into plain dicts, turned into Prometheus metrics only when
scraped: prometheus-client's own counter and histogram take a lock and walk the buckets
on each call, several microseconds that each `GET /users/me` would pay
(bench/observe_overhead.py). The event loop is one thread, so the dicts need no lock.
"""

from bisect import bisect_left
from collections.abc import Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge
from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

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
BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class _Latency:
    """One route's latency histogram: a count per bucket (the last: above every bound)."""

    __slots__ = ("counts", "total")

    def __init__(self) -> None:
        self.counts = [0] * (len(BUCKETS) + 1)
        self.total = 0.0


class _RequestCollector(Collector):
    def __init__(self, metrics: "ApiMetrics") -> None:
        self._metrics = metrics

    def collect(self) -> Iterator[Metric]:
        requests = CounterMetricFamily(
            "userbus_http_requests",
            "HTTP requests answered, by route template and status",
            labels=["method", "route", "status"],
        )
        for (method, route, status), count in list(self._metrics.requests.items()):
            requests.add_metric([method, route, str(status)], count)
        latency = HistogramMetricFamily(
            "userbus_http_request_duration_seconds",
            "time from a request's arrival to the end of its answer, by route template",
            labels=["method", "route"],
        )
        for (method, route), histogram in list(self._metrics.latency.items()):
            cumulative, buckets = 0, []
            for bound, count in zip([*map(str, BUCKETS), "+Inf"], histogram.counts, strict=True):
                cumulative += count
                buckets.append((bound, cumulative))
            latency.add_metric([method, route], buckets, histogram.total)
        yield requests
        yield latency


class ApiMetrics:
    """The metrics one API app counts; made by create_app, never shared between apps."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry(auto_describe=True)
        self.requests: dict[tuple[str, str, int], int] = {}
        self.latency: dict[tuple[str, str], _Latency] = {}
        self.registry.register(_RequestCollector(self))
        # Logins and 429s are rare beside bearer reads: prometheus-client's own counters.
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

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        """Count one answered request."""
        key = (method, route, status)
        self.requests[key] = self.requests.get(key, 0) + 1
        histogram = self.latency.get((method, route))
        if histogram is None:
            histogram = self.latency[method, route] = _Latency()
        # bisect_left: a value equal to a bound belongs to that bound's bucket (le).
        histogram.counts[bisect_left(BUCKETS, seconds)] += 1
        histogram.total += seconds
        if status == 429:
            self.rate_limited.labels(route).inc()
        if route in LOGIN_ROUTES and method == "POST":
            self.logins.labels(route, _LOGIN_OUTCOME.get(status, "error")).inc()

    def watch_hasher(self, hasher: PasswordHasher) -> None:
        """Report the hasher's queue at each scrape (a hasher without a queue reports 0)."""
        self.hash_queue.set_function(lambda: float(getattr(hasher, "waiting", 0)))
