"""Interlock expressions: parsed once with ``ast`` into a small allowlist, evaluated on the twin.

The language, whole:

- point ids as written in the config (``tank1/level``, ``pump1/vib_de.velocity_rms``);
  an id is read greedily, so write spaces around an operator that follows one
  (``tank1/level - 5``, not ``tank1/level-5``, which is the id ``tank1/level-5``);
- numbers (``90``, ``2.5``, ``-3``, ``1e3``) and the booleans ``true`` / ``false``;
- comparisons ``==  !=  <  <=  >  >=`` (chains such as ``10 < tank1/level < 90`` too);
- ``and``, ``or``, ``not``, unary minus, parentheses;
- ``abs(x)``, ``min(a, b, ...)``, ``max(a, b, ...)`` on numbers.

Nothing else parses: no attribute access, subscripts, other calls, lambdas, strings,
arithmetic, or names that are not points. Types are strict: a boolean is not a number,
``and``/``or``/``not`` take booleans only, ordering compares numbers only.

Invariants:
- ``parse_interlock`` returns an ``Interlock`` or raises ``InterlockError`` for any input
  string, never another exception;
- evaluation reads every point the expression names before evaluating anything; any of
  them missing, STALE, BAD or UNCERTAIN denies (fail safe, FACTS §7.2 step 6), whatever
  the rest of the expression says;
- evaluation is strict (every operand is evaluated, nothing short-circuits), so a type
  error anywhere denies; the outcome is True, or a denial naming the values read.
"""

from __future__ import annotations

import ast
import math
import re
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from typing import Any

from edgetwin.core.types import PointState, Quality
from edgetwin.safety.rules import describe, state_doc

MAX_LENGTH = 1000  # characters of an expression
MAX_DEPTH = 32  # nesting of the parsed tree

# A point id as the config allows it (POINT_ID_PATTERN), not preceded by an id character.
_POINT_TOKEN = re.compile(r"(?<![A-Za-z0-9_.-])[A-Za-z0-9_-]+/[A-Za-z0-9_.-]+")
_PLACEHOLDER = re.compile(r"_pt_*\d+")  # what parse_interlock puts in place of a point id
_BOOL_NAMES = {"true": True, "false": False}
_FUNCTIONS = ("abs", "min", "max")
_COMPARE_OPS: dict[type[ast.cmpop], tuple[str, Callable[[Any, Any], bool]]] = {
    ast.Eq: ("==", lambda a, b: a == b),
    ast.NotEq: ("!=", lambda a, b: a != b),
    ast.Lt: ("<", lambda a, b: a < b),
    ast.LtE: ("<=", lambda a, b: a <= b),
    ast.Gt: (">", lambda a, b: a > b),
    ast.GtE: (">=", lambda a, b: a >= b),
}
_REFUSED_NAMES: dict[type[ast.AST], str] = {
    ast.Attribute: "attribute access (x.y)",
    ast.Subscript: "subscripts (x[i])",
    ast.Lambda: "lambda",
    ast.BinOp: "arithmetic (+ - * / ...)",
    ast.IfExp: "conditional expressions (a if c else b)",
    ast.NamedExpr: "assignment (:=)",
    ast.List: "lists", ast.Tuple: "tuples", ast.Set: "sets", ast.Dict: "dicts",
    ast.ListComp: "comprehensions", ast.SetComp: "comprehensions",
    ast.DictComp: "comprehensions", ast.GeneratorExp: "comprehensions",
    ast.JoinedStr: "strings", ast.Starred: "starred arguments (*x)",
    ast.Await: "await", ast.Yield: "yield", ast.YieldFrom: "yield",
}


class InterlockError(ValueError):
    """An interlock expression that is refused; the message says what and where."""


@dataclass(frozen=True, slots=True)
class Outcome:
    """The result of evaluating an interlock on the twin."""

    ok: bool
    code: str  # "ok", "interlock" (false), "interlock_input" (a bad input), "interlock_type"
    reason: str
    reads: dict[str, dict[str, Any]] = field(default_factory=dict)  # point -> value/quality/ts


