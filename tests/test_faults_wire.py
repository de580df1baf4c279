"""Abuse of the wire, against the daemon as a process: malformed and unknown messages,
oversized pre-auth messages, half-open sockets, connection storms, a fuzz run. Every message
gets an answer, the session stays in step (or ends with FATAL, as Postgres ends it), the
server keeps answering and never logs a traceback for a client's mistake.
"""
from __future__ import annotations

import os
import random
import socket
import struct
import threading
import time

import psycopg
import pytest

from tests.daemon import SUPERUSER_PASSWORD, wait_for
from tests.raw_wire import RawClient, error_fields, errors_in, message, query, startup_packet

AUTH_TIMEOUT = 2.0
MAX_CONNECTIONS = 40
CONFIG = f"""
[server]
max_connections = {MAX_CONNECTIONS}
superuser_reserved_connections = 3
authentication_timeout_seconds = {AUTH_TIMEOUT}
"""


@pytest.fixture(scope="module")
def server(module_make_tierd):
    return module_make_tierd(CONFIG).start()


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS")


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def assert_answers(server) -> None:
    with RawClient(server.port) as c:
        c.login()
        replies = c.ask("SELECT 41 + 1")
        assert [k for k, _ in replies][-1] == b"Z" and not errors_in(replies), replies


def test_invalid_utf8_in_simple_query_is_22021_and_ready(server):
    with RawClient(server.port) as c:
        c.login()
        replies = c.ask(b"SELECT '\xc3\x28'")
        assert [k for k, _ in replies] == [b"E", b"Z"]
        err = errors_in(replies)[0]
        assert err["C"] == "22021" and err["S"] == "ERROR"
        assert err["M"] == 'invalid byte sequence for encoding "UTF8": 0xc3 0x28'
        replies = c.ask("SELECT 1")   # in step: the next query gets its own answer
        assert [k for k, _ in replies] == [b"T", b"D", b"C", b"Z"]


def test_invalid_utf8_in_parse_skips_to_sync(server):
    with RawClient(server.port) as c:
        c.login()
        c.send(message(b"P", b"\0SELECT '\xff'\0\0\0") + message(b"B", b"\0\0" + b"\0" * 6)
               + message(b"E", b"\0\0\0\0\0") + message(b"S", b""))
        replies = c.until_ready()
        assert [k for k, _ in replies] == [b"E", b"Z"]
        assert errors_in(replies)[0]["M"] == 'invalid byte sequence for encoding "UTF8": 0xff'
        assert [k for k, _ in c.ask("SELECT 1")] == [b"T", b"D", b"C", b"Z"]


def test_truncated_bind_is_08p01_not_internal(server):
    with RawClient(server.port) as c:
        c.login()
        c.send(message(b"P", b"\0SELECT $1::int\0\0\0") + message(b"B", b"\0\0\0\0\0\x01\0\0\0\x09ab")
               + message(b"S", b""))
        replies = c.until_ready()
        assert [k for k, _ in replies] == [b"1", b"E", b"Z"]
        assert errors_in(replies)[0]["C"] == "08P01"


def test_unknown_message_type_is_fatal_08p01(server):
    with RawClient(server.port) as c:
        c.login()
        c.send(message(b"z", b"whatever"))
        replies = []
        while (msg := c.read()) is not None:
            replies.append(msg)
        assert [k for k, _ in replies] == [b"E"]
        err = errors_in(replies)[0]
        assert (err["S"], err["C"], err["M"]) == ("FATAL", "08P01", "invalid frontend message type 122")
    assert_answers(server)


def test_function_call_is_refused_and_session_goes_on(server):
    with RawClient(server.port) as c:
        c.login()
        c.send(message(b"F", struct.pack("!ih", 1234, 0) + struct.pack("!hh", 0, 0)))
        replies = c.until_ready()
        assert [k for k, _ in replies] == [b"E", b"Z"]
        assert errors_in(replies)[0]["C"] == "0A000"
        assert [k for k, _ in c.ask("SELECT 1")] == [b"T", b"D", b"C", b"Z"]


def test_oversized_startup_packet_is_refused_without_allocating(server):
    before = rss_kib(server.proc.pid)
    with RawClient(server.port, timeout=10) as c:
        c.send(struct.pack("!ii", 1 << 30, 196608))   # claims 1 GiB, sends 4 bytes
        msg = c.read()
        assert msg is not None and msg[0] == b"E"
        err = error_fields(msg[1])
        assert (err["S"], err["C"]) == ("FATAL", "08P01")
        assert c.read() is None
    assert rss_kib(server.proc.pid) - before < 50_000


