"""The one access model: who may read what, which personal fields they see, which commands run.

Every read path (a `GET`, history, `as_of`, timeline entries, department views, statistics,
search, the event stream) and every command asks this package; nothing else decides
visibility or permission. A decision is a pure function of a principal and a `Resource`:
what the model needs of an aggregate's state at some position (its departments, its owner,
the customer's e-mail consent, erasure).

* **Visibility.** A resource the caller may not read does not exist for them: `NotFound`
  (404), exactly as for an unknown id, so ids of other departments cannot be probed.
  `Forbidden` (403, naming the rule) is for a resource they may read but may not act on in
  that way.
* **Rules.** `RULES` is the one table of role x action -> scope (`rules_table()` renders it
  for the README). Field-level rules live here too: a command naming an assignee is an
  assignment; a command never widens what its own caller may see; departments are a
  closed, configured set.
* **Fields.** Which fields are personal is declared once, in the domain (`personal_fields`
  of aggregates, their state structs and events; read-model tables repeat it for their
  columns). `FieldAccess` says which of them a caller may not read; `mask` applies it.

Its parts, each importing only those listed before it:

* `resources`: `Resource`, what a decision needs of an aggregate (`resource_of`);
* `rules`: the principal (`Principal`, `Role`), the one role x action -> scope table
  (`RULES`, `allows`, `authorize`, `Forbidden`) and its Markdown rendering;
* `fields`: which personal fields a caller may not read (`field_access`, `FieldAccess`)
  and the masking that applies it to a document (`mask`, `unmasked`);
* `findable`: which customers a search by personal fields may find (`Findable`);
* `model`: `AccessModel`, the decisions every read path and command asks, with the
  configured departments (reads, the past, department scopes, commands).

I/O: none.
"""
