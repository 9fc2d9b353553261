"""Differential test of ``collectors._rs.write_document`` against ``documents.make_doc`` + ``orjson.dumps``.

Both sides get the same arguments; where make_doc succeeds and orjson can write its document, the Rust bytes must
be the very bytes ``orjson.dumps`` writes (so the same values, the same key order at every level, the same floats,
``_id`` and ``secops.truncated`` entries), its dict equal to make_doc's (tuples and NaN aside, which JSON cannot
hold), its cut count ``len(doc.get("secops", {}).get("truncated", ()))``, and the caller's ``fields`` untouched.
Where make_doc or orjson raises, write_document must raise too (TypeError where orjson refuses the document).

Inputs: the arguments of every document the protocol modules build while the deep path reads the shared captures
(recorded by wrapping ``Analyzer.document``), then generated ones (every value type, empty values and
``keep_empty``, long strings, lists and objects that are cut, dotted names sharing prefixes in any order, a
caller's ``secops.truncated``, 64-bit bounds, odd floats and timestamps, identity parts of every type).

The reference is ``documents.py`` loaded from its source: the mypyc extension beside it may be older than the
source while both are being changed.
"""

from __future__ import annotations

import copy
import importlib.util
import math
import random
import sys
from collections import Counter
from types import ModuleType
from typing import Any

import orjson
import pytest

from tests.support import REPO, TESTDATA

rs = pytest.importorskip("collectors._rs")


def _reference() -> ModuleType:
    name = "_write_document_reference"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, REPO / "collectors" / "protocols" / "documents.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


REF = _reference()
CAPTURES = sorted(p for p in TESTDATA.rglob("*") if p.is_file() and (".pcap" in p.name or p.suffix == ".cap")
                  and not p.name.endswith(".out"))
# documents per dataset the shared captures gave when this test was written (HTTP 171, FTP 153, S7comm 98, DNP3 68,
# Modbus 41, SMB 33, TLS 33, DHCP 5, DNS over TCP 2; DNS over UDP is DnsEngine's): the test cannot pass empty
MINIMUM = {"secops.http": 150, "secops.ftp": 130, "secops.s7comm": 80, "secops.dnp3": 50, "secops.modbus": 35,
           "secops.smb": 25, "secops.tls": 25, "secops.dhcp": 4, "secops.dns": 1}

Endpoints = tuple[str, str, int, str, int]
Call = tuple[str, Endpoints, float, tuple[Any, ...], dict[str, Any], Any, tuple[str, ...]]


def ordered(value: Any) -> Any:
    """A value with every dict as its list of items (so == compares key order too)."""
    if isinstance(value, dict):
        return [(k, ordered(v)) for k, v in value.items()]
    if isinstance(value, (list, tuple)):
        return [ordered(v) for v in value]
    return value


def plain(value: Any) -> bool:
    """No tuple and no NaN/infinity inside: make_doc's dict itself equals what JSON gives back."""
    if isinstance(value, tuple):
        return False
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, list):
        return all(plain(v) for v in value)
    if isinstance(value, dict):
        return all(plain(v) for v in value.values())
    return True


class Outcome(Counter[str]):
    """What the comparisons found: "same" (equal documents), "raised" (both raised), "fallback" (only Rust
    raised, TypeError, on a case it leaves to make_doc)."""


