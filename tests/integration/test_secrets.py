"""S3 secrets stay off command lines: an export on separate executor JVMs, with credentials
from the launching process's environment or from a shared credentials file (a profile),
runs without the secret on the command line of any process (`ps` shows those to every user
of the node); and a job file that would pass a secret as a Spark property is refused."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path

import boto3
import pytest

from tests.conftest import ROOT, write_job
from tests.s3_fixtures import REGION

pytestmark = pytest.mark.slow

SECRET = "a-secret-only-this-test-knows-0123456789"


class CommandLines:
    """Reads every process's command line (/proc/*/cmdline) until stopped: what `ps`
    shows any user of the machine. Every line a process showed is kept, not only the first:
    between fork and exec a child still shows its parent's line (an executor JVM is first
    seen as the driver's), and a secret could appear on either."""

    def __init__(self):
        self.seen: set[tuple[int, bytes]] = set()
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._watch, daemon=True)

    def _watch(self) -> None:
        while not self.stop.wait(0.05):
            for entry in Path("/proc").iterdir():
                if entry.name.isdigit():
                    try:
                        self.seen.add((int(entry.name), (entry / "cmdline").read_bytes()))
                    except OSError:   # the process ended meanwhile
                        pass

    def __enter__(self) -> CommandLines:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        self.thread.join()

    def holding(self, text: str) -> list[str]:
        return [c.replace(b"\0", b" ").decode(errors="replace")[:200]
                for _, c in self.seen if text.encode() in c]


def credentials(tmp_path: Path, how: str) -> dict[str, str]:
    """The environment of the launching process: the keys themselves, or a profile in a
    credentials file of its own (no keys in the environment)."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_PROFILE")}
    if how == "environment":
        return {**env, "AWS_ACCESS_KEY_ID": "test-key-id", "AWS_SECRET_ACCESS_KEY": SECRET}
    file = tmp_path / "aws-credentials"
    file.write_text(f"[lab]\naws_access_key_id = test-key-id\naws_secret_access_key = {SECRET}\n")
    file.chmod(0o600)
    return {**env, "AWS_SHARED_CREDENTIALS_FILE": str(file), "AWS_PROFILE": "lab"}


@pytest.mark.parametrize("how", ["environment", "profile"])
def test_no_command_line_holds_the_secret(small_acquisition, s3_bucket, tmp_path, how):
    endpoint, bucket = s3_bucket
    job = write_job(tmp_path / "job.toml", small_acquisition["paths"]["tiles_json"],
                    f"s3://{bucket}/out/volume")
    args = [sys.executable, str(ROOT / "jobs/export.py"), str(job), "--set",
            f"s3.endpoint_url={endpoint}", "--set", "spark.master=local-cluster[2,1,1024]",
            "--set", "debug.task_delay=0.2",
            # both executors take part even when one registers late on a busy machine
            "--set", "spark.scheduler.minRegisteredResourcesRatio=1.0"]
    with CommandLines() as ps:
        run = subprocess.run(args, capture_output=True, text=True, cwd=tmp_path, timeout=600,
                             env=credentials(tmp_path, how))
    assert run.returncode == 0, run.stderr[-3000:]
    assert ps.holding(SECRET) == []
    # the watch saw the processes that matter: executor JVMs and their Python workers
    executors = {pid for pid, line in ps.seen if b"CoarseGrainedExecutorBackend" in line}
    assert len(executors) >= 2
    assert ps.holding("pyspark.daemon") or ps.holding("pyspark.worker"), "no Python worker seen"
    client = boto3.client("s3", endpoint_url=endpoint, region_name=REGION)
    assert client.get_object(Bucket=bucket, Key="out/volume.job.json")["Body"].read()


@pytest.mark.parametrize("name", ["spark.executorEnv.AWS_SECRET_ACCESS_KEY",
                                  "spark.executorEnv.AWS_SESSION_TOKEN",
                                  "spark.hadoop.fs.s3a.secret.key",
                                  "spark.yarn.appMasterEnv.AWS_SECRET_ACCESS_KEY"])
def test_a_secret_in_a_spark_property_is_refused_without_repeating_it(tmp_path, name):
    job = write_job(tmp_path / "job.toml", "tiles.json", "out/volume")
    job.write_text(job.read_text().replace('[spark]\n', f'[spark]\n"{name}" = "{SECRET}"\n'))
    run = subprocess.run([sys.executable, str(ROOT / "jobs/export.py"), str(job)],
                         capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert run.returncode == 2, run.stderr[-2000:]
    assert run.stderr.startswith(f"error: {job}: {name}: ") and run.stderr.count("\n") == 1
    assert "AWS_SHARED_CREDENTIALS_FILE" in run.stderr and SECRET not in run.stderr