def test_oversized_sasl_message_is_refused_without_allocating(module_make_tierd):
    d = module_make_tierd(CONFIG, data_dir=os.path.join(module_make_tierd.__self__.base, "scram"),
                          password=SUPERUSER_PASSWORD).start()
    before = rss_kib(d.proc.pid)
    with RawClient(d.port, timeout=10) as c:
        c.send(startup_packet())
        kind, body = c.read()
        assert kind == b"R" and struct.unpack_from("!i", body)[0] == 10   # AuthenticationSASL
        c.send(b"p" + struct.pack("!i", 1 << 30) + b"SCRAM-SHA-256\0")
        kind, body = c.read()
        err = error_fields(body)
        assert kind == b"E" and (err["S"], err["C"]) == ("FATAL", "08P01"), err
        assert c.read() is None
    assert rss_kib(d.proc.pid) - before < 50_000
    d.stop()


def test_half_open_sockets_are_closed_after_the_authentication_timeout(server):
    socks = [socket.create_connection(("127.0.0.1", server.port), timeout=AUTH_TIMEOUT + 20)
             for _ in range(30)]
    started = time.monotonic()
    try:
        socks[0].sendall(struct.pack("!i", 100))   # a startup packet that never finishes
        for s in socks:   # the server closes each one: EOF, not our own timeout
            while s.recv(1024):
                pass
        assert time.monotonic() - started < AUTH_TIMEOUT + 10
    finally:
        for s in socks:
            s.close()
    assert_answers(server)
    assert "Traceback" not in server.output()


def test_connection_storm_gets_sessions_or_53300_never_a_timeout(server):
    results: list[str] = []
    clients: list[RawClient] = []
    lock = threading.Lock()
    go = threading.Event()

    def connect() -> None:
        go.wait()
        try:
            c = RawClient(server.port, timeout=30)
            c.send(startup_packet())
            replies = c.until_ready()
        except OSError as exc:
            with lock:
                results.append(f"failed: {exc!r}")
            return
        errs = errors_in(replies)
        with lock:
            clients.append(c)
            if errs:
                results.append(errs[0]["C"])
            elif replies and replies[-1][0] == b"Z":
                results.append("ok")
            else:
                results.append(f"odd: {replies!r}")

    threads = [threading.Thread(target=connect) for _ in range(300)]
    for t in threads:
        t.start()
    go.set()
    for t in threads:
        t.join(timeout=90)
    try:
        assert len(results) == 300
        assert set(results) <= {"ok", "53300"}, sorted(set(results))
        assert MAX_CONNECTIONS - 5 <= results.count("ok") <= MAX_CONNECTIONS
    finally:
        for c in clients:
            c.close()
    wait_for(lambda: _logs_in(server), timeout=30, what="a session once the storm is over")


def _logs_in(server) -> bool:
    try:
        with psycopg.connect(server.dsn, connect_timeout=5):
            return True
    except psycopg.OperationalError:
        return False


def test_superuser_reserved_slots(server):
    with server.connect() as c:
        c.execute("CREATE ROLE storm_user LOGIN")
    held = []
    try:
        for _ in range(MAX_CONNECTIONS - 3):
            held.append(server.connect_as("storm_user"))
        with pytest.raises(psycopg.OperationalError, match="reserved for roles with the SUPERUSER"):
            server.connect_as("storm_user")
        held.append(server.connect())   # a superuser still gets in
    finally:
        for c in held:
            c.close()


def cpu_rate(pid: int, window: float = 1.0) -> float:
    """The daemon's CPU use over `window` seconds, in cores."""
    before, start = cpu_seconds(pid), time.monotonic()
    time.sleep(window)   # a measuring window, not a wait for a condition
    return (cpu_seconds(pid) - before) / (time.monotonic() - start)


def test_disconnected_client_query_is_cancelled(server):
    marker = "SELECT count(*) FROM range(20000000000) a(x) WHERE x % 7 = 3"
    c = RawClient(server.port)
    c.login()
    c.send(query(marker))
    pid = server.proc.pid
    with server.connect() as watcher:
        wait_for(lambda: watcher.execute("SELECT count(*) FROM pg_stat_activity WHERE state = 'active' "
                                         "AND query = %s", (marker,)).fetchone()[0] == 1,
                 timeout=30, what="the long query running")
        c.close()
        wait_for(lambda: "disconnected; cancelling its running statement" in server.output(), timeout=30,
                 what="the disconnect to be noticed")
        wait_for(lambda: watcher.execute("SELECT count(*) FROM pg_stat_activity WHERE query = %s",
                                         (marker,)).fetchone()[0] == 0, timeout=30, what="the query to end")
    # the query no longer burns a core (it would for minutes): the daemon is back to idle
    wait_for(lambda: cpu_rate(pid) < 0.3, timeout=30, what="the daemon's CPU use to drop")
    assert_answers(server)


