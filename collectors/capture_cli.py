"""`secops ingest`, `secops sensor`, `secops pcap`: traffic in, documents out."""

from __future__ import annotations

import sys
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import orjson
import typer

from secops.cli_support import err_console, fail, progress, settings, writer


class Output(StrEnum):
    es = "es"
    ndjson = "ndjson"


sensor_app = typer.Typer(help="Live capture into a rotating pcap spool, shipped as documents.", no_args_is_help=True)
pcap_app = typer.Typer(help="The capture spool: list chunks, cut a connection's packets out.", no_args_is_help=True)


def _ndjson_sink() -> Any:
    out = sys.stdout.buffer
    dumps = orjson.dumps

    def sink(doc: dict) -> None:
        out.write(dumps(doc, default=str))
        out.write(b"\n")
    return sink


def ingest(
    pcaps: Annotated[list[Path], typer.Argument(help="pcap / pcapng files, optionally gzip'd")],
    output: Annotated[Output, typer.Option("--output", "-o", help="es: bulk into Elasticsearch; ndjson: stdout")]
    = Output.es,
    deep: Annotated[bool, typer.Option(help="Also extract protocol metadata with tshark")] = True,
    observer: Annotated[str | None, typer.Option(help="observer.name on every document")] = None,
    checksums: Annotated[bool, typer.Option(help="Drop packets with bad TCP/UDP/ICMP checksums (Zeek's default; "
                                                 "off by default because offloading NICs leave them unset)")] = False,
) -> None:
    """Read capture files into secops.conn / protocol / observation documents."""
    from collectors.ingest import Pipeline
    from collectors.pcapio import CaptureError

    s = settings()
    for p in pcaps:
        if not p.is_file():
            fail(f"{p}: no such file")

    def warn(msg: str) -> None:
        err_console.print(f"[yellow]warning:[/] {msg}", highlight=False, soft_wrap=True)

    failed = 0

    def run(sink: Any) -> Any:
        nonlocal failed
        pipe = Pipeline(sink, observer=observer, max_flows=s.sensor.flow_table_max, deep=deep,
                        tshark_path=s.sensor.tshark_path, on_warning=warn, verify_checksums=checksums)
        with progress(transient=True) as bar:
            for p in pcaps:
                task = bar.add_task(p.name, total=None)
                pipe.on_packets = lambda n, task=task: bar.update(task, completed=n)
                try:
                    pipe.process_file(p)
                except CaptureError as e:
                    failed += 1
                    err_console.print(f"[red]error:[/] {e}", highlight=False, soft_wrap=True)
                bar.remove_task(task)
        return pipe.finish()

    if output is Output.ndjson:
        stats = run(_ndjson_sink())
        sys.stdout.flush()
    else:
        with writer() as w:
            stats = run(w.add)
    err_console.print(f"{stats.files} file(s), {stats.packets} packets, {stats.conns} connections, "
                      f"{stats.deep_docs} protocol documents, {stats.observations} observations, "
                      f"{stats.warnings} warning(s)", highlight=False)
    if failed:
        raise typer.Exit(2)


def register(app: typer.Typer) -> None:
    """Add the capture commands to the root app."""
    app.command("ingest")(ingest)
    app.add_typer(sensor_app, name="sensor")
    app.add_typer(pcap_app, name="pcap")
