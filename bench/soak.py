#!/usr/bin/env python3
"""PyPIHub soak and attack benchmark (issue 13): the test suite's fake GitHub in this process,
PyPIHub as its own process, everything on loopback; prints one table.

    . /tmp/v/bin/activate   # or any Python with the test tools: python3 -m pip install '.[test]'
    python3 bench/soak.py [--tokens 2000] [--releases 150] [--metadata-kib 200] [--cache-memory 64]
                          [--attack-seconds 40] [--tls] [--one-address]

Phase A: each of --tokens distinct tokens lists a --releases-wheel project (PEP 691 JSON) and
reads every wheel's .metadata, 8 keep-alive clients at once; PyPIHub's RSS is sampled.
Phase B: 100 slowloris connections and 20 upload bombs (unknown token, endless tiny form fields)
while pip downloads a wheel 5 times and /healthz is asked 10 times; with --tls again over HTTPS.
Each attacker connects from its own loopback address (127.0.1.x, 127.0.2.x), so per-address caps
do not hide the global ones; --one-address sends them all from 127.0.0.1, where pip and /healthz are.
pypihub.py is copied at start, so edits made to it during a run do not mix versions.
Targets (issue 13) that are missed are marked MISSED; the exit status is 0 unless the script fails.
Quick run: python3 bench/soak.py --tokens 50
"""
from __future__ import annotations

import argparse
import base64
import collections
import concurrent.futures
import gc
import hashlib
import http.client
import io
import json
import os
import re
import select
import shutil
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import zipfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import run as bench_run  # noqa: E402  (machine(), rss_kib(), stop(), print_table(); it puts the repo root on sys.path)
import test_pypihub as t  # noqa: E402  (the fake GitHub)

JSON_ACCEPT = "application/vnd.pypi.simple.v1+json"
BAD_TOKEN = "ghp_soakUnknownToken000000000000000000000"  # well-formed, unknown to GitHub
WORKERS, SLOWLORIS, BOMBS, PIP_RUNS, HEALTHZ_RUNS = 8, 100, 20, 5, 10
MIB = 1 << 20


# --- The fake GitHub and PyPIHub ---


