"""The Ed25519 key that signs checkpoints, kept in a file outside the event store.

Whoever can write the event store's database cannot forge a checkpoint without this
file (`CRM_AUDIT_KEY_FILE`, by default `audit-signing.key` in `CRM_DATA_DIR`): it is
created on first use, readable by its owner only (PKCS #8 PEM), and never again once the
store holds checkpoints (`services.signer_memory`): a new key would orphan them. Auditors
pin its public key (`crm audit public-key`, 64 hex digits) and check signatures against
that, never against the key a checkpoint names.

I/O: the key file.
"""

from __future__ import annotations

import base64
import os
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from domain.checkpoint import Checkpoint

SPKI_PREFIX = bytes.fromhex("302a300506032b6570032100")
"""DER of an Ed25519 SubjectPublicKeyInfo before its 32 key bytes (RFC 8410)."""


class KeyFileError(Exception):
    """The key file or a given public key cannot be read."""


class KeyMissing(KeyFileError):  # noqa: N818 - reads as what happened
    """There is no key file (and it is not for this caller to create one)."""


class SigningKey:
    """The private key in its file `path`. Read when given, or on first use; a missing
    file is created (mode 0600) on first use only: the checkpointer asks `exists()`
    first and refuses to have one made over a store that holds checkpoints."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._private: Ed25519PrivateKey | None = None

    def exists(self) -> bool:
        return self._private is not None or self.path.exists()

    def load(self) -> SigningKey:
        """Read the file now; `KeyMissing` if there is none, `KeyFileError` if unreadable."""
        self._private = _read(self.path)
        return self

    @property
    def public_key(self) -> bytes:
        return (
            self._key()
            .public_key()
            .public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        )

    def sign(self, message: bytes) -> bytes:
        return self._key().sign(message)

    def public_pem(self) -> str:
        return (
            self._key()
            .public_key()
            .public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
            .decode()
        )

    def _key(self) -> Ed25519PrivateKey:
        if self._private is None:
            if not self.path.exists():
                _create(self.path)
            self._private = _read(self.path)
        return self._private


def load_or_create(path: Path) -> SigningKey:
    """The key in `path`, read now if the file exists (so a bad file is a configuration
    error at start), else created there on first use (see `SigningKey`)."""
    key = SigningKey(path)
    return key.load() if path.exists() or path.is_symlink() else key  # a link to nothing too


def load_existing(path: Path) -> SigningKey:
    """The key in `path`; `KeyMissing` if there is none (nothing is created)."""
    return SigningKey(path).load()


def _read(path: Path) -> Ed25519PrivateKey:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        if path.is_symlink():  # never created through: O_EXCL refuses a link
            raise KeyFileError(
                f"the signing key {path} is a link to {os.readlink(path)}, which does not exist"
            ) from None
        raise KeyMissing(f"there is no signing key at {path}") from None
    except OSError as error:
        raise KeyFileError(f"cannot read the signing key {path}: {error}") from None
    try:
        private = serialization.load_pem_private_key(data, password=None)
    except ValueError as error:
        raise KeyFileError(f"cannot read the signing key {path}: {error}") from None
    if not isinstance(private, Ed25519PrivateKey):
        raise KeyFileError(f"{path} holds no Ed25519 private key")
    return private


def _create(path: Path) -> None:
    pem = Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return  # another process created it first: use theirs
    with os.fdopen(descriptor, "wb") as file:
        file.write(pem)
        file.flush()
        os.fsync(file.fileno())  # on disk before anything is signed with it: a key lost
    sync_directory(path.parent)  # in a power cut, over checkpoints, is refused for good


def sync_directory(directory: Path) -> None:
    """Make the names just created or replaced in `directory` durable."""
    descriptor = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def read_public_key(spec: str) -> bytes:
    """A pinned public key: 64 hex digits, or a file holding them, a PEM public key, or
    the private key file itself."""
    text = spec.strip()
    if len(text) == 64 and all(c in "0123456789abcdefABCDEF" for c in text):
        return bytes.fromhex(text)
    path = Path(spec)
    try:
        content = path.read_text().strip()
    except (OSError, UnicodeDecodeError) as error:  # a binary file is no key either
        raise KeyFileError(f"{spec!r} is neither 64 hex digits nor a readable file") from error
    if "PRIVATE KEY" in content:
        return load_existing(path).public_key
    if "PUBLIC KEY" in content:
        body = "".join(line for line in content.splitlines() if "-----" not in line)
        try:
            der = base64.b64decode(body, validate=True)
        except ValueError as error:  # binascii.Error: not base64
            raise KeyFileError(f"{path} holds no Ed25519 public key: {error}") from None
        if len(der) == 44 and der.startswith(SPKI_PREFIX):
            return der[len(SPKI_PREFIX) :]
        raise KeyFileError(f"{path} holds no Ed25519 public key")
    return read_public_key(content) if len(content) == 64 else _unreadable(path)


def _unreadable(path: Path) -> bytes:
    raise KeyFileError(f"{path} holds no Ed25519 key")


def signature_valid(public_key: bytes, checkpoint: Checkpoint) -> bool:
    """Whether `public_key` signed exactly this checkpoint's statement."""
    try:
        Ed25519PublicKey.from_public_bytes(public_key).verify(
            bytes.fromhex(checkpoint.signature), checkpoint.statement()
        )
    except (InvalidSignature, ValueError):
        return False
    return True
