"""A store under a prefix of an S3 bucket (AWS or any S3-compatible endpoint).

Credentials come only from the standard AWS chain (environment, shared profile, instance
role); they never appear in options, reprs, pickles, logs or error messages. The boto3
client is created lazily, once per process and options, and is never pickled: an S3Store
is a description (bucket, prefix, options) that travels to executors cheaply.

Every put is atomic: one PutObject, or one multipart upload that is completed — or aborted
on any failure, so no half-uploaded parts are left behind (they would be billed forever).
"""

from __future__ import annotations

import builtins
import functools
import inspect
import logging
import math
import os
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import Any

from pipelines.errors import NoAnswer, OutputError, StoreUnavailable
from pipelines.storage.base import PartialWrite, Pieces, Store
from pipelines.storage.uri import parse

MiB = 2**20
MAX_PARTS = 10_000  # S3's limit on parts in one multipart upload
CHECK_MAX_ATTEMPTS = 2  # check_writable fails fast instead of retrying an unreachable endpoint

DENIED_CODES = {"403", "AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch",
                "InvalidToken", "ExpiredToken", "AllAccessDisabled", "InvalidClientTokenId"}
MISSING_BUCKET_CODES = {"404", "NoSuchBucket"}
MISSING_KEY_CODES = {"404", "NoSuchKey", "NotFound"}

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class S3Options:
    """How to reach S3: plain values only, so they pickle and hash. Never credentials.

    `max_attempts` counts every attempt of a request, the first included (botocore's
    `total_max_attempts`, "standard" retry mode: throttling, 5xx and connection errors
    are retried with backoff). `request_timeout` bounds connecting and each wait for the
    endpoint's answer, so a frozen endpoint fails a request after about
    request_timeout × max_attempts seconds (plus backoff) instead of botocore's 60 s × 5.
    """

    endpoint_url: str = ""
    region: str = ""
    profile: str = ""
    max_attempts: int = 5
    request_timeout: float = 30.0
    multipart_threshold: int = 64 * MiB
    part_size: int = 16 * MiB


_clients: dict[tuple[int, S3Options], Any] = {}
_clients_lock = threading.Lock()


def client_for(options: S3Options):
    """This process's boto3 S3 client for `options`, created on first use.

    Keyed by process id as well, so a forked worker never reuses its parent's connections.
    """
    key = (os.getpid(), options)
    client = _clients.get(key)
    if client is None:
        with _clients_lock:  # boto3 sessions are not thread-safe; clients are
            client = _clients.get(key)
            if client is None:
                client = _clients[key] = _make_client(options)
    return client


def _make_client(options: S3Options):
    import boto3
    from botocore.config import Config

    session = boto3.session.Session(profile_name=options.profile or None)
    return session.client(
        "s3",
        endpoint_url=options.endpoint_url or None,
        region_name=options.region or None,
        config=Config(connect_timeout=options.request_timeout,
                      read_timeout=options.request_timeout,
                      retries={"mode": "standard", "total_max_attempts": options.max_attempts}),
    )


def _bounded(method):
    """`method` of S3Store with botocore's timeouts, after its retries, turned into one
    StoreUnavailable naming the endpoint and the bound (generators too: a listing's pages
    are fetched while it is iterated)."""
    if inspect.isgeneratorfunction(method):
        @functools.wraps(method)
        def generator(self, *args, **kwargs):
            with self._stall_bound():
                yield from method(self, *args, **kwargs)
        return generator

    @functools.wraps(method)
    def call(self, *args, **kwargs):
        with self._stall_bound():
            return method(self, *args, **kwargs)
    return call


def parse_s3_uri(uri: str) -> tuple[str, str]:
    """(bucket, prefix) of s3://bucket/some/prefix; the prefix has no leading/trailing '/'."""
    location = parse(uri)
    if location.scheme != "s3" or not location.authority:
        raise OutputError(f"{uri}: expected an S3 URI like s3://bucket/prefix")
    bucket = location.authority
    if not (3 <= len(bucket) <= 63) or not all(c.islower() or c.isdigit() or c in ".-" for c in bucket):
        raise OutputError(f"{uri}: {bucket!r} is not a valid S3 bucket name "
                          "(3-63 characters: lowercase letters, digits, '.', '-')")
    return bucket, location.path


def error_code(err: Exception) -> str:
    """The S3 error code of a botocore ClientError ('NoSuchKey', '404', …), else ''."""
    response = getattr(err, "response", None) or {}
    return str(response.get("Error", {}).get("Code", ""))


def is_denied(err: Exception) -> bool:
    """Whether `err` is S3's refusal of these credentials (403, AccessDenied, …)."""
    return error_code(err) in DENIED_CODES


