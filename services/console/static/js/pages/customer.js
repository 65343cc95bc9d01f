// Customer 360: the profile as the API shows it to this principal (masked fields read
// "[masked]"), the orders, and the timeline across departments
// (GET /v1/customers/{id}, /timeline). For principals that may read the past
// (/history and ?as_of=, auditors and admins today), a time slider walks through the
// customer's versions: each stop is the instant of one event of /history.
import { get } from "../api.js";
import {
  DEPARTMENTS, field, h, instant, micros, notice, replace, routeParams, select, setRouteParams, value,
} from "../dom.js";

const TIMELINE_PAGES = 20;

function picker(root) {
  const params = routeParams();
  const department = params.get("department") || "sales";
  setRouteParams("customer", { department });
  const list = h("ul", { class: "customer-list", id: "customer-list" });
  const more = h("button", { type: "button", class: "quiet", hidden: true }, "More");
  const problems = h("div");
  const id = h("input", { name: "customer-id", id: "customer-id", placeholder: "customer id",
    pattern: "[0-9a-fA-F-]{36}", required: true });
  const open = h("form", { class: "filters" }, field("Customer id", id), h("button", {}, "Open"));
  open.addEventListener("submit", (event) => {
    event.preventDefault();
    location.hash = `#/customer/${id.value.trim()}`;
  });
  const choose = select("department", DEPARTMENTS.map((d) => [d, d]), department);
  choose.addEventListener("change", () => {
    location.hash = `#/customer?department=${encodeURIComponent(choose.value)}`;
  });
  let cursor = null;
  async function page() {
    try {
      const answer = await get(`/v1/departments/${encodeURIComponent(department)}/customers`,
        { limit: 50, cursor });
      list.append(...answer.items.map((row) => h("li", {},
        h("a", { href: `#/customer/${row.customer_id}` }, value(row.name)),
        h("span", { class: "meta" }, [row.company, row.owner_department, row.tags.join(", ")]
          .filter(Boolean).join(" · ")))));
      cursor = answer.next_cursor;
      more.hidden = !cursor;
    } catch (error) {
      replace(problems, notice(error.notVisible
        ? `Your role may not list ${department}'s customers.` : error.message, "error"));
    }
  }
  more.addEventListener("click", page);
  replace(root, h("h1", {}, "Customer 360"), open,
    h("div", { class: "filters" }, field("Customers of", choose)), problems, list, more);
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
  return h("li", { class: `entry entry-${entry.aggregate_type}`, dataset: { at: entry.occurred_at } },
    h("time", { datetime: entry.occurred_at }, instant(entry.occurred_at)),
    h("span", { class: `badge dept-${entry.actor_department}` }, entry.actor_department),
    h("span", { class: "type" }, `${entry.aggregate_type} · ${entry.event_type}`),
    h("span", { class: "meta" }, `by ${entry.actor}${entry.corrected ? " · corrected" : ""}`),
    entry.detail ? h("span", { class: "detail" }, entry.detail) : null,
    entry.content ? h("span", { class: "content" }, entry.author ? `${entry.author}: ` : "",
      value(entry.content)) : null);
}

async function timeline(id) {
  const entries = [];
  let cursor = null;
  for (let page = 0; page < TIMELINE_PAGES; page += 1) {
    const answer = await get(`/v1/customers/${id}/timeline`, { limit: 500, cursor });
    entries.push(...answer.items);
    cursor = answer.next_cursor;
    if (!cursor) break;
  }
  return entries;
}

// Every event of /history, a page at a time: each page starts after the version the
// last one ended at, and a page shorter than asked for is the last.
const HISTORY_PAGE = 1000;

async function wholeHistory(id) {
  const events = [];
  for (;;) {
    const cursor = events.length ? events[events.length - 1].version : 0;
    const page = await get(`/v1/customers/${id}/history`, { cursor, limit: HISTORY_PAGE });
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
    await get(`/v1/customers/${id}`, { as_of: events[events.length - 1].occurred_at });
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
  const timelineList = h("ol", { class: "timeline", id: "timeline" });
  const travel = h("div");

  function render(customer) {
    name.textContent = customer.name;
    replace(badges, customer.archived ? h("span", { class: "badge" }, "archived") : null,
      customer.erased ? h("span", { class: "badge erased" }, "erased") : null);
    replace(profilePanel, h("h2", {}, "Profile"), profile(customer));
    replace(ordersPanel, h("h2", {}, "Orders"), orders(customer));
  }

  function asOf(moment) {
    for (const item of timelineList.children) {
      item.classList.toggle("after", moment !== null && micros(item.dataset.at) > micros(moment));
    }
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
      render(await get(`/v1/customers/${id}`, { as_of: moment }));
      asOf(moment);
    }));
    document.getElementById("as-of").focus();
  }

  let current;
  async function load() {
    try {
      current = await get(`/v1/customers/${id}`);
    } catch (error) {
      replace(root, h("h1", {}, "Customer 360"), notice(error.notVisible
        ? "No customer with this id is visible to you." : `Could not load: ${error.message}`,
      "error"), h("a", { href: "#/customer" }, "Back to the customer list"));
      root.dataset.state = error.notVisible ? "not-visible" : "error";
      return;
    }
    render(current);
    const entries = await timeline(id).catch(() => null);
    replace(timelineList, entries === null ? h("li", { class: "none" }, "Timeline not visible to you.")
      : entries.length ? entries.map(timelineEntry) : h("li", { class: "none" }, "Nothing yet."));
    replace(travel, h("button", { type: "button", class: "quiet", id: "open-as-of",
      onclick: (event) => openTravel(event.target) }, "Time travel…"));
    root.dataset.state = "ready";
  }

  replace(root,
    h("div", { class: "heading" }, name, badges, h("a", { href: "#/customer", class: "quiet" }, "All customers")),
    travel, pastBanner,
    h("div", { class: "grid" }, profilePanel, ordersPanel),
    h("section", { class: "panel" }, h("h2", {}, "Timeline across departments"), timelineList));
  load();
}

export function mount(root, rest) {
  if (rest[0]) show360(root, encodeURIComponent(rest[0]));
  else picker(root);
}
