"""A reference model of who may see and do what, written for the tests.

Independent of `services.access` on purpose: it states the product's rules in the plainest
terms (who sees which customer, conversation and task; which fields they may read; which
status a command must answer) so that the stateful test can hold every read path of the
real API against it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

DEPARTMENTS = ("sales", "support", "marketing")
SEE_ALL = frozenset({"analyst", "auditor", "service", "admin"})
STAFF = frozenset({"agent", "manager"})
WRITERS = frozenset({"agent", "manager", "service", "admin"})
MASKED, ERASED = "[masked]", "[erased]"


@dataclass(frozen=True)
class Who:
    name: str
    role: str
    department: str


PRINCIPALS = (
    *(Who(f"{role}-{d}", role, d) for d in DEPARTMENTS for role in ("agent", "manager")),
    Who("analyst-1", "analyst", "analytics"),
    Who("auditor-1", "auditor", "audit"),
    Who("service-1", "service", "integration"),
    Who("admin-1", "admin", "it"),
)


@dataclass
class CustomerRef:
    owner: str
    email: str
    phone: str
    shared: set[str] = field(default_factory=set)
    consent: bool | None = None  # e-mail marketing: never recorded, granted or withdrawn
    erased: bool = False

    @property
    def departments(self) -> set[str]:
        return {self.owner, *self.shared}


@dataclass
class WorkRef:
    kind: str  # conversation | task
    customer: str
    department: str
    text: str  # the subject or title


@dataclass
class Reference:
    customers: dict[str, CustomerRef] = field(default_factory=dict)
    work: dict[str, WorkRef] = field(default_factory=dict)

    # --- what each principal may see -----------------------------------------------

    def sees_customer(self, who: Who, customer: str) -> bool:
        return who.role in SEE_ALL or who.department in self.customers[customer].departments

    def sees_work(self, who: Who, item: str) -> bool:
        return who.role in SEE_ALL or who.department == self.work[item].department

    def sees_view(self, who: Who, department: str) -> bool:
        return who.role in SEE_ALL or (who.role in STAFF and who.department == department)

    def sees_stats(self, who: Who, department: str) -> bool:
        return who.role in SEE_ALL or (who.role == "manager" and who.department == department)

    def reads_history(self, who: Who) -> bool:
        return who.role in ("manager", "auditor", "admin")

    def reads_names(self, who: Who) -> bool:
        """Whether `who` reads customers' names, and so may find customers by them."""
        return who.role != "analyst"

    def email_seen(self, who: Who, customer: str) -> str:
        """The e-mail as `who` must read it."""
        ref = self.customers[customer]
        hidden = who.role == "analyst" or (
            who.role in STAFF and who.department == "marketing" and not ref.consent
        )
        return MASKED if hidden else (ERASED if ref.erased else ref.email)

    def phone_seen(self, who: Who, customer: str) -> str:
        """The phone as `who` must read it: never by analysts nor marketing staff."""
        ref = self.customers[customer]
        hidden = who.role == "analyst" or (who.role in STAFF and who.department == "marketing")
        return MASKED if hidden else (ERASED if ref.erased else ref.phone)

    def text_seen(self, who: Who, item: str) -> str:
        """A conversation's subject or a task's title as `who` must read it."""
        ref = self.work[item]
        if who.role == "analyst":
            return MASKED
        return ERASED if self.customers[ref.customer].erased else ref.text

    # --- what each command must answer ----------------------------------------------

    def register(self, who: Who, department: str) -> int:
        if who.role not in WRITERS or (who.role in STAFF and who.department != department):
            return 403
        return 201

    def owner_change(self, who: Who, customer: str) -> int:
        """Owner changes, shares and unshares: the owning department decides."""
        if who.role not in WRITERS:
            return 403
        if not self.sees_customer(who, customer):
            return 404
        if who.role in STAFF and who.department != self.customers[customer].owner:
            return 403
        return 409 if self.customers[customer].erased else 200

    def consent(self, who: Who, customer: str, granted: bool) -> int:
        if who.role not in WRITERS:
            return 403
        if not self.sees_customer(who, customer):
            return 404
        ref = self.customers[customer]
        if ref.erased:
            return 409
        widens = granted and not ref.consent and self.email_seen(who, customer) == MASKED
        return 403 if widens else 200

    def open_work(self, who: Who, customer: str, department: str, assignee: str | None) -> int:
        if who.role not in WRITERS:
            return 403
        if assignee not in (None, who.name) and who.role == "agent":
            return 403  # naming someone else is an assignment
        if not self.sees_customer(who, customer):
            return 404
        if self.customers[customer].erased:
            return 409
        return 403 if who.role in STAFF and who.department != department else 201

    def change_work(self, who: Who, item: str, assignee: str | None = None) -> int:
        if who.role not in WRITERS:
            return 403
        if assignee not in (None, who.name) and who.role == "agent":
            return 403
        if not self.sees_work(who, item):
            return 404
        return 409 if self.customers[self.work[item].customer].erased else 200

    def erase(self, who: Who, customer: str) -> int:
        if who.role != "admin":
            return 403
        return 409 if self.customers[customer].erased else 200
