from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from edgetwin.core.types import PointSpec, Quality, Sample
from edgetwin.twin import TwinStore

SPECS = {
    "pump1/temp": PointSpec("pump1/temp", "skid1", deadband=0.5, stale_after_s=2.0),
    "pump1/run": PointSpec("pump1/run", "skid1"),
    "tank1/level": PointSpec("tank1/level", "skid1", deadband=0.0),
}


def s(point: str, value: object, ts_ns: int = 1, quality: Quality = Quality.GOOD) -> Sample:
    return Sample(point, value, quality, ts_ns)


def test_first_sample_of_each_point_is_a_change(tmp_path: Path) -> None:
    """A point the twin has never seen is always reported, one delta per asset."""
    twin = TwinStore(SPECS, tmp_path)
    deltas = twin.apply([s("pump1/temp", 20.0), s("pump1/run", True), s("tank1/level", 5)])
    assert {d.asset for d in deltas} == {"pump1", "tank1"}
    pump = next(d for d in deltas if d.asset == "pump1")
    assert set(pump.changes) == {"temp", "run"}
    assert pump.version == max(c.version for c in pump.changes.values())


def test_deadband_suppresses_small_changes_relative_to_last_report(tmp_path: Path) -> None:
    """Changes within the deadband of the last *reported* value stay unreported, even summed."""
    twin = TwinStore(SPECS, tmp_path)
    twin.apply([s("pump1/temp", 20.0)])
    assert twin.apply([s("pump1/temp", 20.3, 2)]) == []
    assert twin.apply([s("pump1/temp", 20.45, 3)]) == []
    (delta,) = twin.apply([s("pump1/temp", 20.6, 4)])
    assert delta.changes["temp"].value == 20.6


def test_quality_change_is_reported_even_within_deadband(tmp_path: Path) -> None:
    """GOOD -> BAD -> GOOD is reported whatever the value; BAD carries no value."""
    twin = TwinStore(SPECS, tmp_path)
    twin.apply([s("pump1/temp", 20.0)])
    (bad,) = twin.apply([s("pump1/temp", None, 2, Quality.BAD)])
    assert bad.changes["temp"].quality is Quality.BAD
    assert bad.changes["temp"].value is None
    assert twin.apply([s("pump1/temp", None, 3, Quality.BAD)]) == []
    (good,) = twin.apply([s("pump1/temp", 20.0, 4)])
    assert good.changes["temp"].quality is Quality.GOOD


def test_bool_and_type_changes_are_changes(tmp_path: Path) -> None:
    """Booleans and strings compare by equality; numbers by value whatever their type."""
    twin = TwinStore(SPECS, tmp_path)
    twin.apply([s("pump1/run", True), s("tank1/level", 5)])
    assert twin.apply([s("pump1/run", True, 2)]) == []
    assert len(twin.apply([s("pump1/run", False, 3)])) == 1
    assert twin.apply([s("tank1/level", 5.0, 4)]) == []
    assert len(twin.apply([s("tank1/level", "5", 5)])) == 1
    assert len(twin.apply([s("pump1/run", 0, 6)])) == 1


def test_unknown_points_are_counted_not_stored(tmp_path: Path) -> None:
    """A sample for a point that is not configured is dropped and counted."""
    twin = TwinStore(SPECS, tmp_path)
    assert twin.apply([s("ghost/x", 1)]) == []
    assert twin.unknown_points == 1
    assert twin.get("ghost/x") is None


def test_stale_sweep_marks_points_without_fresh_reads(tmp_path: Path) -> None:
    """A point not read within stale_after turns STALE with its last value; a read revives it."""
    twin = TwinStore(SPECS, tmp_path)
    twin.apply([s("pump1/temp", 20.0, ts_ns=1_000_000_000)])
    assert twin.sweep_stale(now_ns=2_500_000_000) == []
    (delta,) = twin.sweep_stale(now_ns=3_500_000_000)
    assert delta.changes["temp"].quality is Quality.STALE
    assert delta.changes["temp"].value == 20.0
    assert twin.sweep_stale(now_ns=9_000_000_000) == []  # stale once, not every sweep
    (fresh,) = twin.apply([s("pump1/temp", 20.0, ts_ns=9_000_000_000)])
    assert fresh.changes["temp"].quality is Quality.GOOD