def _valid_messages() -> list[bytes]:
    return [
        query("SELECT 1"),
        query("SELECT 'abc' || 'd', 2.5::numeric"),
        message(b"P", b"s1\0SELECT $1::int + 1\0\0\x01\0\0\0\x17"),
        message(b"B", b"\0s1\0\0\x01\0\x01\0\x01\0\0\0\x04\0\0\0\x07\0\0"),
        message(b"D", b"P\0"),
        message(b"E", b"\0\0\0\0\0"),
        message(b"C", b"S\0s1\0"),
        message(b"H", b""),
        message(b"P", b"\0SELECT $1::text\0\0\0"),
        message(b"B", b"\0\0\0\0\0\x01\0\0\0\x03abc\0\0"),
    ]


def _mutate(rng: random.Random, msg: bytes) -> bytes:
    """A framing-preserving mutation: the type byte or the payload changes, and the length
    field says the payload's true length (a wrong length is a test of its own)."""
    kind, payload = msg[:1], bytearray(msg[5:])
    op = rng.randrange(6)
    if op == 0 and payload:
        for _ in range(rng.randint(1, 4)):
            payload[rng.randrange(len(payload))] = rng.randrange(256)
    elif op == 1:
        payload = payload[:rng.randrange(len(payload) + 1)]
    elif op == 2:
        at = rng.randrange(len(payload) + 1)
        payload[at:at] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 8)))
    elif op == 3 and payload:
        at = rng.randrange(len(payload))
        payload[at] ^= 1 << rng.randrange(8)
    elif op == 4:
        kind = rng.choice([b"Q", b"P", b"B", b"D", b"E", b"C", b"F", b"d", b"c", b"f", bytes([rng.randrange(256)])])
    else:
        payload += bytes([0xff, 0xfe, 0xc3])
    if kind == b"X":
        kind = b"Q"
    return kind + struct.pack("!i", len(payload) + 4) + bytes(payload)


def _probe_answered(c: RawClient) -> bool:
    """After the mutated messages: Sync and a marker query; True when the marker's answer
    arrives (the session is in step), False when the server ended the session (FATAL)."""
    try:
        c.send(message(b"S", b"") + query("SELECT 424242"))
    except OSError:
        return False
    try:
        while (msg := c.read()) is not None:
            if msg[0] == b"D" and b"424242" in msg[1]:
                assert [c.read()[0], c.read()[0]] == [b"C", b"Z"]
                return True
    except ConnectionResetError:
        pass
    return False


def test_fuzzed_messages_leave_the_server_answering(server):
    rng = random.Random(20261203)
    valid = _valid_messages()
    pid = server.proc.pid
    before = rss_kib(pid)
    sent = fatal = 0
    c = RawClient(server.port, timeout=20)
    c.login()
    try:
        while sent < 2000:
            batch = b"".join(_mutate(rng, rng.choice(valid)) for _ in range(8))
            sent += 8
            try:
                c.send(batch)
            except OSError:
                pass
            if not _probe_answered(c):
                fatal += 1
                c.close()
                c = RawClient(server.port, timeout=20)
                c.login()
        for _ in range(200):   # before authentication: mutated startup packets, one socket each
            packet = bytearray(startup_packet())
            for _ in range(rng.randint(1, 6)):
                packet[rng.randrange(4, len(packet))] = rng.randrange(256)
            with RawClient(server.port, timeout=20) as pre:
                pre.send(bytes(packet))
                pre.sock.shutdown(socket.SHUT_WR)
                while pre.read() is not None:
                    pass
            sent += 1
    finally:
        c.close()
    print(f"fuzz: {sent} sent, {fatal} sessions ended")
    assert sent >= 2200 and fatal < sent
    assert_answers(server)
    assert rss_kib(pid) - before < 300_000, "server memory grew by more than 300 MiB"
    log = server.output()
    assert "Traceback" not in log, log[log.index("Traceback") - 500:][:3000]


def test_deep_expression_is_54001_stack_depth_limit_exceeded(server):
    with server.connect() as c:
        assert c.execute("SELECT " + "(" * 200 + "1" + ")" * 200).fetchone() == (1,)
        for sql in ("SELECT " + "(" * 3000 + "1" + ")" * 3000, "SELECT " + "1+" * 3000 + "1"):
            with pytest.raises(psycopg.Error) as exc:
                c.execute(sql)
            assert exc.value.sqlstate == "54001" and str(exc.value).startswith("stack depth limit exceeded")
            assert 'max_stack_depth' in exc.value.diag.message_hint
        assert c.execute("SELECT 1").fetchone() == (1,)
    assert "Traceback" not in server.output()


def test_limits_are_settings_show_reports(server):
    with server.connect() as c:
        assert c.execute("SHOW max_connections").fetchone() == (str(MAX_CONNECTIONS),)
        assert c.execute("SHOW superuser_reserved_connections").fetchone() == ("3",)
        assert c.execute("SHOW authentication_timeout").fetchone() == ("2s",)
        assert c.execute("SHOW idle_in_transaction_session_timeout").fetchone() == ("1min",)
