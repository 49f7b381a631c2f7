"""plcsim: simulated PLCs and sensors that speak real protocols, for testing gateways.

plcsim never imports edgetwin: it talks to a gateway only over the wire, so it can measure
another gateway too. Start it with ``plcsim modbus --port 5020`` (see ``plcsim --help``).
"""

from plcsim.faults import Fault, FaultError, FaultSet
from plcsim.launch import SimProcess, SimStartError
from plcsim.plant import PumpSkid, WriteResult
from plcsim.served import ServedLog, ServedRuns
from plcsim.sim import Face, Sim
from plcsim.vibration import BearingGeometry, FaultSpec, VibrationSensor
from plcsim.writelog import WriteLog, WriteRecord

__all__ = [
    "BearingGeometry",
    "Face",
    "Fault",
    "FaultError",
    "FaultSet",
    "FaultSpec",
    "PumpSkid",
    "ServedLog",
    "ServedRuns",
    "Sim",
    "SimProcess",
    "SimStartError",
    "VibrationSensor",
    "WriteLog",
    "WriteRecord",
    "WriteResult",
]