class _EvalError(Exception):
    """A type error during evaluation; becomes an ``interlock_type`` denial."""


@dataclass(frozen=True, slots=True)
class Interlock:
    """A parsed interlock; build with ``parse_interlock``."""

    text: str
    points: tuple[str, ...]  # every point it reads, in order of first appearance
    _tree: ast.expr
    _coded: str  # the text with point ids replaced by placeholders, which the tree indexes
    _names: dict[str, str]  # placeholder -> point id

    def evaluate(self, read: Callable[[str], PointState | None]) -> Outcome:
        """Read every input from the twin, then evaluate; see the module's invariants."""
        states = {p: read(p) for p in self.points}
        reads = {p: state_doc(s) for p, s in states.items()}
        unusable = [f"{p} is {why}" for p, s in states.items() if (why := _unusable(s))]
        if unusable:
            return Outcome(False, "interlock_input", f"interlock {self.text!r} cannot be "
                           f"evaluated: {'; '.join(unusable)}", reads)
        values = {p: s.value for p, s in states.items() if s is not None}
        by_name = {name: values[p] for name, p in self._names.items()}
        tree = self._tree
        parts = list(tree.values) if isinstance(tree, ast.BoolOp) and isinstance(
            tree.op, ast.And) else [tree]
        try:
            results = [(part, _eval(part, by_name)) for part in parts]
            for part, result in results:
                if not isinstance(result, bool):  # the label is made only when needed
                    raise _EvalError(f"{self._source(part)} is {describe(result)}, not a boolean")
        except _EvalError as err:
            return Outcome(False, "interlock_type",
                           f"interlock {self.text!r} cannot be evaluated: {err}", reads)
        failed = next((part for part, result in results if not result), None)
        if failed is None:
            return Outcome(True, "ok", f"interlock {self.text!r} holds", reads)
        shown = ", ".join(f"{p}={describe(values[p])}" for p in self._points_in(failed))
        where = f" ({shown})" if shown else ""
        return Outcome(False, "interlock", f"interlock {self._source(failed)} is false{where}",
                       reads)

    def _source(self, node: ast.expr) -> str:
        """The text of a part of the expression, as the author wrote it."""
        coded = ast.get_source_segment(self._coded, node) or ast.unparse(node)
        return _PLACEHOLDER.sub(lambda m: self._names.get(m.group(0), m.group(0)), coded)

    def _points_in(self, node: ast.expr) -> list[str]:
        seen: list[str] = []
        for sub in ast.walk(node):
            if isinstance(sub, ast.Name) and sub.id in self._names:
                point = self._names[sub.id]
                if point not in seen:
                    seen.append(point)
        return seen


def parse_interlock(text: str, is_point: Callable[[str], bool] | Collection[str]) -> Interlock:
    """Parse and check an interlock expression.

    Args:
        text: the expression, as configured.
        is_point: the known point ids, or a predicate that says whether an id is one.

    Raises:
        InterlockError: anything but a well-formed expression of the allowed constructs
            over known points; the message names the construct or point.
    """
    known = is_point if callable(is_point) else frozenset(is_point).__contains__
    if not isinstance(text, str):
        raise InterlockError("an interlock is a string")
    if not text.strip():
        raise InterlockError("the interlock is empty")
    if len(text) > MAX_LENGTH:
        raise InterlockError(f"the interlock is {len(text)} characters; at most {MAX_LENGTH}")
    prefix = "_pt"
    while prefix in text:  # a placeholder can never be something the author wrote
        prefix += "_"
    names: dict[str, str] = {}
    by_point: dict[str, str] = {}

    def placeholder(match: re.Match[str]) -> str:
        token = match.group(0)
        point = token.lstrip("-")
        if known(token) or not known(point):
            point = token  # an id may start with "-"; else "-tank1/level" is minus an id
        if point not in by_point:
            by_point[point] = f"{prefix}{len(by_point)}"
            names[by_point[point]] = point
        return token[: len(token) - len(point)] + by_point[point]

    coded = _POINT_TOKEN.sub(placeholder, text)
    for point in by_point:
        if not known(point):
            raise InterlockError(f"unknown point {point!r}{_spacing_hint(point, known)}")
    try:
        tree = ast.parse(coded.strip(), mode="eval")
    except SyntaxError as err:
        raise InterlockError(f"not a valid expression: {err.msg}") from None
    except (ValueError, RecursionError, MemoryError) as err:  # NUL bytes; absurd nesting
        raise InterlockError(f"not a valid expression: {type(err).__name__}") from None
    # Parsed from the stripped text: the source segments index that.
    checker = _Checker(names)
    try:
        kind = checker.check(tree.body, 0)
    except RecursionError:
        raise InterlockError("the interlock is nested too deeply") from None
    if kind == "num":
        raise InterlockError("the interlock is a number, not a condition; compare it "
                             "(e.g. tank1/level > 10)")
    return Interlock(text, tuple(by_point), tree.body, coded.strip(), names)


