// Customer 360: the profile as the API shows it to this principal (masked fields read
// "[masked]"), the orders, and the timeline across departments
// (GET /v1/customers/{id}, /timeline). For principals that may read the past
// (/history and ?as_of=, auditors and admins today), a time slider walks through the
// customer's versions: each stop is the instant of one event of /history.
import { departments, get, isId, list, path } from "../api.js";
import {
  field, h, instant, micros, moreLine, notice, replace, routeParams, select,
  setRouteParams, unknownDepartment, value, withDepartments,
} from "../dom.js";

// What one load of the timeline reads at most: 20 pages of up to 500 entries and 1 MB
// of messages each. Past that, "Load more" reads the next 20 (oldest first, so what is
// left out is the newest, and the page says so).
const TIMELINE_PAGES = 20;

// Without a department in the address: sales, else the deployment's first.
function picker(root, known) {
  const params = routeParams();
  const department = params.get("department") || (known.includes("sales") ? "sales" : known[0]);
  if (!known.includes(department)) {
    unknownDepartment(root, "Customer 360", "customer", department, known);
    return;
  }
  setRouteParams("customer", { department });
  const customers = h("ul", { class: "customer-list", id: "customer-list" });
  const more = moreLine("customer-more", () => page());
  const problems = h("div");
  const id = h("input", { name: "customer-id", id: "customer-id", placeholder: "customer id",
    pattern: "[0-9a-fA-F-]{36}", required: true });
  const open = h("form", { class: "filters" }, field("Customer id", id), h("button", {}, "Open"));
  open.addEventListener("submit", (event) => {
    event.preventDefault();
    location.hash = `#/customer/${id.value.trim()}`;
  });
  const choose = select("department", known.map((d) => [d, d]), department);
  choose.addEventListener("change", () => {
    location.hash = `#/customer?department=${encodeURIComponent(choose.value)}`;
  });
  let cursor = null;
  async function page() {
    try {
      const part = await list(path`/v1/departments/${department}/customers`, { limit: 50 },
        { cursor });
      customers.append(...part.items.map((row) => h("li", {},
        h("a", { href: `#/customer/${row.customer_id}` }, value(row.name)),
        h("span", { class: "meta" }, [row.company, row.owner_department, row.tags.join(", ")]
          .filter(Boolean).join(" · ")))));
      cursor = part.cursor;
      more.say(cursor === null ? null
        : `${customers.children.length} customers shown; more not shown.`);
    } catch (error) {
      replace(problems, notice(error.notVisible
        ? `Your role may not list ${department}'s customers.` : error.message, "error"));
    }
  }
  replace(root, h("h1", {}, "Customer 360"), open,
    h("div", { class: "filters" }, field("Customers of", choose)), problems, customers,
    more.element);
  page();
}

function profile(customer) {
  const rows = [
    ["Company", customer.company], ["Email", customer.email], ["Phone", customer.phone],
    ["Address", customer.address], ["Owner", [customer.owner_department, customer.owner_agent]
      .filter(Boolean).join(" / ")],
    ["Shared with", customer.shared_with.join(", ")], ["Tags", customer.tags.join(", ")],
    ["Consents", Object.entries(customer.consents).map(([k, v]) => `${k}: ${v ? "yes" : "no"}`)
      .join(", ")],
    ["Version", customer.version],
  ];
  return h("dl", { class: "profile", id: "profile" }, rows.map(([label, text]) => [
    h("dt", {}, label),
    h("dd", { dataset: { field: label.toLowerCase().replace(" ", "_") } }, value(text)),
  ]));
}

function orders(customer) {
  if (customer.orders.length === 0) return notice("No orders.");
  return h("table", { class: "figures", id: "orders" },
    h("thead", {}, h("tr", {}, ["Order", "Amount", "Status", "Ordered"]
      .map((t) => h("th", { scope: "col" }, t)))),
    h("tbody", {}, customer.orders.map((order) => h("tr", {},
      h("td", {}, order.order_id), h("td", { class: "number" }, `${order.amount} ${order.currency}`),
      h("td", {}, order.status), h("td", {}, instant(order.ordered_at))))));
}

