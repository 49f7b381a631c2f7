"""``plcsim``: serve a simulated pump skid on real protocols, and steer it while it runs.

Faces (each prints ONE JSON line on stdout once it serves, then runs until SIGTERM/SIGINT):

    plcsim modbus --port 5020            Modbus TCP (units 1 and 2)
    plcsim rtu                           Modbus RTU on a pty it creates; prints the device
    plcsim opcua --port 4840             OPC UA server (security None, anonymous)
    plcsim opcua --security Basic256Sha256 --trust gw.der --users-file users.txt
                                         ... secured: signed/encrypted, trusted clients, login
    plcsim line                          an ASCII weighing scale on a pty
    plcsim serve --modbus 5020 --opcua 4840 --rtu --line    several faces, one plant

Every face also serves the control API (``"control"`` in the line). Steering:

    plcsim fault add dropout --target modbus_tcp --duration 5 --control URL
    plcsim fault add bearing --target vib_de --param mode=outer --param severity=0.6
    plcsim fault list | plcsim fault clear [ID] | plcsim writes | plcsim state
    plcsim served [--name counter]       the counter values the faces handed out

``--control`` defaults to $PLCSIM_CONTROL.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import signal
import sys
import urllib.parse
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from plcsim.sim import DEFAULT_TICK_S, Face, Sim

if TYPE_CHECKING:
    from plcsim.opcua_security import ServerSecurity

EX_USAGE = 64
EX_UNAVAILABLE = 69  # sysexits.h: a port cannot be bound, or no simulator answers


def _unit_ids(text: str) -> tuple[int, ...]:
    units = tuple(int(u) for u in text.split(","))
    if any(not 0 <= u <= 255 for u in units):
        raise argparse.ArgumentTypeError(f"{text}: unit ids are 0..255")
    return units


def _add_sim_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    parser.add_argument("--seed", type=int, default=None, help="noise seed, for repeatable runs")
    parser.add_argument("--speedup", type=float, default=1.0,
                        help="plant time per real second (default 1: real time)")
    parser.add_argument("--tick", type=float, default=DEFAULT_TICK_S,
                        help=f"plant tick in real seconds (default {DEFAULT_TICK_S})")
    parser.add_argument("--control-port", type=int, default=0,
                        help="port of the control API (default: a free one)")
    parser.add_argument("--scenario", type=Path, help="a scenario file to play from the start")
    parser.add_argument("--units", type=_unit_ids, default=(1, 2),
                        help="Modbus unit ids to answer, comma separated (default 1,2)")


def _add_opcua_security_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("OPC UA security (default: security None, anonymous)")
    group.add_argument("--security", action="append", default=[],
                       metavar="SPEC",
                       help="offer an endpoint: None, POLICY (Sign and SignAndEncrypt) or "
                            "POLICY:MODE; POLICY is Basic256Sha256, Aes128_Sha256_RsaOaep or "
                            "Aes256_Sha256_RsaPss; repeat for more")
    group.add_argument("--certificate", type=Path,
                       help="server certificate, DER or PEM (default: a fresh self-signed one)")
    group.add_argument("--private-key", type=Path, help="its unencrypted key, PEM or DER")
    group.add_argument("--trust", type=Path, action="append", default=[], metavar="PATH",
                       help="let in only clients with this certificate (a file, or a "
                            "directory of .der/.pem files); repeatable")
    group.add_argument("--user", action="append", default=[],
                       metavar="NAME:PASSWORD",
                       help="require a username login; repeatable (anonymous is refused)")
    group.add_argument("--users-file", type=Path, action="append", default=[],
                       metavar="FILE", help="NAME:PASSWORD per line, as --user")


def _opcua_security(args: argparse.Namespace) -> ServerSecurity:
    """The ServerSecurity of the command line.

    Raises:
        ValueError: it does not hold together, or a users file cannot be read.
    """
    from plcsim.opcua_security import NONE, ServerSecurity, parse_security, parse_users

    specs = [parse_security(spec) for spec in args.security]
    endpoints = tuple(dict.fromkeys(e for spec in specs for e in spec)) or (NONE,)
    logins = [parse_users(user, "--user") for user in args.user]
    for path in args.users_file:
        try:
            logins.append(parse_users(path.read_text(encoding="utf-8"), str(path)))
        except (OSError, UnicodeDecodeError) as err:
            raise ValueError(f"--users-file: {err}") from None
    users: dict[str, str] = {}
    for more in logins:
        twice = users.keys() & more.keys()
        if twice:
            raise ValueError(f"user {sorted(twice)[0]!r} given twice")
        users.update(more)
    return ServerSecurity(endpoints, args.certificate, args.private_key, tuple(args.trust), users)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="plcsim", description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog="\n".join(__doc__.splitlines()[2:]))
    commands = parser.add_subparsers(dest="command", required=True)

    modbus = commands.add_parser("modbus", help="Modbus TCP face")
    modbus.add_argument("--port", type=int, default=5020, help="TCP port; 0 picks a free one")
    modbus.add_argument("--unit", type=int, default=None,
                        help="answer this one unit id only (0: every unit id)")
    rtu = commands.add_parser("rtu", help="Modbus RTU face on a pty")
    rtu.add_argument("--baudrate", type=int, default=19200)
    # N by default: Linux ptys refuse even parity when pyserial asks for it.
    rtu.add_argument("--parity", choices=["N", "E", "O"], default="N")
    rtu.add_argument("--pace", action="store_true",
                     help="deliver bytes at the baud rate, as a real line would")
    opcua = commands.add_parser("opcua", help="OPC UA face")
    opcua.add_argument("--port", type=int, default=4840, help="TCP port; 0 picks a free one")
    line = commands.add_parser("line", help="ASCII weighing scale on a pty")
    line.add_argument("--rate", type=float, default=2.0, help="records per second")
    serve = commands.add_parser("serve", help="several faces of one plant")
    serve.add_argument("--modbus", type=int, metavar="PORT", help="Modbus TCP on PORT")
    serve.add_argument("--opcua", type=int, metavar="PORT", help="OPC UA on PORT")
    serve.add_argument("--rtu", action="store_true", help="Modbus RTU on a pty")
    serve.add_argument("--line", action="store_true", help="the weighing scale on a pty")
    serve.add_argument("--baudrate", type=int, default=19200)
    serve.add_argument("--parity", choices=["N", "E", "O"], default="N")
    serve.add_argument("--rate", type=float, default=2.0)
    serve.add_argument("--pace", action="store_true",
                       help="RTU: deliver bytes at the baud rate, as a real line would")
    for face in (opcua, serve):
        _add_opcua_security_options(face)
    for face in (modbus, rtu, opcua, line, serve):
        _add_sim_options(face)

    control = argparse.ArgumentParser(add_help=False)
    control.add_argument("--control", default=os.environ.get("PLCSIM_CONTROL"),
                         help="control API URL (default $PLCSIM_CONTROL)")
    fault = commands.add_parser("fault", help="inject or clear faults")
    fault_cmds = fault.add_subparsers(dest="action", required=True)
    add = fault_cmds.add_parser("add", parents=[control], help="start a fault")
    add.add_argument("kind")
    add.add_argument("--target", default="*")
    add.add_argument("--duration", type=float, default=None, help="seconds of plant time")
    add.add_argument("--param", action="append", default=[], metavar="KEY=VALUE")
    fault_cmds.add_parser("list", parents=[control], help="active faults")
    clear = fault_cmds.add_parser("clear", parents=[control], help="end one fault, or all")
    clear.add_argument("id", nargs="?", type=int)
    writes = commands.add_parser("writes", parents=[control], help="the write log")
    writes.add_argument("--face")
    writes.add_argument("--name")
    served = commands.add_parser("served", parents=[control],
                                 help="the counter values served to clients, as runs")
    served.add_argument("--name", help="only this signal (default: every one recorded)")
    commands.add_parser("state", parents=[control], help="the true plant state")
    scenario = commands.add_parser("scenario", parents=[control], help="play a scenario file")
    scenario.add_argument("file", type=Path)
    return parser


def _faces(args: argparse.Namespace, sim: Sim) -> list[Face]:
    """The faces the command asks for (imported lazily: asyncua takes a second to import)."""
    wanted: list[Face] = []
    command = args.command
    units = args.units if getattr(args, "unit", None) is None else (args.unit,)
    if command == "modbus" or (command == "serve" and args.modbus is not None):
        from plcsim.modbus_tcp import ModbusTcpFace

        port = args.port if command == "modbus" else args.modbus
        wanted.append(ModbusTcpFace(sim, host=args.host, port=port, unit_ids=units))
    if command == "rtu" or (command == "serve" and args.rtu):
        from plcsim.modbus_rtu import ModbusRtuFace

        wanted.append(ModbusRtuFace(sim, unit_ids=units, baudrate=args.baudrate,
                                    parity=args.parity, pace=args.pace))
    if command == "opcua" or (command == "serve" and args.opcua is not None):
        from plcsim.opcua_face import OpcuaFace

        port = args.port if command == "opcua" else args.opcua
        wanted.append(OpcuaFace(sim, host=args.host, port=port, security=_opcua_security(args)))
    if command == "line" or (command == "serve" and args.line):
        from plcsim.line_device import LineDevice

        wanted.append(LineDevice(sim, rate_hz=args.rate))
    return wanted


async def _serve(args: argparse.Namespace) -> int:
    from plcsim.control import ControlServer
    from plcsim.scenario import Scenario, ScenarioError

    sim = Sim(args.seed, speedup=args.speedup, tick_s=args.tick)
    try:
        faces = _faces(args, sim)
    except ValueError as err:  # a face refusing its settings (unit ids, line settings)
        print(f"plcsim {args.command}: {err}", file=sys.stderr)
        return EX_USAGE
    if not faces:
        print("plcsim serve: name at least one face (--modbus, --opcua, --rtu, --line)",
              file=sys.stderr)
        return EX_USAGE
    scenario = None
    if args.scenario is not None:
        try:
            scenario = Scenario.load(args.scenario)
        except ScenarioError as err:
            print(f"plcsim: {err}", file=sys.stderr)
            return EX_USAGE
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    control = ControlServer(sim, args.host, args.control_port)
    started: list[Face] = []
    ticker = loop.create_task(sim.run(), name="plcsim.tick")
    try:
        listening: list[dict[str, Any]] = []
        for face in faces:
            try:
                listening.append(await face.start())
            except OSError as err:
                print(f"plcsim {face.name}: {err}", file=sys.stderr)
                return EX_UNAVAILABLE
            except ValueError as err:  # a file that holds no certificate or key
                print(f"plcsim {face.name}: {err}", file=sys.stderr)
                return EX_USAGE
            started.append(face)
        url = await control.start()
        if scenario is not None:
            control.run_scenario(scenario)
        line: dict[str, Any] = {"event": "listening"}
        if args.command == "serve":
            line["faces"] = listening
        else:
            line.update(listening[0])
        line["control"] = url
        print(json.dumps(line), flush=True)  # the one stdout line fixtures wait for
        await stop.wait()
    finally:
        ticker.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await ticker
        await control.stop()
        for face in reversed(started):
            await face.stop()
    return 0


def _steer(args: argparse.Namespace) -> int:
    from plcsim.control import ControlError, call
    from plcsim.scenario import Scenario, ScenarioError

    if not args.control:
        print("plcsim: give --control URL (or set PLCSIM_CONTROL)", file=sys.stderr)
        return EX_USAGE
    try:
        if args.command == "fault" and args.action == "add":
            params: dict[str, Any] = {}
            for item in args.param:
                key, sep, raw = item.partition("=")
                if not sep:
                    print(f"plcsim: --param {item!r} is not KEY=VALUE", file=sys.stderr)
                    return EX_USAGE
                try:
                    params[key] = json.loads(raw)
                except ValueError:
                    params[key] = raw  # plain strings need no quotes: mode=outer
            result = call(args.control, "POST", "/faults", {
                "kind": args.kind, "target": args.target, "duration_s": args.duration,
                "params": params})
        elif args.command == "fault" and args.action == "list":
            result = call(args.control, "GET", "/faults")
        elif args.command == "fault":
            path = "/faults" if args.id is None else f"/faults/{args.id}"
            result = call(args.control, "DELETE", path)
        elif args.command == "writes":
            query = "&".join(f"{k}={v}" for k, v in (("face", args.face), ("name", args.name)) if v)
            result = call(args.control, "GET", "/writes" + (f"?{query}" if query else ""))
        elif args.command == "served":
            query = "" if args.name is None else "?" + urllib.parse.urlencode({"name": args.name})
            result = call(args.control, "GET", "/served" + query)
        elif args.command == "state":
            result = call(args.control, "GET", "/state")
        else:
            try:
                scenario = Scenario.load(args.file)
            except ScenarioError as err:
                print(f"plcsim: {err}", file=sys.stderr)
                return EX_USAGE
            del scenario  # validated locally so the error names the file
            import yaml

            result = call(args.control, "POST", "/scenario",
                          yaml.safe_load(args.file.read_text(encoding="utf-8")))
    except ControlError as err:
        print(f"plcsim: {err}", file=sys.stderr)
        return EX_USAGE if err.status < 500 else EX_UNAVAILABLE
    except OSError as err:
        print(f"plcsim: no simulator answers at {args.control}: {err}", file=sys.stderr)
        return EX_UNAVAILABLE
    print(json.dumps(result, indent=2))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``plcsim`` command; returns the exit status."""
    args = _parser().parse_args(argv)
    logging.basicConfig(stream=sys.stderr, level=logging.WARNING)
    if args.command in ("modbus", "rtu", "opcua", "line", "serve"):
        return asyncio.run(_serve(args))
    return _steer(args)


if __name__ == "__main__":
    sys.exit(main())
