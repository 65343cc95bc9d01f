// Pipeline health: readiness (GET /readyz) and, from the Prometheus text of GET /metrics,
// the event store's head, the relay's lag (PostgreSQL mode; the embedded default has no
// relay), and each projection's lag, dead letters, rejected records and newest event.
// Sampled every few seconds while the page is open; the lag chart shows those samples.
import { get, path, text } from "../api.js";
import { timeLines } from "../charts.js";
import { age, figure, h, notice, replace } from "../dom.js";
import { byLabel, parse, valueOf } from "../prometheus.js";

const EVERY_MS = 5000;
const SAMPLES = 120;

function readiness(signal) {
  return get(path`/readyz`, {}, { signal, ok: [200, 503] });  // both carry the checks
}

function readinessPanel(ready) {
  return h("section", { class: "panel", id: "readiness" },
    h("h2", {}, "Readiness ", h("span", { class: `badge ${ready.status === "ready" ? "good" : "bad"}`,
      id: "ready-status" }, ready.status)),
    h("table", { class: "figures" }, h("tbody", {}, Object.entries(ready.checks).map(
      ([name, result]) => h("tr", { dataset: { check: name } }, h("th", { scope: "row" }, name),
        h("td", { class: result === "ok" ? "good" : "bad" }, result))))));
}

function relayPanel(samples) {
  const lag = valueOf(samples, "crm_relay_lag_events");
  const body = lag === null
    ? notice("No relay in this process: in the embedded default the projections follow the "
      + "event store directly (no Kafka).")
    : h("table", { class: "figures", id: "relay" }, h("tbody", {}, [
      ["Published up to", valueOf(samples, "crm_relay_position")],
      ["Event store head", valueOf(samples, "crm_relay_head")],
      ["Lag (events)", lag],
      ["Lag (seconds)", valueOf(samples, "crm_relay_lag_seconds")],
    ].map(([label, n]) => h("tr", {}, h("th", { scope: "row" }, label), h("td", {}, figure(n))))));
  return h("section", { class: "panel" }, h("h2", {}, "Relay: event store → Kafka"),
    h("p", {}, "Event store head position: ",
      h("strong", { id: "head" }, figure(valueOf(samples, "crm_event_store_head_position")))),
    body);
}

function projectionsPanel(samples) {
  const events = byLabel(samples, "crm_projection_events", "projection");
  const lag = byLabel(samples, "crm_projection_lag", "projection");
  const dead = byLabel(samples, "crm_projection_dead_letters", "projection");
  const rejected = byLabel(samples, "crm_projection_rejected_records", "projection");
  const newest = byLabel(samples, "crm_projection_last_event_timestamp_seconds", "projection");
  const names = Object.keys(events);
  return h("section", { class: "panel wide" }, h("h2", {}, "Projections"),
    h("table", { class: "figures", id: "projections" },
      h("thead", {}, h("tr", {}, ["Projection", "Events applied", "Lag", "Dead letters",
        "Rejected records", "Newest event"].map((t) => h("th", { scope: "col" }, t)))),
      h("tbody", {}, names.map((name) => h("tr", { dataset: { projection: name } },
        h("th", { scope: "row" }, name),
        h("td", { dataset: { column: "events" } }, figure(events[name])),
        h("td", { dataset: { column: "lag" } }, figure(lag[name] ?? null)),
        h("td", { dataset: { column: "dead_letters" }, class: dead[name] > 0 ? "bad" : "" },
          figure(dead[name])),
        h("td", { dataset: { column: "rejected" }, class: rejected[name] > 0 ? "bad" : "",
          title: "records refused: not as the event store holds them, or out of order" },
          figure(rejected[name] ?? null)),
        h("td", {}, newest[name] ? `${age(new Date(newest[name] * 1000).toISOString())} ago`
          : "—"))))));
}

export function mount(root) {
  const controller = new AbortController();
  const { signal } = controller;
  const status = h("div", { class: "grid", id: "pipeline-status" });
  const chart = h("div", { class: "chart", id: "lag-chart" });
  const problems = h("div");
  const history = { times: [], series: {} };
  replace(root, h("h1", {}, "Pipeline health"), problems, status,
    h("section", { class: "panel" }, h("h2", {}, "Lag while this page is open"), chart));

  function remember(samples) {
    const point = { ...byLabel(samples, "crm_projection_lag", "projection") };
    const relay = valueOf(samples, "crm_relay_lag_events");
    if (relay !== null) point.relay = relay;
    history.times.push(Date.now() / 1000);
    for (const name of new Set([...Object.keys(point), ...Object.keys(history.series)])) {
      history.series[name] ??= history.times.slice(0, -1).map(() => null);
      history.series[name].push(point[name] ?? null);
    }
    if (history.times.length > SAMPLES) {
      history.times.shift();
      for (const values of Object.values(history.series)) values.shift();
    }
    timeLines(chart, history.times, Object.entries(history.series).map(
      ([name, values]) => ({ label: name === "relay" ? "relay (events)" : name, values })));
  }

  async function sample() {
    try {
      const [ready, exposition] = await Promise.all([
        readiness(signal), text(path`/metrics`, { signal })]);
      const samples = parse(exposition);
      replace(status, readinessPanel(ready), relayPanel(samples), projectionsPanel(samples));
      remember(samples);
      replace(problems);
      root.dataset.state = "ready";
    } catch (error) {
      if (error.name === "AbortError") return;
      replace(problems, notice(`Could not read the pipeline's state: ${error.message}`, "error"));
    }
  }

  sample();
  const timer = setInterval(sample, EVERY_MS);
  return () => {
    controller.abort();
    clearInterval(timer);
  };
}