def compare(dataset: str, flow: Endpoints, ts: float, identity: tuple[Any, ...], fields: dict[str, Any], protocol: Any,
            keep_empty: tuple[str, ...] = (), *, fallback_ok: bool = False) -> str:
    """Run both sides on the same arguments and check them against each other; returns the outcome."""
    before = repr(fields)
    try:
        got: tuple[bytes, int] | None = rs.write_document(dataset, *flow, ts, identity, fields, protocol, keep_empty)
        rs_error: Exception | None = None
    except Exception as e:  # compared with the reference's
        got, rs_error = None, e
    assert repr(fields) == before, "write_document changed the caller's fields"
    try:
        doc = REF.make_doc(dataset, REF.Flow(*flow, "x"), ts, identity, dict(fields), protocol, keep_empty)
        want = orjson.dumps(doc)
        want_cuts = len(doc.get("secops", {}).get("truncated", ()))  # Analyzer.document's count
    except Exception as e:  # what make_doc, orjson or the count raised
        assert rs_error is not None, f"make_doc raised {e!r}, write_document did not: {got!r:.300}"
        if isinstance(e, (TypeError, ValueError)):
            assert isinstance(rs_error, (type(e), TypeError)), (e, rs_error)
        return "raised"
    if rs_error is not None:
        assert fallback_ok and isinstance(rs_error, TypeError), \
            f"write_document raised {rs_error!r} where make_doc gave {want!r:.600}"
        return "fallback"
    assert got is not None
    text, cuts = got
    assert text == want, f"\nrust:   {text!r:.1500}\norjson: {want!r:.1500}"
    loaded, reference = orjson.loads(text), orjson.loads(want)
    assert loaded == reference and ordered(loaded) == ordered(reference)
    if plain(doc):
        assert loaded == doc and ordered(loaded) == ordered(doc)
    assert cuts == want_cuts
    return "same"


# -- real documents ------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def recorded() -> list[Call]:
    """The arguments of every document the protocol modules built over the shared captures (the deep path in this
    process: ``Analyzer.document`` wrapped, which answers with the reference's make_doc)."""
    from collectors.ingest import Pipeline
    from collectors.protocols import base, dnp3_native, ftp_native, http_native, s7comm_native, tls_native

    calls: list[Call] = []

    def document(self: Any, flow: Any, ts: float, identity: Any, fields: dict[str, Any], protocol: Any,
                 keep_empty: tuple[str, ...] = ()) -> dict[str, Any]:
        identity = tuple(identity)
        args = copy.deepcopy((identity, fields, protocol, keep_empty))
        calls.append((self.DATASET, (flow.transport, flow.orig_h, flow.orig_p, flow.resp_h, flow.resp_p), ts, *args))
        doc: dict[str, Any] = REF.make_doc(self.DATASET, flow, ts, identity, fields, protocol, keep_empty)
        self.cut_values += len(doc.get("secops", {}).get("truncated", ()))
        return doc

    if not CAPTURES:
        pytest.skip("no shared captures")
    patch = pytest.MonkeyPatch()
    patch.setattr(base.Analyzer, "document", document)
    patch.setattr(tls_native, "RUST", False)  # TLS's documents through TlsAnalyzer (the engine writes its own)
    patch.setattr(http_native, "RUST", False)  # natively read HTTP through HttpAnalyzer.document too
    for engine_face in (ftp_native, dnp3_native, s7comm_native):  # and FTP, DNP3, S7comm through their analyzers
        patch.setattr(engine_face, "RUST", False)
    try:
        for path in CAPTURES:
            docs: list[Any] = []
            pipe = Pipeline(docs.append, deep=True, on_warning=lambda _msg: None)
            try:
                pipe.process_file(path)
            except Exception:  # captures the reader refuses (test_bad_pcaps' business)
                continue
            pipe.finish()
    finally:
        patch.undo()
    return calls


def test_real_documents(recorded: list[Call]) -> None:
    per_dataset: Counter[str] = Counter()
    outcome = Outcome()
    for dataset, flow, ts, identity, fields, protocol, keep_empty in recorded:
        outcome[compare(dataset, flow, ts, identity, fields, protocol, keep_empty)] += 1
        per_dataset[dataset] += 1
    assert outcome == {"same": len(recorded)}, outcome
    short = {ds: (per_dataset[ds], n) for ds, n in MINIMUM.items() if per_dataset[ds] < n}
    assert not short, f"too few documents (found, expected): {short}; all: {per_dataset}"
    print(f"\nreal documents compared: {sum(per_dataset.values())} {dict(per_dataset)}")


def test_real_documents_long(recorded: list[Call]) -> None:
    """The real fields with their strings made long: each cut the same way (lists, objects, their hashes)."""
    rng = random.Random(7)
    outcome = Outcome()
    for dataset, flow, ts, identity, fields, protocol, keep_empty in recorded[::3]:
        grown = {k: lengthen(v, rng) for k, v in fields.items()}
        outcome[compare(dataset, flow, ts, identity, grown, protocol, keep_empty)] += 1
    assert outcome["same"] > 150 and set(outcome) == {"same"}, outcome


