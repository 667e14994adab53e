"""S3Store against a real moto server: multipart, ranges, writability, pickling, throttling.

The Store conformance tests (pipelines.testing.stores) run on S3 here too; the rest are
the S3-only cases.
"""

from __future__ import annotations

import pickle
import socket
import subprocess
import sys
import time

import pytest
from botocore.exceptions import ClientError, FlexibleChecksumError

from pipelines.errors import OutputError
from pipelines.storage import S3Options, S3Store, beside_store, open_store, parse_s3_uri
from pipelines.storage.s3 import MiB, client_for
from pipelines.testing.stores import StoreConformance
from tests.conftest import ROOT
from tests.s3_fixtures import ACCESS_KEY, SECRET_KEY, FlakyS3Proxy, boto_client

SMALL_PARTS = S3Options(multipart_threshold=5 * MiB, part_size=5 * MiB)
INTERNAL_ERROR = (b'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>InternalError</Code>'
                  b"<Message>injected</Message></Error>")


def make_store(endpoint: str, bucket: str, prefix: str = "some/prefix", **options) -> S3Store:
    return S3Store(bucket, prefix, S3Options(endpoint_url=endpoint, **options))


class TestS3Store(StoreConformance):
    """The conformance tests on S3Store against the moto server."""

    @pytest.fixture
    def store(self, s3_bucket):
        return make_store(*s3_bucket)


