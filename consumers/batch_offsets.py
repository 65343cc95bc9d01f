"""Which records of a batch the stored positions already cover (`consumers.projecting`).

A partition's stored position is the next offset its projection has to apply: a batch
read again after a rebalance or a restart starts below it, and those records are
dropped. `offset_ranges` gives each partition's lowest and last offset in a batch,
`fresh_items` the records left and the positions to store after them.

I/O: none.
"""

from __future__ import annotations

from collections.abc import Callable
from itertools import groupby
from operator import attrgetter
from typing import TypeVar

from consumers.kafka_records import Consumed
from consumers.readmodel_store import PositionKey

Placed = TypeVar("Placed", bound=Consumed)
"""A record of a batch (`consumers.projecting.Item`): its partition and offset."""

_partition: Callable[[Consumed], PositionKey] = attrgetter("topic", "partition")
_offset = attrgetter("offset")


def offset_ranges(items: list[Placed]) -> tuple[dict[PositionKey, int], dict[PositionKey, int]]:
    """The lowest and the last offset of each partition in `items`.

    By runs of one partition (how records arrive), so the per-item work runs in C.
    """
    lowest: dict[PositionKey, int] = {}
    last: dict[PositionKey, int] = {}
    for key, run in groupby(items, _partition):
        offsets = list(map(_offset, run))
        low = min(offsets)
        if low < lowest.get(key, low + 1):
            lowest[key] = low
        last[key] = offsets[-1]
    return lowest, last


def fresh_items(
    items: list[Placed],
    stored: dict[PositionKey, int],
    lowest: dict[PositionKey, int],
    last: dict[PositionKey, int],
) -> tuple[list[Placed], dict[PositionKey, int]]:
    """The items not covered by the stored positions, and the positions after them.

    Usually all of them, which one comparison per partition shows; items are filtered
    one by one only when some partition's lowest offset was stored already.
    """
    if all(offset >= stored.get(key, 0) for key, offset in lowest.items()):
        return items, {key: offset + 1 for key, offset in last.items()}
    fresh = [i for i in items if i.offset >= stored.get((i.topic, i.partition), 0)]
    return fresh, _next_offsets(fresh)


def _next_offsets(items: list[Placed]) -> dict[PositionKey, int]:
    offsets: dict[PositionKey, int] = {}
    for item in items:
        offsets[(item.topic, item.partition)] = item.offset + 1
    return offsets
