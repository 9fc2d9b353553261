"""docker-compose.yml is validated here (no Docker engine on this machine): structure, pins, security, health."""

from __future__ import annotations

import os
import re
import shutil
import subprocess

import pytest
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


# -- least privilege, native core, reachable Redis (issue 17 item 15) -------------------------------------------
DOCKERFILE = (REPO / "secops" / "deploy" / "Dockerfile").read_text()
SECOPS_SERVICES = ("worker", "beat", "sensor")


def stages() -> list[list[str]]:
    """The Dockerfile's stages as lists of instructions (continuation lines joined, comments dropped)."""
    lines = [line for line in DOCKERFILE.splitlines() if not line.lstrip().startswith("#")]
    text = re.sub(r"\\\n", " ", "\n".join(lines))
    out: list[list[str]] = []
    for line in text.splitlines():
        if line.strip().upper().startswith("FROM "):
            out.append([])
        if line.strip() and out:
            out[-1].append(" ".join(line.split()))
    return out


def test_image_builds_the_native_flow_core_in_a_build_stage():
    build, runtime = stages()[0], stages()[-1]
    assert len(stages()) >= 2
    assert any(i.startswith("RUN") and " gcc" in i for i in build), "the build stage needs a C compiler"
    assert any(i.startswith("COPY") and "setup.py" in i for i in build), "setup.py builds collectors._flowcore"
    assert any("import collectors._flowcore" in i for i in build), "the build must fail without the native core"
    assert not any(re.search(r"\b(gcc|build-essential|clang)\b", i) for i in runtime), "no compiler at runtime"
    assert any(i.startswith("COPY --from=") for i in runtime)


def test_image_runs_as_an_unprivileged_user():
    runtime = stages()[-1]
    users = [i.split()[1] for i in runtime if i.startswith("USER ")]
    assert users and users[-1] not in ("root", "0", "0:0"), users
    assert any("useradd" in i and users[-1] in i for i in runtime)
    # its state and cache live where the volumes are mounted, owned by that user
    assert "XDG_STATE_HOME=/var/lib" in DOCKERFILE and "XDG_CACHE_HOME=/var/cache" in DOCKERFILE
    assert any("install -d -o secops -g secops" in i and "/var/lib/secops/pcap" in i for i in runtime)


def setpriv_caps(entrypoint: list[str]) -> set[str]:
    assert entrypoint[0] == "setpriv" and entrypoint[-1] == "--", entrypoint
    args = dict(a.split("=", 1) for a in entrypoint[1:-1] if "=" in a)
    assert args["--reuid"] == "secops" and args["--regid"] == "secops" and "--no-new-privs" in entrypoint
    caps = {c.lstrip("+") for c in args["--ambient-caps"].split(",") if c != "-all"}
    assert args["--inh-caps"] == args["--ambient-caps"] == args["--bounding-set"]
    return caps


def test_secops_services_never_run_as_root():
    for name in SECOPS_SERVICES:
        svc = COMPOSE["services"][name]
        if "user" not in svc:
            continue  # the image's USER secops
        assert svc["user"] == "0" and "entrypoint" in svc, f"{name}: root only to drop to secops with setpriv"
        caps = setpriv_caps(svc["entrypoint"])
        assert {c.lower() for c in svc.get("cap_add", [])} >= caps, f"{name}: ambient caps must be in cap_add"
    assert "user" not in COMPOSE["services"]["beat"]
    assert setpriv_caps(COMPOSE["services"]["worker"]["entrypoint"]) == {"net_admin"}
    assert setpriv_caps(COMPOSE["services"]["sensor"]["entrypoint"]) == {"net_raw", "net_admin"}


def test_host_network_sensor_reaches_redis_on_loopback_only():
    redis = COMPOSE["services"]["redis"]
    published = [p for p in redis.get("ports", []) if p.split(":")[-1] == "6379"]
    assert published == ["127.0.0.1:6379:6379"], "publish Redis on loopback only"
    assert "--requirepass" in redis["command"]
    url = COMPOSE["services"]["sensor"]["environment"]["SECOPS_REDIS__URL"]
    assert re.fullmatch(r"redis://:\$\{REDIS_PASSWORD\}@127\.0\.0\.1:6379/0", url), url


def test_ca_certificate_is_readable_by_the_unprivileged_services():
    setup = (REPO / "secops" / "deploy" / "es-setup.sh").read_text()
    assert "chmod 644 config/certs/ca/ca.crt" in setup and "chmod 755 config/certs config/certs/ca" in setup
    assert COMPOSE["x-secops"]["environment"]["SECOPS_ELASTICSEARCH__CA_FILE"] == "/certs/ca/ca.crt"


@pytest.mark.parametrize("service", ["sensor", "worker"])
def test_setpriv_entrypoint_really_leaves_root_with_only_its_capabilities(service):
    """Runs the service's setpriv line on this kernel (user nobody for secops): uid is not 0, the capability it
    keeps works (a packet socket for the sensor, netlink nftables for the worker), the others are gone."""
    if os.geteuid() != 0:
        pytest.fail("needs root (CI runs as root): setpriv changes user and capabilities")
    entry = [a.replace("=secops", "=nobody") for a in COMPOSE["services"][service]["entrypoint"]]
    entry = [a.replace("--regid=nobody", "--regid=nogroup") for a in entry]
    probe = ("import os, socket\n"
             "print(os.getuid(), [l.split()[1] for l in open('/proc/self/status') if l.startswith('CapEff')][0])\n"
             "socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(3))\n"
             "print('packet socket opened')\n")
    python = shutil.which("python3", path="/usr/bin:/bin")
    assert python, "a system python3 that the unprivileged user can run"
    out = subprocess.run([*entry, python, "-c", probe], capture_output=True, text=True, timeout=30)
    uid, cap_eff = out.stdout.split()[:2]
    assert uid == "65534"
    expected = (1 << 12) | ((1 << 13) if service == "sensor" else 0)  # CAP_NET_ADMIN=12, CAP_NET_RAW=13
    assert int(cap_eff, 16) == expected
    if service == "sensor":
        assert out.returncode == 0 and "packet socket opened" in out.stdout, out.stderr
    else:
        assert out.returncode != 0 and "PermissionError" in out.stderr  # no raw sockets for the worker
        nft = subprocess.run([*entry, "nft", "list", "tables"], capture_output=True, text=True, timeout=30)
        assert nft.returncode == 0, nft.stderr


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
    assert set(services) == {"sensor", "pcap-service"}, "a remote site runs only the sensor and its pcap service"
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
    # the pcap stays at the site: served read-only over TLS to a console presenting the site's key
    service = services["pcap-service"]
    assert service["command"][:3] == ["secops", "sensor", "pcap-service"] and "--tls-cert" in service["command"]
    assert service["environment"]["SECOPS_SENSOR__PCAP_SERVICE_KEY"].startswith("${SENSOR_PCAP_SERVICE_KEY:?")
    served = {v.split(":")[1]: v for v in service["volumes"]}
    assert served[service["environment"]["SECOPS_PATHS__PCAP_DIR"]] == \
        f"{mounts[env['SECOPS_PATHS__PCAP_DIR']]}:{env['SECOPS_PATHS__PCAP_DIR']}:ro"
    assert service["cap_drop"] == ["ALL"] and service["read_only"] is True
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
