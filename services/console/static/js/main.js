// The console's shell: sign-in, the navigation bar and hash routes (#/satisfaction,
// #/board, #/customer/<id>, #/pipeline). Each page module exports
// `mount(root, path, params)` and returns a function that stops what it started
// (streams, timers) when the person goes to another page.
import { signIn, signOut, token } from "./api.js";
import { field, h, notice, replace } from "./dom.js";
import * as board from "./pages/board.js";
import * as customer from "./pages/customer.js";
import * as pipeline from "./pages/pipeline.js";
import * as satisfaction from "./pages/satisfaction.js";

// A Map, not an object: `#/constructor` or `#/__proto__` must not find what every
// object inherits (an unknown page shows the satisfaction page, like any other).
const PAGES = new Map(Object.entries({ satisfaction, board, customer, pipeline }));
const main = document.getElementById("main");
let unmount = () => {};

function route() {
  const [path] = location.hash.replace(/^#\/?/, "").split("?");
  const [page, ...rest] = path.split("/");
  return { page: PAGES.has(page) ? page : "satisfaction", rest };
}

function show() {
  unmount();
  unmount = () => {};
  if (!token()) {
    document.getElementById("bar").hidden = true;
    signInForm();
    return;
  }
  document.getElementById("bar").hidden = false;
  const { page, rest } = route();
  for (const link of document.querySelectorAll("#nav a")) {
    link.classList.toggle("current", link.dataset.page === page);
  }
  const root = h("section", { class: "page", id: `page-${page}` });
  replace(main, root);
  unmount = PAGES.get(page).mount(root, rest) || (() => {});
}

function signInForm() {
  const input = h("input", {
    type: "password", name: "token", id: "token", autocomplete: "off", required: true,
  });
  const message = h("div", { id: "sign-in-message" });
  const form = h(
    "form",
    { id: "sign-in", class: "sign-in" },
    h("h1", {}, "CRM Collab console"),
    h("p", {}, "Sign in with your API bearer token (", h("code", {}, "crm principals add"), ")."),
    field("Token", input),
    h("button", { type: "submit" }, "Sign in"),
    message,
  );
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    replace(message);
    try {
      if (await signIn(input.value.trim())) show();
      else replace(message, notice("That token is unknown or revoked.", "error"));
    } catch (error) {
      replace(message, notice(`The API did not answer: ${error.message}`, "error"));
    }
  });
  replace(main, form);
  input.focus();
}

document.getElementById("sign-out").addEventListener("click", signOut);
window.addEventListener("crm:signed-out", show);
window.addEventListener("hashchange", show);
show();
