"""Which of an aggregate's versions a projection takes (`consumers.projecting`).

The event store numbers an aggregate's events 1, 2, 3... and the relay publishes them
in that order to one partition, maybe more than once, so a projection meets each
aggregate's versions in order, with repeats. `Versions.take` says of a version whether
it is the next one (`TAKEN`), one applied already (`REPEAT`: skipped) or one past the
next (`EARLY`: a copied record, rejected); `taken` is what to save as applied.

I/O: none.
"""

from __future__ import annotations

from uuid import UUID

TAKEN, REPEAT, EARLY = 0, 1, 2
"""What `Versions.take` says of a version: the next one, one applied already, or one
past the next (see the module docstring)."""


class Versions:
    """The last version of each aggregate: which events to take, and what to save.

    Kept by `UUID.int`: a UUID hashes in Python (`uuid.UUID.__hash__`, about a thousand
    instructions) and its int in C, and a replay looks up every event's aggregate twice.
    Not `in_order` (a retry), every version past the last is taken.
    """

    def __init__(self, stored: dict[UUID, int], *, in_order: bool = True) -> None:
        self._last = {aggregate.int: version for aggregate, version in stored.items()}
        self._taken: dict[int, UUID] = {}
        self._in_order = in_order

    def take(self, aggregate: UUID, version: int) -> int:
        """`TAKEN` (and now the last), `REPEAT` or `EARLY`: see the constants."""
        number = aggregate.int
        last = self._last.get(number, 0)
        if version != last + 1:
            if version <= last:
                return REPEAT
            if self._in_order:
                return EARLY
        self._last[number] = version
        self._taken[number] = aggregate
        return TAKEN

    def last(self, aggregate: UUID) -> int:
        return self._last.get(aggregate.int, 0)

    def taken(self) -> dict[UUID, int]:
        """The last version taken per aggregate (the ones to save)."""
        return {aggregate: self._last[number] for number, aggregate in self._taken.items()}
