"""PyPIHub: a Python package index (PEP 503 / 691) over the assets of GitHub Releases.

Serves ``/simple/<project>/`` for the repo ``<owner>/<project>`` and ``/asset/<id>/<file>``
for its files, using each caller's own GitHub token: HTTP Basic Auth with user = the repo's
owner and password = the token.  The token is forwarded to GitHub's GraphQL API (and REST API,
for sha256 digests and uploads), so GitHub's access rules apply unchanged.  Wheels get PEP 658
metadata, read from the wheel with HTTP Range requests; ``POST /legacy/`` takes ``twine upload``
and ``uv publish`` into GitHub Releases.  Nothing is stored but bounded caches in memory.

Run:      python pypihub.py --port 8080        (Python 3.9+, standard library only)
Use:      pip install --index-url http://OWNER:TOKEN@localhost:8080/simple/ PROJECT

Security: every page and every download is checked against GitHub with the caller's token
(or comes from a cache entry keyed by a keyed hash of that token, never shared between
tokens); an asset link answers only when its repo belongs to the Basic Auth owner.  The token
never reaches a log line, an error body or a cache key in clear.  Not checked: TLS is only
as good as the operator's certificate, and without ``--certfile`` tokens cross the network in
clear (a warning says so at start-up when listening beyond loopback).

Layout: the file reads top to bottom; each ``# --- X ---`` banner is one concept, each
definition sits above its first use (a test checks), and a constant used by one concept sits in
that concept's section.

1. Constants (the cross-cutting ones) and Errors: ``PyPIHubError`` carries its HTTP status and
   is caught in one place, ``Connection.respond``; ``Missing`` is a cached "not found" as a value.
2. Pure logic, no sockets (table tests): names and files; requests (credentials, Accept, the
   request target and ``ROUTES``, the one table of routes, the fast head parser); rendering;
   GitHub's answers; pages for people; uploads.
3. The busy-thread gate: ``Gate.released()`` is the one way to wait.
4. GitHub client (retries, call counting, rate limits), GitHub queries (each GraphQL string by
   the code that sends it), Downloads (signed URLs, Range reads, streaming), Publishing.
5. Cache (TTL, LRU, stale-if-error, coalescing) and Settings (one frozen dataclass: flag,
   ``PYPIHUB_*`` variable, TOML key, help and cross-field rules, declared once).
6. Upstream index (--fallback-index) and the server's own token (no-credentials mode).
7. Index: ``Caller`` (one request's GitHub session, credentials and token key), ``Files``
   (links, facts, METADATA, downloads), ``Uploads`` (token confirmation, target, publishing),
   ``Index`` (listings, negatives, notes, private names); each cache's per-token keying lives in
   the class that reads it. Usable without a socket.
8. Logs and metrics (``Events``), then Server and handler: ``Connection`` reads heads and writes
   answers, ``Handler`` turns each route into Index calls, ``PyPIHubServer`` is transport only
   (caps, head deadlines, TLS, the drain); ``build_server`` puts them together.
9. Command line, and ``pypihub check``.

A GET of /simple/<project>/ goes: Handler.project_page -> Index.project_page -> find_listing ->
Cache.get_or_load -> find_repo / fetch_listing (GitHub queries) -> GitHub.query -> rendered_page.
"""
from __future__ import annotations

import argparse
import base64
import binascii
import bisect
import contextlib
import dataclasses
import datetime
import email.errors
import email.message
import email.parser
import email.utils
import fnmatch
import functools
import hashlib
import hmac
import html
import http.client
import io
import ipaddress
import itertools
import json
import os
import random
import re
import secrets
import signal
import subprocess
import socket
import ssl
import struct
import sys
import tempfile
import threading
import time
import traceback
import urllib.error
import urllib.parse
import urllib.request
import weakref
import zipfile
import zlib
from collections import OrderedDict, deque
from html.parser import HTMLParser
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable, Iterable, Mapping, NamedTuple, NoReturn, Sequence

__version__ = "0.3.0"

# --- Constants ---

TEXT_HTML = "text/html"
HTML_V1 = "application/vnd.pypi.simple.v1+html"
JSON_V1 = "application/vnd.pypi.simple.v1+json"
TEXT_PLAIN = "text/plain; charset=utf-8"  # error bodies, and PEP 658 metadata files
# PEP 691: the "latest" aliases are answered with the concrete v1 type.
MEDIA_ALIASES = {
    "application/vnd.pypi.simple.latest+html": HTML_V1,
    "application/vnd.pypi.simple.latest+json": JSON_V1,
}
# Server preference, used only to break ties the client left open (e.g. "*/*" gets HTML).
OFFERED_MEDIA = (TEXT_HTML, HTML_V1, JSON_V1)

PROJECT_RE = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9._-]{0,198}[A-Za-z0-9])?")  # PEP 508 names
LOGIN_RE = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,38})")
# GitHub: "treat tokens as opaque strings" (changelog 2026-04-24, the new installation-token
# format): no shape and no length but a bound, printable ASCII (safe in a header) up to 4 KiB.
MAX_TOKEN = 4096
TOKEN_RE = re.compile(r"[\x21-\x7e]{1,%d}" % MAX_TOKEN)
SAFE_URL_RE = re.compile(r"https?://[\x21-\x7e]+")  # fit for a Location header as it is
METADATA_SUFFIX = ".metadata"  # PEP 658: <file url>.metadata
NO_SUCH_FILE = "No such file, or not visible to this token."

USER_AGENT = f"pypihub/{__version__}"
# GitHub's REST releases list stops after 1,000 results: page 11 of 100 answers 422 (undocumented;
# iree-org/iree#16506). Digests of older assets cannot be had; they are listed without a hash.
REST_MAX_PAGES = 10
SECONDARY_WAIT = 60  # GitHub: without retry-after, "wait for at least one minute before retrying"


MAX_FORM_FIELDS = 4 * 1024 * 1024  # the metadata fields twine sends, long descriptions included
TOKEN_CHECK_TTL = 60.0  # seconds GitHub's word on a token (good for uploads, or rejected) is kept
WRITERS = ("ADMIN", "MAINTAIN", "WRITE")  # Repository.viewerPermission that may publish

# The edges that tests inject: the wall clock, a pause, and where log lines go.
Clock = Callable[[], float]
Sleep = Callable[[float], None]
Log = Callable[[str], None]

# --- Errors ---


class PyPIHubError(Exception):
    """An answer other than success; raised anywhere, rendered in one place by the handler."""

    status = 500
    headers: Sequence[tuple[str, str]] = ()
    why = "internal"  # the reason in one word, for the access log (reason=...)

    def __init__(self, message: str, headers: Sequence[tuple[str, str]] = (), why: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.headers = tuple(type(self).headers) + tuple(headers)
        self.why = why or type(self).why


class BadRequest(PyPIHubError):
    why = "bad-request"
    status = 400


class Unauthorized(PyPIHubError):
    why = "unauthorized"
    status = 401
    headers = (("WWW-Authenticate", 'Basic realm="pypihub", charset="UTF-8"'),)


class Forbidden(PyPIHubError):
    why = "forbidden"
    status = 403


class NotFound(PyPIHubError):
    why = "not-found"
    status = 404


class MethodNotAllowed(PyPIHubError):
    why = "method-not-allowed"
    status = 405
    headers = (("Allow", "GET, HEAD"),)


class NotAcceptable(PyPIHubError):
    why = "not-acceptable"
    status = 406


class LengthRequired(PyPIHubError):
    why = "length-required"
    status = 411


class PayloadTooLarge(PyPIHubError):
    why = "too-large"
    status = 413


class URITooLong(PyPIHubError):
    why = "uri-too-long"
    status = 414


class TooManyRequests(PyPIHubError):
    status = 429
    why = "rate-limited"

    def __init__(self, message: str, headers: Sequence[tuple[str, str]] = (),
                 wait: int = SECONDARY_WAIT, api: str = "") -> None:
        super().__init__(message, headers)
        self.wait = wait  # seconds before GitHub takes this token's requests again ...
        self.api = api  # ... on this API's budget ("graphql", "rest"), or on all ("") for secondary limits


class BadGateway(PyPIHubError):
    why = "github-failed"
    status = 502


class Unavailable(BadGateway):
    """GitHub could not be reached or answered 5xx: worth another try."""
    why = "github-unavailable"


class ExpiredLink(BadGateway):
    """The download host refused a signed URL (expired or revoked)."""
    why = "link-refused"


class GatewayTimeout(PyPIHubError):
    why = "timeout"
    status = 504


class Overloaded(PyPIHubError):
    """More connections than this server takes: try again in a moment."""
    why = "overloaded"

    status = 503
    headers = (("Retry-After", "1"),)


class ShortBody(Exception):
    """A streamed body ended before its length: the client must see a broken answer, not a whole one."""

    def __init__(self, sent: int) -> None:
        super().__init__(f"the upstream body ended after {sent} bytes")
        self.sent = sent


class RequestTimeout(PyPIHubError):
    why = "request-timeout"
    status = 408


class Conflict(PyPIHubError):
    """The request cannot be carried out on the resource as it is (e.g. an immutable release)."""
    why = "conflict"

    status = 409


class ReleaseExists(BadRequest):
    """Creating a release failed: another one has its tag (someone created it just now)."""
    why = "release-exists"


class Moved(PyPIHubError):
    """The repo is another owner's now (a transfer GitHub follows): never looked for elsewhere, so
    not a NotFound, though it answers 404 as one."""
    why = "moved"
    status = 404


class MetadataTooLarge(NotFound):
    """A wheel's METADATA is too large for this index to serve."""
    why = "metadata-too-large"


class Missing(NamedTuple):
    """A "not found" kept in a cache, as a value: error() is the same error again, headers and all."""

    kind: type
    message: str
    why: str = ""
    headers: tuple[tuple[str, str], ...] = ()

    @classmethod
    def of(cls, error: PyPIHubError) -> Missing:
        extra = tuple(error.headers)[len(type(error).headers):]  # the class's own come back by themselves
        return cls(type(error), error.message, error.why, extra)

    def error(self) -> PyPIHubError:
        return self.kind(self.message, self.headers, why=self.why)


class ListEnd(BadGateway):
    """GitHub lists no further: its REST releases list stops after 1,000 results."""


class SchemaLacks(BadGateway):
    """GitHub's GraphQL schema lacks a field a query asks for (an older GitHub Enterprise Server)."""


class PartialAnswer(BadGateway):
    """GitHub answered only part of a query (its resource limits): never taken for the whole."""


UPSTREAM_FAILURES = (TooManyRequests, BadGateway, GatewayTimeout)


class ConfigError(Exception):
    """A configuration that cannot be served (not an HTTP answer); main() turns it into SystemExit."""


# --- Pure logic: names and files ---


@dataclasses.dataclass(frozen=True)
class Distribution:
    """What a distribution's filename says about it."""

    project: str  # normalized
    version: str
    kind: str  # "wheel" or "sdist"


@dataclasses.dataclass(frozen=True)
class Asset:
    """One release asset that is a distribution of the listed project."""

    id: str
    filename: str
    version: str
    size: int
    upload_time: str  # PEP 700 form: yyyy-mm-ddThh:mm:ssZ
    url: str  # GitHub's temporary download URL
    updated: str = ""  # with id and size, what a cached digest is valid for
    sha256: str | None = None  # from GitHub's REST digest, when it has one
    metadata_url: str | None = None  # a sibling <wheel>.metadata asset, served instead of extracting
    release_id: int | None = None  # the release's REST id: where GitHub's asset route starts
    rest_id: int | None = None  # the asset's own REST id, once the REST list has shown it
    yanked: str | None = None  # PEP 592: the reason ("" for none given) when its release is yanked


@dataclasses.dataclass(frozen=True)
class ReleaseInfo:
    """What a project page shows of one release besides its files: from RELEASE_FIELDS."""

    database_id: int | None  # what Asset.release_id names
    tag: str
    title: str
    url: str  # the release's page on GitHub
    published: str  # publishedAt, "" when GitHub gives none
    prerelease: bool
    notes: str = ""  # descriptionHTML, already through sanitize_notes()
    node_id: str = ""  # with `updated`: what the shared notes cache is keyed by (option B)
    updated: str = ""
    immutable: bool = False  # GitHub's immutable releases: no file can be added or changed


@dataclasses.dataclass(frozen=True)
class Listing:
    """Every distribution of one project that one token can see, from one owner's repo."""

    project: str
    owner: str
    repo: str
    files: tuple[Asset, ...]
    archived: bool = False  # PEP 792: an archived GitHub repo is an archived project
    description: str = ""  # the repo's, and its page: for /project/<name>/
    repo_url: str = ""
    releases: tuple[ReleaseInfo, ...] = ()  # without their notes (fetched for a page view only)
    # Rendered pages by media type: a cached listing is rendered once, not on every hit.
    pages: dict[str, tuple[int, frozenset, bytes, str]] = dataclasses.field(
        default_factory=dict, compare=False, repr=False)


@dataclasses.dataclass(frozen=True)
class AssetLink:
    """What /asset/ needs to answer without asking GitHub again."""

    id: str
    owner: str
    filename: str
    url: str  # GitHub's signed download URL, or a URL that needs GitHub's asset route instead
    size: int = 0
    metadata_url: str | None = None
    repo: str = ""  # with release_id or rest_id: where GitHub's documented asset route is
    release_id: int | None = None
    rest_id: int | None = None
    expires: float = 0.0  # when `url` stops working (set when the link is remembered)


@dataclasses.dataclass(frozen=True)
class AssetFacts:
    """What GitHub's REST list says of an asset and GraphQL does not."""

    sha256: str | None  # GitHub's digest; None for uploads before June 2025
    rest_id: int | None = None
    state: str = "uploaded"  # "starter"/"open": a failed upload's leftover, not a file


@dataclasses.dataclass(frozen=True)
class CoreMetadata:
    """A wheel's METADATA file (PEP 658), exactly as in the wheel; kept compressed, since long
    descriptions make it large and it compresses well, and caches are bounded in bytes."""

    compressed: bytes
    sha256: str
    requires_python: str | None

    @property
    def data(self) -> bytes:
        return zlib.decompress(self.compressed)


NO_METADATA = CoreMetadata(zlib.compress(b""), "", None)  # for a wheel whose METADATA is too large to serve


@dataclasses.dataclass(frozen=True)
class RepoRule:
    """One --repo-map rule: re.sub(pattern, replacement, project)."""

    pattern: re.Pattern
    replacement: str


NORMALIZE_RE = re.compile(r"[-_.]+")


def normalize(name: str) -> str:
    """PEP 503 normalized project name."""
    return NORMALIZE_RE.sub("-", name).lower()


REPO_RE = re.compile(r"[A-Za-z0-9._-]{1,100}")


def repo_candidates(project: str, rules: Sequence[RepoRule]) -> list[str]:
    """Repo names to try for a normalized project: mapped by rules, else -, _ and . spellings."""
    name, mapped = project, False
    for rule in rules:
        if rule.pattern.search(name):
            name, mapped = rule.pattern.sub(rule.replacement, name), True
    if mapped:
        return [name] if REPO_RE.fullmatch(name) else []
    spellings = (project, project.replace("-", "_"), project.replace("-", "."))
    return list(dict.fromkeys(spellings))


VERSION_RE = re.compile(r"\d[A-Za-z0-9.!+_]*")
SDIST_SUFFIXES = (".tar.gz", ".zip")


def parse_distribution(filename: str) -> Distribution | None:
    """Project and version of a wheel (PEP 427) or sdist filename; None for anything else."""
    if filename.endswith(".whl"):
        parts = filename[: -len(".whl")].split("-")
        if len(parts) not in (5, 6):
            return None
        name, version, kind = parts[0], parts[1], "wheel"
    else:
        suffix = next((s for s in SDIST_SUFFIXES if filename.endswith(s)), None)
        if suffix is None or "-" not in filename:
            return None
        name, version = filename[: -len(suffix)].rsplit("-", 1)
        kind = "sdist"
    if not (PROJECT_RE.fullmatch(name) and VERSION_RE.fullmatch(version)):
        return None
    return Distribution(normalize(name), version, kind)


def version_key(version: str) -> tuple:
    """A sort key that orders 1.10 after 1.9; exact PEP 440 ordering is the client's job."""
    return tuple((0, int(p), "") if p.isdigit() else (1, 0, p) for p in re.split(r"[.!+_-]", version))


def is_prerelease(version: str) -> bool:
    """PEP 440 pre- and dev-releases (GitHub marks their releases as pre-releases)."""
    pattern = r"\d(?:[._-]?(?:a|b|c|rc|alpha|beta|pre|preview)\d*|[._-]?dev\d*)"
    return bool(re.search(pattern, version.lower()))


def parse_moment(text: str) -> datetime.datetime:
    moment = datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))
    return moment if moment.tzinfo else moment.replace(tzinfo=datetime.timezone.utc)


def installable_time(created_at: str, published_at: str | None = None) -> str:
    """PEP 700's upload-time (yyyy-mm-ddThh:mm:ssZ, UTC) of a release asset: when it became
    installable, the later of its own createdAt and its release's publishedAt. A file attached to
    a draft a month before the release was published is new on the day it is published, which is
    what cooldowns (uv's exclude-newer, pip's --uploaded-prior-to) must see."""
    moment = max(parse_moment(text) for text in (created_at, published_at) if text)
    return moment.astimezone(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


DIGEST_RE = re.compile(r"(?:sha256:)?([0-9a-f]{64})")


def parse_digest(value: Any) -> str | None:
    """The hex sha256 of an asset's digest ("sha256:<hex>", or the bare hex); None when GitHub has
    none, or names another algorithm, or sends anything but 64 lowercase hex digits."""
    match = DIGEST_RE.fullmatch(value) if isinstance(value, str) else None
    return match.group(1) if match else None


def amz_expiry(query: Mapping[str, str]) -> float | None:
    try:
        start = datetime.datetime.strptime(query["X-Amz-Date"], "%Y%m%dT%H%M%SZ")
        return start.replace(tzinfo=datetime.timezone.utc).timestamp() + int(query["X-Amz-Expires"])
    except (KeyError, ValueError, OverflowError):
        return None


def epoch_expiry(value: str | None) -> float | None:
    return float(value) if value is not None and value.isdigit() else None


def iso_expiry(value: str | None) -> float | None:
    try:
        moment = datetime.datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment.timestamp() if moment.tzinfo else moment.replace(tzinfo=datetime.timezone.utc).timestamp()


def jwt_expiry(token: str | None) -> float | None:
    """A JWT's exp claim, read without verifying it (only the download host can)."""
    try:
        payload = str(token).split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
        return float(claims["exp"])
    except (IndexError, ValueError, TypeError, KeyError, binascii.Error, RecursionError):
        return None


def signed_url_expiry(url: str) -> float | None:
    """Epoch seconds at which a signed download URL stops working: the earliest expiry it carries
    (AWS X-Amz-Date + X-Amz-Expires; Azure SAS se and ske; the exp of GitHub's jwt parameter,
    which can come before se), or None when it names none."""
    query = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(url).query))
    expiries = (amz_expiry(query), iso_expiry(query.get("se")), iso_expiry(query.get("ske")),
                jwt_expiry(query.get("jwt")), epoch_expiry(query.get("Expires")))
    return min((e for e in expiries if e is not None), default=None)


# Query parameters that mark a download URL as signed (AWS SigV4, Azure SAS, GitHub's JWT, CDNs).
SIGNATURE_PARAMETERS = ("X-Amz-Signature", "sig", "jwt", "Signature", "token")


def is_signed_url(url: str) -> bool:
    """A download URL that works without credentials: it carries a signature (or a token)."""
    query = urllib.parse.parse_qs(urllib.parse.urlsplit(url).query)
    return any(name in query for name in SIGNATURE_PARAMETERS)


DEFAULT_LINK_LIFETIME = 300.0  # a signed URL that names no expiry is trusted this long


def link_expiry(url: str, now: float) -> float:
    """When to stop handing out a signed URL: its own expiry, else DEFAULT_LINK_LIFETIME from now."""
    expiry = signed_url_expiry(url)
    return expiry if expiry is not None else now + DEFAULT_LINK_LIFETIME


def is_safe_url(url: str) -> bool:
    """A URL that can go into a Location header as it is."""
    return bool(SAFE_URL_RE.fullmatch(url))


def sanitize_log(text: str) -> str:
    """One printable line: controls escaped, so a request cannot forge log lines."""
    if text.isascii() and text.isprintable():
        return text
    return "".join(c if " " <= c < "\x7f" else f"\\x{ord(c):02x}" for c in text)


# --- Pure logic: requests ---


@dataclasses.dataclass(frozen=True)
class Credentials:
    owner: str
    token: str
    key: str = dataclasses.field(default="", repr=False, compare=False)  # Index.token_key(token), once known


@functools.lru_cache(maxsize=None)
def shape_parts(shape: str) -> list[str]:
    return shape.split("/")


def fits(parts: Sequence[str], segments: Sequence[str]) -> bool:
    return len(parts) == len(segments) and all(p in ("*", s) for p, s in zip(parts, segments))


class Route(NamedTuple):
    """One endpoint: its label in logs and metrics (never a name from the path), its method, its
    path's shape (segments; "*" is any one segment, a last "?" an optional trailing slash) and the
    Handler method that answers it. ROUTES is the one table: dispatch and metrics both read it."""

    endpoint: str
    method: str
    shape: str
    answer: str

    def matches(self, method: str, segments: Sequence[str]) -> bool:
        parts = shape_parts(self.shape)
        if parts[-1] == "?":
            parts = parts[:-1]
            return self.method == method and (fits(parts, segments) or fits([*parts, ""], segments))
        return self.method == method and fits(parts, segments)


UPLOAD_PATHS = ("/", "/legacy", "/legacy/")


ROUTES = (
    Route("home", "GET", "", "home"),
    Route("healthz", "GET", "healthz", "healthz"),
    Route("metrics", "GET", "metrics", "metrics"),
    Route("other", "GET", "simple", "to_root"),
    Route("root", "GET", "simple/", "root_page"),
    Route("project", "GET", "simple/*/?", "project_page"),
    Route("asset", "GET", "asset/*/*", "asset"),
    Route("upstream", "GET", "upstream/*/*/*", "upstream_file"),
    Route("page", "GET", "project/*/?", "project_view"),
    *(Route("upload", "POST", path[1:], "upload") for path in UPLOAD_PATHS),
)
NOWHERE = Route("other", "GET", "", "nowhere")  # anything else: 404


@functools.lru_cache(maxsize=1024)
def route_by_shape(method: str, first: str, length: int, slash: bool) -> Route:
    """ROUTES' shapes name a first segment and, last, an optional "" (a trailing slash); the rest
    are "*". So these four decide the route, and it is looked up once per kind of path."""
    like = (first, *["-"] * (length - 2), "" if slash else "-") if length > 1 else (first,)
    return next((r for r in ROUTES if r.matches(method, like)), NOWHERE)


def route_of(method: str, segments: Sequence[str]) -> Route:
    """The route a request goes to (HEAD as GET); NOWHERE for a path no route has."""
    method = "GET" if method == "HEAD" else method
    return route_by_shape(method, segments[0], len(segments), segments[-1] == "")


class Target(NamedTuple):  # a tuple: made for every request, at a tuple's cost
    """What a request line asks for: its route (see ROUTES), path segments and query."""

    route: Route
    segments: tuple[str, ...]
    query: Mapping[str, list[str]]

    @property
    def endpoint(self) -> str:
        return self.route.endpoint


@dataclasses.dataclass
class Answer:
    """What the handler sends: a status, headers, and a body or an upstream stream to copy."""

    status: int
    body: bytes = b""
    headers: list[tuple[str, str]] = dataclasses.field(default_factory=list)
    stream: Any = None
    length: int | None = None
    reason: str | None = None  # a status line phrase other than the standard one
    why: str = ""  # for an error, its reason in one word: the access log's reason=


# Basic Auth users that name no owner: twine's and uv's default, GitHub's convention, and none.
# With them, a project is looked up across the configured --owner list, in its order.
RESERVED_USERS = ("", "__token__", "x-access-token", "token")


def parse_credentials(header: str | None) -> Credentials:
    """Owner and token from a Basic Authorization header, or Unauthorized."""
    scheme, _, value = (header or "").strip().partition(" ")
    if scheme.lower() != "basic" or not value.strip():
        raise Unauthorized("Log in with your GitHub owner as user and your GitHub token as password.",
                           why="no-credentials")
    if len(value) > 2 * MAX_TOKEN:  # Base64 of an owner and the longest token: work before GitHub stays small
        raise Unauthorized("The Authorization header is longer than any GitHub token.", why="bad-credentials")
    try:  # ValueError also for non-ASCII bytes, which reach us as Latin-1 text
        decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
    except (binascii.Error, ValueError):
        raise Unauthorized("The Authorization header is not valid Basic credentials.",
                           why="bad-credentials") from None
    owner, colon, token = decoded.partition(":")
    token = token.strip()  # a trailing newline from an environment variable or a file
    if not colon or not token:
        raise Unauthorized("Give your GitHub token as the password.", why="no-token")
    if owner.lower() in RESERVED_USERS:
        owner = ""  # the configured owners, in their order
    elif not LOGIN_RE.fullmatch(owner):
        raise Unauthorized("The user name must be the GitHub login of the repo's owner.", why="bad-owner")
    if not TOKEN_RE.fullmatch(token):
        raise Unauthorized("The password is not a GitHub token.", why="bad-token")
    return Credentials(owner, token)


@functools.lru_cache(maxsize=64)  # one Authorization header, every request of a keep-alive connection
def secret_forms(authorization: str) -> tuple[str, ...]:
    """The secrets of an Authorization header, longest first: its value and the token in it, each as
    it is and percent-encoded."""
    value = authorization.strip().partition(" ")[2].strip()
    try:
        token = base64.b64decode(value, validate=True).decode("utf-8", "replace").partition(":")[2].strip()
    except (binascii.Error, ValueError):
        token = ""
    forms = {form for secret in (value, token) if len(secret) >= 4
             for form in (secret, urllib.parse.quote(secret, safe=""), urllib.parse.quote(secret))}
    return tuple(sorted(forms, key=len, reverse=True))


def redact(text: str, authorization: str | None) -> str:
    """`text` without the Authorization header's secret, whatever its shape (see secret_forms)."""
    if not authorization or len(authorization) > 3 * MAX_TOKEN:  # longer: no token of ours, never kept
        return text if not authorization else text.replace(authorization, "[token]")
    for secret in secret_forms(authorization):
        text = text.replace(secret, "[token]") if secret in text else text
    return text


# RFC 9112 3 and 5: method SP origin-form target SP HTTP-version, then field lines of a token,
# a colon and a value; here only printable ASCII values (http.server's parser takes the rest).
FAST_REQUEST_LINE_RE = re.compile(rb"([A-Z]{1,20}) (/(?!/)[!-~]*) (HTTP/1\.[01])\r\n")
# At most 99 lines: http.client's limit of 100 counts the empty line that ends the head.
FAST_HEADERS_RE = re.compile(rb"(?:[!#$%&'*+.^_`|~0-9A-Za-z-]+:[ -~]*\r\n){0,99}\r\n")


class Headers:
    """A request's header fields as parse_head() read them, by lower-case name: the part of
    email.message.Message's interface that http.server and this module use, at a dict's cost."""

    defects: tuple = ()  # what the email parser would have found wrong: nothing, in a plain head

    def __init__(self, fields: list[tuple[str, str]]) -> None:
        self._fields = fields
        self._by_name: dict[str, list[str]] = {}
        for name, value in fields:
            self._by_name.setdefault(name.lower(), []).append(value)

    def get(self, name: str, default: Any = None) -> Any:
        """The first field of that name (as Message.get), else `default`."""
        values = self._by_name.get(name.lower())
        return values[0] if values else default

    def get_all(self, name: str, default: Any = None) -> Any:
        values = self._by_name.get(name.lower())
        return list(values) if values else default

    def __getitem__(self, name: str) -> str | None:
        return self.get(name)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name.lower() in self._by_name

    def items(self) -> list[tuple[str, str]]:
        return list(self._fields)

    def values(self) -> list[str]:
        return [value for _, value in self._fields]


MAX_HEAD = 64 * 1024  # a request head's header lines in all (http.server allows 100 of 64 KiB each)


class HeadBudget:
    """What http.server's header parser reads a head through: MAX_HEAD bytes in all, then
    http.client.LineTooLong (431), so one connection's head holds kilobytes, not megabytes."""

    def __init__(self, stream: Any, budget: int) -> None:
        self.stream, self.budget = stream, budget

    def readline(self, limit: int = -1) -> bytes:
        if self.budget <= 0:
            raise http.client.LineTooLong("request head")
        line = self.stream.readline(self.budget if limit < 0 else min(limit, self.budget))
        self.budget -= len(line)
        return line

    def __getattr__(self, name: str) -> Any:
        return getattr(self.stream, name)


class Head(NamedTuple):
    """A request head as parse_head() found it: its line's parts, its headers, and its length
    past the request line."""

    command: str
    path: str
    version: str
    headers: Headers
    size: int


MAX_FAST_HEAD = 16 * 1024  # a request head parsed by parse_head(); longer ones go to http.server's parser


def parse_head(line: bytes, buffered: bytes) -> Head | None:
    """The common request head, parsed without the email parser (http.server's costs more than
    the rest of a warm request): a plain HTTP/1.x request line, then header lines of printable
    ASCII, all already in `buffered`. Anything else is None and goes to http.server's parser:
    obs-fold, bare LF, "Name : value", Latin-1 or control bytes, a target starting with //,
    HTTP/0.9 or 2, an unfinished head. The headers are what http.server's parser gives."""
    request = FAST_REQUEST_LINE_RE.fullmatch(line)
    found = buffered.find(b"\r\n\r\n", 0, MAX_FAST_HEAD)
    end = 2 if buffered.startswith(b"\r\n") else found + 4 if found >= 0 else 0
    if request is None or not end or not FAST_HEADERS_RE.fullmatch(buffered, 0, end):
        return None
    lines = buffered[: end - 4].decode("ascii").split("\r\n") if end > 2 else ()
    # The email parser's compat32 policy: the value without its leading blanks, trailing ones kept.
    headers = [(name, value.lstrip(" ")) for name, _, value in (raw.partition(":") for raw in lines)]
    command, path, version = request.group(1, 2, 3)
    return Head(command.decode(), path.decode(), version.decode(), Headers(headers), end)


