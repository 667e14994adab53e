"""The one spark.master parser: the forms Spark knows, what each says about slots, and a
refusal naming the expected form for anything else."""

import os

import pytest

from pipelines.config.master import Master, MasterFormError, is_local_master, parse_master


@pytest.mark.parametrize("text, master", [
    ("local", Master("local", 1)),
    ("local[3]", Master("local", 3)),
    ("local[2,4]", Master("local", 2)),
    ("local[*]", Master("local", os.cpu_count() or 1)),
    ("local[*, 3]", Master("local", os.cpu_count() or 1)),
    ("local-cluster[2, 3, 1024]", Master("local-cluster", 6)),
    ("local[4 ,3]", Master("local", 4)), ("local[04]", Master("local", 4)),   # as Spark reads them
    ("spark://[::1]:7077", Master("standalone", addresses=(("::1", 7077),))),
    ("spark://h:7077", Master("standalone", addresses=(("h", 7077),))),
    ("spark://a:7077,b:7078", Master("standalone", addresses=(("a", 7077), ("b", 7078)))),
    ("yarn", Master("yarn")),
    ("k8s://https://api:6443", Master("k8s")),
])
def test_each_form_spark_knows_is_parsed(text, master):
    assert parse_master(text) == master


@pytest.mark.parametrize("text, expected", [
    ("local[0]", "expected local[N] (N ≥ 1)"), ("local[2", "expected local[N]"),
    ("local-cluster[2,1]", "expected local[N]"), ("Yarn", "expected local[N]"),
    ("local-cluster[0,1,1024]", "expected local[N]"), ("local-cluster[2,0,1024]", "expected local[N]"),
    ("local[00]", "expected local[N]"),
    ("spark://host", "expected spark://host:port"), ("spark://:7077", "expected spark://host:port"),
    ("spark://a:7077,b", "expected spark://host:port"),
])
def test_other_forms_are_refused_with_the_form_expected(text, expected):
    with pytest.raises(MasterFormError, match=expected.replace("[", r"\[").replace("(", r"\(")
                       .replace(")", r"\)")):
        parse_master(text)


@pytest.mark.parametrize("text, local", [
    ("local[2]", True), ("local-cluster[2,1,1024]", True), ("localhost", False),
    ("spark://h:7077", False), ("yarn", False), ("anything", False),
])
def test_only_the_local_forms_are_local(text, local):
    """Before, `startswith("local")` decided, and a master named `localhost…` counted."""
    assert is_local_master(text) is local
