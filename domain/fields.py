"""The boundaries of every value a command carries, declared once.

Each kind of field has one bound here: the domain's checks (`domain.validation`) enforce
it for every caller, and the annotated types below carry it into the command classes,
so the HTTP schemas refuse the same values before the domain sees them and the OpenAPI
document shows them. Single-line text refuses every control character, C0 (U+0000-U+001F),
DEL and C1 (U+0080-U+009F: U+009B is a terminal's one-character CSI); free text allows
only newline and tab among them (no NUL, no terminal escapes). An id a client names
again as a URL path segment (an order's, a message's: `PathId`) is single-line text
that one segment carries unambiguously once percent-encoded: no `/` (the router splits
the decoded path there, so `a%2Fb` was recorded and then unreachable, a 404), no
backslash (WHATWG URL parsers, browsers' among them, read it as `/`), no `%` (a proxy
or client that decodes a path once more reads `a%41` as `aA`), and not `.` or `..`
(clients resolve them as dot segments, however the rest is encoded). Nor `@` or white
space: such an id is stored in plaintext (it must be found again by what the URL names),
in the log, on Kafka and in the read models, where no erasure reaches and every reader,
an analyst too, sees it, so it is an opaque token, never an address or a name (an
e-mail's `<frida@example.com>` Message-ID as a message's id, `Frida Fischer 1990-01-01`
as an order's). Other characters (`#`, `?`, any letter) are carried once
percent-encoded. A person's name
(`PersonName`: an assignee, an agent, a participant, a customer's owner, a principal) is
single-line text that is printable too: no format character (a zero-width space, a
right-to-left override) and nothing else invisible, so two names that read alike are
one name; the domain (`validation.person`) checks that, the schema only what a pattern
can say. Times must carry a zone
and lie within 1900-01-01 .. 9999-12-31 once converted to UTC, so every store and every
projection can represent them. Amounts are non-negative decimals below 10^12 with at
most 4 decimal places, sent as a JSON number or as a string of plain decimal digits
(`12.50`); a `Decimal` field cannot say so (msgspec reads a string into one as Python
does: `5_000`, an Arabic-Indic five, ` +1e3 `), so a command keeps the amount as sent
and the domain reads it (`validation.amount`). A whole number a request carries as
text (a position, a version, a page size) is written as `WHOLE` says, at most `BIGINT`.

I/O: none.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Annotated, Any

from msgspec import Meta

SINGLE_LINE = r"^[^\x00-\x1f\x7f-\x9f]*$"
FREE_TEXT = r"^[^\x00-\x08\x0b-\x1f\x7f-\x9f]*$"
PATH_SEGMENT = r"^(?!\.\.?$)[^\x00-\x1f\x7f-\x9f/\\%@\s]*$"

PERSON = 100  # a person's name (agent, assignee, participant), a message id, an order id
LINE = 200  # a name, a company, a subject, a title, a reason
ADDRESS = 500
PARAGRAPH = 2_000  # a hand-off note, a closing summary, a survey comment
DOCUMENT = 5_000  # a task's description, a progress note, a resolution, feedback
MESSAGE = 65_536  # a message's or an internal note's content (64 kB)
CODE = 40  # a department, a consent, an order status
TAG = 50
EMAIL = 254
PHONE = 32  # as typed: spaces, dashes, dots and parentheses allowed
MAX_TAGS = 50
MAX_CONSENTS = 20
MAX_ORDERS = 10_000  # orders one customer holds: each read of the customer carries them all
MAX_PARTICIPANTS = 20
MAX_ENTRIES = 10_000  # messages and notes one conversation holds
CONVERSATION_TEXT = 4_000_000  # UTF-8 bytes of one conversation's messages, notes, corrections
CONVERSATION_EVENTS = 25_000  # room for MAX_ENTRIES and their corrections, hand-offs, closings
TASK_EVENTS = 5_000  # a task's assignments, progress notes, completions and reopenings
EARLIEST = datetime(1900, 1, 1, tzinfo=UTC)
LATEST = datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC)
CLOCK_SKEW = timedelta(minutes=5)
"""How far ahead of the command's own time a client's clock may put a time it reports as
past (a message's `sent_at`, an order's `ordered_at`)."""
AMOUNT_LIMIT = Decimal(10) ** 12
AMOUNT_PLACES = 4
BIGINT = 2**63 - 1
"""The largest position, version or count a store holds (a PostgreSQL bigint)."""
WHOLE = r"(?:0|[1-9][0-9]*)"
"""A whole number as JSON writes one, and this API: ASCII digits (`[0-9]`, never `\\d`),
no sign, no leading zero, no `_`, space or exponent. Python's `int` and `Decimal` take
each of those and any Unicode decimal digit (an Arabic-Indic or a fullwidth five is 5),
`Decimal` also `NaN`, `Infinity` and `1e3`; `str.isdigit` is true for `²` as well."""
PLAIN_DECIMAL = rf"^{WHOLE}(?:\.[0-9]+)?$"
"""A decimal written as text: a whole number with an optional fraction (`12.50`)."""

PersonName = Annotated[
    str,
    Meta(
        max_length=PERSON,
        pattern=SINGLE_LINE,
        description="A person's name: printable, no invisible or format characters",
    ),
]
RecordedId = Annotated[str, Meta(max_length=PERSON, pattern=SINGLE_LINE)]
"""An id recorded earlier (a message's, an order's), named to find it: perhaps recorded
before `PathId` was its rule, so only what any single-line text is."""
PathId = Annotated[
    str,
    Meta(
        max_length=PERSON,
        pattern=PATH_SEGMENT,
        description=(
            "An opaque id later named in a URL path: no '/', '\\', '%', '@' or white space,"
            " and not '.' or '..'"
        ),
    ),
]
Line = Annotated[str, Meta(max_length=LINE, pattern=SINGLE_LINE)]
Address = Annotated[str, Meta(max_length=ADDRESS, pattern=FREE_TEXT)]
Paragraph = Annotated[str, Meta(max_length=PARAGRAPH, pattern=FREE_TEXT)]
Document = Annotated[str, Meta(max_length=DOCUMENT, pattern=FREE_TEXT)]
MessageText = Annotated[str, Meta(max_length=MESSAGE, pattern=FREE_TEXT)]
Code = Annotated[str, Meta(max_length=CODE, pattern=SINGLE_LINE)]
TagName = Annotated[str, Meta(max_length=TAG, pattern=SINGLE_LINE)]
EmailText = Annotated[str, Meta(max_length=EMAIL, pattern=SINGLE_LINE)]
PhoneText = Annotated[str, Meta(max_length=PHONE, pattern=SINGLE_LINE)]
Currency = Annotated[str, Meta(min_length=3, max_length=3, pattern=r"^[A-Za-z]{3}$")]
Tags = Annotated[list[TagName], Meta(max_length=MAX_TAGS)]
Consents = Annotated[dict[Code, bool], Meta(max_length=MAX_CONSENTS)]
Participants = Annotated[list[PersonName], Meta(max_length=MAX_PARTICIPANTS)]
Percent = Annotated[int, Meta(ge=0, le=100)]
Score = Annotated[int, Meta(ge=0, le=10)]  # CSAT 1-5, NPS 0-10, evaluations 1-5
Instant = Annotated[
    datetime,
    Meta(tz=True, description="RFC 3339 with a zone, between 1900-01-01 and 9999-12-31 in UTC"),
]
_AMOUNT_FORMS = [
    {"type": "string", "pattern": PLAIN_DECIMAL},
    {"type": "number", "minimum": 0, "exclusiveMaximum": 10**12},
]
Amount = Annotated[
    Any,
    Meta(
        description="A decimal from 0 to 999999999999.9999 (at most 4 decimal places): a JSON"
        ' number, or a string of plain decimal digits such as "12.50" (no sign, exponent,'
        " spaces, underscores or digits other than 0-9)",
        examples=["12.50"],
        extra_json_schema={"extra": {"one_of": _AMOUNT_FORMS}},  # what the OpenAPI shows
    ),
]
"""As sent: the domain reads it (`validation.amount`), since a `Decimal` field would read
a string as Python's `Decimal` does, not as an amount is written."""
