// Department board: the open conversations, longest waiting first, and the tasks with
// the overdue ones highlighted, from GET /v1/departments/{d}/conversations|tasks.
// Live: the department's event stream (GET /v1/events/stream) says something changed;
// the board then reloads with ?min_position=<that event's position>, so what it shows
// already includes the change (read-your-writes), without polling.
// Each list shows its first page of PAGE rows; when the API holds more, the page says so
// and "Load more" adds a page, which every later reload reads again: requests and memory
// grow only with what the person asked to see.
import { departments, follow, list, path } from "../api.js";
import {
  age, field, h, instant, moreLine, notice, replace, routeParams, select, setRouteParams,
  unknownDepartment, withDepartments,
} from "../dom.js";

const PAGE = 200;
const FEED_LENGTH = 12;
const DONE_SHOWN = 8;
const COLUMNS = [
  ["open", "Open"], ["in_progress", "In progress"], ["done", "Done"],
];

function conversationItem(row, now) {
  const waiting = row.waiting_since ? age(row.waiting_since, now) : "answered";
  return h(
    "li",
    { class: row.waiting_since ? "waiting" : "answered", dataset: { id: row.conversation_id } },
    h("span", { class: "wait", title: row.waiting_since ? `since ${instant(row.waiting_since)}` : "" },
      waiting),
    h("span", { class: "subject" }, row.subject ?? "—"),
    h("span", { class: "meta" }, [row.channel, row.agent || "unassigned",
      row.handoffs ? `${row.handoffs} hand-off${row.handoffs > 1 ? "s" : ""}` : null]
      .filter(Boolean).join(" · ")),
  );
}

function taskCard(row) {
  return h(
    "li",
    { class: `task${row.overdue ? " overdue" : ""}`, dataset: { id: row.task_id } },
    h("span", { class: "title" }, row.title ?? "—"),
    row.overdue ? h("span", { class: "badge overdue" }, "overdue") : null,
    h("span", { class: "meta" }, [row.assignee || "unassigned", row.priority,
      row.due_at ? `due ${instant(row.due_at)}` : "no due time"].join(" · ")),
  );
}

function column(status) {
  return status === "open" || status === "in_progress" ? status : "done";
}

// Open and in-progress cards all show; finished ones only the first DONE_SHOWN.
function drawTasks(target, rows, more) {
  replace(target, COLUMNS.map(([key, title]) => {
    const cards = rows.filter((row) => column(row.status) === key);
    const shown = key === "done" ? cards.slice(0, DONE_SHOWN) : cards;
    const hidden = cards.length - shown.length;
    return h("div", { class: "column", dataset: { status: key } },
      h("h3", {}, `${title} (${cards.length}${more ? "+" : ""})`),
      h("ul", { class: "cards-list" }, shown.map(taskCard)),
      hidden > 0 ? h("p", { class: "meta" }, `and ${hidden} more`) : null);
  }));
}

function feedItem(message) {
  let event = {};
  try {
    event = JSON.parse(message.data);
  } catch {
    event = {};
  }
  return h("li", { dataset: { position: message.id } },
    h("span", { class: "type" }, message.event),
    h("span", { class: "meta" }, `#${message.id} · ${event.actor ?? "?"} · ${instant(event.occurred_at)}`));
}

export function mount(root) {
  return withDepartments(root, "Department board", departments(), (known) => showBoard(root, known));
}

