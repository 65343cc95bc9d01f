"""Personal values inside an aggregate's state, by path: what reads open of a kept
customer, and what commands open for a decision and set back to sealed values
afterwards (they hold every aggregate sealed, `services.commands`).

A path names an attribute, then keys of a dict and fields of a frozen msgspec Struct:
`("email",)`, `("messages", "m-1", "content")`. Setting a field of a Struct replaces
the Struct where it is held. Which paths hold an event's personal values the domain
says (`Aggregate.personal_targets`); commands set there the values their saved events
hold, as the store seals them.

I/O: none here; the keyring may fetch a key (callers hold it first on an event loop).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any
from uuid import UUID

import msgspec

from consumers.keyring import Keyring

Path = tuple[str, ...]


def value_at(root: object, path: Path) -> Any:
    """The value at `path`, or None where there is none."""
    if len(path) == 1:  # an attribute: most paths, and a read's every one
        return getattr(root, path[0], None)
    value: Any = root
    for step in path:
        value = value.get(step) if isinstance(value, dict) else getattr(value, step, None)
        if value is None:
            return None
    return value


def set_at(root: object, path: Path, value: Any) -> None:
    """`value` at `path`, in place (a Struct on the way replaced where it is held)."""
    if len(path) == 1:  # an attribute: most paths, and a read's every one
        setattr(root, path[0], value)
        return
    set_fields(root, path[:-1], {path[-1]: value})


def set_fields(root: object, holder_path: Path, fields: dict[str, Any]) -> None:
    """`fields` (names or keys, and values) set in the holder at `holder_path` (`root`
    itself for `()`), in place: a frozen Struct on the way is replaced by a copy in the
    holder above it, and so on up to the first mutable one."""
    if holder_path:
        step = holder_path[0]
        holder = root[step] if isinstance(root, dict) else getattr(root, step)
        if not isinstance(holder, msgspec.Struct):  # set in place, further down
            set_fields(holder, holder_path[1:], fields)
            return
        if (copy := _replaced(holder, holder_path[1:], fields)) is None:
            return
        fields = {step: copy}
    if isinstance(root, dict):
        root.update(fields)
    else:
        for name, value in fields.items():
            setattr(root, name, value)


def _replaced(
    struct: msgspec.Struct, holder_path: Path, fields: dict[str, Any]
) -> msgspec.Struct | None:
    """A copy of `struct` with `fields` set at `holder_path`; None when a mutable holder
    further down took them in place (nothing above it is replaced)."""
    if holder_path:
        step = holder_path[0]
        holder = getattr(struct, step)
        if not isinstance(holder, msgspec.Struct):
            set_fields(holder, holder_path[1:], fields)
            return None
        if (copy := _replaced(holder, holder_path[1:], fields)) is None:
            return None
        fields = {step: copy}
    return msgspec.structs.replace(struct, **fields)


def open_at(
    keyring: Keyring, root: object, subject: UUID, paths: Iterable[Path]
) -> dict[Path, str]:
    """The sealed values at `paths` (values of `subject`) opened in place, its key looked
    up once; None where there is no value. The sealed values opened, by path."""
    sealed = {path: value for path in paths if isinstance(value := value_at(root, path), str)}
    if sealed:
        open_value = keyring.subject_opener(subject)
        for path, value in sealed.items():
            set_at(root, path, open_value(value))
    return sealed


def set_each(root: object, values: Mapping[Path, str | None]) -> None:
    """Each of `values` at its path; the fields of one Struct replaced together."""
    by_holder: dict[Path, dict[str, str | None]] = {}
    for path, value in values.items():
        by_holder.setdefault(path[:-1], {})[path[-1]] = value
    for holder_path, fields in by_holder.items():
        set_fields(root, holder_path, fields)


def top_level(names: Sequence[str]) -> list[Path]:
    """Paths of attributes `names`."""
    return [(name,) for name in names]
