"""The shipped unit file passes systemd's own checks."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

UNIT = Path(__file__).resolve().parents[2] / "systemd" / "edgetwin.service"


@pytest.fixture
def unit_for_this_machine(tmp_path: Path) -> Path:
    """The unit with ExecStart pointing at this environment's edgetwin (verify checks it)."""
    edgetwin = Path(sys.executable).parent / "edgetwin"
    assert edgetwin.exists(), "edgetwin is not installed in this environment"
    unit = tmp_path / "edgetwin.service"
    unit.write_text(UNIT.read_text().replace("/opt/edgetwin/venv/bin/edgetwin", str(edgetwin)))
    return unit


def analyze() -> str:
    found = shutil.which("systemd-analyze")
    assert found, "systemd-analyze is missing; `make test` installs Debian's systemd"
    return found


def test_unit_passes_systemd_analyze_verify(unit_for_this_machine: Path) -> None:
    """`systemd-analyze verify` reports nothing."""
    result = subprocess.run([analyze(), "verify", str(unit_for_this_machine)],
                            capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    assert result.stderr.strip() == ""


def test_unit_hardening_scores_ok(unit_for_this_machine: Path) -> None:
    """The offline security score stays at or below 2.0 ("OK"): hardening cannot rot."""
    result = subprocess.run(
        [analyze(), "security", "--offline=yes", "--threshold=20", str(unit_for_this_machine)],
        capture_output=True, text=True, timeout=60, check=False,
    )
    assert result.returncode == 0, result.stdout[-2000:]


def test_unit_declares_the_contract() -> None:
    """Type=notify with a watchdog, no restart loop on EX_CONFIG, a state directory."""
    text = UNIT.read_text()
    for line in ("Type=notify", "WatchdogSec=", "Restart=on-failure",
                 "RestartPreventExitStatus=78", "StateDirectory=edgetwin", "User=edgetwin",
                 "ExecReload=/bin/kill -HUP $MAINPID", "NoNewPrivileges=yes"):
        assert line in text
    assert "PrivateDevices=yes" not in text  # it would hide /dev/ttyUSB*