def pattern(size: int) -> bytes:
    """Bytes whose parts all differ, so a misplaced or repeated part is noticed."""
    return (bytes(range(251)) * (size // 251 + 1))[:size]


def open_uploads(endpoint: str, bucket: str) -> list:
    return boto_client(endpoint).list_multipart_uploads(Bucket=bucket).get("Uploads", [])


def etag(endpoint: str, bucket: str, name: str) -> str:
    return boto_client(endpoint).head_object(Bucket=bucket, Key=name)["ETag"]


# --- puts ---------------------------------------------------------------------------------

def test_multipart_above_threshold_round_trips_and_leaves_no_upload(s3_bucket):
    endpoint, bucket = s3_bucket
    store = make_store(endpoint, bucket, multipart_threshold=5 * MiB, part_size=5 * MiB)
    data = pattern(12 * MiB)
    store.put("shard", data)
    assert store.get("shard") == data
    assert etag(endpoint, bucket, "some/prefix/shard").strip('"').endswith("-3")  # 5 + 5 + 2 MiB
    assert open_uploads(endpoint, bucket) == []


def test_below_threshold_is_one_put(s3_bucket):
    endpoint, bucket = s3_bucket
    store = make_store(endpoint, bucket, multipart_threshold=5 * MiB, part_size=5 * MiB)
    store.put("chunk", pattern(5 * MiB - 1))
    assert "-" not in etag(endpoint, bucket, "some/prefix/chunk")


def test_multipart_failing_on_the_wire_is_aborted(s3_bucket):
    """Part 2 keeps failing with 500 (through a proxy): the upload is aborted, no object."""
    endpoint, bucket = s3_bucket
    proxy = FlakyS3Proxy(endpoint, every=1, limit=None, match="partNumber=2", status=500,
                         code=INTERNAL_ERROR).start()
    try:
        store = make_store(proxy.endpoint, bucket, multipart_threshold=5 * MiB,
                           part_size=5 * MiB, max_attempts=2)
        with pytest.raises(ClientError, match="InternalError"):
            store.put("shard", pattern(12 * MiB))
    finally:
        proxy.stop()
    assert proxy.injected == 2  # the first attempt and its one retry
    assert open_uploads(endpoint, bucket) == []
    assert not make_store(endpoint, bucket).exists("shard")


class PartFails(S3Store):
    def _upload_part(self, name, upload_id, number, body):
        if number == 2:
            raise KeyboardInterrupt  # even an interrupt must not leave parts behind
        return super()._upload_part(name, upload_id, number, body)


def test_multipart_interrupted_in_our_code_is_aborted(s3_bucket):
    endpoint, bucket = s3_bucket
    store = PartFails(bucket, "p", S3Options(endpoint_url=endpoint, multipart_threshold=5 * MiB,
                                             part_size=5 * MiB))
    with pytest.raises(KeyboardInterrupt):
        store.put("shard", pattern(11 * MiB))
    assert open_uploads(endpoint, bucket) == [] and not store.exists("shard")


def test_throttled_puts_are_retried(flaky_s3, moto_server):
    """1 in 3 PUTs answered 503 SlowDown: botocore's standard retries absorb every one."""
    endpoint, proxy = flaky_s3
    bucket = "throttled"
    boto_client(moto_server).create_bucket(Bucket=bucket)
    store = S3Store(bucket, "out", S3Options(endpoint_url=endpoint))
    for n in range(30):
        store.put(f"c/{n}", pattern(1000 + n))
    assert proxy.injected > 0 and proxy.puts >= 30 + proxy.injected
    direct = S3Store(bucket, "out", S3Options(endpoint_url=moto_server))
    assert all(direct.get(f"c/{n}") == pattern(1000 + n) for n in range(30))


def test_throttled_put_fails_without_retries(flaky_s3, s3_bucket):
    """The control for the test above: the proxy really refuses, retries are what help."""
    endpoint, proxy = flaky_s3
    proxy.every = 1
    store = S3Store(s3_bucket[1], "out", S3Options(endpoint_url=endpoint, max_attempts=1))
    with pytest.raises(ClientError, match="SlowDown"):
        store.put("k", b"x")
    assert proxy.injected == 1


def test_a_body_corrupted_on_the_way_is_read_again(flaky_s3, s3_bucket):
    """A GET body whose checksum does not match (moto once let a put tear a concurrent
    read: FlexibleChecksumError) is fetched again, never returned. With one attempt
    allowed it is the error, not the bytes. (A range read has no checksum to check: S3
    sends none for a part of an object.)"""
    endpoint, proxy = flaky_s3
    data = pattern(100_000)
    make_store(*s3_bucket).put("k", data)
    store = make_store(endpoint, s3_bucket[1])
    proxy.corrupt_gets = 2
    assert store.get("k") == data and proxy.corrupted == 2
    proxy.corrupt_gets += 1
    once = make_store(endpoint, s3_bucket[1], max_attempts=1)
    with pytest.raises(FlexibleChecksumError):
        once.get("k")


# --- reads, listing, keys -----------------------------------------------------------------

def test_get_range_and_size(s3_bucket):
    store = make_store(*s3_bucket)
    data = pattern(1000)
    store.put("tile.tif", data)
    assert store.get_range("tile.tif", 10, 20) == data[10:20]
    assert store.get_range("tile.tif", 0, 1000) == data
    assert store.get_range("tile.tif", 990, 2000) == data[990:]  # like slicing
    assert store.get_range("tile.tif", 1000, 1010) == b""
    assert store.get_range("tile.tif", 5, 5) == b""
    assert store.size("tile.tif") == 1000
    with pytest.raises(KeyError):
        store.get_range("missing", 0, 10)
    with pytest.raises(KeyError):
        store.size("missing")


def test_keys_map_under_the_prefix_and_list_is_relative(s3_bucket):
    endpoint, bucket = s3_bucket
    make_store(endpoint, bucket, "a/b").put("x/y", b"1")
    make_store(endpoint, bucket, "a/bc").put("z", b"2")  # a sibling prefix, not under a/b
    names = [o["Key"] for o in boto_client(endpoint).list_objects_v2(Bucket=bucket)["Contents"]]
    assert sorted(names) == ["a/b/x/y", "a/bc/z"]
    assert list(make_store(endpoint, bucket, "a/b").list()) == ["x/y"]
    assert sorted(make_store(endpoint, bucket, "").list()) == ["a/b/x/y", "a/bc/z"]


def test_list_pages_past_a_thousand_keys(s3_bucket):
    endpoint, bucket = s3_bucket
    client = boto_client(endpoint)
    for n in range(1005):
        client.put_object(Bucket=bucket, Key=f"p/k{n}", Body=b"")
    assert len(list(make_store(endpoint, bucket, "p").list("k"))) == 1005


@pytest.mark.parametrize("key", ["", "/abs", "a/../b", ".."])
def test_rejects_escaping_keys(key):
    with pytest.raises(ValueError):
        S3Store("bkt", "p").put(key, b"x")


# --- URIs ---------------------------------------------------------------------------------

@pytest.mark.parametrize("uri, expected", [
    ("s3://bkt/a/b", ("bkt", "a/b")),
    ("s3://bkt/a/b/", ("bkt", "a/b")),
    ("s3://bkt", ("bkt", "")),
    ("s3://my.bucket-1/x.n5", ("my.bucket-1", "x.n5")),
])
def test_parse_s3_uri(uri, expected):
    assert parse_s3_uri(uri) == expected


@pytest.mark.parametrize("uri", ["s3:///a", "s3://Upper/a", "s3://b_c/a", "s3://ab/x",
                                 "/local/path", "gs://bkt/a"])
def test_parse_s3_uri_refuses(uri):
    with pytest.raises(OutputError, match="s3://"):
        parse_s3_uri(uri)


def test_open_and_beside_store_for_s3():
    options = S3Options(endpoint_url="http://127.0.0.1:9", region="eu-west-1")
    store = open_store("s3://bkt/data/out.zarr", options)
    assert store == S3Store("bkt", "data/out.zarr", options)
    assert store.uri == "s3://bkt/data/out.zarr"
    assert beside_store("s3://bkt/data/out.zarr", options) == S3Store("bkt", "data", options)
    assert beside_store("s3://bkt/out.zarr").uri == "s3://bkt"


# --- check_writable -----------------------------------------------------------------------

def test_check_writable_passes_and_leaves_nothing(s3_bucket):
    store = make_store(*s3_bucket)
    store.check_writable()
    assert list(store.list()) == []


class DeleteDenied(S3Store):
    def delete(self, key):
        from botocore.exceptions import ClientError
        raise ClientError({"Error": {"Code": "AccessDenied"}}, "DeleteObject")


def test_check_writable_names_the_probe_it_could_not_delete(s3_bucket):
    """A bucket that lets objects be written but not deleted left the probe in the
    container without a word, where a later run finds a file it did not write."""
    endpoint, bucket = s3_bucket
    store = DeleteDenied(bucket, "x.n5", S3Options(endpoint_url=endpoint))
    with pytest.raises(OutputError) as err:
        store.check_writable()
    left = list(make_store(endpoint, bucket, "x.n5").list())
    assert len(left) == 1 and left[0].startswith(".write-probe-")
    assert str(err.value) == (f"output.uri: s3://{bucket}/x.n5: objects can be written but not "
                              f"deleted (access denied (check the AWS credentials/profile)); "
                              f"delete the probe object s3://{bucket}/x.n5/{left[0]} once that "
                              f"is allowed")


def test_check_writable_names_a_missing_bucket(moto_server):
    with pytest.raises(OutputError) as err:
        make_store(moto_server, "no-such-bucket", "x.n5").check_writable()
    assert str(err.value) == ("output.uri: s3://no-such-bucket/x.n5: "
                              "bucket 'no-such-bucket' does not exist")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_check_writable_names_an_unreachable_endpoint():
    endpoint = f"http://127.0.0.1:{free_port()}"
    started = time.monotonic()
    with pytest.raises(OutputError, match=f"cannot reach the S3 endpoint {endpoint}"):
        S3Store("bkt", "x", S3Options(endpoint_url=endpoint)).check_writable()
    assert time.monotonic() - started < 15  # few retries, not the pipeline's ten


def test_check_writable_names_a_missing_profile(s3_bucket):
    store = make_store(*s3_bucket, profile="no-such-profile")
    with pytest.raises(OutputError, match="s3.profile 'no-such-profile' is not in the AWS"):
        store.check_writable()


def assert_denied(store: S3Store, *secrets: str) -> None:
    with pytest.raises(OutputError) as err:
        store.check_writable()
    message = str(err.value)
    assert message == f"output.uri: {store.uri}: access denied (check the AWS credentials/profile)"
    assert not any(s in message or s in repr(err.value.__cause__) for s in secrets)


def test_check_writable_with_unknown_keys(s3_bucket, moto_auth):
    """With IAM checks on, moto does not know the session's env keys: InvalidAccessKeyId."""
    assert_denied(make_store(*s3_bucket), SECRET_KEY)


def test_check_writable_with_a_wrong_secret(s3_bucket, moto_auth):
    key_id, secret = moto_auth.user("wrong-secret")
    wrong = "a-wrong-secret-that-must-not-leak"
    profile = moto_auth.profile("wrong-secret", key_id, wrong)  # SignatureDoesNotMatch
    assert_denied(make_store(*s3_bucket, profile=profile), wrong, secret, key_id)


def test_check_writable_without_put_permission(s3_bucket, moto_auth):
    # moto names HeadBucket's permission "s3:HeadBucket", and since 5.2.6 ListObjectsV2's
    # "s3:ListObjectsV2" (AWS uses s3:ListBucket for both): allow all three, so that the
    # probe put is what gets refused.
    key_id, secret = moto_auth.user("reader", ["s3:ListBucket", "s3:HeadBucket",
                                               "s3:ListObjectsV2", "s3:GetObject"])
    profile = moto_auth.profile("reader", key_id, secret)
    store = make_store(*s3_bucket, profile=profile)
    assert list(store.list()) == []  # the profile's keys are accepted…
    assert_denied(store, secret, key_id)  # …but may not write


def test_check_writable_with_good_keys_under_iam(s3_bucket, moto_auth):
    profile = moto_auth.profile("writer", *moto_auth.user("writer"))
    make_store(*s3_bucket, profile=profile).check_writable()


def test_proxy_keeps_signatures_valid(s3_bucket, moto_auth):
    """moto verifies SigV4 against the Host header: the proxy must forward the client's."""
    endpoint, bucket = s3_bucket
    profile = moto_auth.profile("via-proxy", *moto_auth.user("via-proxy"))
    proxy = FlakyS3Proxy(endpoint, every=0).start()
    try:
        store = make_store(proxy.endpoint, bucket, profile=profile, max_attempts=1)
        store.put("k", b"through the proxy")
        assert store.get("k") == b"through the proxy" and store.size("k") == 17
        proxy.keep_host = False
        with pytest.raises(ClientError, match="SignatureDoesNotMatch"):
            store.put("k", b"x")
    finally:
        proxy.stop()


# --- what travels to executors ------------------------------------------------------------

def test_no_secret_in_repr_or_str(s3_bucket):
    store = make_store(*s3_bucket)
    store.put("k", b"x")  # a client exists now
    for text in (repr(store), str(store), repr(store.options)):
        assert SECRET_KEY not in text and ACCESS_KEY not in text


def test_pickle_holds_no_client_and_works_in_a_fresh_process(s3_bucket, tmp_path):
    endpoint, bucket = s3_bucket
    store = make_store(endpoint, bucket)
    store.put("from-parent", b"1")
    assert client_for(store.options) is client_for(S3Options(endpoint_url=endpoint))
    payload = pickle.dumps(store)
    assert len(payload) < 600 and b"botocore" not in payload and SECRET_KEY.encode() not in payload
    assert pickle.loads(payload) == store
    (tmp_path / "store.pickle").write_bytes(payload)
    child = f"""
import pickle, sys
from pipelines.storage import s3
store = pickle.load(open({str(tmp_path / 'store.pickle')!r}, 'rb'))
assert not s3._clients, 'a client arrived with the pickle'
store.put('from-child', store.get('from-parent') + b'2')
print(sorted(store.list()))
"""
    result = subprocess.run([sys.executable, "-c", child], cwd=ROOT, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "['from-child', 'from-parent']"
    assert store.get("from-child") == b"12"


def test_refused_credentials_on_the_tile_json_are_one_clear_line(s3_bucket, moto_auth):
    """Input on S3 the credentials may not read: a TileError naming the URI, no secret."""
    from pipelines.errors import TileError
    from pipelines.tiles import read_tile_json
    endpoint, bucket = s3_bucket
    with pytest.raises(TileError, match=rf"s3://{bucket}/acq/tiles.json: cannot read the tile configuration") as err:
        read_tile_json(f"s3://{bucket}/acq/tiles.json", S3Options(endpoint_url=endpoint))
    assert SECRET_KEY not in str(err.value)


def test_a_tile_json_behind_a_wrong_endpoint_names_the_endpoint(tmp_path):
    """Trial AA: a closed port was "EndpointConnectionError: Could not connect …" where
    tile-verify says "cannot reach the S3 endpoint … (check s3.endpoint_url)", and a web
    page on that port (a Spark UI's) "not valid JSON", blamed on the tile JSON alone."""
    import http.server
    import socket
    import threading

    from pipelines.errors import TileError
    from pipelines.tiles import read_tile_json
    with socket.socket() as free:
        free.bind(("127.0.0.1", 0))
        closed = free.getsockname()[1]
    with pytest.raises(TileError) as err:
        read_tile_json("s3://lab/acq/tiles.json", S3Options(endpoint_url=f"http://127.0.0.1:{closed}",
                                                             max_attempts=1))
    assert str(err.value) == (f"s3://lab/acq/tiles.json: cannot read the tile configuration: cannot "
                              f"reach the S3 endpoint http://127.0.0.1:{closed} (check s3.endpoint_url)")

    class Page(http.server.BaseHTTPRequestHandler):
        def do_GET(self):   # noqa: N802 - the name http.server calls
            body = b"<!DOCTYPE html><html><title>Spark Master</title></html>"
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Page)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    page = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        with pytest.raises(TileError) as err:
            read_tile_json("s3://lab/acq/tiles.json", S3Options(endpoint_url=page))
        with pytest.raises(OutputError) as refused:   # the output's check: "(405, HTTP 405)" alone
            open_store("s3://lab/out.n5", S3Options(endpoint_url=page)).check_writable()
    finally:
        server.shutdown()
    assert str(err.value).endswith("the endpoint answered with a web page: is s3.endpoint_url an "
                                   "S3 endpoint?"), err.value
    assert str(refused.value).endswith(f"; is {page} an S3 endpoint? (s3.endpoint_url)"), refused.value


def test_unfinished_multipart_uploads_are_listed_and_aborted(s3_bucket):
    """What a writer killed mid-upload leaves: found by partial_writes(), gone after removal."""
    endpoint, bucket = s3_bucket
    store = make_store(endpoint, bucket)
    client = client_for(store.options)
    client.create_multipart_upload(Bucket=bucket, Key=f"{store.prefix}/0/c/0/0/0")
    client.create_multipart_upload(Bucket=bucket, Key="elsewhere/x")  # not under this store
    partial = store.partial_writes()
    assert [p.name.split(" ")[0] for p in partial] == ["0/c/0/0/0"]   # relative, as keys
    assert [p.key for p in partial] == ["0/c/0/0/0"]
    store.remove_partial(partial[0])
    assert store.partial_writes() == []
    assert len(open_uploads(endpoint, bucket)) == 1  # the other prefix's upload is not ours


def test_the_identity_of_every_s3_tile_is_read(s3_bucket):
    """The tile identities of the reuse and export fingerprints, asked of S3 many at a
    time, come back by path: each object's size and ETag, None for a missing one and for
    a container's prefix."""
    from pipelines.tiles.identity import STAT_THREADS, file_identities
    endpoint, bucket = s3_bucket
    client = boto_client(endpoint)
    paths = []
    for n in range(3 * STAT_THREADS):   # more than one round of the pool
        client.put_object(Bucket=bucket, Key=f"acq/tiles/tile-{n:04d}.tif", Body=b"x" * n)
        paths.append(f"s3://{bucket}/acq/tiles/tile-{n:04d}.tif")
    client.put_object(Bucket=bucket, Key="acq/tiles/volume.n5/attributes.json", Body=b"{}")
    missing, container = f"s3://{bucket}/acq/tiles/gone.tif", f"s3://{bucket}/acq/tiles/volume.n5"
    found = file_identities([*paths, missing, container], S3Options(endpoint_url=endpoint))
    assert list(found) == [*paths, missing, container]
    assert [found[p][0] for p in paths] == list(range(3 * STAT_THREADS))
    etags = [client.head_object(Bucket=bucket, Key=f"acq/tiles/tile-{n:04d}.tif")["ETag"]
             for n in range(3 * STAT_THREADS)]
    assert [found[p][1] for p in paths] == etags
    assert found[missing] is None and found[container] is None


def test_empty_folder_markers_are_not_listed(s3_bucket):
    """Trial U: the zero-byte "folder" objects S3 consoles and s3fs make (`vol.zarr/`,
    `vol.zarr/0/`) were listed, so tile-verify called them stray files (one with an empty
    name). They are no object of a dataset; a key ending in "/" that holds bytes still is
    listed, as is every object under a marker."""
    endpoint, bucket = s3_bucket
    client = boto_client(endpoint)
    for key, body in (("vol.zarr/", b""), ("vol.zarr/0/", b""), ("vol.zarr/0/0", b"chunk"),
                      ("vol.zarr/odd/", b"bytes")):
        client.put_object(Bucket=bucket, Key=key, Body=body)
    store = make_store(endpoint, bucket, "vol.zarr")
    assert sorted(store.list()) == ["0/0", "odd/"]
    assert store.sizes() == {"0/0": 5, "odd/": 5}


@pytest.mark.parametrize("cache", [256 * MiB, 0])
def test_a_small_s3_tile_is_fetched_whole_once_for_its_blocks(s3_bucket, monkeypatch, cache):
    """Trial V: 64 x 64 x 16 tiles on S3 cost 27 range requests each over their blocks (a
    request per slice and row range), an export 10-18 x slower than from a local disk. A
    small stack is fetched whole once while the tile cache keeps it; without a cache, a
    region that is not most of the tile still costs a request per slice. The pixels are
    the file's either way."""
    import io

    import numpy as np
    import tifffile

    from pipelines.geometry import Box
    from pipelines.tiles import readers
    from pipelines.tiles.model import Tile
    endpoint, bucket = s3_bucket
    values = (np.arange(16 * 64 * 64, dtype=np.uint16) * 31 % 4093).reshape(16, 64, 64)
    buffer = io.BytesIO()
    tifffile.imwrite(buffer, values, contiguous=True)
    boto_client(endpoint).put_object(Bucket=bucket, Key="acq/tile.tif", Body=buffer.getvalue())
    tile = Tile(0, f"s3://{bucket}/acq/tile.tif", (0.0, 0.0, 0.0), (64, 64, 16))
    readers.set_tile_cache(cache, run=f"test-{cache}")
    requests = []
    real = S3Store.get_range
    monkeypatch.setattr(S3Store, "get_range",
                        lambda self, key, start, stop: requests.append(key) or real(self, key, start, stop))
    s3 = S3Options(endpoint_url=endpoint)
    regions = [Box((x, y, z), (x + 32, y + 32, z + 8)) for x in (0, 32) for y in (0, 32) for z in (0, 8)]
    for region in regions:   # the eight blocks of one tile
        (x0, y0, z0), (x1, y1, z1) = region.start, region.stop
        assert np.array_equal(readers.read_region(tile, region, s3), values[z0:z1, y0:y1, x0:x1])
    readers.set_tile_cache(0, run="")
    fetched = len(requests)
    if cache:
        assert fetched <= 2, requests   # the header (once per process) and the whole stack
    else:
        assert fetched >= 8 * 8, requests   # a request per slice of every region
