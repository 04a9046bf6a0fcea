#!/usr/bin/env python3
"""PyPIHub benchmark: the test suite's fake GitHub (with a per-call latency), PyPIHub as its own
process, and a load generator; prints one table.

    python3 bench/run.py [--latency 0.15] [--seconds 5] [--big-mib 1024]

Load comes from wrk and downloads from curl when they are installed (apt-get install wrk curl).
Needs the test tools (python3 -m pip install '.[test]'); compares against pypiserver serving the
same files from disk when it is installed (python3 -m pip install pypiserver). Everything runs on
loopback. Numbers measure this machine; README quotes them with the machine they came from.
"""
from __future__ import annotations

import argparse
import base64
import gc
import http.client
import io
import json
import os
import platform
import re
import shutil
import socket
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

PROJECT = "demo-pkg"
WRK_THREADS = 2


def start_pypihub(github: t.FakeGitHub, *flags: str) -> tuple[subprocess.Popen, int]:
    command = [sys.executable, str(ROOT / "pypihub.py"), "--host", "127.0.0.1", "--port", "0",
               "--graphql-url", github.graphql_url, *flags]
    process = subprocess.Popen(command, stderr=subprocess.PIPE, text=True)
    port = int(re.search(r":(\d+)/simple/", process.stderr.readline()).group(1))
    threading.Thread(target=lambda: [None for _ in process.stderr], daemon=True).start()  # drain the log
    return process, port


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


def load(port: int, path: str, headers: dict, connections: int, seconds: float) -> tuple[float, float, str]:
    """Requests/s and p99 latency with `connections` keep-alive clients for `seconds`: wrk when
    installed (a C client that does not compete for a Python interpreter), else Python threads."""
    if shutil.which("wrk"):
        return load_with_wrk(port, path, headers, connections, seconds)
    latencies: list[list[float]] = [[] for _ in range(connections)]
    deadline = time.perf_counter() + seconds

    def client(mine: list[float]) -> None:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        while (now := time.perf_counter()) < deadline:
            connection.request("GET", path, headers=headers)
            response = connection.getresponse()
            response.read()
            mine.append(time.perf_counter() - now)
        connection.close()

    threads = [threading.Thread(target=client, args=(mine,)) for mine in latencies]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    every = [x for mine in latencies for x in mine]
    return len(every) / seconds, percentile(every, 0.99), ""


def load_with_wrk(port: int, path: str, headers: dict, connections: int, seconds: float) -> tuple[float, float, str]:
    command = ["wrk", f"-t{min(WRK_THREADS, connections)}", f"-c{connections}", f"-d{max(1, round(seconds))}s", "--latency"]
    command += [arg for name, value in headers.items() for arg in ("-H", f"{name}: {value}")]
    out = subprocess.run(command + [f"http://127.0.0.1:{port}{path}"], capture_output=True, text=True, check=True).stdout
    if "Non-2xx" in out:
        raise RuntimeError(f"wrk saw error answers:\n{out}")
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    value, unit = re.search(r"99%\s+([\d.]+)(us|ms|s)", out).groups()
    errors = re.search(r"Socket errors: (.*)", out)
    return rps, float(value) * {"us": 1e-6, "ms": 1e-3, "s": 1.0}[unit], f", socket errors: {errors.group(1)}" if errors else ""


def pip_download(port: int, target: Path) -> None:
    index = f"http://{t.OWNER}:{t.TOKEN_A}@127.0.0.1:{port}/simple/"
    subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "-d", str(target), "--index-url", index,
                    f"{PROJECT}==1.0"], check=True, capture_output=True, env=t.pip_env(target))


def rss_kib(pid: int) -> dict[str, int]:
    status = Path(f"/proc/{pid}/status").read_text()
    return {key: int(re.search(rf"{key}:\s+(\d+)", status).group(1)) for key in ("VmRSS", "VmHWM")}


def stream(url: str, headers: dict) -> float:
    """MiB/s of a whole download by curl (its own process, so no client shares our interpreter)."""
    command = ["curl", "-sS", "--fail", "-o", os.devnull, "-w", "%{speed_download}", url]
    command += [arg for name, value in headers.items() for arg in ("-H", f"{name}: {value}")]
    return float(subprocess.run(command, capture_output=True, text=True, check=True).stdout) / (1 << 20)


def new_github(latency: float, work: Path, big_mib: int) -> t.FakeGitHub:
    t.schema_errors("query { viewer { login } }")  # the fake's own warm-up: build GitHub's schema now,
    t.github_schema()  # not during the first measured request
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
    repo.add_release("big", {f"{PROJECT.replace('-', '_')}-9.0-py3-none-any.whl": big})
    for n in range(60):
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