def lengthen(value: Any, rng: random.Random) -> Any:
    if isinstance(value, str) and rng.random() < 0.3:
        return value + rng.choice(["x", "é", "\n", "\U0001f600"]) * (4097 - len(value) + rng.randrange(3))
    if isinstance(value, list):
        return [lengthen(v, rng) for v in value]
    if isinstance(value, dict):
        return {k: lengthen(v, rng) for k, v in value.items()}
    return value


# -- generated documents -------------------------------------------------------------------------------------------

LIMIT: int = REF.MAX_VALUE_CHARS
KEYS = ["a", "a.b", "a.c", "a.b.c", "a.b.d", "b", "b.a", "x.y", "x.y.z", "event.action", "event.dataset",
        "event.category", "network.protocol", "network.community_id.x", "source.port", "source", "secops.truncated",
        "secops.x", "secops", "_id", "@timestamp", "url.original", "http.request.method", "", ".", "a..b", "a.",
        'k"\\\n', "é.ü", "\U0001f600", "tls.client.ja3", "dns.answers"]
FLOATS = [math.nan, math.inf, -math.inf, -0.0, 0.0, 1e16, 1e15, 9999999999999998.0, 5e-324, 1e-5, 1e-6, 1.5e-7,
          0.1, 1.5, -2.5, 1700017589.61328125, 1.7976931348623157e308, 123456789012345680.0]
INTS = [0, 1, -1, 2**63 - 1, 2**63, 2**64 - 1, -2**63, 255]
BEYOND_64_BITS = [2**64, -2**63 - 1, 10**30]
ALPHABET = ["a", "Z", "0", " ", '"', "\\", "\n", "\t", "\x00", "\x1f", "\x7f", "é", "€", "\U0001f600", "\u2028",
            "/", "<", "\ufeff"]


def text(rng: random.Random) -> str:
    kind = rng.random()
    if kind < 0.08:
        return ""
    if kind < 0.25:  # around the limit
        char: str = rng.choice(["a", "é", "\U0001f600", '"', "\x01"])
        return char * (LIMIT + rng.choice([-1, 0, 1, 2, 900]))
    if kind < 0.3:  # long, every kind of character
        return "".join(rng.choice(ALPHABET) for _ in range(LIMIT + rng.randrange(1, 300)))
    return "".join(rng.choice(ALPHABET) for _ in range(rng.randrange(12)))


def scalar(rng: random.Random) -> Any:
    kind = rng.randrange(7)
    if kind == 0:
        return None
    if kind == 1:
        return rng.choice([True, False])
    if kind == 2:
        pick = rng.random()
        return rng.choice(BEYOND_64_BITS) if pick < 0.03 else rng.choice(INTS) if pick < 0.5 else \
            rng.randrange(-1000, 100000)
    if kind == 3:
        return rng.choice(FLOATS) if rng.random() < 0.5 else rng.uniform(-1e9, 1e9) * 10.0 ** rng.randrange(-12, 12)
    return text(rng)


def value(rng: random.Random, depth: int = 0) -> Any:
    kind = rng.random()
    if depth > 3 or kind < 0.55:
        return scalar(rng)
    if kind < 0.7:
        return [value(rng, depth + 1) for _ in range(rng.randrange(4))]
    if kind < 0.78:
        return tuple(value(rng, depth + 1) for _ in range(rng.randrange(3)))
    if kind < 0.8:
        return [text(rng) for _ in range(rng.randrange(40, 200))]  # long list
    return {rng.choice(["k", "name", "data", "é", "", 'q"']) + str(i): value(rng, depth + 1)
            for i in range(rng.randrange(4))}


def identity_part(rng: random.Random) -> Any:
    return rng.choice([None, True, False, 0, -7, 2**70, 1.5, 1700017589.61328125, 0.1, 1e16, 1e-5, -0.0, math.nan,
                       math.inf, "", "dns", "é\x00\U0001f600", "\ud800", (1, "a"), [2], b"xy", {"a": 1}, frozenset(),
                       rng.random() * 1e9, rng.randrange(-2**40, 2**40), text(rng)[:20]])


