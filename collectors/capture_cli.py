"""`secops ingest`, `secops sensor`, `secops pcap`: traffic in, documents out."""

from __future__ import annotations

import contextlib
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer

from secops.cli_support import err_console, fail, progress, settings, writer
from secops.runtime import buffered_stdout


class Output(StrEnum):
    es = "es"
    ndjson = "ndjson"


class FlowEngine(StrEnum):
    auto = "auto"
    native = "native"
    python = "python"


sensor_app = typer.Typer(help="Live capture into a rotating pcap spool, shipped as documents.", no_args_is_help=True)
pcap_app = typer.Typer(help="The capture spool: list chunks, cut a connection's packets out.", no_args_is_help=True)


def ingest(
    pcaps: Annotated[list[Path], typer.Argument(help="pcap / pcapng files, optionally gzip'd")],
    output: Annotated[Output, typer.Option("--output", "-o", help="es: bulk into Elasticsearch; ndjson: stdout")]
    = Output.es,
    deep: Annotated[bool, typer.Option(help="Also extract protocol metadata with tshark")] = True,
    observer: Annotated[str | None, typer.Option(help="observer.name on every document")] = None,
    checksums: Annotated[bool, typer.Option(help="Drop packets with bad TCP/UDP/ICMP checksums (Zeek's default; "
                                                 "off by default because offloading NICs leave them unset)")] = False,
    engine: Annotated[FlowEngine, typer.Option(help="Flow path: native (the C core, ~4x faster), python (the "
                                                    "reference implementation, for cross-checks) or auto (native "
                                                    "when it was built)")] = FlowEngine.auto,
) -> None:
    """Read capture files into secops.conn / protocol / observation documents."""
    from collectors import deep_spares
    from collectors.flowpath import native_available
    from collectors.ingest import DEEP_PROCESS_MIN_BYTES, Pipeline, ndjson_sinks
    from collectors.pcapio import CaptureError

    s = settings()
    for p in pcaps:
        if not p.is_file():
            fail(f"{p}: no such file")
    if not native_available():
        if engine is FlowEngine.native:
            fail("the native flow core is not built (reinstall with gcc present: pip install -e .); "
                 "use --engine python")
        if engine is FlowEngine.auto:
            err_console.print("[yellow]warning:[/] the native flow core is not built; using the python engine "
                              "(about 4x slower). Reinstall with gcc present: pip install -e .", highlight=False)

    def warn(msg: str) -> None:
        err_console.print(f"[yellow]warning:[/] {msg}", highlight=False, soft_wrap=True)

    failed = 0
    engine_used: list[str] = []

    def run(sink: Any, text_sink: Any, ndjson: Any) -> Any:
        nonlocal failed
        pipe = Pipeline(sink, text_sink=text_sink, ndjson=ndjson, observer=observer,
                        max_flows=s.sensor.flow_table_max, deep=deep,
                        tshark_path=s.sensor.tshark_path, on_warning=warn, verify_checksums=checksums,
                        engine=engine.value, deep_bytes_max=s.sensor.deep_bytes_per_direction,
                        deep_process_min_bytes=DEEP_PROCESS_MIN_BYTES)
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
        engine_used.append(pipe.flows.name)
        return pipe.finish()

    try:
        if output is Output.ndjson:
            out = buffered_stdout()
            try:
                stats = run(*ndjson_sinks(out), out.write)
            except BaseException:
                with contextlib.suppress(OSError, ValueError):
                    out.flush()  # the documents made before the failure still reach the output
                raise
            out.flush()
        else:
            with writer(offline=True) as w:
                stats = run(w.add, w.add_text, None)
    finally:
        deep_spares.release()  # analyzer processes started early (secops.cli) that no file took
    err_console.print(f"{stats.files} file(s), {stats.packets} packets, {stats.conns} connections, "
                      f"{stats.deep_docs} protocol documents, {stats.observations} observations, "
                      f"{stats.flows_evicted} flows evicted early (table full), {stats.warnings} warning(s); "
                      f"{engine_used[0]} flow engine",
                      highlight=False)
    if failed:
        raise typer.Exit(2)


