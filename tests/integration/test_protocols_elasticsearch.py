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


def test_documents_kept_as_text_index_as_the_parsed_ones_do(settings, es, tmp_path):
    """``BulkWriter.add_text`` (an analyzer process's documents, unparsed) indexes the same sources into the same
    indices as ``add`` does with the parsed dicts; a document long enough to need cutting goes the dict way."""
    import orjson

    from collectors.protocols.document_text import DocumentText

    docs = [d for c in CAPTURES[:4] for d in extract_metadata(TESTDATA / c)]
    long_one = {**docs[0], "_id": "long-one", "secops": {"note": "x" * 40_000}}
    prefix = settings.elasticsearch.index_prefix
    with BulkWriter(es, tmp_path / "spool", settings.bulk, prefix=prefix) as w:
        for doc in [*docs, long_one]:
            text = DocumentText.from_text(orjson.dumps(doc))
            assert text is not None
            w.add_text(text)
    assert w.stats.rejected == 0 and w.stats.spooled == 0
    es.indices.refresh(index=f"{prefix}-*")
    hits = {h["_id"]: h for h in es.search(index=f"{prefix}-*", size=1000, query={"match_all": {}})["hits"]["hits"]}
    assert len(hits) == len(docs) + 1
    with BulkWriter(es, tmp_path / "spool2", settings.bulk, prefix=f"{prefix}-dict") as w:
        w.add_many(docs)
    es.indices.refresh(index=f"{prefix}-dict-*")
    for hit in es.search(index=f"{prefix}-dict-*", size=1000, query={"match_all": {}})["hits"]["hits"]:
        mine = hits[hit["_id"]]
        assert mine["_index"] == hit["_index"].replace(f"{prefix}-dict-", f"{prefix}-")
        for source in (mine["_source"], hit["_source"]):
            assert source["event"].pop("ingested")
        assert mine["_source"] == hit["_source"]
    assert len(hits["long-one"]["_source"]["secops"]["note"]) < 40_000  # cut as add cuts it
