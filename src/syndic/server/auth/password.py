"""Salted, slow password hashes (scrypt), in a self-describing text form.

etcd stores bcrypt hashes of cost 10 (about 50-80 ms each); syndic uses
``hashlib.scrypt`` with N=2**14, r=8, p=1 (16 MiB, a similar time on one
core), which the standard library offers without a new dependency.

The hash is computed by the member that receives the request, before it
proposes the change, with a salt that member draws: applying the entry then
only stores a string, so every member applies it identically and cheaply.
The encoded form carries its own parameters, so a stronger default later
still verifies old hashes:

    scrypt$<log2 N>$<r>$<p>$<salt, base64>$<digest, base64>
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from dataclasses import dataclass
from typing import Final

SCRYPT_LOG2_N_DEFAULT: Final = 14
SCRYPT_R: Final = 8
SCRYPT_P: Final = 1
SALT_BYTES: Final = 16
DIGEST_BYTES: Final = 32
# Bounds on parameters read back from a stored hash: a damaged or hostile
# record must not make verification allocate gigabytes or run for minutes.
SCRYPT_LOG2_N_MAX: Final = 20
SCRYPT_R_MAX: Final = 32
SCRYPT_P_MAX: Final = 16
SCHEME: Final = "scrypt"


class PasswordHashError(ValueError):
    """A stored password hash that is not in syndic's scrypt form."""


@dataclass(frozen=True, slots=True)
class ParsedHash:
    log2_n: int
    r: int
    p: int
    salt: bytes
    digest: bytes


def _scrypt(password: str, salt: bytes, log2_n: int, r: int, p: int) -> bytes:
    n = 1 << log2_n
    # scrypt needs 128 * r * N bytes; allow that plus slack.
    return hashlib.scrypt(
        password.encode(),
        salt=salt,
        n=n,
        r=r,
        p=p,
        maxmem=256 * r * n + (1 << 20),
        dklen=DIGEST_BYTES,
    )


def hash_password(password: str, salt: bytes, log2_n: int = SCRYPT_LOG2_N_DEFAULT) -> str:
    """The encoded hash of ``password`` under ``salt`` (draw it with ``secrets``)."""
    if len(salt) != SALT_BYTES:
        raise PasswordHashError(f"salt must be {SALT_BYTES} bytes, got {len(salt)}")
    if not 1 <= log2_n <= SCRYPT_LOG2_N_MAX:
        raise PasswordHashError(f"log2 N must be in 1..{SCRYPT_LOG2_N_MAX}, got {log2_n}")
    digest = _scrypt(password, salt, log2_n, SCRYPT_R, SCRYPT_P)
    b64 = base64.b64encode
    return f"{SCHEME}${log2_n}${SCRYPT_R}${SCRYPT_P}${b64(salt).decode()}${b64(digest).decode()}"


def parse_hash(encoded: str) -> ParsedHash:
    """Check and split an encoded hash; PasswordHashError names what is wrong."""
    parts = encoded.split("$") if isinstance(encoded, str) else []
    if len(parts) != 6 or parts[0] != SCHEME:
        raise PasswordHashError("password hash is not in scrypt$... form")
    try:
        log2_n, r, p = (int(x) for x in parts[1:4])
        salt = base64.b64decode(parts[4], validate=True)
        digest = base64.b64decode(parts[5], validate=True)
    except (ValueError, binascii.Error) as exc:
        raise PasswordHashError(f"password hash fields are malformed: {exc}") from None
    if not (1 <= log2_n <= SCRYPT_LOG2_N_MAX and 1 <= r <= SCRYPT_R_MAX and 1 <= p <= SCRYPT_P_MAX):
        raise PasswordHashError(f"scrypt parameters out of bounds: N=2**{log2_n} r={r} p={p}")
    if len(salt) != SALT_BYTES or len(digest) != DIGEST_BYTES:
        raise PasswordHashError("password hash salt or digest has the wrong length")
    return ParsedHash(log2_n, r, p, salt, digest)


def verify_password(password: str, encoded: str) -> bool:
    """True if ``password`` hashes to ``encoded``; False for any malformed hash."""
    try:
        parsed = parse_hash(encoded)
    except PasswordHashError:
        return False
    digest = _scrypt(password, parsed.salt, parsed.log2_n, parsed.r, parsed.p)
    return hmac.compare_digest(digest, parsed.digest)
