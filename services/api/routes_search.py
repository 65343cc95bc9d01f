"""Customer search: `GET /v1/customers?email=&phone=&name=&company=&tag=` (decode, call,
encode; `services.api.reads.Reader.search` asks the access model and the read models)."""

from __future__ import annotations

from typing import Annotated, Any

from litestar import get
from litestar.params import FromQuery, QueryParameter

from domain import fields as bound
from services.api.http_errors import BadRequest
from services.api.list_reads import ListReaderDep
from services.api.problem_table import LIST_PROBLEMS
from services.api.reads import MinPosition

Email = Annotated[
    str | None, QueryParameter(max_length=bound.EMAIL, description="exact e-mail, any case")
]
Phone = Annotated[
    str | None,
    QueryParameter(max_length=bound.PHONE, description="exact phone with country code (+, 00)"),
]
Name = Annotated[
    str | None, QueryParameter(max_length=bound.LINE, description="words of the name, all")
]
Company = Annotated[
    str | None, QueryParameter(max_length=bound.LINE, description="start of the company name")
]
Tag = Annotated[str | None, QueryParameter(max_length=bound.TAG, description="a tag it has")]


@get("/", responses=LIST_PROBLEMS)
async def search_customers(
    *,
    lists: ListReaderDep,
    email: Email = None,
    phone: Phone = None,
    name: Name = None,
    company: Company = None,
    tag: Tag = None,
    cursor: FromQuery[str | None] = None,
    limit: Annotated[int, QueryParameter(ge=1, le=500)] = 50,
    min_position: MinPosition = None,
) -> dict[str, Any]:
    """Customers the caller may read with every given field (`items`, `next_cursor`), by
    id, masked like `GET`. E-mail and phone match exactly, the name by whole words (each
    through a keyed blind index: nothing is searched in plaintext), the company by prefix;
    archived and erased customers are not found."""
    given = {"email": email, "phone": phone, "name": name, "company": company, "tag": tag}
    wanted = {field: value for field, value in given.items() if value and value.strip()}
    if not wanted:
        raise BadRequest("search by at least one of email, phone, name, company, tag")
    return await lists.search(wanted, min_position, cursor=cursor, limit=limit)
