"""plcsim: simulated PLCs and sensors that speak real protocols, for testing gateways.

plcsim never imports edgetwin: it talks to a gateway only over the wire, so it can measure
another gateway too. Start it with ``plcsim modbus --port 5020`` (see ``plcsim --help``).
"""

from plcsim.launch import SimProcess, SimStartError
from plcsim.plant import PumpSkid
from plcsim.registers import RegisterImage, Table
from plcsim.skid_map import SKID_MAP, MapEntry

__all__ = [
    "SKID_MAP",
    "MapEntry",
    "PumpSkid",
    "RegisterImage",
    "SimProcess",
    "SimStartError",
    "Table",
]