def wide_wheel(version: str, metadata_kib: int) -> tuple[str, bytes]:
    """t.make_wheel's wheel with a long, compressible Description appended to METADATA (RECORD redone)."""
    name, content = t.make_wheel("wide", version)
    with zipfile.ZipFile(io.BytesIO(content)) as archive:
        files = {n: archive.read(n) for n in archive.namelist() if not n.endswith("/RECORD")}
    line = f"wide {version}: a long description that compresses well, as real READMEs do.\n".encode()
    meta = next(n for n in files if n.endswith("/METADATA"))
    files[meta] += b"Description-Content-Type: text/plain\n\n" + line * (metadata_kib * 1024 // len(line))
    record = meta.replace("/METADATA", "/RECORD")
    digest = lambda data: base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()  # noqa: E731
    files[record] = ("".join(f"{path},sha256={digest(data)},{len(data)}\n" for path, data in files.items())
                     + f"{record},,\n").encode()
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for path, data in files.items():
            archive.writestr(path, data)
    return name, buffer.getvalue()


def new_github(args: argparse.Namespace) -> tuple[t.FakeGitHub, list[str]]:
    t.schema_errors("query { viewer { login } }")  # build GitHub's schema now, not in the first request
    t.github_schema()
    github = t.FakeGitHub().start()
    github.latency = 0.0
    tokens = [f"ghp_soak{n:032d}" for n in range(args.tokens)]
    for n, token in enumerate(tokens):
        github.tokens[token] = f"soaker{n}"
    repo = github.add_repo("wide", readers=tokens)
    for n in range(args.releases):
        repo.add_release(f"v1.{n}", dict([wide_wheel(f"1.{n}", args.metadata_kib)]))
    return github, tokens


def snapshot(work: Path) -> tuple[Path, str]:
    """A copy of pypihub.py as it is now, and which version that is."""
    copy = work / "pypihub.py"
    shutil.copy(bench_run.ROOT / "pypihub.py", copy)

    def git(*args: str) -> str:
        return subprocess.run(["git", "-C", str(bench_run.ROOT), *args], capture_output=True, text=True).stdout.strip()

    edited = " + uncommitted edits" if git("status", "--porcelain", "pypihub.py") else ""
    digest = hashlib.sha256(copy.read_bytes()).hexdigest()[:12]
    return copy, f"git {git('rev-parse', '--short', 'HEAD')}{edited}; sha256 {digest}"


def supports(program: Path, flag: str) -> bool:
    return flag in subprocess.run([sys.executable, str(program), "--help"], capture_output=True, text=True).stdout


class Hub:
    """PyPIHub as its own process; its log is drained and its worrying lines counted."""

    def __init__(self, program: Path, github: t.FakeGitHub, *flags: str) -> None:
        command = [sys.executable, str(program), "--host", "127.0.0.1", "--port", "0",
                   "--graphql-url", github.graphql_url, *flags]
        self.process = subprocess.Popen(command, stderr=subprocess.PIPE, text=True)
        first = self.process.stderr.readline()
        found = re.search(r":(\d+)/simple/", first)
        if not found:
            raise RuntimeError(f"PyPIHub did not start: {first}{self.process.stderr.read()}")
        self.port, self.pid = int(found.group(1)), self.process.pid
        self.lines, self.counts, self.samples = 0, collections.Counter(), {}
        threading.Thread(target=self._drain, daemon=True).start()

    def _drain(self) -> None:
        for line in self.process.stderr:
            self.lines += 1
            for kind in ("internal error", "connection error", "Traceback"):
                if kind in line:
                    self.counts[kind] += 1
                    self.samples.setdefault(kind, line.strip()[:160])

    def log_summary(self) -> str:
        kinds = ", ".join(f"{k}: {n}" for k, n in self.counts.items()) or "no errors"
        return f"{self.lines} lines; {kinds}" + "".join(f"; e.g. {s!r}" for s in self.samples.values())

    def cpu_seconds(self) -> float:
        fields = Path(f"/proc/{self.pid}/stat").read_text().rpartition(")")[2].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


class RssSampler:
    """VmRSS every 0.5 s in a thread; VmHWM is reset at the start (clear_refs 5) where the kernel allows."""

    def __init__(self, pid: int) -> None:
        self.pid, self.peak, self.last, self.stopping = pid, 0, 0, threading.Event()
        try:
            Path(f"/proc/{pid}/clear_refs").write_text("5")
            self.hwm_reset = True
        except OSError:
            self.hwm_reset = False
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self.stopping.wait(0.5):
            self.last = bench_run.rss_kib(self.pid)["VmRSS"]
            self.peak = max(self.peak, self.last)

    def stop(self) -> dict[str, float]:
        self.stopping.set()
        self.thread.join()
        now = bench_run.rss_kib(self.pid)
        hwm = now["VmHWM"] if self.hwm_reset else max(self.peak, now["VmRSS"])
        return {"peak": max(hwm, self.peak) / 1024, "end": now["VmRSS"] / 1024}


def target(ok: bool, text: str) -> str:
    return text + ("" if ok else "  MISSED")


def auth(token: str) -> str:
    return "Basic " + base64.b64encode(f"{t.OWNER}:{token}".encode()).decode()


# --- Phase A: many tokens, every listing and every .metadata ---


def phase_a(hub: Hub, github: t.FakeGitHub, tokens: list[str], cache_mib: int, limit: float) -> dict[str, object]:
    local, tally, lock = threading.local(), collections.Counter(), threading.Lock()
    statuses: collections.Counter = collections.Counter()
    deadline = time.monotonic() + limit

    def get(path: str) -> tuple[int, bytes]:
        for attempt in (1, 2):  # one retry on a connection the server closed
            if getattr(local, "connection", None) is None:
                local.connection = http.client.HTTPConnection("127.0.0.1", hub.port, timeout=60)
            try:
                local.connection.request("GET", path, headers=local.headers)
                response = local.connection.getresponse()
                return response.status, response.read()
            except (OSError, http.client.HTTPException):
                local.connection.close()
                local.connection = None
                if attempt == 2:
                    return 0, b""

    def one_token(token: str) -> None:
        if time.monotonic() > deadline:
            with lock:
                tally["skipped (time limit)"] += 1
            return
        local.headers = {"Authorization": auth(token), "Accept": JSON_ACCEPT}
        answers = [get("/simple/wide/")]
        if answers[0][0] == 200:
            for entry in json.loads(answers[0][1])["files"]:
                if entry["filename"].endswith(".whl"):
                    answers.append(get(urllib.parse.urljoin("/simple/wide/", entry["url"]) + ".metadata"))
        with lock:
            tally["requests"] += len(answers)
            statuses.update(status for status, _ in answers)

    before = (len(github.graphql_calls), len(github.rest_calls), len(github.downloads))
    sampler, started, cpu = RssSampler(hub.pid), time.monotonic(), hub.cpu_seconds()
    with concurrent.futures.ThreadPoolExecutor(WORKERS) as pool:
        list(pool.map(one_token, tokens))
    elapsed, rss = time.monotonic() - started, sampler.stop()
    graphql, rest, downloads = (b - a for a, b in zip(before, (len(github.graphql_calls), len(github.rest_calls),
                                                               len(github.downloads))))
    errors = sum(n for status, n in statuses.items() if status != 200)
    skipped = tally["skipped (time limit)"]
    rows = {"requests / errors (non-200; 0 = connection failed)": f"{tally['requests']} / {errors} {dict(statuses)}"
            + (f"; {skipped} tokens skipped at the {limit:.0f} s limit" if skipped else ""),
            "elapsed / requests per second": f"{elapsed:.1f} s / {tally['requests'] / elapsed:.0f}",
            "PyPIHub CPU seconds": f"{hub.cpu_seconds() - cpu:.1f}",
            "peak RSS (VmHWM) / RSS at the end": target(rss["peak"] < cache_mib + 64,
                                                      f"{rss['peak']:.0f} MiB / {rss['end']:.0f} MiB (target < "
                                                      f"{cache_mib} + 64 MiB)"),
            "GitHub calls: GraphQL / REST / download host": f"{graphql} / {rest} / {downloads}"}
    return {f"A {len(tokens)} tokens: {k}": v for k, v in rows.items()}


# --- Phase B: slowloris and upload bombs while pip installs ---


def connect(port: int, tls: ssl.SSLContext | None, source: str, timeout: float = 10) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=timeout, source_address=(source, 0))
    return tls.wrap_socket(sock, server_hostname="127.0.0.1") if tls else sock


