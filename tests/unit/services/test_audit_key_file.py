"""The signing key's file as an operator may leave it: a link to nothing is a
configuration error naming the link, never a key made through it, nor a traceback at the
first checkpoint (red team s33: `crm audit checkpoint` ended in `KeyMissing`)."""

from __future__ import annotations

from pathlib import Path

import pytest

from services.audit_keys import KeyFileError, KeyMissing, load_existing, load_or_create


def test_a_link_to_nothing_is_refused_when_the_key_is_opened(tmp_path: Path) -> None:
    link = tmp_path / "audit-signing.key"
    link.symlink_to(tmp_path / "elsewhere" / "gone.key")
    for opened in (load_or_create, load_existing):
        with pytest.raises(KeyFileError, match=r"is a link to .*gone\.key, which does not exist"):
            opened(link)
    assert not (tmp_path / "elsewhere").exists()  # nothing made at the link's target


def test_a_missing_key_is_made_on_first_use_and_missing_otherwise(tmp_path: Path) -> None:
    path = tmp_path / "audit-signing.key"
    with pytest.raises(KeyMissing):
        load_existing(path)
    key = load_or_create(path)
    assert len(key.public_key) == 32
    assert path.stat().st_mode & 0o777 == 0o600
    assert load_existing(path).public_key == key.public_key
