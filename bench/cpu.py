#!/usr/bin/env python3
"""CPU per warm /simple/<project>/ request: this pypihub.py against another copy, in one process.

    python3 bench/cpu.py OLD/pypihub.py [--rounds 12] [--requests 3000]

Both servers run in this process against the test suite's fake GitHub (no latency: warm listings
only), each answering one keep-alive client; rounds alternate (now, before, before, now, ...) and
each round's CPU time (user + system, client included, the same client for both) is divided by its
requests. Throughput under load (bench/run.py) swings by a fifth from round to round on a shared
machine; CPU per request of the same work, side by side, shows a change in the request path that
large swings would hide.
"""
from __future__ import annotations

import argparse
import http.client
import importlib.util
import resource
import statistics
import sys
import threading
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import run as bench  # noqa: E402  (bench/run.py: the project, its listing path, auth headers)
import test_pypihub as t  # noqa: E402


def load(name: str, path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def serve(module: ModuleType, github: t.FakeGitHub) -> int:
    """A server of `module` on a port of its own; older copies have no build_server."""
    settings = module.Settings(host="127.0.0.1", port=0, graphql_url=github.graphql_url, cache_ttl=3600)
    make = getattr(module, "build_server", None) or module.PyPIHubServer
    server = make(settings, sink=lambda line: None)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server.server_address[1]


def cpu_per_request(connection: http.client.HTTPConnection, requests: int) -> float:
    """Microseconds of this process's CPU per request."""
    before = resource.getrusage(resource.RUSAGE_SELF)
    for _ in range(requests):
        connection.request("GET", bench.LISTING, headers=bench.auth())
        answer = connection.getresponse()
        answer.read()
        assert answer.status == 200, answer.status
    after = resource.getrusage(resource.RUSAGE_SELF)
    spent = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    return spent / requests * 1e6


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("before", type=Path)
    parser.add_argument("--rounds", type=int, default=12)
    parser.add_argument("--requests", type=int, default=3000)
    args = parser.parse_args()
    github = t.FakeGitHub().start()
    bench.warm_fake_schema()
    repo = github.add_repo(bench.PROJECT)
    for version in ("1.0", "2.0"):
        name, content = t.make_wheel(bench.PROJECT, version)
        repo.add_release(f"v{version}", {name: content})
    modules = {"now": load("pypihub_now", ROOT / "pypihub.py"), "before": load("pypihub_before", args.before)}
    clients = {name: http.client.HTTPConnection("127.0.0.1", serve(m, github)) for name, m in modules.items()}
    for client in clients.values():
        cpu_per_request(client, 200)  # the listing loaded and kept
    spent: dict[str, list[float]] = {name: [] for name in clients}
    for round_ in range(args.rounds):
        for name in ("now", "before") if round_ % 2 == 0 else ("before", "now"):
            spent[name].append(cpu_per_request(clients[name], args.requests))
    for name, values in spent.items():
        print(f"| {name} ({'pypihub.py' if name == 'now' else args.before}) | median {statistics.median(values):.0f} µs"
              f" CPU per request (client included); rounds {' '.join(f'{v:.0f}' for v in values)} |")
    ratio = statistics.median(spent["now"]) / statistics.median(spent["before"])
    print(f"| now / before | {ratio:.2f}x CPU per request |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
