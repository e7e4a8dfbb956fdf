"""Workers that stop together without cutting one another's step short, and their waits."""

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Sequence

Worker = Callable[[asyncio.Event], Awaitable[None]]
"""Works until the event it is given is set; checks it between steps, never inside one."""


async def until_one_fails(stop: asyncio.Event, workers: Sequence[Worker]) -> None:
    """Run `workers` until each has returned: `stop` set, work done, or one raised. Then
    raise the first error, if any.

    A failing worker sets the others' event instead of raising into a task group: raised, it
    would cancel a sibling inside its step (the relay between a batch's publish and its
    commit, the notifier between a send and its mark: published, or sent, twice). The others
    end their step, then stop.
    """
    halt = asyncio.Event()
    failed: list[Exception] = []

    async def guarded(worker: Worker) -> None:
        try:
            await worker(halt)
        except Exception as exc:
            failed.append(exc)
            halt.set()

    async with asyncio.TaskGroup() as group:
        watcher = group.create_task(_halt_on(stop, halt))
        await asyncio.gather(*(guarded(worker) for worker in workers))
        watcher.cancel()
    if failed:
        raise failed[0]


async def _halt_on(stop: asyncio.Event, halt: asyncio.Event) -> None:
    await wait_any(stop, halt, None)
    halt.set()


async def wait(stop: asyncio.Event, seconds: float) -> None:
    """Sleep `seconds`, or less when `stop` is set meanwhile."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), timeout=seconds)


async def wait_any(stop: asyncio.Event, wake: asyncio.Event, seconds: float | None) -> None:
    """Sleep until `stop` or `wake` is set, or `seconds` (None: no limit) have passed."""
    waiters = [asyncio.ensure_future(stop.wait()), asyncio.ensure_future(wake.wait())]
    try:
        await asyncio.wait(waiters, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()
