"""Checks and normalisations shared by the aggregates (email, phone, codes, free text).

Each function returns the normalised value or raises `ValidationFailed` naming the
field, so a decision method reads as a list of checks. The bounds come from
`domain.fields`, which the command classes' schemas use too. Pure: no I/O, no clock.
"""

from __future__ import annotations

import re
import unicodedata
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from uuid import UUID

import msgspec

from domain import fields as bound
from domain.base import MARKERS, ValidationFailed
from domain.codec import SEALED_PREFIX

MAX_UTC_OFFSET = timedelta(hours=23, minutes=59)
"""The widest zone offset a time may carry (what RFC 3339 text can write)."""
EARLIEST_INSTANT, LATEST_INSTANT = bound.EARLIEST, bound.LATEST
"""The first and last instants a time may name (compared as instants, not as text)."""
FORBIDDEN_IN_TEXT = "".join(map(chr, [*range(0x20), *range(0x7F, 0xA0)]))
"""Characters no single-line text may contain (free text allows newline and tab)."""
MAX_AMOUNT, AMOUNT_PLACES = bound.AMOUNT_LIMIT, bound.AMOUNT_PLACES
"""Amounts are below MAX_AMOUNT, with at most AMOUNT_PLACES decimal places."""

DEPARTMENT_PATTERN = re.compile(r"^[a-z][a-z0-9_-]{0,39}$")
TAG_PATTERN = re.compile(r"^[a-z0-9][a-z0-9_:.-]{0,49}$")
CODE_PATTERN = re.compile(r"^[a-z][a-z0-9_-]{0,39}$")
CURRENCY_PATTERN = re.compile(r"^[A-Z]{3}$")
EMAIL_PATTERN = re.compile(r"^[^@\s]{1,64}@[^@\s.]+(\.[^@\s.]+)+$")
_PHONE_JUNK = re.compile(r"[\s().-]")
_SINGLE_LINE = re.compile(bound.SINGLE_LINE)
_FREE_TEXT = re.compile(bound.FREE_TEXT)
_PATH_SEGMENT = re.compile(bound.PATH_SEGMENT)
_PLAIN_ID = re.compile(rf"[0-9A-Za-z_-]{{1,{bound.PERSON}}}")
_PHONE_DIGITS = re.compile(r"^\d{7,15}$")
_UNIT = Decimal(1)
_WHOLE_NUMBER = re.compile(bound.WHOLE)
_PLAIN_DECIMAL = re.compile(bound.PLAIN_DECIMAL)
UUID_TEXT = re.compile(
    r"[0-9a-fA-F]{8}(-?)[0-9a-fA-F]{4}\1[0-9a-fA-F]{4}\1[0-9a-fA-F]{4}\1[0-9a-fA-F]{12}"
)
"""An id as this API reads one in a body (msgspec), to be matched whole (`fullmatch`):
8-4-4-4-12 hex digits, or the 32 without hyphens, in either case. Python's `UUID` also
takes braces, `urn:uuid:`, Unicode digits and, among 32 characters, a sign, a space or
an `_` (which then names another id). `uuid_text` reads one; a check that needs no
`UUID` (a path's id, which the framework reads) matches it alone, ~1 us less."""
_REQUEST_ID = re.compile(
    r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
    r"|[0-9a-fA-F]{16,64}"
)
"""A request id as tracing systems make one (`request_id` says which)."""
_FORMAT = (
    "\u00ad\u0600-\u0605\u061c\u06dd\u070f\u0890\u0891\u08e2\u180e\u200b-\u200f"
    "\u202a-\u202e\u2060-\u2064\u2066-\u206f\ufeff\ufff9-\ufffb\U000110bd\U000110cd"
    "\U00013430-\U00013438\U0001bca0-\U0001bca3\U0001d173-\U0001d17a\U000e0001"
    "\U000e0020-\U000e007f"
)
"""Unicode's format characters (category Cf, Unicode 14 as Python 3.11 has it; a unit
test checks the list against `unicodedata`), written out: finding them by category
took ~5 ms for a 64 kB message, a regular expression ~0.1 ms."""
_BLANK = (
    "\u034f\u115f\u1160\u17b4\u17b5\u180b-\u180f\u2800\u3164\ufe00-\ufe0f\uffa0"
    "\U000e0100-\U000e01ef"
)
"""The code points `str.isprintable` lets through that draw nothing: fillers, variation
selectors, joiners that show nothing after a letter, and the Braille blank (U+2800), with
which `mgr` followed by one passed for `mgr`."""
_INVISIBLE = re.compile(f"[{_BLANK}]")
_IGNORED = re.compile(f"[{_FORMAT}{_BLANK}]")
_LOOKALIKE_SCRIPTS = frozenset({"LATIN", "GREEK", "CYRILLIC"})
"""Scripts whose letters pass for each other (Cyrillic EM for Latin M): one name may use
letters of one of them only."""


