"""Fixtures: one real Elasticsearch node and one redis-server per test run; indices cleaned per test.

Set SECOPS_TEST_ES_URL / SECOPS_TEST_REDIS_URL to reuse already running services (faster local loops).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from elasticsearch import Elasticsearch

from secops.config import Settings, load_settings
from secops.es.client import make_client
from secops.es.templates import install_templates
from tests.support import TESTDATA
from tests.support.services import start_cluster, start_es, start_redis, stop_and_remove, write_config


@pytest.fixture(scope="session")
def testdata() -> Path:
    if not TESTDATA.is_dir():
        raise RuntimeError(f"shared test data missing at {TESTDATA}")
    return TESTDATA


@pytest.fixture(scope="session")
def es_node():
    if url := os.environ.get("SECOPS_TEST_ES_URL"):
        yield type("External", (), {"url": url})()
        return
    node = start_es()
    yield node
    stop_and_remove(node)


@pytest.fixture(scope="session")
def es_cluster():
    """A three-node Elasticsearch cluster, started once per run and only for the tests that ask for it."""
    cluster = start_cluster(3)
    yield cluster
    stop_and_remove(cluster)


@pytest.fixture(scope="session")
def redis_server():
    if url := os.environ.get("SECOPS_TEST_REDIS_URL"):
        yield type("External", (), {"url": url})()
        return
    server = start_redis()
    yield server
    stop_and_remove(server)


@pytest.fixture
def settings(tmp_path: Path, es_node, request) -> Settings:
    """Settings for one test: the session's node, a private state dir, templates installed, no secops indices."""
    redis = request.getfixturevalue("redis_server").url if "redis_server" in request.fixturenames else None
    s = load_settings(None, elasticsearch={"hosts": [es_node.url]}, redis={"url": redis},
                      paths={"state_dir": str(tmp_path / "state"), "cache_dir": str(tmp_path / "cache")},
                      bulk={"backoff_seconds": 0.1, "probe_seconds": 1.0})
    es = make_client(s)
    es.indices.delete(index=f"{s.elasticsearch.index_prefix}-*", allow_no_indices=True, expand_wildcards="all")
    install_templates(es, s.elasticsearch.index_prefix)
    return s


@pytest.fixture
def es(settings: Settings) -> Elasticsearch:
    return make_client(settings)


@pytest.fixture
def config_file(settings: Settings, tmp_path: Path) -> Path:
    """The test's settings as a YAML file, for CLI and worker subprocesses (SECOPS_CONFIG)."""
    return write_config(settings, tmp_path / "secops.yaml")
