"""pgbench unmodified: `pgbench -i` and its built-in TPC-B script; and a custom script (tables
created here) in all three query modes.

Each transaction moves a random delta into one account and records it in a history table, so
after the run the history holds one row per transaction and the balances add up to the
deltas: a lost, doubled or half-applied transaction shows in the counts.
"""
from __future__ import annotations

import re
import shutil
import subprocess

import pytest

PGBENCH = shutil.which("pgbench")
CLIENTS, THREADS, TRANSACTIONS = 4, 2, 40
ACCOUNTS = 20

pytestmark = pytest.mark.skipif(PGBENCH is None, reason="pgbench is not installed "
                                "(make test installs it: tests/install-test-deps.sh)")

SCRIPT = """\
\\set aid random(1, {accounts})
\\set delta random(-500, 500)
\\set hid random(1, 9000000000000000000)
UPDATE public.pgb_acc_{mode} SET balance = balance + :delta WHERE aid = :aid;
SELECT balance FROM public.pgb_acc_{mode} WHERE aid = :aid;
INSERT INTO public.pgb_hist_{mode} (hid, aid, delta) VALUES (:hid, :aid, :delta);
"""


@pytest.mark.parametrize("mode", ["simple", "extended", "prepared"])
def test_pgbench_custom_script(module_tierd, tmp_path, mode):
    with module_tierd.connect() as c:
        c.execute(f"CREATE TABLE public.pgb_acc_{mode} (aid INT PRIMARY KEY, balance BIGINT)")
        c.execute(f"CREATE TABLE public.pgb_hist_{mode} (hid BIGINT PRIMARY KEY, aid INT, "
                  "delta INT)")
        c.execute(f"INSERT INTO public.pgb_acc_{mode} SELECT range, 0 FROM range(1, {ACCOUNTS + 1})")
    script = tmp_path / f"bench_{mode}.sql"
    script.write_text(SCRIPT.format(accounts=ACCOUNTS, mode=mode))
    r = subprocess.run(
        [PGBENCH, "-h", "127.0.0.1", "-p", str(module_tierd.port), "-U", "tierd", "-n",
         "-f", str(script), "-M", mode, "-c", str(CLIENTS), "-j", str(THREADS),
         "-t", str(TRANSACTIONS), "tierd"],
        capture_output=True, text=True, timeout=300, env={"PGCONNECT_TIMEOUT": "10"})
    assert r.returncode == 0, r.stdout + r.stderr
    total = CLIENTS * TRANSACTIONS
    assert re.search(rf"number of transactions actually processed: {total}/{total}", r.stdout), \
        r.stdout
    failed = re.search(r"number of failed transactions: (\d+)", r.stdout)
    assert failed is None or failed.group(1) == "0", r.stdout
    with module_tierd.connect() as c:
        history = c.execute(f"SELECT count(*), coalesce(sum(delta), 0) "
                            f"FROM public.pgb_hist_{mode}").fetchone()
        accounts = c.execute(f"SELECT count(*), sum(balance) FROM public.pgb_acc_{mode}").fetchone()
    assert history[0] == total
    assert accounts == (ACCOUNTS, history[1])


def _pgbench(port: int, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([PGBENCH, "-h", "127.0.0.1", "-p", str(port), "-U", "tierd", *args, "tierd"],
                          capture_output=True, text=True, timeout=600, env={"PGCONNECT_TIMEOUT": "10"})


def test_pgbench_init(module_tierd):
    """Unmodified `pgbench -i -s 1`: DROP TABLE a, b, c; WITH (fillfactor=100); a history
    table without a key; TRUNCATE; COPY; VACUUM; ALTER TABLE ... ADD PRIMARY KEY."""
    r = _pgbench(module_tierd.port, "-i", "-s", "1")
    assert r.returncode == 0, r.stdout + r.stderr
    with module_tierd.connect() as c:
        assert c.execute("SELECT count(*) FROM pgbench_accounts").fetchone()[0] == 100000
        assert c.execute("SELECT count(*) FROM pgbench_branches").fetchone()[0] == 1
        assert c.execute("SELECT count(*) FROM pgbench_tellers").fetchone()[0] == 10
    r = _pgbench(module_tierd.port, "-i", "-s", "1")  # again: drops and recreates
    assert r.returncode == 0, r.stdout + r.stderr


@pytest.mark.parametrize("mode", ["simple", "prepared"])
def test_pgbench_tpcb(module_tierd, mode):
    """The built-in TPC-B script from 8 clients: 0 failed transactions and balances that add up
    (every transaction updates the one branch row: its row lock makes them wait, never lose
    an update)."""
    r = _pgbench(module_tierd.port, "-i", "-s", "1")
    assert r.returncode == 0, r.stdout + r.stderr
    r = _pgbench(module_tierd.port, "-T", "10", "-c", "8", "-j", "4", "-M", mode)
    assert r.returncode == 0, r.stdout + r.stderr
    failed = re.search(r"number of failed transactions: (\d+)", r.stdout)
    assert failed is None or failed.group(1) == "0", r.stdout
    with module_tierd.connect() as c:
        sums = [c.execute(f"SELECT coalesce(sum({col}), 0) FROM {table}").fetchone()[0]
                for table, col in (("pgbench_accounts", "abalance"), ("pgbench_branches", "bbalance"),
                                   ("pgbench_tellers", "tbalance"), ("pgbench_history", "delta"))]
        assert c.execute("SELECT count(*) FROM pgbench_history").fetchone()[0] > 0
    assert sums[0] == sums[1] == sums[2] == sums[3], sums
