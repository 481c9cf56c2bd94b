"""shaper's expression language for custom load patterns.

Users write arithmetic over time, such as ``50 + 30 * sin(2 * pi * t / 86400) + noise(2)``. The
text comes from YAML files and an HTTP API, so it is hostile until proven otherwise: it is parsed
by ``ast.parse`` (never ``eval``) and every node of the tree is checked against a whitelist of
numbers, known names, arithmetic and calls to known functions. The checked tree is then
interpreted with numpy, one ufunc per node over the whole time axis, so a month of one-second
points costs a few array passes, not millions of Python calls.

Limits are checked before parsing, because ``ast.parse`` itself can be made to recurse deeply
or allocate a lot by a long or deeply nested input.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass, field
from typing import Callable, Mapping

import numpy as np

MAX_LENGTH = 4000
MAX_DEPTH = 50
MAX_NODES = 500
MAX_LITERAL_DIGITS = 40
MAX_CONSTANT = 1e12
MAX_EXPONENT = 1000.0

VARIABLES = frozenset({"t", "duration", "hour", "weekday", "day_of_month", "minute"})
CONSTANTS = {"pi": np.pi, "e": np.e}

_UNARY_FUNCS: dict[str, Callable] = {
    "sin": np.sin, "cos": np.cos, "tan": np.tan, "exp": np.exp, "log": np.log, "log10": np.log10,
    "sqrt": np.sqrt, "abs": np.abs, "floor": np.floor, "ceil": np.ceil, "round": np.round,
}
# name: (min args, max args)
_ARITY = {**{name: (1, 1) for name in _UNARY_FUNCS}, "min": (2, 16), "max": (2, 16), "clip": (3, 3),
          "where": (3, 3), "noise": (0, 1)}
FUNCTIONS = frozenset(_ARITY)

_BINARY = {
    ast.Add: np.add, ast.Sub: np.subtract, ast.Mult: np.multiply, ast.Div: np.divide,
    ast.FloorDiv: np.floor_divide, ast.Mod: np.mod, ast.Pow: np.power,
}
_COMPARE = {
    ast.Lt: np.less, ast.LtE: np.less_equal, ast.Gt: np.greater, ast.GtE: np.greater_equal,
    ast.Eq: np.equal, ast.NotEq: np.not_equal,
}
_NODE_NAMES = {
    ast.Attribute: "attribute access", ast.Subscript: "subscripts", ast.List: "lists", ast.Tuple: "tuples",
    ast.Dict: "dicts", ast.Set: "sets", ast.Lambda: "lambda", ast.ListComp: "comprehensions",
    ast.SetComp: "comprehensions", ast.DictComp: "comprehensions", ast.GeneratorExp: "comprehensions",
    ast.NamedExpr: "assignment (:=)", ast.JoinedStr: "strings", ast.Starred: "starred arguments",
    ast.Await: "await", ast.Yield: "yield", ast.YieldFrom: "yield",
}


class ExpressionError(ValueError):
    """An expression that cannot be used, and why, in words a profile author can act on."""

    def __init__(self, reason: str, expression: str = ""):
        self.reason = reason
        self.expression = expression if len(expression) <= 80 else expression[:77] + "..."
        super().__init__(f"expression {self.expression!r}: {reason}" if expression else reason)


@dataclass(frozen=True)
class Expression:
    source: str
    names: frozenset[str]
    _tree: ast.expr = field(repr=False, compare=False)

    def evaluate(self, env: Mapping[str, np.ndarray | float], *, seed: int = 0, size: int | None = None) -> np.ndarray:
        """Values at every point of ``env`` (arrays of equal length, or scalars). Raises
        ExpressionError naming the first point that is not a finite number, and why."""
        missing = self.names - set(env)
        if missing:
            raise ExpressionError(f"no value given for {', '.join(sorted(missing))}", self.source)
        arrays = [np.asarray(v, dtype=np.float64) for v in env.values()]
        if size is None:
            size = max((a.size for a in arrays if a.ndim > 0), default=1)
        interpreter = _Interpreter(env, size, seed, self.source)
        try:
            with np.errstate(all="ignore"):
                out = np.broadcast_to(np.asarray(interpreter.eval(self._tree), dtype=np.float64), (size,)).copy()
        except ExpressionError:
            raise
        except (ArithmeticError, ValueError, TypeError, MemoryError) as exc:
            raise ExpressionError(f"cannot be evaluated: {exc}", self.source) from None
        bad = ~np.isfinite(out)
        if bad.any():
            i = int(np.argmax(bad))
            raise ExpressionError(f"{interpreter.cause_at(i) or 'not a finite number'} {_where(env, i)}", self.source)
        return out


def _where(env, i: int) -> str:
    t = env.get("t")
    if t is not None and np.ndim(t) > 0:
        return f"at t={float(np.asarray(t)[i]):g}s (point {i})"
    return f"at point {i}"


def compile_expression(text: str) -> Expression:
    """Parse and check ``text``; raises ExpressionError for anything outside the language."""
    if not isinstance(text, str):
        raise ExpressionError(f"must be text, got {type(text).__name__}")
    if len(text) > MAX_LENGTH:
        raise ExpressionError(f"is {len(text):,} characters long; the limit is {MAX_LENGTH:,} characters",
                              text[:80])
    if not text.strip():
        raise ExpressionError("is empty")
    depth = deepest = 0
    for ch in text:
        if ch in "([{":
            depth += 1
            deepest = max(deepest, depth)
        elif ch in ")]}":
            depth -= 1
    if deepest > MAX_DEPTH:
        raise ExpressionError(f"nests brackets {deepest} deep; the limit is {MAX_DEPTH}", text)
    for run in _digit_runs(text):
        if run > MAX_LITERAL_DIGITS:
            raise ExpressionError(f"has a number literal of {run} digits; the limit is {MAX_LITERAL_DIGITS}", text)
    try:
        tree = ast.parse(text.strip(), mode="eval").body
    except SyntaxError as exc:
        raise ExpressionError(f"is not valid syntax at column {exc.offset}: {exc.msg}", text) from None
    except (RecursionError, MemoryError, ValueError):
        raise ExpressionError("is too complex to parse", text) from None
    names: set[str] = set()
    count = 0
    for node in ast.walk(tree):
        count += 1
        if count > MAX_NODES:
            raise ExpressionError(f"has more than {MAX_NODES} elements", text)
        _check(node, names, text)
    _check_powers(tree, text)
    return Expression(source=text, names=frozenset(names), _tree=tree)


def _digit_runs(text: str):
    run = 0
    for ch in text:
        if ch.isdigit():
            run += 1
        else:
            if run:
                yield run
            run = 0
    if run:
        yield run


def _check(node: ast.AST, names: set[str], text: str) -> None:
    if isinstance(node, ast.Constant):
        if isinstance(node.value, bool) or not isinstance(node.value, (int, float)):
            raise ExpressionError(f"only numbers are allowed as literals, not {node.value!r:.40}", text)
        if abs(node.value) > MAX_CONSTANT:
            raise ExpressionError(f"number {node.value:g} is larger than {MAX_CONSTANT:g}", text)
    elif isinstance(node, ast.Name):
        if node.id in VARIABLES:
            names.add(node.id)
        elif node.id not in CONSTANTS and node.id not in FUNCTIONS:
            raise ExpressionError(f"unknown name {node.id!r}; allowed: {_allowed()}", text)
    elif isinstance(node, ast.Call):
        if not isinstance(node.func, ast.Name):
            raise ExpressionError("only the listed functions can be called", text)
        if node.func.id not in FUNCTIONS:
            raise ExpressionError(f"unknown function {node.func.id!r}; allowed: {', '.join(sorted(FUNCTIONS))}", text)
        if node.keywords:
            raise ExpressionError(f"keyword arguments are not allowed (in {node.func.id}())", text)
        if any(isinstance(a, ast.Starred) for a in node.args):
            raise ExpressionError(f"starred arguments are not allowed (in {node.func.id}())", text)
        low, high = _ARITY[node.func.id]
        if not low <= len(node.args) <= high:
            want = str(low) if low == high else f"{low} to {high}"
            raise ExpressionError(f"{node.func.id}() takes {want} argument(s), got {len(node.args)}", text)
    elif isinstance(node, ast.BinOp):
        if type(node.op) not in _BINARY:
            raise ExpressionError(f"operator {type(node.op).__name__} is not allowed", text)
    elif isinstance(node, ast.UnaryOp):
        if not isinstance(node.op, (ast.USub, ast.UAdd, ast.Not)):
            raise ExpressionError(f"operator {type(node.op).__name__} is not allowed", text)
    elif isinstance(node, ast.Compare):
        if any(type(op) not in _COMPARE for op in node.ops):
            raise ExpressionError("only < <= > >= == != comparisons are allowed", text)
    elif isinstance(node, (ast.BoolOp, ast.IfExp, ast.Load, ast.operator, ast.unaryop, ast.cmpop, ast.boolop)):
        pass
    else:
        what = _NODE_NAMES.get(type(node), type(node).__name__)
        raise ExpressionError(f"{what} not allowed", text)


def _check_powers(tree: ast.expr, text: str) -> None:
    """Refuse exponents that are constant and huge (``9**9**9``) before evaluating anything."""
    for node in ast.walk(tree):
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Pow):
            exponent = _constant_value(node.right)
            if exponent is not None and (not np.isfinite(exponent) or abs(exponent) > MAX_EXPONENT):
                raise ExpressionError(f"exponent is too large (limit {MAX_EXPONENT:g}): overflow", text)


def _constant_value(node: ast.expr) -> float | None:
    """The float value of a constant sub-expression, computed in float64 so it can't blow up."""
    with np.errstate(all="ignore"):
        if isinstance(node, ast.Constant):
            return float(node.value)
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
            inner = _constant_value(node.operand)
            return None if inner is None else (-inner if isinstance(node.op, ast.USub) else inner)
        if isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
            left, right = _constant_value(node.left), _constant_value(node.right)
            if left is None or right is None:
                return None
            return float(_BINARY[type(node.op)](np.float64(left), np.float64(right)))
    return None


