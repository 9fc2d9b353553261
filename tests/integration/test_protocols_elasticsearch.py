"""Deep-path documents indexed into a real Elasticsearch node with the project's templates."""

from __future__ import annotations

from collections import Counter

import pytest

from collectors.protocols import extract_metadata
from secops.es.bulk import BulkWriter
from tests.support import TESTDATA

pytestmark = pytest.mark.integration
CAPTURES = [
    "attacks/lateral-movement/empire_smbexec_dcerpc_smb_svcctl_WORKSTATION5_2020-09-20025716.pcap",
    "attacks/bruteforce/ftp-bruteforce.pcap", "attacks/ics/dnp3/dnp3_select_operate.pcap",
    "attacks/ics/modbus/modbus-eit.pcap", "attacks/ics/s7comm/snap7.pcap", "zeek/traces/tls/google-cert-repeat.pcap",
    "zeek/traces/dns-txt-multiple.pcap", "zeek/traces/http/100-continue.pcap",
]


def test_documents_index_without_rejections_and_replay_idempotently(settings, es, tmp_path):
    docs = [d for c in CAPTURES for d in extract_metadata(TESTDATA / c)]
    want = Counter(d["event"]["dataset"] for d in docs)
    for _attempt in range(2):  # a replay of the same capture must not duplicate anything
        with BulkWriter(es, tmp_path / "spool", settings.bulk, prefix=settings.elasticsearch.index_prefix) as w:
            w.add_many(docs)
        assert w.stats.rejected == 0 and w.stats.spooled == 0
    prefix = settings.elasticsearch.index_prefix
    es.indices.refresh(index=f"{prefix}-*")
    for dataset, n in want.items():
        short = dataset.split(".", 1)[1]
        assert es.count(index=f"{prefix}-{short}-*")["count"] == n, dataset
    # typed fields answer typed queries
    hits = es.search(index=f"{prefix}-smb-*", query={"term": {"secops.dcerpc.operation": "CreateServiceW"}})
    assert hits["hits"]["total"]["value"] == 1
    established = es.count(index=f"{prefix}-tls-*", query={"term": {"tls.established": True}})["count"]
    assert established == want["secops.tls"]
    failed = es.count(index=f"{prefix}-ftp-*", query={"bool": {"filter": [
        {"term": {"event.outcome": "failure"}}, {"term": {"secops.ftp.reply_code": 530}}]}})["count"]
    assert failed == 30
    controls = es.count(index=f"{prefix}-dnp3-*", query={"term": {"secops.dnp3.is_control": True}})["count"]
    assert controls == 2
    long_ttl = es.count(index=f"{prefix}-dns-*", query={"range": {"dns.answers.ttl": {"gte": 7200}}})["count"]
    assert long_ttl == 1
    mapping = es.indices.get_mapping(index=f"{prefix}-s7comm-*")
    props = next(iter(mapping.values()))["mappings"]["properties"]["secops"]["properties"]["s7comm"]["properties"]
    assert props["pdu_reference"]["type"] == "long" and props["is_program_change"]["type"] == "boolean"
