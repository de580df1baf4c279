"""TRUNCATE through a crash at each of its steps: all or nothing (one manifest commit)."""
import psycopg
import pytest

from tests.helpers import assert_cold_consistent

# (failpoint, rows left after the restart)
STEPS = [("truncate.before_manifest", 5), ("truncate.after_manifest", 0)]


@pytest.mark.parametrize("step,rows_after", STEPS)
def test_crash_during_truncate_leaves_all_or_nothing(make_tierd, tmp_path, step, rows_after):
    data = str(tmp_path / "data")
    d = make_tierd(f'[failpoints]\n"{step}" = "crash"\n', data_dir=data).start()
    with d.connect() as c:
        c.execute("CREATE TABLE public.tr (id INT PRIMARY KEY, v TEXT) WITH (FLUSH_POLICY = 'manual')")
        c.execute("INSERT INTO public.tr VALUES (1, 'a'), (2, 'b'), (3, 'c')")
        c.execute("STORAGE FLUSH TABLE public.tr WAIT")
        c.execute("INSERT INTO public.tr VALUES (4, 'd'), (5, 'e')")
        c.execute("UPDATE public.tr SET v = 'A' WHERE id = 1")  # a hot version of a cold row
        c.execute("CREATE TABLE public.kl (a INT) WITH (FLUSH_POLICY = 'manual')")
        c.execute("INSERT INTO public.kl VALUES (1)")
        with pytest.raises(psycopg.OperationalError):
            c.execute("TRUNCATE public.tr")
    assert d.wait_exit() != 0
    restarted = make_tierd(data_dir=data).start()
    with restarted.connect() as c:
        assert c.execute("SELECT count(*) FROM public.tr").fetchone()[0] == rows_after
        assert c.execute("SELECT count(*) FROM public.kl").fetchone()[0] == 1  # other tables untouched
        if rows_after:
            assert c.execute("SELECT v FROM public.tr WHERE id = 1").fetchone()[0] == "A"
        else:
            c.execute("INSERT INTO public.tr VALUES (1, 'again')")
            c.execute("STORAGE FLUSH TABLE public.tr WAIT")
            assert c.execute("SELECT id, v FROM public.tr").fetchall() == [(1, "again")]
    restarted.stop()
    assert_cold_consistent(data, "public", "tr")
