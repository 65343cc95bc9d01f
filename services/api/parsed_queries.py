"""Query strings the web framework remembers, forgotten every second.

Litestar keeps the query strings it parsed in `functools.lru_cache`s of 1,024 entries
(`parse_query_string`, `create_query_default_dict`), and the URLs it built in others
(`URL`), as does urllib (`urlsplit`). A query may carry personal data: a customer
search's terms, a message retraction's reason. Cached, they would stay in the process,
reachable, until 1,024 other queries pushed them out; `forget_parsed_queries` clears
those caches, and the API runs it every second (`services.api.app`), so no query
outlives its request by more. Parsing a query again costs microseconds.
I/O: none.
"""

from __future__ import annotations

import urllib.parse

from litestar._kwargs.extractors import create_query_default_dict
from litestar._parsers import parse_query_string
from litestar.datastructures.url import URL


def forget_parsed_queries() -> None:
    for cached in (parse_query_string, create_query_default_dict, URL._new, URL.from_components):
        cached.cache_clear()
    urllib.parse.urlsplit.cache_clear()  # type: ignore[attr-defined]  # an lru_cache since 3.11
