"""A "gateway" that ignores every rule: it writes a setpoint straight to the PLC, publishes nothing.

The HIL runner test starts it through ``--gateway-cmd`` to show that the bench runs any
command line and that its judges catch what this one does wrong.
"""

from __future__ import annotations

import signal
import sys
import threading
from pathlib import Path

import yaml
from pymodbus.client import ModbusTcpClient

ROGUE_SETPOINT = 1700


def main() -> None:
    config = yaml.safe_load(Path(sys.argv[1]).read_text())
    plc = config["sources"][0]
    client = ModbusTcpClient(plc["host"], port=plc["port"], timeout=2)
    client.connect()
    client.write_register(200, ROGUE_SETPOINT, device_id=plc["unit_id"])  # no policy asked
    client.close()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    stop.wait(120)
    sys.exit(3)  # not a clean stop either


if __name__ == "__main__":
    main()