def department(value: str, field: str = "department") -> str:
    """A department is a free lowercase code so new teams need no schema change."""
    return _match(DEPARTMENT_PATTERN, value.strip().lower(), field, "not a department code")


def code(value: str, field: str) -> str:
    """A lowercase machine code (consent name, order status)."""
    return _match(CODE_PATTERN, value.strip().lower(), field, "not a lowercase code")


def tag(value: str, field: str = "tag") -> str:
    """Tags compare case-insensitively, so they are stored lower-case."""
    return _match(TAG_PATTERN, value.strip().lower(), field, "not a valid tag")


def currency(value: str, field: str = "currency") -> str:
    """ISO 4217 alphabetic code, upper-case."""
    return _match(CURRENCY_PATTERN, value.strip().upper(), field, "not an ISO 4217 code")


def email(value: str | None, field: str = "email") -> str | None:
    """Lower-cased so that two spellings of one address are one address."""
    if value is None:
        return None
    normalised = value.strip().lower()
    if len(normalised) > bound.EMAIL or not EMAIL_PATTERN.fullmatch(normalised):
        raise ValidationFailed(field, "not a valid email address")
    if not _SINGLE_LINE.match(normalised):
        raise ValidationFailed(field, "must not contain control characters")
    return _unsealed(normalised, field)


def phone(value: str | None, field: str = "phone") -> str | None:
    """E.164-like `+<digits>`: accepts spaces, dashes, dots and parentheses, `+` or `00`."""
    if value is None:
        return None
    compact = _PHONE_JUNK.sub("", value.strip())
    if compact.startswith("+"):
        digits = compact[1:]
    elif compact.startswith("00"):
        digits = compact[2:]
    else:
        raise ValidationFailed(field, "needs an international prefix (+ or 00)")
    if not _PHONE_DIGITS.fullmatch(digits):
        raise ValidationFailed(field, "needs 7 to 15 digits")
    return _unsealed("+" + digits, field)


def text(value: str, field: str, max_length: int = bound.LINE, *, multiline: bool = False) -> str:
    """Required text: stripped, not empty, bounded, free of control characters (but
    newline and tab in `multiline` text), and not in the form of a sealed value."""
    stripped = value.strip()
    if not stripped:
        raise ValidationFailed(field, "must not be empty")
    if len(stripped) > max_length:
        raise ValidationFailed(field, f"longer than {max_length} characters")
    allowed = _FREE_TEXT if multiline else _SINGLE_LINE
    if not allowed.match(stripped):
        raise ValidationFailed(field, "must not contain control characters")
    return _unsealed(stripped, field)


def person(value: str, field: str) -> str:
    """A name that stands for a person the rules tell apart (an assignee, an agent, a
    participant, a principal): `text` of at most `fields.PERSON` characters, and
    printable (`str.isprintable`: no format characters such as a zero-width space or a
    right-to-left override, no space but U+0020, nothing invisible), so that two names
    that read alike are one name (`person_key` compares what remains)."""
    checked = text(value, field, bound.PERSON)
    if not checked.isprintable() or _INVISIBLE.search(checked):
        raise ValidationFailed(field, "must be printable: no invisible or format characters")
    if len(_lookalike_scripts(checked)) > 1:
        raise ValidationFailed(field, "must not mix Latin, Greek and Cyrillic letters")
    return checked


