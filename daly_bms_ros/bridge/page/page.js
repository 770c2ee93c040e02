// The bridge's live page: polls /batteries every second and the shown battery's history every
// few seconds, and renders them. Values come only from the bridge's JSON: a battery without fresh
// data shows "—" and a stale banner, and an unreachable bridge marks everything stale, so that
// nothing old ever looks current; a page that fails to render says so and keeps polling. Text
// is set with textContent only (device names come from the air).
"use strict";

const POLL_MS = 1000;
const HISTORY_MS = 5000;
const NONE = "—";

const state = { shown: null, charts: null, chartsOf: null, historyAt: 0, batteries: {} };

function number(value, digits, unit) {
  if (value === null || value === undefined) return NONE;
  return unit ? `${value.toFixed(digits)} ${unit}` : value.toFixed(digits);
}

function element(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

function setField(root, name, text, className) {
  for (const node of root.querySelectorAll(`[data-field="${name}"]`)) {
    node.textContent = text;
    node.className = className || "";
  }
}

function onOff(value) {
  if (value === null || value === undefined) return [NONE, ""];
  return value ? ["on", "on"] : ["off", "off"];
}

function chosenBattery(names) {
  let wanted = null;
  try {
    wanted = decodeURIComponent(location.hash.slice(1));
  } catch {
    // A hash that does not decode ("#%") names no battery.
  }
  if (names.includes(wanted)) return wanted;
  return names.length === 1 ? names[0] : null;
}

function fresh(entry) {
  return entry && !entry.error;
}

function renderCards(batteries) {
  const cards = document.getElementById("cards");
  cards.replaceChildren();
  for (const [name, entry] of Object.entries(batteries)) {
    const card = element("a", fresh(entry) ? "card" : "card stale");
    card.href = `#${encodeURIComponent(name)}`;
    card.dataset.battery = name;
    card.append(element("div", "", name));
    if (fresh(entry)) {
      card.append(element("div", "big", number(entry.soc, 1, "%")));
      card.append(
        element("div", "", `${number(entry.pack_voltage, 2, "V")} · ${number(entry.current, 1, "A")} · ${entry.state}`),
      );
      if (entry.alarms.length) card.append(element("div", "alarm", entry.alarms.join(", ")));
    } else {
      card.append(element("div", "big", NONE));
      card.append(element("div", "alarm", `stale: ${entry.reason}`));
    }
    cards.append(card);
  }
}

function renderCells(entry) {
  const cells = document.getElementById("cells");
  cells.replaceChildren();
  if (!fresh(entry)) return;
  const voltages = entry.cell_voltages;
  const low = Math.min(...voltages);
  const high = Math.max(...voltages);
  const floor = Math.max(0, low - Math.max(0.02, (high - low) * 2));
  voltages.forEach((voltage, index) => {
    const number_ = index + 1;
    const classes = ["cell"];
    if (number_ === entry.min_cell_index) classes.push("min");
    if (number_ === entry.max_cell_index) classes.push("max");
    const balancing = entry.balancing_cells ? entry.balancing_cells[index] : null;
    if (balancing) classes.push("balancing");
    const cell = element("div", classes.join(" "));
    cell.dataset.cell = String(number_);
    cell.title = `cell ${number_}: ${voltage.toFixed(3)} V${balancing ? ", balancing" : ""}`;
    const bar = element("div", "bar");
    bar.style.height = `${high > floor ? ((voltage - floor) / (high - floor)) * 85 + 5 : 50}%`;
    cell.append(element("span", "volts", voltage.toFixed(3)), bar, element("span", "number", String(number_)));
    cells.append(cell);
  });
}

function renderList(id, items, className) {
  const list = document.getElementById(id);
  list.replaceChildren(...items.map((text) => element("li", className, text)));
}

function renderBattery(name, entry) {
  const section = document.getElementById("battery");
  document.getElementById("battery-name").textContent = name;
  const banner = document.getElementById("freshness");
  const ok = fresh(entry);
  section.classList.toggle("stale", !ok);
  section.dataset.sampleTime = ok ? String(entry.timestamp) : "";
  banner.className = ok ? "banner" : "banner stale";
  banner.textContent = ok
    ? `live: sample ${entry.age_s.toFixed(1)} s old`
    : `stale: ${entry ? entry.reason : "no answer from the bridge"}`;
  document.getElementById("device").textContent = ok ? entry.device : "";
  const get = (key) => (ok ? entry[key] : null);
  setField(section, "soc", number(get("soc"), 1, "%"));
  setField(section, "pack_voltage", number(get("pack_voltage"), 2, "V"));
  setField(section, "current", number(get("current"), 1, "A"));
  setField(section, "power", number(get("power"), 0, "W"));
  setField(section, "state", ok ? entry.state : NONE);
  setField(section, "remaining_capacity", ok
    ? `${number(entry.remaining_capacity, 1)} / ${number(entry.rated_capacity, 1, "Ah")}`
    : NONE);
  setField(section, "cycles", ok && entry.cycles !== null ? String(entry.cycles) : NONE);
  setField(section, "link", entry ? entry.link : NONE);
  setField(section, "age_s", entry && entry.age_s !== null ? `${entry.age_s.toFixed(1)} s` : NONE);
  setField(section, "min_cell_voltage", number(get("min_cell_voltage"), 3, "V"));
  setField(section, "max_cell_voltage", number(get("max_cell_voltage"), 3, "V"));
  setField(section, "min_cell_index", ok ? `cell ${entry.min_cell_index}` : "");
  setField(section, "max_cell_index", ok ? `cell ${entry.max_cell_index}` : "");
  setField(section, "cell_delta", ok ? number(entry.cell_delta === null ? null : entry.cell_delta * 1000, 0, "mV") : NONE);
  setField(section, "average_cell_voltage", number(get("average_cell_voltage"), 3, "V"));
  for (const key of ["charge_mos", "discharge_mos", "balancing"]) setField(section, key, ...onOff(get(key)));
  renderCells(entry);
  const temperatures = ok
    ? [
        ...entry.temperatures.map((value, index) => `sensor ${index + 1}: ${number(value, 1, "°C")}`),
        ...(entry.mos_temperature === null ? [] : [`MOS: ${number(entry.mos_temperature, 1, "°C")}`]),
        ...(entry.board_temperature === null ? [] : [`board: ${number(entry.board_temperature, 1, "°C")}`]),
      ]
    : [];
  renderList("temperatures", temperatures, "");
  renderList("alarms", ok ? (entry.alarms.length ? entry.alarms : ["none"]) : [], ok && entry.alarms.length ? "alarm" : "");
}

function padded(low, high) {
  const margin = Math.max((high - low) * 0.1, Math.abs(high) * 0.01, 0.05);
  return [low - margin, high + margin];
}

function makeCharts(container) {
  container.replaceChildren();
  const width = Math.max(280, container.clientWidth);
  const series = [
    ["pack_voltage", "Voltage (V)", "#4a78c2"],
    ["current", "Current (A)", "#c2884a"],
    ["soc", "SOC (%)", "#1b7f3a"],
  ];
  return series.map(([key, label, colour]) => {
    const holder = element("div");
    holder.dataset.chart = key;
    container.append(holder);
    const options = {
      width,
      height: 160,
      // A flat line (a pack at rest) gets a band around it, not uPlot's 0..100 default.
      scales: { y: { range: (plot, low, high) => (low === null ? [0, 1] : padded(low, high)) } },
      series: [{}, { label, stroke: colour, width: 2, points: { show: false } }],
      axes: [{}, { size: 55 }],
      legend: { live: false },
    };
    return { key, plot: new uPlot(options, [[], []], holder) };
  });
}

async function updateHistory(name) {
  const response = await fetch(`/bms/${encodeURIComponent(name)}/history`, { cache: "no-store" });
  const history = await response.json();
  if (state.chartsOf !== name) {
    state.charts = makeCharts(document.getElementById("charts"));
    state.chartsOf = name;
  }
  for (const chart of state.charts) chart.plot.setData([history.time, history[chart.key]]);
}

function showConnection(ok) {
  const badge = document.getElementById("connection");
  badge.textContent = ok ? "bridge connected" : "bridge unreachable";
  badge.className = ok ? "badge ok" : "badge bad";
}

// Rendering failed: whatever it had shown is no longer current. Each step on its own, so that
// the very element that failed the rendering cannot keep the rest from saying so.
function showPageError(error) {
  const steps = [
    () => {
      const badge = document.getElementById("connection");
      badge.textContent = "page error";
      badge.className = "badge bad";
    },
    () => {
      const banner = document.getElementById("freshness");
      banner.textContent = `error: the page cannot show the bridge's answer (${error})`;
      banner.className = "banner stale";
    },
    () => document.getElementById("battery").classList.add("stale"),
    () => {
      for (const card of document.querySelectorAll("#cards .card")) card.classList.add("stale");
    },
  ];
  for (const step of steps) {
    try {
      step();
    } catch {
      // the next step may still work
    }
  }
  console.warn("the page could not render", error);
}

function safeRender() {
  try {
    render();
  } catch (error) {
    showPageError(error);
  }
}

function render() {
  const names = Object.keys(state.batteries);
  const shown = chosenBattery(names);
  document.getElementById("overview").hidden = shown !== null;
  document.getElementById("battery").hidden = shown === null;
  if (shown === null) renderCards(state.batteries);
  else renderBattery(shown, state.batteries[shown]);
  if (shown !== state.shown) state.historyAt = 0;
  state.shown = shown;
}

async function refresh() {
  try {
    const response = await fetch("/batteries", { cache: "no-store" });
    state.batteries = (await response.json()).batteries;
    showConnection(true);
  } catch (error) {
    // Keep the names, forget the values: what the bridge last said is no longer current.
    for (const name of Object.keys(state.batteries)) {
      state.batteries[name] = { error: "unreachable", reason: "the bridge does not answer", age_s: null, link: NONE };
    }
    showConnection(false);
  }
  render();
  if (state.shown !== null && Date.now() - state.historyAt >= HISTORY_MS) {
    state.historyAt = Date.now();
    try {
      await updateHistory(state.shown);
    } catch (error) {
      state.historyAt = 0;
    }
  }
}

// Whatever fails, the page says so and polls on: a view frozen while it says "live" is worse
// than none.
async function poll() {
  try {
    await refresh();
  } catch (error) {
    showPageError(error);
  } finally {
    setTimeout(poll, POLL_MS);
  }
}

window.addEventListener("hashchange", safeRender);
window.addEventListener("resize", () => {
  for (const chart of state.charts || []) {
    chart.plot.setSize({ width: Math.max(280, document.getElementById("charts").clientWidth), height: 160 });
  }
});
poll();
