#!/usr/bin/env python3
"""PyPIHub benchmark: the test suite's fake GitHub (with a per-call latency), PyPIHub as its own
process, and a load generator; prints one table.

    python3 bench/run.py [--latency 0.15] [--seconds 5] [--big-mib 1024] [--rounds 3]
                         [--peer-python /tmp/peer/bin/python] [--pypihub-flags "--busy-threads 2"] [--quick]
                         [--before /tmp/pypihub-before.py] [--fleet-only] [--fleet-rounds 1]

Load comes from wrk and downloads from curl when they are installed (apt-get install wrk curl); without
wrk, Python threads make the load. Needs the test tools (python3 -m pip install '.[test]'). Everything
runs on loopback. Numbers measure this machine; README quotes them with the machine they came from.

Warm /simple/<project>/ throughput is compared with pypiserver serving the same wheels from disk, in
alternating rounds (PyPIHub, then each pypiserver deployment, then PyPIHub again, ...) at 16, 64 and
256 keep-alive connections: each server's median req/s, p50 and p99 at each load, and PyPIHub's ratio
to pypiserver on gunicorn. A closed loop's latency averages N connections / throughput, so judge a
tail by p99's distance from p50. pypiserver runs from a venv of its own, with its `cache` extra
(watchdog), started as its docs say (bench/peers.py has the details and what differs from before):
`pypi-server run --server gunicorn` with GUNICORN_CMD_ARGS="--workers 2 --worker-class gthread
--threads 4" (the reference), `--server auto` (the default, which picks waitress when installed: its
defaults, 4 threads) and `--server wsgiref` (auto's pick in a bare install).
Make that venv once with

    python3 -m venv /tmp/peer && /tmp/peer/bin/pip install 'pypiserver[cache]' gunicorn waitress

and name its interpreter with --peer-python or $PYPIHUB_PEER_PYTHON (default /tmp/peer/bin/python);
without it the comparison is skipped and says so. --quick runs only the comparison (with PyPIHub's
RSS per token and its cold-path overhead, measured on the same process before the load) and the fleet.

--before PATH measures another pypihub.py in the same run (say, the commit before a refactoring):
it takes its turn in every round of the comparison (PyPIHub before, PyPIHub, the peers), gets its
own ratio to pypiserver on gunicorn, and its GitHub calls (counted at the fake GitHub: pip downloads,
the 150-release listings, one index URL; --listings-only too) stand beside pypihub.py's.

The fleet (issue 17; --fleet-only runs only it): 60 tokens x 3 projects through a real nginx configured
from deploy/nginx.conf (TLS, keep-alive) to 1 and to 3 PyPIHub instances, and to 1 instance directly.
It starts them with the test suite's own Instance, Nginx and TLS helpers; GraphQL calls, cold and warm,
are counted at the fake GitHub; warm req/s come from wrk with a Lua script sending the (token, project)
pairs in turn (nginx hashes on Authorization). It needs nginx, wrk and openssl, and says so without.
"""
from __future__ import annotations

import argparse
import collections
import base64
import concurrent.futures
import contextlib
import dataclasses
import gc
import http.client
import io
import json
import os
import platform
import re
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import test_pypihub as t  # noqa: E402  (the fake GitHub and wheel builder the tests use)

import peers  # noqa: E402  (bench/peers.py: pypiserver on gunicorn, waitress and wsgiref)

PROJECT = "demo-pkg"  # two small wheels: the project every server lists in the comparison
BIG_PROJECT = "demo-big"  # one big wheel, for --proxy-downloads
LISTING = f"/simple/{PROJECT}/"
WRK_THREADS = 2
TOKENS = 200  # ghp_bench0000..0199, each able to read the projects
COMPARE_FLAGS = ("--max-connections", "400", "--max-client-connections", "400")  # 256 connections, one client
PAUSE = 0.5  # seconds between two load runs, for the last one's connections to close


@dataclasses.dataclass
class Result:
    """One load run: requests/s, latency percentiles (seconds) and what went wrong, if anything."""
    rps: float
    p50: float
    p99: float
    errors: str = ""  # non-2xx answers and socket errors as the load generator counted them; "" = none
    github_calls: int = 0  # GraphQL calls the fake GitHub saw during the run (PyPIHub reloading a listing)


NOW = ROOT / "pypihub.py"  # the PyPIHub measured; --before names another copy, measured in the same run


def start_pypihub(github: t.FakeGitHub, *flags: str, script: Path = NOW) -> tuple[subprocess.Popen, int]:
    """PyPIHub (`script`, a pypihub.py) on a port of its own, its log drained; `flags` come last (so
    --pypihub-flags win)."""
    command = [sys.executable, str(script), "--host", "127.0.0.1", "--port", "0",
               "--graphql-url", github.graphql_url, *flags]
    process = subprocess.Popen(command, stderr=subprocess.PIPE, text=True)
    lines = []
    for line in process.stderr:  # up to the line saying where it listens
        if match := re.search(r":(\d+)/simple/", line):
            break
        lines.append(line)
    else:
        raise RuntimeError(f"PyPIHub did not start ({shlex.join(command[1:])}):\n{''.join(lines)}")
    threading.Thread(target=lambda: [None for _ in process.stderr], daemon=True).start()  # drain the log
    return process, int(match.group(1))


def stop(process: subprocess.Popen) -> None:
    process.terminate()
    process.wait(30)


def auth(token: str = t.TOKEN_A) -> dict:
    return {"Authorization": "Basic " + base64.b64encode(f"{t.OWNER}:{token}".encode()).decode(),
            "Accept": t.PIP_ACCEPT}


def timed_get(port: int, path: str, headers: dict) -> float:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    started = time.perf_counter()
    connection.request("GET", path, headers=headers)
    response = connection.getresponse()
    response.read()
    assert response.status == 200, response.status
    connection.close()
    return time.perf_counter() - started


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def load(port: int, path: str, headers: dict, connections: int, seconds: float) -> Result:
    """Requests/s and latency with `connections` keep-alive clients for `seconds`: wrk when installed
    (a C client that does not compete for a Python interpreter), else Python threads."""
    if shutil.which("wrk"):
        return load_with_wrk(port, path, headers, connections, seconds)
    return load_with_threads(port, path, headers, connections, seconds)


