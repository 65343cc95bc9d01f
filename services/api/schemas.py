"""Request bodies of the HTTP API that are not a whole command.

Most routes decode their body straight into their command (`services.*_commands`): the
command class is the body's schema. The few commands that also take a value from the
path (an order id, a message id) decode the rest of their body here. Shapes only; every
business check is the domain's, so the HTTP API, the CLI and the demo refuse exactly the
same things.
"""

from __future__ import annotations

import msgspec

from domain import fields as f


class Body(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    pass


class OrderStatusBody(Body, frozen=True, kw_only=True):
    status: f.Code


class CorrectionBody(Body, frozen=True, kw_only=True):
    content: f.MessageText
    reason: f.Line
