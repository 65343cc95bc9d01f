// Reading the Prometheus text exposition format that /metrics answers. Pure: no I/O.
//   crm_projection_lag{projection="sales"} 0.0
// -> {name: "crm_projection_lag", labels: {projection: "sales"}, value: 0}

const SAMPLE = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})?\s+(\S+)(\s+\S+)?$/;
const LABEL = /([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"\s*,?\s*/g;

function unescape(text) {
  return text.replace(/\\(.)/g, (_, c) => (c === "n" ? "\n" : c));
}

function number(text) {
  if (text === "+Inf") return Infinity;
  if (text === "-Inf") return -Infinity;
  return Number(text);
}

export function parse(exposition) {
  const samples = [];
  for (const line of exposition.split("\n")) {
    if (line === "" || line.startsWith("#")) continue;
    const match = SAMPLE.exec(line.trim());
    if (!match) continue;
    const labels = {};
    for (const [, name, text] of (match[3] || "").matchAll(LABEL)) labels[name] = unescape(text);
    samples.push({ name: match[1], labels, value: number(match[4]) });
  }
  return samples;
}

// The value of `name` whose labels include `labels`, or null.
export function valueOf(samples, name, labels = {}) {
  const found = samples.find(
    (s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v),
  );
  return found ? found.value : null;
}

// {label value: sample value} of every `name` sample, keyed by `label`.
export function byLabel(samples, name, label) {
  return Object.fromEntries(
    samples.filter((s) => s.name === name).map((s) => [s.labels[label], s.value]),
  );
}
