"""SQLAlchemy reflection under 2.0 (the test extra) and 2.1 (what pip installs today), and an
Alembic autogenerate + upgrade + downgrade of a two-revision project, against a real tierd.

SQLAlchemy 2.1 cannot share a virtualenv with 2.0, so `make install` puts it alone in
`.venv/sqlalchemy-2.1` (`pip install --no-deps --target`; its only dependency,
typing_extensions, is in the venv already), and tests/clients/sqlalchemy/reflect.py runs in a
subprocess with that directory first on PYTHONPATH. The same script runs under 2.0 too.

The Alembic project runs twice: with the env.py `alembic init` writes, edited only where its
comment asks for the models' MetaData (Alembic's default: the whole upgrade in one
transaction, DDL and the alembic_version update together), and with an env.py that connects
with `isolation_level="AUTOCOMMIT"` (each DDL statement commits by itself).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
SCRIPT = os.path.join(HERE, "clients", "sqlalchemy", "reflect.py")
SQLALCHEMY_21 = os.path.join(ROOT, ".venv", "sqlalchemy-2.1")


@pytest.fixture(scope="module")
def refl_db(module_tierd):
    with module_tierd.connect(connect_timeout=10) as c:
        c.execute("CREATE TABLE public.refl_items (id BIGINT PRIMARY KEY, name TEXT NOT NULL, price NUMERIC(10,2), "
                  "seen TIMESTAMPTZ, n INTEGER DEFAULT 7)")
        c.execute("CREATE NAMESPACE shop")
        c.execute("CREATE TABLE shop.orders (region TEXT, num INTEGER, PRIMARY KEY (region, num))")
        c.execute("INSERT INTO public.refl_items VALUES (1, 'a', 1.5, '2026-01-02 03:04:05+00', 2)")
        c.execute("CREATE TABLE public.refl_lines (id BIGINT PRIMARY KEY, "
                  "item_id BIGINT REFERENCES public.refl_items ON DELETE CASCADE, region TEXT, num INTEGER, "
                  "FOREIGN KEY (region, num) REFERENCES shop.orders)")
    return module_tierd


def _reflect(tierd, pythonpath: str | None) -> dict:
    env = dict(os.environ)
    if pythonpath:
        env["PYTHONPATH"] = pythonpath + os.pathsep + env.get("PYTHONPATH", "")
    url = f"postgresql+psycopg://tierd@127.0.0.1:{tierd.port}/tierd"
    done = subprocess.run([sys.executable, SCRIPT, url], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout)


@pytest.mark.parametrize("version", ["2.0", "2.1"])
def test_reflection(refl_db, version):
    if version == "2.1" and not os.path.isdir(SQLALCHEMY_21):
        pytest.skip("SQLAlchemy 2.1 is installed by `make install` into .venv/sqlalchemy-2.1")
    out = _reflect(refl_db, SQLALCHEMY_21 if version == "2.1" else None)
    assert out["version"].startswith(version + "."), out["version"]
    assert {"public", "shop"} <= set(out["schemas"])
    assert "refl_items" in out["tables"] and out["shop_tables"] == ["orders"]
    assert out["has_table"] == [True, False]
    assert out["columns"] == [["id", "BIGINT", False, None, None], ["name", "TEXT", False, None, None],
                              ["price", "NUMERIC(10, 2)", True, None, None], ["seen", "TIMESTAMP", True, None, True],
                              ["n", "INTEGER", True, "7", None]]
    assert out["shop_columns"] == [["region", "TEXT"], ["num", "INTEGER"]]
    assert out["pk"]["constrained_columns"] == ["id"] and out["pk"]["name"] == "refl_items_pkey"
    assert out["shop_pk"]["constrained_columns"] == ["region", "num"]
    assert out["indexes"] == [] and out["fks"] == [] and out["unique"] == []  # the key is a constraint
    assert [c[0] for c in out["autoload"]] == ["id", "name", "price", "seen", "n"]
    assert [c[2] for c in out["autoload"]] == [True, False, False, False, False]
    assert out["reflected"] == ["shop.orders"] and "refl_items" in out["reflected_public"]
    assert out["rows"] == [["1", "a", "1.50", "2026-01-02 03:04:05+00:00", "2"]]
    # foreign keys as the dialect reads them (pg_constraint + pg_get_constraintdef)
    assert out["child_fks"] == [
        {"name": "refl_lines_item_id_fkey", "constrained_columns": ["item_id"], "referred_schema": None,
         "referred_table": "refl_items", "referred_columns": ["id"], "options": {"ondelete": "CASCADE"},
         "comment": None},
        {"name": "refl_lines_region_num_fkey", "constrained_columns": ["region", "num"], "referred_schema": "shop",
         "referred_table": "orders", "referred_columns": ["region", "num"], "options": {}, "comment": None}]
    assert out["child_targets"] == ["refl_items.id", "shop.orders.num", "shop.orders.region"]


ENV_PY = """
import os
import sys

