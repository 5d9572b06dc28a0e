"""docker-compose.yml is valid and runs the same commands as `make run` (no Docker engine here), and
deploy/nginx.conf, its balancer, sends HTTP and WebSocket upgrades to every web container."""

import asyncio
import ipaddress
import re
import shlex
from pathlib import Path

import yaml

from edge.proxies import TrustedProxies, parse_networks
from scripts.stack import web_command, worker_command

ROOT = Path(__file__).resolve().parent.parent
COMPOSE = ROOT / "docker-compose.yml"
NGINX = ROOT / "deploy" / "nginx.conf"
APP = ("migrate", "web", "worker-preprocess", "worker-inference")


def load() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


def test_compose_has_its_services_wired_to_redis_and_postgres():
    services = load()["services"]
    assert set(services) == {*APP, "balancer", "redis", "postgres"}
    for name in APP:
        svc = services[name]
        assert svc["build"] == "." and svc["environment"]["REDIS_URL"] == "redis://redis:6379/0"
        assert svc["environment"]["DATABASE_URL"].startswith("postgres://")
        assert {k: services[name]["depends_on"][k]["condition"] for k in ("redis", "postgres")} == {
            "redis": "service_healthy",
            "postgres": "service_healthy",
        }
    assert "healthcheck" in services["redis"] and "healthcheck" in services["postgres"]


def test_workers_are_scalable_and_run_the_make_run_commands():
    services = load()["services"]
    for queue in ("preprocess", "inference"):
        svc = services[f"worker-{queue}"]
        assert "container_name" not in svc and "ports" not in svc  # --scale needs neither
        assert svc["restart"] == "unless-stopped"
        assert shlex.split(svc["command"]) == ["celery", *worker_command(queue)[1:]]


