"""Lone surrogates: read as U+FFFD where a server's answer enters, so every report can be written;
refused where the user's environment gives one.

A JSON escape of half a UTF-16 pair ("\\ud800") and a header's bytes that are not UTF-8 are what a
hostile or broken server sends; a pair ("\\ud83d\\ude00") is one character and is kept. The
runbook's own escapes, the command line and credentials are tested with their parsers.
"""

from __future__ import annotations

import json
from pathlib import Path

import orjson
import pytest

from engine.actions.catalog import CATALOG
from engine.api import transport
from engine.api.transport import HttpResponse, error_fields, json_body
from engine.errors import UsageError
from engine.run.inputs import env_of
from engine.runbook import load_runbook
from engine.surrogates import (
    described,
    lone_surrogate_at,
    replace_lone_surrogate_escapes,
    replace_lone_surrogates,
)


@pytest.mark.parametrize(
    ("written", "read"),
    [
        (rb'"\ud800x"', rb'"\ufffdx"'),  # a high half alone
        (rb'"x\udfff"', rb'"x\ufffd"'),  # a low half alone
        (rb'"\uDBFF\uDC00"', rb'"\uDBFF\uDC00"'),  # a pair, in capitals: kept
        (rb'"\ud83d\ude00 \ud83d"', rb'"\ud83d\ude00 \ufffd"'),  # a pair, then a high half
        (rb'"\ud800\ud83d\ude00"', rb'"\ufffd\ud83d\ude00"'),  # a high half, then a pair
        (rb'"\udc00\ud800"', rb'"\ufffd\ufffd"'),  # low then high: no pair, the wrong way round
        (rb'"\\ud800"', rb'"\\ud800"'),  # an escaped backslash, then the text "ud800"
        (rb'"\\\ud800"', rb'"\\\ufffd"'),  # an escaped backslash, then an escape
        (rb'"\u00e9\u20ac"', rb'"\u00e9\u20ac"'),  # escapes of whole characters
    ],
)
def test_escapes_of_lone_surrogates_are_rewritten_and_pairs_kept(
    written: bytes, read: bytes
) -> None:
    assert replace_lone_surrogate_escapes(written) == read


def test_an_answer_with_lone_surrogates_reads_them_as_replacement_characters() -> None:
    body = json.dumps(
        {"jobs": [{"name": "\ud800x", "\udfffkey": ["\U0001f600", "a\udc00b"]}]}
    ).encode()
    assert b"\\ud800x" in body  # json.dumps escapes what it cannot write otherwise
    document = json_body(body)
    assert document == {"jobs": [{"name": "\ufffdx", "\ufffdkey": ["\U0001f600", "a\ufffdb"]}]}
    orjson.dumps(document)  # what report.json and the journal do: it raised TypeError before


def test_an_answer_without_lone_surrogates_is_read_once_and_nothing_is_searched(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def searched(body: bytes) -> bytes:
        raise AssertionError("a body orjson reads needs no search")

    monkeypatch.setattr(transport, "replace_lone_surrogate_escapes", searched)
    body = json.dumps({"name": "\U0001f600 caf\u00e9", "n": 1}).encode()
    assert json_body(body) == {"name": "\U0001f600 caf\u00e9", "n": 1}


@pytest.mark.parametrize("body", [b'{"name": "\\ud800"', b"<html>\\ud800</html>", b"NaN"])
def test_a_body_that_is_not_json_is_still_refused(body: bytes) -> None:
    with pytest.raises(ValueError, match="line 1"):
        json_body(body)


def test_an_error_message_with_a_lone_surrogate_is_shown_with_a_replacement_character() -> None:
    body = json.dumps({"error_code": "DRS.M00200", "error_msg": "refused \udfff here"}).encode()
    assert error_fields(HttpResponse(status=400, body=body)) == (
        "DRS.M00200",
        "refused \ufffd here",
    )


def test_text_helpers_find_and_replace_only_lone_surrogates() -> None:
    assert lone_surrogate_at("plain ascii") is None
    assert lone_surrogate_at("caf\u00e9 \U0001f600") is None
    assert lone_surrogate_at("ab\udcffc") == 2
    text = "caf\u00e9"
    assert replace_lone_surrogates(text) is text  # nothing to replace: the same object
    assert replace_lone_surrogates("a\udcff\ud800b\U0001f600") == "a\ufffd\ufffdb\U0001f600"
    assert described("\udcff") == "byte 0xff"  # what surrogateescape made of a byte
    assert described("\ud800") == "U+D800"


def test_a_variable_of_the_runbooks_env_that_is_not_utf8_is_refused_by_its_name(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "rb.yaml"
    path.write_text(
        "version: 1\nname: env\nenv: [STAGE_NAME]\ntargets:\n"
        "  - {project_id: 0a5c6e1f3b2d4c8e9f7a6b5c4d3e2f10, region: cn-north-4}\n"
        "steps:\n  - id: select\n    action: drs.select_jobs\n"
    )
    runbook = load_runbook(path, CATALOG)
    monkeypatch.setenv("STAGE_NAME", "caf\u00e9")
    assert env_of(runbook) == {"STAGE_NAME": "caf\u00e9"}
    monkeypatch.setenv("STAGE_NAME", "caf\udce9")  # the byte 0xe9, as Python reads it
    with pytest.raises(UsageError) as refused:
        env_of(runbook)
    assert refused.value.format_message() == (
        f"{path}: env: STAGE_NAME is not UTF-8 text; set it again as UTF-8"
    )