class S3Store(Store):
    """Objects under s3://bucket/prefix; key "a/b" is the object "prefix/a/b"."""

    def __init__(self, bucket: str, prefix: str = "", options: S3Options | None = None):
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.options = options or S3Options()

    # A description only: the client lives in the module cache, never in the object.
    def __reduce__(self):
        return (S3Store, (self.bucket, self.prefix, self.options))

    def __repr__(self) -> str:
        return f"S3Store({self.uri!r}, {self.options!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, S3Store) and (other.bucket, other.prefix, other.options) == (
            self.bucket, self.prefix, self.options)

    def __hash__(self) -> int:
        return hash((self.bucket, self.prefix, self.options))

    @property
    def uri(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}" if self.prefix else f"s3://{self.bucket}"

    @property
    def client(self):
        return client_for(self.options)

    @contextmanager
    def _stall_bound(self) -> Iterator[None]:
        from botocore.exceptions import ConnectTimeoutError, ReadTimeoutError

        try:
            yield
        except (ConnectTimeoutError, ReadTimeoutError):
            options = self.options
            endpoint = options.endpoint_url or f"of AWS S3 ({options.region or 'default region'})"
            raise StoreUnavailable(
                f"the S3 endpoint {endpoint} did not answer within {options.request_timeout:g} s "
                f"× {options.max_attempts} attempts (s3.request_timeout × s3.max_attempts)"
            ) from None

    def _key(self, key: str) -> str:
        if not key or key.startswith("/") or ".." in key.split("/"):
            raise ValueError(f"invalid store key {key!r}")
        return f"{self.prefix}/{key}" if self.prefix else key

    @_bounded
    def put(self, key: str, data: bytes | Pieces) -> None:
        data = bytes(data)   # one buffer for the request (Pieces are joined here)
        if len(data) < max(self.options.multipart_threshold, 1):  # an empty object is one put
            self.client.put_object(Bucket=self.bucket, Key=self._key(key), Body=data)
        else:
            self._put_multipart(self._key(key), data)

    @_bounded
    def put_if_absent(self, key: str, data: bytes) -> bool:
        """A conditional PUT (If-None-Match: *): S3 creates the object only if none exists."""
        from botocore.exceptions import ClientError
        try:
            self.client.put_object(Bucket=self.bucket, Key=self._key(key), Body=bytes(data),
                                   IfNoneMatch="*")
        except ClientError as err:
            if error_code(err) in ("PreconditionFailed", "412", "ConditionalRequestConflict"):
                return False
            raise
        return True

    @_bounded
    def partial_writes(self, prefix: str = "") -> builtins.list[PartialWrite]:
        """Multipart uploads a killed writer never completed or aborted."""
        root = f"{self.prefix}/" if self.prefix else ""
        pages = self.client.get_paginator("list_multipart_uploads").paginate(
            Bucket=self.bucket, Prefix=root + prefix)
        # checked here too: an S3-compatible store that ignores Prefix must not make
        # another dataset's (or application's) uploads look like ours
        uploads = [u for page in pages for u in page.get("Uploads", [])
                   if u["Key"].startswith(root + prefix)]
        return sorted((PartialWrite(u["Key"][len(root):],
                                    f"{u['Key'][len(root):]} (multipart upload started "
                                    f"{u['Initiated']})", u["UploadId"]) for u in uploads),
                      key=lambda p: p.name)

    @_bounded
    def remove_partial(self, partial: PartialWrite) -> None:
        self._abort(self._key(partial.key), partial.token)

    def _put_multipart(self, name: str, data: bytes) -> None:
        """Upload in parts; the object appears only when the upload completes."""
        client = self.client
        upload_id = client.create_multipart_upload(Bucket=self.bucket, Key=name)["UploadId"]
        try:
            part = max(self.options.part_size, math.ceil(len(data) / MAX_PARTS))
            parts = [self._upload_part(name, upload_id, number, data[start:start + part])
                     for number, start in enumerate(range(0, len(data), part), start=1)]
            client.complete_multipart_upload(Bucket=self.bucket, Key=name, UploadId=upload_id,
                                             MultipartUpload={"Parts": parts})
        except BaseException:
            self._abort(name, upload_id)
            raise

    def _upload_part(self, name: str, upload_id: str, number: int, body: bytes) -> dict:
        response = self.client.upload_part(Bucket=self.bucket, Key=name, UploadId=upload_id,
                                           PartNumber=number, Body=body)
        return {"ETag": response["ETag"], "PartNumber": number}

    def _abort(self, name: str, upload_id: str) -> None:
        try:
            self.client.abort_multipart_upload(Bucket=self.bucket, Key=name, UploadId=upload_id)
        except Exception as err:  # keep the original error; say what may be left behind
            log.warning("could not abort multipart upload of s3://%s/%s (%s): %s",
                        self.bucket, name, upload_id, type(err).__name__)

    @_bounded
    def get(self, key: str) -> bytes:
        return self._body(key)

    def _body(self, key: str, **request: Any) -> bytes:
        """The body of a GetObject of `key`: KeyError when there is none. A body whose
        checksum does not match what the response promised (corrupted on the way, or a
        server that let a put tear the read), or cut short, is fetched again, up to
        s3.max_attempts: botocore retries requests, not the reading of their bodies, and a
        torn body must never pass for the object. (Only a complete answer is read again: a
        request that stalls ends in StoreUnavailable within its bound, as before.)"""
        from botocore.exceptions import (
            ClientError,
            FlexibleChecksumError,
            IncompleteReadError,
            ResponseStreamingError,
        )

        for attempt in range(1, self.options.max_attempts + 1):
            try:
                response = self.client.get_object(Bucket=self.bucket, Key=self._key(key), **request)
            except ClientError as err:
                if error_code(err) in MISSING_KEY_CODES:
                    raise KeyError(key) from None
                raise
            try:
                return response["Body"].read()
            except (FlexibleChecksumError, IncompleteReadError, ResponseStreamingError):
                if attempt == self.options.max_attempts:
                    raise
        raise AssertionError("unreachable")   # the last attempt returns or raises

    @_bounded
    def get_range(self, key: str, start: int, stop: int) -> bytes:
        """Bytes [start, stop) of an object, with one HTTP Range request.

        Like slicing: a range past the end gives the bytes that exist (b"" if none).
        """
        from botocore.exceptions import ClientError

        if stop <= start:
            return b""
        try:
            return self._body(key, Range=f"bytes={start}-{stop - 1}")
        except ClientError as err:
            if error_code(err) == "InvalidRange":  # start at or past the end of the object
                return b""
            raise

    @_bounded
    def size(self, key: str) -> int:
        """The size in bytes of the object under `key`; KeyError when there is none."""
        head = self._head(key)
        if head is None:
            raise KeyError(key)
        return int(head["ContentLength"])

    @_bounded
    def identity(self, key: str) -> tuple[int, str]:
        """(size, ETag) from one HEAD: the ETag changes with the bytes (a re-upload of the
        same bytes in one PUT keeps it), where LastModified would change with every copy."""
        head = self._head(key)
        if head is None:
            raise KeyError(key)
        return int(head["ContentLength"]), str(head.get("ETag", ""))

    def _head(self, key: str) -> dict | None:
        from botocore.exceptions import ClientError

        try:
            return self.client.head_object(Bucket=self.bucket, Key=self._key(key))
        except ClientError as err:
            if error_code(err) in MISSING_KEY_CODES:
                return None
            raise

    @_bounded
    def exists(self, key: str) -> bool:
        return self._head(key) is not None

    @_bounded
    def list(self, prefix: str = "") -> Iterator[str]:
        root = f"{self.prefix}/" if self.prefix else ""
        pages = self.client.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=root + prefix)
        for page in pages:
            for item in page.get("Contents", []):
                if not _folder_marker(item):
                    yield item["Key"][len(root):]

    @_bounded
    def sizes(self, prefix: str = "") -> dict[str, int]:
        root = f"{self.prefix}/" if self.prefix else ""
        pages = self.client.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=root + prefix)
        return {item["Key"][len(root):]: int(item["Size"])
                for page in pages for item in page.get("Contents", []) if not _folder_marker(item)}

    @_bounded
    def delete(self, key: str) -> None:
        self.client.delete_object(Bucket=self.bucket, Key=self._key(key))  # missing is fine

    @_bounded
    def delete_if_unchanged(self, key: str, expected: bytes) -> bool:
        """Delete only the object version we read (DeleteObject with If-Match on its ETag)."""
        from botocore.exceptions import ClientError
        try:
            found = self.client.get_object(Bucket=self.bucket, Key=self._key(key))
        except ClientError as err:
            if error_code(err) in ("NoSuchKey", "404"):
                return False
            raise
        if found["Body"].read() != expected:
            return False
        try:
            self.client.delete_object(Bucket=self.bucket, Key=self._key(key), IfMatch=found["ETag"])
        except ClientError as err:
            if error_code(err) in ("PreconditionFailed", "412", "NoSuchKey", "404"):
                return False
            raise
        return True

    def check_writable(self, what: str = "output.uri") -> None:
        """Prove the bucket exists and a probe object can be written and deleted.

        Uses a client with few retries, so an unreachable endpoint fails in seconds.
        """
        probe = self._probe()
        name = f".write-probe-{uuid.uuid4().hex}"
        try:
            probe._head_bucket()
            probe.put(name, b"")
        except Exception as err:
            raise self._refusal(err, f"{what}: {self.uri}") from None
        try:   # the lock's release and --overwrite delete objects too
            probe.delete(name)
        except Exception as err:
            # the probe stays in the container, where a later run would find a file it
            # did not write: say so, with its name
            raise OutputError(f"{what}: {self.uri}: objects can be written but not deleted "
                              f"({self.explain(err)}); delete the probe object "
                              f"{self.uri}/{name} once that is allowed") from None

    def check_reachable(self, what: str = "") -> None:
        """Prove the endpoint answers and the bucket exists (one HeadBucket, few retries)."""
        try:
            self._probe()._head_bucket()
        except Exception as err:
            raise self._refusal(err, f"{what}: {self.uri}" if what else self.uri) from None

    def _refusal(self, err: Exception, where: str) -> OutputError:
        """`err` of a check in one line after `where`: NoAnswer when the store could not
        be asked (`_not_asked`), OutputError for the answer it gave."""
        kind = NoAnswer if _not_asked(err) else OutputError
        return kind(f"{where}: {self.explain(err)}")

    @_bounded
    def _head_bucket(self) -> None:
        self.client.head_bucket(Bucket=self.bucket)

    def _probe(self) -> S3Store:
        """This store with a client that retries little, for checks that must fail fast."""
        return type(self)(self.bucket, self.prefix,
                          replace(self.options, max_attempts=min(self.options.max_attempts,
                                                                 CHECK_MAX_ATTEMPTS)))

    def explain(self, err: Exception) -> str:
        from botocore.exceptions import (
            ClientError,
            NoCredentialsError,
            PartialCredentialsError,
            ProfileNotFound,
        )

        if isinstance(err, StoreUnavailable):
            return str(err)
        if isinstance(err, ProfileNotFound):
            return f"s3.profile {self.options.profile!r} is not in the AWS config files"
        if isinstance(err, (NoCredentialsError, PartialCredentialsError)):
            return ("no AWS credentials found (set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, "
                    "AWS_PROFILE or s3.profile)")
        if isinstance(err, _no_answer_errors()):
            if not self.options.endpoint_url:
                return "cannot reach AWS S3 (for another S3-compatible store, set s3.endpoint_url)"
            return f"cannot reach the S3 endpoint {self.options.endpoint_url} (check s3.endpoint_url)"
        if isinstance(err, ClientError):
            code = error_code(err)
            if code in MISSING_BUCKET_CODES:
                return f"bucket {self.bucket!r} does not exist"
            if code in DENIED_CODES:
                return "access denied (check the AWS credentials/profile)"
            status = err.response.get("ResponseMetadata", {}).get("HTTPStatusCode", "?")
            # a method the server does not know: a server that is not S3's (trial AA: a
            # Spark UI's port)
            hint = (f"; is {self.options.endpoint_url} an S3 endpoint? (s3.endpoint_url)"
                    if self.options.endpoint_url and status in NOT_S3_STATUSES else "")
            return f"S3 refused the request ({code}, HTTP {status}){hint}"
        return f"{type(err).__name__}: {err}"


