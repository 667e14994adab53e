"""S3 for tests: a real moto server on loopback, per-test buckets, IAM auth, a flaky proxy.

Registered in conftest.py with `pytest_plugins = ["tests.s3_fixtures"]`.

- `aws_test_env` (session, autouse): fake AWS credentials in os.environ for the whole run,
  before any other session fixture (so a Spark JVM started later passes them to executors).
- `moto_server` (session): the endpoint URL "http://127.0.0.1:PORT".
- `s3_bucket`: a fresh, empty bucket per test → (endpoint, bucket).
- `moto_auth`: turns on moto's IAM checks for one test → an `IamUsers` that makes users.
- `flaky_s3`: a fault-injecting proxy in front of moto → (proxy endpoint, FlakyS3Proxy).
"""

from __future__ import annotations

import http.client
import json
import threading
import urllib.request
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

ACCESS_KEY = "testing"
SECRET_KEY = "a-secret-that-must-not-leak-1234"
REGION = "us-east-1"
HOP_BY_HOP = {"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te",
              "trailer", "transfer-encoding", "upgrade", "expect"}


@pytest.fixture(scope="session", autouse=True)
def aws_test_env(tmp_path_factory):
    """Fake credentials for this process and every subprocess; the user's ~/.aws is ignored."""
    aws = tmp_path_factory.mktemp("aws")
    (aws / "credentials").write_text("")
    (aws / "config").write_text("")
    values = {"AWS_ACCESS_KEY_ID": ACCESS_KEY, "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
              "AWS_DEFAULT_REGION": REGION, "AWS_SHARED_CREDENTIALS_FILE": str(aws / "credentials"),
              "AWS_CONFIG_FILE": str(aws / "config"), "AWS_EC2_METADATA_DISABLED": "true"}
    removed = ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3")
    with pytest.MonkeyPatch.context() as mp:
        for name, value in values.items():
            mp.setenv(name, value)
        for name in removed:
            mp.delenv(name, raising=False)
        yield aws