def load_with_threads(port: int, path: str, headers: dict, connections: int, seconds: float) -> Result:
    latencies: list[list[float]] = [[] for _ in range(connections)]
    failures: list[str] = []  # one entry per non-2xx answer or socket error
    deadline = time.perf_counter() + seconds

    def client(mine: list[float]) -> None:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        while (now := time.perf_counter()) < deadline:
            try:
                connection.request("GET", path, headers=headers)
                response = connection.getresponse()
                response.read()
            except (OSError, http.client.HTTPException) as exc:
                failures.append(f"socket error {type(exc).__name__}")
                connection.close()
                continue
            if response.status < 300:
                mine.append(time.perf_counter() - now)
            else:
                failures.append(f"answer {response.status}")
        connection.close()

    threads = [threading.Thread(target=client, args=(mine,)) for mine in latencies]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    every = [x for mine in latencies for x in mine]
    errors = ", ".join(f"{n} x {what}" for what, n in sorted(collections.Counter(failures).items()))
    if not every:
        return Result(0.0, float("nan"), float("nan"), errors or "no answers")
    return Result(len(every) / seconds, percentile(every, 0.50), percentile(every, 0.99), errors)


def load_with_wrk(port: int, path: str, headers: dict, connections: int, seconds: float) -> Result:
    extra = [arg for name, value in headers.items() for arg in ("-H", f"{name}: {value}")]
    return run_wrk(f"http://127.0.0.1:{port}{path}", connections, seconds, extra)


def run_wrk(url: str, connections: int, seconds: float, extra: list[str]) -> Result:
    """wrk -t2 --latency at `url` (http:// or https://), `extra` being -H headers or -s script."""
    command = ["wrk", f"-t{min(WRK_THREADS, connections)}", f"-c{connections}",
               f"-d{max(1, round(seconds))}s", "--latency", *extra, url]
    run = subprocess.run(command, capture_output=True, text=True)
    if run.returncode or "Requests/sec" not in run.stdout:
        why = (run.stderr or run.stdout).strip().replace("\n", " / ")[-200:]
        return Result(0.0, float("nan"), float("nan"), f"wrk failed (exit {run.returncode}): {why}")
    return parse_wrk(run.stdout)


def parse_wrk(out: str) -> Result:
    """wrk --latency's report: Requests/sec, the 50% and 99% lines, non-2xx answers, socket errors."""
    errors = [f"{found.group(1)} non-2xx/3xx answers"
              for found in re.finditer(r"Non-2xx or 3xx responses: (\d+)", out)]
    errors += [f"socket errors: {found.group(1).strip()}"
               for found in re.finditer(r"Socket errors: (.*)", out)]
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    return Result(rps, wrk_latency(out, 50), wrk_latency(out, 99), "; ".join(errors))


def wrk_latency(out: str, percent: int) -> float:
    found = re.search(rf"^\s*{percent}%\s+([\d.]+)(us|ms|s|m)\s*$", out, re.MULTILINE)
    if not found:
        return float("nan")
    value, unit = found.groups()
    return float(value) * {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0}[unit]


def pip_download(port: int, target: Path) -> None:
    index = f"http://{t.OWNER}:{t.TOKEN_A}@127.0.0.1:{port}/simple/"
    subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "-d", str(target), "--index-url",
                    index, f"{PROJECT}==1.0"], check=True, capture_output=True, env=t.pip_env(target))


def rss_kib(pid: int) -> dict[str, int]:
    status = Path(f"/proc/{pid}/status").read_text()
    return {key: int(re.search(rf"{key}:\s+(\d+)", status).group(1)) for key in ("VmRSS", "VmHWM")}


def stream(url: str, headers: dict) -> float:
    """MiB/s of a whole download by curl (its own process, so no client shares our interpreter)."""
    command = ["curl", "-sS", "--fail", "-o", os.devnull, "-w", "%{speed_download}", url]
    command += [arg for name, value in headers.items() for arg in ("-H", f"{name}: {value}")]
    return float(subprocess.run(command, capture_output=True, text=True, check=True).stdout) / (1 << 20)


def warm_fake_schema() -> None:
    t.schema_errors("query { viewer { login } }")  # the fake's own warm-up: build GitHub's schema now,
    t.github_schema()  # not during the first measured request


def new_github(latency: float, work: Path, big_mib: int) -> t.FakeGitHub:
    warm_fake_schema()
    github = t.FakeGitHub().start()
    github.latency = latency
    repo = github.add_repo(PROJECT)
    for version in ("1.0", "2.0"):
        name, content = t.make_wheel(PROJECT, version)
        (work / name).write_bytes(content)
        repo.add_release(f"v{version}", {name: content})
    big = work / "big.bin"
    with open(big, "wb") as file:
        file.truncate(big_mib << 20)
    big_repo = github.add_repo(BIG_PROJECT)  # its own project: demo-pkg lists the two wheels the peers list
    big_repo.add_release("v9.0", {f"{BIG_PROJECT.replace('-', '_')}-9.0-py3-none-any.whl": big})
    for n in range(TOKENS):
        github.tokens[f"ghp_bench{n:04d}"] = f"user{n}"
        repo.readers.add(f"ghp_bench{n:04d}")
    return github


def add_wide_project(github: t.FakeGitHub) -> None:
    """150 releases, each a ~300 kB wheel and an sdist: a long-lived project."""
    repo = github.add_repo("wide", readers=tuple(github.tokens))
    for n in range(150):
        name, content = t.make_wheel("wide", f"1.{n}")
        buffer = io.BytesIO(content)
        with zipfile.ZipFile(buffer, "a") as archive:
            archive.writestr("wide/data.bin", os.urandom(300_000))
        release = repo.add_release(f"v1.{n}", {name: buffer.getvalue(), f"wide-1.{n}.tar.gz": b"sdist"})
        release["name"] = f"wide 1.{n}"  # and release notes of a typical length: what yank markers cost
        release["description"] = f"## What's changed in 1.{n}\n\n" + "- a fix in the parser (#123)\n" * 20


def counters(github: t.FakeGitHub) -> tuple[int, int, int, int, int]:
    return (len(github.graphql_calls), len(github.rest_calls), github.bytes_served, len(github.downloads),
            github.graphql_bytes)