def response_head(status: int, reason: str | None, headers: Iterable[tuple[str, str]]) -> bytes:
    """The status line and header fields of an answer, as one buffer (RFC 9112 4 and 5)."""
    phrase = reason if reason is not None else BaseHTTPRequestHandler.responses.get(status, ("",))[0]
    lines = [f"HTTP/1.1 {status} {phrase}"]
    for name, value in headers:
        if "\r" in value or "\n" in value:
            raise ValueError(f"header {name} has a line break")
        lines.append(f"{name}: {value}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def head_problem(headers: email.message.Message | Headers) -> str | None:
    """What makes a request head unsafe to serve, as RFC 9112 sees it, or None. Behind a front
    proxy each of these can split one request into two (request smuggling): all are 400."""
    # A line that is no header (e.g. "Content-Length : 5") ends the email parser's headers there.
    if any(isinstance(d, email.errors.MissingHeaderBodySeparatorDefect) for d in headers.defects):
        return "A header line is malformed."
    plain = isinstance(headers, Headers)  # parse_head() takes no folded line
    if not plain and any("\n" in value or "\r" in value for value in headers.values()):
        return "Folded header lines (obs-fold) are not accepted."
    lengths = headers.get_all("Content-Length") or []
    if len(lengths) > 1:
        return "More than one Content-Length."
    if lengths and not re.fullmatch(r"[0-9]{1,18}", lengths[0].strip()):
        return "Content-Length is not a number."
    if lengths and "Transfer-Encoding" in headers:
        return "Transfer-Encoding and Content-Length together."
    return None


# GitHub's token formats: ghp_/gho_/ghu_/ghs_/ghr_ and fine-grained github_pat_ (GitHub's
# "About authentication to GitHub", token prefixes), and since 2026 installation tokens
# ghs_<app id>_<JWT>, whose JWT has dots, "-" and "_" (changelog 2026-04-24): matched whole,
# glued to what precedes it or not.
TOKEN_SHAPE_RE = re.compile(r"(?:gh[pousr]_|github_pat_)[A-Za-z0-9_.-]{20,}")


# The Basic form of the shortest token ("u:" and gh?_ with 20 more) is 36 Base64 characters.
BASE64_RUN_RE = re.compile(r"[A-Za-z0-9+/_-]{36,}={0,2}")
# Base64 of ":gh" (and ":gi", github_pat_), also with a space or tab after the colon (Basic credentials
# read "owner: token" as the token, stripped), at each of the three alignments.
BASIC_MARKERS = ("Omdo", "Omdp", "pna", "6Z2", "OiBn", "ogZ", "6IG", "Ogln", "oJZ", "6CW")


def is_basic_token(candidate: str) -> bool:
    """Whether a run of Base64 (standard or URL-safe) holds the Basic form of a token, "user:gh…",
    wherever in the run it starts (the run may begin with a path's "/" or other letters)."""
    if not any(marker in candidate for marker in BASIC_MARKERS):
        return False  # no ":gh" at any alignment: most runs (paths, node ids) end here, undecoded
    bare = candidate.rstrip("=")
    for offset in range(4):
        for alphabet, other in ((b"+/", "-_"), (b"-_", "+/")):
            piece = bare[offset:].translate({ord(c): None for c in other})  # the other alphabet's two
            try:
                text = base64.b64decode(piece[: len(piece) // 4 * 4], altchars=alphabet).decode("latin-1")
            except (binascii.Error, ValueError):
                continue
            if ":" in text and TOKEN_SHAPE_RE.search(text):
                return True
    return False


def redact_token_forms(text: str) -> str:
    """`text` without GitHub tokens: as they are, percent-encoded, or in Basic form (Base64 of user:token)."""
    decoded = text
    for _ in range(3):  # percent-encoded, e.g. its dots as %2E; twice or thrice over, too
        decoded = urllib.parse.unquote(decoded) if "%" in decoded else decoded
    if decoded != text and (TOKEN_SHAPE_RE.search(decoded)
                            or any(map(is_basic_token, BASE64_RUN_RE.findall(decoded)))):
        text = sanitize_log(decoded)
    text = TOKEN_SHAPE_RE.sub("[token]", text)  # one in a query or a path, glued to other text too
    return BASE64_RUN_RE.sub(lambda m: "[token]" if is_basic_token(m.group()) else m.group(), text)


def loggable_target(target: str) -> str:
    """A request target (or a line quoting one) without userinfo: an absolute-form target such
    as http://owner:TOKEN@host/simple/ (or //owner:TOKEN@host/, which http.server folds to
    /owner:TOKEN@host/) must not put the token into the log."""
    target = redact_token_forms(target)
    if "@" not in target:
        return target
    target = re.sub(r"([A-Za-z][A-Za-z0-9+.-]*://)[^/\s]*@", r"\1", target)
    return re.sub(r"(?:(?<=/)|^|(?<=\s))[^/\s]*:[^\s]*@", "", target)


def is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


Networks = Sequence["ipaddress.IPv4Network | ipaddress.IPv6Network"]


def is_trusted(address: str, proxies: Networks) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in network for network in proxies)


def forwarded_client(peer: str, forwarded_for: str | None, proxies: Networks) -> str:
    """The client's address: the peer's, or, when the peer is a trusted proxy (--trusted-proxy),
    the right-most X-Forwarded-For address that is not one (each proxy appends the address it
    was connected from; those left of the first untrusted one are the client's to forge)."""
    if not forwarded_for or not is_trusted(peer, proxies):
        return peer
    client = peer
    for entry in reversed(forwarded_for.split(",")):
        entry = entry.strip()
        try:
            client = str(ipaddress.ip_address(entry))
        except ValueError:
            return client  # garbage: the last address a trusted proxy vouched for
        if not is_trusted(client, proxies):
            return client
    return client


PROXY_HEADERS = ("X-Forwarded-For", "Forwarded", "X-Real-IP", "Via")  # what a proxy adds (RFC 7239, 9110)


def refuse_foreign_page(command: str | None, headers: Mapping[str, str]) -> None:
    """No-credentials mode lends the server's token to requests without credentials: only reads,
    only addressed to this machine (a page elsewhere may aim a browser at it, or rebind a DNS name
    to 127.0.0.1), never sent by another site's page, and never through a proxy (a balancer on
    this machine connects from loopback, with any client's Host)."""
    if command not in ("GET", "HEAD"):
        raise Unauthorized("Uploads need credentials of their own.")
    if any(name in headers for name in PROXY_HEADERS):
        raise Unauthorized("This server lends its token to this machine's own clients, not through a proxy.")
    host = urllib.parse.urlsplit("//" + headers.get("Host", "")).hostname or ""
    origin = urllib.parse.urlsplit(headers.get("Origin", "") or "//localhost").hostname or ""
    if not (is_loopback(host) and is_loopback(origin)) or headers.get("Sec-Fetch-Site") not in BROWSER_OWN:
        raise Unauthorized("This server lends its token to this machine only.")


# Fetch Metadata (W3C): a request a browser makes on its own, or from a page of this very origin.
# twine, uv, poetry and pdm send neither Sec-Fetch-Site nor Origin.
BROWSER_OWN = (None, "none", "same-origin")


def refuse_cross_site(command: str | None, headers: Mapping[str, str], own_origin: str) -> None:
    """A write (anything but GET and HEAD) only from a client that is no browser, or from a page of
    this origin. A browser attaches the Basic credentials it has cached for this server to any
    top-level form post, even one another site's page sends (cross-site request forgery)."""
    if command in ("GET", "HEAD"):
        return
    origin = headers.get("Origin")
    if headers.get("Sec-Fetch-Site") not in BROWSER_OWN or origin is not None and origin != own_origin:
        raise Forbidden("A page of another site may not write here (its Origin or Sec-Fetch-Site says so).",
                        why="cross-site")


def parse_accept(accept: str) -> list[tuple[str, float]]:
    """Media ranges and their q-values, in the client's order; malformed entries are skipped."""
    ranges = []
    for entry in accept.split(","):
        media, *params = (p.strip() for p in entry.split(";"))
        q = 1.0
        for param in params:
            key, _, value = param.partition("=")
            if key.strip().lower() == "q":
                try:
                    q = min(max(float(value), 0.0), 1.0)
                except ValueError:
                    q = 0.0
        if "/" in media:
            ranges.append((MEDIA_ALIASES.get(media.lower(), media.lower()), q))
    return ranges


def match_quality(ranges: list[tuple[str, float]], offered: str) -> tuple[float, int, int]:
    """(q, specificity, -position) of the most specific range matching `offered` (RFC 9110)."""
    best = (0.0, 0, 0)
    main_type = offered.split("/")[0]
    for position, (media, q) in enumerate(ranges):
        specificity = {offered: 3, f"{main_type}/*": 2, "*/*": 1}.get(media, 0)
        if specificity > best[1]:
            best = (q, specificity, -position)
    return best


MAX_ACCEPT = 1024  # pip's and uv's Accept are ~100 bytes; parsing is work done before GitHub judges a token
MAX_ACCEPT_RANGES = 16


# Clients send the same few Accept strings over and over; one longer than MAX_ACCEPT is never kept.
@functools.lru_cache(maxsize=256)
def negotiate(accept: str | None) -> str:
    """The media type to answer with (PEP 691), or NotAcceptable (also for an Accept too long to read)."""
    if accept and (len(accept) > MAX_ACCEPT or accept.count(",") >= MAX_ACCEPT_RANGES):
        raise NotAcceptable(f"The Accept header is longer than this index reads ({MAX_ACCEPT} bytes, "
                            f"{MAX_ACCEPT_RANGES} media ranges).")
    ranges = parse_accept(accept or "*/*")
    scored = [(*match_quality(ranges, media), -rank, media) for rank, media in enumerate(OFFERED_MEDIA)]
    q, *_, media = max(scored)
    if q <= 0:
        raise NotAcceptable(f"This index serves {', '.join(OFFERED_MEDIA)}; none of them is acceptable.")
    return media


PERCENT_RE = re.compile(r"%(?![0-9A-Fa-f]{2})")
CONTROL_RE = re.compile(r"[\x00-\x1f\x7f]")


def unquote_segment(segment: str) -> str:
    """Percent-decode one path segment strictly: malformed escapes, NUL and controls are 400."""
    if PERCENT_RE.search(segment):
        raise BadRequest("The path has a malformed percent escape.")
    try:
        text = urllib.parse.unquote(segment, errors="strict")
    except UnicodeDecodeError:
        raise BadRequest("The path is not UTF-8.") from None
    if CONTROL_RE.search(text):
        raise BadRequest("The path has control characters.")
    return text


# The common target: segments of unreserved characters (RFC 3986 2.3), none led by a dot, no query.
PLAIN_TARGET_RE = re.compile(r"(?:/[A-Za-z0-9_~-][A-Za-z0-9._~-]*)*/?")


MAX_TARGET = 8192  # longest request target served


def parse_target(command: str | None, path: str) -> Target:
    """The endpoint, path segments and query a request line asks for; 4xx when malformed."""
    if command in ("GET", "HEAD") and len(path) <= MAX_TARGET and PLAIN_TARGET_RE.fullmatch(path):
        segments = tuple(path.split("/")[1:])  # nothing to decode, no query, no dot segments
        return Target(route_of(command, segments), segments, {})
    if command == "POST" and urllib.parse.urlsplit(path).path in UPLOAD_PATHS:
        return Target(route_of(command, tuple(urllib.parse.urlsplit(path).path.split("/")[1:])), (), {})
    if command not in ("GET", "HEAD"):
        raise MethodNotAllowed(f"{command} is not supported here; use GET or HEAD (POST / to upload).")
    if not path.startswith("/"):
        raise BadRequest("The request target must be a path.")
    if not path.isascii() or not path.isprintable() or " " in path:
        raise BadRequest("The request target must be printable ASCII; percent-encode the rest.")
    if len(path) > MAX_TARGET:
        raise URITooLong("The request target is too long.")
    split = urllib.parse.urlsplit(path)
    segments = tuple(unquote_segment(s) for s in split.path.split("/")[1:])
    if any(s in (".", "..") for s in segments):
        raise BadRequest("The path may not contain . or .. segments.")
    # A browser sends ?format=application/vnd.pypi.simple.v1+json with a literal "+", which form
    # decoding would turn into a space: only ?format= is read, so "+" stays "+".
    query = urllib.parse.parse_qs(split.query.replace("+", "%2B"))
    return Target(route_of(command, segments), segments, query)


def quote_etag(body: bytes) -> str:
    return '"' + hashlib.sha256(body).hexdigest()[:32] + '"'


def etag_matches(if_none_match: str | None, etag: str) -> bool:
    if not if_none_match:
        return False
    tags = {t.strip() for t in if_none_match.split(",")}
    return "*" in tags or etag in tags or f"W/{etag}" in tags


def error_answer(error: PyPIHubError) -> Answer:
    body = (error.message.rstrip(".") + ".\n").encode()
    return Answer(error.status, body, [("Content-Type", TEXT_PLAIN), *error.headers], why=error.why)


def redirect(location: str) -> Answer:
    return Answer(301, b"", [("Location", location)])


# --- Pure logic: rendering (plain data in, bytes out) ---

HTML_PAGE = """<!DOCTYPE html>
<html>
  <head>
    <meta name="pypi:repository-version" content="{api}">{meta}
    <title>{title}</title>
  </head>
  <body>
    <h1>{title}</h1>
{links}
  </body>
</html>
"""


def html_attributes(attrs: Mapping[str, str]) -> str:
    return "".join(f' {name}="{html.escape(value)}"' for name, value in attrs.items())


API_VERSION = "1.1"  # PEP 629 / PEP 700
STATUS_API_VERSION = "1.4"  # PEP 792: pages that carry a project status


def render_html(title: str, links: Iterable[tuple[str, str, Mapping[str, str]]],
                meta: Mapping[str, str] | None = None) -> bytes:
    """A PEP 503 page: one anchor per (href, text, attributes), every name and value escaped;
    with `meta`, PEP 792 <meta> tags (and the API version that has them)."""
    anchors = "\n".join(
        f'    <a href="{html.escape(href)}"{html_attributes(attrs)}>{html.escape(text)}</a><br>'
        for href, text, attrs in links
    )
    tags = "".join(f'\n    <meta name="{html.escape(k)}" content="{html.escape(v)}">'
                   for k, v in (meta or {}).items())
    api = STATUS_API_VERSION if meta else API_VERSION
    return HTML_PAGE.format(api=api, meta=tags, title=html.escape(title), links=anchors).encode()


def asset_href(asset: Asset) -> str:
    """The file URL relative to a project page, so the server also works under a path prefix."""
    node, name = urllib.parse.quote(asset.id, safe=""), urllib.parse.quote(asset.filename, safe="")
    return f"../../asset/{node}/{name}"


def file_attributes(asset: Asset, metadata: CoreMetadata | None) -> dict[str, str]:
    """PEP 503 data- attributes: Requires-Python once known, and PEP 658/714 metadata for wheels."""
    attrs = {}
    if metadata is not None and metadata.requires_python:
        attrs["data-requires-python"] = metadata.requires_python
    if asset.yanked is not None:
        attrs["data-yanked"] = asset.yanked  # PEP 592: present means yanked; the value is the reason
    if asset.filename.endswith(".whl") and metadata is not NO_METADATA:  # advertise only what is served
        value = f"sha256={metadata.sha256}" if metadata else "true"
        attrs["data-core-metadata"] = attrs["data-dist-info-metadata"] = value
    return attrs


ARCHIVED_REASON = "The project's GitHub repository is archived: it takes no new releases."


def render_project_html(listing: Listing, metadata: Mapping[str, CoreMetadata]) -> bytes:
    links = ((asset_href(a) + (f"#sha256={a.sha256}" if a.sha256 else ""), a.filename,
              file_attributes(a, metadata.get(a.id))) for a in listing.files)
    status = {"pypi:project-status": "archived", "pypi:project-status-reason": ARCHIVED_REASON}
    return render_html(f"Links for {listing.project}", links, status if listing.archived else None)


def json_file(asset: Asset, metadata: CoreMetadata | None) -> dict[str, Any]:
    """One PEP 691 file entry with the PEP 700 and PEP 714 fields."""
    entry: dict[str, Any] = {
        "filename": asset.filename,
        "url": asset_href(asset),
        "hashes": {"sha256": asset.sha256} if asset.sha256 else {},  # never invented
        "size": asset.size,
        "upload-time": asset.upload_time,
    }
    if metadata is not None and metadata.requires_python:
        entry["requires-python"] = metadata.requires_python
    if asset.yanked is not None:
        entry["yanked"] = asset.yanked or True  # PEP 691: the reason, or true
    if asset.filename.endswith(".whl") and metadata is not NO_METADATA:
        # PEP 714: only "core-metadata" in JSON; pip 22.3 to 23.1 crash on "dist-info-metadata" here.
        entry["core-metadata"] = {"sha256": metadata.sha256} if metadata else True
    return entry


def render_project_json(listing: Listing, metadata: Mapping[str, CoreMetadata]) -> bytes:
    versions = sorted({a.version for a in listing.files}, key=version_key)
    files = [json_file(a, metadata.get(a.id)) for a in listing.files]
    page: dict[str, Any] = {"meta": {"api-version": API_VERSION}, "name": listing.project,
                            "versions": versions, "files": files}
    if listing.archived:  # PEP 792
        page["meta"]["api-version"] = STATUS_API_VERSION
        page["project-status"] = {"status": "archived", "reason": ARCHIVED_REASON}
    return json.dumps(page, indent=1).encode()


def rendered_page(listing: Listing, media: str, metadata_of: Callable[[], Mapping[str, CoreMetadata]],
                  generation: int = -1) -> tuple[bytes, str]:
    """The page in `media` and its ETag. A page depends on the listing and on which of its
    wheels' METADATA is known, so one rendering per media type is kept, redone when that changes;
    which is known is looked up again only when the METADATA cache's `generation` has changed."""
    page = listing.pages.get(media)
    if page is not None and page[0] == generation >= 0:
        return page[2], page[3]
    metadata = metadata_of()
    known = frozenset(metadata)
    if page is None or page[1] != known:
        render = render_project_json if media == JSON_V1 else render_project_html
        body = render(listing, metadata)
        page = (generation, known, body, quote_etag(body + media.encode()))
    listing.pages[media] = (generation, *page[1:])
    return page[2], page[3]


def render_root(projects: Sequence[str], media: str) -> bytes:
    """/simple/ in `media`: PEP 503 HTML or PEP 691 JSON."""
    if media == JSON_V1:
        page = {"meta": {"api-version": API_VERSION}, "projects": [{"name": p} for p in projects]}
        return json.dumps(page, indent=1).encode()
    return render_html("Simple index", ((f"{urllib.parse.quote(p)}/", p, {}) for p in projects))


UPSTREAM_FIELDS = ("filename", "hashes", "requires-python", "yanked", "size", "upload-time")
UPSTREAM_KEY_RE = re.compile(r"[0-9a-f]{32}")


# What PyPIHub asks a fallback index for: PEP 691 JSON first, PEP 503 HTML too (pypiserver,
# GitLab, Nexus, devpi without its JSON plugin serve only HTML); pip's own Accept.
UPSTREAM_ACCEPT = f"{JSON_V1}, {HTML_V1}; q=0.1, {TEXT_HTML}; q=0.01"
HASH_FRAGMENT_RE = re.compile(r"([a-z0-9_]{1,20})=([0-9a-fA-F]{1,256})")


def html_metadata_attribute(value: str | None) -> Any:
    """PEP 658/714's data-core-metadata: "true", or "<hashname>=<hex>" (as a JSON hashes object)."""
    found = HASH_FRAGMENT_RE.fullmatch(value or "")
    return {found.group(1): found.group(2).lower()} if found else value == "true"


def html_file_entry(attrs: Mapping[str, str | None], text: str) -> dict[str, Any] | None:
    """A PEP 503 anchor as a PEP 691 file entry: its href (without the #<hash>=<hex> fragment),
    the anchor text as the filename, data-requires-python, data-yanked and the metadata attributes."""
    href = attrs.get("href")
    if not href:
        return None
    url, _, fragment = href.partition("#")
    digest = HASH_FRAGMENT_RE.fullmatch(fragment)
    name = text.strip() or urllib.parse.unquote(urllib.parse.urlsplit(url).path.rpartition("/")[2])
    entry: dict[str, Any] = {"filename": name, "url": url,
                             "hashes": {digest.group(1): digest.group(2).lower()} if digest else {}}
    if attrs.get("data-requires-python") is not None:
        entry["requires-python"] = attrs["data-requires-python"]
    if "data-yanked" in attrs:
        entry["yanked"] = attrs["data-yanked"] or True  # PEP 592: present, with or without a reason
    metadata = attrs.get("data-core-metadata", attrs.get("data-dist-info-metadata"))
    if metadata is not None:
        entry["core-metadata"] = html_metadata_attribute(metadata)
    return entry


class SimpleHTMLFiles(HTMLParser):
    """The file anchors of a PEP 503 project page, as PEP 691 file entries (`files`)."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)  # attribute values and text come unescaped
        self.files: list[dict[str, Any]] = []
        self._anchor: tuple[dict[str, str | None], list[str]] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "a":
            self._anchor = (dict(attrs), [])

    def handle_data(self, data: str) -> None:
        if self._anchor is not None and len(self._anchor[1]) < 100:
            self._anchor[1].append(data)

    def handle_endtag(self, tag: str) -> None:
        if tag == "a" and self._anchor is not None:
            entry = html_file_entry(self._anchor[0], "".join(self._anchor[1]))
            self.files += [entry] if entry else []
            self._anchor = None


def parse_upstream_page(data: bytes, media: str) -> Any:
    """A fallback index's project page as PEP 691 JSON data: its JSON, or its PEP 503 HTML read."""
    if media in (JSON_V1, "application/json"):
        try:
            return json.loads(data)
        except (ValueError, RecursionError):
            raise BadGateway("The fallback index's answer was not JSON.") from None
    if media not in (HTML_V1, TEXT_HTML):
        raise BadGateway(f"The fallback index answered {sanitize_log(media)[:100]}, not a project page.")
    reader = SimpleHTMLFiles()
    try:
        reader.feed(data.decode("utf-8", "replace"))
        reader.close()
    except (AssertionError, ValueError, IndexError):  # html.parser on some malformed markup
        raise BadGateway("The fallback index's HTML page could not be read.") from None
    return {"files": reader.files}


def is_distribution_of(filename: Any, project: str) -> bool:
    """A wheel or sdist whose name is the project's: all a fallback index's page may hand out here
    (a hostile one could name evil.html, or another project's wheel)."""
    dist = parse_distribution(filename) if isinstance(filename, str) else None
    return dist is not None and dist.project == project


def upstream_files(page: Any, page_url: str, project: str) -> dict[str, Any]:
    """A fallback index's project page, as what PyPIHub serves of it: the project's own wheels and
    sdists, each with its own fields, its absolute URL, and a key naming that URL in PyPIHub's
    /upstream/ links."""
    if not isinstance(page, dict) or not isinstance(page.get("files"), list):
        raise BadGateway("The fallback index's answer is not a PEP 691 project page.")
    files = []
    for entry in (f for f in page["files"] if isinstance(f, dict)):
        url = urllib.parse.urljoin(page_url, str(entry.get("url", "")))
        scheme = urllib.parse.urlsplit(url).scheme  # https, or the index's own: never file:, ftp: ...
        if is_distribution_of(entry.get("filename"), project) and is_safe_url(url) and \
                scheme in ("https", urllib.parse.urlsplit(page_url).scheme):
            core = entry.get("core-metadata", entry.get("dist-info-metadata"))
            kept = {k: entry[k] for k in UPSTREAM_FIELDS if k in entry}
            files.append({**kept, "core-metadata": core, "url": url,
                          "key": hashlib.sha256(url.encode()).hexdigest()[:32]})
    versions = page.get("versions") if isinstance(page.get("versions"), list) else None
    return {"files": files, "versions": versions}


def download_headers(filename: str, metadata: bool) -> list[tuple[str, str]]:
    """What a proxied file goes out with, whatever its host said: bytes to save (or, for METADATA,
    plain text), never a page a browser would render or run script in."""
    return [("Content-Type", TEXT_PLAIN if metadata else "application/octet-stream"),
            ("X-Content-Type-Options", "nosniff"),
            ("Content-Disposition", f"attachment; filename={urllib.parse.quote(filename)}"),
            ("Content-Security-Policy", "sandbox; default-src 'none'")]


def as_download(answer: Answer, filename: str, metadata: bool = False) -> Answer:
    """A streamed file (from GitHub's download host or a fallback index's), with download_headers()
    in place of the host's Content-Type: the host's word never decides how a browser shows it."""
    kept = [h for h in answer.headers if h[0] != "Content-Type"]
    answer.headers = kept + download_headers(filename, metadata)
    return answer


def upstream_href(project: str, entry: Mapping[str, Any]) -> str:
    """/upstream/<project>/<key>/<file>, relative to the project page: found again through the page."""
    return f"../../upstream/{project}/{entry['key']}/{urllib.parse.quote(str(entry['filename']), safe='')}"


def upstream_attributes(entry: Mapping[str, Any]) -> dict[str, str]:
    """PEP 503/592/658 data- attributes of a fallback index's file."""
    attrs = {}
    if isinstance(entry.get("requires-python"), str):
        attrs["data-requires-python"] = entry["requires-python"]
    if entry.get("yanked"):
        attrs["data-yanked"] = entry["yanked"] if isinstance(entry["yanked"], str) else ""
    core = entry.get("core-metadata")
    if core:
        sha256 = core.get("sha256") if isinstance(core, dict) else None
        value = f"sha256={sha256}" if sha256 else "true"
        attrs["data-core-metadata"] = attrs["data-dist-info-metadata"] = value
    return attrs


def upstream_fragment(entry: Mapping[str, Any]) -> str:
    sha256 = (entry.get("hashes") or {}).get("sha256") if isinstance(entry.get("hashes"), dict) else None
    return f"#sha256={sha256}" if isinstance(sha256, str) and re.fullmatch(r"[0-9a-f]{64}", sha256) else ""


def render_upstream(project: str, upstream: Mapping[str, Any], media: str) -> bytes:
    """A fallback index's project page as PyPIHub serves it (--proxy-downloads): the same files,
    hashes and metadata, each URL leading back through PyPIHub."""
    if media == JSON_V1:
        files = [{**{k: v for k, v in e.items() if k not in ("url", "key", "core-metadata")},
                  "url": upstream_href(project, e),
                  **({"core-metadata": e["core-metadata"]} if e["core-metadata"] else {})}
                 for e in upstream["files"]]
        whole = all("size" in f for f in files) and upstream["versions"] is not None  # PEP 700 or not
        page = {"meta": {"api-version": API_VERSION if whole else "1.0"}, "name": project, "files": files,
                **({"versions": upstream["versions"]} if whole else {})}
        return json.dumps(page, indent=1).encode()
    links = ((upstream_href(project, e) + upstream_fragment(e), str(e["filename"]), upstream_attributes(e))
             for e in upstream["files"])
    return render_html(f"Links for {project}", links)


def metric_lines(family: str, kind: str, samples: Iterable[tuple[str, float]]) -> list[str]:
    """One Prometheus metric family (text format 0.0.4): its TYPE line, then its samples."""
    return [f"# TYPE {family} {kind}", *(f"{family}{labels} {value!r}" for labels, value in samples)]


# --- Pure logic: GitHub answers ---


def lower_keys(headers: Any) -> dict[str, str]:
    return {k.lower(): v for k, v in headers.items()}


def parse_json(payload: bytes) -> Any:
    try:
        return json.loads(payload)
    except (ValueError, RecursionError):  # RecursionError: JSON nested deeper than Python's stack
        raise BadGateway("GitHub's answer was not JSON.") from None


def github_message(payload: bytes) -> str:
    """GitHub's error message from a REST answer, as one short printable line."""
    try:
        message = str(json.loads(payload).get("message", ""))
    except (ValueError, AttributeError, RecursionError):
        message = ""
    return sanitize_log(message)[:200] or "no reason given"


def retry_after(headers: Mapping[str, str], now: float, primary: bool = False) -> int:
    """Seconds to wait, as GitHub's rate-limit docs say: retry-after when present; the reset time
    when no points are left (or for the primary limit); otherwise at least one minute."""
    try:
        if headers.get("retry-after"):
            return max(1, int(headers["retry-after"]))
        if headers.get("x-ratelimit-reset") and (primary or headers.get("x-ratelimit-remaining") == "0"):
            return max(1, int(float(headers["x-ratelimit-reset"]) - now))
    except (ValueError, OverflowError):  # OverflowError: a reset of 1e400
        pass
    return SECONDARY_WAIT


def rate_limited(wait: int, secondary: bool = False, api: str = "") -> TooManyRequests:
    """A 429 to answer with; the primary limit is per API ("graphql" or "rest"), secondary ones span both."""
    kind = "secondary rate limit (too many requests at once)" if secondary else "rate limit"
    return TooManyRequests(f"GitHub's {kind} for this token is used up; retry in {wait} s.",
                           [("Retry-After", str(wait))], wait, "" if secondary else api)


def is_secondary_limit(message: str | bytes) -> bool:
    """GitHub's secondary rate limits are told apart by their message only (403, 429, or a
    GraphQL 200): "You have exceeded a secondary rate limit", formerly "abuse detection"."""
    text = str(message, "utf-8", "replace") if isinstance(message, bytes) else message
    return bool(re.search(r"secondary rate limit|abuse detection", text, re.IGNORECASE))


def is_rate_limit(status: int, headers: Mapping[str, str], payload: bytes = b"") -> bool:
    """GitHub's rate limits answer 429, or 403 with retry-after, no points left, or the
    secondary limit's message (docs.github.com, "Rate limits for the REST API")."""
    exhausted = headers.get("retry-after") or headers.get("x-ratelimit-remaining") == "0"
    return status == 429 or status == 403 and bool(exhausted or is_secondary_limit(payload))


def sso_url(headers: Mapping[str, str]) -> str | None:
    """Where to authorize a token for an organization's SAML SSO: X-GitHub-SSO: required; url=..."""
    for part in headers.get("x-github-sso", "").split(";"):
        name, _, value = part.strip().partition("=")
        if name == "url" and SAFE_URL_RE.fullmatch(value):
            return value
    return None


def forbidden(headers: Mapping[str, str], reason: str = "GitHub refused this token access") -> Forbidden:
    url = sso_url(headers)
    if url:
        return Forbidden(f"{reason}: the organization uses SAML single sign-on; authorize the token at {url}",
                         why="sso")
    return Forbidden(f"{reason} (an organization policy, e.g. SSO, may apply)")


def http_failure(status: int, headers: Mapping[str, str], now: float, payload: bytes = b"",
                 api: str = "rest") -> PyPIHubError:
    """Our answer to a GitHub HTTP error status (of `api`, "rest" or "graphql")."""
    if status == 401:
        return Unauthorized("GitHub rejected this token.", why="bad-token")
    if is_rate_limit(status, headers, payload):
        return rate_limited(retry_after(headers, now), is_secondary_limit(payload), api)
    if status == 403:
        return forbidden(headers)
    if status == 504:
        return GatewayTimeout("GitHub timed out.")
    if status in (500, 502, 503):
        return Unavailable(f"GitHub answered HTTP {status}.")
    return BadGateway(f"GitHub answered HTTP {status}.")


def github_errors(payload: bytes) -> list[dict]:
    """The `errors` list of a REST 422 answer ("Validation Failed")."""
    try:
        errors = json.loads(payload).get("errors")
    except (ValueError, AttributeError, RecursionError):
        return []
    return [e for e in errors if isinstance(e, dict)] if isinstance(errors, list) else []


def validation_failure(payload: bytes, reason: str) -> PyPIHubError:
    """Our answer to GitHub's 422 on a write, told apart by the errors it lists."""
    errors = github_errors(payload)
    fields = {(e.get("field"), e.get("code")) for e in errors}
    messages = " ".join([reason, *(str(e.get("message", "")) for e in errors)])
    if ("tag_name", "already_exists") in fields:
        return ReleaseExists("A release with this tag exists already.")
    if "immutable" in messages:  # docs.github.com, "Immutable releases"
        return Conflict(f"GitHub refused the file: {sanitize_log(messages)[:300]}")
    if ("name", "already_exists") in fields:
        return BadRequest("File already exists")
    return BadRequest(f"GitHub refused the release or file: {reason}")


def write_failure(status: int, headers: Mapping[str, str], now: float, payload: bytes = b"") -> PyPIHubError:
    """Our answer to a GitHub error on a release or asset write, with GitHub's reason."""
    reason = github_message(payload)
    if status in (403, 404) and not is_rate_limit(status, headers, payload):
        if sso_url(headers):
            return forbidden(headers, "GitHub refused the write")
        # GitHub hides repos it will not let a token write to behind 403 or 404.
        return Forbidden(f"GitHub refused the write (HTTP {status}: {reason}); "
                         "the token needs write access to the repo's contents")
    if status == 422:
        return validation_failure(payload, reason)
    return http_failure(status, headers, now, payload)


def network_cause(reason: BaseException) -> tuple[str, str]:
    """Why a connection failed, as a log word and in words: the name, the connection, or TLS."""
    if isinstance(reason, socket.gaierror):
        return "dns", "its name did not resolve"
    if isinstance(reason, ConnectionRefusedError):
        return "refused", "the connection was refused"
    if isinstance(reason, ssl.SSLCertVerificationError):
        return "tls", f"its TLS certificate did not verify ({sanitize_log(str(reason.verify_message))[:100]})"
    if isinstance(reason, ssl.SSLError):
        return "tls", "the TLS handshake failed"
    if isinstance(reason, ConnectionError):
        return "reset", "the connection broke"
    return "network", sanitize_log(type(reason).__name__)


def network_failure(exc: BaseException) -> PyPIHubError:
    """Our answer when a request to GitHub (or its download host) failed below HTTP, with its cause."""
    reason = getattr(exc, "reason", exc)
    if isinstance(reason, (socket.timeout, TimeoutError)):
        return GatewayTimeout("GitHub did not answer in time.", why="github-timeout")
    word, words = network_cause(reason if isinstance(reason, BaseException) else exc)
    return Unavailable(f"Could not reach GitHub: {words}.", why=f"github-{word}")


# A field the server's schema lacks: GitHub's validation error ("Field 'digest' doesn't exist on
# type 'ReleaseAsset'", extensions.code undefinedField), or graphql-js's wording of it.
UNDEFINED_FIELD_RE = re.compile(r"Field '\w+' doesn't exist on type|Cannot query field '\w+' on type")


def lacks_field(error: Mapping[str, Any]) -> bool:
    extensions = error.get("extensions") if isinstance(error.get("extensions"), dict) else {}
    message = str(error.get("message"))
    return extensions.get("code") == "undefinedField" or bool(UNDEFINED_FIELD_RE.search(message))


def graphql_reason(errors: Iterable[Mapping[str, Any]]) -> str:
    """GitHub's own words for a failed query, as one short printable line."""
    text = "; ".join(str(e.get("message", "")) for e in errors if e.get("type") != "NOT_FOUND")
    return sanitize_log(text)[:200] or "no reason given"


def graphql_data(answer: Any, headers: Mapping[str, str], now: float) -> dict:
    """The `data` of a GraphQL answer; NOT_FOUND parts stay null, other errors raise."""
    if not isinstance(answer, dict):
        raise BadGateway("GitHub's answer was not a GraphQL response.")
    errors = [e for e in answer.get("errors") or [] if isinstance(e, dict)]
    kinds = {e.get("type") if isinstance(e.get("type"), str) else None for e in errors}
    messages = (str(e.get("message", "")) for e in errors if e.get("type") != "NOT_FOUND")  # names echo input
    if any(is_secondary_limit(message) for message in messages):  # a 200 answer, per GitHub's docs
        raise rate_limited(retry_after(headers, now), secondary=True)
    # The primary limit's type is undocumented: RATE_LIMITED and RATE_LIMIT are both seen (githubkit#271).
    if kinds & {"RATE_LIMITED", "RATE_LIMIT"} or headers.get("x-ratelimit-remaining") == "0" and errors:
        raise rate_limited(retry_after(headers, now, primary=True), api="graphql")
    if "FORBIDDEN" in kinds:
        raise forbidden(headers)
    data = answer.get("data")
    if errors and all(lacks_field(e) for e in errors):
        raise SchemaLacks(f"GitHub's GraphQL schema lacks a field: {graphql_reason(errors)}")
    if kinds - {"NOT_FOUND"} and isinstance(data, dict):
        # Data with errors: GitHub documents partial results for queries over its resource limits.
        raise PartialAnswer(f"GitHub answered only part of the query: {graphql_reason(errors)}")
    if kinds - {"NOT_FOUND"} or not isinstance(data, dict):
        if kinds == {"NOT_FOUND"}:
            raise NotFound("Not found, or not visible to this token.")
        raise BadGateway(f"GitHub could not answer the query: {graphql_reason(errors)}")
    return data


def connection_nodes(connection: Any) -> list[dict]:
    if not isinstance(connection, dict) or not isinstance(connection.get("nodes"), list):
        raise BadGateway("GitHub's answer had an unexpected shape.")
    return [n for n in connection["nodes"] if isinstance(n, dict)]


def next_cursor(connection: dict) -> str | None:
    info = connection.get("pageInfo") or {}
    return info.get("endCursor") if info.get("hasNextPage") else None


MAX_YANK_REASON = 500  # characters of a yank reason kept from a release's title or notes


def yank_reason(title: Any, notes: Any) -> str | None:
    """PEP 592 from GitHub's own release page: a release whose title starts with "[yanked]" (the
    rest of the title is the reason), or whose notes have a line "Yanked: <reason>", is yanked."""
    title = str(title or "").strip()
    if title.lower().startswith("[yanked]"):
        rest = re.sub(r"^\s*(?:-(?=\s)|:)?\s*", "", title[len("[yanked]"):], count=1)  # "[yanked] - why"
        return rest.rstrip()[:MAX_YANK_REASON]
    prose = re.sub(r"^```.*?^```", "", str(notes or ""), flags=re.DOTALL | re.MULTILINE)  # not in code blocks
    line = re.search(r"^[ \t]*yanked:[ \t]*(.*?)[ \t]*\r?$", prose, re.IGNORECASE | re.MULTILINE)
    return line.group(1)[:MAX_YANK_REASON] if line else None


def project_assets(project: str, nodes: Iterable[dict]) -> tuple[Asset, ...]:
    """The assets that are distributions of `project`, first (newest) of each filename, sorted."""
    nodes = list(nodes)
    # PEP 658: a release may carry <wheel>.metadata next to the wheel; it is served, not listed.
    siblings = {str(n.get("name")): str(n.get("url")) for n in reversed(nodes)
                if str(n.get("name")).endswith(METADATA_SUFFIX)}
    found: dict[str, Asset] = {}
    for node in nodes:
        try:
            name, dist = node["name"], parse_distribution(node["name"])
            # No distribution is empty: a size of 0 is a failed upload's leftover (state starter,
            # which GraphQL does not show), never a file.
            if dist is None or dist.project != project or name in found or not int(node["size"]):
                continue
            found[name] = Asset(node["id"], name, dist.version, int(node["size"]),
                                installable_time(node["createdAt"], node.get("publishedAt")), node["url"],
                                str(node.get("updatedAt", "")), parse_digest(node.get("digest")),
                                siblings.get(name + METADATA_SUFFIX), node.get("releaseId"), None,
                                node.get("yanked"))
        except (KeyError, TypeError, ValueError):
            raise BadGateway("GitHub's answer had an unexpected shape.") from None
    return tuple(sorted(found.values(), key=lambda a: (version_key(a.version), a.filename)))


def asset_link(node: Any, node_id: str, filename: str) -> AssetLink:
    """An asset node looked up by id, as a link; NotFound for anything but a published asset."""
    if not isinstance(node, dict) or node.get("__typename") != "ReleaseAsset":
        raise NotFound(NO_SUCH_FILE)
    try:
        release = node["release"]
        repo = release["repository"]
        if release["isDraft"]:
            raise NotFound(NO_SUCH_FILE)
        siblings = connection_nodes(release.get("releaseAssets") or {"nodes": []})
        sibling = filename + METADATA_SUFFIX
        metadata_url = next((str(n["url"]) for n in siblings if n.get("name") == sibling), None)
        return AssetLink(node_id, str(repo["owner"]["login"]), str(node["name"]), str(node["url"]),
                         int(node["size"]), metadata_url, str(repo["name"]), release.get("databaseId"))
    except (KeyError, TypeError, ValueError):
        raise BadGateway("GitHub's answer had an unexpected shape.") from None


def repo_projects(repo: dict) -> set[str]:
    """Normalized names of the projects whose distributions a repo's recent releases carry."""
    names = set()
    for release in connection_nodes(repo.get("releases")):
        if not release.get("isDraft"):
            for asset in connection_nodes(release.get("releaseAssets")):
                dist = parse_distribution(str(asset.get("name")))
                names |= {dist.project} if dist else set()
    return names


def owner_projects(repositories: Iterable[dict]) -> dict[str, str]:
    """Project name -> repo name. A repo carrying its own project's files lists only that one;
    a repo named differently from its project lists the projects it carries. Earlier repos
    (most recently pushed) win."""
    found: dict[str, str] = {}
    for repo in repositories:
        name, projects = str(repo.get("name")), repo_projects(repo)
        own = normalize(name)
        for project in sorted({own} if own in projects else projects):
            found.setdefault(project, name)
    return found


def rest_base(graphql_url: str) -> str:
    """GitHub's REST root for a GraphQL endpoint: api.github.com, or GHES's /api/v3."""
    if graphql_url.endswith("/api/graphql"):
        return graphql_url[: -len("graphql")] + "v3"
    return graphql_url[: -len("/graphql")] if graphql_url.endswith("/graphql") else graphql_url.rstrip("/")


def repo_path(owner: str, repo: str) -> str:
    return f"/repos/{urllib.parse.quote(owner)}/{urllib.parse.quote(repo)}"


def asset_facts(asset: Mapping[str, Any]) -> AssetFacts:
    rest_id = asset.get("id")
    return AssetFacts(parse_digest(asset.get("digest")), rest_id if isinstance(rest_id, int) else None,
                      str(asset.get("state") or "uploaded"))


def release_facts(releases: Any) -> dict[str, AssetFacts]:
    """What one page of GitHub's REST releases list says of each asset, by node id."""
    if not isinstance(releases, list):
        raise BadGateway("GitHub's releases answer had an unexpected shape.")
    return {str(asset.get("node_id")): asset_facts(asset)
            for release in releases if isinstance(release, dict)
            for asset in release.get("assets") or [] if isinstance(asset, dict)}


def has_next_page(link_header: str) -> bool:
    """Whether a REST Link header (RFC 8288) points to a next page."""
    return any('rel="next"' in part for part in link_header.split(","))


def dist_info_matches(directory: str, dist: Distribution) -> bool:
    name, _, version = directory[: -len(".dist-info")].rpartition("-")
    return normalize(name) == dist.project and version == dist.version


def wheel_metadata_member(names: Iterable[str], filename: str) -> str:
    """The archive path of a wheel's METADATA: <name>-<version>.dist-info/METADATA (PEP 427)."""
    candidates = [n for n in names if re.fullmatch(r"[^/]+\.dist-info/METADATA", n)]
    dist = parse_distribution(filename)
    matching = [n for n in candidates if dist and dist_info_matches(n.split("/")[0], dist)]
    if len(matching) == 1 or len(candidates) == 1:
        return (matching or candidates)[0]
    raise BadGateway("The wheel has no single .dist-info/METADATA.")


def parse_core_metadata(data: bytes) -> CoreMetadata:
    """A METADATA file with its sha256 and its Requires-Python, if any."""
    headers = email.parser.BytesHeaderParser().parsebytes(data)
    requires = headers.get("Requires-Python")
    return CoreMetadata(zlib.compress(data), hashlib.sha256(data).hexdigest(),
                        str(requires).strip() if requires else None)


FORWARDED_DOWNLOAD_HEADERS = ("Content-Type", "Content-Length", "Content-Range", "Accept-Ranges",
                              "ETag", "Last-Modified")


def forwarded_headers(headers: Mapping[str, str]) -> list[tuple[str, str]]:
    """The download host's headers that a proxied download passes on, none with a line break."""
    kept = [(name, headers[name.lower()]) for name in FORWARDED_DOWNLOAD_HEADERS if headers.get(name.lower())]
    return [(n, v) for n, v in kept if "\r" not in v and "\n" not in v]


# --- Pure logic: pages for people (/ and /project/<name>/) ---

NOTES_BUDGET = 64 * 1024  # characters of one release's notes shown; the rest is on GitHub
MAX_QUERY = 100  # characters of ?q= read
DATE_RE = re.compile(r"(\d{4}-\d\d-\d\d)T\d\d:\d\d:\d\dZ")
# A Host header worth showing back: a DNS name or an IP literal, and a port; nothing else.
HOST_RE = re.compile(r"(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}"
                     r"[A-Za-z0-9])?)*|\[[0-9A-Fa-f:.]{2,45}\])(?::[0-9]{1,5})?")

# One stylesheet, inline and allowed by its hash: no 'unsafe-inline', no request for a CSS file.
PAGE_STYLE = """
:root{color-scheme:light dark;--fg:#1f2328;--muted:#59636e;--bg:#fff;--panel:#f6f8fa;--line:#d1d9e0;
--link:#0969da;--warn:#9a6700;--bad:#d1242f}
@media (prefers-color-scheme:dark){:root{--fg:#f0f6fc;--muted:#9198a1;--bg:#0d1117;--panel:#151b23;
--line:#3d444d;--link:#4493f8;--warn:#d29922;--bad:#f85149}}
*{box-sizing:border-box}
body{margin:0;background:var(--bg);color:var(--fg);font:16px/1.5 system-ui,-apple-system,"Segoe UI",
Roboto,"Noto Sans",sans-serif}
main{max-width:64rem;margin:0 auto;padding:1rem}
a{color:var(--link)}
h1{font-size:1.75rem;margin:.5rem 0}h2{font-size:1.3rem;margin:1.5rem 0 .5rem}h3{font-size:1.1rem;margin:0}
code,pre{font:.875rem/1.45 ui-monospace,SFMono-Regular,Menlo,Consolas,monospace}
pre{background:var(--panel);border:1px solid var(--line);border-radius:6px;padding:.75rem;overflow-x:auto}
.muted,.meta{color:var(--muted)}
.badge{display:inline-block;font-size:.75rem;border:1px solid currentColor;border-radius:2rem;
padding:0 .5rem;margin-left:.5rem;vertical-align:middle}
.pre{color:var(--warn)}.yanked{color:var(--bad)}
.projects{list-style:none;padding:0}
.projects li,.release{border:1px solid var(--line);border-radius:6px;padding:.75rem;margin:.75rem 0}
.projects p{margin:.25rem 0 0}
form{display:flex;gap:.5rem}
input{flex:1;min-width:0;font:inherit;padding:.4rem;border:1px solid var(--line);border-radius:6px;
background:var(--bg);color:var(--fg)}
button{font:inherit;padding:.4rem .8rem;border:1px solid var(--line);border-radius:6px;
background:var(--panel);
color:var(--fg)}
.files{overflow-x:auto}
table{border-collapse:collapse;width:100%;margin:.5rem 0}
th,td{text-align:left;padding:.3rem .5rem;border-top:1px solid var(--line);vertical-align:top}
td code{overflow-wrap:anywhere}
.hash{font-size:.75rem;min-width:12rem}
.notes{overflow-wrap:anywhere}
.notes img{max-width:100%}
@media (max-width:40rem){main{padding:.5rem}thead{display:none}tr,td{display:block;border:0;padding:.1rem 0}
tr{border-top:1px solid var(--line);padding:.4rem 0}td[data-label]::before{content:attr(data-label) ": ";
color:var(--muted)}}
"""
STYLE_SOURCE = "'sha256-" + base64.b64encode(hashlib.sha256(PAGE_STYLE.encode()).digest()).decode() + "'"
# Pages for people: no script, no request of any kind but the page itself and forms back to it.
PAGE_CSP = (f"default-src 'none'; style-src {STYLE_SOURCE}; form-action 'self'; base-uri 'none'; "
            "frame-ancestors 'none'")
PAGE_SECURITY_HEADERS = (("X-Content-Type-Options", "nosniff"), ("Content-Security-Policy", PAGE_CSP),
                         ("Referrer-Policy", "no-referrer"))

PAGE_SHELL = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="color-scheme" content="light dark">
<title>{title}</title>
<style>{style}</style>
</head>
<body>
<main>
{body}
</main>
</body>
</html>
"""


PEP440_RE = re.compile(r"v?(?:(\d+)!)?(\d+(?:\.\d+)*)(?:[-_.]?(a|b|c|rc|alpha|beta|pre|preview)[-_.]?(\d*))?"
                       r"(?:-(\d+)|[-_.]?(?:post|rev|r)[-_.]?(\d*))?(?:[-_.]?(dev)[-_.]?(\d*))?"
                       r"(?:\+([a-z0-9._-]+))?")
PRE_TAGS = {"a": "a", "alpha": "a", "b": "b", "beta": "b", "c": "rc", "rc": "rc", "pre": "rc",
            "preview": "rc"}


def pep440_key(version: str) -> tuple:
    """PEP 440's order (as packaging sorts), for showing versions newest first: 2.0rc1 before
    2.0, 2.0 before 2.0.post1. A version PEP 440 does not parse sorts before every one it does."""
    found = PEP440_RE.fullmatch(version.lower())
    if not found:
        return (0, version_key(version))
    epoch, release, pre, pre_n, post_dash, post_n, dev, dev_n, local = found.groups()
    numbers = [int(n) for n in release.split(".")]
    while len(numbers) > 1 and numbers[-1] == 0:
        numbers.pop()
    post = post_dash or post_n if post_dash is not None or post_n is not None else None
    pre_key = (1, PRE_TAGS[pre], int(pre_n or 0)) if pre else (-1,) if dev and post is None else (2,)
    post_key = (1, int(post or 0)) if post is not None else (0,)
    dev_key = (1, int(dev_n or 0)) if dev else (2,)
    local_key = tuple((1, int(p), "") if p.isdigit() else (0, 0, p)
                      for p in re.split(r"[._-]", local or "") if p)
    return (1, int(epoch or 0), tuple(numbers), pre_key, post_key, dev_key, local_key)


@dataclasses.dataclass(frozen=True)
class ProjectRow:
    """One project on `/`: what the owner's project index query says of it."""

    name: str  # normalized
    owner: str
    repo: str
    version: str = ""  # the newest in the repo's newest releases (see OWNER_PROJECTS_QUERY)
    released: str = ""  # that release's publishedAt
    description: str = ""  # the repo's description
    repo_url: str = ""


@dataclasses.dataclass(frozen=True)
class VersionView:
    """One version on a project page: its release (if known) and its files."""

    version: str
    files: tuple[Asset, ...]
    release: ReleaseInfo | None


def escape(value: object) -> str:
    return html.escape(str(value), quote=True)


def human_page(title: str, body: str) -> bytes:
    return PAGE_SHELL.format(title=escape(title), style=PAGE_STYLE, body=body).encode()


def day_of(moment: str) -> str:
    """yyyy-mm-dd in a <time>, for GitHub's ISO 8601 UTC timestamps; anything else as text."""
    found = DATE_RE.fullmatch(moment or "")
    return f'<time datetime="{escape(moment)}">{found.group(1)}</time>' if found else escape(moment)


def human_size(size: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return ""


def safe_link(url: str, text: str) -> str:
    """An anchor to an http(s) URL from GitHub; just the text for anything else."""
    if not is_safe_url(url):
        return escape(text)
    return f'<a href="{escape(url)}" rel="noopener noreferrer">{escape(text)}</a>'


def index_url(host: str | None, scheme: str, public_url: str = "") -> str:
    """The index URL shown in install lines, never with credentials: --public-url if set, else
    the request's Host when it is a plain host[:port] (a forged one shows only to its sender; the
    page is private and varies with Authorization), else a placeholder."""
    if public_url:
        return public_url.rstrip("/") + "/simple/"
    if host and HOST_RE.fullmatch(host) and scheme in ("http", "https"):
        return f"{scheme}://{host.lower()}/simple/"
    return "https://PYPIHUB-HOST/simple/"


def render_home(index: str) -> bytes:
    """How to use this index: the body of `/`'s 401, which makes a browser ask for credentials
    and is what stays on screen when the prompt is cancelled."""
    i = escape(index)
    body = f"""<h1>PyPIHub {escape(__version__)}</h1>
<p>A Python package index over the assets of GitHub Releases. Sign in with the GitHub login that
owns the repos as the user name and your own GitHub token as the password to browse its projects.</p>
<h2>pip and uv</h2>
<pre><code>pip install --index-url {i} PROJECT
uv pip install --index-url {i} PROJECT</code></pre>
<p class="muted">They ask for the user name and the token, or take them from keyring or
<code>~/.netrc</code>; <code>https://OWNER:TOKEN@…</code> in the URL works too.</p>
<p><a href="simple/">simple/</a></p>"""
    return human_page("PyPIHub", body)


# `/`: the signed-in owner's projects


def query_text(query: Mapping[str, list[str]]) -> str:
    """?q= as typed; a form sends a space as "+", which parse_target() keeps as "+"."""
    return (query.get("q") or [""])[0][:MAX_QUERY].replace("+", " ")


def matches_query(row: ProjectRow, terms: Sequence[str]) -> bool:
    haystack = f"{row.name} {row.repo} {row.description}".lower()
    return all(term in haystack for term in terms)


def render_projects_page(rows: Sequence[ProjectRow], query: str, owners: str, index: str = "") -> bytes:
    """`/` for a signed-in browser: each project with its newest version, when, and the repo's
    description, linking to its page; `query` (words, as typed) filters without JavaScript."""
    terms = query.lower().split()
    shown = [row for row in rows if matches_query(row, terms)]
    items = "\n".join(
        f'<li><a href="project/{urllib.parse.quote(row.name)}/"><strong>{escape(row.name)}</strong></a>'
        + (f' <span class="badge">{escape(row.version)}</span>' if row.version else "")
        + (f' <span class="meta">{day_of(row.released)}</span>' if row.released else "")
        + (f"<p>{escape(row.description)}</p>" if row.description else "")
        + "</li>" for row in shown)
    count = f"{len(shown)} of {len(rows)} projects" if terms else f"{len(rows)} projects"
    body = f"""<h1>PyPIHub</h1>
<p class="muted">{escape(owners)}: {count}</p>
<form method="get" action="" role="search"><input type="search" name="q" value="{escape(query)}"
 placeholder="Filter by name or description" aria-label="Filter projects"><button>Filter</button></form>
<ul class="projects">
{items or '<li class="muted">No project matches.</li>'}
</ul>
""" + (f'<p class="muted">Index URL: <code>{escape(index)}</code></p>' if index else "")
    return human_page("PyPIHub", body)


# `/project/<name>/`: versions, files, hashes, release notes


def versions_of(listing: Listing, releases: Iterable[ReleaseInfo]) -> list[VersionView]:
    """The listing's files by version, newest first, each with its release (by release_id)."""
    by_id = {r.database_id: r for r in releases if r.database_id is not None}
    grouped: dict[str, list[Asset]] = {}
    for asset in listing.files:
        grouped.setdefault(asset.version, []).append(asset)
    return [VersionView(version, tuple(files), next((by_id[f.release_id] for f in files
                                                     if f.release_id in by_id), None))
            for version, files in sorted(grouped.items(), key=lambda item: pep440_key(item[0]), reverse=True)]


def install_lines(project: str, index: str, user: str) -> str:
    """Copy-paste lines for pip, uv and poetry: the index URL without credentials, which the
    tools ask for (or take from keyring, netrc or their own settings)."""
    p, i, u = escape(project), escape(index), escape(user or "OWNER")
    return f"""<h2>Install</h2>
<p class="muted">User name <code>{u}</code>, password a GitHub token that can read the repo.</p>
<pre><code>pip install --index-url {i} {p}</code></pre>
<pre><code>uv pip install --index-url {i} {p}</code></pre>
<pre><code>poetry source add --priority=explicit pypihub {i}
poetry config http-basic.pypihub {u} "$GITHUB_TOKEN"
poetry add --source pypihub {p}</code></pre>"""


def file_row(asset: Asset, requires_python: Mapping[str, str]) -> str:
    """A file: its link (through PyPIHub, relative: ../../asset/...), size, Requires-Python
    once its METADATA is known, and GitHub's sha256 when it has one."""
    digest = f"<code>{escape(asset.sha256)}</code>" if asset.sha256 else '<span class="muted">none</span>'
    python = escape(requires_python.get(asset.id, "")) or '<span class="muted">?</span>'
    return (f'<tr><td><a href="{escape(asset_href(asset))}">{escape(asset.filename)}</a></td>'
            f'<td data-label="Uploaded">{day_of(asset.upload_time)}</td>'
            f'<td title="{asset.size} bytes" data-label="Size">{human_size(asset.size)}</td>'
            f'<td data-label="Requires-Python">{python}</td>'
            f'<td class="hash" data-label="SHA-256">{digest}</td></tr>')


def version_block(view: VersionView, requires_python: Mapping[str, str], newest: bool) -> str:
    release, first = view.release, view.files[0]
    badges = ""
    if (release and release.prerelease) or is_prerelease(view.version):
        badges += '<span class="badge pre">pre-release</span>'
    if first.yanked is not None:
        reason = f": {escape(first.yanked)}" if first.yanked else ""
        badges += f'<span class="badge yanked">yanked{reason}</span>'
    if release and release.immutable:
        badges += '<span class="badge">immutable</span>'
    when = release.published if release and release.published else min(a.upload_time for a in view.files)
    meta = day_of(when)
    if release:
        meta += " · " + safe_link(release.url, f"{release.title or release.tag} on GitHub")
    rows = "\n".join(file_row(a, requires_python) for a in view.files)
    notes = ""
    if release and release.notes:
        notes = (f'<details{" open" if newest else ""}><summary>Release notes</summary>'
                 f'<div class="notes">{release.notes}</div></details>')  # sanitized when fetched
    return f"""<article class="release" id="v{escape(view.version)}">
<h3>{escape(view.version)}{badges}</h3>
<p class="meta">{meta}</p>
<div class="files"><table>
<thead><tr><th>File</th><th>Uploaded</th><th>Size</th><th>Requires-Python</th><th>SHA-256</th></tr></thead>
<tbody>
{rows}
</tbody></table></div>
{notes}
</article>"""


def render_project_page(listing: Listing, releases: Sequence[ReleaseInfo], requires_python: Mapping[str, str],
                        repo: ProjectRow, index: str, user: str = "") -> bytes:
    """/project/<name>/: install lines, then every version newest first with its files and notes.
    Everything from GitHub is escaped, but the notes, which sanitize_notes() made safe."""
    views = versions_of(listing, releases)
    where = safe_link(repo.repo_url, f"{listing.owner}/{listing.repo} on GitHub")
    archived = '<span class="badge yanked">archived</span>' if listing.archived else ""
    noted = next((i for i, v in enumerate(views) if v.release and v.release.notes), -1)  # shown open
    blocks = "\n".join(version_block(v, requires_python, i == noted) for i, v in enumerate(views))
    body = f"""<p><a href="../../">All projects</a></p>
<h1>{escape(listing.project)}{archived}</h1>
{f'<p>{escape(repo.description)}</p>' if repo.description else ''}
<p class="meta">{where} · {len(views)} versions, {len(listing.files)} files</p>
{install_lines(listing.project, index, user)}
<h2>Versions</h2>
{blocks or '<p class="muted">No files yet.</p>'}
"""
    return human_page(f"{listing.project} · PyPIHub", body)


# Release notes: GitHub's descriptionHTML, sanitized again

KEPT_TAGS = frozenset("""a abbr b blockquote br code dd del details div dl dt em hr i ins kbd li ol p pre q
s samp span strike strong sub summary sup table tbody td tfoot th thead tr tt ul var""".split())
HEADINGS = {"h1": "h4", "h2": "h5", "h3": "h6", "h4": "h6", "h5": "h6", "h6": "h6"}  # below the page's own
VOID_TAGS = frozenset(("br", "hr", "img", "input", "wbr", "area", "base", "col", "embed", "link", "meta",
                       "param", "source", "track"))
DROPPED_WITH_CONTENT = frozenset(("script", "style", "template", "svg", "math", "iframe", "object",
                                  "noscript",
                                  "textarea", "select", "title", "head"))
KEPT_ATTRIBUTES = {"ol": ("start",), "td": ("align", "colspan", "rowspan"),
                   "th": ("align", "colspan", "rowspan")}
NUMBER_RE = re.compile(r"\d{1,4}|left|right|center")


MAX_NOTES_DEPTH = 64  # elements open at once in sanitized notes: GitHub's own rarely pass 10
# html.parser costs some microseconds a tag: past this many tags and texts, the rest of the notes is
# left to GitHub's page, so that 64 KiB of hostile notes take milliseconds, not a second.
MAX_NOTES_EVENTS = 4000
NOTES_CHUNK = 4096  # notes are read this much at a time, and no further once cut


class NotesSanitizer(HTMLParser):
    """An allowlist rewrite of release-notes HTML: known tags with a few attributes (no class, id
    or style), links only to http(s) (relative ones resolved against the release's page), images
    turned into links to them (the page loads nothing from elsewhere: CSP default-src 'none'),
    every element closed inside the notes, and at most `budget` characters."""

    def __init__(self, base_url: str, budget: int) -> None:
        super().__init__(convert_charrefs=True)
        self.base, self.budget = base_url if is_safe_url(base_url) else "", budget
        self.out: list[str] = []
        self.open: list[str] = []
        self.opened: dict[str, int] = {}  # how many of each tag `open` holds: "is one open?" at no scan
        self.skipping: tuple[str, int] | None = None  # a dropped element and its nesting depth
        self.size, self.cut, self.events = 0, False, 0

    def count(self) -> None:
        self.events += 1
        self.cut = self.cut or self.events > MAX_NOTES_EVENTS

    def emit(self, text: str, opens: str = "") -> None:
        """Add `text` (which opens element `opens`, if given) unless the budget is spent: from
        there on nothing more is added, and result() closes what is open. Past MAX_NOTES_DEPTH
        open elements, more are left out (their text stays): the work stays linear in the notes."""
        if opens and len(self.open) >= MAX_NOTES_DEPTH:
            return
        self.cut = self.cut or self.size + len(text) > self.budget
        if not self.cut:
            self.out.append(text)
            self.size += len(text)
            if opens:
                self.open.append(opens)
                self.opened[opens] = self.opened.get(opens, 0) + 1

    def is_open(self, tag: str) -> bool:
        return self.opened.get(tag, 0) > 0

    def href(self, value: str | None) -> str | None:
        url = urllib.parse.urljoin(self.base, (value or "").strip()) if value else ""
        return url if is_safe_url(url) else None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.count()
        if self.cut:
            return
        if self.skipping:
            name, depth = self.skipping
            self.skipping = (name, depth + (tag == name))
            return
        if tag in DROPPED_WITH_CONTENT:
            self.skipping = (tag, 1)
            return
        values = dict(attrs)
        if tag == "img":  # a link to the image instead of a load from camo/user-images
            url = self.href(values.get("data-canonical-src") or values.get("src"))
            label = escape(f"[image: {values.get('alt') or 'image'}]")
            linked = url and not self.is_open("a")  # inside a link (GitHub wraps images in one): the label
            anchor = f'<a href="{escape(url)}" rel="nofollow noopener noreferrer">{label}</a>'
            self.emit(anchor if linked else label)
        elif tag == "input" and values.get("type") == "checkbox":  # a task list's box
            self.emit("☑ " if "checked" in values else "☐ ")
        elif tag in ("br", "hr"):
            self.emit(f"<{tag}>")
        elif tag == "a" and not self.is_open("a"):  # no link in a link: the browser would move it
            url = self.href(values.get("href"))
            self.emit(f'<a href="{escape(url)}" rel="nofollow noopener noreferrer">' if url else "<a>", "a")
        elif tag in KEPT_TAGS or tag in HEADINGS:
            kept = "".join(f' {n}="{escape(v)}"' for n, v in attrs
                           if n in KEPT_ATTRIBUTES.get(tag, ()) and v and NUMBER_RE.fullmatch(v))
            self.emit(f"<{HEADINGS.get(tag, tag)}{kept}>", HEADINGS.get(tag, tag))

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.handle_starttag(tag, attrs)
        if tag not in VOID_TAGS:
            self.handle_endtag(tag)

    def handle_endtag(self, tag: str) -> None:
        self.count()
        if self.cut:
            return
        if self.skipping:
            name, depth = self.skipping
            self.skipping = (name, depth - (tag == name)) if depth > 1 or tag != name else None
            return
        tag = HEADINGS.get(tag, tag)
        if self.is_open(tag):  # close what it closes; an end tag of nothing opened here is dropped
            while self.open:
                name = self.open.pop()
                self.opened[name] -= 1
                self.out.append(f"</{name}>")  # closing tags are never cut: outside the budget
                if name == tag:
                    break

    def handle_data(self, data: str) -> None:
        self.count()
        if not self.skipping:
            self.emit(html.escape(data, quote=False))

    def result(self) -> str:
        self.close()
        closing = "".join(f"</{name}>" for name in reversed(self.open))
        more = f'<p class="muted">… {safe_link(self.base, "the rest on GitHub")}</p>' if self.cut else ""
        return "".join(self.out) + closing + more


MAX_TAG = 512  # characters from a tag's "<" to its ">"; GitHub's own tags are far shorter
MAX_NOTES_INPUT = 256 * 1024  # characters of notes read at all
# A tag as GitHub renders them: a name, attributes with a quoted (no "<", ">" or its quote inside)
# or bare value. html.parser's own patterns backtrack on what falls short of this ("<a b=\"'\" …"
# repeated took minutes); these are matched one "<" to the next ">" at most, so the pass is linear.
PLAIN_TAG_RE = re.compile(r"""</?[A-Za-z][A-Za-z0-9-]*(?:\s+[A-Za-z_:][-A-Za-z0-9_:.]*"""
                          r"""(?:\s*=\s*(?:"[^"<>]*"|'[^'<>]*'|[^\s"'<>=`]+))?)*\s*/?>""")


def defuse_tags(text: str) -> str:
    """`text` with every "<" that does not start a plain tag (PLAIN_TAG_RE, within MAX_TAG) escaped,
    and comments dropped: what html.parser then reads has no construct it reads slowly. One pass."""
    out, start, comments = [], 0, True  # no "-->" further on once one search found none
    at = text.find("<")
    while at >= 0:
        end = text.find("-->", at + 4) if comments and text.startswith("<!--", at) else -1
        comments = comments and not (text.startswith("<!--", at) and end < 0)
        if end >= 0:
            out.append(text[start:at])
            start = end + 3
            at = text.find("<", start)
            continue
        close = text.find(">", at, at + MAX_TAG)
        if close < 0 or not PLAIN_TAG_RE.fullmatch(text, at, close + 1):
            out += [text[start:at], "&lt;"]
            start = at + 1
        at = text.find("<", at + 1)
    return "".join(out) + text[start:]


def sanitize_notes(notes_html: str | None, release_url: str, budget: int = NOTES_BUDGET) -> str:
    """Release notes fit to include in a page as they are (see NotesSanitizer); notes the HTML
    parser gives up on are shown as their escaped text."""
    sanitizer = NotesSanitizer(release_url, budget)
    text = defuse_tags((notes_html or "")[:MAX_NOTES_INPUT])
    try:
        for start in range(0, len(text), NOTES_CHUNK):
            sanitizer.feed(text[start:start + NOTES_CHUNK])
            if sanitizer.cut:
                break
        return sanitizer.result()
    # html.parser raises on some malformed markup ("<![", AssertionError on Python 3.9-3.12), and
    # what it raises differs by version: whatever it is, the page still shows the notes, as text.
    except Exception:
        text = html.escape(str(notes_html)[:budget], quote=False)
        return f'<pre class="notes-text">{text}</pre>'


# From GitHub's answers (pure: nodes in, plain data out)


def release_info(node: Mapping, notes: bool = True) -> ReleaseInfo:
    """A release node of RELEASE_FIELDS as ReleaseInfo; its notes only when asked (a listing keeps
    none: they come with a page view, from NOTES_QUERY)."""
    url = str(node.get("url") or "")
    text = sanitize_notes(node.get("descriptionHTML"), url) if notes else ""
    return ReleaseInfo(node.get("databaseId"), str(node.get("tagName") or ""), str(node.get("name") or ""),
                       url, str(node.get("publishedAt") or ""), bool(node.get("isPrerelease")), text,
                       str(node.get("id") or ""), str(node.get("updatedAt") or ""),
                       node.get("immutable") is True)


def notes_by_id(nodes: Iterable[object], urls: Mapping[str, str]) -> dict[str, str]:
    """NOTES_QUERY's nodes as release node id -> sanitized notes, each release's links resolved
    against its own page (`urls`: node id -> ReleaseInfo.url); a node that is no release is skipped."""
    return {node["id"]: sanitize_notes(node.get("descriptionHTML"), urls.get(node["id"], ""))
            for node in nodes if isinstance(node, dict) and isinstance(node.get("id"), str)}


def newest_version(repo: Mapping, project: str) -> tuple[str, str]:
    """The project's newest version in the repo's newest releases, a final one if there is one,
    and when its release was published."""
    found = [(dist.version, release) for release in connection_nodes(repo.get("releases"))
             if not release.get("isDraft") for asset in connection_nodes(release.get("releaseAssets"))
             if (dist := parse_distribution(str(asset.get("name")))) and dist.project == project]
    final = [(v, r) for v, r in found if not (r.get("isPrerelease") or is_prerelease(v))] or found
    if not final:
        return "", ""
    version, release = max(final, key=lambda pair: pep440_key(pair[0]))
    return version, str(release.get("publishedAt") or "")


def project_rows(repositories: Iterable[dict], owner: str) -> dict[str, ProjectRow]:
    """Project -> ProjectRow, by owner_projects()'s rules (a repo named after its project lists
    only that one; earlier, more recently pushed, repos win), from OWNER_PROJECTS_QUERY's nodes."""
    rows: dict[str, ProjectRow] = {}
    for repo in repositories:
        name, projects = str(repo.get("name")), repo_projects(repo)
        own = normalize(name)
        for project in sorted({own} if own in projects else projects):
            if project not in rows:
                version, released = newest_version(repo, project)
                rows[project] = ProjectRow(project, owner, name, version, released,
                                           str(repo.get("description") or ""), str(repo.get("url") or ""))
    return rows


# --- Pure logic: uploads ---


@dataclasses.dataclass
class Upload:
    """A parsed legacy-API upload: its form fields and the spooled file."""

    fields: dict[str, str]
    filename: str
    file: Any  # a SpooledTemporaryFile positioned anywhere; size and sha256 below
    size: int
    sha256: str
    repo: dict | None = None  # the target repo, when it was checked before the file was read


def multipart_boundary(content_type: str | None) -> bytes:
    """The boundary of a multipart/form-data body (RFC 7578), or BadRequest."""
    if len(content_type or "") > 1024:  # the email parser's parameter parsing grows with its square
        raise BadRequest("The Content-Type header is too long.")
    message = email.message.Message()
    message["Content-Type"] = content_type or ""
    boundary = message.get_param("boundary")
    if message.get_content_type() != "multipart/form-data" or not isinstance(boundary, str) \
            or not 1 <= len(boundary) <= 70:
        raise BadRequest("Uploads must be multipart/form-data with a boundary.")
    return boundary.encode("latin-1")


def disposition(header_block: bytes) -> tuple[str, str | None]:
    """The form field name and, for a file, its filename, from a part's headers."""
    message = email.parser.BytesHeaderParser().parsebytes(header_block)
    name = message.get_param("name", header="content-disposition")
    filename = message.get_param("filename", header="content-disposition")
    if not isinstance(name, str):
        raise BadRequest("A multipart part has no field name.")
    return name, email.utils.collapse_rfc2231_value(filename) if filename is not None else None


def check_upload(upload: Upload) -> Distribution:
    """Validate an upload before touching GitHub; BadRequest says what is wrong."""
    fields = upload.fields
    if fields.get(":action") != "file_upload":
        raise BadRequest("Only :action=file_upload is supported.")
    if fields.get("protocol_version", "1") != "1":
        raise BadRequest("Only protocol_version=1 is supported.")
    dist = parse_distribution(upload.filename)  # its character set keeps out "/", "\\" and ".."
    if dist is None:
        raise BadRequest(f"{upload.filename!r} is not a wheel or sdist filename.")
    if dist.project != normalize(fields.get("name", "")):
        raise BadRequest(f"The file {upload.filename} is not of the project {fields.get('name', '')!r}.")
    if dist.version.lower() != fields.get("version", "").lower():
        raise BadRequest(f"The file {upload.filename} is not of version {fields.get('version', '')!r}.")
    if fields.get("sha256_digest", "").lower() != upload.sha256:
        raise BadRequest("sha256_digest does not match the uploaded file.")
    return dist


def release_tags(version: str, template: str) -> list[str]:
    """Tags to look for: the template's, then the bare version (an existing tag is accepted)."""
    return list(dict.fromkeys([template.format(version=version), version]))


def upload_url(release: dict, filename: str) -> str:
    """Where GitHub takes this release's assets (uploads.github.com, or GHES's /api/uploads):
    always from GitHub's own answer, its URI template's {?name,label} filled in."""
    base = str(release.get("upload_url", "")).split("{", 1)[0]
    if not is_safe_url(base):
        raise BadGateway("GitHub's release has no usable upload URL.")
    return f"{base}?{urllib.parse.urlencode({'name': filename})}"


# --- Threads: the busy-thread gate ---


class GateHeld(AssertionError):
    """Debug mode (Gate(strict=True), which the tests use): a blocking call was made holding the gate."""


# What a blocking call does first (Python's audit events; time.sleep's since 3.11): connecting to
# GitHub, the download host or the fallback index, resolving a name, running a command, sleeping.
BLOCKING_EVENTS = frozenset({"socket.connect", "socket.getaddrinfo", "subprocess.Popen", "time.sleep"})


def refuse_blocking(gate: Callable[[], Gate | None], event: str, args: Any) -> None:
    """A strict gate's audit hook (sys.addaudithook; hooks stay for the process, so it holds the
    gate weakly)."""
    if event in BLOCKING_EVENTS:
        held = gate()
        if held is not None and held.holding():
            raise GateHeld(f"{event} while holding the busy-thread gate: wrap the wait in gate.released()")


class Gate:
    """At most `slots` threads run request work at once (--busy-threads; 0 = no limit), let in
    first come, first served. With one thread per connection, 64 connections would otherwise
    take turns at the GIL every few milliseconds each, and every request would wait for all of
    them. A thread gives its turn up while it waits: released() is the one way to wait (on
    GitHub, the download host, the fallback index, another thread's load, an upload's body, a
    slow client, a sleep), so waiting never holds a slot. With `strict`, a blocking call made
    while holding a turn raises GateHeld: a new call that forgets released() fails the tests."""

    def __init__(self, slots: int = 0, strict: bool = False) -> None:
        self.slots = self._free = slots
        self._lock = threading.Lock()
        self._queue: deque[threading.Lock] = deque()  # one locked lock per waiting thread, in order
        self._local = threading.local()
        if strict:
            sys.addaudithook(functools.partial(refuse_blocking, weakref.ref(self)))

    def holding(self) -> bool:
        return getattr(self._local, "held", False)

    def enter(self) -> None:
        """Wait for a turn (at once if this thread has one, or if there is no limit)."""
        if self.holding():
            return
        turn = None
        if self.slots:
            with self._lock:
                if self._free:
                    self._free -= 1
                else:
                    turn = threading.Lock()
                    turn.acquire()
                    self._queue.append(turn)
        if turn is not None:
            turn.acquire()  # leave() hands its slot over by releasing it
        self._local.held = True

    def leave(self) -> None:
        """Give the turn to the longest waiting thread (a no-op without one)."""
        if not self.holding():
            return
        self._local.held = False
        if not self.slots:
            return
        with self._lock:
            if self._queue:
                self._queue.popleft().release()
            else:
                self._free += 1

    @contextlib.contextmanager
    def released(self) -> Any:
        """Around a wait: the turn goes to another thread meanwhile, and comes back after."""
        if not self.holding():
            yield
            return
        self.leave()
        try:
            yield
        finally:
            self.enter()


# --- GitHub client ---


def read_within(response: Any, limit: int, deadline: float) -> bytes:
    """Up to `limit` + 1 bytes of an answer's body, by single reads (read1), stopping at the deadline:
    a body that trickles a byte at a time would pass every read's own timeout."""
    chunks, size, read = [], 0, getattr(response, "read1", None) or response.read
    while size <= limit:
        if time.monotonic() >= deadline:
            raise GatewayTimeout("GitHub did not answer in time.", why="github-timeout")
        chunk = read(min(1 << 20, limit + 1 - size))
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    return b"".join(chunks)


@dataclasses.dataclass
class GitHubCalls:
    """The GitHub calls made on behalf of one request, for its access-log line."""

    graphql: int = 0
    rest: int = 0


RATE_LIMIT_LOW = 500  # log when a token has fewer GitHub rate-limit points left


class GitHubUsage:
    """GitHub calls by API and outcome across every token, and the rate-limit points last seen:
    what /metrics shows, and a warning (at most once a minute) when a token runs low."""

    def __init__(self, clock: Clock, log: Log) -> None:
        self.clock, self.log = clock, log
        self._lock = threading.Lock()
        self._calls: dict[tuple[str, str], int] = {}
        self._remaining: float | None = None
        self._warned = 0.0

    def record(self, api: str, outcome: str, headers: Mapping[str, str]) -> None:
        # REST has a budget of its own: the gauge shows GraphQL's.
        remaining = headers.get("x-ratelimit-remaining", "") if api == "graphql" else ""
        now = self.clock()
        with self._lock:
            self._calls[api, outcome] = self._calls.get((api, outcome), 0) + 1
            low = remaining.isdigit() and int(remaining) < RATE_LIMIT_LOW and now - self._warned > 60
            self._remaining = float(remaining) if remaining.isdigit() else self._remaining
            self._warned = now if low else self._warned
        if low:
            self.log(f"WARNING: a caller's GitHub token has {remaining} rate-limit points left "
                     f"(resets at epoch {headers.get('x-ratelimit-reset', '?')})")

    def metric_lines(self) -> list[str]:
        with self._lock:
            calls = sorted(self._calls.items())
            remaining = self._remaining
        lines = metric_lines("pypihub_github_calls_total", "counter",
                             ((f'{{api="{a}",outcome="{o}"}}', n) for (a, o), n in calls))
        if remaining is not None:
            lines += metric_lines("pypihub_github_rate_limit_remaining", "gauge", [("", remaining)])
        return lines


def refuse_redirect(status: int, headers: Mapping[str, str]) -> None:
    """A redirect that exchange() did not follow (to another host) is no answer, and never a success."""
    if 300 <= status < 400:
        host = urllib.parse.urlsplit(headers.get("location", "")).netloc
        where = sanitize_log(host)[:100] or "nowhere"
        raise BadGateway(f"GitHub answered HTTP {status}, a redirect to {where}.")


def schema_refusal(payload: bytes) -> SchemaLacks | None:
    """The refusal of a query for fields the schema lacks, should a server send it with an error
    status (GitHub's own come with 200: unconfirmed, so both are taken)."""
    try:
        errors = [e for e in json.loads(payload).get("errors") if isinstance(e, dict)]
    except (ValueError, AttributeError, TypeError, RecursionError):
        return None
    if errors and all(lacks_field(e) for e in errors):
        return SchemaLacks(f"GitHub's GraphQL schema lacks a field: {graphql_reason(errors)}")
    return None


def decode_graphql(status: int, headers: Mapping[str, str], payload: bytes, now: float) -> dict:
    refuse_redirect(status, headers)
    refusal = schema_refusal(payload) if status in (400, 422) else None
    if refusal is not None:
        raise refusal
    if status >= 400:
        raise http_failure(status, headers, now, payload, "graphql")
    return graphql_data(parse_json(payload), headers, now)


def decode_rest(status: int, headers: Mapping[str, str], payload: bytes, now: float) -> Any:
    """A REST answer's JSON; None for an empty body, or for a 404 (the caller decides what it means)."""
    if status == 404:
        return None
    if status == 422 and b"Only the first" in payload:  # the releases list's 1,000-result cap
        raise ListEnd(github_message(payload))
    refuse_redirect(status, headers)
    if status >= 400:
        raise http_failure(status, headers, now, payload)
    return parse_json(payload) if payload else None


def decode_write(status: int, headers: Mapping[str, str], payload: bytes, now: float) -> Any:
    refuse_redirect(status, headers)
    if status >= 400:
        raise write_failure(status, headers, now, payload)
    return parse_json(payload) if payload else None


def decode_asset_route(status: int, headers: Mapping[str, str], answer: Any, now: float) -> tuple[str, Any]:
    """GitHub's asset route as bytes: ("redirect", signed URL) from a 302, or ("stream", the open
    response) from a 200; docs.github.com: "API clients should handle both a 200 or 302 response"."""
    if status in (301, 302, 303, 307, 308):
        location = headers.get("location", "")
        if not is_safe_url(location):
            raise BadGateway("GitHub gave a download URL that cannot be used.")
        return "redirect", location
    if status == 200:
        return "stream", answer
    if status == 404:
        raise NotFound(NO_SUCH_FILE)
    raise http_failure(status, headers, now, answer)


class Query(NamedTuple):
    """One GraphQL operation as sent to today's GitHub, and as sent to a schema without the
    fields GitHub added in 2025 (an older GitHub Enterprise Server; see query_with())."""

    current: str
    legacy: str


class KeptRedirects(urllib.request.HTTPRedirectHandler):
    """Every redirect comes back as the answer it is: GitHub.exchange() decides which to follow
    (urllib would follow to any host, and answer a 307 to a POST as if it were the result)."""

    def redirect_request(self, req: Any, fp: Any, code: int, msg: str, headers: Any, newurl: str) -> None:
        return None


MAX_REDIRECTS = 3
MOVED_STATUSES = (301, 307, 308)


def same_origin(url: str, other: str) -> bool:
    a, b = urllib.parse.urlsplit(url), urllib.parse.urlsplit(other)
    return (a.scheme, a.netloc.lower()) == (b.scheme, b.netloc.lower())


def is_api_redirect(request: urllib.request.Request, status: int, headers: Mapping[str, str]) -> bool:
    """A redirect to GitHub's own API host (not to a download host): a renamed or transferred
    repo answers 301 (GET) or 307 (other methods) to https://api.github.com/repositories/<id>/...
    (docs "Best practices for using the REST API": follow redirects; octokit/fixtures
    rename-repository)."""
    location = urllib.parse.urljoin(request.full_url, headers.get("location", ""))
    return 300 <= status < 400 and same_origin(location, request.full_url)


def moved_request(request: urllib.request.Request, headers: Mapping[str, str]) -> urllib.request.Request:
    """The same request (method, token, body) to the place GitHub redirected it to."""
    body = request.data
    if hasattr(body, "seek"):  # an upload's spooled file goes again from its start
        body.seek(0)
    location = urllib.parse.urljoin(request.full_url, headers.get("location", ""))
    return urllib.request.Request(location, data=body, method=request.get_method(),
                                  headers=dict(request.header_items()))


class GitHubSchema:
    """What one GitHub server's GraphQL schema has: today's fields, until it refuses a query for
    them; then, for the life of the process, the legacy form of every query (one refused query
    per server, not one per request), with sha256 digests from the REST API instead."""

    def __init__(self, log: Log = lambda message: None) -> None:
        self.legacy, self.log = False, log
        self._lock = threading.Lock()

    def text(self, query: Query) -> str:
        return query.legacy if self.legacy else query.current

    def learn(self, error: PyPIHubError) -> None:
        with self._lock:
            first, self.legacy = not self.legacy, True
        if first:
            self.log(f"GitHub's GraphQL schema lacks fields of 2025 ({error.message}): an older GitHub "
                     "Enterprise Server? Asking without them; sha256 digests come from the REST API")


TOKEN_CONCURRENCY = 8  # GitHub requests in flight per token; GitHub's secondary limit is 100 per user


class Throttle:
    """One token's way to GitHub: at most TOKEN_CONCURRENCY requests in flight (GitHub's
    secondary limit allows 100 per user, so one cold resolve of many packages must not take them
    all); none while GitHub has told it to wait (answered from memory, as a 429: per API for the
    primary limit, for both after a secondary one), nor for a minute after GitHub rejected the
    token (a 401 from memory: a bad token costs one call a minute)."""

    def __init__(self, clock: Clock = time.time, slots: int = TOKEN_CONCURRENCY) -> None:
        self.clock, self.slots = clock, threading.BoundedSemaphore(slots)
        self.until = {"": 0.0, "graphql": 0.0, "rest": 0.0}  # no requests before these times
        self.rejected_until = self.confirmed_until = 0.0
        self.accepted = False  # GitHub has answered a call of this token: never rationed as a guess
        self.confirming = threading.Lock()  # one confirmation of the token at a time: many wait for it
        self.counting = threading.Lock()  # guards `active`
        self.active = 0

    def enter(self, deadline: float, api: str) -> None:
        if self.rejected_until > self.clock():
            raise Unauthorized("GitHub rejected this token (within the last minute).", why="bad-token")
        wait = int(max(self.until[""], self.until[api]) - self.clock() + 0.999)
        if wait > 0:
            raise TooManyRequests(f"GitHub asked this token to pause its requests; retry in {wait} s.",
                                  [("Retry-After", str(wait))], wait)
        if not self.slots.acquire(timeout=max(0.0, deadline - time.monotonic())):
            raise GatewayTimeout("GitHub did not answer in time.")
        with self.counting:
            self.active += 1

    def leave(self) -> None:
        with self.counting:
            self.active -= 1
        self.slots.release()

    def learn(self, error: PyPIHubError) -> None:
        """What a failed call says about the token: rejected, or to be held off."""
        if isinstance(error, Unauthorized):
            self.rejected_until = self.clock() + TOKEN_CHECK_TTL
        if isinstance(error, TooManyRequests):
            self.until[error.api] = max(self.until[error.api], self.clock() + error.wait)

    def idle(self) -> bool:
        """Nothing in flight and nothing to remember: it can be forgotten."""
        now = self.clock()
        return not self.active and max(self.rejected_until, *self.until.values()) <= now


class Throttles:
    """Each token's Throttle, by its keyed hash. Past `size` of them, idle ones are forgotten;
    if that is not enough (a flood of bad tokens), the oldest not in use, so memory stays bounded."""

    def __init__(self, clock: Clock, size: int) -> None:
        self.clock, self.size = clock, size
        self._lock = threading.Lock()
        self._throttles: dict[str, Throttle] = {}

    def of(self, token_key: str) -> Throttle:
        with self._lock:
            throttle = self._throttles.get(token_key)
            if throttle is None:
                if len(self._throttles) >= self.size:
                    self._throttles = self._kept()
                throttle = self._throttles[token_key] = Throttle(self.clock)
            return throttle

    def _kept(self) -> dict[str, Throttle]:
        kept = {k: t for k, t in self._throttles.items() if not t.idle()}
        for key in [k for k, t in kept.items() if not t.active][: max(0, len(kept) - self.size // 2)]:
            del kept[key]
        return kept

    def __len__(self) -> int:
        return len(self._throttles)


REST_ACCEPT = "application/vnd.github+json"
REST_API_VERSION = "2022-11-28"
MAX_GITHUB_ANSWER = 64 * 1024 * 1024
MAX_RETRIES = 2  # for connection errors and 5xx from GitHub; queries are idempotent
RETRY_BASE_DELAY = 0.25
Record = Callable[[str, str, Mapping[str, str]], None]  # a GitHub call's API, outcome and headers


class GitHub:
    """One caller's conversation with GitHub's APIs for one request: their token, their calls.

    Reads are retried with jittered backoff on connection failures and 5xx, all within one
    `timeout`; writes are made once. Every call is counted in `calls` and reported to `record`;
    the token's `throttle` bounds its calls in flight and holds them off when GitHub says so."""

    def __init__(self, url: str, token: str, timeout: float, *, gate: Gate, rest_url: str = "",
                 calls: GitHubCalls | None = None, record: Record | None = None,
                 clock: Clock = time.time, sleep: Sleep = time.sleep, throttle: Throttle | None = None,
                 schema: GitHubSchema | None = None, rejected: Callable[[], None] = lambda: None,
                 monotonic: Clock = time.monotonic) -> None:
        self.url, self._token, self.timeout, self.monotonic = url, token, timeout, monotonic
        self.deadline = monotonic() + timeout  # one for every call made for this request
        self.rest_url = rest_url or rest_base(url)
        self.calls = calls if calls is not None else GitHubCalls()
        self.record = record or (lambda api, outcome, headers: None)
        self.clock, self.sleep = clock, sleep
        self.throttle = throttle or Throttle(clock)
        self.gate = gate  # given up while waiting on GitHub
        self.schema = schema or GitHubSchema()
        self.rejected = rejected  # told when GitHub rejects the token (see Rejections)

    def query(self, query: Query | str, variables: Mapping[str, Any]) -> dict:
        """The query's data; a Query in the form the server's schema takes."""
        if isinstance(query, str):
            return self._ask(query, variables)
        text = self.schema.text(query)
        try:
            return self._ask(text, variables)
        except SchemaLacks as lacking:
            if text == query.legacy:
                raise
            self.schema.learn(lacking)
            return self._ask(query.legacy, variables)

    def _ask(self, query: str, variables: Mapping[str, Any]) -> dict:
        body = json.dumps({"query": query, "variables": dict(variables)}).encode()
        headers = {**self.headers("application/json"), "Content-Type": "application/json"}
        request = urllib.request.Request(self.url, data=body, method="POST", headers=headers)
        return self._retrying("graphql", request, decode_graphql)

    def rest(self, path: str) -> tuple[Any, dict[str, str]]:
        """A REST GET: the decoded answer (None for a 404) and its headers."""
        request = urllib.request.Request(self.rest_url + path, method="GET", headers=self.headers())
        return self._retrying("rest", request, lambda *answer: (decode_rest(*answer), answer[1]))

    def rest_write(self, method: str, url: str, body: Any = None, content_type: str = "",
                   length: int | None = None, timeout: float | None = None) -> Any:
        """A REST call that changes something: made once, never retried; its decoded answer.
        `timeout` (default the client's) bounds it: an asset upload gets --upload-timeout."""
        headers = self.headers()
        if content_type:
            headers["Content-Type"] = content_type
        if length is not None:
            headers["Content-Length"] = str(length)
        request = urllib.request.Request(url, data=body, method=method, headers=headers)
        deadline = self.monotonic() + timeout if timeout else self.deadline
        return self._call("rest", request, deadline, decode_write)

    def asset_route(self, path: str, forward: Mapping[str, str]) -> tuple[str, Any]:
        """GET a release asset's bytes through GitHub's documented route: ("redirect", signed
        URL) or ("stream", open response, which the caller closes); see decode_asset_route."""
        headers = {**self.headers("application/octet-stream"), **forward}
        request = urllib.request.Request(self.rest_url + path, method="GET", headers=headers)
        return self._call("rest", request, self.deadline, decode_asset_route, stream=True)

    def renew(self) -> None:
        """A new deadline, after time that was not GitHub's (an upload's body coming in)."""
        self.deadline = self.monotonic() + self.timeout

    def remaining(self) -> float:
        """Seconds left of this request's time with GitHub (for the download host too)."""
        return max(0.001, self.deadline - self.monotonic())

    def headers(self, accept: str = REST_ACCEPT) -> dict[str, str]:
        """What every call carries; REST calls also name the API version they speak."""
        headers = {"Authorization": f"bearer {self._token}", "User-Agent": USER_AGENT, "Accept": accept}
        if accept != "application/json":  # GraphQL has no versions
            headers["X-GitHub-Api-Version"] = REST_API_VERSION
        return headers

    def _retrying(self, api: str, request: urllib.request.Request, decode: Callable[..., Any]) -> Any:
        """_call() again on connection failures and 5xx (every call here is idempotent)."""
        deadline = self.deadline
        for tries in range(MAX_RETRIES + 1):
            try:
                return self._call(api, request, deadline, decode)
            except Unavailable:
                pause = random.uniform(0.5, 1.0) * RETRY_BASE_DELAY * 2 ** tries  # jittered backoff
                if tries == MAX_RETRIES or self.monotonic() + pause >= deadline:
                    raise
                with self.gate.released():
                    self.sleep(pause)
        raise AssertionError("unreachable")

    def _call(self, api: str, request: urllib.request.Request, deadline: float,
              decode: Callable[..., Any], stream: bool = False) -> Any:
        """One exchange, counted and reported with its outcome, its answer decoded."""
        with self.gate.released():
            self.throttle.enter(deadline, api)  # raises, sending nothing, while GitHub wants a pause
        if api == "rest":
            self.calls.rest += 1
        else:
            self.calls.graphql += 1
        headers: dict[str, str] = {}
        try:
            with self.gate.released():
                status, headers, payload = self._exchange(request, deadline, stream)
            result = decode(status, headers, payload, self.clock())
        except PyPIHubError as exc:
            self.record(api, type(exc).__name__, headers)
            self.throttle.learn(exc)
            if isinstance(exc, Unauthorized) and not self.throttle.accepted:
                self.rejected()
            raise
        finally:
            self.throttle.leave()
        self.record(api, "ok", headers)
        self.throttle.accepted = True
        return result

    def _exchange(self, request: urllib.request.Request, deadline: float,
                  stream: bool = False) -> tuple[int, dict, Any]:
        """Status, headers and body of any HTTP answer (with `stream`, a 200's body unread),
        following GitHub's redirects on its own host as the same request, token included; a
        redirect elsewhere comes back as it is (the asset route's signed URL)."""
        for _ in range(MAX_REDIRECTS + 1):
            status, headers, payload = self._exchange_once(request, deadline, stream)
            if not is_api_redirect(request, status, headers):
                return status, headers, payload
            if status not in MOVED_STATUSES:  # never handed to a client as a download link
                raise BadGateway(f"GitHub answered HTTP {status} to another API URL.")
            request = moved_request(request, headers)
        raise BadGateway("GitHub redirected too many times.")

    def _exchange_once(self, request: urllib.request.Request, deadline: float,
                       stream: bool) -> tuple[int, dict, Any]:
        timeout = deadline - self.monotonic()
        if timeout <= 0:
            raise GatewayTimeout("GitHub did not answer in time.")
        try:
            try:
                response = urllib.request.build_opener(KeptRedirects()).open(request, timeout=timeout)
            except urllib.error.HTTPError as exc:
                response = exc
            if stream and response.getcode() == 200:
                return 200, lower_keys(response.headers or {}), response
            with response:
                payload = read_within(response, MAX_GITHUB_ANSWER, deadline)
                return response.getcode(), lower_keys(response.headers or {}), payload
        except (urllib.error.URLError, OSError, http.client.HTTPException) as exc:
            raise network_failure(exc) from None


# --- GitHub queries: repo, releases, assets, owner index, digests ---

# ReleaseAsset.digest ("sha256:<hex>", null for uploads before GitHub kept digests) and
# Release.immutable are in GitHub's schema since 2025 (changelog 2025-06-03 "Releases now expose
# digests for release assets"; immutable releases, GA 2025-10-28). An older GitHub Enterprise
# Server lacks them: its queries are the same without them (see Query, GitHubSchema).
ASSET_FIELDS = """
fragment AssetFields on ReleaseAsset { id name size createdAt updatedAt url digest }
"""
RELEASE_FIELDS = """
fragment ReleaseFields on Release {
  id
  databaseId
  isDraft
  name
  description
  tagName
  url
  publishedAt
  updatedAt
  isPrerelease
  immutable
  releaseAssets(first: $assets) { pageInfo { hasNextPage endCursor } nodes { ...AssetFields } }
}
"""
REPO_FIELDS = """
fragment RepoFields on Repository {
  name
  owner { login }
  viewerPermission
  isArchived
  description
  url
  releases(first: $releases, orderBy: {field: CREATED_AT, direction: DESC}) {
    pageInfo { hasNextPage endCursor }
    nodes { ...ReleaseFields }
  }
}
"""
NEW_FIELDS_RE = re.compile(r"[ \t]+(?:digest|immutable)\b")


def query_with(operation: str, *fragments: str) -> Query:
    text = operation + "".join(fragments)
    return Query(text, NEW_FIELDS_RE.sub("", text))


class Pages(NamedTuple):
    """How many releases, and assets of each, one listing query asks for."""

    releases: int
    assets: int


# A listing's queries in full pages, then, when GitHub answers only part (its resource limits),
# once more in smaller ones.
LISTING_PAGES = (Pages(100, 100), Pages(20, 20))

# The candidate repo names of one project in ONE request; unused aliases are skipped with
# @include so that a plain name costs no more than one repository lookup.
FIND_REPO_QUERY = query_with("""
query FindRepo($owner: String!, $name0: String!, $name1: String!, $name2: String!,
               $try1: Boolean!, $try2: Boolean!, $releases: Int!, $assets: Int!) {
  c0: repository(owner: $owner, name: $name0) { ...RepoFields }
  c1: repository(owner: $owner, name: $name1) @include(if: $try1) { ...RepoFields }
  c2: repository(owner: $owner, name: $name2) @include(if: $try2) { ...RepoFields }
}
""", REPO_FIELDS, RELEASE_FIELDS, ASSET_FIELDS)
CANDIDATE_ALIASES = ("c0", "c1", "c2")


def repo_owner(repo: dict, asked: str) -> str:
    return str((repo.get("owner") or {}).get("login") or asked)


def owned_repo(repo: dict, owner: str) -> dict:
    """`repo` if `owner` owns it; NotFound naming the new owner of a transferred repo."""
    login = repo_owner(repo, owner)
    if login.lower() != owner.lower():
        raise Moved(f"The repo {owner}/{repo.get('name')} has moved to {login}/{repo.get('name')}; "
                    f"use {login} as the user name.")
    return repo


def find_repo(github: GitHub, owner: str, candidates: Sequence[str], pages: Pages = LISTING_PAGES[0]) -> dict:
    """The first candidate repo that exists and is visible to the token, with its first page.

    GitHub follows renames and transfers (followRenames defaults to true), so an old name can
    answer with a repo that another owner has now: that is answered as missing, naming the new
    owner, since this owner's credentials (and --owner) are what the caller asked under."""
    if not candidates:
        raise NotFound("No repo name follows from this project name.")
    names = (list(candidates) * 3)[:3]
    variables = {"owner": owner, "name0": names[0], "name1": names[1], "name2": names[2],
                 "try1": len(candidates) > 1, "try2": len(candidates) > 2, **pages._asdict()}
    data = github.query(FIND_REPO_QUERY, variables)
    aliases = CANDIDATE_ALIASES[: len(candidates)]
    found = [data[alias] for alias in aliases if isinstance(data.get(alias), dict)]
    owned = [repo for repo in found if repo_owner(repo, owner).lower() == owner.lower()]
    if owned or found:
        return owned[0] if owned else owned_repo(found[0], owner)
    raise NotFound(f"No repo {' or '.join(candidates)} of {owner} is visible to this token.",
                   why="not-visible")


MORE_RELEASES_QUERY = query_with("""
query MoreReleases($owner: String!, $name: String!, $after: String!, $releases: Int!, $assets: Int!) {
  repository(owner: $owner, name: $name) {
    releases(first: $releases, after: $after, orderBy: {field: CREATED_AT, direction: DESC}) {
      pageInfo { hasNextPage endCursor }
      nodes { ...ReleaseFields }
    }
  }
}
""", RELEASE_FIELDS, ASSET_FIELDS)


def all_releases(github: GitHub, owner: str, repo: dict, pages: Pages) -> list[dict]:
    """Every release of a repo, a page at a time."""
    connection = repo.get("releases")
    releases = connection_nodes(connection)
    while cursor := next_cursor(connection):
        variables = {"owner": owner, "name": repo["name"], "after": cursor, **pages._asdict()}
        data = github.query(MORE_RELEASES_QUERY, variables)
        connection = (data.get("repository") or {}).get("releases")
        releases += connection_nodes(connection)
    return releases


MORE_ASSETS_QUERY = query_with("""
query MoreAssets($id: ID!, $after: String!, $assets: Int!) {
  node(id: $id) {
    ... on Release {
      releaseAssets(first: $assets, after: $after) {
        pageInfo { hasNextPage endCursor }
        nodes { ...AssetFields }
      }
    }
  }
}
""", ASSET_FIELDS)


def release_assets(github: GitHub, release: dict, pages: Pages) -> list[dict]:
    """Every asset of a release, paging beyond its first page."""
    connection = release.get("releaseAssets")
    nodes = connection_nodes(connection)
    while cursor := next_cursor(connection):
        data = github.query(MORE_ASSETS_QUERY, {"id": release["id"], "after": cursor, "assets": pages.assets})
        connection = (data.get("node") or {}).get("releaseAssets")
        nodes += connection_nodes(connection)
    return nodes


def fetch_listing(github: GitHub, owner: str, project: str, repo: dict, pages: Pages) -> Listing:
    """All distributions of `project` in every non-draft release of `repo` (found by find_repo
    with the same `pages`)."""
    releases = all_releases(github, owner, repo, pages)
    nodes = [{**a, "releaseId": r.get("databaseId"), "publishedAt": r.get("publishedAt"),
              "yanked": yank_reason(r.get("name"), r.get("description"))}
             for r in releases if not r.get("isDraft") for a in release_assets(github, r, pages)]
    archived = bool(repo.get("isArchived"))
    infos = tuple(release_info(r, notes=False) for r in releases if not r.get("isDraft"))
    return Listing(project, owner, str(repo["name"]), project_assets(project, nodes), archived,
                   str(repo.get("description") or ""), str(repo.get("url") or ""), infos)


ASSET_QUERY = """
query Asset($id: ID!, $metadataName: String!) {
  node(id: $id) {
    __typename
    ... on ReleaseAsset {
      name
      size
      url
      release {
        isDraft
        databaseId
        repository { name owner { login } }
        releaseAssets(first: 1, name: $metadataName) { nodes { name url } }
      }
    }
  }
}
"""


def fetch_asset_link(github: GitHub, node_id: str, filename: str) -> AssetLink:
    """Owner, name, size and temporary URL of a release asset, looked up by node id."""
    try:
        answer = github.query(ASSET_QUERY, {"id": node_id, "metadataName": filename + METADATA_SUFFIX})
        node = answer.get("node")
    except NotFound:
        node = None
    return asset_link(node, node_id, filename)


OWNER_PROJECTS_QUERY = """
query OwnerProjects($owner: String!, $after: String) {
  repositoryOwner(login: $owner) {
    repositories(first: 100, after: $after, orderBy: {field: PUSHED_AT, direction: DESC}) {
      pageInfo { hasNextPage endCursor }
      nodes {
        name
        description
        url
        releases(first: 5, orderBy: {field: CREATED_AT, direction: DESC}) {
          nodes { isDraft isPrerelease publishedAt releaseAssets(first: 100) { nodes { name } } }
        }
      }
    }
  }
}
"""


# A project page's release notes: only on a page view, for the releases the caller's listing
# shows (GitHub counts points by connections, not fields: the listing's own query could carry
# them at no point, but every cold pip listing would then carry every release's HTML too).
NOTES_QUERY = """
query ReleaseNotes($ids: [ID!]!) {
  nodes(ids: $ids) { ... on Release { id descriptionHTML } }
}
"""
NOTES_PER_CALL = 100  # GitHub's nodes(ids:) takes at most 100 ids


class OwnerIndex(NamedTuple):
    """An owner's project index: project -> repo (for /simple/), and what `/` shows of each."""

    projects: dict[str, str]
    rows: dict[str, ProjectRow]


ROOT_MAX_PAGES = 3  # /simple/ looks at the 300 most recently pushed repos, 5 releases each


def fetch_owner_index(github: GitHub, owner: str) -> OwnerIndex:
    """The owner's most recently pushed repos' projects (bounded: see ROOT_*), in one query a page."""
    names: dict[str, str] = {}
    rows: dict[str, ProjectRow] = {}
    cursor = None
    for _ in range(ROOT_MAX_PAGES):
        data = github.query(OWNER_PROJECTS_QUERY, {"owner": owner, "after": cursor})
        if not isinstance(data.get("repositoryOwner"), dict):
            raise NotFound(f"No GitHub owner {owner} is visible to this token.")
        connection = data["repositoryOwner"].get("repositories")
        names = {**owner_projects(connection_nodes(connection)), **names}
        rows = {**project_rows(connection_nodes(connection), owner), **rows}
        cursor = next_cursor(connection)
        if cursor is None:
            break
    return OwnerIndex(names, rows)


def fetch_owner_projects(github: GitHub, owner: str) -> dict[str, str]:
    """Project -> repo for the owner's most recently pushed repos."""
    return fetch_owner_index(github, owner).projects


REPO_NAMES_QUERY = """
query RepoNames($owner: String!, $after: String) {
  repositoryOwner(login: $owner) {
    repositories(first: 100, after: $after, orderBy: {field: NAME, direction: ASC}) {
      pageInfo { hasNextPage endCursor }
      nodes { name }
    }
  }
}
"""


NAMES_MAX_PAGES = 10  # an owner's repo names, for deciding "not ours": its first 1,000 repos


def fetch_repo_names(github: GitHub, owner: str) -> tuple[frozenset[str], bool]:
    """The owner's repo names that this token can see, normalized, and whether that is all of them
    (NAMES_MAX_PAGES pages at most: 1 point each)."""
    names: set[str] = set()
    cursor = None
    for _ in range(NAMES_MAX_PAGES):
        data = github.query(REPO_NAMES_QUERY, {"owner": owner, "after": cursor})
        if not isinstance(data.get("repositoryOwner"), dict):
            return frozenset(), True  # no such owner for this token: it has nothing
        connection = data["repositoryOwner"].get("repositories")
        names |= {normalize(str(node.get("name"))) for node in connection_nodes(connection)}
        cursor = next_cursor(connection)
        if cursor is None:
            return frozenset(names), True
    return frozenset(names), False


def owner_projects_or_none(github: GitHub, owner: str) -> dict[str, str]:
    """fetch_owner_projects(), where an owner this token cannot see has none."""
    try:
        return fetch_owner_projects(github, owner)
    except NotFound:
        return {}


def fetch_facts(github: GitHub, owner: str, repo: str, wanted: set[str]) -> dict[str, AssetFacts]:
    """Digests, REST ids and states by asset node id from GitHub's REST releases list (GraphQL
    has none of them), newest releases first, paging only while a wanted asset is unseen. The
    list ends after 1,000 releases: a wanted asset not seen by then has no facts to be had, and
    is answered as such (no digest), so that later listings do not page through it again."""
    found: dict[str, AssetFacts] = {}
    path = f"{repo_path(owner, repo)}/releases?per_page=100&page="
    for page in range(1, REST_MAX_PAGES + 1):
        try:
            releases, headers = github.rest(f"{path}{page}")
        except ListEnd:
            break
        except PyPIHubError:
            if not found:
                raise
            return found  # what the pages before said is good; the rest is asked for next time
        found.update(release_facts(releases))
        if wanted <= found.keys() or not has_next_page(headers.get("link", "")):
            return found  # an asset the whole list leaves out (just uploaded?) is asked for next time
    return {**{node_id: AssetFacts(None) for node_id in wanted}, **found}


# --- Downloads: signed URLs, Range reads, streaming ---


def open_url(url: str, method: str, headers: Mapping[str, str], timeout: float,
             passthrough: Iterable[int] = ()) -> tuple[int, dict[str, str], Any]:
    """Open a signed download URL: (status, headers, response); statuses in `passthrough`
    come back without a body, a refusal raises ExpiredLink."""
    request = urllib.request.Request(url, method=method, headers={"User-Agent": USER_AGENT, **headers})
    try:
        response = urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as exc:
        found = lower_keys(exc.headers or {})
        exc.close()
        if exc.code in passthrough:
            return exc.code, found, None
        if exc.code in (400, 401, 403, 404, 410):
            raise ExpiredLink(f"The download host answered HTTP {exc.code}.") from None
        raise BadGateway(f"The download host answered HTTP {exc.code}.") from None
    except (urllib.error.URLError, OSError, http.client.HTTPException) as exc:
        raise network_failure(exc) from None
    return response.status, lower_keys(response.headers), response


def head_answer(answer: Answer, ranged: bool) -> Answer:
    """The answer to HEAD from a GET's: the client's own Range answered as it is; else the 206
    for the first byte stands for a 200 of the whole file, whose size its Content-Range gives."""
    headers = dict(answer.headers)
    total = headers.get("Content-Range", "").rpartition("/")[2]
    if ranged or answer.status != 206 or not total.isdigit():
        return Answer(answer.status, b"", list(headers.items()), length=answer.length)
    kept = [(name, value) for name, value in headers.items()
            if name not in ("Content-Range", "Content-Length")]
    return Answer(200, b"", kept, length=int(total))


def stream_answer(status: int, headers: Mapping[str, str], response: Any) -> Answer:
    length = headers.get("content-length", "")
    return Answer(status, b"", forwarded_headers(headers), stream=response,
                  length=int(length) if length.isdigit() and response is not None else None)


def open_download(url: str, method: str, forward: Mapping[str, str], timeout: float) -> Answer:
    """Stream a signed download URL (--proxy-downloads); the caller closes answer.stream."""
    # 304, 412 and 416 answer the client's own conditions and ranges: passed on as they are.
    try:
        status, headers, response = open_url(url, method, forward, timeout, passthrough=(304, 412, 416))
    except ExpiredLink:
        if method != "HEAD":
            raise
        # Presigned URLs are signed for GET; some hosts refuse HEAD (403): GET one byte instead.
        answer = open_download(url, "GET", {"Range": "bytes=0-0", **forward}, timeout)
        if answer.stream is not None:
            answer.stream.close()
        return head_answer(answer, ranged="Range" in forward)
    return stream_answer(status, headers, response)


def read_body(response: Any, limit: int) -> bytes:
    """Up to `limit` bytes of an open answer, which is closed; a read that breaks is a gateway error."""
    try:
        with response:
            return response.read(limit)
    except (OSError, http.client.HTTPException) as exc:
        raise network_failure(exc) from None


def fetch_small(url: str, timeout: float, limit: int) -> bytes:
    """A whole, small download (a .metadata asset); larger than `limit` is refused."""
    _, _, response = open_url(url, "GET", {}, timeout)
    data = read_body(response, limit + 1)
    if len(data) > limit:
        raise MetadataTooLarge("The METADATA is larger than this index serves (4 MiB).")
    return data


RANGE_TAIL = 64 * 1024  # first Range read of a wheel: its end, where the central directory is
RANGE_BLOCK = 16 * 1024  # later Range reads: a member's header and compressed bytes
MAX_FULL_WHEEL = 256 * 1024 * 1024  # largest wheel read whole where Range is refused


class RangeFile(io.RawIOBase):
    """A read-only, seekable view of a remote file through HTTP Range requests.

    zipfile reads a wheel's end (central directory) and then one member, so PEP 658 metadata
    costs two or three small requests instead of the whole wheel. Reads are widened to
    RANGE_TAIL, then RANGE_BLOCK; a host that ignores Range is read whole once, up to MAX_FULL_WHEEL."""

    def __init__(self, url: str, size: int, timeout: float) -> None:
        super().__init__()
        self.url, self.size, self.timeout = url, size, timeout
        self.position = self.requests = 0
        self._start, self._data = 0, b""

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self.position

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self.position, io.SEEK_END: self.size}[whence]
        self.position = max(0, base + offset)
        return self.position

    def readinto(self, buffer: Any) -> int:
        end = min(self.size, self.position + len(buffer))
        if end <= self.position:
            return 0
        if not self._start <= self.position < end <= self._start + len(self._data):
            self._start, self._data = self._fetch(self.position, end)
        chunk = self._data[self.position - self._start: end - self._start]
        buffer[: len(chunk)] = chunk
        self.position += len(chunk)
        return len(chunk)

    def _fetch(self, start: int, end: int) -> tuple[int, bytes]:
        """(offset, bytes) of a block around start..end: one Range request."""
        block = RANGE_BLOCK if self.requests else RANGE_TAIL
        high = min(self.size, max(end, start + block))
        low = max(0, min(start, high - block))
        self.requests += 1
        status, _, response = open_url(self.url, "GET", {"Range": f"bytes={low}-{high - 1}"}, self.timeout)
        if status == 206:
            return low, read_body(response, high - low)
        if self.size <= MAX_FULL_WHEEL:  # Range ignored: the whole file, once
            return 0, read_body(response, MAX_FULL_WHEEL)
        response.close()
        raise BadGateway("The download host refuses Range requests and the wheel is too large.")


MAX_METADATA = 4 * 1024 * 1024  # METADATA larger than this is not read at all


def wheel_metadata(file: Any, filename: str) -> bytes:
    try:
        with zipfile.ZipFile(file) as wheel:
            info = wheel.getinfo(wheel_metadata_member(wheel.namelist(), filename))
            if info.file_size > MAX_METADATA:
                raise MetadataTooLarge("The wheel's METADATA is larger than this index serves (4 MiB).")
            return wheel.read(info)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, zlib.error, KeyError, EOFError, NotImplementedError,
            RuntimeError):
        raise BadGateway("The file is not a readable wheel.") from None


def read_wheel_metadata(link: AssetLink, timeout: float) -> bytes:
    """The wheel's .dist-info/METADATA, byte for byte, read through Range requests."""
    if link.metadata_url:
        return fetch_small(link.metadata_url, timeout, MAX_METADATA)
    return wheel_metadata(RangeFile(link.url, link.size, timeout), link.filename)


def read_streamed_metadata(answer: Answer, filename: str) -> bytes:
    """The METADATA of a wheel that GitHub's asset route streams whole (its 200 answer)."""
    data = read_body(answer.stream, MAX_FULL_WHEEL + 1)
    if len(data) > MAX_FULL_WHEEL:
        raise BadGateway("The wheel is too large to be read whole.")
    return wheel_metadata(io.BytesIO(data), filename)


def rest_asset_id(github: GitHub, link: AssetLink) -> int:
    """The asset's REST id (GraphQL has none): known from the REST list, or looked up by name
    in its release's REST asset list."""
    if link.rest_id is not None:
        return link.rest_id
    path = f"{repo_path(link.owner, link.repo)}/releases/{link.release_id}/assets?per_page=100&page="
    for page in range(1, REST_MAX_PAGES + 1):
        assets, headers = github.rest(f"{path}{page}")
        found = [a.get("id") for a in assets or [] if isinstance(a, dict) and a.get("name") == link.filename]
        if found and isinstance(found[0], int):
            return found[0]
        if not has_next_page(headers.get("link", "")):
            break
    raise NotFound(NO_SUCH_FILE)


def via_asset_route(github: GitHub, link: AssetLink, forward: Mapping[str, str]) -> AssetLink | Answer:
    """GitHub's documented way to a file, for when the GraphQL URL is no signed URL or is
    refused: REST GET /repos/{o}/{r}/releases/assets/{id} as application/octet-stream, whose 302
    gives a fresh signed URL (a link) and whose 200 streams the bytes (an answer)."""
    path = f"{repo_path(link.owner, link.repo)}/releases/assets/{rest_asset_id(github, link)}"
    kind, found = github.asset_route(path, forward)
    if kind == "redirect":
        return dataclasses.replace(link, url=found)
    return stream_answer(found.getcode(), lower_keys(found.headers or {}), found)


DOWNLOAD_CHUNK = 1024 * 1024  # per proxied download: memory stays flat whatever the file size


def copy_stream(source: Any, target: Any, length: int | None, chunked: bool) -> int:
    """Copy through one reused buffer (constant memory), as chunks (RFC 9112 7.1) if `chunked`;
    the bytes copied. A source that ends before `length`, or breaks, raises ShortBody: the
    caller then cuts the connection, so that no client takes a short file for a whole one."""
    buffer = bytearray(DOWNLOAD_CHUNK)
    view, sent = memoryview(buffer), 0
    try:
        while count := source.readinto(buffer):
            if chunked:
                target.write(b"%x\r\n" % count)
            target.write(view[:count])
            if chunked:
                target.write(b"\r\n")
            sent += count
    except (OSError, http.client.HTTPException, ValueError):
        raise ShortBody(sent) from None
    if length is not None and sent < length:
        raise ShortBody(sent)
    if chunked:
        target.write(b"0\r\n\r\n")  # the last chunk: only a whole body gets one
    return sent


# --- Publishing: the multipart reader, release and asset writes ---


UPLOAD_CHUNK = 256 * 1024
UPLOAD_SPOOL = 8 * 1024 * 1024  # an upload's file goes to disk past this
MIN_UPLOAD_RATE = 16 * 1024  # bytes a second an upload must average after its first UPLOAD_GRACE seconds
UPLOAD_GRACE = 10.0
MAX_PART_HEADERS = 2048  # twine's and uv's are ~150 bytes; the email parser's cost grows with length
MAX_FORM_PARTS = 1000  # twine sends about 30 fields, a repeated one for each classifier


class MultipartReader:
    """A streaming multipart/form-data parser (RFC 7578), linear in the body's size, over a
    stream of known length. Form fields, their names and part headers share one small budget
    (MAX_FORM_FIELDS bytes, MAX_FORM_PARTS parts) and a field past it stops the reading at once.
    The file is hashed on the way and spooled to disk past UPLOAD_SPOOL; `check` sees the fields
    read so far before its first byte is kept (twine and uv send them first) and may refuse it."""

    def __init__(self, stream: Any, length: int, boundary: bytes, max_file: int,
                 check: Callable[[Mapping[str, str]], dict | None] = lambda fields: None,
                 clock: Clock = time.monotonic) -> None:
        self.stream, self.remaining, self.max_file, self.check = stream, length, max_file, check
        self.clock, self.started, self.received = clock, clock(), 0
        self.delimiter = b"\r\n--" + boundary
        self.buffer, self.start = bytearray(b"\r\n"), 0  # unread: buffer[start:]; the CRLF makes
        self.budget = MAX_FORM_FIELDS                     # the first boundary look like every other

    def read(self) -> Upload:
        self._copy(lambda chunk: None)  # the preamble
        fields: dict[str, str] = {}
        upload = Upload(fields, "", None, 0, "")
        for _ in range(MAX_FORM_PARTS):
            if self._take(2) != b"\r\n":
                break
            name, filename = disposition(self._headers())
            if filename is None:
                fields[name] = self._field()
            elif name == "content" and upload.file is None:
                upload.repo = self.check(fields)
                upload.filename, upload.file, upload.size, upload.sha256 = filename, *self._file()
            else:
                raise BadRequest(f"Unexpected file field {name!r}.")
        else:
            raise PayloadTooLarge("The upload has too many form fields.")
        if upload.file is None:
            raise BadRequest("The upload has no content file.")
        return upload

    def finish(self) -> bool:
        """Read what follows the last boundary (a short epilogue); True when the body is all read."""
        while 0 < self.remaining <= UPLOAD_CHUNK:
            self.remaining -= len(self._read(self.remaining)) or self.remaining
        return self.remaining == 0

    def _read(self, count: int) -> bytes:
        """Up to `count` bytes; an upload that trickles (below MIN_UPLOAD_RATE) would hold its slot."""
        try:
            data = self.stream.read(count)
        except (socket.timeout, TimeoutError):
            raise RequestTimeout("The upload stopped coming.") from None
        except (OSError, ValueError):
            raise BadRequest("The upload's connection broke.") from None
        self.received += len(data)
        late = self.clock() - self.started - UPLOAD_GRACE
        if late > 0 and self.received < MIN_UPLOAD_RATE * late:
            raise RequestTimeout("The upload comes too slowly.")
        return data

    def _fill(self) -> None:
        data = self._read(min(UPLOAD_CHUNK, self.remaining)) if self.remaining > 0 else b""
        if not data:
            raise BadRequest("The multipart body ends early.")
        self.remaining -= len(data)
        if self.start > UPLOAD_CHUNK:  # drop what was parsed now and then, not on every part
            del self.buffer[: self.start]
            self.start = 0
        self.buffer += data

    def _spend(self, count: int) -> None:
        self.budget -= count
        if self.budget < 0:
            raise PayloadTooLarge("The upload's form fields are too large.")

    def _take(self, count: int) -> bytes:
        while len(self.buffer) - self.start < count:
            self._fill()
        taken = bytes(self.buffer[self.start: self.start + count])
        self.start += count
        return taken

    def _headers(self) -> bytes:
        while (end := self.buffer.find(b"\r\n\r\n", self.start, self.start + MAX_PART_HEADERS)) < 0:
            if len(self.buffer) - self.start > MAX_PART_HEADERS:
                raise BadRequest("A multipart part has too long headers.")
            self._fill()
        block = bytes(self.buffer[self.start: end + 4])
        self._spend(len(block))
        self.start = end + 4
        return block

    def _copy(self, write: Callable[[bytes], None]) -> None:
        """Pass a part's bytes to write() up to the next boundary, which is consumed."""
        keep = len(self.delimiter) - 1
        while True:
            index = self.buffer.find(self.delimiter, self.start)
            if index >= 0:
                write(bytes(self.buffer[self.start: index]))
                self.start = index + len(self.delimiter)
                return
            if len(self.buffer) - keep > self.start:
                write(bytes(self.buffer[self.start: len(self.buffer) - keep]))
                self.start = len(self.buffer) - keep
            self._fill()

    def _field(self) -> str:
        parts: list[bytes] = []

        def write(chunk: bytes) -> None:
            self._spend(len(chunk))  # before the next chunk is read, so a huge field stops at once
            parts.append(chunk)

        self._copy(write)
        return b"".join(parts).decode("utf-8", "replace")

    def _file(self) -> tuple[Any, int, str]:
        spool = tempfile.SpooledTemporaryFile(max_size=UPLOAD_SPOOL)
        digest, size = hashlib.sha256(), 0

        def write(chunk: bytes) -> None:
            nonlocal size
            size += len(chunk)
            if size > self.max_file:
                raise PayloadTooLarge(f"The file is larger than this index accepts ({self.max_file} bytes).")
            digest.update(chunk)
            spool.write(chunk)

        try:
            self._copy(write)
        except BaseException:
            spool.close()
            raise
        spool.seek(0)
        return spool, size, digest.hexdigest()


class KeyedLocks:
    """A lock for each key in use, forgotten when no one holds or awaits it."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._locks: dict[Any, list] = {}  # key -> [lock, holders and waiters]

    @contextlib.contextmanager
    def hold(self, key: Any) -> Any:
        with self._lock:
            entry = self._locks.setdefault(key, [threading.Lock(), 0])
            entry[1] += 1
        try:
            with entry[0]:
                yield
        finally:
            with self._lock:
                entry[1] -= 1
                if not entry[1]:
                    del self._locks[key]


def find_release(github: GitHub, owner: str, repo: str, tags: Sequence[str]) -> dict | None:
    """The release tagged with the first of `tags` that has one, or None."""
    for tag in tags:
        release, _ = github.rest(f"{repo_path(owner, repo)}/releases/tags/{urllib.parse.quote(tag, safe='')}")
        if isinstance(release, dict):
            return release
    return None


LEFTOVER_STATES = ("starter", "open")  # REST asset state of a failed or unfinished upload


def named_assets(release: dict, filename: str) -> list[dict]:
    return [a for a in release.get("assets") or [] if isinstance(a, dict) and a.get("name") == filename]


def leftovers(release: dict, filename: str) -> list[dict]:
    """Assets of this name that a failed upload left (GitHub's upload docs: it "may leave an empty
    asset with a state of starter. It can be safely deleted."); they block an upload of the name."""
    return [a for a in named_assets(release, filename) if a.get("state") in LEFTOVER_STATES]


def holds_file(release: dict, upload: Upload) -> bool:
    """Whether the release has this very file, whole: its name, and GitHub's digest of its bytes
    (an asset from before GitHub's digests has none, so it never counts as the same)."""
    return any(parse_digest(a.get("digest")) == upload.sha256 and a.get("state", "uploaded") == "uploaded"
               for a in named_assets(release, upload.filename))


def check_release_accepts(release: dict, filename: str) -> None:
    """Refuse, before a byte goes to GitHub, what GitHub would refuse."""
    if any(a.get("state") not in LEFTOVER_STATES for a in named_assets(release, filename)):
        raise BadRequest(f"File already exists: {filename}")
    if release.get("immutable") and not release.get("draft"):
        raise Conflict(f"The release {release.get('tag_name')} is immutable: this repo has GitHub's "
                       "immutable releases on, so a published release takes no more files. Upload every "
                       "file of a version before its release is published, or publish this file under a "
                       "new version")


class Publisher:
    """One upload's writes to one repo's releases: find or draft its version's release, attach
    the file, publish a draft made here. That is GitHub's advice for immutable releases (files
    can be added only while a release is a draft; docs.github.com, "Immutable releases") and it
    works on every repo. A draft made here is deleted when the upload fails; a release that was
    ever published is never deleted, since an immutable release's tag could never be used again."""

    def __init__(self, github: GitHub, owner: str, repo: str, template: str, upload_timeout: float) -> None:
        self.github, self.owner, self.repo = github, owner, repo
        self.template, self.upload_timeout = template, upload_timeout
        self.releases = f"{github.rest_url}{repo_path(owner, repo)}/releases"

    def publish(self, upload: Upload, dist: Distribution) -> None:
        release, created = self.release_of(upload.fields["version"], dist)
        if holds_file(release, upload):
            return  # an identical re-upload (a CI job retried) succeeds and changes nothing, as on PyPI
        check_release_accepts(release, upload.filename)
        try:
            self.clear_leftovers(release, upload.filename)
            asset = self.attach(release, upload)
            self.github.renew()  # the file's transfer had --upload-timeout of its own
            self.check_name(asset, upload.filename)
            if created:
                self.publish_draft(release, upload)
        except BaseException:
            if created:
                self.discard_draft(release)
            raise

    def publish_draft(self, draft: dict, upload: Upload) -> None:
        """Publish the draft made here. If another PyPIHub instance published this version first
        (its tag is taken now), the file joins that release instead, and the draft goes."""
        body = json.dumps({"draft": False}).encode()
        for attempt in range(2):  # the PATCH is idempotent: once more after a 5xx
            try:
                self.github.rest_write("PATCH", f"{self.releases}/{draft.get('id')}", body,
                                       "application/json")
                return
            except Unavailable:
                if attempt:
                    raise
            except ReleaseExists:
                return self.join_published(draft, upload)

    def join_published(self, draft: dict, upload: Upload) -> None:
        release = find_release(self.github, self.owner, self.repo, [str(draft.get("tag_name"))])
        if release is None:
            raise Conflict("Another upload is publishing this version right now; try again.")
        check_release_accepts(release, upload.filename)
        self.clear_leftovers(release, upload.filename)
        upload.file.seek(0)
        self.check_name(self.attach(release, upload), upload.filename)
        self.discard_draft(draft)

    def release_of(self, version: str, dist: Distribution) -> tuple[dict, bool]:
        """The version's published release, else a new draft: (release, made here)."""
        tags = release_tags(version, self.template)
        release = find_release(self.github, self.owner, self.repo, tags)
        if release is not None:
            return release, False
        body = {"tag_name": tags[0], "name": f"{dist.project} {version}", "draft": True,
                "prerelease": is_prerelease(version)}
        try:
            draft = self.github.rest_write("POST", self.releases, json.dumps(body).encode(),
                                           "application/json")
            return draft, True
        except ReleaseExists:  # made just now, by another upload of this version: use it
            release = find_release(self.github, self.owner, self.repo, tags)
            if release is None:
                raise
            return release, False

    def attach(self, release: dict, upload: Upload) -> dict:
        """Upload the file; when GitHub's answer is lost, its own list of the release decides."""
        url = upload_url(release, upload.filename)
        try:
            return self.github.rest_write("POST", url, upload.file, "application/octet-stream", upload.size,
                                          timeout=self.upload_timeout)
        except (GatewayTimeout, BadGateway):
            found = self.uploaded(release, upload)
            if found is None:
                raise
            return found

    def clear_leftovers(self, release: dict, filename: str) -> None:
        """Delete what failed uploads of this name left (never an asset in state uploaded)."""
        for asset in leftovers(release, filename):
            self.github.rest_write("DELETE", f"{self.releases}/assets/{asset.get('id')}")

    def uploaded(self, release: dict, upload: Upload) -> dict | None:
        """The release's asset of this name if the upload got through whole; a leftover of a
        failed upload (state starter or open, per GitHub's docs) is deleted."""
        current, _ = self.github.rest(f"{repo_path(self.owner, self.repo)}/releases/{release.get('id')}")
        current = current if isinstance(current, dict) else {}
        for asset in named_assets(current, upload.filename):
            if asset.get("state") not in LEFTOVER_STATES:
                return asset if asset.get("size") == upload.size else None  # not ours: never deleted
        self.clear_leftovers(current, upload.filename)
        return None

    def check_name(self, asset: Any, filename: str) -> None:
        """GitHub renames special characters in asset names: such a file is deleted and refused."""
        name = str(asset.get("name", "")) if isinstance(asset, dict) else filename
        if name != filename:
            self.github.rest_write("DELETE", f"{self.releases}/assets/{asset.get('id')}")
            raise BadRequest(f"GitHub renamed the file {filename} to {sanitize_log(name)[:200]} (it renames "
                             "special characters), so pip could not find it; the renamed file was removed")

    def discard_draft(self, release: dict) -> None:
        """Delete a release made here, if it is (still) a draft."""
        try:
            current, _ = self.github.rest(f"{repo_path(self.owner, self.repo)}/releases/{release.get('id')}")
            if isinstance(current, dict) and current.get("draft") is True:
                self.github.rest_write("DELETE", f"{self.releases}/{release.get('id')}")
        except PyPIHubError:
            pass  # the upload's own error is the answer; a leftover draft is harmless and invisible


# --- Cache ---


class _Flight:
    """One load in progress; concurrent callers for the same key wait for it."""

    def __init__(self) -> None:
        self.done = threading.Event()
        self.value: Any = None
        self.error: BaseException | None = None


REFRESH_AHEAD = 0.1  # a listing in use in the last tenth of its TTL is loaded again in the background
MAX_REFRESHES = 8  # background loads at once
CACHE_ENTRY_BYTES = 600  # an entry's key (a keyed hash and names), tuple and place in the map


class Cache:
    """An LRU map bounded in entries and in bytes, with a TTL, stale-if-error and coalescing of
    concurrent loads. `size_of` estimates what an entry holds in memory (key included).

    Keys say whose an entry is: a per-token cache's keys hold a keyed hash of the token, so one
    token's entries never answer another token; a per-asset cache (facts, METADATA) is keyed
    by the asset and read only for assets the caller's own listing or lookup has shown it."""

    def __init__(self, ttl: float, stale_ttl: float, size: int, clock: Clock = time.time,
                 max_bytes: int = 1 << 62, size_of: Callable[[Any], int] = lambda value: 0, *,
                 gate: Gate, refresh: bool = False, wait: float | None = None) -> None:
        self.ttl, self.stale_ttl, self.size, self.clock = ttl, stale_ttl, size, clock
        self.wait = wait  # the longest a caller waits for another's load of the same key
        self.refreshing = threading.BoundedSemaphore(MAX_REFRESHES) if refresh else None
        self.gate = gate  # given up while waiting for another thread's load
        self.max_bytes, self.size_of, self.bytes = max_bytes, size_of, 0
        self._entries: OrderedDict[Any, tuple[float, Any, int]] = OrderedDict()  # (expiry, value, bytes)
        self._flights: dict[Any, _Flight] = {}
        self._lock = threading.Lock()
        self.stats = {"hits": 0, "misses": 0, "coalesced": 0, "stale": 0}
        self.generation = 0  # changes whenever an entry is stored or dropped

    def __len__(self) -> int:
        return len(self._entries)

    def keys(self) -> list[Any]:
        """The keys held now, oldest first."""
        with self._lock:
            return list(self._entries)

    def count(self, stat: str) -> None:
        with self._lock:
            self.stats[stat] += 1

    def discard(self, key: Any) -> None:
        with self._lock:
            self.bytes -= self._entries.pop(key, (0, None, 0))[2]
            self.generation += 1

    def get(self, key: Any, stale: bool = False) -> Any:
        """The value stored under `key` while it is fresh (or, with `stale`, up to `stale_ttl`
        past that), else None."""
        with self._lock:
            return self._fresh(key, grace=self.stale_ttl if stale else 0.0)

    def get_many(self, keys: Iterable[Any]) -> dict[Any, Any]:
        """The fresh values among `keys`, under one acquisition of the lock."""
        with self._lock:
            found = ((key, self._fresh(key)) for key in keys)
            return {key: value for key, value in found if value is not None}

    def put(self, key: Any, value: Any, lifetime: float | None = None) -> None:
        """Store `value`, fresh for `lifetime` seconds (default: the TTL); the least recently
        used entries go while there are too many or they hold too many bytes."""
        cost = CACHE_ENTRY_BYTES + self.size_of(value)
        if self.size <= 0 or self.ttl <= 0 and lifetime is None or cost > self.max_bytes:
            return
        expiry = self.clock() + (self.ttl if lifetime is None else lifetime)
        with self._lock:
            self.bytes += cost - self._entries.pop(key, (0, None, 0))[2]
            self._entries[key] = (expiry, value, cost)
            self.generation += 1
            while len(self._entries) > self.size or self.bytes > self.max_bytes:
                self.bytes -= self._entries.popitem(last=False)[1][2]

    def get_or_load(self, key: Any, load: Callable[[], Any], log: Log) -> Any:
        """The fresh value, else load() once for all concurrent callers; when GitHub fails, the
        value up to `stale_ttl` past its expiry. A value in use in the last REFRESH_AHEAD of its
        TTL is loaded again in the background meanwhile, so that steady traffic never waits."""
        with self._lock:  # one acquisition on the hot path: look up, count, or join a load
            value = self._fresh(key)
            if value is not None:
                self.stats["hits"] += 1
                if self.refreshing is not None and self._due(key):
                    self._refresh(key, load, log)
                return value
            flight = self._flights.get(key)
            leader = flight is None
            if leader:
                flight = self._flights[key] = _Flight()
            self.stats["misses" if leader else "coalesced"] += 1
        return self._lead(key, flight, load, log) if leader else self._follow(flight)

    def _fresh(self, key: Any, grace: float = 0.0) -> Any:
        """The value while it is fresh (or within `grace` seconds after); the caller holds the lock."""
        expiry, value, _ = self._entries.get(key, (None, None, 0))
        if expiry is None or self.clock() >= expiry + grace:
            return None
        self._entries.move_to_end(key)
        return value

    def _due(self, key: Any) -> bool:
        """Whether the entry is in its last REFRESH_AHEAD, with no load of it under way; the caller
        holds the lock."""
        return self._entries[key][0] - self.clock() < self.ttl * REFRESH_AHEAD and key not in self._flights

    def _refresh(self, key: Any, load: Callable[[], Any], log: Log) -> None:
        """Load the entry again in a thread of its own (at most MAX_REFRESHES at once; past them,
        the entry just expires); the caller holds the lock."""
        if not self.refreshing.acquire(blocking=False):
            return
        flight = self._flights[key] = _Flight()

        def load_again() -> None:
            try:
                self._lead(key, flight, load, log)
            except BaseException:  # noqa: B036  (a later request sees and answers the failure)
                pass
            finally:
                self.refreshing.release()
        threading.Thread(target=load_again, name="pypihub-refresh", daemon=True).start()

    def _follow(self, flight: _Flight) -> Any:
        with self.gate.released():
            done = flight.done.wait(self.wait)
        if not done:
            raise GatewayTimeout("The load this request waited for took too long.")
        if flight.error is not None:
            raise flight.error
        return flight.value

    def _lead(self, key: Any, flight: _Flight, load: Callable[[], Any], log: Log) -> Any:
        try:
            flight.value = load()
            self.put(key, flight.value)
        except UPSTREAM_FAILURES as exc:
            with self._lock:
                flight.value = self._fresh(key, grace=self.stale_ttl)
            if flight.value is None:
                flight.error = exc
                raise
            self.count("stale")
            log(f"serving a stale listing: GitHub failed ({exc.status} {exc.message})")
        except BaseException as exc:
            flight.error = exc
            raise
        finally:
            with self._lock:
                del self._flights[key]
            flight.done.set()
        return flight.value


# --- Settings ---


@dataclasses.dataclass(frozen=True)
class Option:
    """How a setting is given: its flag (and so its PYPIHUB_<FLAG> variable), help and parsing.

    The field's default gives the rest: a bool is a switch that turns the default around, an
    int or float is parsed as one, anything else is text unless `parse` says otherwise."""

    help: str
    flag: str = ""  # default: --<field-name>
    metavar: str | None = None
    parse: Callable[[Any], Any] | None = None  # with `repeat`, takes the list of all values
    repeat: bool = False  # the flag may be given again; space-separated in the environment
    toml: tuple[str, ...] = ()  # where the original PyPIHub's TOML layout keeps it
    choices: tuple[str, ...] = ()


def setting(default: Any, help: str, **option: Any) -> Any:
    """A Settings field that declares everything about itself once."""
    return dataclasses.field(default=default, metadata={"option": Option(help, **option)})


def rule_spec(item: Any) -> str:
    """A --repo-map rule as REGEX=REPLACEMENT, also from the TOML layout's {patt, repl} tables."""
    return f"{item['patt']}={item['repl']}" if isinstance(item, dict) else str(item)


def parse_rules(specs: Iterable[Any]) -> tuple[RepoRule, ...]:
    rules = []
    for spec in map(rule_spec, specs):
        pattern, equals, replacement = spec.partition("=")
        if not equals:
            raise ConfigError(f"--repo-map {spec!r}: expected REGEX=REPLACEMENT")
        try:
            rules.append(RepoRule(re.compile(pattern), replacement))
        except re.error as exc:
            raise ConfigError(f"--repo-map {spec!r}: {exc}") from None
    return tuple(rules)


def parse_networks(values: Iterable[Any]) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    try:
        return tuple(ipaddress.ip_network(str(value), strict=False) for value in values)
    except ValueError as exc:
        raise ConfigError(f"--trusted-proxy: {exc}") from None


def tag_template(value: Any) -> str:
    if "{version}" not in str(value):
        raise ValueError("--tag-template must contain {version}")
    return str(value)


@dataclasses.dataclass(frozen=True)
class Settings:
    """Everything configurable, built once in main() and kept by the server and the index.
    A field here is a flag, a PYPIHUB_* variable and a help line; adding one is adding a field."""

    host: str = setting("0.0.0.0", "address to listen on", toml=("server", "host"))
    port: int = setting(3141, "port to listen on", toml=("server", "port"))
    graphql_url: str = setting("https://api.github.com/graphql", "GitHub GraphQL endpoint "
                               "(GitHub Enterprise Server: https://HOST/api/graphql)")
    rest_url: str = setting("", "GitHub REST API root (default: derived from --graphql-url; "
                                "https://HOST/api/graphql gives https://HOST/api/v3)")
    hashes: bool = setting(True, "serve no sha256 hashes (GitHub's asset digests; on an older GitHub "
                                 "Enterprise Server they cost REST calls)", flag="--no-hashes")
    owners: tuple[str, ...] = setting((), "serve only this owner (repeatable; default any)", flag="--owner",
                                      metavar="LOGIN", repeat=True, toml=("github", "owners"))
    repo_map: tuple[RepoRule, ...] = setting(
        (), "turn a project name into a repo name with re.sub (repeatable, applied in order)",
        metavar="REGEX=REPLACEMENT", repeat=True, parse=parse_rules, toml=("github", "replace"))
    certfile: str | None = setting(None, "TLS certificate chain (PEM); serves HTTPS with --keyfile",
                                   toml=("server", "tls", "crt"))
    keyfile: str | None = setting(None, "TLS private key (PEM)", toml=("server", "tls", "key"))
    upstream_timeout: float = setting(10.0, "GitHub answer timeout", metavar="SECONDS")
    upload_timeout: float = setting(300.0, "time one file's upload to GitHub may take", metavar="SECONDS")
    cache_ttl: float = setting(60.0, "listing cache lifetime, 0 = off", metavar="SECONDS")
    stale_ttl: float = setting(600.0, "serve a listing this long past its TTL when GitHub fails",
                               metavar="SECONDS")
    cache_size: int = setting(1024, "listings kept at most", metavar="N")
    cache_memory: int = setting(256, "memory all caches together may hold, in MiB", metavar="MIB")
    proxy_downloads: bool = setting(False, "stream files through PyPIHub instead of redirecting clients "
                                           "to GitHub's download host")
    max_upload_size: int = setting(2 * 1024 ** 3, "largest file accepted by upload (GitHub's limit for one "
                                                  "release asset)", metavar="BYTES")
    max_uploads: int = setting(4, "uploads received at once, each spooled to disk up to --max-upload-size; "
                                  "more get 503", metavar="N")
    tag_template: str = setting("v{version}", "release tag of an uploaded version (an existing tag "
                                              "{version} is used too)",
                                metavar="TEMPLATE", parse=tag_template)
    max_connections: int = setting(200, "open connections served at once; more get 503", metavar="N")
    max_client_connections: int = setting(64, "open connections from one client address; more get 503",
                                          metavar="N")
    idle_timeout: float = setting(30.0, "close idle connections after", metavar="SECONDS")
    trusted_proxies: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = setting(
        (), "a load balancer's address or network (repeatable): its connections skip the per-client cap, and "
            "the client address logged is taken from its X-Forwarded-For", flag="--trusted-proxy",
        metavar="ADDR", repeat=True, parse=parse_networks)
    busy_threads: int = setting(2, "request threads doing work at once, in arrival order (one waiting "
                                   "on GitHub or a client gives its turn up); 0 = no limit", metavar="N")
    log_format: str = setting("text", "access and event log format", choices=("text", "json"))
    fallback_index: str = setting("", "the index for every project that no configured owner has for the "
                                      "caller (e.g. https://pypi.org/simple/): a redirect, or served through "
                                      "here with --proxy-downloads", metavar="URL")
    private_names: tuple[str, ...] = setting((), "a glob of normalized project names that are ours "
                                                 "(repeatable): never from --fallback-index, and 403, not "
                                                 "404, to a token that cannot see them (uv then stops)",
                                             flag="--private-name", metavar="PATTERN", repeat=True,
                                             parse=lambda patterns: tuple(normalize(p) for p in patterns))
    fallback_ttl: float = setting(600.0, "how long pages of --fallback-index are kept", metavar="SECONDS")
    token_env: str = setting("", "no-credentials mode: requests without credentials use the token in this "
                                 "environment variable, with the configured owners (loopback only)",
                             metavar="NAME")
    token_file: str = setting("", "no-credentials mode, with the token in this file", metavar="PATH")
    token_command: str = setting("", "no-credentials mode, with the token this command prints (e.g. 'gh auth "
                                     "token'); run at start and again when GitHub rejects it", metavar="CMD")

    @property
    def no_credentials(self) -> bool:
        """No-credentials mode: requests without credentials use the server's own token."""
        return bool(self.token_env or self.token_file or self.token_command)

    def __post_init__(self) -> None:
        """The rules between settings, however the Settings were made (flags, environment, TOML, code)."""
        if bool(self.certfile) != bool(self.keyfile):
            raise ConfigError("--certfile and --keyfile go together")
        if self.no_credentials and not is_loopback(self.host):
            raise ConfigError("--token-env/--token-file/--token-command serve this machine only: "
                              "--host must be loopback")
        if self.fallback_index and not self.owners:
            raise ConfigError("--fallback-index needs --owner: whose projects are never served from it")
        if self.no_credentials and not self.owners:
            raise ConfigError("--token-env/--token-file/--token-command need --owner: whose repos to serve")


def option_of(field: dataclasses.Field) -> Option:
    return field.metadata["option"]


def flag_of(field: dataclasses.Field) -> str:
    return option_of(field).flag or "--" + field.name.replace("_", "-")


def env_name(field: dataclasses.Field) -> str:
    return "PYPIHUB_" + flag_of(field)[2:].replace("-", "_").upper()


def coerce(field: dataclasses.Field, value: Any) -> Any:
    """A setting's value from a flag, the environment or TOML, as its field declares it."""
    option = option_of(field)
    if option.repeat:
        values = value.split() if isinstance(value, str) else list(value)
        return option.parse(values) if option.parse else tuple(str(v) for v in values)
    if isinstance(field.default, bool):  # a switch: the flag (or a true PYPIHUB_ word) says True
        if not isinstance(value, bool):
            raise ValueError(f"{flag_of(field)} is a switch, not {value!r}")
        return value
    parse = option.parse or (type(field.default) if field.default is not None else str)
    if option.choices and str(value) not in option.choices:
        raise ValueError(f"{flag_of(field)} must be one of {', '.join(option.choices)}")
    return parse(value)


# --- Upstream index (--fallback-index) and the server's own token ---


def page_bytes(page: Any) -> int:
    """What a fallback index's cached page holds (or its "no such project")."""
    return 1000 + sum(800 + 3 * len(f["url"]) for f in page["files"]) if isinstance(page, dict) else 1000


def nowhere(project: str) -> str:
    return f"No project {project} here, nor at the fallback index."


MAX_UPSTREAM_REDIRECTS = 5
UPSTREAM_CHUNK = 64 * 1024
REFUSED_ADDRESS = "The fallback index named a file at an address this server does not fetch from."


NAT64_PREFIXES = (ipaddress.ip_network("64:ff9b::/96"), ipaddress.ip_network("64:ff9b:1::/48"),
                  ipaddress.ip_network("::/96"))  # NAT64 (RFC 6052, 8215) and IPv4-compatible addresses


def embedded_ipv4(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address a NAT64 or IPv4-compatible IPv6 address carries in its last 32 bits."""
    if any(ip in prefix for prefix in NAT64_PREFIXES):
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return None


def is_public_address(address: str) -> bool:
    """An address on the internet at large: not loopback, private (10/8, 172.16/12, 192.168/16,
    fc00::/7), link-local (169.254/16, the cloud metadata address among them; fe80::/10), shared,
    reserved, multicast or unspecified; an IPv4-mapped IPv6 address as the IPv4 one it maps."""
    try:
        ip = ipaddress.ip_address(address.split("%")[0])
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address):
        embedded = ip.ipv4_mapped or ip.sixtofour or embedded_ipv4(ip)
        if embedded is not None and not is_public_address(str(embedded)):
            return False
    return ip.is_global and not ip.is_multicast


class Origin(NamedTuple):
    scheme: str
    host: str
    port: int


def origin_of(url: str) -> Origin:
    split = urllib.parse.urlsplit(url)
    try:
        port = split.port or (443 if split.scheme == "https" else 80)
    except ValueError:
        raise BadGateway(REFUSED_ADDRESS) from None
    return Origin(split.scheme.lower(), (split.hostname or "").lower(), port)


def checked_addresses(url: str, own: Origin, resolve: Callable[..., list]) -> list[str]:
    """The addresses to connect to for `url`, checked: the fallback index's own host and port as
    the operator named it; any other host only if every address it resolves to is public
    (issue: server-side requests). The connection goes to this very address, so a DNS answer
    that changes in between cannot send it elsewhere."""
    target = origin_of(url)
    if target.scheme not in ("http", "https") or not target.host:
        raise BadGateway(REFUSED_ADDRESS)
    try:
        addresses = [info[4][0] for info in resolve(target.host, target.port, type=socket.SOCK_STREAM)]
    except (OSError, UnicodeError):
        raise Unavailable("Could not reach the fallback index (its host did not resolve).") from None
    if not addresses or target != own and not all(map(is_public_address, addresses)):
        raise BadGateway(REFUSED_ADDRESS)
    return list(dict.fromkeys(addresses))


class PinnedConnection(http.client.HTTPConnection):
    """An HTTP connection to a host at addresses checked beforehand (see checked_addresses), tried
    in turn as socket.create_connection() tries a name's."""

    def __init__(self, host: str, port: int, addresses: list[str], timeout: float) -> None:
        super().__init__(host, port, timeout=timeout)
        self.addresses = addresses

    def connect(self) -> None:
        for address in self.addresses:
            try:
                self.sock = socket.create_connection((address, self.port), self.timeout)
                return
            except OSError as exc:
                failure = exc
        raise failure


class PinnedTLSConnection(PinnedConnection):
    """HTTPS to a checked address, the certificate verified for the host's name (SNI too)."""

    default_port = 443

    def connect(self) -> None:
        super().connect()
        self.sock = ssl.create_default_context().wrap_socket(self.sock, server_hostname=self.host)


class Watchdog:
    """Ends a connection's reads at a deadline, from a thread of its own (a blocked recv returns),
    and says so: a body cut there must never pass for a whole one."""

    def __init__(self, connection: http.client.HTTPConnection, deadline: float) -> None:
        self.connection, self.fired = connection, threading.Event()
        self.timer = threading.Timer(max(0.0, deadline - time.monotonic()), self.cut)
        self.timer.daemon = True
        self.timer.start()

    def cut(self) -> None:
        self.fired.set()
        with contextlib.suppress(OSError, AttributeError):
            self.connection.sock.shutdown(socket.SHUT_RDWR)

    def cancel(self) -> None:
        self.timer.cancel()


class UpstreamResponse:
    """An open answer of the fallback index (or a file's host): status, headers, and a body that
    is read within the request's one deadline, however slowly its bytes come."""

    def __init__(self, response: http.client.HTTPResponse, sock: socket.socket, deadline: float,
                 url: str, watchdog: Watchdog) -> None:
        self.response, self.sock, self.deadline = response, sock, deadline
        self.url, self.watchdog = url, watchdog
        self.status, self.headers = response.status, lower_keys(dict(response.getheaders()))
        self.idle: float | None = None  # a file's stream: each read gets this long, not one deadline

    def readinto(self, buffer: Any) -> int:
        """What one read of the socket gives (read1: a buffered readinto would wait for all of
        `buffer`, one trickled byte after another, past any deadline)."""
        deadline = time.monotonic() + self.idle if self.idle is not None else self.deadline
        if time.monotonic() >= deadline or self.watchdog.fired.is_set():
            raise socket.timeout("the fallback index's answer took too long")
        self.sock.settimeout(max(0.001, deadline - time.monotonic()))
        data = self.response.read1(len(buffer))
        if not data and self.watchdog.fired.is_set():  # cut at the deadline, not by the host
            raise socket.timeout("the fallback index's answer took too long")
        if not data and self.cut_short():
            raise ConnectionError("the fallback index's answer ended before its length or last chunk")
        buffer[:len(data)] = data
        return len(data)

    def cut_short(self) -> bool:
        """At the body's end: whether it ended early (short of its Content-Length, or a chunked body
        without its last chunk). http.client's read1 answers such an end with b"", as if whole."""
        response = self.response
        return bool(response.length) or bool(response.chunked and not response.isclosed())

    def read_all(self, limit: int) -> bytes:
        """Up to `limit` + 1 bytes of the body, within the deadline (GatewayTimeout past it)."""
        data, buffer = bytearray(), bytearray(UPSTREAM_CHUNK)
        try:
            while len(data) <= limit and (count := self.readinto(buffer)):
                data += buffer[:count]
            if self.watchdog.fired.is_set():  # cut at the deadline: what came is not the whole page
                raise socket.timeout("the fallback index's answer took too long")
        except (socket.timeout, TimeoutError):
            raise GatewayTimeout("The fallback index did not answer in time.") from None
        except (OSError, http.client.HTTPException):
            raise Unavailable("The fallback index's answer broke off.") from None
        return bytes(data)

    def close(self) -> None:
        self.watchdog.cancel()
        self.response.close()
        self.sock.close()


def open_upstream_once(url: str, method: str, headers: Mapping[str, str], deadline: float, own: Origin,
                       auth: str | None, resolve: Callable[..., list]) -> UpstreamResponse:
    addresses, target = checked_addresses(url, own, resolve), origin_of(url)
    kind = PinnedTLSConnection if target.scheme == "https" else PinnedConnection
    connection = kind(target.host, target.port, addresses, max(0.001, deadline - time.monotonic()))
    split = urllib.parse.urlsplit(url)
    sent = {"User-Agent": USER_AGENT, "Connection": "close", **headers}
    if auth and target == own:
        sent["Authorization"] = auth
    # The answer comes within the deadline as a whole, head and (for a page) body: each read's own
    # timeout would let a host that sends a header line every few seconds hold the request for
    # minutes. A file's stream cancels the watchdog once its head is in (see Upstream.file).
    watchdog = Watchdog(connection, deadline)
    try:
        connection.request(method, urllib.parse.urlunsplit(("", "", split.path or "/", split.query, "")),
                           headers=sent)
        sock, response = connection.sock, connection.getresponse()
        if watchdog.fired.is_set():  # the head was cut short: what http.client read is no answer
            raise socket.timeout("the fallback index's answer took too long")
        return UpstreamResponse(response, sock, deadline, url, watchdog)
    except (OSError, http.client.HTTPException, ssl.SSLError) as failed:
        watchdog.cancel()
        connection.close()
        if time.monotonic() >= deadline or isinstance(failed, (socket.timeout, TimeoutError)):
            raise GatewayTimeout("The fallback index did not answer in time.") from None
        raise Unavailable("Could not reach the fallback index.") from None


def open_upstream(url: str, method: str, headers: Mapping[str, str], deadline: float, own: Origin,
                  auth: str | None, resolve: Callable[..., list] = socket.getaddrinfo) -> UpstreamResponse:
    """GET (or HEAD) `url` of the fallback index or a file host it names: every hop's address
    checked, redirects followed only to checked places and never from https to http, the
    fallback index's own credentials (`auth`) sent to its own origin only."""
    for _ in range(MAX_UPSTREAM_REDIRECTS + 1):
        answer = open_upstream_once(url, method, headers, deadline, own, auth, resolve)
        location = answer.headers.get("location")
        if answer.status not in (301, 302, 303, 307, 308) or not location:
            return answer
        answer.close()
        moved = urllib.parse.urljoin(url, location)
        if origin_of(url).scheme == "https" and origin_of(moved).scheme != "https":
            raise BadGateway("The fallback index redirected from https to http.")
        url = moved
    raise BadGateway("The fallback index redirected too many times.")


def fallback_origin(url: str) -> tuple[str, str | None]:
    """The --fallback-index URL without its userinfo, and that userinfo as a Basic Authorization
    value: the credentials stay in the server (never in a Location, a page or a log line), and go
    over https only, or to a loopback host (ConfigError otherwise)."""
    split = urllib.parse.urlsplit(url)
    if split.username is None and split.password is None:
        return url, None
    if split.scheme != "https" and not is_loopback(split.hostname or ""):
        raise ConfigError("--fallback-index: credentials go over https only (or to a loopback host)")
    userinfo = f"{urllib.parse.unquote(split.username or '')}:{urllib.parse.unquote(split.password or '')}"
    bare = split._replace(netloc=split.netloc.rpartition("@")[2])
    return urllib.parse.urlunsplit(bare), "Basic " + base64.b64encode(userinfo.encode()).decode()


MAX_UPSTREAM_PAGE = 16 * 1024 * 1024  # PyPI's largest project pages are a few MiB


class Upstream:
    """The --fallback-index, for every project that no configured owner has for the caller: its
    PEP 691 JSON pages, kept for every token alike (they are public) with coalescing. With
    --proxy-downloads they are served with file URLs leading back through PyPIHub, which streams
    exactly the files those pages named: no other URL can be asked for."""

    def __init__(self, settings: Settings, clock: Clock, log: Log, gate: Gate,
                 monotonic: Clock = time.monotonic,
                 resolve: Callable[..., list] = socket.getaddrinfo) -> None:
        fallback, self.auth = fallback_origin(settings.fallback_index)
        self.base, self.resolve = fallback.rstrip("/") + "/", resolve
        self.own = origin_of(self.base)
        self.timeout, self.log, self.gate, self.monotonic = settings.upstream_timeout, log, gate, monotonic
        memory, size = settings.cache_memory * 1024 * 1024, settings.cache_size
        # Followers of a page's load wait no longer than the load itself may take.
        self.pages = Cache(settings.fallback_ttl, settings.stale_ttl, size, clock, memory * 10 // 100,
                           page_bytes, gate=gate, wait=self.timeout + 1.0)

    def url(self, project: str) -> str:
        return self.base + urllib.parse.quote(project) + "/"

    def page(self, project: str, media: str) -> tuple[bytes, str]:
        body = render_upstream(project, self._page(project), media)
        return body, quote_etag(body + media.encode())

    def has(self, project: str) -> bool:
        """Whether the fallback index has a page for the project (kept, as the page is)."""
        try:
            self._page(project)
        except NotFound:
            return False
        return True

    def file(self, project: str, key: str, filename: str, method: str, forward: Mapping[str, str]) -> Answer:
        """One file (or a wheel's PEP 658 .metadata) that the project's page names, streamed from its
        host as a download, never as something a browser would render."""
        entry = next((e for e in self._page(project)["files"] if e["key"] == key), None)
        name = str(entry["filename"]) if entry else ""
        metadata = name.endswith(".whl") and filename == name + METADATA_SUFFIX
        if not entry or filename != name and not metadata:
            raise NotFound(NO_SUCH_FILE)
        url = urllib.parse.urlsplit(entry["url"])
        if metadata:  # PEP 658: the file's URL, its path ending in .metadata
            url = url._replace(path=url.path + METADATA_SUFFIX)
        found = self.open(urllib.parse.urlunsplit(url), method, forward)
        if found.status not in (200, 206, 304, 412, 416):  # the last three answer the client's own conditions
            found.close()
            if found.status in (404, 410):
                raise NotFound(NO_SUCH_FILE)
            raise BadGateway(f"The fallback index's file host answered HTTP {found.status}.")
        found.watchdog.cancel()  # a file may be large: each read has the timeout, not the whole
        found.idle = self.timeout
        answer = stream_answer(found.status, found.headers, found if found.status in (200, 206) else None)
        if answer.stream is None:
            found.close()
        return as_download(answer, filename, metadata)

    def open(self, url: str, method: str, headers: Mapping[str, str]) -> UpstreamResponse:
        deadline = self.monotonic() + self.timeout
        return open_upstream(url, method, headers, deadline, self.own, self.auth, self.resolve)

    def _page(self, project: str) -> dict:
        found = self.pages.get_or_load(project, lambda: self._fetch(project), self.log)
        if isinstance(found, Missing):
            raise found.error()
        return found

    def _fetch(self, project: str) -> dict | Missing:
        """The project's page, read within --upstream-timeout as a whole (a page that trickles
        ends there), the gate given up meanwhile; no caller's credentials go upstream."""
        with self.gate.released():
            answer = self.open(self.url(project), "GET", {"Accept": UPSTREAM_ACCEPT})
            try:
                if answer.status in (404, 410):
                    return Missing(NotFound, nowhere(project), "not-visible")
                if answer.status != 200:
                    raise BadGateway(f"The fallback index answered HTTP {answer.status}.")
                data = answer.read_all(MAX_UPSTREAM_PAGE)
            finally:
                answer.close()
        media = answer.headers.get("content-type", "").partition(";")[0].strip().lower()
        page_url = answer.url
        if len(data) > MAX_UPSTREAM_PAGE:
            raise BadGateway("The fallback index's page is larger than this index takes.")
        return upstream_files(parse_upstream_page(data, media), page_url, project)


TOKEN_REREAD_INTERVAL = 5.0  # no-credentials mode: the least time between reads of a rejected token


class TokenSource:
    """The server's own token for requests without credentials (--token-env/-file/-command):
    read at start, and again when GitHub rejects it. Never logged."""

    def __init__(self, settings: Settings, environ: Mapping[str, str], clock: Clock = time.monotonic) -> None:
        self.settings, self.environ, self.clock = settings, environ, clock
        self.token, self.read_at = self.read(), clock()

    def read_again(self) -> None:
        """After GitHub rejected the token: read it again, at most every few seconds."""
        if self.clock() - self.read_at >= TOKEN_REREAD_INTERVAL:
            self.token, self.read_at = self.read(), self.clock()

    def describe(self) -> str:
        s = self.settings
        return f"${s.token_env}" if s.token_env else s.token_file or f"the command {s.token_command!r}"

    def read(self) -> str:
        s = self.settings
        try:
            if s.token_env:
                token = self.environ.get(s.token_env, "")
            elif s.token_file:
                with open(s.token_file, encoding="utf-8") as file:
                    token = file.read()
            else:
                token = subprocess.run(s.token_command, shell=True, capture_output=True, text=True,
                                       timeout=30, check=True).stdout
        except (OSError, subprocess.SubprocessError) as exc:
            raise ConfigError(f"cannot read the token from {self.describe()}: {type(exc).__name__}") from None
        if not TOKEN_RE.fullmatch(token.strip()):
            raise ConfigError(f"no token in {self.describe()}")
        return token.strip()


# --- Index: what each token may see, through the caches ---


def listing_bytes(value: Any) -> int:
    """What a cached listing (or "no such project", or an owner's project index) holds, with
    its renderings: measured with tracemalloc, rounded up (a test holds it to that)."""
    if isinstance(value, Listing):
        releases = sum(900 + 2 * (len(r.url) + len(r.title) + len(r.tag)) for r in value.releases)
        return 2000 + releases + 2 * len(value.description) + sum(
            1500 + 3 * len(a.url) + 8 * len(a.filename) + 4 * len(a.id) for a in value.files)
    if isinstance(value, OwnerIndex):
        rows = sum(600 + 2 * (len(r.description) + len(r.repo_url)) for r in value.rows.values())
        return 500 + rows + sum(200 + 2 * (len(k) + len(v)) for k, v in value.projects.items())
    if isinstance(value, dict):
        return 500 + sum(200 + 2 * (len(k) + len(v)) for k, v in value.items())
    if isinstance(value, tuple) and not isinstance(value, Missing):  # an owner's repo names
        return 1000 + sum(100 + len(name) for name in value[0])
    return 1000


def link_bytes(link: AssetLink) -> int:
    return 700 + len(link.url) + len(link.filename) + len(link.id) + len(link.repo)


REJECTIONS_PER_MINUTE = 20  # tokens GitHub rejected, per client address, before new ones wait
REJECTION_WINDOW = 60.0
REJECTING_ADDRESSES = 2048  # addresses remembered (each with at most the limit's tokens)


def address_bucket(address: str) -> str:
    """Who a client is for rationing: its IPv4 address, or its IPv6 /64 (one host's usual share)."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return address
    return str(ipaddress.ip_network(f"{ip}/64", strict=False)) if ip.version == 6 else str(ip)


class Rejections:
    """The tokens GitHub rejected, per client address, over the last minute (their keys, never the
    tokens). Past REJECTIONS_PER_MINUTE, a token from that address that GitHub has not accepted
    gets 429 without a call: no one can make this server send GitHub a stream of made-up tokens,
    while a CI farm behind one address, with a new good token every job, is never slowed."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self._lock = threading.Lock()
        self._seen: OrderedDict[str, dict[str, float]] = OrderedDict()  # bucket -> token key -> when

    def check(self, address: str, token_key: str) -> None:
        with self._lock:
            recent = self._recent(address_bucket(address))
            if len(recent) < REJECTIONS_PER_MINUTE or token_key in recent:
                return
            wait = int(min(recent.values()) + REJECTION_WINDOW - self.clock()) + 1
        raise TooManyRequests(f"GitHub rejected {len(recent)} tokens from this address in the last minute; "
                              f"retry in {wait} s.", [("Retry-After", str(wait))], wait)

    def record(self, address: str, token_key: str) -> None:
        with self._lock:
            recent = self._recent(address_bucket(address))
            recent[token_key] = self.clock()
            while len(self._seen) > REJECTING_ADDRESSES:
                self._seen.popitem(last=False)

    def _recent(self, bucket: str) -> dict[str, float]:
        """The bucket's rejections within the window (the caller holds the lock)."""
        now = self.clock()
        recent = {k: t for k, t in self._seen.pop(bucket, {}).items() if now - t < REJECTION_WINDOW}
        self._seen[bucket] = recent
        return recent


class Caller(NamedTuple):  # a tuple: made for every request, at a tuple's cost
    """One request's caller, as Index.connect() returns it: their GitHub session, their
    credentials, their token's key (a keyed hash: what per-token cache keys hold, never the
    token) and the configured owners (where a reserved user name looks)."""

    github: GitHub
    creds: Credentials
    key: str
    configured: tuple[str, ...] = ()

    @property
    def owner(self) -> str:
        return self.creds.owner

    @property
    def owners(self) -> list[str]:
        """Where a project is looked for: the Basic Auth owner, or (for a reserved user name) the
        configured owners, in their order."""
        return [self.creds.owner] if self.creds.owner else list(self.configured)

    def as_owner(self, owner: str) -> Caller:
        """The same caller, looking in `owner`'s repos."""
        if owner == self.creds.owner:
            return self
        return self._replace(creds=dataclasses.replace(self.creds, owner=owner))


LINK_SAFETY_MARGIN = 60.0  # seconds a signed URL must still be valid when handed out
IMMUTABLE_TTL = 24 * 3600.0  # digests and METADATA: fixed for an asset id, kept a day
MAX_CACHED_METADATA = 1024 * 1024  # ... and larger than this, served once, then neither kept nor advertised


class Files:
    """A project's files as one token may reach them: their links (signed URLs), facts (digests,
    REST ids, upload state) and wheel METADATA, and downloads. It answers with plain results: a
    URL to redirect to, or an answer streamed from the download host; the handler makes the rest.

    Keying, the guarantee: a link is kept under (token key, asset id) and handed to that token
    alone. Facts and METADATA never change for an asset, so they are kept per asset, but handed
    out only after the caller's own listing or link lookup has shown it the asset."""

    def __init__(self, settings: Settings, clock: Clock, log: Log, gate: Gate) -> None:
        self.settings, self.clock, self.log, self.gate = settings, clock, log, gate
        ttl, size, memory = settings.cache_ttl, settings.cache_size, settings.cache_memory * 1024 * 1024
        self.links = Cache(ttl, settings.stale_ttl, size * 64, clock, memory * 10 // 100, link_bytes,
                           gate=gate)
        # Facts about an asset never change for its id (and size/updatedAt): kept long.
        self.facts = Cache(IMMUTABLE_TTL, 0, size * 64, clock, memory * 5 // 100, lambda facts: 300,
                           gate=gate)
        self.metadata = Cache(IMMUTABLE_TTL, 0, size * 16, clock, memory * 25 // 100,
                              lambda metadata: len(metadata.compressed) + 400, gate=gate)

    def caches(self) -> list[tuple[str, Cache]]:
        return [("links", self.links), ("facts", self.facts), ("metadata", self.metadata)]

    def remember(self, caller: Caller, listing: Listing) -> None:
        """Keep each file's link, so a download needs no GitHub call: fresh for the TTL at most
        (and, for a signed URL, while it stays valid), then for the stale window in case GitHub fails."""
        for asset in listing.files:
            link = AssetLink(asset.id, listing.owner, asset.filename, asset.url, asset.size,
                             asset.metadata_url, listing.repo, asset.release_id, asset.rest_id)
            self._remember((caller.key, asset.id), link)

    def with_digests(self, github: GitHub, listing: Listing) -> Listing:
        """The listing with sha256 digests and REST ids, from the facts kept per asset, then
        GitHub's REST list for the rest; failed uploads' leftovers (state starter/open) dropped."""
        key = lambda a: (a.id, a.updated, a.size)  # noqa: E731
        unknown = {a.id for a in listing.files if a.sha256 is None and self.facts.get(key(a)) is None}
        if unknown:
            try:
                found = fetch_facts(github, listing.owner, listing.repo, unknown)
            except PyPIHubError as exc:  # e.g. an older GitHub Enterprise Server: list without hashes
                self.log(f"no sha256 digests for a listing: {exc.status} {exc.message}")
                found = {}
            for asset in listing.files:
                if asset.id in found:
                    self.facts.put(key(asset), found[asset.id])
        files = [(a, self.facts.get(key(a)) or AssetFacts(a.sha256)) for a in listing.files]
        return dataclasses.replace(listing, pages={}, files=tuple(
            dataclasses.replace(a, sha256=a.sha256 or facts.sha256, rest_id=facts.rest_id)
            for a, facts in files if facts.state == "uploaded"))

    def known_metadata(self, listing: Listing) -> dict[str, CoreMetadata]:
        """The wheels of a listing (the caller's own) whose METADATA has been read already."""
        return self.metadata.get_many(a.id for a in listing.files if a.filename.endswith(".whl"))

    def asset_link(self, caller: Caller, node_id: str, filename: str, fresh: bool = False,
                   url_needed: bool = True) -> AssetLink:
        """A file's link, remembered from this token's own listing or lookups, or from GitHub
        (always, if `fresh`); while GitHub fails, a remembered one (whose URL, if `url_needed`,
        still works). A file of another owner's repo is not served under this owner."""
        key = (caller.key, node_id)
        link = None if fresh else self.links.get(key)
        self.links.count("misses" if link is None else "hits")
        link = link or self._look_up_link(caller.github, key, node_id, filename, url_needed)
        if link.filename != filename:
            raise NotFound(NO_SUCH_FILE)
        if link.owner.lower() not in {o.lower() for o in caller.owners}:  # e.g. a transferred repo's
            raise NotFound(f"That file is in {link.owner}/{link.repo}; use {link.owner} as the user name.")
        if not is_safe_url(link.url):
            raise BadGateway("GitHub gave a download URL that cannot be used.")
        return link

    def core_metadata(self, caller: Caller, node_id: str, wheel: str) -> CoreMetadata:
        """PEP 658: a wheel's METADATA after the same checks as the wheel, read once per asset.
        Once read, it needs no working download URL: it is served through GitHub outages."""
        metadata = self.metadata.get(node_id)
        link = self.asset_link(caller, node_id, wheel, url_needed=metadata is None)
        metadata = metadata or self._read_metadata(caller, link)
        if metadata is NO_METADATA:
            raise MetadataTooLarge("The wheel's METADATA is larger than this index serves (1 MiB).")
        return metadata

    def download(self, caller: Caller, node_id: str, filename: str, method: str,
                 forward: Mapping[str, str]) -> str | Answer:
        """A file: its signed URL to redirect to; its bytes with --proxy-downloads (or when GitHub
        streams them itself rather than give a URL)."""
        with self.gate.released():  # GitHub and the download host: little work here
            return self._download(caller, node_id, filename, method, forward)

    def _download(self, caller: Caller, node_id: str, filename: str, method: str,
                  forward: Mapping[str, str]) -> str | Answer:
        link, timeout = self.asset_link(caller, node_id, filename), self.settings.upstream_timeout
        if self.settings.proxy_downloads:
            opened = lambda good: open_download(good.url, method, forward, timeout)  # noqa: E731
            return self._reaching(caller, link, opened, lambda answer: answer, forward)
        if not is_signed_url(link.url):
            found = self._via_asset_route(caller, link, {})
            if isinstance(found, Answer):
                return found
            link = found
        return link.url

    def _read_metadata(self, caller: Caller, link: AssetLink) -> CoreMetadata:
        timeout = caller.github.remaining()  # the request's own time with GitHub bounds these reads too
        try:
            with self.gate.released():  # Range reads from the download host
                data: bytes | None = self._reaching(
                    caller, link, lambda good: read_wheel_metadata(good, timeout),
                    lambda answer: read_streamed_metadata(answer, link.filename), {})
        except MetadataTooLarge:
            data = None
        metadata = parse_core_metadata(data) if data is not None else NO_METADATA
        # A listing may have advertised it before it was known to be large: served this once, and
        # remembered as too large, so listings stop advertising it (pip has no fallback for a 404).
        too_large = data is None or len(data) > MAX_CACHED_METADATA
        self.metadata.put(link.id, NO_METADATA if too_large else metadata)
        return metadata

    def _remember(self, key: Any, link: AssetLink) -> AssetLink:
        """Keep `link` with its expiry; an unsigned one (never handed out) for the TTL, for its ids."""
        now, ttl = self.clock(), self.settings.cache_ttl
        expires = link_expiry(link.url, now) if is_signed_url(link.url) else now + ttl
        link = dataclasses.replace(link, expires=expires)
        lifetime = expires - LINK_SAFETY_MARGIN - now if is_signed_url(link.url) else ttl
        if lifetime > 0:
            self.links.put(key, link, min(lifetime, ttl))
        return link

    def _look_up_link(self, github: GitHub, key: Any, node_id: str, filename: str,
                      url_needed: bool) -> AssetLink:
        """GitHub's link for an asset, remembered; while GitHub fails, a remembered one that still works."""
        try:
            return self._remember(key, fetch_asset_link(github, node_id, filename))
        except UPSTREAM_FAILURES as exc:
            link = self.links.get(key, stale=True)
            if link is None or url_needed and link.expires - LINK_SAFETY_MARGIN <= self.clock():
                raise
            self.links.count("stale")
            self.log(f"serving a remembered download link: GitHub failed ({exc.status} {exc.message})")
            return link

    def _reaching(self, caller: Caller, link: AssetLink, use: Callable[[AssetLink], Any],
                  streamed: Callable[[Answer], Any], forward: Mapping[str, str]) -> Any:
        """use(link) with a URL the download host takes: the remembered one; if it is refused, a
        new one from GitHub; if that is refused too, or none is a signed URL, the one GitHub's
        documented asset route gives (or the bytes it streams, for streamed())."""
        if is_signed_url(link.url):
            try:
                return use(link)
            except ExpiredLink:  # expired early, or refused
                pass
            fresh = self.asset_link(caller, link.id, link.filename, fresh=True)
            if is_signed_url(fresh.url) and fresh.url != link.url:
                try:
                    return use(fresh)
                except ExpiredLink:
                    pass
            link = fresh
        found = self._via_asset_route(caller, link, forward)
        # The route gives the wheel itself: a sibling .metadata asset's URL is of no more use.
        if isinstance(found, Answer):
            return streamed(found)
        return use(dataclasses.replace(found, metadata_url=None))

    def _via_asset_route(self, caller: Caller, link: AssetLink,
                         forward: Mapping[str, str]) -> AssetLink | Answer:
        """via_asset_route(), its signed URL remembered like a listing's."""
        found = via_asset_route(caller.github, link, forward)
        if isinstance(found, AssetLink):
            return self._remember((caller.key, link.id), found)
        return found


class Uploads:
    """Publishing (twine upload, uv publish) into GitHub Releases: GitHub's word on the token
    before a byte of the body is read, the target repo and write access before the file is kept,
    then the release asset. At most --max-uploads at once (each spools to disk); one upload of a
    version at a time, as a wheel and an sdist often come together.

    Keying: a token's confirmation is kept on that token's own Throttle, never shared."""

    def __init__(self, settings: Settings, clock: Clock, gate: Gate, repo_of: Callable[[Caller, str], dict],
                 published: Callable[[Caller, str], None]) -> None:
        self.settings, self.clock, self.gate = settings, clock, gate
        self.repo_of, self.published = repo_of, published
        self._slots = threading.BoundedSemaphore(settings.max_uploads)
        self._publishing = KeyedLocks()

    def receive(self, caller: Caller, headers: Headers | email.message.Message, body: Any,
                send_continue: Callable[[], None]) -> bool:
        """Read a legacy-API upload from `body` and publish it; whether the connection may be reused.
        Before a byte is read, everything the head allows is checked (and GitHub confirms the token);
        before the file is kept, GitHub confirms the repo and write access."""
        limit, length = self.settings.max_upload_size, headers.get("Content-Length")
        if "Transfer-Encoding" in headers or length is None:
            raise LengthRequired("Uploads need a Content-Length.")
        if int(length) > limit + MAX_FORM_FIELDS:  # head_problem() made sure it is a number
            raise PayloadTooLarge(f"The upload is larger than this index accepts ({limit} bytes).")
        boundary = multipart_boundary(headers.get("Content-Type"))
        with self.gate.released():  # its body, spooled, then GitHub: all waiting
            return self._receive(caller, body, int(length), boundary, send_continue)

    def _receive(self, caller: Caller, body: Any, length: int, boundary: bytes,
                 send_continue: Callable[[], None]) -> bool:
        limit = self.settings.max_upload_size
        self.confirm_token(caller.github)
        with self._slot():
            send_continue()
            reader = MultipartReader(body, length, boundary, limit,
                                     lambda fields: self.target(caller, fields))
            upload = reader.read()
            with upload.file:
                reusable = reader.finish()
                self.publish(caller, upload)
        return reusable

    def confirm_token(self, github: GitHub) -> None:
        """Before an upload's body is read: GitHub's word that the token is real (GET /rate_limit,
        which any token may ask and which costs no rate limit), kept for a minute."""
        throttle = github.throttle
        if not throttle.confirming.acquire(timeout=github.remaining()):
            raise GatewayTimeout("GitHub did not answer in time.")
        try:
            if throttle.confirmed_until <= self.clock():
                github.rest("/rate_limit")  # a rejected token raises Unauthorized, and is remembered
                throttle.confirmed_until = self.clock() + TOKEN_CHECK_TTL
        finally:
            throttle.confirming.release()

    def target(self, caller: Caller, fields: Mapping[str, str]) -> dict | None:
        """Before an upload's file is read: the repo it goes to (for a reserved user, in the first
        configured owner that has it), if this token may write there (GitHub still decides;
        viewerPermission is null for GitHub App tokens, so that passes)."""
        if not fields.get("name") or not fields.get("version"):
            raise BadRequest("Send the name and version fields before the file (as twine and uv do).")
        caller.github.renew()  # the fields took the client's time, not GitHub's
        if not PROJECT_RE.fullmatch(fields["name"]):
            return None  # check_upload() will say what is wrong, once the file is read
        repo = self.repo_of(caller, normalize(fields["name"]))
        name = f"{repo_owner(repo, caller.owner)}/{repo.get('name')}"
        if repo.get("isArchived"):  # PEP 792: an archived project takes no uploads (nor would GitHub)
            raise Conflict(f"{name} is archived on GitHub: it takes no new releases")
        if repo.get("viewerPermission") not in (None, *WRITERS):
            raise Forbidden(f"This token can only read {name} (GitHub: {repo.get('viewerPermission')}); "
                            "publishing needs write access")
        return repo

    def publish(self, caller: Caller, upload: Upload) -> None:
        """Check an upload, attach it to its version's release, and show it in this token's listing."""
        dist, settings, github = check_upload(upload), self.settings, caller.github
        github.renew()  # the body took its own time: GitHub gets --upstream-timeout from here
        repo = upload.repo or self.repo_of(caller, dist.project)
        caller = caller.as_owner(repo_owner(repo, caller.owner))
        publisher = Publisher(github, caller.owner, str(repo["name"]), settings.tag_template,
                              settings.upload_timeout)
        version = (caller.owner.lower(), str(repo["name"]).lower(), dist.version.lower())
        with self._publishing.hold(version):
            publisher.publish(upload, dist)
        self.published(caller, dist.project)

    @contextlib.contextmanager
    def _slot(self) -> Any:
        if not self._slots.acquire(blocking=False):
            raise Overloaded("Too many uploads at once; try again.")
        try:
            yield
        finally:
            self._slots.release()


PRIVATE_NAMES_KEPT = 20_000  # names served from GitHub, never served from --fallback-index


class Index:
    """The package index: listings, "no such project" answers, the owners' project indexes,
    release notes and the names served from GitHub, each as the caller's token may see them on
    GitHub, through bounded caches; files (Files) and publishing (Uploads) beside them.

    Every call takes a Caller (from connect()). Keying, the guarantee: listings, negatives and
    project indexes are kept under the caller's token key; notes under (release id, updatedAt),
    handed out only for releases the caller's own listing shows. The index has no socket of its
    own: the HTTP server in front of it is a separate layer."""

    def __init__(self, settings: Settings, gate: Gate, clock: Clock = time.time, sleep: Sleep = time.sleep,
                 log: Log = lambda message: None, own_token: TokenSource | None = None,
                 monotonic: Clock = time.monotonic) -> None:
        self.settings, self.clock, self.sleep, self.log = settings, clock, sleep, log
        self.own_token, self.gate, self.monotonic = own_token, gate, monotonic  # the gate: see Gate
        self.rest_url = settings.rest_url or rest_base(settings.graphql_url)
        self.served = frozenset(owner.lower() for owner in settings.owners)
        self.upstream = Upstream(settings, clock, log, gate, monotonic) if settings.fallback_index else None
        self._private: OrderedDict[str, None] = OrderedDict()  # names served from GitHub, to any token
        self._private_lock = threading.Lock()
        ttl, size, memory = settings.cache_ttl, settings.cache_size, settings.cache_memory * 1024 * 1024
        self.listings = Cache(ttl, settings.stale_ttl, size, clock, memory * 50 // 100, listing_bytes,
                              gate=gate, refresh=True)
        # An edit changes a release's updatedAt, so its next listing names a new key.
        self.notes = Cache(IMMUTABLE_TTL, 0, size * 16, clock, memory * 5 // 100,
                           lambda notes: 2 * len(notes) + 300, gate=gate)
        # What decides "not ours" for --fallback-index: fresh answers only, never stale ones.
        self.negatives = Cache(ttl, 0, size, clock, memory * 5 // 100, listing_bytes, gate=gate)
        self.throttles = Throttles(clock, size * 4)
        self.usage = GitHubUsage(clock, log)
        self.schema = GitHubSchema(log)  # one GraphQL server: what its schema has, learnt once
        self.rejections = Rejections(clock)
        self.files = Files(settings, clock, log, gate)
        self.uploads = Uploads(settings, clock, gate, self.owned_repo, self.forget)
        self._key_salt = secrets.token_bytes(32)

    # -- callers
    def own_credentials(self) -> Credentials | None:
        """No-credentials mode: the server's own token, with the configured owners; read again
        when GitHub has rejected it (e.g. `gh auth token` after a new login)."""
        if self.own_token is None:
            return None
        with self._private_lock:  # one re-read at a time, once per rejection
            if self.throttles.of(self.token_key(self.own_token.token)).rejected_until > self.clock():
                try:
                    with self.gate.released():  # it may run a command
                        self.own_token.read_again()
                except ConfigError as exc:
                    raise Unauthorized(f"The server's own token could not be read again ({exc}).") from None
            return Credentials("", self.own_token.token)

    def connect(self, creds: Credentials, calls: GitHubCalls, client: str = "") -> Caller:
        """The caller for one request; Forbidden for an owner not served here, 429 for a token
        GitHub has not accepted from an address it has rejected many tokens from."""
        settings, served = self.settings, self.served
        if creds.owner and served and creds.owner.lower() not in served:
            raise Forbidden("This index does not serve that owner.", why="owner-not-served")
        if not creds.owner and not served:
            raise Unauthorized("Give the repos' owner as the user name: this index has no --owner to look in")
        key = creds.key or self.token_key(creds.token)
        throttle = self.throttles.of(key)
        if client and not throttle.accepted:
            self.rejections.check(client, key)
        rejected = functools.partial(self.rejections.record, client, key) if client else lambda: None
        github = GitHub(settings.graphql_url, creds.token, settings.upstream_timeout, gate=self.gate,
                        rest_url=self.rest_url, calls=calls, record=self.usage.record, clock=self.clock,
                        sleep=self.sleep, throttle=throttle, schema=self.schema, rejected=rejected,
                        monotonic=self.monotonic)
        return Caller(github, creds, key, settings.owners)

    def token_key(self, token: str) -> str:
        """A keyed hash of the token: cache keys never hold the token itself."""
        return hmac.new(self._key_salt, token.encode(), hashlib.sha256).hexdigest()

    def with_key(self, creds: Credentials) -> Credentials:
        """The credentials with their token key, for a caller that keeps them (a connection)."""
        return dataclasses.replace(creds, key=creds.key or self.token_key(creds.token))

    # -- pages
    def root_page(self, caller: Caller, media: str) -> tuple[bytes, str]:
        """/simple/ in `media` (for a reserved user, the configured owners' projects), and its ETag."""
        projects: dict[str, str] = {}
        for owner in reversed(caller.owners):  # the first owner's name wins
            projects.update(self.owner_index(caller.as_owner(owner)).projects)
        body = render_root(sorted(projects), media)
        return body, quote_etag(body + media.encode())

    def project_page(self, caller: Caller, project: str, media: str) -> tuple[bytes, str] | str:
        """/simple/<project>/ in `media` and its ETag; for a project that is not ours and may come
        from --fallback-index, its page there (--proxy-downloads), or the URL to redirect to."""
        found = self.find_listing(caller, project)
        if isinstance(found, Listing):
            known = lambda: self.files.known_metadata(found)  # noqa: E731
            return rendered_page(found, media, known, self.files.metadata.generation)
        if self.is_private_name(project):
            # 403, not 404: uv's default index strategy goes on to the next index (PyPI) after a
            # 404 but stops at 401/403 (docs.astral.sh/uv, "Ignoring error codes"). The same
            # answer whether or not such a repo exists: the operator's pattern decides, not GitHub.
            raise Forbidden(f"{project} is a private name here (--private-name) and this token "
                            "sees no project of that name: give the token access to its repo",
                            why="private-name")
        if self.upstream is None:
            raise found.error()
        # A name kept from the fallback index (served from GitHub to some token) answers as a
        # name that the fallback index lacks too: the same 404, so no one learns it is ours.
        if not self.may_be_public(project) or not self.upstream.has(project):
            raise NotFound(nowhere(project), why="not-visible")
        if not self.settings.proxy_downloads:
            return self.upstream.url(project)
        return self.upstream.page(project, media)

    def upstream_file(self, caller: Caller, project: str, key: str, filename: str,
                      method: str, forward: Mapping[str, str]) -> Answer:
        """A fallback index's file, after the same decision as for its page ("GitHub wins"): never
        for a name this token has on GitHub, one served from GitHub to anyone, or a --private-name;
        and the fallback index is not asked about such a name."""
        self.uploads.confirm_token(caller.github)  # a real token, or this would be anyone's proxy to PyPI
        if self.upstream is None or not self.may_be_public(project):
            raise NotFound(NO_SUCH_FILE)
        if isinstance(self.find_listing(caller, project, moved_is_missing=True), Listing):
            raise NotFound(NO_SUCH_FILE)
        with self.gate.released():  # not ours (a moved repo is someone else's now)
            return self.upstream.file(project, key, filename, method, forward)

    def project_view(self, caller: Caller, project: str, index: str) -> tuple[bytes, str]:
        """/project/<name>/ and its ETag: from the caller's own listing (as /simple/<name>/), its
        wheels' Requires-Python where their METADATA is known, and the releases' notes."""
        listing = self.find_listing(caller, project)
        if isinstance(listing, Missing):
            raise listing.error()
        notes = self.release_notes(caller.github, listing)
        known = self.files.known_metadata(listing).items()
        requires = {node_id: m.requires_python for node_id, m in known if m.requires_python}
        releases = [dataclasses.replace(r, notes=notes.get(r.node_id, "")) for r in listing.releases]
        repo = ProjectRow(project, listing.owner, listing.repo, description=listing.description,
                          repo_url=listing.repo_url)
        body = render_project_page(listing, releases, requires, repo, index, caller.owner or "__token__")
        return body, quote_etag(body)

    def release_notes(self, github: GitHub, listing: Listing) -> dict[str, str]:
        """Sanitized notes by release node id, for the listing's releases: the kept ones, and the
        rest from GitHub, NOTES_PER_CALL a call. Without them (GitHub failed), the page shows none."""
        keys = {(r.node_id, r.updated): r for r in listing.releases if r.node_id}
        found = {key[0]: notes for key, notes in self.notes.get_many(keys).items()}
        missing = [key for key in keys if key[0] not in found]
        for start in range(0, len(missing), NOTES_PER_CALL):
            batch = missing[start:start + NOTES_PER_CALL]
            try:
                nodes = github.query(NOTES_QUERY, {"ids": [key[0] for key in batch]}).get("nodes") or []
            except (*UPSTREAM_FAILURES, Unavailable, NotFound):
                return found
            fetched = notes_by_id(nodes, {key[0]: keys[key].url for key in batch})
            for key in batch:
                self.notes.put(key, fetched.get(key[0], ""))
            found.update(fetched)
        return found

    def project_rows(self, caller: Caller) -> list[ProjectRow]:
        """`/`: what the owner's (or the configured owners') project index says of each project;
        the first owner's wins a name."""
        rows: dict[str, ProjectRow] = {}
        for owner in reversed(caller.owners):
            rows.update(self.owner_index(caller.as_owner(owner)).rows)
        return [rows[name] for name in sorted(rows)]

    # -- private names
    def may_be_public(self, project: str) -> bool:
        """Whether a name that is not ours for this caller may come from --fallback-index: not one
        that --private-name covers, nor one that was served from GitHub to any token."""
        with self._private_lock:
            private = project in self._private
        return not private and not self.is_private_name(project)

    def is_private_name(self, project: str) -> bool:
        """Whether --private-name covers the (normalized) name."""
        return any(fnmatch.fnmatchcase(project, pattern) for pattern in self.settings.private_names)

    def _remember_private(self, project: str) -> None:
        with self._private_lock:
            self._private[project] = None
            self._private.move_to_end(project)
            while len(self._private) > PRIVATE_NAMES_KEPT:
                self._private.popitem(last=False)

    # -- listings
    def find_listing(self, caller: Caller, project: str, moved_is_missing: bool = False) -> Listing | Missing:
        """The project's listing from the first owner that has it for this token; files are never
        merged across owners. In one-index mode (a reserved user, or --fallback-index), an owner's
        repo names and project index decide first, at no call per name, which owners may have it.
        A repo moved to another owner is never looked for elsewhere: Moved, unless `moved_is_missing`."""
        missing: Missing | None = None
        one_index = self.upstream is not None or not caller.owner
        for owner in caller.owners:
            concrete = caller.as_owner(owner)
            try:
                if one_index and not self._may_have(concrete, project):
                    continue
            except NotFound as exc:  # e.g. no such owner for this token
                return Missing.of(exc)
            found = self.listing(concrete, project)
            if isinstance(found, Missing):
                if found.kind is Moved and not moved_is_missing:
                    raise found.error()
                missing = found
            elif one_index and not found.files:  # a repo without Python files has no project of that name
                missing = Missing(NotFound, f"{owner}'s repo for {project} has no Python files for this "
                                  "token.", "no-python-files")
            else:
                if found.files and self.upstream is not None:  # an empty repo makes no name private
                    self._remember_private(project)
                return found
        return missing or Missing(NotFound, f"No owner of {', '.join(caller.owners)} has {project} "
                                  "for this token.", "not-visible")

    def listing(self, caller: Caller, project: str) -> Listing | Missing:
        key = ("listing", caller.key, caller.owner.lower(), project)
        return self.listings.get_or_load(key, lambda: self._load_listing(caller, project), self.log)

    def forget(self, caller: Caller, project: str) -> None:
        """After an upload: this token's listing and project index are read again."""
        self.listings.discard(("listing", caller.key, caller.owner.lower(), project))
        self.listings.discard(("projects", caller.key, caller.owner.lower()))

    def owner_index(self, caller: Caller) -> OwnerIndex:
        """Project -> repo (and a row for `/`) for the owner's recently pushed repos this token sees."""
        key = ("projects", caller.key, caller.owner.lower())
        load = lambda: fetch_owner_index(caller.github, caller.owner)  # noqa: E731
        return self.listings.get_or_load(key, load, self.log)

    def _may_have(self, caller: Caller, project: str) -> bool:
        """Whether the owner may have the project for this token. "No" is trusted only from fresh
        answers: when GitHub fails, the error stands (never a stale "not ours", which would send
        a private name to --fallback-index)."""
        token, owner, github = caller.key, caller.owner.lower(), caller.github
        names, complete = self.negatives.get_or_load(("names", token, owner),
                                                     lambda: fetch_repo_names(github, caller.owner), self.log)
        spellings = {normalize(name) for name in repo_candidates(project, self.settings.repo_map)} | {project}
        if not complete or spellings & names:
            return True
        projects = self.negatives.get_or_load(("projects", token, owner),
                                              lambda: owner_projects_or_none(github, caller.owner), self.log)
        return project in projects

    def owned_repo(self, caller: Caller, project: str) -> dict:
        """repo() in the first of the caller's owners that has the project."""
        for owner in caller.owners:
            try:
                return self.repo(caller.as_owner(owner), project)
            except NotFound:
                continue
        raise NotFound(f"No repo for {project} in {', '.join(caller.owners)} is visible to this token.")

    def repo(self, caller: Caller, project: str, pages: Pages = LISTING_PAGES[0]) -> dict:
        """The repo of a project, with its first page of releases: mapped or candidate names, then
        the owner's project index (for a project kept in a differently named repo)."""
        github, owner = caller.github, caller.owner
        try:
            return find_repo(github, owner, repo_candidates(project, self.settings.repo_map), pages)
        except (NotFound, Moved):  # a moved name: the owner may keep the project in another repo
            elsewhere = self.owner_index(caller).projects.get(project)
            if elsewhere is None:
                raise
            return find_repo(github, owner, [elsewhere], pages)

    def _load_listing(self, caller: Caller, project: str) -> Listing | Missing:
        try:
            listing = self._fetch_listing(caller, project)
        except (NotFound, Moved) as missing:  # kept too: as an extra index, pip asks for every dependency
            return Missing.of(missing)
        if not self.settings.hashes:
            listing = dataclasses.replace(listing, files=tuple(
                dataclasses.replace(a, sha256=None) for a in listing.files))
        elif self.schema.legacy:  # no ReleaseAsset.digest in GraphQL: from REST
            listing = self.files.with_digests(caller.github, listing)
        self.files.remember(caller, listing)
        return listing

    def _fetch_listing(self, caller: Caller, project: str) -> Listing:
        """The listing in full pages; when GitHub answers only part (over its resource limits),
        once more in smaller pages, and if that is partial too, 502 with GitHub's reason."""
        for pages in LISTING_PAGES:
            try:
                repo = self.repo(caller, project, pages)
                return fetch_listing(caller.github, caller.owner, project, repo, pages)
            except PartialAnswer as partial:
                failure = partial
        raise PartialAnswer(f"{failure.message} (in smaller pages too)")

    def metric_lines(self) -> list[str]:
        caches = [("listings", self.listings), *self.files.caches()]
        lines = metric_lines("pypihub_cache_entries", "gauge",
                             ((f'{{cache="{n}"}}', len(c)) for n, c in caches))
        lines += metric_lines("pypihub_cache_bytes", "gauge",
                              ((f'{{cache="{n}"}}', c.bytes) for n, c in caches))
        for stat in ("hits", "misses", "coalesced", "stale"):  # the per-token caches, looked up by key
            lines += metric_lines(f"pypihub_cache_{stat}_total", "counter",
                                  ((f'{{cache="{n}"}}', c.stats[stat]) for n, c in caches[:2]))
        return lines + self.usage.metric_lines()


# --- Logs and metrics ---


DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


def histogram(endpoint: str, row: list[float]) -> list[tuple[str, float]]:
    """One endpoint's histogram samples: cumulative buckets, then sum and count."""
    cumulative = itertools.accumulate(row[: len(DURATION_BUCKETS)])
    label = f'endpoint="{endpoint}"'
    buckets = [(f'_bucket{{{label},le="{b}"}}', int(n)) for b, n in zip(DURATION_BUCKETS, cumulative)]
    return buckets + [(f'_bucket{{{label},le="+Inf"}}', int(row[-1])), (f"_sum{{{label}}}", row[-2]),
                      (f"_count{{{label}}}", int(row[-1]))]


class Metrics:
    """Requests by endpoint and status, and their durations, for /metrics (Prometheus text
    format 0.0.4). Labels never hold a token or a name."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.requests: dict[tuple[str, int], int] = {}
        self.durations: dict[str, list[float]] = {}  # endpoint -> bucket counts + [sum, count]

    def observe_request(self, endpoint: str, status: int, seconds: float) -> None:
        with self._lock:
            self.requests[endpoint, status] = self.requests.get((endpoint, status), 0) + 1
            row = self.durations.setdefault(endpoint, [0.0] * (len(DURATION_BUCKETS) + 2))
            row[bisect.bisect_left(DURATION_BUCKETS, seconds)] += 1  # one bucket; summed when rendered
            row[-2] += seconds
            row[-1] += 1

    def metric_lines(self) -> list[str]:
        with self._lock:
            requests = sorted(self.requests.items())
            durations = sorted((endpoint, list(row)) for endpoint, row in self.durations.items())
        lines = metric_lines("pypihub_requests_total", "counter",
                             ((f'{{endpoint="{e}",status="{s}"}}', n) for (e, s), n in requests))
        samples = (sample for endpoint, row in durations for sample in histogram(endpoint, row))
        return lines + metric_lines("pypihub_request_duration_seconds", "histogram", samples)


class HttpDate:
    """The Date header's value (RFC 9110 6.6.1), formatted once a second, not for every answer."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self._last = (-1, "")  # (second, its text), replaced as a whole

    def __call__(self) -> str:
        second, last = int(self.clock()), self._last
        if last[0] != second:
            last = self._last = (second, email.utils.formatdate(second, usegmt=True))
        return last[1]


LOG_QUEUE_BYTES = 8 * 1024 * 1024  # log lines awaiting the writer; past this (stalled stderr), dropped
LOG_INTERVAL = 0.05  # seconds between the log writer's writes


class LogWriter:
    """The log's one writer thread. A request hands its line over and goes on (a flushed write
    of its own would cost it a syscall, and a stalled stderr would stall it); the writer writes
    what came, in order, in one write every LOG_INTERVAL or sooner when asked (flush()). Past
    LOG_QUEUE_BYTES waiting, lines are dropped and counted, never waited for. close() writes
    everything handed over before it; after it, lines are written at once."""

    def __init__(self, write: Callable[[list[str]], None], limit: int = LOG_QUEUE_BYTES,
                 interval: float = LOG_INTERVAL) -> None:
        self.write, self.limit, self.interval = write, limit, interval
        self._lines: list[str] = []
        self._lock = threading.Lock()  # guards the lines and counts; the writer holds it to swap them
        self._wake = threading.Event()
        self._written = threading.Condition()
        self.waiting = self.handed = self.done = self.dropped = 0
        self.closing = self.stopped = False
        self._thread = threading.Thread(target=self._run, name="pypihub-log", daemon=True)
        self._thread.start()

    def put(self, line: str) -> None:
        with self._lock:
            if self.stopped:
                self._write([line])
            elif self.waiting + len(line) > self.limit:
                self.dropped += 1
            else:
                self._lines.append(line)
                self.waiting += len(line)
                self.handed += 1

    def _run(self) -> None:
        reported, closing = 0, False
        while not closing:
            self._wake.wait(self.interval)
            self._wake.clear()
            with self._lock:
                batch, self._lines, self.waiting = self._lines, [], 0
                lost, reported, closing = self.dropped - reported, self.dropped, self.closing
            if batch or lost:
                self._write(batch + [f"{lost} log line(s) dropped: the log could not keep up"] * bool(lost))
            with self._written:
                self.done += len(batch)
                self._written.notify_all()
        with self._lock:  # what came during the last write; from now on, put() writes
            rest, self._lines, self.stopped = self._lines, [], True
            if rest:
                self._write(rest)
        with self._written:
            self.done += len(rest)
            self._written.notify_all()

    def _write(self, batch: list[str]) -> None:
        try:
            self.write(batch)
        except (OSError, ValueError):  # stderr closed: nowhere left to say so
            pass

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until every line handed over so far is written."""
        target = self.handed
        self._wake.set()
        with self._written:
            return self._written.wait_for(lambda: self.done >= target, timeout)

    def close(self, timeout: float = 10.0) -> None:
        with self._lock:
            self.closing = True
        self._wake.set()
        self._thread.join(timeout)


def write_stderr(lines: list[str]) -> None:
    sys.stderr.write("".join(line + "\n" for line in lines))
    sys.stderr.flush()


class AccessLine(NamedTuple):
    """What the access log says of one request, its method and path already redacted."""

    client: str
    method: str
    path: str
    endpoint: str
    status: int
    seconds: float
    calls: GitHubCalls
    sent: str
    why: str = ""


def access_text(line: AccessLine) -> str:
    """The access log's text line: who, what, the answer, its time, GitHub calls, bytes; for an
    error, its reason in one word (reason=not-visible, reason=bad-token, ...)."""
    why = f" reason={line.why}" if line.why and line.status >= 400 else ""
    return (f'{line.client} "{line.method} {line.path}" {line.status} {line.seconds * 1000:.1f}ms '
            f'gh={line.calls.graphql} rest={line.calls.rest} bytes={line.sent}{why}')


def access_record(line: AccessLine) -> dict[str, Any]:
    """The access log's JSON record: what access_text() says, as fields."""
    calls, why = line.calls, line.why if line.status >= 400 else ""
    return {"client": line.client, "method": line.method, "path": line.path, "status": line.status,
            "ms": round(line.seconds * 1000, 1), "github_calls": calls.graphql, "rest_calls": calls.rest,
            "bytes": line.sent, **({"reason": why} if why else {})}


def logged_target(command: str | None, path: str, authorization: str | None) -> tuple[str, str]:
    """A request's method and path as the log may show them: the token redacted in every form,
    also when a malformed line splits it between the two."""
    parts = (command or "-", path)
    method, target = (loggable_target(redact(part, authorization)) for part in parts)
    joined = f"{command}{path}".replace(" ", "")
    if TOKEN_SHAPE_RE.search(joined) and not any(TOKEN_SHAPE_RE.search(part) for part in parts):
        method = target = "[token]"  # a token split between a malformed line's method and target
    return method, target or "-"


class Events:
    """What the server tells its operator: one line per event, text or JSON (--log-format),
    through the log's one writer thread, and the request metrics."""

    def __init__(self, settings: Settings, clock: Clock = time.time, sink: Log | None = None) -> None:
        self.settings, self.clock = settings, clock
        self.writer = LogWriter((lambda lines: [sink(line) for line in lines]) if sink else write_stderr)
        self.metrics = Metrics()

    def emit(self, text: str, record: Mapping[str, Any]) -> None:
        if self.settings.log_format == "json":
            moment = datetime.datetime.fromtimestamp(self.clock(), datetime.timezone.utc)
            self.writer.put(json.dumps({"time": moment.isoformat(timespec="milliseconds"), **record}))
        else:
            self.writer.put(sanitize_log(text))

    def log(self, message: str) -> None:
        self.emit(message, {"message": message})

    def access(self, line: AccessLine) -> None:
        """One request's line, and its metrics; only the form --log-format asks for is made."""
        self.metrics.observe_request(line.endpoint, line.status, line.seconds)
        if self.settings.log_format == "json":
            self.emit("", access_record(line))
        else:
            self.emit(access_text(line), {})

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until every line logged so far is written."""
        return self.writer.flush(timeout)

    def close(self) -> None:
        self.writer.close()  # what was logged is written; later lines are written at once


# --- Server and handler ---


def tls_context(settings: Settings) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(settings.certfile, settings.keyfile)
    return context


class KernelTimeoutIO(socket.SocketIO):
    """A connection's reader when SO_RCVTIMEO bounds its reads (KERNEL_TIMEOUTS): the kernel's
    EAGAIN, which SocketIO reports as "no data yet", is the timeout that it is."""

    def readinto(self, buffer: Any) -> int | None:
        count = super().readinto(buffer)
        if count is None:
            raise socket.timeout("timed out")
        return count


def set_kernel_timeouts(sock: socket.socket, seconds: float) -> None:
    interval = struct.pack("ll", int(seconds), int(seconds % 1 * 1_000_000))
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, interval)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, interval)


def found_answer(location: str, vary: bool = False) -> Answer:
    """302 to a file's signed URL or to the fallback index's page: never kept by anyone."""
    return Answer(302, b"", [("Location", location), ("Cache-Control", "no-store"),
                             *([("Vary", "Authorization")] * vary)])


HTML_SECURITY_HEADERS = (("X-Content-Type-Options", "nosniff"),
                         ("Content-Security-Policy", "default-src 'none'; frame-ancestors 'none'"))


def index_page_answer(media: str, body: bytes, etag: str, if_none_match: str | None, ttl: float) -> Answer:
    """A Simple API page (PEP 503/691): private to the credentials, kept for the cache TTL."""
    headers = [("Content-Type", media), ("Vary", "Accept, Authorization"), ("ETag", etag),
               ("Cache-Control", f"private, max-age={int(ttl)}")]
    if media != JSON_V1:
        headers += list(HTML_SECURITY_HEADERS)
    return Answer(304, b"", headers) if etag_matches(if_none_match, etag) else Answer(200, body, headers)


HTML_PAGE_TYPE = "text/html; charset=utf-8"  # pages for people


def person_answer(body: bytes, etag: str, if_none_match: str | None) -> Answer:
    """A page for people: its own CSP (the stylesheet by hash), private to the credentials."""
    headers = [("Content-Type", HTML_PAGE_TYPE), ("Vary", "Authorization"), ("ETag", etag),
               ("Cache-Control", "private, no-cache"), *PAGE_SECURITY_HEADERS]
    return Answer(304, b"", headers) if etag_matches(if_none_match, etag) else Answer(200, body, headers)


def metadata_answer(metadata: CoreMetadata) -> Answer:
    return Answer(200, metadata.data, [("Content-Type", TEXT_PLAIN), ("ETag", f'"{metadata.sha256[:32]}"'),
                                       ("Cache-Control", "private, max-age=86400")])


def project_name(name: str, slash: bool, query: Mapping[str, list[str]]) -> str | Answer:
    """A project path's name in canonical form, or the redirect to it (PEP 503: normalized
    URLs; relative, to keep any path prefix)."""
    if not PROJECT_RE.fullmatch(name):
        raise NotFound("That is not a valid project name.")
    canonical = normalize(name)
    if name == canonical and slash:
        return canonical
    suffix = "?" + urllib.parse.urlencode(query, doseq=True) if query else ""
    return redirect(("../" if slash else "") + canonical + "/" + suffix)


PLAIN_HTTP_ON_TLS = (b"HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain; charset=utf-8\r\n"
                     b"Content-Length: 49\r\nConnection: close\r\n\r\n"
                     b"Plain HTTP was sent to this HTTPS port: use TLS.\n")
TLS_HANDSHAKE = b"\x16"  # the first byte of a TLS record that carries a ClientHello (RFC 8446 5.1)
# Linux bounds each recv/send of a blocking socket by SO_RCVTIMEO/SO_SNDTIMEO (socket(7)): no
# poll() before every call, as a Python-level socket timeout needs. Elsewhere, settimeout().
KERNEL_TIMEOUTS = sys.platform.startswith("linux") and hasattr(socket, "SO_RCVTIMEO")


class Connection(BaseHTTPRequestHandler):
    """One connection's requests, one at a time: the head read within its deadline, the answer
    written, the request logged. respond() is the one place where every answer is made, errors
    included, and where each request is logged once; route() (in Handler) makes the answer."""

    protocol_version = "HTTP/1.1"
    default_request_version = "HTTP/1.0"  # answer even a garbled request line with a status line
    server_version = f"pypihub/{__version__}"
    sys_version = ""  # no need to advertise the Python version
    disable_nagle_algorithm = True  # headers and body go out in separate writes
    server: PyPIHubServer
    # What the access log reads, also for a request line http.server could not parse.
    command: str | None = None
    path = ""
    headers: Headers | email.message.Message = Headers([])
    signed_in: tuple[str, Credentials] | None = None  # this connection's last Authorization, parsed

    def setup(self) -> None:
        self.timeout = self.head_timeout = self.server.settings.idle_timeout
        kernel = KERNEL_TIMEOUTS and self.server.tls is None
        if kernel:
            self.timeout = None  # no Python-level timeout: the kernel's bounds each call
        super().setup()
        if kernel:
            set_kernel_timeouts(self.connection, self.head_timeout)
            self.rfile.close()  # the socket stays open: this is only its reader
            self.rfile = io.BufferedReader(KernelTimeoutIO(self.connection, "rb"))

    def handle(self) -> None:
        try:
            super().handle()
        except ssl.SSLError as exc:
            self.close_connection = True
            if getattr(exc, "reason", "") == "HTTP_REQUEST":  # OpenSSL saw an HTTP request line
                self.refuse_plain_http()
        except (ConnectionError, BlockingIOError, socket.timeout, TimeoutError):
            self.close_connection = True  # BlockingIOError: SO_SNDTIMEO ran out during a write

    def refuse_plain_http(self) -> None:
        """Plain HTTP sent to the TLS port: a plain 400 that says so, as nginx answers, and a log line."""
        try:  # beside the TLS layer, whose handshake failed: the client reads plain HTTP
            socket.socket.sendall(self.connection, PLAIN_HTTP_ON_TLS)
        except OSError:
            pass
        sent = str(len(PLAIN_HTTP_ON_TLS))
        self.log_access("invalid", 400, 0.0, GitHubCalls(), sent, "plain-http-on-tls-port")

    def handle_one_request(self) -> None:
        # Idle or trickling, a connection has head_timeout for the whole request head (and, over
        # TLS, the handshake): the socket timeout alone bounds each read, not their sum.
        self.server.await_head(self.connection, self.head_timeout)
        if self.server.tls is None and self.rfile.peek(1)[:1] == TLS_HANDSHAKE:
            self.close_connection = True  # a TLS client: it waits for a handshake this port never makes
            self.log_access("invalid", 400, 0.0, GitHubCalls(), "0", "tls-on-plain-port")
            return
        try:
            super().handle_one_request()
        finally:
            self.server.gate.leave()
            self.server.head_done(self.connection)

    def parse_request(self) -> bool:
        """The request head, by parse_head() when it is plain and has all arrived, else by
        http.server's parser; then its checks. The gate is entered once the head is in: the
        request's work, up to its answer being written and logged, is done holding it."""
        line = self.raw_requestline
        plain = line.endswith((b" HTTP/1.1\r\n", b" HTTP/1.0\r\n"))  # else no header lines need follow
        buffered = self.rfile.peek() if plain else b""  # waits, if need be, for the rest of the head
        self.server.gate.enter()
        head = parse_head(line, buffered) if plain else None
        if head is not None:
            self.adopt_head(head)
        else:
            reader, self.rfile = self.rfile, HeadBudget(self.rfile, MAX_HEAD)
            try:
                with self.server.gate.released():  # it reads the head's lines as they come
                    if not super().parse_request():
                        return False
            finally:
                self.rfile = reader
        self.server.head_done(self.connection)
        problem = head_problem(self.headers)
        if problem:
            self.send_error(400, problem)
            return False
        return True  # Expect: 100-continue is upload()'s to answer (see handle_expect_100)

    def adopt_head(self, head: Head) -> None:
        """What http.server's parse_request() sets, from a head parse_head() read."""
        self.rfile.read(head.size)  # already buffered
        self.command, self.path, self.request_version = head.command, head.path, head.version
        self.requestline = self.raw_requestline.rstrip(b"\r\n").decode("latin-1")
        self.headers = head.headers
        connection = self.headers.get("Connection", "").lower()
        self.close_connection = connection == "close" or (head.version == "HTTP/1.0"
                                                          and connection != "keep-alive")

    def handle_expect_100(self) -> bool:
        return True  # "100 Continue" is sent by upload(), once the head has passed its checks

    # Every method is routed here; the answer is made in one place.
    def do_GET(self) -> None:
        self.server.track(+1)
        try:
            self.respond()
        finally:
            self.server.track(-1)

    do_HEAD = do_POST = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = do_TRACE = do_CONNECT = do_GET

    def respond(self) -> None:
        started, calls, endpoint, sent = time.perf_counter(), GitHubCalls(), "invalid", "-"
        if self.has_body():
            self.close_connection = True  # the body is not read, so the connection cannot be reused
        try:
            target = parse_target(self.command, self.path)
            endpoint = target.route.endpoint
            answer = self.route(target, calls)
        except PyPIHubError as exc:
            answer = error_answer(exc)
            if endpoint == "upload":  # twine shows the reason phrase, not the body (as PyPI does)
                answer.reason = sanitize_log(exc.message)[:200]
        except Exception:
            details = redact(traceback.format_exc(), self.headers.get("Authorization"))
            self.server.events.log(f"internal error: {details}")
            answer = error_answer(PyPIHubError("Internal error; the operator's log has details."))
        if endpoint == "upload":  # a write's answer is never kept by a browser or a proxy
            answer.headers.append(("Cache-Control", "no-store"))
        if self.server.stopping:
            self.close_connection = True
        try:
            sent = str(self.send_answer(answer))
        except ShortBody as short:
            self.close_connection = True  # the client sees a broken answer, never a short whole one
            sent = f"{short.sent}-cut-short"
        finally:
            if answer.stream is not None:
                answer.stream.close()
            self.log_access(endpoint, answer.status, time.perf_counter() - started, calls, sent, answer.why)

    def has_body(self) -> bool:
        length = self.headers.get("Content-Length", "0").strip()
        return length not in ("", "0") or "Transfer-Encoding" in self.headers

    def route(self, target: Target, calls: GitHubCalls) -> Answer:
        raise NotImplementedError  # Handler's

    def client(self) -> str:
        """Whom the request came from, for the log (see forwarded_client)."""
        # RFC 9110 5.3: repeated lines are one list (HAProxy appends a line of its own).
        forwarded = ", ".join(self.headers.get_all("X-Forwarded-For") or [])
        return forwarded_client(self.client_address[0], forwarded, self.server.settings.trusted_proxies)

    # -- the answer, out
    def send_answer(self, answer: Answer) -> int:
        """Send the answer; the body bytes sent."""
        headers = [("Server", self.server_version), ("Date", self.server.date())]
        headers += [(n, v) for n, v in answer.headers
                    if n.lower() not in ("content-length", "transfer-encoding")]
        length = answer.length if answer.stream is not None or answer.length is not None else len(answer.body)
        chunked = length is None and self.request_version == "HTTP/1.1"
        if chunked:
            headers.append(("Transfer-Encoding", "chunked"))  # so that a cut-off body shows as one
        elif length is None:
            self.close_connection = True  # HTTP/1.0: the end of the body is the end of the connection
        elif answer.status != 304:  # RFC 9110 8.6: a 304 gives no length other than the 200's
            headers.append(("Content-Length", str(length)))
        if self.close_connection:
            headers.append(("Connection", "close"))
        head = response_head(answer.status, answer.reason, headers)
        if self.request_version == "HTTP/0.9":
            head = b""  # HTTP/0.9 answers are the body alone
        with_body = self.command != "HEAD" and answer.status not in (204, 304)
        if answer.stream is None:
            # Head and body in one write: one syscall, and no delayed-ACK stall.
            self.write_now(head + answer.body if with_body else head)
            return len(answer.body) if with_body else 0
        self.write_now(head)
        with self.server.gate.released():
            return copy_stream(answer.stream, self.wfile, length, chunked) if with_body else 0

    def write_now(self, data: bytes) -> None:
        """Write `data`, keeping the gate while the socket takes it all at once (the common case:
        its send buffer has room), giving it up while a slow client makes the write wait."""
        sent = 0
        if self.server.tls is None and hasattr(socket, "MSG_DONTWAIT"):
            with contextlib.suppress(BlockingIOError):
                sent = self.connection.send(data, socket.MSG_DONTWAIT)
        if sent < len(data):
            with self.server.gate.released():
                self.wfile.write(memoryview(data)[sent:])

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """Errors raised by http.server itself (bad request line, headers too long, ...)."""
        self.close_connection = True
        # http.server quotes the request line in some messages: it may hold a token.
        phrase = (message or http.HTTPStatus(code).phrase).split(" (")[0]
        error = PyPIHubError(phrase, why="malformed-request")
        error.status = code
        sent = "-"
        try:
            sent = str(self.send_answer(error_answer(error)))
        finally:
            self.log_access("invalid", code, 0.0, GitHubCalls(), sent, error.why)

    def log_access(self, endpoint: str, status: int, seconds: float, calls: GitHubCalls, sent: str,
                   why: str = "") -> None:
        """One line a request (see access_record)."""
        authorization = (getattr(self, "headers", None) or {}).get("Authorization")
        method, path = logged_target(self.command, self.path, authorization)
        self.server.events.access(AccessLine(self.client(), method, path, endpoint, status, seconds, calls,
                                             sent, why))

    def log_request(self, code: Any = "-", size: Any = "-") -> None:
        pass  # log_access writes one line per request, with more in it

    def log_message(self, format: str, *args: Any) -> None:
        self.server.events.log(f"{self.client_address[0]} {loggable_target(format % args)}")


METRICS_TYPE = "text/plain; version=0.0.4; charset=utf-8"
NODE_ID_RE = re.compile(r"[A-Za-z0-9_+/=-]{1,200}")
FORWARDED_REQUEST_HEADERS = ("Range", "If-Range", "If-None-Match", "If-Modified-Since")


class Handler(Connection):
    """The routes' answers (see ROUTES): HTTP in, calls on the server's index, HTTP out. Nothing
    here caches or knows GitHub beyond the index's calls."""

    def route(self, target: Target, calls: GitHubCalls) -> Answer:
        """The route's answer (see ROUTES): each takes the target and the request's GitHub calls."""
        refuse_cross_site(self.command, self.headers, self.own_origin())  # before any GitHub call
        if target.route.endpoint != "upload" and self.has_body():
            raise BadRequest("GET and HEAD requests take no body.")
        answer: Callable[[Target, GitHubCalls], Answer] = getattr(self, target.route.answer)
        return answer(target, calls)

    def authenticate(self, calls: GitHubCalls) -> Caller:
        """The caller (or, without credentials, the server's own token in no-credentials mode), or 401/403."""
        header, index = self.headers.get("Authorization"), self.server.index
        if header and self.signed_in and self.signed_in[0] == header:
            creds = self.signed_in[1]  # keep-alive: the same header, parsed and keyed once
        elif header or index.own_token is None:
            creds = index.with_key(parse_credentials(header))
            self.signed_in = (header, creds)
        else:
            refuse_foreign_page(self.command, self.headers)
            creds = index.own_credentials()
        return index.connect(creds, calls, self.client())

    # -- the routes' answers
    def home(self, target: Target, calls: GitHubCalls) -> Answer:
        """`/`: without credentials, 401 with the how-to page (a browser then asks for them, and
        shows the page if the prompt is cancelled); with them, the owner's projects."""
        if not self.headers.get("Authorization") and self.server.index.own_token is None:
            headers = [("Content-Type", HTML_PAGE_TYPE), *PAGE_SECURITY_HEADERS, *Unauthorized.headers]
            return Answer(401, render_home(self.index_url()), headers)
        caller = self.authenticate(calls)
        rows = self.server.index.project_rows(caller)
        owners = caller.owner or ", ".join(self.server.settings.owners)
        body = render_projects_page(rows, query_text(target.query), owners, self.index_url())
        return person_answer(body, quote_etag(body), self.headers.get("If-None-Match"))

    def healthz(self, target: Target, calls: GitHubCalls) -> Answer:
        if self.server.stopping:  # a load balancer takes this instance out before it exits
            return Answer(503, b"draining\n", [("Content-Type", TEXT_PLAIN), ("Retry-After", "1")])
        return Answer(200, b"ok\n", [("Content-Type", TEXT_PLAIN)])

    def metrics(self, target: Target, calls: GitHubCalls) -> Answer:
        lines = self.server.events.metrics.metric_lines() + self.server.metric_lines()
        body = ("\n".join(lines + self.server.index.metric_lines()) + "\n").encode()
        return Answer(200, body, [("Content-Type", METRICS_TYPE)])

    def to_root(self, target: Target, calls: GitHubCalls) -> Answer:
        return redirect("simple/")

    def nowhere(self, target: Target, calls: GitHubCalls) -> Answer:
        raise NotFound("Nothing here. Project pages live at /simple/<project>/.")

    def root_page(self, target: Target, calls: GitHubCalls) -> Answer:
        caller = self.authenticate(calls)
        media = negotiate(self.accept(target.query))
        return self.index_page(media, *self.server.index.root_page(caller, media))

    def project_page(self, target: Target, calls: GitHubCalls) -> Answer:
        name = project_name(target.segments[1], len(target.segments) == 3, target.query)
        if isinstance(name, Answer):
            return name
        caller = self.authenticate(calls)
        media = negotiate(self.accept(target.query))
        page = self.server.index.project_page(caller, name, media)
        if isinstance(page, str):  # not ours: the fallback index's page (credentials stay here)
            return found_answer(page, vary=True)
        return self.index_page(media, *page)

    def project_view(self, target: Target, calls: GitHubCalls) -> Answer:
        name = project_name(target.segments[1], target.segments[2:] == ("",), {})
        if isinstance(name, Answer):
            return name
        body, etag = self.server.index.project_view(self.authenticate(calls), name, self.index_url())
        return person_answer(body, etag, self.headers.get("If-None-Match"))

    def asset(self, target: Target, calls: GitHubCalls) -> Answer:
        node_id, filename = target.segments[1:]
        wheel = filename[: -len(METADATA_SUFFIX)] if filename.endswith(".whl" + METADATA_SUFFIX) else None
        if not NODE_ID_RE.fullmatch(node_id) or parse_distribution(wheel or filename) is None:
            raise NotFound(NO_SUCH_FILE)
        caller, files = self.authenticate(calls), self.server.index.files
        if wheel:
            return metadata_answer(files.core_metadata(caller, node_id, wheel))
        found = files.download(caller, node_id, filename, self.command or "GET", self.forwarded())
        return found_answer(found) if isinstance(found, str) else as_download(found, filename)

    def upstream_file(self, target: Target, calls: GitHubCalls) -> Answer:
        """A fallback index's file, for callers with credentials only (never an anonymous proxy)."""
        project, key, filename = target.segments[1:]
        well_formed = UPSTREAM_KEY_RE.fullmatch(key) and PROJECT_RE.fullmatch(project)
        if self.server.index.upstream is None:
            return self.nowhere(target, calls)
        if not well_formed or project != normalize(project):
            raise NotFound(NO_SUCH_FILE)
        caller, method = self.authenticate(calls), self.command or "GET"
        return self.server.index.upstream_file(caller, project, key, filename, method, self.forwarded())

    def upload(self, target: Target, calls: GitHubCalls) -> Answer:
        """The legacy upload API of twine and uv publish: the file goes to a GitHub Release."""
        caller = self.authenticate(calls)
        reusable = self.server.index.uploads.receive(caller, self.headers, self.rfile, self.send_continue)
        self.close_connection = not reusable  # the body was read to its end, or not
        return Answer(200, b"OK\n", [("Content-Type", TEXT_PLAIN)])

    # -- what the routes read of the request
    def send_continue(self) -> None:
        """Once the head has passed the upload's checks: "100 Continue", if the client waits for it."""
        if self.headers.get("Expect", "").lower() == "100-continue" and self.request_version == "HTTP/1.1":
            self.send_response_only(100)  # RFC 9110 10.1.1: not for HTTP/1.0
            self.end_headers()

    def forwarded(self) -> dict[str, str]:
        return {name: self.headers[name] for name in FORWARDED_REQUEST_HEADERS if self.headers.get(name)}

    def accept(self, query: Mapping[str, list[str]]) -> str | None:
        # PEP 691: a ?format= parameter stands in for the Accept header.
        return query["format"][0] if query.get("format") else self.headers.get("Accept")

    def index_page(self, media: str, body: bytes, etag: str) -> Answer:
        return index_page_answer(media, body, etag, self.headers.get("If-None-Match"),
                                 self.server.settings.cache_ttl)

    def scheme(self) -> str:
        """How the client reached this server; behind a trusted proxy, as the proxy says."""
        scheme = "https" if self.server.tls else "http"
        if is_trusted(self.client_address[0], self.server.settings.trusted_proxies):
            scheme = self.headers.get("X-Forwarded-Proto", scheme)
        return scheme

    def index_url(self) -> str:
        """This index's /simple/ URL as the client reached it, for install lines (never with credentials)."""
        return index_url(self.headers.get("Host"), self.scheme())

    def own_origin(self) -> str:
        """This server's origin as a browser names it in Origin (RFC 6454): the default port left out."""
        scheme, host = self.scheme(), (self.headers.get("Host") or "").lower()
        return f"{scheme}://{host.removesuffix(':443' if scheme == 'https' else ':80')}"


OVERFLOW_HEAD_TIMEOUT = 1.0  # seconds such a connection has to send its request head


class OverflowHandler(Handler):
    """A connection past the caps (--max-connections, --max-client-connections): it still gets
    /healthz, so a load balancer does not mark a busy instance dead; anything else gets 503."""

    def setup(self) -> None:
        super().setup()
        self.timeout = self.head_timeout = min(OVERFLOW_HEAD_TIMEOUT, self.server.settings.idle_timeout)

    def route(self, target: Target, calls: GitHubCalls) -> Answer:
        self.close_connection = True
        if target.segments == ("healthz",):
            return super().route(target, calls)
        raise Overloaded("Too many connections; try again.")


HEALTH_RESERVE = 8  # connections past the caps that may still ask /healthz (and get 503 otherwise)
OVERFLOW_PER_CLIENT = 2  # of the HEALTH_RESERVE, so that one client cannot take them all
REFUSAL = (b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain; charset=utf-8\r\n"
           b"Retry-After: 1\r\nContent-Length: 33\r\nConnection: close\r\n\r\n"
           b"Too many connections; try again.\n")


class PyPIHubServer(ThreadingHTTPServer):
    """The transport: one thread per connection up to --max-connections (and a few past it, for
    /healthz, answered 503 otherwise), a deadline for every request head, TLS handshakes off the
    accept loop, and a drain for graceful shutdown. The package index behind it, the events
    (log and metrics) and the gate are made outside (see build_server) and handed in."""

    daemon_threads = True
    request_queue_size = 128  # the default 5 makes bursts of new connections wait for SYN retries

    def __init__(self, settings: Settings, index: Index, events: Events, gate: Gate, clock: Clock = time.time,
                 monotonic: Clock = time.monotonic) -> None:
        self.settings, self.index, self.events, self.gate = settings, index, events, gate
        self.monotonic, self.date = monotonic, HttpDate(clock)
        self._state = threading.Lock()  # counts and head deadlines
        self._drained = threading.Condition(self._state)
        self.connections = self.overflow = self.busy = 0
        self.clients: dict[str, int] = {}  # open connections by client address
        self.overflows: dict[str, int] = {}  # of those, past the caps
        self._heads: dict[socket.socket, float] = {}  # connections awaiting a request head: deadline
        self._normal: set[socket.socket] = set()  # the connections within the caps
        self._evicted: set[socket.socket] = set()  # of those, cut to make room and not yet gone
        self.evictions = 0
        self.stopping = False
        self.tls = tls_context(settings) if settings.certfile else None
        if ":" in settings.host:
            self.address_family = socket.AF_INET6
        super().__init__((settings.host, settings.port), Handler)

    def server_close(self) -> None:
        super().server_close()
        self.events.close()

    # Connections: caps, head deadlines, and a drain for graceful shutdown.
    def get_request(self) -> tuple[socket.socket, Any]:
        sock, address = super().get_request()
        if self.tls is not None:
            # The handshake happens on first read, in the worker thread: a client that connects
            # and never speaks must not stall the accept loop.
            sock = self.tls.wrap_socket(sock, server_side=True, do_handshake_on_connect=False)
        return sock, address

    def process_request(self, request: Any, client_address: Any) -> None:
        """Serve the connection in a thread of its own: a normal one within the caps (making room,
        when they are full, by cutting the connection that has waited longest for a request); past
        them, one of HEALTH_RESERVE that answers only /healthz; past those, refuse it at once."""
        kind = self.admit(request, client_address[0])
        if kind is None:
            return self.refuse(request)
        handler = OverflowHandler if kind == "overflow" else Handler
        threading.Thread(target=self.serve_connection, args=(request, client_address, handler, kind),
                         daemon=True).start()

    def admit(self, sock: socket.socket, client: str) -> str | None:
        settings, victim = self.settings, None
        with self._state:
            mine = self.clients.get(client, 0) < settings.max_client_connections or is_trusted(
                client, settings.trusted_proxies)  # a balancer: all its clients' connections
            full = self.connections - len(self._evicted) >= settings.max_connections
            if mine and full:
                victim = self._longest_waiting()
            within = mine and (not full or victim is not None)
            spare = self.overflow < HEALTH_RESERVE and self.overflows.get(client, 0) < OVERFLOW_PER_CLIENT
            kind = "normal" if within else "overflow" if spare else None
            if kind is not None:
                self.connections += kind == "normal"
                self.overflow += kind == "overflow"
                self.clients[client] = self.clients.get(client, 0) + 1
                self.overflows[client] = self.overflows.get(client, 0) + (kind == "overflow")
            if kind == "normal":
                self._normal.add(sock)
        if victim is not None:
            self.cut(victim)
        return kind

    def _longest_waiting(self) -> socket.socket | None:
        """The normal connection that has waited longest for a request head (idle, or its head
        trickling): cut to make room, so that idle connections cannot keep active clients out.
        A connection doing a request is never one. The caller holds the lock."""
        waiting = [sock for sock in self._heads if sock in self._normal and sock not in self._evicted]
        if not waiting:
            return None
        victim = min(waiting, key=self._heads.__getitem__)
        del self._heads[victim]
        self._evicted.add(victim)
        self.evictions += 1
        return victim

    def cut(self, sock: socket.socket) -> None:
        try:  # the plain socket's shutdown, also for TLS: its reader in the other thread wakes at once
            socket.socket.shutdown(sock, socket.SHUT_RDWR)
        except OSError:
            pass

    def serve_connection(self, request: Any, client_address: Any, handler: type, kind: str) -> None:
        try:
            handler(request, client_address, self)
        except Exception:
            self.handle_error(request, client_address)
        finally:
            self.shutdown_request(request)
            self.release(request, client_address[0], kind)

    def release(self, sock: socket.socket, client: str, kind: str) -> None:
        with self._state:
            self._normal.discard(sock)
            self._evicted.discard(sock)
            self.connections -= kind == "normal"
            self.overflow -= kind == "overflow"
            self.clients[client] -= 1
            self.overflows[client] -= kind == "overflow"
            if not self.clients[client]:
                del self.clients[client], self.overflows[client]

    def refuse(self, sock: socket.socket) -> None:
        """Answer 503 from the accept loop without blocking it (over TLS, only close), then close."""
        self.events.metrics.observe_request("refused", 503, 0.0)
        if self.tls is None:
            try:
                sock.setblocking(False)
                sock.recv(65536)  # what already arrived, so closing does not reset the connection
            except OSError:
                pass
            try:
                sock.send(REFUSAL)
            except OSError:
                pass
        self.shutdown_request(sock)

    def await_head(self, sock: socket.socket, seconds: float) -> None:
        """Give `sock` `seconds` to deliver a whole request head, however slowly its bytes come."""
        with self._state:
            self._heads[sock] = self.monotonic() + seconds

    def head_done(self, sock: socket.socket) -> None:
        with self._state:
            self._heads.pop(sock, None)

    def service_actions(self) -> None:
        """Between polls of the accept loop: cut the connections whose head is overdue."""
        now = self.monotonic()
        with self._state:
            late = [sock for sock, deadline in self._heads.items() if deadline <= now]
            for sock in late:
                del self._heads[sock]
        for sock in late:
            self.cut(sock)

    def track(self, delta: int) -> None:
        with self._state:
            self.busy += delta
            if self.stopping:  # only drain() waits for this
                self._drained.notify_all()

    def drain(self, grace: float) -> bool:
        """Wait up to `grace` seconds for requests in progress to finish."""
        deadline = self.monotonic() + grace
        with self._state:
            self.stopping = True
            while self.busy and deadline > self.monotonic():
                self._drained.wait(deadline - self.monotonic())
            return self.busy == 0

    def handle_error(self, request: Any, client_address: Any) -> None:
        kind = sys.exc_info()[0]
        self.events.log(f"{client_address[0]} connection error: {kind.__name__ if kind else 'unknown'}")

    def metric_lines(self) -> list[str]:
        lines = metric_lines("pypihub_open_connections", "gauge", [("", self.connections + self.overflow)])
        lines += metric_lines("pypihub_requests_in_progress", "gauge", [("", self.busy)])
        dropped, cut = [("", self.events.writer.dropped)], [("", self.evictions)]
        lines += metric_lines("pypihub_log_lines_dropped_total", "counter", dropped)
        return lines + metric_lines("pypihub_connections_cut_for_room_total", "counter", cut)


def build_server(settings: Settings, clock: Clock = time.time, sleep: Sleep = time.sleep,
                 sink: Log | None = None, own_token: TokenSource | None = None,
                 strict: bool = False) -> PyPIHubServer:
    """The server and what it is handed: the gate (`strict`: see Gate), the events, the index."""
    gate, events = Gate(settings.busy_threads, strict), Events(settings, clock, sink)
    index = Index(settings, gate, clock, sleep, events.log, own_token)
    return PyPIHubServer(settings, index, events, gate, clock)


# --- Command line ---


def help_text(field: dataclasses.Field) -> str:
    option = option_of(field)
    if isinstance(field.default, bool) or field.default in ("", None, ()):
        return option.help
    shown = f"{field.default:g}" if isinstance(field.default, float) else field.default
    return f"{option.help} (default {shown})"


def flag_arguments(field: dataclasses.Field) -> dict[str, Any]:
    """argparse's add_argument() keywords for a Settings field."""
    option = option_of(field)
    arguments: dict[str, Any] = {"dest": field.name, "help": help_text(field)}
    if isinstance(field.default, bool):
        return {**arguments, "action": "store_const", "const": not field.default}
    if option.repeat:
        arguments["action"] = "append"
    elif option.parse is None and type(field.default) in (int, float):
        arguments["type"] = type(field.default)
    return {**arguments, **({"metavar": option.metavar} if option.metavar else {}),
            **({"choices": option.choices} if option.choices else {})}


AUTH_MODEL = ("Clients log in with HTTP Basic: the user is the GitHub owner of the repos (an organization "
              "or a user, not your own login), the password a GitHub token that can read them. PyPIHub "
              "passes the token to GitHub, which decides what it sees. To learn why an install fails: "
              "pypihub check [--owner OWNER] [PROJECT ...] (or python3 pypihub.py check ...).")


def build_parser(prog: str = "pypihub") -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog, description="A Python package index over the assets of GitHub Releases. " + AUTH_MODEL,
        epilog="Every flag can also be set as PYPIHUB_<FLAG> (e.g. PYPIHUB_GRAPHQL_URL); flags win.")
    for field in dataclasses.fields(Settings):
        parser.add_argument(flag_of(field), **flag_arguments(field))
    parser.add_argument("--config", metavar="FILE",
                        help="TOML file in the original PyPIHub layout (Python 3.11+)")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    return parser


def read_config(path: str) -> dict:
    try:
        import tomllib  # novm: optional, guarded by ImportError below
    except ImportError:
        raise ConfigError("--config needs Python 3.11+ (tomllib); use flags or PYPIHUB_* variables") from None
    try:
        with open(path, "rb") as file:
            return tomllib.load(file)
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"cannot read config {path}: {exc}") from None


def config_values(config: Mapping[str, Any]) -> dict[str, Any]:
    """Setting values from the original project's TOML layout."""
    values: dict[str, Any] = {}
    for field in dataclasses.fields(Settings):
        node: Any = config if option_of(field).toml else None
        for part in option_of(field).toml:
            node = node.get(part) if isinstance(node, dict) else None
        if node is not None:
            values[field.name] = node
    return values


TRUE_WORDS = ("1", "true", "yes", "on")
FALSE_WORDS = ("0", "false", "no", "off")


def env_values(environ: Mapping[str, str]) -> dict[str, Any]:
    """Setting values from PYPIHUB_<FLAG> variables: --graphql-url is PYPIHUB_GRAPHQL_URL,
    --no-hashes PYPIHUB_NO_HASHES=1; repeatable flags take a space-separated list."""
    values: dict[str, Any] = {}
    for field in dataclasses.fields(Settings):
        raw = environ.get(env_name(field), "")
        if raw and isinstance(field.default, bool):
            word = raw.strip().lower()
            if word not in TRUE_WORDS + FALSE_WORDS:  # "ture" read as false would be a silent surprise
                raise ConfigError(f"{env_name(field)}={raw!r}: give 1/0, true/false, yes/no or on/off")
            values.update({field.name: not field.default} if word in TRUE_WORDS else {})
        elif raw:
            values[field.name] = raw
    return values


def settings_from(given: dict[str, Any], environ: Mapping[str, str]) -> Settings:
    """Settings from parsed flags (build_parser's), then PYPIHUB_* variables, --config, defaults."""
    config_path = given.pop("config") or environ.get("PYPIHUB_CONFIG")
    flags = {name: value for name, value in given.items() if value is not None}
    config = config_values(read_config(config_path)) if config_path else {}
    merged = {**config, **env_values(environ), **flags}
    try:
        settings = Settings(**{f.name: coerce(f, merged[f.name]) for f in dataclasses.fields(Settings)
                               if f.name in merged})
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"bad setting: {exc}") from None
    return settings


def build_settings(argv: Sequence[str] | None, environ: Mapping[str, str]) -> Settings:
    """Settings from flags, then PYPIHUB_* variables, then --config, then defaults."""
    return settings_from(vars(build_parser().parse_args(argv)), environ)


# --- Command line: pypihub check ---

# Token prefixes: GitHub's "About authentication to GitHub"; ghs_ also in 2026's ghs_<app id>_<JWT>.
TOKEN_KINDS = (("github_pat_", "a fine-grained personal access token"),
               ("ghp_", "a classic personal access token"), ("gho_", "an OAuth app token"),
               ("ghu_", "a GitHub App user-to-server token"),
               ("ghs_", "a GitHub App installation token (Actions' GITHUB_TOKEN is one)"),
               ("ghr_", "a GitHub App refresh token (not for API calls)"))
FINE_GRAINED_FIX = ("check the name, and that the token can read the repo (a fine-grained token: add "
                    "the repo to its repository access)")


def token_kind(token: str) -> str:
    """What a token is, by its prefix (a token's shape is never checked: GitHub decides)."""
    return next((kind for prefix, kind in TOKEN_KINDS if token.startswith(prefix)),
                "a token of no GitHub prefix (an old classic token, or GitHub Enterprise Server's)")


class Finding(NamedTuple):
    """One line of `pypihub check`: what was checked, whether it works, and the likely fix if not."""

    section: str
    ok: bool
    text: str
    fix: str = ""


VIEWER_QUERY = """
query Viewer { viewer { login } }
"""
RATE_QUERY = """
query RateLimit { rateLimit { limit remaining resetAt } }
"""
OWNER_QUERY = """
query OwnerCheck($owner: String!) {
  repositoryOwner(login: $owner) { login repositories(first: 1) { totalCount } }
}
"""


def object_at(data: Any, name: str) -> dict:
    """data[name] when that is an object, else {}: GitHub's answers are read, never trusted for shape."""
    value = data.get(name) if isinstance(data, dict) else None
    return value if isinstance(value, dict) else {}


def check_token(github: GitHub, token: str) -> tuple[list[Finding], str]:
    """Whether GitHub takes the token, what kind it is, whose, its scopes and GraphQL budget; and
    the viewer's login ("" for an App's installation, which may name no user)."""
    try:
        _, headers = github.rest("/rate_limit")  # any token may ask; it costs no rate limit
    except Unauthorized:
        return [Finding("Token", False, f"rejected by GitHub: {token_kind(token)}",
                        "make a new token (it may have expired or been revoked), or check for a typo")], ""
    scopes = headers.get("x-oauth-scopes")  # classic tokens only
    found = [Finding("Token", True, f"accepted: {token_kind(token)}"
                     + (f"; scopes: {scopes or 'none'}" if scopes is not None else ""))]
    try:
        login = str(object_at(github.query(VIEWER_QUERY, {}), "viewer").get("login") or "")
    except PyPIHubError:
        login = ""  # GitHub does not document what an installation's viewer is: either way is fine
    login = login if LOGIN_RE.fullmatch(login.removesuffix("[bot]")) else ""
    found.append(Finding("Token", True, f"belongs to {login}" if login else "belongs to a GitHub App"))
    rate = object_at(github.query(RATE_QUERY, {}), "rateLimit")
    left = isinstance(rate.get("remaining"), int) and rate["remaining"] > 0
    remaining, limit, reset = rate.get("remaining"), rate.get("limit"), rate.get("resetAt")
    budget = f"GraphQL rate limit: {remaining} of {limit} left, resets {reset}"
    found.append(Finding("Token", left, budget, "" if left else "wait for the reset"))
    return found, login


def check_owner(index: Index, caller: Caller) -> tuple[list[Finding], list[str]]:
    """Whether the owner resolves for the token, SSO, how many repos it sees, the projects there."""
    section = f"Owner {caller.owner}"
    try:
        owner = caller.github.query(OWNER_QUERY, {"owner": caller.owner}).get("repositoryOwner")
        projects = sorted(index.owner_index(caller).projects) if isinstance(owner, dict) else []
    except Forbidden as refused:
        return [Finding(section, False, refused.message, "authorize the token for the org's SSO")], []
    except NotFound:
        owner, projects = None, []
    except PyPIHubError as failed:
        return [Finding(section, False, failed.message, "see GitHub's reason")], []
    if not isinstance(owner, dict):
        return [Finding(section, False, "does not resolve for this token",
                        "the Basic Auth user is the repos' owner (an org or a user), not your own login")], []
    count = object_at(owner, "repositories").get("totalCount")
    listed = ", ".join(projects) or "none"
    return [Finding(section, bool(count), f"resolves; {count} repos visible to this token",
                    "" if count else "is it the repos' owner (often an organization, not your own login)? "
                                     "else give the token access to its repos"),
            Finding(section, True, f"projects in its newest releases: {listed}")], projects


def why_mapped(settings: Settings, project: str, repo: str) -> str:
    """Why a project maps to that repo: a --repo-map rule, its own name, or the owner's project index."""
    if any(rule.pattern.search(project) for rule in settings.repo_map):
        return "--repo-map"
    names = {normalize(name) for name in repo_candidates(project, ())}
    return "its name" if normalize(repo) in names else "the owner's project index"


def metadata_finding(index: Index, caller: Caller, section: str, wheels: Sequence[Asset]) -> list[Finding]:
    if not wheels:
        return [Finding(section, True, "no wheels: no METADATA to serve (pip builds sdists)")]
    try:
        index.files.core_metadata(caller, wheels[-1].id, wheels[-1].filename)
    except PyPIHubError as failed:
        return [Finding(section, False, f"METADATA of {wheels[-1].filename}: {failed.message}",
                        "check that GitHub's download host can be reached from here")]
    return [Finding(section, True, f"METADATA read from {wheels[-1].filename}")]


def state_findings(section: str, repo: Mapping[str, Any], listing: Listing) -> list[Finding]:
    """Yanked versions, immutable releases, archived, and whether the token may publish."""
    yanked = sorted({a.version for a in listing.files if a.yanked is not None}, key=pep440_key)
    states = [f"yanked: {', '.join(yanked) or 'none'}", f"{sum(r.immutable for r in listing.releases)} "
              "immutable releases"] + (["archived: takes no uploads"] if listing.archived else [])
    permission = repo.get("viewerPermission")
    if permission is None:  # GitHub: "null if authenticated as an GitHub App"
        publish = Finding(section, True, "publishing: GitHub decides at upload (an App token has no "
                                         "viewerPermission)")
    else:
        may = permission in WRITERS
        publish = Finding(section, may, f"may {'' if may else 'not '}publish ({permission})",
                          "" if may else "publishing needs write access to the repo's contents")
    return [Finding(section, True, "; ".join(states)), publish]


def check_project(index: Index, caller: Caller, project: str) -> list[Finding]:
    """The repo a project maps to and why, its versions and files, hashes, METADATA, states and
    whether the token may publish to it."""
    section = f"Project {project}"
    try:
        repo = index.repo(caller, project)
        listing = index.listing(caller, project)
        if isinstance(listing, Missing):
            raise listing.error()
    except (NotFound, Moved) as missing:
        return [Finding(section, False, missing.message, FINE_GRAINED_FIX)]
    except PyPIHubError as failed:
        return [Finding(section, False, failed.message, "see GitHub's reason")]
    files, wheels = listing.files, [a for a in listing.files if a.filename.endswith(".whl")]
    why = why_mapped(index.settings, project, listing.repo)
    found = [Finding(section, True, f"{caller.owner}/{repo.get('name')} ({why})"),
             Finding(section, bool(files), f"{len({a.version for a in files})} versions, {len(files)} files",
                     "" if files else "attach wheels or sdists to a published release"),
             Finding(section, True, f"sha256 for {sum(bool(a.sha256) for a in files)} of {len(files)} files")]
    found += metadata_finding(index, caller, section, wheels)
    return found + state_findings(section, repo, listing)


def configuration_lines(index_url: str, owner: str, projects: Sequence[str]) -> list[Finding]:
    """How to point pip, uv and poetry at this index, without the token."""
    url, names = index_url.rstrip("/") + "/", " ".join(projects) or "PROJECT"
    split = urllib.parse.urlsplit(url)
    with_user = urllib.parse.urlunsplit(split._replace(netloc=f"{owner}:${{GITHUB_TOKEN}}@{split.netloc}"))
    uv = (f'uv: [[tool.uv.index]] name = "pypihub", url = "{url}"; then UV_INDEX_PYPIHUB_USERNAME={owner} '
          'UV_INDEX_PYPIHUB_PASSWORD="$GITHUB_TOKEN"')
    poetry = (f"poetry source add --priority=explicit pypihub {url} && "
              f'poetry config http-basic.pypihub {owner} "$GITHUB_TOKEN"')
    return [Finding("Configure", True, f'pip install --index-url "{with_user}" {names}'),
            Finding("Configure", True, uv), Finding("Configure", True, poetry)]


class LocalRedirects(urllib.request.HTTPRedirectHandler):
    """Credentials follow a redirect only to the same origin (as pip's do): none to the download host."""

    def redirect_request(self, req: Any, fp: Any, code: int, msg: str, headers: Any, newurl: str) -> Any:
        new = super().redirect_request(req, fp, code, msg, headers, newurl)
        if new is not None and not same_origin(newurl, req.full_url):
            new.remove_header("Authorization")
        return new


def fetch_through(url: str, auth: str, headers: Mapping[str, str], timeout: float) -> tuple[int, bytes]:
    """Status and the first bytes of a GET through a running PyPIHub, as a client would ask, within
    `timeout` for the body as a whole."""
    sent, deadline = {"Authorization": auth, "User-Agent": USER_AGENT, **headers}, time.monotonic() + timeout
    try:
        with urllib.request.build_opener(LocalRedirects()).open(urllib.request.Request(url, headers=sent),
                                                                timeout=timeout) as answer:
            return answer.status, read_within(answer, 4 * 1024 * 1024, deadline)
    except urllib.error.HTTPError as failed:
        return failed.code, failed.read(300)


def check_index(index_url: str, auth: str, project: str, timeout: float) -> list[Finding]:
    """The project through a running PyPIHub: its listing, a .metadata and a file's first bytes."""
    section, page = f"Index {project}", index_url.rstrip("/") + f"/{project}/"
    try:
        status, body = fetch_through(page, auth, {"Accept": JSON_V1}, timeout)
        if status != 200:
            said = sanitize_log(redact(body.decode("utf-8", "replace"), auth))[:200]
            return [Finding(section, False, f"{page} answered {status}: {said}", "see the lines above")]
        listed = json.loads(body)
        files = listed.get("files") if isinstance(listed, dict) else None
        if not isinstance(files, list):
            return [Finding(section, False, f"{page} is no PEP 691 project page", "is it PyPIHub's?")]
        files = [f for f in files if isinstance(f, dict) and isinstance(f.get("url"), str)
                 and isinstance(f.get("filename"), str)]
        found = [Finding(section, bool(files), f"{page}: {len(files)} files")]
        for entry in [f for f in files if f.get("core-metadata")][-1:]:
            metadata = urllib.parse.urljoin(page, entry["url"]) + METADATA_SUFFIX
            status, _ = fetch_through(metadata, auth, {}, timeout)
            found.append(Finding(section, status == 200, f"{entry['filename']}.metadata: {status}"))
        for entry in files[-1:]:
            url = urllib.parse.urljoin(page, entry["url"])
            status, head = fetch_through(url, auth, {"Range": "bytes=0-99"}, timeout)
            read = f"{entry['filename']}: {status}, {len(head)} bytes read"
            found.append(Finding(section, status in (200, 206), read))
        return found
    except PyPIHubError as failed:
        return [Finding(section, False, f"{page}: {failed.message}", "is PyPIHub there, and answering?")]
    except (urllib.error.URLError, OSError, ValueError, RecursionError, http.client.HTTPException) as failed:
        reason = getattr(failed, "reason", failed)
        cause = network_cause(reason if isinstance(reason, BaseException) else failed)[1]
        return [Finding(section, False, f"could not reach {page}: {cause}",
                        "is PyPIHub running there, and is the URL's scheme (http or https) right?")]


def check_token_source(settings: Settings, environ: Mapping[str, str]) -> str:
    """The token to check: --token-env/--token-file/--token-command's, else GITHUB_TOKEN or GH_TOKEN."""
    if settings.no_credentials:
        return TokenSource(settings, environ).token
    token = (environ.get("GITHUB_TOKEN") or environ.get("GH_TOKEN") or "").strip()
    if not TOKEN_RE.fullmatch(token):
        raise ConfigError("no token to check: set GITHUB_TOKEN or GH_TOKEN, or give --token-env, "
                          "--token-file or --token-command")
    return token


def run_check(settings: Settings, token: str, projects: Sequence[str],
              index_url: str) -> tuple[list[Finding], str]:
    """Every check, in the order a person reads them."""
    index, projects = Index(settings, Gate()), [normalize(p) for p in projects]
    github = GitHub(settings.graphql_url, token, settings.upstream_timeout, gate=index.gate,
                    rest_url=index.rest_url, schema=index.schema)
    try:
        found, login = check_token(github, token)
    except PyPIHubError as failed:
        return [Finding("GitHub", False, f"{settings.graphql_url}: {failed.message}",
                        "check --graphql-url, and this machine's network and proxy")], ""
    found.insert(0, Finding("GitHub", True, f"reachable at {settings.graphql_url}"))
    if not found[1].ok:
        return found, ""
    owners = list(settings.owners) or ([login] if login else [])
    if not owners:
        found.append(Finding("Owner", False, "no owner to look in", "give --owner (the repos' owner)"))
    for owner in owners:
        creds = Credentials(owner, token)
        owned, names = check_owner(index, index.connect(creds, GitHubCalls()))
        found += owned
        for project in projects or names:
            found += check_project(index, index.connect(creds, GitHubCalls()), project)
    host = "localhost" if settings.host == "0.0.0.0" else settings.host
    owner = (owners or ["OWNER"])[0]
    found += configuration_lines(index_url or f"http://{host}:{settings.port}/simple/", owner, projects)
    auth = "Basic " + base64.b64encode(f"{owner}:{token}".encode()).decode()
    for project in projects if index_url else []:
        found += check_index(index_url, auth, project, settings.upstream_timeout)
    return found, owner


def scrubbed(text: str, token: str, owners: Sequence[str]) -> str:
    """The report without the token in any form an answer could echo it in (GitHub's messages, a
    server's 401 body): as it is, percent-encoded, in Basic form with any of the owners, in Base64,
    or any 20-character part of it; and any other token-shaped string too."""
    for owner in {*owners, ""}:
        text = redact(text, "Basic " + base64.b64encode(f"{owner}:{token}".encode()).decode())
    for part in [base64.b64encode(token.encode()).decode(), *(p for p in token.split(".") if len(p) >= 20)]:
        text = text.replace(part, "[token]")
    return redact_token_forms(text)


def render_findings(found: Sequence[Finding]) -> str:
    """The report for a person: a line a finding, each problem's likely fix under it, a verdict."""
    width, lines = max(len(f.section) for f in found) + 2, []
    for finding in found:
        lines.append(f"{finding.section:<{width}}{'ok' if finding.ok else 'FAIL':<6}{finding.text}")
        lines += [f"{'':<{width + 6}}-> {finding.fix}"] if finding.fix and not finding.ok else []
    problems = sum(not f.ok for f in found)
    return "\n".join(lines + ["", "Everything checked works." if not problems else f"{problems} problem(s)."])


def check_main(argv: Sequence[str], environ: Mapping[str, str]) -> int:
    """`pypihub check`: exit 0 when everything checked works, 1 when something does not, 2 for bad usage."""
    parser = build_parser("pypihub check")
    parser.add_argument("--index-url", default="", help="also check the projects through this PyPIHub")
    parser.add_argument("--json", action="store_true", help="print one JSON object, with a boolean `ok`")
    parser.add_argument("projects", nargs="*", metavar="PROJECT")
    given = vars(parser.parse_args(argv))
    index_url, as_json, projects = given.pop("index_url"), given.pop("json"), given.pop("projects")
    try:
        settings = settings_from(given, environ)
        token = check_token_source(settings, environ)
    except ConfigError as exc:
        print(f"pypihub check: {exc}", file=sys.stderr)
        return 2
    try:
        found, owner = run_check(settings, token, projects, index_url)
    except PyPIHubError as failed:  # whatever GitHub answers, a line for a person, never a traceback
        found, owner = [Finding("GitHub", False, failed.message, "see GitHub's reason")], ""
    except Exception as failed:  # noqa: BLE001  (an answer of a shape nothing here expects: still a report)
        odd = f"an answer of an unexpected shape ({type(failed).__name__})"
        found, owner = [Finding("GitHub", False, odd, "run it again; ask who runs the server")], ""
    ok = all(f.ok for f in found)
    report = json.dumps({"ok": ok, "findings": [f._asdict() for f in found]}, indent=1) if as_json \
        else render_findings(found)
    print(scrubbed(report, token, [owner, *settings.owners]))
    return 0 if ok else 1


SHUTDOWN_GRACE = 15.0  # seconds in-flight requests get to finish on SIGTERM


def main(argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None) -> int:
    """Serve until SIGTERM or Ctrl-C (or, as `pypihub check ...`, diagnose); return the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    environ = os.environ if environ is None else environ
    if argv[:1] == ["check"]:
        return check_main(argv[1:], environ)
    try:
        settings = build_settings(argv, environ)
        own_token = TokenSource(settings, environ) if settings.no_credentials else None
        server = build_server(settings, own_token=own_token)
    except (ConfigError, OSError, ssl.SSLError) as exc:
        raise SystemExit(f"pypihub: {exc}") from None
    scheme = "https" if server.tls else "http"
    host, port = server.server_address[:2]
    log = server.events.log
    log(f"pypihub {__version__} serving {scheme}://{host}:{port}/simple/ for {settings.graphql_url}")
    if own_token is not None:
        log(f"no-credentials mode: requests without credentials use the token from "
                   f"{own_token.describe()}, for {', '.join(settings.owners)}")
    if not server.tls and not is_loopback(settings.host):
        log("WARNING: serving beyond loopback without TLS: GitHub tokens will cross the network "
                   "in clear. Use --certfile/--keyfile or put a TLS proxy in front.")
    # shutdown() waits for serve_forever() to return, so it must run in another thread.
    stop = lambda *_: threading.Thread(target=server.shutdown, daemon=True).start()  # noqa: E731
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    server.serve_forever()
    server.server_close()  # stop accepting; requests in progress may finish
    drained = server.drain(SHUTDOWN_GRACE)
    log("pypihub stopped" if drained else f"pypihub stopped; {server.busy} request(s) cut off")
    return 0


def run() -> NoReturn:
    """Entry point for the zipapp, whose generated __main__ ignores main()'s return value."""
    raise SystemExit(main())


if __name__ == "__main__":
    run()