def test_web_is_scalable_runs_the_web_server_like_make_run_after_migrating_once():
    services = load()["services"]
    web = services["web"]
    assert "container_name" not in web and "ports" not in web  # --scale web=N: the balancer publishes
    assert web["restart"] == "unless-stopped" and "healthcheck" in web
    assert shlex.split(web["command"]) == web_command("0.0.0.0", 8000)
    # it drains for up to WEB_DRAIN_S (10 s) on SIGTERM: docker must not SIGKILL it before that
    assert float(web["stop_grace_period"].rstrip("s")) > 10
    assert web["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
    assert shlex.split(services["migrate"]["command"]) == ["python", "manage.py", "migrate", "--noinput"]


def test_the_balancer_publishes_the_port_and_uses_the_nginx_config():
    balancer = load()["services"]["balancer"]
    assert balancer["image"].startswith("nginx:") and balancer["restart"] == "unless-stopped"
    assert balancer["ports"] == ["${PORT:-8000}:8000"]
    assert "./deploy/nginx.conf:/etc/nginx/nginx.conf:ro" in balancer["volumes"]
    assert balancer["depends_on"]["web"]["condition"] == "service_healthy"


def _nginx_blocks(text: str) -> dict[str, str]:
    """Each top-level `name { ... }` block of an nginx config, by name (comments removed)."""
    text = re.sub(r"#[^\n]*", "", text)
    assert text.count("{") == text.count("}"), "unbalanced braces"
    blocks, depth, start, name = {}, 0, 0, ""
    for i, ch in enumerate(text):
        if ch == "{":
            if depth == 0:
                name, start = text[:i].rsplit(";", 1)[-1].rsplit("}", 1)[-1].strip(), i + 1
            depth += 1
        elif ch == "}":
            depth -= 1
            assert depth >= 0, "unbalanced braces"
            if depth == 0:
                blocks[name] = text[start:i]
    return blocks


def _directives(block: str) -> list[list[str]]:
    return [shlex.split(d) for d in re.split(r"[;{}]", block) if d.strip()]


def test_nginx_config_proxies_http_and_websocket_upgrades_to_every_web_container():
    blocks = _nginx_blocks(NGINX.read_text())
    assert set(blocks) == {"events", "http"}
    http = _directives(blocks["http"])
    # Docker's DNS, re-resolved, so containers added by --scale or restarted are found.
    assert ["resolver", "127.0.0.11", "valid=5s", "ipv6=off"] in http
    assert ["listen", "8000"] in http  # the port compose publishes
    assert ["map", "$http_upgrade", "$connection_upgrade"] in http
    assert ["set", "$web", "http://web:8000"] in http and ["proxy_pass", "$web"] in http
    assert ["proxy_http_version", "1.1"] in http  # WebSocket upgrades need HTTP/1.1
    assert ["proxy_set_header", "Upgrade", "$http_upgrade"] in http
    assert ["proxy_set_header", "Connection", "$connection_upgrade"] in http
    assert ["proxy_set_header", "X-Forwarded-For", "$proxy_add_x_forwarded_for"] in http  # TRUSTED_PROXIES
    assert ["proxy_set_header", "Host", "$http_host"] in http  # the exact origin check needs the port
    # floods of uploads and health checks refused at the edge, with the app's 429
    assert ["limit_req_status", "429"] in http
    assert ["location", "=", "/api/predict"] in http and ["limit_req", "zone=uploads", "burst=10", "nodelay"] in http
    assert ["limit_req", "zone=health", "burst=40", "nodelay"] in http
    # /metrics is for the operator's scraper on the inside, never forwarded from the published port
    at = http.index(["location", "=", "/metrics"])
    assert http[at + 1] == ["return", "404"]
    assert http.count(["proxy_pass", "$web"]) == 3  # every location reaches the web containers


def test_compose_needs_a_secret_key_and_trusts_proxy_headers_only_from_the_balancer():
    compose = load()
    env = compose["services"]["web"]["environment"]
    assert ":?" in env["DJANGO_SECRET_KEY"], "a default key would be used silently"
    assert "--proxy-headers" not in web_command("0.0.0.0", 8000)  # daphne would believe anyone
    trusted = env["TRUSTED_PROXIES"].split(":-")[1].rstrip("}")
    balancer = compose["services"]["balancer"]["networks"]["edge"]["ipv4_address"]
    assert trusted == balancer  # one address, the balancer's, fixed on its own network
    subnet = compose["networks"]["edge"]["ipam"]["config"][0]["subnet"]
    assert ipaddress.ip_address(balancer) in ipaddress.ip_network(subnet)
    assert "edge" in compose["services"]["web"]["networks"]


def _counted_as(peer: str, forwarded_for: str | None, trusted: str) -> str:
    """The address the real ASGI stack's outermost layer hands on for a request from `peer`."""
    seen: list[str] = []

    async def app(scope, receive, send) -> None:
        seen.append(scope["client"][0])

    headers = [(b"x-forwarded-for", forwarded_for.encode())] if forwarded_for else []
    scope = {"type": "http", "path": "/api/predict", "client": [peer, 4444], "headers": headers, "scheme": "http"}
    asyncio.run(TrustedProxies(app, parse_networks(trusted.split(",")))(scope, None, None))
    return seen[0]


def test_a_client_on_a_private_network_forging_forwarded_for_is_counted_as_itself_under_compose():
    trusted = load()["services"]["web"]["environment"]["TRUSTED_PROXIES"].split(":-")[1].rstrip("}")
    # a LAN client, another container on the edge network, Docker's gateway: all private, none the balancer
    for peer in ("192.168.1.20", "10.3.4.5", "172.28.0.7", "172.28.0.1", "172.17.0.1"):
        for forged in ("203.0.113.9", "1.2.3.4, 198.51.100.7", "172.28.0.2"):
            assert _counted_as(peer, forged, trusted) == peer
    # what the balancer appends ($proxy_add_x_forwarded_for: the peer it saw, last) is believed
    assert _counted_as("172.28.0.2", "203.0.113.9, 192.168.1.20", trusted) == "192.168.1.20"
    assert _counted_as("172.28.0.2", None, trusted) == "172.28.0.2"
