"""The soak's `crm` processes, with no supervisor: each is started once, and started again
only right after the soak's own SIGKILL of it. Anything else that ends a process is a
failure the soak reports (`unexpected_exits`).

Each process writes its output to `<logs>/<role>.log`, appended across restarts.
I/O: child processes, their log files, /proc (a consumer's writer process).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

CRM = str(Path(sys.executable).with_name("crm"))


@dataclass
class Member:
    """One role ("api", "relay", "consume sales"): its current process and its history."""

    role: str
    args: tuple[str, ...]
    process: subprocess.Popen[bytes]
    kills: int = 0
    """SIGKILLs by the soak (each followed by a start)."""
    starts: int = 1


class Fleet:
    """The processes of one soak run, sharing one environment."""

    def __init__(self, env: dict[str, str], logs: Path) -> None:
        self.env, self.logs = env, logs
        self.members: dict[str, Member] = {}
        logs.mkdir(parents=True, exist_ok=True)

    def run(self, *args: str) -> str:
        """A short `crm` command to completion; its stdout."""
        done = subprocess.run(  # noqa: S603 - our own entry point, fixed arguments
            [CRM, *args], env=self.env, capture_output=True, text=True, timeout=600, check=False
        )
        if done.returncode != 0:
            raise RuntimeError(f"crm {' '.join(args)} failed: {done.stderr[-2000:]}")
        return done.stdout

    def start(self, role: str, *args: str) -> Member:
        member = Member(role, args, self._spawn(role, args))
        self.members[role] = member
        return member

    def kill(self, role: str) -> None:
        """SIGKILL the role's process, then start it again at once (the soak's own restart)."""
        member = self.members[role]
        member.process.send_signal(signal.SIGKILL)
        member.process.wait()
        member.kills += 1
        member.process = self._spawn(role, member.args)
        member.starts += 1

    def kill_writer(self, role: str) -> int:
        """SIGKILL the writer process of consumer `role` (not restarted by the soak)."""
        pid = self.members[role].process.pid
        (writer,) = children(pid)
        os.kill(writer, signal.SIGKILL)
        return writer

    def unexpected_exits(self) -> list[str]:
        """Roles whose process ended without the soak killing it, with the exit code."""
        return [
            f"{m.role} exited with {m.process.returncode}"
            for m in self.members.values()
            if m.process.poll() is not None
        ]

    def stop(self) -> None:
        """SIGTERM every process, then SIGKILL what is left after 30 s."""
        for member in self.members.values():
            if member.process.poll() is None:
                member.process.send_signal(signal.SIGTERM)
        for member in self.members.values():
            try:
                member.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                member.process.kill()
                member.process.wait()

    def log(self, role: str) -> Path:
        return self.logs / f"{role.replace(' ', '-')}.log"

    def _spawn(self, role: str, args: tuple[str, ...]) -> subprocess.Popen[bytes]:
        with self.log(role).open("ab") as out:
            return subprocess.Popen(  # noqa: S603 - our own entry point, fixed arguments
                [CRM, *args], env=self.env, stdout=out, stderr=out
            )


def children(pid: int) -> list[int]:
    """The child processes of `pid` (a consumer's writer process)."""
    return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
