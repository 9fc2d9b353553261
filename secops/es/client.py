"""Client factory and reachability checks (the integ-test node has no root endpoint: use cluster health)."""

from __future__ import annotations

import json
from pathlib import Path

from elastic_transport import ConnectionError as TransportConnectionError
from elasticsearch import Elasticsearch
from elasticsearch import exceptions as es_exc

from secops.config import Settings

LOCAL_STACK_STATE = ("stack", "stack.json")  # below paths.state_dir, written by `secops stack up`


class StoreUnavailable(RuntimeError):
    """Elasticsearch cannot be reached; the message names the URL and the cause."""


def local_stack_file(state_dir: Path) -> Path:
    return state_dir.joinpath(*LOCAL_STACK_STATE)


def local_stack_urls(state_dir: Path) -> tuple[str | None, str | None]:
    """(Elasticsearch URL, Redis URL) recorded by `secops stack up`, or None where nothing is recorded."""
    path = local_stack_file(state_dir)
    if not path.exists():
        return None, None
    state = json.loads(path.read_text())
    return state.get("elasticsearch", {}).get("url"), state.get("redis", {}).get("url")


def es_hosts(settings: Settings) -> list[str]:
    if settings.elasticsearch.hosts:
        return settings.elasticsearch.hosts
    url, _ = local_stack_urls(settings.paths.state_dir)
    return [url or "http://127.0.0.1:9200"]


def redis_url(settings: Settings) -> str:
    if settings.redis.url:
        return settings.redis.url
    _, url = local_stack_urls(settings.paths.state_dir)
    return url or "redis://127.0.0.1:6379/0"


def make_client(settings: Settings, **overrides) -> Elasticsearch:
    cfg = settings.elasticsearch
    kwargs: dict = {
        "hosts": es_hosts(settings),
        "request_timeout": cfg.request_timeout,
        "verify_certs": cfg.verify_certs,
        "retry_on_timeout": False,
        "max_retries": 0,  # BulkWriter owns retries; the transport must fail fast.
    }
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