function timelineEntry(entry) {
  return h("li", { class: `entry entry-${entry.aggregate_type}`,
    dataset: { at: entry.occurred_at, id: entry.aggregate_id } },
    h("time", { datetime: entry.occurred_at }, instant(entry.occurred_at)),
    h("span", { class: `badge dept-${entry.actor_department}` }, entry.actor_department),
    h("span", { class: "type" }, `${entry.aggregate_type} · ${entry.event_type}`),
    h("span", { class: "meta" }, `by ${entry.actor}${entry.corrected ? " · corrected" : ""}`),
    entry.detail ? h("span", { class: "detail" }, entry.detail) : null,
    entry.content ? h("span", { class: "content" }, entry.author ? `${entry.author}: ` : "",
      value(entry.content)) : null);
}

// The timeline from `cursor` on, as far as one load reads: {items, cursor}.
function timeline(id, cursor = null) {
  return list(path`/v1/customers/${id}/timeline`, { limit: 500 },
    { pages: TIMELINE_PAGES, cursor });
}

// Every event of /history, a page at a time: each page starts after the version the
// last one ended at, and a page shorter than asked for is the last.
const HISTORY_PAGE = 1000;

async function wholeHistory(id) {
  const events = [];
  for (;;) {
    const cursor = events.length ? events[events.length - 1].version : 0;
    const page = await get(path`/v1/customers/${id}/history`, { cursor, limit: HISTORY_PAGE });
    events.push(...page);
    if (page.length < HISTORY_PAGE) return events;
  }
}

// The instants this principal may travel to: the events of /history, if both /history
// and ?as_of= answer (auditors and admins today); null when refused. Asked only when the
// person opens time travel, so other roles' pages make no refused request.
async function travels(id) {
  try {
    const history = await wholeHistory(id);
    // One stop per instant: ?as_of= shows every event up to and including it.
    const events = history.filter((e, i) => history[i + 1]?.occurred_at !== e.occurred_at);
    if (events.length === 0) return null;
    await get(path`/v1/customers/${id}`, { as_of: events[events.length - 1].occurred_at });
    return events;
  } catch (error) {
    if (error.notVisible) return null;
    throw error;
  }
}

function slider(events, onMove) {
  const last = events.length - 1;
  const range = h("input", { type: "range", id: "as-of", min: 0, max: last, step: 1, value: last,
    "aria-label": "customer as of" });
  const label = h("output", { id: "as-of-label", for: "as-of" });
  const latest = h("button", { type: "button", class: "quiet" }, "Latest");
  let timer = null;
  function describe() {
    const index = Number(range.value);
    const event = events[index];
    label.textContent = `${index === last ? "Now: " : ""}version ${event.version} of `
      + `${events[last].version}, ${instant(event.occurred_at)}, ${event.type} by ${event.actor}`;
  }
  range.addEventListener("input", () => {
    describe();
    clearTimeout(timer);
    timer = setTimeout(() => onMove(Number(range.value)), 120);
  });
  latest.addEventListener("click", () => {
    range.value = String(last);
    describe();
    onMove(last);
  });
  describe();
  return h("div", { class: "panel as-of", id: "as-of-panel" },
    h("h2", {}, "Time travel"), range, h("div", { class: "as-of-row" }, label, latest));
}

