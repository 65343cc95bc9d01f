"""One relay to a signing key (`services.relay_key_lock`), with real `flock` locks on a
temporary file: a second holder waits, says who holds the lock, takes it once the
first lets go, and stops at once when asked; a lock file deleted or replaced under
its holder is put back or stops it; a symbolic link, a FIFO or a file it may not open
at the lock path is said and waited on, never followed. Two `crm relay` processes:
tests/integration/test_relay_key_lock.py."""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
import sys
import threading
from collections.abc import MutableMapping
from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs

from services import relay_key_lock
from services.relay_key_lock import (
    LockFileUnusable,
    LockLost,
    RelayRunning,
    lock_path,
    no_relay_of,
    sole_relay_of,
)
from tests.e2e.processes import eventually


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


@pytest.fixture
def quick(monkeypatch: pytest.MonkeyPatch) -> None:
    """Retries and checks every 20 ms instead of every second (a constant, not a fake)."""
    monkeypatch.setattr(relay_key_lock, "RETRY_S", 0.02)


def _written_pid(path: Path) -> bool:
    return path.exists() and path.read_text() == f"{os.getpid()}\n"


@pytest.mark.usefixtures("quick")
def test_a_lock_file_deleted_under_its_holder_is_put_back_and_a_second_relay_waits(
    tmp_path: Path,
) -> None:
    """It holds a pid, so it looks like a stale pid file. Fails before: nothing put it
    back (and a second relay then locked a new file there and ran too)."""
    key = tmp_path / "audit.key"
    stop = threading.Event()
    with capture_logs() as lines, sole_relay_of(key, stop) as held:
        os.unlink(lock_path(key))
        eventually(lambda: _written_pid(lock_path(key)), within=30, what="the lock put back")
        assert _second_relay_waits(key, lines) == [False]
        assert held
        assert not stop.is_set()
    assert "relay lock file put back" in [line["event"] for line in lines]


def _second_relay_waits(key: Path, lines: list[MutableMapping[str, Any]]) -> list[bool]:
    stop = threading.Event()
    second: list[bool] = []

    def run_second() -> None:
        with sole_relay_of(key, stop) as held:
            second.append(held)

    waiting = threading.Thread(target=run_second)
    waiting.start()
    eventually(lambda: _said(lines, "relay waiting for its signing key"), within=30)
    stop.set()
    waiting.join(timeout=30)
    return second


def _said(lines: list[MutableMapping[str, Any]], event: str) -> MutableMapping[str, Any] | None:
    return next((line for line in lines if line["event"] == event), None)


@pytest.mark.usefixtures("quick")
def test_a_relay_whose_lock_file_another_relay_replaced_and_locked_stops(
    tmp_path: Path,
) -> None:
    """Fails before: it ran on beside the other (its stop never set, no error)."""
    key = tmp_path / "audit.key"
    other = tmp_path / "other.lock"
    other.write_text("12345\n")
    stop = threading.Event()
    other_relay = os.open(other, os.O_RDWR)
    try:
        fcntl.flock(other_relay, fcntl.LOCK_EX)
        with (  # noqa: PT012 - the block is the relay's life, lost in its course
            capture_logs() as lines,
            pytest.raises(LockLost) as lost,
            sole_relay_of(key, stop) as held,
        ):
            assert held
            os.replace(other, lock_path(key))  # locked by the other relay
            assert stop.wait(30), "the relay went on beside the other"
    finally:
        os.close(other_relay)
    assert "pid 12345 holds the lock file there now" in str(lost.value)
    said = _said(lines, "relay lost its signing key")
    assert said is not None
    assert said["why"] == "pid 12345 holds the lock file there now"


