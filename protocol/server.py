"""The listening server: buenavista's threading TCP server, serving tierd's engine.

buenavista 0.5.0 is kept for its threading TCP server, its message constants and
buffer/response helpers. `TierdServer` binds IPv4 or IPv6, holds what every connection
needs (the engine, the authentication settings, the TLS context) and hands each client to
TierdHandler (protocol/connection.py) on a thread of its own; `make_server` is the door the
daemon and the tests use.
"""
from __future__ import annotations

import ipaddress
import logging
import socket
import ssl

from buenavista.postgres import BuenaVistaServer

from .auth import AuthConfig
from .connection import TierdHandler
from .errors import error_response
from .limits import ConnectionLimits, ConnectionSlots, too_many
from .startup import EngineConnection

log = logging.getLogger("tierd.protocol")


class TierdServer(BuenaVistaServer):
    """A thread per connection; daemon threads so shutdown never waits on idle clients."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], engine, auth: AuthConfig,
                 ssl_context: ssl.SSLContext | None = None, ssl_required: bool = False,
                 limits: ConnectionLimits = ConnectionLimits()):
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        self.limits = limits
        self.slots = ConnectionSlots(limits)
        self._counted: set[int] = set()  # id() of the sockets counted in `slots`
        self.request_queue_size = limits.listen_backlog()  # socketserver's default is 5
        super().__init__(address, EngineConnection(engine))
        # BuenaVistaServer hard-wires its own handler class.
        self.RequestHandlerClass = TierdHandler
        self.engine = engine
        self.auth_config = auth
        self.ssl_context = ssl_context  # None: SSLRequest is answered 'N'
        self.ssl_required = ssl_required  # refuse startup packets that did not come over TLS

    def verify_request(self, request, client_address) -> bool:
        """Trust mode serves loopback clients only; with a password anyone may try. Past the
        socket cap a client gets 53300 at once, without a thread of its own."""
        if self.auth_config.trust:
            try:
                if not ipaddress.ip_address(client_address[0]).is_loopback:
                    return False
            except ValueError:
                return False
        if not self.slots.open_socket():
            log.info("refused a connection from %s: %d sockets open", client_address[0],
                     self.slots.sockets)
            try:
                request.setblocking(False)
                request.send(error_response(too_many()))
            except OSError:
                pass
            return False
        self._counted.add(id(request))
        return True

    def shutdown_request(self, request) -> None:
        if id(request) in self._counted:
            self._counted.discard(id(request))
            self.slots.close_socket()
        super().shutdown_request(request)


def make_server(engine, host: str, port: int, auth: AuthConfig, ssl_context: ssl.SSLContext | None = None,
                ssl_required: bool = False, limits: ConnectionLimits = ConnectionLimits()) -> TierdServer:
    """Bind (but do not start) the wire server; call `serve_forever()` on the result."""
    return TierdServer((host, port), engine, auth, ssl_context, ssl_required, limits)