def timestamp(rng: random.Random) -> float:
    return rng.choice([
        rng.uniform(0, 2e9), round(rng.uniform(1e9, 2e9), 6), 1700000000.0078125, 1700017589.61328125, 0.0, -0.0,
        -0.5, -1.0000005, rng.uniform(-62135596800, 0), 253402300799.999999, 253402300799.9999995, 253402300800.0,
        -62135596800.0, -62135596800.5, 1e15, 1e20, math.nan, math.inf, -math.inf, 1700000000.9999996])


def flow(rng: random.Random) -> Endpoints:
    if rng.random() < 0.03:
        return rng.choice([("icmp", "10.0.0.1", 0, "10.0.0.2", 0), ("tcp", "10.0.0.300", 1, "10.0.0.2", 2),
                           ("udp", "::1", 1, "10.0.0.2", 2), ("tcp", "010.0.0.1", 1, "10.0.0.2", 2)])
    if rng.random() < 0.3:
        a, b = (":".join(f"{rng.randrange(0, 0x10000):x}" for _ in range(8)), rng.choice(["::1", "fe80::1",
                                                                                           "::ffff:10.1.2.3"]))
    else:
        a, b = (".".join(str(rng.randrange(256)) for _ in range(4)) for _ in range(2))
    ports = rng.choice([(rng.randrange(65536), rng.randrange(65536)), (0, 65535), (80, 80)])
    return rng.choice(["tcp", "udp"]), a, ports[0], b, ports[1]


def fields_of(rng: random.Random) -> tuple[dict[str, Any], tuple[str, ...]]:
    names = rng.sample(KEYS, rng.randrange(1, 5)) + [f"f{i}.g{rng.randrange(3)}" for i in range(rng.randrange(6))]
    fields: dict[str, Any] = {}
    for name in names:
        fields[name] = value(rng)
        if name == "secops.truncated" and rng.random() < 0.7:
            fields[name] = rng.choice([
                [{"field": "before", "length": 5000, "sha256": "00"}], ["x" * (LIMIT + 3)], "ab", "", 0, 5, (), (1,),
                {"k": 1}, None, [], ["a" * (LIMIT + 1), ("b" * (LIMIT + 1),)]])
    keep = tuple(rng.sample(names, rng.randrange(min(3, len(names)) + 1)))
    return fields, keep


def test_generated() -> None:
    rng = random.Random(20260417)
    outcome = Outcome()
    for _ in range(4000):
        fields, keep = fields_of(rng)
        ts = timestamp(rng) if rng.random() < 0.1 else rng.uniform(1e9, 2e9)
        identity = tuple(identity_part(rng) for _ in range(rng.randrange(5)))
        protocol = rng.choice(["http", "", ["dns", "mdns"], [], ["a" * (LIMIT + 1)]])
        outcome[compare(rng.choice(["secops.http", "secops.x"]), flow(rng), ts, identity, fields, protocol, keep,
                        fallback_ok=put_into_dict(fields))] += 1
    print(f"\ngenerated: {dict(outcome)}")
    assert outcome["same"] > 2500 and outcome["raised"] > 300, outcome
    assert outcome["fallback"] < 60, outcome


def put_into_dict(fields: dict[str, Any]) -> bool:
    """Whether make_doc puts a key into a caller's dict (the writer hands some of those back to make_doc)."""
    return any(isinstance(v, dict) for k, v in fields.items()
               if isinstance(k, str) and any(isinstance(o, str) and o.startswith(k + ".") for o in fields)) or \
        isinstance(fields.get("secops"), dict)


def nest(depth: int, leaf: Any = 1, kind: type = list) -> Any:
    for _ in range(depth):
        leaf = [leaf] if kind is list else {"k": leaf}
    return leaf


