"""The ``edgetwin`` command line: run, check-config, schema, status, buffer, probe, train."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import socket
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import structlog

from edgetwin import __version__
from edgetwin.config import InvalidConfig, gateway_model, load_config
from edgetwin.core.errors import ConfigError, SourceUnavailable, StoreError
from edgetwin.daemon.allocator import (
    MMAP_THRESHOLD_BYTES,
    fix_mmap_threshold,
    freeze_startup_objects,
)
from edgetwin.daemon.app import RUN_FILE, Daemon
from edgetwin.daemon.status_table import render_status
from edgetwin.outbox.durable import DB_FILE
from edgetwin.sources import source_configs
from edgetwin.telemetry import configure_logging, fetch_json

EX_OK = 0
EX_INVALID = 2  # check-config: the file has problems
EX_DATAERR = 65  # audit verify: the hash chain is broken
EX_UNAVAILABLE = 69  # status: no daemon answers
EX_CANTCREAT = 73  # run: the state directory cannot be opened
EX_CONFIG = 78  # run: invalid config; the unit's RestartPreventExitStatus=78 stops a loop
DEFAULT_CONFIG = Path("/etc/edgetwin/gateway.yaml")

log = structlog.get_logger("edgetwin.cli")


def _print_problems(err: InvalidConfig) -> None:
    for problem in err.problems:
        print(problem, file=sys.stderr)
    print(f"{len(err.problems)} problem(s) found", file=sys.stderr)


def cmd_check_config(args: argparse.Namespace) -> int:
    """Validate a file; exit 0, or 2 with every problem as FILE:LINE:COL: key.path: message."""
    try:
        config = load_config(args.config, source_configs())
    except InvalidConfig as err:
        _print_problems(err)
        return EX_INVALID
    points = sum(len(s.points) for s in config.sources)
    print(f"{args.config}: OK ({len(config.sources)} sources, {points} points)")
    return EX_OK


def cmd_schema(_args: argparse.Namespace) -> int:
    """Print the JSON Schema of the configuration."""
    schema = gateway_model(source_configs()).model_json_schema(by_alias=True)
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "edgetwin gateway configuration"
    print(json.dumps(schema, indent=2))
    return EX_OK


def cmd_run(args: argparse.Namespace) -> int:
    """Run the daemon in the foreground until SIGTERM/SIGINT."""
    try:
        config = load_config(args.config, source_configs())
    except InvalidConfig as err:
        _print_problems(err)
        return EX_CONFIG
    configure_logging(config.gateway.log_format.value, args.log_level)
    if fix_mmap_threshold():
        log.debug("Heap mmap threshold fixed", bytes=MMAP_THRESHOLD_BYTES)

    async def main() -> int:
        daemon = Daemon(args.config.resolve(), config)
        log.debug("Start-up objects frozen", objects=freeze_startup_objects())
        return await daemon.run()

    try:
        return asyncio.run(main())
    except StoreError as err:
        log.error("Cannot open the state directory", error=str(err))
        return EX_CANTCREAT
    except ConfigError as err:  # found only when building: a model file, a vibration plan
        log.error("Configuration cannot be used", error=str(err))
        return EX_CONFIG
    except KeyboardInterrupt:
        return EX_OK


def _daemon_address(config_path: Path) -> tuple[str, int]:
    try:
        config = load_config(config_path, source_configs())
    except InvalidConfig as err:
        _print_problems(err)
        raise SystemExit(EX_INVALID) from None
    run_file = config.gateway.state_dir / RUN_FILE
    try:
        address = json.loads(run_file.read_text())["http"]
    except (OSError, ValueError, KeyError):
        address = config.health.metrics.listen
    if not address:
        print("edgetwin status: health.metrics.listen is off; the daemon cannot be asked",
              file=sys.stderr)
        raise SystemExit(EX_UNAVAILABLE)
    host, _, port = str(address).rpartition(":")
    return host.strip("[]"), int(port)


def cmd_status(args: argparse.Namespace) -> int:
    """Show the state of the running daemon."""
    host, port = _daemon_address(args.config)
    try:
        status: dict[str, Any] = fetch_json(host, port, "/status")
    except (OSError, ValueError) as err:
        print(f"edgetwin status: no daemon answers on {host}:{port} ({err})", file=sys.stderr)
        return EX_UNAVAILABLE
    if args.json:
        print(json.dumps(status, indent=2))
    else:
        print(render_status(status))
    return EX_OK


def _outbox_path(config_path: Path) -> Path:
    try:
        config = load_config(config_path, source_configs())
    except InvalidConfig as err:
        _print_problems(err)
        raise SystemExit(EX_INVALID) from None
    return config.gateway.state_dir / DB_FILE


def _state_dir(config_path: Path) -> Path:
    try:
        return load_config(config_path, source_configs()).gateway.state_dir
    except InvalidConfig as err:
        _print_problems(err)
        raise SystemExit(EX_INVALID) from None


def cmd_readonly(args: argparse.Namespace) -> int:
    """Turn the local read-only switch on or off; a running daemon takes it at once."""
    import os
    import signal

    from edgetwin.safety import write_readonly

    state_dir = _state_dir(args.config)
    on = args.state == "on"
    user = os.environ.get("SUDO_USER") or os.environ.get("USER") or f"uid {os.getuid()}"
    try:
        write_readonly(state_dir, on, f"edgetwin readonly {args.state} ({user})")
    except OSError as err:
        print(f"edgetwin readonly: cannot store the switch in {state_dir}: {err}",
              file=sys.stderr)
        return EX_CANTCREAT
    try:
        pid = int(json.loads((state_dir / RUN_FILE).read_text())["pid"])
        os.kill(pid, signal.SIGUSR1)
        where = f"the running gateway (pid {pid}) took it"
    except (OSError, ValueError, KeyError):
        where = "no gateway is running; it applies at the next start"
    print(f"read-only {'ON: every command is denied' if on else 'off'}; {where}")
    return EX_OK


def cmd_audit_tail(args: argparse.Namespace) -> int:
    """The last entries of the command audit log (and new ones with --follow)."""
    from edgetwin.safety import audit_dir, follow, read_tail, render

    folder = audit_dir(_state_dir(args.config))
    for entry in read_tail(folder, args.lines):
        print(json.dumps(entry) if args.json else render(entry))
    if args.follow:
        try:
            for entry in follow(folder):
                print(json.dumps(entry) if args.json else render(entry), flush=True)
        except KeyboardInterrupt:
            return EX_OK
    return EX_OK


def cmd_audit_verify(args: argparse.Namespace) -> int:
    """Check the audit log's hash chain: every line kept chains to the one before it."""
    from edgetwin.safety import audit_dir, verify_chain
    from edgetwin.safety.audit import chain_summary

    folder = audit_dir(_state_dir(args.config))
    breaks = verify_chain(folder)
    summary = chain_summary(folder)
    for problem in breaks:
        print(f"BROKEN {problem}")
    if breaks:
        print(f"audit log {folder}: {len(breaks)} break(s) in the chain over {summary}")
        return EX_DATAERR
    print(f"audit log {folder}: the chain is whole over {summary}")
    return EX_OK


