"""What a job prints to paste works when pasted: the "open it" command is run in a shell
whose PATH has no virtual environment (a bare `python` there lacks tensorstore), against
a local output and an S3 one on a moto server; it never carries a credential."""

from __future__ import annotations

import os
import subprocess
from dataclasses import replace

import pytest

from pipelines.config import load_job
from pipelines.report.console import export_report, open_command
from tests.conftest import write_job
from tests.pipeline_helpers import export_local
from tests.s3_fixtures import ACCESS_KEY, SECRET_KEY

PLAIN_PATH = "/usr/bin:/bin"   # what a fresh terminal may have: no .venv/bin


def pasted(line: str, environment: dict | None = None) -> subprocess.CompletedProcess:
    """Run the command of an `open it:` line as a user pastes it into a new shell that has
    the job's environment (credentials included; or `environment`) but not its virtual
    environment."""
    assert line.startswith("open it:  "), line
    env = {**(environment or os.environ), "PATH": PLAIN_PATH}
    env.pop("VIRTUAL_ENV", None)
    return subprocess.run(["sh", "-c", line.removeprefix("open it:  ")], env=env,
                          capture_output=True, text=True, timeout=120)


def open_line(result) -> str:
    return next(line for line in export_report(result).splitlines() if line.startswith("open it:"))


@pytest.mark.parametrize("fmt", ["n5", "zarr3"])
def test_the_open_it_command_runs_when_pasted(small_acquisition, tmp_path, fmt):
    job = write_job(tmp_path / "job.toml", small_acquisition["paths"]["tiles_json"],
                    str(tmp_path / "out" / "volume"), f'format = "{fmt}"')
    result = export_local(load_job(job))
    run = pasted(open_line(result))
    assert run.returncode == 0, run.stderr[-2000:]
    assert "TensorStore" in run.stdout and "input_exclusive_max" in run.stdout


def test_the_open_it_command_reaches_s3_when_pasted(small_acquisition, s3_bucket, tmp_path):
    endpoint, bucket = s3_bucket
    job = write_job(tmp_path / "job.toml", small_acquisition["paths"]["tiles_json"],
                    f"s3://{bucket}/out/volume", 'format = "zarr3"')
    result = export_local(load_job(job, [f"s3.endpoint_url={endpoint}"]))
    line = open_line(result)
    assert endpoint in line and SECRET_KEY not in line
    run = pasted(line)
    assert run.returncode == 0, run.stderr[-2000:]
    assert "TensorStore" in run.stdout and bucket in run.stdout and endpoint in run.stdout


def test_the_open_it_command_reaches_s3_with_a_credentials_files_profile(small_acquisition,
                                                                         s3_bucket, tmp_path):
    """docs/clusters.md's way, a credentials file and AWS_PROFILE: tensorstore's own chain
    does not read the profile, and the pasted command got 403 (trial Q)."""
    endpoint, bucket = s3_bucket
    job = write_job(tmp_path / "job.toml", small_acquisition["paths"]["tiles_json"],
                    f"s3://{bucket}/out/profiled", 'format = "zarr3"')
    result = export_local(load_job(job, [f"s3.endpoint_url={endpoint}"]))
    credentials = tmp_path / "credentials"
    credentials.write_text(f"[lab]\naws_access_key_id = {ACCESS_KEY}\n"
                           f"aws_secret_access_key = {SECRET_KEY}\n")
    line = open_line(result)
    assert SECRET_KEY not in line
    env = {k: v for k, v in os.environ.items() if k not in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")}
    run = pasted(line, {**env, "AWS_SHARED_CREDENTIALS_FILE": str(credentials), "AWS_PROFILE": "lab"})
    assert run.returncode == 0, run.stderr[-2000:]
    assert "TensorStore" in run.stdout and bucket in run.stdout


def test_the_open_it_command_takes_the_jobs_profile_over_variables(small_acquisition, s3_bucket,
                                                                   tmp_path):
    """A job with s3.profile reads with that profile even where AWS_* variables are set
    (boto3 skips them for a named profile); the command's look-up must do the same, not
    AWS_PROFILE=… in front, where the variables win (review I)."""
    endpoint, bucket = s3_bucket
    job = write_job(tmp_path / "job.toml", small_acquisition["paths"]["tiles_json"],
                    f"s3://{bucket}/out/named")
    result = export_local(load_job(job, [f"s3.endpoint_url={endpoint}"]))
    named = replace(result, plan=replace(result.plan, s3=replace(result.plan.s3, profile="lab")))
    assert 'boto3.Session(profile_name="lab")' in open_command(named)
    assert "AWS_PROFILE" not in open_command(named)
    assert "boto3.Session(profile_name=None)" in open_command(result)


def test_the_open_it_command_never_carries_userinfo(small_acquisition, s3_bucket, tmp_path):
    """Validation refuses credentials in s3.endpoint_url; whatever reaches the console
    is printed without them all the same (issue 19.10)."""
    endpoint, bucket = s3_bucket
    job = write_job(tmp_path / "job.toml", small_acquisition["paths"]["tiles_json"],
                    f"s3://{bucket}/out/volume")
    result = export_local(load_job(job, [f"s3.endpoint_url={endpoint}"]))
    leaky = endpoint.replace("://", "://AKIAEXAMPLE:wJalrXUtnFEMI-secret@")
    result = replace(result, plan=replace(result.plan, s3=replace(result.plan.s3, endpoint_url=leaky)))
    command = open_command(result)
    assert "wJalrXUtnFEMI" not in command and "AKIAEXAMPLE" not in command and endpoint in command
    assert "wJalrXUtnFEMI" not in export_report(result)
