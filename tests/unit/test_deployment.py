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
LONG_RUNNING = {"es01", "kibana", "redis", "worker", "beat", "sensor"}


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


CLUSTER = yaml.safe_load((REPO / "docker-compose.cluster.yml").read_text())
SENSOR_SITE = yaml.safe_load((REPO / "docker-compose.sensor.yml").read_text())


def test_cluster_override_runs_three_master_eligible_nodes_that_find_each_other():
    services = CLUSTER["services"]
    nodes = ["es01", "es02", "es03"]
    for name in nodes:
        env = services[name]["environment"]
        assert env["node.name"] == name and env["cluster.name"] == "secops"
        assert env["discovery.type"] == "multi-node", "the base file's single-node discovery must be overridden"
        assert env["discovery.seed_hosts"].split(",") == nodes
        assert env["cluster.initial_master_nodes"].split(",") == nodes
        assert env["xpack.security.enabled"] == "true" and env["xpack.security.transport.ssl.enabled"] == "true"
        assert env["xpack.security.http.ssl.certificate"] == f"certs/{name}/{name}.crt"
    for name in ("es02", "es03"):
        svc = services[name]
        assert svc["image"].endswith(f":${{STACK_VERSION:-{ES_VERSION}}}")
        assert svc["restart"] == "unless-stopped" and svc["healthcheck"]["test"]
        assert all(p.startswith("127.0.0.1:") for p in svc["ports"]), "no node listens publicly"
        data = [v.split(":", 1)[0] for v in svc["volumes"] if v.endswith("/data")]
        assert data == [f"esdata{name[-2:]}"] and data[0] in CLUSTER["volumes"], "each node has its own data"
    assert services["setup"]["environment"]["ES_NODES"].split() == nodes
    assert "ES_NODES" in (REPO / "secops/deploy/es-setup.sh").read_text()
    every = [f"https://{n}:9200" for n in nodes]
    for name in ("worker", "beat"):
        assert yaml.safe_load(services[name]["environment"]["SECOPS_ELASTICSEARCH__HOSTS"]) == every
    sensor_hosts = yaml.safe_load(services["sensor"]["environment"]["SECOPS_ELASTICSEARCH__HOSTS"])
    base_ports = COMPOSE["services"]["es01"]["ports"]
    published = [p.rsplit(":", 1)[0] for p in [*base_ports, *services["es02"]["ports"], *services["es03"]["ports"]]]
    assert sensor_hosts == [f"https://{p}" for p in published], "the host-network sensor knows every node"

def test_remote_sensor_deployment_ships_over_tls_with_its_own_api_key_and_nothing_else():
    services = SENSOR_SITE["services"]
    assert set(services) == {"sensor"}, "a remote site runs only the sensor"
    sensor = services["sensor"]
    env = sensor["environment"]
    assert env["SECOPS_ELASTICSEARCH__API_KEY"].startswith("${SENSOR_API_KEY:?")
    assert "SECOPS_ELASTICSEARCH__PASSWORD" not in env and "SECOPS_ELASTICSEARCH__USERNAME" not in env
    assert "SECOPS_REDIS__URL" not in env
    assert env["SECOPS_ELASTICSEARCH__HOSTS"].startswith("${CENTRAL_ES_HOSTS:?")
    assert env["SECOPS_ELASTICSEARCH__VERIFY_CERTS"] == "true"
    ca_mount = next(v for v in sensor["volumes"] if v.split(":")[1] == env["SECOPS_ELASTICSEARCH__CA_FILE"])
    assert ca_mount.endswith(":ro")
    central = yaml.safe_load(ENV_EXAMPLE["CENTRAL_ES_HOSTS"])
    assert len(central) == 3 and all(h.startswith("https://") for h in central)
    assert sensor["command"][:3] == ["secops", "sensor", "run"]
    observer = sensor["command"][sensor["command"].index("--observer") + 1]
    assert observer.startswith("${SENSOR_NAME:?")
    assert sensor["network_mode"] == "host" and {"NET_RAW", "NET_ADMIN"} <= set(sensor["cap_add"])
    # its own spool and pcap retention on local disk
    mounts = {v.split(":")[1]: v.split(":")[0] for v in sensor["volumes"]}
    assert mounts[env["SECOPS_PATHS__SPOOL_DIR"]] in SENSOR_SITE["volumes"]
    assert mounts[env["SECOPS_PATHS__PCAP_DIR"]] in SENSOR_SITE["volumes"]
    assert env["SECOPS_SENSOR__PCAP_BUDGET_MB"].startswith("${SENSOR_PCAP_BUDGET_MB")
    text = (REPO / "docker-compose.sensor.yml").read_text()
    used = set(re.findall(r"\$\{([A-Z_][A-Z0-9_]*)", text))
    assert used <= set(ENV_EXAMPLE), f"missing in .env.example: {sorted(used - set(ENV_EXAMPLE))}"


def test_remote_sensor_environment_is_valid_configuration(monkeypatch):
    """The variables the sensor-only file sets load as a valid configuration (typos would be errors)."""
    from secops.config import load_settings

    env = SENSOR_SITE["services"]["sensor"]["environment"]
    monkeypatch.setenv("SECOPS_ELASTICSEARCH__HOSTS", ENV_EXAMPLE["CENTRAL_ES_HOSTS"])
    monkeypatch.setenv("SECOPS_ELASTICSEARCH__API_KEY", ENV_EXAMPLE["SENSOR_API_KEY"])
    for key, value in env.items():
        if key.startswith("SECOPS_") and "${" not in value and key != "SECOPS_CONFIG":
            monkeypatch.setenv(key, value)
    monkeypatch.setenv("SECOPS_SENSOR__PCAP_BUDGET_MB", ENV_EXAMPLE["SENSOR_PCAP_BUDGET_MB"])
    s = load_settings(None)
    assert len(s.elasticsearch.hosts) == 3 and s.elasticsearch.api_key is not None
    assert str(s.paths.spool()) == env["SECOPS_PATHS__SPOOL_DIR"] and s.sensor.pcap_budget_mb == 10240
