// Satisfaction: CSAT and NPS per period for a department and/or agent, with answer
// counts, from GET /v1/stats/satisfaction. Every figure shown is the API's own number
// (the one formula lives in projections/satisfaction.py); nothing is recomputed here.
import { departments, get, path } from "../api.js";
import { periodBars, periodLines } from "../charts.js";
import {
  field, figure, h, notice, replace, routeParams, select, setRouteParams, withDepartments,
} from "../dom.js";

const PATH = path`/v1/stats/satisfaction`;

function filtersForm(params, known, onChange) {
  const form = h(
    "form",
    { class: "filters", id: "satisfaction-filters" },
    field("Department", select("department", [["", "All departments"],
      ...known.map((d) => [d, d])], params.get("department") || "")),
    field("Agent", h("input", { name: "agent", id: "agent", value: params.get("agent") || "",
      placeholder: "all agents" })),
    field("Per", select("granularity", [["day", "day"], ["week", "week"], ["month", "month"]],
      params.get("granularity") || "day")),
    field("From", h("input", { type: "date", name: "from", id: "from", value: params.get("from") })),
    field("To", h("input", { type: "date", name: "to", id: "to", value: params.get("to") })),
    h("button", { type: "submit" }, "Show"),
  );
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    onChange(Object.fromEntries(new FormData(form)));
  });
  form.addEventListener("change", () => onChange(Object.fromEntries(new FormData(form))));
  return form;
}

// The API's query for the chosen filters (dates become whole UTC days).
function query(filters) {
  return {
    department: filters.department,
    agent: filters.agent?.trim(),
    granularity: filters.granularity || "day",
    from: filters.from && `${filters.from}T00:00:00Z`,
    to: filters.to && `${filters.to}T00:00:00Z`,
  };
}

function totals(total) {
  return h(
    "div",
    { class: "cards", id: "satisfaction-totals" },
    h("div", { class: "card" }, h("span", { class: "label" }, "CSAT %"),
      h("strong", { id: "total-csat" }, figure(total.csat)),
      h("span", { class: "sub" }, `${total.csat_answers} answers, ${total.csat_positive} of them 4–5`)),
    h("div", { class: "card" }, h("span", { class: "label" }, "NPS"),
      h("strong", { id: "total-nps" }, figure(total.nps)),
      h("span", { class: "sub" }, `${total.nps_answers} answers: ${total.promoters} promoters, `
        + `${total.passives} passives, ${total.detractors} detractors`)),
  );
}

const COLUMNS = [
  ["bucket", "Period"], ["csat", "CSAT %"], ["csat_answers", "CSAT answers"], ["nps", "NPS"],
  ["nps_answers", "NPS answers"], ["promoters", "Promoters"], ["passives", "Passives"],
  ["detractors", "Detractors"],
];

function table(periods) {
  return h(
    "table",
    { id: "satisfaction-table", class: "figures" },
    h("thead", {}, h("tr", {}, COLUMNS.map(([, title]) => h("th", { scope: "col" }, title)))),
    h("tbody", {}, periods.map((row) => h("tr", { dataset: { period: row.bucket } },
      COLUMNS.map(([key]) => h("td", { dataset: { column: key } }, figure(row[key])))))),
  );
}

async function byDepartment(target, filters, known, signal) {
  const rows = await Promise.all(known.map(async (department) => {
    try {
      const answer = await get(PATH, { ...query(filters), department }, { signal });
      return [department, answer.total];
    } catch (error) {
      if (error.name === "AbortError") throw error;
      return [department, null];
    }
  }));
  replace(target, h("h2", {}, "By department, same period"), h(
    "table",
    { id: "department-table", class: "figures" },
    h("thead", {}, h("tr", {}, ["Department", "CSAT %", "CSAT answers", "NPS", "NPS answers"]
      .map((title) => h("th", { scope: "col" }, title)))),
    h("tbody", {}, rows.map(([department, total]) => h("tr", { dataset: { department } },
      h("th", { scope: "row" }, department),
      total === null
        ? h("td", { colspan: 4, class: "none" }, "not visible to you")
        : [total.csat, total.csat_answers, total.nps, total.nps_answers]
          .map((n) => h("td", {}, figure(n)))))),
  ));
}

function draw(output, answer) {
  const labels = answer.periods.map((p) => p.bucket);
  const trend = h("div", { class: "chart", id: "satisfaction-chart" });
  const counts = h("div", { class: "chart", id: "answers-chart" });
  replace(output,
    totals(answer.total),
    h("h2", {}, `CSAT % and NPS per ${answer.granularity}`), trend,
    h("h2", {}, "Answers"), counts,
    table(answer.periods));
  if (labels.length === 0) {
    replace(trend, notice("No survey answers in this range."));
    counts.remove();
    return;
  }
  periodLines(trend, labels, [
    { label: "CSAT %", values: answer.periods.map((p) => p.csat) },
    { label: "NPS", values: answer.periods.map((p) => p.nps) },
  ], { range: [-100, 100] });
  periodBars(counts, labels, [
    { label: "CSAT answers", values: answer.periods.map((p) => p.csat_answers) },
    { label: "NPS answers", values: answer.periods.map((p) => p.nps_answers) },
  ]);
}

export function mount(root) {
  return withDepartments(root, "Satisfaction", departments(), (known) => show(root, known));
}

function show(root, known) {
  const params = routeParams();
  const output = h("div", { id: "satisfaction-output", "aria-live": "polite" });
  const perDepartment = h("div", { id: "satisfaction-departments" });
  let controller = new AbortController();

  async function load(filters) {
    controller.abort();
    controller = new AbortController();
    const { signal } = controller;
    setRouteParams("satisfaction", filters);
    root.dataset.state = "loading";
    try {
      const answer = await get(PATH, query(filters), { signal });
      draw(output, answer);
      await byDepartment(perDepartment, filters, known, signal);
      root.dataset.state = "ready";
    } catch (error) {
      if (error.name === "AbortError") return;
      replace(perDepartment);
      replace(output, notice(error.notVisible
        ? "Your role may not read these statistics." : `Could not load: ${error.message}`,
      "error"));
      root.dataset.state = "error";
    }
  }

  replace(root, h("h1", {}, "Satisfaction"), filtersForm(params, known, load), output,
    perDepartment);
  load(Object.fromEntries(params));
  return () => controller.abort();
}
