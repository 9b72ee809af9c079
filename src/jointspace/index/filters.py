"""Metadata filters: one small expression language, compiled to SQL (FAISS) or Milvus.

Grammar: ``field == "v"``, ``field != "v"``, ``field in ["a", "b"]``, ``field not in [...]``,
joined with ``and`` / ``or`` and parentheses. Values are strings or numbers; nothing else runs.
"""

from __future__ import annotations

import ast
import json
import math
import re
from collections.abc import Iterable
from dataclasses import dataclass

from jointspace.errors import JointspaceError

FIELD = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
OPERATORS = {ast.Eq: "==", ast.NotEq: "!=", ast.In: "in", ast.NotIn: "not in"}
MAX_LENGTH = 2000  # longer filters are refused before parsing: Python's parser recurses
MAX_INT = 2**63 - 1  # SQLite and Milvus hold 64-bit integers; a larger literal matches nothing


class FilterError(JointspaceError, ValueError):
    """A filter expression outside the grammar; the message says what was not understood."""


@dataclass(frozen=True)
class Condition:
    field: str
    op: str
    value: str | float | int | tuple[str | float | int, ...]  # a tuple for "in" / "not in"


@dataclass(frozen=True)
class Junction:
    op: str  # "and" | "or"
    parts: tuple


def parse_filter(text: str) -> Condition | Junction:
    """Parse a filter expression, refusing anything but comparisons of fields with constants."""
    if not isinstance(text, str) or not text.strip():
        raise FilterError('the filter is empty: give e.g. label == "7"')
    if len(text) > MAX_LENGTH:
        raise FilterError(f"the filter is {len(text)} characters long; at most {MAX_LENGTH}")
    try:
        tree = ast.parse(text.strip(), mode="eval").body
    except (SyntaxError, ValueError, RecursionError, MemoryError) as err:
        reason = getattr(err, "msg", None) or "not understood"
        raise FilterError(f"filter {_shown(text)} is not an expression: {reason}") from None
    return _node(tree, text)


def fields_of(expr: Condition | Junction) -> set[str]:
    """Every field name a parsed filter compares."""
    if isinstance(expr, Junction):
        return set().union(*(fields_of(p) for p in expr.parts))
    return {expr.field}


def check_fields(expr: Condition | Junction, known: Iterable[str], text: str) -> None:
    """Refuse a filter naming a field no item has: it would silently match nothing."""
    known = sorted(set(known))
    if unknown := sorted(fields_of(expr) - set(known)):
        listed = ", ".join(known) if known else "none (the index holds no metadata)"
        raise FilterError(
            f"filter {_shown(text)}: unknown field {', '.join(unknown)}; known fields: {listed}"
        )


def _node(node: ast.AST, text: str) -> Condition | Junction:
    if isinstance(node, ast.BoolOp):
        op = "and" if isinstance(node.op, ast.And) else "or"
        return Junction(op, tuple(_node(v, text) for v in node.values))
    if isinstance(node, ast.Compare) and len(node.ops) == 1 and type(node.ops[0]) in OPERATORS:
        if not isinstance(node.left, ast.Name) or not FIELD.fullmatch(node.left.id):
            raise FilterError(f"filter {_shown(text)}: the left side must be a field name")
        op = OPERATORS[type(node.ops[0])]
        return Condition(node.left.id, op, _value(node.comparators[0], op, text))
    raise FilterError(
        f"filter {_shown(text)}: use field == value, !=, in [..], not in [..], and, or"
    )


def _value(node: ast.AST, op: str, text: str):
    if op in ("in", "not in"):
        if not isinstance(node, ast.List | ast.Tuple):
            raise FilterError(f'filter {_shown(text)}: \'{op}\' needs a list, e.g. ["a", "b"]')
        return tuple(_constant(v, text) for v in node.elts)
    return _constant(node, text)


def _constant(node: ast.AST, text: str):
    value = getattr(node, "value", None)
    # bool is an int to isinstance, and True is no value a metadata field holds.
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
        value = _constant(node.operand, text)  # -3 parses as minus applied to 3
        if isinstance(value, str):
            raise FilterError(f"filter {_shown(text)}: a minus sign goes before a number only")
        return -value
    if isinstance(node, ast.Constant) and type(value) is int and abs(value) > MAX_INT:
        raise FilterError(f"filter {_shown(text)}: the integer {value} is out of range (64-bit)")
    if isinstance(node, ast.Constant) and type(value) is float and not math.isfinite(value):
        raise FilterError(f"filter {_shown(text)}: the number {value} is not finite")
    if isinstance(node, ast.Constant) and type(value) in (str, int, float):
        return value
    raise FilterError(f"filter {_shown(text)}: values must be quoted strings or numbers")


def _shown(text: str) -> str:
    # Messages are one line: a long filter is cut, not echoed whole.
    return repr(text if len(text) <= 80 else text[:77] + "...")


def to_sql(
    expr: Condition | Junction, column: str = "meta", typed: Iterable[str] = ()
) -> tuple[str, list]:
    """A parameterised SQLite WHERE clause: ``typed`` fields read their own indexed column
    (``f_<field>``), the others ``json_extract`` from the JSON column ``column``."""
    typed = frozenset(typed)
    if isinstance(expr, Junction):
        parts = [to_sql(p, column, typed) for p in expr.parts]
        sql = f" {expr.op.upper()} ".join(f"({s})" for s, _ in parts)
        return sql, [v for _, values in parts for v in values]
    if expr.field in typed:
        target = f'"f_{expr.field}"'  # field names match FIELD: safe inside quotes
    else:
        target = f"json_extract({column}, '$.{expr.field}')"
    if isinstance(expr.value, tuple):  # the parser makes one for "in" / "not in" only
        marks = ", ".join("?" for _ in expr.value)
        return f"{target} {expr.op.upper()} ({marks})", list(expr.value)
    sql_op = "=" if expr.op == "==" else "!="
    return f"{target} {sql_op} ?", [expr.value]


def to_milvus(expr: Condition | Junction) -> str:
    """The same filter in Milvus' boolean expression syntax."""
    if isinstance(expr, Junction):
        return f" {expr.op} ".join(f"({to_milvus(p)})" for p in expr.parts)
    if isinstance(expr.value, tuple):  # "in" / "not in"
        values = ", ".join(json.dumps(v) for v in expr.value)
        return f"{expr.field} {expr.op} [{values}]"
    return f"{expr.field} {expr.op} {json.dumps(expr.value)}"
