"""Each principal holds at most a few event streams open; every way a stream ends gives
its slot back, once."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import AsyncGenerator, AsyncIterator, Callable

import pytest

from services.api.http_errors import StreamsFull, TooManyStreams
from services.api.problem_table import problem_for
from services.api.stream_slots import StreamSlots


def counting(release: Callable[[], None]) -> AsyncGenerator[int, None]:
    async def stream() -> AsyncGenerator[int, None]:
        try:
            yield 1
            yield 2
        finally:
            release()

    return stream()


def test_a_principal_holding_all_its_slots_is_refused_and_others_are_not() -> None:
    slots = StreamSlots(2, per_process=100)
    kept = [slots.open("sam", counting), slots.open("sam", counting)]
    with pytest.raises(TooManyStreams) as refused:
        slots.open("sam", counting)
    assert problem_for(refused.value)[:2] == (429, "too-many-streams")
    kept.append(slots.open("ann", counting))
    assert (slots.held("sam"), slots.held("ann"), len(kept)) == (2, 1, 3)


def test_once_the_process_holds_its_most_every_principal_is_refused_until_one_ends() -> None:
    slots = StreamSlots(2, per_process=3)
    kept = [slots.open("sam", counting), slots.open("sam", counting), slots.open("ann", counting)]
    for principal in ("ann", "bob"):
        with pytest.raises(StreamsFull) as refused:
            slots.open(principal, counting)
        assert problem_for(refused.value)[:2] == (503, "streams-full")
    assert asyncio.run(_drain(kept.pop())) == [1, 2]  # ann's ends: a slot for anyone
    kept.append(slots.open("bob", counting))
    assert (slots.held("sam"), slots.held("ann"), slots.held("bob")) == (2, 0, 1)


def test_a_stream_that_ends_gives_its_slot_back_once() -> None:
    slots = StreamSlots(1, per_process=100)

    async def read_all() -> list[int]:
        return [item async for item in slots.open("sam", counting)]

    opened = slots.open("sam", counting)
    assert asyncio.run(_drain(opened)) == [1, 2]
    del opened
    gc.collect()  # the finalizer after `finally`: still one slot given back, not two
    assert slots.held("sam") == 0
    assert asyncio.run(read_all()) == [1, 2]
    assert slots.held("sam") == 0


def test_a_stream_cut_off_midway_gives_its_slot_back() -> None:
    slots = StreamSlots(1, per_process=100)

    async def first_only() -> None:
        stream = slots.open("sam", counting)
        async for _ in stream:
            break
        await stream.aclose()  # what a client going away does to the server's generator

    asyncio.run(first_only())
    assert slots.held("sam") == 0


def test_a_stream_never_started_gives_its_slot_back_when_collected() -> None:
    slots = StreamSlots(1, per_process=100)
    opened = slots.open("sam", counting)
    assert slots.held("sam") == 1
    del opened
    gc.collect()
    assert slots.held("sam") == 0
    assert slots.open("sam", counting) is not None


async def _drain(stream: AsyncIterator[int]) -> list[int]:
    return [item async for item in stream]
