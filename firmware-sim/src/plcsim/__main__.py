"""``plcsim`` command line: ``plcsim modbus --host 127.0.0.1 --port 5020 [--unit 1]``.

Prints exactly one JSON line on stdout once it listens, e.g.
``{"event": "listening", "protocol": "modbus", "host": "127.0.0.1", "port": 5020}``,
then serves until SIGTERM or SIGINT and exits 0. Logs go to stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import signal
import sys
from collections.abc import Sequence

from plcsim.modbus_server import DEFAULT_TICK_S, ModbusSkidServer
from plcsim.plant import PumpSkid

EX_UNAVAILABLE = 69  # sysexits.h: the port cannot be bound


def _unit_id(text: str) -> int:
    unit = int(text)
    if not 0 <= unit <= 255:
        raise argparse.ArgumentTypeError(f"{unit} is outside 0..255")
    return unit


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="plcsim", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    modbus = commands.add_parser("modbus", help="a pump skid on Modbus TCP")
    modbus.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    modbus.add_argument("--port", type=int, default=5020,
                        help="TCP port; 0 picks a free one (default 5020)")
    modbus.add_argument("--unit", type=_unit_id, default=1,
                        help="Modbus unit id 0..255; 0 answers every unit (default 1)")
    modbus.add_argument("--tick", type=float, default=DEFAULT_TICK_S,
                        help=f"plant tick in seconds (default {DEFAULT_TICK_S})")
    modbus.add_argument("--seed", type=int, default=None, help="noise seed, for repeatable runs")
    return parser


async def _serve_modbus(args: argparse.Namespace) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    server = ModbusSkidServer(PumpSkid(args.seed), host=args.host, port=args.port,
                              unit_id=args.unit, tick_s=args.tick)
    try:
        port = await server.start()
    except OSError as err:
        print(f"plcsim modbus: {err}", file=sys.stderr)  # CLI error output
        return EX_UNAVAILABLE
    try:
        line = {"event": "listening", "protocol": "modbus", "host": args.host, "port": port}
        print(json.dumps(line), flush=True)  # the one stdout line fixtures wait for
        await stop.wait()
    finally:
        await server.stop()
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``plcsim`` command; returns the exit status."""
    args = _parser().parse_args(argv)
    logging.basicConfig(stream=sys.stderr, level=logging.WARNING)
    if args.command == "modbus":
        return asyncio.run(_serve_modbus(args))
    return 2  # argparse already refused unknown commands


if __name__ == "__main__":
    sys.exit(main())
