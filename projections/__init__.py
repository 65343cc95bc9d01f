"""Pure projections: events in, row changes out. No I/O (see `projections.base`).

`PROJECTIONS` is the registry the runner, the follower and the CLI use by name.
"""

from __future__ import annotations

from projections.base import Projection
from projections.marketing import marketing
from projections.sales import sales
from projections.shared import shared
from projections.stats import stats
from projections.support import support

PROJECTIONS: dict[str, Projection] = {p.name: p for p in (sales, support, marketing, shared, stats)}

__all__ = ["PROJECTIONS", "Projection"]
