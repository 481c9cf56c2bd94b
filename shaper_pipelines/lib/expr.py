"""Shaper's expression language for custom load patterns.

Users write arithmetic over time, such as ``50 + 30 * sin(2 * pi * t / 86400) + noise(2)``, in YAML
files and over HTTP, so the text is hostile until proven otherwise. It never reaches ``eval``:
Python's evaluator reaches every object in the process through attributes, calls and unbounded
integer arithmetic, and no list of forbidden names closes all of those doors. Instead the text is
parsed with ``ast.parse`` and rebuilt node by node from a whitelist, so anything not named here is
refused, including syntax that later Pythons add.

Each node becomes a closure applying one numpy operation to the whole time axis: a month of
one-second points costs a few array passes, not millions of Python calls. Arithmetic is float64
only; constant parts are folded at compile time in float math (``9**9**9`` is an overflow, not a
billion-digit integer), and a point that is not finite is an error naming the point and the cause.

Length, bracket depth and literal size are checked before ``ast.parse``, because the parser itself
can be made to recurse or allocate a lot; the node limit then bounds compiling and evaluating.
"""

from __future__ import annotations

import ast
import math
import re
from dataclasses import dataclass, field
from functools import reduce
from typing import Callable, Mapping

import numpy as np

MAX_LENGTH = 4000
MAX_DEPTH = 50
MAX_NODES = 500
MAX_LITERAL_CHARS = 40
MAX_EXPONENT = 1000.0