def measure_page(github: t.FakeGitHub, port: int) -> dict[str, object]:
    """Issue 18: GitHub work for /project/<name>/ of the 150-release project: cold (nothing kept),
    for a second token (its own listing, the notes kept for every token), and warm."""
    rows: dict[str, object] = {}
    for label, token in (("cold, a new token", "ghp_bench0055"), ("another new token", "ghp_bench0056"),
                         ("warm, the same token", "ghp_bench0056")):
        before, started = counters(github), time.perf_counter()
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        connection.request("GET", "/project/wide/", headers=auth(token))
        answer = connection.getresponse()
        body = answer.read()
        connection.close()
        assert answer.status == 200, answer.status
        graphql, rest, _, _, answered = (b - a for a, b in zip(before, counters(github)))
        operations = sorted({op for _, op in github.graphql_calls[-graphql:]}) if graphql else []
        rows[f"150 releases: /project/<name>/ page, {label}"] = (
            f"GraphQL {graphql} ({', '.join(o.split()[-1] for o in operations) or '-'}; {answered / 1024:.0f} KiB of "
            f"answers), REST {rest}; {len(body) / 1024:.0f} KiB page in {(time.perf_counter() - started) * 1000:.0f} ms")
    return rows


def listing_cost(github: t.FakeGitHub, port: int, token: str, metadata: bool = False) -> str:
    """What one listing of the 150-release project (and, with `metadata`, every wheel's .metadata)
    cost: GraphQL calls + REST calls, the bytes GitHub sent, the download host's work, the hashes."""
    before = counters(github)
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    connection.request("GET", "/simple/wide/", headers=auth(token))
    page = json.loads(connection.getresponse().read())
    hashed = sum(bool(f["hashes"]) for f in page["files"])
    for entry in page["files"] if metadata else []:
        if entry["filename"].endswith(".whl"):
            url = urllib.parse.urljoin("/simple/wide/", entry["url"]) + ".metadata"
            connection.request("GET", url, headers=auth(token))
            connection.getresponse().read()
    connection.close()
    graphql, rest, sent, requests, answered = (b - a for a, b in zip(before, counters(github)))
    return (f"GraphQL {graphql} + REST {rest} ({answered / 1024:.0f} KiB of GraphQL answers), "
            f"download host {requests} requests / {sent / 1024:.0f} KiB; {hashed}/{len(page['files'])} files hashed")


def measure_wide(github: t.FakeGitHub, port: int) -> dict[str, object]:
    """Issues 7 and 22: GitHub work for listing a 150-release project and reading every wheel's metadata."""
    rows: dict[str, object] = {
        "150 releases: cold listing": listing_cost(github, port, "ghp_bench0051"),
        "150 releases: warm listing (same token, within TTL)": listing_cost(github, port, "ghp_bench0051"),
        "150 releases: another token's cold listing": listing_cost(github, port, "ghp_bench0052"),
        "150 releases: listing + .metadata of all 150 wheels, cold": listing_cost(github, port, "ghp_bench0053", True),
        "150 releases: listing + .metadata of all 150 wheels, warm": listing_cost(github, port, "ghp_bench0053", True),
    }
    wheel_bytes = sum(a["size"] for a in github.assets.values()
                      if a["name"].startswith("wide-") and a["name"].endswith(".whl"))
    rows["150 releases: all wheels downloaded whole, for comparison"] = f"{wheel_bytes / 1024:.0f} KiB"
    return rows


def measure_wide_on_older_ghes(github: t.FakeGitHub, flags: list[str], script: Path = NOW) -> dict[str, object]:
    """Issue 22: the same cold listing where GitHub's schema lacks ReleaseAsset.digest (an older GitHub
    Enterprise Server): one refused query per server, then digests from the REST releases list."""
    github.legacy_schema = True
    process, port = start_pypihub(github, *flags, script=script)
    try:
        return {"150 releases: cold listing, older GHES (no GraphQL digest)": listing_cost(github, port, "ghp_bench0054"),
                "150 releases: another token's cold listing, older GHES": listing_cost(github, port, "ghp_bench0057")}
    finally:
        stop(process)
        github.legacy_schema = False


