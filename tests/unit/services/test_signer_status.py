"""The signer's health as `/readyz` and `/metrics` see it, with a hand-written log.

F7 (red team): one undecodable checkpoint row ended the signer's thread with a
traceback, nothing was signed again, and `/readyz` said ready. The loop now survives
any failure and says how it is doing; the API also sees, from the store alone, a signer
that signs nothing although the log grows.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import msgspec
from prometheus_client import CollectorRegistry, generate_latest

from domain.checkpoint import Checkpoint
from services.api.pipeline_metrics import SignerCollector
from services.api.readiness import STALE_GRACE_S, SignerWatch
from services.audit_keys import load_or_create
from services.checkpointer import Checkpointer
from services.signer_status import FAILING_AFTER, running_signers

T = TypeVar("T")


class FakeLog:
    """The two reads the watch and `due()` make; `broken` makes them raise."""

    def __init__(self) -> None:
        self.head = 0
        self.signed: Checkpoint | None = None
        self.broken: Exception | None = None

    def latest_checkpoint(self) -> tuple[Checkpoint, bytes] | None:
        if self.broken is not None:
            raise self.broken
        return None if self.signed is None else (self.signed, b"")

    def last_position(self) -> int:
        return self.head

    def sign(self, position: int) -> None:
        self.signed = Checkpoint(
            position=position, tree_size=position, chain_head="", tree_head="",
            signed_at="2026-01-01T00:00:00+00:00", public_key="", signature="",
        )  # fmt: skip


class UpProbe:
    """A probe whose event store answers, and which asks its questions at once."""

    def event_store(self) -> str | None:
        return None

    def ask(self, question: str, read: Callable[[], T]) -> T:
        return read()


def _watch(log: FakeLog, now: list[float]) -> SignerWatch:
    return SignerWatch(log, 10.0, clock=lambda: now[0])  # type: ignore[arg-type]  # a fake


def test_a_signer_behind_the_log_for_three_intervals_is_reported() -> None:
    log, now = FakeLog(), [0.0]
    watch = _watch(log, now)
    log.head = 5
    assert watch.check() is None  # the wait starts now
    now[0] = 30 + STALE_GRACE_S - 1
    assert watch.check() is None
    now[0] += 2
    assert "nothing signed for" in (watch.check() or "")
    log.sign(5)
    assert watch.check() is None
    log.head = 9  # new events: a new wait, from the checkpoint that caught up
    now[0] += 30 + STALE_GRACE_S - 1
    assert watch.check() is None


def test_an_undecodable_newest_row_is_reported_at_once() -> None:
    log = FakeLog()
    log.broken = msgspec.DecodeError("JSON is malformed")
    problem = _watch(log, [0.0]).check()
    assert problem is not None
    assert "does not decode" in problem


def _until(condition: Callable[[], bool], seconds: float = 60.0) -> bool:
    """Whether `condition` came true within `seconds` (generous: a loaded CI machine
    may run the signer's thread rarely; a true condition returns at once)."""
    done, deadline = threading.Event(), time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            return False
        done.wait(0.01)
    return True


def test_the_loop_survives_any_error_and_readiness_and_metrics_say_so(tmp_path: Path) -> None:
    log = FakeLog()
    log.broken = RuntimeError("a bug, or a row nobody expected")
    signer = Checkpointer(
        log,  # type: ignore[arg-type]  # a fake with the reads `due()` makes
        load_or_create(tmp_path / "k.key"),
        every_events=1,
        every_seconds=0.01,
    )
    stop = threading.Event()
    thread = threading.Thread(target=signer.run, args=(stop, 0.01), daemon=True)
    thread.start()
    try:
        assert _until(lambda: signer.status.in_a_row >= FAILING_AFTER)
        assert thread.is_alive()
        assert signer.status in running_signers()
        problem = _watch(FakeLog(), [0.0]).check()
        assert problem is not None
        assert "RuntimeError: a bug" in problem
        registry = CollectorRegistry()
        probe: Any = UpProbe()  # the questions the collector asks the probe
        registry.register(SignerCollector(_watch(FakeLog(), [0.0]), probe))
        scraped = generate_latest(registry).decode()
        assert "crm_audit_signer_trouble 1.0" in scraped
        assert "crm_audit_checkpoint_failures_total" in scraped
        log.broken = None  # repaired: nothing new to sign, the next attempt succeeds
        assert _until(lambda: signer.status.trouble() is None)
    finally:
        stop.set()
        thread.join(timeout=60)
    assert signer.status not in running_signers()


def test_a_refusal_is_reported_at_once_a_blip_only_when_it_repeats() -> None:
    from services.checkpointer import CheckpointRefused
    from services.signer_status import SignerStatus

    status: Any = SignerStatus()
    assert status.failed(OSError("blip"), refused=False)
    assert status.trouble() is None
    assert not status.failed(OSError("blip"), refused=False)  # logged once
    status.succeeded()
    status.failed(CheckpointRefused("not signing: edited at position 3"), refused=True)
    assert status.trouble() == "refusing to sign: not signing: edited at position 3"
    assert status.refusals == 1


def test_the_loop_tells_its_report_each_change_of_trouble_once(tmp_path: Path) -> None:
    """`crm relay` signs where the API cannot see its status: the loop hands each change
    of its trouble to the relay's health row (F: a refusal showed only in its log)."""
    log = FakeLog()
    log.broken = RuntimeError("a bug")
    signer = Checkpointer(
        log,  # type: ignore[arg-type]  # a fake with the reads `due()` makes
        load_or_create(tmp_path / "k.key"),
        every_events=1,
        every_seconds=0.01,
    )
    told: list[str | None] = []
    stop = threading.Event()
    thread = threading.Thread(target=signer.run, args=(stop, 0.01, told.append), daemon=True)
    thread.start()
    try:
        assert _until(lambda: len(told) == 1)
        assert told[0] is not None
        assert told[0].startswith("audit signer failing")
        assert "RuntimeError: a bug" in told[0]
        stays = signer.status.in_a_row
        assert _until(lambda: signer.status.in_a_row > stays + 2)
        assert len(told) == 1  # the same trouble again is not news
        log.broken = None
        assert _until(lambda: len(told) == 2)
        assert told[1] is None
    finally:
        stop.set()
        thread.join(timeout=60)
