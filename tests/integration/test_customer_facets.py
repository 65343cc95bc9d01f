"""Tag and company filters read `shared.customer_facets` (`projections.facets`) and
answer what they answered before, on both stores.

The reference is the filters' meaning, worked out in Python from the read model's own
rows: a department list keeps the members with the tag in `customers.tags`; a search
keeps the non-archived, non-erased customers (of the department) with the tag and a
company term (`search_terms`) starting with the folded start. On PostgreSQL, the plans
of a missing tag's page and a tag search read the facet index, not the department.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path
from typing import Any, cast
from uuid import UUID

import pytest

from consumers import readmodel_queries as rq
from consumers import search_queries as sq
from consumers.blind_index import BlindIndex, company_prefix
from consumers.projecting import Item, project
from consumers.readmodel_store import ReadModelStore
from consumers.store_postgres import PostgresStore
from consumers.typed_rows import typed_fetch
from domain.base import DomainError
from domain.customer import Customer, CustomerProfileUpdated, CustomerRegistered
from projections import PROJECTIONS
from projections.base import SearchTerms
from projections.facets import fold
from tests.integration.projection_support import open_store
from tests.unit.domain.factories import ctx

Row = dict[str, Any]
DEPARTMENTS = ("sales", "support", "marketing")
TAGS = ("vip", "gold", "b2b", "x.y", "a_b")
COMPANIES = (
    "Acme", "acme labs", "ACME Co", "Ab", "a", "Ärzte AG", "STRASSE 1", "Straße GmbH",
    "zeta 1", "zeta 12", "zeta 123", "zeta 1234", "  spaced co", "100% _real_!", None,
)  # fmt: skip
NAME_WORDS = tuple(f"w{n}" for n in range(10))
STARTS = (
    "a", "A", "ac", "acm", "acme", "ACME L", "ä", "ÄRZ", "stra", "strasse", "straße", "z",
    "zeta 12", "zeta 1234", "1", "100%", "100% _", "nosuch", "  spaced",
)  # fmt: skip


def _world(seed: int) -> Iterator[Customer]:
    """Customers registered, tagged and untagged, shared, handed over, renamed, and
    some archived or erased, each yielded after each change (its events to collect)."""
    rng, naming = random.Random(seed), random.Random(seed + 1)
    customers: list[Customer] = []
    for n in range(160):
        if n < 60 or rng.random() < 0.3:
            customer = Customer.register(
                ctx(), customer_id=UUID(int=rng.getrandbits(128), version=4),
                name=" ".join([f"Customer {n}", *naming.sample(NAME_WORDS, naming.randint(0, 6))]),
                company=rng.choice(COMPANIES),
                owner_department=rng.choice(DEPARTMENTS), owner_agent="ann",
                tags=rng.sample(TAGS, rng.randint(0, 3)),
                consents={"email_marketing": rng.random() < 0.5},
            )  # fmt: skip
            customers.append(customer)
            yield customer
        customer = rng.choice(customers)
        try:
            _change(customer, rng)
        except DomainError:
            continue
        yield customer


def _change(c: Customer, rng: random.Random) -> None:
    roll, department = rng.random(), rng.choice(DEPARTMENTS)
    changes: list[Callable[[], None]] = [
        lambda: c.tag(ctx(), rng.choice(TAGS)),
        lambda: c.untag(ctx(), rng.choice(TAGS)),
        lambda: c.share_with(ctx(), department),
        lambda: c.unshare(ctx(), department),
        lambda: c.change_owner(ctx(), department=department, agent="bob"),
        lambda: c.update_profile(ctx(), company=rng.choice(COMPANIES)),
        lambda: c.set_consent(ctx(), "email_marketing", rng.random() < 0.5),
    ]
    if roll < 0.04:
        c.archive(ctx(), reason="inactive")
    elif roll < 0.08:
        c.erase(ctx(), reason="request")
    else:
        rng.choice(changes)()


INDEX = BlindIndex(b"the world's search key")


def _items(seed: int) -> list[Item]:
    """The world's events, each customer event setting a company or a name with their
    terms (as a consumer derives them: `consumers.blind_index`)."""
    items = []
    events = [event for customer in _world(seed) for event in customer.collect_events()]
    for i, event in enumerate(events):
        terms = None
        if isinstance(event, CustomerRegistered | CustomerProfileUpdated):
            fields = {
                field: INDEX.terms(field, value)
                for field in ("company", "name")
                if isinstance(value := getattr(event, field), str) or value is None
            }
            if fields:
                terms = SearchTerms(customer_id=event.originator_id, terms=fields)
        items.append(Item("t", 0, i, i + 1, b"", event, terms=terms))
    return items


@pytest.fixture(params=["sqlite", "postgres"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ReadModelStore]:
    opened = open_store(request, tmp_path)
    projection = PROJECTIONS["shared"]
    with opened.session(projection, opened.install(projection)) as session:
        project(session, projection, _items(seed=2024))
    yield opened
    opened.close()


class Reference:
    """What the filters mean, from the read model's rows."""

    def __init__(self, store: ReadModelStore) -> None:
        def every(view: str) -> list[Row]:
            return typed_fetch(store, "SELECT * FROM {v}", {"v": view}, {})

        self.customers = sorted(every("shared.customers"), key=lambda r: str(r["customer_id"]))
        self.members = {
            (r["department"], r["customer_id"]) for r in every("shared.customer_departments")
        }
        self.terms: dict[UUID, list[str]] = {}
        for row in every("shared.search_terms"):
            self.terms.setdefault(row["customer_id"], []).append(row["term"])

    def listed(self, department: str, tag: str) -> list[UUID]:
        return [
            r["customer_id"] for r in self.customers
            if (department, r["customer_id"]) in self.members and tag in r["tags"]
        ]  # fmt: skip

    def found(
        self, department: str | None, tag: str | None, start: str | None, consenting: bool
    ) -> list[UUID]:
        prefix = None if start is None else company_prefix(start)
        return [
            r["customer_id"] for r in self.customers
            if not r["archived"] and not r["erased"]
            and (department is None or (department, r["customer_id"]) in self.members)
            and (tag is None or tag in r["tags"])
            and (prefix is None or self._started(r["customer_id"], prefix))
            and (r["email_marketing"] or not consenting)
        ]  # fmt: skip

    def named(self, department: str | None, terms: list[str]) -> list[UUID]:
        """The findable customers holding every term."""
        return [
            r["customer_id"] for r in self.customers
            if not r["archived"] and not r["erased"]
            and (department is None or (department, r["customer_id"]) in self.members)
            and set(terms) <= set(self.terms.get(r["customer_id"], []))
        ]  # fmt: skip

    def _started(self, customer: UUID, prefix: str) -> bool:
        return any(term.startswith(prefix) for term in self.terms.get(customer, []))