def _spacing_hint(token: str, known: Callable[[str], bool]) -> str:
    """A hint when an unknown id is a known one run together with what follows."""
    for end in range(len(token) - 1, 0, -1):
        if token[end] in "-." and known(token[:end]):
            return (f"; an id runs up to a space, so write {token[:end]} {token[end]} "
                    f"{token[end + 1:]} for the known point {token[:end]!r}")
    return ""


class _Checker:
    """Walks a parsed tree: refuses what is not allowed, infers "bool", "num" or "any"."""

    def __init__(self, names: dict[str, str]) -> None:
        self.names = names

    def check(self, node: ast.AST, depth: int) -> str:
        if depth > MAX_DEPTH:
            raise InterlockError(f"the interlock is nested more than {MAX_DEPTH} deep")
        deeper = depth + 1
        if isinstance(node, ast.BoolOp):
            for value in node.values:
                self._expect(self.check(value, deeper), "bool", _op_name(node.op), value)
            return "bool"
        if isinstance(node, ast.UnaryOp):
            operand = self.check(node.operand, deeper)
            if isinstance(node.op, ast.Not):
                self._expect(operand, "bool", "not", node.operand)
                return "bool"
            if isinstance(node.op, ast.USub):
                self._expect(operand, "num", "unary minus", node.operand)
                return "num"
            raise InterlockError(f"unary {_op_name(node.op)} is not allowed; use - or not")
        if isinstance(node, ast.Compare):
            kinds = [self.check(node.left, deeper)]
            kinds += [self.check(c, deeper) for c in node.comparators]
            for index, op in enumerate(node.ops):
                if type(op) not in _COMPARE_OPS:
                    raise InterlockError(f"comparison {_op_name(op)!r} is not allowed; use "
                                         f"== != < <= > >=")
                left, right = kinds[index], kinds[index + 1]
                if not isinstance(op, ast.Eq | ast.NotEq):
                    self._expect(left, "num", _COMPARE_OPS[type(op)][0], node)
                    self._expect(right, "num", _COMPARE_OPS[type(op)][0], node)
                elif "any" not in (left, right) and left != right:
                    raise InterlockError("== and != compare a boolean with a boolean or a "
                                         "number with a number, not one with the other")
            return "bool"
        if isinstance(node, ast.Call):
            return self._call(node, deeper)
        if isinstance(node, ast.Constant):
            if isinstance(node.value, bool):
                return "bool"
            if isinstance(node.value, int | float) and math.isfinite(node.value):
                return "num"
            raise InterlockError(f"the constant {node.value!r} is not allowed; only numbers "
                                 f"and true/false")
        if isinstance(node, ast.Name):
            if node.id in self.names:
                return "any"
            if node.id in _BOOL_NAMES:
                return "bool"
            if node.id in _FUNCTIONS:
                raise InterlockError(f"{node.id} is a function; call it: {node.id}(...)")
            raise InterlockError(f"unknown name {node.id!r}; points are written asset/point "
                                 f"(e.g. tank1/level), booleans as true or false")
        what = _REFUSED_NAMES.get(type(node), type(node).__name__)
        raise InterlockError(f"{what} is not allowed in an interlock")

    def _call(self, node: ast.Call, depth: int) -> str:
        func = node.func
        if not isinstance(func, ast.Name) or func.id not in _FUNCTIONS:
            shown = func.id if isinstance(func, ast.Name) else _REFUSED_NAMES.get(
                type(func), "an expression")
            raise InterlockError(f"only abs, min and max may be called, not {shown}")
        if node.keywords:
            raise InterlockError(f"{func.id}() takes no keyword arguments")
        if func.id == "abs" and len(node.args) != 1:
            raise InterlockError("abs() takes exactly one argument")
        if func.id != "abs" and len(node.args) < 2:  # one argument would mean an iterable
            raise InterlockError(f"{func.id}() takes two or more arguments")
        for arg in node.args:
            self._expect(self.check(arg, depth), "num", f"{func.id}()", arg)
        return "num"

    @staticmethod
    def _expect(kind: str, wanted: str, where: str, node: ast.AST) -> None:
        del node
        if kind not in (wanted, "any"):
            article = "a boolean" if kind == "bool" else "a number"
            need = "booleans" if wanted == "bool" else "numbers"
            raise InterlockError(f"{where} takes {need}, not {article}")


