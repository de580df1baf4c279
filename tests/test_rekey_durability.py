"""TRUNCATE and ADD PRIMARY KEY through a crash at each of their steps: all or nothing."""
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


@pytest.mark.parametrize("step,keyed", [("add_primary_key.before_commit", False),
                                        ("add_primary_key.after_commit", True)])
def test_crash_during_add_primary_key_keeps_the_table_whole(make_tierd, tmp_path, step, keyed):
    """ADD PRIMARY KEY re-keys a key-less table (flush, compact, one catalog write): a crash
    before the catalog write leaves it keyed by row id, after it by the new key; rows intact."""
    data = str(tmp_path / "data")
    d = make_tierd(f'[failpoints]\n"{step}" = "crash"\n', data_dir=data).start()
    with d.connect() as c:
        c.execute("CREATE TABLE public.pk (id INT, v TEXT) WITH (FLUSH_POLICY = 'manual')")
        c.execute("INSERT INTO public.pk VALUES (1, 'a'), (2, 'b')")
        c.execute("STORAGE FLUSH TABLE public.pk WAIT")
        c.execute("UPDATE public.pk SET v = 'B' WHERE id = 2")
        c.execute("INSERT INTO public.pk VALUES (3, 'c')")
        with pytest.raises(psycopg.OperationalError):
            c.execute("ALTER TABLE public.pk ADD PRIMARY KEY (id)")
    assert d.wait_exit() != 0
    restarted = make_tierd(data_dir=data).start()
    with restarted.connect() as c:
        assert c.execute("SELECT id, v FROM public.pk ORDER BY id").fetchall() == [(1, "a"), (2, "B"), (3, "c")]
        if keyed:
            with pytest.raises(psycopg.errors.UniqueViolation):
                c.execute("INSERT INTO public.pk VALUES (1, 'dup')")
        else:
            c.execute("INSERT INTO public.pk VALUES (1, 'dup')")  # no key yet: accepted
            with pytest.raises(psycopg.errors.UniqueViolation):
                c.execute("ALTER TABLE public.pk ADD PRIMARY KEY (id)")
            c.execute("DELETE FROM public.pk WHERE v = 'dup'")
            c.execute("ALTER TABLE public.pk ADD PRIMARY KEY (id)")
        c.execute("UPDATE public.pk SET v = 'A' WHERE id = 1")
        assert c.execute("SELECT id, v FROM public.pk ORDER BY id").fetchall() == [(1, "A"), (2, "B"), (3, "c")]
    restarted.stop()