def first_line(sock: socket.socket, wait: float = 1.0) -> str | None:
    """What the server sent within `wait` seconds: its status line, "EOF", or an error's name; None when it
    sent nothing (over TLS, readable can be a record without data, such as a TLS 1.3 session ticket)."""
    timeout = sock.gettimeout()
    try:
        sock.settimeout(wait)  # 0: do not wait
        data = sock.recv(4096)
    except (ssl.SSLWantReadError, BlockingIOError, socket.timeout):
        return None
    except OSError as exc:
        return type(exc).__name__
    finally:
        sock.settimeout(timeout)
    return data.split(b"\r\n", 1)[0].decode("latin-1") if data else "EOF"


def answered(sock: socket.socket) -> str | None:
    """first_line() if the server has sent something (or closed), without waiting; else None."""
    if select.select([sock], [], [], 0)[0] or (isinstance(sock, ssl.SSLSocket) and sock.pending()):
        return first_line(sock, wait=0)
    return None


def slowloris(port: int, tls: ssl.SSLContext | None, sources: list[str],
              done: threading.Event) -> dict[str, object]:
    """SLOWLORIS connections that send a request line, then one header byte a second, until closed or done."""
    opened, closed, lines = {}, [], collections.Counter()
    for n in range(SLOWLORIS):
        started = time.monotonic()
        try:
            sock = connect(port, tls, sources[n % len(sources)])
            sock.sendall(b"GET /simple/wide/ HTTP/1.1\r\nHost: x\r\nX-Slowloris: ")
            opened[sock] = started
        except (OSError, ssl.SSLError) as exc:
            closed.append(time.monotonic() - started)
            lines[f"at connect: {type(exc).__name__}"] += 1
    while opened and not done.wait(1.0):
        for sock in list(opened):
            line = answered(sock)
            if line is None:
                try:
                    sock.sendall(b"a")
                except OSError:
                    line = first_line(sock) or "nothing (send failed)"
            if line is not None:
                closed.append(time.monotonic() - opened.pop(sock))
                lines[line] += 1
                sock.close()
    for sock in opened:
        sock.close()
    after = (f"; after {min(closed):.1f}–{max(closed):.1f} s (median {statistics.median(closed):.1f} s); "
             f"they got {dict(lines)}" if closed else "")
    return {"slowloris connections closed by the server": f"{len(closed)} of {SLOWLORIS}{after}"}


