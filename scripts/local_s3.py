"""Run a local S3 endpoint (a moto server on loopback) with a bucket, for trying S3 output.

    python scripts/local_s3.py [--port 5000] [--bucket demo]

Prints the endpoint and the environment to use, then serves until interrupted. Nothing
leaves this machine: the server listens on 127.0.0.1 only and keeps objects in memory.
"""

from __future__ import annotations

import argparse
import os
import signal
import threading

import boto3
from moto.server import ThreadedMotoServer


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=5000)
    parser.add_argument("--bucket", default="demo")
    args = parser.parse_args(argv)
    # moto accepts any credentials; boto3 still wants some to sign requests with
    for name, value in (("AWS_ACCESS_KEY_ID", "testing"), ("AWS_SECRET_ACCESS_KEY", "testing"),
                        ("AWS_DEFAULT_REGION", "us-east-1")):
        os.environ.setdefault(name, value)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=args.port, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{args.port}"
    boto3.client("s3", endpoint_url=endpoint).create_bucket(Bucket=args.bucket)
    print(f"local S3 at {endpoint} with bucket {args.bucket!r}; use it with\n"
          f"  export AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing AWS_DEFAULT_REGION=us-east-1\n"
          f"  --set output.uri=s3://{args.bucket}/volume --set s3.endpoint_url={endpoint}", flush=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        stop.wait()
    except KeyboardInterrupt:
        pass
    server.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