function show360(root, id) {
  const name = h("h1", { id: "customer-name" });
  const badges = h("span", { class: "badges" });
  const pastBanner = h("div", { id: "as-of-banner" });
  const profilePanel = h("section", { class: "panel" });
  const ordersPanel = h("section", { class: "panel" });
  const timelineTitle = h("h2", { id: "timeline-title" }, "Timeline across departments");
  const timelineList = h("ol", { class: "timeline", id: "timeline" });
  const timelineMore = moreLine("timeline-more", () => moreTimeline());
  const travel = h("div");
  let timelineCursor = null;
  let shownAsOf = null;

  function render(customer) {
    name.textContent = customer.name;
    replace(badges, customer.archived ? h("span", { class: "badge" }, "archived") : null,
      customer.erased ? h("span", { class: "badge erased" }, "erased") : null);
    replace(profilePanel, h("h2", {}, "Profile"), profile(customer));
    replace(ordersPanel, h("h2", {}, "Orders"), orders(customer));
  }

  function dim(items) {
    const after = shownAsOf === null ? Infinity : micros(shownAsOf);
    for (const item of items) item.classList.toggle("after", micros(item.dataset.at) > after);
  }

  function asOf(moment) {
    shownAsOf = moment;
    dim(timelineList.children);
    replace(pastBanner, moment === null ? null
      : notice(`Showing the customer as of ${instant(moment)}; later timeline entries are dimmed.`));
    root.dataset.asOf = moment ?? "";
  }

  async function openTravel(button) {
    button.disabled = true;
    let events = null;
    try {
      events = await travels(id);
    } catch (error) {
      replace(travel, notice(`Could not load the history: ${error.message}`, "error"));
      return;
    }
    if (events === null) {
      replace(travel, notice("Your role may not see past states of a customer "
        + "(auditors and admins may).", "info"));
      return;
    }
    replace(travel, slider(events, async (index) => {
      if (index === events.length - 1) {
        render(current);
        asOf(null);
        return;
      }
      const moment = events[index].occurred_at;
      render(await get(path`/v1/customers/${id}`, { as_of: moment }));
      asOf(moment);
    }));
    document.getElementById("as-of").focus();
  }

  // Adds a part of the timeline and says so if newer entries are left out.
  function showTimeline(part) {
    const entries = part.items.map(timelineEntry);
    dim(entries);
    timelineList.append(...entries);
    timelineCursor = part.cursor;
    const shown = timelineList.querySelectorAll("li.entry").length;
    const more = timelineCursor !== null;
    const counted = more ? `${shown}+, newer entries not shown below` : String(shown);
    timelineTitle.textContent = `Timeline across departments (${counted})`;
    timelineMore.say(more ? `${shown} entries shown, oldest first: newer ones not shown.` : null);
  }

  async function moreTimeline() {
    try {
      showTimeline(await timeline(id, timelineCursor));
    } catch (error) {
      timelineMore.say(`Could not load more of the timeline: ${error.message}`);
    }
  }

  let current;
  async function load() {
    try {
      current = await get(path`/v1/customers/${id}`);
    } catch (error) {
      replace(root, h("h1", {}, "Customer 360"), notice(error.notVisible
        ? "No customer with this id is visible to you." : `Could not load: ${error.message}`,
      "error"), h("a", { href: "#/customer" }, "Back to the customer list"));
      root.dataset.state = error.notVisible ? "not-visible" : "error";
      return;
    }
    render(current);
    const first = await timeline(id).catch(() => null);
    replace(timelineList, first === null
      ? h("li", { class: "none" }, "Timeline not visible to you.")
      : first.items.length ? null : h("li", { class: "none" }, "Nothing yet."));
    if (first !== null) showTimeline(first);
    replace(travel, h("button", { type: "button", class: "quiet", id: "open-as-of",
      onclick: (event) => openTravel(event.target) }, "Time travel…"));
    root.dataset.state = "ready";
  }

  replace(root,
    h("div", { class: "heading" }, name, badges, h("a", { href: "#/customer", class: "quiet" }, "All customers")),
    travel, pastBanner,
    h("div", { class: "grid" }, profilePanel, ordersPanel),
    h("section", { class: "panel" }, timelineTitle, timelineList,
      timelineMore.element));
  load();
}

// An address whose id is no UUID names no customer: the API is not asked (an id such as
// ".." would change the path asked).
function notFound(root) {
  replace(root, h("h1", {}, "Customer 360"), notice("No customer has this id.", "error"),
    h("a", { href: "#/customer" }, "Back to the customer list"));
  root.dataset.state = "not-found";
}

export function mount(root, rest) {
  if (!rest[0]) {
    return withDepartments(root, "Customer 360", departments(), (known) => picker(root, known));
  }
  if (isId(rest[0])) show360(root, rest[0]);
  else notFound(root);
  return undefined;
}
