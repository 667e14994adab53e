"""Exports whose tiles and output live in S3 (a moto server on loopback, over HTTP),
written by separate executor processes, read back by tensorstore's s3 kvstore."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import boto3
import numpy as np
import pytest
import tensorstore as ts

from pipelines.config import load_job
from pipelines.plan import make_plan
from tests.conftest import ROOT, write_job
from tests.pipeline_helpers import fused_channel

pytestmark = pytest.mark.slow


def upload_acquisition(acquisition: dict, endpoint: str, bucket: str, prefix: str = "acq") -> str:
    """Copy the tile JSON (relative tile paths) and the TIFFs into the bucket."""
    client = boto3.client("s3", endpoint_url=endpoint)
    source = Path(acquisition["paths"]["tiles_json"])
    doc = json.loads(source.read_text())
    for tile in doc:
        client.upload_file(str(source.parent / tile["file"]), bucket, f"{prefix}/{tile['file']}")
    client.put_object(Bucket=bucket, Key=f"{prefix}/tiles.json", Body=json.dumps(doc).encode())
    return f"s3://{bucket}/{prefix}/tiles.json"


def s3_read(endpoint: str, bucket: str, path: str, driver: str) -> np.ndarray:
    spec = {"driver": driver, "kvstore": {"driver": "s3", "bucket": bucket, "path": path.rstrip("/") + "/",
                                          "endpoint": endpoint, "aws_region": "us-east-1"}}
    data = np.asarray(ts.open(spec, open=True).result().read().result())
    return data.transpose(2, 1, 0) if driver == "n5" else data


def run_job(job: Path, *overrides: str, cwd: Path) -> subprocess.CompletedProcess:
    args = [sys.executable, str(ROOT / "jobs/export.py"), str(job)]
    for item in overrides:
        args += ["--set", item]
    return subprocess.run(args, capture_output=True, text=True, cwd=cwd, timeout=600)


@pytest.mark.parametrize("fmt,extra", [("n5", []), ("zarr3", ["output.shard=[2,1,2]"])])
def test_s3_in_s3_out_on_separate_executors(small_acquisition, s3_bucket, tmp_path, fmt, extra):
    endpoint, bucket = s3_bucket
    tiles = upload_acquisition(small_acquisition, endpoint, bucket)
    job = write_job(tmp_path / "job.toml", tiles, f"s3://{bucket}/out/volume", f'format = "{fmt}"')
    run = run_job(job, f"s3.endpoint_url={endpoint}", "spark.master=local-cluster[2,1,1024]",
                  "output.levels=2", *extra, cwd=tmp_path)
    assert run.returncode == 0, run.stderr[-3000:]
    # every path the job prints is a URI a user can paste
    assert f"report:   s3://{bucket}/out/volume.report/ (" in run.stdout, run.stdout
    config = load_job(job, [f"s3.endpoint_url={endpoint}", "output.levels=2", *extra])
    expected = fused_channel(make_plan(config))
    level0 = "volume/c0/s0" if fmt == "n5" else "volume/0"
    np.testing.assert_array_equal(s3_read(endpoint, bucket, f"out/{level0}", fmt), expected)
    client = boto3.client("s3", endpoint_url=endpoint)
    record = json.loads(client.get_object(Bucket=bucket, Key="out/volume.job.json")["Body"].read())
    assert record["status"] == "committed"


def test_throttled_puts_are_retried_and_change_nothing(small_acquisition, s3_bucket, flaky_s3, tmp_path):
    endpoint, bucket = s3_bucket
    proxy_endpoint, proxy = flaky_s3
    tiles = upload_acquisition(small_acquisition, endpoint, bucket)
    client = boto3.client("s3", endpoint_url=endpoint)
    outputs = {}
    for name, via in (("clean", endpoint), ("throttled", proxy_endpoint)):
        job = write_job(tmp_path / f"{name}.toml", tiles, f"s3://{bucket}/{name}/volume")
        run = run_job(job, f"s3.endpoint_url={via}", cwd=tmp_path)
        assert run.returncode == 0, run.stderr[-3000:]
        listing = client.list_objects_v2(Bucket=bucket, Prefix=f"{name}/volume/")["Contents"]
        outputs[name] = {o["Key"].split("/", 1)[1]: o["ETag"] for o in listing}
    assert proxy.injected > 0, "the proxy answered no PUT with 503 SlowDown"
    assert outputs["throttled"] == outputs["clean"]  # same keys, same bytes (ETag = MD5)


def test_secret_key_appears_nowhere(small_acquisition, s3_bucket, tmp_path):
    endpoint, bucket = s3_bucket
    secret = os.environ["AWS_SECRET_ACCESS_KEY"]
    tiles = upload_acquisition(small_acquisition, endpoint, bucket)
    job = write_job(tmp_path / "job.toml", tiles, f"s3://{bucket}/out/volume")
    ok = run_job(job, f"s3.endpoint_url={endpoint}", cwd=tmp_path)
    failed = run_job(job, f"s3.endpoint_url={endpoint}", "output.uri=s3://" + bucket + "/bad/volume",
                     "debug.fail_blocks=[[0,0,0]]", cwd=tmp_path)
    assert ok.returncode == 0 and failed.returncode == 1
    client = boto3.client("s3", endpoint_url=endpoint)
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        for obj in page.get("Contents", []):
            if not obj["Key"].startswith("acq/"):
                body = client.get_object(Bucket=bucket, Key=obj["Key"])["Body"].read()
                assert secret.encode() not in body, obj["Key"]
    for text in (ok.stdout, ok.stderr, failed.stdout, failed.stderr):
        assert secret not in text


@pytest.mark.parametrize("stitching", [False, True])
def test_missing_bucket_stops_before_any_task(small_acquisition, s3_bucket, tmp_path, stitching):
    """Also before registration: no pair is measured, nothing of the stitching written."""
    endpoint, bucket = s3_bucket
    tiles = upload_acquisition(small_acquisition, endpoint, bucket)
    job = write_job(tmp_path / "job.toml", tiles, "s3://no-such-bucket-here/out/volume")
    more = ["stitching.enabled=true", "stitching.search=4"] if stitching else []
    run = run_job(job, f"s3.endpoint_url={endpoint}", *more, cwd=tmp_path)
    lines = [line for line in run.stderr.splitlines() if line.startswith("error:")]
    assert run.returncode == 2 and len(lines) == 1 and "no-such-bucket-here" in lines[0], run.stderr[-2000:]
    assert "does not exist" in lines[0] and "pairs" not in run.stderr
    keys = [o["Key"] for o in boto3.client("s3", endpoint_url=endpoint).list_objects_v2(
        Bucket=bucket, Prefix="acq/").get("Contents", [])]
    assert not [k for k in keys if "-final" in k or "-stitching" in k], keys