def cmd_buffer_inspect(args: argparse.Namespace) -> int:
    """Depth, bytes, oldest age and the same per asset, from the outbox file."""
    from edgetwin.outbox.inspect import render_summary, summary

    try:
        doc = summary(_outbox_path(args.config))
    except StoreError as err:
        print(f"edgetwin buffer: {err}", file=sys.stderr)
        return EX_UNAVAILABLE
    print(json.dumps(doc, indent=2) if args.json else render_summary(doc))
    return EX_OK


def cmd_buffer_export(args: argparse.Namespace) -> int:
    """Every queued entry as JSON lines on stdout."""
    from edgetwin.outbox.inspect import export

    try:
        for line in export(_outbox_path(args.config)):
            print(line)
    except StoreError as err:
        print(f"edgetwin buffer: {err}", file=sys.stderr)
        return EX_UNAVAILABLE
    return EX_OK


def cmd_probe_modbus(args: argparse.Namespace) -> int:
    """Read registers from a device and print them in every type and byte order."""
    from edgetwin.sources.modbus.probe import decode_all, read_registers, render

    try:
        words = asyncio.run(read_registers(args.host, args.port, args.unit, args.address,
                                           args.count, kind=args.kind, timeout_s=args.timeout))
    except SourceUnavailable as err:
        print(f"edgetwin probe: {err}", file=sys.stderr)
        return EX_UNAVAILABLE
    rows = decode_all(args.address, words)
    print(json.dumps(rows, indent=2) if args.json else render(rows))
    return EX_OK


