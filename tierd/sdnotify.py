"""sd_notify(3) without libsystemd: one datagram per message to $NOTIFY_SOCKET.

Outside systemd (no $NOTIFY_SOCKET) every call is a no-op, so the daemon calls these
unconditionally. Abstract sockets are written '@name' in the variable.
"""
from __future__ import annotations

import logging
import os
import socket
import time

log = logging.getLogger("tierd.sdnotify")


def _address() -> str | None:
    addr = os.environ.get("NOTIFY_SOCKET")
    if not addr or addr[0] not in "/@":
        return None
    return "\0" + addr[1:] if addr[0] == "@" else addr


def enabled() -> bool:
    return _address() is not None


def notify(*lines: str) -> bool:
    """Send `lines` (e.g. "READY=1", "STATUS=...") as one message; False if nobody listens."""
    addr = _address()
    if addr is None:
        return False
    # A newline inside a STATUS value would end the assignment early.
    payload = "\n".join(line.replace("\n", " ") for line in lines).encode("utf-8", "replace")
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as s:
            s.connect(addr)
            s.sendall(payload)
        return True
    except OSError as exc:
        log.debug("sd_notify to %r failed: %s", os.environ.get("NOTIFY_SOCKET"), exc)
        return False


def status(text: str) -> bool:
    return notify(f"STATUS={text}")


def monotonic_usec() -> int:
    """CLOCK_MONOTONIC in microseconds, as RELOADING=1 wants it in MONOTONIC_USEC."""
    return time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000


def watchdog_timeout() -> float | None:
    """The watchdog timeout systemd asked for (WATCHDOG_USEC), in seconds, if it is for us."""
    usec = os.environ.get("WATCHDOG_USEC")
    pid = os.environ.get("WATCHDOG_PID")
    if not usec or not enabled():
        return None
    if pid and pid.strip() != str(os.getpid()):
        return None  # meant for another process (we were started by a wrapper)
    try:
        value = int(usec)
    except ValueError:
        return None
    return value / 1e6 if value > 0 else None