from alembic import context
from sqlalchemy import create_engine

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # models.py
import models  # noqa: E402

url = context.config.get_main_option("sqlalchemy.url")
engine = create_engine(url, isolation_level="AUTOCOMMIT")
with engine.connect() as connection:
    context.configure(connection=connection, target_metadata=models.metadata)
    with context.begin_transaction():
        context.run_migrations()
engine.dispose()
"""

MODELS_1 = """
from sqlalchemy import BigInteger, Column, MetaData, Numeric, Table, Text

metadata = MetaData()
Table("al_users", metadata,
      Column("id", BigInteger, primary_key=True, autoincrement=False),
      Column("name", Text, nullable=False),
      Column("balance", Numeric(12, 2)))
"""

MODELS_2 = MODELS_1 + """
from sqlalchemy import ForeignKey

Table("al_posts", metadata,
      Column("id", BigInteger, primary_key=True, autoincrement=False),
      Column("user_id", BigInteger, ForeignKey("al_users.id", ondelete="CASCADE"), nullable=False, index=True),
      Column("body", Text))
"""


def _models_env(generated: str) -> str:
    """The generated env.py as its user edits it: `target_metadata = None` becomes the models'
    MetaData (models.py sits beside the migrations directory)."""
    assert "\ntarget_metadata = None\n" in generated, generated
    return generated.replace("\ntarget_metadata = None\n", (
        "\nimport os, sys\n"
        "sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))\n"
        "import models\n"
        "target_metadata = models.metadata\n"))


@pytest.mark.parametrize("env", ["transactional", "autocommit"])
def test_alembic_autogenerate_upgrade_downgrade(refl_db, tmp_path, env):
    pytest.importorskip("alembic", reason="Alembic is in the test extra: make install")
    from alembic import command
    from alembic.config import Config

    with refl_db.connect() as c:  # autogenerate drops unknown tables in no dependency order, on PostgreSQL too
        c.execute("DROP TABLE IF EXISTS public.refl_lines")
    project = tmp_path / "migrations"
    (tmp_path / "models.py").write_text(MODELS_1)
    ini = str(tmp_path / "alembic.ini")
    command.init(Config(ini), str(project))  # `alembic init migrations`
    cfg = Config(ini)
    cfg.set_main_option("script_location", str(project))
    cfg.set_main_option("sqlalchemy.url", f"postgresql+psycopg://tierd@127.0.0.1:{refl_db.port}/tierd")
    generated = (project / "env.py").read_text()
    (project / "env.py").write_text(_models_env(generated) if env == "transactional" else textwrap.dedent(ENV_PY))
    sys.modules.pop("models", None)
    try:
        first = command.revision(cfg, message="users", autogenerate=True)
        command.upgrade(cfg, "head")
        (tmp_path / "models.py").write_text(MODELS_2)
        sys.modules.pop("models", None)  # env.py imports the changed models
        second = command.revision(cfg, message="posts", autogenerate=True)
        command.upgrade(cfg, "head")
        # the index reads back as declared: a further autogenerate finds nothing to do
        third = command.revision(cfg, message="nothing", autogenerate=True)
        body = open(third.path).read()
        os.remove(third.path)
        assert "op." not in body, body
        if env == "transactional":
            _check_failed_upgrade_rolls_back(refl_db, cfg, second)
        _check_downgrades(refl_db, cfg, first, second)
    finally:
        sys.modules.pop("models", None)


def _check_failed_upgrade_rolls_back(refl_db, cfg, second) -> None:
    """Alembic's transactional DDL: a migration that fails after creating a table and adding a
    column leaves neither behind, and alembic_version still names the last good revision."""
    from alembic import command
    import sqlalchemy as sa

    bad = command.revision(cfg, message="fails")
    text = open(bad.path).read().replace("    pass\n", (
        "    op.create_table('al_tmp', sa.Column('id', sa.BigInteger(), primary_key=True))\n"
        "    op.add_column('al_users', sa.Column('nick', sa.Text()))\n"
        "    op.execute(\"INSERT INTO al_users (id, name) VALUES (99, 'during')\")\n"
        "    op.execute('SELECT 1 / 0')\n"), 1)
    open(bad.path, "w").write(text)
    try:
        with pytest.raises(sa.exc.DataError, match="division by zero"):
            command.upgrade(cfg, "head")
    finally:
        os.remove(bad.path)
    with refl_db.connect() as c:
        names = {r[0] for r in c.execute("SELECT table_name FROM information_schema.tables")}
        assert "al_tmp" not in names
        assert [r[0] for r in c.execute("SELECT column_name FROM information_schema.columns "
                                        "WHERE table_name = 'al_users' ORDER BY ordinal_position")] == [
            "id", "name", "balance"]
        assert c.execute("SELECT count(*) FROM al_users WHERE id = 99").fetchone() == (0,)
        assert c.execute("SELECT version_num FROM alembic_version").fetchall() == [(second.revision,)]


def _check_downgrades(refl_db, cfg, first, second) -> None:
    from alembic import command

    text_1 = open(first.path).read()
    text_2 = open(second.path).read()
    assert "op.create_table('al_users'" in text_1 and "al_posts" not in text_1
    # the second revision sees al_users as it is: only the new table, nothing altered
    assert "op.create_table('al_posts'" in text_2 and "'al_users'" not in text_2, text_2
    assert "op.create_index(op.f('ix_al_posts_user_id'), 'al_posts', ['user_id'], unique=False)" in text_2, text_2
    assert "sa.ForeignKeyConstraint(['user_id'], ['al_users.id'], ondelete='CASCADE')" in text_2, text_2
    with refl_db.connect() as c:
        assert c.execute("SELECT indexdef FROM pg_indexes WHERE indexname = 'ix_al_posts_user_id'").fetchall() == [
            ("CREATE INDEX ix_al_posts_user_id ON public.al_posts USING btree (user_id)",)]
        names = {r[0] for r in c.execute("SELECT table_name FROM information_schema.tables "
                                          "WHERE table_schema = 'public'")}
        assert {"al_users", "al_posts", "alembic_version"} <= names
        assert c.execute("SELECT version_num FROM alembic_version").fetchall() == [(second.revision,)]
        c.execute("INSERT INTO al_users VALUES (1, 'a', 2.50)")
    command.downgrade(cfg, "-1")
    with refl_db.connect() as c:
        names = {r[0] for r in c.execute("SELECT table_name FROM information_schema.tables")}
        assert "al_posts" not in names and "al_users" in names
        assert c.execute("SELECT count(*) FROM pg_indexes WHERE indexname = 'ix_al_posts_user_id'").fetchone() == (0,)
        assert c.execute("SELECT version_num FROM alembic_version").fetchall() == [(first.revision,)]
        assert c.execute("SELECT name FROM al_users").fetchall() == [("a",)]
    command.downgrade(cfg, "base")
    with refl_db.connect() as c:
        names = {r[0] for r in c.execute("SELECT table_name FROM information_schema.tables")}
        assert "al_users" not in names
        assert c.execute("SELECT count(*) FROM alembic_version").fetchone() == (0,)
