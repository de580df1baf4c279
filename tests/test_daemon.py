"""The daemon as a process: start-up rules, database name, one daemon per data dir."""
import os
import re
import subprocess

import psycopg
import pytest

from tests.daemon import TIERD
from tierd import config


def test_second_daemon_on_same_data_dir_exits_clearly(module_tierd, make_tierd):
    tierd = module_tierd
    other = make_tierd(data_dir=tierd.data_dir).start(wait=False)
    assert other.wait_exit(timeout=60) != 0
    assert "in use by another tierd process" in other.output()
    with tierd.connect() as c:  # the first one is unaffected
        assert c.execute("SELECT 1").fetchone() == (1,)


def test_unknown_database_is_rejected_with_3D000(module_tierd):
    with pytest.raises(psycopg.OperationalError) as info:
        psycopg.connect(f"host=127.0.0.1 port={module_tierd.port} user=tierd dbname=postgres")
    assert "3D000" in str(info.value) or 'database "postgres" does not exist' in str(info.value)


def test_refuses_non_loopback_without_password(tmp_path):
    # start-up itself, so `tierd serve` by hand: it must refuse before it listens anywhere
    r = subprocess.run([TIERD, "serve", "--data-dir", str(tmp_path / "d"), "--host", "0.0.0.0", "--port", "1"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode != 0
    assert "without a password" in r.stderr


def test_bad_config_names_the_key(tmp_path):
    cfg = tmp_path / "bad.toml"
    cfg.write_text('[flush]\ndefault_policy = "rows:0"\n')
    r = subprocess.run([TIERD, "check-config", str(cfg)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "flush.default_policy" in r.stderr


def test_readme_config_example_is_valid_and_complete(tmp_path):
    """The README's config block loads, and names every setting the config file knows."""
    with open(os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "README.md")) as f:
        readme = f.read()
    section = readme[readme.index("## Configuration"):]
    block = re.search(r"```toml\n(.*?)```", section, re.S).group(1)
    path = tmp_path / "readme.toml"
    path.write_text(block.replace('password = ""', 'password = "x"'))
    cfg = config.load(str(path))
    cfg.check()
    assert cfg.max_connections == 100 and cfg.idle_in_transaction_timeout_s == 60
    missing = [name for name in config.KEY_NAMES.values()
               if "." in name and "<" not in name and name.split(".", 1)[1] not in block]
    assert not missing, f"settings missing from the README's config block: {missing}"
