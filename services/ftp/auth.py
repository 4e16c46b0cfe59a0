"""Logging in without sending the password: salted scrypt + a SCRAM-style challenge (用户加密认证).

The seed stored sha256(user + password + user) and sent the password itself over the wire.
Both are wrong: sha256 is fast (an attacker who steals the users file tries billions of
guesses per second), the "salt" is the user name (predictable, the same on every server), and
anyone on the path reads the password. Here:

* Storage: ``salted = scrypt(password, salt, n, r, p)`` with a random 16-byte salt per user.
  scrypt is slow *and* memory-hard on purpose (16 MiB, ~50 ms per guess). The server keeps only
  ``stored_key = sha256(HMAC(salted, "Client Key"))`` and ``server_key = HMAC(salted, "Server Key")``,
  never the password and never ``salted`` (RFC 5802, SCRAM). A stolen users file does not let
  anyone log in: it holds sha256 of the client key, not the key.

* The wire (challenge-response, 质询-应答):

      client → login {user, cnonce}                    cnonce: fresh random bytes, hex
      server → 331 {salt, kdf, n, r, p, snonce}        snonce: fresh random bytes, hex
      client → auth {proof}                            proof = client_key XOR HMAC(stored_key, msg)
      server → 230 {server_signature}                  = HMAC(server_key, msg), the server proves itself
                                                       msg = "user,cnonce,snonce"

  The proof is useless for another login (the nonces change every time), and the password never
  leaves the client. The server checks it with ``hmac.compare_digest`` (constant time).

* An unknown user gets a challenge too, with a *fake* salt derived from a server secret, so
  it is stable across attempts and restarts: "no such user" and "wrong password" look the same.

This is not encryption of the whole session: file names and bytes still cross in clear. For
that, wrap the socket with ``ssl`` (see the guide).
"""
from __future__ import annotations

import hashlib
import hmac
import os
import unicodedata
from dataclasses import dataclass

from ftp.protocol import (
    KDF_MAX_N,
    KDF_MAX_P,
    KDF_MAX_R,
    KDF_N,
    KDF_NAME,
    KDF_P,
    KDF_R,
    KEY_BYTES,
    NONCE_BYTES,
    SALT_BYTES,
    Code,
    ProtocolError,
)


@dataclass(frozen=True)
class Verifier:
    """What the server stores per user (in users.json, as hex)."""

    salt: bytes
    n: int
    r: int
    p: int
    stored_key: bytes
    server_key: bytes

    def challenge_fields(self) -> dict:
        return {"salt": self.salt.hex(), "kdf": KDF_NAME, "n": self.n, "r": self.r, "p": self.p}


def check_kdf_params(n: int, r: int, p: int) -> None:
    """Refuse parameters that would make scrypt eat the client's memory (a hostile server)."""
    if not (2 <= n <= KDF_MAX_N and n & (n - 1) == 0 and 1 <= r <= KDF_MAX_R and 1 <= p <= KDF_MAX_P):
        raise ProtocolError(Code.BAD_ARGUMENTS, f"scrypt parameters out of range: n={n} r={r} p={p}")


def salted_key(password: str, salt: bytes, n: int = KDF_N, r: int = KDF_R, p: int = KDF_P) -> bytes:
    """scrypt(password): the slow step. Only the client runs it at login time."""
    check_kdf_params(n, r, p)
    secret = unicodedata.normalize("NFC", password).encode("utf-8")
    return hashlib.scrypt(secret, salt=salt, n=n, r=r, p=p, dklen=KEY_BYTES,
                          maxmem=128 * r * n * p + 2 * 1024 * 1024)


def xor(a: bytes, b: bytes) -> bytes:
    """Byte-wise XOR of two equal-length keys, as one big-integer operation (a Python loop over
    32 bytes costs more than the two HMACs around it)."""
    return (int.from_bytes(a, "big") ^ int.from_bytes(b, "big")).to_bytes(len(a), "big")


def _hmac(key: bytes, message: bytes) -> bytes:
    return hmac.digest(key, message, "sha256")     # one C call (hmac.new(...).digest() is four)


def make_verifier(password: str, *, salt: bytes | None = None, n: int = KDF_N, r: int = KDF_R,
                  p: int = KDF_P) -> Verifier:
    salt = salt if salt is not None else os.urandom(SALT_BYTES)
    salted = salted_key(password, salt, n, r, p)
    client_key = _hmac(salted, b"Client Key")
    return Verifier(salt, n, r, p, hashlib.sha256(client_key).digest(), _hmac(salted, b"Server Key"))


def new_nonce() -> str:
    return os.urandom(NONCE_BYTES).hex()


def auth_message(user: str, cnonce: str, snonce: str) -> bytes:
    return f"{user},{cnonce},{snonce}".encode()


def client_proof(salted: bytes, user: str, cnonce: str, snonce: str) -> str:
    """What the client sends in ``auth``: client_key XOR HMAC(stored_key, auth message)."""
    client_key = _hmac(salted, b"Client Key")
    signature = _hmac(hashlib.sha256(client_key).digest(), auth_message(user, cnonce, snonce))
    return xor(client_key, signature).hex()


def verify_proof(verifier: Verifier, proof: str, user: str, cnonce: str, snonce: str) -> bool:
    """Server side: undo the XOR with the signature, hash, compare in constant time."""
    signature = _hmac(verifier.stored_key, auth_message(user, cnonce, snonce))
    client_key = xor(bytes.fromhex(proof), signature)
    return hmac.compare_digest(hashlib.sha256(client_key).digest(), verifier.stored_key)


def server_signature(verifier: Verifier, user: str, cnonce: str, snonce: str) -> str:
    return _hmac(verifier.server_key, auth_message(user, cnonce, snonce)).hex()


def expected_server_signature(salted: bytes, user: str, cnonce: str, snonce: str) -> str:
    """Client side: what the server's 230 must carry if it really knows our verifier."""
    return _hmac(_hmac(salted, b"Server Key"), auth_message(user, cnonce, snonce)).hex()


def fake_verifier(server_secret: bytes, user: str) -> Verifier:
    """A verifier for a user who does not exist: same shape, stable salt, matches no password."""
    salt = _hmac(server_secret, b"fake-salt:" + user.encode("utf-8"))[:SALT_BYTES]
    stored = _hmac(server_secret, b"fake-stored-key:" + user.encode("utf-8"))
    return Verifier(salt, KDF_N, KDF_R, KDF_P, stored, _hmac(server_secret, b"fake-server-key"))
