"""The fixed mmap threshold, checked on glibc itself in a fresh interpreter each time."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from edgetwin.daemon.allocator import sqlite_memory

# Free a 1 MB mapped block (glibc then raises its threshold to ~1 MB unless it is fixed),
# then see where a 500 kB block comes from: its own mapping, or the brk heap.
AFTER_A_LARGE_FREE = """
import json, sys
from edgetwin.daemon.allocator import fix_mmap_threshold, heap_usage
fixed = fix_mmap_threshold() if sys.argv[1] == "fix" else None
large = bytearray(1_000_000)
del large
before = heap_usage()
block = bytearray(500_000)
after = heap_usage()
print(json.dumps({"fixed": fixed, "mapped": after.mapped - before.mapped,
                  "in_heap": after.in_use - before.in_use}))
"""


def run(mode: str, **env: str) -> dict[str, Any]:
    done = subprocess.run([sys.executable, "-c", AFTER_A_LARGE_FREE, mode],
                          env={**os.environ, **env}, capture_output=True, text=True, check=True,
                          timeout=30)
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def test_glibc_alone_serves_a_large_block_from_the_heap_after_a_larger_free() -> None:
    """The behaviour the fix is for (if glibc changes it, the fix needs a new look)."""
    result = run("leave")
    assert result["mapped"] == 0
    assert result["in_heap"] >= 500_000


def test_fixed_threshold_maps_large_blocks_after_a_larger_free() -> None:
    result = run("fix")
    assert result["fixed"] is True
    assert result["mapped"] >= 500_000
    assert result["in_heap"] < 500_000


@pytest.mark.parametrize("threshold", ["65536", "1048576"])
def test_an_operators_threshold_in_the_environment_wins(threshold: str) -> None:
    result = run("fix", MALLOC_MMAP_THRESHOLD_=threshold)
    assert result["fixed"] is False
    mapped = int(threshold) < 500_000
    assert (result["mapped"] >= 500_000) is mapped


def test_sqlite_memory_follows_a_page_cache_filling_and_its_connection_closing(
        tmp_path: Path) -> None:
    """The figure is the SQLite the sqlite3 module uses: it sees a real file's pages come and go."""
    start = sqlite_memory()
    assert start is not None
    db = sqlite3.connect(tmp_path / "pages.db")
    db.execute("PRAGMA cache_size=-4096")
    with db:
        db.execute("CREATE TABLE t (body BLOB)")
        db.executemany("INSERT INTO t VALUES (?)", ((bytes(1000),) for _ in range(3000)))
    filled = sqlite_memory()
    assert filled is not None
    assert filled - start > 2 * 2**20  # ~3 MB of rows, all still in the page cache
    db.close()
    closed = sqlite_memory()
    assert closed is not None
    assert closed - start < 256 * 1024


FREEZE = """
import gc, json, weakref
from edgetwin.daemon.allocator import freeze_startup_objects

class Node:
    pass

garbage = Node()
garbage.self = garbage  # a cycle nobody holds: start-up garbage
dead = weakref.ref(garbage)
del garbage
gc.disable()  # only the calls below collect
kept = [Node() for _ in range(50_000)]
tracked_before = len(gc.get_objects())
frozen = freeze_startup_objects()
print(json.dumps({"frozen": frozen, "tracked_before": tracked_before,
                  "tracked_after": len(gc.get_objects()), "garbage_freed": dead() is None}))
"""


def test_freezing_collects_start_up_garbage_and_leaves_later_passes_little_to_walk() -> None:
    done = subprocess.run([sys.executable, "-c", FREEZE], capture_output=True, text=True,
                          check=True, timeout=60)
    result = json.loads(done.stdout)
    assert result["garbage_freed"] is True  # collected first, not frozen for good
    assert result["frozen"] >= 50_000
    assert result["tracked_before"] >= 50_000
    assert result["tracked_after"] < 100  # what a full collection still walks


REFREEZE = """
import gc, json, weakref
from edgetwin.daemon.allocator import freeze_startup_objects, refreeze

class Node:
    pass

before = refreeze()  # nothing frozen yet: nothing to do
config = Node()
config.self = config  # built at start-up, in a cycle
old = weakref.ref(config)
gc.disable()
freeze_startup_objects()
del config  # a reload replaces it: unreachable, but frozen
gc.collect()
kept_while_frozen = old() is not None
after = refreeze()
print(json.dumps({"before": before, "kept_while_frozen": kept_while_frozen,
                  "freed": old() is None, "refrozen": after}))
"""


def test_refreezing_after_a_reload_frees_what_it_dropped() -> None:
    done = subprocess.run([sys.executable, "-c", REFREEZE], capture_output=True, text=True,
                          check=True, timeout=60)
    result = json.loads(done.stdout)
    assert result["before"] is None
    assert result["kept_while_frozen"] is True  # why a reload must refreeze
    assert result["freed"] is True
    assert result["refrozen"] > 0
