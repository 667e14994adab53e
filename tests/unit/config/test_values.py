"""The rules `pipelines.config.values` applies to single values of a job file."""

from __future__ import annotations

from pipelines.config.values import is_secret_property


def test_secret_properties_are_those_holding_a_secret_not_a_path_or_a_switch():
    """Review of stop 48: spark.authenticate.secret.file (a path: the safe way to give
    Spark's secret) and spark.yarn.security.tokens.*.enabled (a switch) were taken for
    secrets: a job file with one was refused, and spark-submit's warned of."""
    secrets = ["spark.executorEnv.AWS_SECRET_ACCESS_KEY", "spark.executorEnv.AWS_SESSION_TOKEN",
               "spark.hadoop.fs.s3a.secret.key", "spark.hadoop.fs.s3a.access.key",
               "spark.authenticate.secret", "spark.ssl.keyStorePassword"]
    others = ["spark.authenticate.secret.file", "spark.authenticate.secret.driver.file",
              "spark.executorEnv.AWS_WEB_IDENTITY_TOKEN_FILE", "spark.yarn.security.tokens.hbase.enabled",
              "spark.executorEnv.AWS_SHARED_CREDENTIALS_FILE", "spark.executor.memory"]
    assert [n for n in secrets if not is_secret_property(n)] == []
    assert [n for n in others if is_secret_property(n)] == []
