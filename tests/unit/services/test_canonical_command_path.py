"""The path an Idempotency-Key's fingerprint names (`canonical_path`): the route's, with
its parameters as parsed. Red team: the path as sent, so a retry spelling the id in
upper case answered 409 `idempotency-key-reused` instead of the first answer."""

from __future__ import annotations

import itertools
import re
from typing import Any
from uuid import UUID

from litestar import Litestar, Request, Router, post
from litestar.di import Provide
from litestar.params import FromPath
from litestar.routes import HTTPRoute
from litestar.testing import TestClient

from services.api.deps import canonical_path
from services.api.routes_conversations import conversations
from services.api.routes_customers import customers
from services.api.routes_tasks import tasks

ID = UUID("2a9b2c3d-0000-4000-8000-00000000000f")


@post("/customers/{customer_id:uuid}/tags/{tag_name:str}", status_code=200)
async def echo(
    customer_id: FromPath[UUID], tag_name: FromPath[str], request: Request[Any, Any, Any]
) -> str:
    return canonical_path(request)


def spelled(path: str) -> str:
    with TestClient(Litestar([Router("/v1", route_handlers=[echo])])) as client:
        sent = client.post(path)
        assert sent.status_code == 200, sent.text
        return sent.text


def test_every_spelling_of_an_id_names_one_path() -> None:
    canonical = f"/v1/customers/{ID}/tags/vip"
    for sent in (str(ID), str(ID).upper(), ID.hex, ID.hex.upper(), f"{{{ID}}}", ID.urn):
        assert spelled(f"/v1/customers/{sent}/tags/vip") == canonical, sent


def test_other_parameters_name_other_paths() -> None:
    assert spelled(f"/v1/customers/{ID}/tags/VIP") == f"/v1/customers/{ID}/tags/VIP"
    assert spelled(f"/v1/customers/{ID}/tags/a%0Ab") == f"/v1/customers/{ID}/tags/a\nb"
    assert spelled(f"/v1/customers/{ID}/tags/%7Bx%7D") == f"/v1/customers/{ID}/tags/{{x}}"
    other = UUID(int=ID.int + 1)
    assert spelled(f"/v1/customers/{other}/tags/vip") != spelled(f"/v1/customers/{ID}/tags/vip")


def test_a_parameter_is_one_segment() -> None:
    """A `/` sent escaped is no parameter (no route), so a parameter never spells one."""
    with TestClient(Litestar([Router("/v1", route_handlers=[echo])])) as client:
        assert client.post(f"/v1/customers/{ID}/tags/a%2Fb").status_code == 404


DEPENDENCIES = {  # each its own callable: Litestar refuses one provider under two names
    name: Provide(lambda: None, sync_to_thread=False)
    for name in ("services", "caller", "call", "reader", "lists")
}
"""What the command routes declare; no request is sent to them."""


def command_templates() -> dict[str, list[str]]:
    """Every command route's template, by method (`/v1/customers/{customer_id}`...)."""
    commands = [customers, conversations, tasks]  # the routers whose routes take a `Call`
    app = Litestar([Router("/v1", route_handlers=commands)], dependencies=DEPENDENCIES)
    templates: dict[str, list[str]] = {}
    for route in app.routes:
        if isinstance(route, HTTPRoute):
            for method in route.methods - {"GET", "HEAD", "OPTIONS"}:
                templates.setdefault(method, []).append(route.path_format)
    return templates


def could_meet(one: str, other: str) -> bool:
    """Whether some one-segment parameters make the two templates the same path."""
    ours, theirs = one.split("/"), other.split("/")
    parameter = re.compile(r"\{\w+\}")
    return len(ours) == len(theirs) and all(
        a == b or parameter.fullmatch(a) or parameter.fullmatch(b)
        for a, b in zip(ours, theirs, strict=True)
    )


def test_no_two_commands_share_a_path() -> None:
    templates = command_templates()
    assert len(templates["POST"]) > 10  # the routes were found
    for method, paths in templates.items():
        assert len(paths) == len(set(paths)), method
        for one, other in itertools.combinations(paths, 2):
            assert not could_meet(one, other), (method, one, other)