def register(app: typer.Typer) -> None:
    """Add the capture commands to the root app."""
    app.command("ingest")(ingest)
    app.add_typer(sensor_app, name="sensor")
    app.add_typer(pcap_app, name="pcap")


@sensor_app.command("run")
def sensor_run(
    interface: Annotated[str | None, typer.Option("--interface", "-i", help="Interface to capture on "
                                                  "(default: sensor.interface)")] = None,
    bpf: Annotated[str | None, typer.Option("--bpf", help="BPF capture filter (default: sensor.bpf)")] = None,
    observer: Annotated[str | None, typer.Option(help="Sensor name (observer.name); default the hostname")] = None,
    workers: Annotated[int | None, typer.Option(min=1, max=16, help="Worker processes, each with its own capture "
                                                "process and a share of the flows (default: sensor.workers, "
                                                "else one per core)")] = None,
    rotate_seconds: Annotated[int | None, typer.Option(min=1, help="Seal a spool chunk every this many seconds "
                                                       "(default: sensor.rotate_seconds, 1). A connection "
                                                       "reaches the output about 5 s (Zeek's close delay) plus "
                                                       "this plus 1 s after its end")] = None,
    rotate_mb: Annotated[int | None, typer.Option(min=1, help="... or when it reaches this size "
                                                  "(default: sensor.rotate_mb)")] = None,
    deep: Annotated[bool, typer.Option(help="Also extract protocol metadata (the deep path)")] = True,
    output: Annotated[Output, typer.Option("--output", "-o", help="es: bulk into Elasticsearch; ndjson: stdout")]
    = Output.es,
    duration: Annotated[float | None, typer.Option(help="Stop after this many seconds (default: until signalled)")]
    = None,
) -> None:
    """Capture live traffic and ship it as documents, using every core.

    Each worker has its own dumpcap (Wireshark's capture process) keeping one share of a symmetric flow hash,
    so one worker sees each connection whole.
    dumpcap only writes its ring of pcap chunks into the spool (paths.pcaps); it never waits for processing.
    Workers process the sealed chunks, catch up in batches when behind, and ship a connection seconds after it ends.
    Every sensor.stats_seconds a secops.sensor document reports packets captured, dropped (kernel, disk budget)
    and processed, the lag behind capture and the backlog.
    Ctrl-C or SIGTERM stops capture and processes the backlog; a second one abandons it (the chunks stay).
    """
    import signal

    from collectors.dumpcap import CaptureStartError
    from collectors.sensor import Sensor

    s = settings()
    iface = interface or s.sensor.interface
    if not iface:
        fail("no interface: pass --interface or set sensor.interface")

    def warn(msg: str) -> None:
        err_console.print(f"[yellow]warning:[/] {msg}", highlight=False, soft_wrap=True)

    def run(out: Any) -> dict:
        sensor = Sensor(s, iface, output=output.value, out=out, bpf=bpf, observer=observer, workers=workers,
                        rotate_seconds=rotate_seconds, rotate_mb=rotate_mb, deep=deep, on_warning=warn)
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: sensor.stop())
        def ready() -> None:
            err_console.print(f"capturing on {iface} with {sensor.workers} worker(s) into {sensor.spool.dir}",
                              highlight=False)
        try:
            return sensor.run(duration, on_ready=ready)
        except CaptureStartError as e:
            fail(str(e))

    if output is Output.es:
        with writer(offline=True) as w:
            counters = run(w)
    else:
        counters = run(None)
    err_console.print(", ".join(f"{k} {v}" for k, v in counters.items()), highlight=False)


def _parse_time(value: str | None) -> int | None:
    from secops.ecs import parse_time

    if value is None:
        return None
    try:
        return int(parse_time(value).timestamp() * 1e9)
    except ValueError:
        fail(f"not a time: {value!r} (use ISO-8601, e.g. 2026-11-23T10:00:00Z)")


