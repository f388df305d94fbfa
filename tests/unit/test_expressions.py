"""The expression language: parsing, static types, evaluation, limits; no input crashes it."""

from __future__ import annotations

import contextlib
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.runbook.evaluation import evaluate, explain, resolve
from engine.runbook.expressions import (
    MAX_DEPTH,
    MAX_EXPRESSION_LENGTH,
    ExpressionError,
    ExpressionSyntaxError,
    Scope,
    parse_expression,
    parse_template,
)
from engine.runbook.typecheck import Names, fits, infer

SCOPE = Scope(
    params={
        "size": 10,
        "stage": "prod",
        "ratio": 0.5,
        "names": ["orders", "payments"],
        "opt": None,
    },
    target={"project_id": "0f3c", "region": "cn-north-4", "name": "orders-prod", "endpoint": None},
    steps={"select": {"jobs": ["orders-1", "orders-2", "users-1"], "count": 3, "skipped": []}},
    env={"CHANGE_TICKET": "CHG-42"},
)
NAMES = Names(
    params={"size": "integer", "stage": "string", "ratio": "number", "names": "list[string]"},
    env=frozenset({"CHANGE_TICKET"}),
    steps={"select": (0, "drs.select_jobs"), "retry": (1, "drs.batch_retry"), "later": (3, None)},
    outputs={
        "drs.select_jobs": {"jobs": "list[string]", "count": "integer", "skipped": "list[string]"},
        "drs.batch_retry": {"accepted": "list[string]"},
    },
    here=2,
)


def value(text: str, scope: Scope = SCOPE) -> Any:
    return evaluate(parse_expression(text), scope)


def static(text: str) -> tuple[str, list[str]]:
    [node] = parse_template(text)
    assert not isinstance(node, str)
    kind, problems = infer(node, NAMES)
    return kind, [p.message for p in problems]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("${{ 1 }}", 1),
        ("${{ -2.5 }}", -2.5),
        ("${{ 'it''s' }}", "it's"),
        ('${{ "say ""hi""" }}', 'say "hi"'),
        ("${{ [1, 2, 3] }}", [1, 2, 3]),
        ("${{ true and not false }}", True),
        ("${{ null }}", None),
        ("${{ params.size }}", 10),
        ("${{ params.size >= 10 }}", True),
        ("${{ steps.select.count > 2 and length(steps.select.jobs) == 3 }}", True),
        ("${{ 'orders-1' in steps.select.jobs }}", True),
        ("${{ 'orders-9' not in steps.select.jobs }}", True),
        ("${{ 'prod' in target.name }}", True),
        ("${{ contains(params.names, 'orders') }}", True),
        ("${{ startsWith(target.region, 'cn-') and endsWith(target.name, '-prod') }}", True),
        ("${{ filter(steps.select.jobs, 'orders-*') }}", ["orders-1", "orders-2"]),
        ("${{ join(params.names, ',') }}", "orders,payments"),
        ("${{ format('{0}-{1}-{{x}}', params.stage, params.size) }}", "prod-10-{x}"),
        ("${{ env.CHANGE_TICKET }}", "CHG-42"),
        ("${{ 1 == 1.0 }}", True),
        ("${{ true == 1 }}", False),
        ("${{ (1 < 2) == (3 < 4) }}", True),
        ("${{ params.opt == null }}", True),
        ("  ${{ params.stage }}  ", "prod"),
    ],
)
def test_evaluates(text: str, expected: object) -> None:
    assert value(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("orders-${{ params.stage }}-*", "orders-prod-*"),
        ("${{ params.size }}/${{ params.ratio }}/${{ true }}/${{ params.opt }}", "10/0.5/true/"),
        ("no expression", "no expression"),
    ],
)
def test_interpolates_into_a_string(text: str, expected: str) -> None:
    assert value(text) == expected


def test_or_and_short_circuit() -> None:
    assert value("${{ true or steps.absent.x }}") is True
    assert value("${{ false and steps.absent.x }}") is False


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "${{ steps.verify.recovered }}",
            "steps.verify.recovered has no value: step 'verify' gave none",
        ),
        ("${{ env.HOME }}", "environment variable 'HOME' is not set"),
        ("x-${{ params.names }}", "cannot interpolate a list into a string"),
        ("${{ params.size < 'a' }}", "cannot compare integer with string"),
        ("${{ params.opt and true }}", "'and' needs boolean operands, got null"),
        ("${{ format('{2}', 1) }}", "format: {2} has no argument (1 given)"),
    ],
)
def test_runtime_failures_name_the_expression(text: str, message: str) -> None:
    with pytest.raises(ExpressionError) as caught:
        value(text)
    assert str(caught.value) == f"<expression>:1:1: {text}: {message}"
    assert caught.value.exit_code == 1


