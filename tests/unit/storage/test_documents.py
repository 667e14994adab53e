"""Small documents read whole: one line for each way reading one fails, the same for
every kind of document and for paths and file:// URIs alike."""

import pytest

from pipelines.errors import TileError
from pipelines.storage.documents import read_document, read_json


def test_a_document_is_read_from_a_path_or_a_file_uri(tmp_path):
    (tmp_path / "a.json").write_text('{"x": 1}')
    assert read_json(str(tmp_path / "a.json"), None, TileError, "thing") == {"x": 1}
    assert read_json(f"file://{tmp_path}/a.json", None, TileError, "thing") == {"x": 1}


@pytest.mark.parametrize("content, message", [
    (None, r"a.json: thing not found \(input.tiles\)$"),
    ("folder", r"a.json: a folder, not the thing file \(input.tiles\)$"),
    ("{not json", r"a.json: not valid JSON: Expecting property name"),
    (b"\xff\xfe", r"a.json: not valid JSON: "),
    ("[" * 100_000 + "]" * 100_000, r"a.json: lists or objects nested too deeply$"),
])
def test_each_failure_is_one_line_naming_the_document(tmp_path, content, message):
    path = tmp_path / "a.json"
    if content == "folder":
        path.mkdir()
    elif isinstance(content, bytes):
        path.write_bytes(content)
    elif content is not None:
        path.write_text(content)
    with pytest.raises(TileError, match=message) as err:
        read_json(str(path), None, TileError, "thing", "input.tiles")
    assert "\n" not in str(err.value)


def test_the_bytes_come_back_unparsed(tmp_path):
    (tmp_path / "p.xml").write_bytes(b"<SpimData/>")
    assert read_document(str(tmp_path / "p.xml"), None, TileError, "project") == b"<SpimData/>"


@pytest.mark.parametrize("uri", ["/", "", "s3://bucket", "s3://bucket/", "data/a.json/"])
def test_a_folder_or_a_bucket_is_named_as_one(uri):
    """Review F2: "/" and "" read as ".", a trailing '/' was read as the file, and a bare
    bucket was an invalid-key ValueError."""
    with pytest.raises(TileError, match=r": a folder, not the thing file$"):
        read_document(uri, None, TileError, "thing")