def _op_name(op: ast.AST) -> str:
    names = {ast.And: "and", ast.Or: "or", ast.Not: "not", ast.USub: "-", ast.UAdd: "+",
             ast.Invert: "~", ast.Is: "is", ast.IsNot: "is not", ast.In: "in",
             ast.NotIn: "not in"}
    return names.get(type(op), type(op).__name__)


def _is_and(node: ast.expr) -> bool:
    return isinstance(node, ast.BoolOp) and isinstance(node.op, ast.And)


def _unusable(state: PointState | None) -> str:
    """Why a twin state cannot feed an interlock ("" when it can)."""
    if state is None:
        return "missing (no value in the twin)"
    if state.quality is not Quality.GOOD:
        return str(state.quality.value)
    if state.value is None:
        return "without a value"
    return ""


def _number(value: object, what: str) -> float | int:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _EvalError(f"{what} is {describe(value)}, not a number")
    if not math.isfinite(value):
        raise _EvalError(f"{what} is {describe(value)}, not a finite number")
    return value


def _boolean(value: object, what: str) -> bool:
    if not isinstance(value, bool):
        raise _EvalError(f"{what} is {describe(value)}, not a boolean")
    return value


def _eval(node: ast.expr, values: dict[str, Any]) -> Any:
    """Evaluate a checked tree strictly; raises ``_EvalError`` for a runtime type error."""
    if isinstance(node, ast.Constant):
        return node.value
    if isinstance(node, ast.Name):
        return _BOOL_NAMES[node.id] if node.id in _BOOL_NAMES else values[node.id]
    if isinstance(node, ast.BoolOp):
        results = [_boolean(_eval(v, values), _op_name(node.op) + " operand")
                   for v in node.values]
        return all(results) if isinstance(node.op, ast.And) else any(results)
    if isinstance(node, ast.UnaryOp):
        operand = _eval(node.operand, values)
        if isinstance(node.op, ast.Not):
            return not _boolean(operand, "not's operand")
        return -_number(operand, "unary minus's operand")
    if isinstance(node, ast.Compare):
        operands = [_eval(node.left, values)] + [_eval(c, values) for c in node.comparators]
        result = True
        for index, op in enumerate(node.ops):
            symbol, compare = _COMPARE_OPS[type(op)]
            left, right = operands[index], operands[index + 1]
            if isinstance(left, bool) and isinstance(right, bool) and symbol in ("==", "!="):
                result = compare(left, right) and result
                continue
            where = f"the left side of {symbol}", f"the right side of {symbol}"
            result = compare(_number(left, where[0]), _number(right, where[1])) and result
        return result
    if isinstance(node, ast.Call):
        assert isinstance(node.func, ast.Name)  # guaranteed by _Checker
        args = [_number(_eval(a, values), f"an argument of {node.func.id}()")
                for a in node.args]
        if node.func.id == "abs":
            return abs(args[0])
        return min(args) if node.func.id == "min" else max(args)
    raise _EvalError(f"{type(node).__name__} cannot be evaluated")  # unreachable after checks