VARIABLES = frozenset({"t", "duration", "hour", "weekday", "day_of_month", "minute"})
CONSTANTS = {"pi": math.pi, "e": math.e}
_UNARY = {
    "sin": np.sin, "cos": np.cos, "tan": np.tan, "exp": np.exp, "log": np.log, "log10": np.log10,
    "sqrt": np.sqrt, "abs": np.abs, "floor": np.floor, "ceil": np.ceil, "round": np.round,
}
_EXP_LIMIT = math.log(np.finfo(np.float64).max)
# Inputs that make a function's result not finite, so the error can say why.
_DOMAIN = {
    "log": (lambda x: x <= 0, "log of a non-positive number"),
    "log10": (lambda x: x <= 0, "log10 of a non-positive number"),
    "sqrt": (lambda x: x < 0, "sqrt of a negative number"),
    "exp": (lambda x: x > _EXP_LIMIT, "overflow in exp"),
}
# (fewest, most) arguments; None: any number.
_ARITY = {**dict.fromkeys(_UNARY, (1, 1)), "min": (2, None), "max": (2, None), "clip": (3, 3),
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
# Names for what users most often try; anything else is refused under its ast class name.
_REFUSED = {
    ast.Attribute: "attribute access (.name)", ast.Subscript: "indexing (x[...])", ast.List: "a list",
    ast.Tuple: "a tuple", ast.Dict: "a dict", ast.Set: "a set", ast.Lambda: "lambda",
    ast.ListComp: "a comprehension", ast.GeneratorExp: "a comprehension", ast.NamedExpr: "assignment (:=)",
    ast.JoinedStr: "an f-string", ast.BitXor: "^ (use ** for powers)", ast.BitAnd: "&", ast.BitOr: "|",
    ast.LShift: "<<", ast.RShift: ">>", ast.MatMult: "@", ast.Invert: "~", ast.Is: "'is'", ast.In: "'in'",
}
_ALLOWED = (f"variables {', '.join(sorted(VARIABLES))}; constants {', '.join(sorted(CONSTANTS))}; "
            f"functions {', '.join(sorted(FUNCTIONS))}")
# A number as the tokenizer reads it, suffixes included, so 0xfff... and 1_000_... count whole.
_NUMBER = re.compile(r"(?<![\w.])\.?\d[\w.]*")


class ExpressionError(ValueError):
    """Why an expression cannot be used, in words a profile author can act on."""

    def __init__(self, reason: str, expression: str = ""):
        self.reason = reason
        self.expression = expression if len(expression) <= 80 else expression[:77] + "..."
        super().__init__(f"expression {self.expression!r}: {reason}")

    def __reduce__(self):  # errors cross process boundaries in job runners
        return type(self), (self.reason, self.expression)


def compile_expression(text: str) -> Expression:
    """Parse and check ``text``; raises ExpressionError for anything outside the language."""
    if not isinstance(text, str):
        raise ExpressionError(f"must be text, not {type(text).__name__}")
    if len(text) > MAX_LENGTH:
        raise ExpressionError(f"is {len(text):,} characters long; the limit is {MAX_LENGTH:,}", text)
    body = text.strip()
    if not body:
        raise ExpressionError("is empty", text)
    _prescan(body, text)
    try:
        tree = ast.parse(body, mode="eval").body
    except SyntaxError as exc:
        raise ExpressionError(f"invalid syntax at {_position(exc, text, body)}: {exc.msg}", text) from None
    except (RecursionError, MemoryError, ValueError, OverflowError):
        raise ExpressionError("is too deeply nested or too large to parse", text) from None
    for count, _ in enumerate(ast.walk(tree), 1):
        if count > MAX_NODES:
            raise ExpressionError(f"has more than {MAX_NODES} elements; the limit is {MAX_NODES}", text)
    compiler = _Compiler(text)
    fn = compiler.build(tree)
    return Expression(source=text, names=frozenset(compiler.names), _fn=fn)


def _position(exc: SyntaxError, text: str, body: str) -> str:
    """Where a syntax error is in the text as written (the parser saw it stripped)."""
    if not exc.offset:  # the parser ran out of input
        return "the end"
    lead = text[: text.index(body[0])]
    if exc.lineno == 1:
        return f"column {exc.offset + len(lead) - lead.rfind(chr(10)) - 1}"
    return f"line {exc.lineno + lead.count(chr(10))}, column {exc.offset}"


def _prescan(body: str, text: str) -> None:
    depth = deepest = 0
    for ch in body:
        if ch in "([{":
            depth += 1
            deepest = max(deepest, depth)
        elif ch in ")]}":
            depth -= 1
        elif ch < " " and ch not in "\t\n\r":
            raise ExpressionError(f"contains the control character {ch!r}", text)
    if deepest > MAX_DEPTH:
        raise ExpressionError(f"nests brackets {deepest} deep; the limit is {MAX_DEPTH}", text)
    longest = max(_NUMBER.findall(body), key=len, default="")
    if len(longest) > MAX_LITERAL_CHARS:
        raise ExpressionError(f"has a number literal of {len(longest)} characters; "
                              f"the limit is {MAX_LITERAL_CHARS}", text)


@dataclass(frozen=True)
class Expression:
    """A checked expression, ready to be evaluated any number of times."""

    source: str
    names: frozenset[str]
    _fn: Callable[[_Run], np.ndarray] = field(repr=False, compare=False)

    def evaluate(self, env: Mapping[str, np.ndarray | float], *, seed: int = 0,
                 size: int | None = None) -> np.ndarray:
        """Values at every point of ``env`` (arrays of equal length, or scalars) as float64. Raises
        ExpressionError naming the first point that is not a finite number, and why."""
        missing = self.names - set(env)
        if missing:
            raise ExpressionError(f"needs a value for {', '.join(sorted(missing))}", self.source)
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
            raise ExpressionError(f"seed must be an integer, not {seed!r:.40}", self.source)
        try:
            with np.errstate(all="ignore"):
                arrays = {k: np.asarray(v, dtype=np.float64) for k, v in env.items() if k in VARIABLES}
                shape = np.broadcast_shapes(*(a.shape for a in arrays.values()))
                if len(shape) > 1:
                    raise ExpressionError("variables must be numbers or 1-D arrays", self.source)
                n = (shape[0] if shape else 1) if size is None else int(size)
                np.broadcast_shapes(shape, (n,))
                run = _Run(arrays, n, int(seed))
                out = np.array(np.broadcast_to(self._fn(run), (n,)), dtype=np.float64)
        except ExpressionError:
            raise
        except (ArithmeticError, ValueError, TypeError, MemoryError, RecursionError) as exc:
            raise ExpressionError(f"cannot be evaluated: {exc}", self.source) from None
        finite = np.isfinite(out)
        if not finite.all():
            i = int(np.argmin(finite))
            cause = run.cause_at(i) or ("overflow" if np.isinf(out[i]) else "the result is not a number")
            where = f"t={float(np.broadcast_to(arrays['t'], (n,))[i]):.10g}s, " if "t" in arrays else ""
            raise ExpressionError(f"{cause} at {where}index {i}", self.source)
        return out


class _Run:
    """One evaluation: its inputs, and every place a division or log went wrong, so the final
    error can say why a point is not finite rather than only that it is not."""

    def __init__(self, env: dict[str, np.ndarray], size: int, seed: int):
        self.env, self.size, self.seed = env, size, seed
        self.causes: list[tuple[np.ndarray, str]] = []

    def note(self, mask, cause: str) -> None:
        if np.any(mask):
            self.causes.append((mask, cause))

    def cause_at(self, i: int) -> str | None:
        for mask, cause in self.causes:
            if np.ndim(mask) == 0 or np.broadcast_to(mask, (self.size,))[i]:
                return cause
        return None


class _Const:
    """A value known at compile time, so parents whose inputs are all constant fold too."""

    __slots__ = ("value",)

    def __init__(self, value: float):
        self.value = np.float64(value)

    def __call__(self, run: _Run) -> np.float64:
        return self.value


class _Compiler:
    """Turns a parsed tree into closures, refusing every node that is not on the whitelist."""

    def __init__(self, text: str):
        self.text = text
        self.names: set[str] = set()
        self.noise_sites = 0

    def fail(self, reason: str) -> ExpressionError:
        return ExpressionError(reason, self.text)

    def refuse(self, node: ast.AST) -> ExpressionError:
        return self.fail(f"{_REFUSED.get(type(node), type(node).__name__)} is not allowed")

    def build(self, node: ast.AST) -> Callable:
        kind = type(node).__name__
        if kind not in ("Constant", "Name", "UnaryOp", "BinOp", "Compare", "BoolOp", "IfExp", "Call"):
            raise self.refuse(node)
        return getattr(self, "_" + kind)(node)

    def fold(self, fn: Callable, *children: Callable) -> Callable:
        """``fn`` if any input varies; otherwise its value, computed now in float64."""
        if not all(isinstance(c, _Const) for c in children):
            return fn
        run = _Run({}, 1, 0)
        with np.errstate(all="ignore"):
            value = float(fn(run))
        if not math.isfinite(value):
            raise self.fail(f"{run.cause_at(0) or 'overflow'} in a constant part of the expression")
        return _Const(value)

    def _Constant(self, node: ast.Constant) -> Callable:
        value = node.value
        if isinstance(value, bool):
            raise self.fail("booleans (True/False) are not allowed; write 1 or 0")
        if not isinstance(value, (int, float)):
            raise self.fail(f"only numbers are allowed as literals, not {type(value).__name__} {value!r:.20}")
        number = float(value)  # cannot overflow: the pre-scan keeps integer literals short
        if not math.isfinite(number):
            raise self.fail("a number literal is too large for a 64-bit float")
        return _Const(number)

    def _Name(self, node: ast.Name) -> Callable:
        name = node.id
        if name in VARIABLES:
            self.names.add(name)
            return lambda run: run.env[name]
        if name in CONSTANTS:
            return _Const(CONSTANTS[name])
        if name in FUNCTIONS:
            raise self.fail(f"{name} is a function; call it as {name}(...)")
        raise self.fail(f"unknown name {name[:40]!r}; allowed: {_ALLOWED}")

    def _UnaryOp(self, node: ast.UnaryOp) -> Callable:
        x = self.build(node.operand)
        if isinstance(node.op, ast.UAdd):
            return x
        if isinstance(node.op, ast.USub):
            return self.fold(lambda run: np.negative(x(run)), x)
        if isinstance(node.op, ast.Not):
            return self.fold(lambda run: (x(run) == 0).astype(np.float64), x)
        raise self.refuse(node.op)

    def _BinOp(self, node: ast.BinOp) -> Callable:
        ufunc = _BINARY.get(type(node.op))
        if ufunc is None:
            raise self.refuse(node.op)
        left, right = self.build(node.left), self.build(node.right)
        if isinstance(node.op, (ast.Div, ast.FloorDiv, ast.Mod)):
            def fn(run):
                divisor = right(run)
                run.note(divisor == 0, "division by zero")
                return ufunc(left(run), divisor)
        elif isinstance(node.op, ast.Pow):
            if isinstance(right, _Const) and abs(right.value) > MAX_EXPONENT:
                raise self.fail(f"overflow: exponent {right.value:g} is beyond the limit of {MAX_EXPONENT:g}")

            def fn(run):
                out = ufunc(left(run), right(run))
                run.note(~np.isfinite(out), "overflow in ** (or a fractional power of a negative number)")
                return out
        else:
            def fn(run):
                return ufunc(left(run), right(run))
        return self.fold(fn, left, right)

    def _Compare(self, node: ast.Compare) -> Callable:
        ufuncs = [_COMPARE.get(type(op)) for op in node.ops]
        if None in ufuncs:
            raise self.refuse(node.ops[ufuncs.index(None)])
        operands = [self.build(n) for n in (node.left, *node.comparators)]

        def fn(run):
            values = [f(run) for f in operands]
            parts = (u(a, b) for u, a, b in zip(ufuncs, values, values[1:]))
            return np.asarray(reduce(np.logical_and, parts), dtype=np.float64)
        return self.fold(fn, *operands)

    def _BoolOp(self, node: ast.BoolOp) -> Callable:
        operands = [self.build(v) for v in node.values]
        combine = np.logical_and if isinstance(node.op, ast.And) else np.logical_or
        return self.fold(lambda run: np.asarray(reduce(combine, (f(run) != 0 for f in operands)),
                                                dtype=np.float64), *operands)

    def _IfExp(self, node: ast.IfExp) -> Callable:
        test, body, orelse = self.build(node.test), self.build(node.body), self.build(node.orelse)
        return self.fold(lambda run: np.where(test(run) != 0, body(run), orelse(run)), test, body, orelse)

    def _Call(self, node: ast.Call) -> Callable:
        if not isinstance(node.func, ast.Name):
            raise self.fail(f"only these functions can be called: {', '.join(sorted(FUNCTIONS))}")
        name = node.func.id
        if name not in FUNCTIONS:
            raise self.fail(f"unknown function {name[:40]!r}; allowed: {', '.join(sorted(FUNCTIONS))}")
        if node.keywords:
            raise self.fail(f"keyword arguments are not allowed (in {name}())")
        if any(isinstance(a, ast.Starred) for a in node.args):
            raise self.fail(f"starred arguments are not allowed (in {name}())")
        fewest, most = _ARITY[name]
        if len(node.args) < fewest or (most is not None and len(node.args) > most):
            if most is None:
                want = f"at least {fewest} arguments"
            elif fewest == most:
                want = f"{fewest} argument" + ("" if fewest == 1 else "s")
            else:
                want = f"{fewest} or {most} arguments"
            raise self.fail(f"{name}() takes {want}, got {len(node.args)}")
        args = [self.build(a) for a in node.args]
        if name == "noise":
            return self._noise(args[0] if args else _Const(1.0))
        if name in _UNARY:
            fn = self._unary(name, args[0])
        elif name in ("min", "max"):
            ufunc = np.minimum if name == "min" else np.maximum
            fn = lambda run: reduce(ufunc, (f(run) for f in args))  # noqa: E731
        elif name == "clip":
            x, low, high = args
            fn = lambda run: np.minimum(np.maximum(x(run), low(run)), high(run))  # noqa: E731
        else:
            cond, a, b = args
            fn = lambda run: np.where(cond(run) != 0, a(run), b(run))  # noqa: E731
        return self.fold(fn, *args)

    def _noise(self, sigma: Callable) -> Callable:
        # Each call site owns the stream (seed, site): two noise() calls differ from each other,
        # yet the same expression with the same seed and size repeats exactly.
        site = self.noise_sites
        self.noise_sites += 1

        def fn(run):
            rng = np.random.default_rng([run.seed % 2**64, site])
            return rng.standard_normal(run.size) * sigma(run)
        return fn

    @staticmethod
    def _unary(name: str, x: Callable) -> Callable:
        ufunc, (outside, cause) = _UNARY[name], _DOMAIN.get(name, (None, ""))
        if outside is None:
            return lambda run: ufunc(x(run))

        def fn(run):
            value = x(run)
            run.note(outside(value), cause)
            return ufunc(value)
        return fn
