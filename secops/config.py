"""Configuration: one YAML file plus ``SECOPS_*`` environment overrides, validated by pydantic.

Lookup order for the file: ``--config`` / ``SECOPS_CONFIG``, ``./secops.yaml``, ``~/.config/secops/secops.yaml``.
Environment variables override the file with ``__`` between nesting levels, for example
``SECOPS_ELASTICSEARCH__HOSTS='["https://es:9200"]'`` or ``SECOPS_REDIS__URL=redis://...``.
Every section forbids unknown keys so a typo is an error, not a silently ignored setting.
"""

from __future__ import annotations

import ipaddress
import os
import zoneinfo
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from secops import safe_yaml
from secops.redaction import RedactingFilter, install_log_redaction, redact_text, redacted  # noqa: F401 (their home before)

CONFIG_ENV = "SECOPS_CONFIG"


class ConfigError(Exception):
    """A configuration problem, rendered as one line for the operator."""


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


def _state_home() -> Path:
    # As root, services run as an unprivileged user that cannot enter /root: use the FHS locations.
    if os.geteuid() == 0:
        return Path("/var/lib/secops")
    return Path(os.environ.get("XDG_STATE_HOME", Path.home() / ".local" / "state")) / "secops"


def cache_home() -> Path:
    if os.geteuid() == 0:
        return Path("/var/cache/secops")
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "secops"


class ElasticsearchSettings(Section):
    hosts: list[str] | None = Field(None, description="Node URLs; unset = the local stack (secops stack up)")
    api_key: SecretStr | None = None
    username: str | None = None
    password: SecretStr | None = None
    ca_file: Path | None = None
    verify_certs: bool = True
    request_timeout: float = Field(30.0, gt=0)
    index_prefix: str = Field("secops", pattern=r"^[a-z][a-z0-9_]*$")
    sniff: bool = Field(False, description="Also discover nodes from the cluster (on start and on node failure)")
    replicas: int | None = Field(
        None, ge=0, le=8,
        description="number_of_replicas of every secops index; unset = 0 on one node, 1 on a cluster")


class RedisSettings(Section):
    url: str | None = Field(None, description="Celery broker/result backend; unset = the local stack")


class BeatSettings(Section):
    lease_seconds: float = Field(
        30.0, ge=3, description="A standby beat takes over this long after the active beat died")


class PathSettings(Section):
    state_dir: Path = Field(default_factory=_state_home)
    cache_dir: Path = Field(default_factory=cache_home)
    spool_dir: Path | None = Field(None, description="Durable bulk spool; default STATE_DIR/spool")
    pcap_dir: Path | None = Field(None, description="Rotating capture spool; default STATE_DIR/pcap")

    def spool(self) -> Path:
        return self.spool_dir or self.state_dir / "spool"

    def pcaps(self) -> Path:
        return self.pcap_dir or self.state_dir / "pcap"


class BulkSettings(Section):
    batch_docs: int = Field(5000, ge=1)
    batch_bytes: int = Field(8 * 1024 * 1024, ge=1024)
    flush_seconds: float = Field(5.0, gt=0)
    max_retries: int = Field(4, ge=0)
    backoff_seconds: float = Field(0.5, ge=0)
    probe_seconds: float = Field(
        5.0, gt=0, description="While the store is down, how often to try it again (each try waits at most this long)")


class RetentionSettings(Section):
    default_days: int = Field(30, ge=1)
    datasets: dict[str, int] = Field(default_factory=dict, description="Per dataset, e.g. {conn: 14}")


class SensorSettings(Section):
    interface: str | None = None
    bpf: str | None = None
    workers: int | None = Field(None, ge=1, le=16, description="Flow-hash worker processes (default: one per core)")
    rotate_seconds: int = Field(1, ge=1, description="Seal a spool chunk every this many seconds (dumpcap ring)")
    rotate_mb: int = Field(64, ge=1, description="... or when it reaches this size")
    buffer_mb: int = Field(64, ge=1, description="Kernel capture ring per worker (dumpcap -B)")
    stats_seconds: float = Field(10.0, gt=0, description="How often the sensor writes its secops.sensor document")
    pcap_budget_mb: int = Field(10240, ge=1, description="Disk budget of the capture spool, oldest out first")
    min_free_mb: int = Field(1024, ge=0, description="Never let the capture spool leave less than this free")
    flow_table_max: int = Field(500_000, ge=1000)
    deep_bytes_per_direction: int = Field(
        1 << 20, ge=4096, le=1 << 31,
        description="TCP payload bytes of one flow direction the protocol analyzers (tshark) get at most; the rest "
                    "is counted in secops.conn.deep_cut_bytes")
    tshark_path: str = "tshark"
    dumpcap_path: str = "dumpcap"
    pcap_service_key: SecretStr | None = Field(
        None, min_length=24, description="Key a central console presents to this sensor's pcap service")


