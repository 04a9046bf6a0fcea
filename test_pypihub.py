"""Tests for pypihub, in the order a reader meets them:

1. Pure logic: tables of pypihub's functions and classes called directly, with no server and
   no network (names and files, requests, rendering, GitHub's answers, uploads, cache and
   metrics, settings and the command line), after the few helpers that build their inputs.
2. A fake GitHub on loopback, then the fixtures that start PyPIHub against it.
3. The server against the fake GitHub, by feature: listings and access, GitHub faults,
   negotiation, caching, the root index, hostile names, proxy downloads, connections,
   operations, TLS, hostile input, hashes and metadata, publishing.
4. End-to-end clients: the real pip, uv and twine (uv and twine when installed) through
   PyPIHub, by the same features, then shipping: the script, the zipapp, the installed command.

The fake GitHub executes every GraphQL query against GitHub's public schema
(../shared/github/schema.graphql) with graphql-core, and enforces what GitHub enforces:
401 JSON for bad tokens, `repository: null` + NOT_FOUND for repos a token cannot see,
`first`/`last` required and <= 100 on every connection, drafts only for writers, and signed,
expiring download URLs that refuse Authorization headers.
"""
from __future__ import annotations

import ast
import base64
import collections
import dataclasses
import datetime
import email.message
import hashlib
import hmac
import html
import html.parser
import http.client
import io
import ipaddress
import json
import os
import re
import shutil
import socket
import ssl
import struct
import signal
import subprocess
import sys
import threading
import time
import urllib.parse
import urllib.request
import zipfile
import zlib
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

import pypihub

ROOT = Path(__file__).resolve().parent
SHARED = ROOT.parent / "shared"
SCHEMA_FILE = SHARED / "github" / "schema.graphql"
# How often a test server looks up from select(): also how long its shutdown() waits, in every teardown.
POLL = 0.005


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def installation_token(app_id: int, installation: int, repos: int = 1) -> str:
    """A GitHub App installation token as GitHub issues them since 2026 (Actions' GITHUB_TOKEN from
    2026-04-27, every App by late June): "ghs_APPID_JWT", "longer (~520 characters) and will vary based on
    the data stored within it", with dots, "-" and "_" (changelog 2026-04-24 "Notice about upcoming new
    format for GitHub App installation tokens"; changelog 2026-05-15). Its RS256 signature is 256 bytes."""
    def b64url(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    header = b64url(json.dumps({"alg": "RS256", "typ": "JWT", "kid": f"k{app_id}"}, separators=(",", ":")).encode())
    claims = b64url(json.dumps({"iss": app_id, "sub": f"installation:{installation}", "iat": 1780000000,
                                "exp": 1780003600, "repository_ids": list(range(900000, 900000 + repos))},
                               separators=(",", ":")).encode())
    seed = f"{app_id}:{installation}:{repos}".encode()
    signature = b64url(b"".join(hashlib.sha512(seed + bytes([n])).digest() for n in range(4)))
    return f"ghs_{app_id}_{header}.{claims}.{signature}"


OWNER = "octorg"
TOKEN_A = "ghp_tokenAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"  # reads octorg's private repos, writes some
TOKEN_B = "ghp_tokenBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBB"  # sees only public repos
TOKEN_BAD = "ghp_revokedXXXXXXXXXXXXXXXXXXXXXXXXXXXXXX"  # unknown to GitHub
JOB_TOKEN = installation_token(15368, 51011, 1)  # GitHub Actions' GITHUB_TOKEN (2026 format): its own repo only
APP_TOKEN = installation_token(1004321, 77001, 2)  # a GitHub App installation token (2026 format): granted repos
ALL_TOKENS = (TOKEN_A, TOKEN_B, TOKEN_BAD, JOB_TOKEN, APP_TOKEN)

PIP_ACCEPT = "application/vnd.pypi.simple.v1+json, application/vnd.pypi.simple.v1+html; q=0.1, text/html; q=0.01"
UV_ACCEPT = "application/vnd.pypi.simple.v1+json, application/vnd.pypi.simple.v1+html;q=0.2, text/html;q=0.01"


# --- Building distributions and requests ---


def make_wheel(name: str, version: str, value: str = "", requires_python: str | None = None,
               requires: tuple[str, ...] = (), description: str = "") -> tuple[str, bytes]:
    """A real, installable pure-Python wheel with one module."""
    module = name.replace("-", "_")
    dist_info = f"{module}-{version}.dist-info"
    metadata = f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n"
    if requires_python:
        metadata += f"Requires-Python: {requires_python}\n"
    metadata += "".join(f"Requires-Dist: {r}\n" for r in requires)
    metadata += f"\n{description}" if description else ""
    files = {
        f"{module}/__init__.py": f"VALUE = {value or version!r}\n",
        f"{dist_info}/METADATA": metadata,
        f"{dist_info}/WHEEL": "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    }
    record = "".join(
        f"{path},sha256={base64.urlsafe_b64encode(hashlib.sha256(text.encode()).digest()).rstrip(b'=').decode()},{len(text.encode())}\n"
        for path, text in files.items()
    ) + f"{dist_info}/RECORD,,\n"
    files[f"{dist_info}/RECORD"] = record
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for path, text in files.items():
            archive.writestr(path, text)
    return f"{module}-{version}-py3-none-any.whl", buffer.getvalue()


def wheel_metadata(content: bytes) -> bytes:
    with zipfile.ZipFile(io.BytesIO(content)) as archive:
        return archive.read(next(n for n in archive.namelist() if n.endswith(".dist-info/METADATA")))


def make_sdist(name: str, version: str) -> tuple[str, bytes]:
    """A minimal sdist with the PKG-INFO twine and uv read."""
    base = f"{name.replace('-', '_')}-{version}"
    pkg_info = f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n".encode()
    buffer = io.BytesIO()
    import tarfile
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        folder = tarfile.TarInfo(base)
        folder.type, folder.mode = tarfile.DIRTYPE, 0o755
        archive.addfile(folder)
        info = tarfile.TarInfo(f"{base}/PKG-INFO")
        info.size = len(pkg_info)
        archive.addfile(info, io.BytesIO(pkg_info))
    return f"{base}.tar.gz", buffer.getvalue()


def basic(text: str) -> str:
    return "Basic " + base64.b64encode(text.encode()).decode()


def multipart(fields: dict[str, str], filename: str, content: bytes, boundary: str = "b0undary") -> tuple[bytes, str]:
    parts = [f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'.encode() for k, v in fields.items()]
    parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="content"; filename="{filename}"\r\n'
                 f"Content-Type: application/octet-stream\r\n\r\n".encode() + content + b"\r\n")
    return b"".join(parts) + f"--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


def upload_fields(project: str, version: str, content: bytes, **overrides: str) -> dict[str, str]:
    return {":action": "file_upload", "protocol_version": "1", "name": project, "version": version,
            "filetype": "bdist_wheel", "sha256_digest": hashlib.sha256(content).hexdigest(), **overrides}


# --- Reading answers, and a clock ---


class LinkParser(html.parser.HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.links: list[tuple[str, str, dict]] = []
        self.meta: dict[str, str] = {}
        self._open: dict | None = None

    def handle_starttag(self, tag, attrs) -> None:
        attrs = dict(attrs)
        if tag == "a":
            self._open, self._text = attrs, ""
        if tag == "meta" and "name" in attrs:
            self.meta[attrs["name"]] = attrs.get("content", "")

    def handle_data(self, data) -> None:
        if self._open is not None:
            self._text += data

    def handle_endtag(self, tag) -> None:
        if tag == "a" and self._open is not None:
            self.links.append((self._open.get("href", ""), self._text, self._open))
            self._open = None


def parse_links(text: str) -> list[tuple[str, str, dict]]:
    parser = LinkParser()
    parser.feed(text)
    return parser.links


def parse_meta(text: str) -> dict[str, str]:
    parser = LinkParser()
    parser.feed(text)
    return parser.meta


def parse_metrics(text: str) -> dict[str, float]:
    samples = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            samples[name] = float(value)
    return samples


def wait_until(condition, seconds: float = 10) -> bool:
    """Poll until condition() holds or the time is up; say whether it held (the test's own asserts,
    or an assert on this answer, then tell)."""
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.01)
    return True


class Clock:
    """Wall-clock time that a test can move forward."""

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset

    def advance(self, seconds: float) -> None:
        self.offset += seconds


# --- Pure logic: tables ---

# -- names and files --


@pytest.mark.parametrize("name, expected", [
    ("Foo", "foo"), ("foo_bar", "foo-bar"), ("Foo.Bar", "foo-bar"), ("foo--_.bar", "foo-bar"),
    ("a-b-c", "a-b-c"), ("ZOPE.interface", "zope-interface"),
])
def test_normalize(name, expected):
    assert pypihub.normalize(name) == expected


@pytest.mark.parametrize("filename, expected", [
    ("foo-1.0-py3-none-any.whl", ("foo", "1.0", "wheel")),
    ("Foo_Bar-2.1.post1-1-cp311-cp311-manylinux_2_17_x86_64.whl", ("foo-bar", "2.1.post1", "wheel")),
    ("foo_bar-1.0.tar.gz", ("foo-bar", "1.0", "sdist")),
    ("foo-bar-1.0.tar.gz", ("foo-bar", "1.0", "sdist")),  # legacy sdist name with a dash
    ("foo-1.0.zip", ("foo", "1.0", "sdist")),
    ("foo-1.0+local.7-py3-none-any.whl", ("foo", "1.0+local.7", "wheel")),
    ("checksums.txt", None), ("foo-1.0.bin", None), ("foo.pdf", None), ("foo.tar.gz", None),
    ("foo-1.0-py3-any.whl", None), ("foo-bar.tar.gz", None), ("-1.0.tar.gz", None),
    ("foo-1.0.tar.bz2", None), ("foo-1.0.egg", None),
])
def test_parse_distribution(filename, expected):
    found = pypihub.parse_distribution(filename)
    assert (found and (found.project, found.version, found.kind)) == expected or found is expected


@pytest.mark.parametrize("project, rules, expected", [
    ("foo", [], ["foo"]),
    ("foo-bar", [], ["foo-bar", "foo_bar", "foo.bar"]),
    ("foo-bar-baz", [], ["foo-bar-baz", "foo_bar_baz", "foo.bar.baz"]),
    ("foo-bar", [("^foo-", "py-")], ["py-bar"]),
    ("acme-tools", [("^acme-(.*)$", r"\1"), ("tools", "toolbox")], ["toolbox"]),
    ("other", [("^acme-", "")], ["other"]),
    ("foo", [("foo", "bad/name")], []),
])
def test_repo_candidates(project, rules, expected):
    parsed = pypihub.parse_rules(f"{p}={r}" for p, r in rules)
    assert pypihub.repo_candidates(project, parsed) == expected


@pytest.mark.parametrize("names, filename, expected", [
    (["foo/__init__.py", "foo-1.0.dist-info/METADATA"], "foo-1.0-py3-none-any.whl", "foo-1.0.dist-info/METADATA"),
    (["Foo_Bar-2.0.dist-info/METADATA", "vendored-9.dist-info/METADATA"], "foo_bar-2.0-py3-none-any.whl",
     "Foo_Bar-2.0.dist-info/METADATA"),
    (["x/foo-1.0.dist-info/METADATA", "foo-1.0.dist-info/METADATA"], "foo-1.0-py3-none-any.whl", "foo-1.0.dist-info/METADATA"),
])
def test_wheel_metadata_member(names, filename, expected):
    assert pypihub.wheel_metadata_member(names, filename) == expected


@pytest.mark.parametrize("names", [[], ["foo/__init__.py"], ["a-1.dist-info/METADATA", "b-1.dist-info/METADATA"]])
def test_wheel_metadata_member_refuses(names):
    with pytest.raises(pypihub.BadGateway):
        pypihub.wheel_metadata_member(names, "foo-1.0-py3-none-any.whl")


# -- requests --


@pytest.mark.parametrize("accept, expected", [
    (None, pypihub.TEXT_HTML),
    ("", pypihub.TEXT_HTML),
    ("*/*", pypihub.TEXT_HTML),
    (PIP_ACCEPT, pypihub.JSON_V1),
    (UV_ACCEPT, pypihub.JSON_V1),
    ("text/html", pypihub.TEXT_HTML),
    ("application/vnd.pypi.simple.v1+html", pypihub.HTML_V1),
    ("application/vnd.pypi.simple.latest+json", pypihub.JSON_V1),
    ("application/vnd.pypi.simple.latest+html", pypihub.HTML_V1),
    ("APPLICATION/VND.PYPI.SIMPLE.V1+JSON", pypihub.JSON_V1),
    ("application/*", pypihub.HTML_V1),
    ("application/vnd.pypi.simple.v1+json;q=0.5, text/html;q=0.9", pypihub.TEXT_HTML),
    ("application/vnd.pypi.simple.v1+json, application/vnd.pypi.simple.v1+html", pypihub.JSON_V1),
    ("application/vnd.pypi.simple.v1+html, application/vnd.pypi.simple.v1+json", pypihub.HTML_V1),
    ("*/*;q=0.1, application/vnd.pypi.simple.v1+json", pypihub.JSON_V1),
    ("*/*, text/html;q=0", pypihub.HTML_V1),
    ("text/html;q=bogus, application/vnd.pypi.simple.v1+json;q=0.3", pypihub.JSON_V1),
    ("garbage, text/html", pypihub.TEXT_HTML),
])
def test_negotiate(accept, expected):
    assert pypihub.negotiate(accept) == expected


@pytest.mark.parametrize("accept", [
    "application/json", "application/vnd.pypi.simple.v2+json", "text/plain", "image/*",
    "text/html;q=0", "*/*;q=0", "application/vnd.pypi.simple.v1+json;q=0",
])
def test_negotiate_refuses(accept):
    with pytest.raises(pypihub.NotAcceptable):
        pypihub.negotiate(accept)


@pytest.mark.parametrize("value, read", [
    (JOB_TOKEN + "\n", JOB_TOKEN), (f"  {APP_TOKEN}\r\n", APP_TOKEN), ("x" * 4096, "x" * 4096),
    ("x" * 4097, None), ("", None), ("tok en", None),
])
def test_the_servers_own_token_is_opaque_printable_ascii_up_to_4_kib(value, read):
    settings = pypihub.Settings(token_env="GH_TOKEN", host="127.0.0.1", owners=(OWNER,))
    if read is None:
        with pytest.raises(pypihub.ConfigError):
            pypihub.TokenSource(settings, {"GH_TOKEN": value})
    else:
        assert pypihub.TokenSource(settings, {"GH_TOKEN": value}).token == read


@pytest.mark.parametrize("header, expected", [
    (basic("octorg:ghp_abc"), ("octorg", "ghp_abc")),
    (basic("Oct-Org:tok:with:colons"), ("Oct-Org", "tok:with:colons")),
    ("basic " + base64.b64encode(b"o:t").decode(), ("o", "t")),
    # Users that name no owner (twine's and uv's default, GitHub's convention, none): the configured owners.
    (basic("__token__:ghp_abc"), ("", "ghp_abc")), (basic("x-access-token:ghs_x"), ("", "ghs_x")),
    (basic("Token:t"), ("", "t")), (basic(":t"), ("", "t")),
    # Tokens are opaque (GitHub, 2026-04-24): 2026's ~520-character installation tokens, anything to 4 KiB ...
    (basic(f"octorg:{JOB_TOKEN}"), ("octorg", JOB_TOKEN)), (basic("octorg:" + "x" * 4096), ("octorg", "x" * 4096)),
    # ... and the whitespace around one (a newline from an environment variable or a file) is not part of it.
    (basic("octorg:ghp_abc\n"), ("octorg", "ghp_abc")), (basic(f"octorg: {APP_TOKEN} \r\n"), ("octorg", APP_TOKEN)),
])
def test_parse_credentials(header, expected):
    creds = pypihub.parse_credentials(header)
    assert (creds.owner, creds.token) == expected


@pytest.mark.parametrize("header", [
    None, "", "Bearer ghp_abc", "Basic", "Basic !!!notbase64", basic("no-colon"), basic("octorg:"),
    basic("bad owner:token"), basic("-octorg:token"), basic("octorg:tok en"),
    basic("octorg:tok\nen"), "Basic " + base64.b64encode(b"o:\xff\xfe").decode(), basic("x" * 40 + ":t"),
    basic("octorg:" + "x" * 4097), basic("octorg: \n"), basic("octorg:tok\x7fen"), "Basic " + "QUFB" * 5000,
])
def test_parse_credentials_refuses(header):
    with pytest.raises(pypihub.Unauthorized) as caught:
        pypihub.parse_credentials(header)
    assert ("WWW-Authenticate", 'Basic realm="pypihub", charset="UTF-8"') in caught.value.headers


@pytest.mark.parametrize("segment, expected", [
    ("foo", "foo"), ("foo%2Bbar", "foo+bar"), ("a%2Fb", "a/b"), ("%C3%A9", "é"),
])
def test_unquote_segment(segment, expected):
    assert pypihub.unquote_segment(segment) == expected


@pytest.mark.parametrize("segment", ["%", "%zz", "a%2", "%00", "%0d%0a", "%ff", "%7f"])
def test_unquote_segment_refuses(segment):
    with pytest.raises(pypihub.BadRequest):
        pypihub.unquote_segment(segment)


# -- rendering --


def listing_of(*assets: pypihub.Asset) -> pypihub.Listing:
    return pypihub.Listing("demo", OWNER, "demo", assets)


HOSTILE = pypihub.Asset('RA_1/+="', 'demo-1.0-py3-none-any.whl"><script>x</script>', "1.0", 5,
                        "2026-01-01T00:00:00Z", "https://x")


def test_render_html_escapes_and_links():
    plain = pypihub.Asset("RA_kw1", "demo-1.0+local-py3-none-any.whl", "1.0+local", 5, "2026-01-01T00:00:00Z", "https://x")
    text = pypihub.render_project_html(listing_of(plain, HOSTILE), {}).decode()
    assert "<script>" not in text
    links = parse_links(text)
    assert [t for _, t, _ in links] == [plain.filename, HOSTILE.filename]
    assert links[0][0] == "../../asset/RA_kw1/demo-1.0%2Blocal-py3-none-any.whl"
    href = links[1][0]
    assert href.startswith("../../asset/RA_1%2F%2B%3D%22/")
    assert urllib.parse.unquote(href.rsplit("/", 1)[1]) == HOSTILE.filename  # PEP 503: last segment = filename
    assert parse_meta(text) == {"pypi:repository-version": "1.1"}


def test_render_json_is_pep_691_and_700():
    older = pypihub.Asset("RA_2", "demo-1.9.tar.gz", "1.9", 7, "2026-01-01T00:00:00Z", "https://x")
    newer = pypihub.Asset("RA_3", "demo-1.10-py3-none-any.whl", "1.10", 9, "2026-02-01T00:00:00Z", "https://x")
    page = json.loads(pypihub.render_project_json(listing_of(older, newer, HOSTILE), {}))
    assert page["meta"] == {"api-version": "1.1"}
    assert page["name"] == "demo"
    assert page["versions"] == ["1.0", "1.9", "1.10"]
    assert page["files"][0] == {"filename": "demo-1.9.tar.gz", "url": "../../asset/RA_2/demo-1.9.tar.gz",
                                "hashes": {}, "size": 7, "upload-time": "2026-01-01T00:00:00Z"}
    assert page["files"][1]["core-metadata"] is True and "dist-info-metadata" not in page["files"][1]
    assert page["files"][2]["filename"] == HOSTILE.filename


def test_render_hashes_metadata_and_requires_python():
    wheel = pypihub.Asset("RA_1", "demo-1.0-py3-none-any.whl", "1.0", 5, "2026-01-01T00:00:00Z", "u", sha256="ab" * 32)
    sdist = pypihub.Asset("RA_2", "demo-1.0.tar.gz", "1.0", 5, "2026-01-01T00:00:00Z", "u")
    metadata = pypihub.parse_core_metadata(b"Metadata-Version: 2.1\nName: demo\nVersion: 1.0\nRequires-Python: >=3.9,<4\n")
    text = pypihub.render_project_html(listing_of(wheel, sdist), {"RA_1": metadata}).decode()
    (href, _, attrs), (sdist_href, _, sdist_attrs) = parse_links(text)
    assert href.endswith("#sha256=" + "ab" * 32) and "#" not in sdist_href
    assert attrs["data-requires-python"] == ">=3.9,<4" and 'data-requires-python="&gt;=3.9,&lt;4"' in text
    assert attrs["data-core-metadata"] == attrs["data-dist-info-metadata"] == f"sha256={metadata.sha256}"
    assert "data-core-metadata" not in sdist_attrs
    files = json.loads(pypihub.render_project_json(listing_of(wheel, sdist), {"RA_1": metadata}))["files"]
    assert files[0]["hashes"] == {"sha256": "ab" * 32} and files[1]["hashes"] == {}
    assert files[0]["core-metadata"] == {"sha256": metadata.sha256} and "dist-info-metadata" not in files[0]
    assert files[0]["requires-python"] == ">=3.9,<4" and "core-metadata" not in files[1]


@pytest.mark.parametrize("created, published, expected", [
    ("2026-01-02T03:04:05Z", None, "2026-01-02T03:04:05Z"),
    ("2026-01-02T03:04:05+02:00", None, "2026-01-02T01:04:05Z"),
    ("2026-01-02T03:04:05.123Z", None, "2026-01-02T03:04:05Z"),
    # a file attached to a draft, published a month later: installable from the publication
    ("2026-01-02T03:04:05Z", "2026-02-03T00:00:00Z", "2026-02-03T00:00:00Z"),
    ("2026-01-02T03:04:05Z", "2026-02-03T02:00:00+02:00", "2026-02-03T00:00:00Z"),
    # a file added to a release after it was published: its own time
    ("2026-03-01T00:00:00Z", "2026-02-03T00:00:00Z", "2026-03-01T00:00:00Z"),
])
def test_installable_time(created, published, expected):
    assert pypihub.installable_time(created, published) == expected


# -- GitHub's answers --


@pytest.mark.parametrize("status, headers, expected, retry", [
    (401, {}, pypihub.Unauthorized, None),
    (403, {"retry-after": "30"}, pypihub.TooManyRequests, "30"),
    (403, {"x-ratelimit-remaining": "0", "x-ratelimit-reset": "1060"}, pypihub.TooManyRequests, "60"),
    (429, {}, pypihub.TooManyRequests, "60"),
    (403, {}, pypihub.Forbidden, None),
    (500, {}, pypihub.Unavailable, None),
    (502, {}, pypihub.Unavailable, None),
    (503, {}, pypihub.Unavailable, None),
    (504, {}, pypihub.GatewayTimeout, None),
    (404, {}, pypihub.BadGateway, None),
])
def test_http_failure(status, headers, expected, retry):
    error = pypihub.http_failure(status, headers, now=1000.0)
    assert type(error) is expected
    assert dict(error.headers).get("Retry-After") == retry


@pytest.mark.parametrize("answer, headers, expected", [
    ({"data": {"repository": None}, "errors": [{"type": "NOT_FOUND", "path": ["repository"]}]}, {}, {"repository": None}),
    ({"data": {"c0": None, "c1": {"name": "x"}}, "errors": [{"type": "NOT_FOUND", "path": ["c0"]}]}, {}, {"c0": None, "c1": {"name": "x"}}),
    ({"data": {"node": {"id": "x"}}}, {}, {"node": {"id": "x"}}),
    ({"errors": [{"type": "RATE_LIMITED", "message": "API rate limit exceeded"}]}, {"x-ratelimit-reset": "1100"}, pypihub.TooManyRequests),
    ({"data": None, "errors": [{"type": "NOT_FOUND"}]}, {}, pypihub.NotFound),
    ({"data": None, "errors": [{"type": "FORBIDDEN"}]}, {}, pypihub.Forbidden),
    # A schema without a field (an older GitHub Enterprise Server): GHES 3.10's shape (facebook/sapling#906),
    # and very old GHES's, without extensions (GitHawkApp/GitHawk#1124)
    ({"errors": [{"path": ["fragment AssetFields", "digest"], "extensions": {"code": "undefinedField",
      "typeName": "ReleaseAsset", "fieldName": "digest"}, "message": "Field 'digest' doesn't exist on type 'ReleaseAsset'"}]},
     {}, pypihub.SchemaLacks),
    ({"errors": [{"message": "Field 'x' doesn't exist on type 'Query'"}]}, {}, pypihub.SchemaLacks),
    ({"errors": [{"message": "Field 'x' doesn't exist on type 'Query'"}, {"message": "Something else"}]}, {},
     pypihub.BadGateway),
    # Data with errors: a partial answer (changelog 2025-09-01, GraphQL resource limits), never taken as whole
    ({"data": {"a": 1}, "errors": [{"type": "INTERNAL"}]}, {}, pypihub.PartialAnswer),
    ({"data": {"c0": None}, "errors": [{"type": "RESOURCE_LIMITS_EXCEEDED", "path": ["c0"],
      "message": "Resource limits for this query exceeded."}]}, {}, pypihub.PartialAnswer),
    ({"data": None, "errors": [{"type": "INTERNAL"}]}, {}, pypihub.BadGateway),
    ({"data": None, "errors": [{"type": ["x"]}, {"type": {}}]}, {}, pypihub.BadGateway),  # no type a set takes
    ([1, 2], {}, pypihub.BadGateway),
    ({"data": "nonsense"}, {}, pypihub.BadGateway),
])
def test_graphql_data(answer, headers, expected):
    if isinstance(expected, type):
        with pytest.raises(pypihub.PyPIHubError) as caught:
            pypihub.graphql_data(answer, headers, now=1000.0)
        assert type(caught.value) is expected
    else:
        assert pypihub.graphql_data(answer, headers, now=1000.0) == expected


def test_project_assets_filters_sorts_and_deduplicates():
    node = lambda i, name: {"id": f"RA_{i}", "name": name, "size": 1, "createdAt": "2026-01-01T00:00:00Z", "url": "u"}  # noqa: E731
    nodes = [node(1, "demo-1.10-py3-none-any.whl"), node(2, "demo-1.9.tar.gz"), node(3, "checksums.txt"),
             node(4, "other-1.0-py3-none-any.whl"), node(5, "demo-1.10-py3-none-any.whl"), node(6, "Demo-1.9.zip")]
    found = pypihub.project_assets("demo", nodes)
    assert [(a.id, a.filename) for a in found] == [("RA_6", "Demo-1.9.zip"), ("RA_2", "demo-1.9.tar.gz"),
                                                   ("RA_1", "demo-1.10-py3-none-any.whl")]


@pytest.mark.parametrize("url, expected", [
    ("https://objects.githubusercontent.com/x?X-Amz-Date=20250101T000000Z&X-Amz-Expires=300&X-Amz-Signature=s",
     datetime.datetime(2025, 1, 1, 0, 5, tzinfo=datetime.timezone.utc).timestamp()),
    ("https://release-assets.githubusercontent.com/x?sp=r&se=2025-06-25T12:34:56Z&sig=abc",
     datetime.datetime(2025, 6, 25, 12, 34, 56, tzinfo=datetime.timezone.utc).timestamp()),
    ("https://cdn.example/x?Expires=1700000000&Signature=s", 1700000000.0),
    ("https://github.com/o/r/releases/download/v1/f.whl", None),
    ("https://x/?X-Amz-Date=garbage&X-Amz-Expires=300", None),
    ("https://x/?se=not-a-date", None),
])
def test_signed_url_expiry(url, expected):
    assert pypihub.signed_url_expiry(url) == expected


@pytest.mark.parametrize("url, safe", [
    ("https://objects.githubusercontent.com/a/b?X-Amz-Date=1&sig=x%20y", True),
    ("http://127.0.0.1:9/download/x", True),
    ("https://x/\r\nSet-Cookie: a=b", False), ("https://x/a b", False), ("javascript:alert(1)", False),
    ("https://x/\u00e9", False), ("", False),
])
def test_is_safe_url(url, safe):
    assert pypihub.is_safe_url(url) is safe


@pytest.mark.parametrize("graphql_url, expected", [
    ("https://api.github.com/graphql", "https://api.github.com"),
    ("https://ghe.example.com/api/graphql", "https://ghe.example.com/api/v3"),
    ("http://127.0.0.1:8000/graphql", "http://127.0.0.1:8000"),
])
def test_rest_base(graphql_url, expected):
    assert pypihub.rest_base(graphql_url) == expected


@pytest.mark.parametrize("value, expected", [
    ("sha256:" + "a" * 64, "a" * 64), (None, None), ("sha256:XYZ", None), ("md5:" + "a" * 32, None),
    ("sha256:" + "A" * 64, None), (42, None),
])
def test_parse_digest(value, expected):
    assert pypihub.parse_digest(value) == expected


@pytest.mark.parametrize("link, expected", [
    ('<https://api.github.com/x?page=2>; rel="next", <https://api.github.com/x?page=5>; rel="last"', True),
    ('<https://api.github.com/x?page=1>; rel="prev", <https://api.github.com/x?page=1>; rel="first"', False),
    ("", False),
])
def test_has_next_page(link, expected):
    assert pypihub.has_next_page(link) is expected


def jwt_with_exp(exp: int) -> str:
    """A JWT as GitHub puts on release-assets URLs (research: header.payload.signature, HS256)."""
    part = lambda data: base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()  # noqa: E731
    return f"{part({'alg': 'HS256', 'typ': 'JWT'})}.{part({'aud': 'release-assets.githubusercontent.com', 'exp': exp})}.c2ln"


EPOCH_2025_06_25 = datetime.datetime(2025, 6, 25, 12, 34, 56, tzinfo=datetime.timezone.utc).timestamp()


@pytest.mark.parametrize("url, expected", [
    # The jwt's exp comes before se: the earliest wins (research: 5 of 8 observed URLs).
    (f"https://release-assets.githubusercontent.com/x?se=2025-06-25T12%3A34%3A56Z&ske=2025-06-25T13%3A00%3A00Z"
     f"&sig=s&jwt={jwt_with_exp(int(EPOCH_2025_06_25) - 1500)}", EPOCH_2025_06_25 - 1500),
    (f"https://release-assets.githubusercontent.com/x?se=2025-06-25T12%3A34%3A56Z&sig=s"
     f"&jwt={jwt_with_exp(int(EPOCH_2025_06_25) + 600)}", EPOCH_2025_06_25),  # ... and se when it is earlier
    ("https://release-assets.githubusercontent.com/x?se=2025-06-25T12%3A34%3A56Z&ske=2025-06-25T12%3A00%3A00Z&sig=s",
     EPOCH_2025_06_25 - 2096),
    ("https://x/?se=2025-06-25T12%3A34%3A56Z&jwt=not.a-jwt.x&sig=s", EPOCH_2025_06_25),  # a broken jwt is ignored
])
def test_signed_url_expiry_takes_the_earliest(url, expected):
    assert pypihub.signed_url_expiry(url) == expected


@pytest.mark.parametrize("url, signed", [
    ("https://objects.githubusercontent.com/x?X-Amz-Date=20250101T000000Z&X-Amz-Expires=300&X-Amz-Signature=s", True),
    ("https://release-assets.githubusercontent.com/x?sp=r&se=2025-06-25T12%3A34%3A56Z&sig=abc", True),
    ("https://release-assets.githubusercontent.com/x?jwt=a.b.c", True),
    ("https://github.com/o/r/releases/download/v1/f.whl", False),  # the browser URL: 404 without a session
    ("https://x/?se=2025-06-25T12%3A34%3A56Z", False),
])
def test_is_signed_url(url, signed):
    assert pypihub.is_signed_url(url) is signed


def test_link_expiry_assumes_300_s_when_a_signed_url_names_none():
    assert pypihub.link_expiry("https://cdn.example/x?Signature=s", 1000.0) == 1300.0
    assert pypihub.link_expiry("https://x/?X-Amz-Date=20250101T000000Z&X-Amz-Expires=60&X-Amz-Signature=s", 0) == \
        datetime.datetime(2025, 1, 1, 0, 1, tzinfo=datetime.timezone.utc).timestamp()


SECONDARY = json.dumps({"message": "You have exceeded a secondary rate limit. Please wait a few minutes before you "
                                   "try again.", "documentation_url": "https://docs.github.com/rest"}).encode()
ABUSE = b'{"message": "You have triggered an abuse detection mechanism. Please wait a few minutes."}'
SSO_URL = "https://github.com/orgs/octorg/sso?authorization_request=A5Ab"


@pytest.mark.parametrize("status, headers, payload, expected, retry", [
    (403, {}, SECONDARY, pypihub.TooManyRequests, "60"),  # no retry-after: "wait at least one minute"
    (429, {"retry-after": "30"}, SECONDARY, pypihub.TooManyRequests, "30"),
    (403, {"x-ratelimit-remaining": "12", "x-ratelimit-reset": "4000"}, SECONDARY, pypihub.TooManyRequests, "60"),
    (403, {}, ABUSE, pypihub.TooManyRequests, "60"),
    (403, {"x-ratelimit-remaining": "12", "x-ratelimit-reset": "4000"}, b"{}", pypihub.Forbidden, None),
    (403, {"x-github-sso": f"required; url={SSO_URL}"}, b'{"message": "Resource protected by organization SAML'
                                                          b' enforcement."}', pypihub.Forbidden, None),
])
def test_http_failure_knows_secondary_limits_and_sso(status, headers, payload, expected, retry):
    error = pypihub.http_failure(status, headers, 1000.0, payload)
    assert type(error) is expected
    assert dict(error.headers).get("Retry-After") == retry
    assert ("x-github-sso" in headers) == (SSO_URL in error.message)


@pytest.mark.parametrize("answer, headers, retry", [
    # GitHub's docs: a secondary limit on GraphQL may answer 200 with only an error message.
    ({"errors": [{"message": "You have exceeded a secondary rate limit. Please wait a few minutes."}]},
     {"x-ratelimit-remaining": "4000", "x-ratelimit-reset": "2800"}, "60"),
    # The primary limit's error type is undocumented: both spellings are seen (githubkit#271).
    ({"errors": [{"type": "RATE_LIMIT", "code": "graphql_rate_limit", "message": "API rate limit already exceeded"}]},
     {"x-ratelimit-remaining": "3", "x-ratelimit-reset": "1100"}, "100"),
    ({"errors": [{"type": "RATE_LIMITED", "message": "API rate limit exceeded"}]}, {"x-ratelimit-reset": "1100"}, "100"),
])
def test_graphql_rate_limits(answer, headers, retry):
    with pytest.raises(pypihub.TooManyRequests) as caught:
        pypihub.graphql_data(answer, headers, 1000.0)
    assert dict(caught.value.headers)["Retry-After"] == retry == str(caught.value.wait)


def test_graphql_sso_failure_names_where_to_authorize():
    answer = {"data": {"repository": None}, "errors": [{"type": "FORBIDDEN", "path": ["repository"],
                                                        "extensions": {"saml_failure": True}}]}
    with pytest.raises(pypihub.Forbidden) as caught:
        pypihub.graphql_data(answer, {"x-github-sso": f"required; url={SSO_URL}"}, 0.0)
    assert SSO_URL in caught.value.message


@pytest.mark.parametrize("header, url", [
    (f"required; url={SSO_URL}", SSO_URL),
    ("partial-results; organizations=21955855,20582480", None),
    ("required; url=javascript:alert(1)", None),
    ("required; url=https://x/\r\nSet-Cookie: a", None),
])
def test_sso_url(header, url):
    assert pypihub.sso_url({"x-github-sso": header}) == url


@pytest.mark.parametrize("payload, expected, words", [
    (b'{"message": "Validation Failed", "errors": [{"resource": "ReleaseAsset", "code": "already_exists", '
     b'"field": "name"}]}', pypihub.BadRequest, "File already exists"),
    (b'{"message": "Validation Failed", "errors": [{"resource": "Release", "code": "already_exists", '
     b'"field": "tag_name"}]}', pypihub.ReleaseExists, "tag"),
    (b'{"message": "Cannot upload assets to an immutable release.", "documentation_url": "https://docs.github.com/rest"}',
     pypihub.Conflict, "immutable release"),
    (b'{"message": "Validation Failed", "errors": [{"resource": "Release", "code": "custom", "field": "tag_name", '
     b'"message": "tag_name was used by an immutable release"}]}', pypihub.Conflict, "tag_name was used"),
    (b'{"message": "Validation Failed", "errors": [{"code": "invalid"}]}', pypihub.BadRequest, "Validation Failed"),
])
def test_write_failure_tells_422s_apart(payload, expected, words):
    error = pypihub.write_failure(422, {}, 0.0, payload)
    assert type(error) is expected and words in error.message


@pytest.mark.parametrize("status, headers, ranged, expected_status, expected_length, kept", [
    (206, [("Content-Range", "bytes 0-0/12345"), ("Content-Length", "1"), ("ETag", '"e"')], False, 200, 12345,
     [("ETag", '"e"')]),
    (206, [("Content-Range", "bytes 5-9/12345"), ("Content-Length", "5")], True, 206, 5,
     [("Content-Range", "bytes 5-9/12345"), ("Content-Length", "5")]),
    (200, [("Content-Length", "12345")], False, 200, 12345, [("Content-Length", "12345")]),  # Range ignored
])
def test_head_answer_from_a_one_byte_get(status, headers, ranged, expected_status, expected_length, kept):
    length = int(dict(headers)["Content-Length"])
    answer = pypihub.head_answer(pypihub.Answer(status, b"", headers, length=length), ranged)
    assert (answer.status, answer.length, answer.headers) == (expected_status, expected_length, kept)


def test_format_query_keeps_a_literal_plus():
    target = pypihub.parse_target("GET", "/simple/demo/?format=application/vnd.pypi.simple.v1+json")
    assert target.query["format"] == [pypihub.JSON_V1]


@pytest.mark.parametrize("title, notes, reason", [
    ("demo 1.0", "Fixes things.", None),
    ("[yanked] broken on Windows", "", "broken on Windows"),
    ("[YANKED]", None, ""),
    ("[Yanked] - data loss", "", "data loss"),
    ("demo 1.0", "Fixes things.\r\n\r\nYanked: corrupts caches\r\n", "corrupts caches"),
    ("demo 1.0", "notes\n  yanked:\n", ""),  # a line of its own; the reason may be empty
    ("demo 1.0", "Not yanked: all fine in this line", None),
    ("yanked in the title, not first", "", None),
    ("[yanked] -O2 builds crash", "", "-O2 builds crash"),  # one separator goes, not the reason's own dash
    ("[yanked] \"><script>x</script>&", "", '"><script>x</script>&'),  # kept as written; escaped when shown
    ("[yanked] " + "r" * 900, "", "r" * pypihub.MAX_YANK_REASON),
    ("demo 1.1", "How to yank:\n```\nYanked: <reason>\n```\n", None),  # an example in a code block
])
def test_yank_reason(title, notes, reason):
    assert pypihub.yank_reason(title, notes) == reason


def test_a_hostile_yank_reason_is_escaped_in_html():
    asset = pypihub.Asset("RA_h", "demo-1.0.tar.gz", "1.0", 5, "2026-01-01T00:00:00Z", "https://x",
                          yanked='"><script>x</script>&')
    text = pypihub.render_project_html(listing_of(asset), {}).decode()
    assert "<script>" not in text and parse_links(text)[0][2]["data-yanked"] == '"><script>x</script>&'


@pytest.mark.parametrize("asset, same", [
    ({"name": "demo-1.0.tar.gz", "digest": "sha256:" + "ab" * 32}, True),
    ({"name": "demo-1.0.tar.gz", "digest": None}, False),  # uploaded before GitHub computed digests
    ({"name": "demo-1.0.tar.gz", "digest": "sha256:" + "AB" * 32}, False),
    ({"name": "demo-1.0.tar.gz", "digest": "sha256:" + "ab" * 32, "state": "starter"}, False),
    ({"name": "Demo-1.0.tar.gz", "digest": "sha256:" + "ab" * 32}, False),
    ({"name": "demo-1.0.tar.gz", "digest": 12}, False),
])
def test_holds_file_only_for_the_very_same_bytes(asset, same):
    upload = pypihub.Upload({}, "demo-1.0.tar.gz", None, 5, "ab" * 32)
    assert pypihub.holds_file({"assets": [asset]}, upload) is same


@pytest.mark.parametrize("assets, refused, cleared", [
    ([], None, []),
    ([{"id": 1, "name": "demo-1.0.tar.gz", "state": "uploaded"}], pypihub.BadRequest, []),
    ([{"id": 1, "name": "demo-1.0.tar.gz"}], pypihub.BadRequest, []),  # no state: a file, never deleted
    ([{"id": 1, "name": "demo-1.0.tar.gz", "state": "new"}], pypihub.BadRequest, []),  # a state not known: kept
    # what failed uploads leave: "an empty asset with a state of starter. It can be safely deleted."
    ([{"id": 1, "name": "demo-1.0.tar.gz", "state": "starter"}], None, [1]),
    ([{"id": 1, "name": "demo-1.0.tar.gz", "state": "open"}, {"id": 2, "name": "other.whl", "state": "starter"}],
     None, [1]),
    ([{"id": 1, "name": "demo-1.0.tar.gz", "state": "starter"}, {"id": 2, "name": "demo-1.0.tar.gz", "state": "uploaded"}],
     pypihub.BadRequest, [1]),
])
def test_an_upload_clears_only_leftovers_of_its_name(assets, refused, cleared):
    release = {"assets": assets, "tag_name": "v1.0", "draft": False}
    assert [a["id"] for a in pypihub.leftovers(release, "demo-1.0.tar.gz")] == cleared
    if refused:
        with pytest.raises(refused):
            pypihub.check_release_accepts(release, "demo-1.0.tar.gz")
    else:
        pypihub.check_release_accepts(release, "demo-1.0.tar.gz")


@pytest.mark.parametrize("anchor, entry", [
    ('<a href="https://h/f/demo-1.0.tar.gz#sha256=' + "AB" * 32 + '">demo-1.0.tar.gz</a>',
     {"filename": "demo-1.0.tar.gz", "url": "https://h/f/demo-1.0.tar.gz", "hashes": {"sha256": "ab" * 32}}),
    ('<a href="../../f/demo-1.0-py3-none-any.whl" data-requires-python="&gt;=3.8" data-yanked="broken &amp; bad"'
     ' data-core-metadata="sha256=' + "cd" * 32 + '" data-dist-info-metadata="true">demo-1.0-py3-none-any.whl</a>',
     {"filename": "demo-1.0-py3-none-any.whl", "url": "../../f/demo-1.0-py3-none-any.whl", "hashes": {},
      "requires-python": ">=3.8", "yanked": "broken & bad", "core-metadata": {"sha256": "cd" * 32}}),
    ('<a href="/f/demo-2.0.zip" data-yanked data-dist-info-metadata="true"> demo-2.0.zip </a>',
     {"filename": "demo-2.0.zip", "url": "/f/demo-2.0.zip", "hashes": {}, "yanked": True, "core-metadata": True}),
    ('<a href="/f/demo-3.0.tar.gz#md5=0123">\n</a>',  # no text: the filename is the URL's last segment
     {"filename": "demo-3.0.tar.gz", "url": "/f/demo-3.0.tar.gz", "hashes": {"md5": "0123"}}),
    ('<a name="top">no href</a>', None),
])
def test_a_pep_503_anchor_reads_as_a_pep_691_file(anchor, entry):
    page = pypihub.parse_upstream_page(f"<html><body>{anchor}<br/></body></html>".encode(), "text/html")
    assert page == {"files": [entry] if entry else []}


@pytest.mark.parametrize("data, media, message", [
    (b"{nope", pypihub.JSON_V1, "fallback index's answer was not JSON"),
    (b"\x00\x01", "application/octet-stream", "fallback index answered application/octet-stream"),
])
def test_an_upstream_page_that_is_none_names_the_fallback_index(data, media, message):
    with pytest.raises(pypihub.BadGateway) as caught:
        pypihub.parse_upstream_page(data, media)
    assert message in caught.value.message and "GitHub" not in caught.value.message


@pytest.mark.parametrize("url, status, location, api", [
    ("https://api.github.com/repos/o/r/releases", 301, "https://api.github.com/repositories/1/releases", True),
    ("https://api.github.com/repos/o/r/releases", 307, "/repositories/1/releases", True),  # relative
    ("https://uploads.github.com/repos/o/r/releases/1/assets?name=x", 307,
     "https://uploads.github.com/repositories/1/releases/1/assets?name=x", True),
    ("https://api.github.com/repos/o/r/releases/assets/1", 302, "https://release-assets.githubusercontent.com/x?sig=1",
     False),  # the asset route's signed URL: another host
    ("https://api.github.com/repos/o/r", 301, "http://api.github.com/repositories/1", False),  # never https -> http
    ("https://api.github.com/repos/o/r", 200, "https://api.github.com/repositories/1", False),
])
def test_a_redirect_is_githubs_own_only_on_its_own_origin(url, status, location, api):
    request = urllib.request.Request(url)
    assert pypihub.is_api_redirect(request, status, {"location": location}) is api


def test_yanked_files_render_as_pep_592():
    yanked = pypihub.Asset("RA_y", "demo-1.0-py3-none-any.whl", "1.0", 5, "2026-01-01T00:00:00Z", "https://x",
                           yanked="broken")
    silent = dataclasses.replace(yanked, id="RA_s", filename="demo-1.0.tar.gz", yanked="")
    fine = dataclasses.replace(yanked, id="RA_f", filename="demo-2.0.tar.gz", version="2.0", yanked=None)
    listing = listing_of(yanked, silent, fine)
    attrs = {text: a for _, text, a in parse_links(pypihub.render_project_html(listing, {}).decode())}
    assert attrs["demo-1.0-py3-none-any.whl"]["data-yanked"] == "broken" and attrs["demo-1.0.tar.gz"]["data-yanked"] == ""
    assert "data-yanked" not in attrs["demo-2.0.tar.gz"]
    files = {f["filename"]: f for f in json.loads(pypihub.render_project_json(listing, {}))["files"]}
    assert files["demo-1.0-py3-none-any.whl"]["yanked"] == "broken" and files["demo-1.0.tar.gz"]["yanked"] is True
    assert "yanked" not in files["demo-2.0.tar.gz"]


# -- uploads --


@pytest.mark.parametrize("version, expected", [
    ("1.0", False), ("1.0rc1", True), ("2.0a3", True), ("2.0b1", True), ("1.0.dev4", True), ("1.0.post1", False),
    ("3.0.0-beta.2", True), ("1!2.0", False), ("1.0+local.3", False),
])
def test_is_prerelease(version, expected):
    assert pypihub.is_prerelease(version) is expected


@pytest.mark.parametrize("overrides, filename, message", [
    ({":action": "submit"}, "demo_pkg-7.0-py3-none-any.whl", ":action=file_upload"),
    ({"name": "other"}, "demo_pkg-7.0-py3-none-any.whl", "not of the project"),
    ({"version": "7.1"}, "demo_pkg-7.0-py3-none-any.whl", "not of version"),
    ({"sha256_digest": "0" * 64}, "demo_pkg-7.0-py3-none-any.whl", "sha256_digest does not match"),
    ({}, "demo_pkg-7.0.exe", "not a wheel or sdist"),
    ({}, "../demo_pkg-7.0.tar.gz", "not a wheel or sdist"),
])
def test_check_upload_refuses(overrides, filename, message):
    fields = {**upload_fields("demo-pkg", "7.0", b"x"), **overrides}
    upload = pypihub.Upload(fields, filename, None, 1, hashlib.sha256(b"x").hexdigest())
    with pytest.raises(pypihub.BadRequest, match=message):
        pypihub.check_upload(upload)


def test_multipart_reader_streams_big_files_with_boundary_like_bytes():
    content = (b"\r\n--b0undar" + os.urandom(1000)) * 700  # 700 kB, almost-boundaries everywhere
    body, content_type = multipart(upload_fields("demo-pkg", "7.0", content), "demo_pkg-7.0.tar.gz", content)
    reader = pypihub.MultipartReader(io.BytesIO(body), len(body), pypihub.multipart_boundary(content_type), 10 ** 7)
    upload = reader.read()
    assert reader.finish() and upload.filename == "demo_pkg-7.0.tar.gz" and upload.size == len(content)
    assert upload.file.read() == content and upload.sha256 == hashlib.sha256(content).hexdigest()
    assert upload.fields["name"] == "demo-pkg" and upload.fields[":action"] == "file_upload"


@pytest.mark.parametrize("body, error", [
    (b"--b0undary\r\nContent-Disposition: form-data; name=\"x\"\r\n\r\n1\r\n--b0undary--\r\n", "no content file"),
    (b"--b0undary\r\nContent-Disposition: form-data; name=\"content\"; filename=\"f.whl\"\r\n\r\nabc", "ends early"),
    (b"--b0undary\r\nContent-Disposition: form-data\r\n\r\n1\r\n--b0undary--\r\n", "no field name"),
    (b"", "ends early"),
])
def test_multipart_reader_refuses(body, error):
    reader = pypihub.MultipartReader(io.BytesIO(body), len(body), b"b0undary", 10 ** 6)
    with pytest.raises(pypihub.BadRequest, match=error):
        reader.read()


@pytest.mark.parametrize("content_type", [None, "application/json", "multipart/form-data", "multipart/mixed; boundary=x"])
def test_multipart_boundary_refuses(content_type):
    with pytest.raises(pypihub.BadRequest):
        pypihub.multipart_boundary(content_type)


# -- cache and metrics --


def test_cache_ttl_lru_and_isolated_keys():
    clock = Clock()
    cache = pypihub.Cache(ttl=60, stale_ttl=0, size=2, clock=clock, gate=pypihub.Gate())
    cache.put(("a", 1), "A")
    cache.put(("b", 1), "B")
    assert cache.get(("a", 1)) == "A"  # now "b" is least recently used
    cache.put(("c", 1), "C")
    assert cache.get(("b", 1)) is None and cache.get(("a", 1)) == "A"
    clock.advance(61)
    assert cache.get(("a", 1)) is None
    cache.put(("d", 1), "D", lifetime=5)
    clock.advance(6)
    assert cache.get(("d", 1)) is None


def test_cache_off_with_zero_ttl():
    cache = pypihub.Cache(ttl=0, stale_ttl=0, size=10, gate=pypihub.Gate())
    calls = []
    for _ in range(3):
        cache.get_or_load("k", lambda: calls.append(1) or "v", print)
    assert len(calls) == 3


def test_metrics_histogram_is_cumulative():
    metrics = pypihub.Metrics()
    for seconds in (0.001, 0.02, 0.02, 3.0, 99.0):
        metrics.observe_request("project", 200, seconds)
    samples = parse_metrics("\n".join(metrics.metric_lines()))
    bucket = lambda le: samples[f'pypihub_request_duration_seconds_bucket{{endpoint="project",le="{le}"}}']  # noqa: E731
    assert (bucket(0.005), bucket(0.025), bucket(2.5), bucket(5.0), bucket(10.0), bucket("+Inf")) == (1, 3, 3, 4, 4, 5)
    assert samples['pypihub_request_duration_seconds_count{endpoint="project"}'] == 5


# -- pages for people (pure) --

NOTES_BASE = "https://github.com/o/r/releases/tag/v1"


@pytest.mark.parametrize("notes, expected", [
    ("<p>plain <b>bold</b></p>", "<p>plain <b>bold</b></p>"),
    ("<script>alert(1)</script><p>after</p>", "<p>after</p>"),
    ("<style>body{}</style><svg><svg></svg><a href='x'>in svg</a></svg>ok", "ok"),
    ('<p onclick="x()" class="c" id="i" style="color:red">p</p>', "<p>p</p>"),
    ('<a href="javascript:alert(1)">j</a>', "<a>j</a>"),
    ('<a href="  JaVaScRiPt:alert(1)">j</a>', "<a>j</a>"),
    ('<a href="data:text/html,x">d</a>', "<a>d</a>"),
    ('<a href="/o/r/pull/1">#1</a>', '<a href="https://github.com/o/r/pull/1" rel="nofollow noopener noreferrer">#1</a>'),
    ('<img src="https://camo.githubusercontent.com/a" data-canonical-src="https://e.example/i.png" alt="A&quot;">',
     '<a href="https://e.example/i.png" rel="nofollow noopener noreferrer">[image: A&quot;]</a>'),  # never loaded
    ('<img src="javascript:x" onerror="y">', "[image: image]"),
    ("<h1>a</h1><h2>b</h2><h6>c</h6>", "<h4>a</h4><h5>b</h5><h6>c</h6>"),  # below the page's own headings
    ("<p>open <em>never closed", "<p>open <em>never closed</em></p>"),
    ("<b><i>x</b></i>", "<b><i>x</i></b>"),
    ("</div></details></article></main><p>x</p>", "<p>x</p>"),  # nothing outside the notes can be closed
    ("&lt;script&gt; &amp; &#60;b&#62;", "&lt;script&gt; &amp; &lt;b&gt;"),
    ('<ol start="3" onload="x"><li>c</li></ol>', '<ol start="3"><li>c</li></ol>'),
    ("<iframe src='https://e.example'></iframe><object>o</object><form><button>b</button></form>", "b"),
    ("", ""),
    (None, ""),
])
def test_release_notes_are_sanitized_again(notes, expected):
    # GitHub sanitizes descriptionHTML already; this allowlist is defence in depth under the CSP.
    assert pypihub.sanitize_notes(notes, NOTES_BASE) == expected


def test_long_release_notes_are_cut_with_their_elements_closed():
    clean = pypihub.sanitize_notes("<ul>" + "<li><b>item</b> text</li>" * 10_000, NOTES_BASE, budget=1000)
    assert len(clean) < 2000 and clean.count("<li>") == clean.count("</li>") and clean.endswith("</p>")
    assert f'<a href="{NOTES_BASE}"' in clean and "the rest on GitHub" in clean


@pytest.mark.parametrize("versions, newest_first", [
    (["1.0", "1.10", "1.9"], ["1.10", "1.9", "1.0"]),
    (["2.0", "2.0rc1", "2.0.dev1", "2.0a1", "2.0.post1"], ["2.0.post1", "2.0", "2.0rc1", "2.0a1", "2.0.dev1"]),
    (["1!0.1", "9.0"], ["1!0.1", "9.0"]),
    (["1.0.0", "1.0.1", "1.0+local"], ["1.0.1", "1.0+local", "1.0.0"]),
])
def test_versions_sort_as_pep_440_orders_them(versions, newest_first):
    assert sorted(versions, key=pypihub.pep440_key, reverse=True) == newest_first


@pytest.mark.parametrize("host, scheme, expected", [
    ("localhost:8080", "http", "http://localhost:8080/simple/"),
    ("PyPI.Example.COM", "https", "https://pypi.example.com/simple/"),
    ("[::1]:3141", "http", "http://[::1]:3141/simple/"),
    ("octorg:ghp_x@evil.example", "https", "https://PYPIHUB-HOST/simple/"),  # userinfo: never shown
    ('x"><script>alert(1)</script>', "https", "https://PYPIHUB-HOST/simple/"),
    ("evil.example/path?", "https", "https://PYPIHUB-HOST/simple/"),
    (None, "https", "https://PYPIHUB-HOST/simple/"),
    ("a.example", "javascript", "https://PYPIHUB-HOST/simple/"),
])
def test_the_index_url_in_install_lines(host, scheme, expected):
    assert pypihub.index_url(host, scheme) == expected


def test_the_stylesheet_is_allowed_by_its_hash_and_nothing_else_is():
    body = pypihub.render_home("https://x.example/simple/").decode()
    style = re.search(r"<style>(.*?)</style>", body, re.S).group(1)
    digest = base64.b64encode(hashlib.sha256(style.encode()).digest()).decode()
    assert f"style-src 'sha256-{digest}'" in pypihub.PAGE_CSP
    assert "unsafe" not in pypihub.PAGE_CSP and pypihub.PAGE_CSP.startswith("default-src 'none';")


@pytest.mark.parametrize("query, shown", [
    ("", ["acme-cli", "acme-lib", "demo"]), ("acme", ["acme-cli", "acme-lib"]),
    ("ACME command", ["acme-cli"]), ("nothing-like-it", []),  # every word, in name or description, any case
])
def test_the_projects_page_filters_without_javascript(query, shown):
    rows = [pypihub.ProjectRow("acme-cli", "o", "acme-cli", "1.0", description="The command line"),
            pypihub.ProjectRow("acme-lib", "o", "acme-lib", "2.0"), pypihub.ProjectRow("demo", "o", "demo")]
    body = pypihub.render_projects_page(rows, query, "o").decode()
    assert re.findall(r'href="project/([^/]+)/"', body) == shown


def test_project_rows_from_the_owner_query():
    def release(version: str, draft: bool = False, pre: bool = False, when: str = "2026-01-01T00:00:00Z") -> dict:
        assets = {"nodes": [{"name": f"acme-{version}-py3-none-any.whl"}]}
        return {"isDraft": draft, "isPrerelease": pre, "publishedAt": when, "releaseAssets": assets}
    repos = [{"name": "acme", "description": "<b>tools</b>", "url": "https://github.com/o/acme",
              "releases": {"nodes": [release("3.0", draft=True), release("2.1rc1", pre=True),
                                     release("2.0", when="2026-02-02T00:00:00Z"), release("1.0")]}}]
    assert pypihub.project_rows(repos, "o") == {"acme": pypihub.ProjectRow(
        "acme", "o", "acme", "2.0", "2026-02-02T00:00:00Z", "<b>tools</b>", "https://github.com/o/acme")}


# -- the log writer --


def test_the_log_writer_writes_every_line_in_order_by_close():
    written: list[str] = []
    writer = pypihub.LogWriter(written.extend, interval=3600)  # never on its own: only close() writes
    for n in range(1000):
        writer.put(f"line {n}")
    assert written == []
    writer.close()
    assert written == [f"line {n}" for n in range(1000)]
    writer.put("after close")  # written at once: nothing is lost at shutdown
    assert written[-1] == "after close"


def test_the_log_writer_drops_and_counts_rather_than_wait_for_a_stalled_log():
    stalled, written = threading.Event(), []
    writer = pypihub.LogWriter(lambda lines: (stalled.wait(10), written.extend(lines)), limit=100, interval=0.001)
    writer.put("first")
    wait_until(lambda: writer.waiting == 0)  # the writer took it, and is stuck writing it
    for n in range(50):
        writer.put(f"line {n:02d}")  # each returns at once
    assert writer.dropped == 50 - 100 // len("line 00")
    stalled.set()
    assert writer.flush()
    writer.close()
    assert written[0] == "first" and written[1:-1] == [f"line {n:02d}" for n in range(100 // len("line 00"))]
    assert written[-1] == f"{writer.dropped} log line(s) dropped: the log could not keep up"


# -- hostile heads and bodies (pure) --


def head(raw: bytes) -> email.message.Message:
    return http.client.parse_headers(io.BytesIO(raw))


@pytest.mark.parametrize("raw, problem", [
    (b"Host: x\r\nContent-Length: 5\r\n\r\n", None),
    (b"Host: x\r\nContent-Type: multipart/form-data; boundary=b\r\nContent-Length: 5\r\n\r\n", None),
    (b"Host: x\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n", "More than one Content-Length"),
    (b"Host: x\r\nContent-Length : 5\r\n\r\n", "malformed"),  # RFC 9112 5.1: no space before the colon
    (b"Host: x\r\nTransfer-Encoding : chunked\r\n\r\n", "malformed"),
    (b"Host: x\r\nContent-Length: \xc2\xb2\r\n\r\n", "not a number"),  # "\xb2": isdigit() is true, int() fails
    (b"Host: x\r\nContent-Length: -1\r\n\r\n", "not a number"),
    (b"Host: x\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n", "together"),
    (b"Host: x\r\nX-A: 1\r\n folded\r\n\r\n", "Folded"),
])
def test_head_problem(raw, problem):
    found = pypihub.head_problem(head(raw))
    assert (found is None) if problem is None else (problem in found)


FAST_LINE = b"GET /simple/demo-pkg/ HTTP/1.1\r\n"


@pytest.mark.parametrize("line, rest", [
    (FAST_LINE, b"Host: x\r\nAuthorization: Basic b2N0b3JnOmdocF94\r\nAccept: */*\r\n\r\n"),
    (FAST_LINE, b"\r\n"),  # no header at all
    (FAST_LINE, b"Host: x\r\n\r\nGET /next HTTP/1.1\r\n\r\n"),  # the next request stays unread
    (FAST_LINE, b"X-A: 1\r\nx-a: 2\r\nX-Empty:\r\nX-Pad:   padded  \r\n\r\n"),  # repeats, blanks kept after
    (b"HEAD /simple/ HTTP/1.0\r\n", b"Connection: keep-alive\r\n\r\n"),
    (b"POST /legacy/ HTTP/1.1\r\n", b"Content-Length: 5\r\nContent-Length: 6\r\n\r\nhello"),  # head_problem's
])
def test_parse_head_reads_what_the_email_parser_reads(line, rest):
    head = pypihub.parse_head(line, rest)
    stream = io.BytesIO(rest)
    expected = http.client.parse_headers(stream)
    assert head is not None and head.headers.items() == expected.items() and head.size == stream.tell()
    assert line.split() == [head.command.encode(), head.path.encode(), head.version.encode()]
    for name in {name.lower() for name, _ in expected.items()} | {"missing"}:
        assert head.headers.get(name) == expected.get(name) and head.headers.get_all(name) == expected.get_all(name)
        assert (name in head.headers) == (name in expected)


@pytest.mark.parametrize("line, rest", [
    (FAST_LINE, b"Host: x\r\n"),  # the head has not all arrived
    (FAST_LINE, b"Host: x\r\nX-A: 1\r\n folded\r\n\r\n"),  # obs-fold
    (FAST_LINE, b"Host: x\nX-A: 1\n\n"),  # bare LF
    (FAST_LINE, b"Content-Length : 5\r\n\r\n"),  # a space before the colon (smuggling)
    (FAST_LINE, b"Transfer-Encoding\t: chunked\r\n\r\n"),
    (FAST_LINE, b"X-A: caf\xe9\r\n\r\n"),  # Latin-1
    (FAST_LINE, b"X-A: a\tb\r\n\r\n"),  # a tab: legal, but for http.server's parser
    (FAST_LINE, b"X-A: a\x00b\r\n\r\n"),
    (FAST_LINE, b"NoColon\r\n\r\n"),
    (FAST_LINE, b"".join(b"X-%d: 1\r\n" % n for n in range(100)) + b"\r\n"),  # http.client's 100 lines, the end too
    (FAST_LINE, b"X-Big: " + b"a" * pypihub.MAX_FAST_HEAD + b"\r\n\r\n"),
    (b"GET //evil.example/ HTTP/1.1\r\n", b"\r\n"),  # http.server folds a leading //
    (b"GET http://x/ HTTP/1.1\r\n", b"\r\n"),  # absolute form
    (b"GET /simple/ HTTP/2.0\r\n", b"\r\n"),
    (b"GET /simple/\r\n", b""),  # HTTP/0.9
    (b"get /simple/ HTTP/1.1\r\n", b"\r\n"),
    (b"GET  /simple/ HTTP/1.1\r\n", b"\r\n"),
    (b"GET /simple/ HTTP/1.1\n", b"\r\n"),
])
def test_parse_head_leaves_every_other_shape_to_http_server(line, rest):
    assert pypihub.parse_head(line, rest) is None


@pytest.mark.parametrize("target, logged", [
    ("http://octorg:ghp_secret@host/simple/x/", "http://host/simple/x/"),
    ("https://u:p@ss@host:8080/", "https://host:8080/"),
    ("/octorg:ghp_secret@host/simple/", "/host/simple/"),  # what http.server makes of //octorg:ghp_secret@host/
    ("/simple/a@b/", "/simple/a@b/"),
    ("Request timed out: 'GET http://x:tok@h/ HTTP/1.1'", "Request timed out: 'GET http://h/ HTTP/1.1'"),
    ("octorg:ghp_secret@x/", "x/"),  # no leading slash
    ("'GET octorg:tok@x/ HTTP/1.1'", "'GET x/ HTTP/1.1'"),
    ("/?token=ghp_tokenAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", "/?token=[token]"),
    ("/simple/github_pat_11ABCDEFG0123456789_abcdefghijklmnop/", "/simple/[token]/"),
    # 2026's installation tokens whole, dots, "-" and "_" included, wherever they stand
    (f"/simple/x/?t={JOB_TOKEN}&y=1", "/simple/x/?t=[token]&y=1"), (f"/simple/{APP_TOKEN}/", "/simple/[token]/"),
    (f"http://octorg:{JOB_TOKEN}@host/simple/", "http://host/simple/"), (f"/simple/x{JOB_TOKEN}", "/simple/x[token]"),
    ("/simple/" + JOB_TOKEN.replace(".", "%2E").replace("_", "%5F") + "/", "/simple/[token]/"),  # percent-encoded
    ("/simple/%2567hp_tokenAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA/", "/simple/[token]/"),  # twice over
    # the Basic form (Base64 of owner:token), wherever it starts in a run of Base64 letters
    ("/" + base64.b64encode(f"{OWNER}:{TOKEN_A}".encode()).decode(), "[token]"),
    ("/simple/x" + base64.b64encode(f"{OWNER}:{TOKEN_A}".encode()).decode() + "/", "[token]/"),  # "/" is Base64
    ("/ab" + base64.urlsafe_b64encode(f"x:{JOB_TOKEN}".encode()).decode(), "[token]"),
    ("/s?x=a" + base64.b64encode(b"octorg:github_pat_11ABCDEFGHIJKLMNOPQRSTUV").decode(), "/s?x=[token]"),
    ("/simple/?next=" + base64.b64encode(f"{OWNER}: {TOKEN_A}".encode()).decode(), "/simple/?next=[token]"),
    ("/simple/?next=" + base64.b64encode(f"{OWNER}:\t{TOKEN_A}".encode()).decode(), "/simple/?next=[token]"),
    ("/asset/MDk6UmVsZWFzZVJBOT8%2B/acme_tools-1.2.0-py3-none-any.whl",  # no token: as it came
     "/asset/MDk6UmVsZWFzZVJBOT8%2B/acme_tools-1.2.0-py3-none-any.whl"),
])
def test_loggable_target_drops_userinfo(target, logged):
    assert pypihub.loggable_target(target) == logged


@pytest.mark.parametrize("path", ["/", "/simple", "/simple/", "/simple/demo-pkg/", "/simple/Demo.Pkg/",
                                  "/simple/demo-pkg", "/asset/RA_kwDO-x_1/demo_pkg-1.0-py3-none-any.whl",
                                  "/asset/x/demo_pkg-1.0-py3-none-any.whl.metadata", "/healthz", "/metrics",
                                  "/upstream/x/0123456789abcdef0123456789abcdef/x-1.0.tar.gz", "/a/b/c/d/"])
def test_a_plain_target_is_read_as_the_general_parser_reads_it(path):
    # A "?" sends the same path through urlsplit and percent-decoding: same segments, empty query.
    assert pypihub.parse_target("GET", path) == pypihub.parse_target("GET", path + "?")


PROXIES = pypihub.parse_networks(["10.0.0.0/8", "::1"])


@pytest.mark.parametrize("peer, forwarded, client", [
    ("10.0.0.5", "203.0.113.7", "203.0.113.7"),  # one trusted proxy
    ("10.0.0.5", "198.51.100.1, 203.0.113.7, 10.0.0.9", "203.0.113.7"),  # proxies chained: right-most untrusted
    ("10.0.0.5", "evil, 203.0.113.7", "203.0.113.7"),  # what the client wrote itself is left of it
    ("10.0.0.5", "203.0.113.7, garbage", "10.0.0.5"),  # a trusted proxy's entry is garbage: the peer
    ("10.0.0.5", "10.0.0.6, 10.0.0.7", "10.0.0.6"),  # all trusted: the left-most
    ("10.0.0.5", None, "10.0.0.5"),
    ("192.0.2.1", "203.0.113.7", "192.0.2.1"),  # not a trusted proxy: its header means nothing
    ("::1", "2001:db8::1", "2001:db8::1"),
])
def test_forwarded_client(peer, forwarded, client):
    assert pypihub.forwarded_client(peer, forwarded, PROXIES) == client


def test_non_ascii_credentials_are_401():
    with pytest.raises(pypihub.Unauthorized):
        pypihub.parse_credentials("Basic \xe9\xe9\xe9")


def tiny_fields(count: int, boundary: bytes = b"x") -> bytes:
    return b"".join(b'--%s\r\nContent-Disposition: form-data; name="f%d"\r\n\r\nv\r\n' % (boundary, n)
                    for n in range(count))


def test_many_tiny_fields_are_refused_after_the_part_limit():
    body = tiny_fields(200_000)  # 10 MB
    stream = io.BytesIO(body)
    with pytest.raises(pypihub.PayloadTooLarge, match="too many form fields"):
        pypihub.MultipartReader(stream, len(body), b"x", 1 << 30).read()
    assert stream.tell() <= 2 * pypihub.UPLOAD_CHUNK  # it stopped reading at once


def test_a_huge_field_stops_the_reading_at_its_budget():
    body = b'--x\r\nContent-Disposition: form-data; name="description"\r\n\r\n' + b"a" * (20 << 20)
    stream = io.BytesIO(body)
    with pytest.raises(pypihub.PayloadTooLarge, match="form fields are too large"):
        pypihub.MultipartReader(stream, len(body), b"x", 1 << 30).read()
    assert stream.tell() <= pypihub.MAX_FORM_FIELDS + 2 * pypihub.UPLOAD_CHUNK


def test_field_names_count_toward_the_budget():
    names = b"".join(b'--x\r\nContent-Disposition: form-data; name="%s"\r\n\r\n\r\n' % (b"%04d" % n + b"n" * 1900)
                     for n in range(900))  # 1.7 MB of names
    value = b'--x\r\nContent-Disposition: form-data; name="description"\r\n\r\n' + b"d" * (2500 << 10) + b"\r\n"
    body = names + value  # the value alone is within the 4 MiB budget; with the names it is not
    with pytest.raises(pypihub.PayloadTooLarge, match="too large"):
        pypihub.MultipartReader(io.BytesIO(body), len(body), b"x", 1 << 30).read()


def test_the_file_is_not_read_when_the_check_refuses_it():
    fields = {"name": "demo", "version": "1.0"}
    body, content_type = multipart(fields, "demo-1.0-py3-none-any.whl", b"w" * (2 << 20))
    stream = io.BytesIO(body)

    def refuse(seen):
        assert seen == fields
        raise pypihub.Forbidden("no")

    with pytest.raises(pypihub.Forbidden):
        pypihub.MultipartReader(stream, len(body), pypihub.multipart_boundary(content_type), 1 << 30, refuse).read()
    assert stream.tell() < 1 << 20  # the 2 MiB file was never spooled


def test_cache_is_bounded_in_bytes():
    cache = pypihub.Cache(ttl=60, stale_ttl=0, size=1000, max_bytes=10_000, size_of=len, gate=pypihub.Gate())
    for n in range(10):
        cache.put(n, "x" * 1400)
    assert cache.bytes <= 10_000 and len(cache) == 10_000 // (1400 + pypihub.CACHE_ENTRY_BYTES)
    assert cache.get(9) is not None and cache.get(0) is None  # the least recently used went first
    cache.put(9, "y")
    cache.discard(8)
    assert cache.bytes == sum(len(cache.get(k)) + pypihub.CACHE_ENTRY_BYTES for k in cache.keys())
    cache.put("huge", "z" * 20_000)  # larger than the whole cache: not kept
    assert cache.get("huge") is None


def test_listing_size_estimate_covers_what_python_holds():
    import tracemalloc

    sas = "https://release-assets.githubusercontent.com/x?" + "&".join(f"p{n}={'v' * 30}" for n in range(18))
    tracemalloc.start()
    before = tracemalloc.take_snapshot()
    files = tuple(pypihub.Asset(f"RA_kwDOfake{n:06d}", f"wide-1.{n}-py3-none-any.whl", f"1.{n}", 300_000,
                                "2026-01-01T00:00:00Z", sas + str(n), "2026-01-01T00:00:00Z", "ab" * 32,
                                None, n, n) for n in range(300))
    listing = pypihub.Listing("wide", OWNER, "wide", files)
    for media in (pypihub.TEXT_HTML, pypihub.HTML_V1, pypihub.JSON_V1):
        pypihub.rendered_page(listing, media, dict)
    held = sum(stat.size_diff for stat in tracemalloc.take_snapshot().compare_to(before, "filename"))
    tracemalloc.stop()
    estimate = pypihub.listing_bytes(listing)
    assert held <= estimate <= 3 * held, (held, estimate)


def test_an_upload_that_trickles_is_cut_after_its_grace():
    now = [0.0]

    class Trickle(io.RawIOBase):
        def read(self, count=-1):
            now[0] += 5.0  # one kilobyte every five seconds
            return b"x" * 1024

    with pytest.raises(pypihub.RequestTimeout, match="too slowly"):
        pypihub.MultipartReader(Trickle(), 10 << 20, b"x", 1 << 30, clock=lambda: now[0]).read()
    assert now[0] <= pypihub.UPLOAD_GRACE + 10


def test_private_names_are_normalized():
    assert pypihub.build_settings(["--private-name", "Acme_*", "--private-name", "internal.tools"], {}).private_names == \
        ("acme-*", "internal-tools")


# -- settings and the command line --


@pytest.mark.parametrize("argv, environ, expected", [
    ([], {}, {"host": "0.0.0.0", "port": 3141, "graphql_url": "https://api.github.com/graphql", "owners": ()}),
    (["--port", "8080", "--owner", "a", "--owner", "B"], {}, {"port": 8080, "owners": ("a", "B")}),
    ([], {"PYPIHUB_PORT": "9000", "PYPIHUB_OWNER": "x y"}, {"port": 9000, "owners": ("x", "y")}),
    (["--port", "1"], {"PYPIHUB_PORT": "9000"}, {"port": 1}),
    (["--graphql-url", "https://ghe.example/api/graphql", "--upstream-timeout", "3"], {},
     {"graphql_url": "https://ghe.example/api/graphql", "upstream_timeout": 3.0}),
    ([], {"PYPIHUB_CACHE_TTL": "0"}, {"cache_ttl": 0.0}),
])
def test_build_settings(argv, environ, expected):
    settings = pypihub.build_settings(argv, environ)
    assert {k: getattr(settings, k) for k in expected} == expected


def test_build_settings_repo_map():
    settings = pypihub.build_settings(["--repo-map", "^py-(.*)=\\1-python"], {})
    assert pypihub.repo_candidates("py-foo", settings.repo_map) == ["foo-python"]


@pytest.mark.skipif(sys.version_info < (3, 11), reason="tomllib arrived in Python 3.11")
def test_build_settings_from_original_toml(tmp_path):
    config = tmp_path / "pypihub.toml"
    config.write_text('[server]\nhost = "127.0.0.2"\nport = 4000\n[server.tls]\ncrt = "c.pem"\nkey = "k.pem"\n'
                      '[github]\nowners = ["octorg"]\n[[github.replace]]\npatt = "^x-"\nrepl = "y-"\n')
    settings = pypihub.build_settings(["--config", str(config), "--port", "5000"], {})
    assert (settings.host, settings.port, settings.certfile, settings.keyfile, settings.owners) == \
        ("127.0.0.2", 5000, "c.pem", "k.pem", ("octorg",))
    assert pypihub.repo_candidates("x-tool", settings.repo_map) == ["y-tool"]


@pytest.mark.parametrize("argv, message", [
    (["--repo-map", "nothing"], "REGEX=REPLACEMENT"),
    (["--repo-map", "(=x"], "--repo-map"),
    (["--certfile", "c.pem"], "go together"),
    (["--config", "/nonexistent/pypihub.toml"], "config"),
])
def test_main_refuses_bad_settings(argv, message, capsys):
    with pytest.raises(SystemExit) as caught:
        pypihub.main(argv, environ={})
    assert message in str(caught.value.code)


def test_main_version(capsys):
    with pytest.raises(SystemExit) as caught:
        pypihub.main(["--version"], environ={})
    assert caught.value.code == 0
    assert capsys.readouterr().out.strip() == f"pypihub {pypihub.__version__}"


# Every Settings field: a value for its PYPIHUB_* variable, and the setting that value gives.
SETTING_SAMPLES = {
    "host": ("127.0.0.9", "127.0.0.9"), "port": ("8081", 8081),
    "graphql_url": ("https://ghe.example/api/graphql", "https://ghe.example/api/graphql"),
    "rest_url": ("https://ghe.example/api/v3", "https://ghe.example/api/v3"), "hashes": ("1", False),
    "owners": ("a b", ("a", "b")), "repo_map": ("^x-=y-", None), "certfile": ("c.pem", "c.pem"),
    "keyfile": ("k.pem", "k.pem"), "upstream_timeout": ("2.5", 2.5), "cache_ttl": ("0", 0.0),
    "stale_ttl": ("30", 30.0), "cache_size": ("7", 7), "proxy_downloads": ("yes", True),
    "max_upload_size": ("1000", 1000), "tag_template": ("release-{version}", "release-{version}"),
    "max_connections": ("9", 9), "idle_timeout": ("4", 4.0), "busy_threads": ("3", 3), "trusted_proxies": ("10.0.0.1 10.1.0.0/16", (ipaddress.ip_network("10.0.0.1"),
                                                ipaddress.ip_network("10.1.0.0/16"))), "log_format": ("json", "json"),
    "upload_timeout": ("60", 60.0), "max_client_connections": ("3", 3), "max_uploads": ("2", 2),
    "cache_memory": ("32", 32), "fallback_index": ("https://pypi.example/simple/", "https://pypi.example/simple/"),
    "private_names": ("acme-* internal-*", ("acme-*", "internal-*")), "fallback_ttl": ("30", 30.0),
    "token_env": ("GH_TOKEN", "GH_TOKEN"), "token_file": ("/run/token", "/run/token"),
    "token_command": ("gh auth token", "gh auth token"),
}
SETTING_FIELDS = {field.name: field for field in dataclasses.fields(pypihub.Settings)}
TLS_PAIR = {"PYPIHUB_CERTFILE": "c.pem", "PYPIHUB_KEYFILE": "k.pem"}  # they go together
NO_CREDENTIALS = {"PYPIHUB_HOST": "127.0.0.1", "PYPIHUB_OWNER": OWNER}  # what a --token-* mode needs


def test_every_setting_has_a_sample():
    assert set(SETTING_SAMPLES) == set(SETTING_FIELDS)


@pytest.mark.parametrize("name", sorted(SETTING_SAMPLES))
def test_a_setting_is_one_field_giving_flag_variable_and_help(name, capsys):
    field, (raw, expected) = SETTING_FIELDS[name], SETTING_SAMPLES[name]
    flag, variable = pypihub.flag_of(field), pypihub.env_name(field)
    needs_owner = name.startswith("token_") or name == "fallback_index"
    tls = TLS_PAIR if name in ("certfile", "keyfile") else NO_CREDENTIALS if needs_owner else {}
    argv = [flag] if isinstance(field.default, bool) else [arg for value in
                                                           (raw.split() if name in ("owners", "private_names", "trusted_proxies")
                                                            else [raw])
                                                           for arg in (flag, value)]
    from_env = getattr(pypihub.build_settings([], {**tls, variable: raw}), name)
    from_flag = getattr(pypihub.build_settings(argv, tls), name)
    assert from_env == from_flag != field.default
    assert expected is None or from_env == expected
    with pytest.raises(SystemExit):
        pypihub.build_parser().parse_args(["--help"])
    assert flag in capsys.readouterr().out
    configuration = (ROOT / "README.md").read_text().split("## Configuration", 1)[1]
    assert f"`{flag}" in configuration and variable in configuration  # documented where operators look


def test_bad_setting_values_are_config_errors():
    for environ in ({"PYPIHUB_PORT": "x"}, {"PYPIHUB_LOG_FORMAT": "xml"}, {"PYPIHUB_TAG_TEMPLATE": "v1"}):
        with pytest.raises(pypihub.ConfigError):
            pypihub.build_settings([], environ)


# -- the house: routes, errors as values, settings' rules, the gate --


@pytest.mark.parametrize("method, path, endpoint, answer", [
    ("GET", "/", "home", "home"), ("HEAD", "/healthz", "healthz", "healthz"), ("GET", "/metrics", "metrics", "metrics"),
    ("GET", "/simple", "other", "to_root"), ("GET", "/simple/", "root", "root_page"),
    ("GET", "/simple/demo-pkg/", "project", "project_page"), ("GET", "/simple/Demo_Pkg", "project", "project_page"),
    ("GET", "/simple/a/b", "other", "nowhere"), ("GET", "/asset/RA_1/x.whl", "asset", "asset"),
    ("GET", "/asset/RA_1", "other", "nowhere"), ("GET", "/upstream/p/k/f.whl", "upstream", "upstream_file"),
    ("GET", "/project/demo-pkg/", "page", "project_view"), ("GET", "/project/demo-pkg", "page", "project_view"),
    ("GET", "/project/a/b", "other", "nowhere"), ("POST", "/", "upload", "upload"),
    ("POST", "/legacy/", "upload", "upload"), ("POST", "/legacy/?x=1", "upload", "upload"),
    ("GET", "/nothing", "other", "nowhere"), ("GET", "/simple/%64emo/", "project", "project_page"),
])
def test_one_route_table_names_the_endpoint_and_its_answer(method, path, endpoint, answer):
    target = pypihub.parse_target(method, path)
    assert (target.endpoint, target.route.answer) == (endpoint, answer)


def test_every_route_is_answered_by_a_handler_method():
    answers = {route.answer for route in (*pypihub.ROUTES, pypihub.NOWHERE)}
    assert answers <= {name for name in dir(pypihub.Handler) if callable(getattr(pypihub.Handler, name))}
    assert {route.endpoint for route in pypihub.ROUTES} == {
        "home", "healthz", "metrics", "other", "root", "project", "asset", "upstream", "page", "upload"}


def test_a_moved_repo_is_not_a_missing_one_and_a_kept_negative_keeps_its_headers():
    assert not issubclass(pypihub.Moved, pypihub.NotFound) and pypihub.Moved("x").status == 404
    missing = pypihub.NotFound("no such project", [("X-Reason", "gone")], why="not-visible")
    again = pypihub.Missing.of(missing).error()
    assert (type(again), again.message, again.why) == (pypihub.NotFound, "no such project", "not-visible")
    assert list(again.headers) == list(missing.headers) == [("X-Reason", "gone")]
    moved = pypihub.Missing.of(pypihub.Moved("gone to b", why="moved")).error()
    assert isinstance(moved, pypihub.Moved) and moved.why == "moved"


@pytest.mark.parametrize("fields, problem", [
    ({"fallback_index": "https://pypi.org/simple/"}, "--fallback-index needs --owner"),
    ({"certfile": "cert.pem"}, "--certfile and --keyfile go together"),
    ({"keyfile": "key.pem"}, "--certfile and --keyfile go together"),
    ({"token_env": "GH_TOKEN", "owners": ("octorg",)}, "--host must be loopback"),
    ({"token_file": "t", "host": "127.0.0.1"}, "need --owner"),
    ({"token_command": "gh auth token", "host": "::1"}, "need --owner"),
    ({"fallback_index": "https://pypi.org/simple/", "owners": ("octorg",)}, None),
    ({"token_env": "GH_TOKEN", "host": "127.0.0.1", "owners": ("octorg",)}, None),
])
def test_settings_keep_their_cross_field_rules_however_they_are_made(fields, problem):
    if problem is None:
        assert pypihub.Settings(**fields)
        return
    with pytest.raises(pypihub.ConfigError, match=re.escape(problem)):
        pypihub.Settings(**fields)
    flags = [f"--{name.replace('_', '-')}={value}" for name, value in fields.items() if name != "owners"]
    flags += [f"--owner={owner}" for owner in fields.get("owners", ())]
    with pytest.raises(pypihub.ConfigError, match=re.escape(problem)):
        pypihub.build_settings(flags, {})


@pytest.mark.parametrize("word", ["ture", "2", "enabled", "y", ""])
def test_a_boolean_from_the_environment_is_one_of_eight_words(word):
    if word == "":
        assert pypihub.build_settings([], {"PYPIHUB_NO_HASHES": word}).hashes  # unset in effect
        return
    with pytest.raises(pypihub.ConfigError, match="PYPIHUB_NO_HASHES"):
        pypihub.build_settings([], {"PYPIHUB_NO_HASHES": word})


def test_a_strict_gate_fails_a_blocking_call_made_holding_it():
    gate = pypihub.Gate(1, strict=True)
    listener = socket.create_server(("127.0.0.1", 0))
    try:
        gate.enter()
        with pytest.raises(pypihub.GateHeld, match=r"socket\.(getaddrinfo|connect) while holding"):
            socket.create_connection(listener.getsockname(), timeout=1).close()
        with gate.released():  # the one way to wait
            socket.create_connection(listener.getsockname(), timeout=1).close()
        assert gate.holding()
        gate.leave()
        socket.create_connection(listener.getsockname(), timeout=1).close()
    finally:
        listener.close()


def test_a_gate_with_no_limit_still_knows_who_holds_it():
    gate = pypihub.Gate(0)
    gate.enter()
    assert gate.holding()
    with gate.released():
        assert not gate.holding()
    assert gate.holding()
    gate.leave()
    assert not gate.holding()


def test_github_deadlines_follow_the_injected_monotonic_clock():
    now = [1000.0]
    github = pypihub.GitHub("http://127.0.0.1:9/graphql", "t", 5.0, gate=pypihub.Gate(), monotonic=lambda: now[0])
    assert github.remaining() == 5.0
    now[0] += 4.5
    assert github.remaining() == 0.5
    now[0] += 1.0  # past it: no call is made, however fast the network
    with pytest.raises(pypihub.GatewayTimeout):
        github.query("query { viewer { login } }", {})
    github.renew()
    assert github.remaining() == 5.0


# -- the module itself --


def test_module_defines_each_name_above_its_first_use():
    """pypihub.py reads top to bottom: no module-level function or class uses one defined further down
    (annotations aside: they are not evaluated)."""
    tree = ast.parse((ROOT / "pypihub.py").read_text())
    defined = {node.name: n for n, node in enumerate(tree.body) if isinstance(node, (ast.FunctionDef, ast.ClassDef))}
    later = []
    for n, node in enumerate(tree.body):
        if not isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            continue
        annotations = {id(part) for sub in ast.walk(node) for field in ("annotation", "returns")
                       if getattr(sub, field, None) is not None for part in ast.walk(getattr(sub, field))}
        used = {name.id for name in ast.walk(node)
                if isinstance(name, ast.Name) and isinstance(name.ctx, ast.Load) and id(name) not in annotations}
        later += [(node.name, name) for name in used if defined.get(name, -1) > n]
    assert later == []


def test_module_keeps_its_declared_line_length():
    limit = int(re.search(r"line-length = (\d+)", (ROOT / "pyproject.toml").read_text()).group(1))
    long_lines = [n for n, line in enumerate((ROOT / "pypihub.py").read_text().splitlines(), 1) if len(line) > limit]
    assert limit == 110 and long_lines == []


def github_slug(heading: str) -> str:
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def anchors_of(path: Path) -> set[str]:
    """A Markdown file's heading anchors as GitHub makes them (a repeated heading gets -1, -2, ...)."""
    text = re.sub(r"^```.*?^```", "", path.read_text(), flags=re.S | re.M)
    found, seen = set(), {}
    for heading in re.findall(r"^#{1,6} +(.+?) *#*$", text, re.M):
        slug = github_slug(heading)
        count = seen[slug] = seen.get(slug, 0) + 1
        found.add(slug if count == 1 else f"{slug}-{count - 1}")
    return found


@pytest.mark.parametrize("doc", ["README.md", "docs/operations.md", "bench/RESULTS.md"])
def test_every_relative_link_resolves(doc):
    path = ROOT / doc
    text = re.sub(r"^```.*?^```", "", path.read_text(), flags=re.S | re.M)
    broken = []
    for target in re.findall(r"\]\(([^)\s]+)\)", text):
        if re.match(r"[a-z]+:", target):
            continue
        file, _, anchor = target.partition("#")
        dest = (path.parent / file).resolve() if file else path
        if not dest.exists() or anchor and dest.suffix == ".md" and anchor not in anchors_of(dest):
            broken.append(target)
    assert broken == []


def test_readme_stays_short_with_a_contents_list():
    lines = (ROOT / "README.md").read_text().splitlines()
    assert len(lines) <= 450
    assert "## Contents" in lines[:40]


# --- A fake GitHub ---
# Each GitHub behaviour below names its public source. A thread is cited as owner/repo#N, which is
# https://github.com/owner/repo/issues/N (GitHub sends a pull request's number on to /pull/N); an
# octokit/fixtures scenario by its path in https://github.com/octokit/fixtures; a docs page by the
# short name below, whose address is given here once:
#   GraphQL rate-limit docs:
#     https://docs.github.com/en/graphql/overview/rate-limits-and-query-limits-for-the-graphql-api
#   REST rate-limit docs: https://docs.github.com/en/rest/using-the-rest-api/rate-limits-for-the-rest-api
#   Upload docs, "Get a release asset": https://docs.github.com/en/rest/releases/assets
#   immutable-releases docs:
#     https://docs.github.com/en/code-security/concepts/supply-chain-security/immutable-releases
#   GHES 3.21 docs: https://docs.github.com/en/enterprise-server@3.21/code-security/concepts/
#     supply-chain-security/immutable-releases
#   "Preventing changes to your releases": https://docs.github.com/en/code-security/how-tos/
#     secure-your-supply-chain/establish-provenance-and-integrity/preventing-changes-to-your-releases
#   "Authenticating to the REST API":
#     https://docs.github.com/en/rest/authentication/authenticating-to-the-rest-api
#   "Renaming a repository":
#     https://docs.github.com/en/repositories/creating-and-managing-repositories/renaming-a-repository
#   "Best practices: follow redirects": https://docs.github.com/en/rest/using-the-rest-api/
#     best-practices-for-using-the-rest-api#follow-redirects
#   "GITHUB_TOKEN": https://docs.github.com/actions/security-guides/automatic-token-authentication
#   changelog 2025-06-03:
#     https://github.blog/changelog/2025-06-03-releases-now-expose-digests-for-release-assets/
#   immutable releases in preview (2025-08-26), cited in php/pie#411:
#     https://github.blog/changelog/2025-08-26-releases-now-support-immutability-in-public-preview/
#   community discussion on "tag_name was used by an immutable release" (422):
#     https://github.com/orgs/community/discussions/178351
# Download URLs as clients logged them: gm3dmo/the-power#393 (curl, 2025-05: objects.githubusercontent
# .com, X-Amz-Expires=300) and plengauer/Thoth#3748, #3996 (wget, 2026-07/08: release-assets
# .githubusercontent.com, an Azure SAS with se = ske about an hour after skt).


NO_SHARED = (f"GitHub's schema and ../shared/tools/check_graphql.py come from the project's shared/ folder, "
             f"beside the clone ({SHARED}); CI lays it there. Without it, the tests that run the fake GitHub skip.")


_SCHEMA = None


def github_schema():
    global _SCHEMA
    if _SCHEMA is None:
        import graphql

        if not SCHEMA_FILE.exists():
            pytest.skip(NO_SHARED)
        _SCHEMA = graphql.build_schema(SCHEMA_FILE.read_text(), assume_valid_sdl=True)
    return _SCHEMA


_LEGACY_SCHEMA = None
# GitHub added ReleaseAsset.digest and Release.immutable to its schema in 2025 (changelog 2025-06-03
# "Releases now expose digests for release assets"; GraphQL changelog 2025-07-04 for `immutable`);
# an older GitHub Enterprise Server lacks them.
FIELDS_OF_2025 = (("ReleaseAsset implements", "digest: String"), ("Release implements", "immutable: Boolean!"))


def legacy_schema():
    """GitHub's schema without the fields of 2025: an older GitHub Enterprise Server's."""
    global _LEGACY_SCHEMA
    if _LEGACY_SCHEMA is None:
        import graphql

        text = SCHEMA_FILE.read_text()
        for type_line, field in FIELDS_OF_2025:
            start = text.index(f"\ntype {type_line}")
            at = text.index(f"\n  {field}\n", start)
            described = text.rfind('\n  """', 0, text.rfind('\n  """', 0, at))  # the field's description too
            text = text[:described] + text[at + len(field) + 3:]
        _LEGACY_SCHEMA = graphql.build_schema(text, assume_valid_sdl=True)
    return _LEGACY_SCHEMA


def undefined_field_errors(query: str) -> list[dict]:
    """A legacy server's answer to a query for a field it lacks, in GitHub's shape (no `data`): GHES 3.10's
    {"path": [...], "extensions": {"code": "undefinedField", "typeName": T, "fieldName": F}, "locations": [...],
    "message": "Field 'F' doesn't exist on type 'T'"} (facebook/sapling#906; refined-github/refined-github#6946)."""
    import graphql

    errors = []
    for error in graphql.validate(legacy_schema(), graphql.parse(query)):
        found = re.search(r"Cannot query field '(\w+)' on type '(\w+)'", error.message)
        field, kind = found.groups() if found else ("?", "?")
        errors.append({"path": ["query"], "extensions": {"code": "undefinedField", "typeName": kind, "fieldName": field},
                       "locations": [{"line": loc.line, "column": loc.column} for loc in error.locations or []],
                       "message": f"Field '{field}' doesn't exist on type '{kind}'"})
    return errors


def schema_errors(query: str) -> list[str]:
    """What ../shared/tools/check_graphql.py reports for a query GitHub would receive."""
    if not (SHARED / "tools" / "check_graphql.py").exists():
        pytest.skip(NO_SHARED)
    sys.path.insert(0, str(SHARED / "tools"))
    try:
        import check_graphql
    finally:
        sys.path.pop(0)
    return check_graphql.errors(query)


def paginate(items: list, args: dict, connection: str) -> dict:
    """A GraphQL connection over `items`, with GitHub's rules for first/last."""
    import graphql

    first, last, after = args.get("first"), args.get("last"), args.get("after")
    if first is None and last is None:
        raise graphql.GraphQLError(f"You must provide a `first` or `last` value to properly paginate the `{connection}` connection.")
    for bound, value in (("first", first), ("last", last)):
        if value is not None and not 1 <= value <= 100:
            raise graphql.GraphQLError(f"Requesting {value} records on the `{connection}` connection exceeds the `{bound}` limit of 100 records.")
    start = int(base64.b64decode(after).decode().split(":")[-1]) + 1 if after else 0
    window = items[start:]
    window = window[:first] if first is not None else window[-last:]
    end = start + len(window) - 1
    cursor = lambda i: base64.b64encode(f"cursor:v2:{i}".encode()).decode()  # noqa: E731
    return {
        "nodes": window,
        "edges": [{"node": n, "cursor": cursor(start + i)} for i, n in enumerate(window)],
        "totalCount": len(items),
        "pageInfo": {"hasNextPage": end + 1 < len(items), "hasPreviousPage": start > 0,
                     "startCursor": cursor(start) if window else None, "endCursor": cursor(end) if window else None},
    }


def iso(epoch: float) -> str:
    """A moment as GitHub writes it: ISO 8601, UTC, whole seconds."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch))


def http_date(epoch: float) -> str:
    return time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime(epoch))


def from_iso(text: str) -> float:
    return datetime.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def stored_asset_name(name: str) -> str:
    """The name GitHub gives an uploaded asset. Docs, "Upload a release asset": "GitHub renames asset
    filenames that have special characters, non-alphanumeric characters, and leading or trailing
    periods" (https://docs.github.com/en/rest/releases/assets#upload-a-release-asset). Seen: space,
    `~`, parentheses -> "." (github-release/github-release#93, msys2/msys2-autobuild#15,
    softprops/action-gh-release#159). Kept `+` and renamed `!` are unconfirmed: no public example
    was found."""
    return re.sub(r"[^A-Za-z0-9._+-]", ".", name)


def named(assets: list[dict], name: str | None) -> list[dict]:
    """Release.releaseAssets(name:): "A name to filter the assets by" (schema.graphql)."""
    return assets if name is None else [a for a in assets if a["name"] == name]


REST_DOCS = "https://docs.github.com/rest"
JWT_HEADER = b64url(b'{"typ":"JWT","alg":"HS256"}')
REST_LIST_CAP = 1000  # iree-org/iree#16506: past item 1,000 the releases list answers 422 (undocumented)
# Secondary rate limits: the message seen in Azure/azure-rest-api-specs#36378, semantic-release/github#867.
SECONDARY_LIMIT = ("You have exceeded a secondary rate limit. Please wait a few minutes before you try again. "
                   "If you reach out to GitHub Support for help, please include the request ID 0000:0000:0000.")
SECONDARY_DOCS = {
    "graphql": "https://docs.github.com/graphql/overview/rate-limits-and-query-limits-for-the-graphql-api#secondary-rate-limits",
    "core": "https://docs.github.com/rest/using-the-rest-api/rate-limits-for-the-rest-api#about-secondary-rate-limits"}
# SAML SSO: GraphQL text from fwouts/prmonitor#1042 and jasperapp/jasper#187, REST text from the
# older docs example in github/docs.
SAML_GRAPHQL = ("Resource protected by organization SAML enforcement. "
                "You must grant your Personal Access token access to this organization.")
SAML_REST = ("Resource protected by organization SAML enforcement. "
             "You must grant your personal token access to this organization.")
SAML_DOCS = "https://docs.github.com/articles/authenticating-to-a-github-organization-with-saml-single-sign-on/"
# Azure Blob's answer to a SAS outside its window (the release-assets host is Azure-backed:
# gm3dmo/the-power#393 shows `server: Windows-Azure-Blob/1.0`; body shape: Azure Storage errors).
AZURE_AUTH_FAILED = ('<?xml version="1.0" encoding="utf-8"?><Error><Code>AuthenticationFailed</Code><Message>Server failed '
                     'to authenticate the request. Make sure the value of Authorization header is formed correctly '
                     'including the signature.\nRequestId:00000000-0000-0000-0000-000000000000\nTime:{now}</Message>'
                     '<AuthenticationErrorDetail>{detail}</AuthenticationErrorDetail></Error>')


class FakeRepo:
    def __init__(self, github: "FakeGitHub", owner: str, name: str, private: bool, readers, writers,
                 immutable: bool = False) -> None:
        self.github, self.owner, self.name, self.private = github, owner, name, private
        self.readers, self.writers = set(readers) | set(writers), set(writers)
        # REST redirects name repos by this id (octokit/fixtures rename-repository)
        self.database_id = 1000 + len(github.repos_by_id)
        self.node_id = f"R_kgDOfake{self.database_id:06d}"
        # The repo's "immutable releases" setting; it "will only apply to future releases" (docs
        # "Preventing changes to your releases").
        self.immutable = immutable
        # Tags once held by an immutable release: "you cannot reuse the same tag name" (GHES 3.21 docs).
        self.burnt_tags: set[str] = set()
        self.releases: list[dict] = []  # newest first, as GitHub orders by CREATED_AT DESC

    def visible_to(self, token: str) -> bool:
        if token in self.readers:
            return True
        return not self.private and self.github.sees_public(token)

    def listed_releases(self, token: str) -> list[dict]:
        """"Only users with push access will receive listings for draft releases." (REST docs, List releases)"""
        return [r for r in self.releases if not r["isDraft"] or token in self.writers]

    def release(self, database_id: str, token: str) -> dict | None:
        return next((r for r in self.listed_releases(token) if str(r["databaseId"]) == database_id), None)

    def asset(self, database_id: str, token: str) -> dict | None:
        return next((a for r in self.listed_releases(token) for a in r["assets"]
                     if str(a["databaseId"]) == database_id), None)

    def add_release(self, tag: str, files: dict[str, bytes], draft: bool = False,
                    created: str = "2026-01-01T00:00:00Z", prerelease: bool = False, name: str | None = None) -> dict:
        release = {"__typename": "Release", "id": self.github.new_id("RE"), "databaseId": self.github.next_serial(),
                   "tagName": tag, "name": name, "description": None, "isDraft": True, "isPrerelease": prerelease,
                   "createdAt": created, "updatedAt": created, "publishedAt": None,
                   "immutable": False, "everPublished": False, "assets": [], "repo": self,
                   "url": f"https://github.com/{self.owner}/{self.name}/releases/tag/{tag}",
                   # Release.descriptionHTML: "The description of this release rendered to HTML" (GitHub's
                   # GraphQL reference). GitHub renders Markdown; the fake shows the text in a <p>, unless a
                   # test sets the HTML itself (release["notes_html"]).
                   "descriptionHTML": lambda info: release.get("notes_html") or (
                       f"<p>{html.escape(release['description'])}</p>" if release["description"] else ""),
                   "repository": lambda info: self.node(),
                   "releaseAssets": lambda info, **a: paginate(named(release["assets"], a.get("name")), a, "releaseAssets")}
        if not draft:
            self.publish(release, created)
        for filename, content in files.items():
            self.github.add_asset(self, release, filename, content, created)
        self.releases.insert(0, release)
        self.github.release_nodes[release["id"]] = release
        return release

    def publish(self, release: dict, when: str) -> None:
        """A release leaves draft; on an immutable repo it is immutable from then on (REST `immutable`;
        immutable-releases docs: "Create the release as a draft … Attach all associated assets … Publish the
        draft release")."""
        release.update(isDraft=False, publishedAt=when, everPublished=True, immutable=self.immutable)

    def node(self) -> dict:
        owner = {"__typename": "Organization", "login": self.owner}
        return {"__typename": "Repository", "id": self.node_id, "databaseId": self.database_id, "name": self.name,
                "owner": owner, "isPrivate": self.private, "nameWithOwner": f"{self.owner}/{self.name}",
                "isArchived": getattr(self, "archived", False),
                "description": getattr(self, "description", None), "url": f"https://github.com/{self.owner}/{self.name}",
                "releases": lambda info, **a: paginate(self.listed_releases(info.context["token"]), a, "releases"),
                "viewerPermission": lambda info: self.permission(info.context["token"])}

    def permission(self, token: str) -> str | None:
        """Repository.viewerPermission: "Will return null if authenticated as an GitHub App" (the schema)."""
        if token.startswith("ghs_"):
            return None
        return "WRITE" if token in self.writers else "READ" if self.visible_to(token) else None


class FakeHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: ThreadingHTTPServer

    def log_message(self, format, *args) -> None:
        pass

    @property
    def github(self) -> FakeGitHub:
        return self.server.github  # type: ignore[attr-defined]

    def token(self) -> str:
        return (self.headers.get("Authorization") or "").partition(" ")[2]

    def reply(self, status: int, body: bytes, headers: dict | None = None) -> None:
        self.send_response(status)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def reply_json(self, status: int, payload, headers: dict | None = None) -> None:
        self.reply(status, json.dumps(payload).encode(), {"Content-Type": "application/json; charset=utf-8", **(headers or {})})

    def not_found(self) -> None:
        self.reply_json(404, {"message": "Not Found", "documentation_url": REST_DOCS})

    # -- routing

    def do_GET(self) -> None:
        path, _, query = self.path.partition("?")
        fields = dict(urllib.parse.parse_qsl(query))
        if path.startswith("/download/"):
            return self.download(urllib.parse.unquote(path[len("/download/"):]), fields, "amz")
        if path.startswith("/release-assets/"):
            return self.download(urllib.parse.unquote(path[len("/release-assets/"):]), fields, "sas")
        if path.startswith(("/repos/", "/repositories/")):
            return self.api(b"")
        if path == "/rate_limit":
            return self.rate_limit()
        self.browser_download(path)

    do_HEAD = do_GET

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        if self.path == "/graphql":
            return self.graphql(body)
        if self.path.startswith(("/repos/", "/repositories/", "/uploads/")):
            return self.api(body)
        self.not_found()

    def do_PATCH(self) -> None:
        self.api(self.rfile.read(int(self.headers.get("Content-Length", 0))))

    def do_DELETE(self) -> None:
        self.api(b"")

    # -- GraphQL

    def graphql(self, body: bytes) -> None:
        if not self.headers.get("User-Agent"):
            return self.reply(403, b"Request forbidden by administrative rules. Please make sure your request has a User-Agent header")
        scheme, _, token = (self.headers.get("Authorization") or "").partition(" ")
        github = self.github
        with github.lock:
            github.graphql_calls.append((token, json.loads(body).get("query", "").split("(")[0].strip()))
            fault = github.faults.pop(0) if github.faults else None
        github.enter(token)
        try:
            self.graphql_answer(scheme, token, body, fault)
        finally:
            github.leave(token)

    def graphql_answer(self, scheme: str, token: str, body: bytes, fault) -> None:
        github = self.github
        if github.gate is not None:
            github.gate.wait(10)
        if github.latency:
            time.sleep(github.latency)
        if scheme.lower() not in ("bearer", "token") or token not in github.tokens:
            return self.reply_json(401, {"message": "Bad credentials", "documentation_url": "https://docs.github.com/graphql"})
        if fault is not None:
            return self.fault(fault, "graphql")
        if github.rate_limited:  # "the response status will still be 200" (GraphQL rate-limit docs)
            return self.reply_json(200, {"errors": [github.primary_limit()]}, github.rate_headers("graphql", 0))
        headers = github.rate_headers("graphql")
        try:
            answer = github.execute(token, json.loads(body), headers)
            if github.legacy_schema and "data" not in answer and answer.get("errors", [{}])[0].get("extensions"):
                return self.reply_json(github.legacy_status, answer, headers)
        except Exception as exc:  # a bug in the fake must fail the test, not look like a GitHub outage
            github.crashes.append(repr(exc))
            raise
        with github.lock:
            github.graphql_bytes += len(json.dumps(answer))
        self.reply_json(200, answer, headers)

    def fault(self, fault, resource: str) -> None:
        """A fault a test asked for: an HTTP status, "timeout", "garbage", or a secondary-limit shape."""
        if fault == "timeout":
            time.sleep(3)
            return self.reply_json(200, {"data": None})
        if fault == "garbage":
            return self.reply(200, b"<html>unicorn</html>", {"Content-Type": "text/html"})
        if fault == "elsewhere307":  # a redirect off the API host: a hostile or broken proxy in between
            return self.reply_json(307, {"message": "Temporary Redirect"}, {"Location": self.github.download_base + self.path})
        if isinstance(fault, str):
            return self.secondary_limit(fault, resource)
        self.reply_json(fault, {"message": "Server Error"}, {"Retry-After": "7"} if fault in (403, 429) else {})

    def secondary_limit(self, shape: str, resource: str) -> None:
        """REST: "a 403 or 429 … If the retry-after response header is present …"; GraphQL: "the response
        status will be 200 or 403" (REST and GraphQL rate-limit docs). Points are left:
        x-ratelimit-remaining is not 0."""
        headers = self.github.rate_headers(resource)
        error = {"message": SECONDARY_LIMIT, "documentation_url": SECONDARY_DOCS[resource]}
        if shape == "secondary403":
            return self.reply_json(403, error, headers)
        if shape == "secondary429":
            return self.reply_json(429, error, {**headers, "Retry-After": "30"})
        if shape == "secondary200":
            return self.reply_json(200, {"errors": [{"message": SECONDARY_LIMIT}]}, headers)
        raise ValueError(f"unknown fault {shape!r}")

    # -- REST: /repos/{owner}/{repo}/…, /repositories/{id}/…, uploads under /uploads/

    def api(self, body: bytes) -> None:
        """Every REST call: recorded, authenticated, maybe faulted, then routed."""
        github, token = self.github, self.token()
        with github.lock:
            if self.command in ("GET", "HEAD"):
                github.rest_calls.append((token, self.path))
            else:
                github.writes.append((self.command, self.path.partition("?")[0]))
            fault = github.rest_faults.pop(0) if github.rest_faults else None
        github.enter(token)
        try:
            if token not in github.tokens:
                return self.reply_json(401, {"message": "Bad credentials", "documentation_url": REST_DOCS})
            if fault is not None:
                return self.fault(fault, "core")
            self.route(token, body)
        except Exception as exc:  # a bug in the fake must fail the test
            github.crashes.append(repr(exc))
            raise
        finally:
            github.leave(token)

    def rate_limit(self) -> None:
        """GET /rate_limit: any valid token may ask, and "accessing this endpoint does not count
        against your REST API rate limit" (docs.github.com/rest/rate-limit/rate-limit)."""
        github, token = self.github, self.token()
        with github.lock:
            github.rest_calls.append((token, self.path))
        github.enter(token)
        try:
            if github.gate is not None:
                github.gate.wait(10)
            if token not in github.tokens:
                return self.reply_json(401, {"message": "Bad credentials", "documentation_url": REST_DOCS})
            rate = {"limit": 5000, "remaining": github.remaining, "reset": int(github.clock()) + 1800, "used": 1}
            # X-OAuth-Scopes: a classic token's scopes, on every REST answer ("Scopes for OAuth apps" docs);
            # fine-grained and App tokens get none.
            scopes = {"X-OAuth-Scopes": github.scopes.get(token, "repo")} if token.startswith("ghp_") else {}
            self.reply_json(200, {"resources": {"core": rate, "graphql": rate}, "rate": rate}, scopes)
        finally:
            github.leave(token)

    def route(self, token: str, body: bytes) -> None:
        path, _, query = self.path.partition("?")
        upload = path.startswith("/uploads/")
        raw = path.split("/")[2 if upload else 1:]
        found = self.locate(token, raw, upload, query)
        if found is None:
            return
        repo, parts = found
        action = self.action(parts, upload)
        if action is None:
            return self.not_found()
        action(token, repo, parts, dict(urllib.parse.parse_qsl(query)), body)

    def action(self, parts: list[str], upload: bool):
        """The method that serves a path below the repo, or None."""
        method, n = ("GET" if self.command == "HEAD" else self.command), len(parts)
        if upload:
            uploading = method == "POST" and n == 3 and parts[0] == "releases" and parts[2] == "assets"
            return self.upload_asset if uploading else None
        if parts == ["releases"]:
            return {"GET": self.list_releases, "POST": self.create_release}.get(method)
        if n == 3 and parts[:2] == ["releases", "tags"]:
            return self.release_by_tag if method == "GET" else None
        if n == 3 and parts[:2] == ["releases", "assets"]:
            return {"GET": self.get_asset, "DELETE": self.delete_asset}.get(method)
        if n == 2 and parts[0] == "releases":
            return {"GET": self.get_release, "PATCH": self.update_release, "DELETE": self.delete_release}.get(method)
        if n == 3 and parts[0] == "releases" and parts[2] == "assets":
            return self.list_assets if method == "GET" else None
        return None

    def locate(self, token: str, raw: list[str], upload: bool, query: str) -> "tuple[FakeRepo, list[str]] | None":
        """The repo a REST path names and the path below it; else the answer (404, 301, SSO 403) is sent."""
        github, parts = self.github, [urllib.parse.unquote(p) for p in raw]
        repo, below = None, []
        if parts[0] == "repositories" and len(parts) >= 2 and parts[1].isdigit():
            repo, below = github.repos_by_id.get(int(parts[1])), parts[2:]
        elif parts[0] == "repos" and len(parts) >= 3:
            key = (parts[1].lower(), parts[2].lower())
            repo, below = github.repos.get(key), parts[3:]
            moved = github.moved.get(key) if repo is None else None
            if moved is not None and moved.visible_to(token):
                return self.redirect_moved(moved, raw[3:], upload, query)
        if repo is None or not repo.visible_to(token):
            return self.not_found()
        # 403 + X-GitHub-SSO (docs "Authenticating to the REST API")
        if github.sso_refuses(token, repo.owner):
            return self.reply_json(403, {"message": SAML_REST, "documentation_url": SAML_DOCS},
                                   {"X-GitHub-SSO": github.sso_header(token, repo.owner)})
        return repo, below

    def redirect_moved(self, repo: FakeRepo, below: list[str], upload: bool, query: str) -> None:
        """A moved repo's old name: GET 301, other methods 307, to /repositories/{id}/… (octokit/fixtures
        scenarios/api.github.com/rename-repository; docs "Best practices: follow redirects")."""
        location = f"{self.github.base}{'/uploads' if upload else ''}/repositories/{repo.database_id}"
        location += "".join("/" + p for p in below) + (f"?{query}" if query else "")
        status, message = (301, "Moved Permanently") if self.command in ("GET", "HEAD") else (307, "Temporary Redirect")
        self.reply_json(status, {"message": message, "url": location, "documentation_url": "https://docs.github.com/v3/#http-redirects"},
                        {"Location": location})

    def refuse_unless_writer(self, token: str, repo: FakeRepo) -> bool:
        if token in repo.writers:
            return False
        who = "integration" if token.startswith("ghs_") else "personal access token"  # renovatebot/github-action#595
        self.reply_json(403, {"message": f"Resource not accessible by {who}", "documentation_url": REST_DOCS})
        return True

    def validation_failed(self, error: dict, docs: str) -> None:
        self.reply_json(422, {"message": "Validation Failed", "errors": [error], "documentation_url": docs})

    def page(self, items: list, query: dict) -> tuple[list, dict]:
        """One page of a REST list and its Link header (per_page at most 100)."""
        per_page, page = min(int(query.get("per_page", 30)), 100), int(query.get("page", 1))
        headers = self.github.rate_headers("core")
        if page * per_page < len(items):
            path = self.path.partition("?")[0]
            headers["Link"] = f'<{self.github.base}{path}?per_page={per_page}&page={page + 1}>; rel="next"'
        return items[(page - 1) * per_page: page * per_page], headers

    # -- REST reads

    def list_releases(self, token: str, repo: FakeRepo, parts: list, query: dict, body: bytes) -> None:
        """GET …/releases: published releases (drafts for writers), newest first, paged."""
        if not self.github.rest_enabled:
            return self.not_found()
        per_page, page = min(int(query.get("per_page", 30)), 100), int(query.get("page", 1))
        if (page - 1) * per_page >= REST_LIST_CAP:  # iree-org/iree#16506
            return self.reply_json(422, {"message": "Only the first 1000 results are available.",
                                         "documentation_url": "https://docs.github.com/rest/releases/releases#list-releases"})
        window, headers = self.page(repo.listed_releases(token), query)
        self.reply_json(200, [self.github.release_json(r) for r in window], headers)

    def release_by_tag(self, token: str, repo: FakeRepo, parts: list, query: dict, body: bytes) -> None:
        """GET …/releases/tags/{tag}: published releases only (drafts have no tag yet)."""
        release = next((r for r in repo.releases if r["tagName"] == parts[2] and not r["isDraft"]), None)
        if release is None:
            return self.not_found()
        self.reply_json(200, self.github.release_json(release))

    def get_release(self, token: str, repo: FakeRepo, parts: list, query: dict, body: bytes) -> None:
        release = repo.release(parts[1], token)
        if release is None:
            return self.not_found()
        self.reply_json(200, self.github.release_json(release))

    def list_assets(self, token: str, repo: FakeRepo, parts: list, query: dict, body: bytes) -> None:
        """GET …/releases/{id}/assets: with the stored (renamed) names and each asset's state
        (Upload docs)."""
        release = repo.release(parts[1], token)
        if release is None:
            return self.not_found()
        window, headers = self.page(release["assets"], query)
        self.reply_json(200, [self.github.asset_json(a) for a in window], headers)

    def get_asset(self, token: str, repo: FakeRepo, parts: list, query: dict, body: bytes) -> None:
        """GET …/releases/assets/{id}: JSON, or with Accept: application/octet-stream "The API will either
        redirect the client to the location, or stream it directly … handle both a 200 or 302" (REST docs,
        Get a release asset). The redirect's URL is always a good one."""
        github = self.github
        asset = repo.asset(parts[2], token)
        if asset is None:
            return self.not_found()
        if "application/octet-stream" not in (self.headers.get("Accept") or ""):
            return self.reply_json(200, github.asset_json(asset))
        if github.asset_route_streams:
            return self.send_asset(asset, {"Content-Type": "application/octet-stream"})
        self.reply(302, b"", {"Location": github.signed_url(asset["id"])})

    # -- REST writes

    def create_release(self, token: str, repo: FakeRepo, parts: list, query: dict, body: bytes) -> None:
        """POST …/releases: `draft` honoured; a tag held by a published release or burnt by an immutable
        one is refused (immutable-releases docs; community discussion #178351)."""
        if self.refuse_unless_writer(token, repo):
            return
        fields = json.loads(body or b"{}")
        tag = fields.get("tag_name", "")
        problem = self.tag_problem(repo, tag, None)
        if problem:
            return self.validation_failed(problem, "https://docs.github.com/rest/releases/releases#create-a-release")
        release = repo.add_release(tag, {}, draft=bool(fields.get("draft", False)), created=iso(self.github.clock()),
                                   prerelease=bool(fields.get("prerelease", False)), name=fields.get("name"))
        release["description"] = fields.get("body")
        answer = self.github.release_json(release)
        self.reply_json(201, answer, {"Location": answer["url"]})

    def tag_problem(self, repo: FakeRepo, tag: str, release: dict | None) -> dict | None:
        """Why `tag` cannot be published: burnt by an immutable release ("tag_name was used by an immutable
        release", github-community-projects/ospo-reusable-workflows#83), or held by another release."""
        if tag in repo.burnt_tags:
            return {"resource": "Release", "code": "custom", "field": "tag_name",
                    "message": "tag_name was used by an immutable release"}
        if any(r is not release and r["tagName"] == tag and not r["isDraft"] for r in repo.releases):
            return {"resource": "Release", "code": "already_exists", "field": "tag_name"}
        return None

    def update_release(self, token: str, repo: FakeRepo, parts: list, query: dict, body: bytes) -> None:
        """PATCH …/releases/{id}: draft, prerelease, name, body, tag_name. Publishing a draft on an immutable
        repo makes it immutable; an immutable release keeps its tag and cannot go back to draft, while
        "you can still edit the title and release notes … pre-release" (GHES 3.21 docs;
        github/docs#45730)."""
        github = self.github
        if self.refuse_unless_writer(token, repo):
            return
        release = repo.release(parts[1], token)
        if release is None:
            return self.not_found()
        fields, docs = json.loads(body or b"{}"), "https://docs.github.com/rest/releases/releases#update-a-release"
        tag = fields.get("tag_name", release["tagName"])
        if release["immutable"] and (tag != release["tagName"] or fields.get("draft") is True):
            # Refused (github/docs#45730: "tag move rejected"); the exact text is not known.
            return self.validation_failed({"resource": "Release", "code": "custom", "field": "tag_name",
                                           "message": "Cannot modify an immutable release"}, docs)
        publishing = release["isDraft"] and fields.get("draft") is False
        if publishing or (not release["isDraft"] and tag != release["tagName"]):
            problem = self.tag_problem(repo, tag, release)
            if problem:
                return self.validation_failed(problem, docs)
        now = iso(github.clock())
        release.update(tagName=tag, updatedAt=now, name=fields.get("name", release["name"]),
                       description=fields.get("body", release["description"]),
                       isPrerelease=bool(fields.get("prerelease", release["isPrerelease"])))
        if publishing:
            repo.publish(release, now)
        elif fields.get("draft") is True:
            release["isDraft"] = True
        self.reply_json(200, github.release_json(release))

    def delete_release(self, token: str, repo: FakeRepo, parts: list, query: dict, body: bytes) -> None:
        """DELETE …/releases/{id}: allowed, even when immutable; its tag is then burnt
        (immutable-releases docs)."""
        github = self.github
        if self.refuse_unless_writer(token, repo):
            return
        release = repo.release(parts[1], token)
        if release is None:
            return self.not_found()
        github.remove_release(repo, release)
        if release["everPublished"]:
            github.deleted_published.append(release["tagName"])
        if release["immutable"]:
            repo.burnt_tags.add(release["tagName"])
        self.reply(204, b"")

    def delete_asset(self, token: str, repo: FakeRepo, parts: list, query: dict, body: bytes) -> None:
        """DELETE …/releases/assets/{id}; not on an immutable release ("Release assets cannot be modified
        or deleted", immutable-releases docs; text from a public measurement table, status 422 assumed)."""
        github = self.github
        if self.refuse_unless_writer(token, repo):
            return
        asset = repo.asset(parts[2], token)
        if asset is None:
            return self.not_found()
        if asset["release"]["immutable"]:
            return self.reply_json(422, {"message": "Cannot delete asset from an immutable release.", "documentation_url": REST_DOCS})
        github.remove_asset(asset)
        github.deleted_assets.append(asset["name"])
        self.reply(204, b"")

    def upload_asset(self, token: str, repo: FakeRepo, parts: list, query: dict, body: bytes) -> None:
        """POST uploads…/releases/{id}/assets?name=: stored under GitHub's renamed name (Upload docs)."""
        github = self.github
        if self.refuse_unless_writer(token, repo):
            return
        release = repo.release(parts[1], token)
        if release is None:
            return self.not_found()
        if release["immutable"]:  # softprops/action-gh-release#653, concourse/github-release-resource#151
            return self.reply_json(422, {"message": "Cannot upload assets to an immutable release.", "documentation_url": REST_DOCS})
        name = stored_asset_name(query.get("name", ""))
        if any(a["name"] == name for a in release["assets"]):  # "you'll receive an error and must delete the old file"
            return self.validation_failed({"resource": "ReleaseAsset", "code": "already_exists", "field": "name"},
                                          "https://docs.github.com/rest/releases/assets#upload-a-release-asset")
        if github.fail_uploads == "starter":  # "502 Bad Gateway … may leave an empty asset with a state of starter"
            asset = github.add_asset(repo, release, name, b"", iso(github.clock()), state="starter")
            asset["digest"] = None
            return self.reply_json(502, {"message": "Bad Gateway"})
        if github.fail_uploads:
            return self.reply_json(500, {"message": "Server Error"})
        asset = github.add_asset(repo, release, name, body, iso(github.clock()),
                                 content_type=self.headers.get("Content-Type") or "application/octet-stream")
        if github.upload_delay:
            time.sleep(github.upload_delay)
        self.reply_json(201, github.asset_json(asset))

    # -- download hosts

    def browser_download(self, path: str) -> None:
        """github.com/{owner}/{repo}/releases/download/{tag}/{name}: a public repo's asset redirects to a
        signed URL (different-ai/openwork#3131); token requests for private repos get 404 (REFERENCE.md)."""
        github, parts = self.github, [urllib.parse.unquote(p) for p in path.split("/")]
        repo = None
        if len(parts) == 7 and parts[3:5] == ["releases", "download"]:
            key = (parts[1].lower(), parts[2].lower())
            repo = github.repos.get(key) or github.moved.get(key)
        published = repo.listed_releases("") if repo is not None and not repo.private else []
        asset = next((a for r in published if r["tagName"] == parts[5] for a in r["assets"] if a["name"] == parts[6]), None)
        if asset is None:
            return self.reply(404, b"Not Found")
        self.reply(302, b"", {"Location": github.signed_url(asset["id"])})

    def download(self, node_id: str, query: dict, style: str) -> None:
        github = self.github
        if self.headers.get("Authorization"):
            return self.reply(400, b"<Error><Code>InvalidArgument</Code><Message>Only one auth mechanism allowed</Message></Error>")
        if self.command == "HEAD" and github.refuse_head:  # a presigned GET URL does not sign HEAD (cavaliergopher/grab#43)
            return self.reply(403, b"")
        refusal = github.amz_refusal(node_id, query) if style == "amz" else github.sas_refusal(node_id, query)
        if refusal is not None:
            return self.reply(403, refusal, {"Content-Type": "application/xml"})
        asset = github.assets.get(node_id)
        if asset is None:  # signed before the asset was deleted
            code = b"NoSuchKey" if style == "amz" else b"BlobNotFound"
            return self.reply(404, b"<Error><Code>" + code + b"</Code></Error>", {"Content-Type": "application/xml"})
        server = {"Server": "Windows-Azure-Blob/1.0"} if style == "sas" else {}  # gm3dmo/the-power#393
        self.send_asset(asset, {"Content-Type": "application/octet-stream", "Accept-Ranges": "bytes", **server})

    def send_asset(self, asset: dict, headers: dict) -> None:
        """An asset's bytes, honouring one Range."""
        github = self.github
        content, byte_range, size = asset["content"], self.headers.get("Range"), asset["size"]
        if github.hold_downloads is not None:
            github.hold_downloads.wait(10)
        if self.command == "GET":
            with github.lock:
                github.downloads.append((asset["name"], byte_range))
                asset["downloadCount"] += 1
        headers = {**headers, "ETag": f'"{asset["id"][-12:]}-{size}"', "Last-Modified": "Thu, 01 Jan 2026 00:00:00 GMT"}
        lo, hi, status = 0, size - 1, 200
        if byte_range and byte_range.startswith("bytes=") and not github.ignore_range:
            first, _, last = byte_range[len("bytes="):].partition("-")
            if not first:
                first, last = str(max(0, size - int(last))), str(size - 1)
            lo, hi, status = int(first), min(int(last) if last else size - 1, size - 1), 206
            headers["Content-Range"] = f"bytes {lo}-{hi}/{size}"
        if self.command == "GET":
            with github.lock:
                github.bytes_served += hi - lo + 1
        if isinstance(content, bytes) and github.cut_downloads and self.command == "GET":
            return self.send_cut(status, content[lo:hi + 1], headers)
        if isinstance(content, bytes) and github.no_length and self.command == "GET":
            return self.send_unlengthed(status, content[lo:hi + 1], headers)
        if isinstance(content, bytes):
            return self.reply(status, content[lo:hi + 1], headers)
        self.send_file(status, content, lo, hi - lo + 1, headers)

    def send_unlengthed(self, status: int, body: bytes, headers: dict) -> None:
        """A host that gives no length and ends the body by closing the connection (RFC 9112 6.3)."""
        self.close_connection = True
        self.send_response(status)
        for name, value in {**headers, "Connection": "close"}.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def send_cut(self, status: int, body: bytes, headers: dict) -> None:
        """A download host that stops halfway and hangs up: after its full Content-Length
        ("length"), or in the middle of a chunked body, without the last chunk ("chunked")."""
        self.close_connection = True
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        half = body[: len(body) // 2]
        if self.github.cut_downloads == "length":
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(half)
            return
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        self.wfile.write(b"%x\r\n%s\r\n" % (len(half), half))

    def send_file(self, status: int, path: Path, offset: int, length: int, headers: dict) -> None:
        self.send_response(status)
        for name, value in {**headers, "Content-Length": str(length)}.items():
            self.send_header(name, value)
        self.end_headers()
        if self.command == "HEAD":
            return
        with open(path, "rb") as file:
            file.seek(offset)
            while length > 0:
                chunk = file.read(min(length, 1 << 20))
                if not chunk:
                    break
                self.wfile.write(chunk)
                length -= len(chunk)


class FakeGitHub:
    """GitHub's GraphQL and REST APIs and download hosts, as far as PyPIHub can tell."""

    def __init__(self) -> None:
        self.repos: dict[tuple[str, str], FakeRepo] = {}  # (owner, name), lower case
        self.repos_by_id: dict[int, FakeRepo] = {}
        self.moved: dict[tuple[str, str], FakeRepo] = {}  # old (owner, name) -> repo, after transfer()
        self.owners: set[str] = set()  # logins, lower case
        self.assets: dict[str, dict] = {}  # node id -> asset
        self.release_nodes: dict[str, dict] = {}  # node id -> release
        self.tokens = {TOKEN_A: "alice", TOKEN_B: "bob"}  # token -> user; see add_token()
        # ghs_ tokens: only their repos, or public ones too (docs "GITHUB_TOKEN")
        self.installation_tokens_see_public = False
        self.secret = os.urandom(16)
        self.clock = time.time  # "now" for signed URLs, new releases and assets, x-ratelimit-reset
        self.serial = 0
        self.lock = threading.Lock()
        # Download URLs: "amz" objects.githubusercontent.com (S3-style), "sas" release-assets
        # .githubusercontent.com (Azure SAS + JWT), "plain" the browser URL (see the note above the fake).
        self.url_style = "sas"  # GitHub's download host since 2025 (plengauer/Thoth#3996)
        self.url_lifetime = 300  # amz: X-Amz-Expires (gm3dmo/the-power#393)
        self.se_lifetime = 3600  # sas: se and ske, ~1 h after signing (plengauer/Thoth#3996)
        self.jwt_lifetime: int | None = 300  # sas: jwt exp - nbf, 300/1800/3600 s in logs; None: no jwt
        self.broken_graphql_urls = False  # GraphQL's URLs carry a bad signature; the REST asset route's are good
        self.refuse_head = False  # the download host answers HEAD with 403 (S3 presigned URLs: GET only)
        self.cut_downloads: str | None = None  # "length" or "chunked": the host sends half and hangs up
        self.no_length = False  # the host sends no Content-Length and closes after the body
        self.graphql_bytes = 0  # the size of GraphQL's successful answers
        self.asset_route_streams = False  # the REST asset route answers 200 with the bytes instead of 302
        self.ignore_range = False
        # What happened
        self.graphql_calls: list[tuple[str, str]] = []  # (token, operation)
        self.downloads: list[tuple[str, str | None]] = []  # (filename, Range)
        self.bytes_served = 0  # by the download host (and the REST asset route when it streams)
        self.rest_calls: list[tuple[str, str]] = []  # (token, path) of REST reads
        self.writes: list[tuple[str, str]] = []  # (method, path) of release and asset writes
        self.deleted_assets: list[str] = []  # names
        self.deleted_published: list[str] = []  # tags of deleted releases that had been published
        self.in_flight: dict[str, int] = {}
        self.max_concurrent: dict[str, int] = {}  # token -> most API requests (GraphQL + REST) at once
        self.invalid_queries: list[tuple[str, list[str]]] = []
        self.crashes: list[str] = []
        # Faults and limits
        self.rest_enabled = True  # False: an older GitHub Enterprise Server without the releases list
        self.legacy_schema = False  # True: an older GHES whose schema lacks ReleaseAsset.digest, Release.immutable
        self.legacy_status = 200  # the HTTP status of its refusal (200 seen in client logs; unconfirmed)
        self.schema_refusals = 0  # queries it refused for fields it lacks
        self.scopes: dict[str, str] = {}  # a classic token's X-OAuth-Scopes (default "repo")
        # GraphQL resource limits (changelog 2025-09-01 "GraphQL API resource limits": queries over them may
        # "return partial results with errors"): a listing query asking for more than this many releases x
        # assets is answered partly, its repository null, with RESOURCE_LIMITS_EXCEEDED
        # (yoshi389111/github-profile-3d-contrib#163: "Resource limits for this query exceeded.").
        self.resource_limit: int | None = None
        self.fail_uploads: bool | str = False  # True: 500; "starter": 502 leaving a `starter` (Upload docs)
        self.upload_delay = 0.0  # seconds an upload waits after storing the asset, before answering
        self.faults: list = []  # consumed one per GraphQL call: an HTTP status, "timeout", "garbage", "secondary403|429|200"
        self.rest_faults: list = []  # consumed one per REST call, the same values
        self.rate_limited = False
        self.rate_limit_type = "RATE_LIMITED"  # or "RATE_LIMIT" (yanyongyu/githubkit#271)
        self.remaining = 4999  # x-ratelimit-remaining on successful answers
        self.sso_blocked: set[tuple[str, str]] = set()  # (token, org): token not authorized for the org's SAML SSO
        self.gate: threading.Event | None = None  # when set, GraphQL calls wait for it
        self.hold_downloads: threading.Event | None = None  # when set, the download host waits for it
        self.latency = 0.0  # seconds each GraphQL call takes
        # api.github.com, and the download hosts (objects. / release-assets.githubusercontent.com)
        # on a host of their own, as GitHub's are: a redirect there is no API redirect, and credentials
        # a client keeps for the index's host (netrc matches a host, not a port) do not go there.
        self.server, self.download_server = self.serve("127.0.0.1"), self.serve("127.0.0.2")
        self.base = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.download_base = f"http://127.0.0.2:{self.download_server.server_address[1]}"

    def serve(self, host: str) -> ThreadingHTTPServer:
        server = ThreadingHTTPServer((host, 0), FakeHandler)
        server.daemon_threads = True
        server.handle_error = lambda request, address: None  # clients that hang up are normal here
        server.github = self
        return server

    @property
    def graphql_url(self) -> str:
        return self.base + "/graphql"

    def start(self) -> "FakeGitHub":
        for server in (self.server, self.download_server):
            threading.Thread(target=server.serve_forever, args=(POLL,), daemon=True).start()
        return self

    def stop(self) -> None:
        for server in (self.server, self.download_server):
            server.shutdown()
            server.server_close()

    # -- repos, tokens, releases, assets

    def next_serial(self) -> int:
        with self.lock:
            self.serial += 1
            return self.serial

    def new_id(self, prefix: str) -> str:
        serial = self.next_serial()
        if serial % 2:  # GitHub's legacy node ids are Base64 and may hold "/", "+" and "="
            return base64.b64encode(f"0{serial}:Release{prefix}{serial}?>".encode()).decode()
        return f"{prefix}_kwDOfake{serial:06d}"

    def add_repo(self, name: str, owner: str = OWNER, private: bool = True,
                 readers=(TOKEN_A,), writers=(TOKEN_A,), immutable: bool = False) -> FakeRepo:
        repo = FakeRepo(self, owner, name, private, readers, writers, immutable)
        self.place(repo)
        self.repos_by_id[repo.database_id] = repo
        return repo

    def place(self, repo: FakeRepo) -> None:
        key = (repo.owner.lower(), repo.name.lower())
        # Reusing a moved-away name ends its redirect (docs "Renaming a repository").
        self.moved.pop(key, None)
        self.repos[key] = repo
        self.owners.add(repo.owner.lower())

    def transfer(self, repo: FakeRepo, new_owner: str, new_name: str | None = None) -> None:
        """Move a repo to another owner (and maybe name). The old name keeps working: GraphQL follows it
        (`followRenames: Boolean = true`, schema.graphql; sesori-ai/sesori_apps_monorepo#691) and REST
        answers 301 to /repositories/{id} (octokit/fixtures scenarios/api.github.com/rename-repository)."""
        old = (repo.owner.lower(), repo.name.lower())
        del self.repos[old]
        repo.owner, repo.name = new_owner, new_name or repo.name
        self.place(repo)
        self.moved[old] = repo

    def add_token(self, token: str, user: str | None = None, read=(), write=()) -> None:
        """A token GitHub knows: a personal token (ghp_…), or an installation token (ghs_…, as GITHUB_TOKEN
        is: "limited to the repository that contains your workflow", docs "GITHUB_TOKEN") that sees the
        repos given here, and others' private repos not at all."""
        self.tokens[token] = user or f"user-{token[:8]}"
        for repo in (*read, *write):
            repo.readers.add(token)
        for repo in write:
            repo.writers.add(token)

    def sees_public(self, token: str) -> bool:
        return not token.startswith("ghs_") or self.installation_tokens_see_public

    def add_asset(self, repo: FakeRepo, release: dict, filename: str, content: bytes | Path, created: str,
                  state: str = "uploaded", content_type: str = "application/octet-stream") -> dict:
        """An asset whose bytes are `content`, or the file at that path (for big ones). state="starter":
        what a failed upload leaves behind ("an empty asset with a state of `starter`", Upload docs)."""
        node_id = self.new_id("RA")
        size = content.stat().st_size if isinstance(content, Path) else len(content)
        asset = {"__typename": "ReleaseAsset", "id": node_id, "databaseId": self.next_serial(), "name": filename,
                 "label": None, "state": state, "size": size, "createdAt": created, "updatedAt": created,
                 "contentType": content_type, "downloadCount": 0, "content": content, "release": release, "repo": repo,
                 # GitHub's REST digest; assets uploaded before June 2025 have none (as big test files here).
                 "digest": f"sha256:{hashlib.sha256(content).hexdigest()}" if isinstance(content, bytes) else None,
                 "url": lambda info: self.graphql_asset_url(node_id),
                 "downloadUrl": lambda info: self.browser_url(asset)}
        release["assets"].append(asset)
        self.assets[node_id] = asset
        return asset

    def remove_asset(self, asset: dict) -> None:
        asset["release"]["assets"].remove(asset)
        self.assets.pop(asset["id"], None)

    def remove_release(self, repo: FakeRepo, release: dict) -> None:
        for asset in list(release["assets"]):
            self.remove_asset(asset)
        repo.releases.remove(release)
        self.release_nodes.pop(release["id"], None)

    # -- REST JSON (OpenAPI `release` and `release-asset` schemas)

    def asset_json(self, asset: dict) -> dict:
        repo = asset["repo"]
        return {"url": f"{self.base}/repos/{repo.owner}/{repo.name}/releases/assets/{asset['databaseId']}",
                "browser_download_url": self.browser_url(asset), "id": asset["databaseId"], "node_id": asset["id"],
                "name": asset["name"], "label": asset["label"], "state": asset["state"],
                "content_type": asset["contentType"], "size": asset["size"], "digest": asset["digest"],
                "download_count": asset["downloadCount"], "created_at": asset["createdAt"],
                "updated_at": asset["updatedAt"]}

    def release_json(self, release: dict) -> dict:
        repo, number = release["repo"], release["databaseId"]
        api = f"{self.base}/repos/{repo.owner}/{repo.name}/releases/{number}"
        return {"url": api, "assets_url": f"{api}/assets",
                "upload_url": f"{self.base}/uploads/repos/{repo.owner}/{repo.name}/releases/{number}/assets{{?name,label}}",
                "html_url": f"{self.base}/{repo.owner}/{repo.name}/releases/tag/{urllib.parse.quote(release['tagName'])}",
                "id": number, "node_id": release["id"], "tag_name": release["tagName"], "name": release["name"],
                "body": release["description"], "draft": release["isDraft"], "prerelease": release["isPrerelease"],
                # OpenAPI `release.immutable` (github/rest-api-description):
                # "Whether or not the release is immutable."
                "immutable": release["immutable"], "created_at": release["createdAt"],
                "updated_at": release["updatedAt"], "published_at": release["publishedAt"],
                "assets": [self.asset_json(a) for a in release["assets"]]}

    # -- download URLs (as logged in the threads named in the note above the fake)

    def signature(self, node_id: str, *fields: str) -> str:
        return hmac.new(self.secret, "|".join((node_id, *fields)).encode(), hashlib.sha256).hexdigest()

    def signed_url(self, node_id: str, broken: bool = False) -> str:
        """A fresh signed download URL in the current style ("plain" has none: GitHub's own hosts then)."""
        if self.url_style == "amz":
            return self.amz_url(node_id, broken)
        return self.sas_url(node_id, broken)

    def graphql_asset_url(self, node_id: str) -> str:
        """ReleaseAsset.url as GraphQL hands it out."""
        if self.url_style == "plain":
            return self.browser_url(self.assets[node_id])
        return self.signed_url(node_id, broken=self.broken_graphql_urls)

    def browser_url(self, asset: dict) -> str:
        """browser_download_url / ReleaseAsset.downloadUrl: github.com/{owner}/{repo}/releases/download/{tag}/{name}."""
        repo, tag = asset["repo"], asset["release"]["tagName"]
        return f"{self.base}/{repo.owner}/{repo.name}/releases/download/{urllib.parse.quote(tag, safe='')}/{urllib.parse.quote(asset['name'])}"

    def amz_url(self, node_id: str, broken: bool = False) -> str:
        """objects.githubusercontent.com: X-Amz-Date + X-Amz-Expires (gm3dmo/the-power#393, 2025-05)."""
        date = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(self.clock()))
        expires = str(self.url_lifetime)
        signature = self.signature(node_id, date, "bad" if broken else expires)
        query = urllib.parse.urlencode({"X-Amz-Algorithm": "AWS4-HMAC-SHA256", "X-Amz-Date": date,
                                        "X-Amz-Expires": expires, "X-Amz-Signature": signature})
        return f"{self.download_base}/download/{urllib.parse.quote(node_id, safe='')}?{query}"

    def sas_url(self, node_id: str, broken: bool = False) -> str:
        """release-assets.githubusercontent.com: an Azure SAS (se, ske) plus a short JWT; the URL works
        until the earlier of the two (wget logs in plengauer/Thoth#3748, #3996)."""
        now = self.clock()
        se = ske = iso(now + self.se_lifetime)
        jwt = self.jwt(now) if self.jwt_lifetime is not None else ""
        sig = base64.b64encode(bytes.fromhex(self.signature(node_id, se, ske, "bad" if broken else jwt))).decode()
        disposition = f"attachment; filename={self.assets[node_id]['name'] if node_id in self.assets else ''}"
        query = [("sp", "r"), ("sv", "2018-11-09"), ("sr", "b"), ("spr", "https"), ("se", se),
                 ("rscd", disposition), ("rsct", "application/octet-stream"),
                 ("skoid", "96c2d410-5711-43a1-aedd-ab1947aa7ab0"), ("sktid", "398a6654-997b-47e9-b12b-9515b896b4de"),
                 ("skt", iso(now)), ("ske", ske), ("sks", "b"), ("skv", "2018-11-09"), ("sig", sig)]
        query += [("jwt", jwt)] if jwt else []
        query += [("response-content-disposition", disposition), ("response-content-type", "application/octet-stream")]
        return f"{self.download_base}/release-assets/{urllib.parse.quote(node_id, safe='')}?{urllib.parse.urlencode(query)}"

    def jwt(self, now: float) -> str:
        """HS256 JWT with the claims of logged URLs (no public thread shows one whole)."""
        claims = {"iss": "github.com", "aud": "release-assets.githubusercontent.com", "key": "key1",
                  "exp": int(now + self.jwt_lifetime), "nbf": int(now), "path": "releaseassetproduction.blob.core.windows.net"}
        signed = f"{JWT_HEADER}.{b64url(json.dumps(claims, separators=(',', ':')).encode())}"
        return f"{signed}.{b64url(hmac.new(self.secret, signed.encode(), hashlib.sha256).digest())}"

    def amz_refusal(self, node_id: str, query: dict) -> bytes | None:
        """S3's 403 bodies for a bad or expired presigned URL; None when it is good."""
        try:
            date, expires = query["X-Amz-Date"], query["X-Amz-Expires"]
            good = hmac.compare_digest(self.signature(node_id, date, expires), query["X-Amz-Signature"])
            start = datetime.datetime.strptime(date, "%Y%m%dT%H%M%SZ").replace(tzinfo=datetime.timezone.utc)
            expired = self.clock() > start.timestamp() + int(expires)
        except (KeyError, ValueError):
            good, expired = False, False
        if not good:
            return b"<Error><Code>SignatureDoesNotMatch</Code></Error>"
        if expired:
            return b"<Error><Code>AccessDenied</Code><Message>Request has expired</Message></Error>"
        return None

    def sas_refusal(self, node_id: str, query: dict) -> bytes | None:
        """Azure's 403 for a bad SAS, or one used outside [nbf, min(se, ske, jwt.exp)); None when good."""
        now = self.clock()
        try:
            jwt = query.get("jwt", "")
            good = hmac.compare_digest(self.signature(node_id, query["se"], query["ske"], jwt),
                                       base64.b64decode(query["sig"]).hex())
            window = [from_iso(query["skt"]), min(from_iso(query["se"]), from_iso(query["ske"]))]
            if jwt:
                signed, _, signature = jwt.rpartition(".")
                good = good and hmac.compare_digest(b64url(hmac.new(self.secret, signed.encode(), hashlib.sha256).digest()), signature)
                claims = json.loads(base64.urlsafe_b64decode(signed.split(".")[1] + "=="))
                window = [max(window[0], claims["nbf"]), min(window[1], claims["exp"])]
        except (KeyError, ValueError, IndexError):
            good = False
        if not good:
            return AZURE_AUTH_FAILED.format(now=iso(now), detail="Signature did not match.").encode()
        if not window[0] <= now < window[1]:
            detail = (f"Signature not valid in the specified time frame: Start [{http_date(window[0])}] - "
                      f"Expiry [{http_date(window[1])}] - Current [{http_date(now)}]")
            return AZURE_AUTH_FAILED.format(now=iso(now), detail=detail).encode()
        return None

    # -- SAML SSO (docs "Authenticating to the REST API"; SAML_DOCS)

    def sso_refuses(self, token: str, owner: str) -> bool:
        return any(t == token and o.lower() == owner.lower() for t, o in self.sso_blocked)

    def sso_header(self, token: str, owner: str) -> str:
        """`X-GitHub-SSO: required; url=…` (docs "Authenticating to the REST API"; the URL "expires after one hour")."""
        request = b64url(hmac.new(self.secret, f"{token}|{owner}".encode(), hashlib.sha256).digest())[:40]
        return f"required; url=https://github.com/orgs/{owner}/sso?authorization_request={request}"

    # -- rate limits

    def rate_headers(self, resource: str, remaining: int | None = None) -> dict:
        """x-ratelimit-* on every answer; `resource` is graphql or core (GraphQL rate-limit docs)."""
        left = self.remaining if remaining is None else remaining
        return {"x-ratelimit-limit": "5000", "x-ratelimit-remaining": str(left), "x-ratelimit-used": str(5000 - left),
                "x-ratelimit-reset": str(int(self.clock()) + 1800), "x-ratelimit-resource": resource}

    def primary_limit(self) -> dict:
        """200 with a rate error: type RATE_LIMITED (octokit/plugin-throttling.js) or RATE_LIMIT with
        code graphql_rate_limit (yanyongyu/githubkit#271)."""
        if self.rate_limit_type == "RATE_LIMIT":
            return {"type": "RATE_LIMIT", "code": "graphql_rate_limit",
                    "message": "API rate limit already exceeded for user ID 1."}
        return {"type": self.rate_limit_type, "message": "API rate limit exceeded for user ID 1."}

    def enter(self, token: str) -> None:
        """Count an API request in flight; the secondary limits cap them at 100 at once, shared by REST
        and GraphQL (REST rate-limit docs)."""
        with self.lock:
            running = self.in_flight[token] = self.in_flight.get(token, 0) + 1
            self.max_concurrent[token] = max(self.max_concurrent.get(token, 0), running)

    def leave(self, token: str) -> None:
        with self.lock:
            self.in_flight[token] -= 1

    # -- GraphQL

    def root(self) -> dict:
        return {"repository": self.resolve_repository, "node": self.resolve_node,
                "nodes": self.resolve_nodes, "repositoryOwner": self.resolve_owner,
                "viewer": self.resolve_viewer, "rateLimit": self.resolve_rate_limit}

    def resolve_viewer(self, info):
        """Query.viewer: "The currently authenticated user." An installation token's viewer is its App's
        bot (e.g. github-actions[bot] for GITHUB_TOKEN); whether GitHub answers it is not documented, so
        pypihub check takes either."""
        token = info.context["token"]
        return {"__typename": "User", "login": "github-actions[bot]" if token.startswith("ghs_") else self.tokens[token]}

    def resolve_rate_limit(self, info, dryRun: bool = False):
        """Query.rateLimit: limit, remaining and resetAt (GraphQL rate-limit docs)."""
        return {"limit": 5000, "remaining": self.remaining, "used": 5000 - self.remaining, "cost": 1, "nodeCount": 0,
                "resetAt": iso(self.clock() + 1800)}

    def refused(self, info, kind: str, message: str, owner: str | None = None) -> None:
        """Note a NOT_FOUND, or a SAML FORBIDDEN when `owner` is given, for this field; the field is null.
        SAML: 200, the field null, errors[].type FORBIDDEN with extensions.saml_failure
        (fwouts/prmonitor#1042, jasperapp/jasper#187)."""
        error = {"type": kind, "path": info.path.as_list(), "message": message}
        if owner is not None:
            error["extensions"] = {"saml_failure": True}
            info.context["sso"].append(owner)
        info.context["errors"].append(error)

    def resolve_repository(self, info, owner: str, name: str, followRenames: bool = True):
        token, key = info.context["token"], (owner.lower(), name.lower())
        repo = self.repos.get(key) or (self.moved.get(key) if followRenames else None)
        if repo is None or not repo.visible_to(token):
            return self.refused(info, "NOT_FOUND", f"Could not resolve to a Repository with the name '{owner}/{name}'.")
        if self.sso_refuses(token, repo.owner):
            return self.refused(info, "FORBIDDEN", SAML_GRAPHQL, repo.owner)
        return repo.node()

    def resolve_nodes(self, info, ids: list):
        """Query.nodes: "Lookup nodes by a list of IDs"; one not visible is null, with a NOT_FOUND error
        for it, as for node (GitHub's GraphQL reference, "Global node IDs")."""
        return [self.resolve_node(info, node_id) for node_id in ids]

    def resolve_node(self, info, id: str):
        token = info.context["token"]
        found = self.assets.get(id) or self.release_nodes.get(id)
        if found is None or not found["repo"].visible_to(token):
            return self.refused(info, "NOT_FOUND", f"Could not resolve to a node with the global id of '{id}'")
        if self.sso_refuses(token, found["repo"].owner):
            return self.refused(info, "FORBIDDEN", SAML_GRAPHQL, found["repo"].owner)
        return found

    def resolve_owner(self, info, login: str):
        token = info.context["token"]
        if login.lower() not in self.owners:
            return self.refused(info, "NOT_FOUND", f"Could not resolve to a RepositoryOwner with the login of '{login}'.")
        if self.sso_refuses(token, login):
            return self.refused(info, "FORBIDDEN", SAML_GRAPHQL, login)
        repos = [r for r in self.repos.values() if r.owner.lower() == login.lower() and r.visible_to(token)]
        nodes = [r.node() for r in reversed(repos)]  # most recently created/pushed first
        return {"__typename": "Organization", "login": login,
                "repositories": lambda info, **a: paginate(nodes, a, "repositories")}

    def execute(self, token: str, body: dict, headers: dict | None = None) -> dict:
        """One GraphQL request: validated against GitHub's schema, then run; extra answer headers go to `headers`."""
        import graphql

        query = body.get("query", "")
        problems = schema_errors(query)
        if problems:
            self.invalid_queries.append((query, problems))
            return {"errors": [{"message": m} for m in problems]}
        if self.legacy_schema and undefined_field_errors(query):
            with self.lock:
                self.schema_refusals += 1
            return {"errors": undefined_field_errors(query)}
        context = {"token": token, "errors": [], "sso": []}
        variables = body.get("variables") or {}
        result = graphql.execute(legacy_schema() if self.legacy_schema else github_schema(), graphql.parse(query),
                                 root_value=self.root(), context_value=context, variable_values=variables)
        errors = context["errors"] + [{"message": e.message, "path": e.path} for e in result.errors or []]
        answer: dict = {"data": result.data}
        asked = variables.get("releases", 1) * variables.get("assets", 1)
        if self.resource_limit is not None and asked > self.resource_limit and result.data:
            answer["data"] = {alias: None for alias in result.data}
            errors += [{"type": "RESOURCE_LIMITS_EXCEEDED", "path": [alias], "message": "Resource limits for this query exceeded."}
                       for alias in result.data]
        if errors:
            answer["errors"] = errors
        if context["sso"] and headers is not None:
            headers["X-GitHub-SSO"] = self.sso_header(token, context["sso"][0])
        return answer


def rest_release(github: FakeGitHub, repo: FakeRepo, release: dict) -> dict:
    """A release as GitHub's REST API shows it."""
    return github.release_json(release)


# --- Fixtures ---


@pytest.fixture(scope="session")
def schema():
    """GitHub's schema, built once (both for executing and for check_graphql's validation)."""
    assert schema_errors("query { viewer { login } }") == []
    return github_schema()


@pytest.fixture
def github(schema):
    fake = FakeGitHub().start()
    yield fake
    fake.stop()
    assert not fake.invalid_queries, f"PyPIHub sent queries GitHub's schema rejects: {fake.invalid_queries}"
    assert not fake.crashes, f"the fake GitHub crashed: {fake.crashes}"


class Response:
    def __init__(self, status: int, headers: dict, body: bytes) -> None:
        self.status, self.headers, self.body = status, headers, body

    def json(self):
        return json.loads(self.body)

    def links(self) -> list[tuple[str, str, dict]]:
        return parse_links(self.body.decode())

    def __repr__(self) -> str:
        return f"<Response {self.status} {self.body[:200]!r}>"


class Hub:
    """A running PyPIHub server and what it logged."""

    def __init__(self, settings: pypihub.Settings, clock: Clock, own_token: pypihub.TokenSource | None = None) -> None:
        self.logs: list[str] = []
        self.clock = clock
        self.pauses: list[float] = []  # the waits between GitHub retries, taken at once
        self.server = pypihub.build_server(settings, clock=clock, sleep=self.pauses.append, sink=self.logs.append, strict=True,
                                            own_token=own_token)
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.thread = threading.Thread(target=self.server.serve_forever, args=(POLL,), daemon=True)
        self.thread.start()
        self.answers: list[bytes] = []

    def logged(self) -> int:
        """Requests logged so far (the access log and the request metrics are written together)."""
        return sum(self.server.events.metrics.requests.values())

    def index_url(self, token: str = TOKEN_A, owner: str = OWNER) -> str:
        return f"http://{owner}:{token}@127.0.0.1:{self.port}/simple/"

    def request(self, path: str, token: str | None = TOKEN_A, owner: str = OWNER, method: str = "GET",
                headers: dict | None = None, auth: str | None = None, body: bytes | None = None,
                timeout: float = 40) -> Response:
        logged = self.logged()
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        sent = dict(headers or {})
        if auth is not None:
            sent["Authorization"] = auth
        elif token is not None:
            sent["Authorization"] = basic(f"{owner}:{token}")
        connection.request(method, path, body=body, headers=sent)
        answer = connection.getresponse()
        response = Response(answer.status, {k.lower(): v for k, v in answer.getheaders()}, answer.read())
        connection.close()
        self.answers.append(repr(response.headers).encode() + response.body)
        wait_until(lambda: self.logged() > logged, 30)  # each request is logged after its body is sent
        self.server.events.flush()  # ... by the log's writer thread
        return response

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def clock(github):
    """The test's clock, shared by PyPIHub and the fake GitHub (signed URLs, new timestamps, rate-limit resets)."""
    clock = Clock()
    github.clock = clock
    return clock


@pytest.fixture
def make_hub(github, clock):
    hubs: list[Hub] = []

    def start(own_token: pypihub.TokenSource | None = None, **overrides) -> Hub:
        if overrides.get("fallback_index"):  # Settings: --fallback-index needs --owner
            overrides.setdefault("owners", (OWNER,))
        settings = pypihub.Settings(**{"host": "127.0.0.1", "port": 0, "graphql_url": github.graphql_url,
                                       "upstream_timeout": 30.0, **overrides})
        hub = Hub(settings, clock, own_token)
        hubs.append(hub)
        return hub

    yield start
    for hub in hubs:
        hub.stop()
        # No token may reach a log line or anything a client was sent.
        written = "\n".join(hub.logs).encode() + b"".join(hub.answers)
        for token in ALL_TOKENS:
            assert token.encode() not in written, "a token leaked into a log line or an answer"
            # nor any part of a 2026 installation token (a redaction cut at its first dot would leave the rest)
            assert not [part for part in token.split(".") if len(part) >= 20 and part.encode() in written]


@pytest.fixture
def hub(make_hub):
    return make_hub()


def html_anchor(entry: dict, yanked: dict[str, str]) -> str:
    """A PEP 503 anchor with PEP 592/658/714 attributes, escaped as PEP 503 says."""
    attrs = ' data-requires-python="&gt;=3.8"'
    if entry["filename"] in yanked:
        attrs += f' data-yanked="{html.escape(yanked[entry["filename"]])}"' if yanked[entry["filename"]] else " data-yanked"
    core = entry.get("core-metadata")
    if core:
        attrs += f' data-core-metadata="sha256={core["sha256"]}" data-dist-info-metadata="sha256={core["sha256"]}"'
    href = html.escape(f'{entry["url"]}#sha256={entry["hashes"]["sha256"]}')
    return f'<a href="{href}"{attrs}>{html.escape(entry["filename"])}</a><br/>\n'


class FakeUpstreamHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, format, *args) -> None:
        pass

    def do_GET(self) -> None:
        upstream: FakeUpstream = self.server.upstream  # type: ignore[attr-defined]
        authorization = self.headers.get("Authorization")
        upstream.requests.append((self.path, None if upstream.credentials else authorization))
        parts = self.path.split("?")[0].strip("/").split("/")
        base = f"http://127.0.0.1:{self.server.server_address[1]}"
        if upstream.credentials and authorization != "Basic " + base64.b64encode(upstream.credentials.encode()).decode():
            return self.reply(401, b"Unauthorized", "text/plain")
        if parts[:1] == ["go"] and len(parts) == 2:
            self.send_response(302)
            self.send_header("Location", upstream.redirects[int(parts[1])])
            self.send_header("Content-Length", "0")
            return self.end_headers()
        if parts[:1] == ["simple"] and len(parts) == 2 and parts[1] in upstream.projects:
            upstream.accepts.append(self.headers.get("Accept", ""))
            if upstream.slow_head:
                return self.send_slow_head(upstream.slow_head)
            if upstream.short_page:
                body = json.dumps(upstream.page(parts[1], base)).encode()
                self.send_response(200)
                self.send_header("Content-Type", pypihub.JSON_V1)
                self.send_header("Content-Length", str(len(body) + 100))
                self.end_headers()
                self.wfile.write(body)
                self.close_connection = True
                return
            if upstream.endless_trailers:
                return self.send_endless_trailers(json.dumps(upstream.page(parts[1], base)).encode(),
                                                  upstream.endless_trailers)
            if upstream.trickle:
                return self.send_trickle(json.dumps(upstream.page(parts[1], base)).encode(), upstream.trickle)
            if "json" in self.headers.get("Accept", "") and not upstream.html_only:
                return self.reply(200, json.dumps(upstream.page(parts[1], base)).encode(), pypihub.JSON_V1)
            links = "".join(html_anchor(f, upstream.yanked) for f in upstream.page(parts[1], base)["files"])
            page = f"<!DOCTYPE html><html><head><title>Links</title></head><body><h1>Links</h1>{links}</body></html>"
            return self.reply(200, page.encode(), "text/html; charset=utf-8")
        if parts[:1] == ["files"] and len(parts) == 3 and parts[1] in upstream.projects and upstream.slow_file_head:
            return self.send_slow_head(upstream.slow_file_head)
        if parts[:1] == ["files"] and len(parts) == 3 and parts[1] in upstream.projects:
            name, metadata = parts[2].removesuffix(".metadata"), parts[2].endswith(".metadata")
            content = upstream.projects[parts[1]].get(name)
            if content is not None:
                return self.reply(200, wheel_metadata(content) if metadata else content, "application/octet-stream")
        self.reply(404, b"Not Found", "text/plain")

    def reply(self, status: int, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def send_slow_lines(self, start: bytes, name: bytes, pause: float) -> None:
        """`start`, then header (or trailer) lines `name`-N one at a time, for up to 30 s (a hostile index)."""
        try:
            self.wfile.write(start)
            for n in range(int(30 / pause)):
                self.wfile.write(b"%s-%d: yes\r\n" % (name, n))
                self.wfile.flush()
                time.sleep(pause)
        except OSError:
            pass
        self.close_connection = True

    def send_slow_head(self, pause: float) -> None:
        """A status line, then header lines that never end."""
        self.send_slow_lines(b"HTTP/1.1 200 OK\r\n", b"X-Slow", pause)

    def send_endless_trailers(self, body: bytes, pause: float) -> None:
        """The whole page as one chunk, the last chunk, then trailer lines that never end."""
        head = (b"HTTP/1.1 200 OK\r\nContent-Type: application/vnd.pypi.simple.v1+json\r\n"
                b"Transfer-Encoding: chunked\r\n\r\n%x\r\n%s\r\n0\r\n" % (len(body), body))
        self.send_slow_lines(head, b"X-Trailer", pause)

    def send_trickle(self, body: bytes, per_second: float) -> None:
        """A page that comes a byte at a time (a slow or hostile index), until the client hangs up."""
        self.send_response(200)
        self.send_header("Content-Type", pypihub.JSON_V1)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        try:
            for byte in body:
                self.wfile.write(bytes([byte]))
                self.wfile.flush()
                time.sleep(1 / per_second)
        except OSError:
            pass


class FakeUpstream:
    """A second index on loopback standing in for PyPI: PEP 691 JSON (or PEP 503 HTML) pages and
    their files; it records every request with the Authorization header it carried."""

    def __init__(self) -> None:
        self.projects: dict[str, dict[str, bytes]] = {}  # normalized name -> filename -> bytes
        self.requests: list[tuple[str, str | None]] = []  # (path, Authorization)
        # Only PEP 503 HTML, whatever the Accept: pypiserver 2.4's /simple/<p>/ (its `simple.html`
        # template: text/html, #sha256= fragments, data-requires-python), GitLab, Nexus, devpi without
        # its JSON plugin.
        self.html_only = False
        self.yanked: dict[str, str] = {}  # filename -> PEP 592 reason ("" for none) on the HTML page
        self.accepts: list[str] = []  # the Accept of each project page request
        # A hostile or compromised index: more entries on a project's page ({"filename", "url"}), URLs
        # that redirect (/go/<n> -> redirects[n]), a page that trickles (bytes a second), Basic
        # credentials it requires ("user:password").
        self.extra: dict[str, list[dict]] = {}
        self.redirects: list[str] = []
        self.trickle: float | None = None
        self.slow_head: float | None = None  # seconds between header lines that never end
        self.endless_trailers: float | None = None  # a chunked page, then trailer lines that never end
        self.slow_file_head: float | None = None  # a file's status line, then header lines that never end
        self.short_page = False  # a page whose Content-Length promises more than is sent before the close
        self.credentials: str | None = None
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), FakeUpstreamHandler)
        self.server.daemon_threads = True
        self.server.upstream = self  # type: ignore[attr-defined]
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/simple/"
        threading.Thread(target=self.server.serve_forever, args=(POLL,), daemon=True).start()

    def add(self, project: str, *dists: tuple[str, bytes]) -> None:
        self.projects.setdefault(project, {}).update(dict(dists))

    def page(self, project: str, base: str) -> dict:
        files = [{"filename": name, "url": f"{base}/files/{project}/{name}",
                  "hashes": {"sha256": hashlib.sha256(content).hexdigest()}, "size": len(content),
                  "upload-time": "2026-02-01T00:00:00Z",
                  **({"core-metadata": {"sha256": hashlib.sha256(wheel_metadata(content)).hexdigest()}}
                     if name.endswith(".whl") else {})}
                 for name, content in self.projects[project].items()]
        files += [{"hashes": {}, **entry} for entry in self.extra.get(project, [])]
        versions = sorted({name.split("-")[1] for name in self.projects[project]})
        return {"meta": {"api-version": "1.1"}, "name": project, "versions": versions, "files": files}

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class Canary(BaseHTTPRequestHandler):
    """Another service on this machine (a stand-in for a cloud metadata address): it counts whoever
    reaches it, and answers with a secret."""

    hits: list[str] = []

    def do_GET(self) -> None:
        Canary.hits.append(self.path)
        self.send_response(200)
        self.send_header("Content-Length", "13")
        self.end_headers()
        self.wfile.write(b"secret-token!")

    def log_message(self, format, *args) -> None:
        pass


@pytest.fixture
def canary():
    server = ThreadingHTTPServer(("127.0.0.1", 0), Canary)
    Canary.hits = []
    threading.Thread(target=server.serve_forever, args=(POLL,), daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.fixture
def upstream():
    """PyPI's stand-in: public-pkg 1.0, and a demo-pkg 99.0 that would shadow the private one."""
    fake = FakeUpstream()
    fake.add("public-pkg", make_wheel("public-pkg", "1.0"))
    fake.add("demo-pkg", make_wheel("demo-pkg", "99.0", value="public impostor"))
    yield fake
    fake.stop()
    assert all(auth is None for _, auth in fake.requests), "credentials reached the fallback index"


@pytest.fixture
def demo(github):
    """octorg/demo-pkg (private, readable by A): two versions, a draft, and non-Python assets."""
    repo = github.add_repo("demo-pkg")
    files = {}
    for version, created in (("1.0", "2026-01-10T12:00:00Z"), ("2.0", "2026-03-10T12:00:00Z")):
        name, content = make_wheel("demo-pkg", version)
        files[name] = content
        repo.add_release(f"v{version}", {name: content, f"demo_pkg-{version}.tar.gz": b"sdist " + version.encode(),
                                         "checksums.txt": b"x", "demo-pkg.pdf": b"%PDF",
                                         f"other_pkg-{version}-py3-none-any.whl": b"not ours"}, created=created)
    draft_name, draft = make_wheel("demo-pkg", "3.0")
    repo.add_release("v3.0", {draft_name: draft}, draft=True, created="2026-05-01T00:00:00Z")
    return repo, files


def project_files(response: Response) -> list[str]:
    if response.headers["content-type"] == pypihub.JSON_V1:
        return [f["filename"] for f in response.json()["files"]]
    return [text for _, text, _ in response.links()]


def asset_path(page: Response, filename: str) -> str:
    href = next(h for h, t, _ in page.links() if t == filename)
    return urllib.parse.urljoin("/simple/demo-pkg/", href)


def metadata_path(page: Response, filename: str) -> str:
    return asset_path(page, filename).split("#")[0] + ".metadata"


def raw_exchange(port: int, payload: bytes, timeout: float = 5, *, split: bool = False,
                 then: bytes | None = None) -> bytes:
    """What the server sends back on a connection of its own to bytes written by hand.

    By default: send payload, end the client's side, read to the end (a reset or the timeout ends it).
    split: the head goes in two parts, so that it is never all in the server's buffer when the request
    line has been read: http.server's parser reads it, not parse_head().
    then: payload is a request head. Read the server's first answer to it (up to timeout); unless that
    is a 4xx or 5xx, send `then` (a body; b"" sends nothing) and read once more. The client's side
    stays open, as a client's that waits before sending its body."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        if then is not None:
            sock.sendall(payload)
            try:
                early = sock.recv(65536)
            except (ConnectionResetError, socket.timeout):
                return b""
            if then and not early.startswith((b"HTTP/1.1 4", b"HTTP/1.1 5")):
                sock.sendall(then)
                early += sock.recv(65536)
            return early
        if split:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            line_end = payload.index(b"\n") + 1
            sock.sendall(payload[: line_end + 2])
            time.sleep(0.05)  # not a wait for anything: only the server's reads are split by it
            payload = payload[line_end + 2:]
        sock.sendall(payload)
        try:
            sock.shutdown(socket.SHUT_WR)
        except OSError:  # the server has answered and closed already
            pass
        chunks = []
        while True:
            try:
                chunk = sock.recv(65536)
            except (ConnectionResetError, socket.timeout):
                break
            if not chunk:
                break
            chunks.append(chunk)
    return b"".join(chunks)


def statuses(answer: bytes) -> list[int]:
    return [int(code) for code in re.findall(rb"HTTP/1\.[01] (\d{3}) ", answer)]


AUTH_A = basic(f"{OWNER}:{TOKEN_A}").encode()


def post_upload(hub: Hub, fields: dict, filename: str, content: bytes, token: str | None = TOKEN_A,
                path: str = "/legacy/") -> Response:
    """The multipart POST twine sends; with token=None, no credentials at all."""
    body, content_type = multipart(fields, filename, content)
    return hub.request(path, token=token, method="POST", headers={"Content-Type": content_type}, body=body, timeout=30)


def serve(command: list[str], github: FakeGitHub) -> tuple[subprocess.Popen, str]:
    """Start PyPIHub as its own process on a free port; return it and its base URL."""
    process = subprocess.Popen(command + ["--host", "127.0.0.1", "--port", "0", "--graphql-url", github.graphql_url],
                               stderr=subprocess.PIPE, text=True)
    first = process.stderr.readline()
    port = first.split("http://127.0.0.1:")[1].split("/")[0]
    return process, f"http://127.0.0.1:{port}"


# --- The fake GitHub itself ---
# The GitHub behaviours above, seen through plain http.client as any client would (no PyPIHub).


def call(github: FakeGitHub, method: str, path: str, token: str | None = TOKEN_A, body=None,
         headers: dict | None = None, timeout: float = 10) -> Response:
    """One request to the fake: `path` below github.base, or a whole URL it handed out."""
    target = urllib.parse.urlsplit(path if "://" in path else github.base + path)
    sent = {"User-Agent": "fake-self-test", **(headers or {})}
    if token is not None:
        sent["Authorization"] = f"bearer {token}"
    data = json.dumps(body).encode() if isinstance(body, (dict, list)) else body
    connection = http.client.HTTPConnection(target.hostname, target.port, timeout=timeout)
    try:
        connection.request(method, target.path + (f"?{target.query}" if target.query else ""), body=data, headers=sent)
        answer = connection.getresponse()
        return Response(answer.status, {k.lower(): v for k, v in answer.getheaders()}, answer.read())
    finally:
        connection.close()


def graphql_call(github: FakeGitHub, query: str, token: str = TOKEN_A, **variables) -> Response:
    return call(github, "POST", "/graphql", token, {"query": query, "variables": variables})


ASSET_NODE_QUERY = """query AssetNode($id: ID!) { node(id: $id) { ... on ReleaseAsset {
  name url downloadUrl release { repository { nameWithOwner owner { login } } } } } }"""
FIND_QUERY = """query Find($owner: String!, $name: String!, $follow: Boolean!) {
  repository(owner: $owner, name: $name, followRenames: $follow) { nameWithOwner owner { login } } }"""


def query_of(url: str) -> dict:
    return dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(url).query))


def test_fake_sas_url_works_until_the_earlier_of_se_and_jwt(github, clock):
    github.url_style = "sas"
    asset = github.add_repo("sas-pkg").add_release("v1", {"sas_pkg-1.0-py3-none-any.whl": b"bytes"})["assets"][0]

    def fresh() -> str:
        return graphql_call(github, ASSET_NODE_QUERY, id=asset["id"]).json()["data"]["node"]["url"]

    url = fresh()
    query = query_of(url)
    assert urllib.parse.urlsplit(url).path == "/release-assets/" + urllib.parse.quote(asset["id"], safe="")
    assert {k: query[k] for k in ("sp", "sv", "sr", "spr", "rscd", "rsct", "sks", "skv")} == {
        "sp": "r", "sv": "2018-11-09", "sr": "b", "spr": "https", "rscd": "attachment; filename=sas_pkg-1.0-py3-none-any.whl",
        "rsct": "application/octet-stream", "sks": "b", "skv": "2018-11-09"}
    assert "rscd=attachment%3B+filename%3Dsas_pkg-1.0-py3-none-any.whl" in url
    claims = json.loads(base64.urlsafe_b64decode(query["jwt"].split(".")[1] + "=="))
    assert claims["exp"] - claims["nbf"] == 300 and abs(claims["nbf"] - clock()) < 2
    assert {k: claims[k] for k in ("iss", "aud", "key", "path")} == {
        "iss": "github.com", "aud": "release-assets.githubusercontent.com", "key": "key1",
        "path": "releaseassetproduction.blob.core.windows.net"}
    assert from_iso(query["se"]) - from_iso(query["skt"]) == 3600 and query["ske"] == query["se"]
    assert call(github, "GET", url, token=None).body == b"bytes"
    assert call(github, "GET", url).status == 400  # a token next to the signature is refused
    tampered = url.replace(urllib.parse.quote(query["se"]), urllib.parse.quote(iso(from_iso(query["se"]) + 60)))
    assert call(github, "GET", tampered, token=None).status == 403
    clock.advance(claims["exp"] - 1 - clock())  # the shared clock: just before jwt.exp
    assert call(github, "GET", url, token=None).status == 200
    clock.advance(1)
    refused = call(github, "GET", url, token=None)
    assert refused.status == 403 and b"<Code>AuthenticationFailed</Code>" in refused.body
    assert b"Signature not valid in the specified time frame" in refused.body
    github.jwt_lifetime = 7200  # a JWT that outlives se: se decides
    url = fresh()
    clock.advance(from_iso(query_of(url)["se"]) - 1 - clock())
    assert call(github, "GET", url, token=None).status == 200
    clock.advance(1)
    assert call(github, "GET", url, token=None).status == 403
    github.jwt_lifetime = None
    assert "jwt" not in query_of(fresh())
    reset = int(graphql_call(github, ASSET_NODE_QUERY, id=asset["id"]).headers["x-ratelimit-reset"])
    assert abs(reset - (clock() + 1800)) < 2  # x-ratelimit-reset follows the shared clock too


def test_fake_amz_url_expires_with_the_shared_clock(github, clock):
    github.url_style = "amz"
    asset = github.add_repo("amz-pkg").add_release("v1", {"a.whl": b"amz"})["assets"][0]
    url = graphql_call(github, ASSET_NODE_QUERY, id=asset["id"]).json()["data"]["node"]["url"]
    assert urllib.parse.urlsplit(url).path.startswith("/download/") and query_of(url)["X-Amz-Expires"] == "300"
    assert call(github, "GET", url, token=None).body == b"amz"
    clock.advance(302)
    assert b"Request has expired" in call(github, "GET", url, token=None).body


def test_fake_rest_asset_routes(github):
    repo = github.add_repo("route-pkg")
    release = repo.add_release("v1", {"route_pkg-1.0-py3-none-any.whl": b"route"})
    asset = release["assets"][0]
    path = f"/repos/{OWNER}/route-pkg/releases/assets/{asset['databaseId']}"
    octets = {"Accept": "application/octet-stream"}
    described = call(github, "GET", path).json()
    assert described == github.asset_json(asset) and described["url"] == github.base + path
    assert {k: described[k] for k in ("id", "node_id", "name", "label", "state", "size")} == {
        "id": asset["databaseId"], "node_id": asset["id"], "name": asset["name"], "label": None, "state": "uploaded", "size": 5}
    github.broken_graphql_urls = True
    for style, host_path in (("amz", "/download/"), ("sas", "/release-assets/"), ("plain", "/release-assets/")):
        github.url_style = style
        moved = call(github, "GET", path, headers=octets)
        assert moved.status == 302 and urllib.parse.urlsplit(moved.headers["location"]).path.startswith(host_path)
        assert call(github, "GET", moved.headers["location"], token=None).body == b"route"
        graphql_url = graphql_call(github, ASSET_NODE_QUERY, id=asset["id"]).json()["data"]["node"]["url"]
        assert call(github, "GET", graphql_url, token=None).status in (403, 404)  # broken, or the private browser URL
    assert graphql_url == github.browser_url(asset) == described["browser_download_url"]
    github.asset_route_streams = True
    streamed = call(github, "GET", path, headers=octets)
    assert streamed.status == 200 and streamed.body == b"route"
    assert call(github, "GET", path, token=TOKEN_B, headers=octets).status == 404  # B cannot see the repo
    assert call(github, "GET", path, token=TOKEN_BAD).status == 401
    github.asset_route_streams, github.url_style = False, "sas"
    url = call(github, "GET", path, headers=octets).headers["location"]
    assert call(github, "HEAD", url, token=None).status == 200
    github.refuse_head = True
    assert call(github, "HEAD", url, token=None).status == 403 and call(github, "GET", url, token=None).status == 200
    one = call(github, "GET", f"/repos/{OWNER}/route-pkg/releases/{release['databaseId']}").json()
    assert {"id", "node_id", "tag_name", "draft", "prerelease", "immutable", "upload_url", "assets"} <= set(one)
    assert one["assets"] == [github.asset_json(asset)] and one["immutable"] is False
    listed = call(github, "GET", f"/repos/{OWNER}/route-pkg/releases/{release['databaseId']}/assets?per_page=1&page=1")
    assert listed.json() == [github.asset_json(asset)] and "link" not in listed.headers
    assert call(github, "GET", f"/repos/{OWNER}/route-pkg/releases").json() == [one]
    assert call(github, "DELETE", path, token=TOKEN_B).status == 404
    assert call(github, "DELETE", path).status == 204 and github.deleted_assets == ["route_pkg-1.0-py3-none-any.whl"]
    assert call(github, "GET", path).status == 404 and call(github, "GET", url, token=None).status == 404
    assert len(github.rest_calls) == 12 and github.writes == [("DELETE", path), ("DELETE", path)]


def test_fake_immutable_releases(github, clock):
    repo = github.add_repo("locked", immutable=True)
    releases = f"/repos/{OWNER}/locked/releases"
    draft = call(github, "POST", releases, body={"tag_name": "v1", "draft": True}).json()
    assert draft["draft"] and not draft["immutable"] and draft["published_at"] is None
    waiting = call(github, "POST", releases, body={"tag_name": "v1", "draft": True})  # drafts may share a tag
    assert waiting.status == 201
    upload = draft["upload_url"].split("{")[0] + "?name="
    assert call(github, "POST", upload + "locked-1.0-py3-none-any.whl", body=b"wheel").status == 201  # drafts are mutable
    published = call(github, "PATCH", f"{releases}/{draft['id']}", body={"draft": False, "name": "locked 1.0"}).json()
    assert published["immutable"] and not published["draft"] and published["name"] == "locked 1.0"
    assert abs(from_iso(published["published_at"]) - clock()) < 2
    late = call(github, "POST", upload + "late.txt", body=b"x")
    assert (late.status, late.json()) == (422, {"message": "Cannot upload assets to an immutable release.",
                                                "documentation_url": "https://docs.github.com/rest"})
    asset_id = published["assets"][0]["id"]
    assert call(github, "DELETE", f"{releases}/assets/{asset_id}").status == 422
    edited = call(github, "PATCH", f"{releases}/{draft['id']}", body={"prerelease": True, "body": "notes"})
    assert edited.status == 200 and edited.json()["immutable"] and edited.json()["prerelease"]
    assert call(github, "PATCH", f"{releases}/{draft['id']}", body={"tag_name": "v1-moved"}).status == 422
    taken = call(github, "POST", releases, body={"tag_name": "v1", "draft": True})
    assert taken.status == 422 and taken.json()["errors"] == [{"resource": "Release", "code": "already_exists", "field": "tag_name"}]
    assert call(github, "DELETE", f"{releases}/{draft['id']}").status == 204
    assert repo.burnt_tags == {"v1"} and github.deleted_published == ["v1"]
    burnt = {"resource": "Release", "code": "custom", "field": "tag_name", "message": "tag_name was used by an immutable release"}
    again = call(github, "POST", releases, body={"tag_name": "v1"})
    assert again.status == 422 and again.json()["message"] == "Validation Failed" and again.json()["errors"] == [burnt]
    publish = call(github, "PATCH", f"{releases}/{waiting.json()['id']}", body={"draft": False})
    assert publish.status == 422 and publish.json()["errors"] == [burnt]
    assert call(github, "DELETE", f"{releases}/{waiting.json()['id']}").status == 204
    assert github.deleted_published == ["v1"]  # the draft was never published
    assert call(github, "GET", f"{releases}/tags/v1").status == 404
    assert [m for m, _ in github.writes] == ["POST", "POST", "POST", "PATCH", "POST", "DELETE", "PATCH", "PATCH", "POST",
                                             "DELETE", "POST", "PATCH", "DELETE"]
    older = github.add_repo("older")  # releases published before the setting stay mutable
    old = older.add_release("v1", {})
    older.immutable = True
    assert call(github, "GET", f"/repos/{OWNER}/older/releases/{old['databaseId']}").json()["immutable"] is False
    assert call(github, "POST", f"/uploads/repos/{OWNER}/older/releases/{old['databaseId']}/assets?name=a.txt", body=b"a").status == 201


def test_fake_renames_uploads_and_keeps_starter_assets(github, clock):
    repo = github.add_repo("names")
    release = repo.add_release("v1", {})
    assets = f"/repos/{OWNER}/names/releases/{release['databaseId']}/assets"
    upload = f"/uploads{assets}?name="
    answer = call(github, "POST", upload + urllib.parse.quote("names-1!2.0+local (1)~x.whl"), body=b"w")
    assert answer.status == 201 and answer.json()["name"] == "names-1.2.0+local..1..x.whl"
    assert abs(from_iso(answer.json()["created_at"]) - clock()) < 2
    github.fail_uploads = "starter"
    assert call(github, "POST", upload + "names-2.0.tar.gz", body=b"sdist").status == 502
    github.fail_uploads = False
    retry = call(github, "POST", upload + "names-2.0.tar.gz", body=b"sdist")
    assert retry.status == 422 and retry.json()["errors"][0]["code"] == "already_exists"
    github.add_asset(repo, release, "names-3.0.tar.gz", b"", "2026-01-01T00:00:00Z", state="starter")
    listed = call(github, "GET", assets).json()
    assert [(a["name"], a["state"], a["size"]) for a in listed] == [
        ("names-1.2.0+local..1..x.whl", "uploaded", 1), ("names-2.0.tar.gz", "starter", 0), ("names-3.0.tar.gz", "starter", 0)]
    names = graphql_call(github, "query Names($id: ID!) { node(id: $id) { ... on Release { releaseAssets(first: 10) { nodes { name } } } } }",
                         id=release["id"]).json()["data"]["node"]["releaseAssets"]["nodes"]
    assert [n["name"] for n in names] == [a["name"] for a in listed]  # GraphQL has no state: starters look normal
    github.upload_delay = 1.0
    with pytest.raises(OSError):  # TimeoutError; on Python 3.9 socket.timeout or a read of a timed-out socket
        call(github, "POST", upload + "names-4.0.tar.gz", body=b"slow", timeout=0.3)
    assert any(a["name"] == "names-4.0.tar.gz" for a in release["assets"])  # stored, though the answer was lost


def test_fake_rest_releases_stop_at_1000_while_graphql_pages_on(github):
    repo = github.add_repo("huge")
    for n in range(1050):
        repo.add_release(f"v{n}", {f"huge-1.{n}-py3-none-any.whl": b"w"})
    path = f"/repos/{OWNER}/huge/releases?per_page=100&page="
    tenth = call(github, "GET", path + "10")
    assert tenth.status == 200 and len(tenth.json()) == 100 and 'rel="next"' in tenth.headers["link"]
    beyond = call(github, "GET", path + "11")
    assert (beyond.status, beyond.json()) == (422, {"message": "Only the first 1000 results are available.",
                                                    "documentation_url": "https://docs.github.com/rest/releases/releases#list-releases"})
    assert call(github, "GET", f"/repos/{OWNER}/huge/releases?per_page=50&page=21").status == 422
    query = """query Page($after: String) { repository(owner: "octorg", name: "huge") {
      releases(first: 100, after: $after) { pageInfo { hasNextPage endCursor } nodes { tagName releaseAssets(first: 5) { nodes { name } } } } } }"""
    tags, after, started = [], None, time.monotonic()
    while True:
        connection = graphql_call(github, query, after=after).json()["data"]["repository"]["releases"]
        tags += [r["tagName"] for r in connection["nodes"]]
        if not connection["pageInfo"]["hasNextPage"]:
            break
        after = connection["pageInfo"]["endCursor"]
    assert len(tags) == len(set(tags)) == 1050 and len(github.graphql_calls) == 11
    assert time.monotonic() - started < 5  # ~0.2 s here: schema execution is not the bottleneck


@pytest.mark.parametrize("shape, status, retry_after", [("secondary403", 403, None), ("secondary429", 429, "30"),
                                                        ("secondary200", 200, None)])
def test_fake_secondary_rate_limits(github, shape, status, retry_after):
    github.add_repo("limited")
    find = {"owner": OWNER, "name": "limited", "follow": True}
    github.faults.append(shape)
    answer = graphql_call(github, FIND_QUERY, **find)
    assert answer.status == status and answer.headers.get("retry-after") == retry_after
    assert answer.headers["x-ratelimit-remaining"] != "0"  # points are left: it is not the primary limit
    body = answer.json()
    message = body["errors"][0]["message"] if status == 200 else body["message"]
    assert message.startswith("You have exceeded a secondary rate limit.") and "data" not in body
    assert graphql_call(github, FIND_QUERY, **find).json()["data"]["repository"]["nameWithOwner"] == f"{OWNER}/limited"
    if status != 200:
        github.rest_faults.extend([shape, 502])
        rest = call(github, "GET", f"/repos/{OWNER}/limited/releases")
        assert rest.status == status and rest.headers.get("retry-after") == retry_after
        assert "secondary rate limit" in rest.json()["message"]
        assert call(github, "POST", f"/repos/{OWNER}/limited/releases", body={"tag_name": "v1"}).status == 502
        assert call(github, "GET", f"/repos/{OWNER}/limited/releases").status == 200 and github.rest_faults == []


def test_fake_primary_rate_limit_types(github):
    github.rate_limited = True
    limited = graphql_call(github, FIND_QUERY, owner=OWNER, name="x", follow=True)
    assert limited.status == 200 and limited.json()["errors"][0]["type"] == "RATE_LIMITED"
    github.rate_limit_type = "RATE_LIMIT"
    limited = graphql_call(github, FIND_QUERY, owner=OWNER, name="x", follow=True)
    assert limited.json()["errors"] == [{"type": "RATE_LIMIT", "code": "graphql_rate_limit",
                                         "message": "API rate limit already exceeded for user ID 1."}]
    assert limited.headers["x-ratelimit-remaining"] == "0"


def test_fake_counts_api_requests_in_flight_per_token(github):
    github.add_repo("busy")
    github.gate = threading.Event()
    threads = [threading.Thread(target=graphql_call, args=(github, FIND_QUERY), kwargs={"owner": OWNER, "name": "busy", "follow": True})
               for _ in range(3)]
    for thread in threads:
        thread.start()
    wait_until(lambda: github.in_flight.get(TOKEN_A) == 3)
    assert call(github, "GET", f"/repos/{OWNER}/busy/releases").status == 200  # REST counts too
    github.gate.set()
    for thread in threads:
        thread.join()
    wait_until(lambda: github.in_flight[TOKEN_A] == 0)  # a handler leaves just after its answer is sent
    assert github.max_concurrent == {TOKEN_A: 4} and github.in_flight == {TOKEN_A: 0}


def test_fake_transfer_keeps_the_old_name_working(github):
    repo = github.add_repo("wanderer")
    github.add_repo("stays")
    asset = repo.add_release("v1", {"w.whl": b"w"})["assets"][0]
    github.transfer(repo, "neworg")
    found = graphql_call(github, FIND_QUERY, owner=OWNER, name="wanderer", follow=True).json()["data"]["repository"]
    assert found == {"nameWithOwner": "neworg/wanderer", "owner": {"login": "neworg"}}
    strict = graphql_call(github, FIND_QUERY, owner=OWNER, name="wanderer", follow=False).json()
    assert strict["data"] == {"repository": None} and strict["errors"][0]["type"] == "NOT_FOUND"
    owned = graphql_call(github, 'query Owned { repositoryOwner(login: "octorg") { repositories(first: 10) { nodes { name } } } }')
    assert owned.json()["data"]["repositoryOwner"]["repositories"]["nodes"] == [{"name": "stays"}]
    node = graphql_call(github, ASSET_NODE_QUERY, id=asset["id"]).json()["data"]["node"]
    assert node["release"]["repository"] == {"nameWithOwner": "neworg/wanderer", "owner": {"login": "neworg"}}
    assert node["downloadUrl"].startswith(f"{github.base}/neworg/wanderer/releases/download/")
    old = call(github, "GET", f"/repos/{OWNER}/wanderer/releases?per_page=10")
    location = f"{github.base}/repositories/{repo.database_id}/releases?per_page=10"
    assert (old.status, old.headers["location"]) == (301, location)
    assert old.json() == {"message": "Moved Permanently", "url": location, "documentation_url": "https://docs.github.com/v3/#http-redirects"}
    assert [r["tag_name"] for r in call(github, "GET", location).json()] == ["v1"]
    assert call(github, "GET", f"/repos/neworg/wanderer/releases/tags/v1").status == 200
    assert call(github, "POST", f"/repos/{OWNER}/wanderer/releases", body={"tag_name": "v2"}).status == 307
    assert call(github, "GET", f"/repos/{OWNER}/wanderer/releases", token=TOKEN_B).status == 404  # B cannot see it


def test_fake_saml_sso_refuses_unauthorized_tokens(github):
    repo = github.add_repo("sso-pkg")
    asset = repo.add_release("v1", {"s.whl": b"s"})["assets"][0]
    github.add_repo("free", owner="elsewhere")
    github.sso_blocked.add((TOKEN_A, OWNER))
    answer = graphql_call(github, FIND_QUERY, owner=OWNER, name="sso-pkg", follow=True)
    assert answer.status == 200 and answer.json()["data"] == {"repository": None}
    assert answer.json()["errors"] == [{"type": "FORBIDDEN", "path": ["repository"], "extensions": {"saml_failure": True},
                                        "message": SAML_GRAPHQL}]
    header = answer.headers["x-github-sso"]
    assert header.startswith("required; url=https://github.com/orgs/octorg/sso?authorization_request=") and TOKEN_A not in header
    node = graphql_call(github, ASSET_NODE_QUERY, id=asset["id"]).json()
    assert node["data"] == {"node": None} and node["errors"][0]["extensions"] == {"saml_failure": True}
    rest = call(github, "GET", f"/repos/{OWNER}/sso-pkg/releases")
    assert rest.status == 403 and rest.headers["x-github-sso"] == header and rest.json()["message"] == SAML_REST
    assert graphql_call(github, FIND_QUERY, owner="elsewhere", name="free", follow=True).json()["data"]["repository"]
    assert "x-github-sso" not in graphql_call(github, FIND_QUERY, owner="elsewhere", name="free", follow=True).headers


def test_fake_installation_token_sees_only_its_repos(github):
    mine, theirs = github.add_repo("app-pkg"), github.add_repo("other-private")
    github.add_repo("open-pkg", private=False)
    github.add_token("ghs_installation0000000000000000000000", read=(mine,))
    token = "ghs_installation0000000000000000000000"

    def visible(name: str) -> bool:
        return graphql_call(github, FIND_QUERY, token, owner=OWNER, name=name, follow=True).json()["data"]["repository"] is not None

    assert visible("app-pkg") and not visible("other-private") and not visible("open-pkg")
    github.installation_tokens_see_public = True
    assert visible("open-pkg") and not visible("other-private")
    assert call(github, "GET", f"/repos/{OWNER}/other-private/releases", token=token).status == 404
    denied = call(github, "POST", f"/repos/{OWNER}/app-pkg/releases", token=token, body={"tag_name": "v1"})
    assert denied.status == 403 and denied.json()["message"] == "Resource not accessible by integration"
    github.add_token(token, write=(theirs,))
    assert call(github, "POST", f"/repos/{OWNER}/other-private/releases", token=token, body={"tag_name": "v1"}).status == 201


# === The server against the fake GitHub, by concept ===


# --- Listings and the Simple API ---
# What /simple/ and /simple/<project>/ list, to whom, in which form (PEP 503, 691, 700).


def yanked_demo(demo) -> None:
    """demo-pkg 2.0, yanked by its maintainer on GitHub's own release page."""
    release = next(r for r in demo[0].releases if r["tagName"] == "v2.0")
    release["name"] = "[yanked] breaks on Python 3.13"


def test_index_serves_a_token_what_it_may_see_without_a_server(github, demo, clock):
    index = pypihub.Index(pypihub.Settings(graphql_url=github.graphql_url, upstream_timeout=5.0), pypihub.Gate(), clock=clock)
    a, b = pypihub.Credentials(OWNER, TOKEN_A), pypihub.Credentials(OWNER, TOKEN_B)
    cold, warm = pypihub.GitHubCalls(), pypihub.GitHubCalls()
    body, etag = index.project_page(index.connect(a, cold), "demo-pkg", pypihub.JSON_V1)
    files = json.loads(body)["files"]
    assert sorted(f["filename"] for f in files) == sorted([*demo[1], "demo_pkg-1.0.tar.gz", "demo_pkg-2.0.tar.gz"])
    assert (cold.graphql, cold.rest) == (1, 0) and len(github.graphql_calls) == 1  # digests come in GraphQL
    assert index.project_page(index.connect(a, warm), "demo-pkg", pypihub.JSON_V1) == (body, etag)
    wheel = next(f for f in reversed(files) if f["filename"].endswith(".whl"))
    node_id, filename = map(urllib.parse.unquote, wheel["url"].rsplit("/", 2)[1:])
    link = index.files.asset_link(index.connect(a, warm), node_id, filename)
    assert urllib.request.urlopen(link.url).read() == demo[1][link.filename]
    assert (warm.graphql, warm.rest) == (0, 0)  # the listing's own signed URL, remembered
    with pytest.raises(pypihub.NotFound):
        index.project_page(index.connect(b, pypihub.GitHubCalls()), "demo-pkg", pypihub.JSON_V1)
    with pytest.raises(pypihub.NotFound):  # A's remembered link is A's alone
        index.files.asset_link(index.connect(b, pypihub.GitHubCalls()), node_id, filename)
    assert all(TOKEN_A not in repr(key) for key in index.listings.keys() + index.files.links.keys())


def test_index_refuses_owners_it_does_not_serve(github):
    index = pypihub.Index(pypihub.Settings(graphql_url=github.graphql_url, owners=("OctOrg",)), pypihub.Gate())
    assert index.connect(pypihub.Credentials(OWNER, TOKEN_A), pypihub.GitHubCalls()) is not None
    with pytest.raises(pypihub.Forbidden):
        index.connect(pypihub.Credentials("someone-else", TOKEN_A), pypihub.GitHubCalls())
    assert github.graphql_calls == []


def test_project_page_lists_python_files_of_non_draft_releases(hub, github, demo):
    response = hub.request("/simple/demo-pkg/")
    assert response.status == 200
    assert response.headers["content-type"] == "text/html"
    assert project_files(response) == ["demo_pkg-1.0-py3-none-any.whl", "demo_pkg-1.0.tar.gz",
                                       "demo_pkg-2.0-py3-none-any.whl", "demo_pkg-2.0.tar.gz"]
    for href, text, _ in response.links():
        url, _, fragment = href.partition("#")
        assert url.startswith("../../asset/") and url.endswith("/" + urllib.parse.quote(text, safe=""))
        assert fragment.startswith("sha256=")
    assert parse_meta(response.body.decode()) == {"pypi:repository-version": "1.1"}
    assert len(github.graphql_calls) == 1
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["content-security-policy"].startswith("default-src 'none'")


def test_more_than_100_releases_and_assets_are_listed(hub, github):
    repo = github.add_repo("big")
    for n in range(130):
        repo.add_release(f"v{n}", {f"big-0.{n}-py3-none-any.whl": b"w", f"big-0.{n}.tar.gz": b"s"})
    repo.add_release("fat", {f"big-1.{n}-py3-none-any.whl": b"w" for n in range(150)})
    response = hub.request("/simple/big/", headers={"Accept": pypihub.JSON_V1})
    files = project_files(response)
    assert len(files) == 130 * 2 + 150 == len(set(files))
    assert len(response.json()["versions"]) == 130 + 150
    # find + one more page of releases + one more page of the fat release's assets
    assert [op for _, op in github.graphql_calls] == ["query FindRepo", "query MoreReleases", "query MoreAssets"]


def test_first_existing_candidate_repo_is_used(hub, github):
    github.add_repo("foo_bar").add_release("v1", {"foo_bar-1.0-py3-none-any.whl": b"underscore"})
    github.add_repo("foo.bar").add_release("v1", {"foo.bar-2.0-py3-none-any.whl": b"dot"})
    response = hub.request("/simple/foo-bar/")
    assert project_files(response) == ["foo_bar-1.0-py3-none-any.whl"]
    assert len(github.graphql_calls) == 1


def test_repo_map_rules(make_hub, github):
    github.add_repo("tool-python").add_release("v1", {"tool-1.0-py3-none-any.whl": b"t"})
    hub = make_hub(repo_map=pypihub.parse_rules(["^(.*)$=\\1-python"]))
    assert project_files(hub.request("/simple/tool/")) == ["tool-1.0-py3-none-any.whl"]


@pytest.mark.parametrize("path, location", [
    ("/simple/Demo_Pkg/", "../demo-pkg/"),
    ("/simple/demo-pkg", "demo-pkg/"),
    ("/simple/Demo.Pkg", "demo-pkg/"),
    ("/simple/Demo.Pkg/?format=application%2Fvnd.pypi.simple.v1%2Bjson", "../demo-pkg/?format=application%2Fvnd.pypi.simple.v1%2Bjson"),
    ("/simple", "simple/"),
])
def test_non_canonical_urls_redirect(hub, path, location):
    response = hub.request(path, token=None)
    assert (response.status, response.headers["location"]) == (301, location)


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "PATCH", "OPTIONS"])
def test_other_methods_get_405(hub, method):
    response = hub.request("/simple/demo-pkg/", method=method)
    assert response.status == 405
    assert response.headers["allow"] == "GET, HEAD"


def test_head_is_get_without_body(hub, github, demo):
    get = hub.request("/simple/demo-pkg/")
    head = hub.request("/simple/demo-pkg/", method="HEAD")
    assert head.status == 200 and head.body == b""
    assert {k: v for k, v in head.headers.items() if k != "date"} == {k: v for k, v in get.headers.items() if k != "date"}


@pytest.mark.parametrize("path, status", [
    ("/nope", 404), ("/simple/not%20valid/", 404), ("/simple/a/b", 404), ("/asset/x", 404),
    ("/asset/%zz/f.whl", 400), ("/simple/%00/", 400), ("/asset/RA_1/..", 400),
    ("/asset/RA_1/readme.txt", 404), ("/asset/bad%20id/demo-1.0.tar.gz", 404), ("/simple/%C3%A9/", 404),
    ("/simple/" + "a" * 300 + "/", 404),
])
def test_bad_paths_are_4xx(hub, github, path, status):
    response = hub.request(path)
    assert response.status == status, response
    assert hub.request("/healthz", token=None).body == b"ok\n"


def test_home_and_root_pages(hub, github, demo):
    # A browser sends credentials only after a 401 that asks for them; cancelled, the prompt
    # leaves the how-to page on screen.
    home = hub.request("/", token=None)
    assert home.status == 401 and home.headers["www-authenticate"].startswith("Basic ")
    assert "simple/" in [h for h, _, _ in home.links()]
    assert f"--index-url http://127.0.0.1:{hub.port}/simple/" in html.unescape(home.body.decode())
    assert hub.request("/simple/", token=None).status == 401
    assert github.graphql_calls == []


@pytest.mark.parametrize("accept, query, media", [
    (None, "", "text/html"),
    (PIP_ACCEPT, "", pypihub.JSON_V1),
    (UV_ACCEPT, "", pypihub.JSON_V1),
    ("application/vnd.pypi.simple.latest+html", "", pypihub.HTML_V1),
    ("text/html", "?format=application/vnd.pypi.simple.v1%2Bjson", pypihub.JSON_V1),
    (PIP_ACCEPT, "?format=text/html", "text/html"),
])
def test_negotiated_pages(hub, github, demo, accept, query, media):
    response = hub.request("/simple/demo-pkg/" + query, headers={"Accept": accept} if accept else {})
    assert response.status == 200
    assert response.headers["content-type"] == media
    assert "Accept" in response.headers["vary"]


def test_html_and_json_list_the_same_files(hub, github, demo):
    as_html = hub.request("/simple/demo-pkg/", headers={"Accept": "text/html"})
    as_json = hub.request("/simple/demo-pkg/", headers={"Accept": PIP_ACCEPT})
    page = as_json.json()
    assert [(h.split("#")[0], t) for h, t, _ in as_html.links()] == [(f["url"], f["filename"]) for f in page["files"]]
    assert page["meta"]["api-version"] == parse_meta(as_html.body.decode())["pypi:repository-version"] == "1.1"
    assert page["name"] == "demo-pkg" and page["versions"] == ["1.0", "2.0"]
    wheel = next(f for f in page["files"] if f["filename"] == "demo_pkg-1.0-py3-none-any.whl")
    content = demo[1]["demo_pkg-1.0-py3-none-any.whl"]
    assert wheel["hashes"] == {"sha256": hashlib.sha256(content).hexdigest()} and wheel["size"] == len(content)
    assert wheel["upload-time"] == "2026-01-10T12:00:00Z"


def test_unacceptable_media_type_is_406(hub, github, demo):
    response = hub.request("/simple/demo-pkg/", headers={"Accept": "application/json"})
    assert response.status == 406
    assert github.graphql_calls == []


def test_etag_and_304(hub, github, demo):
    first = hub.request("/simple/demo-pkg/", headers={"Accept": PIP_ACCEPT})
    assert first.headers["cache-control"] == "private, max-age=60"
    again = hub.request("/simple/demo-pkg/", headers={"Accept": PIP_ACCEPT, "If-None-Match": first.headers["etag"]})
    assert again.status == 304 and again.body == b"" and again.headers["etag"] == first.headers["etag"]
    other_type = hub.request("/simple/demo-pkg/", headers={"Accept": "text/html", "If-None-Match": first.headers["etag"]})
    assert other_type.status == 200


def test_root_lists_owner_projects_by_their_real_names(hub, github, demo):
    github.add_repo("py-tools").add_release("v1", {"acme_tools-1.0-py3-none-any.whl": b"t"})
    github.add_repo("website").add_release("v1", {"site.zip.txt": b"x", "logo.png": b"p"})
    github.add_repo("no-releases")
    github.add_repo("other-owner-pkg", owner="elsewhere").add_release("v1", {"x-1.0-py3-none-any.whl": b"x"})
    github.add_repo("secret", readers=(), writers=()).add_release("v1", {"secret-1.0-py3-none-any.whl": b"s"})
    as_html = hub.request("/simple/")
    assert [(h, t) for h, t, _ in as_html.links()] == [("acme-tools/", "acme-tools"), ("demo-pkg/", "demo-pkg")]
    as_json = hub.request("/simple/", headers={"Accept": UV_ACCEPT})
    assert as_json.headers["content-type"] == pypihub.JSON_V1
    assert as_json.json() == {"meta": {"api-version": "1.1"}, "projects": [{"name": "acme-tools"}, {"name": "demo-pkg"}]}
    assert len(github.graphql_calls) == 1  # the second answer came from the cache


def test_project_in_differently_named_repo_is_found_through_owner_index(hub, github, demo):
    github.add_repo("py-tools").add_release("v1", {"acme_tools-1.0-py3-none-any.whl": b"t"})
    response = hub.request("/simple/acme-tools/")
    assert project_files(response) == ["acme_tools-1.0-py3-none-any.whl"]
    assert [op for _, op in github.graphql_calls] == ["query FindRepo", "query OwnerProjects", "query FindRepo"]
    assert hub.request("/simple/no-such-thing/").status == 404
    assert [op for _, op in github.graphql_calls][3:] == ["query FindRepo"]  # the owner index is cached
    assert hub.request("/simple/no-such-thing/").status == 404
    assert len(github.graphql_calls) == 4  # and so is "not found", for this token, for the TTL


def test_root_pages_through_repositories(hub, github):
    for n in range(130):
        github.add_repo(f"r{n}").add_release("v1", {f"p{n}-1.0-py3-none-any.whl": b"x"})
    projects = hub.request("/simple/", headers={"Accept": pypihub.JSON_V1}).json()["projects"]
    assert len(projects) == 130
    assert [op for _, op in github.graphql_calls] == ["query OwnerProjects"] * 2


def test_format_with_a_literal_plus_as_a_browser_sends_it(hub, github, demo):
    response = hub.request("/simple/demo-pkg/?format=application/vnd.pypi.simple.v1+json")
    assert response.status == 200 and response.headers["content-type"] == pypihub.JSON_V1


def test_upload_time_is_when_the_file_became_installable(hub, github, demo):
    repo, _ = demo
    name, content = make_wheel("demo-pkg", "2.5")
    release = repo.add_release("v2.5", {name: content}, draft=True, created="2026-04-01T00:00:00Z")
    repo.publish(release, "2026-05-02T10:00:00Z")  # attached to a draft a month before it was published
    files = {f["filename"]: f for f in hub.request("/simple/demo-pkg/", headers={"Accept": PIP_ACCEPT}).json()["files"]}
    assert files[name]["upload-time"] == "2026-05-02T10:00:00Z"
    assert files["demo_pkg-2.0-py3-none-any.whl"]["upload-time"] == "2026-03-10T12:00:00Z"
    times = re.findall(r'<td data-label="Uploaded"><time datetime="([^"]+)">([^<]+)</time>',
                       hub.request("/project/demo-pkg/").body.decode())
    assert ("2026-05-02T10:00:00Z", "2026-05-02") in times and ("2026-04-01T00:00:00Z", "2026-04-01") not in times


def test_a_304_carries_no_content_length(hub, github, demo):
    etag = hub.request("/simple/demo-pkg/").headers["etag"]
    unchanged = hub.request("/simple/demo-pkg/", headers={"If-None-Match": etag})
    assert unchanged.status == 304 and "content-length" not in unchanged.headers


def test_a_release_yanked_on_github_is_yanked_in_the_index(hub, github, demo):
    yanked_demo(demo)
    release = next(r for r in demo[0].releases if r["tagName"] == "v1.0")
    release["description"] = "Release notes.\n\nYanked: superseded\n"
    files = {f["filename"]: f for f in hub.request("/simple/demo-pkg/", headers={"Accept": pypihub.JSON_V1}).json()["files"]}
    assert files["demo_pkg-2.0-py3-none-any.whl"]["yanked"] == "breaks on Python 3.13"
    assert files["demo_pkg-1.0.tar.gz"]["yanked"] == "superseded"
    html = {text: attrs for _, text, attrs in hub.request("/simple/demo-pkg/").links()}
    assert html["demo_pkg-2.0.tar.gz"]["data-yanked"] == "breaks on Python 3.13"
    assert len(github.graphql_calls) == 1  # titles and notes come with the listing's own query


def test_an_archived_repo_is_an_archived_project_that_takes_no_uploads(hub, github, demo):
    pypi_simple = pytest.importorskip("pypi_simple", minversion="1.7")  # the test extra installs it
    ProjectPage, ProjectStatus = pypi_simple.ProjectPage, pypi_simple.ProjectStatus

    demo[0].archived = True  # GitHub: Repository.isArchived
    as_json = hub.request("/simple/demo-pkg/", headers={"Accept": pypihub.JSON_V1})
    data = as_json.json()
    assert data["project-status"]["status"] == "archived" and data["meta"]["api-version"] == "1.4"
    as_html = hub.request("/simple/demo-pkg/")
    meta = parse_meta(as_html.body.decode())
    assert meta["pypi:project-status"] == "archived" and meta["pypi:repository-version"] == "1.4"
    assert ProjectPage.from_json_data(data).status == ProjectStatus.ARCHIVED  # pypi-simple >= 1.7 reads both
    html_page = ProjectPage.from_html("demo-pkg", as_html.body.decode(), base_url=f"{hub.url}/simple/demo-pkg/")
    assert html_page.status == ProjectStatus.ARCHIVED and len(html_page.packages) == 4
    name, content = make_wheel("demo-pkg", "9.1")
    refused = post_upload(hub, upload_fields("demo-pkg", "9.1", content), name, content)
    assert refused.status == 409 and b"archived" in refused.body and github.writes == []
    demo[0].archived = False
    hub.clock.advance(61)
    active = hub.request("/simple/demo-pkg/", headers={"Accept": pypihub.JSON_V1}).json()
    assert "project-status" not in active and active["meta"]["api-version"] == "1.1"  # only as far as needed


# --- Hashes and PEP 658 metadata ---
# sha256 from GitHub's digests (or REST on an older server), and a wheel's METADATA read with ranges.


@pytest.mark.parametrize("legacy", [False, True], ids=["graphql-digests", "older-ghes-rest-digests"])
def test_digests_appear_in_html_and_json(hub, github, demo, legacy):
    github.legacy_schema = legacy
    repo, files = demo
    old_name, old = make_wheel("demo-pkg", "0.9")
    release = repo.add_release("v0.9", {old_name: old}, created="2025-01-01T00:00:00Z")
    release["assets"][0]["digest"] = None  # uploaded before GitHub computed digests
    expected = {**{n: hashlib.sha256(c).hexdigest() for n, c in files.items()},
                "demo_pkg-1.0.tar.gz": hashlib.sha256(b"sdist 1.0").hexdigest(),
                "demo_pkg-2.0.tar.gz": hashlib.sha256(b"sdist 2.0").hexdigest()}
    as_html = hub.request("/simple/demo-pkg/")
    found = {text: href.partition("#sha256=")[2] or None for href, text, _ in as_html.links()}
    assert found == {**expected, old_name: None}
    as_json = hub.request("/simple/demo-pkg/", headers={"Accept": PIP_ACCEPT}).json()
    assert {f["filename"]: f["hashes"].get("sha256") for f in as_json["files"]} == found
    assert [token for token, _ in github.rest_calls] == ([TOKEN_A] if legacy else [])


def test_digests_are_fetched_once_per_asset(hub, github, demo, clock):
    github.legacy_schema = True  # REST digests: an older GitHub Enterprise Server
    hub.request("/simple/demo-pkg/")
    clock.advance(hub.server.settings.cache_ttl + 1)
    page = hub.request("/simple/demo-pkg/")
    assert all("#sha256=" in href for href, _, _ in page.links())
    # the first listing's query refused once, per server, then asked without the new fields
    assert len(github.graphql_calls) == 3 and len(github.rest_calls) == 1


def test_digests_page_through_rest_only_as_far_as_needed(hub, github):
    github.legacy_schema = True  # REST digests: an older GitHub Enterprise Server
    repo = github.add_repo("many")
    for n in range(150):
        repo.add_release(f"v{n}", {f"many-1.{n}-py3-none-any.whl": b"w%d" % n})
    page = hub.request("/simple/many/", headers={"Accept": PIP_ACCEPT}).json()
    assert all(f["hashes"] for f in page["files"]) and len(page["files"]) == 150
    assert len(github.rest_calls) == 2  # 150 releases: two pages of 100
    repo.add_release("v-new", {"many-2.0-py3-none-any.whl": b"new"})
    hub.clock.advance(61)
    page = hub.request("/simple/many/", headers={"Accept": PIP_ACCEPT}).json()
    assert all(f["hashes"] for f in page["files"]) and len(github.rest_calls) == 3  # the newest page only


def test_no_hashes_flag(make_hub, github, demo):
    hub = make_hub(hashes=False)
    page = hub.request("/simple/demo-pkg/")
    assert page.status == 200 and sorted(text for _, text, _ in page.links()) == sorted(
        [*demo[1], "demo_pkg-1.0.tar.gz", "demo_pkg-2.0.tar.gz"])  # every file, as a user sees it ...
    assert all("#" not in href for href, _, _ in page.links())  # ... without a hash
    files = hub.request("/simple/demo-pkg/", headers={"Accept": PIP_ACCEPT}).json()["files"]
    assert len(files) == 4 and all(f["hashes"] == {} for f in files)
    assert github.rest_calls == []


def test_listing_works_without_rest_api(hub, github, demo):
    github.rest_enabled, github.legacy_schema = False, True  # an older GitHub Enterprise Server
    page = hub.request("/simple/demo-pkg/")
    assert page.status == 200 and len(page.links()) == 4
    assert all("#" not in href for href, _, _ in page.links())
    assert any("no sha256 digests" in line for line in hub.logs)


def test_metadata_is_the_wheels_metadata_read_with_few_ranges(hub, github, demo):
    repo, files = demo
    padding = os.urandom(300_000)  # a wheel bigger than one Range block
    name, content = make_wheel("demo-pkg", "5.0", requires_python=">=3.8")
    buffer = io.BytesIO(content)
    with zipfile.ZipFile(buffer, "a") as archive:
        archive.writestr("demo_pkg/blob.bin", padding)
    content = buffer.getvalue()
    repo.add_release("v5", {name: content}, created="2026-07-01T00:00:00Z")
    page = hub.request("/simple/demo-pkg/")
    assert next(a for _, t, a in page.links() if t == name)["data-core-metadata"] == "true"
    response = hub.request(metadata_path(page, name))
    assert response.status == 200 and response.body == wheel_metadata(content)
    ranges = [r for n, r in github.downloads if n == name]
    assert len(ranges) <= 3 and all(r and r.startswith("bytes=") for r in ranges)
    assert github.bytes_served < len(content) / 2
    again = hub.request(metadata_path(page, name))  # cached: GitHub is not asked again
    assert again.body == response.body and len(github.downloads) == len(ranges)
    digest = hashlib.sha256(response.body).hexdigest()
    attrs = next(a for _, t, a in hub.request("/simple/demo-pkg/").links() if t == name)
    assert attrs["data-core-metadata"] == f"sha256={digest}" and attrs["data-requires-python"] == ">=3.8"


def test_metadata_without_range_support_reads_the_wheel_whole(hub, github, demo):
    github.ignore_range = True
    page = hub.request("/simple/demo-pkg/")
    response = hub.request(metadata_path(page, "demo_pkg-1.0-py3-none-any.whl"))
    assert response.body == wheel_metadata(demo[1]["demo_pkg-1.0-py3-none-any.whl"])


def test_metadata_sibling_asset_is_served_and_not_listed(hub, make_hub, github, demo):
    repo, _ = demo
    name, content = make_wheel("demo-pkg", "6.0")
    repo.add_release("v6", {name: content, name + ".metadata": wheel_metadata(content)}, created="2026-08-01T00:00:00Z")
    page = hub.request("/simple/demo-pkg/")
    assert name + ".metadata" not in [t for _, t, _ in page.links()]
    assert hub.request(metadata_path(page, name)).body == wheel_metadata(content)
    assert [n for n, _ in github.downloads] == [name + ".metadata"]  # the wheel was not touched
    # Without a listing first, the node lookup finds the sibling too.
    assert make_hub().request(metadata_path(page, name)).body == wheel_metadata(content)


def test_metadata_is_checked_like_the_wheel(hub, github, demo):
    page = hub.request("/simple/demo-pkg/")
    path = metadata_path(page, "demo_pkg-1.0-py3-none-any.whl")
    assert hub.request(path, token=TOKEN_B).status == 404
    assert hub.request(path, owner="elsewhere").status == 404
    assert hub.request(path, token=None).status == 401
    sdist = next(h for h, t, _ in page.links() if t.endswith(".tar.gz")).split("#")[0]
    assert hub.request(urllib.parse.urljoin("/simple/demo-pkg/", sdist) + ".metadata").status == 404


def test_every_file_past_1000_releases_has_its_hash(hub, github):
    repo = github.add_repo("huge")
    for n in range(1050):
        repo.add_release(f"v1.{n}", {f"huge-1.{n}-py3-none-any.whl": b"h%d" % n})
    files = hub.request("/simple/huge/", headers={"Accept": pypihub.JSON_V1}).json()["files"]
    assert len(files) == 1050 and all(f["hashes"].get("sha256") for f in files)
    assert github.rest_calls == []


@pytest.mark.parametrize("digest, served", [
    ("sha256:" + "ab" * 32, "ab" * 32), ("ab" * 32, "ab" * 32),  # with or without the prefix
    ("sha256:" + "AB" * 32, None), ("sha512:" + "ab" * 64, None), ("sha256:xyz", None), (None, None),
    ("sha256:" + "ab" * 32 + '"><x', None),
])
def test_only_a_well_formed_sha256_digest_is_served(hub, github, demo, digest, served):
    repo, _ = demo
    asset = next(a for r in repo.releases for a in r["assets"] if a["name"] == "demo_pkg-1.0.tar.gz")
    asset["digest"] = digest
    files = {f["filename"]: f for f in hub.request("/simple/demo-pkg/", headers={"Accept": PIP_ACCEPT}).json()["files"]}
    assert files["demo_pkg-1.0.tar.gz"]["hashes"] == ({"sha256": served} if served else {})


def test_metadata_over_1_mib_is_neither_kept_nor_advertised(hub, github, demo):
    repo, _ = demo
    name, content = make_wheel("demo-pkg", "7.0", description="x" * (2 << 20))
    huge, too_huge = make_wheel("demo-pkg", "7.1", description="y" * (5 << 20))
    repo.add_release("v7.0", {name: content}, created="2026-07-01T00:00:00Z")
    repo.add_release("v7.1", {huge: too_huge}, created="2026-07-02T00:00:00Z")
    page = hub.request("/simple/demo-pkg/")
    first = hub.request(metadata_path(page, name))  # advertised before it was known to be large: served once
    assert first.status == 200 and first.body == wheel_metadata(content)
    assert hub.request(metadata_path(page, name)).status == 404  # not kept
    assert hub.request(metadata_path(page, huge)).status == 404  # over 4 MiB: not read at all
    files = {f["filename"]: f for f in hub.request("/simple/demo-pkg/", headers={"Accept": pypihub.JSON_V1}).json()["files"]}
    assert "core-metadata" not in files[name] and "core-metadata" not in files[huge]  # and no longer advertised
    assert files["demo_pkg-2.0-py3-none-any.whl"]["core-metadata"]


# --- Downloads ---
# /asset/<id>/<file>: checked with GitHub, then a redirect to a signed URL, or streamed (--proxy-downloads).


def test_asset_redirects_to_signed_url_and_bytes_match(hub, github, demo):
    _, files = demo
    page = hub.request("/simple/demo-pkg/")
    response = hub.request(asset_path(page, "demo_pkg-2.0-py3-none-any.whl"))
    assert response.status == 302
    location = response.headers["location"]
    assert location.startswith(github.download_base + "/release-assets/") and pypihub.is_signed_url(location)
    target = urllib.parse.urlsplit(location)
    connection = http.client.HTTPConnection(target.hostname, target.port)
    connection.request("GET", f"{target.path}?{target.query}")
    assert connection.getresponse().read() == files["demo_pkg-2.0-py3-none-any.whl"]


def test_download_falls_back_to_node_lookup_when_link_is_stale(hub, github, demo, clock):
    page = hub.request("/simple/demo-pkg/")
    href = page.links()[0][0]
    clock.advance(hub.server.settings.cache_ttl + 1)  # the remembered signed URL is no longer trusted
    response = hub.request(urllib.parse.urljoin("/simple/demo-pkg/", href))
    assert response.status == 302
    assert [op for _, op in github.graphql_calls] == ["query FindRepo", "query Asset"]


def test_asset_link_without_listing_is_checked_with_github(hub, github, demo):
    repo, files = demo
    asset = repo.releases[-1]["assets"][0]
    path = f"/asset/{urllib.parse.quote(asset['id'], safe='')}/{urllib.parse.quote(asset['name'])}"
    assert hub.request(path).status == 302
    assert hub.request(path, token=TOKEN_B).status == 404  # B cannot see the private repo
    assert hub.request(path, owner="someone-else").status == 404  # another owner's asset
    wrong_name = f"/asset/{urllib.parse.quote(asset['id'], safe='')}/demo_pkg-9.9-py3-none-any.whl"
    assert hub.request(wrong_name).status == 404


def test_draft_assets_are_not_served_by_id(hub, github, demo):
    repo, _ = demo
    draft = next(r for r in repo.releases if r["isDraft"])["assets"][0]
    response = hub.request(f"/asset/{urllib.parse.quote(draft['id'], safe='')}/{draft['name']}")
    assert response.status == 404


def test_proxy_streams_bytes_and_forwards_range_and_head(make_hub, github, demo):
    repo, files = demo
    big = os.urandom(3 * 1024 * 1024 + 7)
    repo.add_release("v4", {"demo_pkg-4.0-py3-none-any.whl": big}, created="2026-06-01T00:00:00Z")
    hub = make_hub(proxy_downloads=True)
    path = asset_path(hub.request("/simple/demo-pkg/"), "demo_pkg-4.0-py3-none-any.whl")
    whole = hub.request(path)
    assert whole.status == 200 and whole.body == big
    assert whole.headers["content-length"] == str(len(big)) and "location" not in whole.headers
    # Bytes to save, whatever the download host says: never a page a browser would render.
    assert whole.headers["content-type"] == "application/octet-stream"
    assert whole.headers["x-content-type-options"] == "nosniff"
    assert whole.headers["content-disposition"] == "attachment; filename=demo_pkg-4.0-py3-none-any.whl"
    part = hub.request(path, headers={"Range": "bytes=100-199"})
    assert part.status == 206 and part.body == big[100:200]
    assert part.headers["content-range"] == f"bytes 100-199/{len(big)}"
    head = hub.request(path, method="HEAD")
    assert head.status == 200 and head.body == b"" and head.headers["content-length"] == str(len(big))
    assert head.headers["etag"] == whole.headers["etag"] and head.headers["accept-ranges"] == "bytes"
    assert head.headers["last-modified"] == whole.headers["last-modified"] == "Thu, 01 Jan 2026 00:00:00 GMT"
    assert github.downloads == [("demo_pkg-4.0-py3-none-any.whl", None), ("demo_pkg-4.0-py3-none-any.whl", "bytes=100-199")]
    assert len(github.graphql_calls) == 1  # the listing; every download used its signed URL


def test_proxy_asks_github_again_when_signed_url_is_refused(make_hub, github, demo):
    hub = make_hub(proxy_downloads=True)
    path = asset_path(hub.request("/simple/demo-pkg/"), "demo_pkg-1.0-py3-none-any.whl")
    github.secret = os.urandom(16)  # every URL signed so far is now refused
    response = hub.request(path)
    assert response.status == 200 and response.body == demo[1]["demo_pkg-1.0-py3-none-any.whl"]
    assert [op for _, op in github.graphql_calls] == ["query FindRepo", "query Asset"]


def test_a_redirect_never_hands_out_an_expired_url(make_hub, github, demo, clock):
    github.jwt_lifetime = 120  # the jwt's exp comes 58 minutes before se
    hub = make_hub(cache_ttl=600)
    path = asset_path(hub.request("/simple/demo-pkg/"), "demo_pkg-2.0-py3-none-any.whl")
    assert hub.request(path).status == 302 and len(github.graphql_calls) == 1  # the listing's own URL
    clock.advance(90)  # the listing is fresh for 600 s, but its URLs are not
    location = hub.request(path).headers["location"]
    assert pypihub.signed_url_expiry(location) > clock() + 60
    assert [op for _, op in github.graphql_calls] == ["query FindRepo", "query Asset"]
    target = urllib.parse.urlsplit(location)
    connection = http.client.HTTPConnection(target.hostname, target.port)
    connection.request("GET", f"{target.path}?{target.query}")
    assert connection.getresponse().read() == demo[1]["demo_pkg-2.0-py3-none-any.whl"]


def test_an_unsigned_graphql_url_falls_back_to_githubs_asset_route(hub, github, demo):
    github.url_style = "plain"  # ReleaseAsset.url as the browser URL: 404 without a browser session
    page = hub.request("/simple/demo-pkg/")
    path = asset_path(page, "demo_pkg-2.0-py3-none-any.whl")
    first = hub.request(path)
    assert first.status == 302 and pypihub.is_signed_url(first.headers["location"])
    # The listing's REST list gave the asset's id: the route costs one REST call, and no GraphQL one.
    assert [p for _, p in github.rest_calls if "/releases/assets/" in p] == [
        f"/repos/{OWNER}/demo-pkg/releases/assets/{next(a['databaseId'] for a in github.assets.values() if a['name'] == 'demo_pkg-2.0-py3-none-any.whl')}"]
    rest = len(github.rest_calls)
    assert hub.request(path).headers["location"] == first.headers["location"]  # remembered while valid
    assert len(github.rest_calls) == rest and len(github.graphql_calls) == 1
    assert hub.request(metadata_path(page, "demo_pkg-2.0-py3-none-any.whl")).body == \
        wheel_metadata(demo[1]["demo_pkg-2.0-py3-none-any.whl"])


def test_a_refused_url_falls_back_to_githubs_asset_route_in_proxy_mode(make_hub, github, demo):
    github.broken_graphql_urls = True  # the download host answers 403 to GraphQL's URLs
    hub = make_hub(proxy_downloads=True)
    page = hub.request("/simple/demo-pkg/")
    whole = hub.request(asset_path(page, "demo_pkg-2.0-py3-none-any.whl"))
    assert whole.status == 200 and whole.body == demo[1]["demo_pkg-2.0-py3-none-any.whl"]
    assert [op for _, op in github.graphql_calls] == ["query FindRepo", "query Asset"]  # then the REST route


def test_an_asset_route_that_streams_the_bytes_is_passed_on(hub, github, demo):
    github.url_style, github.asset_route_streams = "plain", True  # "API clients should handle both"
    page = hub.request("/simple/demo-pkg/")
    whole = hub.request(asset_path(page, "demo_pkg-2.0-py3-none-any.whl"))
    assert whole.status == 200 and whole.body == demo[1]["demo_pkg-2.0-py3-none-any.whl"]


def test_proxy_head_when_the_download_host_refuses_head(make_hub, github, demo):
    github.refuse_head = True
    hub = make_hub(proxy_downloads=True)
    path = asset_path(hub.request("/simple/demo-pkg/"), "demo_pkg-2.0-py3-none-any.whl")
    head = hub.request(path, method="HEAD")
    size = len(demo[1]["demo_pkg-2.0-py3-none-any.whl"])
    assert (head.status, head.body, head.headers["content-length"]) == (200, b"", str(size))
    assert "content-range" not in head.headers and head.headers["accept-ranges"] == "bytes"


@pytest.mark.parametrize("cut", ["length", "chunked"])
def test_a_download_cut_short_upstream_is_never_a_whole_200(make_hub, github, demo, cut):
    github.cut_downloads = cut
    hub = make_hub(proxy_downloads=True)
    path = asset_path(hub.request("/simple/demo-pkg/"), "demo_pkg-2.0-py3-none-any.whl")
    connection = http.client.HTTPConnection("127.0.0.1", hub.port, timeout=10)
    connection.request("GET", path, headers={"Authorization": basic(f"{OWNER}:{TOKEN_A}")})
    response = connection.getresponse()
    with pytest.raises(http.client.IncompleteRead):  # what pip and uv see: an error, not a short file
        response.read()
    connection.close()
    wait_until(lambda: any("cut-short" in line for line in hub.logs))


def test_a_download_of_unknown_length_is_chunked(make_hub, github, demo):
    github.no_length = True
    hub = make_hub(proxy_downloads=True)
    page = hub.request("/simple/demo-pkg/")
    whole = hub.request(asset_path(page, "demo_pkg-2.0-py3-none-any.whl"))
    assert whole.status == 200 and whole.body == demo[1]["demo_pkg-2.0-py3-none-any.whl"]
    assert whole.headers["transfer-encoding"] == "chunked" and "content-length" not in whole.headers


# --- Publishing ---
# Uploads (twine's multipart POST to /legacy/) into GitHub Releases.


def releases_of(github: FakeGitHub, repo: FakeRepo, tag: str) -> list[dict]:
    return [r for r in repo.releases if r["tagName"] == tag]


def upload_head(length: int, token: str = TOKEN_A, expect: bool = False, boundary: str = "b0undary") -> bytes:
    return (f"POST /legacy/ HTTP/1.1\r\nHost: x\r\nAuthorization: {basic(f'{OWNER}:{token}')}\r\n"
            f"Content-Type: multipart/form-data; boundary={boundary}\r\nContent-Length: {length}\r\n"
            + ("Expect: 100-continue\r\n" if expect else "") + "\r\n").encode()


def test_upload_into_an_existing_bare_version_tag(hub, github, demo):
    repo, _ = demo
    repo.add_release("4.0", {})
    name, content = make_wheel("demo-pkg", "4.0")
    response = post_upload(hub, upload_fields("demo-pkg", "4.0", content), name, content, path="/")
    assert response.status == 200
    assert [a["name"] for a in next(r for r in repo.releases if r["tagName"] == "4.0")["assets"]] == [name]
    assert not any(r["tagName"] == "v4.0" for r in repo.releases)


def test_upload_with_wrong_digest_touches_nothing(hub, github, demo):
    name, content = make_wheel("demo-pkg", "4.1")
    response = post_upload(hub, upload_fields("demo-pkg", "4.1", content, sha256_digest="ab" * 32), name, content)
    assert response.status == 400 and response.body == b"sha256_digest does not match the uploaded file.\n"
    assert github.writes == []  # only reads: the repo and write access, confirmed before the file was kept
    assert [op for _, op in github.graphql_calls] == ["query FindRepo"]


def test_upload_without_write_access_is_403_before_the_file_is_read(hub, github):
    repo = github.add_repo("open-pkg", private=False, readers=(TOKEN_A,), writers=(TOKEN_A,))
    name, content = make_wheel("open-pkg", "1.0")
    response = post_upload(hub, upload_fields("open-pkg", "1.0", content), name, content, token=TOKEN_B)
    assert response.status == 403 and b"publishing needs write access" in response.body  # viewerPermission READ
    assert repo.releases == [] and github.writes == []


def test_upload_that_github_refuses_is_403_with_githubs_reason(hub, github):
    repo = github.add_repo("app-pkg")
    github.add_token("ghs_readonly000000000000000000000000000", read=(repo,))  # an App token: no viewerPermission
    name, content = make_wheel("app-pkg", "1.0")
    response = post_upload(hub, upload_fields("app-pkg", "1.0", content), name, content,
                           token="ghs_readonly000000000000000000000000000")
    assert response.status == 403 and b"Resource not accessible by integration" in response.body
    assert repo.releases == []


def test_failed_upload_removes_the_release_it_created(hub, github, demo):
    github.fail_uploads = True
    name, content = make_wheel("demo-pkg", "4.2")
    response = post_upload(hub, upload_fields("demo-pkg", "4.2", content), name, content)
    assert response.status == 502
    assert not any(r["tagName"] == "v4.2" for r in demo[0].releases)
    assert [m for m, _ in github.writes] == ["POST", "POST", "DELETE"]  # release, asset, clean-up


def test_upload_needs_credentials(hub, github, demo):
    name, content = make_wheel("demo-pkg", "4.3")
    assert post_upload(hub, upload_fields("demo-pkg", "4.3", content), name, content, token=None).status == 401


def test_upload_drafts_publishes_and_takes_a_versions_second_file(hub, github, demo):
    repo, _ = demo
    wheel, wheel_bytes = make_wheel("demo-pkg", "3.1")
    sdist, sdist_bytes = make_sdist("demo-pkg", "3.1")
    assert post_upload(hub, upload_fields("demo-pkg", "3.1", wheel_bytes), wheel, wheel_bytes).status == 200
    assert post_upload(hub, upload_fields("demo-pkg", "3.1", sdist_bytes), sdist, sdist_bytes).status == 200
    [release] = releases_of(github, repo, "v3.1")
    assert not release["isDraft"] and sorted(a["name"] for a in release["assets"]) == sorted([wheel, sdist])
    # GitHub's advice for immutable releases, kept on every repo: a draft, its file, then publish.
    assert [m for m, _ in github.writes] == ["POST", "POST", "PATCH", "POST"] and github.deleted_published == []
    assert sorted(project_files(hub.request("/simple/demo-pkg/")))[-2:] == sorted([wheel, sdist])


def test_immutable_repo_takes_the_first_file_and_refuses_a_later_one_before_sending_it(hub, github):
    repo = github.add_repo("locked-pkg", immutable=True)
    wheel, wheel_bytes = make_wheel("locked-pkg", "1.0")
    sdist, sdist_bytes = make_sdist("locked-pkg", "1.0")
    assert post_upload(hub, upload_fields("locked-pkg", "1.0", wheel_bytes), wheel, wheel_bytes).status == 200
    [release] = releases_of(github, repo, "v1.0")
    assert release["immutable"] and [a["name"] for a in release["assets"]] == [wheel]
    writes = list(github.writes)
    refused = post_upload(hub, upload_fields("locked-pkg", "1.0", sdist_bytes), sdist, sdist_bytes)
    assert refused.status == 409 and b"immutable" in refused.body
    assert github.writes == writes  # not a byte went to GitHub
    assert github.deleted_published == [] and releases_of(github, repo, "v1.0") == [release]
    assert project_files(hub.request("/simple/locked-pkg/")) == [wheel]


def test_a_deleted_immutable_releases_tag_is_refused_clearly(hub, github):
    repo = github.add_repo("burnt-pkg", immutable=True)
    wheel, content = make_wheel("burnt-pkg", "1.0")
    assert post_upload(hub, upload_fields("burnt-pkg", "1.0", content), wheel, content).status == 200
    [release] = releases_of(github, repo, "v1.0")
    repo.releases.remove(release)  # someone deleted it on GitHub: the tag is burnt for good
    repo.burnt_tags.add("v1.0")
    again = post_upload(hub, upload_fields("burnt-pkg", "1.0", content), wheel, content)
    assert again.status == 409 and b"tag_name was used by an immutable release" in again.body
    assert releases_of(github, repo, "v1.0") == [] and github.deleted_published == []


def test_failed_upload_on_an_immutable_repo_deletes_only_its_draft(hub, github):
    repo = github.add_repo("shaky-pkg", immutable=True)
    github.fail_uploads = "starter"  # GitHub's 502, leaving an empty asset in state "starter"
    wheel, content = make_wheel("shaky-pkg", "1.0")
    assert post_upload(hub, upload_fields("shaky-pkg", "1.0", content), wheel, content).status == 502
    assert repo.releases == [] and github.deleted_published == [] and repo.burnt_tags == set()
    github.fail_uploads = False
    assert post_upload(hub, upload_fields("shaky-pkg", "1.0", content), wheel, content).status == 200


def test_an_upload_whose_answer_is_lost_counts_when_github_has_the_file(make_hub, github, demo):
    hub = make_hub(upload_timeout=0.3)
    github.upload_delay = 1.0  # GitHub stores the file, but its answer comes after our timeout
    wheel, content = make_wheel("demo-pkg", "3.2")
    assert post_upload(hub, upload_fields("demo-pkg", "3.2", content), wheel, content).status == 200
    [release] = releases_of(github, demo[0], "v3.2")
    assert not release["isDraft"] and [a["name"] for a in release["assets"]] == [wheel]


def test_an_upload_github_renames_is_removed_and_refused(hub, github, demo):
    version = "1!5.0"  # a version epoch: GitHub renames "!" (or may: compare the answer's name)
    wheel, content = make_wheel("demo-pkg", version)
    refused = post_upload(hub, upload_fields("demo-pkg", version, content), wheel, content)
    assert refused.status == 400 and wheel.encode() in refused.body and b"demo_pkg-1.5.0-py3" in refused.body
    assert github.deleted_assets == [wheel.replace("!", ".")] and releases_of(github, demo[0], f"v{version}") == []


def test_failed_uploads_leftovers_are_not_listed(hub, github, demo):
    repo, _ = demo
    github.add_asset(repo, repo.releases[-1], "demo_pkg-1.0-py2-none-any.whl", b"", "2026-01-10T12:00:00Z",
                     state="starter")
    assert "demo_pkg-1.0-py2-none-any.whl" not in project_files(hub.request("/simple/demo-pkg/"))


def test_an_upload_deletes_a_failed_uploads_leftover_and_nothing_else(hub, github, demo):
    repo, _ = demo
    name, content = make_wheel("demo-pkg", "2.1")
    release = repo.add_release("v2.1", {"demo_pkg-2.1.tar.gz": b"sdist 2.1"})
    leftover = github.add_asset(repo, release, name, b"", "2026-06-01T00:00:00Z", state="starter")  # a killed CI job's
    leftover["digest"] = None
    assert name not in project_files(hub.request("/simple/demo-pkg/")) and github.rest_calls == []  # size 0: no file
    assert post_upload(hub, upload_fields("demo-pkg", "2.1", content), name, content).status == 200
    assert github.deleted_assets == [name]
    [stored] = [a for a in release["assets"] if a["name"] == name]
    assert stored["state"] == "uploaded" and stored["content"] == content
    sdist = b"another sdist 2.1"  # an uploaded file of the same name is never deleted
    refused = post_upload(hub, upload_fields("demo-pkg", "2.1", sdist, filetype="sdist"), "demo_pkg-2.1.tar.gz", sdist)
    assert refused.status == 400 and github.deleted_assets == [name]


def test_writes_follow_githubs_307_with_their_token_and_body(github):
    repo = github.add_repo("old-name")
    github.transfer(repo, OWNER, "new-name")
    client = pypihub.GitHub(github.graphql_url, TOKEN_A, 5.0, gate=pypihub.Gate())
    created = client.rest_write("POST", f"{client.rest_url}/repos/{OWNER}/old-name/releases",
                                json.dumps({"tag_name": "v1", "draft": True}).encode(), "application/json")
    assert created["tag_name"] == "v1" and created["draft"] is True
    assert ("POST", f"/repos/{OWNER}/old-name/releases") in github.writes
    assert ("POST", f"/repositories/{repo.database_id}/releases") in github.writes
    spool = io.BytesIO(b"wheel bytes")  # an upload's spooled file: sent again from its start
    url = f"{github.base}/uploads/repos/{OWNER}/old-name/releases/{created['id']}/assets?name=new_name-1-py3-none-any.whl"
    asset = client.rest_write("POST", url, spool, "application/octet-stream", 11)
    assert asset["state"] == "uploaded" and repo.releases[0]["assets"][0]["content"] == b"wheel bytes"


def test_a_write_redirected_off_githubs_host_is_never_taken_for_success(hub, github, demo):
    github.rest_faults.extend([None, "elsewhere307"])  # the tag lookup, then the release's creation
    name, content = make_wheel("demo-pkg", "6.0")
    answer = post_upload(hub, upload_fields("demo-pkg", "6.0", content), name, content)
    assert answer.status == 502 and b"redirect" in answer.body
    assert not any(r["tagName"] == "v6.0" for r in demo[0].releases)


def test_expect_100_continue_comes_after_the_checks(hub, github, demo):
    name, content = make_wheel("demo-pkg", "5.1")
    body, _ = multipart(upload_fields("demo-pkg", "5.1", content), name, content)
    answer = raw_exchange(hub.port, upload_head(len(body), expect=True), then=body)
    assert statuses(answer) == [100, 200]
    assert statuses(raw_exchange(hub.port, upload_head(len(body) + (3 << 30), expect=True), then=b"")) == [413]


def test_a_wheel_and_an_sdist_of_a_new_version_uploaded_at_once_both_land(hub, github, demo):
    for n in range(10):
        version = f"6.{n}"
        dists = [make_wheel("demo-pkg", version), make_sdist("demo-pkg", version)]
        results: list[int] = []
        threads = [threading.Thread(target=lambda d=d: results.append(
            post_upload(hub, upload_fields("demo-pkg", version, d[1]), d[0], d[1]).status)) for d in dists]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        [release] = releases_of(github, demo[0], f"v{version}")
        assert results == [200, 200] and sorted(a["name"] for a in release["assets"]) == sorted(d[0] for d in dists)


def test_an_uploads_github_time_starts_after_its_body(make_hub, github, demo):
    hub = make_hub(upstream_timeout=1.0)
    name, content = make_wheel("demo-pkg", "8.1")
    body, _ = multipart(upload_fields("demo-pkg", "8.1", content), name, content)
    with socket.create_connection(("127.0.0.1", hub.port), timeout=10) as sock:
        sock.sendall(upload_head(len(body)) + body[: len(body) // 2])
        time.sleep(1.3)  # a slow client: longer than --upstream-timeout
        sock.sendall(body[len(body) // 2:])
        assert statuses(sock.recv(65536)) == [200]


def test_an_upload_sending_its_file_before_name_and_version_is_400(hub, github, demo):
    name, content = make_wheel("demo-pkg", "8.2")
    boundary = "b0undary"
    body = (f'--{boundary}\r\nContent-Disposition: form-data; name="content"; filename="{name}"\r\n\r\n').encode() + \
        content + f'\r\n--{boundary}\r\nContent-Disposition: form-data; name="name"\r\n\r\ndemo-pkg\r\n--{boundary}--\r\n'.encode()
    response = hub.request("/legacy/", method="POST", body=body,
                           headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})
    assert response.status == 400 and b"before the file" in response.body and github.writes == []


# --- Pages for people ---
# / and /project/<name>/, for a browser.


HOSTILE_TEXT = '"><img src=x onerror=alert(1)><script>alert(2)</script>'


HOSTILE_WHEEL = 'demo_pkg-1.5-py3-none-any"><script>alert(3)</script>.whl'


@pytest.fixture
def people(github, demo):
    """demo-pkg with what a project page shows: a prerelease, release notes (with markup GitHub
    would not send, and an image), a hostile release title, repo description and file name."""
    repo, files = demo
    repo.description = "Demo tools " + HOSTILE_TEXT
    two = next(r for r in repo.releases if r["tagName"] == "v2.0")
    two["name"] = "Two " + HOSTILE_TEXT
    two["notes_html"] = ('<h2>What changed</h2><p>Faster <b>parser</b> by <a href="/alice">@alice</a></p>'
                         '<script>alert(4)</script><img src="https://camo.githubusercontent.com/x" alt="shot">')
    next(r for r in repo.releases if r["tagName"] == "v1.0")["name"] = "[yanked] broken <b>upload</b>"
    rc_name, rc = make_wheel("demo-pkg", "2.1rc1")
    repo.add_release("v2.1rc1", {rc_name: rc}, prerelease=True, created="2026-04-01T00:00:00Z")
    repo.add_release("v1.5", {HOSTILE_WHEEL: b"hostile"}, created="2026-02-01T00:00:00Z")
    return repo, {**files, rc_name: rc}


def page_headings(body: bytes) -> list[str]:
    return [re.sub(r"<[^>]+>", "", h) for h in re.findall(r"<h3>(.*?)</h3>", body.decode(), re.S)]


def test_a_project_page_shows_versions_files_hashes_and_notes(hub, github, people):
    _, files = people
    page = hub.request("/project/demo-pkg/")
    body = page.body.decode()
    assert page.status == 200 and page.headers["content-security-policy"] == pypihub.PAGE_CSP
    headings = [html.unescape(h) for h in page_headings(page.body)]  # newest first, with their states
    assert headings == ["2.1rc1pre-release", "2.0", "1.5", "1.0yanked: broken <b>upload</b>"]
    for name, content in files.items():
        assert html.escape(name) in body and hashlib.sha256(content).hexdigest() in body
    hrefs = [h for h, _, _ in page.links()]
    assert all(h.startswith("../../asset/") for h in hrefs if ".whl" in h)  # relative, through PyPIHub
    assert "Faster <b>parser</b> by" in body and 'href="https://github.com/alice"' in body  # the notes
    assert "https://github.com/octorg/demo-pkg/releases/tag/v2.0" in hrefs
    assert f"pip install --index-url http://127.0.0.1:{hub.port}/simple/ demo-pkg" in html.unescape(body)


def test_names_from_github_are_escaped_on_pages(hub, github, people):
    for path in ("/", "/project/demo-pkg/"):
        body = hub.request(path).body.decode()
        assert "<script" not in body and "onerror=" not in body.replace("onerror=alert(1)&gt;", "")
        assert html.escape(HOSTILE_TEXT) in body
    assert html.escape(HOSTILE_WHEEL) in hub.request("/project/demo-pkg/").body.decode()


def test_a_project_page_costs_one_notes_call_then_none(hub, github, people):
    hub.request("/simple/demo-pkg/")
    calls = len(github.graphql_calls)
    assert hub.request("/project/demo-pkg/").status == 200
    assert [op for _, op in github.graphql_calls[calls:]] == ["query ReleaseNotes"]  # the listing is the same
    assert hub.request("/project/demo-pkg/").status == 200
    assert len(github.graphql_calls) == calls + 1
    github.add_token("ghp_tokenCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCC", read=[people[0]])
    calls = len(github.graphql_calls)
    assert hub.request("/project/demo-pkg/", token="ghp_tokenCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCC").status == 200
    assert [op for _, op in github.graphql_calls[calls:]] == ["query FindRepo"]  # its own listing; notes kept


def test_the_signed_in_home_lists_the_owners_projects(hub, github, people):
    page = hub.request("/")
    body = page.body.decode()
    assert page.status == 200 and 'href="project/demo-pkg/"' in body and ">2.0<" in body  # the newest final
    assert "Demo tools " + html.escape(HOSTILE_TEXT) in body
    assert 'href="project/demo-pkg/"' not in hub.request("/?q=nothing+like+it").body.decode()


def test_pages_show_only_what_the_token_sees(hub, github, people):
    assert hub.request("/project/demo-pkg/", token=TOKEN_B).status == 404
    assert "demo-pkg" not in hub.request("/", token=TOKEN_B).body.decode()


@pytest.mark.parametrize("path, location", [("/project/Demo_Pkg/", "../demo-pkg/"), ("/project/demo-pkg", "demo-pkg/")])
def test_a_project_page_lives_at_its_normalized_name(hub, github, people, path, location):
    answer = hub.request(path)
    assert (answer.status, answer.headers["location"]) == (301, location)


def test_an_immutable_release_is_marked_on_its_project_page(make_hub, github):
    repo = github.add_repo("frozen", immutable=True)
    repo.add_release("v1.0", dict([make_wheel("frozen", "1.0")]))
    hub = make_hub()
    assert page_headings(hub.request("/project/frozen/").body) == ["1.0immutable"]


# --- Tokens, auth and redaction ---
# Who may see what (GitHub decides), what a token costs, where a token may never appear, and
# writes that no other site's page can make.


def test_github_sees_bearer_token_and_user_agent(hub, github, demo):
    seen = []

    class Spy(FakeHandler):
        def do_POST(self):
            seen.append((self.headers["Authorization"], self.headers["User-Agent"]))
            super().do_POST()

    github.server.RequestHandlerClass = Spy
    assert hub.request("/simple/demo-pkg/").status == 200
    assert seen == [(f"bearer {TOKEN_A}", f"pypihub/{pypihub.__version__}")]


@pytest.mark.parametrize("token, owner, auth, status", [
    (None, OWNER, None, 401),
    (None, OWNER, "Bearer " + TOKEN_A, 401),
    (None, OWNER, "Basic %%%", 401),
    (None, OWNER, basic("octorg"), 401),
    (TOKEN_BAD, OWNER, None, 401),
    (TOKEN_B, OWNER, None, 404),
    (TOKEN_A, "not-octorg", None, 404),
])
def test_project_page_access(hub, github, demo, token, owner, auth, status):
    response = hub.request("/simple/demo-pkg/", token=token, owner=owner, auth=auth)
    assert response.status == status
    assert response.headers["content-type"] == pypihub.TEXT_PLAIN
    assert response.body.endswith(b".\n") and b"Traceback" not in response.body
    if status == 401:
        assert response.headers["www-authenticate"] == 'Basic realm="pypihub", charset="UTF-8"'


def test_token_b_sees_public_repo_but_not_private(hub, github, demo):
    github.add_repo("open-pkg", private=False).add_release("v1", {"open_pkg-1.0-py3-none-any.whl": b"o"})
    assert hub.request("/simple/open-pkg/", token=TOKEN_B).status == 200
    assert hub.request("/simple/demo-pkg/", token=TOKEN_B).status == 404


def test_owner_allow_list(make_hub, github, demo):
    hub = make_hub(owners=("OctOrg",))
    assert hub.request("/simple/demo-pkg/").status == 200
    response = hub.request("/simple/demo-pkg/", owner="elsewhere")
    assert response.status == 403
    assert github.graphql_calls == [(TOKEN_A, "query FindRepo")]


def test_a_2026_installation_token_reads_and_publishes_and_never_reaches_the_log(hub, github, demo):
    repo, _ = demo
    github.add_token(JOB_TOKEN, write=(repo,))  # Actions' GITHUB_TOKEN, ~540 characters with dots
    assert len(JOB_TOKEN) > 500 and JOB_TOKEN.count(".") == 2
    assert hub.request("/simple/demo-pkg/", token=JOB_TOKEN).status == 200
    assert hub.request("/simple/demo-pkg/", token=JOB_TOKEN + "\n").status == 200  # a trailing newline is no part
    name, content = make_wheel("demo-pkg", "4.0")
    assert post_upload(hub, upload_fields("demo-pkg", "4.0", content), name, content, token=JOB_TOKEN).status == 200
    assert any(r["tagName"] == "v4.0" and not r["isDraft"] for r in repo.releases)
    # in a path, a query and percent-encoded: never in the log (make_hub checks every part of it)
    for path in (f"/simple/{JOB_TOKEN}/", f"/simple/demo-pkg/?t={JOB_TOKEN}",
                 "/simple/x/?t=" + urllib.parse.quote(JOB_TOKEN, safe="").replace(".", "%2E")):
        assert hub.request(path, token=None).status in (401, 404)


def test_a_token_of_4096_characters_reaches_github_and_one_longer_does_not(hub, github, demo):
    long_token = "github_pat_" + "x" * 4085
    github.add_token(long_token, read=(demo[0],))
    assert hub.request("/simple/demo-pkg/", token=long_token).status == 200
    calls = len(github.graphql_calls)
    assert hub.request("/simple/demo-pkg/", token=long_token + "y").status == 401
    assert len(github.graphql_calls) == calls


@pytest.mark.parametrize("method, headers, refused", [
    ("POST", {}, False),  # twine, uv publish, poetry, pdm: no Origin, no Sec-Fetch-Site
    ("POST", {"Origin": "http://127.0.0.1:8080"}, False),  # this very origin
    ("POST", {"Sec-Fetch-Site": "same-origin", "Origin": "http://127.0.0.1:8080"}, False),
    ("POST", {"Sec-Fetch-Site": "none"}, False),  # typed by the user
    ("POST", {"Origin": "http://evil.example"}, True),
    ("POST", {"Origin": "null"}, True),  # a sandboxed page or a data: URL
    ("POST", {"Origin": "http://127.0.0.1:8081"}, True),  # another port is another origin
    ("POST", {"Sec-Fetch-Site": "cross-site"}, True), ("POST", {"Sec-Fetch-Site": "same-site"}, True),
    ("PUT", {"Origin": "http://evil.example"}, True),
    ("GET", {"Origin": "http://evil.example", "Sec-Fetch-Site": "cross-site"}, False),  # reads: not here
])
def test_writes_come_from_no_browser_or_from_this_origin(method, headers, refused):
    if refused:
        with pytest.raises(pypihub.Forbidden):
            pypihub.refuse_cross_site(method, headers, "http://127.0.0.1:8080")
    else:
        pypihub.refuse_cross_site(method, headers, "http://127.0.0.1:8080")


@pytest.mark.parametrize("headers", [{"Origin": "http://evil.example"}, {"Sec-Fetch-Site": "cross-site"},
                                     {"Origin": "null", "Sec-Fetch-Site": "same-site"}])
def test_a_cross_site_upload_is_refused_before_any_github_call(hub, github, demo, headers):
    name, content = make_wheel("demo-pkg", "7.0")
    body, content_type = multipart(upload_fields("demo-pkg", "7.0", content), name, content)
    answer = hub.request("/legacy/", method="POST", body=body, headers={"Content-Type": content_type, **headers})
    assert answer.status == 403 and answer.headers["cache-control"] == "no-store"
    assert github.graphql_calls == [] and github.rest_calls == [] and github.writes == []
    assert post_upload(hub, upload_fields("demo-pkg", "7.0", content), name, content).status == 200  # twine's way


def test_made_up_tokens_are_rationed_per_address(make_hub, github, demo, clock):
    hub = make_hub(trusted_proxies=pypihub.parse_networks(["127.0.0.3"]))
    statuses = [hub.request("/simple/demo-pkg/", token=f"ghp_madeUp{n:030d}").status for n in range(25)]
    assert statuses == [401] * 20 + [429] * 5
    assert len(github.graphql_calls) == 20  # the last five cost GitHub nothing
    assert hub.request("/simple/demo-pkg/", token=TOKEN_A).status == 429  # a token GitHub never accepted here
    other = http.client.HTTPConnection("127.0.0.1", hub.port, source_address=("127.0.0.2", 0), timeout=10)
    other.request("GET", "/simple/demo-pkg/", headers={"Authorization": basic(f"{OWNER}:{TOKEN_A}")})
    assert other.getresponse().status == 200  # another address is not held back
    assert hub.request("/simple/demo-pkg/", token=TOKEN_A).status == 200  # now GitHub has accepted it
    clock.advance(61)
    assert hub.request("/simple/demo-pkg/", token="ghp_madeUp" + "9" * 30).status == 401  # the minute is over


def test_good_tokens_from_one_address_are_never_rationed(make_hub, github, demo):
    hub = make_hub()
    for n in range(30):  # a CI farm behind one address: a new GITHUB_TOKEN in every job
        token = installation_token(15368, 60000 + n)
        github.add_token(token, read=(demo[0],))
        assert hub.request("/simple/demo-pkg/", token=token).status == 200
    assert hub.request("/simple/demo-pkg/", token=TOKEN_BAD).status == 401


def test_behind_a_trusted_proxy_the_forwarded_client_is_rationed(make_hub, github, demo):
    hub = make_hub(trusted_proxies=pypihub.parse_networks(["127.0.0.1"]))
    for n in range(21):
        hub.request("/simple/demo-pkg/", token=f"ghp_madeUp{n:030d}", headers={"X-Forwarded-For": "203.0.113.9"})
    limited = hub.request("/simple/demo-pkg/", token="ghp_madeUp" + "8" * 30, headers={"X-Forwarded-For": "203.0.113.9"})
    assert limited.status == 429 and int(limited.headers["retry-after"]) <= 61
    assert hub.request("/simple/demo-pkg/", headers={"X-Forwarded-For": "198.51.100.7"}).status == 200


def test_a_token_as_a_malformed_request_lines_method_never_reaches_the_log(hub, github, demo):
    for token in (TOKEN_A, JOB_TOKEN):
        assert raw_exchange(hub.port, f"{token} / HTTP/1.1\r\nHost: x\r\n\r\n".encode()).startswith(b"HTTP/1.1 501")
    wait_until(lambda: hub.server.events.flush() and len(hub.logs) >= 2)
    assert all('"[token] /"' in line for line in hub.logs)  # and make_hub checks every part of the tokens


def test_a_token_split_between_a_malformed_lines_method_and_target_never_reaches_the_log(hub, github, demo):
    raw_exchange(hub.port, f"{TOKEN_A[:10]} {TOKEN_A[10:]} HTTP/1.1\r\n\r\n".encode())
    wait_until(lambda: hub.server.events.flush() and len(hub.logs) >= 1)
    assert TOKEN_A[10:] not in "\n".join(hub.logs) and '"[token] [token]"' in hub.logs[0]


def test_tokens_never_reach_the_log_in_any_form(hub, github, demo):
    basic_form = base64.b64encode(f"{OWNER}:{TOKEN_B}".encode()).decode()
    for path in (f"/simple/demo-pkg/?token={urllib.parse.quote(JOB_TOKEN, safe='')}",  # percent-encoded
                 f"/simple/demo-pkg/?auth={urllib.parse.quote(basic_form, safe='')}",  # a Basic form in a query
                 f"/simple/demo-pkg/?auth=Basic%20{basic_form}", f"/simple/x{APP_TOKEN}y/",  # glued
                 "/simple/" + APP_TOKEN.replace(".", "%2e") + "/",
                 f"/simple/demo-pkg/?self={urllib.parse.quote(basic(f'{OWNER}:{TOKEN_A}'))}"):  # its own header
        hub.request(path)
    written = "\n".join(hub.logs)
    assert basic_form not in written and TOKEN_B not in written and "[token]" in written  # make_hub checks the rest


def test_no_credentials_mode_lends_nothing_to_a_same_site_page(make_hub, github, demo):
    settings = pypihub.build_settings(["--token-env", "GH_TOKEN", "--owner", OWNER, "--host", "127.0.0.1"], {})
    hub = make_hub(owners=(OWNER,), own_token=pypihub.TokenSource(settings, {"GH_TOKEN": TOKEN_A}))
    for fetch_site, status in (("same-site", 401), ("cross-site", 401), ("same-origin", 200), ("none", 200)):
        assert hub.request("/simple/demo-pkg/", token=None, headers={"Sec-Fetch-Site": fetch_site}).status == status


def test_an_absolute_form_target_with_userinfo_never_logs_the_token(hub, github):
    answer = raw_exchange(hub.port, f"GET http://{OWNER}:{TOKEN_A}@127.0.0.1/simple/ HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    assert statuses(answer) == [400] and TOKEN_A.encode() not in answer
    wait_until(lambda: any("400" in line for line in hub.logs))
    assert not any(TOKEN_A in line for line in hub.logs) and any("http://127.0.0.1/simple/" in line for line in hub.logs)


def test_a_bad_token_costs_one_github_call_a_minute(hub, github, demo, clock):
    for _ in range(5):
        assert hub.request("/simple/demo-pkg/", token=TOKEN_BAD).status == 401
    assert len(github.graphql_calls) == 1
    clock.advance(61)
    assert hub.request("/simple/demo-pkg/", token=TOKEN_BAD).status == 401
    assert len(github.graphql_calls) == 2


def test_an_unknown_tokens_upload_is_refused_before_its_body(hub, github):
    early = raw_exchange(hub.port, upload_head(300 << 20, token=TOKEN_BAD, expect=True), then=b"")
    assert statuses(early) == [401]  # no "100 Continue" first, and no byte of the 300 MiB read
    assert [path for _, path in github.rest_calls] == ["/rate_limit"] and github.graphql_calls == []


def test_twenty_uploads_with_one_unknown_token_cost_one_github_call(hub, github):
    github.gate = threading.Event()  # hold GitHub's answers so that all twenty arrive together
    answers: list[bytes] = []
    threads = [threading.Thread(target=lambda: answers.append(
        raw_exchange(hub.port, upload_head(300 << 20, token=TOKEN_BAD), timeout=10, then=b""))) for _ in range(20)]
    for thread in threads:
        thread.start()
    wait_until(lambda: github.in_flight.get(TOKEN_BAD) == 1)
    github.gate.set()
    for thread in threads:
        thread.join()
    assert [statuses(a) for a in answers] == [[401]] * 20
    assert [path for _, path in github.rest_calls] == ["/rate_limit"]


def test_a_token_in_a_double_slash_target_never_reaches_the_log(hub, github):
    raw_exchange(hub.port, f"GET //{OWNER}:{TOKEN_A}@127.0.0.1/simple/ HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    wait_until(lambda: len(hub.logs) >= 1)
    assert hub.logs and not any(TOKEN_A in line for line in hub.logs)


# --- Caches and GitHub call counts ---
# What is kept, for whom, and how many GitHub calls a request costs.


def test_cold_listing_then_download_costs_one_graphql_call(hub, github, demo):
    page = hub.request("/simple/demo-pkg/")
    for href, _, _ in page.links():
        assert hub.request(urllib.parse.urljoin("/simple/demo-pkg/", href)).status == 302
    assert len(github.graphql_calls) == 1
    assert "gh=1 rest=0" in hub.logs[0] and all("gh=0 rest=0" in line for line in hub.logs[1:])
    samples = parse_metrics(hub.request("/metrics", token=None).body.decode())
    assert samples['pypihub_cache_hits_total{cache="links"}'] == len(page.links()) == 4


def test_a_listing_in_use_is_loaded_again_before_it_expires(hub, github, demo, clock):
    assert hub.request("/simple/demo-pkg/").status == 200 and len(github.graphql_calls) == 1
    clock.advance(50)  # 10 s of its 60 s TTL left: not yet due
    assert hub.request("/simple/demo-pkg/").status == 200
    clock.advance(5)  # in the last tenth: answered from the cache at once, and loaded again meanwhile
    assert hub.request("/simple/demo-pkg/").status == 200
    wait_until(lambda: len(github.graphql_calls) == 2)
    assert len(github.graphql_calls) == 2
    clock.advance(30)  # past the first load's expiry, within the second's
    assert hub.request("/simple/demo-pkg/").status == 200
    assert len(github.graphql_calls) == 2


def test_a_listing_nobody_uses_just_expires(hub, github, demo, clock):
    assert hub.request("/simple/demo-pkg/").status == 200
    clock.advance(61)
    assert hub.request("/simple/demo-pkg/").status == 200
    assert len(github.graphql_calls) == 2  # loaded again when asked, not before


def test_cache_never_answers_another_token(hub, github, demo):
    assert hub.request("/simple/demo-pkg/").status == 200  # A warms the cache
    assert hub.request("/simple/demo-pkg/", token=TOKEN_B).status == 404
    assert hub.request("/simple/demo-pkg/", token=TOKEN_B).status == 404  # B's own "not found", cached
    assert hub.request("/simple/demo-pkg/", token=TOKEN_BAD).status == 401
    assert [t for t, _ in github.graphql_calls] == [TOKEN_A, TOKEN_B, TOKEN_B, TOKEN_BAD]  # B: repo, then owner index


def test_cache_keys_hold_no_token(hub, github, demo):
    hub.request("/simple/demo-pkg/")
    index = hub.server.index
    keys = repr(index.listings.keys() + index.files.links.keys() + index.files.facts.keys() + index.files.metadata.keys())
    assert TOKEN_A not in keys and "demo-pkg" in keys


def test_warm_listing_costs_nothing_until_ttl(hub, github, demo, clock):
    for _ in range(3):
        assert hub.request("/simple/demo-pkg/").status == 200
    assert len(github.graphql_calls) == 1
    clock.advance(61)
    assert hub.request("/simple/demo-pkg/").status == 200
    assert len(github.graphql_calls) == 2


def test_cache_ttl_zero_turns_caching_off(make_hub, github, demo):
    hub = make_hub(cache_ttl=0)
    for _ in range(3):
        assert hub.request("/simple/demo-pkg/").status == 200
    samples = parse_metrics(hub.request("/metrics", token=None).body.decode())
    assert len(github.graphql_calls) == 3 and samples['pypihub_cache_entries{cache="listings"}'] == 0
    assert hub.request("/simple/demo-pkg/").headers["cache-control"] == "private, max-age=0"


def test_concurrent_cold_requests_are_coalesced(hub, github, demo):
    github.gate = threading.Event()
    results = []
    threads = [threading.Thread(target=lambda: results.append(hub.request("/simple/demo-pkg/").status)) for _ in range(20)]
    for thread in threads:
        thread.start()
    wait_until(lambda: hub.server.index.listings.stats["coalesced"] >= 19)
    github.gate.set()
    for thread in threads:
        thread.join()
    assert results == [200] * 20
    assert len(github.graphql_calls) == 1


def test_stale_listing_served_when_github_fails(hub, github, demo, clock):
    assert hub.request("/simple/demo-pkg/").status == 200
    clock.advance(120)
    github.faults.extend([502] * 3)  # more than the retries
    response = hub.request("/simple/demo-pkg/")
    assert response.status == 200 and len(project_files(response)) == 4
    assert any("stale" in line for line in hub.logs)
    clock.advance(600)
    github.faults.extend([502] * 3)  # more than the retries
    assert hub.request("/simple/demo-pkg/").status == 502


def test_a_cold_150_release_listing_costs_its_graphql_pages_and_no_rest_call(hub, github):
    repo = github.add_repo("many")
    for n in range(150):
        repo.add_release(f"v{n}", {f"many-1.{n}-py3-none-any.whl": b"w%d" % n})
    files = hub.request("/simple/many/", headers={"Accept": PIP_ACCEPT}).json()["files"]
    assert len(files) == 150 and all(f["hashes"]["sha256"] == hashlib.sha256(b"w%d" % int(f["filename"].split(".")[1]
                                     .split("-")[0])).hexdigest() for f in files)
    assert [operation for _, operation in github.graphql_calls] == ["query FindRepo", "query MoreReleases"]
    assert github.rest_calls == []


def test_an_upload_answer_is_never_kept(hub, github, demo):
    for path in ("/legacy/", "/"):
        answer = post_upload(hub, {"name": "demo-pkg"}, "x.whl", b"x", path=path)
        assert answer.status == 400 and answer.headers["cache-control"] == "no-store"


# --- GitHub's faults, limits and older servers ---
# Timeouts, rate limits, SSO, renamed and transferred repos, partial answers, older Enterprise Servers.


@pytest.mark.parametrize("faults, status, calls", [
    ([500, 500, 500], 502, 3), ([502, 503, 502], 502, 3),  # retried twice, then given up
    ([500], 200, 2), ([503, 502], 200, 3),  # retries that succeed
    ([504], 504, 1), ([429], 429, 1), ([403], 429, 1), (["garbage"], 502, 1), ([404], 502, 1),
])
def test_github_faults(hub, github, demo, faults, status, calls):
    github.faults.extend(faults)
    response = hub.request("/simple/demo-pkg/")
    assert response.status == status
    assert len(github.graphql_calls) == calls and f"gh={calls} " in hub.logs[0]
    assert len(hub.pauses) == calls - 1  # every retry waited, with jittered exponential backoff
    assert all(0.5 <= pause / (pypihub.RETRY_BASE_DELAY * 2 ** n) <= 1.0 for n, pause in enumerate(hub.pauses))
    if status == 429:
        assert response.headers["retry-after"] == "7"
        held = hub.request("/simple/demo-pkg/")  # GitHub said wait: the token's requests go nowhere until then
        assert held.status == 429 and len(github.graphql_calls) == calls
        assert 1 <= int(held.headers["retry-after"]) <= 7
        hub.clock.advance(7)
    assert hub.request("/simple/demo-pkg/").status == 200  # and the server keeps serving


def test_github_timeout_is_504_in_time(make_hub, github, demo):
    hub = make_hub(upstream_timeout=0.5)
    github.faults.append("timeout")  # the fake sits on the answer for 3 s
    started = time.monotonic()
    response = hub.request("/simple/demo-pkg/")
    assert response.status == 504
    assert time.monotonic() - started < 2.5


def test_github_unreachable_is_502(make_hub, github, demo):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        closed_port = sock.getsockname()[1]
    hub = make_hub(graphql_url=f"http://127.0.0.1:{closed_port}/graphql")
    assert hub.request("/simple/demo-pkg/").status == 502


def test_primary_rate_limit_is_429_with_retry_after(hub, github, demo):
    github.rate_limited = True
    response = hub.request("/simple/demo-pkg/")
    assert response.status == 429
    assert 1700 <= int(response.headers["retry-after"]) <= 1800


@pytest.mark.parametrize("shape, wait", [("secondary403", "60"), ("secondary429", "30"), ("secondary200", "60")])
def test_secondary_rate_limit_is_429_and_holds_the_token_off(hub, github, demo, clock, shape, wait):
    github.faults.append(shape)
    limited = hub.request("/simple/demo-pkg/")
    assert limited.status == 429 and limited.headers["retry-after"] == wait and b"secondary" in limited.body
    calls = len(github.graphql_calls)
    held = hub.request("/simple/demo-pkg/")
    assert held.status == 429 and len(github.graphql_calls) == calls  # answered from memory
    assert hub.request("/simple/demo-pkg/", token=TOKEN_B).status == 404  # another token is not held off
    clock.advance(int(wait))
    assert hub.request("/simple/demo-pkg/").status == 200


def test_secondary_rate_limit_serves_the_stale_listing(hub, github, demo, clock):
    assert hub.request("/simple/demo-pkg/").status == 200
    clock.advance(61)
    github.faults.append("secondary403")
    assert hub.request("/simple/demo-pkg/").status == 200
    assert hub.request("/simple/demo-pkg/").status == 200  # held off: still the stale listing, no call
    assert len(github.graphql_calls) == 2 and any("stale" in line for line in hub.logs)


def test_a_token_has_at_most_8_github_requests_in_flight(hub, github):
    for n in range(20):
        name, content = make_wheel(f"many-{n}", "1.0")
        github.add_repo(f"many-{n}").add_release("v1.0", {name: content})
    github.gate = threading.Event()
    results: list[int] = []
    threads = [threading.Thread(target=lambda n=n: results.append(hub.request(f"/simple/many-{n}/").status))
               for n in range(20)]
    for thread in threads:
        thread.start()
    wait_until(lambda: github.in_flight.get(TOKEN_A) == pypihub.TOKEN_CONCURRENCY)
    github.gate.set()
    for thread in threads:
        thread.join()
    assert results == [200] * 20 and github.max_concurrent[TOKEN_A] == pypihub.TOKEN_CONCURRENCY == 8


def test_older_ghes_lists_files_past_1000_releases_without_a_hash(hub, github, clock):
    github.legacy_schema = True  # digests only from REST, whose list stops after 1,000
    repo = github.add_repo("huge")
    for n in range(1050):
        name, content = make_wheel("huge", f"1.{n}")
        repo.add_release(f"v1.{n}", {name: content})
    files = hub.request("/simple/huge/", headers={"Accept": pypihub.JSON_V1}).json()["files"]
    hashed = {f["filename"] for f in files if f["hashes"]}
    assert len(files) == 1050 and len(hashed) == 1000 and "huge-1.1049-py3-none-any.whl" in hashed
    assert len(github.rest_calls) == 10  # GitHub's list stops at page 10 of 100: never asked for more
    clock.advance(61)
    again = hub.request("/simple/huge/", headers={"Accept": pypihub.JSON_V1}).json()["files"]
    assert {f["filename"] for f in again if f["hashes"]} == hashed
    assert len(github.rest_calls) == 10  # the older assets are known to have no reachable digest


@pytest.mark.parametrize("status", [200, 400])  # GitHub's status for the refusal is not confirmed: both
def test_an_older_ghes_is_asked_without_the_new_fields_after_one_refusal_per_server(make_hub, github, demo, status):
    github.legacy_schema, github.legacy_status = True, status
    other = github.add_repo("other-pkg", readers=(TOKEN_A, TOKEN_B))
    other.add_release("v1.0", dict([make_wheel("other-pkg", "1.0")]))
    hub = make_hub()
    page = hub.request("/simple/demo-pkg/")
    assert page.status == 200 and all("#sha256=" in href for href, _, _ in page.links())  # from REST
    assert hub.request("/simple/other-pkg/", token=TOKEN_B).status == 200
    assert hub.request("/project/demo-pkg/").status == 200
    assert github.schema_refusals == 1 and github.invalid_queries == []
    assert len([line for line in hub.logs if "lacks fields of 2025" in line]) == 1


def test_a_renamed_repos_rest_redirects_are_followed_and_never_handed_to_a_client(hub, github, demo):
    github.url_style = "plain"  # GraphQL's URL is no signed one: the download goes through GitHub's REST asset route
    repo, files = demo
    page = hub.request("/simple/demo-pkg/")  # the listing, and its links, know the repo as demo-pkg
    github.transfer(repo, OWNER, "demo-pkg-renamed")
    answer = hub.request(asset_path(page, "demo_pkg-2.0-py3-none-any.whl"))
    assert answer.status == 302 and answer.headers["location"].startswith(github.download_base + "/release-assets/")
    assert any(path.startswith(f"/repositories/{repo.database_id}/") for _, path in github.rest_calls)
    assert urllib.request.urlopen(answer.headers["location"]).read() == files["demo_pkg-2.0-py3-none-any.whl"]


def test_a_partial_answer_is_asked_again_in_smaller_pages_and_never_cached(make_hub, github, demo):
    hub = make_hub()
    github.resource_limit = 5000  # 100 releases x 100 assets is over it; 20 x 20 is not
    page = hub.request("/simple/demo-pkg/")
    assert page.status == 200 and len(page.links()) == 4
    assert [op for _, op in github.graphql_calls] == ["query FindRepo", "query FindRepo"]
    other = github.add_repo("other-pkg")
    other.add_release("v1.0", dict([make_wheel("other-pkg", "1.0")]))
    github.resource_limit = 10  # over the limit in smaller pages too
    failed = hub.request("/simple/other-pkg/")
    assert failed.status == 502 and b"Resource limits for this query exceeded" in failed.body
    github.resource_limit = None
    assert hub.request("/simple/other-pkg/").status == 200  # the partial answer was not kept


def test_sso_protected_org_says_where_to_authorize_the_token(hub, github, demo):
    github.sso_blocked.add((TOKEN_A, OWNER))
    response = hub.request("/simple/demo-pkg/")
    assert response.status == 403 and b"SAML" in response.body
    assert b"https://github.com/orgs/octorg/sso?authorization_request=" in response.body


def test_a_transferred_repo_is_404_for_listing_and_download_alike(hub, github, demo, clock):
    repo, _ = demo
    path = asset_path(hub.request("/simple/demo-pkg/"), "demo_pkg-2.0-py3-none-any.whl")
    github.transfer(repo, "neworg")
    clock.advance(61)
    listing = hub.request("/simple/demo-pkg/")
    assert listing.status == 404 and b"neworg/demo-pkg" in listing.body and b"use neworg" in listing.body
    assert hub.request(path).status == 404
    assert hub.request("/simple/demo-pkg/", owner="neworg").status == 200


def test_a_rate_limit_reset_of_1e400_waits_a_minute():
    assert pypihub.retry_after({"x-ratelimit-remaining": "0", "x-ratelimit-reset": "1e400"}, 1000.0) == 60


def test_could_not_reach_github_says_why(make_hub, demo):
    dead = socket.socket()
    dead.bind(("127.0.0.1", 0))
    port = dead.getsockname()[1]
    dead.close()
    hub = make_hub(graphql_url=f"http://127.0.0.1:{port}/graphql")
    answer = hub.request("/simple/demo-pkg/")
    assert answer.status == 502 and b"the connection was refused" in answer.body
    assert hub.logs[-1].endswith("reason=github-refused")


def test_upstream_timeout_bounds_the_whole_request(make_hub, github):
    repo = github.add_repo("paged")
    for n in range(250):  # three pages of releases: three GraphQL calls
        name, content = make_wheel("paged", f"1.{n}")
        repo.add_release(f"v1.{n}", {name: content})
    github.latency = 0.2  # each call is well within the timeout; all three together are not
    hub = make_hub(upstream_timeout=0.5)
    assert hub.request("/simple/paged/").status == 504  # one deadline for them all: not 3 x 0.5 s
    assert 1 <= len(github.graphql_calls) <= 3


# --- Several owners, the fallback index and no-credentials mode ---
# One index URL: several owners in order, public names from a fallback index, this machine's own token.


def drop_varying(headers: dict) -> dict:
    return {k: v for k, v in headers.items() if k not in ("date", "content-length")}


def upstream_key(url: str) -> str:
    return hashlib.sha256(url.encode()).hexdigest()[:32]


def second_owner(github: FakeGitHub) -> FakeRepo:
    """octorg2/tools-pkg (readable by A) and a demo-pkg of its own, which octorg's must win over."""
    other = github.add_repo("tools-pkg", owner="octorg2")
    other.add_release("v1.0", dict([make_wheel("tools-pkg", "1.0")]))
    github.add_repo("demo-pkg", owner="octorg2").add_release("v9.0", dict([make_wheel("demo-pkg", "9.0")]))
    return other


@pytest.mark.parametrize("fallback", [False, True])
def test_a_private_name_a_token_cannot_see_is_403_whether_or_not_it_exists(make_hub, github, demo, upstream, fallback):
    hub = make_hub(private_names=("demo-*",), **({"fallback_index": upstream.url} if fallback else {}))
    hidden, absent = (hub.request(f"/simple/{name}/", token=TOKEN_B) for name in ("demo-pkg", "demo-nothing"))
    assert hidden.status == absent.status == 403
    assert hidden.body.replace(b"demo-pkg", b"NAME") == absent.body.replace(b"demo-nothing", b"NAME")
    assert drop_varying(hidden.headers) == drop_varying(absent.headers)
    assert b"--private-name" in hidden.body
    assert hub.request("/simple/public-pkg/", token=TOKEN_B).status == (302 if fallback else 404)  # not ours
    assert hub.request("/simple/demo-pkg/").status == 200  # a token that sees it
    assert not [path for path, _ in upstream.requests if "demo-" in path]  # never asked about a private name


def test_an_html_only_fallback_index_is_served_in_proxy_mode(make_hub, github, demo, upstream):
    upstream.html_only = True  # as pypiserver, GitLab, Nexus: PEP 503 HTML whatever the Accept
    wheel, content = make_wheel("public-pkg", "1.0")
    upstream.yanked = {wheel: "broken build"}
    hub = make_hub(fallback_index=upstream.url, proxy_downloads=True)
    files = {f["filename"]: f for f in hub.request("/simple/public-pkg/", headers={"Accept": PIP_ACCEPT}).json()["files"]}
    assert files[wheel]["hashes"] == {"sha256": hashlib.sha256(content).hexdigest()}
    assert files[wheel]["requires-python"] == ">=3.8" and files[wheel]["yanked"] == "broken build"
    assert files[wheel]["core-metadata"] == {"sha256": hashlib.sha256(wheel_metadata(content)).hexdigest()}
    html_page = hub.request("/simple/public-pkg/", headers={"Accept": "text/html"})
    [(href, text, attrs)] = html_page.links()
    assert text == wheel and attrs["data-requires-python"] == ">=3.8" and attrs["data-yanked"] == "broken build"
    file_url = urllib.parse.urljoin("/simple/public-pkg/", href.split("#")[0])
    assert hub.request(file_url).body == content
    assert hub.request(file_url + ".metadata").body == wheel_metadata(content)
    assert all("json" in accept for accept in upstream.accepts)  # JSON asked for first, HTML taken


def test_upstream_serves_only_the_projects_distributions_as_downloads(make_hub, github, demo, upstream, canary):
    base = upstream.url.removesuffix("/simple/")
    upstream.redirects = [f"{canary}/latest/meta-data/"]
    upstream.extra["public-pkg"] = [
        {"filename": "evil.html", "url": f"{base}/files/public-pkg/evil.html"},
        {"filename": "other_pkg-1.0-py3-none-any.whl", "url": f"{base}/files/public-pkg/other.whl"},
        {"filename": "public_pkg-6.6.tar.gz", "url": f"{canary}/latest/meta-data/"},  # another service here
        {"filename": "public_pkg-6.7.tar.gz", "url": f"{base}/go/0"},  # and a redirect to it
        {"filename": "public_pkg-6.8.tar.gz", "url": base.replace("://", "://someone:hunter2@") + "/files/x"},
    ]
    hub = make_hub(fallback_index=upstream.url, proxy_downloads=True)
    listed = hub.request("/simple/public-pkg/", headers={"Accept": PIP_ACCEPT})
    files = {f["filename"]: f for f in listed.json()["files"]}
    assert sorted(files) == ["public_pkg-1.0-py3-none-any.whl", "public_pkg-6.6.tar.gz", "public_pkg-6.7.tar.gz",
                             "public_pkg-6.8.tar.gz"]
    assert b"hunter2" not in listed.body and b"127.0.0.1" not in listed.body  # links lead through PyPIHub only
    evil = hub.request(f"/upstream/public-pkg/{upstream_key(base + '/files/public-pkg/evil.html')}/evil.html")
    assert evil.status == 404
    wheel = hub.request(urllib.parse.urljoin("/simple/public-pkg/", files["public_pkg-1.0-py3-none-any.whl"]["url"]))
    assert wheel.status == 200 and wheel.headers["content-type"] == "application/octet-stream"
    assert wheel.headers["x-content-type-options"] == "nosniff"
    assert wheel.headers["content-disposition"] == "attachment; filename=public_pkg-1.0-py3-none-any.whl"
    assert wheel.headers["content-security-policy"] == "sandbox; default-src 'none'"
    metadata = hub.request(urllib.parse.urljoin("/simple/public-pkg/", files["public_pkg-1.0-py3-none-any.whl"]["url"])
                           + ".metadata")
    assert metadata.status == 200 and metadata.headers["content-type"] == "text/plain; charset=utf-8"
    for name in ("public_pkg-6.6.tar.gz", "public_pkg-6.7.tar.gz"):
        refused = hub.request(urllib.parse.urljoin("/simple/public-pkg/", files[name]["url"]))
        assert refused.status == 502 and b"secret" not in refused.body
    assert Canary.hits == []  # no request reached the other service, straight or redirected


def test_github_wins_on_upstream_files_too(make_hub, github, demo, upstream):
    hub = make_hub(fallback_index=upstream.url, proxy_downloads=True)  # fresh: demo-pkg never served yet
    url = upstream.url.removesuffix("/simple/") + "/files/demo-pkg/demo_pkg-99.0-py3-none-any.whl"
    answer = hub.request(f"/upstream/demo-pkg/{upstream_key(url)}/demo_pkg-99.0-py3-none-any.whl")
    assert answer.status == 404  # A has octorg/demo-pkg: the upstream's impostor is never served ...
    assert not [path for path, _ in upstream.requests if "demo-pkg" in path]  # ... nor asked about


@pytest.mark.parametrize("url, bare, auth", [
    ("https://pypi.example/simple/", "https://pypi.example/simple/", None),
    ("https://user:p%40ss@pypi.example/simple/", "https://pypi.example/simple/",
     "Basic " + base64.b64encode(b"user:p@ss").decode()),
    ("http://user:pass@127.0.0.1:3141/simple/", "http://127.0.0.1:3141/simple/",
     "Basic " + base64.b64encode(b"user:pass").decode()),
])
def test_fallback_credentials_are_split_off(url, bare, auth):
    assert pypihub.fallback_origin(url) == (bare, auth)


def test_fallback_credentials_never_go_over_plain_http_elsewhere():
    with pytest.raises(pypihub.ConfigError):
        pypihub.fallback_origin("http://user:pass@pypi.example/simple/")


@pytest.mark.parametrize("proxy", [False, True])
def test_fallback_credentials_stay_in_the_server(make_hub, github, demo, upstream, proxy):
    upstream.credentials = "mirror:s3cret-pass"  # a private mirror that wants its own credentials
    url = upstream.url.replace("http://", "http://mirror:s3cret-pass@")
    hub = make_hub(fallback_index=url, proxy_downloads=proxy)
    answer = hub.request("/simple/public-pkg/", headers={"Accept": PIP_ACCEPT})
    if proxy:
        [entry] = answer.json()["files"]
        assert hub.request(urllib.parse.urljoin("/simple/public-pkg/", entry["url"])).status == 200
    else:
        assert answer.status == 302 and answer.headers["location"] == upstream.url + "public-pkg/"
    assert "s3cret" not in "\n".join(hub.logs) and b"s3cret" not in b"".join(hub.answers)


@pytest.mark.parametrize("proxy", [False, True])
def test_a_name_kept_as_private_answers_as_a_name_nobody_has(make_hub, github, demo, upstream, proxy):
    hub = make_hub(fallback_index=upstream.url, proxy_downloads=proxy)
    assert hub.request("/simple/demo-pkg/").status == 200  # served from GitHub to A: kept from the upstream
    kept, nobody = (hub.request(f"/simple/{name}/", token=TOKEN_B) for name in ("demo-pkg", "no-such-pkg"))
    assert kept.status == nobody.status == 404
    assert kept.body.replace(b"demo-pkg", b"NAME") == nobody.body.replace(b"no-such-pkg", b"NAME")
    assert drop_varying(kept.headers) == drop_varying(nobody.headers)


def test_a_reserved_user_looks_across_the_owners_in_order(make_hub, github, demo):
    second_owner(github)
    hub = make_hub(owners=(OWNER, "octorg2"))
    for user in ("__token__", "x-access-token", "token"):
        assert project_files(hub.request("/simple/tools-pkg/", owner=user)) == ["tools_pkg-1.0-py3-none-any.whl"]
    files = project_files(hub.request("/simple/demo-pkg/", auth=basic(f":{TOKEN_A}")))
    assert "demo_pkg-2.0-py3-none-any.whl" in files and not any("9.0" in f for f in files)  # the first owner's only
    assert [text for _, text, _ in hub.request("/simple/", owner="__token__").links()] == ["demo-pkg", "tools-pkg"]
    page = hub.request("/simple/tools-pkg/", owner="__token__")
    assert hub.request(asset_path(page, "tools_pkg-1.0-py3-none-any.whl"), owner="__token__").status == 302
    assert hub.request("/simple/tools-pkg/", owner="__token__", token=TOKEN_B).status == 404


def test_a_reserved_user_without_configured_owners_is_told_to_name_one(hub, github, demo):
    answer = hub.request("/simple/demo-pkg/", owner="__token__")
    assert answer.status == 401 and b"--owner" in answer.body


def test_a_reserved_users_upload_goes_to_the_first_owner_with_the_repo(make_hub, github, demo):
    other = second_owner(github)
    hub = make_hub(owners=(OWNER, "octorg2"))
    name, content = make_wheel("tools-pkg", "1.1")
    assert post_upload(hub, upload_fields("tools-pkg", "1.1", content), name, content).status == 404  # octorg: no
    # ... as the owner's name: octorg has no tools-pkg; as __token__: octorg2 has it.
    response = hub.request("/legacy/", owner="__token__", method="POST",
                           headers={"Content-Type": multipart(upload_fields("tools-pkg", "1.1", content), name, content)[1]},
                           body=multipart(upload_fields("tools-pkg", "1.1", content), name, content)[0], timeout=30)
    assert response.status == 200 and any(a["name"] == name for r in other.releases for a in r["assets"])
    nowhere, nothing = make_wheel("nowhere-pkg", "1.0")
    body, content_type = multipart(upload_fields("nowhere-pkg", "1.0", nothing), nowhere, nothing)
    missing = hub.request("/legacy/", owner="__token__", method="POST", headers={"Content-Type": content_type},
                          body=body, timeout=30)
    assert missing.status == 404 and b"octorg, octorg2" in missing.body


@pytest.mark.parametrize("proxy", [False, True], ids=["redirect", "proxy"])
def test_a_name_not_ours_comes_from_the_fallback_index(make_hub, github, demo, upstream, proxy):
    hub = make_hub(fallback_index=upstream.url, proxy_downloads=proxy)
    public = hub.request("/simple/public-pkg/", headers={"Accept": pypihub.JSON_V1})
    if proxy:
        files = public.json()["files"]
        assert public.status == 200 and [f["filename"] for f in files] == ["public_pkg-1.0-py3-none-any.whl"]
        assert files[0]["hashes"]["sha256"] and files[0]["core-metadata"] and files[0]["url"].startswith("../../upstream/")
        wheel = hub.request(urllib.parse.urljoin("/simple/public-pkg/", files[0]["url"]))
        assert wheel.status == 200 and hashlib.sha256(wheel.body).hexdigest() == files[0]["hashes"]["sha256"]
        assert hub.request("/upstream/public-pkg/" + "0" * 32 + "/anything.whl").status == 404  # only what pages named
        assert hub.request(urllib.parse.urljoin("/simple/public-pkg/", files[0]["url"]), token=None).status == 401
        metadata = hub.request(urllib.parse.urljoin("/simple/public-pkg/", files[0]["url"]) + ".metadata")
        assert hashlib.sha256(metadata.body).hexdigest() == files[0]["core-metadata"]["sha256"]
    else:
        assert public.status == 302 and public.headers["location"] == upstream.url + "public-pkg/"
    shadowed = hub.request("/simple/demo-pkg/")  # ours for A: GitHub's alone, however high upstream's version
    assert shadowed.status == 200 and not any("99.0" in f for f in project_files(shadowed))
    assert hub.request("/simple/public-pkg/", token=None).status == 401  # never upstream without credentials


def test_a_private_name_never_comes_from_the_fallback_index(make_hub, github, demo, upstream):
    hub = make_hub(fallback_index=upstream.url, private_names=("demo-*",))
    refused = hub.request("/simple/demo-pkg/", token=TOKEN_B)  # B cannot see it: not upstream's either ...
    assert refused.status == 403 and b"--private-name" in refused.body  # ... and 403, so that uv stops here
    assert upstream.requests == []
    hub2 = make_hub(fallback_index=upstream.url)
    assert hub2.request("/simple/demo-pkg/").status == 200  # served privately to A ...
    assert hub2.request("/simple/demo-pkg/", token=TOKEN_B).status == 404  # ... so never upstream's, to anyone
    assert hub2.request("/simple/public-pkg/", token=TOKEN_B).status == 302


def test_a_resolve_of_5_private_and_100_public_names_costs_a_handful_of_calls(make_hub, github, upstream):
    for n in range(5):
        github.add_repo(f"private-{n}").add_release("v1.0", dict([make_wheel(f"private-{n}", "1.0")]))
    for n in range(100):
        upstream.add(f"public-{n}", make_wheel(f"public-{n}", "1.0"))
    hub = make_hub(fallback_index=upstream.url, owners=(OWNER,))
    names = [f"private-{n}" for n in range(5)] + [f"public-{n}" for n in range(100)]
    statuses_seen = [hub.request(f"/simple/{name}/", owner="__token__").status for name in names]
    assert statuses_seen == [200] * 5 + [302] * 100
    cold = len(github.graphql_calls)
    assert cold <= 8  # the owner's repo names, its project index, five listings: not one call per public name
    assert [hub.request(f"/simple/{name}/", owner="__token__").status for name in names] == statuses_seen
    assert len(github.graphql_calls) == cold  # warm: none


def test_no_credentials_mode_serves_this_machine_with_its_own_token(make_hub, github, demo, tmp_path):
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN_BAD + "\n")
    settings = pypihub.build_settings(["--token-file", str(token_file), "--owner", OWNER, "--host", "127.0.0.1"], {})
    moment = [0.0]
    source = pypihub.TokenSource(settings, {}, clock=lambda: moment[0])
    hub = make_hub(token_file=str(token_file), owners=(OWNER,), own_token=source)
    assert hub.request("/simple/demo-pkg/", token=None).status == 401  # GitHub rejects the token it has
    token_file.write_text(TOKEN_A)  # e.g. a new `gh auth login`: read again after GitHub's rejection ...
    assert hub.request("/simple/demo-pkg/", token=None).status == 401  # ... but not on every request
    moment[0] += pypihub.TOKEN_REREAD_INTERVAL
    assert hub.request("/simple/demo-pkg/", token=None).status == 200
    assert hub.request("/simple/demo-pkg/", token=TOKEN_B).status == 404  # credentials given: their own token


@pytest.mark.parametrize("argv, message", [
    (["--token-env", "GH_TOKEN", "--owner", OWNER], "loopback"),  # the default --host is 0.0.0.0
    (["--token-env", "GH_TOKEN", "--host", "127.0.0.1"], "--owner"),
    (["--token-env", "GH_TOKEN", "--host", "127.0.0.1", "--owner", OWNER], "no token"),  # the variable is empty
    (["--token-command", "exit 3", "--host", "127.0.0.1", "--owner", OWNER], "CalledProcessError"),
])
def test_no_credentials_mode_refuses_what_it_cannot_serve_safely(argv, message):
    with pytest.raises(SystemExit) as caught:
        pypihub.main(argv, environ={})
    assert message in str(caught.value.code)


def test_no_credentials_mode_lends_its_token_to_this_machines_reads_only(make_hub, github, demo):
    settings = pypihub.build_settings(["--token-env", "GH_TOKEN", "--owner", OWNER, "--host", "127.0.0.1"], {})
    hub = make_hub(owners=(OWNER,), own_token=pypihub.TokenSource(settings, {"GH_TOKEN": TOKEN_A}))
    host = {"Host": f"127.0.0.1:{hub.port}"}
    assert hub.request("/simple/demo-pkg/", token=None, headers=host).status == 200
    for foreign in ({"Host": "evil.example"},  # a DNS name rebound to 127.0.0.1
                    {**host, "Origin": "https://evil.example"}, {**host, "Sec-Fetch-Site": "cross-site"}):
        assert hub.request("/simple/demo-pkg/", token=None, headers=foreign).status == 401
    name, content = make_wheel("demo-pkg", "8.0")
    assert post_upload(hub, upload_fields("demo-pkg", "8.0", content), name, content, token=None).status == 401
    assert not any(r["tagName"] == "v8.0" for r in demo[0].releases)


def test_an_owner_github_cannot_resolve_sends_nothing_upstream(make_hub, github, demo, upstream):
    hub = make_hub(fallback_index=upstream.url, owners=("gone-org", OWNER))
    page = hub.request("/simple/demo-pkg/", owner="__token__")
    assert page.status == 200 and not any("99.0" in f for f in project_files(page))


def test_a_failing_github_never_sends_a_name_upstream(make_hub, github, demo, upstream):
    hub = make_hub(fallback_index=upstream.url, owners=(OWNER,))
    github.faults.extend([502] * 3)  # while the owner's repo names are asked for
    assert hub.request("/simple/demo-pkg/", owner="__token__").status == 502  # not a 302 to the impostor
    assert hub.request("/simple/demo-pkg/", owner="__token__").status == 200


def test_a_repo_without_python_files_does_not_hide_the_fallbacks_project(make_hub, github, upstream):
    github.add_repo("public-pkg", private=False)  # e.g. a fork or a docs repo of that name
    hub = make_hub(fallback_index=upstream.url, owners=(OWNER,))
    assert hub.request("/simple/public-pkg/", owner="__token__").status == 302
    assert hub.request("/simple/public-pkg/", owner="__token__", token=TOKEN_B).status == 302


# --- Hostile input and limits ---
# Hostile requests, names, notes and upstreams, and the bounds on heads, bodies and time: clear 4xx,
# never a 500, nothing unbounded.


def resolver(*addresses: str):
    return lambda host, port, **kw: [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (a, port)) for a in addresses]


def test_download_url_with_line_break_cannot_inject_headers(hub, github, demo):
    repo, _ = demo
    asset = repo.releases[-1]["assets"][0]
    asset["url"] = lambda info: "https://evil.example/x\r\nSet-Cookie: session=stolen"
    page = hub.request("/simple/demo-pkg/")
    href = next(h for h, t, _ in page.links() if t == asset["name"]).split("#")[0]
    response = hub.request(urllib.parse.urljoin("/simple/demo-pkg/", href))
    assert response.status == 502 and "set-cookie" not in response.headers and "location" not in response.headers


def test_names_from_github_are_escaped(hub, github):
    evil = 'evil-1.0-py3-none-any.whl"><img src=x onerror=alert(1)>'
    repo = github.add_repo("evil")
    repo.add_release("v1", {evil: b"x", "evil-1.0-py3-none-any.whl": b"ok"})
    page = hub.request("/simple/evil/")
    assert b"<img" not in page.body
    assert project_files(page) == ["evil-1.0-py3-none-any.whl"]  # not a valid wheel name: left out
    # Asset names with a CR/LF cannot reach a header either.
    repo.add_release("v2", {"evil-2.0\r\nSet-Cookie: x=1-py3-none-any.whl": b"x"})
    assert "set-cookie" not in hub.request("/simple/evil/?x=1").headers


@pytest.mark.parametrize("payload", [
    b"GET /simple/demo-pkg/ HTTP/1.1\r\nHost: x\r\nAuthorization: " + AUTH_A + b"\r\nConnection: close\r\n\r\n",
    b"GET /simple/demo-pkg/ HTTP/1.1\r\nHost: x\r\nAuthorization: " + AUTH_A + b"\r\nAccept: text/html\r\n"
    b"Connection: close\r\n\r\n",
    b"HEAD /simple/demo-pkg/ HTTP/1.0\r\nAuthorization: " + AUTH_A + b"\r\n\r\n",
    b"GET /simple/demo-pkg/ HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello",
    b"GET /simple/ HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    b"POST /legacy/ HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 50\r\n\r\nhello",
    b"GET /nope HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\nGET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
])
def test_the_fast_head_parser_answers_as_http_servers_parser_does(hub, github, demo, payload):
    hub.request("/simple/demo-pkg/")  # warm: both answers come from the same cached listing
    fast, slow = raw_exchange(hub.port, payload), raw_exchange(hub.port, payload, split=True)
    undated = lambda answer: re.sub(rb"Date: [^\r]*\r\n", b"", answer)  # noqa: E731
    assert statuses(fast) and undated(fast) == undated(slow)


@pytest.mark.parametrize("payload, expected", [
    (b"GET /" + b"a" * 70000 + b" HTTP/1.1\r\n\r\n", [414]),
    (b"GET /simple/" + b"a" * 9000 + b"/ HTTP/1.1\r\nHost: x\r\n\r\n", [414]),
    (b"GET / HTTP/1.1\r\nX-Big: " + b"a" * 70000 + b"\r\n\r\n", [431]),
    (b"GET / HTTP/1.1\r\n" + b"".join(b"X-%d: 1\r\n" % i for i in range(120)) + b"\r\n", [431]),
    (b"GET /simple/%zz/ HTTP/1.1\r\nHost: x\r\n\r\n", [400]),
    (b"GET /asset/%00/x.whl HTTP/1.1\r\nHost: x\r\n\r\n", [400]),
    (b"GET /simple/../etc/passwd HTTP/1.1\r\nHost: x\r\n\r\n", [400]),
    (b"GET /simple/\xc3\xa9\xff/ HTTP/1.1\r\nHost: x\r\n\r\n", [400]),
    (b"GET /simple/demo-pkg/ HTTP/1.1\r\nAuthorization: Basic %%%\r\n\r\n", [401]),
    (b"GET /simple/demo-pkg/ HTTP/1.1\r\nAuthorization: Basic b2N0b3Jn\r\n\r\n", [401]),
    (b"BREW /simple/ HTTP/1.1\r\nHost: x\r\n\r\n", [501]),
    (b"DELETE /simple/ HTTP/1.1\r\nHost: x\r\n\r\n", [405]),
    (b"GET /simple/demo-pkg/ HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello", [400]),
    (b"POST /simple/ HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello", [405]),
    (b"GET http://evil.example/simple/ HTTP/1.1\r\nHost: x\r\n\r\n", [400]),
    (b"GARBAGE\r\n\r\n", [400]),
    (b"GET / HTTP/9.9\r\n\r\n", [505]),
    (b"GET /healthz HTTP/0.9\r\n\r\n", []),  # HTTP/0.9 has no status line: the body alone
    (b"GET /nope HTTP/1.0\r\n\r\n", [404]),
    (b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\nGET /simple/demo-pkg/ HTTP/1.1\r\nAuthorization: " + AUTH_A
     + b"\r\n\r\nGET /nope HTTP/1.1\r\nHost: x\r\n\r\n", [200, 200, 404]),
])
def test_hostile_requests_get_clear_4xx(hub, github, demo, payload, expected):
    assert statuses(raw_exchange(hub.port, payload)) == expected
    assert hub.request("/healthz", token=None).status == 200
    assert not any("internal error" in line for line in hub.logs)


def test_oversized_upload_is_refused_before_reading_it(make_hub, github, demo):
    hub = make_hub(max_upload_size=1000)
    answer = raw_exchange(hub.port, b"POST /legacy/ HTTP/1.1\r\nHost: x\r\nAuthorization: " + AUTH_A +
                          b"\r\nContent-Type: multipart/form-data; boundary=b0undary\r\n"
                          b"Content-Length: 3000000000\r\n\r\n", timeout=10, then=b"")  # not a byte of 3 GB sent
    assert statuses(answer) == [413]
    name, content = make_wheel("demo-pkg", "4.4")
    content += os.urandom(5000)  # declared small enough for the fields allowance, but the file is too big
    response = post_upload(hub, upload_fields("demo-pkg", "4.4", content), name, content)
    assert response.status == 413 and github.writes == []


@pytest.mark.parametrize("address, public", [
    ("8.8.8.8", True), ("2001:4860:4860::8888", True), ("151.101.0.223", True),
    ("127.0.0.1", False), ("127.8.9.10", False), ("10.1.2.3", False), ("172.16.0.1", False), ("192.168.1.1", False),
    ("169.254.169.254", False), ("100.64.0.1", False), ("0.0.0.0", False), ("224.0.0.1", False),
    ("255.255.255.255", False), ("::1", False), ("::", False), ("fe80::1%eth0", False), ("fc00::1", False),
    ("fd12::1", False), ("ff02::1", False), ("::ffff:127.0.0.1", False), ("::ffff:169.254.169.254", False),
    ("64:ff9b::7f00:1", False), ("2002:7f00:1::", False), ("::127.0.0.1", False),  # NAT64, 6to4, v4-compatible
    ("64:ff9b::808:808", True),
    ("not an address", False),
])
def test_only_public_addresses_are_fetched_from(address, public):
    assert pypihub.is_public_address(address) is public


@pytest.mark.parametrize("url, addresses, allowed", [
    ("https://files.example/x.whl", ("151.101.0.223",), True),
    ("https://files.example/x.whl", ("151.101.0.223", "10.0.0.5"), False),  # every address must be public
    ("http://169.254.169.254/latest/meta-data/", ("169.254.169.254",), False),
    ("http://127.0.0.1:3141/files/x.whl", ("127.0.0.1",), True),  # the fallback index's own host and port
    ("http://127.0.0.1:3142/files/x.whl", ("127.0.0.1",), False),  # another port there is another service
    ("http://localhost:3141/files/x.whl", ("127.0.0.1",), False),  # another name for it is not what was named
    ("file:///etc/passwd", ("127.0.0.1",), False), ("ftp://files.example/x", ("151.101.0.223",), False),
])
def test_a_file_host_is_checked_before_it_is_asked(url, addresses, allowed):
    own = pypihub.origin_of("http://127.0.0.1:3141/simple/")
    if allowed:
        assert pypihub.checked_addresses(url, own, resolver(*addresses)) == list(addresses)
    else:
        with pytest.raises(pypihub.BadGateway):
            pypihub.checked_addresses(url, own, resolver(*addresses))


def test_a_fallback_index_trickling_its_header_lines_ends_at_the_timeout(make_hub, github, demo, upstream):
    upstream.slow_head = 0.3  # a header line every 0.3 s, forever: each read is quick, the whole is not
    hub = make_hub(fallback_index=upstream.url, proxy_downloads=True, upstream_timeout=1.0)
    started = time.monotonic()
    assert hub.request("/simple/public-pkg/", timeout=20).status == 504
    assert time.monotonic() - started < 5


def test_a_fallback_page_cut_short_is_never_taken_for_whole(make_hub, github, demo, upstream):
    upstream.short_page = True  # Content-Length promises 100 bytes more than come before the close
    hub = make_hub(fallback_index=upstream.url, proxy_downloads=True)
    assert hub.request("/simple/public-pkg/").status == 502


def test_a_fallback_page_with_endless_trailers_ends_at_the_timeout(make_hub, github, demo, upstream):
    upstream.endless_trailers = 0.3
    hub = make_hub(fallback_index=upstream.url, proxy_downloads=True, upstream_timeout=1.0)
    started = time.monotonic()
    assert hub.request("/simple/public-pkg/", timeout=20).status == 504
    assert time.monotonic() - started < 5


def test_a_file_whose_head_never_ends_is_never_served_as_a_whole_empty_file(make_hub, github, demo, upstream):
    hub = make_hub(fallback_index=upstream.url, proxy_downloads=True, upstream_timeout=1.0)
    [entry] = hub.request("/simple/public-pkg/", headers={"Accept": PIP_ACCEPT}).json()["files"]
    upstream.slow_file_head = 0.3
    answer = hub.request(urllib.parse.urljoin("/simple/public-pkg/", entry["url"]), timeout=20)
    assert answer.status == 504 and answer.body != b""


def test_a_trickling_fallback_page_ends_at_the_timeout_for_its_followers_too(make_hub, github, demo, upstream):
    upstream.trickle = 2.0  # bytes a second
    hub = make_hub(fallback_index=upstream.url, proxy_downloads=True, upstream_timeout=1.0)
    started = time.monotonic()
    with ThreadPoolExecutor(3) as pool:
        answers = list(pool.map(lambda _: hub.request("/simple/public-pkg/", timeout=20), range(3)))
    assert [a.status for a in answers] == [504] * 3  # the leader, and the two coalesced onto it
    assert time.monotonic() - started < 6  # not the minutes the page would take


def test_an_accept_too_long_to_read_is_406_before_any_github_call(hub, github, demo):
    answer = hub.request("/simple/demo-pkg/", token="ghp_madeUp" + "x" * 30, headers={"Accept": "," * 64000})
    assert answer.status == 406 and github.graphql_calls == []
    many = ", ".join(["text/html"] * 20)
    assert hub.request("/simple/demo-pkg/", headers={"Accept": many}).status == 406
    assert hub.request("/simple/demo-pkg/", headers={"Accept": PIP_ACCEPT}).status == 200


@pytest.mark.parametrize("answer, value", [(b"[" * 100000, "not JSON"), (b'{"message": ' * 5000, "not JSON")])
def test_json_nested_past_pythons_stack_is_a_bad_gateway(answer, value):
    with pytest.raises(pypihub.BadGateway, match=value):
        pypihub.parse_json(answer)


def test_a_request_head_holds_at_most_64_kib(hub, github, demo):
    padding = b"".join(b"X-Pad-%d: %s\r\n" % (n, b"a" * 8000) for n in range(9))  # 72 KB in 9 lines
    answer = raw_exchange(hub.port, b"GET /simple/demo-pkg/ HTTP/1.1\r\nHost: x\r\n" + padding + b"\r\n", then=b"")
    assert answer.startswith(b"HTTP/1.1 431")
    assert hub.request("/simple/demo-pkg/", headers={"X-Pad": "a" * 8000}).status == 200  # 8 KB is fine


@pytest.mark.parametrize("notes", ["<p>before <![ after", "<![CDATA[x", "<!-- <![ -->", "<b>" * 21845,
                                   "</b>" * 16384, "<" * 65536, "<ul><li>" * 8192, '<a href="x">' * 5461,
                                   "<a " * 16384, "<!--" * 16384, "<?" * 32768, """<a b="'" c='"' d="x>""" * 3000,
                                   "<![CDATA[ > " * 5000])
def test_hostile_notes_become_a_page_never_a_500(hub, github, demo, notes):
    release = next(r for r in demo[0].releases if r["tagName"] == "v2.0")
    release["notes_html"] = notes
    page = hub.request("/project/demo-pkg/")
    assert page.status == 200
    assert not any("internal error" in line for line in hub.logs)


@pytest.mark.parametrize("text, defused", [
    ("<p>fine</p>", "<p>fine</p>"), ("a < b and c > d", "a &lt; b and c > d"),
    ('<a href="https://x/?a=1&b=2" rel=nofollow>l</a><br/>', '<a href="https://x/?a=1&b=2" rel=nofollow>l</a><br/>'),
    ('<input type="checkbox" checked disabled>', '<input type="checkbox" checked disabled>'),
    ("<a " * 3, "&lt;a &lt;a &lt;a "),  # no ">" ever: no tag
    ("<b " + "x" * 600 + ">", "&lt;b " + "x" * 600 + ">"),  # longer than MAX_TAG
    ("x<!-- note --><b>y</b>", "x<b>y</b>"), ("<!--" * 2 + "x", "&lt;!--&lt;!--x"),  # comments: dropped if closed
    ("""<a b="'" c='"' d="x>""", """&lt;a b="'" c='"' d="x>"""),  # a ">" inside a quote that never closes
    ("<![CDATA[ > ", "&lt;![CDATA[ > "), ('<img src="x" alt="a>b">', '&lt;img src="x" alt="a>b">'),
])
def test_only_plain_tags_reach_the_html_parser(text, defused):
    assert pypihub.defuse_tags(text) == defused


def test_hostile_notes_are_cut_short_not_read_to_the_end():
    cut = pypihub.sanitize_notes("<b>" * 21845, "https://github.com/o/r/releases/tag/v1")
    assert cut.count("<b>") <= pypihub.MAX_NOTES_DEPTH and "the rest on GitHub" in cut
    broken = pypihub.sanitize_notes("<p>x <![ <script>alert(1)</script>", "https://github.com/o/r/releases/tag/v1")
    assert "<script" not in broken and "alert" not in broken and "&lt;![" in broken  # the script dropped whole


@pytest.mark.parametrize("payload", [
    b"POST /legacy/ HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 50\r\n\r\nhelloGET /nope HTTP/1.1\r\n\r\n",
    b"GET /simple/ HTTP/1.1\r\nHost: x\r\nContent-Length : 30\r\n\r\nGET /nope HTTP/1.1\r\nHost: x\r\n\r\n",
    b"GET /simple/ HTTP/1.1\r\nHost: x\r\nTransfer-Encoding : chunked\r\n\r\n0\r\n\r\nGET /nope HTTP/1.1\r\n\r\n",
])
def test_request_smuggling_shapes_are_400_and_end_the_connection(hub, github, payload):
    assert statuses(raw_exchange(hub.port, payload)) == [400]  # never a second answer from the body
    assert github.graphql_calls == []


def test_an_upload_cut_off_midway_is_a_4xx_not_a_500(make_hub, github, demo):
    hub = make_hub(idle_timeout=0.5)
    name, content = make_wheel("demo-pkg", "5.2")
    body, _ = multipart(upload_fields("demo-pkg", "5.2", content), name, content)
    answer = raw_exchange(hub.port, upload_head(len(body)) + body[: len(body) // 2], then=b"")  # and no more
    assert statuses(answer) in ([408], [400])
    half = raw_exchange(hub.port, upload_head(len(body)) + body[: len(body) // 2])  # then the client hangs up
    assert statuses(half) == [400]
    assert not any("internal error" in line for line in hub.logs)
    assert demo[0].releases[0]["tagName"] != "v5.2"


def test_uploads_beyond_the_slots_get_503(make_hub, github, demo):
    hub = make_hub(max_uploads=1)
    name, content = make_wheel("demo-pkg", "5.3")
    body, _ = multipart(upload_fields("demo-pkg", "5.3", content), name, content)
    with socket.create_connection(("127.0.0.1", hub.port), timeout=5) as holder:
        holder.sendall(upload_head(len(body)) + body[:100])  # holds the one slot, reading its body
        wait_until(lambda: any(path == "/rate_limit" for _, path in github.rest_calls))
        second = post_upload(hub, upload_fields("demo-pkg", "5.3", content), name, content)
        assert second.status == 503 and second.headers["retry-after"] == "1"
        holder.sendall(body[100:])
        assert statuses(holder.recv(65536)) == [200]


def test_a_trickled_request_head_is_cut_at_its_deadline(make_hub, github):
    hub = make_hub(idle_timeout=0.6)
    with socket.create_connection(("127.0.0.1", hub.port), timeout=5) as sock:
        sock.sendall(b"GET /simple/ HTTP/1.1\r\n")
        started, closed = time.monotonic(), False
        while time.monotonic() - started < 4 and not closed:
            try:
                sock.sendall(b"X")  # one byte every 0.2 s: each read is quick, the head never ends
                time.sleep(0.2)
            except OSError:
                closed = True
        assert closed or sock.recv(1) == b""
        assert time.monotonic() - started < 3


def test_a_long_content_type_is_refused_at_once(hub, github):
    head = upload_head(100).replace(b"boundary=b0undary", b'boundary="' + b"\\\\" * 30000 + b'"')
    assert statuses(raw_exchange(hub.port, head, then=b"")) in ([400], [431])


# --- Transport: connections, TLS, caps ---
# Connection caps, idle and slow clients, busy threads, TLS and proxies in front.


def background(function, *args) -> tuple[threading.Thread, list]:
    """function(*args) in a thread of its own; its result lands in the list."""
    result: list = []
    thread = threading.Thread(target=lambda: result.append(function(*args)), daemon=True)
    thread.start()
    return thread, result


def check(github: FakeGitHub, capsys, token: str, *args: str) -> tuple[int, str]:
    """`pypihub check` against the fake GitHub: its exit status and what it printed (stdout and stderr)."""
    status = pypihub.main(["check", "--graphql-url", github.graphql_url, "--upstream-timeout", "5", *args],
                          {"GITHUB_TOKEN": token})
    printed = capsys.readouterr()
    assert token not in printed.out + printed.err and "Traceback" not in printed.err
    return status, printed.out + printed.err


# A self-signed P-256 certificate for 127.0.0.1 and localhost, valid to 2126, made once with
#   openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 36500 \
#     -subj /CN=127.0.0.1 -addext "subjectAltName=IP:127.0.0.1,DNS:localhost"
# and kept here, so that the TLS tests start no process. Its key guards nothing but these tests.
LOOPBACK_CERT = """\
-----BEGIN CERTIFICATE-----
MIIBmjCCAUGgAwIBAgIUDKOyl2yxgWgTXP/S/5Xphd/5EaYwCgYIKoZIzj0EAwIw
FDESMBAGA1UEAwwJMTI3LjAuMC4xMCAXDTI2MTIwODAzMzQ1NloYDzIxMjYxMTE0
MDMzNDU2WjAUMRIwEAYDVQQDDAkxMjcuMC4wLjEwWTATBgcqhkjOPQIBBggqhkjO
PQMBBwNCAASb6NJsbqEaCya3HoaAF184iK0/bpUsSXiW2Hpyd3SL0ZAet+0jdO7j
EmDrdznzcrp+Hme4Ehhu8fisc5Jm5Pfqo28wbTAdBgNVHQ4EFgQUeY587znDeqEz
qzNFdDP7NKh0ZCYwHwYDVR0jBBgwFoAUeY587znDeqEzqzNFdDP7NKh0ZCYwDwYD
VR0TAQH/BAUwAwEB/zAaBgNVHREEEzARhwR/AAABgglsb2NhbGhvc3QwCgYIKoZI
zj0EAwIDRwAwRAIgVZXxNFtlOZdTTQNG17J8BWriOwJkitS0ESXh+vdYNLACICNG
nM5D3mLAVCrGil1UhQB3Gm55fOHYH1/LTxnHaVym
-----END CERTIFICATE-----
"""
LOOPBACK_KEY = """\
-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgSSaUGrpZiW9tCUjq
CNL+ucypUFrvhfTrFikufkOZNtehRANCAASb6NJsbqEaCya3HoaAF184iK0/bpUs
SXiW2Hpyd3SL0ZAet+0jdO7jEmDrdznzcrp+Hme4Ehhu8fisc5Jm5Pfq
-----END PRIVATE KEY-----
"""


@pytest.fixture
def certificate(tmp_path) -> tuple[Path, Path]:
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert.write_text(LOOPBACK_CERT)
    key.write_text(LOOPBACK_KEY)
    return cert, key


def test_connection_cap_answers_503_but_never_to_healthz(make_hub, github, demo):
    hub = make_hub(max_connections=3)
    github.gate = threading.Event()  # three requests wait on GitHub: every connection is busy
    busy = [background(hub.request, "/simple/demo-pkg/") for _ in range(3)]
    wait_until(lambda: hub.server.busy == 3)
    assert hub.request("/healthz", token=None).status == 200  # a load balancer still sees a live instance
    refused = hub.request("/simple/demo-pkg/")
    assert refused.status == 503 and refused.headers["retry-after"] == "1"
    github.gate.set()
    for thread, answer in busy:
        thread.join(10)
        assert answer[0].status == 200


def test_idle_connections_make_room_for_active_clients(make_hub, github, demo):
    # Connections that send nothing hold no turn: at the cap, the one waiting longest is cut, so
    # a few addresses with idle connections cannot keep every other client out for --idle-timeout.
    hub = make_hub(max_connections=3)
    idle = [socket.create_connection(("127.0.0.1", hub.port), source_address=(f"127.0.0.{n}", 0), timeout=5)
            for n in (2, 3, 4)]
    wait_until(lambda: hub.server.connections == 3)
    assert hub.request("/simple/demo-pkg/").status == 200
    assert idle[0].recv(1) == b""  # the oldest idle one was cut
    # The request's own connection is counted out once its thread ends (later, on a busy machine):
    # until then, one more connection would be at the cap again and cut another idle one.
    wait_until(lambda: hub.server.connections == 2)
    assert b"pypihub_connections_cut_for_room_total 1" in hub.request("/metrics", token=None).body
    for sock in idle:
        sock.close()


def test_idle_connection_is_closed_after_timeout(make_hub):
    hub = make_hub(idle_timeout=0.3)
    with socket.create_connection(("127.0.0.1", hub.port)) as sock:
        sock.settimeout(10)
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")  # and never finishes the request
        assert sock.recv(4096) == b""  # the server gave up on it


def test_slowloris_does_not_stop_normal_requests(make_hub, github, demo):
    hub = make_hub()
    slow = []
    for n in range(50):
        sock = socket.create_connection(("127.0.0.1", hub.port))
        sock.sendall(b"GET /simple/demo-pkg/ HTTP/1.1\r\nHost: x\r\nX-Slow-%d: " % n)
        slow.append(sock)
    started = time.monotonic()
    assert hub.request("/simple/demo-pkg/").status == 200
    assert time.monotonic() - started < 5  # generous: it would hang if slow clients blocked it
    for sock in slow:
        sock.close()


def test_a_slow_github_does_not_stall_warm_requests_of_other_tokens(make_hub, github, demo):
    # One busy thread: had a request kept its turn while it waits on GitHub (or on the request it
    # coalesced with), the warm request would wait for GitHub too, here until the test's timeout.
    hub = make_hub(busy_threads=1)
    github.add_repo("other", readers=(TOKEN_A, TOKEN_B)).add_release("v1.0", dict([make_wheel("other", "1.0")]))
    assert hub.request("/simple/other/", token=TOKEN_B).status == 200
    github.gate = threading.Event()
    calls = len(github.graphql_calls)
    first, first_answer = background(hub.request, "/simple/demo-pkg/")
    second, second_answer = background(hub.request, "/simple/demo-pkg/")  # coalesced with the first
    wait_until(lambda: len(github.graphql_calls) > calls and b'coalesced_total{cache="listings"} 1'
               in hub.request("/metrics", token=None).body)
    assert hub.request("/simple/other/", token=TOKEN_B).status == 200
    assert first.is_alive() and second.is_alive()  # still waiting on GitHub
    github.gate.set()
    first.join(10), second.join(10)
    assert first_answer[0].status == second_answer[0].status == 200


def test_a_slow_download_host_does_not_stall_warm_requests(make_hub, github, demo):
    hub = make_hub(busy_threads=1, proxy_downloads=True)
    page = hub.request("/simple/demo-pkg/", headers={"Accept": "text/html"})
    github.hold_downloads = threading.Event()
    downloads = [background(hub.request, asset_path(page, "demo_pkg-1.0-py3-none-any.whl")),
                 background(hub.request, metadata_path(page, "demo_pkg-2.0-py3-none-any.whl"))]
    wait_until(lambda: hub.server.busy == 2)  # both are in, waiting on the download host
    assert hub.request("/simple/demo-pkg/").status == 200
    assert all(thread.is_alive() for thread, _ in downloads)
    github.hold_downloads.set()
    for thread, answer in downloads:
        thread.join(10)
        assert answer[0].status == 200


def test_slow_clients_do_not_stall_warm_requests(make_hub, github, demo):
    hub = make_hub(busy_threads=1, proxy_downloads=True)
    big = make_wheel("demo-pkg", "5.0")[0]
    demo[0].add_release("v5.0", {big: os.urandom(16 << 20)})
    page = hub.request("/simple/demo-pkg/", headers={"Accept": "text/html"})
    content, boundary = multipart(upload_fields("demo-pkg", "6.0", b"x" * 100), "demo_pkg-6.0-py3-none-any.whl", b"x")
    with socket.create_connection(("127.0.0.1", hub.port)) as trickler, \
            socket.create_connection(("127.0.0.1", hub.port)) as reader, \
            socket.create_connection(("127.0.0.1", hub.port)) as uploader:
        # A head that stops half-way, a download the client does not read, and an upload whose
        # body stops after its first bytes.
        trickler.sendall(b"GET /simple/demo-pkg/ HTTP/1.1\r\nHost: x\r\n")
        reader.sendall(f"GET {asset_path(page, big)} HTTP/1.1\r\nHost: x\r\nAuthorization: {basic(f'{OWNER}:{TOKEN_A}')}"
                       "\r\n\r\n".encode())
        uploader.sendall(f"POST /legacy/ HTTP/1.1\r\nHost: x\r\nAuthorization: {basic(f'{OWNER}:{TOKEN_A}')}\r\n"
                         f"Content-Type: {boundary}\r\nContent-Length: {len(content) + 1000}\r\n\r\n".encode()
                         + content[:100])
        wait_until(lambda: hub.server.busy == 2)
        assert hub.request("/simple/demo-pkg/").status == 200
        assert hub.server.busy == 2  # the two slow ones are still in progress


def test_a_trusted_proxy_names_the_client_and_skips_the_per_client_cap(make_hub, github):
    hub = make_hub(trusted_proxies=pypihub.parse_networks(["127.0.0.1"]), max_client_connections=2)
    held = [socket.create_connection(("127.0.0.1", hub.port), timeout=5) for _ in range(4)]  # a balancer's pool
    try:
        for sock in held:  # past the cap of 2, each still served: 401, not the 503 of the overflow
            sock.sendall(b"GET /simple/ HTTP/1.1\r\nHost: x\r\n\r\n")
            assert statuses(sock.recv(65536)) == [401]
        assert hub.request("/healthz", token=None, headers={"X-Forwarded-For": "203.0.113.7"}).status == 200
    finally:
        for sock in held:
            sock.close()
    named = lambda: any(line.startswith('203.0.113.7 "GET /healthz" 200 ') for line in hub.logs)  # noqa: E731
    wait_until(lambda: hub.server.events.flush() and named())  # the held connections' lines may come later
    assert named()


def test_an_untrusted_peer_cannot_name_another_client(hub, github):
    assert hub.request("/healthz", token=None, headers={"X-Forwarded-For": "203.0.113.7"}).status == 200
    assert hub.logs[-1].startswith('127.0.0.1 "GET /healthz" 200 ')


def test_plain_http_on_the_tls_port_gets_a_400_that_says_so(make_hub, github, demo, certificate):
    cert, key = certificate
    hub = make_hub(certfile=str(cert), keyfile=str(key))
    answer = raw_exchange(hub.port, b"GET /simple/demo-pkg/ HTTP/1.1\r\nHost: x\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 400 ") and b"Plain HTTP was sent to this HTTPS port" in answer
    wait_until(lambda: hub.server.events.flush() and any("plain-http-on-tls-port" in line for line in hub.logs))
    assert any("reason=plain-http-on-tls-port" in line for line in hub.logs)


def test_tls_on_the_plain_port_is_logged(hub, github, demo):
    context = ssl.create_default_context()
    context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
    with socket.create_connection(("127.0.0.1", hub.port), timeout=5) as raw:
        with pytest.raises((ssl.SSLError, OSError)):
            context.wrap_socket(raw, server_hostname="127.0.0.1")
    wait_until(lambda: hub.server.events.flush() and any("tls-on-plain-port" in line for line in hub.logs))
    assert any(line.endswith("reason=tls-on-plain-port") for line in hub.logs)


def test_one_client_address_cannot_take_every_connection(make_hub, github, demo):
    hub = make_hub(max_client_connections=2)
    hogs = [socket.create_connection(("127.0.0.1", hub.port), source_address=("127.0.0.2", 0)) for _ in range(2)]
    wait_until(lambda: hub.server.clients.get("127.0.0.2") == 2)
    with socket.create_connection(("127.0.0.1", hub.port), source_address=("127.0.0.2", 0), timeout=5) as third:
        third.sendall(b"GET /simple/ HTTP/1.1\r\nHost: x\r\n\r\n")
        assert statuses(third.recv(65536)) == [503]
    assert hub.request("/simple/demo-pkg/").status == 200  # from another address
    for sock in hogs:
        sock.close()


def test_over_tls_the_caps_still_answer_healthz_and_503(make_hub, github, demo, certificate):
    cert, key = certificate
    hub = make_hub(certfile=str(cert), keyfile=str(key), max_connections=2)
    context = ssl.create_default_context(cafile=str(cert))

    def exchange(path: str) -> list[int]:
        with context.wrap_socket(socket.create_connection(("127.0.0.1", hub.port), timeout=10),
                                 server_hostname="127.0.0.1") as sock:
            sock.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\nAuthorization: {basic(f'{OWNER}:{TOKEN_A}')}\r\n\r\n".encode())
            return statuses(sock.recv(65536))
    idle = [socket.create_connection(("127.0.0.1", hub.port)) for _ in range(2)]  # no handshake: idle
    wait_until(lambda: hub.server.connections == 2)
    assert exchange("/simple/demo-pkg/") == [200]  # room made by cutting an idle one
    # That request's connection is counted out once its thread ends (later, on a busy machine): until
    # then, the next connection would find the cap full and cut the last idle one early.
    assert wait_until(lambda: hub.server.connections == 1)
    github.gate = threading.Event()
    busy = [background(exchange, "/simple/other-pkg/") for _ in range(2)]  # both slots wait on GitHub
    wait_until(lambda: hub.server.busy == 2)
    assert (exchange("/healthz"), exchange("/simple/demo-pkg/")) == ([200], [503])
    github.gate.set()
    for thread, _ in busy:
        thread.join(10)
    for sock in idle:
        sock.close()


def test_one_client_cannot_take_the_healthz_reserve(make_hub, github, demo):
    hub = make_hub(max_connections=1)
    github.gate = threading.Event()
    busy = background(hub.request, "/simple/demo-pkg/")  # the one normal slot, busy: nothing to cut
    wait_until(lambda: hub.server.busy == 1)
    hogs = [socket.create_connection(("127.0.0.1", hub.port), source_address=("127.0.0.2", 0)) for _ in range(5)]
    wait_until(lambda: hub.server.clients.get("127.0.0.2") == pypihub.OVERFLOW_PER_CLIENT)
    assert hub.request("/healthz", token=None).status == 200  # another client still gets it
    github.gate.set()
    busy[0].join(10)
    for sock in hogs:
        sock.close()


# --- Logs, metrics and health ---
# The access log, /metrics, /healthz.


def check_histogram(name: str, samples: dict[str, float]) -> None:
    for count_key in (k for k in samples if k.startswith(f"{name}_count")):
        labels = count_key[len(f"{name}_count"):]
        buckets = [v for k, v in samples.items() if k.startswith(f"{name}_bucket{labels[:-1]},le=")]
        assert buckets == sorted(buckets) and buckets[-1] == samples[count_key], f"{name}{labels} is not cumulative"


def parse_prometheus_strictly(text: str) -> dict[str, tuple[str, list[tuple[str, float]]]]:
    """Prometheus text format 0.0.4 read as strictly as Prometheus does: one TYPE line per metric
    family, before all of its samples, which stand together; valid names, labels and values."""
    families: dict[str, tuple[str, list[tuple[str, float]]]] = {}
    current = None
    sample_re = re.compile(r'([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(?:[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\.)*",?)*\})? (\S+)')
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ")
            assert name not in families, f"a second TYPE line for {name}"
            assert kind in ("counter", "gauge", "histogram", "summary", "untyped"), line
            families[name], current = (kind, []), name
            continue
        if not line or line.startswith("#"):
            continue
        match = sample_re.fullmatch(line)
        assert match, f"not a sample line: {line!r}"
        name, labels, value = match.groups()
        family = name if name in families else re.sub(r"_(bucket|sum|count)$", "", name)
        assert family == current, f"{name} stands apart from the other samples of {family}"
        families[family][1].append((name + (labels or ""), float(value)))
    for name, (kind, samples) in families.items():
        if kind == "histogram":
            check_histogram(name, dict(samples))
    return families


def test_healthz_says_draining_once_shutdown_begins(hub, github):
    assert hub.server.drain(0)  # what SIGTERM starts: nothing in progress, so drained at once
    response = hub.request("/healthz", token=None)
    assert (response.status, response.body) == (503, b"draining\n")


def test_healthz_needs_no_auth_and_no_github(hub, github):
    response = hub.request("/healthz", token=None)
    assert (response.status, response.body) == (200, b"ok\n")
    assert github.graphql_calls == []


def test_metrics(hub, github, demo):
    hub.request("/simple/demo-pkg/")
    hub.request("/simple/demo-pkg/")
    hub.request("/simple/demo-pkg/", token=TOKEN_BAD)
    github.faults.extend([500])
    hub.request("/simple/demo-pkg/", token=TOKEN_B)
    response = hub.request("/metrics", token=None)
    assert response.headers["content-type"] == "text/plain; version=0.0.4; charset=utf-8"
    samples = parse_metrics(response.body.decode())
    assert samples['pypihub_requests_total{endpoint="project",status="200"}'] == 2
    assert samples['pypihub_requests_total{endpoint="project",status="401"}'] == 1
    assert samples['pypihub_request_duration_seconds_count{endpoint="project"}'] == 4
    assert samples['pypihub_github_calls_total{api="graphql",outcome="ok"}'] == 3  # A; B's repo and owner lookups
    assert samples['pypihub_github_calls_total{api="graphql",outcome="Unauthorized"}'] == 1
    assert samples['pypihub_github_calls_total{api="graphql",outcome="Unavailable"}'] == 1
    assert 'pypihub_github_calls_total{api="rest",outcome="ok"}' not in samples  # digests came in GraphQL
    assert samples['pypihub_cache_hits_total{cache="listings"}'] == 1
    assert samples['pypihub_cache_hits_total{cache="links"}'] == 0
    assert samples['pypihub_cache_entries{cache="listings"}'] >= 1
    assert samples["pypihub_github_rate_limit_remaining"] == 4999
    assert 1 <= samples["pypihub_open_connections"] <= 5  # this one, and closing ones not yet counted out
    assert b"demo" not in response.body and OWNER.encode() not in response.body


def test_access_log_has_one_line_per_request_without_token(hub, github, demo):
    page = hub.request("/simple/demo-pkg/")
    hub.request("/simple/demo-pkg/", token=TOKEN_BAD)
    assert len(hub.logs) == 2
    assert hub.logs[0].startswith('127.0.0.1 "GET /simple/demo-pkg/" 200 ')
    assert hub.logs[0].endswith(f"gh=1 rest=0 bytes={len(page.body)}")  # written once the body is sent
    assert " 401 " in hub.logs[1]


def test_json_access_log(make_hub, github, demo):
    hub = make_hub(log_format="json")
    hub.request("/simple/demo-pkg/")
    hub.request("/simple/x%0a/", token=None)
    records = [json.loads(line) for line in hub.logs]
    assert {k: records[0][k] for k in ("client", "method", "path", "status", "github_calls")} == \
        {"client": "127.0.0.1", "method": "GET", "path": "/simple/demo-pkg/", "status": 200, "github_calls": 1}
    assert records[0]["rest_calls"] == 0
    assert records[1]["path"] == "/simple/x%0a/" and records[1]["status"] == 400


def test_log_lines_cannot_be_forged(hub):
    hub.request("/simple/x%0aFAKE/", token=None)
    raw_exchange(hub.port, b"GET /\x1b[31mred HTTP/1.1\r\nHost: x\r\n\r\n")
    assert all("\n" not in line and "\x1b" not in line for line in hub.logs)


def test_low_rate_limit_is_logged(hub, github, demo):
    github.remaining = 120
    hub.request("/simple/demo-pkg/")
    assert any("WARNING" in line and "120 rate-limit points" in line for line in hub.logs)


def test_metrics_parse_strictly(hub, github, demo):
    hub.request("/simple/demo-pkg/")
    hub.request("/simple/demo-pkg/", token=TOKEN_B)
    hub.request("/nothing")
    families = parse_prometheus_strictly(hub.request("/metrics", token=None).body.decode())
    assert families["pypihub_cache_hits_total"][0] == "counter"
    assert {labels for labels, _ in families["pypihub_cache_entries"][1]} >= {
        'pypihub_cache_entries{cache="listings"}', 'pypihub_cache_entries{cache="links"}'}
    assert families["pypihub_request_duration_seconds"][0] == "histogram"


@pytest.mark.parametrize("log_format", ["text", "json"])
def test_an_error_is_logged_with_its_reason(make_hub, github, demo, log_format):
    hub = make_hub(owners=(OWNER,), log_format=log_format)
    cases = [(dict(token=TOKEN_B), "not-visible"), (dict(token=TOKEN_BAD), "bad-token"),
             (dict(token=None), "no-credentials"), (dict(owner="someone-else"), "owner-not-served")]
    for request, why in cases:
        assert hub.request("/simple/demo-pkg/", **request).status >= 400
    assert hub.request("/simple/demo-pkg/").status == 200
    if log_format == "json":
        reasons = [json.loads(line).get("reason") for line in hub.logs]
    else:
        reasons = [line.split(" reason=")[1] if " reason=" in line else None for line in hub.logs]
    assert reasons == [why for _, why in cases] + [None]


# --- Command line and pypihub check ---
# Settings from flags and the environment, and `pypihub check`.


def check_lines(text: str) -> list[tuple[str, str, str]]:
    """(section, ok/FAIL, text) for each line of check's report."""
    return [(m.group(1), m.group(2), m.group(3)) for m in re.finditer(r"^(\S.*?)\s{2,}(ok|FAIL)\s+(.*)$", text, re.M)]


class EchoingServer(BaseHTTPRequestHandler):
    """A hostile or broken GitHub (or index): answers of shapes nothing expects, echoing the credentials
    it was sent. The class attribute `graphql` is the body /graphql answers with ({auth} for the header)."""

    graphql = ""

    def do_GET(self) -> None:
        auth = self.headers.get("Authorization", "")
        if self.path.startswith("/rate_limit"):
            return self.answer(200, '{"rate": {}}', {"X-OAuth-Scopes": f"repo, {auth}"})
        self.answer(401, f"bad credentials: {auth} {base64.b64decode(auth.split()[-1] + '==').decode('latin-1')}")

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.answer(200, type(self).graphql.replace("{auth}", self.headers.get("Authorization", "")))

    def answer(self, status: int, body: str, headers: dict | None = None) -> None:
        self.send_response(status)
        for name, value in {"Content-Type": "application/json", **(headers or {})}.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body.encode())))
        self.end_headers()
        self.wfile.write(body.encode())

    def log_message(self, format, *args) -> None:
        pass


@pytest.mark.parametrize("value, hashes", [("1", False), ("true", False), ("YES", False), ("on", False),
                                           ("0", True), ("false", True), ("no", True), ("Off", True)])
def test_a_boolean_from_the_environment_is_one_of_eight_words(value, hashes):
    assert pypihub.build_settings([], {"PYPIHUB_NO_HASHES": value}).hashes is hashes


@pytest.mark.parametrize("value", ["ture", "2", "y", "enabled"])
def test_any_other_boolean_word_refuses_to_start_naming_the_variable(value):
    with pytest.raises(pypihub.ConfigError, match="PYPIHUB_NO_HASHES"):
        pypihub.build_settings([], {"PYPIHUB_NO_HASHES": value})


def test_check_a_classic_token_that_works(github, demo, capsys):
    status, out = check(github, capsys, TOKEN_A, "--owner", OWNER, "demo-pkg")
    lines = check_lines(out)
    assert status == 0 and all(ok == "ok" for _, ok, _ in lines) and "Everything checked works." in out
    texts = "\n".join(text for _, _, text in lines)
    for expected in ("reachable at " + github.graphql_url, "accepted: a classic personal access token; scopes: repo",
                     "belongs to alice", "GraphQL rate limit: 4999 of 5000 left", "resolves; ", "projects in its newest "
                     "releases: demo-pkg", "octorg/demo-pkg (its name)", "2 versions, 4 files", "sha256 for 4 of 4 files",
                     "METADATA read from demo_pkg-2.0-py3-none-any.whl", "may publish (WRITE)",
                     'pip install --index-url "http://octorg:${GITHUB_TOKEN}@localhost:3141/simple/" demo-pkg'):
        assert expected in texts, expected


def test_check_a_fine_grained_token_without_the_repo(github, demo, capsys):
    token = "github_pat_11AAAAAAA0" + "x" * 70
    github.add_token(token, "alice")  # granted no repository
    status, out = check(github, capsys, token, "--owner", OWNER, "demo-pkg")
    assert status == 1 and "a fine-grained personal access token" in out
    failed = {section: text for section, ok, text in check_lines(out) if ok == "FAIL"}
    assert failed == {f"Owner {OWNER}": "resolves; 0 repos visible to this token",
                      "Project demo-pkg": "No repo demo-pkg or demo_pkg or demo.pkg of octorg is visible to this token."}
    assert "add the repo to its repository access" in out


def test_check_a_rejected_token(github, demo, capsys):
    status, out = check(github, capsys, TOKEN_BAD, "--owner", OWNER)
    assert status == 1 and ("Token", "FAIL", "rejected by GitHub: a classic personal access token") in check_lines(out)
    assert "expired or been revoked" in out


def test_check_an_organization_whose_sso_the_token_is_not_authorized_for(github, demo, capsys):
    github.sso_blocked.add((TOKEN_A, OWNER))
    status, out = check(github, capsys, TOKEN_A, "--owner", OWNER)
    [failed] = [line for line in check_lines(out) if line[1] == "FAIL"]
    assert status == 1 and failed[0] == f"Owner {OWNER}" and "https://github.com/orgs/octorg/sso?" in failed[2]


def test_check_a_2026_installation_token_and_its_publish_permission(github, demo, capsys):
    github.add_token(JOB_TOKEN, write=(demo[0],))
    status, out = check(github, capsys, JOB_TOKEN, "--owner", OWNER, "demo-pkg")
    texts = [text for _, _, text in check_lines(out)]
    assert status == 0 and "accepted: a GitHub App installation token (Actions' GITHUB_TOKEN is one)" in texts
    assert "publishing: GitHub decides at upload (an App token has no viewerPermission)" in texts


def test_check_through_a_running_pypihub_and_a_dead_port(hub, github, demo, capsys):
    status, out = check(github, capsys, TOKEN_A, "--owner", OWNER, "--index-url", f"{hub.url}/simple/", "demo-pkg")
    index = [line for line in check_lines(out) if line[0] == "Index demo-pkg"]
    assert status == 0 and [ok for _, ok, _ in index] == ["ok"] * 3
    assert "demo_pkg-2.0-py3-none-any.whl.metadata: 200" in out and "demo_pkg-2.0.tar.gz: 206, 9 bytes read" in out
    dead = socket.socket()
    dead.bind(("127.0.0.1", 0))
    port = dead.getsockname()[1]
    dead.close()
    status, out = check(github, capsys, TOKEN_A, "--owner", OWNER, "--index-url", f"http://127.0.0.1:{port}/simple/",
                        "demo-pkg")
    assert status == 1 and "could not reach" in out and "the connection was refused" in out


@pytest.mark.parametrize("graphql", [
    '{"data": {"viewer": "x", "rateLimit": [1]}}', '{"data": {"viewer": {"login": "{auth}"}, "rateLimit": {}}}',
    '{"errors": [{"type": ["x"], "message": "your header was {auth}"}]}', "[" * 100000, '{"data": null}',
    '{"data": {"rateLimit": {"remaining": 5, "limit": 5}, "repositoryOwner": {"repositories": [1]}}}',
])
def test_check_survives_a_hostile_github_and_never_prints_the_token(capsys, graphql):
    EchoingServer.graphql = graphql
    server = ThreadingHTTPServer(("127.0.0.1", 0), EchoingServer)
    threading.Thread(target=server.serve_forever, args=(POLL,), daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        status = pypihub.main(["check", "--graphql-url", f"{url}/graphql", "--owner", OWNER, "--index-url",
                               f"{url}/simple/", "demo-pkg"], {"GITHUB_TOKEN": JOB_TOKEN})
    finally:
        server.shutdown()
        server.server_close()
    printed = capsys.readouterr()
    assert status in (0, 1) and "Traceback" not in printed.err
    assert not [part for part in (JOB_TOKEN, *JOB_TOKEN.split(".")) if part in printed.out + printed.err]
    assert base64.b64encode(f"{OWNER}:{JOB_TOKEN}".encode()).decode()[:40] not in printed.out


@pytest.mark.parametrize("token, ok", [(TOKEN_A, True), (TOKEN_BAD, False)])
def test_check_json_ok_matches_the_exit_status(github, demo, capsys, token, ok):
    status, out = check(github, capsys, token, "--owner", OWNER, "--json", "demo-pkg")
    report = json.loads(out)
    assert report["ok"] is ok and status == (0 if ok else 1)
    assert {"section", "ok", "text", "fix"} <= set(report["findings"][0])


def test_check_usage_errors_exit_2(github, capsys):
    assert pypihub.main(["check", "--graphql-url", github.graphql_url], {}) == 2  # no token anywhere
    assert "set GITHUB_TOKEN or GH_TOKEN" in capsys.readouterr().err
    with pytest.raises(SystemExit) as usage:
        pypihub.main(["check", "--no-such-flag"], {"GITHUB_TOKEN": TOKEN_A})
    assert usage.value.code == 2


def test_help_states_the_auth_model_and_points_at_check(capsys):
    with pytest.raises(SystemExit) as done:
        pypihub.main(["--help"], {})
    text = " ".join(capsys.readouterr().out.split())
    assert done.value.code == 0 and "the user is the GitHub owner of the repos" in text and "pypihub check" in text


# --- End-to-end clients ---


def pip_env(tmp_path: Path) -> dict:
    # No PIP_*/UV_* settings, and no CA-bundle variables that would override pip's --cert.
    ca_variables = ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "SSL_CERT_FILE", "SSL_CERT_DIR")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PIP_", "UV_")) and k not in ca_variables}
    env.update(PIP_CONFIG_FILE=os.devnull, PIP_NO_CACHE_DIR="1", PIP_DISABLE_PIP_VERSION_CHECK="1",
               PIP_NO_INPUT="1", PIP_KEYRING_PROVIDER="disabled", UV_CACHE_DIR=str(tmp_path / "uv-cache"),
               UV_PYTHON_DOWNLOADS="never", HOME=str(tmp_path))
    return env


def run(args: list[str], tmp_path: Path, **kwargs) -> subprocess.CompletedProcess:
    result = subprocess.run(args, capture_output=True, text=True, timeout=180, env=kwargs.pop("env", pip_env(tmp_path)), **kwargs)
    assert result.returncode == 0, f"{args} failed:\n{result.stdout}\n{result.stderr}"
    return result


def pip_download(tmp_path: Path, index_url: str, requirement: str, *options: str,
                 succeeds: bool = True) -> subprocess.CompletedProcess:
    """`pip download --no-deps` of one requirement into tmp_path/dl, which must succeed, or fail."""
    args = [sys.executable, "-m", "pip", "download", "--no-deps", *options, "-d", str(tmp_path / "dl"),
            "--index-url", index_url, requirement]
    if succeeds:
        return run(args, tmp_path)
    result = subprocess.run(args, capture_output=True, text=True, timeout=120, env=pip_env(tmp_path))
    assert result.returncode != 0, f"{args} succeeded:\n{result.stdout}\n{result.stderr}"
    return result


def fresh_venv(tmp_path: Path) -> Path:
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(tmp_path / "venv")], check=True)
    return tmp_path / "venv" / "bin" / "python"


def imported_value(python: Path, tmp_path: Path, module: str = "demo_pkg") -> str:
    return run([str(python), "-c", f"import {module}; print({module}.VALUE)"], tmp_path).stdout.strip()


def full_downloads(github: FakeGitHub) -> list[str]:
    return [name for name, byte_range in github.downloads if byte_range is None]


def uv_path() -> str | None:
    return shutil.which("uv") or shutil.which("uv", path=str(Path(sys.executable).parent))


needs_uv = pytest.mark.skipif(uv_path() is None, reason="uv is not installed (.ci/run installs it)")


# -- pip --


@pytest.mark.e2e
def test_pip_download_through_pypihub(hub, github, demo, tmp_path):
    _, files = demo
    pip_download(tmp_path, hub.index_url(), "demo-pkg==1.0", "--only-binary=:all:")
    wheel = "demo_pkg-1.0-py3-none-any.whl"
    assert (tmp_path / "dl" / wheel).read_bytes() == files[wheel]
    assert len(github.graphql_calls) == 1
    # The wheel was downloaded in full once; a pip with PEP 714 support also read the advertised
    # .metadata first, which PyPIHub got with one Range request.
    assert full_downloads(github) == [wheel]
    assert github.downloads in ([(wheel, None)], [(wheel, f"bytes=0-{len(files[wheel]) - 1}"), (wheel, None)])


@pytest.mark.e2e
def test_pip_install_into_fresh_venv(hub, github, demo, tmp_path):
    python = fresh_venv(tmp_path)
    run([sys.executable, "-m", "pip", "--python", str(python), "install", "--only-binary=:all:",
         "--index-url", hub.index_url(), "demo-pkg"], tmp_path)
    assert imported_value(python, tmp_path) == "2.0"  # the newest non-draft version


@pytest.mark.e2e
def test_pip_without_access_fails_cleanly(hub, github, demo, tmp_path):
    result = pip_download(tmp_path, hub.index_url(token=TOKEN_B), "demo-pkg", succeeds=False)
    assert "No matching distribution found for demo-pkg" in result.stderr
    assert github.downloads == []


def old_python() -> str | None:
    """A Python 3.9 whose ensurepip bundles pip 23.0.1, as an old jump host has."""
    pyenv = sorted(str(p) for p in (Path.home() / ".pyenv" / "versions").glob("3.9*/bin/python3.9"))
    for candidate in [*pyenv, shutil.which("python3.9")]:
        if candidate and subprocess.run([candidate, "-c", "import ensurepip"], capture_output=True).returncode == 0:
            return candidate
    return None


@pytest.mark.e2e
@pytest.mark.skipif(old_python() is None, reason="no Python 3.9 on this machine")
def test_old_pip_from_python_39_installs(hub, github, demo, tmp_path):
    venv = tmp_path / "old"
    subprocess.run([old_python(), "-m", "venv", str(venv)], check=True, capture_output=True)  # bundled pip, offline
    python = venv / "bin" / "python"
    version = run([str(python), "-m", "pip", "--version"], tmp_path).stdout
    run([str(python), "-m", "pip", "install", "--index-url", hub.index_url(), "demo-pkg"], tmp_path)
    assert imported_value(python, tmp_path) == "2.0", version


@pytest.mark.e2e
def test_pip_installs_during_a_github_outage_after_the_ttl(hub, github, demo, clock, tmp_path):
    github.jwt_lifetime = 3600  # GitHub signs its URLs for 5 to 60 minutes; these outlast the outage
    pip_download(tmp_path, hub.index_url(), "demo-pkg==2.0")  # listed, metadata read, links remembered
    clock.advance(61)  # past the TTL ...
    github.faults.extend([502] * 200)  # ... GitHub goes down ...
    clock.advance(300)  # ... for five minutes
    python = fresh_venv(tmp_path)
    run([sys.executable, "-m", "pip", "--python", str(python), "install", "--only-binary=:all:",
         "--index-url", hub.index_url(), "demo-pkg"], tmp_path)
    assert imported_value(python, tmp_path) == "2.0"
    assert any("stale listing" in line for line in hub.logs)
    assert any("remembered download link" in line for line in hub.logs)


# -- uv --


@pytest.mark.e2e
@needs_uv
def test_uv_pip_install_with_credentials_in_url(hub, github, demo, tmp_path):
    python = fresh_venv(tmp_path)
    run([uv_path(), "pip", "install", "--python", str(python), "--index-url", hub.index_url(), "demo-pkg==1.0"], tmp_path)
    assert imported_value(python, tmp_path) == "1.0"


@pytest.mark.e2e
@needs_uv
def test_uv_exclude_newer_respects_upload_time(hub, github, demo, tmp_path):
    python = fresh_venv(tmp_path)
    run([uv_path(), "pip", "install", "--python", str(python), "--index-url", hub.index_url(),
         "--exclude-newer", "2026-02-01T00:00:00Z", "demo-pkg"], tmp_path)
    assert imported_value(python, tmp_path) == "1.0"


def uv_project(hub: Hub, tmp_path: Path, requirement: str, index_settings: str,
               token: str = TOKEN_A) -> tuple[Path, dict]:
    """A uv project whose named index "pypihub" is this PyPIHub, credentials from the environment."""
    project = tmp_path / "app"
    project.mkdir()
    (project / "pyproject.toml").write_text(f"""
[project]
name = "app"
version = "0.1.0"
requires-python = ">=3.9"
dependencies = ["{requirement}"]

[[tool.uv.index]]
name = "pypihub"
url = "{hub.url}/simple/"
{index_settings}
""")
    env = {**pip_env(tmp_path), "UV_INDEX_PYPIHUB_USERNAME": OWNER, "UV_INDEX_PYPIHUB_PASSWORD": token}
    run([uv_path(), "sync", "--python", sys.executable], tmp_path, cwd=project, env=env)
    return project, env


@pytest.mark.e2e
@needs_uv
def test_uv_explicit_index_as_readme_shows(hub, github, demo, tmp_path):
    """README's dependency-confusion-safe setup: an explicit index that only pinned packages use."""
    project, _ = uv_project(hub, tmp_path, "demo-pkg", 'explicit = true\n\n[tool.uv.sources]\ndemo-pkg = { index = "pypihub" }')
    assert imported_value(project / ".venv" / "bin" / "python", tmp_path) == "2.0"


@pytest.mark.e2e
@needs_uv
def test_uv_exclude_newer_reads_when_a_file_became_installable(hub, github, demo, tmp_path):
    repo, _ = demo
    name, content = make_wheel("demo-pkg", "2.5")
    release = repo.add_release("v2.5", {name: content}, draft=True, created="2026-04-01T00:00:00Z")
    repo.publish(release, "2026-05-01T00:00:00Z")  # attached to a draft a month before it was published
    venv = tmp_path / "uv-venv"
    run([uv_path(), "venv", str(venv)], tmp_path)
    run([uv_path(), "pip", "install", "--python", str(venv / "bin" / "python"), "--index-url", hub.index_url(),
         "--exclude-newer", "2026-04-15T00:00:00Z", "demo-pkg"], tmp_path)  # between the draft and its publication
    assert imported_value(venv / "bin" / "python", tmp_path) == "2.0"
    run([uv_path(), "pip", "install", "--python", str(venv / "bin" / "python"), "--index-url", hub.index_url(),
         "--exclude-newer", "2026-05-02T00:00:00Z", "demo-pkg==2.5"], tmp_path)
    assert imported_value(venv / "bin" / "python", tmp_path) == "2.5"


@pytest.mark.e2e
@needs_uv
def test_uv_named_index_with_env_credentials(hub, github, demo, tmp_path):
    project, env = uv_project(hub, tmp_path, "demo-pkg==2.0", "default = true")
    assert imported_value(project / ".venv" / "bin" / "python", tmp_path) == "2.0"
    assert TOKEN_A not in (project / "uv.lock").read_text()
    python = fresh_venv(tmp_path / "second")
    run([uv_path(), "pip", "install", "--python", str(python), "demo-pkg==1.0"], tmp_path, cwd=project, env=env)
    assert imported_value(python, tmp_path) == "1.0"


# -- proxy downloads --


@pytest.mark.e2e
def test_pip_installs_through_proxy_mode(make_hub, github, demo, tmp_path):
    hub = make_hub(proxy_downloads=True)
    pip_download(tmp_path, hub.index_url(), "demo-pkg==1.0")
    wheel = "demo_pkg-1.0-py3-none-any.whl"
    assert (tmp_path / "dl" / wheel).read_bytes() == demo[1][wheel]


@pytest.mark.e2e
def test_tls_with_pip_and_a_silent_client(make_hub, github, demo, certificate, tmp_path):
    cert, key = certificate
    hub = make_hub(certfile=str(cert), keyfile=str(key))
    silent = socket.create_connection(("127.0.0.1", hub.port))  # connects, never says a word
    try:
        index = f"https://{OWNER}:{TOKEN_A}@127.0.0.1:{hub.port}/simple/"
        pip_download(tmp_path, index, "demo-pkg==1.0", "--cert", str(cert))
        wheel = "demo_pkg-1.0-py3-none-any.whl"
        assert (tmp_path / "dl" / wheel).read_bytes() == demo[1][wheel]
    finally:
        silent.close()
    import ssl
    assert hub.server.tls.minimum_version >= ssl.TLSVersion.TLSv1_2


@pytest.mark.e2e
def test_plain_http_beyond_loopback_warns(github, tmp_path):
    process = subprocess.Popen([sys.executable, str(ROOT / "pypihub.py"), "--host", "0.0.0.0", "--port", "0",
                                "--graphql-url", github.graphql_url], stderr=subprocess.PIPE, text=True)
    try:
        process.stderr.readline()
        assert "tokens will cross the network in clear" in process.stderr.readline()
    finally:
        process.terminate()
        process.communicate(timeout=30)


# -- hostile input, then pip --


FUZZ_PARTS = {
    "method": [b"GET", b"HEAD", b"POST", b"PUT", b"get", b"G\x00T", b"", b"OPTIONS", b"\xff\xfe"],
    "path": [b"/", b"/simple/", b"/simple/demo-pkg/", b"/simple/Demo_Pkg", b"/asset/RA_x/demo-1.0.tar.gz",
             b"/simple/%", b"/simple/%00/", b"/../..", b"/simple/\xe2\x82\xac/", b"//", b"/asset//", b"*",
             b"/simple/a%2F..%2F/", b"/metrics?x=%zz", b"/simple/demo-pkg/?format=%ff", b"/" + b"x" * 9000],
    "version": [b"HTTP/1.1", b"HTTP/1.0", b"HTTP/2.0", b"HTTP/1", b"", b"FTP/1.1"],
    "header": [b"Authorization: " + AUTH_A, b"Authorization: Basic !!", b"Authorization: Basic", b"Accept: \xff",
               b"Accept: application/vnd.pypi.simple.v1+json;q=x", b"Content-Length: -1", b"Content-Length: 3",
               b"Transfer-Encoding: chunked", b"If-None-Match: *", b"Range: bytes=9-1", b"Host", b": empty",
               b"X-Long: " + b"y" * 5000, b"Authorization: Basic " + base64.b64encode(b"o:\x00\x01")],
}


@pytest.mark.e2e
def test_fuzz_then_pip_still_installs(hub, github, demo, tmp_path):
    rng = __import__("random").Random(20261126)
    seen = []
    for _ in range(2000):
        headers = rng.sample(FUZZ_PARTS["header"], rng.randint(0, 3))
        request = b" ".join([rng.choice(FUZZ_PARTS["method"]), rng.choice(FUZZ_PARTS["path"]), rng.choice(FUZZ_PARTS["version"])])
        payload = b"\r\n".join([request, *headers]) + b"\r\n\r\n" + (b"abc" if rng.random() < 0.2 else b"")
        seen += statuses(raw_exchange(hub.port, payload, then=b"")[:64])
    assert seen and all(status < 500 or status in (501, 505) for status in seen), sorted(set(seen))
    assert not any("internal error" in line or "Traceback" in line for line in hub.logs)
    pip_download(tmp_path, hub.index_url(), "demo-pkg==2.0")


# -- hashes and metadata --


@pytest.mark.e2e
def test_pip_rejects_a_tampered_file(hub, github, demo, tmp_path):
    repo, files = demo
    asset = next(a for r in repo.releases for a in r["assets"] if a["name"] == "demo_pkg-2.0-py3-none-any.whl")
    asset["content"] = asset["content"].replace(b"VALUE", b"EVIL!")  # same size, other bytes
    result = pip_download(tmp_path, hub.index_url(), "demo-pkg==2.0", succeeds=False)
    assert "DO NOT MATCH THE HASHES" in result.stderr
    assert not (tmp_path / "dl" / "demo_pkg-2.0-py3-none-any.whl").exists()


@pytest.fixture
def many_versions(github):
    """top 1..20: every version but 1.0 needs a project that does not exist, so resolvers must
    read the metadata of 20 versions and install only top 1.0."""
    repo = github.add_repo("top")
    for n in range(1, 21):
        requires = () if n == 1 else ("missing-dependency>=1",)
        name, content = make_wheel("top", f"{n}.0", requires=requires)
        repo.add_release(f"v{n}", {name: content}, created=f"2026-01-{n:02d}T00:00:00Z")
    return repo


def pip_version() -> tuple[int, ...]:
    from importlib.metadata import version
    return tuple(int(p) for p in re.findall(r"\d+", version("pip"))[:2])


@pytest.mark.e2e
@pytest.mark.skipif(pip_version() < (23, 2), reason="pip reads PEP 714 core-metadata from 23.2 on")
def test_pip_resolves_many_versions_through_metadata(hub, github, many_versions, tmp_path):
    python = fresh_venv(tmp_path)
    run([sys.executable, "-m", "pip", "--python", str(python), "install", "--index-url", hub.index_url(), "top"], tmp_path)
    assert imported_value(python, tmp_path, "top") == "1.0"
    assert full_downloads(github) == ["top-1.0-py3-none-any.whl"]
    assert len({n for n, r in github.downloads if r}) == 20  # every version's metadata, read by PyPIHub


@pytest.mark.e2e
@needs_uv
def test_uv_resolves_many_versions_through_metadata(hub, github, many_versions, tmp_path):
    python = fresh_venv(tmp_path)
    run([uv_path(), "pip", "install", "--python", str(python), "--index-url", hub.index_url(), "top"], tmp_path)
    assert imported_value(python, tmp_path, "top") == "1.0"
    assert full_downloads(github) == ["top-1.0-py3-none-any.whl"]


# -- publishing: twine upload / uv publish --


def twine_path() -> str | None:
    return shutil.which("twine", path=str(Path(sys.executable).parent)) or shutil.which("twine")


needs_twine = pytest.mark.skipif(twine_path() is None, reason="twine is not installed (.ci/run installs it)")


def write_dist(tmp_path: Path, *dists: tuple[str, bytes]) -> list[str]:
    folder = tmp_path / "dist"
    folder.mkdir(exist_ok=True)
    for name, content in dists:
        (folder / name).write_bytes(content)
    return [str(folder / name) for name, _ in dists]


@pytest.mark.e2e
@needs_twine
def test_twine_upload_then_pip_installs_at_once(hub, github, demo, tmp_path):
    repo, _ = demo
    assert hub.request("/simple/demo-pkg/").status == 200  # the listing is cached now
    files = write_dist(tmp_path, make_wheel("demo-pkg", "3.1", value="published"), make_sdist("demo-pkg", "3.1"))
    run([twine_path(), "upload", "--non-interactive", "--disable-progress-bar", "--repository-url", f"{hub.url}/legacy/",
         "-u", OWNER, "-p", TOKEN_A, *files], tmp_path)
    release = next(r for r in repo.releases if r["tagName"] == "v3.1")
    assert not release["isDraft"] and not release["isPrerelease"]
    assert sorted(a["name"] for a in release["assets"]) == ["demo_pkg-3.1-py3-none-any.whl", "demo_pkg-3.1.tar.gz"]
    python = fresh_venv(tmp_path)
    run([sys.executable, "-m", "pip", "--python", str(python), "install", "--only-binary=:all:",
         "--index-url", hub.index_url(), "demo-pkg==3.1"], tmp_path)
    assert imported_value(python, tmp_path) == "published"


@pytest.mark.e2e
@needs_twine
@needs_uv
def test_identical_uploads_succeed_and_different_bytes_are_refused(hub, github, demo, tmp_path):
    files = write_dist(tmp_path, make_wheel("demo-pkg", "3.2"))
    command = [twine_path(), "upload", "--non-interactive", "--disable-progress-bar", "--repository-url",
               f"{hub.url}/legacy/", "-u", OWNER, "-p", TOKEN_A]
    run(command + files, tmp_path)
    writes = list(github.writes)
    run(command + files, tmp_path)  # a retried CI job: the same file again succeeds, as on PyPI ...
    assert github.writes == writes
    [release] = [r for r in demo[0].releases if r["tagName"] == "v3.2"]
    assert [a["name"] for a in release["assets"]] == ["demo_pkg-3.2-py3-none-any.whl"]  # ... and changes nothing
    other = tmp_path / "other"
    other.mkdir()
    changed = write_dist(other, make_wheel("demo-pkg", "3.2", value="other bytes"))
    again = subprocess.run(command + changed, capture_output=True, text=True, timeout=60, env=pip_env(tmp_path))
    assert again.returncode != 0 and "File already exists" in again.stdout + again.stderr  # the reason phrase
    # twine 7 allows --skip-existing only for PyPI; uv's --check-url asks the index and skips the file.
    env = {**pip_env(tmp_path), "UV_PUBLISH_USERNAME": OWNER, "UV_PUBLISH_PASSWORD": TOKEN_A}
    result = run([uv_path(), "publish", "--publish-url", f"{hub.url}/legacy/", "--check-url", hub.index_url(), *files],
                 tmp_path, env=env)
    assert "demo_pkg-3.2-py3-none-any.whl already exists, skipping" in result.stderr
    assert len([r for r in demo[0].releases if r["tagName"] == "v3.2"]) == 1


@pytest.mark.e2e
@needs_uv
def test_uv_publish_then_pip_installs(hub, github, demo, tmp_path):
    files = write_dist(tmp_path, make_wheel("demo-pkg", "3.3rc1", value="from uv"))
    env = {**pip_env(tmp_path), "UV_PUBLISH_USERNAME": OWNER, "UV_PUBLISH_PASSWORD": TOKEN_A}
    run([uv_path(), "publish", "--publish-url", f"{hub.url}/legacy/", *files], tmp_path, env=env)
    release = next(r for r in demo[0].releases if r["tagName"] == "v3.3rc1")
    assert release["isPrerelease"]
    python = fresh_venv(tmp_path)
    run([sys.executable, "-m", "pip", "--python", str(python), "install", "--index-url", hub.index_url(),
         "demo-pkg==3.3rc1"], tmp_path)
    assert imported_value(python, tmp_path) == "from uv"


# -- behind a balancer: nginx, HAProxy, Kubernetes, systemd (issue 17) --

DEPLOY = ROOT / "deploy"
JSON_ACCEPT = {"Accept": "application/vnd.pypi.simple.v1+json"}
NGINX_TEMP_PATHS = ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")  # nginx creates them all at start


def system_tool(name: str) -> str | None:
    """A tool from Debian's package, also where /usr/sbin is not on a test user's PATH."""
    return shutil.which(name) or next((f"{d}/{name}" for d in ("/usr/sbin", "/usr/bin")
                                       if os.access(f"{d}/{name}", os.X_OK)), None)


NGINX, HAPROXY, SYSTEMD_ANALYZE = system_tool("nginx"), system_tool("haproxy"), system_tool("systemd-analyze")
needs_nginx = pytest.mark.skipif(NGINX is None, reason="nginx is not installed (.ci/run installs Debian's nginx)")
needs_haproxy = pytest.mark.skipif(HAPROXY is None, reason="haproxy is not installed (apt-get install haproxy)")


# -- the pieces: PyPIHub processes, nginx, a client --


class Instance:
    """One PyPIHub as its own process, on a free loopback port, and the lines it logged."""

    def __init__(self, github, *flags: str) -> None:
        # Behind a proxy every connection comes from the proxy's address: it must not count as one client.
        behind = ["--trusted-proxy", "127.0.0.1"]
        command = [sys.executable, str(ROOT / "pypihub.py"), "--host", "127.0.0.1", "--port", "0",
                   "--graphql-url", github.graphql_url,
                   "--cache-ttl", "600",  # nothing expires during a test: every GitHub call is a cold one
                   *behind, *flags]
        self.process = subprocess.Popen(command, stderr=subprocess.PIPE, text=True)
        first = self.process.stderr.readline()
        match = re.search(r"http://127\.0\.0\.1:(\d+)/simple/", first)
        assert match, f"PyPIHub did not start: {first}"
        self.port = int(match.group(1))
        self.address = f"127.0.0.1:{self.port}"
        self.lines = [first]
        self.reader = threading.Thread(target=self.read, daemon=True)
        self.reader.start()

    def read(self) -> None:
        for line in self.process.stderr:
            self.lines.append(line)

    def log(self) -> str:
        return "".join(self.lines)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            self.process.wait(30)
        self.reader.join(10)


def listening(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        return True
    except OSError:
        return False


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def replace_servers(text: str, pattern: str, make_line) -> str:
    """The three server lines of a deploy/ config, matched by `pattern`, replaced by this test's:
    the first by `make_line(match)` for each upstream, the other two by nothing."""
    matches = list(re.finditer(pattern, text, re.M))
    assert len(matches) == 3, f"deploy config changed: expected three server lines matching {pattern!r}"
    first, last = matches[0], matches[-1]
    return text[:first.start()] + make_line(first) + re.sub(pattern, "", text[first.end():last.end()], flags=re.M) + \
        text[last.end():]


def replace_once(text: str, old: str, new: str) -> str:
    """`old` replaced where it starts a line (after the indent, so never in a comment): once."""
    pattern = re.compile(r"^( *)" + re.escape(old), re.M)
    assert len(pattern.findall(text)) == 1, f"deploy config changed: expected a line starting {old!r}, once"
    return pattern.sub(lambda match: match.group(1) + new, text)


def nginx_site(upstreams: list[str], port: int, cert: Path, key: Path, access_log: Path) -> str:
    """deploy/nginx.conf for this test: only the documented lines changed."""
    site = replace_servers((DEPLOY / "nginx.conf").read_text(), r"^( *)server 127\.0\.0\.1:808[1-3]((?: [^;\n]*)?);\n",
                           lambda match: "".join(f"{match[1]}server {address}{match[2]};\n" for address in upstreams))
    site = replace_once(site, "listen 443 ssl;", f"listen 127.0.0.1:{port} ssl;")
    site = replace_once(site, "ssl_certificate /etc/nginx/tls/pypihub.crt;", f"ssl_certificate {cert};")
    site = replace_once(site, "ssl_certificate_key /etc/nginx/tls/pypihub.key;", f"ssl_certificate_key {key};")
    return replace_once(site, "access_log /var/log/nginx/pypihub.access.log ", f"access_log {access_log} ")


class Nginx:
    """Debian's nginx on a loopback port, run by this test's user: its pid file, logs and temp
    files in `folder`, with deploy/nginx.conf as its http {} block."""

    def __init__(self, instances: list[Instance], folder: Path, ca: Path, cert: Path, key: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.folder, self.ca = folder, ca
        self.access_log, self.error_log = folder / "access.log", folder / "error.log"
        self.context = ssl.create_default_context(cafile=str(ca))
        for _ in range(3):  # the port was free a moment ago; someone may have taken it
            self.port = free_port()
            (folder / "pypihub.conf").write_text(nginx_site([i.address for i in instances], self.port, cert, key,
                                                            self.access_log))
            user = "user root;\n" if os.geteuid() == 0 else ""  # as root, workers would be nobody: no way into tmp_path
            temp = "".join(f"    {kind}_temp_path {folder / kind};\n" for kind in NGINX_TEMP_PATHS)
            (folder / "nginx.conf").write_text(
                f"daemon off;\n{user}worker_processes 2;\npid {folder / 'nginx.pid'};\n"
                f"error_log {self.error_log} notice;\nevents {{ worker_connections 512; }}\n"
                f"http {{\n{temp}    include {folder / 'pypihub.conf'};\n}}\n")
            self.command = [NGINX, "-p", str(folder), "-c", str(folder / "nginx.conf"), "-e", str(self.error_log)]
            checked = subprocess.run(self.command + ["-t"], capture_output=True, text=True)
            assert checked.returncode == 0, checked.stderr
            self.process = subprocess.Popen(self.command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            if self.wait_listening():
                return
            self.process.wait(10)
        raise AssertionError(f"nginx did not start:\n{self.error_log.read_text()}")

    def wait_listening(self) -> bool:
        wait_until(lambda: self.process.poll() is not None or listening(self.port), 10)
        return self.process.poll() is None and listening(self.port)

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    def get(self, path: str, token: str | None = TOKEN_A, headers: dict | None = None,
            source: str | None = None) -> tuple[int, dict, bytes]:
        """One request on its own connection; `source` binds the client to another loopback address."""
        connection = http.client.HTTPSConnection("127.0.0.1", self.port, timeout=30, context=self.context,
                                                 source_address=(source, 0) if source else None)
        sent = {**JSON_ACCEPT, **(headers or {})}
        if token is not None:
            sent["Authorization"] = basic(f"{OWNER}:{token}")
        try:
            connection.request("GET", path, headers=sent)
            answer = connection.getresponse()
            return answer.status, {k.lower(): v for k, v in answer.getheaders()}, answer.read()
        finally:
            connection.close()

    def served(self, request_ids: list[str]) -> dict[str, str]:
        """The instance ("127.0.0.1:PORT") that answered each request, from nginx's access log:
        the last address nginx tried."""
        found: dict[str, str] = {}

        def read() -> bool:
            for line in self.access_log.read_text().splitlines():
                match = re.search(r" id=(\w+) upstream=(.*?) upstream_status=", line)
                if match:
                    found[match.group(1)] = match.group(2).split(", ")[-1]
            return all(i in found for i in request_ids)

        wait_until(read, 10)  # nginx logs a request once it is finished
        assert all(i in found for i in request_ids), "requests missing from nginx's access log"
        return {i: found[i] for i in request_ids}

    def list_pairs(self, pairs: list[tuple[str, str]], workers: int = 1) -> dict[tuple[str, str], str]:
        """GET each (token, project) listing through nginx; all must be 200. Returns the instance
        that answered each pair."""
        def one(pair: tuple[str, str]) -> str:
            status, headers, body = self.get(f"/simple/{pair[1]}/", pair[0])
            assert status == 200, (pair, status, body[:200])
            return headers["x-request-id"]

        with ThreadPoolExecutor(workers) as pool:
            ids = list(pool.map(one, pairs))
        served = self.served(ids)
        return {pair: served[i] for pair, i in zip(pairs, ids)}

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()  # nginx: fast shutdown
            self.process.wait(10)

    def logs(self) -> str:
        return "".join(p.read_text() for p in (self.access_log, self.error_log) if p.exists())


@pytest.fixture
def balancer_tls(tmp_path) -> tuple[Path, Path, Path]:
    """(CA, certificate, key) for the balancer's HTTPS. A certificate signed by a CA, not a
    self-signed one: uv (rustls) refuses a CA certificate used as the server's own."""
    if shutil.which("openssl") is None:
        pytest.skip("openssl is needed to make a test certificate")
    folder = tmp_path / "tls"
    folder.mkdir()
    ca, ca_key, cert, key, request = (folder / n for n in ("ca.pem", "ca.key", "cert.pem", "key.pem", "cert.csr"))
    extensions = folder / "extensions.cnf"
    extensions.write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=critical,CA:FALSE\n"
                          "extendedKeyUsage=serverAuth\n")
    for command in (["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=PyPIHub test CA",
                     "-keyout", ca_key, "-out", ca],
                    ["req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=127.0.0.1", "-keyout", key, "-out", request],
                    ["x509", "-req", "-in", request, "-CA", ca, "-CAkey", ca_key, "-CAcreateserial", "-days", "1",
                     "-extfile", extensions, "-out", cert]):
        subprocess.run(["openssl", *map(str, command)], check=True, capture_output=True)
    return ca, cert, key


def assert_no_secrets(text: str, tokens) -> None:
    """Neither a token nor an Authorization header value that carries one."""
    for token in tokens:
        assert token not in text, "a token leaked into a log"
        assert basic(f"{OWNER}:{token}").split()[1] not in text, "an Authorization header leaked into a log"


@pytest.fixture
def fleet(github, balancer_tls, tmp_path):
    """fleet(n) -> (instances, nginx): n PyPIHub processes behind nginx. All stop at the end, and
    no token may be in any of their logs."""
    started: list = []

    def start(count: int, *flags: str) -> tuple[list[Instance], Nginx]:
        instances = [Instance(github, *flags) for _ in range(count)]
        started.extend(instances)
        balancer = Nginx(instances, tmp_path / f"nginx-{len(started)}", *balancer_tls)
        started.append(balancer)
        return instances, balancer

    yield start
    for thing in reversed(started):
        thing.stop()
    tokens = [*ALL_TOKENS, *github.tokens]
    for thing in started:
        assert_no_secrets(thing.log() if isinstance(thing, Instance) else thing.logs(), tokens)


M_TOKENS, K_PROJECTS = 6, 3


def scale_setup(github) -> list[tuple[str, str]]:
    """M tokens that each read K private projects of one release: M x K (token, project) pairs."""
    tokens = [f"ghp_scale{n:02d}" + "x" * 29 for n in range(M_TOKENS)]
    for token in tokens:
        github.add_token(token)
    projects = [f"scale-{k}" for k in range(K_PROJECTS)]
    for project in projects:
        github.add_repo(project, readers=tokens, writers=()).add_release("v1.0", dict([make_wheel(project, "1.0")]))
    return [(token, project) for token in tokens for project in projects]


def graphql_since(github, mark: int) -> collections.Counter:
    """GraphQL calls since `mark`, by token."""
    return collections.Counter(token for token, _ in github.graphql_calls[mark:])


def homes(served: dict[tuple[str, str], str]) -> dict[str, str]:
    """Token -> the one instance that served all its projects (affinity: never two)."""
    by_token: dict[str, set[str]] = collections.defaultdict(set)
    for (token, _), address in served.items():
        by_token[token].add(address)
    assert all(len(addresses) == 1 for addresses in by_token.values()), f"a token on two instances: {by_token}"
    return {token: addresses.pop() for token, addresses in by_token.items()}


# -- the deploy/ files themselves --


@pytest.mark.e2e
def test_deploy_nginx_conf_passes_nginx_t_as_generated(balancer_tls, tmp_path):
    if NGINX is None:
        pytest.skip("nginx is not installed (.ci/run installs Debian's nginx)")
    port = free_port()  # nginx -t binds the listen address
    site = nginx_site(["127.0.0.1:1", "127.0.0.1:2"], port, *balancer_tls[1:], tmp_path / "access.log")
    assert re.findall(r"^ *server (127\.0\.0\.1:\d+) max_fails", site, re.M) == ["127.0.0.1:1", "127.0.0.1:2"]
    (tmp_path / "site.conf").write_text(site)
    temp = "".join(f"{kind}_temp_path {tmp_path / kind}; " for kind in NGINX_TEMP_PATHS)
    (tmp_path / "nginx.conf").write_text(f"pid {tmp_path / 'pid'};\nevents {{}}\n"
                                         f"http {{ {temp}\ninclude {tmp_path / 'site.conf'}; }}\n")
    result = subprocess.run([NGINX, "-t", "-p", str(tmp_path), "-c", str(tmp_path / "nginx.conf"), "-e", "stderr"],
                            capture_output=True, text=True)
    assert result.returncode == 0 and "[warn]" not in result.stderr, result.stderr


def read_directives(text: str) -> list[str]:
    return [line.split("#")[0].strip() for line in text.splitlines() if line.split("#")[0].strip()]


def seconds(value: str) -> float:
    number, unit = re.fullmatch(r"(\d+)(ms|s|m)?", value).groups()
    return int(number) * {"ms": 0.001, "s": 1, "m": 60, None: 1}[unit]


def value_of(directives: list[str], name: str) -> str:
    """The value of the one directive `name` (nginx's "name value;" or HAProxy's "name value")."""
    [value] = [d[len(name):].strip().rstrip(";") for d in directives if d.startswith(name + " ")]
    return value


@pytest.mark.e2e
def test_deploy_configs_match_pypihubs_defaults():
    """The numbers in deploy/ that follow PyPIHub's: when a default changes, this says where to follow."""
    defaults = pypihub.Settings()
    text = (DEPLOY / "nginx.conf").read_text()
    nginx = read_directives(text)
    upstream = read_directives(re.search(r"^upstream pypihub \{(.*?)^\}", text, re.M | re.S).group(1))
    assert upstream[0] == "hash $http_authorization consistent;"
    assert seconds(value_of(upstream, "keepalive_timeout")) < defaults.idle_timeout  # nginx closes first
    read_timeouts = [seconds(d.split()[1].rstrip(";")) for d in nginx if d.startswith("proxy_read_timeout")]
    assert min(read_timeouts) > defaults.upstream_timeout and max(read_timeouts) > defaults.upload_timeout
    body_limit = max(int(d.split()[1].rstrip("m;")) for d in nginx if d.startswith("client_max_body_size"))
    assert body_limit << 20 >= defaults.max_upload_size + pypihub.MAX_FORM_FIELDS
    assert {"proxy_request_buffering off;", "proxy_buffering off;", "proxy_http_version 1.1;", "proxy_set_header Host $host;",
            "proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;"} <= set(nginx)
    assert "http_502" not in value_of(nginx, "proxy_next_upstream")  # PyPIHub's 502 is GitHub's failure
    log_format = re.search(r"^log_format .*?;$", text, re.M | re.S).group(0)
    assert "$http_authorization" not in log_format and "$remote_user" not in log_format

    haproxy = read_directives((DEPLOY / "haproxy.cfg").read_text())
    assert {"balance hdr(Authorization)", "hash-type consistent", "option httpchk GET /healthz"} <= set(haproxy)
    assert seconds(value_of(haproxy, "timeout server")) > defaults.upstream_timeout
    assert seconds(next(d for d in haproxy if "set-timeout server" in d).split()[3]) > defaults.upload_timeout
    assert seconds(value_of(haproxy, "timeout http-request")) <= defaults.idle_timeout

    unit = dict(line.split("=", 1) for line in read_directives((DEPLOY / "pypihub@.service").read_text())
                if "=" in line and not line.startswith("["))
    assert float(unit["TimeoutStopSec"]) > pypihub.SHUTDOWN_GRACE and unit["KillSignal"] == "SIGTERM"


def haproxy_config(upstreams: list[str], port: int, pem: Path) -> str:
    config = (DEPLOY / "haproxy.cfg").read_text()
    config = replace_once(config, "bind :443 ssl crt /etc/haproxy/tls/pypihub.pem",
                          f"bind 127.0.0.1:{port} ssl crt {pem}")
    for line in ("user haproxy\n", "group haproxy\n", "chroot /var/lib/haproxy\n"):
        config = replace_once(config, line, "")
    return replace_servers(config, r"^( *)server pypihub\d 127\.0\.0\.1:808[1-3]\n", lambda match: "".join(
        f"{match[1]}server pypihub{n} {address}\n" for n, address in enumerate(upstreams, 1)))


@pytest.mark.e2e
def test_deploy_haproxy_cfg_passes_haproxy_c(balancer_tls, tmp_path):
    if HAPROXY is None:
        pytest.skip("haproxy is not installed (apt-get install haproxy)")
    pem = tmp_path / "pypihub.pem"
    pem.write_bytes(balancer_tls[1].read_bytes() + balancer_tls[2].read_bytes())
    config = tmp_path / "haproxy.cfg"
    config.write_text(haproxy_config(["127.0.0.1:1", "127.0.0.1:2", "127.0.0.1:3"], 1, pem))
    result = subprocess.run([HAPROXY, "-c", "-f", str(config)], capture_output=True, text=True)
    assert result.returncode == 0 and "WARNING" not in result.stdout + result.stderr, result.stdout + result.stderr


@pytest.mark.e2e
def test_deploy_kubernetes_yaml_has_the_fields_that_matter():
    yaml = pytest.importorskip("yaml")  # pyyaml: test-only (see NOTES)
    docs = {doc["kind"]: doc for doc in yaml.safe_load_all((DEPLOY / "kubernetes.yaml").read_text()) if doc}
    assert {"Deployment", "Service", "Ingress"} <= set(docs)
    deployment = docs["Deployment"]["spec"]
    pod = deployment["template"]["spec"]
    [container] = pod["containers"]
    assert deployment["replicas"] == 3
    for probe in ("readinessProbe", "livenessProbe"):
        assert container[probe]["httpGet"]["path"] == "/healthz"
    pre_stop = container["lifecycle"]["preStop"]
    pause = int(pre_stop["exec"]["command"][-1]) if "exec" in pre_stop else pre_stop["sleep"]["seconds"]
    assert pod["terminationGracePeriodSeconds"] > pause + pypihub.SHUTDOWN_GRACE
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert any(m["mountPath"] == "/tmp" for m in container["volumeMounts"])  # uploads spool there
    env = {e["name"]: e["value"] for e in container.get("env", [])}
    assert int(env["PYPIHUB_IDLE_TIMEOUT"]) > 60  # ingress-nginx's upstream-keepalive-timeout default
    assert int(env["PYPIHUB_MAX_CLIENT_CONNECTIONS"]) >= pypihub.Settings().max_connections
    annotations = docs["Ingress"]["metadata"]["annotations"]
    assert annotations["nginx.ingress.kubernetes.io/upstream-hash-by"] == "$http_authorization"
    assert annotations["nginx.ingress.kubernetes.io/proxy-request-buffering"] == "off"
    assert annotations["nginx.ingress.kubernetes.io/proxy-body-size"] == "2100m"
    assert int(annotations["nginx.ingress.kubernetes.io/proxy-read-timeout"]) > pypihub.Settings().upload_timeout
    service_port = docs["Service"]["spec"]["ports"][0]
    assert service_port["targetPort"] in ("http", container["ports"][0]["containerPort"])
    try:
        import kubernetes_validate  # optional: schemas for every Kubernetes version, ~100 MB
    except ImportError:
        return
    for doc in yaml.safe_load_all((DEPLOY / "kubernetes.yaml").read_text()):
        kubernetes_validate.validate(doc, "1.30.0", strict=True)


@pytest.mark.e2e
def test_deploy_systemd_unit_verifies(tmp_path):
    unit = (DEPLOY / "pypihub@.service").read_text()
    assert "ExecStart=/usr/bin/python3 /opt/pypihub/pypihub.py --host 127.0.0.1 --port %i" in unit
    for setting in ("DynamicUser=yes", "ProtectSystem=strict", "NoNewPrivileges=yes", "PrivateTmp=yes",
                    "KillSignal=SIGTERM", "Restart=on-failure"):
        assert setting in unit.splitlines(), setting
    if SYSTEMD_ANALYZE is None or not os.access("/usr/bin/python3", os.X_OK):
        pytest.skip("systemd-analyze (or /usr/bin/python3, the unit's ExecStart) is not on this machine")
    instance = tmp_path / "pypihub@8081.service"  # a template verifies through an instance of it
    instance.write_text(unit)
    result = subprocess.run([SYSTEMD_ANALYZE, "verify", str(instance)], capture_output=True, text=True)
    assert result.returncode == 0 and "pypihub@8081.service:" not in result.stderr, result.stderr


# -- through nginx --


def slash_project(github) -> None:
    """slash-pkg 1.0 and 2.0, whose assets have ids with "/" and "=" (GitHub's legacy Base64 node
    ids): their links carry %2F, which must reach PyPIHub as it is."""
    github.serial = max(github.serial, 100)  # the fake's Base64 ids hold a "/" from serial 100 on
    repo = github.add_repo("slash-pkg")
    for version in ("1.0", "2.0"):
        repo.add_release(f"v{version}", dict([make_wheel("slash-pkg", version)]))


@pytest.mark.e2e
@needs_nginx
def test_pip_installs_through_nginx_at_the_root_and_under_a_prefix(fleet, github, balancer_tls, tmp_path):
    slash_project(github)
    _, balancer = fleet(3)
    status, _, body = balancer.get("/simple/slash-pkg/")
    assert status == 200 and re.search(rb"asset/[^/\"]*%2F", body)
    for prefix in ("", "/pypi"):
        python = fresh_venv(tmp_path / (prefix.strip("/") or "root"))
        index = f"https://{OWNER}:{TOKEN_A}@127.0.0.1:{balancer.port}{prefix}/simple/"
        run([sys.executable, "-m", "pip", "--python", str(python), "install", "--cert", str(balancer_tls[0]),
             "--only-binary=:all:", "--index-url", index, "slash-pkg==1.0"], tmp_path)
        assert imported_value(python, tmp_path, "slash_pkg") == "1.0"
        status, headers, _ = balancer.get(f"{prefix}/simple", None)
        assert (status, headers["location"]) == (301, "simple/")  # relative: the prefix stays
    assert len(github.graphql_calls) == 1  # one token: one instance, one cold listing, whatever the path


@pytest.mark.e2e
@needs_nginx
@needs_uv
def test_uv_installs_through_nginx(fleet, github, balancer_tls, tmp_path):
    slash_project(github)
    _, balancer = fleet(3)
    env = {**pip_env(tmp_path), "SSL_CERT_FILE": str(balancer_tls[0])}
    for prefix, version in (("", "1.0"), ("/pypi", "2.0")):
        python = fresh_venv(tmp_path / (prefix.strip("/") or "root"))
        index = f"https://{OWNER}:{TOKEN_A}@127.0.0.1:{balancer.port}{prefix}/simple/"
        run([uv_path(), "pip", "install", "--python", str(python), "--index-url", index, f"slash-pkg=={version}"],
            tmp_path, env=env)
        assert imported_value(python, tmp_path, "slash_pkg") == version
    assert len(github.graphql_calls) == 1


def big_wheel(name: str, version: str, mib: int) -> tuple[str, bytes]:
    """A wheel larger than nginx's default body limit (1 MiB): incompressible bytes inside."""
    filename, content = make_wheel(name, version, value="big")
    buffer = io.BytesIO(content)
    with zipfile.ZipFile(buffer, "a") as archive:
        archive.writestr(f"{name.replace('-', '_')}/data.bin", os.urandom(mib << 20))
    return filename, buffer.getvalue()


@pytest.mark.e2e
@needs_nginx
@needs_twine
def test_twine_uploads_through_nginx_and_pip_sees_it_at_once(fleet, github, demo, balancer_tls, tmp_path):
    """The upload streams through (a body past nginx's 1 MiB default), and lands on the token's own
    instance, whose cached listing it refreshes: pip, with the same token, sees it at once."""
    _, balancer = fleet(3)
    assert balancer.get("/simple/demo-pkg/")[0] == 200  # cached now, on TOKEN_A's instance
    files = write_dist(tmp_path, big_wheel("demo-pkg", "3.1", 3))
    run([twine_path(), "upload", "--non-interactive", "--disable-progress-bar", "--cert", str(balancer_tls[0]),
         "--repository-url", f"{balancer.url}/legacy/", "-u", OWNER, "-p", TOKEN_A, *files], tmp_path)
    assert "demo_pkg-3.1-py3-none-any.whl" in [a["name"] for r in demo[0].releases for a in r["assets"]]
    python = fresh_venv(tmp_path)
    run([sys.executable, "-m", "pip", "--python", str(python), "install", "--cert", str(balancer_tls[0]),
         "--only-binary=:all:", "--index-url", f"https://{OWNER}:{TOKEN_A}@127.0.0.1:{balancer.port}/pypi/simple/",
         "demo-pkg==3.1"], tmp_path)
    assert imported_value(python, tmp_path) == "big"


@pytest.mark.e2e
@needs_nginx
def test_graphql_calls_are_the_same_with_1_and_3_instances(fleet, github, tmp_path):
    """M tokens x K projects, warmed then listed again: GitHub pays M x K GraphQL calls, then none,
    with one instance and with three, as each token stays on one instance."""
    pairs = scale_setup(github)
    cost, rest, served = {}, {}, {}
    for count in (1, 3):
        _, balancer = fleet(count)
        mark, rest_mark = len(github.graphql_calls), len(github.rest_calls)
        cold = balancer.list_pairs(pairs)
        cold_calls = len(github.graphql_calls) - mark
        warm = balancer.list_pairs(pairs, workers=8)  # again, 8 at once
        cost[count] = (cold_calls, len(github.graphql_calls) - mark - cold_calls)
        rest[count] = len(github.rest_calls) - rest_mark
        served[count] = (cold, warm)
        balancer.stop()
    assert cost[1] == cost[3] == (M_TOKENS * K_PROJECTS, 0)
    cold, warm = served[3]
    assert homes(cold) == homes(warm)  # one instance per token, the same one both times
    # Digests are looked up once per asset and instance (they are per asset, not per token): with
    # more instances, up to that many times. Not GraphQL, and cheap, but not independent of N.
    assert rest[1] <= rest[3] <= 3 * rest[1]


class Load:
    """Threads that list every pair through nginx, over and over, until stopped; every answer must be 200."""

    def __init__(self, balancer: Nginx, pairs: list[tuple[str, str]], threads: int = 4) -> None:
        self.balancer, self.pairs = balancer, pairs
        self.done, self.answers, self.failures = threading.Event(), 0, []
        self.threads = [threading.Thread(target=self.work, args=(n,), daemon=True) for n in range(threads)]

    def work(self, n: int) -> None:
        while not self.done.is_set():
            token, project = self.pairs[(self.answers + n) % len(self.pairs)]
            try:
                status, _, body = self.balancer.get(f"/simple/{project}/", token)
            except OSError as exc:
                status, body = repr(exc), b""
            self.answers += 1
            if status != 200:
                self.failures.append((token[:12], project, status, body[:100]))

    def __enter__(self) -> "Load":
        for thread in self.threads:
            thread.start()
        wait_until(lambda: self.answers > 20)
        return self

    def __exit__(self, *exc) -> None:
        self.done.set()
        for thread in self.threads:
            thread.join(30)


@pytest.mark.e2e
@needs_nginx
def test_losing_instances_keeps_installs_working_and_moves_only_their_tokens(fleet, github, balancer_tls, tmp_path):
    """Under load, SIGTERM one instance, then SIGKILL another with a request in flight: every
    request still gets 200 (nginx tries the next server on the ring), pip still installs, and
    GitHub sees cold calls again only for the tokens of the lost instances, once per project."""
    pairs = scale_setup(github)
    late = github.add_repo("scale-late", readers=[t for t, _ in pairs], writers=())
    late.add_release("v1.0", dict([make_wheel("scale-late", "1.0")]))
    instances, balancer = fleet(3)
    home = homes(balancer.list_pairs(pairs))
    load_of = collections.Counter(home.values())
    drained = max(instances, key=lambda i: load_of[i.address])  # it holds 2 of the 6 tokens at least
    with Load(balancer, pairs) as load:
        mark = len(github.graphql_calls)
        drained.process.send_signal(signal.SIGTERM)
        assert drained.process.wait(30) == 0 and "pypihub stopped" in drained.log()
        after = load.answers
        assert wait_until(lambda: load.answers > after + 20, 30)  # the load meets the gap
        moved = homes(balancer.list_pairs(pairs))
        assert graphql_since(github, mark) == {t: K_PROJECTS for t, a in home.items() if a == drained.address}
        assert all(moved[t] == a for t, a in home.items() if a != drained.address)  # the others stayed put

        rest = collections.Counter(moved.values())
        killed, survivor = sorted((i for i in instances if i is not drained), key=lambda i: -rest[i.address])
        victims = sorted(t for t, a in moved.items() if a == killed.address)  # 3 tokens at least
        # A cold request of a victim, held at GitHub while its instance dies: nginx had sent it,
        # gets no answer, and sends it on to the survivor.
        github.gate = threading.Event()
        mark = len(github.graphql_calls)
        held: list = []
        request = threading.Thread(target=lambda: held.append(balancer.get("/simple/scale-late/", victims[0])[0]))
        request.start()
        wait_until(lambda: len(github.graphql_calls) > mark)
        index = f"https://{OWNER}:{victims[-1]}@127.0.0.1:{balancer.port}/simple/"
        pip = threading.Thread(target=run, args=([sys.executable, "-m", "pip", "download", "--no-deps", "--cert",
                                                  str(balancer_tls[0]), "-d", str(tmp_path / "dl"), "--index-url",
                                                  index, "scale-0==1.0"], tmp_path))
        pip.start()
        time.sleep(0.3)  # pip is starting, or asking already
        killed.process.kill()
        killed.process.wait(10)
        wait_until(lambda: len(github.graphql_calls) > mark + 1)  # the held request, asked again by the survivor
        github.gate.set()
        request.join(30)
        pip.join(120)
        assert held == [200]
        assert (tmp_path / "dl" / "scale_0-1.0-py3-none-any.whl").exists()
        last = homes(balancer.list_pairs(pairs))
        assert set(last.values()) == {survivor.address}
        expected = collections.Counter({t: K_PROJECTS for t in victims})
        expected[victims[0]] += 2  # scale-late: asked by the killed instance, then by the survivor
        assert graphql_since(github, mark) == expected
    assert load.failures == [] and load.answers > 100
    assert survivor.process.poll() is None
    assert "upstream" in balancer.error_log.read_text()  # nginx saw the failures, and hid them


@pytest.mark.e2e
@needs_haproxy
def test_haproxy_keeps_each_token_on_one_instance(github, balancer_tls, tmp_path):
    """deploy/haproxy.cfg for real: M x K cold calls, none when listed again, and after SIGKILL of
    an instance all answers still 200, with cold calls again only for that instance's tokens."""
    pairs = scale_setup(github)
    instances = [Instance(github) for _ in range(3)]
    pem = tmp_path / "pypihub.pem"
    pem.write_bytes(balancer_tls[1].read_bytes() + balancer_tls[2].read_bytes())
    port = free_port()
    (tmp_path / "haproxy.cfg").write_text(haproxy_config([i.address for i in instances], port, pem))
    proxy = subprocess.Popen([HAPROXY, "-db", "-f", str(tmp_path / "haproxy.cfg")], stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, text=True)
    output: list[str] = []
    threading.Thread(target=lambda: output.extend(proxy.stdout), daemon=True).start()
    context = ssl.create_default_context(cafile=str(balancer_tls[0]))

    def list_all() -> None:
        for token, project in pairs:
            connection = http.client.HTTPSConnection("127.0.0.1", port, timeout=30, context=context)
            connection.request("GET", f"/simple/{project}/",
                               headers={**JSON_ACCEPT, "Authorization": basic(f"{OWNER}:{token}")})
            answer = connection.getresponse()
            assert answer.status == 200, (answer.status, answer.read()[:200])
            answer.read()
            connection.close()

    try:
        wait_until(lambda: proxy.poll() is not None or listening(port), 10)
        assert proxy.poll() is None, "".join(output)
        list_all()
        assert len(github.graphql_calls) == M_TOKENS * K_PROJECTS
        list_all()
        assert len(github.graphql_calls) == M_TOKENS * K_PROJECTS  # affinity: every listing warm
        # Which tokens lived where: the fake does not know, but each instance's log has its calls.
        served = {i.address: sum(int(n) for n in re.findall(r" gh=(\d+) ", i.log())) for i in instances}
        victim = max(instances, key=lambda i: served[i.address])
        mark = len(github.graphql_calls)
        victim.process.kill()
        victim.process.wait(10)
        list_all()
        paid = graphql_since(github, mark)
        assert sum(paid.values()) == served[victim.address] and set(paid.values()) == {K_PROJECTS}
    finally:
        proxy.terminate()
        proxy.wait(10)
        for instance in instances:
            instance.stop()
    assert_no_secrets("".join(output) + "".join(i.log() for i in instances), github.tokens)


# -- behind a proxy: the client's address, the drain --


@pytest.mark.e2e
def test_x_forwarded_for_is_ignored_without_a_trusted_proxy(make_hub, github, demo):
    """Today's behaviour, and the default after --trusted-proxy: a client cannot choose the
    address PyPIHub logs and limits by."""
    hub = make_hub()
    assert hub.request("/simple/demo-pkg/", headers={"X-Forwarded-For": "203.0.113.9"}).status == 200
    assert hub.logs[-1].startswith("127.0.0.1 ") and "203.0.113.9" not in hub.logs[-1]


@pytest.mark.e2e
def test_trusted_proxy_setting_from_flags_and_environment():
    import ipaddress
    flags = pypihub.build_settings(["--trusted-proxy", "127.0.0.1", "--trusted-proxy", "10.0.0.0/8"], {})
    environment = pypihub.build_settings([], {"PYPIHUB_TRUSTED_PROXY": "127.0.0.1 10.0.0.0/8"})
    assert flags.trusted_proxies == environment.trusted_proxies == \
        (ipaddress.ip_network("127.0.0.1/32"), ipaddress.ip_network("10.0.0.0/8"))
    with pytest.raises(pypihub.ConfigError):
        pypihub.build_settings(["--trusted-proxy", "not-an-address"], {})


@pytest.mark.e2e
@needs_nginx
def test_behind_a_trusted_proxy_the_log_shows_the_client_address(fleet, github, demo):
    """nginx appends the address it saw to X-Forwarded-For; PyPIHub takes the last address a
    trusted proxy added, so what the client itself put there does not count."""
    [instance], balancer = fleet(1, "--trusted-proxy", "127.0.0.1")
    status, _, _ = balancer.get("/simple/demo-pkg/", headers={"X-Forwarded-For": "203.0.113.9"}, source="127.0.0.2")
    assert status == 200
    wait_until(lambda: '"GET /simple/demo-pkg/"' in instance.log())
    line = next(line for line in instance.lines if '"GET /simple/demo-pkg/"' in line)
    assert line.startswith("127.0.0.2 ") and "203.0.113.9" not in line


@pytest.mark.e2e
def test_two_x_forwarded_for_lines_are_one_list(make_hub, github):
    """RFC 9110 5.3: two header lines are one comma-separated list, in order. HAProxy's "option
    forwardfor" adds a line of its own after the client's: the last address is the proxy's word."""
    import ipaddress
    hub = make_hub(trusted_proxies=(ipaddress.ip_network("127.0.0.1"),))
    raw_exchange(hub.port, b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Forwarded-For: 203.0.113.9\r\n"
                           b"X-Forwarded-For: 192.0.2.7\r\nConnection: close\r\n\r\n")
    wait_until(lambda: hub.logged() == 1)
    hub.server.events.flush()
    assert hub.logs[-1].startswith("192.0.2.7 "), hub.logs[-1]


@pytest.mark.e2e
def test_x_forwarded_for_from_an_untrusted_address_is_ignored(make_hub, github, demo):
    import ipaddress
    hub = make_hub(trusted_proxies=(ipaddress.ip_network("127.0.0.9"),))  # not the address the test connects from
    assert hub.request("/simple/demo-pkg/", headers={"X-Forwarded-For": "203.0.113.9"}).status == 200
    assert hub.logs[-1].startswith("127.0.0.1 ")


@pytest.mark.e2e
@needs_nginx
def test_the_per_client_cap_counts_clients_not_the_trusted_proxy(fleet, github, demo):
    """With the default --max-client-connections (64), 80 requests at once through nginx, from 80
    client addresses, all succeed: the proxy's own address is not one client. (One design among
    others; see NOTES: the cap is decided before a request head, so before X-Forwarded-For.)"""
    [instance], balancer = fleet(1, "--trusted-proxy", "127.0.0.1", "--max-client-connections", "64")  # last wins
    github.gate = threading.Event()  # every listing waits at the fake GitHub: 80 requests in flight
    statuses: list = []

    def one(n: int) -> None:
        statuses.append(balancer.get("/simple/demo-pkg/", source=f"127.0.1.{n + 1}")[0])

    threads = [threading.Thread(target=one, args=(n,)) for n in range(80)]
    for thread in threads:
        thread.start()
    # The other 79 arrive and wait for that one call (each counted as coalesced as it starts to wait).
    metrics = f"http://127.0.0.1:{instance.port}/metrics"
    wait_until(lambda: b'coalesced_total{cache="listings"} 79' in urllib.request.urlopen(metrics, timeout=10).read(), 30)
    github.gate.set()
    for thread in threads:
        thread.join(30)
    assert statuses == [200] * 80


@pytest.mark.e2e
def test_healthz_answers_503_while_draining(github, demo):
    """Between SIGTERM and exit, /healthz says "draining" (503), so that a balancer that checks
    it takes the instance out. New connections may be refused already: a connection kept alive
    from before is asked, as a balancer's pooled connection would be."""
    instance = Instance(github)
    kept = http.client.HTTPConnection("127.0.0.1", instance.port, timeout=10)
    kept.request("GET", "/healthz")
    answer = kept.getresponse()
    assert (answer.status, answer.read()) == (200, b"ok\n")
    github.gate = threading.Event()  # GraphQL calls wait: a request stays in flight, the drain lasts
    results = []

    def slow() -> None:
        connection = http.client.HTTPConnection("127.0.0.1", instance.port, timeout=30)
        connection.request("GET", "/simple/demo-pkg/", headers={"Authorization": basic(f"{OWNER}:{TOKEN_A}")})
        results.append(connection.getresponse().status)

    thread = threading.Thread(target=slow)
    thread.start()
    wait_until(lambda: github.graphql_calls)
    instance.process.send_signal(signal.SIGTERM)
    wait_until(lambda: not listening(instance.port) or "draining" in instance.log(), 5)
    seen = []

    def draining() -> bool:  # the signal is handled: stopping is set once serve_forever returned
        kept.request("GET", "/healthz")
        answer = kept.getresponse()
        seen.append((answer.status, answer.read(), answer.getheader("Retry-After")))
        return answer.status != 200

    wait_until(draining, 10)
    assert seen[-1] == (503, b"draining\n", "1")
    github.gate.set()
    thread.join(30)
    assert results == [200] and instance.process.wait(30) == 0


@pytest.mark.e2e
@needs_nginx
def test_no_credentials_mode_lends_no_token_through_a_balancer(fleet, github, demo, monkeypatch):
    """--token-env serves "this machine only", judged by the Host header. Behind a balancer on the
    same host, any client can send "Host: localhost": a request that a proxy forwarded (it carries
    X-Forwarded-For) must not borrow the server's token."""
    monkeypatch.setenv("PYPIHUB_TEST_SERVER_TOKEN", TOKEN_A)
    _, balancer = fleet(1, "--token-env", "PYPIHUB_TEST_SERVER_TOKEN", "--owner", OWNER)
    statuses = {host: balancer.get("/simple/demo-pkg/", None, headers={"Host": host})[0]
                for host in ("pypi.example.com", "127.0.0.1", "localhost")}
    assert statuses == {"pypi.example.com": 401, "127.0.0.1": 401, "localhost": 401}  # today: 401, 200, 200


@pytest.mark.e2e
def test_every_access_line_survives_sigterm(github):
    process = subprocess.Popen([sys.executable, str(ROOT / "pypihub.py"), "--host", "127.0.0.1", "--port", "0",
                                "--graphql-url", github.graphql_url], stderr=subprocess.PIPE, text=True)
    port = int(re.search(r":(\d+)/simple/", process.stderr.readline()).group(1))
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    for n in range(300):
        connection.request("GET", f"/healthz?n={n}")
        assert connection.getresponse().read() == b"ok\n"
    process.send_signal(signal.SIGTERM)  # at once: lines may still be waiting for the writer
    _, errors = process.communicate(timeout=30)
    logged = re.findall(r'"GET /healthz\?n=(\d+)" 200 ', errors)
    assert logged == [str(n) for n in range(300)] and errors.splitlines()[-1] == "pypihub stopped"


@pytest.mark.e2e
def test_graceful_shutdown_finishes_requests_in_flight(github, demo):
    process, url = serve([sys.executable, str(ROOT / "pypihub.py")], github)
    github.gate = threading.Event()
    results = []

    def slow_request():
        connection = http.client.HTTPConnection(urllib.parse.urlsplit(url).hostname, urllib.parse.urlsplit(url).port, timeout=30)
        connection.request("GET", "/simple/demo-pkg/", headers={"Authorization": basic(f"{OWNER}:{TOKEN_A}")})
        results.append(connection.getresponse().status)

    thread = threading.Thread(target=slow_request)
    thread.start()
    wait_until(lambda: github.graphql_calls)
    process.terminate()
    assert wait_until(lambda: not listening(urllib.parse.urlsplit(url).port))  # it stops accepting
    github.gate.set()
    thread.join(30)
    _, errors = process.communicate(timeout=30)
    assert results == [200]
    assert process.returncode == 0 and "pypihub stopped" in errors
    assert not any(token in errors for token in ALL_TOKENS)


# -- README's client snippets, run as written (only host, port and token substituted) --


def readme_blocks(marker: str, count: int) -> list[tuple[str, str]]:
    """The first `count` fenced blocks (language, text) of README after the line that starts with `marker`."""
    text = (ROOT / "README.md").read_text()
    start = next(m.start() for m in re.finditer(r"^.*$", text, re.M) if m.group(0).startswith(marker))
    blocks = re.findall(r"^```(\w*)\n(.*?)^```$", text[start:], re.S | re.M)[:count]
    assert len(blocks) == count, f"README has no {count} blocks after {marker!r}"
    return blocks


def on_hub(text: str, hub: Hub) -> str:
    """A snippet aimed at this test's PyPIHub: its host and port for localhost:8080 (and netrc's host)."""
    return text.replace("localhost:8080", f"127.0.0.1:{hub.port}").replace("machine localhost ", "machine 127.0.0.1 ")


def run_snippet(text: str, cwd: Path, env: dict, succeeds: bool = True) -> subprocess.CompletedProcess:
    result = subprocess.run(["bash", "-eo", "pipefail", "-c", text], cwd=cwd, env=env, capture_output=True,
                            text=True, timeout=240)
    assert (result.returncode == 0) is succeeds, f"{text}\n{result.stdout}\n{result.stderr}"
    return result


@pytest.fixture
def acme(github):
    """README's example: octorg/acme-tools, private, with acme_tools-1.2.0-py3-none-any.whl (and 1.0)."""
    repo = github.add_repo("acme-tools")
    for version, created in (("1.0", "2026-01-05T00:00:00Z"), ("1.2.0", "2026-02-05T00:00:00Z")):
        name, content = make_wheel("acme-tools", version, value=version)
        repo.add_release(f"v{version}", {name: content, f"acme_tools-{version}.tar.gz": b"sdist"}, created=created)
    return repo


@pytest.fixture(scope="session")
def venv_with_pip(tmp_path_factory) -> Path:
    """A virtualenv with pip, made once; each test that runs `pip` gets a copy of its own."""
    template = tmp_path_factory.mktemp("pip-venv") / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(template)], check=True, capture_output=True)
    return template


@pytest.fixture
def shell(tmp_path, venv_with_pip):
    """What a user's shell has: HOME, an active virtualenv whose pip is `pip`, and uv, twine, poetry
    and pdm (from the test environment) on PATH; GITHUB_TOKEN set by each test."""
    venv = tmp_path / "venv"
    shutil.copytree(venv_with_pip, venv, symlinks=True)
    (venv / "pyvenv.cfg").write_text((venv_with_pip / "pyvenv.cfg").read_text())
    for name in ("pip", "pip3"):  # the copy's own pip (the template's scripts name the template's python)
        (venv / "bin" / name).write_text(f'#!/bin/sh\nexec "{venv / "bin" / "python"}" -m pip "$@"\n')
        (venv / "bin" / name).chmod(0o755)
    env = {**pip_env(tmp_path), "PATH": os.pathsep.join([str(venv / "bin"), str(Path(sys.executable).parent),
                                                         os.environ.get("PATH", "")])}
    for name in ("PIP_CONFIG_FILE", "XDG_CONFIG_HOME", "VIRTUAL_ENV", "POETRY_HOME"):
        env.pop(name, None)
    env.update(PYTHON_KEYRING_BACKEND="keyring.backends.null.Keyring", POETRY_VIRTUALENVS_IN_PROJECT="true",
               POETRY_CONFIG_DIR=str(tmp_path / "poetry-config"), POETRY_CACHE_DIR=str(tmp_path / "poetry-cache"),
               PDM_HOME=str(tmp_path / "pdm"), PDM_CACHE_DIR=str(tmp_path / "pdm-cache"), PDM_CHECK_UPDATE="false")
    return env


def app_project(tmp_path: Path, extra: str = "", tool: str = "") -> Path:
    """An application's pyproject.toml, with README's configuration block appended."""
    project = tmp_path / "app"
    project.mkdir(parents=True, exist_ok=True)
    (project / "pyproject.toml").write_text(f'[project]\nname = "app"\nversion = "0.1.0"\nrequires-python = ">=3.9"\n'
                                            f"dependencies = []\n{tool}\n{extra}\n")
    return project


def imports_acme(python: Path, tmp_path: Path) -> str:
    return imported_value(python, tmp_path, "acme_tools")


@pytest.mark.e2e
def test_readme_pip_with_the_token_in_the_url(hub, acme, shell, tmp_path):
    [(lang, text)] = readme_blocks("**pip**", 1)
    run_snippet(on_hub(text, hub), tmp_path, {**shell, "GITHUB_TOKEN": TOKEN_A})
    assert imports_acme(tmp_path / "venv" / "bin" / "python", tmp_path) == "1.2.0"


@pytest.mark.e2e
def test_readme_pip_conf_with_the_token_in_netrc(hub, acme, shell, tmp_path):
    (_, ini), (_, sh) = readme_blocks("or in `pip.conf`", 2)
    config = tmp_path / ".config" / "pip" / "pip.conf"
    config.parent.mkdir(parents=True)
    config.write_text(on_hub(ini, hub))
    run_snippet(on_hub(sh, hub), tmp_path, {**shell, "GITHUB_TOKEN": TOKEN_A})
    assert imports_acme(tmp_path / "venv" / "bin" / "python", tmp_path) == "1.2.0"
    assert TOKEN_A not in config.read_text()


@pytest.mark.e2e
@needs_uv
def test_readme_uv_with_the_token_in_the_url(hub, acme, shell, tmp_path):
    [(_, text)] = readme_blocks("**uv.** Credentials can go in the URL", 1)
    project = app_project(tmp_path)
    run_snippet(on_hub(text, hub), project, {**shell, "GITHUB_TOKEN": TOKEN_A})
    assert imports_acme(project / ".venv" / "bin" / "python", tmp_path) == "1.2.0"


@pytest.mark.e2e
@needs_uv
def test_readme_uv_named_index_with_credentials_from_the_environment(hub, acme, shell, tmp_path):
    (_, toml), (_, sh) = readme_blocks("or a named index in `pyproject.toml`", 2)
    project = app_project(tmp_path, on_hub(toml, hub))
    run_snippet(on_hub(sh, hub), project, {**shell, "GITHUB_TOKEN": TOKEN_A})
    assert imports_acme(project / ".venv" / "bin" / "python", tmp_path) == "1.2.0"
    assert TOKEN_A not in (project / "uv.lock").read_text()


@pytest.mark.e2e
def test_readme_poetry(hub, acme, shell, tmp_path):
    if shutil.which("poetry", path=shell["PATH"]) is None:
        pytest.skip("poetry is not installed (the test extra installs it)")
    [(_, text)] = readme_blocks("**poetry**", 1)
    project = app_project(tmp_path, tool="[tool.poetry]\npackage-mode = false\n")
    run_snippet(on_hub(text, hub), project, {**shell, "GITHUB_TOKEN": TOKEN_A})
    assert imports_acme(project / ".venv" / "bin" / "python", tmp_path) == "1.2.0"
    assert TOKEN_A not in (project / "pyproject.toml").read_text() + (project / "poetry.lock").read_text()


@pytest.mark.e2e
def test_readme_pdm_with_the_token_expanded_in_the_url(hub, acme, shell, tmp_path):
    if shutil.which("pdm", path=shell["PATH"]) is None:
        pytest.skip("pdm is not installed (the test extra installs it)")
    (_, toml), (_, sh) = readme_blocks("**pdm** expands", 2)
    project = app_project(tmp_path, on_hub(toml, hub), tool="[tool.pdm]\ndistribution = false\n")
    run_snippet(on_hub(sh, hub), project, {**shell, "GITHUB_TOKEN": TOKEN_A})
    assert imports_acme(project / ".venv" / "bin" / "python", tmp_path) == "1.2.0"
    assert TOKEN_A not in (project / "pdm.lock").read_text()


@pytest.mark.e2e
@needs_uv
@needs_twine
def test_readme_publish_with_twine_then_uv_whose_check_url_skips_what_is_there(hub, acme, shell, tmp_path):
    [(_, text)] = readme_blocks("Upload with the same owner and token you install with", 1)
    write_dist(tmp_path, make_wheel("acme-tools", "1.3.0"), make_sdist("acme-tools", "1.3.0"))
    uploads = lambda: sum('"POST /legacy/"' in line for line in hub.logs)  # noqa: E731
    run_snippet(on_hub(text, hub), tmp_path, {**shell, "GITHUB_TOKEN": TOKEN_A})
    [release] = [r for r in acme.releases if r["tagName"] == "v1.3.0"]
    assert sorted(a["name"] for a in release["assets"]) == ["acme_tools-1.3.0-py3-none-any.whl", "acme_tools-1.3.0.tar.gz"]
    assert uploads() == 2  # twine's two; uv's check found both files there and sent neither


@pytest.mark.e2e
@needs_uv
def test_readme_uv_stops_at_a_private_name_and_goes_on_to_pypi_for_the_rest(make_hub, acme, upstream, shell, tmp_path):
    [(_, server)] = readme_blocks("are yours:", 1)
    assert "--private-name 'acme-*'" in server
    hub = make_hub(private_names=("acme-*",))  # as README's server line
    upstream.add("acme-tools", make_wheel("acme-tools", "99.0", value="an impostor on PyPI"))
    upstream.add("requests", make_wheel("requests", "2.32.0"))
    (_, toml), (_, sh) = readme_blocks("Every other name still answers `404`", 2)
    env = {**shell, "UV_DEFAULT_INDEX": upstream.url}  # PyPI, on loopback
    refused = app_project(tmp_path / "b", on_hub(toml, hub))
    failed = run_snippet(on_hub(sh, hub), refused, {**env, "GITHUB_TOKEN": TOKEN_B}, succeeds=False)
    assert "403" in failed.stdout + failed.stderr
    assert not any("/files/acme-tools/" in path for path, _ in upstream.requests)  # never PyPI's acme-tools
    served = app_project(tmp_path / "a", on_hub(toml, hub))
    run_snippet(on_hub(sh, hub), served, {**env, "GITHUB_TOKEN": TOKEN_A})
    python = served / ".venv" / "bin" / "python"
    assert imports_acme(python, tmp_path) == "1.2.0" and imported_value(python, tmp_path, "requests") == "2.32.0"


@pytest.fixture
def one_index(make_hub, acme, upstream):
    """README's one index URL: octorg's projects from GitHub, PyPI's (a stand-in with `requests`) behind."""
    upstream.add("requests", make_wheel("requests", "2.32.0"))
    return make_hub(owners=(OWNER,), fallback_index=upstream.url, proxy_downloads=True)


def installs_both(python: Path, tmp_path: Path) -> bool:
    return imports_acme(python, tmp_path) == "1.2.0" and imported_value(python, tmp_path, "requests") == "2.32.0"


@pytest.mark.e2e
def test_readme_one_index_pip(one_index, shell, tmp_path):
    [(_, text)] = readme_blocks("**pip** needs nothing but the one URL", 1)
    run_snippet(on_hub(text, one_index), tmp_path, {**shell, "GITHUB_TOKEN": TOKEN_A})
    assert installs_both(tmp_path / "venv" / "bin" / "python", tmp_path)


@pytest.mark.e2e
@needs_uv
def test_readme_one_index_uv(one_index, shell, tmp_path):
    (_, toml), (_, sh) = readme_blocks("**uv**, with PyPIHub as its only index", 2)
    project = app_project(tmp_path, on_hub(toml, one_index))
    run_snippet(on_hub(sh, one_index), project, {**shell, "GITHUB_TOKEN": TOKEN_A})
    assert installs_both(project / ".venv" / "bin" / "python", tmp_path)


@pytest.mark.e2e
def test_readme_one_index_poetry(one_index, shell, tmp_path):
    if shutil.which("poetry", path=shell["PATH"]) is None:
        pytest.skip("poetry is not installed (the test extra installs it)")
    [(_, text)] = readme_blocks("**poetry**, with PyPIHub as its primary source", 1)
    project = app_project(tmp_path, tool="[tool.poetry]\npackage-mode = false\n")
    run_snippet(on_hub(text, one_index), project, {**shell, "GITHUB_TOKEN": TOKEN_A})
    assert installs_both(project / ".venv" / "bin" / "python", tmp_path)


@pytest.mark.e2e
def test_readme_one_index_pdm(one_index, shell, tmp_path):
    if shutil.which("pdm", path=shell["PATH"]) is None:
        pytest.skip("pdm is not installed (the test extra installs it)")
    (_, toml), (_, sh) = readme_blocks("**pdm** (`pyproject.toml`), with PyPI itself turned off", 2)
    project = app_project(tmp_path, on_hub(toml, one_index), tool="[tool.pdm]\ndistribution = false\n")
    run_snippet(on_hub(sh, one_index), project, {**shell, "GITHUB_TOKEN": TOKEN_A})
    assert installs_both(project / ".venv" / "bin" / "python", tmp_path)


@pytest.mark.e2e
def test_readme_quick_start_check_line_runs_as_written(github, acme, tmp_path):
    line = next(l.strip() for l in (ROOT / "README.md").read_text().splitlines()
                if l.strip().startswith("GITHUB_TOKEN=... python3 pypihub.py check"))
    env = {**pip_env(tmp_path), "PYPIHUB_GRAPHQL_URL": github.graphql_url}  # GitHub's host, on loopback
    done = subprocess.run(["bash", "-c", line.replace("GITHUB_TOKEN=...", f"GITHUB_TOKEN={TOKEN_A}")], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and "Everything checked works." in done.stdout and TOKEN_A not in done.stdout


# -- pages for people, in a real browser: headless Chromium --

CHROMIUM = os.environ.get("PYPIHUB_CHROMIUM", "/usr/bin/chromium")
needs_chromium = pytest.mark.skipif(not shutil.which(CHROMIUM), reason=f"no Chromium at {CHROMIUM} "
                                    "(.ci/run installs Debian's chromium; or set PYPIHUB_CHROMIUM)")
# Chromium 156: "Applying inline style violates the following Content Security Policy directive ...";
# older ones: "Refused to apply inline style because it violates the following ...". Both match.
CSP_VIOLATION = re.compile(r"violates the following Content Security Policy directive")
CHROMIUM_FLAGS = (
    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync", "--disable-extensions",
    "--disable-default-apps", "--disable-domain-reliability", "--disable-client-side-phishing-detection",
    "--no-pings", "--disable-breakpad", "--hide-scrollbars", "--enable-logging=stderr", "--v=0",
    # Nothing resolves but loopback: neither Chromium's own pings nor a page's loads leave the machine.
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
)


@dataclasses.dataclass
class BrowserRun:
    dom: str  # --dump-dom: the DOM after load
    console: list[str]  # the page's console messages (CSP violations among them)
    elsewhere: list[str]  # what the page asked for from anywhere but its own origin (from the net log)


def page_requests_elsewhere(netlog: Path, origin: str) -> list[str]:
    """URLs of requests the page made (initiator: its origin) to another origin; Chromium's own
    background requests have no initiator ("not an origin") and are left out."""
    log = json.loads(netlog.read_text())
    start = log["constants"]["logEventTypes"]["URL_REQUEST_START_JOB"]
    urls = [e["params"]["url"] for e in log["events"]
            if e["type"] == start and e.get("params", {}).get("initiator") == origin]
    return [url for url in urls if not url.replace(" (credentials redacted)", "").startswith(origin + "/")]


def run_chromium(url: str, tmp: Path, name: str, dark: bool = False) -> BrowserRun:
    """Load `url` once (with credentials in it, Chromium asks without, gets the 401, and asks
    again with them): its DOM, console and requests, and a screenshot at tmp/<name>.png."""
    split = urllib.parse.urlsplit(url)
    origin, netlog = f"{split.scheme}://{split.hostname}:{split.port}", tmp / f"{name}.netlog.json"
    command = [CHROMIUM, *CHROMIUM_FLAGS, f"--user-data-dir={tmp / ('profile-' + name)}", f"--log-net-log={netlog}",
               "--window-size=1000,1400", f"--screenshot={tmp / (name + '.png')}", "--dump-dom", url]
    if dark:
        command.insert(1, "--blink-settings=preferredColorScheme=0")  # 0 dark, 1 light
    done = subprocess.run(command, capture_output=True, text=True, timeout=90)
    assert done.returncode == 0, done.stderr[-2000:]
    console = [line for line in done.stderr.splitlines() if ":CONSOLE" in line]
    return BrowserRun(done.stdout, console, page_requests_elsewhere(netlog, origin))


class Elements(html.parser.HTMLParser):
    """The elements of a page, with their attributes, as a browser would parse them."""

    def __init__(self, text: str) -> None:
        super().__init__(convert_charrefs=True)
        self.found: list[tuple[str, dict]] = []
        self.feed(text)

    def handle_starttag(self, tag: str, attrs: list) -> None:
        self.found.append((tag, dict(attrs)))


def png_luma(path: Path) -> float:
    """Mean luma (0-255) of an 8-bit RGB/RGBA PNG, as Chromium writes them; stdlib only."""
    data = path.read_bytes()
    chunks, at = {}, 8
    while at < len(data):
        length, kind = struct.unpack(">I4s", data[at:at + 8])
        chunks.setdefault(kind, []).append(data[at + 8:at + 8 + length])
        at += 12 + length
    width, height, depth, color = struct.unpack(">IIBB", chunks[b"IHDR"][0][:10])
    assert depth == 8 and color in (2, 6), (depth, color)
    channels = 3 if color == 2 else 4
    raw, stride = zlib.decompress(b"".join(chunks[b"IDAT"])), width * channels
    previous, total = bytearray(stride), 0
    for y in range(height):
        kind, line = raw[y * (stride + 1)], bytearray(raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)])
        for x in range(stride):
            left = line[x - channels] if x >= channels else 0
            up, corner = previous[x], previous[x - channels] if x >= channels else 0
            if kind == 1:
                line[x] = (line[x] + left) & 255
            elif kind == 2:
                line[x] = (line[x] + up) & 255
            elif kind == 3:
                line[x] = (line[x] + (left + up) // 2) & 255
            elif kind == 4:
                p = left + up - corner
                pa, pb, pc = abs(p - left), abs(p - up), abs(p - corner)
                line[x] = (line[x] + (left if pa <= pb and pa <= pc else up if pb <= pc else corner)) & 255
        total += sum(line[i] * 299 + line[i + 1] * 587 + line[i + 2] * 114 for i in range(0, stride, channels))
        previous = line
    return total / 1000 / (width * height)


@pytest.mark.e2e
@needs_chromium
@pytest.mark.parametrize("path, texts", [
    ("/", ["PyPIHub", "demo-pkg", "2.0", "Demo tools " + HOSTILE_TEXT]),
    ("/project/demo-pkg/", ["pip install --index-url http://127.0.0.1:", "2.1rc1", "pre-release", "Faster parser by",
                            "Two " + HOSTILE_TEXT, HOSTILE_WHEEL, hashlib.sha256(b"hostile").hexdigest()]),
])
def test_chromium_shows_the_pages_light_and_dark_without_csp_violations(hub, github, people, tmp_path, path, texts):
    url = f"http://{OWNER}:{TOKEN_A}@127.0.0.1:{hub.port}{path}"
    name = path.strip("/").replace("/", "-") or "home"
    light, dark = run_chromium(url, tmp_path, name + "-light"), run_chromium(url, tmp_path, name + "-dark", dark=True)
    for run in (light, dark):
        text = html.unescape(re.sub(r"<[^>]+>", "", run.dom))
        assert all(t in text for t in texts), [t for t in texts if t not in text]
        assert run.console == [] and run.elsewhere == []  # no CSP violation, nothing asked of anyone else
        elements = Elements(run.dom).found  # the hostile names stayed text: no script, no handler
        assert not [(tag, a) for tag, a in elements if tag == "script" or any(n.startswith("on") for n in a)]
    assert png_luma(tmp_path / f"{name}-light.png") > 200 > 60 > png_luma(tmp_path / f"{name}-dark.png")


class ViolatingPage(BaseHTTPRequestHandler):
    """The browser check's own control: a page whose CSP forbids its inline style, and one that
    loads an image from elsewhere."""

    def do_GET(self) -> None:
        policy = "default-src 'none'" if self.path == "/style" else "default-src 'none'; img-src *"
        body = b'<p style="color:red">x</p>' if self.path == "/style" else b'<img src="http://example.com/x.png">'
        self.send_response(200)
        self.send_header("Content-Security-Policy", policy)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format, *args) -> None:
        pass


@pytest.mark.e2e
@needs_chromium
def test_the_browser_check_sees_csp_violations_and_requests_elsewhere(tmp_path):
    server = ThreadingHTTPServer(("127.0.0.1", 0), ViolatingPage)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        base = f"http://127.0.0.1:{server.server_address[1]}"
        style, image = run_chromium(base + "/style", tmp_path, "style"), run_chromium(base + "/image", tmp_path, "image")
    finally:
        server.shutdown()
        server.server_close()
    assert any(CSP_VIOLATION.search(line) for line in style.console)
    assert image.elsewhere == ["http://example.com/x.png"]


class AttackerSite(BaseHTTPRequestHandler):
    """Another site's page, on another port of 127.0.0.1 (the same site as PyPIHub, another
    origin). Its server carries `page` and `signed_in`: /signed-in answers once that holds."""

    def do_GET(self) -> None:
        if self.path == "/signed-in":
            wait_until(self.server.signed_in, 10)
        body = self.server.page if self.path == "/" else b"ok"
        self.send_response(200)
        self.send_header("Content-Type", "text/html" if self.path == "/" else "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format, *args) -> None:
        pass


def forged_upload_page(hub: Hub, filename: str, content: bytes) -> bytes:
    """A page that opens the sign-in to `hub` in a popup, waits at /signed-in, then submits a
    twine upload of `content` to `hub` from a form (its file input filled through DataTransfer)."""
    fields = "".join(f'<input type="hidden" name="{html.escape(k)}" value="{html.escape(v)}">'
                     for k, v in upload_fields("demo-pkg", "7.0", content).items())
    return f"""<!doctype html><form id="upload" method="post" enctype="multipart/form-data"
action="{hub.url}/legacy/">{fields}<input type="file" name="content" id="content"></form><script>
const bytes = Uint8Array.from(atob("{base64.b64encode(content).decode()}"), c => c.charCodeAt(0));
const files = new DataTransfer();
files.items.add(new File([bytes], "{filename}", {{type: "application/octet-stream"}}));
document.getElementById("content").files = files.files;
window.open("http://{OWNER}:{TOKEN_A}@127.0.0.1:{hub.port}/");
fetch("/signed-in").then(() => document.getElementById("upload").submit());
</script>""".encode()


def signed_in(hub: Hub) -> bool:
    """PyPIHub has answered the person's sign-in: its home page, 200."""
    return hub.server.events.flush() and any('"GET /" 200' in line for line in hub.logs)


def sent_headers(netlog: Path, line: str) -> list[dict[str, str]]:
    """The headers Chromium sent on each request whose request line starts with `line`, from its
    net log: there the values of credentials read "[N bytes were stripped]", their names stay."""
    log = json.loads(netlog.read_text())
    sent = log["constants"]["logEventTypes"]["HTTP_TRANSACTION_SEND_REQUEST_HEADERS"]
    return [dict(h.split(": ", 1) for h in e["params"]["headers"]) for e in log["events"]
            if e["type"] == sent and e["params"]["line"].startswith(line)]


@pytest.mark.e2e
@needs_chromium
def test_chromium_signed_in_cannot_be_made_to_upload_by_another_sites_form(hub, github, demo, tmp_path):
    """Cross-site request forgery, in a real browser: a person signs in to PyPIHub's pages with
    Basic credentials in the URL, which Chromium then keeps for PyPIHub's origin; a page of another
    origin posts a twine upload to /legacy/ from a form. Chromium sends it with those credentials,
    with Origin naming that page and Sec-Fetch-Site "same-site" (sites ignore ports); PyPIHub
    refuses it (403) before any GitHub call, so no release is made."""
    name, content = make_wheel("demo-pkg", "7.0")
    server = ThreadingHTTPServer(("127.0.0.1", 0), AttackerSite)
    server.page, server.signed_in = forged_upload_page(hub, name, content), lambda: signed_in(hub)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    attacker, netlog = f"http://127.0.0.1:{server.server_address[1]}", tmp_path / "forgery.netlog.json"
    try:  # the virtual-time budget lets the page's fetch and form post finish before the DOM is dumped
        done = subprocess.run([CHROMIUM, *CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'profile'}",
                               f"--log-net-log={netlog}", "--disable-popup-blocking", "--virtual-time-budget=5000",
                               "--dump-dom", attacker + "/"], capture_output=True, text=True, timeout=60)
    finally:
        server.shutdown()
        server.server_close()
    assert done.returncode == 0, done.stderr[-2000:]
    [post] = sent_headers(netlog, "POST /legacy/ ")  # the control: the forged post did carry the credentials
    assert post["Authorization"] == f"[{len(AUTH_A)} bytes were stripped]"
    assert (post["Origin"], post["Sec-Fetch-Site"]) == (attacker, "same-site")
    assert github.writes == [] and not any(r["tagName"] == "v7.0" for r in demo[0].releases)
    hub.server.events.flush()
    assert any('"POST /legacy/" 403 ' in line for line in hub.logs) and "may not write here" in done.stdout


# -- shipping: the script, the zipapp, the installed command --


ZIPAPP_COMMAND_PREFIX = 'python3 -c "import zipapp'


def readme_zipapp_command() -> str:
    lines = [line.strip() for line in (ROOT / "README.md").read_text().splitlines()]
    return next(line for line in lines if line.startswith(ZIPAPP_COMMAND_PREFIX))


@pytest.fixture(scope="module")
def zipapp_file(tmp_path_factory) -> Path:
    """pypihub.pyz, built by README's own command in a copy of the checkout."""
    checkout = tmp_path_factory.mktemp("checkout")
    for name in ("pypihub.py", "README.md", "test_pypihub.py", "pyproject.toml"):
        shutil.copy(ROOT / name, checkout / name)
    command = readme_zipapp_command().replace("python3 ", f"{sys.executable} ", 1)
    subprocess.run(command, shell=True, cwd=checkout, check=True, timeout=60)
    with zipfile.ZipFile(checkout / "pypihub.pyz") as archive:
        assert sorted(archive.namelist()) == ["__main__.py", "pypihub.py"]
    return checkout / "pypihub.pyz"


def entry_points(zipapp_file: Path) -> list[list[str]]:
    return [[sys.executable, str(ROOT / "pypihub.py")], [sys.executable, str(zipapp_file)]]


@pytest.mark.e2e
@pytest.mark.parametrize("kind", [0, 1], ids=["script", "zipapp"])
@pytest.mark.parametrize("args, code, output", [
    (["--version"], 0, f"pypihub {pypihub.__version__}"),
    (["--help"], 0, "--graphql-url"),
    (["--repo-map", "nothing"], 1, "REGEX=REPLACEMENT"),
    (["--port", "not-a-port"], 2, "invalid int value"),
])
def test_entry_points_exit_codes(zipapp_file, kind, args, code, output):
    result = subprocess.run(entry_points(zipapp_file)[kind] + args, capture_output=True, text=True, timeout=30,
                            env={**os.environ, "PYPIHUB_PORT": ""})
    assert result.returncode == code
    assert output in result.stdout + result.stderr


@pytest.mark.e2e
@pytest.mark.parametrize("kind", [0, 1], ids=["script", "zipapp"])
def test_served_process_installs_with_pip_and_stops_on_sigterm(zipapp_file, kind, github, demo, tmp_path):
    process, url = serve(entry_points(zipapp_file)[kind], github)
    try:
        index = url.replace("http://", f"http://{OWNER}:{TOKEN_A}@") + "/simple/"
        pip_download(tmp_path, index, "demo-pkg==2.0")
        wheel = "demo_pkg-2.0-py3-none-any.whl"
        assert (tmp_path / "dl" / wheel).read_bytes() == demo[1][wheel]
    finally:
        process.terminate()  # SIGTERM: stop accepting, exit 0
        _, errors = process.communicate(timeout=30)
    assert process.returncode == 0
    assert "pypihub stopped" in errors and TOKEN_A not in errors
    assert '"GET /simple/demo-pkg/" 200' in errors


@pytest.mark.e2e
def test_pip_install_dot_provides_the_command(tmp_path):
    python = fresh_venv(tmp_path)
    checkout = tmp_path / "checkout"
    checkout.mkdir()
    for name in ("pypihub.py", "README.md", "LICENSE", "pyproject.toml"):
        shutil.copy(ROOT / name, checkout / name)
    # Build here (setuptools is a test tool), then install the wheel into a venv that has nothing.
    run([sys.executable, "-m", "pip", "wheel", "--no-build-isolation", "--no-deps", "-w", str(tmp_path / "dist"),
         str(checkout)], tmp_path)
    wheel = next((tmp_path / "dist").glob("pypihub-*.whl"))
    run([sys.executable, "-m", "pip", "--python", str(python), "install", "--no-index", str(wheel)], tmp_path)
    result = run([str(python.parent / "pypihub"), "--version"], tmp_path)
    assert result.stdout.strip() == f"pypihub {pypihub.__version__}"


@pytest.mark.e2e
@pytest.mark.skipif(shutil.which("vermin", path=str(Path(sys.executable).parent)) is None and shutil.which("vermin") is None,
                    reason="vermin is not installed (.ci/run installs it)")
def test_vermin_gate_catches_newer_python(tmp_path):
    vermin = shutil.which("vermin", path=str(Path(sys.executable).parent)) or shutil.which("vermin")
    command = [vermin, "--target=3.9-", "--no-tips", "--violations", "--eval-annotations"]
    assert subprocess.run(command + [str(ROOT / "pypihub.py")], capture_output=True).returncode == 0
    newer = tmp_path / "pypihub.py"
    # A 3.10 API that parses under any Python (vermin reads with the running interpreter's parser).
    newer.write_text((ROOT / "pypihub.py").read_text() + "\nimport itertools\nitertools.pairwise([1, 2])\n")
    assert subprocess.run(command + [str(newer)], capture_output=True).returncode != 0


# -- one index URL, end to end --


@pytest.mark.e2e
@pytest.mark.parametrize("proxy, html_only", [(False, False), (True, False), (True, True)],
                         ids=["redirect", "proxy", "proxy-of-an-html-only-index"])
def test_pip_and_uv_install_private_from_github_and_public_from_the_fallback(make_hub, github, demo, upstream,
                                                                              tmp_path, proxy, html_only):
    upstream.html_only = html_only  # pypiserver, GitLab, Nexus: PEP 503 HTML only
    hub = make_hub(fallback_index=upstream.url, proxy_downloads=proxy)
    python = fresh_venv(tmp_path)
    run([sys.executable, "-m", "pip", "--python", str(python), "install", "--only-binary=:all:",
         "--index-url", hub.index_url(), "demo-pkg", "public-pkg"], tmp_path)
    assert imported_value(python, tmp_path) == "2.0"  # GitHub's, not upstream's 99.0
    assert imported_value(python, tmp_path, "public_pkg") == "1.0"
    uv = uv_path()
    if uv is None:
        pytest.skip("uv is not installed")
    venv = tmp_path / "uv-venv"
    run([uv, "venv", str(venv)], tmp_path)
    run([uv, "pip", "install", "--python", str(venv / "bin" / "python"), "--index-url", hub.index_url(),
         "demo-pkg", "public-pkg"], tmp_path)
    assert imported_value(venv / "bin" / "python", tmp_path) == "2.0"
    assert imported_value(venv / "bin" / "python", tmp_path, "public_pkg") == "1.0"
    assert upstream.requests  # and the upstream fixture checks that no request carried credentials


@pytest.mark.e2e
def test_pip_installs_with_no_credentials_in_no_credentials_mode(make_hub, github, demo, tmp_path):
    settings = pypihub.build_settings(["--token-env", "GH_TOKEN", "--owner", OWNER, "--host", "127.0.0.1"], {})
    hub = make_hub(owners=(OWNER,), own_token=pypihub.TokenSource(settings, {"GH_TOKEN": TOKEN_A}))
    python = fresh_venv(tmp_path)
    run([sys.executable, "-m", "pip", "--python", str(python), "install", "--only-binary=:all:",
         "--index-url", f"{hub.url}/simple/", "demo-pkg"], tmp_path)
    assert imported_value(python, tmp_path) == "2.0"


@pytest.mark.e2e
def test_twine_uploads_with_the_token_user_across_owners(make_hub, github, demo, tmp_path):
    twine = twine_path()
    if twine is None:
        pytest.skip("twine is not installed")
    other = second_owner(github)
    hub = make_hub(owners=(OWNER, "octorg2"))
    paths = write_dist(tmp_path, make_wheel("tools-pkg", "1.2"))
    run([twine, "upload", "--repository-url", f"{hub.url}/legacy/", "-u", "__token__", "-p", TOKEN_A, *paths], tmp_path)
    assert any(a["name"] == "tools_pkg-1.2-py3-none-any.whl" for r in other.releases for a in r["assets"])


# -- a package's life, end to end --


@pytest.mark.e2e
def test_pip_and_uv_skip_a_yanked_version_unless_pinned(hub, github, demo, tmp_path):
    yanked_demo(demo)
    python = fresh_venv(tmp_path)
    pip = [sys.executable, "-m", "pip", "--python", str(python), "install", "--only-binary=:all:", "--index-url",
           hub.index_url()]
    run(pip + ["demo-pkg"], tmp_path)
    assert imported_value(python, tmp_path) == "1.0"  # the newest version that is not yanked
    run(pip + ["demo-pkg==2.0"], tmp_path)
    assert imported_value(python, tmp_path) == "2.0"  # pinned installs still work
    uv = uv_path()
    if uv is None:
        pytest.skip("uv is not installed")
    venv = tmp_path / "uv-venv"
    run([uv, "venv", str(venv)], tmp_path)
    uv_pip = [uv, "pip", "install", "--python", str(venv / "bin" / "python"), "--index-url", hub.index_url()]
    run(uv_pip + ["demo-pkg"], tmp_path)
    assert imported_value(venv / "bin" / "python", tmp_path) == "1.0"
    run(uv_pip + ["demo-pkg==2.0"], tmp_path)
    assert imported_value(venv / "bin" / "python", tmp_path) == "2.0"


# -- GitHub Actions, as README's two workflows do it --


def actions_repos(github: FakeGitHub, demo) -> FakeRepo:
    """The workflow's own repo (demo-pkg) and another private repo of the org (lib-pkg)."""
    lib = github.add_repo("lib-pkg")
    lib.add_release("v1.0", dict([make_wheel("lib-pkg", "1.0")]))
    github.add_token(JOB_TOKEN, write=(demo[0],))  # GITHUB_TOKEN with permissions: contents: write
    github.add_token(APP_TOKEN, read=(demo[0], lib))  # actions/create-github-app-token, both repos granted
    return lib


@pytest.mark.e2e
@needs_uv
def test_actions_publish_on_a_tag_with_the_jobs_github_token(hub, github, demo, tmp_path):
    actions_repos(github, demo)
    files = write_dist(tmp_path, make_wheel("demo-pkg", "3.9"))
    env = {**pip_env(tmp_path), "UV_PUBLISH_USERNAME": OWNER, "UV_PUBLISH_PASSWORD": JOB_TOKEN}  # as the workflow
    run([uv_path(), "publish", "--publish-url", f"{hub.url}/legacy/", *files], tmp_path, env=env)
    assert any(r["tagName"] == "v3.9" for r in demo[0].releases)
    pip_download(tmp_path, hub.index_url(token=JOB_TOKEN), "demo-pkg==3.9")  # its own repo: yes
    pip_download(tmp_path, hub.index_url(token=JOB_TOKEN), "lib-pkg", succeeds=False)  # another repo: no
    if twine_path() is not None:  # the workflow's twine variant
        sdist = write_dist(tmp_path, make_sdist("demo-pkg", "3.9"))
        run([twine_path(), "upload", "--non-interactive", "--disable-progress-bar", "--repository-url",
             f"{hub.url}/legacy/", "-u", OWNER, "-p", JOB_TOKEN, *sdist], tmp_path)
        [release] = [r for r in demo[0].releases if r["tagName"] == "v3.9"]
        assert sorted(a["name"] for a in release["assets"]) == ["demo_pkg-3.9-py3-none-any.whl", "demo_pkg-3.9.tar.gz"]


@pytest.mark.e2e
@needs_uv
def test_actions_install_from_other_repos_with_an_app_token(hub, github, demo, tmp_path):
    actions_repos(github, demo)
    project, _ = uv_project(hub, tmp_path, "lib-pkg==1.0", "default = true", token=APP_TOKEN)  # UV_INDEX_*
    assert imported_value(project / ".venv" / "bin" / "python", tmp_path, "lib_pkg") == "1.0"
    python = fresh_venv(tmp_path / "pip")
    env = {**pip_env(tmp_path), "PIP_INDEX_URL": hub.index_url(token=APP_TOKEN)}  # pip's, from the environment
    run([sys.executable, "-m", "pip", "--python", str(python), "install", "--only-binary=:all:", "demo-pkg",
         "lib-pkg"], tmp_path, env=env)
    assert imported_value(python, tmp_path) == "2.0" and imported_value(python, tmp_path, "lib_pkg") == "1.0"


@pytest.mark.e2e
def test_pip_and_uv_install_from_an_archived_project(hub, github, demo, tmp_path):
    demo[0].archived = True  # its pages say api-version 1.4 and project-status: archived
    pip_download(tmp_path, hub.index_url(), "demo-pkg==2.0")
    uv = uv_path()
    if uv is None:
        pytest.skip("uv is not installed")
    venv = tmp_path / "uv-venv"
    run([uv, "venv", str(venv)], tmp_path)
    run([uv, "pip", "install", "--python", str(venv / "bin" / "python"), "--index-url", hub.index_url(),
         "demo-pkg"], tmp_path)
    assert imported_value(venv / "bin" / "python", tmp_path) == "2.0"
