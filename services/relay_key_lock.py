"""One relay to a signing key: `<key file>.published.lock`, locked for the relay's life.

The relay writes the head it has published beside the signer's key
(`<key file>.published`, `services.audit_published`), and a stored position found past
that head is distrusted. Two relays given the same key file (a second one started by
hand, a supervisor's new replica before the old one has stopped, a shared volume) would
both write it, each its own head: the file would go back and forth between them, and
a relay restarted over it could take the other's head for its own. So a relay holds an
exclusive lock (`fcntl.flock`) on the lock file beside the key while it runs; the
kernel lets go of it when the process ends, however it ends.

A second relay waits for it rather than exit: supervisors restart a relay that exits,
so a refusal would only restart it over and over (a crash loop, alerts) while the
first one runs, and on a rolling restart the new relay could start only after a
back-off. Waiting, it takes over as soon as the first one stops. It says so once in
its log (the lock file and the pid holding it, which the holder writes into the file)
and writes no health row meanwhile: the row is the running relay's. SIGTERM stops it
at once. Nothing else is done before the lock is held: no connection, no topic.

`flock` locks are local to a host's kernel: two relays on two hosts sharing a network
file system are not kept apart by it (give each host's relay its own key file).

`crm audit checkpoint --adopt`, which may rewrite `<key file>.published` too, takes the
lock without waiting (`no_relay_of`) and refuses while a relay holds it.

I/O: the lock file beside the key.
"""

from __future__ import annotations

import fcntl
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import structlog

log = structlog.get_logger("crm.relay")

RETRY_S = 1.0
"""How often a waiting relay tries the lock again."""


def lock_path(key_file: Path) -> Path:
    """`<key file>.published.lock`: beside the key and the head it guards."""
    return key_file.with_name(key_file.name + ".published.lock")


class RelayRunning(Exception):  # noqa: N818 - reads as what happened
    """A relay holds the key's lock: what would rewrite its `.published` head refuses."""


@contextmanager
def sole_relay_of(key_file: Path, stop: threading.Event) -> Iterator[bool]:
    """Hold the key's relay lock for the block (True), waiting for another relay that
    holds it to stop; False, at once, if `stop` is set while waiting."""
    path = lock_path(key_file)
    path.parent.mkdir(parents=True, exist_ok=True)
    with _opened(path) as descriptor:
        held = _locked(descriptor, path, stop)
        if held:
            _write_pid(descriptor)
        yield held


@contextmanager
def no_relay_of(key_file: Path, doing: str) -> Iterator[None]:
    """Hold the key's relay lock for the block, without waiting: `RelayRunning`, naming
    the relay's pid, while a relay holds it. For `crm audit checkpoint --adopt` (`doing`),
    which rewrites `<key file>.published`, the file the running relay writes: the two
    would overwrite each other's head. A relay started meanwhile waits for it."""
    path = lock_path(key_file)
    with _opened(path) as descriptor:
        if not _try_lock(descriptor):
            raise RelayRunning(
                f"not {doing}: a relay of this signing key is running ({_holder(path)} holds"
                f" {path}) and writes the head beside the key; stop `crm relay`, then run"
                " this again"
            )
        _write_pid(descriptor)
        yield


@contextmanager
def _opened(path: Path) -> Iterator[int]:
    descriptor = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        yield descriptor
    finally:
        os.close(descriptor)  # lets go of the lock


def _write_pid(descriptor: int) -> None:
    """The holder's pid, for whoever finds the lock held (`_holder`)."""
    os.ftruncate(descriptor, 0)
    os.pwrite(descriptor, f"{os.getpid()}\n".encode(), 0)


def _locked(descriptor: int, path: Path, stop: threading.Event) -> bool:
    """Whether the lock was taken before `stop` was set (said once while waiting)."""
    waited = False
    while not _try_lock(descriptor):
        if not waited:
            log.warning(
                "relay waiting for its signing key", lock=str(path), held_by=_holder(path),
                why="another relay (or `crm audit checkpoint --adopt`) holds the lock beside"
                " the signing key (two relays on one key would both write its .published"
                " head); this one takes over when that one stops",
            )  # fmt: skip
            waited = True
        if stop.wait(RETRY_S):
            return False
    if waited:
        log.info("relay signing key free", lock=str(path))
    return True


def _try_lock(descriptor: int) -> bool:
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def _holder(path: Path) -> str:
    """The pid written by the relay holding the lock, as far as the file says."""
    try:
        text = path.read_text().strip()
    except OSError:
        text = ""
    return f"pid {text}" if text.isdigit() else "a relay (pid not written yet)"