class ScanPolicy(Section):
    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$")
    scope: str = Field(description="Name of a scope in scanning.scopes")
    profile: Literal["discovery", "standard", "deep"] = "standard"
    ports: str | None = Field(None, pattern=r"^[0-9TU:,\-]+$")
    timing: int = Field(3, ge=0, le=5)
    max_rate: int | None = Field(None, ge=1, description="nmap --max-rate, packets per second")
    version_intensity: int | None = Field(None, ge=0, le=9, description="nmap --version-intensity (0 = fastest)")
    every_minutes: int = Field(1440, ge=1)
    maintenance_windows: list[str] = Field(
        default_factory=list, description="Only scan inside these windows, e.g. 'Mon-Fri 22:00-06:00'"
    )


class ScanningSettings(Section):
    scopes: dict[str, list[str]] = Field(default_factory=dict, description="Named target scopes (CIDRs, hosts)")
    exclusions: list[str] = Field(default_factory=list)
    policies: list[ScanPolicy] = Field(default_factory=list)
    nmap_path: str = "nmap"
    chunk_size: int = Field(64, ge=1, description="Addresses per parallel scan chunk")
    max_parallel_chunks: int = Field(4, ge=1)
    host_timeout_seconds: int = Field(900, ge=10)
    max_target_addresses: int = Field(65536, ge=1, description="Refuse scans covering more addresses")
    max_retries: int = Field(1, ge=0, le=10, description="nmap --max-retries")


class InventorySettings(Section):
    zones: dict[str, list[str]] = Field(default_factory=dict, description="Network zone name -> CIDRs")
    default_zone: str = "default"
    stale_days: int = Field(7, ge=1, description="An asset unseen this long raises 'asset gone'")
    scan_overdue_days: int = Field(30, ge=1)
    learning_hours: float = Field(24, ge=0, description=(
        "A new zone's learning period from its first merge: assets found meanwhile are recorded without a "
        "'New Asset' alert each (0: the first merge only)"))
    forbidden_services: list[str] = Field(default_factory=lambda: ["telnet", "ftp", "smbv1", "rlogin", "rsh"])


class DetectionSettings(Section):
    rules_dirs: list[Path] = Field(default_factory=list, description="Extra Sigma rule folders")
    ioc_dirs: list[Path] = Field(default_factory=list, description="IOC lists and STIX 2.1 bundles")
    fingerprint_files: list[Path] = Field(default_factory=list, description=(
        "C2 TLS fingerprint lists (fingerprint,name,severity,note) added to the shipped one"))
    infrastructure: list[str] = Field(default_factory=list, description=(
        "Networks of hosts every client polls on a schedule (resolvers, NTP, proxies, update servers): never "
        "reported as beaconing"))

    @field_validator("infrastructure")
    @classmethod
    def _networks(cls, value: list[str]) -> list[str]:
        return [str(ipaddress.ip_network(v, strict=False)) for v in value]
    interval_seconds: int = Field(60, ge=5)
    lookback_seconds: int = Field(300, ge=0)
    suppression_seconds: int = Field(3600, ge=0)
    max_window_seconds: int = Field(86400, ge=60)


class PlaybookSettings(Section):
    dirs: list[Path] = Field(default_factory=list, description="Extra playbook folders")
    dry_run: bool = False
    kill_switch: bool = False
    approval_timeout_seconds: int = Field(3600, ge=1)
    protected: list[str] = Field(default_factory=list, description="Addresses/CIDRs containment never touches")
    rate_limits: dict[str, int] = Field(default_factory=dict, description="Per action, max runs per hour")
    block_backend: Literal["nftables", "iptables"] = "nftables"
    block_netns: str | None = Field(None, description="Apply blocks inside this network namespace")
    webhook_allow: list[str] = Field(default_factory=list, description="URL prefixes notify/ticket may POST to")
    smtp_host: str | None = None
    smtp_port: int = 25
    mail_from: str = "secops@localhost"
    syslog_address: str | None = Field(None, description="host:port of a syslog receiver (UDP)")
    builtin: bool = Field(True, description="Also load the playbooks shipped in playbooks/definitions")
    stall_seconds: int = Field(60, ge=1, description="Re-dispatch a step whose message vanished after this long")
    max_value_length: int = Field(512, ge=16, description="Longest alert value a template may substitute")
    block_ttl_max_seconds: int = Field(7 * 86400, ge=1, description="Upper bound of a containment TTL")


NOTIFY_EVENTS = ("alert.created", "case.assigned", "approval.pending")


