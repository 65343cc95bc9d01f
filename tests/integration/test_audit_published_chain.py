"""On PostgreSQL the signer signs only what the relay published, as the relay read it.

The unsigned window (`docs/audit.md`): an intruder who rewrote an event together with
its chain link (and the links after it) after it was stored but before the next
checkpoint had it signed as rewritten. Now the relay folds the chain over the events it
publishes and the signer of its process refuses when the store's chain differs there.
Real PostgreSQL and Kafka: `crm relay` as a process, then the relay and the signer in
this one, to look at what they hand each other.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from functools import partial
from pathlib import Path

import pytest

from consumers.envelope import all_topics
from consumers.kafka_io import Producer, ensure_topics
from consumers.pg_pool import open_pool
from consumers.process_health import read_health
from consumers.relay import Relay
from consumers.relay_position import MemoryRelayPosition, PublishedChain
from domain.hashchain import chain_rows
from services.audit_log import END, chain_at
from services.audit_published import RememberedHead, head_path
from services.checkpointer import Checkpointer
from tests.e2e.processes import eventually
from tests.integration.audit_support import CRM, ROOT, Audited, audited, fill, flip_byte, positions


@pytest.fixture
def store(pg_url: str, tmp_path: Path) -> Iterator[Audited]:
    with audited("postgres", tmp_path, pg_url) as chained:
        yield chained


def _rewrite_with_links(store: Audited, position: int) -> None:
    """Edit the event at `position` and chain it and every later event again, as an
    intruder with write access to the database can (SHA-256 is public)."""
    flip_byte(store, position)
    previous = store.sql(f"SELECT max(position) FROM {store.chain} WHERE position < ?", position)
    after = int(previous[0][0])
    head = _chain(store, after)
    entries = store.log.entries(after, END, 1 << 20)
    store.sql(f"DELETE FROM {store.chain} WHERE position > ?", after)
    rows = chain_rows(after, head, [p for p, _ in entries], [c for _, c in entries])
    with store.log.exclusive() as locked:
        locked.append_links(rows)


def _relay_process(
    store: Audited, bootstrap: str, prefix: str, log: Path, every_seconds: int = 3600
) -> subprocess.Popen[bytes]:
    env = store.full_env(
        {
            "CRM_KAFKA_BOOTSTRAP": bootstrap,
            "CRM_TOPIC_PREFIX": prefix,
            "CRM_AUDIT_CHECKPOINT_EVENTS": "20",
            "CRM_AUDIT_CHECKPOINT_SECONDS": str(every_seconds),
        }
    )
    with log.open("wb") as out:
        return subprocess.Popen([*CRM, "relay"], cwd=ROOT, env=env, stdout=out, stderr=out)


def _stop(relay: subprocess.Popen[bytes]) -> None:
    relay.terminate()
    relay.wait(timeout=60)


def _relay_published(store: Audited, position: int) -> bool:
    rows = store.sql("SELECT position FROM crm_relay_position")
    return bool(rows) and int(rows[0][0]) >= position


def test_an_event_rewritten_with_its_link_after_the_relay_published_it_is_refused(
    store: Audited, kafka_bootstrap: str, topic_prefix: str, tmp_path: Path
) -> None:
    """Fails before the relay fed the signer: the rewrite was signed (`crm audit
    verify` then said the log was intact, with a checkpoint over the forgery)."""
    fill(store.app)
    relay = _relay_process(store, kafka_bootstrap, topic_prefix, tmp_path / "relay.log")
    pool = open_pool(store.env["CRM_DATABASE_URL"], max_size=1)
    try:
        first = eventually(store.log.latest_checkpoint, within=120, what="a first checkpoint")[0]
        assert first.position == positions(store)[-1]
        fill(store.app, customers=1)  # fewer events than CRM_AUDIT_CHECKPOINT_EVENTS
        rewritten = next(p for p in positions(store) if p > first.position)
        eventually(lambda: _relay_published(store, positions(store)[-1]), what="the relay")
        _rewrite_with_links(store, rewritten)
        assert store.verify().broken is None  # the store alone no longer tells
        fill(store.app)  # now a checkpoint is due

        def outcome() -> str | None:
            if len(store.log.checkpoints()) > 1:
                return "signed"
            return {row.process: row.trouble for row in read_health(pool)}.get("relay")

        result = eventually(outcome, within=120, what="the signer to sign or refuse")
        assert result != "signed", "the rewritten event was signed"
        assert result.startswith("audit signer refusing to sign: not signing: edited")
        assert "after the relay published it" in result
        _stop(relay)
        assert "checkpoint refused" in (tmp_path / "relay.log").read_text()
        # started again, the relay takes the store's (rewritten) chain at its position;
        # the head remembered beside the key keeps the signer refusing
        again = tmp_path / "relay-again.log"
        relay = _relay_process(store, kafka_bootstrap, topic_prefix, again)
        eventually(lambda: "checkpoint refused" in again.read_text(), what="a refusal again")
        assert "after the relay published it" in again.read_text()
        assert [c.position for c in store.log.checkpoints()] == [first.position]
    finally:
        pool.close()
        _stop(relay)


def test_a_refused_rewrite_stays_refused_across_a_stop_and_two_starts(
    store: Audited, kafka_bootstrap: str, topic_prefix: str, tmp_path: Path
) -> None:
    """Review F1. Fails before the remembered head was checked before every write and a
    relay anchored on a contradicted head got none: the stop after the first refusal
    wrote the relay's head, anchored on the store's rewritten link, into `.published`,
    and the second start signed the rewritten log."""
    fill(store.app)
    relay = _relay_process(store, kafka_bootstrap, topic_prefix, tmp_path / "relay.log")
    try:
        first = eventually(store.log.latest_checkpoint, within=120, what="a first checkpoint")[0]
        fill(store.app, customers=1)  # published, not signed (fewer than 20 events)
        head = positions(store)[-1]
        eventually(lambda: _relay_published(store, head), what="the relay")
        eventually(lambda: f'"position":{head},' in _remembered(store), what="the head kept")
    finally:
        _stop(relay)
    genuine = _remembered(store)
    kept = json.loads(genuine)
    assert (kept["position"], kept["chain"]) == (head, _chain(store, head).hex())
    _rewrite_with_links(store, next(p for p in positions(store) if p > first.position))
    assert store.verify().broken is None  # the store alone no longer tells
    for run in ("again", "and-again"):
        out = tmp_path / f"relay-{run}.log"
        relay = _relay_process(store, kafka_bootstrap, topic_prefix, out, every_seconds=1)
        said = partial(_signer_said, out)
        try:
            text = eventually(said, within=120, what="sign or refuse")
        finally:
            _stop(relay)
        assert "checkpoint refused" in text, f"{run}: the rewritten log was signed"
        assert [c.position for c in store.log.checkpoints()] == [first.position]
    assert _remembered(store) == genuine, "the remembered head was overwritten"


def _remembered(store: Audited) -> str:
    path = head_path(store.key)
    return path.read_text() if path.exists() else ""


def _signer_said(out: Path) -> str | None:
    text = out.read_text()
    return text if "checkpoint refused" in text or "checkpoint signed" in text else None


def _relay(
    store: Audited, bootstrap: str, prefix: str, position: int = 0
) -> tuple[Relay, Checkpointer]:
    """A relay in this process from `position`, and a signer fed by it (`crm relay`)."""
    published = PublishedChain(lambda at: chain_at(store.log, at))
    relay = Relay(
        store.app.recorder,
        lambda: Producer(bootstrap, client_id="test-published-chain"),
        MemoryRelayPosition(position),
        topic_prefix=prefix,
        published=published,
    )
    signer = Checkpointer(
        store.log, store.key, every_events=1, every_seconds=1, published=published
    )
    return relay, signer


def test_the_signer_signs_up_to_what_the_relay_published_not_the_store_head(
    store: Audited, kafka_bootstrap: str, topic_prefix: str
) -> None:
    ensure_topics(kafka_bootstrap, all_topics(topic_prefix), partitions=1)
    relay, signer = _relay(store, kafka_bootstrap, topic_prefix)
    try:
        fill(store.app)
        assert not signer.due()  # nothing published yet: nothing to sign
        relay.drain()
        published_at = positions(store)[-1]
        fill(store.app, customers=1)  # stored, not yet published
        signed = signer.checkpoint()
        assert signed is not None
        assert signed.position == published_at < positions(store)[-1]
        assert signed.chain_head == _chain(store, published_at).hex()
        assert signer.checkpoint() is None  # nothing published since
        relay.drain()
        assert signer.due()
        assert store.verify().broken is None
    finally:
        relay.close()


def test_a_restarted_relay_takes_the_stores_chain_up_to_its_position(store: Audited) -> None:
    """The limit `docs/audit.md` states: a relay that starts again did not read the
    events before its stored position in this process, so up to there it has only the
    store's chain; a rewrite between the last checkpoint and there is signed."""
    fill(store.app)
    first = store.sign()
    fill(store.app, customers=1)
    resume_at = positions(store)[-1]
    _rewrite_with_links(store, next(p for p in positions(store) if p > first.position))
    _, signer = _relay(store, "unused:9092", "unused.", position=resume_at)  # sends nothing
    signed = signer.checkpoint()
    assert signed is not None
    assert (signed.position, signed.chain_head) == (resume_at, _chain(store, resume_at).hex())


