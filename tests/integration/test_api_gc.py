"""`userbus api` collects garbage less often and leaves start-up's objects out of collections."""

import asyncio
import gc
from collections.abc import Iterator

import httpx
import pytest

from auth.settings import AuthSettings
from tests.conftest import free_port
from userbus.run import run_api

pytestmark = pytest.mark.integration


@pytest.fixture
def restored_gc() -> Iterator[None]:
    """Give the test process its collector settings back afterwards."""
    threshold = gc.get_threshold()
    yield
    gc.set_threshold(*threshold)
    gc.unfreeze()


async def serving_threshold(settings: AuthSettings) -> tuple[int, int]:
    """The young-generation threshold and frozen object count while run_api serves."""
    stop = asyncio.Event()
    port = free_port()
    serving = asyncio.create_task(run_api(settings, stop, host="127.0.0.1", port=port))
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
            for _ in range(200):
                try:
                    if (await client.get("/healthz")).status_code == 200:
                        break
                except httpx.TransportError:
                    await asyncio.sleep(0.05)
        return gc.get_threshold()[0], gc.get_freeze_count()
    finally:
        stop.set()
        await serving


@pytest.mark.usefixtures("restored_gc")
async def test_the_api_raises_the_young_threshold_and_freezes_what_start_up_made(
    auth_settings: AuthSettings,
) -> None:
    gc.unfreeze()

    threshold, frozen = await serving_threshold(auth_settings)

    assert threshold == auth_settings.api_gc_threshold == 10_000
    assert frozen > 10_000


@pytest.mark.usefixtures("restored_gc")
async def test_a_threshold_of_zero_leaves_the_collector_alone(auth_settings: AuthSettings) -> None:
    gc.unfreeze()
    gc.set_threshold(700, 10, 10)

    threshold, frozen = await serving_threshold(
        auth_settings.model_copy(update={"api_gc_threshold": 0})
    )

    assert (threshold, frozen) == (700, 0)
