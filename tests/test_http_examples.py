"""The HTTP recipes, run for real: Kubernetes httpGet probes against examples/worker.py,
an uptime monitor's curl, nginx publishing the status page, HAProxy's health check."""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import signal
import socket
import sys
import time
import urllib.error
import urllib.request
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import urljoin

import pytest
import yaml

from healthfile._asgi import asgi_app
from healthfile._server import HTTPServer
from helpers import generous, make_database, report_on_disk, require_program, wait_until
from httphelpers import write_kind
from test_examples import (
    EXAMPLES,
    Process,
    environment,
    kubernetes_container,
    take_away,
    wait_for_status,
)
from test_page import Document

pytestmark = pytest.mark.usefixtures("clean_environment")

RECIPES = Path(__file__).resolve().parent.parent / "docs" / "recipes.md"


def free_port() -> int:
    """A port of 127.0.0.1 free a moment ago."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def http_get(url: str, timeout: float) -> int | None:
    """GET ``url`` as a probe does: the status, or None for no answer (refused, timeout)."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            response.read()
            return int(response.status)
    except urllib.error.HTTPError as exc:
        exc.read()
        return int(exc.code)
    except (urllib.error.URLError, OSError):
        return None


# --- Kubernetes httpGet ---------------------------------------------------------------------


def http_container() -> dict[str, Any]:
    """The one container of the Deployment in examples/kubernetes-http.yaml."""
    documents = list(yaml.safe_load_all((EXAMPLES / "kubernetes-http.yaml").read_text()))
    [deployment] = [d for d in documents if d and d.get("kind") == "Deployment"]
    [container] = deployment["spec"]["template"]["spec"]["containers"]
    assert isinstance(container, dict)
    return container


def test_kubernetes_http_probes_are_httpget_probes_on_the_health_port() -> None:
    """Startup and liveness GET /livez, readiness /readyz, on the port HEALTHFILE_HTTP
    binds; the container is the exec manifest's but for HTTP."""
    container = http_container()
    env = {item["name"]: item["value"] for item in container["env"]}
    [port] = container["ports"]
    assert env["HEALTHFILE_HTTP"] == f"0.0.0.0:{port['containerPort']}"
    paths = {}
    for kind in ("startupProbe", "livenessProbe", "readinessProbe"):
        probe = container[kind]
        assert probe["httpGet"]["port"] == port["name"]
        assert probe["timeoutSeconds"] >= 1
        paths[kind] = probe["httpGet"]["path"]
    assert paths == {
        "startupProbe": "/livez",
        "livenessProbe": "/livez",
        "readinessProbe": "/readyz",
    }
    exec_container = kubernetes_container()
    for key in ("image", "command", "workingDir", "volumeMounts"):
        assert container[key] == exec_container[key]
    assert [item for item in container["env"] if item["name"] != "HEALTHFILE_HTTP"] == (
        exec_container["env"]
    )


@pytest.mark.skipif(not hasattr(signal, "SIGUSR1"), reason="the worker is made stuck by SIGUSR1")
def test_kubernetes_http_probes_follow_the_worker_through_degraded_stuck_and_stopped(
    tmp_path: Path,
) -> None:
    """Online: every probe 200. Database lost: /livez 200, /readyz 503. Worker stuck: both
    503. Stopped by SIGTERM: no answer, exit status 0."""
    container = http_container()
    root = tmp_path / "container"
    mounts = {mount["mountPath"]: root / mount["name"] for mount in container["volumeMounts"]}
    for directory in mounts.values():
        directory.mkdir(parents=True)
    port = free_port()

    def inside(value: str) -> str:
        for mount_path, directory in mounts.items():
            if value.startswith(mount_path):
                return str(directory) + value[len(mount_path) :]
        # the pod's address: here the loopback, on a free port
        return value.replace("0.0.0.0:8081", f"127.0.0.1:{port}")

    env = environment(**{item["name"]: inside(item["value"]) for item in container["env"]})
    env["HEALTHFILE_INTERVAL"] = "0.5"
    workdir = root / container["workingDir"].lstrip("/")
    database = make_database(workdir / env["HEALTHFILE_DATABASE"])
    health_file = Path(env["HEALTHFILE_HEALTH_FILE"])

    def probe(kind: str) -> bool:
        """The kubelet's httpGet: success for 200-399 within timeoutSeconds."""
        spec = container[kind]
        status = http_get(
            f"http://127.0.0.1:{port}{spec['httpGet']['path']}", spec["timeoutSeconds"]
        )
        return status is not None and 200 <= status < 400

    worker = Process([sys.executable, str(EXAMPLES / "worker.py")], cwd=workdir, env=env)
    try:
        wait_for_status(health_file, "online")
        assert [probe(k) for k in ("startupProbe", "livenessProbe", "readinessProbe")] == [
            True,
            True,
            True,
        ]

        take_away(database)
        wait_for_status(health_file, "degraded")
        assert (probe("livenessProbe"), probe("readinessProbe")) == (True, False)

        worker.popen.send_signal(signal.SIGUSR1)  # the current job hangs
        wait_until(
            lambda: report_on_disk(health_file)["checks"]["heartbeat"]["status"] == "fail",
            "the heartbeat to fail",
            every=0.05,
        )
        assert (probe("livenessProbe"), probe("readinessProbe")) == (False, False)

        status, output = worker.stop(signal.SIGTERM)
        assert (status, "Traceback" in output) == (0, False), output
        assert (probe("livenessProbe"), probe("readinessProbe")) == (False, False)
    finally:
        worker.close()


