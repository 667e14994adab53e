"""Where things are stored: the one parser of local paths, file:// and s3:// URIs.

Every module that needs a URI's scheme, name, parent folder or a sibling of it asks this
module, so a path and an object URI are treated alike everywhere (`s3://b/x/tiles.json`
and `/data/x/tiles.json` have the same parent rules).
"""

from __future__ import annotations

import posixpath
from dataclasses import dataclass
from urllib.parse import unquote, urlparse

from pipelines.errors import OutputError

# Schemes a user may name. (memory:// stores exist only inside tests, never by URI.)
USER_SCHEMES = ("", "file", "s3")


@dataclass(frozen=True)
class Location:
    """A parsed URI: `scheme` ("" for a local path), `authority` (the S3 bucket) and `path`
    (a local path, or the key prefix inside the bucket, without leading '/')."""

    scheme: str
    authority: str
    path: str

    @property
    def remote(self) -> bool:
        return self.scheme not in ("", "file")

    def __str__(self) -> str:
        if not self.remote:
            return self.path
        return f"{self.scheme}://{self.authority}/{self.path}".rstrip("/")


def parse(uri: str) -> Location:
    """Split `uri` into scheme, authority and path; refuse schemes we cannot store to."""
    if uri.startswith("file:"):
        return Location("", "", local_path(uri))
    if "://" not in uri:
        return Location("", "", uri)
    parsed = urlparse(uri)
    if "@" in parsed.netloc:   # never repeat the userinfo: it is a secret
        raise OutputError(f"{parsed.scheme}://…@{parsed.netloc.rpartition('@')[2]}/…: credentials "
                          f"in a URI are refused (and never printed); give them through the "
                          f"environment (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY), a profile "
                          f"(s3.profile) or an instance role")
    if parsed.scheme not in USER_SCHEMES:
        raise OutputError(f"{uri}: unsupported storage scheme {parsed.scheme!r}; use a path, "
                          f"file:// or s3:// URI")
    if parsed.scheme == "s3" and ("?" in uri or "#" in uri):
        # trial O: urlparse took "?x=1" for a query: the data went to the key without it and
        # the lock and job record to the key with it, so two runs shared one container
        raise OutputError(f"{uri}: an S3 URI here has no '?' or '#' (read as a query or a "
                          f"fragment, not as part of the key)")
    path = parsed.path.strip("/")
    inner = parsed.path.removeprefix("/").removesuffix("/")
    if parsed.scheme == "s3" and inner and any(part in ("", ".", "..") for part in inner.split("/")):
        # trial M: "x/../v.n5" was stored under that literal key, which the printed
        # tensorstore command (resolving "..") then did not find; "//" was dropped
        meant = posixpath.normpath("/" + inner).lstrip("/")   # trial O: "/.." stays at the top
        raise OutputError(f"{uri}: an S3 key has no empty, '.' or '..' parts; write the "
                          f"prefix as it is meant" + (f" (s3://{parsed.netloc}/{meant})" if meant else ""))
    return Location(parsed.scheme, parsed.netloc, path)


def local_path(uri: str) -> str:
    """The path a file: URI names on this machine (file:///path or file://localhost/path,
    percent-decoded: %20 is a space); OutputError for another host or a relative file:
    URI (file:rel/v.n5 would otherwise become a folder named "file:rel")."""
    if not uri.startswith("file://"):
        raise OutputError(f"{uri}: a file URI names an absolute path (file:///path); "
                          f"give a relative path without file:")
    host, _, path = uri.removeprefix("file://").partition("/")
    if host not in ("", "localhost"):
        raise OutputError(f"{uri}: a file:// URI names a path on this machine "
                          f"(file:///path), not host {host!r}")
    return "/" + unquote(path)


def is_remote(uri: str) -> bool:
    """Whether `uri` names an object store rather than this machine's filesystem."""
    return "://" in uri and urlparse(uri).scheme not in ("", "file")


def name(uri: str) -> str:
    """The last part of `uri`: `volume` for `/data/volume` and `s3://b/out/volume`."""
    return posixpath.basename(uri.rstrip("/"))


def stem(uri: str) -> str:
    """`name` without its extension: `tiles` for `…/tiles.json`."""
    return posixpath.splitext(name(uri))[0]


def split(uri: str) -> tuple[str, str]:
    """(folder URI, last part) of `uri`; the folder keeps the scheme: `s3://b/x`, `y`."""
    location = parse(uri)
    folder, last = posixpath.split(location.path.rstrip("/"))
    if location.remote:
        return str(Location(location.scheme, location.authority, folder)), last
    return folder or ".", last


def parent(uri: str) -> str:
    """The folder holding `uri`, as a URI of the same kind."""
    return split(uri)[0]


def join(folder: str, relative: str) -> str:
    """`relative` (a '/'-separated path) under `folder`, normalised; same kind as `folder`."""
    location = parse(folder)
    joined = posixpath.normpath(posixpath.join(location.path or "/", relative))
    if location.remote:
        return str(Location(location.scheme, location.authority, joined.lstrip("/")))
    return joined


def sibling(uri: str, suffix: str) -> str:
    """`tiles.json` → `tiles<suffix>` in the same folder (paths and URIs alike)."""
    folder, _ = split(uri)
    return join(folder, stem(uri) + suffix)


def beside(uri: str, suffix: str) -> str:
    """`volume` → `volume<suffix>` in the same folder: where a container's sidecars live."""
    folder, last = split(uri)
    return join(folder, last + suffix)
