// Building the page without innerHTML: every value from the API goes in as text,
// so a customer named "<img onerror=...>" stays a name. No style attributes either
// (the Content-Security-Policy forbids them): looks come from classes in console.css.

export function h(tag, attributes = {}, ...children) {
  const element = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (value === null || value === undefined || value === false) continue;
    if (name === "class") element.className = value;
    else if (name === "dataset") Object.assign(element.dataset, value);
    else if (name.startsWith("on")) element.addEventListener(name.slice(2), value);
    else if (name === "style") throw new Error("no style attributes under the CSP: use a class");
    else element.setAttribute(name, value === true ? "" : String(value));
  }
  append(element, children);
  return element;
}

function append(element, children) {
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    element.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

export function replace(element, ...children) {
  element.replaceChildren();
  append(element, children);
  return element;
}

export function field(label, control) {
  return h("label", { class: "field" }, h("span", {}, label), control);
}

export function select(name, options, chosen) {
  return h(
    "select",
    { name, id: name },
    options.map(([value, text]) => h("option", { value, selected: value === chosen }, text)),
  );
}

export function notice(text, kind = "info") {
  return h("p", { class: `notice ${kind}`, role: kind === "error" ? "alert" : "status" }, text);
}

export const MASKED = "[masked]";

// A value as the API gave it; masked and erased values are marked so they read as such.
export function value(text) {
  if (text === null || text === undefined || text === "") return h("span", { class: "none" }, "—");
  const shown = String(text);
  if (shown === MASKED) return h("span", { class: "masked", title: "hidden for your role" }, shown);
  if (shown === "[erased]") return h("span", { class: "erased" }, shown);
  return h("span", {}, shown);
}

export function instant(iso) {
  if (!iso) return "—";
  const date = new Date(iso);
  return `${date.toISOString().slice(0, 10)} ${date.toISOString().slice(11, 19)} UTC`;
}

// Microseconds since the epoch: the API's instants carry microseconds, Date.parse only ms.
export function micros(iso) {
  const fraction = /\.(\d+)/.exec(iso)?.[1] ?? "";
  const extra = Number(fraction.slice(3, 6).padEnd(3, "0"));
  return Date.parse(iso) * 1000 + extra;
}

// "3 d 4 h", "5 h 12 min", "42 s": how long ago `iso` was, at `now` (ms).
export function age(iso, now = Date.now()) {
  let rest = Math.max(0, Math.round((now - Date.parse(iso)) / 1000));
  const parts = [];
  for (const [unit, size] of [["d", 86400], ["h", 3600], ["min", 60], ["s", 1]]) {
    const count = Math.floor(rest / size);
    rest -= count * size;
    if (count > 0 || parts.length > 0) parts.push(`${count} ${unit}`);
  }
  return parts.slice(0, 2).join(" ") || "0 s";
}

// An API figure exactly as the API computed it (no re-rounding), or a dash without answers.
export function figure(number) {
  return number === null || number === undefined ? "—" : String(number);
}

// The hash route's query, e.g. #/satisfaction?department=support -> Map.
export function routeParams() {
  const query = location.hash.split("?")[1] || "";
  return new URLSearchParams(query);
}

export function setRouteParams(page, params) {
  const query = new URLSearchParams(
    Object.entries(params).filter(([, v]) => v !== "" && v !== null && v !== undefined),
  ).toString();
  const next = `#/${page}${query ? `?${query}` : ""}`;
  if (location.hash !== next) history.replaceState(null, "", next);
}

// Draws a page that offers the deployment's departments once `departments` (api.js
// `departments()`, a promise of their names) is read: `draw(known)` returns what stops
// the page, as a page's `mount` does. When the list cannot be read the page says so,
// as any failed load; it has no list of its own to guess with. Returns the page's stop.
export function withDepartments(root, title, departments, draw) {
  let stop = null;
  let stopped = false;
  root.dataset.state = "loading";
  departments.then((known) => {
    if (stopped) return;
    delete root.dataset.state;
    stop = draw(known) || null;
  }, (error) => {
    if (stopped) return;
    replace(root, h("h1", {}, title),
      notice(`Could not load the departments: ${error.message}`, "error"));
    root.dataset.state = "error";
  });
  return () => {
    stopped = true;
    stop?.();
  };
}

// What a page shows for a department from the address that is not one of `known`
// (the deployment's): it asks the API nothing about it (a name such as ".." would
// change the path asked).
export function unknownDepartment(root, title, page, department, known) {
  replace(root, h("h1", {}, title),
    notice(`Unknown department: "${department}".`, "error"),
    h("p", {}, "Choose one: ", known.map((name, i) => [i ? ", " : "",
      h("a", { href: `#/${page}?department=${encodeURIComponent(name)}` }, name)])));
  root.dataset.state = "unknown-department";
}

// The line under a list of which the API holds more than is shown (api.js `list` gave
// a cursor): no list stops silently. `say(text)` shows it with `text`, `say(null)` hides
// it; its button runs `onMore` (disabled until that has finished).
export function moreLine(id, onMore) {
  const said = h("span");
  const button = h("button", { type: "button", class: "quiet" }, "Load more");
  const element = h("p", { class: "more", id, role: "status", hidden: true }, said, " ", button);
  button.addEventListener("click", async () => {
    button.disabled = true;
    try {
      await onMore();
    } finally {
      button.disabled = false;
    }
  });
  function say(text) {
    element.hidden = text === null;
    said.textContent = text ?? "";
  }
  return { element, say };
}
