"""The one line a failed task gives: missing S3 credentials on an executor say whose
environment lacks them (trial Q: 'NoCredentialsError: Unable to locate credentials',
after the driver's own check had passed, named no one)."""

from __future__ import annotations

import botocore.exceptions
import pytest

from pipelines.execute.problems import EXECUTOR_CREDENTIALS, cause_line


@pytest.mark.parametrize("error", [botocore.exceptions.NoCredentialsError(),
                                   botocore.exceptions.ProfileNotFound(profile="lab")])
def test_missing_credentials_on_an_executor_name_the_executors_environment(error):
    line = cause_line(error)
    assert line.startswith(type(error).__name__ + ": ") and line.endswith(EXECUTOR_CREDENTIALS)
    assert str(error) in line


def test_other_errors_are_their_type_and_message():
    assert cause_line(ValueError("bad")) == "ValueError: bad"
