// The public HTTP API, with the bearer token the person signed in with.
//
// The token lives in sessionStorage: it survives a reload of this tab, and is gone
// when the tab closes; other tabs sign in on their own. Nothing but this module reads it.
import { SseParser } from "./sse.js";

const KEY = "crm.console.token";
let known = null;  // the departments read with a token: {bearer, answer} (`departments`)

export function token() {
  return sessionStorage.getItem(KEY);
}

export function signOut() {
  sessionStorage.removeItem(KEY);
  known = null;
  window.dispatchEvent(new Event("crm:signed-out"));
}

// An answer the API refused: `status` and its RFC 9457 problem document (if any).
export class ApiError extends Error {
  constructor(status, problem) {
    super(problem?.detail || problem?.title || `HTTP ${status}`);
    this.status = status;
    this.problem = problem;
  }

  // Refused or unknown: after the access-model change a resource the caller may not
  // read answers 404 like an unknown id; before it, 403. Both mean "not visible".
  get notVisible() {
    return this.status === 403 || this.status === 404;
  }
}

// An API path made by `path` below; url() takes nothing else, so every request's path
// has been built (and its segments checked) in one place.
class ApiPath {
  #text;

  constructor(text) {
    this.#text = text;
  }

  toString() {
    return this.#text;
  }
}

// "." or ".." (also percent-encoded: the URL parser resolves "%2e" as a dot too).
const DOT_SEGMENT = /^(?:\.|%2e){1,2}$/i;

function segment(value) {
  const raw = String(value);
  const encoded = encodeURIComponent(raw);
  if (encoded === "" || DOT_SEGMENT.test(raw) || DOT_SEGMENT.test(encoded)) {
    throw new RangeError(`not a path segment: ${JSON.stringify(raw)}`);
  }
  return encoded;
}

// An API path with each value as one whole, percent-encoded segment:
// path`/v1/customers/${id}/timeline`. A value that is empty or a dot segment is refused
// (RangeError): a value taken from the page's address must never change which resource
// is requested, as `#/customer/..` made the console request GET /v1/ .
export function path(strings, ...values) {
  let text = strings[0];
  values.forEach((value, i) => {
    const after = strings[i + 1];
    if (!text.endsWith("/") || !(after === "" || after.startsWith("/"))) {
      throw new RangeError(`a value must be a whole segment of ${strings.join("…")}`);
    }
    text += segment(value) + after;
  });
  return new ApiPath(text);
}

// Ids in the console's addresses are UUIDs; anything else names no resource.
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

export function isId(text) {
  return UUID.test(text);
}

function url(resource, params = {}) {
  if (!(resource instanceof ApiPath)) throw new TypeError("an API path is made by api.path``");
  const target = new URL(String(resource), location.origin);
  for (const [name, value] of Object.entries(params)) {
    if (value !== null && value !== undefined && value !== "") target.searchParams.set(name, value);
  }
  return target;
}

function headers(accept) {
  const bearer = token();
  return bearer ? { Accept: accept, Authorization: `Bearer ${bearer}` } : { Accept: accept };
}

async function problemOf(response) {
  const type = response.headers.get("content-type") || "";
  return type.includes("json") ? response.json().catch(() => null) : null;
}

// GET `resource` (made by `path`) as JSON. A 401 signs the person out (the token is
// unknown or revoked).
export async function get(resource, params = {}, { signal, ok = [200] } = {}) {
  const response = await fetch(url(resource, params), {
    headers: headers("application/json"), signal,
  });
  if (response.status === 401) {
    signOut();
    throw new ApiError(401, await problemOf(response));
  }
  if (!ok.includes(response.status)) throw new ApiError(response.status, await problemOf(response));
  return response.json();
}

// Every list of the API answers pages {items, next_cursor}. `list` follows them from
// `cursor` for at most `pages` requests, so memory and requests stay bounded, and returns
// {items, cursor}: `cursor` is null once the list has ended, else where the rest begins.
// When it is not null the view MUST say that more exist (dom.js `moreLine`, a "+" on
// the count) and may go on from it: no list stops silently.
export async function list(resource, params = {}, { pages = 1, cursor = null, signal } = {}) {
  const items = [];
  let next = cursor;
  for (let page = 0; page < pages; page += 1) {
    const answer = await get(resource, { ...params, cursor: next }, { signal });
    items.push(...answer.items);
    next = answer.next_cursor ?? null;
    if (next === null) break;
  }
  return { items, cursor: next };
}

export async function text(resource, { signal } = {}) {
  const response = await fetch(url(resource), { headers: headers("text/plain"), signal });
  if (!response.ok) throw new ApiError(response.status, null);
  return response.text();
}

// Is `candidate` a token the API knows? The API has no "who am I" endpoint; the event
// stream is the one read every role may open (without `department`, department-scoped
// roles get their own), so its answer tells: 401 unknown token, anything else a known
// one. Only the headers are awaited; the stream is closed at once.
export async function signIn(candidate) {
  const controller = new AbortController();
  const response = await fetch(url(path`/v1/events/stream`), {
    headers: { Accept: "text/event-stream", Authorization: `Bearer ${candidate}` },
    signal: controller.signal,
  });
  controller.abort();
  if (response.status === 401) return false;
  sessionStorage.setItem(KEY, candidate);
  known = null;  // a new sign-in reads the departments again
  return true;
}

// The departments this deployment knows (`CRM_DEPARTMENTS`, in its order), from
// GET /v1/departments: read once per sign-in and kept in memory for the tab, with the
// token it was read with (a reload of the tab reads it again). A failed read is not
// kept, so the next page asks again; there is no built-in list to fall back on.
export function departments() {
  const bearer = token();
  if (known?.bearer !== bearer) {
    const answer = get(path`/v1/departments`).then((body) => body.departments);
    known = { bearer, answer };
    answer.catch(() => {
      if (known?.answer === answer) known = null;
    });
  }
  return known.answer;
}

// Server-sent events read with fetch(): EventSource cannot send an Authorization header.
// Calls `onEvent({id, event, data})` per message and `onState("live"|"reconnecting"|...)`;
// reconnects after a dropped connection from the store's head, until `signal` aborts
// (replaying with `after=` needs the right to read history, which most roles lack), so a
// caller reloads what it shows on every "live".
export async function follow(resource, params, { onEvent, onState, signal }) {
  const target = url(resource, params);  // a wrong path throws here, not in the retries
  let pause = 500;
  while (!signal.aborted) {
    try {
      const response = await fetch(target, {
        headers: headers("text/event-stream"),
        signal,
      });
      if (!response.ok) throw new ApiError(response.status, await problemOf(response));
      onState("live");
      pause = 500;
      const parser = new SseParser();
      const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        for (const message of parser.push(value)) onEvent(message);
      }
    } catch (error) {
      if (signal.aborted) return;
      if (error instanceof ApiError && error.status !== 503) {
        if (error.status === 401) signOut();
        onState("refused", error);
        return;
      }
    }
    onState("reconnecting");
    await new Promise((resolve) => setTimeout(resolve, pause));
    pause = Math.min(pause * 2, 10000);
  }
}
