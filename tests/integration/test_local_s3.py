"""scripts/local_s3.py, the local S3 the README's S3 section starts: quiet unless asked,
and gone within seconds of SIGTERM, also with a request in flight."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time

import boto3
import pytest

from tests.conftest import ROOT


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(*args: str) -> tuple[subprocess.Popen, str]:
    """The script on a free port, once it says where it is: (process, endpoint)."""
    port = free_port()
    server = subprocess.Popen([sys.executable, str(ROOT / "scripts/local_s3.py"), "--port",
                               str(port), *args], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)
    assert server.stdout is not None and "local S3 at" in server.stdout.readline()
    return server, f"http://127.0.0.1:{port}"


def some_requests(endpoint: str) -> None:
    client = boto3.client("s3", endpoint_url=endpoint)
    for n in range(5):
        client.put_object(Bucket="demo", Key=f"k{n}", Body=b"x")
    assert client.list_objects_v2(Bucket="demo")["KeyCount"] == 5


def stopped_within(server: subprocess.Popen, seconds: float) -> float:
    """SIGTERM, then the seconds until the process had exited (at most `seconds`)."""
    began = time.monotonic()
    server.send_signal(signal.SIGTERM)
    try:
        server.wait(seconds)
    finally:
        server.kill()
    return time.monotonic() - began


@pytest.mark.parametrize("verbose", [False, True])
def test_requests_are_logged_only_with_verbose(verbose):
    server, endpoint = start(*(["--verbose"] if verbose else []))
    some_requests(endpoint)
    stopped_within(server, 10)
    out, err = server.communicate()
    logged = [line for line in (out + err).splitlines() if "PUT /demo/k" in line]
    assert len(logged) == (5 if verbose else 0), out + err
    assert server.returncode == 0, err


def test_sigterm_ends_it_promptly_with_a_request_in_flight():
    server, endpoint = start()
    some_requests(endpoint)
    host, port = endpoint.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port))) as hanging:  # a PUT whose body never comes
        hanging.sendall(b"PUT /demo/big HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000\r\n\r\nabc")
        time.sleep(0.5)
        seconds = stopped_within(server, 8)
    assert server.returncode == 0 and seconds < 5, (server.returncode, seconds)
