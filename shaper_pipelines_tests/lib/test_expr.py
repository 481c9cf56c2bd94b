"""The expression language: correct values, and hostile input refused fast and clearly."""

from __future__ import annotations

import pickle
import time

import numpy as np
import pytest

from shaper_pipelines.lib.expr import (
    FUNCTIONS,
    MAX_DEPTH,
    MAX_LENGTH,
    MAX_NODES,
    VARIABLES,
    ExpressionError,
    compile_expression,
)

T = np.arange(0.0, 10.0)


def ev(text: str, **env):
    env.setdefault("t", T)
    return compile_expression(text).evaluate(env)


def refused(text: str) -> ExpressionError:
    started = time.perf_counter()
    with pytest.raises(ExpressionError) as err:
        compile_expression(text)
    assert time.perf_counter() - started < 1.0  # a hang guard, not a speed claim
    assert len(str(err.value)) < 1000  # a megabyte of input is not echoed back
    return err.value


def test_public_names():
    assert VARIABLES == {"t", "duration", "hour", "weekday", "day_of_month", "minute"}
    assert FUNCTIONS == {"sin", "cos", "tan", "exp", "log", "log10", "sqrt", "abs", "floor", "ceil", "round",
                         "min", "max", "clip", "where", "noise"}


@pytest.mark.parametrize(
    "text, expected",
    [
        ("2 * t + 1", 2 * T + 1),
        ("t ** 2 - t // 3 + t % 4 - t / 2", T**2 - T // 3 + T % 4 - T / 2),
        ("max(t, 3, 5 - t)", np.maximum(np.maximum(T, 3), 5 - T)),
        ("min(t, 8, 2 * t, 7)", np.minimum.reduce([T, np.full(10, 8.0), 2 * T, np.full(10, 7.0)])),
        ("clip(t, 2, 6)", np.clip(T, 2, 6)),
        ("where(t > 4, 1, -1)", np.where(T > 4, 1.0, -1.0)),
        ("1 if t >= 5 else 0.5", np.where(T >= 5, 1.0, 0.5)),
        ("2 < t <= 6", ((T > 2) & (T <= 6)).astype(float)),
        ("1 < 2 < t != 7", ((T > 2) & (T != 7)).astype(float)),
        ("(t > 2) and not (t > 7)", ((T > 2) & ~(T > 7)).astype(float)),
        ("(t < 1) or (t > 8)", ((T < 1) | (T > 8)).astype(float)),
        ("sin(pi * t / 2) + cos(t) * exp(-t) + sqrt(t) + abs(-t) + floor(t / 3) + ceil(t / 3)",
         np.sin(np.pi * T / 2) + np.cos(T) * np.exp(-T) + np.sqrt(T) + T + np.floor(T / 3) + np.ceil(T / 3)),
        ("log(t + 1) + log10(t + 1) + round(t / 4) + tan(t / 10) + e", np.log(T + 1) + np.log10(T + 1)
         + np.round(T / 4) + np.tan(T / 10) + np.e),
        ("-t + +t", np.zeros(10)),
        ("-2 ** 2 + 0x10 + 1_000 + .5e1", np.full(10, -4 + 16 + 1000 + 5.0)),
    ],
)
def test_values_match_numpy(text, expected):
    out = ev(text)
    assert out.dtype == np.float64 and out.shape == (10,)
    assert np.allclose(out, expected)


def test_calendar_variables_and_scalar_duration():
    hour = np.array([8.0, 9.0, 12.0, 17.0])
    weekday = np.array([0.0, 2.0, 5.0, 6.0])
    out = ev("(hour >= 9) * (hour < 17) * (weekday < 5) + t / duration", t=np.arange(4.0), hour=hour,
             weekday=weekday, duration=4.0)
    assert np.allclose(out, [0, 1.25, 0.5, 0.75])


def test_business_hours_example_from_the_docs():
    hour = np.array([3.0, 10.0, 10.0, 16.5, 17.0])
    weekday = np.array([1.0, 1.0, 6.0, 4.0, 4.0])
    expected = np.clip(0.2 + 0.6 * (hour >= 9) * (hour < 17) * (weekday < 5), 0, 1)
    text = "clip(0.2 + 0.6 * (hour >= 9) * (hour < 17) * (weekday < 5), 0, 1)"
    out = compile_expression(text).evaluate({"hour": hour, "weekday": weekday})
    assert np.allclose(out, expected) and out.tolist() == [0.2, 0.8, 0.2, 0.8, 0.2]


def test_minute_and_day_of_month():
    out = compile_expression("minute / 60 + (day_of_month == 1)").evaluate(
        {"minute": np.array([0.0, 30.0]), "day_of_month": np.array([1.0, 2.0])})
    assert out.tolist() == [1.0, 0.5]


def test_constant_expression_is_broadcast():
    out = compile_expression("3 * 2").evaluate({"t": T})
    assert out.shape == (10,) and np.all(out == 6)
    assert compile_expression("1").evaluate({}, size=5).tolist() == [1, 1, 1, 1, 1]
    assert compile_expression("pi").evaluate({"duration": 60.0}, size=3).tolist() == [np.pi] * 3


def test_result_is_a_fresh_array():
    out = compile_expression("t").evaluate({"t": T})
    out[0] = 99
    assert T[0] == 0


def test_noise_is_seeded_and_per_call_site():
    big = {"t": np.arange(100_000.0)}
    a = compile_expression("noise(2)").evaluate(big, seed=1)
    b = compile_expression("noise(2)").evaluate(big, seed=1)
    c = compile_expression("noise(2)").evaluate(big, seed=2)
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    assert abs(a.mean()) < 0.05 and abs(a.std() - 2) < 0.05
    unit = compile_expression("noise()").evaluate(big, seed=1)
    assert abs(unit.std() - 1) < 0.02
    two = compile_expression("noise() - noise()")
    first, again = two.evaluate(big, seed=1), two.evaluate(big, seed=1)
    assert np.array_equal(first, again)
    assert first.std() > 1.3  # two independent streams, not x - x
    assert compile_expression("noise()").evaluate({}, seed=-3, size=4).shape == (4,)


def test_names_used_are_reported():
    assert compile_expression("hour * t + sin(pi)").names == {"hour", "t"}
    assert compile_expression("2 * pi").names == frozenset()


def test_a_month_of_seconds_evaluates():
    t = np.arange(30 * 86400, dtype=np.float64)
    out = compile_expression("50 + 30 * sin(2 * pi * t / 86400) + noise(2)").evaluate({"t": t})
    assert out.shape == t.shape and out.dtype == np.float64
    assert abs(out.mean() - 50) < 0.1


HOSTILE = [
    ("__import__('os')", "unknown function '__import__'"),
    ("().__class__.__bases__", "attribute access"),
    ("t.__class__", "attribute access"),
    ("sin.__call__(t)", "only these functions can be called"),
    ("[1, 2]", "a list is not allowed"),
    ("{}", "a dict is not allowed"),
    ("{1}", "a set is not allowed"),
    ("(1, 2)", "a tuple is not allowed"),
    ("lambda: 1", "lambda is not allowed"),
    ("t[0]", "indexing"),
    ("'abc'", "only numbers"),
    ("b'abc'", "only numbers"),
    ("f'{t}'", "f-string"),
    ("(a := 1)", "assignment"),
    ("[x for x in t]", "comprehension"),
    ("sum(x for x in t)", "unknown function 'sum'"),
    ("max(*t)", "starred arguments are not allowed"),
    ("clip(t, lo=0, hi=1)", "keyword arguments are not allowed"),
    ("True + t", "booleans"),
    ("1j * t", "only numbers"),
    ("t ^ 2", "use ** for powers"),
    ("t is t", "'is' is not allowed"),
    ("9**9**9", "overflow"),
    ("10**400", "overflow"),
    ("t ** 10000", "overflow"),
    ("2 ** -1001 * t", "overflow"),
    ("1" + "0" * 400, "number literal"),
    ("0x" + "f" * 400, "number literal"),
    ("1_" * 300 + "1", "number literal"),
    ("1e400", "too large"),
    ("(" * 10_000 + "1" + ")" * 10_000, f"the limit is {MAX_LENGTH:,}"),
    ("(" * (MAX_DEPTH + 1) + "t" + ")" * (MAX_DEPTH + 1), f"the limit is {MAX_DEPTH}"),
    ("t + " * 300_000 + "t", "limit is 4,000"),
    ("1+" * 500_000 + "1", "characters"),
    ("t" + "+t" * 300, f"more than {MAX_NODES} elements"),
    ("-" * 400 + "1", f"more than {MAX_NODES} elements"),
    ("-" * 3000 + "1", "too deeply nested"),
    ("foo + 1", "unknown name 'foo'; allowed: variables day_of_month, duration, hour"),
    ("sinx(t)", "unknown function 'sinx'; allowed: abs, ceil"),
    ("print(1)", "unknown function 'print'"),
    ("t(1)", "unknown function 't'"),
    ("sin + 1", "sin is a function"),
    ("sin(t, t)", "sin() takes 1 argument, got 2"),
    ("clip(t)", "clip() takes 3 arguments, got 1"),
    ("max(t)", "max() takes at least 2 arguments, got 1"),
    ("noise(1, 2)", "noise() takes 0 or 1 arguments, got 2"),
    ("1 / 0 + t", "division by zero"),
    ("log(0)", "log of a non-positive number"),
    ("", "empty"),
    ("   \n ", "empty"),
    ("t\x00", "control character"),
    ("t +", "invalid syntax"),
    ("t + 1 = 2", "invalid syntax"),
    ("t if t", "invalid syntax"),
    ("import os", "invalid syntax"),
]


@pytest.mark.parametrize("text, words", HOSTILE)
def test_hostile_input_is_refused_fast_and_clearly(text, words):
    assert words in refused(text).reason


def test_syntax_errors_give_the_column_as_written():
    assert "column 7" in refused("  t + * 2").reason
    assert "line 2" in refused("(t +\n * 2)").reason


def test_error_carries_the_expression_truncated_and_the_reason():
    err = refused("t + " * 2000)
    assert len(err.expression) == 80 and err.expression.startswith("t + t + ")
    assert err.reason == "is 8,000 characters long; the limit is 4,000"
    assert err.reason in str(err) and isinstance(err, ValueError)
    copy = pickle.loads(pickle.dumps(err))
    assert (copy.reason, copy.expression, str(copy)) == (err.reason, err.expression, str(err))


def test_a_megabyte_is_refused_well_under_50_ms():
    text = "t+" * 500_000 + "t"
    started = time.perf_counter()
    with pytest.raises(ExpressionError, match="limit"):
        compile_expression(text)
    assert time.perf_counter() - started < 0.05


def test_long_but_legal_expression_compiles():
    text = " + ".join(f"{i} * sin(t / {i + 1})" for i in range(20))
    assert len(text) < MAX_LENGTH
    assert np.isfinite(compile_expression(text).evaluate({"t": T})).all()


@pytest.mark.parametrize(
    "text, words, at",
    [
        ("1 / (t - 5)", "division by zero", "t=5s, index 5"),
        ("t % (t - 3)", "division by zero", "t=3s, index 3"),
        ("t // (t - 4)", "division by zero", "t=4s, index 4"),
        ("log(t)", "log of a non-positive number", "t=0s, index 0"),
        ("log10(t - 2)", "log10 of a non-positive number", "t=0s, index 0"),
        ("sqrt(t - 4)", "sqrt of a negative number", "t=0s, index 0"),
        ("exp(t * 100)", "overflow in exp", "t=8s, index 8"),
        ("(t + 1) ** 400", "overflow in **", "t=5s, index 5"),
        ("(t - 5) ** 0.5", "fractional power of a negative number", "t=0s, index 0"),
        ("1e307 * t * t", "overflow", "t=5s, index 5"),
    ],
)
def test_points_that_are_not_finite_are_named(text, words, at):
    with pytest.raises(ExpressionError) as err:
        ev(text)
    assert words in err.value.reason and at in err.value.reason


def test_division_by_zero_in_an_unused_branch_is_fine():
    expected = np.where(T == 5, 0, 1 / np.where(T == 5, 1, T - 5))
    assert np.allclose(ev("where(t == 5, 0, 1 / (t - 5))"), expected)
    assert np.allclose(ev("0 if t == 5 else 1 / (t - 5)"), expected)


def test_error_without_t_names_the_index():
    with pytest.raises(ExpressionError, match=r"log of a non-positive number at index 2$"):
        compile_expression("log(hour)").evaluate({"hour": np.array([2.0, 1.0, 0.0])})


def test_t_at_large_offsets_is_printed_in_full():
    t = np.arange(2_591_990.0, 2_592_000.0)
    with pytest.raises(ExpressionError, match=r"t=2591995s, index 5"):
        compile_expression("1 / (t - 2591995)").evaluate({"t": t})


@pytest.mark.parametrize(
    "env, kwargs, words",
    [
        ({"t": "abc"}, {}, "cannot be evaluated"),
        ({"t": np.arange(3.0), "hour": np.arange(4.0)}, {}, "cannot be evaluated"),
        ({"t": np.ones((2, 2))}, {}, "1-D"),
        ({"t": T}, {"size": 4}, "cannot be evaluated"),
        ({"t": T}, {"seed": 1.5}, "seed must be an integer"),
        ({}, {}, "needs a value for t"),
    ],
)
def test_bad_environments_are_expression_errors(env, kwargs, words):
    with pytest.raises(ExpressionError, match=words):
        compile_expression("t + hour * 0" if "hour" in env else "t").evaluate(env, **kwargs)


def test_non_text_is_refused():
    with pytest.raises(ExpressionError, match="must be text"):
        compile_expression(42)  # type: ignore[arg-type]