# --- an uptime monitor: curl -f ------------------------------------------------------------


@contextlib.asynccontextmanager
async def serving(path: Path) -> AsyncIterator[int]:
    """Serve the file with the built-in server on 127.0.0.1; yield its port."""
    server = HTTPServer(asgi_app(path), "127.0.0.1", 0)
    await server.start()
    try:
        yield server.address[1]
    finally:
        server.close()
        server.app.close()
        await server.wait_closed()


def recipe_command(program: str) -> str:
    """The one command line of docs/recipes.md's HTTP section that runs ``program``."""
    section = RECIPES.read_text(encoding="utf-8").split("## Over HTTP", 1)[1].split("\n## ", 1)[0]
    [line] = [line for line in section.splitlines() if line.startswith(program + " ")]
    return line


@pytest.mark.asyncio
async def test_curl_fails_an_uptime_check_exactly_when_the_probe_fails(tmp_path: Path) -> None:
    """The recipe's `curl -fsS` exits 0 on an online file and 22 (HTTP error) on a degraded
    one, printing the verdict in both cases where it prints any."""
    curl = require_program("curl", package="curl")
    command = recipe_command("curl")
    outcomes = {}
    for kind in ("online", "degraded"):
        async with serving(write_kind(tmp_path, kind)) as port:
            argv = [curl, *command.split()[1:]]
            argv[-1] = argv[-1].replace("app.example.com:8081", f"127.0.0.1:{port}")
            process = await asyncio.create_subprocess_exec(
                *argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
            )
            out, err = await process.communicate()
            outcomes[kind] = (process.returncode, out, err)

    assert outcomes["online"][0] == 0
    assert json.loads(outcomes["online"][1])["verdict"] == "online"
    assert outcomes["degraded"][0] == 22
    assert b"503" in outcomes["degraded"][2]


# --- nginx: the status page behind a reverse proxy ------------------------------------------


def nginx_config(tmp_path: Path, listen: int, upstream: int) -> Path:
    """A whole nginx.conf around examples/nginx.conf, its ports mapped, all paths in tmp_path."""
    server = (EXAMPLES / "nginx.conf").read_text(encoding="utf-8")
    server = server.replace("listen 8080;", f"listen 127.0.0.1:{listen};")
    server = server.replace("127.0.0.1:8081", f"127.0.0.1:{upstream}")
    temp = tmp_path / "nginx-temp"
    temp.mkdir()
    config = tmp_path / "nginx.conf"
    config.write_text(
        f"pid {tmp_path / 'nginx.pid'};\n"
        f"error_log {tmp_path / 'nginx-error.log'} warn;\n"
        "daemon off;\nworker_processes 1;\n"
        "events { worker_connections 64; }\n"
        "http {\n"
        f"    access_log off;\n    client_body_temp_path {temp};\n"
        f"    proxy_temp_path {temp};\n    fastcgi_temp_path {temp};\n"
        f"    uwsgi_temp_path {temp};\n    scgi_temp_path {temp};\n"
        f"{server}\n}}\n",
        encoding="utf-8",
    )
    return config


@pytest.mark.asyncio
@pytest.mark.slow
async def test_nginx_publishes_the_status_page_and_the_probes(tmp_path: Path) -> None:
    """Through examples/nginx.conf, /health/ is the status page, and its links lead to the
    probes' answers, equal to the built-in server's own."""
    nginx = require_program("nginx", "/usr/sbin/nginx", package="nginx-light")
    listen = free_port()
    path = write_kind(tmp_path, "degraded")
    async with serving(path) as upstream:
        config = nginx_config(tmp_path, listen, upstream)
        process = await asyncio.create_subprocess_exec(
            nginx, "-c", str(config), "-p", str(tmp_path), stderr=asyncio.subprocess.PIPE
        )
        try:
            base = f"http://127.0.0.1:{listen}/health/"
            loop = asyncio.get_running_loop()
            deadline = time.monotonic() + generous(10)
            while await loop.run_in_executor(None, http_get, base, 1.0) is None:
                assert process.returncode is None, "nginx exited"
                assert time.monotonic() < deadline, "nginx did not answer"
                await asyncio.sleep(0.05)
            page = await loop.run_in_executor(None, fetch_text, base)
            links = [
                urljoin(base, str(attrs["href"]))
                for tag, attrs in Document(page).tags
                if tag == "a"
            ]
            statuses = [await loop.run_in_executor(None, http_get, link, 5.0) for link in links]
            direct = [
                await loop.run_in_executor(
                    None, http_get, f"http://127.0.0.1:{upstream}/{name}", 5.0
                )
                for name in ("livez", "readyz", "healthz")
            ]
        finally:
            process.send_signal(signal.SIGQUIT)
            await process.communicate()

    assert "<h1>Degraded: database failing</h1>" in page
    assert links == [base + name for name in ("livez", "readyz", "healthz")]
    assert statuses == direct == [200, 503, 503]