SHARED = {"x": 1}
EDGES: list[tuple[str, dict[str, Any], tuple[str, ...]]] = [
    ("put into a caller's dict", {"a": {"x": 1, "b": 0}, "a.b": 2, "a.c": {"d": 3}, "a.c.e": 4}, ()),
    ("put into a cut dict", {"a": {"x": "y" * (LIMIT + 5)}, "a.b": 2}, ()),
    ("leaf replaces an object in place", {"a.b": 1, "c": 2, "a": 3}, ()),
    ("_id keeps its place", {"_id": "mine", "z": 1}, ()),
    ("event member replaced", {"event.category": "x", "network.protocol": ["a"], "source": "s"}, ()),
    ("put under a string", {"a": "s", "a.b": 1}, ()),
    ("put under a list", {"a": [1], "a.b.c": 1}, ()),
    ("put under @timestamp", {"@timestamp.x": 1}, ()),
    ("secops is a string", {"secops": "s", "x": "y" * (LIMIT + 1)}, ()),
    ("secops is a dict", {"secops": {"truncated": ["old"]}, "x": "y" * (LIMIT + 1)}, ()),
    ("secops dict, no cut", {"secops": {"truncated": "abc"}}, ()),
    ("secops.truncated string, cut", {"secops.truncated": "old" * 2000}, ()),
    ("secops.truncated int", {"secops.truncated": 5, "x": "y" * (LIMIT + 1)}, ()),
    ("secops.truncated dict", {"secops.truncated": {"a": 1, "b": 2}, "x": "y" * (LIMIT + 1)}, ()),
    ("secops.truncated int keys", {"secops.truncated": {1: "a"}, "x": "y" * (LIMIT + 1)}, ()),
    ("secops.truncated empty kept", {"secops.truncated": "", "x": "y" * (LIMIT + 1)}, ("secops.truncated",)),
    ("empty tuple and dict", {"a": (), "b": {}, "c": [], "d": "", "e": 0, "f": False, "g": [[]]}, ()),
    ("keep_empty", {"a": "", "b": "", "c.d": ""}, ("a", "c.d")),
    ("tuples are never cut", {"a": ("x" * (LIMIT + 1),), "b": ["y", ("x" * (LIMIT + 1),)]}, ()),
    ("long string, surrogate past the cut", {"a": "x" * LIMIT + "\ud800"}, ()),
    ("long string, surrogate before the cut", {"a": "\ud800" + "x" * LIMIT}, ()),
    ("surrogate in a list", {"a": ["\udfff"]}, ()),
    ("surrogate key, skipped value", {"\ud800": None, "b": 1}, ()),
    ("surrogate key, empty kept", {"\ud800": ""}, ("\ud800",)),
    ("non-str key, skipped", {1: None, "b": 1}, ()),  # type: ignore[dict-item]
    ("non-str key", {1: "x"}, ()),  # type: ignore[dict-item]
    ("non-str nested key", {"a": {1: "x"}}, ()),
    ("str subclass key nested", {"a": {type("S", (str,), {})("k"): 1}}, ()),
    ("bytes", {"a": b"x"}, ()),
    ("set", {"a": {1}}, ()),
    ("object", {"a": object()}, ()),
    ("64-bit bounds", {"a": [2**63 - 1, -2**63, 2**64 - 1]}, ()),
    ("past 64 bits", {"a": 2**64}, ()),
    ("past 64 bits below", {"a": [-2**63 - 1]}, ()),
    ("big int in a cut list", {"a": [2**64, "x" * (LIMIT + 1)]}, ()),
    ("floats", {"a": [math.nan, math.inf, -0.0, 1e16, 5e-324, 1e-5, 1e-6], "b": math.nan}, ()),
    ("floats in a cut list", {"a": [math.nan, 2.5e-5, 1e-6, 1e16, 0.1, "x" * (LIMIT + 1)]}, ()),
    ("shared dict put into", {"a": SHARED, "b": SHARED, "a.y": 2}, ()),
    ("shared dict, later field", {"a": SHARED, "a.y": 2, "c": [SHARED]}, ()),
    ("shared dict, not put into", {"a": SHARED, "b": SHARED}, ()),
    *[(f"dotted {n} deep", {".".join(["a"] * n): 1}, ()) for n in range(252, 257)],
    ("dotted too deep, then replaced", {".".join(["a"] * 300): 1, "a": 2}, ()),
    *[(f"nested lists {n}", {"a": nest(n)}, ()) for n in range(250, 256)],
    *[(f"nested dicts {n} under a.b", {"a.b": nest(n, kind=dict)}, ()) for n in range(249, 255)],
    *[(f"nested cut {n}", {"a": nest(n, "x" * (LIMIT + 1))}, ()) for n in range(250, 256)],
]


