"""The one fixture layer: every test that needs a daemon gets it here (process class and
factory in tests/daemon.py). Only tests of start-up itself build a `Tierd` by hand.

Per test (a fresh data dir each):
  tierd            a running daemon, trust authentication
  conn             an autocommit connection to `tierd`
  scram_tierd      a running daemon with SCRAM, superuser password SUPERUSER_PASSWORD
  make_tierd       factory: make_tierd(config_text, data_dir=, password=, env=) -> Tierd, not
                   started; daemons made one after another share <tmp>/data unless told otherwise
Per module (tests share it: each uses its own table and role names, none restarts it):
  module_tierd     a running daemon, trust authentication
  db               an autocommit connection to `module_tierd`, one per test
  module_scram_tierd  as scram_tierd, for the module
  metrics_tierd    as module_tierd, with /metrics on `d.metrics_port` (fast-path counters)
  module_make_tierd   make_tierd for the module, e.g. to prepare a data dir once that each
                   test copies (a cleanly stopped daemon's data dir is a valid copy)
Every daemon a fixture made is stopped after its test or module. Restart and crash a daemon
with `d.restart()` / `d.restart(kill9=True)` / `d.kill9()`; log in as a role with
`d.connect_as(user, password)`.
"""
import pytest

from tests.daemon import SUPERUSER_PASSWORD, Daemons, free_port


@pytest.fixture
def make_tierd(tmp_path):
    daemons = Daemons(tmp_path)
    yield daemons.make
    daemons.close()


@pytest.fixture
def tierd(make_tierd):
    return make_tierd().start()


@pytest.fixture
def conn(tierd):
    with tierd.connect() as c:
        yield c


@pytest.fixture
def scram_tierd(make_tierd):
    return make_tierd(password=SUPERUSER_PASSWORD).start()


def _module_daemons(request, tmp_path_factory, suffix: str) -> Daemons:
    return Daemons(tmp_path_factory.mktemp(request.module.__name__.rsplit(".", 1)[-1] + suffix))


@pytest.fixture(scope="module")
def module_make_tierd(request, tmp_path_factory):
    daemons = _module_daemons(request, tmp_path_factory, "-made")
    yield daemons.make
    daemons.close()


@pytest.fixture(scope="module")
def module_tierd(request, tmp_path_factory):
    daemons = _module_daemons(request, tmp_path_factory, "")
    yield daemons.make().start()
    daemons.close()


@pytest.fixture(scope="module")
def module_scram_tierd(request, tmp_path_factory):
    daemons = _module_daemons(request, tmp_path_factory, "-scram")
    yield daemons.make(password=SUPERUSER_PASSWORD).start()
    daemons.close()


@pytest.fixture
def db(module_tierd):
    with module_tierd.connect(connect_timeout=10) as c:
        yield c


@pytest.fixture(scope="module")
def metrics_tierd(module_make_tierd):
    port = free_port()
    d = module_make_tierd(f'[metrics]\nlisten = "127.0.0.1:{port}"\n').start()
    d.metrics_port = port
    return d
