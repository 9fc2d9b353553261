"""docker-compose.yml is validated here (no Docker engine on this machine): structure, pins, security, health."""

from __future__ import annotations

import re

import yaml

from secops.devstack.stack import ES_VERSION
from tests.support import REPO

COMPOSE = yaml.safe_load((REPO / "docker-compose.yml").read_text())
ENV_EXAMPLE = dict(
    line.split("=", 1) for line in (REPO / ".env.example").read_text().splitlines() if line and not line.startswith("#")
)
LONG_RUNNING = {"es01", "kibana", "redis", "worker", "beat", "sensor", "console"}


def test_services_present_with_healthchecks_and_restart():
    services = COMPOSE["services"]
    assert set(services) >= LONG_RUNNING
    for name in LONG_RUNNING:
        svc = services[name]
        assert svc.get("healthcheck", {}).get("test"), f"{name} has no healthcheck"
        assert svc.get("restart") == "unless-stopped", name


def test_elastic_stack_pinned_to_tested_version_and_secured():
    services = COMPOSE["services"]
    for name in ("es01", "kibana", "setup"):
        assert services[name]["image"].endswith(f":${{STACK_VERSION:-{ES_VERSION}}}"), name
    assert ENV_EXAMPLE["STACK_VERSION"] == ES_VERSION
    env = services["es01"]["environment"]
    assert env["xpack.security.enabled"] == "true"
    assert env["xpack.security.http.ssl.enabled"] == "true"
    assert env["ELASTIC_PASSWORD"] == "${ELASTIC_PASSWORD}"
    assert services["kibana"]["environment"]["ELASTICSEARCH_USERNAME"] == "kibana_system"
    assert services["es01"]["ports"] == ["127.0.0.1:9200:9200"], "Elasticsearch must not listen publicly"


def test_every_variable_has_an_example():
    text = (REPO / "docker-compose.yml").read_text()
    used = set(re.findall(r"\$\{([A-Z_][A-Z0-9_]*)", text))
    assert used <= set(ENV_EXAMPLE), f"missing in .env.example: {sorted(used - set(ENV_EXAMPLE))}"


def test_dependencies_and_volumes_resolve():
    services, volumes = COMPOSE["services"], set(COMPOSE["volumes"])
    for name, svc in services.items():
        for dep, cond in (svc.get("depends_on") or {}).items():
            assert dep in services, f"{name} depends on unknown {dep}"
            assert cond["condition"] in {"service_healthy", "service_started", "service_completed_successfully"}
        for vol in svc.get("volumes", []):
            source = vol.split(":", 1)[0]
            if not source.startswith((".", "/")):
                assert source in volumes, f"{name} uses undeclared volume {source}"
            else:
                assert (REPO / source).exists() or source == "./secops.yaml", f"{name} mounts missing {source}"


def test_sensor_runs_on_host_network_with_capture_capabilities():
    sensor = COMPOSE["services"]["sensor"]
    assert sensor["network_mode"] == "host"
    assert {"NET_RAW", "NET_ADMIN"} <= set(sensor["cap_add"])
    assert sensor["command"][:3] == ["secops", "sensor", "run"]


def test_secops_services_use_the_project_image_and_dockerfile_exists():
    for name in ("worker", "beat", "sensor"):
        svc = COMPOSE["services"][name]
        assert svc["image"].startswith("secops:")
        assert (REPO / svc["build"]["dockerfile"]).is_file()
        assert svc["environment"]["SECOPS_ELASTICSEARCH__PASSWORD"].startswith("${ELASTIC_PASSWORD")


def test_console_serves_https_with_a_setup_ca_certificate():
    console = COMPOSE["services"]["console"]
    cmd = console["command"]
    assert cmd[:2] == ["secops", "console"]
    cert, key = cmd[cmd.index("--tls-cert") + 1], cmd[cmd.index("--tls-key") + 1]
    assert cert.startswith("/certs/console/") and key.startswith("/certs/console/")
    assert "name: console" in (REPO / "secops/deploy/es-setup.sh").read_text()
    assert console["ports"] == ["${CONSOLE_BIND:-127.0.0.1}:8443:8443"]
    assert "https://localhost:8443" in " ".join(console["healthcheck"]["test"])
