"""Idempotency-Key and If-Match in the access reference machine (`test_access_model`).

Mixed into `AccessMachine`: its rules send a command that stores an event whenever it is
taken (a new tag on a customer, an internal note on a conversation, progress on a task)

* under one Idempotency-Key by three principals, the first and the second with the same
  request, the third with another: each is answered as the reference answers their own
  command (keys are per principal: nothing of another's use of the key shows, neither
  their stored answer nor a 409 `idempotency-key-reused`); then the first two retry and
  each gets their own first answer again (a completed command's whatever its If-Match
  says now, a refusal's again). A key first used on an id its principal may not read is
  then used on an id that exists nowhere and again on the first: each answer exactly as
  for an id that exists nowhere (the key released alike after both);
* under If-Match (`*`, the current version, a stale one, one ahead): on an aggregate the
  caller may not read exactly the answer to the same command on an id that exists
  nowhere, whatever the tag (never the 409 of a version conflict, which would tell that
  it exists, and its version); on one they read, the access model's refusal first, then
  a version conflict's 409 for a tag that is not the current version, then the command
  as without If-Match. The API never answers 412: a stale tag is a 409 (README).

Reads (`AccessMachine.check_records`) hold an aggregate the caller may not read to the
same rule (`as_nowhere`: no ETag, the same status, headers and body) and give the ETag of
the version they show to those who may.
"""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Callable
from typing import Any, NamedTuple

import httpx
from hypothesis import strategies as st
from hypothesis.stateful import Bundle, RuleBasedStateMachine, rule

from tests.integration.access_reference import PRINCIPALS, Reference, Who

actors = st.sampled_from(PRINCIPALS)
IF_MATCH = ("*", "current", "stale", "ahead")
VARYING = {"date", "x-request-id"}  # headers of an answer that no two answers share
_numbers = itertools.count()


class KeyedCall(NamedTuple):
    """A command on an aggregate that stores an event whenever it is taken."""

    method: str
    path: str
    body: Any

    @classmethod
    def on(cls, kind: str, aggregate: str) -> KeyedCall:
        number = next(_numbers)
        if kind == "customer":
            return cls("POST", f"/v1/customers/{aggregate}/tags", {"tag": f"k{number}"})
        if kind == "conversation":
            return cls("POST", f"/v1/conversations/{aggregate}/notes", {"content": f"N {number}"})
        return cls("POST", f"/v1/tasks/{aggregate}/progress", {"note": "n", "percent": number % 99})