# HTTP statuses S3 does not answer a bucket or object request with (method not allowed,
# not implemented): what a web server that is not S3's says
NOT_S3_STATUSES = (405, 501)


def _no_answer_errors() -> tuple[type[Exception], ...]:
    """The errors of a request its endpoint never answered: refused, closed or timed out
    (botocore's, imported only when asked)."""
    from botocore.exceptions import (
        ConnectionClosedError,
        ConnectTimeoutError,
        EndpointConnectionError,
        ProxyConnectionError,
        ReadTimeoutError,
    )
    return (EndpointConnectionError, ConnectTimeoutError, ProxyConnectionError,
            ConnectionClosedError, ReadTimeoutError)


def _not_asked(err: Exception) -> bool:
    """Whether a check's `err` means the store could not be asked, rather than that it
    answered with a refusal: no answer (`_no_answer_errors`, the job's bound, a server
    error 5xx), or no credentials to ask with (a workstation planning for a cluster whose
    nodes have them: review of stop 48)."""
    from botocore.exceptions import (
        ClientError,
        NoCredentialsError,
        PartialCredentialsError,
        ProfileNotFound,
    )
    if isinstance(err, (StoreUnavailable, NoCredentialsError, PartialCredentialsError, ProfileNotFound,
                        *_no_answer_errors())):
        return True
    status = err.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) if isinstance(
        err, ClientError) else 0
    return isinstance(status, int) and status >= 500


def _folder_marker(item: dict) -> bool:
    """Whether a listed object is an empty "folder" marker (`vol.zarr/`, `vol.zarr/0/`),
    which S3 consoles and s3fs create: no dataset's object, no file on a file system, so
    not listed (trial U: tile-verify called the container's own marker a stray file, its
    name empty)."""
    return item["Key"].endswith("/") and int(item.get("Size", 0)) == 0