def _allowed() -> str:
    return ", ".join(sorted(VARIABLES | set(CONSTANTS))) + "; functions " + ", ".join(sorted(FUNCTIONS))


class _Interpreter:
    """Evaluates a checked tree with numpy; remembers where a division or log went wrong, so the
    error can say why a point is not finite rather than just that it is not."""

    def __init__(self, env, size: int, seed: int, source: str):
        self.env, self.size, self.seed, self.source = env, size, seed, source
        self.noise_calls = 0
        self.causes: list[tuple[np.ndarray, str]] = []

    def cause_at(self, i: int) -> str | None:
        for mask, cause in self.causes:
            if np.ndim(mask) == 0 and bool(mask) or np.ndim(mask) > 0 and bool(np.broadcast_to(mask, (self.size,))[i]):
                return cause
        return None

    def _note(self, mask, cause: str) -> None:
        if np.any(mask):
            self.causes.append((mask, cause))

    def eval(self, node: ast.expr):
        method = getattr(self, "_" + type(node).__name__)
        return method(node)

    def _Constant(self, node):
        return np.float64(node.value)

    def _Name(self, node):
        if node.id in CONSTANTS:
            return np.float64(CONSTANTS[node.id])
        if node.id in FUNCTIONS:
            raise ExpressionError(f"{node.id} is a function; call it as {node.id}(...)", self.source)
        return np.asarray(self.env[node.id], dtype=np.float64)

    def _UnaryOp(self, node):
        value = self.eval(node.operand)
        if isinstance(node.op, ast.Not):
            return np.logical_not(value).astype(np.float64)
        return -value if isinstance(node.op, ast.USub) else +value

    def _BinOp(self, node):
        left, right = self.eval(node.left), self.eval(node.right)
        if isinstance(node.op, (ast.Div, ast.FloorDiv, ast.Mod)):
            self._note(right == 0, "division by zero")
        result = _BINARY[type(node.op)](left, right)
        if isinstance(node.op, ast.Pow):
            self._note(~np.isfinite(result) & np.isfinite(left) & np.isfinite(right), "overflow or invalid power")
        return result

    def _Compare(self, node):
        left = self.eval(node.left)
        result = None
        for op, right_node in zip(node.ops, node.comparators):
            right = self.eval(right_node)
            part = _COMPARE[type(op)](left, right)
            result = part if result is None else np.logical_and(result, part)
            left = right
        return np.asarray(result, dtype=np.float64)

    def _BoolOp(self, node):
        values = [np.asarray(self.eval(v)) != 0 for v in node.values]
        combine = np.logical_and if isinstance(node.op, ast.And) else np.logical_or
        out = values[0]
        for v in values[1:]:
            out = combine(out, v)
        return np.asarray(out, dtype=np.float64)

    def _IfExp(self, node):
        return np.where(np.asarray(self.eval(node.test)) != 0, self.eval(node.body), self.eval(node.orelse))

    def _Call(self, node):
        name = node.func.id
        if name == "noise":
            return self._noise([self.eval(a) for a in node.args])
        args = [self.eval(a) for a in node.args]
        if name in _UNARY_FUNCS:
            (x,) = args
            if name in ("log", "log10"):
                self._note(x <= 0, f"{name} of a number that is not positive")
            elif name == "sqrt":
                self._note(x < 0, "sqrt of a negative number")
            elif name == "exp":
                self._note(x > 709, "exp overflow")
            return _UNARY_FUNCS[name](x)
        if name in ("min", "max"):
            fold = np.minimum if name == "min" else np.maximum
            out = args[0]
            for a in args[1:]:
                out = fold(out, a)
            return out
        if name == "clip":
            x, low, high = args
            return np.minimum(np.maximum(x, low), high)
        cond, a, b = args  # where
        return np.where(np.asarray(cond) != 0, a, b)

    def _noise(self, args):
        # Each call site draws its own stream (seed, call index), so noise(1) + noise(1) is not
        # 2 * noise(1), and the same expression with the same seed repeats exactly.
        rng = np.random.default_rng([int(self.seed) & 0xFFFFFFFF, self.noise_calls])
        self.noise_calls += 1
        sigma = args[0] if args else 1.0
        return rng.standard_normal(self.size) * sigma