@pytest.mark.parametrize(
    ("text", "kind"),
    [
        ("${{ steps.select.jobs }}", "list[string]"),
        ("${{ length(steps.select.jobs) }}", "integer"),
        ("${{ [1, 2.5] }}", "list[number]"),
        ("${{ [] }}", "list[any]"),
        ("${{ filter(params.names, 'o*') }}", "list[string]"),
        ("${{ params.ratio }}", "number"),
        ("${{ -params.size }}", "integer"),
        ("${{ steps.select.count > 0 or params.stage == 'dev' }}", "boolean"),
        ("${{ params.size in [1, 10] }}", "boolean"),
        ("${{ target.endpoint == null }}", "boolean"),
    ],
)
def test_static_types(text: str, kind: str) -> None:
    assert static(text) == (kind, [])


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("${{ steps.select.jobs > 3 }}", "cannot compare list[string] with integer"),
        ("${{ params.stage == 1 }}", "cannot compare string with integer"),
        ("${{ not params.size }}", "'not' needs a boolean, got integer"),
        ("${{ -params.stage }}", "cannot negate string"),
        ("${{ params.size in params.names }}", "'in': cannot look for integer in list[string]"),
        ("${{ 1 in params.size }}", "'in' needs a list or a string on the right, got integer"),
        ("${{ [1, 'a'] }}", "list items must have one type, got integer and string"),
        ("${{ [[1]] }}", "lists of lists are not supported"),
        ("${{ length(params.size) }}", "length() needs a list or a string, got integer"),
        ("${{ length() }}", "length() takes 1 argument(s), got 0"),
        (
            "${{ startsWith(params.size, 'a') }}",
            "startsWith(): argument 1 must be string, got integer",
        ),
        ("${{ filter(params.names, 1) }}", "filter(): argument 2 must be string, got integer"),
        ("${{ format(params.names) }}", "format(): the template must be string, got list[string]"),
        (
            "${{ format('{0}', params.names) }}",
            "format(): cannot format list[string]; use join(...)",
        ),
        ("${{ format('{', 1) }}", "format(): stray '{'; write {{ for a brace"),
        (
            "${{ upper(params.stage) }}",
            "unknown function 'upper'; functions: contains, endsWith, filter, format, join,"
            " length, startsWith",
        ),
        ("${{ params }}", "expected params.<name>, got params"),
        (
            "${{ steps.retry.accepted.x }}",
            "expected steps.<id>.<output>, got steps.retry.accepted.x",
        ),
        ("${{ steps.later.x }}", "step 'later' is defined after this step"),
        ("${{ steps.nope.x }}", "unknown step 'nope'"),
        ("${{ env.PATH }}", "env 'PATH' is not allowed"),
        ("${{ params.sise }}", "unknown param 'sise'; params: names, ratio, size, stage"),
        (
            "${{ os.system }}",
            "unknown name 'os.system'; names start with params., target., steps. or env.",
        ),
    ],
)
def test_static_type_errors(text: str, message: str) -> None:
    assert static(text)[1] == [message]


@pytest.mark.parametrize(
    ("text", "offset", "message"),
    [
        ("${{ }}", 0, "empty expression"),
        ("${{ 1 +", 6, "unexpected character '+'"),
        ("${{ a.b", 0, "unterminated expression: missing '}}'"),
        ("${{ 'abc }}", 4, "unterminated string literal"),
        ("${{ a = b }}", 6, "unexpected character '='"),
        ("${{ a && b }}", 6, "unexpected character '&'"),
        ("${{ (1 }}", 7, "expected ')', got end of expression"),
        ("${{ 1 2 }}", 6, "unexpected '2'"),
        ("${{ a. }}", 7, "expected a name after '.', got end of expression"),
        ("${{ 1 < 2 < 3 }}", 10, "comparisons cannot be chained: '<' after '<'"),
        ("${{ and }}", 4, "expected a value, got 'and'"),
        ("${{ a[0] }}", 5, "unexpected '['"),
        ("${{ x ${{ y }} }}", 6, "unexpected character '$'"),
        ("${{ f(1,) }}", 8, "expected a value, got ')'"),
    ],
)
def test_syntax_errors_point_into_the_text(text: str, offset: int, message: str) -> None:
    with pytest.raises(ExpressionSyntaxError) as caught:
        parse_template(text)
    assert (caught.value.offset, caught.value.message) == (offset, message)


def test_dunder_names_are_just_unknown_names() -> None:
    assert static("${{ params.__class__ }}")[1] == [
        "unknown param '__class__'; params: names, ratio, size, stage"
    ]
    with pytest.raises(ExpressionError, match="has no value"):
        value("${{ params.__class__ }}")


