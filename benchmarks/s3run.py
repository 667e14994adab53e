"""Export to S3: a moto server on loopback (scripts/local_s3.py) in its own process.

moto keeps objects in memory and answers from one Python process, so these figures say
how our S3 path behaves (objects/s, MiB/s, retries none), not what AWS or MinIO would do.
The fake credentials are set in this process's environment before Spark starts, so the
Python workers (children of the JVM) inherit them; nothing leaves the machine.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys

from benchmarks.common import ROOT

FAKE_AWS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": "us-east-1", "AWS_EC2_METADATA_DISABLED": "true",
            # no shared config or credentials files: the user's ~/.aws plays no part
            "AWS_CONFIG_FILE": os.devnull, "AWS_SHARED_CREDENTIALS_FILE": os.devnull}
BUCKET = "bench"


def use_fake_credentials() -> None:
    """Call before Spark starts: workers inherit the environment of the JVM."""
    os.environ.update(FAKE_AWS)
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3"):
        os.environ.pop(name, None)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class MotoServer:
    """`python scripts/local_s3.py` on a free loopback port, with bucket BUCKET."""

    def __init__(self):
        self.port = _free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self.proc = None

    def __enter__(self) -> MotoServer:
        self.proc = subprocess.Popen(
            [sys.executable, str(ROOT / "scripts" / "local_s3.py"), "--port", str(self.port),
             "--bucket", BUCKET], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
            env={**os.environ, **FAKE_AWS}, text=True)
        line = self.proc.stdout.readline()   # printed once the bucket exists
        if not line.startswith("local S3 at"):
            self.__exit__()
            raise RuntimeError(f"moto server did not start: {line!r}")
        return self

    def __exit__(self, *exc) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()

    def object_count(self, prefix: str) -> int:
        import boto3

        client = boto3.client("s3", endpoint_url=self.endpoint, region_name="us-east-1")
        pages = client.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix)
        return sum(page.get("KeyCount", 0) for page in pages)


def s3_extra(endpoint: str) -> dict:
    """The [s3] table of the job."""
    return {"s3": {"endpoint_url": endpoint, "region": "us-east-1"}}