def test_unchanged_reads_keep_a_point_fresh(tmp_path: Path) -> None:
    """Reads within the deadband are not reported but still count as fresh."""
    twin = TwinStore(SPECS, tmp_path)
    twin.apply([s("pump1/temp", 20.0, ts_ns=1_000_000_000)])
    twin.apply([s("pump1/temp", 20.1, ts_ns=3_000_000_000)])
    assert twin.sweep_stale(now_ns=4_000_000_000) == []


def test_restored_state_comes_back_and_versions_keep_growing(tmp_path: Path) -> None:
    """After a restart the twin has its state back and every new version is larger."""
    twin = TwinStore(SPECS, tmp_path)
    deltas = twin.apply([s("pump1/temp", 20.0), s("tank1/level", 7)])
    saved = {f"{d.asset}/{name}": st for d in deltas for name, st in d.changes.items()}
    before = twin.asset_version("pump1")
    reopened = TwinStore(SPECS, tmp_path, restored=saved)
    assert reopened.get("pump1/temp").value == 20.0  # type: ignore[union-attr]
    assert reopened.asset_version("pump1") == before
    (delta,) = reopened.apply([s("pump1/temp", 30.0, 2)])
    assert delta.version > before


def test_versions_grow_after_a_crash_that_lost_the_latest_state(tmp_path: Path) -> None:
    """Versions issued after the last stored state are never issued again after a crash."""
    twin = TwinStore(SPECS, tmp_path)
    (first,) = twin.apply([s("tank1/level", 1)])
    saved = {"tank1/level": first.changes["level"]}
    issued = [twin.apply([s("tank1/level", i, i)])[0].version for i in range(2, 50)]
    crashed = TwinStore(SPECS, tmp_path, restored=saved)  # older than the last versions
    (delta,) = crashed.apply([s("tank1/level", 1000, 1000)])
    assert delta.version > max(issued)


def test_restored_points_no_longer_configured_are_left_out(tmp_path: Path) -> None:
    """A point removed from the config while the gateway was down does not come back."""
    old = {"pump1/gone": SPECS["pump1/temp"]}
    twin = TwinStore({**SPECS, **old}, tmp_path)
    deltas = twin.apply([s("pump1/gone", 1.0)])
    saved = {f"{d.asset}/{name}": st for d in deltas for name, st in d.changes.items()}
    assert len(TwinStore(SPECS, tmp_path, restored=saved)) == 0


def test_reload_drops_points_no_longer_configured(tmp_path: Path) -> None:
    """update_specs forgets removed points and their assets."""
    twin = TwinStore(SPECS, tmp_path)
    twin.apply([s("pump1/temp", 20.0), s("tank1/level", 7)])
    twin.update_specs({k: v for k, v in SPECS.items() if not k.startswith("tank1")})
    assert list(twin.assets()) == ["pump1"]


@settings(max_examples=50, deadline=None)
@given(st.lists(st.floats(min_value=-1e6, max_value=1e6), min_size=1, max_size=60))
def test_versions_strictly_increase_and_reports_respect_deadband(values: list[float]) -> None:
    """Property: versions strictly grow and consecutive reports differ by more than the deadband."""
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        twin = TwinStore(SPECS, Path(tmp))
        last_version, last_value = 0, None
        for i, value in enumerate(values):
            for delta in twin.apply([s("pump1/temp", value, i + 1)]):
                state = delta.changes["temp"]
                assert state.version > last_version
                if last_value is not None:
                    assert abs(state.value - last_value) > 0.5
                last_version, last_value = state.version, state.value


def test_restored_values_are_stale_until_read_again(tmp_path: Path) -> None:
    """After a restart nothing may trust a pre-restart value as live (interlocks deny STALE)."""
    twin = TwinStore(SPECS, tmp_path)
    (delta,) = twin.apply([s("tank1/level", 7)])
    reopened = TwinStore(SPECS, tmp_path, restored={"tank1/level": delta.changes["level"]})
    assert reopened.get("tank1/level").quality is Quality.STALE  # type: ignore[union-attr]
    (fresh,) = reopened.apply([s("tank1/level", 7, 2)])
    assert fresh.changes["level"].quality is Quality.GOOD
