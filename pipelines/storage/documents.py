"""Small documents read whole — tile JSONs, BigStitcher XMLs, intensity coefficients,
registration reports — from a path or an s3:// URI, with one set of failure lines: not
found, unreadable (with the cause: refused credentials, a folder, no permission), not
valid JSON, nested too deeply."""

from __future__ import annotations

import json
from typing import Any

from pipelines.errors import PipelineError, cause
from pipelines.storage import open_store
from pipelines.storage import uri as uris


def read_bytes(uri: str, s3=None) -> bytes:
    """The whole of the file or object at `uri`; KeyError when there is none,
    IsADirectoryError when `uri` names a folder or a bucket (ends in '/', or no name)."""
    folder, name = uris.split(uri)
    if not name or uri.endswith("/"):
        raise IsADirectoryError(f"{uri} names a folder, not a file")
    return open_store(folder, s3).get(name)


def read_document(uri: str, s3, error: type[PipelineError], what: str, key: str = "") -> bytes:
    """`read_bytes`, failing with `error` naming `uri` and `what` (e.g. "tile
    configuration") when the document is missing (and the job file's `key` that named it)
    or cannot be read."""
    try:
        return read_bytes(uri, s3)
    except KeyError:
        raise error(f"{uri}: {what} not found" + (f" ({key})" if key else "")) from None
    except IsADirectoryError:
        raise error(f"{uri}: a folder, not the {what} file" + (f" ({key})" if key else "")) from None
    except PipelineError:
        raise
    except Exception as e:   # a folder, no permission, refused credentials, no endpoint
        # in the store's words (trial AA: "EndpointConnectionError: Could not connect …"
        # where tile-verify says "cannot reach the S3 endpoint … (check s3.endpoint_url)")
        raise error(f"{uri}: cannot read the {what}: {_explained(uri, s3, e)}") from None


def _explained(uri: str, s3, err: Exception) -> str:
    """`Store.explain` of the store holding `uri`, else the error's own words."""
    try:
        return open_store(uris.split(uri)[0], s3).explain(err)
    except Exception:
        return cause(err)


def read_json(uri: str, s3, error: type[PipelineError], what: str, key: str = "") -> Any:
    """The JSON document at `uri` (`read_document`), `error` when it is not JSON."""
    data = read_document(uri, s3, error, what, key)
    try:
        return json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        # a web page where an object was asked for: an endpoint that is not S3's (trial AA:
        # a Spark UI's port, blamed on the tile JSON)
        page = uris.is_remote(uri) and data.lstrip()[:1] == b"<"
        raise error(f"{uri}: not valid JSON: {e}" + (
            "; the endpoint answered with a web page: is s3.endpoint_url an S3 endpoint?"
            if page else "")) from None
    except RecursionError:   # json recurses once per level of nesting
        raise error(f"{uri}: lists or objects nested too deeply") from None


def read_if_there(uri: str, s3=None) -> bytes | None:
    """`read_bytes`, None when there is no such file or object (a folder counts as none)."""
    try:
        return read_bytes(uri, s3)
    except (KeyError, IsADirectoryError):
        return None


def json_if_there(uri: str, s3=None) -> Any:
    """The JSON document at `uri`, None when it is missing or damaged: for records this
    tool writes and can write again (reports, coefficients), where either means "none"."""
    data = read_if_there(uri, s3)
    try:
        return json.loads(data) if data is not None else None
    except (ValueError, RecursionError):   # UnicodeDecodeError is a ValueError
        return None


def json_if_readable(uri: str, s3=None) -> Any:
    """`json_if_there`, None also when the file cannot be read at all (no permission, the
    store not answering): for records a run only reuses when it can (pairs measured,
    coefficients matched), which it measures again otherwise."""
    try:
        return json_if_there(uri, s3)
    except Exception:   # unreadable counts as none: the work is done again, the record rewritten
        return None
