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

The lock is only as good as the file at the path. It is never opened through a symbolic
link (a link planted there would have its target, the signing key, truncated), and only
a regular file is used. One the relay may not open (made 0600 by `--adopt` run as root)
or cannot use is said once, with why, and the relay waits as for a held lock. A lock is
kept only if the path still names the file locked. The file holds a pid, so it looks
like a stale pid file: deleted or replaced under its holder, a second relay would lock a
new one there and both would run. So the holder looks every `RETRY_S` and locks a new
file there at once, or, should another relay have locked one first, logs an error naming
it, sets its `stop` and leaves its block with `LockLost` (restarted, it then waits).

I/O: the lock file beside the key.
"""

from __future__ import annotations

import errno
import fcntl
import os
import stat
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import structlog

log = structlog.get_logger("crm.relay")

RETRY_S = 1.0
"""How often a waiting relay tries the lock again, and a holding one checks its file."""

_OPEN_FLAGS = (
    os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK | os.O_NOCTTY
)  # O_NONBLOCK: a FIFO planted there is refused, not waited on
_KINDS = {
    stat.S_IFLNK: "a symbolic link",
    stat.S_IFDIR: "a directory",
    stat.S_IFIFO: "a FIFO",
    stat.S_IFCHR: "a device",
}  # anything else but a regular file: "not a regular file"
_WAITING_WHY = (
    "another relay (or `crm audit checkpoint --adopt`) holds the lock beside the signing"
    " key (two relays on one key would both write its .published head); this one takes"
    " over when that one stops"
)


def lock_path(key_file: Path) -> Path:
    """`<key file>.published.lock`: beside the key and the head it guards."""
    return key_file.with_name(key_file.name + ".published.lock")


class RelayRunning(Exception):  # noqa: N818 - reads as what happened
    """A relay holds the key's lock: what would rewrite its `.published` head refuses."""


class LockFileUnusable(Exception):  # noqa: N818 - reads as what happened
    """The file at the lock path cannot be locked: not a regular file, or not openable."""

    def __init__(self, path: Path, why: str) -> None:
        super().__init__(f"cannot lock {path}: {why}")
        self.why = why


class LockLost(Exception):  # noqa: N818 - reads as what happened
    """The lock file was deleted or replaced under the relay and another locked the new
    one: the relay was stopped (its `stop` set); it leaves its block with this."""


@contextmanager
def sole_relay_of(key_file: Path, stop: threading.Event) -> Iterator[bool]:
    """Hold the key's relay lock for the block (True), waiting for another relay that
    holds it to stop; False, at once, if `stop` is set while waiting. Lost to another
    relay meanwhile (see the module): `stop` is set, and `LockLost` raised at the end."""
    path = lock_path(key_file)
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor = _Taking(path).wait(stop)
    if descriptor is None:
        yield False
        return
    _write_pid(descriptor)
    kept = _Kept(path, descriptor, stop)
    try:
        yield True
    finally:
        lost = kept.finish()  # lets go of the lock
    if lost is not None:
        raise LockLost(f"stopped: {path}, held, was deleted or replaced, and {lost}")


@contextmanager
def no_relay_of(key_file: Path, doing: str) -> Iterator[None]:
    """Hold the key's relay lock for the block, without waiting: `RelayRunning`, naming
    the relay's pid, while a relay holds it. For `crm audit checkpoint --adopt` (`doing`),
    which rewrites `<key file>.published`, the file the running relay writes: the two
    would overwrite each other's head. A relay started meanwhile waits for it.
    `LockFileUnusable` if the file there is not one to lock (see the module)."""
    path = lock_path(key_file)
    descriptor = _opened(path)
    try:
        if not _try_lock(descriptor):
            raise RelayRunning(
                f"not {doing}: a relay of this signing key is running ({_holder(descriptor)}"
                f" holds {path}) and writes the head beside the key; stop `crm relay`, then"
                " run this again"
            )
        if not _names(path, descriptor):
            raise LockFileUnusable(path, "replaced while this locked it; run this again")
        _write_pid(descriptor)
        yield
    finally:
        os.close(descriptor)  # lets go of the lock


