"""`v1sweep ui`: the MLflow UI for the project's store, on 127.0.0.1 unless told otherwise.

Runs ``python -m mlflow server`` (what ``mlflow ui`` also runs) as a child process in its own
process group, waits until it answers, prints the URL and keeps it in the foreground; Ctrl-C or
SIGTERM stops the server and its workers. Credentials in store URIs are never printed.
"""
from __future__ import annotations

import argparse

from v1sweep.cli import options as opt

HELP = "start the MLflow UI for the project's tracking store (127.0.0.1 by default) and print its URL"

LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("sweep", nargs="?", default=None, metavar="SWEEP",
                        help="sweep name whose runs table to print the link to (default: every sweep in the store)")
    parser.add_argument("--port", type=int, default=5000, help="port (default 5000)")
    parser.add_argument("--host", default="127.0.0.1",
                        help="interface to bind (default 127.0.0.1; 0.0.0.0 exposes the UI, without "
                             "authentication, to the network)")
    opt.add_tracking_uri(parser)
    parser.add_argument("--workers", type=int, default=1, help="server worker processes (default 1)")
    parser.add_argument("--startup-timeout", type=float, default=120.0,
                        help="seconds to wait for the server to answer (default 120)")


def server_command(host: str, port: int, workers: int = 1) -> list[str]:
    """The argv that serves the UI. The store goes in ``MLFLOW_BACKEND_STORE_URI`` (see `main`),
    not on the command line, where `ps` would show any password it holds."""
    import sys

    return [sys.executable, "-m", "mlflow", "server", "--host", host, "--port", str(port),
            "--workers", str(workers)]


def sweep_links(uri: str, base: str, only: str | None = None) -> list[tuple[str, str]]:
    """(sweep name, URL of its runs table in the UI at `base`), newest sweep first; the runs table
    opens flat, best first, with the headline metrics (`v1sweep.results.tracking.view_state`)."""
    from v1sweep.results import query as query
    from v1sweep.results.tracking import experiment_url, view_key

    try:
        sweeps = query.list_sweeps(tracking_uri=uri)
    except query.QueryError:
        return []
    links: dict[str, str] = {}
    for sweep in sweeps:
        name = sweep["name"]
        if name and name not in links and (only is None or name == only):
            links[name] = experiment_url(base, sweep["experiment_id"], view_key(name))
    if only is not None and not links:
        from v1sweep.errors import ConfigError

        known = ", ".join(dict.fromkeys(s["name"] for s in sweeps if s["name"])) or "none"
        raise ConfigError(f"no sweep {only!r} in the store; sweeps there: {known}", key="SWEEP")
    return list(links.items())


def print_links(links: list[tuple[str, str]], base: str) -> None:
    from v1sweep.results.tracking import experiment_url

    if not links:
        print(f"  experiments: {experiment_url(base)}")
    for name, link in links:
        print(f"  sweep {name}: {link}")


def url_for(host: str, port: int) -> str:
    shown = "127.0.0.1" if host in ("0.0.0.0", "") else ("[::1]" if host in ("::", "::1") else host)
    return f"http://{shown}:{port}"


def wait_until_up(url: str, proc, timeout: float) -> bool:
    """Poll `url`/health until it answers 200, the process dies, or `timeout` seconds pass."""
    import time
    import urllib.error
    import urllib.request

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return False
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2) as resp:
                if resp.status == 200:
                    return True
        except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
            pass
        time.sleep(0.3)
    return False


def _port_free(host: str, port: int) -> bool:
    import socket

    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def main(args: argparse.Namespace) -> int:
    import os
    import signal
    import subprocess
    import sys

    from v1sweep.errors import ConfigError
    from v1sweep.results.store import mask_text, mask_uri, resolve_tracking_uri, sqlite_path

    uri = resolve_tracking_uri(args.tracking_uri)
    if uri.startswith(("http://", "https://", "databricks")):
        # A tracking server already serves its own UI; starting another would only proxy it.
        print(f"the tracking store is a server; its UI is at {mask_uri(uri)}")
        print_links(sweep_links(uri, mask_uri(uri), args.sweep), mask_uri(uri))
        return 0
    if not 0 < args.port < 65536:
        raise ConfigError(f"{args.port} is out of range; allowed: 1-65535", key="--port")
    if not _port_free(args.host, args.port):
        raise ConfigError(f"port {args.port} on {args.host} is in use; pick another with --port", key="--port")
    db = sqlite_path(uri)
    if db is not None and not db.exists():
        print(f"note: {mask_uri(uri)} does not exist yet; the UI will show an empty store")
    if args.host not in LOCAL_HOSTS:
        print(f"warning: binding {args.host} makes the UI (no authentication) reachable from the network",
              file=sys.stderr)

    url = url_for(args.host, args.port)
    links = sweep_links(uri, url, args.sweep) if db is None or db.exists() else []
    env = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_HOST", "MLFLOW_PORT")}
    env["MLFLOW_BACKEND_STORE_URI"] = uri
    print(f"starting the MLflow UI for {mask_uri(uri)} ...", flush=True)
    proc = subprocess.Popen(server_command(args.host, args.port, args.workers), env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)

    def stop(*_: object) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        if not wait_until_up(url, proc, args.startup_timeout):
            _terminate(proc)
            log = proc.stdout.read() if proc.stdout else ""
            print(mask_text(log[-3000:], uri), file=sys.stderr)
            print(f"v1sweep ui: the MLflow server did not come up on {url}", file=sys.stderr)
            return 1
        print(f"MLflow UI: {url}  (store {mask_uri(uri)}; Ctrl-C to stop)")
        print_links(links, url)
        sys.stdout.flush()
        for line in proc.stdout or ():  # relay the server log, masked, until it exits
            sys.stderr.write(mask_text(line, uri))
        return proc.wait()
    except KeyboardInterrupt:
        print("stopping the MLflow UI", flush=True)
        return 0
    finally:
        _terminate(proc)
        signal.signal(signal.SIGTERM, previous)


def _terminate(proc) -> None:
    """Stop the server's process group (the server and the workers it forked), by its id."""
    import os
    import signal
    import subprocess

    try:  # also when the server itself has exited: workers it forked may remain in the group
        os.killpg(proc.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait()