class NotificationTarget(Section):
    """Where notifications go and which: events of at least ``min_severity``, in ``language``."""

    name: str = Field(min_length=1, max_length=64)
    channel: Literal["webhook", "smtp", "syslog"]
    url: str | None = Field(None, pattern=r"^https?://", description="webhook: the URL to POST to")
    to: list[str] = Field(default_factory=list, description="smtp: recipients (server: playbooks.smtp_*)")
    address: str | None = Field(None, description="syslog: host:port (default: playbooks.syslog_address)")
    events: list[Literal["alert.created", "case.assigned", "approval.pending"]] = \
        Field(default_factory=lambda: list(NOTIFY_EVENTS))
    min_severity: Literal["low", "medium", "high", "critical"] = "high"
    language: Literal["en", "zh_CN"] = "en"


class NotificationSettings(Section):
    targets: list[NotificationTarget] = Field(default_factory=list, description="Default: notify nobody")
    timeout_seconds: float = Field(5.0, gt=0, le=60)
    console_url: str | None = Field(None, description="Base URL of the console, for links in messages")


class KibanaSettings(Section):
    url: str | None = None
    username: str | None = None
    password: SecretStr | None = None
    space: str | None = None


class RemoteSensor(Section):
    """A sensor at another site whose spool the console asks for packets (``secops sensor pcap-service`` there)."""

    url: str = Field(pattern=r"^https?://", description="Its pcap service, e.g. https://scada-sensor:8443")
    api_key: SecretStr = Field(description="That sensor's sensor.pcap_service_key")
    ca_file: Path | None = Field(None, description="CA of its TLS certificate (else the system's)")
    verify_certs: bool = True
    timeout_seconds: float = Field(30.0, gt=0)


class ConsoleSettings(Section):
    # The operators are a Chinese city government's SOC and its auditors: China keeps one zone (UTC+8, no DST),
    # while servers and containers usually run in UTC, so the server's zone would show every analyst UTC.
    timezone: str = Field("Asia/Shanghai", description="IANA time zone of console dates for users who chose none")
    sensors: dict[str, RemoteSensor] = Field(
        default_factory=dict, description="Remote sensors by observer.name: their packets are fetched from them")

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, v: str) -> str:
        if v not in zoneinfo.available_timezones():
            raise ValueError(f"not a known IANA time zone: {v[:64]!r}")
        return v


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="SECOPS_", env_nested_delimiter="__", extra="forbid")

    elasticsearch: ElasticsearchSettings = Field(default_factory=ElasticsearchSettings)
    redis: RedisSettings = Field(default_factory=RedisSettings)
    beat: BeatSettings = Field(default_factory=BeatSettings)
    paths: PathSettings = Field(default_factory=PathSettings)
    bulk: BulkSettings = Field(default_factory=BulkSettings)
    retention: RetentionSettings = Field(default_factory=RetentionSettings)
    sensor: SensorSettings = Field(default_factory=SensorSettings)
    scanning: ScanningSettings = Field(default_factory=ScanningSettings)
    inventory: InventorySettings = Field(default_factory=InventorySettings)
    detections: DetectionSettings = Field(default_factory=DetectionSettings)
    playbooks: PlaybookSettings = Field(default_factory=PlaybookSettings)
    kibana: KibanaSettings = Field(default_factory=KibanaSettings)
    notifications: NotificationSettings = Field(default_factory=NotificationSettings)
    console: ConsoleSettings = Field(default_factory=ConsoleSettings)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # Environment beats the file (passed as init kwargs by load_settings).
        return env_settings, init_settings


def find_config_file(explicit: str | os.PathLike[str] | None = None) -> Path | None:
    candidates = [explicit, os.environ.get(CONFIG_ENV)]
    for c in candidates:
        if c:
            p = Path(c)
            if not p.is_file():
                raise ConfigError(f"config file not found: {p}")
            return p
    for p in (Path("secops.yaml"), Path.home() / ".config" / "secops" / "secops.yaml"):
        if p.is_file():
            return p
    return None


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        data = safe_yaml.load_file(path)
    except safe_yaml.UnsafeYaml as exc:
        raise ConfigError(str(exc)) from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: top level must be a mapping of sections, got {type(data).__name__}")
    return data


def format_validation_error(exc: ValidationError, source: str) -> str:
    parts = []
    for err in exc.errors():
        loc = ".".join(str(x) for x in err["loc"]) or "(top level)"
        msg = "unknown key" if err["type"] == "extra_forbidden" else err["msg"]
        parts.append(f"{loc}: {msg}")
    return f"{source}: " + "; ".join(parts)


def load_settings(path: str | os.PathLike[str] | None = None, **overrides: Any) -> Settings:
    """Load and validate the configuration; raise ConfigError with a one-line message."""
    file = find_config_file(path)
    data = _read_yaml(file) if file else {}
    data.update(overrides)
    try:
        return Settings(**data)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc, str(file) if file else "environment")) from None


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """Process-wide settings (Celery workers and tasks); CLI commands pass theirs explicitly."""
    return load_settings()
