"""Every document the pipeline makes of the given captures, as sorted JSON lines on stdout (after a first line
saying whether the readers ran compiled).

    python3 -m tests.support.read_docs [--from-source] CAPTURE ...

``--from-source`` imports the modules setup.py compiles from their Python sources instead (the same code run by the
interpreter): tests/unit/test_compiled.py compares the two outputs.
"""

from __future__ import annotations

import sys


def main(argv: list[str]) -> None:
    if argv and argv[0] == "--from-source":
        from tests.support.compiled import import_from_source

        import_from_source()
        argv = argv[1:]
    from importlib.machinery import ExtensionFileLoader

    import orjson

    import collectors.protocols.dns_wire
    from collectors.ingest import Pipeline

    docs: list[bytes] = []
    warnings: list[str] = []
    pipe = Pipeline(lambda doc: docs.append(orjson.dumps(doc, option=orjson.OPT_SORT_KEYS, default=str)),
                    on_warning=warnings.append)
    for capture in argv:
        pipe.process_file(capture)
    pipe.finish()
    out = sys.stdout.buffer
    out.write(orjson.dumps({"compiled": isinstance(collectors.protocols.dns_wire.__loader__, ExtensionFileLoader)})
              + b"\n")
    for line in sorted(docs):
        out.write(line + b"\n")
    for warning in sorted(warnings):
        out.write(orjson.dumps({"warning": warning}) + b"\n")


if __name__ == "__main__":
    main(sys.argv[1:])