def test_length_and_depth_limits() -> None:
    long = "${{ " + " or ".join(["true"] * 300) + " }}"
    with pytest.raises(ExpressionSyntaxError, match=f"longer than {MAX_EXPRESSION_LENGTH}"):
        parse_template(long)
    deep = "${{ " + "(" * (MAX_DEPTH + 1) + "1" + ")" * (MAX_DEPTH + 1) + " }}"
    with pytest.raises(ExpressionSyntaxError, match="nested too deeply"):
        parse_template(deep)
    assert value("${{ " + "(" * 10 + "1" + ")" * 10 + " }}") == 1


def test_fits() -> None:
    assert fits("integer", "number")
    assert not fits("number", "integer")
    assert fits("list[integer]", "list[number]")
    assert fits("any", "list[string]")
    assert fits("list[any]", "list[string]")
    assert not fits("string", "list[string]")


def test_resolve_leaves_non_expressions_alone() -> None:
    jobs = parse_expression("${{ steps.select.jobs }}")
    data = {"a": [jobs, ("x", 1)], "b": {"c": jobs}}
    assert resolve(data, SCOPE) == {
        "a": [["orders-1", "orders-2", "users-1"], ["x", 1]],
        "b": {"c": ["orders-1", "orders-2", "users-1"]},
    }


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # The assert of a drill's RTO: both sides with their values, said the way that holds.
        (
            "${{ steps.verify.drill_rto_p95_s <= params.budget }}",
            "steps.verify.drill_rto_p95_s = 6.04 > params.budget = 1",
        ),
        ("${{ steps.verify.drill_rto_p95_s < 5 }}", "steps.verify.drill_rto_p95_s = 6.04 >= 5"),
        ("${{ params.ratio >= 0.99 }}", "params.ratio = 0.5 < 0.99"),
        ("${{ params.stage == 'test' }}", "params.stage = 'prod' != 'test'"),
        (
            "${{ length(steps.select.jobs) > params.size }}",
            "length(steps.select.jobs) = 3 <= params.size = 10",
        ),
        ("${{ 'x' in steps.select.jobs }}", "'x' not in steps.select.jobs = a list of 3"),
        # An "and": the first part that is false.
        (
            "${{ params.size == 10 and params.ratio > 0.75 }}",
            "params.ratio = 0.5 <= 0.75",
        ),
    ],
)
def test_explain_names_both_sides_of_a_false_comparison(text: str, expected: str) -> None:
    scope = Scope(
        params={**SCOPE.params, "budget": 1.0},
        target=SCOPE.target,
        steps={**SCOPE.steps, "verify": {"drill_rto_p95_s": 6.04}},
        env=SCOPE.env,
    )
    assert evaluate(parse_expression(text), scope) is False
    assert explain(parse_expression(text), scope) == expected


@pytest.mark.parametrize(
    "text",
    [
        "${{ params.size == 10 }}",  # true: nothing to explain
        "${{ not (params.size == 10) }}",  # no comparison at the top
        "${{ steps.missing.x > 1 }}",  # a side has no value
        "size ${{ params.size }}",  # not a whole expression
    ],
)
def test_explain_gives_nothing_for_what_is_no_false_comparison(text: str) -> None:
    assert explain(parse_expression(text), SCOPE) is None


# ----------------------------------------------------------------------------- robustness

PIECES = [
    "${{",
    "}}",
    " ",
    "params.size",
    "steps.select.jobs",
    "target.name",
    "env.CHANGE_TICKET",
    "'a'",
    '"b"',
    "''",
    "1",
    "2.5",
    "-",
    "true",
    "null",
    "[",
    "]",
    "(",
    ")",
    ",",
    ".",
    "==",
    "!=",
    "<",
    ">=",
    "and",
    "or",
    "not",
    "in",
    "length(",
    "contains(",
    "format(",
    "filter(",
    "join(",
    "'{0}'",
    "x",
    "$",
    "{",
    "}",
    "=",
    "\\",
    "\n",
]


@settings(max_examples=500, deadline=None)
@given(st.lists(st.sampled_from(PIECES), max_size=30))
def test_random_expressions_only_raise_the_engines_errors(pieces: list[str]) -> None:
    text = "".join(pieces)
    offset: int | None = None
    try:
        parts = parse_template(text)
    except ExpressionSyntaxError as exc:
        offset = exc.offset
    if offset is not None:
        assert 0 <= offset <= len(text)
        return
    for part in parts:
        if not isinstance(part, str):
            infer(part, NAMES)  # never raises
    with contextlib.suppress(ExpressionError):
        evaluate(parse_expression(text), SCOPE)


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=60))
def test_random_text_inside_an_expression_never_crashes(inner: str) -> None:
    text = "${{ " + inner + " }}"
    try:
        [node] = parse_template(text)
    except ExpressionSyntaxError:
        return
    assert not isinstance(node, str)
    infer(node, NAMES)