def _paged(fetch: Callable[..., list[Row]]) -> list[UUID]:
    """Every id of a list, 4 at a time by keyset."""
    ids: list[UUID] = []
    while page := fetch(after=ids[-1] if ids else None, limit=4):
        ids += [row["customer_id"] for row in page]
    return ids


def test_the_world_has_what_the_filters_tell_apart(store: ReadModelStore) -> None:
    reference = Reference(store)
    customers = reference.customers
    assert any(r["archived"] for r in customers)
    assert any(r["erased"] for r in customers)
    assert all(any(tag in r["tags"] for r in customers if not r["archived"]) for tag in TAGS)
    assert any(len(r["departments"]) > 1 for r in customers)
    assert reference.found(None, None, "zeta 12", False)
    assert reference.found(None, None, "ä", False)


@pytest.mark.parametrize("department", DEPARTMENTS)
def test_department_lists_by_tag_answer_as_before(store: ReadModelStore, department: str) -> None:
    reference = Reference(store)
    for tag in (*TAGS, "nosuchtag", "%", "vip,gold", ""):
        listed = _paged(partial(rq.department_customers, store, department, tag=tag))
        assert listed == reference.listed(department, tag), tag


@pytest.mark.parametrize("few", [sq.FEW_COMPANIES, 0], ids=["terms", "facets"])
@pytest.mark.parametrize("department", [*DEPARTMENTS, None])
def test_searches_by_tag_and_company_answer_as_before(
    store: ReadModelStore, monkeypatch: pytest.MonkeyPatch, department: str | None, few: int
) -> None:
    """Long company starts are read through their terms or the facet of their first
    characters (`few`): the same customers either way."""
    monkeypatch.setattr(sq, "FEW_COMPANIES", few)
    reference = Reference(store)
    rng = random.Random(5)
    wanted: list[tuple[str | None, str | None]] = [(tag, None) for tag in (*TAGS, "nosuchtag")]
    wanted += [(None, start) for start in STARTS]
    wanted += [(rng.choice(TAGS), rng.choice(STARTS)) for _ in range(12)]
    for (tag, start), consenting in [(w, c) for w in wanted for c in (False, True)]:
        company = None if start is None else company_prefix(start)
        search = partial(sq.search_customers, store, terms=[], company=company, tag=tag)
        found = _paged(partial(search, department=department, consenting=consenting))
        assert found == reference.found(department, tag, start, consenting), (tag, start)


@pytest.mark.parametrize("department", [*DEPARTMENTS, None])
def test_searches_by_name_words_answer_as_before(
    store: ReadModelStore, department: str | None
) -> None:
    """A customer is found by every set of its name's words, and not by a set with one
    word it lacks, however many words (each word after the first was one semi-join)."""
    reference = Reference(store)
    rng = random.Random(11)
    wanted = [rng.sample(NAME_WORDS, rng.randint(1, 6)) for _ in range(40)]
    wanted += [["customer", *NAME_WORDS[:3]], ["customer", *NAME_WORDS], ["customer", "w3", "w3"]]
    for words in wanted:
        terms = [INDEX.term("name", word) for word in words]
        found = _paged(partial(sq.search_customers, store, terms=terms, department=department))
        assert found == reference.named(department, terms), words
    assert any(reference.named(department, [INDEX.term("name", w) for w in ws]) for ws in wanted)