def fetch_text(url: str) -> str:
    """The body of a GET of ``url`` as text, whatever the status."""
    try:
        with urllib.request.urlopen(url, timeout=generous(5)) as response:
            return bytes(response.read()).decode("utf-8")
    except urllib.error.HTTPError as exc:
        return bytes(exc.read()).decode("utf-8")


# --- HAProxy: a load balancer's health check -----------------------------------------------


def haproxy_config(tmp_path: Path, listen: int, app: int, health: int) -> tuple[Path, Path]:
    """examples/haproxy.cfg with one server: the app on ``app``, its health on ``health``;
    checks every 100 ms, and a stats socket to read the server's state. Returns the config
    and the socket's path."""
    text = (EXAMPLES / "haproxy.cfg").read_text(encoding="utf-8")
    stats = tmp_path / "haproxy.sock"
    text = text.replace("    log stdout format raw local0\n", f"    stats socket {stats}\n")
    text = text.replace("bind :8080", f"bind 127.0.0.1:{listen}")
    text = text.replace("inter 2s", "inter 100ms")
    text = re.sub(
        r"    server app1 .*\n    server app2 .*\n",
        f"    server app1 127.0.0.1:{app} check port {health}\n",
        text,
    )
    assert f"check port {health}" in text
    config = tmp_path / "haproxy.cfg"
    config.write_text(text, encoding="utf-8")
    return config, stats


async def server_state(stats: Path) -> str:
    """The state of backend app's server app1 (UP, DOWN, ...) from the stats socket."""
    reader, writer = await asyncio.open_unix_connection(str(stats))
    writer.write(b"show stat\n")
    await writer.drain()
    data = await reader.read()
    writer.close()
    await writer.wait_closed()
    for line in data.decode().splitlines():
        fields = line.split(",")
        if fields[:2] == ["app", "app1"]:
            return fields[17].split(" ")[0]
    raise AssertionError(data)


@pytest.mark.asyncio
@pytest.mark.slow
@pytest.mark.skipif(not hasattr(socket, "AF_UNIX"), reason="HAProxy's stats socket is a Unix one")
async def test_haproxy_takes_an_instance_out_while_readyz_says_503(tmp_path: Path) -> None:
    """With examples/haproxy.cfg, an instance is UP while /readyz is 200, goes DOWN when its
    file turns degraded, and comes back UP when it is online again."""
    haproxy = require_program("haproxy", "/usr/sbin/haproxy", package="haproxy")
    path = write_kind(tmp_path, "online")
    online = path.read_bytes()
    async with serving(path) as health:
        app = await asyncio.start_server(lambda r, w: w.close(), "127.0.0.1", 0)
        app_port = app.sockets[0].getsockname()[1]
        config, stats = haproxy_config(tmp_path, free_port(), app_port, health)
        process = await asyncio.create_subprocess_exec(
            haproxy, "-db", "-f", str(config), stderr=asyncio.subprocess.PIPE
        )
        try:

            async def becomes(state: str) -> None:
                deadline = time.monotonic() + generous(10)
                while not stats.exists() or await server_state(stats) != state:
                    assert process.returncode is None, "haproxy exited"
                    assert time.monotonic() < deadline, f"app1 never {state}"
                    await asyncio.sleep(0.05)

            await becomes("UP")
            (tmp_path / "kinds").mkdir()
            degraded = write_kind(tmp_path / "kinds", "degraded").read_bytes()
            path.write_bytes(degraded)
            await becomes("DOWN")
            path.write_bytes(online)
            await becomes("UP")
        finally:
            process.terminate()
            await process.communicate()
            app.close()
            await app.wait_closed()


def test_the_recipes_show_every_http_example() -> None:
    """The HTTP recipes show the httpGet probes, the curl check, nginx and HAProxy."""
    section = RECIPES.read_text(encoding="utf-8").split("## Over HTTP", 1)[1].split("\n## ", 1)[0]
    for name in ("kubernetes-http.yaml", "nginx.conf", "haproxy.cfg"):
        assert f"(../examples/{name})" in section
    for text in ("path: /livez", "path: /readyz", "option httpchk", "proxy_pass"):
        assert text in section
