"""YAML file -> validated GatewayConfig, or every problem at once with file:line:col and path."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from edgetwin.config.model import GatewayConfig, SourceConfig, gateway_model
from edgetwin.config.semantics import semantic_problems
from edgetwin.core.errors import ConfigError

KeyPath = tuple[str | int, ...]


@dataclass(frozen=True, slots=True)
class Problem:
    """One thing wrong with a configuration file."""

    file: str
    line: int  # 1-based
    column: int  # 1-based
    path: str  # "sources[2].points[5].address"; "(yaml)" for syntax errors
    message: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.column}: {self.path}: {self.message}"


class InvalidConfig(ConfigError):
    """A configuration file with problems; ``problems`` lists every one of them."""

    def __init__(self, problems: Sequence[Problem]) -> None:
        self.problems = tuple(problems)
        super().__init__("\n".join(str(p) for p in self.problems))


def format_path(path: KeyPath) -> str:
    """``("sources", 2, "points", 5, "address")`` -> ``"sources[2].points[5].address"``."""
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(root)"


class _Marks:
    """Where each key path of the document stands in the file."""

    def __init__(self) -> None:
        self.values: dict[KeyPath, yaml.Mark] = {}
        self.keys: dict[KeyPath, yaml.Mark] = {}
        self.duplicates: list[tuple[KeyPath, yaml.Mark, yaml.Mark]] = []

    def walk(self, node: yaml.Node, path: KeyPath = ()) -> None:
        self.values[path] = node.start_mark
        if isinstance(node, yaml.MappingNode):
            for key_node, value_node in node.value:
                key: str | int = key_node.value if isinstance(key_node, yaml.ScalarNode) else "?"
                child = (*path, key)
                if child in self.keys:
                    self.duplicates.append((child, key_node.start_mark, self.keys[child]))
                self.keys[child] = key_node.start_mark
                self.walk(value_node, child)
        elif isinstance(node, yaml.SequenceNode):
            for index, item in enumerate(node.value):
                self.walk(item, (*path, index))

    def locate(self, path: KeyPath, *, prefer_key: bool = False) -> yaml.Mark | None:
        """The mark of ``path``, or of its nearest ancestor that is in the file."""
        for end in range(len(path), -1, -1):
            head = path[:end]
            if prefer_key and end == len(path) and head in self.keys:
                return self.keys[head]
            if head in self.values:
                return self.values[head]
        return None


def _data_path(data: Any, loc: Sequence[str | int]) -> KeyPath:
    """Pydantic's error location mapped onto the document, dropping union tags it inserts."""
    out: list[str | int] = []
    here = data
    for index, part in enumerate(loc):
        last = index == len(loc) - 1
        in_map = isinstance(here, Mapping) and part in here
        in_list = isinstance(here, list) and isinstance(part, int) and 0 <= part < len(here)
        if in_map or in_list:
            here = here[part]
            out.append(part)
        elif isinstance(here, Mapping) and part == here.get("type"):
            continue  # the discriminated-union tag ("modbus_tcp"), even as the last part
        elif last or not isinstance(here, Mapping):
            out.append(part)
            here = None
        # else: a discriminated-union tag such as "modbus_tcp"; not part of the document
    return tuple(out)


def _message(error: Mapping[str, Any]) -> str:
    msg = str(error["msg"])
    for prefix in ("Value error, ", "Assertion failed, "):
        msg = msg.removeprefix(prefix)
    if error["type"] == "extra_forbidden":
        return "unknown key"
    if error["type"] == "missing":
        return "required key is missing"
    value = error.get("input")
    if error["type"] not in ("model_type", "union_tag_invalid") and isinstance(
        value, str | int | float | bool
    ):
        msg += f" (got {value!r})"
    return msg


def _has_deeper(loc: tuple[str | int, ...], errors: Sequence[Mapping[str, Any]]) -> bool:
    return any(len(e["loc"]) > len(loc) and e["loc"][: len(loc)] == loc for e in errors)


def _yaml_problem(file: str, err: yaml.YAMLError, text: str) -> Problem:
    mark = getattr(err, "problem_mark", None) or getattr(err, "context_mark", None)
    line, column = (mark.line + 1, mark.column + 1) if mark is not None else (1, 1)
    if isinstance(err, yaml.reader.ReaderError):  # a character YAML does not allow
        line = text.count("\n", 0, err.position) + 1
        column = err.position - (text.rfind("\n", 0, err.position) + 1) + 1
        character = f"U+{err.character:04X}" if isinstance(err.character, int) else "byte"
        return Problem(file, line, column, "(yaml)",
                       f"not valid YAML: character {character} is not allowed")
    problem = getattr(err, "problem", None) or str(err)
    context = getattr(err, "context", None)
    message = f"{context}: {problem}" if context else str(problem)
    return Problem(file, line, column, "(yaml)", f"not valid YAML: {message}")


def _iter_validation(
    file: str, data: Any, marks: _Marks, err: ValidationError
) -> Iterator[Problem]:
    errors = err.errors(include_url=False)
    for error in errors:
        if error["type"] == "too_short" and _has_deeper(error["loc"], errors):
            continue  # "0 items after validation" only echoes the items' own errors
        path = _data_path(data, error["loc"])
        if error["type"] == "union_tag_invalid":
            path = (*path, "type")
        extra = error["type"] == "extra_forbidden"
        mark = marks.locate(path, prefer_key=extra)
        line, column = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        yield Problem(file, line, column, format_path(path), _message(error))


def parse_config(
    text: str, file: str, source_configs: tuple[type[SourceConfig], ...]
) -> GatewayConfig:
    """Validate a configuration given as text; ``file`` names it in problems.

    Raises:
        InvalidConfig: with every problem found, in file order.
    """
    try:
        loader = yaml.SafeLoader(text)  # checks the characters already
    except yaml.YAMLError as err:
        raise InvalidConfig([_yaml_problem(file, err, text)]) from None
    try:
        node = loader.get_single_node()
        data = loader.construct_document(node) if node is not None else None
    except yaml.YAMLError as err:
        raise InvalidConfig([_yaml_problem(file, err, text)]) from None
    finally:
        loader.dispose()

    marks = _Marks()
    if node is not None:
        marks.walk(node)
    problems = [
        Problem(file, m.line + 1, m.column + 1, format_path(p),
                f"duplicate key (first at line {first.line + 1})")
        for p, m, first in marks.duplicates
    ]
    if not isinstance(data, dict):
        problems.append(Problem(file, 1, 1, "(root)", "the file must be a mapping of sections"))
        raise InvalidConfig(problems)

    model = gateway_model(source_configs)
    try:
        config = model.model_validate(data)
    except ValidationError as err:
        problems.extend(_iter_validation(file, data, marks, err))
    else:
        for path, message in semantic_problems(config):
            mark = marks.locate(path)
            line, column = (mark.line + 1, mark.column + 1) if mark else (1, 1)
            problems.append(Problem(file, line, column, format_path(path), message))
    if problems:
        raise InvalidConfig(sorted(problems, key=lambda p: (p.line, p.column)))
    return config


def load_config(path: Path, source_configs: tuple[type[SourceConfig], ...]) -> GatewayConfig:
    """Read and validate a configuration file.

    Raises:
        InvalidConfig: the file cannot be read, or has problems (every one is listed).
    """
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise InvalidConfig([Problem(str(path), 1, 1, "(file)", f"cannot read: {err}")]) from None
    return parse_config(text, str(path), source_configs)
