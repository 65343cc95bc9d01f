"""How the API reads a request's JSON body: every number exactly as the client wrote it.

Litestar decodes a body into plain values, then converts them into the route's body
type (its command class). Decoded its way, a JSON number with a fraction or an exponent
passed through a float: an amount of `0.10000000000000001` reached the domain as `0.1`
and was stored, where the domain refuses an amount with more than 4 decimals, and
`1e400` was a float out of range. Here such numbers decode as `decimal.Decimal`, so an
amount reaches the domain's validation as sent (`domain.validation.amount`). Integer
fields (scores, percentages) take JSON integers, and refuse a fraction as they did; no
command field is a float. A body that is not UTF-8 (which JSON must be, RFC 8259) is the
same 400: msgspec raises `UnicodeDecodeError` for it, not `DecodeError`, and it was a 500.

I/O: none (the body is already read when `json()` decodes it).
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import msgspec
from litestar import Request
from litestar.exceptions import SerializationException

_decoder = msgspec.json.Decoder(float_hook=Decimal)


class ApiRequest(Request[Any, Any, Any]):
    """The request class of the API (`create_app`): Litestar's, with exact numbers."""

    async def json(self) -> Any:
        """The body as plain values; a malformed body is Litestar's 400, as before."""
        try:
            return _decoder.decode(await self.body() or b"null")
        except msgspec.DecodeError as error:
            raise SerializationException(str(error)) from error
        except UnicodeDecodeError as error:  # raised for the body's bytes, nothing else
            detail = "JSON must be UTF-8: a string holds bytes that are no UTF-8 character"
            raise SerializationException(detail) from error
