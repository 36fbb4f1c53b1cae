"""Exact evaluation and formatting of the small expressions in reference solutions.

GSM8K's calculator marks (``<<48/2=24>>``) and SVAMP's equations are plain
arithmetic. We evaluate them with Fractions over a whitelisted AST instead of
``eval`` so a teacher never copies a wrong result and no data row runs code.
"""

from __future__ import annotations

import ast
import operator
import re
from dataclasses import dataclass
from fractions import Fraction

_OPS = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv}
_SYMBOLS = {ast.Add: "+", ast.Sub: "-", ast.Mult: "*", ast.Div: "/"}
# Python rejects "05" as a literal; reference data occasionally writes it.
_LEADING_ZEROS = re.compile(r"(?<![\d.])0+(?=\d)")
NUMBER_TOKEN = re.compile(r"\d+(?:\.\d+)?|\.\d+")
# The evaluator recurses once per operator, and Python's parser and our walk both hit the recursion limit near
# a thousand: a longer expression is refused up front. The longest GSM8K calculator mark has 11 operators.
MAX_OPERATORS = 200
_OPERATOR = re.compile(r"[-+*/]")


class ExpressionError(ValueError):
    """An expression we refuse or cannot evaluate (syntax, names, division by zero)."""


def parse_number(text: str) -> Fraction:
    text = text.strip().replace(",", "")
    try:
        return Fraction(text)
    except (ValueError, ZeroDivisionError):
        raise ExpressionError(f"not a number: {text!r}") from None


def shorten(expr: str, limit: int = 60) -> str:
    """``expr`` for a one-line message: a mark of thousands of terms is cut, with its length."""
    return repr(expr) if len(expr) <= limit else f"{expr[:limit]!r}... ({len(expr)} chars)"


def check_size(expr: str) -> None:
    """ExpressionError for an expression too long or too deeply nested to evaluate; cheap (no parse)."""
    operators = len(_OPERATOR.findall(expr))
    if operators > MAX_OPERATORS:
        raise ExpressionError(f"too long: {operators} operators (at most {MAX_OPERATORS})")
    depth = deepest = 0
    for char in expr:
        depth += (char == "(") - (char == ")")
        deepest = max(deepest, depth)
    if deepest > MAX_OPERATORS:
        raise ExpressionError(f"nested too deeply: {deepest} parentheses (at most {MAX_OPERATORS})")


def _parse(expr: str) -> ast.expr:
    cleaned = _LEADING_ZEROS.sub("", expr.replace(",", "").strip())
    check_size(cleaned)
    try:
        return ast.parse(cleaned, mode="eval").body
    except (SyntaxError, RecursionError, MemoryError):  # deep parentheses overflow the parser, not just bad syntax
        raise ExpressionError(f"not an arithmetic expression: {shorten(expr)}") from None


def _literal(node: ast.Constant) -> Fraction:
    if isinstance(node.value, bool) or not isinstance(node.value, (int, float)):
        raise ExpressionError(f"unsupported literal {node.value!r}")
    # repr of a short float is its shortest decimal, so 0.2 stays exactly 1/5.
    return Fraction(repr(node.value)) if isinstance(node.value, float) else Fraction(node.value)


def _apply(op: ast.operator, left: Fraction, right: Fraction) -> Fraction:
    if isinstance(op, ast.Div) and right == 0:
        raise ExpressionError("division by zero")
    return _OPS[type(op)](left, right)


def _eval(node: ast.expr) -> Fraction:
    if isinstance(node, ast.Constant):
        return _literal(node)
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
        value = _eval(node.operand)
        return -value if isinstance(node.op, ast.USub) else value
    if isinstance(node, ast.BinOp) and type(node.op) in _OPS:
        return _apply(node.op, _eval(node.left), _eval(node.right))
    raise ExpressionError(f"unsupported syntax {type(node).__name__}")


def evaluate(expr: str) -> Fraction:
    """Exact value of ``expr`` (numbers, + - * /, parentheses, unary minus)."""
    return _eval(_parse(expr))


def format_number(value: Fraction, max_decimals: int = 4) -> str:
    """Shortest plain decimal: 24, 0.2, 3.3333 (rounded only when it does not terminate)."""
    if value.denominator == 1:
        return str(value.numerator)
    text = f"{float(round(value, max_decimals)):.{max_decimals}f}".rstrip("0").rstrip(".")
    return "0" if text == "-0" else text


def agrees(value: Fraction, stated: str) -> bool:
    """Does ``stated`` (as written in a reference) equal ``value``, up to its own rounding?

    References round non-terminating results ("10/3=3.33"), so a stated result
    with k decimals is compared at k decimals.
    """
    try:
        written = parse_number(stated)
    except ExpressionError:
        return False
    if written == value:
        return True
    decimals = len(stated.split(".", 1)[1]) if "." in stated else 0
    return decimals > 0 and abs(value - written) <= Fraction(1, 2 * 10**decimals)


@dataclass(frozen=True)
class Operation:
    """One binary operation of a decomposed equation: ``left op right = value``."""

    left: str
    op: str
    right: str
    value: Fraction

    @property
    def expr(self) -> str:
        return f"{self.left}{self.op}{self.right}"


def decompose(expr: str) -> list[Operation]:
    """Split an equation into its operations, innermost first.

    ``( 7.0 - ( 3.0 + 2.0 ) )`` -> ``3+2=5``, ``7-5=2``: the steps a solver
    would write, each operand either a given number or an earlier result.
    """
    ops: list[Operation] = []

    def walk(node: ast.expr) -> tuple[str, Fraction]:
        if isinstance(node, ast.BinOp) and type(node.op) in _OPS:
            left_text, left = walk(node.left)
            right_text, right = walk(node.right)
            value = _apply(node.op, left, right)
            ops.append(Operation(left_text, _SYMBOLS[type(node.op)], right_text, value))
            return format_number(value), value
        value = _eval(node)
        return format_number(value), value

    walk(_parse(expr))
    return ops