@sensor_app.command("pcap-service")
def pcap_service(
    host: Annotated[str, typer.Option(help="Address to listen on (the one the central console reaches)")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535, help="TCP port")] = 8444,
    tls_cert: Annotated[Path | None, typer.Option("--tls-cert", help="PEM certificate (chain)")] = None,
    tls_key: Annotated[Path | None, typer.Option("--tls-key", help="PEM private key")] = None,
) -> None:
    """Serve this sensor's capture spool to a central console (the packets of the connections it asks for, by
    Community ID and time). Callers present sensor.pcap_service_key; the console lists this sensor under
    console.sensors with its URL and that key. Use TLS unless the link is already protected."""
    import uvicorn

    from collectors.pcap_service import create_app

    s = settings()
    if s.sensor.pcap_service_key is None:
        fail("set sensor.pcap_service_key (24 characters or more) first: the console presents it")
    if bool(tls_cert) != bool(tls_key):
        fail("--tls-cert and --tls-key go together")
    for f in (tls_cert, tls_key):
        if f and not f.is_file():
            fail(f"not a file: {f}")
    app = create_app(s.paths.pcaps(), s.sensor.pcap_service_key.get_secret_value())
    scheme = "https" if tls_cert else "http"
    err_console.print(f"pcap service of {s.paths.pcaps()} on {scheme}://{host}:{port}/v1/pcap", highlight=False)
    uvicorn.run(app, host=host, port=port, ssl_certfile=str(tls_cert) if tls_cert else None,
                ssl_keyfile=str(tls_key) if tls_key else None, log_level="info", proxy_headers=False,
                server_header=False)


@pcap_app.command("list")
def pcap_list() -> None:
    """Show the chunks in the capture spool."""
    from collectors.pcap_spool import Spool
    from secops.ecs import iso

    spool = Spool(settings().paths.pcaps())
    chunks = spool.chunks()
    for c in chunks:
        typer.echo(f"{iso(c.start_ns / 1e9)}  {iso(c.mtime_ns / 1e9)}  {c.size:>12}  {c.path}")
    err_console.print(f"{len(chunks)} chunk(s), {sum(c.size for c in chunks)} bytes in {spool.dir}",
                      highlight=False)


@pcap_app.command("extract")
def pcap_extract(
    out: Annotated[Path, typer.Option("--out", "-o", help="Where to write the connection's packets (pcap)")],
    community_id: Annotated[str | None, typer.Option("--community-id", help="Community ID, e.g. 1:abc...=")]
    = None,
    five_tuple: Annotated[str | None, typer.Option("--tuple", help="'PROTO SRC SPORT DST DPORT', either direction")]
    = None,
    start: Annotated[str | None, typer.Option(help="Only packets at/after this time (ISO-8601)")] = None,
    end: Annotated[str | None, typer.Option(help="Only packets at/before this time (ISO-8601)")] = None,
) -> None:
    """Cut one connection's packets out of the capture spool for an analyst."""
    import ipaddress

    from collectors.pcap_spool import Spool

    if bool(community_id) == bool(five_tuple):
        fail("give exactly one of --community-id or --tuple")
    tpl = None
    if five_tuple:
        parts = five_tuple.split()
        try:
            if len(parts) != 5:
                raise ValueError
            proto, src, sport, dst, dport = parts
            ipaddress.ip_address(src)
            ipaddress.ip_address(dst)
            tpl = (proto, src, int(sport), dst, int(dport))
            if not (0 <= tpl[2] <= 65535 and 0 <= tpl[4] <= 65535) or proto.lower() not in (
                    "tcp", "udp", "icmp", "icmp6", "ipv6-icmp", "sctp"):
                raise ValueError
        except ValueError:
            fail(f"bad --tuple {five_tuple!r}: want 'tcp|udp|icmp|icmp6|sctp SRC SPORT DST DPORT'")
    if community_id and not community_id.startswith("1:"):
        fail(f"bad --community-id {community_id!r}: want a v1 id such as 1:LQU9qZlK+B5F3KDmev6m5PMibrg=")
    n = Spool(settings().paths.pcaps()).extract(out, cid=community_id, five_tuple=tpl, start_ns=_parse_time(start),
                                                 end_ns=_parse_time(end))
    if not n:
        fail("no matching packets in the spool")
    err_console.print(f"{n} packets written to {out}", highlight=False)
