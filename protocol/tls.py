"""TLS for the wire: the server's SSL context, from a certificate and key in PEM files.

Clients ask for TLS with an SSLRequest before their startup packet (libpq's sslmode=prefer,
require, verify-*); the handler answers 'S' and wraps the socket when a context is configured,
'N' otherwise. TLS 1.2 is the oldest version offered, as in Postgres's default
ssl_min_protocol_version.
"""
from __future__ import annotations

import os
import ssl


class TlsConfigError(ValueError):
    """The certificate or key cannot be used; the message names the file and the problem."""


def server_context(cert_file: str, key_file: str) -> ssl.SSLContext:
    for path in (cert_file, key_file):
        if not os.path.isfile(path):
            raise TlsConfigError(f"{path}: no such file")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(cert_file, key_file)
    except PermissionError as exc:
        raise TlsConfigError(f"{exc.filename or key_file}: permission denied") from None
    except ssl.SSLError as exc:
        raise TlsConfigError(f"cannot load certificate {cert_file} with key {key_file}: "
                             f"{exc.reason or exc}") from None
    return context
