"""Each principal holds at most a few event streams open; every way a stream ends gives
its slot back, once."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import AsyncGenerator, AsyncIterator, Callable

import pytest

from services.api.errors import TooManyStreams, problem_for
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
    slots = StreamSlots(2)
    kept = [slots.open("sam", counting), slots.open("sam", counting)]
    with pytest.raises(TooManyStreams) as refused:
        slots.open("sam", counting)
    assert problem_for(refused.value)[:2] == (429, "too-many-streams")
    kept.append(slots.open("ann", counting))
    assert (slots.held("sam"), slots.held("ann"), len(kept)) == (2, 1, 3)


def test_a_stream_that_ends_gives_its_slot_back_once() -> None:
    slots = StreamSlots(1)

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
    slots = StreamSlots(1)

    async def first_only() -> None:
        stream = slots.open("sam", counting)
        async for _ in stream:
            break
        await stream.aclose()  # what a client going away does to the server's generator

    asyncio.run(first_only())
    assert slots.held("sam") == 0


def test_a_stream_never_started_gives_its_slot_back_when_collected() -> None:
    slots = StreamSlots(1)
    opened = slots.open("sam", counting)
    assert slots.held("sam") == 1
    del opened
    gc.collect()
    assert slots.held("sam") == 0
    assert slots.open("sam", counting) is not None


async def _drain(stream: AsyncIterator[int]) -> list[int]:
    return [item async for item in stream]
