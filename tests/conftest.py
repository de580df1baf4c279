import os

import pytest

from tests.daemon import Tierd


@pytest.fixture
def tierd(tmp_path):
    """A running daemon on a fresh data dir, stopped after the test."""
    d = Tierd(str(tmp_path / "data"))
    d.start()
    yield d
    d.stop()


@pytest.fixture
def make_tierd(tmp_path):
    """Factory for daemons with a config; every one started is stopped after the test."""
    started: list[Tierd] = []

    def make(config_text: str | None = None, data_dir: str | None = None) -> Tierd:
        cfg = None
        if config_text is not None:
            cfg = str(tmp_path / f"tierd-{len(started)}.toml")
            with open(cfg, "w") as f:
                f.write(config_text)
        d = Tierd(data_dir or str(tmp_path / "data"), config=cfg)
        started.append(d)
        return d

    yield make
    for d in started:
        d.stop()


@pytest.fixture
def conn(tierd):
    with tierd.connect() as c:
        yield c
