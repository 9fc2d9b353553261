"""Client factory and reachability checks (the integ-test node has no root endpoint: use cluster health)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import orjson
from elastic_transport import ConnectionError as TransportConnectionError
from elasticsearch import Elasticsearch
from elasticsearch import exceptions as es_exc
from elasticsearch.serializer import JsonSerializer

from secops.config import Settings

LOCAL_STACK_STATE = ("stack", "stack.json")  # below paths.state_dir, written by `secops stack up`


class StoreUnavailable(RuntimeError):
    """Elasticsearch cannot be reached; the message names the URL and the cause."""


def local_stack_file(state_dir: Path) -> Path:
    return state_dir.joinpath(*LOCAL_STACK_STATE)


def _local_stack_state(state_dir: Path) -> dict:
    path = local_stack_file(state_dir)
    return json.loads(path.read_text()) if path.exists() else {}


def local_stack_urls(state_dir: Path) -> tuple[str | None, str | None]:
    """(Elasticsearch URL, Redis URL) recorded by `secops stack up`, or None where nothing is recorded."""
    state = _local_stack_state(state_dir)
    return state.get("elasticsearch", {}).get("url"), state.get("redis", {}).get("url")


def es_hosts(settings: Settings) -> list[str]:
    """Every node the client may use: the configured list, or every node `secops stack up` started."""
    if settings.elasticsearch.hosts:
        return settings.elasticsearch.hosts
    es = _local_stack_state(settings.paths.state_dir).get("elasticsearch", {})
    return es.get("urls") or ([es["url"]] if es.get("url") else ["http://127.0.0.1:9200"])


def redis_url(settings: Settings) -> str:
    if settings.redis.url:
        return settings.redis.url
    _, url = local_stack_urls(settings.paths.state_dir)
    return url or "redis://127.0.0.1:6379/0"


class FastResponseJson(JsonSerializer):
    """Responses parsed by orjson (an aggregation page of 20,000 buckets parses several times faster); requests
    still written by the client's own serializer and its type handling."""

    def json_loads(self, data: bytes) -> Any:
        return orjson.loads(data)


def make_client(settings: Settings, **overrides) -> Elasticsearch:
    """A client over every node. A request that cannot connect to one node moves on to the next (at most
    once per other node, no waiting); throttling and timeouts are not retried here: BulkWriter owns those."""
    cfg = settings.elasticsearch
    hosts = es_hosts(settings)
    kwargs: dict = {
        "hosts": hosts,
        "request_timeout": cfg.request_timeout,
        "verify_certs": cfg.verify_certs,
        "retry_on_timeout": False,
        "retry_on_status": (),
        "max_retries": len(hosts) - 1,
        "serializers": {JsonSerializer.mimetype: FastResponseJson()},
    }
    if cfg.sniff:
        # Learn the other nodes from the cluster (published HTTP addresses must be reachable from here).
        kwargs.update(sniff_on_start=True, sniff_on_node_failure=True, min_delay_between_sniffing=10)
    if cfg.ca_file:
        kwargs["ca_certs"] = str(cfg.ca_file)
    if cfg.api_key:
        kwargs["api_key"] = cfg.api_key.get_secret_value()
    elif cfg.username:
        kwargs["basic_auth"] = (cfg.username, cfg.password.get_secret_value() if cfg.password else "")
    kwargs.update(overrides)
    return Elasticsearch(**kwargs)


def check_reachable(es: Elasticsearch) -> dict:
    """Cluster health, or StoreUnavailable with a one-line reason."""
    try:
        return dict(es.cluster.health(timeout="5s"))
    except (TransportConnectionError, es_exc.ConnectionError, es_exc.ConnectionTimeout) as exc:
        hosts = ", ".join(str(n.base_url) for n in es.transport.node_pool.all())
        raise StoreUnavailable(f"Elasticsearch unreachable at {hosts}: {type(exc).__name__}") from None
    except es_exc.AuthenticationException:
        raise StoreUnavailable("Elasticsearch rejected the credentials (401)") from None