def bomb(port: int, tls: ssl.SSLContext | None, source: str,
         done: threading.Event) -> tuple[float | None, str, int]:
    """An upload with an unknown token: 300 MiB announced, then tiny form fields as fast as they go.
    Returns (seconds until the server refused, its status line, bytes sent)."""
    started, sent, n = time.monotonic(), 0, 0
    try:
        sock = connect(port, tls, source)
        sock.sendall(f"POST /legacy/ HTTP/1.1\r\nHost: x\r\nAuthorization: {auth(BAD_TOKEN)}\r\nContent-Type: "
                     f"multipart/form-data; boundary=x\r\nContent-Length: {300 * MIB}\r\n\r\n".encode())
    except (OSError, ssl.SSLError) as exc:
        return time.monotonic() - started, f"at connect: {type(exc).__name__}", 0
    sock.settimeout(1.0)
    line = None
    try:
        while not done.is_set():
            line = answered(sock)
            if line is not None:
                break  # the server answered or closed
            field = b'--x\r\nContent-Disposition: form-data; name="f%d"\r\n\r\nv\r\n'
            left = memoryview(b"".join(field % (n + k) for k in range(500)))
            n += 500
            while left and not done.is_set():
                try:
                    count = sock.send(left)
                except (socket.timeout, ssl.SSLWantWriteError):
                    continue  # the server reads slower than this: offer the same bytes again
                left, sent = left[count:], sent + count
        else:
            return None, "still reading when the phase ended", sent
    except (OSError, ssl.SSLError):
        pass  # the server closed the connection
    refused = time.monotonic() - started
    line = line or first_line(sock) or "nothing (send failed)"
    sock.close()
    return refused, line, sent


def pip_download(port: int, tls: bool, cert: Path | None, work: Path, n: int) -> float | str:
    scheme = "https" if tls else "http"
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "-d", str(work / f"pip{n}"), "--index-url",
               f"{scheme}://{t.OWNER}:{t.TOKEN_A}@127.0.0.1:{port}/simple/", "wide==1.0"]
    command += ["--cert", str(cert)] if tls else []
    started = time.monotonic()
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=60, env=t.pip_env(work))
    except subprocess.TimeoutExpired:
        return "timed out (60 s)"
    if result.returncode:
        return f"failed ({(result.stderr.strip().splitlines() or ['?'])[-1].removeprefix('ERROR: ')[:100]})"
    return time.monotonic() - started