def measure_calls(github: t.FakeGitHub, port: int, work: Path) -> dict[str, object]:
    rows: dict[str, object] = {}
    before = len(github.graphql_calls)
    pip_download(port, work / "cold")
    rows["GraphQL calls, cold pip download (listing + file)"] = len(github.graphql_calls) - before
    before = len(github.graphql_calls)
    pip_download(port, work / "warm")
    rows["GraphQL calls, warm pip download (within TTL)"] = len(github.graphql_calls) - before
    before = len(github.graphql_calls)
    threads = [threading.Thread(target=timed_get, args=(port, f"/simple/{PROJECT}/", auth("ghp_bench0050")))
               for _ in range(50)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    rows["GraphQL calls, 50 concurrent cold requests (one token)"] = len(github.graphql_calls) - before
    return rows


def measure_latency(port: int) -> dict[str, object]:
    cold = [timed_get(port, f"/simple/{PROJECT}/", auth(f"ghp_bench{n:04d}")) for n in range(30)]
    warm = [timed_get(port, f"/simple/{PROJECT}/", auth()) for _ in range(300)]
    ms = lambda x: f"{x * 1000:.1f} ms"  # noqa: E731
    return {"cold /simple/<project>/ median / p99 (new connection each)":
            f"{ms(statistics.median(cold))} / {ms(percentile(cold, 0.99))}",
            "warm /simple/<project>/ median / p99 (new connection each)":
            f"{ms(statistics.median(warm))} / {ms(percentile(warm, 0.99))}"}


def measure_proxy(github: t.FakeGitHub, big_mib: int, flags: list[str]) -> dict[str, object]:
    process, port = start_pypihub(github, "--proxy-downloads", *flags)
    try:
        page = http.client.HTTPConnection("127.0.0.1", port)
        page.request("GET", f"/simple/{BIG_PROJECT}/", headers={**auth(), "Accept": "text/html"})
        href = next(h for h, text, _ in t.parse_links(page.getresponse().read().decode()) if "9.0" in text)
        path = urllib.parse.urljoin(f"/simple/{BIG_PROJECT}/", href)
        node_id = next(a for a in github.assets.values() if "9.0" in a["name"])["id"]
        stream(github.signed_url(node_id), {})  # warm-up: the first read of the file is slower
        before = rss_kib(process.pid)
        direct_rate = proxied_rate = 0.0
        for _ in range(3):  # best of three, alternating
            direct_rate = max(direct_rate, stream(github.signed_url(node_id), {}))
            proxied_rate = max(proxied_rate, stream(f"http://127.0.0.1:{port}{path}", auth()))
        after = rss_kib(process.pid)
    finally:
        stop(process)
    growth = max(0, after["VmHWM"] - before["VmRSS"]) / 1024
    return {f"{big_mib} MiB download, direct from the download host": f"{direct_rate:.0f} MiB/s",
            f"{big_mib} MiB download through --proxy-downloads":
            f"{proxied_rate:.0f} MiB/s ({proxied_rate / direct_rate:.0%} of direct)",
            "PyPIHub peak RSS growth during it":
            f"{growth:.1f} MiB (RSS before {before['VmRSS'] / 1024:.1f} MiB)"}


def measure_one_index(latency: float, flags: list[str], script: Path = NOW) -> dict[str, object]:
    """Issue 14: one index URL (--owner, --fallback-index, user __token__) resolving 5 private and
    100 public names: GitHub calls cold and warm, independent of the public names' count."""
    github = t.FakeGitHub().start()
    github.latency = latency
    for n in range(5):
        github.add_repo(f"private-{n}").add_release("v1.0", dict([t.make_wheel(f"private-{n}", "1.0")]))
    upstream = t.FakeUpstream()
    process, port = start_pypihub(github, "--owner", t.OWNER, "--fallback-index", upstream.url, *flags,
                                  script=script)
    headers = {"Authorization": "Basic " + base64.b64encode(f"__token__:{t.TOKEN_A}".encode()).decode(),
               "Accept": t.PIP_ACCEPT}
    names = [f"private-{n}" for n in range(5)] + [f"public-{n}" for n in range(100)]
    rows: dict[str, object] = {}
    try:
        for label in ("cold", "warm"):
            before, started = len(github.graphql_calls), time.perf_counter()
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
            for name in names:
                connection.request("GET", f"/simple/{name}/", headers=headers)
                connection.getresponse().read()
            connection.close()
            rows[f"one index URL: {label} resolve of 5 private + 100 public names"] = (
                f"GraphQL {len(github.graphql_calls) - before}, {time.perf_counter() - started:.2f} s")
    finally:
        stop(process)
        upstream.stop()
        github.stop()
    return rows


# --- The comparison: PyPIHub and pypiserver, warm /simple/<project>/ in alternating rounds ---


def warm_concurrently(port: int, tokens: list[str], at_once: int = 16) -> None:
    with concurrent.futures.ThreadPoolExecutor(at_once) as pool:
        list(pool.map(lambda token: timed_get(port, LISTING, auth(token)), tokens))


def measure_cold(github: t.FakeGitHub, port: int, latency: float, tokens: list[str]) -> dict[str, object]:
    """A cold listing's time beyond the fake GitHub's latency, per GraphQL call it made."""
    before = len(github.graphql_calls)
    times = [timed_get(port, LISTING, auth(token)) for token in tokens]
    calls = (len(github.graphql_calls) - before) / len(tokens)
    median = statistics.median(times)
    overhead = (median - latency * calls) / max(calls, 1)
    return {"cold /simple/<project>/ overhead per GraphQL call (median latency - fake GitHub latency)":
            f"{ms(overhead)} (median {ms(median)} - {calls:g} x {ms(latency)}; {len(tokens)} new tokens one "
            f"after another, a new connection each; includes the in-process fake GitHub's own work)"}


def measure_memory(github: t.FakeGitHub, process: subprocess.Popen, port: int,
                   latency: float) -> dict[str, object]:
    """RSS of a fresh PyPIHub as tokens warm one project each (listings are cached per token), and
    the cold path on the way; it ends with TOKEN_A's listing warm, for the load."""
    tokens = [f"ghp_bench{n:04d}" for n in range(TOKENS)]
    rss = lambda: rss_kib(process.pid)["VmRSS"]  # noqa: E731
    at_start = rss()
    timed_get(port, LISTING, auth())  # the first listing: digests from REST, then TOKEN_A's warm-up
    first = rss()
    rows = measure_cold(github, port, latency, tokens[:30])
    warm_concurrently(port, tokens[30:60])  # threads and allocator arenas settle before the baseline
    before = rss()
    warm_concurrently(port, tokens[60:])
    after = rss()
    per_token = (after - before) / len(tokens[60:])
    rows[f"PyPIHub RSS, {len(tokens) + 1} tokens x 1 project warm"] = (
        f"{after / 1024:.1f} MiB (at start {at_start / 1024:.1f}, after the first listing "
        f"{first / 1024:.1f}); {per_token:.1f} KiB per further token = per cached listing "
        f"(tokens 61-{len(tokens)}, 16 at once)")
    return rows


def listed(port: int) -> tuple[list[str], str]:
    """The file names /simple/<project>/ lists at `port`, and what the answer was (size, type)."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    connection.request("GET", LISTING, headers=auth())
    response = connection.getresponse()
    body = response.read()
    connection.close()
    if "json" in (kind := response.getheader("Content-Type", "")):
        names = [entry["filename"] for entry in json.loads(body)["files"]]
    else:
        names = [text for _, text, _ in t.parse_links(body.decode())]
    what = f"{len(body):,} B {'JSON' if 'json' in kind else 'HTML'}"
    return sorted(names), what + (", HTTP/1.0: a connection per request" if response.version == 10 else "")


def check_listings(servers: list[peers.Server]) -> dict[str, object]:
    """Every server must list the files PyPIHub (the first) lists; the row says so, or how not."""
    answers = {server.label: listed(server.port) for server in servers}
    names, _ = answers[servers[0].label]
    different = {label: got for label, (got, _) in answers.items() if got != names}
    sizes = "; ".join(f"{label} {what}" for label, (_, what) in answers.items())
    if different:
        verdict = f"DIFFERENT files: {different}; PyPIHub lists"
    else:
        verdict = f"the same {len(names)} files" if len(servers) > 1 else f"PyPIHub lists {len(names)} files"
    return {f"files every server lists for {LISTING}": f"{verdict}: {', '.join(names)}. Answers: {sizes}"}


def run_rounds(servers: list[peers.Server], args: argparse.Namespace,
               github: t.FakeGitHub) -> dict[tuple[str, int], list[Result]]:
    """Each round loads every server in turn at each connection count, in `servers`' order (PyPIHub
    before, PyPIHub, then each peer)."""
    results: dict[tuple[str, int], list[Result]] = collections.defaultdict(list)
    for number in range(1, args.rounds + 1):
        for connections in args.connections:
            for server in servers:
                before = len(github.graphql_calls)
                result = load(server.port, LISTING, auth(), connections, args.seconds)
                result.github_calls = len(github.graphql_calls) - before
                results[server.label, connections].append(result)
                errors = f" ({result.errors})" if result.errors else ""
                print(f"round {number}/{args.rounds}, {connections} connections, {server.label}: "
                      f"{rounds_text([result])}{errors}", file=sys.stderr, flush=True)
                time.sleep(PAUSE)
    return results


def ms(seconds: float) -> str:
    if seconds != seconds:  # NaN: nothing was answered
        return "n/a"
    return f"{seconds * 1000:,.0f} ms" if seconds >= 1 else f"{seconds * 1000:.1f} ms"


def median_of(results: list[Result]) -> Result:
    """The median of the rounds' req/s, of their p50s and of their p99s, each on its own."""
    def middle(values: list[float]) -> float:
        return statistics.median(values) if values else float("nan")
    return Result(middle([r.rps for r in results]), middle([r.p50 for r in results if r.p50 == r.p50]),
                  middle([r.p99 for r in results if r.p99 == r.p99]))


