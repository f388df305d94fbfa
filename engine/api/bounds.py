"""How far the client trusts a server, in numbers: one home for every bound on the wire.

A leaf module, so the command line can name the defaults in its help without loading aiohttp.
docs/execution.md ("Bounds") lists them with what a user sees when one is reached.
"""

from __future__ import annotations

CONNECT_TIMEOUT_S = 10.0
# Between two reads of one answer: a silent server.
READ_TIMEOUT_S = 30.0
# The whole request, from connecting to the answer's last byte: a server that drips bytes.
DEFAULT_REQUEST_TIMEOUT_S = 60.0
MAX_REQUEST_TIMEOUT_S = 3600.0
# The most pages one list call fetches: a million jobs at 100 a page, and one more.
MAX_LIST_PAGES = 10_001
# The largest answer read: a page of 100 jobs is well under 1 MB; an endless body is not.
MAX_ANSWER_BYTES = 16 * 1024 * 1024
