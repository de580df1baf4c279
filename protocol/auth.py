"""Who may connect: `trust` (loopback only) or SCRAM-SHA-256 against the role catalog.

`auth.method` picks one for every connection. trust admits any existing role that may log in,
without a password; the daemon refuses to listen beyond loopback in trust mode and
TierdServer.verify_request refuses non-loopback peers as well. scram checks the client's proof
against the role's stored SCRAM verifier (engine.roles: the password itself is never kept).
As in Postgres, an unknown role, a role without a password and a wrong password all fail the
same way under scram (28P01 "password authentication failed"), after a complete mock exchange,
so a client cannot learn which roles exist; under trust an unknown role gets 28000.
"""
from __future__ import annotations

import hashlib
import hmac
import os
import struct
from dataclasses import dataclass
from typing import Callable, Protocol

from scramp import ScramException, ScramMechanism

from engine.catalog.roles import ITERATIONS, ScramKeys

from engine.errors import FatalProtocolViolation, InvalidAuthorizationSpecification, InvalidPassword

AUTH_OK, AUTH_SASL, AUTH_SASL_CONTINUE, AUTH_SASL_FINAL = 0, 10, 11, 12
SCRAM = "SCRAM-SHA-256"
METHODS = ("trust", "scram")

# (type byte, payload) of the next client message
ReadMessage = Callable[[], tuple[bytes, bytes]]
Write = Callable[[bytes], None]


class LoginRole(Protocol):
    login: bool

    def scram_keys(self) -> ScramKeys | None: ...


class Roles(Protocol):
    def get(self, name: str) -> LoginRole | None: ...


@dataclass(frozen=True)
class AuthConfig:
    method: str = "trust"  # "trust" | "scram"

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ValueError(f"unknown authentication method {self.method!r}: expected trust or scram")

    @property
    def trust(self) -> bool:
        return self.method == "trust"


# Mock salts are stable per role name (as Postgres's mock_scram_secret), so probing a name
# twice shows nothing a real role would not; the key is per process.
_MOCK_KEY = os.urandom(32)


def _mock_keys(user: str) -> ScramKeys:
    salt = hmac.new(_MOCK_KEY, user.encode(), hashlib.sha256).digest()[:16]
    return ScramKeys(salt, os.urandom(32), os.urandom(32), ITERATIONS)


def authentication_request(code: int, data: bytes = b"") -> bytes:
    return b"R" + struct.pack("!ii", 8 + len(data), code) + data


def authenticate(config: AuthConfig, roles: Roles, user: str, read: ReadMessage, write: Write,
                 flush: Callable[[], None]) -> None:
    """Run the authentication exchange for `user`; raise a FATAL error to refuse them.

    On success nothing is written: the caller sends AuthenticationOk and what follows.
    """
    role = roles.get(user)
    if config.trust:
        if role is None:
            raise InvalidAuthorizationSpecification(f'role "{user}" does not exist')
    else:
        keys = role.scram_keys() if role is not None else None
        if not _scram_exchange(keys or _mock_keys(user), read, write, flush) or keys is None:
            raise InvalidPassword(f'password authentication failed for user "{user}"')
    if not role.login:
        raise InvalidAuthorizationSpecification(f'role "{user}" is not permitted to log in')


def _scram_exchange(keys: ScramKeys, read: ReadMessage, write: Write, flush: Callable[[], None]) -> bool:
    """The SASL messages of SCRAM-SHA-256; True when the client proved it knows the password."""
    server = ScramMechanism(SCRAM).make_server(lambda _username: keys.as_auth_info())
    try:
        write(authentication_request(AUTH_SASL, SCRAM.encode() + b"\x00\x00"))
        flush()
        mechanism, initial = _sasl_initial_response(read())
        if mechanism != SCRAM:
            raise FatalProtocolViolation(f"unsupported SASL mechanism {mechanism!r}")
        _set_client_first(server, initial)
        write(authentication_request(AUTH_SASL_CONTINUE, server.get_server_first().encode()))
        flush()
        server.set_client_final(_password_payload(read()).decode())
        final = server.get_server_final().encode()
    except (ScramException, UnicodeDecodeError, struct.error, ValueError):
        return False
    write(authentication_request(AUTH_SASL_FINAL, final))
    return True


def _set_client_first(server, client_first: str) -> None:
    """libpq sends an empty SCRAM user name (`n=,`: the startup packet names the user), which
    scramp refuses; parse with a stand-in name, then restore the bytes the client signed."""
    gs2_end = client_first.index(",", client_first.index(",") + 1) + 1
    bare = client_first[gs2_end:]
    if bare.startswith("n=,"):
        server.set_client_first(client_first[:gs2_end] + "n=*," + bare[3:])
        server.client_first_bare = bare
    else:
        server.set_client_first(client_first)


def _password_payload(message: tuple[bytes, bytes]) -> bytes:
    kind, payload = message
    if kind != b"p":
        raise FatalProtocolViolation(f"expected password response, got message type {kind!r}")
    return payload


def _sasl_initial_response(message: tuple[bytes, bytes]) -> tuple[str, str]:
    payload = _password_payload(message)
    end = payload.index(b"\x00")
    (length,) = struct.unpack_from("!i", payload, end + 1)
    data = payload[end + 5:end + 5 + length] if length >= 0 else b""
    return payload[:end].decode(), data.decode()