def cmd_probe_opcua(args: argparse.Namespace) -> int:
    """Browse an OPC UA server's nodes, with types, values and write access."""
    from edgetwin.sources.opcua.probe import browse, render

    try:
        nodes = asyncio.run(browse(args.endpoint, args.node, args.depth, args.timeout))
    except SourceUnavailable as err:
        print(f"edgetwin probe: {err}", file=sys.stderr)
        return EX_UNAVAILABLE
    if args.json:
        print(json.dumps([dataclasses.asdict(n) for n in nodes], indent=2, default=str))
    else:
        print(render(nodes))
    return EX_OK


def cmd_opcua_cert(args: argparse.Namespace) -> int:
    """Make the gateway's OPC UA certificate and key, and print how to configure them."""
    from edgetwin.sources.opcua.certs import default_uri, make_certificate

    uri = args.uri or default_uri()
    try:
        cert, key = asyncio.run(make_certificate(args.out, uri, args.host, force=args.force))
    except (FileExistsError, OSError) as err:
        print(f"edgetwin opcua-cert: {err}", file=sys.stderr)
        return EX_CANTCREAT
    print(f"certificate: {cert}\nprivate key: {key} (mode 0600)\napplication URI: {uri}\n")
    print("Trust the certificate on the OPC UA server, then in the source's config:")
    print(f"    security: {{policy: Basic256Sha256, mode: SignAndEncrypt,\n"
          f"                certificate: {cert}, private_key: {key}}}")
    return EX_OK


def cmd_train(args: argparse.Namespace) -> int:
    """Fit an anomaly model on healthy features; write NAME.onnx and NAME.manifest.json."""
    from edgetwin.analytics.train import TrainingError, TrainOptions, train

    options = TrainOptions(
        inputs=tuple(p.strip() for p in args.inputs.split(",") if p.strip()),
        out=args.out, csv=args.csv, export=args.export, kind=args.kind,
        false_alarm_rate=args.false_alarm_rate, margin=args.margin, tail=args.tail,
        trees=args.trees, seed=args.seed, raise_after=args.raise_after,
        clear_after=args.clear_after,
    )
    try:
        report = train(options)
    except TrainingError as err:
        print(f"edgetwin train: {err}", file=sys.stderr)
        return err.exit_code
    print(report.render())
    return EX_OK


def cmd_keygen(args: argparse.Namespace) -> int:
    """Make an Ed25519 key pair for signing commands: NAME.key (0600) and NAME.pub."""
    from edgetwin.safety.signing import generate_keypair

    try:
        pair = generate_keypair(args.out, args.name, force=args.force)
    except OSError as err:
        print(f"edgetwin keygen: {err}", file=sys.stderr)
        return EX_CANTCREAT
    print(f"private key: {pair.private} (mode 0600; keep it with the signer)\n"
          f"public key:  {pair.public}\n\nOn the gateway, in the config:\n"
          f"    commands:\n      keys: {{{args.name}: /etc/edgetwin/keys/{pair.public.name}}}")
    return EX_OK


def _command_value(text: str) -> bool | int | float | str:
    """--value as JSON (true, 1450, 1450.0, "auto"); anything that is not JSON is a string."""
    try:
        value = json.loads(text)
    except ValueError:
        return text
    if not isinstance(value, bool | int | float | str):
        raise ValueError(f"--value {text!r}: a value is a boolean, a number or a string")
    return value