// Without a department in the address: the last one shown in this tab, else support,
// else the deployment's first (each only if the deployment knows it).
function showBoard(root, known) {
  const params = routeParams();
  const department = params.get("department")
    || [sessionStorage.getItem("crm.console.board"), "support"].find((d) => known.includes(d))
    || known[0];
  if (!known.includes(department)) {
    unknownDepartment(root, "Department board", "board", department, known);
    return undefined;
  }
  sessionStorage.setItem("crm.console.board", department);
  setRouteParams("board", { department });
  const controller = new AbortController();
  const { signal } = controller;
  const live = h("span", { class: "live-state", id: "live-state" }, "connecting…");
  const queue = h("ol", { class: "queue", id: "queue" });
  const queueTitle = h("h2", { id: "queue-title" }, "Open conversations");
  const queueMore = moreLine("queue-more", () => loadMore("queue"));
  const tasks = h("div", { class: "board-columns", id: "tasks" });
  const tasksMore = moreLine("tasks-more", () => loadMore("tasks"));
  const feed = h("ol", { class: "feed", id: "feed" });
  const problems = h("div", { id: "board-problems" });
  let conversations = [];
  let queueCursor = null;  // not null: the API holds more open conversations than shown
  const pages = { queue: 1, tasks: 1 };
  let pending = null;
  let wanted = 0;
  let latest = 0;  // answers of an older load that arrive late are dropped

  const picker = select("department", known.map((d) => [d, d]), department);
  picker.addEventListener("change", () => {
    location.hash = `#/board?department=${encodeURIComponent(picker.value)}`;
  });
  replace(root,
    h("div", { class: "heading" }, h("h1", {}, "Department board"), field("Department", picker), live),
    problems,
    h("div", { class: "board-grid" },
      h("section", { class: "panel" }, queueTitle, queue, queueMore.element),
      h("section", { class: "panel wide" }, h("h2", {}, "Tasks"), tasks, tasksMore.element),
      h("aside", { class: "panel" }, h("h2", {}, "Live events"), feed)));

  function drawQueue() {
    const now = Date.now();
    const more = queueCursor !== null;
    queueTitle.textContent = `Open conversations (${conversations.length}${more ? "+" : ""}), `
      + "longest waiting first";
    replace(queue, conversations.length ? conversations.map((row) => conversationItem(row, now))
      : h("li", { class: "none" }, "No open conversation."));
    queueMore.say(more ? `${conversations.length} shown; more open conversations not shown.`
      : null);
  }

  function loadMore(which) {
    pages[which] += 1;
    return load(wanted);
  }

  async function load(position) {
    const query = { limit: PAGE, min_position: position || null };
    const attempt = ++latest;
    try {
      const [open, board] = await Promise.all([
        list(path`/v1/departments/${department}/conversations`, query,
          { pages: pages.queue, signal }),
        list(path`/v1/departments/${department}/tasks`, query, { pages: pages.tasks, signal }),
      ]);
      if (attempt !== latest) return;
      conversations = open.items;
      queueCursor = open.cursor;
      drawQueue();
      drawTasks(tasks, board.items, board.cursor !== null);
      tasksMore.say(board.cursor === null ? null : `${board.items.length} tasks shown; `
        + "more not shown (a count ending in + has more).");
      root.dataset.position = String(position || 0);
      replace(problems);
    } catch (error) {
      if (error.name === "AbortError") return;
      if (error.status === 503) {  // the read model is catching up: try again shortly
        setTimeout(() => refresh(position), 500);
        return;
      }
      replace(problems, notice(error.notVisible
        ? `Your role may not see the ${department} board.` : `Could not load: ${error.message}`,
      "error"));
    }
  }

  // Many events arrive in bursts: one reload covers all of them.
  function refresh(position) {
    wanted = Math.max(wanted, Number(position) || 0);
    if (pending) return;
    pending = setTimeout(async () => {
      pending = null;
      await load(wanted);
    }, 100);
  }

  follow(path`/v1/events/stream`, { department }, {
    signal,
    onEvent(message) {
      feed.prepend(feedItem(message));
      while (feed.children.length > FEED_LENGTH) feed.lastChild.remove();
      refresh(message.id);
    },
    onState(state, error) {
      if (state === "live") refresh(0);  // (re)connected: catch up on what the gap missed
      live.className = `live-state is-${state}`;
      live.textContent = state === "live" ? "live" : state === "refused"
        ? `no live updates (${error?.status === 403 || error?.status === 404 ? "not permitted" : error?.message})`
        : "reconnecting…";
    },
  });
  load(null);
  const clock = setInterval(drawQueue, 15000);  // waiting times keep growing
  return () => {
    controller.abort();
    clearInterval(clock);
    clearTimeout(pending);
  };
}
