"""Who may connect: trust (no password configured) or SCRAM-SHA-256 for the superuser.

Trust is only safe on loopback; the daemon refuses to bind elsewhere without a password,
and TierdServer.verify_request refuses non-loopback peers in trust mode as well.
"""
from __future__ import annotations

import struct
from dataclasses import dataclass, field
from typing import Callable

from scramp import ScramException, ScramMechanism

from .errors import FatalProtocolViolation, InvalidAuthorization, InvalidPassword

AUTH_OK, AUTH_SASL, AUTH_SASL_CONTINUE, AUTH_SASL_FINAL = 0, 10, 11, 12
SCRAM = "SCRAM-SHA-256"

# (type byte, payload) of the next client message
ReadMessage = Callable[[], tuple[bytes, bytes]]
Write = Callable[[bytes], None]


@dataclass
class AuthConfig:
    superuser: str = "tierd"
    password: str | None = None
    _scram_keys: tuple | None = field(default=None, init=False, repr=False, compare=False)

    @property
    def trust(self) -> bool:
        return self.password is None

    def scram_keys(self) -> tuple:
        """(salt, stored_key, server_key, iterations), derived once: PBKDF2 is slow on purpose."""
        if self._scram_keys is None:
            self._scram_keys = ScramMechanism(SCRAM).make_auth_info(self.password,
                                                                     iteration_count=4096)
        return self._scram_keys


def authentication_request(code: int, data: bytes = b"") -> bytes:
    return b"R" + struct.pack("!ii", 8 + len(data), code) + data


def authenticate(config: AuthConfig, user: str, read: ReadMessage, write: Write,
                 flush: Callable[[], None]) -> None:
    """Run the authentication exchange for `user`; raise a FATAL error to refuse them.

    On success nothing is written: the caller sends AuthenticationOk and what follows.
    """
    if user != config.superuser:
        raise InvalidAuthorization(f'role "{user}" does not exist')
    if config.trust:
        return
    server = ScramMechanism(SCRAM).make_server(lambda _username: config.scram_keys())
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
        write(authentication_request(AUTH_SASL_FINAL, server.get_server_final().encode()))
    except (ScramException, UnicodeDecodeError, struct.error, ValueError):
        raise InvalidPassword(f'password authentication failed for user "{user}"') from None


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
