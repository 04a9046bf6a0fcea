"""pypiserver, the peer bench/run.py compares PyPIHub with: the same wheels from one directory, each
server started the way pypiserver documents it, `pypi-server run --server METHOD`, from a venv of its own
(see run.py's docstring). Nothing here imports pypiserver: each server runs in that venv, on loopback,
with its own port.

What pypiserver documents (README "Using a Different WSGI Server", `pypi-server run --help`,
pypiserver/__main__.py, docker/entrypoint.sh; pypiserver 2.4.2):
- `--server gunicorn`: bottle's GunicornServer adapter runs gunicorn in-process with the app pypi-server
  built; pypi-server empties sys.argv and says gunicorn is configured by $GUNICORN_CMD_ARGS or a
  gunicorn.conf.py in the working directory (the work directory here has none). Its Docker image runs
  `pypi-server run -p $PORT --server gunicorn` by default. We give GUNICORN_CMD_ARGS
  "--workers 2 --worker-class gthread --threads 4" (as the old peer ran; issue 25 item 10); bind from
  pypi-server's own -i/-p.
- waitress: `--server` accepts only auto, cherrypy, gevent, gunicorn, paste, twisted and wsgiref; the
  default, auto, runs bottle's AutoServer, which takes waitress first when it is installed (pypiserver's
  guess_auto_server says the same). So the waitress peer is plain `pypi-server run` (auto), in a venv
  with waitress. bottle's WaitressServer calls waitress.serve(app, host=, port=) and passes no other
  option, so waitress runs with its defaults (4 threads, connection_limit 100).
- `--server wsgiref`: what `auto` picks in a bare `pip install pypiserver` (no waitress, paste,
  twisted or cheroot): one thread, HTTP/1.0, a connection per request.
Every server gets `-a . -P .` (no authentication, no password file) and the wheels directory.

Differences that remain (the table's "pypiserver peers: differences that remain" row says them too):
- pypiserver's `cache` extra watches the directory with a watchdog Observer thread, started when
  pypi-server builds the app. Under `--server gunicorn` that is in gunicorn's master, before the fork:
  the workers have no observer thread, so their listing and digest cache is filled once and never
  invalidated (a wheel copied in after the start is never listed). README's own gunicorn line,
  `gunicorn -w4 'pypiserver:app(root=...)'`, and this file's old app module build the app in each
  worker with a live observer; with watchdog 6 reading a wheel to hash it raises opened/closed events
  that empty the cache, so every listing lists and hashes again: 1.5x to 6x slower in our checks, and
  slower as a run goes on. The documented start is the faster peer; its cache is stale, not smarter.
- waitress and wsgiref run in one process with a live observer: the same hashing on every listing.
- The documented start cannot give waitress options: the old peer's 8 threads and connection limit
  400 are gone; at 256 connections 156 of them wait to be accepted, outside the latency wrk measures.
"""
from __future__ import annotations

import dataclasses
import http.client
import json
import os
import shlex
import socket
import subprocess
import time
from pathlib import Path

GUNICORN_CMD_ARGS = "--workers 2 --worker-class gthread --threads 4"
GUNICORN = "pypiserver+gunicorn(2x4 gthread)"  # the reference peer: run.py's ratios are to it
PROBE = """import importlib.metadata, json
versions = {}
for name in ("pypiserver", "watchdog", "gunicorn", "waitress"):
    try:
        versions[name] = importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        pass
try:
    import gunicorn.config
    versions["gunicorn control socket"] = "control_socket_disable" in gunicorn.config.Config().settings
except ImportError:
    pass
print(json.dumps(versions))
"""


@dataclasses.dataclass
class Server:
    """One server under load: what the table calls it, where it listens, and its process."""
    label: str
    port: int
    process: subprocess.Popen | None = None
    log: Path | None = None


@dataclasses.dataclass
class Command:
    """How one peer starts: argv ("{port}" filled in at start) and the environment it adds."""
    argv: list[str]
    env: dict[str, str]

    def text(self) -> str:
        argv = shlex.join(self.argv).replace("'{port}'", "PORT")
        return " ".join([*(f"{k}={shlex.quote(v)}" for k, v in self.env.items()), argv])


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def probe(python: str) -> dict[str, object] | str:
    """The versions of pypiserver, watchdog (its `cache` extra), gunicorn and waitress in `python`,
    or why it cannot serve as the peer."""
    if not Path(python).exists():
        return f"{python} not found"
    answer = subprocess.run([python, "-B", "-c", PROBE], capture_output=True, text=True, timeout=60)
    if answer.returncode:
        return f"{python} failed: {answer.stderr.strip()[-300:]}"
    versions = json.loads(answer.stdout)
    return versions if "pypiserver" in versions else f"{python} has no pypiserver"


def pypi_server(python: str) -> list[str]:
    """The venv's `pypi-server` script (what pypiserver's docs run), else `python -m pypiserver`."""
    script = Path(python).parent / "pypi-server"
    return [str(script)] if script.exists() else [python, "-m", "pypiserver"]


