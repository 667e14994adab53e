"""The bound on one S3 request: [s3] request_timeout and max_attempts reach botocore, and
bad values are refused at validation."""

from __future__ import annotations

import pytest

from pipelines.config import load_job
from pipelines.errors import ConfigError
from pipelines.storage.s3 import S3Options, client_for
from tests.conftest import write_job


def test_the_bound_reaches_the_botocore_client():
    config = client_for(S3Options(endpoint_url="http://127.0.0.1:9", region="us-east-1",
                                  request_timeout=2.5, max_attempts=3)).meta.config
    assert (config.connect_timeout, config.read_timeout) == (2.5, 2.5)
    assert config.retries == {"mode": "standard", "total_max_attempts": 3}


def test_defaults_bound_a_request_to_minutes_not_half_an_hour(tmp_path):
    options = dict(load_job(write_job(tmp_path / "job.toml", "t.json", "s3://bkt/v")).s3)
    assert (options["request_timeout"], options["max_attempts"]) == (30.0, 5)


@pytest.mark.parametrize("value", ["0", "-1", "nan", "inf", "true", '"soon"', "3601"])
def test_a_bad_request_timeout_is_refused(tmp_path, value):
    job = write_job(tmp_path / "job.toml", "t.json", "s3://bkt/v")
    with pytest.raises(ConfigError, match="s3.request_timeout: expected seconds in"):
        load_job(job, [f"s3.request_timeout={value}"])