def cmd_sign(args: argparse.Namespace) -> int:
    """Print a signed cmd (or desired) payload, ready to publish."""
    from edgetwin.safety.signing import (
        load_private_key,
        signed_cmd_payload,
        signed_desired_payload,
    )

    try:
        key = load_private_key(args.key)
        value = _command_value(args.value)
    except ValueError as err:
        print(f"edgetwin sign: {err}", file=sys.stderr)
        return EX_INVALID
    if args.desired and (args.op != "operate" or args.token is not None):
        print("edgetwin sign: a desired value is a plain operate: no --op select, no --token",
              file=sys.stderr)
        return EX_INVALID
    if args.desired:
        payload = signed_desired_payload(key, args.key_id, args.point, value, ttl_s=args.ttl,
                                         command_id=args.id)
    else:
        payload = signed_cmd_payload(key, args.key_id, args.point, value, op=args.op,
                                     token=args.token, ttl_s=args.ttl, command_id=args.id)
    print(json.dumps(payload, separators=(",", ":")))
    return EX_OK


def build_parser() -> argparse.ArgumentParser:
    """The argument parser, separate so tests and docs can inspect it."""
    parser = argparse.ArgumentParser(
        prog="edgetwin", description="Edge gateway daemon: devices -> live twin -> MQTT."
    )
    parser.add_argument("--version", action="version", version=f"edgetwin {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run the daemon in the foreground (systemd runs this)")
    run.add_argument("-c", "--config", type=Path, required=True)
    run.add_argument("--log-level", default="info",
                     choices=["debug", "info", "warning", "error"])
    run.set_defaults(func=cmd_run)

    check = sub.add_parser("check-config", help="validate a configuration file")
    check.add_argument("config", type=Path)
    check.set_defaults(func=cmd_check_config)

    schema = sub.add_parser("schema", help="print the JSON Schema of the configuration")
    schema.set_defaults(func=cmd_schema)

    status = sub.add_parser("status", help="state of the running daemon")
    status.add_argument("-c", "--config", type=Path, default=DEFAULT_CONFIG)
    status.add_argument("--json", action="store_true", help="machine-readable output")
    status.set_defaults(func=cmd_status)

    readonly = sub.add_parser("readonly", help="the local emergency read-only switch")
    readonly.add_argument("state", choices=["on", "off"])
    readonly.add_argument("-c", "--config", type=Path, default=DEFAULT_CONFIG)
    readonly.set_defaults(func=cmd_readonly)

    audit = sub.add_parser("audit", help="the command audit log")
    audits = audit.add_subparsers(dest="action", required=True)
    tail = audits.add_parser("tail", help="the last entries (every command and its verdict)")
    tail.add_argument("-c", "--config", type=Path, default=DEFAULT_CONFIG)
    tail.add_argument("-n", "--lines", type=int, default=20)
    tail.add_argument("-f", "--follow", action="store_true", help="keep printing new entries")
    tail.add_argument("--json", action="store_true")
    tail.set_defaults(func=cmd_audit_tail)
    verify = audits.add_parser(
        "verify", help="check the hash chain (exit 65 when a line was edited or removed)")
    verify.add_argument("-c", "--config", type=Path, default=DEFAULT_CONFIG)
    verify.set_defaults(func=cmd_audit_verify)

    buffer = sub.add_parser("buffer", help="look into the store-and-forward queue")
    buffers = buffer.add_subparsers(dest="action", required=True)
    inspect = buffers.add_parser("inspect", help="depth, bytes, oldest age, per asset")
    inspect.add_argument("-c", "--config", type=Path, default=DEFAULT_CONFIG)
    inspect.add_argument("--json", action="store_true", help="machine-readable output")
    inspect.set_defaults(func=cmd_buffer_inspect)
    export = buffers.add_parser("export", help="every queued entry as JSON lines")
    export.add_argument("-c", "--config", type=Path, default=DEFAULT_CONFIG)
    export.set_defaults(func=cmd_buffer_export)

    probe = sub.add_parser("probe", help="look at a device to find its register layout")
    probes = probe.add_subparsers(dest="protocol", required=True)
    modbus = probes.add_parser("modbus", help="registers in every type and byte order")
    modbus.add_argument("--host", required=True)
    modbus.add_argument("--port", type=int, default=502)
    modbus.add_argument("--unit", type=int, default=1)
    modbus.add_argument("--address", type=int, required=True, help="0-based (40001 is 0)")
    modbus.add_argument("--count", type=int, default=8)
    modbus.add_argument("--kind", choices=["holding", "input"], default="holding")
    modbus.add_argument("--timeout", type=float, default=2.0)
    modbus.add_argument("--json", action="store_true")
    modbus.set_defaults(func=cmd_probe_modbus)
    opcua = probes.add_parser("opcua", help="browse the node tree of an OPC UA server")
    opcua.add_argument("endpoint", help="opc.tcp://host:port/path")
    opcua.add_argument("--node", help="start here instead of Objects, e.g. ns=2;s=PumpSkid")
    opcua.add_argument("--depth", type=int, default=4)
    opcua.add_argument("--timeout", type=float, default=5.0)
    opcua.add_argument("--json", action="store_true")
    opcua.set_defaults(func=cmd_probe_opcua)

    train = sub.add_parser("train", help="fit an anomaly model on healthy features (ONNX)")
    data = train.add_mutually_exclusive_group(required=True)
    data.add_argument("--csv", type=Path, help="one column per input point id ('-': stdin)")
    data.add_argument("--export", type=Path, help="`edgetwin buffer export` lines ('-': stdin)")
    train.add_argument("--inputs", required=True, help="input point ids in model order, a,b,c")
    train.add_argument("--kind", choices=["robust", "iforest"], default="robust")
    train.add_argument("--false-alarm-rate", type=float, default=0.001,
                       help="share of healthy scores above the threshold (before --margin)")
    train.add_argument("--margin", type=float,
                       help="threshold multiplier, >= 1 (default 1.1 robust, 1.0 iforest)")
    train.add_argument("--tail", choices=["both", "upper"], default="both",
                       help="robust: count deviations both ways, or only increases")
    train.add_argument("--trees", type=int, default=100, help="iforest: number of trees")
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--raise-after", type=int, default=3, help="suggested hysteresis")
    train.add_argument("--clear-after", type=int, default=5, help="suggested hysteresis")
    train.add_argument("--out", type=Path, required=True, help="NAME.onnx to write")
    train.set_defaults(func=cmd_train)

    cert = sub.add_parser("opcua-cert", help="make the gateway's OPC UA certificate and key")
    cert.add_argument("--out", type=Path, default=Path("/etc/edgetwin/opcua"))
    cert.add_argument("--uri", help="application URI (default urn:edgetwin:<hostname>)")
    cert.add_argument("--host", default=socket.gethostname(), help="DNS name in the cert")
    cert.add_argument("--force", action="store_true", help="replace existing files")
    cert.set_defaults(func=cmd_opcua_cert)

    keygen = sub.add_parser("keygen", help="make an Ed25519 key pair for signing commands")
    keygen.add_argument("--out", type=Path, required=True, help="folder for NAME.key, NAME.pub")
    keygen.add_argument("--name", required=True, help="the key's name (commands.keys)")
    keygen.add_argument("--force", action="store_true", help="replace existing files")
    keygen.set_defaults(func=cmd_keygen)

    sign = sub.add_parser("sign", help="print a signed command payload to publish")
    sign.add_argument("--key", type=Path, required=True, help="the private key (PEM)")
    sign.add_argument("--key-id", required=True, help="its name in commands.keys")
    sign.add_argument("--point", required=True, help="<asset>/<point>")
    sign.add_argument("--value", required=True,
                      help='JSON value: true, 1450, 1450.0, "auto" (other text is a string)')
    sign.add_argument("--op", choices=["operate", "select"], default="operate")
    sign.add_argument("--token", help="the select token an operate refers to")
    sign.add_argument("--ttl", type=float, default=30.0, help="seconds until it expires")
    sign.add_argument("--id", help="command id (default: 32 random hex digits)")
    sign.add_argument("--desired", action="store_true",
                      help="a payload for <asset>/desired instead of cmd")
    sign.set_defaults(func=cmd_sign)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``edgetwin`` command."""
    args = build_parser().parse_args(argv)
    try:
        result: int = args.func(args)
    except BrokenPipeError:  # `edgetwin schema | head`: the reader left, which is fine
        sys.stderr.close()
        return EX_OK
    return result


if __name__ == "__main__":
    sys.exit(main())
