"""pypiserver, the peer bench/run.py compares PyPIHub with: the same wheels from one directory, served
by gunicorn (its best deployment: 2 workers x 4 threads, gthread), waitress and its default wsgiref
server, all from a venv of their own (see run.py's docstring). Nothing here imports pypiserver: each
server runs in that venv's interpreter, on loopback, with its own port.
"""
from __future__ import annotations

import dataclasses
import http.client
import json
import socket
import subprocess
import time
from pathlib import Path

APP_MODULE = "pypihub_bench_peer"  # written into the work directory at run time, never committed
APP_SOURCE = """import pypiserver
app = pypiserver.app(roots=[{root!r}], authenticate=[], password_file=".")
"""
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


def commands(python: str, root: Path, versions: dict[str, object]) -> dict[str, list[str]]:
    """The command of each server the peer venv can run, by label."""
    listen = "127.0.0.1:{port}"
    gunicorn = [python, "-B", "-m", "gunicorn", "-w", "2", "--threads", "4", "-k", "gthread", "-b", listen]
    if versions.get("gunicorn control socket"):  # gunicorn >= 25.1 makes $HOME/.gunicorn/gunicorn.ctl
        gunicorn.append("--no-control-socket")
    waitress = [python, "-B", "-m", "waitress", f"--listen={listen}", "--threads=8", "--connection-limit=400"]
    wsgiref = [python, "-B", "-m", "pypiserver", "run", "--server", "wsgiref", "-i", "127.0.0.1",
               "-p", "{port}", "-a", ".", "-P", ".", str(root)]
    servers = {"pypiserver+gunicorn(2x4 gthread)": (gunicorn + [f"{APP_MODULE}:app"], "gunicorn"),
               "pypiserver+waitress(8 threads)": (waitress + [f"{APP_MODULE}:app"], "waitress"),
               "pypiserver+wsgiref(default server)": (wsgiref, "pypiserver")}
    return {label: command for label, (command, needs) in servers.items() if needs in versions}


def start(label: str, command: list[str], work: Path) -> Server:
    """Start one server in `work` (where the app module is) with its output to a log file there."""
    port = free_port()
    log = work / f"{label.split('(')[0].replace('+', '-')}.log"
    with open(log, "wb") as out:
        process = subprocess.Popen([arg.replace("{port}", str(port)) for arg in command], cwd=work,
                                   stdout=subprocess.DEVNULL, stderr=out)
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


def tail(server: Server) -> str:
    text = server.log.read_text(errors="replace") if server.log and server.log.exists() else ""
    return " / ".join(text.strip().splitlines()[-3:])


def start_all(python: str, root: Path, work: Path, path: str) -> tuple[list[Server], dict[str, str]]:
    """Every server the peer venv has, started and answering `path`; table rows say which and why not."""
    versions = probe(python)
    if isinstance(versions, str):
        why = f"skipped: {versions} (bench/run.py's docstring says how to make the venv)"
        return [], {"pypiserver peers": why}
    (work / f"{APP_MODULE}.py").write_text(APP_SOURCE.format(root=str(root)))
    started = [start(label, command, work) for label, command in commands(python, root, versions).items()]
    failed = {server.label: problem for server in started if (problem := wait_until_answering(server, path))}
    for server in started:
        if server.label in failed:
            stop(server)
    rows = {"pypiserver peers": describe(python, versions)}
    rows.update({label: f"skipped: {why}" for label, why in failed.items()})
    return [server for server in started if server.label not in failed], rows


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