@pytest.fixture(scope="session")
def moto_server(aws_test_env):
    """A moto S3 (and IAM) server on a free loopback port, shared by the whole run."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


def boto_client(endpoint: str, service: str = "s3", **credentials):
    import boto3

    return boto3.client(service, endpoint_url=endpoint, region_name=REGION, **credentials)


@pytest.fixture
def s3_bucket(moto_server):
    """A fresh bucket for one test: (endpoint, bucket)."""
    bucket = f"test-{uuid.uuid4().hex[:16]}"
    boto_client(moto_server).create_bucket(Bucket=bucket)
    yield moto_server, bucket


@dataclass
class IamUsers:
    """Makes IAM users on the moto server and profiles for them in the test credentials file."""

    endpoint: str
    credentials_file: Path
    admin: dict = field(default_factory=dict)  # boto3 credentials that may manage IAM

    def user(self, name: str, actions: list[str] | None = None) -> tuple[str, str]:
        """A user allowed `actions` (default s3:*) → (access key id, secret)."""
        iam = boto_client(self.endpoint, "iam", **self.admin)
        iam.create_user(UserName=name)
        policy = {"Version": "2012-10-17", "Statement": [
            {"Effect": "Allow", "Action": actions or ["s3:*"], "Resource": "*"}]}
        iam.put_user_policy(UserName=name, PolicyName="p", PolicyDocument=json.dumps(policy))
        key = iam.create_access_key(UserName=name)["AccessKey"]
        return key["AccessKeyId"], key["SecretAccessKey"]

    def profile(self, name: str, key_id: str, secret: str) -> str:
        """Add a profile to the shared credentials file; S3Options(profile=name) uses it."""
        with open(self.credentials_file, "a") as f:
            f.write(f"[{name}]\naws_access_key_id = {key_id}\naws_secret_access_key = {secret}\n")
        return name


def set_moto_auth(endpoint: str, initial_unauthenticated: float) -> None:
    """moto checks signatures and IAM policies after this many more requests (inf: never)."""
    request = urllib.request.Request(f"{endpoint}/moto-api/reset-auth", method="POST",
                                     data=str(initial_unauthenticated).encode(),
                                     headers={"Content-Type": "text/plain"})  # not a form
    urllib.request.urlopen(request).read()


@pytest.fixture
def moto_auth(moto_server, aws_test_env):
    """moto verifies SigV4 signatures and IAM policies during this test (off otherwise).

    The session's fake env keys are then unknown to moto (InvalidAccessKeyId); use
    `users.user(...)` and `users.profile(...)` for keys moto accepts.
    """
    users = IamUsers(moto_server, aws_test_env / "credentials")
    key_id, secret = users.user(f"admin-{uuid.uuid4().hex[:8]}", ["*"])
    users.admin = {"aws_access_key_id": key_id, "aws_secret_access_key": secret}
    set_moto_auth(moto_server, 0)
    try:
        yield users
    finally:
        set_moto_auth(moto_server, float("inf"))


SLOW_DOWN = (b'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>SlowDown</Code>'
             b"<Message>Please reduce your request rate.</Message>"
             b"<RequestId>FLAKYPROXY</RequestId></Error>")


class FlakyS3Proxy:
    """An HTTP proxy in front of an S3 endpoint that answers some PUTs with 503 SlowDown.

    Deterministic: every `every`-th PUT whose path+query contains `match` is refused, at most
    `limit` times in all (None: no limit). Everything else — method, path, query, headers
    including the client's Host (SigV4 signs it) and body — is forwarded unchanged.
    `keep_host=False` rewrites Host to the upstream's, which breaks signatures (for tests).
    """

    def __init__(self, upstream: str, every: int = 3, limit: int | None = 10, match: str = "",
                 status: int = 503, code: bytes = SLOW_DOWN, keep_host: bool = True):
        self.upstream = http.client.urlsplit(upstream).netloc
        self.every, self.limit, self.match = every, limit, match
        self.status, self.body, self.keep_host = status, code, keep_host
        self.puts = self.injected = 0
        self.corrupt_gets = self.corrupted = 0   # the next `corrupt_gets` GET bodies get a byte flipped
        self.lock = threading.Lock()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def endpoint(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> FlakyS3Proxy:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join()

    def should_fail(self, method: str, path: str) -> bool:
        with self.lock:
            if method != "PUT" or self.match not in path:
                return False
            self.puts += 1
            if self.every and self.puts % self.every == 0 and (
                    self.limit is None or self.injected < self.limit):
                self.injected += 1
                return True
            return False

    def should_corrupt(self, method: str, status: int) -> bool:
        with self.lock:
            if method != "GET" or status != 200 or self.corrupted >= self.corrupt_gets:
                return False
            self.corrupted += 1
            return True

    def _handler(self):
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, and 100-continue for botocore's PUTs

            def log_message(self, *args) -> None:  # quiet
                pass

            def _body(self) -> bytes:
                if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
                    data = b""
                    while (size := int(self.rfile.readline().split(b";")[0], 16)) > 0:
                        data += self.rfile.read(size)
                        self.rfile.readline()
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return data
                return self.rfile.read(int(self.headers.get("Content-Length") or 0))

            def _forward(self) -> None:
                body = self._body()  # always read: the connection is reused
                if proxy.should_fail(self.command, self.path):
                    return self._reply(proxy.status, {"Content-Type": "application/xml"},
                                       proxy.body)
                upstream = http.client.HTTPConnection(proxy.upstream, timeout=60)
                try:
                    upstream.putrequest(self.command, self.path, skip_host=True,
                                        skip_accept_encoding=True)
                    for name, value in self.headers.items():
                        if name.lower() == "host" and not proxy.keep_host:
                            value = proxy.upstream
                        if name.lower() not in HOP_BY_HOP | {"content-length"}:
                            upstream.putheader(name, value)
                    if body or self.command in ("PUT", "POST"):
                        upstream.putheader("Content-Length", str(len(body)))
                    upstream.endheaders(body)
                    response = upstream.getresponse()
                    data = response.read()
                    if data and proxy.should_corrupt(self.command, response.status):
                        data = bytes([data[0] ^ 0xFF]) + data[1:]   # corrupted on the way
                    headers = {k: v for k, v in response.getheaders() if k.lower() not in HOP_BY_HOP}
                    self._reply(response.status, headers, data)
                finally:
                    upstream.close()

            def _reply(self, status: int, headers: dict, data: bytes) -> None:
                self.send_response_only(status)
                for name, value in headers.items():
                    if not (name.lower() == "content-length" and self.command != "HEAD"):
                        self.send_header(name, value)
                if self.command != "HEAD":
                    self.send_header("Content-Length", str(len(data)))
                elif not any(k.lower() == "content-length" for k in headers):
                    self.send_header("Content-Length", "0")
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)

            do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _forward

        return Handler


@pytest.fixture
def flaky_s3(moto_server):
    """A FlakyS3Proxy before moto answering every 3rd PUT with 503 SlowDown, at most 10 times:
    (proxy endpoint, proxy). Adjust proxy.every / .limit / .match in the test if needed."""
    proxy = FlakyS3Proxy(moto_server).start()
    yield proxy.endpoint, proxy
    proxy.stop()