def rounds_text(results: list[Result]) -> str:
    """Each round's req/s (p99 ms), and the GraphQL calls made in it when there were any."""
    def one(r: Result) -> str:
        calls = f", {r.github_calls} GraphQL call{'s' * (r.github_calls > 1)}" if r.github_calls else ""
        return f"{r.rps:,.0f} ({ms(r.p99).removesuffix(' ms')}{calls})"
    return ", ".join(one(r) for r in results)


def errors_text(label: str, results: list[Result]) -> list[str]:
    return [f"{label} round {n}: {r.errors}" for n, r in enumerate(results, 1) if r.errors]


BEFORE = "PyPIHub before"  # --before's copy of pypihub.py, measured in the same rounds


def ratio(mine: Result, theirs: Result) -> float:
    return mine.rps / theirs.rps if theirs.rps else float("nan")


def server_row(n: int, label: str, results: dict[tuple[str, int], list[Result]], reference: str | None) -> str:
    """One server at `n` connections: median req/s, p50 and p99 (and their distance), then a ratio: a
    PyPIHub's to the reference peer (pypiserver on gunicorn), a peer's as PyPIHub's over it."""
    mine = median_of(results[label, n])
    spread = f"{mine.p99 / mine.p50:.1f}x" if mine.p50 and mine.p99 == mine.p99 else "n/a"
    text = (f"{mine.rps:,.0f} req/s; p50 {ms(mine.p50)}, p99 {ms(mine.p99)} (p99 = {spread} p50; "
            f"N / throughput {ms(n / mine.rps) if mine.rps else 'n/a'})")
    if label in ("PyPIHub", BEFORE) and reference:
        text += f"; {ratio(mine, median_of(results[reference, n])):.2f}x pypiserver on gunicorn"
        if label == "PyPIHub" and ("PyPIHub before", n) in results:
            text += f", {ratio(mine, median_of(results[BEFORE, n])):.2f}x PyPIHub before"
    elif label not in ("PyPIHub", BEFORE):
        text += f"; PyPIHub {ratio(median_of(results['PyPIHub', n]), mine):.2f}x this"
    return text + f". Rounds, req/s (p99 ms): {rounds_text(results[label, n])}"


def comparison_rows(results: dict[tuple[str, int], list[Result]], labels: list[str],
                    connections: list[int]) -> dict[str, object]:
    """One row per connection count and server (PyPIHub, PyPIHub before, the peers), then every error."""
    reference = peers.GUNICORN if peers.GUNICORN in labels else None
    rows: dict[str, object] = {
        "how to read p50 and p99": "a closed loop: each of the N keep-alive connections sends its next request "
        "when the last one is answered, so latency averages N / throughput (Little's law) whatever the server "
        "does; judge the tail by p99's distance from p50 (how evenly a server shares itself among the "
        "connections), not by the absolute figures. (wsgiref answers HTTP/1.0, a connection per request: wrk's "
        "reconnections and the wait to be accepted are outside its latency)",
        "ratios": "median req/s of the rounds over the reference peer's, pypiserver on gunicorn"
        + ("" if reference else " (NOT RUNNING: no ratio)")}
    order = ["PyPIHub", *([BEFORE] if BEFORE in labels else []), *(x for x in labels if x not in ("PyPIHub", BEFORE))]
    for n in connections:
        for label in order:
            rows[f"warm /simple/<project>/, {n} connections: {label}"] = server_row(n, label, results, reference)
    errors = [e for (label, n), found in results.items() for e in errors_text(f"{label} at {n}", found)]
    rows["non-2xx answers and socket errors in the rounds"] = "; ".join(errors) or "none"
    return rows


def errors_note(errors: list[str]) -> str:
    return f". ERRORS: {'; '.join(errors)}" if errors else ""


def peer_files(work: Path) -> Path:
    """A directory with the wheels of PROJECT that the fake GitHub's releases hold, for pypiserver."""
    root = work / "peer-files"
    root.mkdir()
    for wheel in work.glob(f"{PROJECT.replace('-', '_')}-*.whl"):
        shutil.copy(wheel, root)
    return root


def start_hub(github: t.FakeGitHub, stack: contextlib.ExitStack, label: str, script: Path,
              flags: list[str], latency: float) -> tuple[peers.Server, dict[str, object]]:
    """A fresh PyPIHub from `script`, stopped with `stack`; its RSS and cold-path rows, named for it."""
    process, port = start_pypihub(github, *flags, script=script)
    stack.callback(stop, process)
    memory = measure_memory(github, process, port, latency)
    suffix = "" if label == "PyPIHub" else f", {label}"
    return peers.Server(label, port, process), {f"{key}{suffix}": value for key, value in memory.items()}


