"""Sequences through kill -9: a value handed out is never handed out again, and concurrent
sessions never get the same value (values are reserved in blocks persisted ahead of use)."""
import threading

import psycopg

from tests.daemon import wait_for

SESSIONS = 4


def test_sequence_burst_survives_kill9(make_tierd):
    d = make_tierd().start()
    with d.connect() as c:
        c.execute("CREATE SEQUENCE public.burst")
        c.execute("CREATE TABLE public.ids (id BIGSERIAL PRIMARY KEY, who INT)")
    seen: list[list[int]] = [[] for _ in range(SESSIONS)]
    stop = threading.Event()

    def burst(i: int) -> None:
        with d.connect() as w:
            while not stop.is_set() and len(seen[i]) < 50_000:
                try:
                    if len(seen[i]) % 2:
                        seen[i].append(w.execute("SELECT nextval('burst')").fetchone()[0])
                    else:
                        seen[i].append(-w.execute("INSERT INTO public.ids (who) VALUES (%s) RETURNING id",
                                                  (i,)).fetchone()[0])
                except psycopg.OperationalError:
                    return

    threads = [threading.Thread(target=burst, args=(i,)) for i in range(SESSIONS)]
    for t in threads:
        t.start()
    wait_for(lambda: sum(map(len, seen)) > 400, timeout=60, what="400 values handed out")
    d.kill9()
    stop.set()
    for t in threads:
        t.join(timeout=30)
    before = [v for values in seen for v in values]
    assert len(before) == len(set(before)), "two sessions got the same value"
    d.start()
    with d.connect() as c:
        after = [c.execute("SELECT nextval('burst')").fetchone()[0] for _ in range(50)]
        ids = [c.execute("INSERT INTO public.ids (who) VALUES (9) RETURNING id").fetchone()[0] for _ in range(50)]
        assert min(after) > max(v for v in before if v > 0)
        assert min(ids) > max(-v for v in before if v < 0)
        assert c.execute("SELECT count(*) = count(DISTINCT id) FROM public.ids").fetchone() == (True,)
    d.stop()
