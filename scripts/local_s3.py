"""Run a local S3 endpoint (a moto server on loopback) with a bucket, for trying S3 output.

    python scripts/local_s3.py [--port 5000] [--bucket demo] [--verbose]

Prints the endpoint and the environment to use, then serves until interrupted (Ctrl-C or
SIGTERM: it exits within a few seconds, even with requests in flight). Quiet: requests
are logged only with --verbose. Nothing leaves this machine: the server listens on
127.0.0.1 only and keeps objects in memory.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading

import boto3
from moto.server import ThreadedMotoServer

STOP_SECONDS = 2.0   # the longest the server may take to stop after SIGTERM or Ctrl-C


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=5000, help="port on 127.0.0.1 to serve on (default: %(default)s)")
    parser.add_argument("--bucket", default="demo", help="bucket to create (default: %(default)s)")
    parser.add_argument("--verbose", action="store_true", help="log every request to stderr")
    args = parser.parse_args(argv)
    # werkzeug logs each request at INFO (in colour, on a terminal) unless its logger is
    # set quieter before the first request
    logging.getLogger("werkzeug").setLevel(logging.INFO if args.verbose else logging.WARNING)
    # moto accepts any credentials; boto3 still wants some to sign requests with
    for name, value in (("AWS_ACCESS_KEY_ID", "testing"), ("AWS_SECRET_ACCESS_KEY", "testing"),
                        ("AWS_DEFAULT_REGION", "us-east-1")):
        os.environ.setdefault(name, value)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=args.port, verbose=False)
    # The server's thread, and the request threads it starts, inherit a mask blocking
    # SIGINT and SIGTERM: the kernel then hands those to the main thread, whose handler
    # must run (a signal given to a request thread waits until the main thread wakes;
    # seen in CI: a server thawed from SIGSTOP with requests in flight outlived SIGTERM)
    stopping = {signal.SIGINT, signal.SIGTERM}
    signal.pthread_sigmask(signal.SIG_BLOCK, stopping)
    server.start()
    signal.pthread_sigmask(signal.SIG_UNBLOCK, stopping)
    endpoint = f"http://127.0.0.1:{args.port}"
    boto3.client("s3", endpoint_url=endpoint).create_bucket(Bucket=args.bucket)
    print(f"local S3 at {endpoint} with bucket {args.bucket!r}; use it with\n"
          f"  export AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing AWS_DEFAULT_REGION=us-east-1\n"
          f"  --set output.uri=s3://{args.bucket}/volume --set s3.endpoint_url={endpoint}", flush=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        while not stop.wait(0.2):   # steps, in case a signal still reaches another thread
            pass
    except KeyboardInterrupt:
        pass
    # Request threads are daemons, so only the serving loop needs stopping; bounded, so a
    # stuck shutdown never keeps the process alive after SIGTERM.
    stopper = threading.Thread(target=server.stop, daemon=True)
    stopper.start()
    stopper.join(STOP_SECONDS)
    # os._exit, not a return: the interpreter's exit would join the server's own thread,
    # which a shutdown cut short by the bound leaves running
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


if __name__ == "__main__":
    raise SystemExit(main())