def _lookalike_scripts(name: str) -> set[str]:
    """The scripts among `_LOOKALIKE_SCRIPTS` whose letters `name` holds (compatibility
    forms, such as fullwidth or mathematical letters, counted as what they stand for)."""
    letters = (c for c in unicodedata.normalize("NFKC", name) if c.isalpha())
    return {unicodedata.name(c, "").partition(" ")[0] for c in letters} & _LOOKALIKE_SCRIPTS


def optional_person(value: str | None, field: str) -> str | None:
    """An optional `person`: blank means absent."""
    if value is None or not value.strip():
        return None
    return person(value, field)


def person_key(name: str) -> str:
    """What two names of one person share: Unicode compatibility-normalised (NFKC) and
    case-folded, without format or invisible characters, so `Mgr`, `mgr` in fullwidth
    letters and a `mgr\u200b` stored before `person` refused it are all `mgr`. For
    comparing only; names are stored as sent."""
    visible = _IGNORED.sub("", name)
    folded = unicodedata.normalize("NFKC", unicodedata.normalize("NFKC", visible).casefold())
    return folded.strip()


def same_person(a: str | None, b: str | None) -> bool:
    """Whether two names stand for one person: the one comparison every rule that tells
    someone from themselves makes (a self-evaluation, a self-assignment). No name is
    nobody's."""
    return a is not None and b is not None and person_key(a) == person_key(b)


def _reads_as_marker(value: str) -> bool:
    """Whether `value` reads as `[masked]` or `[erased]` (`person_key`). Only a short
    text can: normalising a 64 kB message took 1.6 ms, and removing what draws nothing
    from it ~0.8 ms, which an ASCII text skips."""
    visible = value if value.isascii() else _IGNORED.sub("", value)  # ASCII: all shows
    if len(visible) > MARKER_LENGTH:
        return False
    # a right-to-left override shows `[deksam]` as `[masked]` (backwards, its brackets
    # mirrored)
    backwards = visible[::-1].translate(_MIRRORED) if visible != value else visible
    return person_key(visible) in MARKERS or person_key(backwards) in MARKERS


_MIRRORED = str.maketrans("[]", "][")


MARKER_LENGTH = 4 * max(len(marker) for marker in MARKERS)
"""Longer than this, no text normalises to a marker (compatibility forms expand text,
composition joins a letter and its accents, and a marker holds neither)."""


def path_id(value: str, field: str) -> str:
    """An id a client names again in a URL path (an order's, a message's): text that one
    path segment carries unambiguously (`fields.PATH_SEGMENT` says why). Only where an
    id is first recorded: one recorded under older rules is still looked up as it is.
    Not personal data, which such an id would carry past an erasure: no `@`, no spaces."""
    if _PLAIN_ID.fullmatch(value):  # what the checks below pass as it is (a made id)
        return value
    checked = text(value, field, bound.PERSON)
    if not _PATH_SEGMENT.match(checked):
        raise ValidationFailed(
            field,
            "must be an opaque id: no '/', '\\' or '%', nor '.' or '..' (URLs name it in a"
            " path), no '@' or white space (it is stored in plaintext: never an address or a"
            " name)",
        )
    return checked


def optional_text(
    value: str | None, field: str, max_length: int = bound.LINE, *, multiline: bool = False
) -> str | None:
    """Optional text: blank means absent."""
    if value is None or not value.strip():
        return None
    return text(value, field, max_length, multiline=multiline)


def one_of(value: str, allowed: frozenset[str], field: str) -> str:
    if value not in allowed:
        raise ValidationFailed(field, f"must be one of {', '.join(sorted(allowed))}")
    return value


def score(value: int, low: int, high: int, field: str = "score") -> int:
    """Survey and evaluation scores: integers (not bools) within a closed range."""
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ValidationFailed(field, f"must be an integer from {low} to {high}")
    return value


def zoned(value: datetime, field: str) -> datetime:
    """A time must carry a zone: naive times are ambiguous across offices."""
    if value.utcoffset() is None:
        raise ValidationFailed(field, "must include a time zone")
    return value


