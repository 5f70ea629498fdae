"""Encryption at rest: AES-256-GCM with per-namespace data keys wrapped by a master key.

Envelope encryption, as in cloud KMSs: each namespace has a
:class:`Keyring` of random 256-bit data keys, stored in the etcd key space
only in wrapped form (AES-GCM under a master key). A content is sealed with
the keyring's active data key; its associated data is the config path, so
a ciphertext copied under another data id does not open. The master key
never enters the store: it is read from a file or an environment variable
by the SDK and by the API process, which are the only places that decrypt.

Rotation without downtime:

* data key: :func:`rotate_data_key` adds a fresh key and makes it active;
  old keys stay in the ring, so every stored version still opens, and a
  client that sees an unknown key id re-reads the keyring.
* master key: give every reader :class:`MasterKeys` holding both the old
  and the new key, call :func:`rewrap` (data keys are re-wrapped under the
  new key; contents are untouched), then drop the old key from readers.

>>> master = MasterKey.generate()
>>> ring = new_keyring("prod", MasterKeys([master]), now_ms=0)
>>> sealed = seal(ring, MasterKeys([master]), "prod/g/db", "password=s3cret")
>>> open_sealed(ring, MasterKeys([master]), "prod/g/db", sealed)
'password=s3cret'
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from syndic.config.errors import DecryptionError, InvalidInputError
from syndic.config.model import Sealed

KEY_BYTES = 32  # AES-256
NONCE_BYTES = 12  # GCM's standard nonce; random nonces are safe far below 2**32 seals per key
MASTER_KEY_ENV = "SYNDIC_CONFIG_MASTER_KEY"
# A keyring grows by one key per rotation; bound it so a runaway script cannot
# make every read carry thousands of wrapped keys.
DATA_KEYS_MAX = 64


@dataclass(frozen=True, slots=True)
class MasterKey:
    """A 256-bit key; ``key_id`` is a fingerprint, so the store names it without holding it."""

    key: bytes

    def __post_init__(self) -> None:
        if len(self.key) != KEY_BYTES:
            raise InvalidInputError("master_key", f"must be {KEY_BYTES} bytes, got {len(self.key)}")

    def __repr__(self) -> str:
        return f"MasterKey(key_id={self.key_id!r})"

    @property
    def key_id(self) -> str:
        return hashlib.sha256(b"syndic-config-master\x00" + self.key).hexdigest()[:16]

    @classmethod
    def generate(cls) -> MasterKey:
        return cls(os.urandom(KEY_BYTES))

    @classmethod
    def from_text(cls, text: str) -> MasterKey:
        """Base64 of 32 bytes, surrounding whitespace ignored."""
        try:
            return cls(base64.b64decode(text.strip(), validate=True))
        except binascii.Error as exc:
            raise InvalidInputError("master_key", f"not base64: {exc}") from None

    @classmethod
    def from_file(cls, path: str | Path) -> MasterKey:
        return cls.from_text(Path(path).read_text())

    @classmethod
    def from_env(cls, var: str = MASTER_KEY_ENV) -> MasterKey:
        text = os.environ.get(var)
        if text is None:
            raise InvalidInputError("master_key", f"environment variable {var} is not set")
        return cls.from_text(text)

    def to_text(self) -> str:
        return base64.b64encode(self.key).decode()


class MasterKeys:
    """The master keys a process holds: the first wraps, any of them unwraps."""

    __slots__ = ("_by_id", "primary")

    def __init__(self, keys: Iterable[MasterKey]) -> None:
        listed = list(keys)
        if not listed:
            raise InvalidInputError("master_key", "at least one master key is needed")
        self.primary = listed[0]
        self._by_id = {k.key_id: k for k in listed}

    def get(self, key_id: str) -> MasterKey:
        key = self._by_id.get(key_id)
        if key is None:
            raise DecryptionError(f"master key {key_id} is not among this process's master keys")
        return key


@dataclass(frozen=True, slots=True)
class WrappedKey:
    key_id: str
    master_key_id: str
    nonce: bytes
    wrapped: bytes
    created_ms: int


@dataclass(frozen=True, slots=True)
class Keyring:
    """A namespace's data keys, wrapped; ``active`` seals new contents."""

    namespace: str
    keys: tuple[WrappedKey, ...]
    active: str

    def find(self, key_id: str) -> WrappedKey:
        for key in self.keys:
            if key.key_id == key_id:
                return key
        raise DecryptionError(f"data key {key_id} is not in the keyring of {self.namespace}")

    def encode(self) -> bytes:
        doc = {
            "namespace": self.namespace,
            "active": self.active,
            "keys": [
                {
                    "key_id": k.key_id,
                    "master_key_id": k.master_key_id,
                    "nonce": base64.b64encode(k.nonce).decode(),
                    "wrapped": base64.b64encode(k.wrapped).decode(),
                    "created_ms": k.created_ms,
                }
                for k in self.keys
            ],
        }
        return json.dumps(doc, separators=(",", ":"), sort_keys=True).encode()

    @classmethod
    def decode(cls, raw: bytes) -> Keyring:
        doc = json.loads(raw)
        keys = tuple(
            WrappedKey(
                str(k["key_id"]),
                str(k["master_key_id"]),
                base64.b64decode(k["nonce"]),
                base64.b64decode(k["wrapped"]),
                int(k["created_ms"]),
            )
            for k in doc["keys"]
        )
        return cls(str(doc["namespace"]), keys, str(doc["active"]))


