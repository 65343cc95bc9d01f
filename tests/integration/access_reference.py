"""A reference model of who may see and do what, written for the tests.

Independent of `services.access` on purpose: it states the product's rules in the plainest
terms (who sees which customer, conversation and task, and which of their department
queues and boards list them; which fields they may read, a message's author and a
correction's or retraction's reason included, and a task's due time, which is not
personal; what a search may find; which status a command must answer, and, apart, what a
conversation's or task's state refuses, a task's due-time rules included) so that the
stateful test can hold every read path of the real API against it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

DEPARTMENTS = ("sales", "support", "marketing")
SEE_ALL = frozenset({"analyst", "auditor", "service", "admin"})
STAFF = frozenset({"agent", "manager"})
WRITERS = frozenset({"agent", "manager", "service", "admin"})
MASKED, ERASED = "[masked]", "[erased]"
FUTURE, PAST = "2999-01-01T00:00:00Z", "2000-01-01T00:00:00Z"  # due times: ahead, passed


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
    name: str
    email: str
    phone: str
    company: str
    shared: set[str] = field(default_factory=set)
    consent: bool | None = None  # e-mail marketing: never recorded, granted or withdrawn
    tags: set[str] = field(default_factory=set)
    orders: set[str] = field(default_factory=set)
    archived: bool = False
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
    authors: dict[str, str | None] = field(default_factory=dict)
    """A conversation's entries, in order: id -> author as written (None: retracted)."""
    status: str = "open"  # open, closed (conversations); in_progress, completed, cancelled
    assignee: str | None = None
    answered: set[str] = field(default_factory=set)  # csat, nps, evaluation: this closing's
    reasons: dict[str, str] = field(default_factory=dict)
    """An entry's last correction's or retraction's reason, by entry id."""
    due: str | None = None  # a task's due time (FUTURE, PAST or None)
    late_setter: str | None = None  # who set the due time over a passed one
    late: bool = False  # this completion came after its due time

    def move_due(self, who: Who, due: str | None) -> None:
        """A due time changed by `who`: who set one over a passed one is remembered
        until someone else sets it."""
        if self.due == PAST:
            self.late_setter = who.name
        elif who.name != self.late_setter:
            self.late_setter = None
        self.due = due


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

    def reads_as_of(self, who: Who) -> bool:
        return who.role in ("auditor", "admin")

    def reads_audit(self, who: Who) -> bool:
        return who.role in ("auditor", "admin")

    def marketer(self, who: Who) -> bool:
        return who.role in STAFF and who.department == "marketing"

    def reads_names(self, who: Who) -> bool:
        """Whether `who` reads customers' names, and so may find customers by them."""
        return who.role != "analyst"

    def email_seen(self, who: Who, customer: str) -> str:
        """The e-mail as `who` must read it."""
        ref = self.customers[customer]
        hidden = who.role == "analyst" or (self.marketer(who) and not ref.consent)
        return MASKED if hidden else (ERASED if ref.erased else ref.email)

    def phone_seen(self, who: Who, customer: str) -> str:
        """The phone as `who` must read it: never by analysts nor marketing staff."""
        ref = self.customers[customer]
        hidden = who.role == "analyst" or self.marketer(who)
        return MASKED if hidden else (ERASED if ref.erased else ref.phone)

    def text_seen(self, who: Who, item: str) -> str:
        """A conversation's subject or a task's title as `who` must read it."""
        ref = self.work[item]
        if who.role == "analyst":
            return MASKED
        return ERASED if self.customers[ref.customer].erased else ref.text

    def authors_seen(self, who: Who, item: str) -> list[str]:
        """A conversation's entries' authors as `who` must read them: never by analysts nor
        marketing staff, whatever the consent (an inbound author is the customer as
        written: their e-mail, their phone, a name; staff names are hidden alike); a
        retracted entry keeps none."""
        ref = self.work[item]
        if who.role == "analyst" or self.marketer(who):
            return [MASKED] * len(ref.authors)
        erased = self.customers[ref.customer].erased
        return [
            "" if author is None else ERASED if erased else author
            for author in ref.authors.values()
        ]

    def personal_seen(self, who: Who, customer: str, value: str) -> str:
        """Free text about a customer (a correction's or retraction's reason, as its
        content) as `who` must read it: masked for analysts alone (marketing staff read
        it, as they read an entry's content), `[erased]` once the customer is."""
        if who.role == "analyst":
            return MASKED
        return ERASED if self.customers[customer].erased else value

    def reasons_seen(self, who: Who, item: str) -> list[str | None]:
        """Each entry's last correction's or retraction's reason (None: neither)."""
        ref = self.work[item]
        return [
            self.personal_seen(who, ref.customer, ref.reasons[entry])
            if entry in ref.reasons
            else None
            for entry in ref.authors
        ]

    def due_seen(self, who: Who, item: str) -> str | None:
        """A task's due time: not personal, so whoever reads the task reads it whole
        (analysts too)."""
        return self.work[item].due

    def listed(self, item: str) -> bool:
        """Whether its department's queue (open conversations) or task board lists a
        conversation or task: not once its customer is archived (their rows go)."""
        ref = self.work[item]
        open_work = ref.kind == "task" or ref.status == "open"
        return open_work and not self.customers[ref.customer].archived

    def found_by_email(self, who: Who, customer: str) -> bool:
        """A search by e-mail finds a customer whose e-mail `who` reads (so marketing
        staff only those consenting to e-mail marketing), not archived nor erased."""
        ref = self.customers[customer]
        return self.listed_in_search(who, customer) and self.email_seen(who, customer) == ref.email

    def found_by_phone(self, who: Who, customer: str) -> bool:
        ref = self.customers[customer]
        return self.listed_in_search(who, customer) and self.phone_seen(who, customer) == ref.phone

    def listed_in_search(self, who: Who, customer: str) -> bool:
        """Found by something `who` reads of them (a company or tag: nothing personal)."""
        ref = self.customers[customer]
        return self.sees_customer(who, customer) and not (ref.archived or ref.erased)

    # --- what each command must answer ----------------------------------------------

    def register(self, who: Who, department: str) -> int:
        if who.role not in WRITERS or (who.role in STAFF and who.department != department):
            return 403
        return 201

    def owner_change(self, who: Who, customer: str) -> int:
        """Owner changes, shares and unshares: the owning department decides."""
        return self.customer_change(who, customer, owner_only=True)

    def customer_change(
        self, who: Who, customer: str, owner_only: bool = False, archived_too: bool = False
    ) -> int:
        """A change of a customer (profile, tags, orders; `owner_only`: owner, shares,
        archiving): by those who read it (404), the owning department's staff alone where
        it decides; none once erased (409), nor once archived (409) but those allowed
        `archived_too` (consents, an order's status, archiving again)."""
        if who.role not in WRITERS:
            return 403
        if not self.sees_customer(who, customer):
            return 404
        ref = self.customers[customer]
        if owner_only and who.role in STAFF and who.department != ref.owner:
            return 403
        return 409 if ref.erased or (ref.archived and not archived_too) else 200

    def consent(self, who: Who, customer: str, granted: bool) -> int:
        answer = self.customer_change(who, customer, archived_too=True)
        if answer != 200:
            return answer
        ref = self.customers[customer]
        widens = granted and not ref.consent and self.email_seen(who, customer) == MASKED
        return 403 if widens else 200

    def open_work(self, who: Who, customer: str, department: str, assignee: str | None) -> int:
        if who.role not in WRITERS:
            return 403
        if assignee not in (None, who.name) and who.role == "agent":
            return 403  # naming someone else is an assignment
        if not self.sees_customer(who, customer):
            return 404
        ref = self.customers[customer]
        if ref.erased or ref.archived:  # no new work on them
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

    def survey(self, who: Who, item: str) -> int:
        """A CSAT or NPS answer: the survey's integration (a service) or an admin alone."""
        if who.role not in ("service", "admin"):
            return 403
        return self.change_work(who, item)

    def erase(self, who: Who, customer: str) -> int:
        if who.role != "admin":
            return 403
        return 409 if self.customers[customer].erased else 200

    # --- what the domain refuses once access allows (not access: the answer to expect) ---

    def refused_by_state(
        self, who: Who, item: str, command: str, named: str | None = None
    ) -> int | None:
        """The status with which a conversation's or task's state refuses `command` (None:
        it takes it): entries, closing and hand-offs need an open conversation, surveys a
        closed one answered no more this closing; a task moves open -> in_progress ->
        completed (or cancelled while active), is evaluated once per completion by anyone
        but its assignee (403), and reopened when completed or cancelled, by anyone but
        the assignee once the completion was evaluated or late; its due time moves while
        it is active, by anyone but the assignee once it has passed (403: `due` is a
        change of it), and it is not assigned (`named`) to whoever set it over a passed
        one (403)."""
        ref = self.work[item]
        status, assignee = ref.status, ref.assignee
        judged = ("evaluation" in ref.answered or ref.late) and who.name == assignee
        allowed = {
            "message": status == "open",
            "note": status == "open",
            "retract": status == "open",
            "correct": True,
            "close": status == "open",
            "handoff": status == "open",
            "csat": status == "closed" and "csat" not in ref.answered,
            "nps": status == "closed" and "nps" not in ref.answered,
            "patch": status in ("open", "in_progress"),
            "due": status in ("open", "in_progress"),
            "assign": status in ("open", "in_progress"),
            "start": status == "open" and assignee is not None,
            "progress": status == "in_progress",
            "complete": status == "in_progress",
            "evaluation": status == "completed" and "evaluation" not in ref.answered,
            "cancel": status in ("open", "in_progress"),
            "reopen": status in ("closed", "completed", "cancelled"),
        }[command]
        if not allowed:
            return 409
        if command == "evaluation" and who.name == assignee:
            return 403  # nobody judges their own work
        if command == "reopen" and status == "completed" and judged:
            return 403
        if command == "due" and ref.due == PAST and who.name == assignee:
            return 403  # the deadline their work is judged by
        if command == "assign" and named is not None and named == ref.late_setter:
            return 403
        return None
