"""What `crm audit verify` gathers before it walks, and how it reports.

* the pinned public key: `--public-key`, else the signing key file's own
  (`CRM_AUDIT_KEY_FILE`); never the key a checkpoint names;
* the checkpoints: the store's and an auditor's own file (`--checkpoints`: JSON lines,
  or what `GET /v1/audit/checkpoints` answered), evidence; and, apart, those on Kafka
  (`--kafka`), which anyone with produce rights can write (`services.audit_verify`);
* the comparisons: the Kafka records (`--kafka`).

I/O: the key file, the checkpoints file, Kafka.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import msgspec

from domain import checkpoint as checkpoints
from domain.checkpoint import Checkpoint
from services.audit_keys import KeyFileError, load_existing, read_public_key
from services.audit_log import AuditLog
from services.audit_verify import Comparison, Report
from services.bootstrap import require_kafka
from services.settings import ConfigError, Settings


class _Page(msgspec.Struct):
    items: list[Checkpoint]


def pinned_key(given: str | None, settings: Settings) -> bytes:
    if given is not None:
        try:
            return read_public_key(given)
        except KeyFileError as error:
            raise ConfigError("--public-key", str(error)) from None
    try:
        if settings.audit_key_file.exists():
            return load_existing(settings.audit_key_file).public_key
    except KeyFileError as error:
        raise ConfigError("CRM_AUDIT_KEY_FILE", str(error)) from None
    raise ConfigError(
        "CRM_AUDIT_KEY_FILE",
        f"no signing key at {settings.audit_key_file} to check checkpoints against: pass"
        " --public-key (`crm audit public-key` on the signing host prints it)",
    )


def checkpoints_to_check(
    log: AuditLog, settings: Settings, kept: Path | None, *, kafka: bool
) -> tuple[list[Checkpoint], Iterable[Checkpoint]]:
    """The checkpoints vouched for (the store's, `kept`), and those read from Kafka
    (as the walk consumes them: untrusted, see `services.audit_verify`)."""
    found = log.checkpoints()
    if kept is not None:
        found += read_kept(kept)
    if not kafka:
        return found, ()
    from services.checkpoint_topic import read_checkpoints

    require_kafka(settings)
    return found, read_checkpoints(settings.kafka_bootstrap, settings.topic_prefix)


def read_kept(path: Path) -> list[Checkpoint]:
    """Checkpoints from a file: the API's answer (`{"items": [...]}`) or JSON lines."""
    try:
        text = path.read_bytes()
    except OSError as error:
        raise ConfigError("--checkpoints", f"cannot read {path}: {error.strerror}") from None
    try:
        return msgspec.json.decode(text, type=_Page).items
    except msgspec.DecodeError:
        pass
    try:
        return [checkpoints.decode(line) for line in text.splitlines() if line.strip()]
    except msgspec.DecodeError as error:
        raise ConfigError("--checkpoints", f"{path}: not checkpoints: {error}") from None


def comparisons(log: AuditLog, settings: Settings, *, kafka: bool) -> list[Comparison]:
    if not kafka:
        return []
    from services.audit_kafka import kafka_comparison

    require_kafka(settings)
    return [kafka_comparison(settings.kafka_bootstrap, settings.topic_prefix, log.relay_position())]


def summary(report: Report) -> str:
    """What an auditor reads: the range, the checkpoints, what no signature covers yet,
    the head, and the result: intact, intact but unsigned, or the first break."""
    span = f"positions {report.first}..{report.last}" if report.first is not None else "none"
    lines = [
        f"events       {report.events} ({span})",
        f"checkpoints  {report.checkpoints} matched"
        + ("" if report.tree_checked else " (chain heads only: --from skips tree heads)")
        + (f", {report.ignored} ignored" if report.ignored else ""),
        *([f"warning      {_ignored(report)}"] if report.ignored else []),
        *([f"unsigned     {_unsigned(report)}"] if report.broken is None else []),
        f"chain head   {report.chain_head}",
    ]
    if report.broken is None and report.signed_upto is None:
        lines.append(
            "result       intact but UNSIGNED: no signed checkpoint lies in the range walked;"
            " a store rewritten or emptied with its links and checkpoints looks the same"
            " (check against checkpoints kept elsewhere: --checkpoints, --kafka)"
        )
    elif report.broken is None:
        lines.append("result       intact")
    else:
        broken = report.broken
        lines.append(f"result       BROKEN: {broken.kind} at position {broken.position}")
        lines.append(f"             {broken.detail}")
    return "\n".join(lines)


def _ignored(report: Report) -> str:
    positions = ", ".join(map(str, report.ignored_positions))
    more = ", ..." if report.ignored > len(report.ignored_positions) else ""
    return (
        f"{report.ignored} checkpoints on Kafka do not carry a valid signature of the pinned"
        f" key (claiming positions {positions}{more}): ignored, as anyone who can produce to"
        " the topic can write one; the log was checked against the others"
    )


def _unsigned(report: Report) -> str:
    if report.signed_upto is None:
        return f"{report.unsigned} events, no signed checkpoint covers any of them"
    return (
        f"{report.unsigned} events after the last signed checkpoint"
        f" (position {report.signed_upto}), not yet signed"
    )


def exit_code(report: Report) -> int:
    """1: a break; 3: no break, but no signed checkpoint anchored the walk; 0: intact.
    Ignored checkpoints (Kafka's, badly signed) change none of these: they are a warning
    about the topic, not evidence about the log."""
    if report.broken is not None:
        return 1
    return 3 if report.signed_upto is None else 0