def measure_comparison(github: t.FakeGitHub, work: Path, args: argparse.Namespace) -> dict[str, object]:
    """PyPIHub (a fresh process; with --before, the before copy too) against each pypiserver deployment,
    serving the same wheels, in alternating rounds: PyPIHub before, PyPIHub, then each peer."""
    flags = [*COMPARE_FLAGS, *args.pypihub_flags]
    rows: dict[str, object] = {}
    with contextlib.ExitStack() as stack:
        servers, peer_rows = peers.start_all(args.peer_python, peer_files(work), work, LISTING)
        for server in servers:
            stack.callback(peers.stop, server)
        hubs, memory = [], {}
        for label, script in (("PyPIHub", NOW), (BEFORE, args.before)):
            if script:
                hub, rows_of_hub = start_hub(github, stack, label, script, flags, args.latency)
                hubs.insert(0, hub)  # the rounds' order: PyPIHub before, PyPIHub, the peers
                memory.update(rows_of_hub)
        every = [*hubs, *servers]
        rows.update({**peer_rows, **check_listings([hubs[-1], *hubs[:-1], *servers])})
        results = run_rounds(every, args, github)
    command = {}
    for hub in reversed(hubs):
        calls = sum(r.github_calls for n in args.connections for r in results[hub.label, n])
        script = NOW if hub.label == "PyPIHub" else args.before
        command[f"{hub.label} in the comparison"] = (
            f"{script} {shlex.join(flags)}; {calls} GraphQL calls in the rounds (its listing past --cache-ttl, "
            "loaded again; the round shows them)")
    labels = [server.label for server in every]
    return {**command, **rows, **comparison_rows(results, labels, args.connections), **memory}


# --- Issue 17: 1 vs 3 instances behind nginx from deploy/nginx.conf (the suite's Instance and Nginx) ---

FLEET_TOKENS, FLEET_PROJECTS = 60, 3  # 180 (token, project) pairs
FLEET_CONNECTIONS = (16, 64)  # 64 is deploy/nginx.conf's limit_conn per client address
FLEET_WORKERS = 8  # clients at once for the cold and warm passes (as the suite's warm pass)
FLEET = f"fleet behind nginx (deploy/nginx.conf), {FLEET_TOKENS} tokens x {FLEET_PROJECTS} projects"


def fleet_github(latency: float) -> tuple[t.FakeGitHub, list[tuple[str, str]]]:
    """A fake GitHub of its own (as the suite's scale_setup, larger): FLEET_TOKENS tokens that each
    read FLEET_PROJECTS private projects of one release; returns it and the (token, project) pairs."""
    warm_fake_schema()
    github = t.FakeGitHub().start()
    github.latency = latency
    tokens = [f"ghp_fleet{n:02d}" + "x" * 29 for n in range(FLEET_TOKENS)]
    for token in tokens:
        github.add_token(token)
    projects = [f"fleet-{k}" for k in range(FLEET_PROJECTS)]
    for project in projects:
        github.add_repo(project, readers=tokens, writers=()).add_release("v1.0", dict([t.make_wheel(project, "1.0")]))
    return github, [(token, project) for token in tokens for project in projects]


def fleet_script(pairs: list[tuple[str, str]], path: Path) -> Path:
    """A wrk Lua script sending the pairs in turn (each wrk thread from its own offset). nginx hashes
    on Authorization: one fixed header would put the whole load on one instance."""
    targets = ",\n".join(f"  {{{json.dumps(f'/simple/{project}/')}, {json.dumps(t.basic(f'{t.OWNER}:{token}'))}}}"
                         for token, project in pairs)
    path.write_text(f"""-- bench/run.py: every (token, project) pair in turn, {len(pairs)} of them
local targets = {{
{targets}
}}
local requests, following, threads = {{}}, 1, 0

function setup(thread)
  thread:set("offset", threads * 61)
  threads = threads + 1
end

function init(args)
  for i, target in ipairs(targets) do
    requests[i] = wrk.format("GET", target[1], {{Authorization = target[2], Accept = {json.dumps(t.PIP_ACCEPT)}}})
  end
  following = (offset or 0) % #requests + 1
end

function request()
  local this = requests[following]
  following = following % #requests + 1
  return this
end
""")
    return path


def list_direct(port: int, pairs: list[tuple[str, str]], workers: int = FLEET_WORKERS) -> None:
    """GET each pair's listing from an instance directly (plain HTTP), as Nginx.list_pairs does
    through nginx; every answer must be 200."""
    def one(pair: tuple[str, str]) -> None:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        connection.request("GET", f"/simple/{pair[1]}/",
                           headers={**t.JSON_ACCEPT, "Authorization": t.basic(f"{t.OWNER}:{pair[0]}")})
        response = connection.getresponse()
        body = response.read()
        connection.close()
        assert response.status == 200, (pair, response.status, body[:200])

    with concurrent.futures.ThreadPoolExecutor(workers) as pool:
        list(pool.map(one, pairs))


def cold_then_warm(github: t.FakeGitHub, list_all) -> tuple[int, int, int, list]:
    """GraphQL calls of a cold pass over every pair and of a warm one right after, the REST calls of
    both, and what each pass returned (Nginx.list_pairs: the instance that answered each pair)."""
    mark, rest = len(github.graphql_calls), len(github.rest_calls)
    served = [list_all()]
    cold = len(github.graphql_calls) - mark
    served.append(list_all())
    return cold, len(github.graphql_calls) - mark - cold, len(github.rest_calls) - rest, served


def calls_text(cold: int, warm: int, rest: int, pairs: int) -> str:
    warmth = "" if warm == 0 else f" (NOT WARM: {warm} GraphQL calls on the second pass)"
    expected = "" if cold == pairs else f" (expected {pairs} cold: one per pair)"
    return f"{cold} / {warm} (REST {rest}){expected}{warmth}"


def spread_text(served: list, instances: list) -> str:
    """Tokens per instance, from nginx's access log, and whether each stayed on one instance."""
    try:
        cold, warm = t.homes(served[0]), t.homes(served[1])
    except AssertionError as exc:  # a token answered by two instances
        return f"NO AFFINITY: {str(exc)[:300]}"
    counts = collections.Counter(cold.values())
    same = "each token on one instance, the same in both passes" if cold == warm else \
        f"MOVED between the passes: {sum(cold[k] != warm[k] for k in cold)} tokens"
    return f"tokens per instance {'/'.join(str(counts[i.address]) for i in instances)}; {same}"


