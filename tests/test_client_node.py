"""node-postgres (npm `pg`, pinned in tests/clients/node/package-lock.json) against a real
tierd: tests/clients/node/client.js runs the everyday features and prints one JSON object,
asserted here. `make test-deps` runs `npm ci` there."""
from __future__ import annotations

import json
import os
import shutil
import subprocess

import pytest

CLIENT_DIR = os.path.join(os.path.dirname(__file__), "clients", "node")

pytestmark = [
    pytest.mark.skipif(not shutil.which("node"), reason="no Node.js runtime (node) on this machine"),
    pytest.mark.skipif(not os.path.isdir(os.path.join(CLIENT_DIR, "node_modules", "pg")),
                       reason="node-postgres is not installed: `make test-deps` runs npm ci in tests/clients/node"),
]


@pytest.fixture(scope="module")
def out(module_tierd) -> dict:
    run = subprocess.run(["node", os.path.join(CLIENT_DIR, "client.js"), str(module_tierd.port)],
                         capture_output=True, text=True, timeout=120, cwd=CLIENT_DIR)
    assert run.returncode == 0, run.stdout + run.stderr
    return json.loads(run.stdout.strip().splitlines()[-1])


def test_connect_and_settings(out):
    assert out["version"] == "15.0"


def test_parameterised_insert_and_select_of_the_common_types(out):
    assert out["insert"] == ["INSERT", 1]
    assert out["row"] == {
        "id": "1",  # int8 comes back as a string in node-postgres, by design
        "name": "one", "qty": 7, "price": "12.50", "ratio": 0.25, "flag": True,
        "seen": "2024-05-01T12:30:00.000Z", "tag": "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11",
        "doc": {"a": 1}, "nums": [1, 2, 3], "data": [1, 2, 3],
    }
    assert out["nulls"] == {"qty": None, "price": None, "day": None}


def test_returning_and_transactions(out):
    assert out["returning"] == ["UPDATE", [{"id": "1", "qty": 12}]]  # `qty + $1`: $1 untyped, typed as qty
    assert out["untyped"] == [24, ["1", "2"]]  # arithmetic and `= ANY($1)` with an array sent as text
    assert out["ids"] == ["1", "2", "4"]  # 3 rolled back, 4 committed


def test_errors_carry_sqlstate_and_the_connection_survives(out):
    assert out["duplicate"] == {"code": "23505",
                                "message": 'duplicate key value violates unique constraint "node_items_pkey"',
                                "detail": "Key (id)=(1) already exists."}
    assert out["missing"] == "42P01"
    assert out["after_error"] == 1


def test_named_prepared_statements_and_field_types(out):
    assert out["prepared"] == ["four", "two"]
    assert out["fields"] == [["id", 20], ["name", 25]]
