"""The README tried as a new user would (issue 14): its TOML examples are valid configs,
`make run PORT=… DATA_DIR=…` serves there and stops on Ctrl-C, and check-config says what is in
effect, warning about a scram setup nobody can log in to."""
from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import tomllib

import psycopg
import pytest

from tests.daemon import ROOT, TIERD, free_port, wait_for

README = os.path.join(ROOT, "README.md")
OPENSSL = shutil.which("openssl")


def _toml_blocks() -> list[str]:
    with open(README) as f:
        return re.findall(r"```toml\n(.*?)```", f.read(), re.S)


def _check_config(path) -> subprocess.CompletedProcess:
    return subprocess.run([TIERD, "check-config", str(path)], capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("index", range(len(_toml_blocks())))
def test_every_toml_example_is_a_valid_config(tmp_path, index):
    text = _toml_blocks()[index]
    tomllib.loads(text)  # no duplicate tables, valid TOML
    if "ssl_cert_file" in text and re.search(r"^ssl\s*=\s*true", text, re.M):
        # the example names a certificate: make a real one where it says, as a user would
        if OPENSSL is None:
            pytest.skip("the openssl CLI is not installed (needed to make the example's certificate)")
        for name in re.findall(r'^ssl_(?:cert|key)_file\s*=\s*"([^"]+)"', text, re.M):
            text = text.replace(f'"{name}"', f'"{tmp_path / os.path.basename(name)}"')
        subprocess.run([OPENSSL, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj",
                        "/CN=127.0.0.1", "-keyout", str(tmp_path / "server.key"), "-out",
                        str(tmp_path / "server.crt")], check=True, capture_output=True, timeout=60)
    cfg = tmp_path / "example.toml"
    cfg.write_text(text)
    r = _check_config(cfg)
    assert r.returncode == 0, r.stderr
    assert "warning" not in r.stderr, r.stderr


def test_check_config_prints_the_auth_method_in_effect(tmp_path):
    cfg = tmp_path / "a.toml"
    cfg.write_text('[server]\nport = 5499\n')
    r = _check_config(cfg)
    assert r.returncode == 0 and "auth.method = 'trust'" in r.stdout, r.stdout
    cfg.write_text('[auth]\npassword = "pw"\n')
    assert "auth.method = 'scram'" in _check_config(cfg).stdout


def test_scram_without_any_password_is_warned_about_and_refused(tmp_path):
    cfg = tmp_path / "locked.toml"
    cfg.write_text(f'[server]\ndata_dir = "{tmp_path / "d"}"\nport = {free_port()}\n'
                   '[auth]\npassword = ""\nmethod = "scram"\n')
    r = _check_config(cfg)
    assert r.returncode == 0 and "auth.method = 'scram'" in r.stdout
    assert "warning" in r.stderr and "auth.password is empty" in r.stderr, r.stderr
    serve = subprocess.run([TIERD, "serve", "--config", str(cfg)], capture_output=True, text=True, timeout=120)
    assert serve.returncode != 0
    assert "no role has a password" in serve.stderr, serve.stderr


@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
def test_make_run_with_port_and_data_dir_and_ctrl_c(tmp_path):
    port, data = free_port(), tmp_path / "run-data"
    proc = subprocess.Popen(["make", "-s", "-C", ROOT, "run", f"PORT={port}", f"DATA_DIR={data}"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        def up():
            try:
                with psycopg.connect(host="127.0.0.1", port=port, user="tierd", dbname="tierd",
                                     connect_timeout=2) as c:
                    return c.execute("SELECT 1").fetchone() == (1,)
            except psycopg.OperationalError:
                assert proc.poll() is None, proc.stdout.read().decode()
                return False
        wait_for(up, timeout=180, interval=0.2, what=f"make run on port {port}")
        assert os.path.isdir(data)
        os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C in the terminal: the whole process group
        proc.wait(timeout=60)  # make itself reports the interrupt; tierd stops cleanly
        out = proc.stdout.read().decode()
        assert "tierd stopped" in out, out[-3000:]
        with pytest.raises(psycopg.OperationalError):
            psycopg.connect(host="127.0.0.1", port=port, user="tierd", dbname="tierd", connect_timeout=2)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)