def test_a_waiter_that_locks_a_file_deleted_meanwhile_locks_the_one_there_now(
    tmp_path: Path,
) -> None:
    """A waiting relay keeps the file it opened; deleted and replaced meanwhile, the lock
    it then gets on it guards nothing. Fails before: it ran holding the deleted file,
    the one at the path free for a third."""
    key = tmp_path / "audit.key"
    path = lock_path(key)
    entered, release = threading.Event(), threading.Event()

    def run_second() -> None:
        with sole_relay_of(key, threading.Event()) as held:
            assert held
            entered.set()
            release.wait(30)

    first = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    fcntl.flock(first, fcntl.LOCK_EX)
    with capture_logs() as lines:
        waiting = threading.Thread(target=run_second)
        waiting.start()
        eventually(lambda: _said(lines, "relay waiting for its signing key"), within=30)
    os.unlink(path)
    replaced = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)  # by the first's keeper
    fcntl.flock(replaced, fcntl.LOCK_EX)
    os.close(first)
    os.close(replaced)
    try:
        assert entered.wait(30)
        probe = os.open(path, os.O_RDONLY)
        with pytest.raises(BlockingIOError):  # the second holds the file at the path
            fcntl.flock(probe, fcntl.LOCK_EX | fcntl.LOCK_NB)
        os.close(probe)
    finally:
        release.set()
        waiting.join(timeout=30)


@pytest.mark.usefixtures("quick")
def test_a_symbolic_link_at_the_lock_path_is_refused_and_its_target_left_whole(
    tmp_path: Path,
) -> None:
    """A link planted beside the key, to the key. Fails before: the relay locked the
    key through it and truncated it to its pid."""
    key = tmp_path / "audit.key"
    key.write_bytes(b"SECRET-KEY-BYTES\n")
    os.symlink(key, lock_path(key))
    assert _refused(key) == "it is a symbolic link, not a regular file: remove it"
    with pytest.raises(LockFileUnusable, match="symbolic link"), no_relay_of(key, "adopting"):
        pass
    assert key.read_bytes() == b"SECRET-KEY-BYTES\n"
    assert os.path.islink(lock_path(key))


@pytest.mark.usefixtures("quick")
def test_a_lock_path_that_is_not_a_regular_file_is_refused(tmp_path: Path) -> None:
    """Fails before: a FIFO was opened and locked, then truncating it raised EINVAL."""
    key = tmp_path / "audit.key"
    os.mkfifo(lock_path(key))
    assert _refused(key) == "it is a FIFO, not a regular file: remove it"
    with pytest.raises(LockFileUnusable, match="a FIFO"), no_relay_of(key, "adopting"):
        pass


def _refused(key: Path) -> str:
    """The why a relay logs (an error, once) while it waits on an unusable lock file;
    it takes nothing, and stops when asked."""
    stop = threading.Event()
    outcome: list[bool] = []

    def run() -> None:
        with sole_relay_of(key, stop) as held:
            outcome.append(held)

    with capture_logs() as lines:
        relay = threading.Thread(target=run)
        relay.start()
        said = eventually(lambda: _said(lines, "relay cannot lock its signing key"), within=30)
        stop.set()
        relay.join(timeout=30)
    assert outcome == [False]
    assert said["log_level"] == "error"
    assert said["lock"] == str(lock_path(key))
    return str(said["why"])


_UNPRIVILEGED = (
    ["setpriv", "--bounding-set=-dac_override,-dac_read_search"] if os.geteuid() == 0 else []
)  # root without the capabilities that let it open any file (mode bits then apply)
_RELAY_OF = (
    "import sys, threading, pathlib; from services.relay_key_lock import sole_relay_of\n"
    "with sole_relay_of(pathlib.Path(sys.argv[1]), threading.Event()) as held:\n"
    "    print('held', held, flush=True)"
)


@pytest.mark.skipif(
    os.geteuid() == 0 and shutil.which("setpriv") is None, reason="root, without setpriv"
)
def test_a_lock_file_the_relay_may_not_open_is_said_and_waited_on(tmp_path: Path) -> None:
    """A lock file made 0600 by root (`--adopt` run as root), here mode 000. Fails before:
    PermissionError, a traceback (a crash loop under a supervisor)."""
    key = tmp_path / "audit.key"
    lock_path(key).touch(mode=0o000)
    with subprocess.Popen(
        [*_UNPRIVILEGED, sys.executable, "-c", _RELAY_OF, str(key)],
        cwd=Path(__file__).parents[3],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    ) as relay:
        try:
            assert relay.stdout is not None
            said = relay.stdout.readline()
            assert "relay cannot lock its signing key" in said
            assert "Permission denied: the relay's user must be able to read and write" in said
            lock_path(key).chmod(0o666)  # the owner's (root's) own bits, for the relay
            assert relay.stdout.read().splitlines()[-1] == "held True"
            assert relay.wait(timeout=30) == 0
        finally:
            relay.kill()