def rfc3339(value: datetime, field: str) -> datetime:
    """A time with a zone (`zoned`) no wider than RFC 3339 writes (±23:59), at any instant.
    Python takes offsets up to a microsecond short of 24 hours; at the calendar's ends no
    store holds those (`consumers.instants`), while both hold every instant within ±23:59
    alike, those outside `aware`'s range too (releases before it stored some)."""
    offset = zoned(value, field).utcoffset()
    if offset is None or abs(offset) > MAX_UTC_OFFSET:
        raise ValidationFailed(field, "has a zone offset beyond ±23:59")
    return value


def aware(value: datetime, field: str) -> datetime:
    """Times must carry a zone RFC 3339 can write (`rfc3339`) and lie within the range
    every store and projection can represent once converted to UTC."""
    rfc3339(value, field)
    try:
        utc = value.astimezone(UTC)
    except OverflowError:
        utc = None
    if utc is None or not bound.EARLIEST <= utc <= bound.LATEST:
        raise ValidationFailed(field, "must lie between 1900-01-01 and 9999-12-31 in UTC")
    return value


def happened(value: datetime, now: datetime, field: str) -> datetime:
    """A time the client reports as past (a message sent, an order placed): `aware`, and
    not after `now` (the command's own time) by more than `fields.CLOCK_SKEW`. One dated
    9999 stood first, or last, in every "latest" a read model keeps (a customer's last
    contact, for good) and at the end of the support queue."""
    aware(value, field)
    if value > now + bound.CLOCK_SKEW:
        raise ValidationFailed(field, "must not lie in the future")
    return value


def amount(value: object, field: str = "amount") -> Decimal:
    """Money as a non-negative Decimal below 10^12 with at most 4 decimal places
    (refunds are a status, not a sign). Sent as text, it is plain decimal digits
    (`decimal_text`); as a number (a JSON number reaches here as a `Decimal`, exactly as
    written: `services.api.request_json`), any whose value is one, kept in plain form:
    no sign on a zero and no exponent (`-0.0` is `0.0`, `1E+2` is `100`), so one amount
    reads the same in the event, the API, the console and every read-model store."""
    if isinstance(value, str):
        value = decimal_text(value, field)
    if isinstance(value, bool) or not isinstance(value, int | Decimal):
        raise ValidationFailed(field, 'must be a number, or a string of digits like "12.50"')
    result = Decimal(value)
    if not result.is_finite() or not 0 <= result < bound.AMOUNT_LIMIT:
        raise ValidationFailed(field, "must be a decimal from 0 to 999999999999.9999")
    exponent: int = result.as_tuple().exponent  # type: ignore[assignment]  # finite
    if exponent < -bound.AMOUNT_PLACES:
        raise ValidationFailed(field, f"at most {bound.AMOUNT_PLACES} decimal places")
    return (result.quantize(_UNIT) if exponent > 0 else result).copy_abs()


def decimal_text(value: str, field: str) -> Decimal:
    """A decimal written as text: ASCII digits with an optional fraction (`12.50`), as
    JSON writes a number but without sign or exponent. Not what Python's `Decimal`
    reads: `5_000`, Arabic-Indic or fullwidth digits, ` 7 `, `+3`, `-0`, `1e3`, `NaN`, `.5`."""
    if not _PLAIN_DECIMAL.fullmatch(value):
        raise ValidationFailed(
            field,
            f'must be plain decimal text like "12.50" or "0.5" (digits 0-9; no sign, '
            f"exponent, space, underscore or leading zero), not {value[:40]!r}",
        )
    return Decimal(value)


def whole_number(value: str, field: str) -> int:
    """A whole number written as text (a position, a version, a page size): ASCII
    digits, no sign, no leading zero (the form this API writes, `fields.WHOLE`), at most
    `fields.BIGINT`, which every store holds."""
    if not _WHOLE_NUMBER.fullmatch(value):
        raise ValidationFailed(
            field,
            f"must be a whole number in ASCII digits (no sign, leading zero, space, "
            f"exponent or underscore), not {value[:40]!r}",
        )
    if len(value) > _BIGINT_DIGITS or int(value) > bound.BIGINT:  # no `int` of 1 MB
        raise ValidationFailed(field, f"must be at most {bound.BIGINT}, not {value[:40]!r}")
    return int(value)