def commands(python: str, root: Path, versions: dict[str, object]) -> dict[str, Command]:
    """The documented start of each server the peer venv can run, by label."""
    def run(server: str) -> list[str]:
        return [*pypi_server(python), "run", "--server", server, "-i", "127.0.0.1", "-p", "{port}",
                "-a", ".", "-P", ".", str(root)]
    gunicorn_args = GUNICORN_CMD_ARGS
    if versions.get("gunicorn control socket"):  # gunicorn >= 25.1 makes $HOME/.gunicorn/gunicorn.ctl in
        gunicorn_args += " --no-control-socket"  # the master: no part of serving, and shared between runs
    servers = {GUNICORN: (Command(run("gunicorn"), {"GUNICORN_CMD_ARGS": gunicorn_args}), "gunicorn"),
               "pypiserver+waitress(--server auto, 4 threads)": (Command(run("auto"), {}), "waitress"),
               "pypiserver+wsgiref(1 thread, HTTP/1.0)": (Command(run("wsgiref"), {}), "pypiserver")}
    return {label: command for label, (command, needs) in servers.items() if needs in versions}


def start(label: str, command: Command, work: Path) -> Server:
    """Start one server in `work` with its output to a log file there."""
    port = free_port()
    log = work / f"{label.split('(')[0].replace('+', '-')}.log"
    env = {k: v for k, v in os.environ.items() if k != "GUNICORN_CMD_ARGS"} | command.env
    with open(log, "wb") as out:
        process = subprocess.Popen([arg.replace("{port}", str(port)) for arg in command.argv], cwd=work,
                                   env=env, stdout=subprocess.DEVNULL, stderr=out)
    return Server(label, port, process, log)


def wait_until_answering(server: Server, path: str, seconds: float = 60) -> str | None:
    """None once `path` answers 200, else why not (the server's exit code and last log lines)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if server.process is not None and server.process.poll() is not None:
            return f"exited with code {server.process.returncode}: {tail(server)}"
        try:
            connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
            connection.request("GET", path)
            response = connection.getresponse()
            response.read()
            connection.close()
            if response.status == 200:
                return None
        except OSError:
            pass
        time.sleep(0.1)
    return f"did not answer {path} within {seconds:.0f} s: {tail(server)}"


def wrong_server(server: Server, path: str) -> str | None:
    """None when the Server header names the server the label does (auto chose waitress), else why not."""
    expected = next((name for name in ("gunicorn", "waitress") if name in server.label), None)
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    connection.request("GET", path)
    response = connection.getresponse()
    response.read()
    connection.close()
    said = response.getheader("Server", "")
    return None if expected is None or expected in said.lower() else f"answered as {said!r}, not {expected}"


def tail(server: Server) -> str:
    text = server.log.read_text(errors="replace") if server.log and server.log.exists() else ""
    return " / ".join(text.strip().splitlines()[-3:])


def start_all(python: str, root: Path, work: Path, path: str) -> tuple[list[Server], dict[str, str]]:
    """Every server the peer venv has, started and answering `path`; table rows say which and why not."""
    versions = probe(python)
    if isinstance(versions, str):
        why = f"skipped: {versions} (bench/run.py's docstring says how to make the venv)"
        return [], {"pypiserver peers": why}
    every = commands(python, root, versions)
    started = [start(label, command, work) for label, command in every.items()]
    failed = {server.label: problem for server in started
              if (problem := wait_until_answering(server, path) or wrong_server(server, path))}
    for server in started:
        if server.label in failed:
            stop(server)
    rows = {"pypiserver peers": describe(python, versions),
            "pypiserver peers: how each is started (cwd: a directory without gunicorn.conf.py)":
            "; ".join(f"{label}: {command.text().replace(str(root), '<wheels>')}"
                      for label, command in every.items()),
            "pypiserver peers: differences that remain": DIFFERENCES}
    rows.update({label: f"skipped: {why}" for label, why in failed.items()})
    return [server for server in started if server.label not in failed], rows


DIFFERENCES = (
    "each is pypiserver's documented `pypi-server run --server METHOD`, no authentication (-a . -P .). "
    "Under --server gunicorn the app and its cache's watchdog thread are made in gunicorn's master before "
    "the fork, so the workers' listing cache is never invalidated (a wheel added after the start is never "
    "listed): cheaper than correct. The old peer (an app module per worker, as README's "
    "`gunicorn -w4 'pypiserver:app(...)'`) had a live watchdog in each worker, and reading a wheel to hash "
    "it fires events that empty the cache: every listing listed and hashed again, 1.5x to 6x slower. waitress "
    "and wsgiref (one process, live watchdog) pay that hashing on every listing. waitress is what --server auto "
    "(the default) picks when installed ('waitress' is no --server choice), and gets no options: its defaults, "
    "4 threads and 100 connections (the old peer had 8 and 400)")


def describe(python: str, versions: dict[str, object]) -> str:
    cache = f"watchdog {versions['watchdog']}" if "watchdog" in versions else "NO cache extra (no watchdog)"
    servers = [f"{name} {versions[name]}" for name in ("gunicorn", "waitress") if name in versions]
    missing = [f"no {name}: skipped" for name in ("gunicorn", "waitress") if name not in versions]
    return f"pypiserver {versions['pypiserver']} ({cache}), {', '.join(servers + missing)}; {python}"


def stop(server: Server) -> None:
    if server.process is None or server.process.poll() is not None:
        return
    server.process.terminate()
    try:
        server.process.wait(30)
    except subprocess.TimeoutExpired:
        server.process.kill()
        server.process.wait(10)
