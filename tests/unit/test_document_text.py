"""Documents that cross the analyzer process's pipe stay JSON text (``DocumentText``): the NDJSON output is the same
bytes, what Elasticsearch is sent is the same document, and text without ``make_doc``'s layout is parsed instead."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from collectors.ingest import Pipeline
from collectors.protocols import extract_metadata
from collectors.protocols.document_text import DocumentText
from tests.support import TESTDATA

CAPTURES = [TESTDATA / c for c in (
    "zeek/traces/ftp/ipv4.pcap", "zeek/traces/http/get.pcap", "zeek/traces/tls/tls-conn-with-extensions.pcap",
    "zeek/traces/dns-txt-multiple.pcap", "attacks/ics/modbus/modbus-eit.pcap",
    "attacks/lateral-movement/empire_smbexec_dcerpc_smb_svcctl_WORKSTATION5_2020-09-20025716.pcap")]


@pytest.fixture(scope="module")
def documents() -> list[dict]:
    docs = [d for c in CAPTURES for d in extract_metadata(c)]
    assert {d["event"]["dataset"] for d in docs} >= {"secops.ftp", "secops.http", "secops.tls", "secops.dns",
                                                      "secops.modbus", "secops.smb"}
    return docs


def test_every_deep_document_keeps_the_text_layout_and_reads_back_unchanged(documents: list[dict]) -> None:
    for doc in documents:
        text = orjson.dumps(doc)
        kept = DocumentText.from_text(text)
        assert kept is not None, text[:200]
        assert (kept.dataset, kept.timestamp, kept.doc_id) == (doc["event"]["dataset"], doc["@timestamp"], doc["_id"])
        assert kept.parse() == doc
        assert DocumentText.from_line(b'["d",' + text + b"]").text == text  # type: ignore[union-attr]


def test_the_elasticsearch_source_is_the_writer_s_document_without_id_with_ingested(documents: list[dict]) -> None:
    for doc in documents:
        kept = DocumentText.from_text(orjson.dumps(doc))
        assert kept is not None
        want = {k: v for k, v in doc.items() if k != "_id"}
        want["event"] = {**doc["event"], "ingested": "2026-11-30T20:00:00.000000Z"}
        assert orjson.loads(kept.source("2026-11-30T20:00:00.000000Z")) == want


@pytest.mark.parametrize("text", [
    b'{"_id":"abc","@timestamp":"2020-01-01T00:00:00Z","event":{"dataset":"secops.observation"}}',  # id first
    b'{"@timestamp":"2020-01-01T00:00:00Z","event":{"dataset":"secops.dns"},"_id":"abc","x":1}',  # id not last
    b'{"@timestamp":"2020-01-01T00:00:00Z","event":{"dataset":"secops.dns"},"_id":"ab',  # cut short
    b'{"@timestamp":"2020-01-01T00:00:00Z","event":{"dataset":"secops.dns","ingested":"x"},"_id":"abc"}',
    b'{"@timestamp":"2020-01-01T00:00:00Z","event":{"kind":"event","dataset":"secops.dns"},"_id":"abc"}',
    b'{"@timestamp":"2020\\"01","event":{"dataset":"secops.dns"},"_id":"abc"}',  # an escape in the time
    b'{"@timestamp":"2020-01-01T00:00:00Z","event":{"dataset":"secops.dns"},"q":{"_id":"abc"}}',  # a nested _id
    b'{"@timestamp":"2020-01-01T00:00:00Z","event":{"dataset":"secops.dns"},"q":"\\",\\"_id\\":\\"abc\\"}',
])
def test_text_without_make_doc_s_layout_is_not_taken_as_such(text: bytes) -> None:
    assert DocumentText.from_text(text) is None


def test_the_process_path_hands_the_text_on_and_parses_for_a_dict_sink(tmp_path: Path) -> None:
    """A large file's analyzers in their own process (``deep_process_min_bytes=0``): with a text sink the documents
    arrive as the child's text, byte for byte what the dict sink's ``orjson.dumps`` writes; without one, as dicts;
    with an observer, parsed and renamed as before."""
    paths = [p for p in CAPTURES if p.exists()]
    texts: list[DocumentText] = []
    dicts: list[dict] = []
    for path in paths:
        Pipeline(dicts.append, deep_process_min_bytes=0, text_sink=texts.append).process_file(path)
    reference: list[dict] = []
    for path in paths:
        Pipeline(reference.append, deep_process_min_bytes=None).process_file(path)
    deep = {d["_id"]: d for d in reference if d["event"]["dataset"] not in ("secops.conn", "secops.observation")}
    assert texts and len(texts) >= len(deep) - 5  # a few documents may lack the layout and go parsed
    # connections and observations are written by Rust in the main process: tests/unit/test_conn_rs.py and
    # test_observations.py hold their text to orjson's
    got = {t.doc_id: t.text for t in texts if t.dataset not in ("secops.conn", "secops.observation")}
    for doc in dicts:
        if doc["_id"] in deep:
            got[doc["_id"]] = orjson.dumps(doc)
    assert got == {i: orjson.dumps(d) for i, d in deep.items()}
    observed: list[dict] = []
    unused: list[DocumentText] = []
    Pipeline(observed.append, observer="sensor-7", deep_process_min_bytes=0, text_sink=unused.append) \
        .process_file(paths[1])
    assert {d["observer"]["name"] for d in observed} == {"sensor-7"}
    assert {t.dataset for t in unused} <= {"secops.conn", "secops.observation"}  # the deep ones parsed, renamed
    assert all(orjson.loads(t.text)["observer"] == {"name": "sensor-7"} for t in unused)


def test_the_process_path_observes_alike() -> None:
    """With analyzer processes, netaddr's OUI index loads in a thread while they finish (``_load_vendor_registry``):
    the observations, vendors included, are those of the in-process path."""
    from collectors.conn import oui_vendor

    def observations(min_bytes: int | None) -> list[dict]:
        oui_vendor.cache_clear()  # the registry thread runs for the first lookup of a run only
        docs: list[dict] = []
        pipe = Pipeline(docs.append, deep_process_min_bytes=min_bytes)
        for path in CAPTURES:
            pipe.process_file(path)
        pipe.finish()
        return sorted((d for d in docs if d["event"]["dataset"] == "secops.observation"), key=lambda d: d["_id"])

    in_process = observations(None)
    assert any(d["secops"]["observation"].get("vendor") for d in in_process)
    assert observations(0) == in_process


@pytest.mark.parametrize("text", [
    b'{"@timestamp":"2020-01-01T00:00:00Z","event":{"dataset":"secops.dns"},"_id":"abc","x":1}',
    b'{"@timestamp":"2020-01-01T00:00:00Z","event":{"dataset":"secops.dns","ingested":"x"},"_id":"abc"}',
])
def test_a_child_s_line_is_kept_as_text_and_its_layout_read_only_when_asked(text: bytes) -> None:
    """``from_line`` does not read the layout (the NDJSON writer copies the text); a writer that needs the index and
    id asks ``laid_out``, and the pipeline parses what lacks the layout for it (a ``Pipeline`` without ``ndjson``)."""
    from collectors.ingest import Pipeline

    line = DocumentText.from_line(b'["d",' + text + b"]")
    assert line is not None and line.text == text and not line.laid_out()
    good = DocumentText.from_line(b'["d",{"@timestamp":"2020-01-01T00:00:00Z","event":{"dataset":"secops.dns"},'
                                  b'"_id":"abc"}]')
    assert good is not None and good.laid_out() and (good.dataset, good.doc_id) == ("secops.dns", "abc")
    for text_only in (True, False):
        dicts: list[dict] = []
        texts: list[DocumentText] = []
        ndjson = (lambda _block: None) if text_only else None
        pipe = Pipeline(dicts.append, deep=False, text_sink=texts.append, ndjson=ndjson)
        pipe._ship_deep([line, good])
        assert texts == ([line, good] if text_only else [good])
        assert dicts == ([] if text_only else [orjson.loads(text)])
