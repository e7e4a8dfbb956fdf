"""The API's request metrics and the hasher's queue, counted and exported without a server."""

import asyncio

from prometheus_client import generate_latest

from auth.api.metrics import BUCKETS, ApiMetrics
from auth.domain.passwords import BcryptPasswordHasher


def page(metrics: ApiMetrics) -> str:
    """The metrics as a scrape sees them."""
    return generate_latest(metrics.registry).decode()


def test_requests_are_counted_by_method_route_and_status() -> None:
    metrics = ApiMetrics()
    metrics.observe("GET", "/users/me", 200, 0.002)
    metrics.observe("GET", "/users/me", 200, 0.003)
    metrics.observe("GET", "/users/me", 401, 0.001)
    text = page(metrics)
    assert 'userbus_http_requests_total{method="GET",route="/users/me",status="200"} 2.0' in text
    assert 'userbus_http_requests_total{method="GET",route="/users/me",status="401"} 1.0' in text


def test_latency_buckets_are_cumulative_and_a_bound_belongs_to_its_own_bucket() -> None:
    metrics = ApiMetrics()
    for seconds in (0.001, 0.0011, 0.3, 60.0):
        metrics.observe("GET", "/x", 200, seconds)
    text = page(metrics)
    bucket = 'userbus_http_request_duration_seconds_bucket{le="%s",method="GET",route="/x"}'
    assert f"{bucket % '0.001'} 1.0" in text  # exactly on the bound: le
    assert f"{bucket % '0.0025'} 2.0" in text
    assert f"{bucket % '0.5'} 3.0" in text
    assert f"{bucket % '10.0'} 3.0" in text
    assert f"{bucket % '+Inf'} 4.0" in text
    assert 'userbus_http_request_duration_seconds_count{method="GET",route="/x"} 4.0' in text
    total = 'userbus_http_request_duration_seconds_sum{method="GET",route="/x"} 60.3021'
    assert total in text
    assert len(BUCKETS) == 13


def test_logins_by_outcome_and_429s_by_route() -> None:
    metrics = ApiMetrics()
    for status in (200, 401, 401, 403, 422, 429, 503, 500):
        metrics.observe("POST", "/auth/login", status, 0.01)
    metrics.observe("POST", "/auth/token", 200, 0.01)
    metrics.observe("GET", "/auth/login", 405, 0.01)  # not a login attempt
    metrics.observe("POST", "/users", 429, 0.01)
    text = page(metrics)
    for outcome, count in (("success", 1), ("invalid_credentials", 2), ("refused", 1),
                           ("invalid_request", 1), ("rate_limited", 1), ("unavailable", 1),
                           ("error", 1)):  # fmt: skip
        line = f'userbus_logins_total{{outcome="{outcome}",route="/auth/login"}} {count}.0'
        assert line in text
    assert 'userbus_logins_total{outcome="success",route="/auth/token"} 1.0' in text
    assert 'userbus_http_rate_limited_total{route="/auth/login"} 1.0' in text
    assert 'userbus_http_rate_limited_total{route="/users"} 1.0' in text


async def test_the_hash_queue_depth_counts_jobs_waiting_for_a_thread() -> None:
    hasher = BcryptPasswordHasher(rounds=10, workers=1)
    metrics = ApiMetrics()
    metrics.watch_hasher(hasher)
    try:
        jobs = [asyncio.create_task(hasher.hash("a long passphrase")) for _ in range(3)]
        await asyncio.sleep(0.01)
        assert hasher.waiting == 2  # one hashing, two queued behind it
        assert "userbus_password_hash_queue_depth 2.0" in page(metrics)
        await asyncio.gather(*jobs)
        assert hasher.waiting == 0
        assert "userbus_password_hash_queue_depth 0.0" in page(metrics)
    finally:
        hasher.close()