class _Taking:
    """Taking the lock at a path, waiting. The file opened is kept while another holds
    it: deleted meanwhile, its holder puts a new one there (`_Kept`); the old one, once
    locked, is found not to be the path's, and the one there now is opened."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._descriptor: int | None = None
        self._said: str | None = None

    def wait(self, stop: threading.Event) -> int | None:
        """The lock file, opened and locked; None if `stop` was set first."""
        while (descriptor := self._attempt()) is None:
            if stop.wait(RETRY_S):
                if self._descriptor is not None:
                    os.close(self._descriptor)
                return None
        if self._said is not None:
            log.info("relay signing key free", lock=str(self._path))
        return descriptor

    def _attempt(self) -> int | None:
        try:
            if self._descriptor is None:
                self._descriptor = _opened(self._path)
        except LockFileUnusable as error:
            self._say("relay cannot lock its signing key", why=error.why)
            return None
        if not _try_lock(self._descriptor):
            self._say("relay waiting for its signing key", held_by=_holder(self._descriptor))
            return None
        descriptor, self._descriptor = self._descriptor, None
        if _names(self._path, descriptor):
            return descriptor
        os.close(descriptor)  # deleted or replaced since opened: the file there now, next
        return None

    def _say(self, event: str, **fields: str) -> None:
        """Once a reason: waiting for another relay (a warning), or an unusable file."""
        if event != self._said:
            self._said = event
            if "held_by" in fields:
                log.warning(event, lock=str(self._path), why=_WAITING_WHY, **fields)
            else:
                log.error(event, lock=str(self._path), **fields)


class _Kept:
    """The lock held: every `RETRY_S` (a thread of its own), whether the path still
    names the file locked; if not, a new one locked there at once, or the relay stopped."""

    def __init__(self, path: Path, descriptor: int, stop: threading.Event) -> None:
        self._path, self._descriptor, self._stop = path, descriptor, stop
        self._lost: str | None = None
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._keep, name="relay-key-lock", daemon=True)
        self._thread.start()

    def finish(self) -> str | None:
        """Let go of the lock; why it was lost, if it was."""
        self._done.set()
        self._thread.join()
        os.close(self._descriptor)
        return self._lost

    def _keep(self) -> None:
        while not self._done.wait(RETRY_S):
            if not _names(self._path, self._descriptor):
                try:
                    self._lost = self._relocked()
                except OSError as error:  # no lock: the relay must not run on unchecked
                    self._lost = f"the lock file there could not be locked: {error}"
                if self._lost is not None:
                    log.error(
                        "relay lost its signing key", lock=str(self._path), why=self._lost,
                        stopping="the lock file this relay held was deleted or replaced,"
                        " and it could not lock the one there now: it stops (two relays on"
                        " one key would both write its .published head)",
                    )  # fmt: skip
                    self._stop.set()
                    return

    def _relocked(self) -> str | None:
        """A new lock file locked at the path (None), or why not."""
        try:
            fresh = _opened(self._path)
        except LockFileUnusable as error:
            return error.why
        if not _try_lock(fresh):
            held_by = _holder(fresh)
            os.close(fresh)
            return f"{held_by} holds the lock file there now"
        if not _names(self._path, fresh):  # replaced again meanwhile: next time
            os.close(fresh)
            return None
        _write_pid(fresh)
        os.close(self._descriptor)
        self._descriptor = fresh
        log.warning(
            "relay lock file put back", lock=str(self._path),
            why="the lock file this relay held was deleted or replaced: a new one is held",
        )  # fmt: skip
        return None


def _opened(path: Path) -> int:
    """The lock file, made if missing: never through a symbolic link, never anything
    but a regular file, else `LockFileUnusable` saying why."""
    try:
        descriptor = os.open(path, _OPEN_FLAGS, 0o600)
    except OSError as error:
        raise LockFileUnusable(path, _why_not(path, error)) from error
    if stat.S_ISREG(os.fstat(descriptor).st_mode):
        return descriptor
    os.close(descriptor)
    raise LockFileUnusable(path, _why_not(path, None))


def _why_not(path: Path, error: OSError | None) -> str:
    try:
        kind = _KINDS.get(stat.S_IFMT(os.lstat(path).st_mode))
    except OSError:
        kind = None
    if kind is not None:
        return f"it is {kind}, not a regular file: remove it"
    if error is None or error.errno in (errno.ELOOP, errno.EISDIR):
        return "it is not a regular file: remove it"
    if isinstance(error, PermissionError):
        return (
            f"{error.strerror}: the relay's user must be able to read and write it (one"
            " made by root, e.g. by `crm audit checkpoint --adopt` run as root, is not);"
            " give it to that user, or remove it while no relay runs"
        )
    return error.strerror or str(error)


def _names(path: Path, descriptor: int) -> bool:
    """Whether `path` still names the file open at `descriptor` (not deleted, replaced)."""
    try:
        named = os.stat(path, follow_symlinks=False)
    except OSError:
        return False
    held = os.fstat(descriptor)
    return (named.st_dev, named.st_ino) == (held.st_dev, held.st_ino)


def _write_pid(descriptor: int) -> None:
    """The holder's pid, for whoever finds the lock held (`_holder`)."""
    os.ftruncate(descriptor, 0)
    os.pwrite(descriptor, f"{os.getpid()}\n".encode(), 0)


def _try_lock(descriptor: int) -> bool:
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def _holder(descriptor: int) -> str:
    """The pid written by the relay holding the lock, as far as the file says."""
    text = os.pread(descriptor, 32, 0).decode(errors="replace").strip()
    return f"pid {text}" if text.isdigit() else "a relay (pid not written yet)"