# left to make_doc (TypeError): a key put into a dict the document shows elsewhere too (make_doc's put changes that
# dict wherever it is), a dotted name deeper than orjson writes (however a later field would have replaced it)
FALLBACK = ("shared dict put into", "shared dict, later field", "dotted too deep, then replaced")


@pytest.mark.parametrize(("name", "fields", "keep"), [pytest.param(*edge, id=edge[0]) for edge in EDGES])
def test_edges(name: str, fields: dict[str, Any], keep: tuple[str, ...]) -> None:
    fallback = name in FALLBACK
    got = compare("secops.http", ("tcp", "10.0.0.1", 1234, "10.0.0.2", 80), 1700017589.61328125,
                  ("http", None, 1.5), fields, "http", keep, fallback_ok=fallback)
    if fallback:
        assert got == "fallback"


@pytest.mark.parametrize("identity", [
    (), (None,), (True, False), (0, -1, 2**64, 10**40), (1700017589.61328125, 0.1, 1e16, 1e-5, -0.0, math.nan),
    ("", "é", "\ud800", "\x00"), ((1, "a"), [2], {"k": None}, b"x", frozenset({1})), iter(["a", 1]),
    (type("E", (), {"__str__": lambda self: "str\ud800"})(),),
])
def test_identity(identity: Any) -> None:
    parts = tuple(identity)
    assert compare("secops.http", ("udp", "fe80::1", 5353, "ff02::fb", 5353), 1.0, parts, {"a": 1}, "dns") == "same"


@pytest.mark.parametrize("ts", [0.0, -0.0, 0.5, -0.5, 1700000000.0078125, 1700000000.9999995, 253402300799.999999,
                                253402300799.9999995, 253402300800.0, -62135596800.0, -62135596800.5, -1e-9, 1e15,
                                1e17, -1e17, 2.0**63, 1e20, math.nan, math.inf, -math.inf, 5e-324])
def test_timestamps(ts: float) -> None:
    got = compare("secops.http", ("tcp", "10.0.0.1", 1, "10.0.0.2", 2), ts, ("x",), {"a": 1}, "http")
    if not math.isfinite(ts):
        assert got == "raised"
        with pytest.raises((ValueError, OverflowError)):
            rs.write_document("secops.http", "tcp", "10.0.0.1", 1, "10.0.0.2", 2, ts, (), {}, "http")


def test_fields_untouched() -> None:
    inner, other = {"x": "y" * (LIMIT + 1)}, {"x": 1}
    fields: dict[str, Any] = {"a": "z" * (LIMIT + 1), "b": [inner], "c": other, "c.d": 1, "secops.truncated": ["old"]}
    snapshot = copy.deepcopy(fields)
    rs.write_document("secops.http", "tcp", "10.0.0.1", 1, "10.0.0.2", 2, 1.0, (), fields, "http")
    assert fields == snapshot and fields["c"] is other and fields["b"][0] is inner


def test_keep_empty_default() -> None:
    text, cuts = rs.write_document("secops.http", "tcp", "10.0.0.1", 1, "10.0.0.2", 2, 1.0, (), {"a": ""}, "http")
    assert "a" not in orjson.loads(text) and cuts == 0


def test_many_timestamps() -> None:
    """``@timestamp`` and the ``f"{ts:.6f}"`` in ``_id`` over many times: microsecond ties (odd multiples of 2^-7,
    exact in binary), values a rounding away from the next second, random bits."""
    rng = random.Random(5)
    stamps = [rng.randrange(0, 2**31) + k / 128 for k in range(1, 128, 2) for _ in range(20)]
    stamps += [rng.randrange(0, 2**33) + 1 - rng.randrange(1, 2000) * 2.0**-40 for _ in range(1000)]
    stamps += [rng.uniform(-62135596800, 253402300800) for _ in range(2000)]
    stamps += [round(rng.uniform(1e9, 2e9), rng.randrange(7)) for _ in range(2000)]
    outcome = Outcome(compare("secops.x", ("tcp", "10.0.0.1", 1, "10.0.0.2", 2), ts, (), {"a": 1}, "x")
                      for ts in stamps)
    assert outcome == {"same": len(stamps)}, outcome
