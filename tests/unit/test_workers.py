"""until_one_fails: one worker's error stops the others after their step, never inside it."""

import asyncio

import pytest

from infra.workers import Worker, until_one_fails


async def test_a_failure_lets_the_others_finish_their_step_then_is_raised() -> None:
    steps: list[str] = []
    in_step = asyncio.Event()

    async def slow_step(halt: asyncio.Event) -> None:
        while not halt.is_set():
            in_step.set()
            await asyncio.sleep(0.05)  # a step no sibling's failure may cut short
            steps.append("done")

    async def failing(halt: asyncio.Event) -> None:
        await in_step.wait()
        raise ConnectionError("broker unavailable")

    with pytest.raises(ConnectionError, match="broker unavailable"):
        await until_one_fails(asyncio.Event(), [slow_step, failing])
    assert steps == ["done"]


async def test_stop_ends_every_worker_and_nothing_is_raised() -> None:
    stop = asyncio.Event()
    ended: list[int] = []

    def worker(number: int) -> Worker:
        async def work(halt: asyncio.Event) -> None:
            await halt.wait()
            ended.append(number)

        return work

    running = asyncio.create_task(until_one_fails(stop, [worker(1), worker(2)]))
    await asyncio.sleep(0.01)
    assert not running.done()
    stop.set()
    await asyncio.wait_for(running, 1)
    assert sorted(ended) == [1, 2]


async def test_only_the_first_of_several_errors_is_raised() -> None:
    async def fails(halt: asyncio.Event) -> None:
        raise ValueError("first")

    async def fails_later(halt: asyncio.Event) -> None:
        await asyncio.sleep(0.01)
        raise KeyError("second")

    with pytest.raises(ValueError, match="first"):
        await until_one_fails(asyncio.Event(), [fails, fails_later])


async def test_workers_that_finish_their_work_end_the_run() -> None:
    done: list[int] = []

    def worker(number: int) -> Worker:
        async def work(halt: asyncio.Event) -> None:
            await asyncio.sleep(0.01 * number)
            done.append(number)

        return work

    await asyncio.wait_for(until_one_fails(asyncio.Event(), [worker(2), worker(1)]), 1)
    assert done == [1, 2]