def _wrap_aad(namespace: str, key_id: str) -> bytes:
    return f"syndic-config-data-key\x00{namespace}\x00{key_id}".encode()


def _wrap(namespace: str, master: MasterKey, key_id: str, key: bytes, now_ms: int) -> WrappedKey:
    nonce = os.urandom(NONCE_BYTES)
    wrapped = AESGCM(master.key).encrypt(nonce, key, _wrap_aad(namespace, key_id))
    return WrappedKey(key_id, master.key_id, nonce, wrapped, now_ms)


def _unwrap(ring: Keyring, masters: MasterKeys, wrapped: WrappedKey) -> bytes:
    master = masters.get(wrapped.master_key_id)
    try:
        return AESGCM(master.key).decrypt(
            wrapped.nonce, wrapped.wrapped, _wrap_aad(ring.namespace, wrapped.key_id)
        )
    except InvalidTag:
        raise DecryptionError(
            f"data key {wrapped.key_id} of {ring.namespace} does not unwrap: tampered keyring"
        ) from None


def _fresh(namespace: str, masters: MasterKeys, now_ms: int) -> WrappedKey:
    key_id = os.urandom(8).hex()
    return _wrap(namespace, masters.primary, key_id, AESGCM.generate_key(256), now_ms)


def new_keyring(namespace: str, masters: MasterKeys, *, now_ms: int) -> Keyring:
    first = _fresh(namespace, masters, now_ms)
    return Keyring(namespace, (first,), first.key_id)


def rotate_data_key(ring: Keyring, masters: MasterKeys, *, now_ms: int) -> Keyring:
    if len(ring.keys) >= DATA_KEYS_MAX:
        raise InvalidInputError("keyring", f"{len(ring.keys)} data keys, limit {DATA_KEYS_MAX}")
    fresh = _fresh(ring.namespace, masters, now_ms)
    return Keyring(ring.namespace, (*ring.keys, fresh), fresh.key_id)


def rewrap(ring: Keyring, masters: MasterKeys) -> Keyring:
    """Every data key re-wrapped under ``masters.primary``; the keys themselves are unchanged."""
    keys = tuple(
        replace(
            _wrap(ring.namespace, masters.primary, k.key_id, _unwrap(ring, masters, k), 0),
            created_ms=k.created_ms,
        )
        for k in ring.keys
    )
    return replace(ring, keys=keys)


def seal(ring: Keyring, masters: MasterKeys, config_path: str, plaintext: str) -> Sealed:
    key = _unwrap(ring, masters, ring.find(ring.active))
    nonce = os.urandom(NONCE_BYTES)
    ciphertext = AESGCM(key).encrypt(nonce, plaintext.encode(), config_path.encode())
    return Sealed(ring.active, nonce, ciphertext)


def open_sealed(ring: Keyring, masters: MasterKeys, config_path: str, sealed: Sealed) -> str:
    key = _unwrap(ring, masters, ring.find(sealed.key_id))
    try:
        plain = AESGCM(key).decrypt(sealed.nonce, sealed.ciphertext, config_path.encode())
    except InvalidTag:
        raise DecryptionError(
            f"{config_path}: ciphertext does not open (tampered, or sealed for another config)"
        ) from None
    return plain.decode()


def masters_from(keys: Mapping[str, str] | None = None) -> MasterKeys | None:
    """Master keys from the environment (``SYNDIC_CONFIG_MASTER_KEY``, then
    ``SYNDIC_CONFIG_MASTER_KEY_FILE``), or None when neither is set."""
    env = dict(os.environ) if keys is None else dict(keys)
    if env.get(MASTER_KEY_ENV):
        return MasterKeys([MasterKey.from_text(env[MASTER_KEY_ENV])])
    path = env.get(f"{MASTER_KEY_ENV}_FILE")
    if path:
        return MasterKeys([MasterKey.from_file(path)])
    return None