def measure_wide(github: t.FakeGitHub, port: int) -> dict[str, object]:
    """Issue 7: GitHub work for listing a 150-release project and reading every wheel's metadata."""
    rows: dict[str, object] = {}

    def step(label: str, token: str, metadata: bool = False) -> None:
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
        rows[label] = (f"GraphQL {graphql} ({answered / 1024:.0f} KiB of answers), REST {rest}, download host "
                       f"{requests} requests / {sent / 1024:.0f} KiB; {hashed}/{len(page['files'])} files hashed")

    step("150 releases: cold listing", "ghp_bench0051")
    step("150 releases: warm listing (same token, within TTL)", "ghp_bench0051")
    step("150 releases: another token's cold listing (digests cached per asset)", "ghp_bench0052")
    step("150 releases: listing + .metadata of all 150 wheels, cold", "ghp_bench0053", metadata=True)
    step("150 releases: listing + .metadata of all 150 wheels, warm", "ghp_bench0053", metadata=True)
    wheel_bytes = sum(a["size"] for a in github.assets.values() if a["name"].startswith("wide-") and a["name"].endswith(".whl"))
    rows["150 releases: all wheels downloaded whole, for comparison"] = f"{wheel_bytes / 1024:.0f} KiB"
    return rows


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


def measure_throughput(port: int, seconds: float, label: str, headers: dict, path: str) -> dict[str, object]:
    rows = {}
    for connections in (16, 64):
        rps, p99, errors = load(port, path, headers, connections, seconds)
        rows[f"{label}: warm req/s at {connections} keep-alive connections (p99)"] = f"{rps:.0f} ({p99 * 1000:.1f} ms{errors})"
    return rows


def measure_pypiserver(work: Path, seconds: float) -> dict[str, object]:
    try:
        import pypiserver  # noqa: F401
    except ImportError:
        return {"pypiserver": "not installed (python3 -m pip install pypiserver to compare)"}
    files = work / "pypiserver"
    files.mkdir()
    for wheel in work.glob("*.whl"):
        shutil.copy(wheel, files)
    port = free_port()
    process = subprocess.Popen([sys.executable, "-m", "pypiserver", "run", "-i", "127.0.0.1", "-p", str(port),
                                "-a", ".", "-P", ".", str(files)], stderr=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
    try:
        for _ in range(200):  # until it answers
            try:
                timed_get(port, f"/simple/{PROJECT}/", {})
                break
            except (OSError, AssertionError):
                time.sleep(0.05)
        return measure_throughput(port, seconds, "pypiserver (same files, from disk)", {}, f"/simple/{PROJECT}/")
    finally:
        stop(process)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def measure_proxy(github: t.FakeGitHub, work: Path, big_mib: int) -> dict[str, object]:
    process, port = start_pypihub(github, "--proxy-downloads")
    try:
        page = http.client.HTTPConnection("127.0.0.1", port)
        page.request("GET", f"/simple/{PROJECT}/", headers={**auth(), "Accept": "text/html"})
        href = next(h for h, text, _ in t.parse_links(page.getresponse().read().decode()) if "9.0" in text)
        path = urllib.parse.urljoin(f"/simple/{PROJECT}/", href)
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
            f"{big_mib} MiB download through --proxy-downloads": f"{proxied_rate:.0f} MiB/s ({proxied_rate / direct_rate:.0%} of direct)",
            "PyPIHub peak RSS growth during it": f"{growth:.1f} MiB (RSS before {before['VmRSS'] / 1024:.1f} MiB)"}


def measure_one_index(latency: float) -> dict[str, object]:
    """Issue 14: one index URL (--owner, --fallback-index, user __token__) resolving 5 private and
    100 public names: GitHub calls cold and warm, independent of the public names' count."""
    github = t.FakeGitHub().start()
    github.latency = latency
    for n in range(5):
        github.add_repo(f"private-{n}").add_release("v1.0", dict([t.make_wheel(f"private-{n}", "1.0")]))
    upstream = t.FakeUpstream()
    process, port = start_pypihub(github, "--owner", t.OWNER, "--fallback-index", upstream.url)
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


def print_table(rows: dict[str, object]) -> None:
    """The results as a Markdown table, keys aligned (README and bench/RESULTS.md quote them)."""
    width = max(len(k) for k in rows)
    for key, value in rows.items():
        print(f"| {key.ljust(width)} | {value} |")


def machine() -> str:
    model = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                  if line.startswith("model name")), platform.processor())
    return f"{model}, {os.cpu_count()} cores, Python {platform.python_version()}, {platform.system()}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--latency", type=float, default=0.15, help="seconds per fake GraphQL call (default 0.15)")
    parser.add_argument("--seconds", type=float, default=5.0, help="length of each load run (default 5)")
    parser.add_argument("--big-mib", type=int, default=1024, help="size of the proxied asset (default 1024)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        github = new_github(args.latency, work, args.big_mib)
        add_wide_project(github)
        gc.freeze()  # the fake's data lives in this process: keep its GC pauses out of PyPIHub's latency
        process, port = start_pypihub(github)
        try:
            rows = {**measure_calls(github, port, work), **measure_latency(port), **measure_wide(github, port),
                    **measure_throughput(port, args.seconds, "PyPIHub", auth(), f"/simple/{PROJECT}/")}
        finally:
            stop(process)
        rows.update(measure_pypiserver(work, args.seconds))
        rows.update(measure_proxy(github, work, args.big_mib))
        github.stop()
        rows.update(measure_one_index(args.latency))
    print(f"PyPIHub benchmark: fake GitHub latency {args.latency * 1000:.0f} ms per GraphQL call")
    print(f"machine: {machine()}\n")
    print_table(rows)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