def healthz(port: int, tls: ssl.SSLContext | None, pause: float) -> float | str:
    """Seconds for GET /healthz on a new connection (after a `pause`), or what went wrong."""
    time.sleep(pause)
    started = time.monotonic()
    try:
        cls = http.client.HTTPSConnection if tls else http.client.HTTPConnection
        connection = cls("127.0.0.1", port, timeout=10, **({"context": tls} if tls else {}))
        connection.request("GET", "/healthz")
        status = connection.getresponse().status
        connection.close()
    except (OSError, http.client.HTTPException) as exc:
        return f"{type(exc).__name__} after {time.monotonic() - started:.1f} s"
    return time.monotonic() - started if status == 200 else f"status {status}"


def phase_b(hub: Hub, github: t.FakeGitHub, args: argparse.Namespace, work: Path,
            cert: Path | None) -> dict[str, object]:
    cache_mib, seconds = args.cache_memory, args.attack_seconds
    tls = ssl.create_default_context(cafile=str(cert)) if cert else None
    done, started = threading.Event(), time.monotonic()
    bad = lambda calls: sum(token == BAD_TOKEN for token, _ in calls)  # noqa: E731
    before = (bad(github.graphql_calls) + bad(github.rest_calls), len(github.graphql_calls), len(github.rest_calls))
    sampler, cpu = RssSampler(hub.pid), hub.cpu_seconds()
    pool = concurrent.futures.ThreadPoolExecutor(1 + BOMBS + 2)
    address = lambda net, n: "127.0.0.1" if args.one_address else f"127.0.{net}.{n + 1}"  # noqa: E731
    loris = pool.submit(slowloris, hub.port, tls, [address(1, n) for n in range(SLOWLORIS)], done)
    time.sleep(2)  # let the slowloris connections take their slots first
    bombs = [pool.submit(bomb, hub.port, tls, address(2, n), done) for n in range(BOMBS)]
    time.sleep(1)
    pips = pool.submit(lambda: [pip_download(hub.port, bool(cert), cert, work, n) for n in range(PIP_RUNS)])
    health = pool.submit(lambda: [healthz(hub.port, tls, pause=1.0) for _ in range(HEALTHZ_RUNS)])
    pip_times, health_times = pips.result(), health.result()
    done.wait(max(0.0, started + seconds - time.monotonic()))  # the attack lasts at least `seconds`
    done.set()
    bomb_results, loris_rows = [b.result() for b in bombs], loris.result()
    pool.shutdown()
    elapsed, rss, cpu = time.monotonic() - started, sampler.stop(), hub.cpu_seconds() - cpu
    label = "TLS" if cert else "HTTP"

    def times(values: list, limit: float) -> str:
        good = [v for v in values if isinstance(v, float)]
        failed = [v for v in values if not isinstance(v, float)]
        text = ", ".join(f"{v:.2f} s" if isinstance(v, float) else v for v in values)
        worst = f"max {max(good):.2f} s" if good else "none answered"
        return target(not failed and max(good) < limit, f"{text}; {worst} (target < {limit:g} s)")

    refused = [r for r, _, _ in bomb_results if r is not None]
    answers = dict(collections.Counter(line for _, line, _ in bomb_results))
    bomb_text = (f"{len(refused)} of {BOMBS} refused" + (f" after {min(refused):.1f}–{max(refused):.1f} s" if refused
                                                         else "")
                 + f"; they got {answers}; {sum(s for _, _, s in bomb_results) / MIB:.1f} MiB sent in all")
    bad_calls = bad(github.graphql_calls) + bad(github.rest_calls) - before[0]
    rows = {"phase length": f"{elapsed:.1f} s",
            f"pip download wide==1.0 ×{PIP_RUNS}": times(pip_times, 5.0),
            f"/healthz ×{HEALTHZ_RUNS} (new connection each)": times(health_times, 1.0),
            **loris_rows,
            f"upload bombs ({BOMBS}, unknown token, endless tiny fields)": bomb_text,
            "PyPIHub peak RSS / RSS at the end": target(rss["peak"] < cache_mib + 64,
                                                       f"{rss['peak']:.0f} MiB / {rss['end']:.0f} MiB (target < "
                                                       f"{cache_mib} + 64 MiB)"),
            "PyPIHub CPU seconds in the phase": f"{cpu:.1f} of {elapsed:.1f} s wall",
            "GitHub calls with the bombs' token": target(bad_calls <= max(1, round(elapsed / 60)),
                                                         f"{bad_calls} (target ≤ 1 per minute)"),
            "GitHub calls in all: GraphQL / REST": f"{len(github.graphql_calls) - before[1]} / "
                                                   f"{len(github.rest_calls) - before[2]}"}
    return {f"B {label}: {k}": v for k, v in rows.items()}


