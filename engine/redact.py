"""The run's own secrets, kept out of every text it shows: one registry, one function.

    keep_secret(sk)              the credentials code registers each secret as it learns it
    redact("... " + sk + "...")  ->  "... [REDACTED] ..."

A server may reflect a request back (an error page echoing the headers, a proxy quoting the
request): whatever came from a server passes through ``redact`` where it enters the engine
(error texts and request ids in ``engine.api.transport``, the free-text fields of the wire
types), and the logging filter and the command line's error messages use it again on the way
out. Each secret is looked for in the forms a reflection would take: as is, URL-encoded,
base64 (at every alignment, so it is found inside a longer base64 text such as a Basic header),
and hex. Job ids are not redacted: they are sent back to the service as they came.

Secrets shorter than ``MIN_SECRET_CHARS`` are not looked for: they would match ordinary words.
"""

from __future__ import annotations

import base64
import functools
import logging
import re
import threading
from urllib.parse import quote, quote_plus

from engine.logs import RECORD_ATTRIBUTES

REDACTED = "[REDACTED]"
MIN_SECRET_CHARS = 6
# Secrets of one request, not of the run: an AK/SK signature (replayable for 15 minutes).
_PER_REQUEST = r"Signature=[0-9a-fA-F]{64}"

_lock = threading.Lock()
_forms: set[str] = set()
_pattern: re.Pattern[str] | None = None


def keep_secret(value: str | None) -> None:
    """Redact ``value`` (and its encodings) from now on, in this process."""
    global _pattern
    if not value or len(value) < MIN_SECRET_CHARS:
        return
    forms = _encodings(value)
    with _lock:
        if forms <= _forms:
            return
        _forms.update(forms)
        # Longest first: a form inside another is replaced as part of the longer one.
        alternatives = sorted(_forms, key=len, reverse=True)
        _pattern = re.compile("|".join([_PER_REQUEST, *map(_literal, alternatives)]))
        redact_word.cache_clear()


def redact(text: str) -> str:
    """``text`` with every kept secret, in any of its forms, replaced by ``[REDACTED]``."""
    pattern = _pattern
    if pattern is None or not text:
        return text
    return pattern.sub(REDACTED, text)


def redact_optional(text: str | None) -> str | None:
    return None if text is None else redact(text)


@functools.lru_cache(maxsize=4096)
def redact_word(text: str) -> str:
    """``redact`` for the short words a service repeats (statuses, engine types, times): one
    dictionary lookup for a word seen before, where the hot paths of a listing read them."""
    return redact(text)


class RedactingFilter(logging.Filter):
    """A logging filter that formats each record and redacts the result (attach to handlers,
    last): the message, every text field a call site or filter added (``extra=``: a request id,
    a target), the traceback and the stack, so text and JSON lines are redacted alike."""

    def filter(self, record: logging.LogRecord) -> bool:
        if _pattern is not None:
            record.msg, record.args = redact(record.getMessage()), None
            fields = vars(record)
            for name in [
                n for n, v in fields.items() if n not in RECORD_ATTRIBUTES and type(v) is str
            ]:
                fields[name] = redact(fields[name])
            if record.exc_info and not record.exc_text:
                record.exc_text = _TRACEBACKS.formatException(record.exc_info)
            if record.exc_text:
                record.exc_text = redact(record.exc_text)
            if record.stack_info:
                record.stack_info = redact(record.stack_info)
        return True


_TRACEBACKS = logging.Formatter()  # formats a traceback as every formatter would, once


def _literal(form: str) -> str:
    """``form`` as a pattern; its percent-escapes in either case (``%2F`` or ``%2f``)."""
    return re.sub(
        r"%([0-9A-F])([0-9A-F])",
        lambda m: "%" + "".join(f"[{c}{c.lower()}]" if c.isalpha() else c for c in m.groups()),
        re.escape(form),
    )


def _encodings(secret: str) -> set[str]:
    raw = secret.encode()
    encoded = quote(secret, safe="")
    forms = {secret, encoded, quote(secret), quote_plus(secret), raw.hex(), raw.hex().upper()}
    whole = base64.b64encode(raw).decode()  # the secret alone, padding and all
    encoded_forms = [whole]
    for offset in range(3):
        # The secret after `offset` other bytes, inside a longer base64 text: keep only the
        # characters that depend on the secret's bytes alone (base64 packs 3 bytes in 4).
        encoded = base64.b64encode(b"\0" * offset + raw).decode()
        start = (0, 2, 3)[offset]
        end = len(encoded) - (0 if (offset + len(raw)) % 3 == 0 else 4)
        encoded_forms.append(encoded[start:end])
    for form in encoded_forms:
        forms.add(form)
        forms.add(form.replace("+", "-").replace("/", "_"))  # the URL-safe alphabet
    return {form for form in forms if len(form) >= MIN_SECRET_CHARS}
