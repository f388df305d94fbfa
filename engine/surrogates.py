"""Lone surrogates: the code points U+D800-U+DFFF a ``str`` can hold and UTF-8 cannot carry.

They get in three ways: a JSON escape of half a UTF-16 pair (``"\\ud800"``, which Python's
``json`` decodes to one), a YAML double-quoted escape of one (PyYAML does the same), and bytes
that are not UTF-8 where Python decodes with ``surrogateescape`` (argv, environment variables,
aiohttp's header values: U+DC80-U+DCFF). Once in, nothing can write them: orjson refuses them
(TypeError) and a UTF-8 file raises UnicodeEncodeError, so report.json, report.md, report.html
and the journal would all fail. What a server sends is made writable where it enters, each lone
surrogate becoming U+FFFD (``engine.api.transport``); what a user gives is refused, saying where
(the runbook's escape at its line and column, the argument, the variable; never a secret's
bytes).

A pair is not lone: ``"\\ud83d\\ude00"`` is one character (U+1F600), which JSON decoders
join and keep.
"""

from __future__ import annotations

import re

REPLACEMENT = "\ufffd"

LONE_SURROGATE = re.compile("[\ud800-\udfff]")

# A JSON escape of a surrogate, after an even run of backslashes (after an odd one, the "\u" is
# the text "\\u"): a high half with the low half that completes it (a pair, group 3), a high
# half alone, or a low half alone.
_HEX2 = rb"[0-9a-fA-F]{2}"
_ESCAPE = re.compile(
    rb"(?<!\\)((?:\\\\)*)"
    rb"(?:(\\u[dD][89abAB]" + _HEX2 + rb")(\\u[dD][c-fC-F]" + _HEX2 + rb")?"
    rb"|\\u[dD][c-fC-F]" + _HEX2 + rb")"
)
_ESCAPED_REPLACEMENT = rb"\ufffd"


def lone_surrogate_at(text: str) -> int | None:
    """The index of the first lone surrogate in ``text``, or None (at once for ASCII text)."""
    if text.isascii():
        return None
    found = LONE_SURROGATE.search(text)
    return found.start() if found else None


def undecodable_byte(char: str) -> int | None:
    """The byte that ``surrogateescape`` decoded as ``char`` (U+DC80-U+DCFF), or None."""
    code = ord(char)
    return code - 0xDC00 if 0xDC80 <= code <= 0xDCFF else None


def described(char: str) -> str:
    """A lone surrogate as a user would know it: the byte it stands for, or its code point."""
    byte = undecodable_byte(char)
    return f"byte 0x{byte:02x}" if byte is not None else f"U+{ord(char):04X}"


def replace_lone_surrogates(text: str) -> str:
    """``text`` with each lone surrogate replaced by U+FFFD; ``text`` itself if it has none."""
    if text.isascii() or LONE_SURROGATE.search(text) is None:
        return text
    return LONE_SURROGATE.sub(REPLACEMENT, text)


def replace_lone_surrogate_escapes(body: bytes) -> bytes:
    """A JSON text with each escape of a lone surrogate replaced by ``\\ufffd``; the escapes of
    a whole pair, and everything else, byte for byte as they were."""
    return _ESCAPE.sub(_keep_pairs, body)


def _keep_pairs(match: re.Match[bytes]) -> bytes:
    if match[3] is not None:
        return match[0]
    return match[1] + _ESCAPED_REPLACEMENT