def _chain(store: Audited, position: int) -> bytes:
    chain = chain_at(store.log, position)
    assert chain is not None
    return chain


def test_adopt_replaces_another_stores_head_but_not_one_the_store_lost(
    store: Audited,
) -> None:
    """Review F2: another store's `.published` is refused as such and `crm audit
    checkpoint --adopt` replaces it; a database restored from a backup older than the
    file is refused, and `--adopt` does not replace that one (an intruder's deletion of
    the published tail reads the same): the operator moves it aside by hand."""
    fill(store.app)
    signed = store.sign()
    fill(store.app, customers=1)
    head = positions(store)[-1]
    RememberedHead(store.key).remember(store.log, (head, _chain(store, head)))
    kept = json.loads(_remembered(store))
    assert kept["origin"] == _chain(store, 1).hex()
    # another store's file: the same position and chain, another origin
    head_path(store.key).write_text(json.dumps({**kept, "origin": "00" * 32}))
    refused = store.crm("audit", "checkpoint")
    assert refused.returncode == 1
    assert "the remembered head is another store's" in refused.stderr
    adopted = store.crm("audit", "checkpoint", "--adopt")
    assert adopted.returncode == 0, adopted.stderr
    assert "another store's" in adopted.stderr
    assert json.loads(_remembered(store))["origin"] == kept["origin"]
    head_path(store.key).write_text(json.dumps(kept))
    # the database restored from a backup taken at the checkpoint
    store.sql(f"DELETE FROM {store.chain} WHERE position > ?", signed.position)
    store.sql(f"DELETE FROM {store.events} WHERE {store.position} > ?", signed.position)
    refused = store.crm("audit", "checkpoint")
    assert refused.returncode == 1
    assert f"deleted at position {head}" in refused.stderr
    not_adopted = store.crm("audit", "checkpoint", "--adopt")
    assert not_adopted.returncode == 1
    assert "--adopt does not replace this" in not_adopted.stderr
    assert json.loads(_remembered(store)) == kept
    head_path(store.key).unlink()  # the operator, having compared the store with Kafka
    again = store.crm("audit", "checkpoint")
    assert again.returncode == 0, again.stderr
    assert "nothing new to sign" in again.stdout