def fleet_rounds(setups: list[tuple[str, str, list]], github: t.FakeGitHub, script: Path,
                 args: argparse.Namespace) -> dict[tuple[str, int], list[Result]]:
    """Each round loads every setup in turn at each connection count, through the Lua script."""
    results: dict[tuple[str, int], list[Result]] = collections.defaultdict(list)
    for number in range(1, args.fleet_rounds + 1):
        for connections in FLEET_CONNECTIONS:
            for label, url, instances in setups:
                before = len(github.graphql_calls)
                result = run_wrk(url + "/simple/", connections, args.seconds, ["-s", str(script)])
                result.github_calls = len(github.graphql_calls) - before
                dead = [i.address for i in instances if i.process.poll() is not None]
                if dead:
                    result.errors = "; ".join(filter(None, [result.errors, f"instance {', '.join(dead)} EXITED"]))
                for instance in instances:
                    del instance.lines[1:]  # the access log, one line a request: drained, not kept
                results[label, connections].append(result)
                errors = f" ({result.errors})" if result.errors else ""
                print(f"fleet round {number}/{args.fleet_rounds}, {connections} connections, {label}: "
                      f"{rounds_text([result])}{errors}", file=sys.stderr, flush=True)
                time.sleep(PAUSE)
    return results


def fleet_load_text(results: dict[tuple[str, int], list[Result]], label: str,
                    base: str | None = None, base_is: str = "") -> str:
    """req/s (p50 / p99) at each connection count, medians of the rounds; `base`'s ratio; GraphQL
    calls during the load (warm: none); every round when there were several; errors."""
    medians = {n: median_of(results[label, n]) for n in FLEET_CONNECTIONS}
    text = " / ".join(f"{m.rps:,.0f} ({ms(m.p50)} / {ms(m.p99)})" for m in medians.values())
    if base:
        ratios = [medians[n].rps / median_of(results[base, n]).rps if median_of(results[base, n]).rps else
                  float("nan") for n in FLEET_CONNECTIONS]
        text += f"; {' / '.join(f'{r:.2f}x' for r in ratios)} {base_is}"
    calls = sum(r.github_calls for n in FLEET_CONNECTIONS for r in results[label, n])
    text += "; GraphQL calls during the load 0" if not calls else \
        f"; NOT WARM: {calls} GraphQL calls during the load"
    if len(results[label, FLEET_CONNECTIONS[0]]) > 1:
        text += ". Rounds, req/s (p99 ms): " + "; ".join(
            f"{n} conns {rounds_text(results[label, n])}" for n in FLEET_CONNECTIONS)
    errors = [e for n in FLEET_CONNECTIONS for e in errors_text(f"{n} conns", results[label, n])]
    return text + errors_note(errors)


def measure_fleet(args: argparse.Namespace) -> dict[str, object]:
    """Issue 17: FLEET_TOKENS x FLEET_PROJECTS pairs through nginx (deploy/nginx.conf, TLS, keep-alive)
    to 1 and to 3 PyPIHub instances, and to 1 instance directly: GraphQL calls cold and warm, counted
    at the fake GitHub, then warm req/s by wrk with a Lua script rotating the pairs. Every PyPIHub is
    the suite's Instance (--cache-ttl 600 --trusted-proxy 127.0.0.1, then --pypihub-flags)."""
    missing = [name for name, found in (("nginx", t.NGINX), ("wrk", shutil.which("wrk")),
                                        ("openssl", shutil.which("openssl"))) if not found]
    if missing:
        return {FLEET: f"skipped: {' and '.join(missing)} not installed (apt-get install nginx wrk openssl)"}
    try:
        return fleet_rows(args)
    except Exception as exc:  # nginx or an instance would not start, a pass got a non-200: say so, keep the table
        print(f"the fleet failed: {exc!r}", file=sys.stderr)
        return {FLEET: f"FAILED: {type(exc).__name__}: {str(exc).strip()[:500]}"}


def fleet_rows(args: argparse.Namespace) -> dict[str, object]:
    github, pairs = fleet_github(args.latency)
    gc.freeze()  # the fake's data lives in this process: keep its GC pauses out of the numbers
    rows: dict[str, object] = {}
    with tempfile.TemporaryDirectory() as tmp, contextlib.ExitStack() as stack:
        stack.callback(github.stop)
        work = Path(tmp)
        try:
            tls = t.balancer_tls.__wrapped__(work)  # the suite's fixture's own function: CA, cert, key
        except t.pytest.skip.Exception as exc:
            return {FLEET: f"skipped: {exc}"}
        script = fleet_script(pairs, work / "rotate.lua")
        setups: list[tuple[str, str, list]] = []
        for count in (1, 3):
            instances = [t.Instance(github, *args.pypihub_flags) for _ in range(count)]
            for instance in instances:
                stack.callback(instance.stop)
            balancer = t.Nginx(instances, work / f"nginx-{count}", *tls)
            stack.callback(balancer.stop)
            cold, warm, rest, served = cold_then_warm(github, lambda: balancer.list_pairs(pairs, FLEET_WORKERS))
            label = f"{count} instance{'s' * (count > 1)}"
            rows[f"{FLEET}: GraphQL calls cold / warm, {label}"] = (
                f"{calls_text(cold, warm, rest, len(pairs))}; {spread_text(served, instances)}")
            setups.append((label, balancer.url, instances))
        direct = t.Instance(github, *args.pypihub_flags)
        stack.callback(direct.stop)
        cold, warm, rest, _ = cold_then_warm(github, lambda: list_direct(direct.port, pairs))
        setups.append(("direct", f"http://{direct.address}", [direct]))
        flags = direct.process.args[direct.process.args.index("--graphql-url") + 2:]
        version = subprocess.run([t.NGINX, "-v"], capture_output=True, text=True).stderr.strip().split("/")[-1]
        rows = {f"{FLEET}: setup": (
            f"pypihub.py {shlex.join(flags)}; nginx {version} (2 workers, TLS, keep-alive to the instances); "
            f"wrk -t{WRK_THREADS} -s a Lua script sending the {len(pairs)} pairs in turn; {args.seconds:g} s per point, "
            f"{args.fleet_rounds} round{'s' * (args.fleet_rounds > 1)} (median); cold and warm passes "
            f"{FLEET_WORKERS} at once, a new connection each"), **rows}
        results = fleet_rounds(setups, github, script, args)
    conns = " / ".join(map(str, FLEET_CONNECTIONS))
    key = f"fleet behind nginx: warm req/s at {conns} connections (p50 / p99)"
    rows[f"{key}, 1 instance"] = fleet_load_text(results, "1 instance")
    rows[f"{key}, 3 instances"] = fleet_load_text(results, "3 instances", "1 instance", "of 1 instance")
    rows[f"one instance direct (plain HTTP, no nginx), same load: warm req/s at {conns} connections (p50 / p99)"] = (
        fleet_load_text(results, "direct", "1 instance", "of 1 instance behind nginx") +
        f"; its own passes: GraphQL {calls_text(cold, warm, rest, len(pairs))}")
    return rows