def test_a_search_plans_as_much_for_forty_words_as_for_three(pg_url: str) -> None:
    """Each name word after the first was an EXISTS semi-join, which PostgreSQL planned in
    time growing steeply with their number (39 words: ~2 s a search, from one agent's
    120-character query; red team s33): the plan must not grow with the words."""
    store = PostgresStore(pg_url)
    store.install(PROJECTIONS["shared"])
    explained = Explained(store)
    planned = cast(ReadModelStore, explained)
    for count in (3, 10, 40):
        terms = [INDEX.term("name", f"word{n}") for n in range(count)]
        sq.search_customers(planned, terms=terms, department="sales", limit=2)
    # how many times search_terms is read: `on search_terms`, then `search_terms_N` an alias
    read = [set(re.findall(r" on search_terms( search_terms_\d+)?\s", p)) for p in explained.plans]
    assert 1 <= len(read[0]) == len(read[1]) == len(read[2]) <= 2, explained.plans[-1]
    store.close()


def test_a_company_start_folds_as_its_terms_do() -> None:
    assert company_prefix("ÄRZ") == "c:" + fold("ärz")
    assert fold("Straße") == "strasse"


class Explained:
    """A store whose queries answer their PostgreSQL plan."""

    def __init__(self, store: PostgresStore) -> None:
        self.store, self.dialect = store, store.dialect
        self.plans: list[str] = []

    def fetch(
        self, query: str, tables: dict[str, str], params: Row, types: Any = None
    ) -> list[Row]:
        plan = self.store.fetch("EXPLAIN " + query, tables, params)
        self.plans.append("\n".join(row["QUERY PLAN"] for row in plan))
        return []


def test_a_missing_tag_and_a_tag_search_read_the_facet_index(pg_url: str) -> None:
    """20,000 customers per department, all tagged: a tag or company start nobody in the
    department has is read from its facet rows, and every plan reads in id order (no
    sort, no scan of a department or of customers)."""
    store = PostgresStore(pg_url)
    schema = f"shared_v{store.install(PROJECTIONS['shared'])}"
    with store.pool.connection() as conn:
        for department in ("sales", "support"):
            conn.execute(_SEED.replace("{schema}", schema), {"department": department})
        for table in ("customers", "customer_departments", "customer_facets", "search_terms"):
            conn.execute(f"ANALYZE {schema}.{table}")
    explained = Explained(store)
    planned = cast(ReadModelStore, explained)
    after = UUID("80000000-0000-4000-8000-000000000000")  # half of the ids after it
    rq.department_customers(planned, "sales", tag="nosuchtag", limit=2)
    sq.search_customers(planned, terms=[], tag="nosuchtag", department="sales", limit=2)
    sq.search_customers(planned, terms=[], tag="nosuchtag", limit=2)
    sq.search_customers(planned, terms=[], company="c:a", department="sales", limit=2)
    for plan in explained.plans:  # rare: read from the facet's rows
        first = next(line for line in plan.splitlines() if " Scan " in line)
        assert "customer_facets_pkey" in first, plan
    rq.department_customers(planned, "sales", tag="vip", after=after, limit=51)
    sq.search_customers(planned, terms=[], company="c:zet", tag="vip", after=after, limit=2)
    for plan in explained.plans:  # common ones too: in id order, never all of them
        assert "customer_facets_pkey" in plan, plan
        assert "Seq Scan" not in plan, plan
        assert "Sort" not in plan, plan
    store.close()


_SEED = """
WITH g AS (SELECT gen_random_uuid() AS id, i FROM generate_series(1, 20000) i),
c AS (INSERT INTO {schema}.customers (customer_id, company, owner_department, departments,
      tags, order_count, archived, erased, registered_at, updated_at, email_marketing)
      SELECT id, 'zeta ' || i, %(department)s, %(department)s, 'gold,vip', 0, false, false,
      now(), now(), false FROM g RETURNING customer_id),
m AS (INSERT INTO {schema}.customer_departments SELECT %(department)s, customer_id, 'owner' FROM c),
s AS (INSERT INTO {schema}.search_terms SELECT 'c:zeta', customer_id FROM c)
INSERT INTO {schema}.customer_facets
SELECT facet, department, customer_id FROM c,
  unnest(ARRAY['t:gold', 't:vip', 'p:z', 'p:ze', 'p:zet']) facet,
  unnest(ARRAY[%(department)s, ' (all)']) department
"""
