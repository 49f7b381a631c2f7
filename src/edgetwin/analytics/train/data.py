"""Healthy feature rows for training, from a CSV file or an outbox export.

Both readers refuse rather than repair: a missing column, a cell that is not a finite
number, or a GOOD value that is not a number stops training with the file and line, because
a baseline fitted on silently patched data alarms on the patch later.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import math
import numbers
import sys
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import numpy as np

from edgetwin.analytics.train.errors import EX_DATAERR, EX_NOINPUT, TrainingError


@dataclass(frozen=True, slots=True)
class Table:
    """Rows of input values (one column per input, in the inputs' order) and where from."""

    values: np.ndarray  # float64, shape (rows, inputs)
    source: str  # "csv" or "export"
    path: str
    sha256: str
    notes: tuple[str, ...] = ()  # what was skipped, for the report


@contextmanager
def _opened(path: Path) -> Iterator[IO[str]]:
    """The file, or stdin for ``-``."""
    if str(path) == "-":
        yield sys.stdin
        return
    try:
        stream = path.open(encoding="utf-8", newline="")
    except OSError as err:
        msg = f"{path} cannot be read: {err.strerror}"
        raise TrainingError(msg, EX_NOINPUT) from err
    with stream:
        yield stream


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def read_csv(path: Path, inputs: Sequence[str]) -> Table:
    """The ``inputs`` columns of a CSV with a header row; other columns are ignored.

    Raises:
        TrainingError: No header, a missing or repeated column, a short row, or a cell
            that is not a finite number (with its line).
    """
    with _opened(path) as stream:
        text = stream.read()
    reader = csv.reader(io.StringIO(text, newline=""))
    header = next(reader, None)
    if not header:
        msg = f"{path}: empty; expected a header row naming the input columns"
        raise TrainingError(msg, EX_DATAERR)
    header = [name.strip() for name in header]
    repeated = sorted({name for name in header if header.count(name) > 1})
    if repeated:
        msg = f"{path}: column(s) {', '.join(repeated)} appear more than once in the header"
        raise TrainingError(msg, EX_DATAERR)
    missing = [p for p in inputs if p not in header]
    if missing:
        msg = (f"{path}: no column for input(s) {', '.join(missing)}"
               f" (the header has: {', '.join(header)})")
        raise TrainingError(msg, EX_DATAERR)
    index = [header.index(p) for p in inputs]
    rows: list[list[float]] = []
    for fields in reader:
        if not fields or all(not f.strip() for f in fields):
            continue  # a blank line, e.g. at the end
        line = reader.line_num
        if len(fields) != len(header):
            msg = f"{path}:{line}: {len(fields)} fields, the header has {len(header)}"
            raise TrainingError(msg, EX_DATAERR)
        rows.append([_number(fields[i], f"{path}:{line}: column {inputs[k]}")
                     for k, i in enumerate(index)])
    values = np.asarray(rows, dtype=np.float64).reshape(-1, len(inputs))
    return Table(values, "csv", str(path), _digest(text))


def _number(cell: str, where: str) -> float:
    try:
        value = float(cell)
    except ValueError:
        msg = f"{where}: {cell.strip()!r} is not a number"
        raise TrainingError(msg, EX_DATAERR) from None
    if not math.isfinite(value):
        msg = (f"{where}: {cell.strip()} is not a finite number; remove incomplete rows"
               f" before training (a filled-in value would become part of 'healthy')")
        raise TrainingError(msg, EX_DATAERR)
    return value


def read_export(path: Path, inputs: Sequence[str]) -> Table:
    """Rows rebuilt from ``edgetwin buffer export`` JSON lines, carrying last values forward.

    Each delta that changes one of the inputs makes a row once every input has a GOOD
    value; a BAD, STALE or UNCERTAIN state of an input leaves a gap until its next GOOD
    value (no row is made from a value the gateway itself did not trust). Alarms, command
    results and entries the export could not decode are skipped.

    Raises:
        TrainingError: A line that is not JSON or not an export entry, a GOOD input value
            that is not a finite number, or no rows at all.
    """
    with _opened(path) as stream:
        text = stream.read()
    wanted = set(inputs)
    current: dict[str, float] = {}
    rows: list[list[float]] = []
    deltas = skipped = incomplete = 0
    for line_no, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        where = f"{path}:{line_no}"
        doc = _entry(line, where)
        if doc.get("kind") != "delta":
            skipped += 1
            continue
        deltas += 1
        touched = False
        for point, state in _changes(doc, where):
            if point not in wanted:
                continue
            touched = True
            if state.get("q") == "GOOD":
                current[point] = _good_value(state.get("v"), f"{where}: {point}")
            else:
                current.pop(point, None)
        if not touched:
            continue
        if len(current) == len(wanted):
            rows.append([current[p] for p in inputs])
        else:
            incomplete += 1
    notes = (f"{deltas} deltas read, {skipped} other entries skipped",
             f"{incomplete} changes before every input had a GOOD value (no row)")
    if not rows:
        seen = sorted(current) or ["none"]
        msg = (f"{path}: no row has a GOOD value for every input ({', '.join(inputs)});"
               f" inputs seen GOOD at the end: {', '.join(seen)}")
        raise TrainingError(msg, EX_DATAERR)
    values = np.asarray(rows, dtype=np.float64)
    return Table(values, "export", str(path), _digest(text), notes)


def _entry(line: str, where: str) -> dict[str, Any]:
    try:
        doc = json.loads(line)
    except ValueError:
        msg = f"{where}: not JSON; expected the output of `edgetwin buffer export`"
        raise TrainingError(msg, EX_DATAERR) from None
    if not isinstance(doc, dict):
        msg = f"{where}: not an export entry (a JSON object per line)"
        raise TrainingError(msg, EX_DATAERR)
    return doc


def _changes(doc: dict[str, Any], where: str) -> Iterable[tuple[str, dict[str, Any]]]:
    asset, changes = doc.get("asset"), doc.get("changes")
    if not isinstance(asset, str) or not isinstance(changes, dict):
        msg = f"{where}: a delta without 'asset' and 'changes'"
        raise TrainingError(msg, EX_DATAERR)
    for name, state in changes.items():
        if not isinstance(state, dict):
            msg = f"{where}: change {name!r} is not an object"
            raise TrainingError(msg, EX_DATAERR)
        yield f"{asset}/{name}", state


def _good_value(value: object, where: str) -> float:
    if not isinstance(value, numbers.Real):  # a bool counts as 0/1, as when scoring
        msg = f"{where}: GOOD value {value!r:.40} is not a number"
        raise TrainingError(msg, EX_DATAERR)
    if not math.isfinite(value):
        msg = f"{where}: GOOD value {value} is not finite"
        raise TrainingError(msg, EX_DATAERR)
    return float(value)
