"""Only the compiled parts live here; everything else is declared in pyproject.toml.

- ``collectors._flowcore``: the flow path's hot loop in C (see collectors/flowpath.py).
- The protocol readers, compiled ahead of time by mypyc from the same Python sources (``COMPILED`` below). The
  code and its semantics are unchanged: bounds-checked Python operations, the same exceptions. Measured A/B on the
  1M-packet real-trace benchmark (with the GC setting of secops.runtime): the whole ingest takes 27% less CPU and
  27-29% less wall time (means of two A/B sessions); the DNS message parser alone runs 1.9x as fast.

- ``collectors._rs``: the Rust engines (collectors/rust, PyO3, built by cargo through setuptools-rust), which write
  documents as JSON without building Python objects: DNS over UDP (``collectors.protocols.dns_udp``).

All are optional: without a compiler or cargo, or with SECOPS_PURE_PYTHON=1, the install succeeds and the same
modules run interpreted (the Rust engines' Python references). tests/unit/test_compiled.py fails in CI when any is
missing or older than its source.
"""

import os

from setuptools import Extension, setup

# the modules every frame or document passes through, by measured share of an ingest's time (py-spy on the 300k slice):
# decoding, detection, the readers, documents, connection records. pcapio and deep_fanout stay interpreted (tests
# replace functions in them, and a compiled module calls its own functions directly), and so does ingest: an
# extension module cannot run as `python3 -m collectors.ingest`
COMPILED = [
    "collectors/community_id.py",
    "collectors/conn.py",
    "collectors/decode.py",
    "collectors/protocols/detect.py",
    "collectors/protocols/dhcp_wire.py",
    "collectors/protocols/dnp3.py",
    "collectors/protocols/dnp3_wire.py",
    "collectors/protocols/dns.py",
    "collectors/protocols/dns_udp.py",
    "collectors/protocols/dns_wire.py",
    "collectors/protocols/dtls_wire.py",
    "collectors/protocols/document_text.py",
    "collectors/protocols/documents.py",
    "collectors/protocols/ftp.py",
    "collectors/protocols/host_pairs.py",
    "collectors/protocols/http.py",
    "collectors/protocols/http_wire.py",
    "collectors/protocols/iec104.py",
    "collectors/protocols/iec104_wire.py",
    "collectors/protocols/ja4.py",
    "collectors/protocols/modbus.py",
    "collectors/protocols/modbus_wire.py",
    "collectors/protocols/native.py",
    "collectors/protocols/native_tcp.py",
    "collectors/protocols/outer_ip.py",
    "collectors/protocols/quic_wire.py",
    "collectors/protocols/reread.py",
    "collectors/protocols/s7comm.py",
    "collectors/protocols/s7comm_wire.py",
    "collectors/protocols/smb.py",
    "collectors/protocols/smb_wire.py",
    "collectors/protocols/tcp_reassembly.py",
    "collectors/protocols/tls.py",
    "collectors/protocols/tls_wire.py",
    "collectors/protocols/tshark.py",
    "collectors/selection.py",
    "secops/ecs.py",
]


def compiled_readers() -> list[Extension]:
    if os.environ.get("SECOPS_PURE_PYTHON"):
        return []
    try:
        from mypyc.build import mypycify
    except ImportError:  # mypy is a build requirement; a bare `setup.py` run without it stays interpreted
        return []
    # the project's [tool.mypy] is strict for other packages; mypyc needs only the readers to type-check
    options = ["--config-file=", "--follow-imports=silent", "--ignore-missing-imports", "--python-version=3.11"]
    extensions = mypycify(options + COMPILED, opt_level="3", group_name="collectors.readers")
    for extension in extensions:  # like the flow core: no compiler, no compiled readers (all of them are skipped)
        extension.optional = True
    return extensions


def rust_engines() -> list:
    if os.environ.get("SECOPS_PURE_PYTHON"):
        return []
    try:
        from setuptools_rust import Binding, RustExtension
    except ImportError:  # a bare `setup.py` run without the build requirements: the Python references read
        return []
    # release even for editable installs (setuptools-rust builds those in debug mode: 10x slower)
    return [RustExtension("collectors._rs", path="collectors/rust/Cargo.toml", binding=Binding.PyO3, debug=False,
                          optional=True)]


setup(
    rust_extensions=rust_engines(),
    ext_modules=[
        Extension("collectors._flowcore", ["collectors/_flowcore.c"], extra_compile_args=["-O2", "-std=c11"],
                  optional=True),
        *compiled_readers(),
    ],
)
