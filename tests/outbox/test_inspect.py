"""`edgetwin buffer inspect|export` on an outbox file, read-only, beside its writer."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from edgetwin.core.types import Record, RecordKind
from edgetwin.outbox.durable import DB_FILE
from tests.outbox.conftest import OpenBox, delta, stored_seqs


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "edgetwin", "buffer", *args],
                          capture_output=True, text=True, timeout=30)


def write_config(tmp_path: Path) -> Path:
    config = tmp_path / "gateway.yaml"
    config.write_text(
        f"gateway: {{id: gw1, group: g, state_dir: {tmp_path}}}\n"
        "sources:\n  - {name: s1, type: modbus_tcp, host: 127.0.0.1,"
        " points: [{id: pump1/p0, address: 0}]}\n"
        "sync: {mqtt: {host: 127.0.0.1}}\n")
    return config


async def test_inspect_and_export_read_a_live_outbox_without_changing_it(
    tmp_path: Path, open_box: OpenBox
) -> None:
    """While the outbox is open: totals per asset, and every entry as a JSON line."""
    box = open_box().box
    await box.put([delta(1, "pump1", points=3), delta(2, "pump1"), delta(3, "tank1"),
                   Record(RecordKind.ALARM, "", 5, {"alarm": "x", "active": True})])
    await box.commit()
    config = write_config(tmp_path)
    before = stored_seqs(tmp_path / DB_FILE)

    summary = json.loads(cli("inspect", "--json", "-c", str(config)).stdout)
    assert summary["entries"] == 4 and summary["bytes"] == box.nbytes()
    assert {a["asset"]: a["entries"] for a in summary["assets"]} == {
        "(gateway)": 1, "pump1": 2, "tank1": 1}
    text = cli("inspect", "-c", str(config)).stdout
    assert "4 entries" in text and "pump1" in text

    lines = [json.loads(x) for x in cli("export", "-c", str(config)).stdout.splitlines()]
    assert [x["seq"] for x in lines] == before
    assert lines[0]["kind"] == "delta" and lines[0]["changes"]["p2"]["v"] == 1
    assert lines[3]["kind"] == "alarm" and lines[3]["body"]["alarm"] == "x"
    assert stored_seqs(tmp_path / DB_FILE) == before


def test_inspect_without_an_outbox_says_so(tmp_path: Path) -> None:
    """No file yet: a clear message and exit 69, not a new empty database."""
    result = cli("inspect", "-c", str(write_config(tmp_path)))
    assert result.returncode == 69 and "no outbox" in result.stderr
    assert not (tmp_path / DB_FILE).exists()
