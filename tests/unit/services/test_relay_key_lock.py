"""One relay to a signing key (`services.relay_key_lock`), with real `flock` locks on a
temporary file: a second holder waits, says who holds the lock, takes it once the
first lets go, and stops at once when asked. Two `crm relay` processes:
tests/integration/test_relay_key_lock.py."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from services.relay_key_lock import RelayRunning, lock_path, no_relay_of, sole_relay_of


def test_the_holder_writes_its_pid_beside_the_key(tmp_path: Path) -> None:
    key = tmp_path / "keys" / "audit.key"
    with sole_relay_of(key, threading.Event()) as held:
        assert held
        assert lock_path(key).read_text() == f"{os.getpid()}\n"


def test_a_second_relay_waits_and_takes_over_when_the_first_lets_go(tmp_path: Path) -> None:
    key = tmp_path / "audit.key"
    second: list[bool] = []
    took = threading.Event()

    def run_second() -> None:
        with sole_relay_of(key, threading.Event()) as held:
            second.append(held)
            took.set()

    with capture_logs() as lines, sole_relay_of(key, threading.Event()):
        waiting = threading.Thread(target=run_second)
        waiting.start()
        while not any(line["event"] == "relay waiting for its signing key" for line in lines):
            assert not took.wait(0.01), "the second relay took a held lock"
    waiting.join(timeout=10)
    assert second == [True]
    said = next(line for line in lines if line["event"] == "relay waiting for its signing key")
    assert said["held_by"] == f"pid {os.getpid()}"
    assert said["lock"] == str(lock_path(key))


def test_a_waiting_relay_stops_when_asked(tmp_path: Path) -> None:
    key = tmp_path / "audit.key"
    stop = threading.Event()
    second: list[bool] = []

    def run_second() -> None:
        with sole_relay_of(key, stop) as held:
            second.append(held)

    with sole_relay_of(key, threading.Event()):
        waiting = threading.Thread(target=run_second)
        waiting.start()
        stop.set()
        waiting.join(timeout=10)
        assert not waiting.is_alive()
    assert second == [False]


def test_adopting_refuses_while_a_relay_holds_the_key_and_holds_it_otherwise(
    tmp_path: Path,
) -> None:
    """`crm audit checkpoint --adopt` rewrites `.published`, which the relay writes.
    Fails before: nothing kept it from running under a relay."""
    key = tmp_path / "audit.key"
    with sole_relay_of(key, threading.Event()):
        with pytest.raises(RelayRunning) as refused, no_relay_of(key, "adopting"):
            pass
        assert f"not adopting: a relay of this signing key is running (pid {os.getpid()}" in (
            str(refused.value)
        )
        assert str(lock_path(key)) in str(refused.value)
    stop = threading.Event()
    with capture_logs() as lines, no_relay_of(key, "adopting"):
        stop.set()  # a relay started meanwhile waits, and is told to stop
        with sole_relay_of(key, stop) as held:
            assert not held
    assert [line["event"] for line in lines] == ["relay waiting for its signing key"]