class Preconditions(RuleBasedStateMachine):
    """The rules above; `AccessMachine` gives the reference, the client and the rest."""

    ref: Reference
    http: httpx.Client
    tokens: dict[str, dict[str, str]]
    nowhere: dict[tuple[str, str], httpx.Response]

    customers = Bundle("customers")
    work = Bundle("work")

    def delivered(
        self, kind: str, aggregate: str, sees: Callable[[Who], bool], reason: str | None = None
    ) -> None:
        raise NotImplementedError  # AccessMachine's

    def expected_of(
        self, who: Who, item: str, command: str, access: int, named: str | None = None
    ) -> int:
        raise NotImplementedError  # AccessMachine's

    def call(self, who: Who, call: KeyedCall, headers: dict[str, str]) -> httpx.Response:
        token = self.tokens[who.name]
        return self.http.request(call.method, call.path, json=call.body, headers=token | headers)

    # --- Idempotency-Key --------------------------------------------------------------

    @rule(who=actors, other=actors, third=actors, customer=customers)
    def keyed_on_customer(self, who: Who, other: Who, third: Who, customer: str) -> None:
        self.keyed_by_three(who, other, third, "customer", customer)

    @rule(who=actors, other=actors, third=actors, item=work)
    def keyed_on_work(self, who: Who, other: Who, third: Who, item: str) -> None:
        self.keyed_by_three(who, other, third, self.ref.work[item].kind, item)

    def keyed_by_three(self, who: Who, other: Who, third: Who, kind: str, aggregate: str) -> None:
        who, other, third = list(dict.fromkeys((who, other, third, *PRINCIPALS)))[:3]  # three
        key = {"Idempotency-Key": f"key-{next(_numbers)}"}
        same = KeyedCall.on(kind, aggregate)
        firsts = [(w, self.keyed(w, kind, aggregate, same, key)) for w in (who, other)]
        self.keyed(third, kind, aggregate, KeyedCall.on(kind, aggregate), key)
        if firsts[0][1].status_code == 404:  # the key again on an id of nowhere, then here
            self.as_nowhere(who, firsts[0][1], same.path, aggregate, call=same, headers=key)
        for w, first in firsts:
            stale = {"If-Match": '"0"'} if first.is_success else {}  # not compared
            again = self.call(w, same, key | stale)
            assert _same(again, first), (w, same, again.text, first.text)

    def keyed(
        self, who: Who, kind: str, aggregate: str, call: KeyedCall, headers: dict[str, str]
    ) -> httpx.Response:
        """`call` by `who`, answered as the reference says of it; the reference after it."""
        expected = self.keyed_expected(who, kind, aggregate)
        answer = self.call(who, call, headers)
        assert answer.status_code == expected, (who, call, headers, answer.text)
        if answer.is_success:
            self.keyed_applied(who, kind, aggregate, call, answer.json())
        return answer

    def keyed_expected(self, who: Who, kind: str, aggregate: str) -> int:
        if kind == "customer":
            return self.ref.customer_change(who, aggregate)
        access = self.ref.change_work(who, aggregate)
        if kind == "conversation":
            return self.expected_of(who, aggregate, "note", 201 if access == 200 else access)
        return self.expected_of(who, aggregate, "progress", access)

    def keyed_applied(
        self, who: Who, kind: str, aggregate: str, call: KeyedCall, answer: Any
    ) -> None:
        if kind == "customer":
            tags = self.ref.customers[aggregate].tags
            if call.body["tag"] not in tags:
                tags.add(call.body["tag"])
                self.delivered("CustomerTagged", aggregate, self.seeing(kind, aggregate))
            return
        if kind == "conversation":
            self.ref.work[aggregate].authors[str(answer["message_id"])] = who.name
        event = "InternalNoteAdded" if kind == "conversation" else "TaskProgressLogged"
        self.delivered(event, aggregate, self.seeing(kind, aggregate))

    def seeing(self, kind: str, aggregate: str) -> Callable[[Who], bool]:
        if kind == "customer":
            return lambda who: self.ref.sees_customer(who, aggregate)
        return lambda who: self.ref.sees_work(who, aggregate)

    # --- If-Match ---------------------------------------------------------------------

    @rule(who=actors, customer=customers, tag=st.sampled_from(IF_MATCH))
    def conditional_on_customer(self, who: Who, customer: str, tag: str) -> None:
        self.conditional(who, "customer", customer, tag)

    @rule(who=actors, item=work, tag=st.sampled_from(IF_MATCH))
    def conditional_on_work(self, who: Who, item: str, tag: str) -> None:
        self.conditional(who, self.ref.work[item].kind, item, tag)

    def conditional(self, who: Who, kind: str, aggregate: str, tag: str) -> None:
        version = self.version_of(kind, aggregate)
        sent = {"*": "*", "current": version, "stale": version - 1, "ahead": version + 5}[tag]
        headers = {"If-Match": sent if sent == "*" else f'"{sent}"'}
        call, expected = KeyedCall.on(kind, aggregate), self.keyed_expected(who, kind, aggregate)
        if expected == 404:
            answer = self.call(who, call, headers)
            self.as_nowhere(who, answer, call.path, aggregate, call=call, headers=headers)
            return
        if tag in ("stale", "ahead") and not self.refused_before_version(who, kind, aggregate):
            answer = self.call(who, call, headers)
            assert answer.status_code == 409, (who, call, headers, answer.text)
            assert answer.json()["type"].endswith("/version-conflict"), answer.text
            return
        answer = self.keyed(who, kind, aggregate, call, headers)
        if answer.is_success:
            assert answer.headers["etag"] == f'"{answer.json()["version"]}"', answer.headers

    def refused_before_version(self, who: Who, kind: str, aggregate: str) -> bool:
        """Whether the access model refuses the command before If-Match is compared: a
        role without the action (403), a target not readable (404, `as_nowhere`), an
        erased customer (409). What the state refuses comes after."""
        customer = aggregate if kind == "customer" else self.ref.work[aggregate].customer
        access = (
            self.ref.customer_change(who, aggregate)
            if kind == "customer"
            else self.ref.change_work(who, aggregate)
        )
        return access in (403, 404) or self.ref.customers[customer].erased

    def version_of(self, kind: str, aggregate: str) -> int:
        """The aggregate's version now, as its ETag gives it to an admin."""
        admin = next(w for w in PRINCIPALS if w.role == "admin")
        seen = self.http.get(f"/v1/{kind}s/{aggregate}", headers=self.tokens[admin.name])
        return int(seen.headers["etag"].strip('"'))

    # --- nowhere ----------------------------------------------------------------------

    def as_nowhere(
        self,
        who: Who,
        answer: httpx.Response,
        path: str,
        aggregate: str,
        *,
        call: KeyedCall | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        """`answer` to `who`'s request naming `aggregate` at `path` (a read, or `call`
        with `headers`) is exactly the answer to the same request naming an id that
        exists nowhere, but for that id: its status, its headers (no ETag) and its
        body. The reads' answers of nowhere are asked once per principal and path."""
        if call is None:
            cached = (who.name, path.replace(aggregate, "{id}"))
            if cached not in self.nowhere:
                made_up = str(uuid.uuid4())
                self.nowhere[cached] = self.http.get(
                    path.replace(aggregate, made_up), headers=self.tokens[who.name]
                )
            nowhere = self.nowhere[cached]
        else:
            made_up = str(uuid.uuid4())
            elsewhere = call._replace(path=call.path.replace(aggregate, made_up))
            nowhere = self.call(who, elsewhere, headers or {})
        assert answer.status_code == nowhere.status_code == 404, (who, path, answer.text)
        assert _headers(answer) == _headers(nowhere), (who, path, answer.headers)
        named = nowhere.url.path.split("/")[3]  # /v1/<kind>s/<id>...
        assert answer.text == nowhere.text.replace(named, aggregate), (who, answer.text)


def _headers(answer: httpx.Response) -> dict[str, str]:
    return {
        name: value
        for name, value in answer.headers.items()
        if name not in VARYING and name != "content-length"
    }


def _same(again: httpx.Response, first: httpx.Response) -> bool:
    """The same status, body and headers (an ETag included)."""
    return (again.status_code, again.text, _headers(again)) == (
        first.status_code,
        first.text,
        _headers(first),
    )