def print_table(rows: dict[str, object]) -> None:
    """The results as a Markdown table, keys aligned (README and bench/RESULTS.md quote them)."""
    width = max(len(k) for k in rows)
    for key, value in rows.items():
        print(f"| {key.ljust(width)} | {value} |")


def machine() -> str:
    model = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                  if line.startswith("model name")), platform.processor())
    return f"{model}, {os.cpu_count()} cores, Python {platform.python_version()}, {platform.system()}"


def load_text(before: tuple[float, float, float]) -> str:
    """The 1-minute load average before and after the run: others may be using the machine."""
    return f"load average {before[0]:.2f} at the start, {os.getloadavg()[0]:.2f} at the end"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    option = parser.add_argument
    option("--latency", type=float, default=0.15, help="seconds per fake GraphQL call (default 0.15)")
    option("--seconds", type=float, default=5.0, help="length of each load run (default 5)")
    option("--big-mib", type=int, default=1024, help="size of the proxied asset (default 1024)")
    option("--rounds", type=int, default=3, help="alternating rounds of the comparison (default 3)")
    option("--connections", type=lambda text: [int(n) for n in text.split(",")], default=[16, 64, 256],
           help="keep-alive connection counts to compare at (default 16,64,256)")
    option("--peer-python", default=os.environ.get("PYPIHUB_PEER_PYTHON", "/tmp/peer/bin/python"),
           help="the pypiserver venv's interpreter (default $PYPIHUB_PEER_PYTHON, else /tmp/peer/bin/python)")
    option("--before", type=lambda text: Path(text).resolve(), metavar="PATH",
           help="another pypihub.py (e.g. the commit before a change), measured in the same run: in the "
                "comparison's rounds, and its GitHub calls beside pypihub.py's")
    option("--pypihub-flags", type=shlex.split, default=[],
           help='more pypihub.py flags for every PyPIHub started, e.g. "--busy-threads 2"')
    option("--quick", action="store_true",
           help="only the comparison (with RSS and cold-path overhead) and the fleet behind nginx")
    option("--fleet-only", action="store_true", help="only the fleet behind nginx (issue 17)")
    option("--listings-only", action="store_true",
           help="only what listing the 150-release project costs GitHub, today's and an older GHES (issue 22)")
    option("--fleet-rounds", type=int, default=1,
           help="rounds of the fleet's load runs, each 1 instance, 3 instances, direct in turn (default 1)")
    args = parser.parse_args(argv)
    if args.before and not args.before.is_file():
        parser.error(f"--before {args.before}: no such file")
    return args


def with_before(args: argparse.Namespace, measure) -> dict[str, object]:
    """measure(script)'s rows for pypihub.py and, with --before, each followed by the before copy's
    value ("before: the same" when equal): GitHub calls counted at the fake GitHub, side by side."""
    rows = measure(NOW)
    if not args.before:
        return rows
    before = measure(args.before)
    return {key: f"{value}; before: " + ("the same" if before.get(key) == value else str(before.get(key, "n/a")))
            for key, value in rows.items()}


def measure_calls_and_listings(github: t.FakeGitHub, work: Path, args: argparse.Namespace,
                               script: Path) -> dict[str, object]:
    """GitHub calls, latency, the wide project, one fresh PyPIHub from `script`; an older GHES."""
    process, port = start_pypihub(github, *args.pypihub_flags, script=script)
    downloads = work / ("now" if script == NOW else "before")  # pip's own folders: each run downloads anew
    try:
        rows = {**measure_calls(github, port, downloads), **measure_latency(port), **measure_wide(github, port),
                **measure_page(github, port)}
    finally:
        stop(process)
    rows.update(measure_wide_on_older_ghes(github, args.pypihub_flags, script))
    return rows


def measure_all(github: t.FakeGitHub, work: Path, args: argparse.Namespace) -> dict[str, object]:
    """GitHub calls, latency, the wide project (--before's too); the comparison, the proxy."""
    rows = with_before(args, lambda script: measure_calls_and_listings(github, work, args, script))
    rows.update(measure_comparison(github, work, args))
    rows.update(measure_proxy(github, args.big_mib, args.pypihub_flags))
    return rows


def print_listings(args: argparse.Namespace) -> int:
    with tempfile.TemporaryDirectory() as tmp:
        github = new_github(args.latency, Path(tmp), 1)
        add_wide_project(github)
        def listings(script: Path) -> dict[str, object]:
            process, port = start_pypihub(github, *args.pypihub_flags, script=script)
            try:
                rows = measure_wide(github, port)
            finally:
                stop(process)
            return {**rows, **measure_wide_on_older_ghes(github, args.pypihub_flags, script)}
        rows = with_before(args, listings)
        github.stop()
    print(f"PyPIHub benchmark, listings only: fake GitHub latency {args.latency * 1000:.0f} ms per GraphQL call")
    print(f"machine: {machine()}\n")
    print_table(rows)
    return 0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    load_before = os.getloadavg()
    if args.fleet_only:
        rows = measure_fleet(args)
        print(f"PyPIHub benchmark, the fleet behind nginx only: fake GitHub latency {args.latency * 1000:.0f} ms "
              f"per GraphQL call; {args.fleet_rounds} round(s) of {args.seconds:g} s per point")
        print(f"machine: {machine()}; {load_text(load_before)}\n")
        print_table(rows)
        return 0
    if args.listings_only:
        return print_listings(args)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        github = new_github(args.latency, work, args.big_mib)
        if not args.quick:
            add_wide_project(github)
        gc.freeze()  # the fake's data lives in this process: keep its GC pauses out of PyPIHub's latency
        rows = measure_comparison(github, work, args) if args.quick else measure_all(github, work, args)
        github.stop()
    if not args.quick:
        rows.update(with_before(args, lambda script: measure_one_index(args.latency, args.pypihub_flags, script)))
    rows.update(measure_fleet(args))
    loader = "wrk -t2 --latency" if shutil.which("wrk") else "Python threads (no wrk)"
    print(f"PyPIHub benchmark: fake GitHub latency {args.latency * 1000:.0f} ms per GraphQL call; "
          f"comparison: median of {args.rounds} alternating rounds of {args.seconds:g} s each; {loader}")
    print(f"machine: {machine()}; {load_text(load_before)}\n")
    print_table(rows)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