_BIGINT_DIGITS = len(str(bound.BIGINT))


def uuid_text(value: str, field: str) -> UUID:
    """An id written as text (in a URL path, a cursor), read as a body's is (`UUID_TEXT`)."""
    if not UUID_TEXT.fullmatch(value):
        raise ValidationFailed(
            field, f"must be a UUID like 0b7c3b9e-0d6f-4f7e-9a53-2f0c6d7e8a91, not {value[:40]!r}"
        )
    return UUID(value)


def time_text(value: str, field: str) -> datetime:
    """A time written as text, read as a body's is: RFC 3339 as msgspec reads it
    (`2026-01-31T00:00:00Z`, `...+01:00`; naive when it has no zone). Not a Unix
    timestamp in any form (`1e9`, `-0`, `1700000000.5`: the framework's lax reading of a
    query took them), nor a date alone or ISO 8601's other forms (`20260131T000000Z`,
    `2026-W05-6`, minutes without seconds: `datetime.fromisoformat` took them)."""
    try:
        return msgspec.convert(value, datetime, strict=True)
    except msgspec.ValidationError:
        raise ValidationFailed(
            field,
            f"must be an RFC 3339 time with a zone, like 2026-01-31T00:00:00Z, not {value[:40]!r}",
        ) from None


def instant_text(value: str, field: str) -> datetime:
    """A time written as text (`?as_of=`, `?from=`): `time_text`, with a zone (`rfc3339`)."""
    return rfc3339(time_text(value, field), field)


def request_id(value: str, field: str = "X-Request-Id") -> str:
    """A request id a client may give (X-Request-Id), kept for good as its events'
    `correlation_id`, in the hash-chained log and on Kafka, where no erasure reaches:
    an opaque token only, a UUID (8-4-4-4-12 hex digits) or 16-64 hex digits, either
    case. That is what tracing systems make (this API's own ids, nginx's `$request_id`,
    Envoy's and Heroku's UUIDs, W3C and OpenTelemetry trace ids), and what no one writes
    a name, an e-mail or an address in: `signup-grace.hopper@example.com` is refused,
    and so are `grace_hopper_1906` (letters past `f`, the habit of naming a request by
    its person), `@`, `.`, spaces, controls, anything not ASCII, braces and `urn:uuid:`.
    Nor decimal digits alone (`4111111111111111`, `00491701234567890`: a card's or a
    phone's number), hyphens aside (`00491701-2345-6789-0000-000000000000`: the same
    number in a UUID's shape; a random 16-hex-digit id is all decimal 0.05 % of the time,
    a random UUID 3e-7 of it, and is then replaced). The API takes another id for a
    request whose id is refused, never refuses the request
    (`services.api.observability.chosen_request_id`)."""
    if len(value) > 64 or not _REQUEST_ID.fullmatch(value) or value.replace("-", "").isdigit():
        raise ValidationFailed(
            field,
            "must be a UUID or 16-64 hex digits, not decimal digits alone"
            " (an opaque id, never personal data)",
        )
    return value


def _match(pattern: re.Pattern[str], value: str, field: str, message: str) -> str:
    if not pattern.fullmatch(value):
        raise ValidationFailed(field, message)
    return _unsealed(value, field)


def _unsealed(value: str, field: str) -> str:
    """Every kind of text (free text, e-mail, phone, codes, tags) passes here last: a
    value in the form of a sealed one would be taken for one (counted by its envelope,
    passed through unopened, shown as sealed), so no text may begin with the prefix.
    Nor may a text read as a marker (`[masked]`, `[erased]`, in any case and with any
    invisible characters): an agent's stored "[erased]" address read to an auditor
    exactly as an erasure does, in the API and the console."""
    if value.startswith(SEALED_PREFIX):
        raise ValidationFailed(field, f"must not begin with {SEALED_PREFIX!r}")
    closes = "]" in value or "\uff3d" in value or "\ufe48" in value  # NFKC's `]`s
    if closes and _reads_as_marker(value):  # `[Erased]`, zero-width, fullwidth
        raise ValidationFailed(field, f"{value!r} stands for a hidden or erased value")
    return value
