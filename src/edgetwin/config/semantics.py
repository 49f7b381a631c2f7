"""Checks across sections that a single model cannot make: ids, references, clashes."""

from __future__ import annotations

from collections.abc import Iterator

from edgetwin.config.model import GatewayConfig

KeyPath = tuple[str | int, ...]


def semantic_problems(config: GatewayConfig) -> Iterator[tuple[KeyPath, str]]:
    """Every cross-reference problem as (key path, message)."""
    yield from _unique_sources(config)
    yield from _unique_points(config)
    yield from _references(config)
    yield from _interlocks(config)


# Who may share a resource, by its kind (the text before the first colon).
_SHARING_RULES = {
    "serial": "a serial port belongs to one source, or to Modbus RTU sources of distinct unit"
              " ids with the same line settings and timeout",
    "modbus_tcp": "a Modbus TCP host:port is one connection, shared only by modbus_tcp sources"
                  " of distinct unit ids with the same timeout",
}


def _unique_sources(config: GatewayConfig) -> Iterator[tuple[KeyPath, str]]:
    names: dict[str, int] = {}
    users: dict[str, list[int]] = {}
    for i, source in enumerate(config.sources):
        if source.name in names:
            yield ("sources", i, "name"), (
                f"duplicate source name {source.name!r} (first at sources[{names[source.name]}])"
            )
        names.setdefault(source.name, i)
        for resource in sorted(source.resources()):
            for j in users.get(resource, []):
                if not source.shares_resource_with(config.sources[j]):
                    rule = _SHARING_RULES.get(resource.partition(":")[0],
                                              "it belongs to one source")
                    yield ("sources", i), f"{resource} is already used by sources[{j}]; {rule}"
                    break
            users.setdefault(resource, []).append(i)


def _unique_points(config: GatewayConfig) -> Iterator[tuple[KeyPath, str]]:
    first: dict[str, str] = {}
    for i, source in enumerate(config.sources):
        for j, point in enumerate(source.points):
            where = f"sources[{i}].points[{j}]"
            if point.id in first:
                yield ("sources", i, "points", j, "id"), (
                    f"duplicate point id {point.id!r} (first at {first[point.id]})"
                )
            first.setdefault(point.id, where)


def _references(config: GatewayConfig) -> Iterator[tuple[KeyPath, str]]:
    by_id = config.points()
    vibration_points: set[str] = set()
    for i, vib in enumerate(config.vibration):
        vibration_points.add(vib.point)
        if vib.point not in by_id:
            yield ("vibration", i, "point"), f"unknown point {vib.point!r}"
        elif getattr(by_id[vib.point][1], "waveform", None) is None:
            yield ("vibration", i, "point"), f"point {vib.point!r} is not a waveform"
        shaft = vib.machine.shaft_hz_point
        if shaft is not None and shaft not in by_id:
            yield ("vibration", i, "machine", "shaft_hz_point"), f"unknown point {shaft!r}"
    for i, model in enumerate(config.anomaly):
        for j, name in enumerate(model.inputs):
            base = name.rpartition(".")[0]
            if name not in by_id and base not in vibration_points:
                yield ("anomaly", i, "inputs", j), (
                    f"unknown input {name!r}: neither a point nor a feature of a vibration entry"
                )
    seen_rules: set[str] = set()
    for i, rule in enumerate(config.commands.rules):
        if rule.point not in by_id:
            yield ("commands", "rules", i, "point"), f"unknown point {rule.point!r}"
        elif not by_id[rule.point][1].writable:
            yield ("commands", "rules", i, "point"), (
                f"point {rule.point!r} is not writable; set writable: true on the point first"
            )
        if rule.point in seen_rules:
            yield ("commands", "rules", i, "point"), f"a second rule for {rule.point!r}"
        seen_rules.add(rule.point)
    commands = config.commands
    if commands.enabled and commands.require_signature and not commands.keys:
        yield ("commands", "keys"), "commands are enabled with require_signature but no keys"


def _interlocks(config: GatewayConfig) -> Iterator[tuple[KeyPath, str]]:
    """Every interlock parses into the allowed constructs and reads configured scalar points."""
    # The parser belongs to the safety package, which evaluates what it parses; imported
    # here, when a config is checked, so config does not depend on safety when imported.
    from edgetwin.safety.interlock import InterlockError, parse_interlock

    by_id = config.points()
    for i, rule in enumerate(config.commands.rules):
        if rule.interlock is None:
            continue
        where = ("commands", "rules", i, "interlock")
        try:
            interlock = parse_interlock(rule.interlock, by_id.__contains__)
        except InterlockError as err:
            yield where, f"{err} (in {rule.interlock!r})"
            continue
        for point in interlock.points:
            if getattr(by_id[point][1], "waveform", None) is not None:
                yield where, f"point {point!r} is a waveform; an interlock reads single values"
