"""A stored relay position past the head remembered beside the signer's key (red team
rt3 F3: an intruder who moved `crm_relay_position` forward made the relay skip events,
which never reached Kafka nor the read models, and the signer signed them). The file is
written before every position the relay stores, so the relay starts from the
remembered head instead, publishes the events between again, and says so; a file of
another store is no place to start from, and with no file the position is taken as it
is. With a hand-written log and broker; the real store: tests/integration/
test_audit_published_rewind.py."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import nullcontext
from pathlib import Path
from typing import cast

import pytest
from structlog.testing import capture_logs

from consumers.kafka_io import Producer
from consumers.relay import Relay
from consumers.relay_position import MemoryRelayPosition, PublishedChain, Rewound, fold
from domain.checkpoint import Checkpoint
from domain.hashchain import GENESIS, canonical_event, chain_rows
from services.audit_keys import SigningKey, load_or_create
from services.audit_published import RememberedHead, checked_anchor, head_path, remembering
from services.signer_memory import LastSigned, record_path, write_record
from tests.unit.consumers.test_published_chain import FakeProducer, FakeRecorder, _stored
from tests.unit.services.test_published_head import LINKS, LinkedLog


def _anchor(key: SigningKey, log: LinkedLog) -> PublishedChain:
    return PublishedChain(checked_anchor(key, lambda: nullcontext(log)))  # type: ignore[arg-type]


def test_a_stored_position_past_the_remembered_head_starts_from_the_head(
    tmp_path: Path,
) -> None:
    key, log = load_or_create(tmp_path / "k"), LinkedLog(LINKS)
    RememberedHead(key).remember(log, (1, LINKS[0][2]))  # type: ignore[arg-type]
    anchor = checked_anchor(key, lambda: nullcontext(log))  # type: ignore[arg-type]
    assert anchor(3) == Rewound(1, LINKS[0][2])  # the row moved from 1 to 3
    assert anchor(1) == LINKS[0][2]
    published = _anchor(key, log)
    assert published.start(3) == (1, LINKS[0][2])
    assert (published.started_at, published.head) == (1, (1, LINKS[0][2]))


def test_a_head_ahead_of_the_stored_position_is_the_honest_crash(tmp_path: Path) -> None:
    """Written before the position is stored: a crash between leaves it a page ahead;
    the relay starts from its stored position, as before."""
    key, log = load_or_create(tmp_path / "k"), LinkedLog(LINKS)
    RememberedHead(key).remember(log, (3, LINKS[2][2]))  # type: ignore[arg-type]
    assert _anchor(key, log).start(2) == (2, LINKS[1][2])


def test_without_a_file_the_stored_position_is_taken_as_it_is(tmp_path: Path) -> None:
    """A relay whose signer's key directory is new (or the file moved aside): nothing
    to compare with."""
    key = load_or_create(tmp_path / "k")
    assert not head_path(key).exists()
    assert _anchor(key, LinkedLog(LINKS)).start(3) == (3, LINKS[2][2])


def _signed(key: SigningKey, position: int, chain: bytes) -> None:
    """A `.last-signed` record at `position` (its signature is the signer's concern)."""
    checkpoint = Checkpoint(
        position=position, tree_size=position, chain_head=chain.hex(), tree_head="00" * 32,
        signed_at="2024-01-01T00:00:00+00:00", public_key="00" * 32, signature="00" * 64,
    )  # fmt: skip
    write_record(record_path(key), LastSigned(checkpoint=checkpoint, frontier=""))


def test_without_the_file_a_stored_position_past_the_last_signed_starts_there(
    tmp_path: Path,
) -> None:
    """Red team s32: `.published` moved aside, `.last-signed` kept. Fails before: the
    moved position (3) was taken as it was."""
    key, log = load_or_create(tmp_path / "k"), LinkedLog(LINKS)
    _signed(key, 1, LINKS[0][2])
    anchor = checked_anchor(key, lambda: nullcontext(log))  # type: ignore[arg-type]
    rewound = anchor(3)
    assert isinstance(rewound, Rewound)
    assert rewound[:2] == (1, LINKS[0][2])
    assert str(record_path(key)) in rewound.why
    assert str(head_path(key)) in rewound.why
    assert anchor(1) == LINKS[0][2]  # not past it: as it is
    assert _anchor(key, log).start(3) == (1, LINKS[0][2])


def test_the_published_head_comes_before_the_last_signed(tmp_path: Path) -> None:
    """The signer signs behind the relay: with both files, the head is the anchor."""
    key, log = load_or_create(tmp_path / "k"), LinkedLog(LINKS)
    _signed(key, 1, LINKS[0][2])
    RememberedHead(key).remember(log, (2, LINKS[1][2]))  # type: ignore[arg-type]
    assert _anchor(key, log).start(3) == (2, LINKS[1][2])
    assert _anchor(key, log).start(2) == (2, LINKS[1][2])


def test_an_unreadable_record_without_the_file_is_refused(tmp_path: Path) -> None:
    key = load_or_create(tmp_path / "k")
    record_path(key).write_text("{")
    published = _anchor(key, LinkedLog(LINKS))
    assert published.start(3) == (3, None)
    assert published.refused is not None
    assert "the signer's record" in published.refused


def test_another_stores_head_is_refused_not_a_place_to_start(tmp_path: Path) -> None:
    key, log = load_or_create(tmp_path / "k"), LinkedLog(LINKS)
    RememberedHead(key).remember(log, (1, LINKS[0][2]))  # type: ignore[arg-type]
    log.links = chain_rows(0, GENESIS, [1, 2, 3], [b"other", b"store", b"here"])
    published = _anchor(key, log)
    assert published.start(3) == (3, None)
    assert published.refused is not None
    assert "another store's" in published.refused


@pytest.mark.parametrize("kept", ["published head", "last signed only"])
def test_the_relay_publishes_again_from_the_remembered_head_and_says_so(
    tmp_path: Path, kept: str
) -> None:
    """Fails before: the relay started at the moved position (3) and never sent 2, 3
    (with the head remembered since 11e2929; with the last signed only, until now)."""
    notifications = _stored(5)
    canonicals = [
        canonical_event(n.id, n.originator_id, n.originator_version, n.topic, n.state)
        for n in notifications
    ]
    links = chain_rows(0, GENESIS, [1, 2, 3, 4, 5], canonicals)
    key, log = load_or_create(tmp_path / "k"), LinkedLog(links)
    if kept == "published head":
        RememberedHead(key).remember(log, (1, links[0][2]))  # type: ignore[arg-type]
    else:  # the file moved aside: the signer's record alone
        _signed(key, 1, links[0][2])
    positions = MemoryRelayPosition(3)  # moved forward by hand, past 2 and 3
    published = PublishedChain(
        checked_anchor(key, lambda: nullcontext(log)),  # type: ignore[arg-type]
        remembering(key, log),  # type: ignore[arg-type]
    )
    producer = FakeProducer()
    with capture_logs() as logs:
        relay = Relay(
            FakeRecorder(notifications), cast(Callable[[], Producer], lambda: producer),
            positions, published=published,
        )  # fmt: skip
    assert [entry["event"] for entry in logs] == ["relay position past its published head"]
    assert (logs[0]["stored"], logs[0]["published"], logs[0]["republishing"]) == (3, 1, 2)
    assert (str(record_path(key)) in logs[0]["why"]) == (kept == "last signed only")
    assert relay.position == 1
    assert relay.drain() == 4
    assert len(producer.sent) == 4  # 2..5: the skipped ones too
    chain = links[0][2]
    for notification in notifications[1:]:
        chain = fold(chain, notification)
    assert published.head == (5, chain) == (5, links[4][2])
    assert positions.position == 5
    assert published.refused is None  # the store gives the remembered head: signed on