def self_signed(work: Path) -> Path:
    cert, key = work / "cert.pem", work / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost",
                    "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True)
    return cert


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=2000, help="distinct tokens in phase A (default 2000)")
    parser.add_argument("--releases", type=int, default=150, help="releases (one wheel each) of 'wide' (default 150)")
    parser.add_argument("--metadata-kib", type=int, default=200, help="size of each wheel's METADATA (default 200)")
    parser.add_argument("--cache-memory", type=int, default=64, help="PyPIHub's --cache-memory in MiB (default 64)")
    parser.add_argument("--attack-seconds", type=float, default=40, help="least length of phase B (default 40)")
    parser.add_argument("--phase-a-limit", type=float, default=1200,
                        help="phase A starts no new token after this (default 1200 s)")
    parser.add_argument("--tls", action="store_true", help="run phase B again over HTTPS")
    parser.add_argument("--one-address", action="store_true", help="attack from 127.0.0.1, as pip does")
    args = parser.parse_args(argv)
    command = " ".join(["python3 bench/soak.py", *(argv if argv is not None else sys.argv[1:])])
    rows: dict[str, object] = {"machine": bench_run.machine(), "command": command}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        program, rows["pypihub.py"] = snapshot(work)
        flags = ["--cache-memory", str(args.cache_memory)] if supports(program, "--cache-memory") else []
        rows["--cache-memory"] = (f"{args.cache_memory} MiB" if flags else f"not recognized by this PyPIHub: started "
                                  f"without it (targets still use {args.cache_memory} MiB)")
        rows["attackers connect from"] = "127.0.0.1, as pip" if args.one_address else "one loopback address each"
        built = time.monotonic()
        github, tokens = new_github(args)
        rows["fake GitHub"] = (f"'wide': {args.releases} releases, one wheel each with a {args.metadata_kib} KiB "
                               f"METADATA; {len(tokens)} tokens; built in {time.monotonic() - built:.1f} s")
        gc.freeze()  # the fake's data lives here: keep its GC pauses out of the clients' timings
        hubs = [Hub(program, github, *flags)]
        try:
            rows["PyPIHub RSS at start"] = f"{bench_run.rss_kib(hubs[0].pid)['VmRSS'] / 1024:.0f} MiB"
            rows.update(phase_a(hubs[0], github, tokens, args.cache_memory, args.phase_a_limit))
            rows.update(phase_b(hubs[0], github, args, work, None))
            rows["HTTP PyPIHub's log"] = hubs[0].log_summary()
            if args.tls:
                cert = self_signed(work)
                hubs.append(Hub(program, github, *flags, "--certfile", str(cert), "--keyfile", str(work / "key.pem")))
                rows.update(phase_b(hubs[1], github, args, work, cert))
                rows["TLS PyPIHub's log"] = hubs[1].log_summary()
        finally:
            for hub in hubs:
                bench_run.stop(hub.process)
            github.stop()
    print("PyPIHub soak: fake GitHub latency 0, all traffic on loopback\n")
    bench_run.print_table(rows)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
