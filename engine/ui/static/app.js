// Segue's live view. Plain JavaScript, no build step: one push stream in, commands out.
"use strict";

const WINDOW_PAST_S = 55;   // the timeline shows the last minute: 55 s behind now,
const WINDOW_AHEAD_S = 5;   // and 5 s ahead (scheduled exits, stingers, beats)
const KEEP_RESPONSES = 200;
// Pushes arrive at 10 Hz and are kept at once, but the page repaints rarely: in headless
// Chromium on the 2-core test VM one repaint of the moving pictures (the timeline, the clock,
// the playhead, the health figures) costs the browser about 15 ms of CPU, and the 10 Hz stream
// alone about 0.9 % of a core (benchmarks/ui.py). So they are redrawn on a bar line at least
// PICTURE_MIN_MS after the last (every two bars at 120 bpm), and at least every PICTURE_MAX_MS;
// what the designer acts on (a new state, a pending transition, a part muted, a new graph or
// error) is drawn at once.
const PICTURE_MIN_MS = 2500;
const PICTURE_MAX_MS = 4000;
const PART_COLOURS = { drums: "#9aa3b5", bass: "#5fb3f0", pad: "#6cc36c", lead: "#f29b4e" };
const STATE_COLOURS = ["#f2c14e", "#5fb3f0", "#ef5b5b", "#6cc36c", "#b48ef0", "#f29b4e", "#4ed6c8", "#e27ac0"];
const SVG = "http://www.w3.org/2000/svg";

const view = {
  graph: null, live: null, loop: null, error: null,
  rows: new Map(),        // timeline rows by uid
  responses: [],
  params: [],             // [{frame, values}] for the parameter curves
  stateColour: {},
  litAt: 0,               // performance.now() when the lit node last changed (benchmarks read it)
  // what the page did, for benchmarks/ui.py (script_ms: time in the pictures' own script)
  draws: { messages: 0, pictures: 0, timeline: 0, notes: 0, health: 0, histograms: 0, script_ms: 0 },
};
window.segueView = view;

const $ = (id) => document.getElementById(id);

// The page costs the machine what it repaints: touch the DOM only where something changed.
function setText(node, text) {
  if (node.textContent !== text) node.textContent = text;
}

function toggle(node, name, on) {
  if (node.classList.contains(name) !== on) node.classList.toggle(name, on);
}

function el(tag, attrs = {}, text) {
  const node = tag.startsWith("svg:") ? document.createElementNS(SVG, tag.slice(4)) : document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
  if (text !== undefined) node.textContent = text;
  return node;
}

// -- the push stream -------------------------------------------------------------------

function connect() {
  const source = new EventSource("/events");
  source.onopen = () => { $("conn").textContent = "live"; $("conn").className = "conn live"; };
  source.onerror = () => { $("conn").textContent = "reconnecting…"; $("conn").className = "conn lost"; };
  source.onmessage = (message) => apply(JSON.parse(message.data));
}

function apply(msg) {
  view.draws.messages += 1;
  if (msg.graph) { view.graph = msg.graph; buildGraph(); buildControls(); }
  if (msg.error !== undefined) showError(msg.error);
  if (msg.loop) view.loop = msg.loop;
  if (msg.health) view.health = msg.health;
  for (const row of msg.timeline) view.rows.set(row.uid, row);
  for (const r of msg.responses) view.responses.push(r);
  view.responsesSeen = (view.responsesSeen || 0) + msg.responses.length;
  if (view.responses.length > KEEP_RESPONSES) view.responses.splice(0, view.responses.length - KEEP_RESPONSES);
  const live = msg.live;
  if (!live || live.frame === undefined) return;
  const before = view.live;
  view.live = live;
  const params = JSON.stringify(live.params);
  if (params !== view.paramsKey) {  // the curves keep a point per change, drawn on to now
    view.paramsKey = params;
    view.params.push({ frame: live.frame, values: live.params });
  }
  const now = performance.now();
  if (live.state !== view.litState) view.stateMessageAt = now;  // benchmarks split the latency
  // What the designer acts on is drawn at once: a new state, a pending transition, a part
  // muted or soloed, a new graph or error. The rest (the timeline scrolling, the clock, the
  // playhead, the health figures) is drawn once a picture is due.
  const urgent = live.state !== view.litState || msg.graph || msg.error !== undefined ||
    !before || pendingKey(live) !== pendingKey(before) || live.solo !== before.solo ||
    live.muted.join() !== before.muted.join();
  if (document.hidden) return;  // a tab in the background costs nothing; it catches up when shown
  const since = now - (view.pictureAt || 0);
  const due = since >= PICTURE_MAX_MS || (since >= PICTURE_MIN_MS && live.bar !== view.pictureBar);
  if (!urgent && !due) return;
  view.pictureAt = now;
  view.pictureBar = live.bar;
  view.draws.pictures += 1;
  prune(live);
  updateHeader(live);
  updateGraph(live);
  updateControls(live);
  drawTimeline();
  drawRoll();
  if (view.health) updateHealth(live, view.health);
  view.draws.script_ms += performance.now() - now;  // the page's own share of a picture
}

function pendingKey(live) {
  const p = live.pending;
  return p ? `${p.from}|${p.to}|${p.on}` : "";
}

function prune(live) {
  const oldest = live.frame - (WINDOW_PAST_S + 5) * live.sample_rate;
  for (const [uid, row] of view.rows) if (row.frame < oldest) view.rows.delete(uid);
  // the last point before the window is kept: the curve starts at its value
  while (view.params.length > 1 && view.params[1].frame < oldest) view.params.shift();
}

// -- header and error ------------------------------------------------------------------

function updateHeader(live) {
  setText($("state-label"), live.state);
  setText($("clock"), `bar ${live.bar ?? "–"} · beat ${live.beat ?? "–"}`);
  setText($("tempo"), live.tempo ? `${Math.round(live.tempo)} bpm` : "");
  const p = live.pending;
  setText($("pending-label"), p ? `${p.from} → ${p.to} in ${Math.max(0, p.in_ms).toFixed(0)} ms (${p.exit})` : "");
}

function showError(error) {
  view.error = error && error.text ? error : null;
  const box = $("error");
  box.hidden = !view.error;
  if (!view.error) return;
  box.querySelector(".where").textContent = error.text;
  const source = box.querySelector(".source");
  if (error.source !== undefined) {
    const caret = " ".repeat(Math.max(0, (error.column || 1) - 1)) + "^";
    source.textContent = `${String(error.line).padStart(4)} | ${error.source}\n     | ${caret}`;
    source.hidden = false;
  } else {
    source.hidden = true;
  }
}

// -- the graph -------------------------------------------------------------------------

const NODE_W = 170, NODE_H = 44;

function layout(graph) {
  const names = graph.states.map((s) => s.name);
  const hasAny = graph.transitions.some((t) => t.from === "any" && t.to);
  const pos = {};
  const cx = 380, cy = 235, rx = 285, ry = 175;
  names.forEach((name, i) => {
    const a = -Math.PI / 2 + (2 * Math.PI * i) / names.length;
    pos[name] = { x: cx + rx * Math.cos(a), y: cy + ry * Math.sin(a) };
  });
  if (hasAny) pos.any = { x: NODE_W / 2 + 8, y: 40 };  // a corner: rules from any state start here
  return pos;
}

function edgeEnd(from, to, ctrl) {
  // Where the curve from `ctrl` towards the centre of `to` meets its box.
  const dx = ctrl.x - to.x, dy = ctrl.y - to.y;
  const t = Math.min(Math.abs((NODE_W / 2 + 4) / (dx || 1e-6)), Math.abs((NODE_H / 2 + 4) / (dy || 1e-6)));
  return { x: to.x + dx * Math.min(t, 1), y: to.y + dy * Math.min(t, 1) };
}

function ruleText(t) {
  const bits = [t.exit.replace("_", " ")];
  if (t.fade_out === t.fade_in) bits.push(`fade ${t.fade_out}`);
  else bits.push(`out ${t.fade_out} in ${t.fade_in}`);
  if (t.stinger) bits.push(`♪${t.stinger}`);
  if (t.respond_stinger) bits.push(`now ♪${t.respond_stinger}`);
  if (t.duck_db) bits.push(`duck ${t.duck_db} dB`);
  if (t.bridge_bars) bits.push(`bridge ${t.bridge_bars} bar${t.bridge_bars > 1 ? "s" : ""}`);
  return bits.join(" · ");
}

function placeLabel(placed, x, y, lines) {
  const w = 5.4 * Math.max(...lines.map((l) => l.length)), h = 11 * lines.length;
  const clear = (cy) => placed.every((b) => Math.abs(b.x - x) * 2 >= b.w + w || Math.abs(b.y - cy) * 2 >= b.h + h);
  for (let step = 0; step <= 12; step++) {
    for (const sign of step ? [1, -1] : [1]) {
      const cy = y + sign * step * 6;
      if (clear(cy + h / 2 - 12)) {
        placed.push({ x, y: cy + h / 2 - 12, w, h });
        return cy;
      }
    }
  }
  placed.push({ x, y: y + h / 2 - 12, w, h });
  return y;
}

function buildGraph() {
  const graph = view.graph;
  const svg = $("graph");
  svg.replaceChildren();
  $("graph-path").textContent = graph.path;
  graph.states.forEach((s, i) => { view.stateColour[s.name] = STATE_COLOURS[i % STATE_COLOURS.length]; });
  const defs = el("svg:defs");
  const marker = el("svg:marker", { id: "arrow", viewBox: "0 0 10 10", refX: "9", refY: "5",
    markerWidth: "7", markerHeight: "7", orient: "auto-start-reverse" });
  marker.append(el("svg:path", { d: "M0,0 L10,5 L0,10 z", fill: "#7a8394" }));
  defs.append(marker);
  svg.append(defs);
  const pos = layout(graph);
  const edges = el("svg:g"), nodes = el("svg:g");
  svg.append(edges, nodes);
  // Labels are placed one by one, each moved up or down until it covers no box or label.
  const placed = Object.values(pos).map((p) => ({ x: p.x, y: p.y, w: NODE_W + 4, h: NODE_H + 4 }));
  const pairs = {};
  graph.transitions.forEach((t) => {
    if (!t.to) return;
    const key = [t.from, t.to].sort().join("→");
    (pairs[key] = pairs[key] || []).push(t);
  });
  for (const rules of Object.values(pairs)) {
    rules.forEach((t, i) => {
      const a = pos[t.from], b = pos[t.to];
      if (!a || !b) return;
      // Bend each rule of a pair to its own side of the straight line, measured one way.
      const [u, v] = t.from < t.to ? [a, b] : [b, a];
      const dx = v.x - u.x, dy = v.y - u.y, len = Math.hypot(dx, dy) || 1;
      const bend = (i - (rules.length - 1) / 2) * (rules.length > 2 ? 100 : 62);
      const ctrl = { x: (a.x + b.x) / 2 - (dy / len) * bend, y: (a.y + b.y) / 2 + (dx / len) * bend };
      const p0 = edgeEnd(b, a, ctrl), p2 = edgeEnd(a, b, ctrl);
      const g = el("svg:g", { class: "edge" + (t.when ? " condition" : ""), "data-from": t.from,
        "data-to": t.to, "data-on": t.on ?? t.when });
      g.append(el("svg:path", { d: `M${p0.x},${p0.y} Q${ctrl.x},${ctrl.y} ${p2.x},${p2.y}`, "marker-end": "url(#arrow)" }));
      // Labels of a crowded pair sit at different points along their curves.
      const s = rules.length > 2 ? 0.5 + ((i % 3) - 1) * 0.2 : 0.5;
      const mx = (1 - s) ** 2 * p0.x + 2 * s * (1 - s) * ctrl.x + s * s * p2.x;
      const my = (1 - s) ** 2 * p0.y + 2 * s * (1 - s) * ctrl.y + s * s * p2.y;
      const extra = ruleText(t).split(" · ");
      const lines = [t.on ?? `when ${t.when}`, extra.slice(0, 2).join(" · ")];
      if (extra.length > 2) lines.push(extra.slice(2).join(" · "));
      const y = placeLabel(placed, mx, my, lines);
      lines.forEach((line, k) => g.append(el("svg:text", { x: mx, y: y - 4 + 11 * k }, line)));
      g.append(el("svg:title", {}, `${t.from} → ${t.to}\n${t.on ? "on " + t.on : "when " + t.when}\n` +
        `exit ${t.exit}, entry ${t.entry}\nfade out ${t.fade_out}, in ${t.fade_in} (${t.curve})\n` +
        `while pending: ${t.while_pending}${t.line ? `\nline ${t.line}` : ""}`));
      edges.append(g);
    });
  }
  const names = graph.states.map((s) => s.name);
  if (pos.any) names.push("any");
  for (const name of names) {
    const s = graph.states.find((x) => x.name === name);
    const p = pos[name];
    const g = el("svg:g", { class: "node" + (s ? "" : " any"), "data-state": name,
      transform: `translate(${p.x - NODE_W / 2},${p.y - NODE_H / 2})` });
    g.append(el("svg:rect", { width: NODE_W, height: NODE_H, rx: 9 }));
    g.append(el("svg:text", { class: "name", x: NODE_W / 2, y: 17 }, name + (s && name === graph.initial ? " ◂" : "")));
    if (s) {
      g.append(el("svg:text", { class: "sub", x: NODE_W / 2, y: 32 },
        `${s.mood} · ${s.key} ${s.mode} · ${Math.round(s.tempo)} bpm`));
      const inst = Object.entries(s.instruments).map(([part, i]) => `${part}: ${i}`).join("\n");
      g.append(el("svg:title", {}, `${name}\n${s.mood}, ${s.key} ${s.mode}, ${s.tempo} bpm, ${s.meter}, ` +
        `${s.bars} bars, density ${s.density}${s.once ? `, once → ${s.next}` : ""}\n${inst}`));
    } else {
      g.append(el("svg:text", { class: "sub", x: NODE_W / 2, y: 32 }, "from any state"));
    }
    g.append(el("svg:text", { class: "countdown", x: NODE_W / 2, y: NODE_H + 14 }, ""));
    // Rules that only play a stinger hang under their state.
    const only = graph.transitions.filter((t) => !t.to && t.from === name);
    only.forEach((t, i) => g.append(el("svg:text", { class: "badge", x: NODE_W / 2, y: -6 - 11 * i },
      `${t.on ?? t.when} → ♪${t.stinger}`)));
    nodes.append(g);
  }
  view.litState = null;
  view.pendingKey = null;
}

function updateGraph(live) {
  const svg = $("graph");
  if (live.state !== view.litState) {
    for (const g of svg.querySelectorAll(".node")) g.classList.toggle("current", g.dataset.state === live.state);
    for (const g of svg.querySelectorAll(".edge")) g.classList.toggle("from-current", g.dataset.from === live.state);
    view.litState = live.state;
    view.litAt = performance.now();
  }
  const p = live.pending;
  const key = pendingKey(live);
  if (key !== view.pendingKey) {
    for (const g of svg.querySelectorAll(".edge"))
      toggle(g, "pending", !!p && g.dataset.from === p.from && g.dataset.to === p.to && g.dataset.on === p.on);
    for (const g of svg.querySelectorAll(".node")) {
      toggle(g, "pending", !!p && g.dataset.state === p.to);
      setText(g.querySelector(".countdown"), "");
    }
    view.pendingKey = key;
  }
  if (p) {
    const node = svg.querySelector(`.node[data-state="${CSS.escape(p.to)}"] .countdown`);
    if (node) setText(node, `in ${Math.max(0, p.in_ms).toFixed(0)} ms · ${p.exit}`);
  }
}

// -- controls: every command goes the OSC road -----------------------------------------

async function send(address, args = []) {
  const log = $("command-log");
  try {
    const reply = await fetch("/api/command", { method: "POST", headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ address, args }) });
    const body = await reply.json();
    log.className = reply.ok ? "" : "bad";
    log.textContent = reply.ok ? `${address} ${args.join(" ")}` : body.error;
  } catch (err) {
    log.className = "bad";
    log.textContent = `${address}: the daemon did not answer (${err})`;
  }
}

function button(label, title, onClick, attrs = {}) {
  const b = el("button", { title, ...attrs }, label);
  b.addEventListener("click", onClick);
  return b;
}

function buildControls() {
  const graph = view.graph;
  view.controlsKey = null;
  $("events").replaceChildren(...graph.events.map((name) =>
    button(name, `/segue/event ${name}`, () => send("/segue/event", [name]), { "data-event": name })));
  $("stingers").replaceChildren(...graph.stingers.map((s) =>
    button(`♪ ${s.name}`, `/segue/stinger ${s.name} (${s.instrument}, quantize ${s.quantize}, cooldown ${s.cooldown_s} s)`,
      () => send("/segue/stinger", [s.name]), { "data-stinger": s.name })));
  $("states").replaceChildren(...graph.states.map((s) =>
    button(s.name, `/segue/state ${s.name}`, () => send("/segue/state", [s.name]), { "data-force": s.name })));
  $("params").replaceChildren(...graph.parameters.map((p) => {
    const row = el("label", { class: "param" });
    const input = el("input", { type: "range", min: p.low, max: p.high, step: (p.high - p.low) / 200,
      value: p.default, "data-param": p.name });
    const out = el("output", {}, p.default.toFixed(2));
    let last = 0, timer = null;
    input.addEventListener("input", () => {
      out.textContent = Number(input.value).toFixed(2);
      input.dataset.touched = performance.now();
      const go = () => { last = performance.now(); timer = null; send("/segue/param", [p.name, Number(input.value)]); };
      if (performance.now() - last > 50) go(); else if (!timer) timer = setTimeout(go, 50);  // ≤ 20 a second
    });
    row.append(el("span", {}, p.name), input, out);
    return row;
  }));
  $("parts").replaceChildren(...graph.parts.map((part) => {
    const box = el("span", { class: "part" });
    const swatch = el("span", { class: "swatch", style: `background:${PART_COLOURS[part] || "#888"}` });
    const mute = button("mute", `/segue/mute ${part} 0|1`, () => send("/segue/mute", [part, mute.classList.contains("muted") ? 0 : 1]),
      { "data-mute": part });
    const solo = button("solo", `/segue/solo ${part}`, () => send("/segue/solo", [solo.classList.contains("soloed") ? "" : part]),
      { "data-solo": part });
    box.append(swatch, el("span", {}, part), mute, solo);
    return box;
  }));
}

function updateControls(live) {
  const key = `${live.state}|${(live.muted || []).join(",")}|${live.solo}|${JSON.stringify(live.params)}`;
  if (key === view.controlsKey) return;
  view.controlsKey = key;
  const rules = view.graph ? view.graph.transitions : [];
  const fires = new Set(rules.filter((t) => t.on && (t.from === live.state || t.from === "any")).map((t) => t.on));
  for (const b of document.querySelectorAll("button[data-event]")) toggle(b, "available", fires.has(b.dataset.event));
  for (const b of document.querySelectorAll("button[data-force]")) toggle(b, "on", b.dataset.force === live.state);
  for (const b of document.querySelectorAll("button[data-mute]")) toggle(b, "muted", (live.muted || []).includes(b.dataset.mute));
  for (const b of document.querySelectorAll("button[data-solo]")) toggle(b, "soloed", live.solo === b.dataset.solo);
  for (const input of document.querySelectorAll("input[data-param]")) {
    const value = live.params[input.dataset.param];
    const touched = Number(input.dataset.touched || 0);
    if (value !== undefined && performance.now() - touched > 1000 && Number(input.value) !== value) {
      input.value = value;  // the game moves it too
      setText(input.nextElementSibling, value.toFixed(2));
    }
  }
}

// -- the timeline ----------------------------------------------------------------------

const LANES = ["bars", "loops", "transitions", "events", "stingers", "bridges", "reloads", "params"];
const LANE_H = { bars: 22, loops: 30, transitions: 40, events: 34, stingers: 30, bridges: 22, reloads: 26, params: 76 };

function fitCanvas(canvas) {
  const ratio = window.devicePixelRatio || 1;
  const width = Math.max(100, Math.round(canvas.clientWidth * ratio));
  const height = Math.round(Number(canvas.getAttribute("height")) * ratio);
  if (canvas.width !== width) canvas.width = width;
  const ctx = canvas.getContext("2d");
  ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
  return { ctx, w: width / ratio, h: height / ratio };
}

function drawTimeline() {
  view.draws.timeline += 1;
  const live = view.live;
  const canvas = $("timeline");
  const total = LANES.reduce((sum, lane) => sum + LANE_H[lane], 0);
  if (Number(canvas.getAttribute("height")) !== total) canvas.setAttribute("height", total);
  canvas.style.height = `${total}px`;
  const { ctx, w, h } = fitCanvas(canvas);
  const rate = live.sample_rate, label = 86;
  const start = live.frame - WINDOW_PAST_S * rate, span = (WINDOW_PAST_S + WINDOW_AHEAD_S) * rate;
  const x = (frame) => label + ((frame - start) / span) * (w - label);
  ctx.clearRect(0, 0, w, h);
  ctx.font = "10px system-ui, sans-serif";
  const top = {};
  let y = 0;
  for (const lane of LANES) {
    top[lane] = y;
    ctx.fillStyle = "#8a93a3";
    ctx.fillText(lane, 4, y + 13);
    ctx.fillStyle = "#242831";
    ctx.fillRect(label, y + LANE_H[lane] - 1, w - label, 1);
    y += LANE_H[lane];
  }
  const rows = [...view.rows.values()].sort((a, b) => a.frame - b.frame);
  const inView = (f) => f >= start - span && f <= start + span;
  // loops: each lasts until the next one starts
  const loops = rows.filter((r) => r.kind === "loop" && !r.cancelled);
  loops.forEach((r, i) => {
    const end = i + 1 < loops.length ? loops[i + 1].frame : Math.max(live.frame + WINDOW_AHEAD_S * rate, r.frame + r.frames);
    const x0 = Math.max(label, x(r.frame)), x1 = Math.min(w, x(end));
    if (x1 <= label || x0 >= w) return;
    ctx.fillStyle = (view.stateColour[r.state] || "#888") + "55";
    ctx.fillRect(x0, top.loops + 3, x1 - x0 - 1, LANE_H.loops - 7);
    ctx.fillStyle = "#d8dce4";
    ctx.save(); ctx.beginPath(); ctx.rect(x0, top.loops, x1 - x0 - 2, LANE_H.loops); ctx.clip();
    ctx.fillText(`${r.loop} · ${r.generator}`, x0 + 3, top.loops + 17);
    ctx.restore();
  });
  for (const r of rows) {
    if (!inView(r.frame)) continue;
    const fx = x(r.frame);
    if (fx < label - 400 || fx > w + 10) continue;
    switch (r.kind) {
      case "beat": {
        if (fx < label) break;
        const bar = r.beat === 1;
        ctx.fillStyle = bar ? "#aab3c3" : "#4a5160";
        ctx.fillRect(fx, top.bars + (bar ? 2 : 10), 1, bar ? 18 : 10);
        if (bar && r.bar % 2 === 1) { ctx.fillStyle = "#8a93a3"; ctx.fillText(String(r.bar), fx + 2, top.bars + 10); }
        break;
      }
      case "transition": {
        const yy = top.transitions, hh = LANE_H.transitions - 10;
        ctx.globalAlpha = r.cancelled ? 0.35 : 1;
        ctx.strokeStyle = "#5fb3f0"; ctx.lineWidth = 1.5;
        ctx.beginPath();  // the fade out falls, the fade in rises, from the exit point
        ctx.moveTo(Math.max(label, fx), yy + 4); ctx.lineTo(Math.max(label, x(r.frame + r.fade_out_frames)), yy + hh);
        ctx.moveTo(Math.max(label, fx), yy + hh); ctx.lineTo(Math.max(label, x(r.frame + r.fade_in_frames)), yy + 4);
        ctx.stroke();
        if (fx >= label) {
          ctx.fillStyle = "#5fb3f0"; ctx.fillRect(fx - 1, yy, 2, hh + 6);
          ctx.fillStyle = "#d8dce4";
          ctx.fillText(`${r.from}→${r.to}${r.cancelled ? " (replaced)" : ""}`, fx + 4, yy + 12);
          ctx.fillStyle = "#8a93a3";
          ctx.fillText(`${r.on} · ${r.exit} · ${r.entry}`, fx + 4, yy + 24);
        }
        ctx.globalAlpha = 1;
        break;
      }
      case "event": case "state": case "param": {
        if (fx < label) break;
        const yy = top.events;
        const colour = r.kind === "event" ? "#f2c14e" : r.kind === "state" ? "#ef5b5b" : "#6b7385";
        ctx.fillStyle = colour;
        ctx.fillRect(fx, yy + 2, r.kind === "param" ? 1 : 2, r.kind === "param" ? 6 : 12);
        if (r.kind !== "param") ctx.fillText(r.kind === "event" ? r.event : `force ${r.state}`, fx + 3, yy + 12 + (r.uid % 2) * 12);
        break;
      }
      case "stinger": case "stinger_cooldown": case "stinger_request": {
        if (fx < label || r.kind === "stinger_request") break;
        const yy = top.stingers + 14;
        ctx.fillStyle = r.kind === "stinger" ? "#f29b4e" : "#ef5b5b";
        ctx.beginPath();
        if (r.kind === "stinger") { ctx.moveTo(fx, yy - 6); ctx.lineTo(fx + 5, yy); ctx.lineTo(fx, yy + 6); ctx.lineTo(fx - 5, yy); ctx.fill(); }
        else { ctx.strokeStyle = "#ef5b5b"; ctx.moveTo(fx - 4, yy - 4); ctx.lineTo(fx + 4, yy + 4); ctx.moveTo(fx + 4, yy - 4); ctx.lineTo(fx - 4, yy + 4); ctx.stroke(); }
        const note = r.kind === "stinger" ? `${r.stinger}${r.moved ? " (moved to " + r.state + ")" : ""}` : `${r.stinger} cooling down`;
        ctx.fillText(note, fx + 7, yy + 4);
        break;
      }
      case "bridge": {
        ctx.fillStyle = "#b48ef0aa";
        const x0 = Math.max(label, fx), x1 = x(r.frame + r.frames);
        if (x1 > label) { ctx.fillRect(x0, top.bridges + 4, x1 - x0, LANE_H.bridges - 8); ctx.fillStyle = "#d8dce4"; ctx.fillText(`bridge ${r.from}→${r.to} · ${r.generator}`, x0 + 3, top.bridges + 15); }
        break;
      }
      case "reload": case "error": {
        if (fx < label) break;
        ctx.fillStyle = r.kind === "reload" ? "#6cc36c" : "#ef5b5b";
        ctx.fillRect(fx - 1, top.reloads + 3, 3, LANE_H.reloads - 8);
        const text = r.kind === "reload" ? `reload (${(r.changed || []).join(", ") || "no new music"})` : (r.error || "").split(": ").slice(0, 1).join("");
        ctx.fillText(text, fx + 4, top.reloads + 15);
        break;
      }
    }
  }
  drawParams(ctx, x, top.params, LANE_H.params, label, w);
  const now = x(live.frame);  // the line is now
  ctx.fillStyle = "#f2c14e";
  ctx.fillRect(now, 0, 1.5, h);
}

function drawParams(ctx, x, top, height, label, w) {
  const specs = view.graph ? view.graph.parameters : [];
  specs.forEach((p, i) => {
    ctx.strokeStyle = STATE_COLOURS[(i + 1) % STATE_COLOURS.length];
    ctx.lineWidth = 1.5;
    ctx.beginPath();
    let lastY = null;
    for (const sample of view.params) {  // a step per change: a value holds until the next
      const value = sample.values[p.name];
      if (value === undefined) continue;
      const fx = Math.max(label, x(sample.frame));
      const fy = top + height - 6 - ((value - p.low) / (p.high - p.low || 1)) * (height - 12);
      if (lastY === null) ctx.moveTo(fx, fy); else { ctx.lineTo(fx, lastY); ctx.lineTo(fx, fy); }
      lastY = fy;
    }
    if (lastY !== null) ctx.lineTo(x(view.live.frame), lastY);
    ctx.stroke();
    ctx.fillStyle = ctx.strokeStyle;
    ctx.fillText(p.name, 4, top + 26 + 12 * i);
  });
}

// -- what is playing -------------------------------------------------------------------

function drawRoll() {
  const loop = view.loop, live = view.live;
  if (!loop) return;
  const key = `${loop.loop}|${(live.muted || []).join(",")}|${live.solo}|${$("roll").clientWidth}`;
  if (key !== view.rollKey) {  // the notes are drawn once per loop (and mute); the playhead moves
    view.rollKey = key;
    drawNotes(loop, live);
  }
  const head = $("roll-head");
  const on = live.loop_position !== undefined && live.loop === loop.loop;
  const x = on ? Math.round(live.loop_position * $("roll").clientWidth) : -10;
  if (head.dataset.x !== String(x)) {
    head.dataset.x = String(x);
    head.style.transform = `translateX(${x}px)`;
  }
}

function drawNotes(loop, live) {
  view.draws.notes += 1;
  const { ctx, w, h } = fitCanvas($("roll"));
  ctx.clearRect(0, 0, w, h);
  setText($("roll-label"), `${loop.loop} · ${loop.generator} · ${loop.beats} beats`);
  const pitched = loop.notes.filter((n) => !loop.drums[n[0]]);
  const drums = loop.notes.filter((n) => loop.drums[n[0]]);
  const lo = Math.min(...pitched.map((n) => n[1]), 60) - 1, hi = Math.max(...pitched.map((n) => n[1]), 72) + 1;
  const drumH = drums.length ? 40 : 0, rollH = h - drumH - 4;
  const bx = (beat) => (beat / loop.beats) * w;
  ctx.fillStyle = "#242831";
  for (let b = 0; b <= loop.beats; b += loop.beats_per_bar) ctx.fillRect(bx(b), 0, 1, h);
  const muted = new Set(live.muted || []);
  const off = (name) => muted.has(name) || (live.solo && live.solo !== name);
  for (const [part, pitch, start, dur, vel] of pitched) {
    const name = loop.parts[part];
    ctx.fillStyle = PART_COLOURS[name] || "#888";
    ctx.globalAlpha = off(name) ? 0.15 : 0.35 + 0.65 * (vel / 127);
    const y = rollH - ((pitch - lo) / (hi - lo)) * rollH;
    ctx.fillRect(bx(start), y - 2, Math.max(2, bx(Math.min(dur, loop.beats - start)) - 1), 4);
  }
  const keys = [...new Set(drums.map((n) => n[1]))].sort((a, b) => a - b);
  for (const [part, pitch, start, , vel] of drums) {
    const name = loop.parts[part];
    ctx.fillStyle = PART_COLOURS[name] || "#888";
    ctx.globalAlpha = off(name) ? 0.15 : 0.35 + 0.65 * (vel / 127);
    const y = h - drumH + (keys.indexOf(pitch) / Math.max(1, keys.length)) * drumH;
    ctx.fillRect(bx(start), y, 3, Math.max(2, drumH / Math.max(1, keys.length) - 1));
  }
  ctx.globalAlpha = 1;
  const legend = $("roll-legend");
  legend.replaceChildren(...loop.parts.map((p) => {
    const s = el("span", { class: "part" + (off(p) ? " off" : "") });
    s.append(el("span", { class: "swatch", style: `background:${PART_COLOURS[p] || "#888"}` }), el("span", {}, p));
    return s;
  }));
}

// -- the engine's health ---------------------------------------------------------------

function updateHealth(live, health) {
  view.draws.health += 1;
  const pools = health.pools || {};
  const max = Math.max(2, ...Object.values(pools));
  const box = $("pools");
  const names = Object.keys(pools).join(",");
  if (box.dataset.names !== names) {
    box.dataset.names = names;
    box.replaceChildren(...Object.keys(pools).map((state) => {
      const row = el("div", { class: "row", "data-pool": state });
      const track = el("div");
      track.append(el("div", { class: "bar" }));
      row.append(el("span", {}, state), track, el("span", { class: "count" }));
      return row;
    }));
  }
  for (const row of box.children) {
    const n = pools[row.dataset.pool];
    toggle(row, "current", row.dataset.pool === live.state);
    setText(row.querySelector(".count"), String(n));
    const width = `${(100 * n) / max}%`;
    const bar = row.querySelector(".bar");
    if (bar.style.width !== width) bar.style.width = width;
  }
  const c = health.counters || {}, sink = health.sink || {}, cb = sink.callback_ms || {};
  const stats = [
    ["underruns", health.underruns, health.underruns > 0],
    ["output", `${sink.sink || "?"}${sink.device ? " · " + sink.device : ""}`],
    ["block", sink.block_ms !== undefined ? `${sink.block_ms} ms` : `${sink.block_frames} frames`],
    ["callback", cb.p50 !== undefined ? `p50 ${cb.p50} · p99 ${cb.p99} · max ${cb.max} ms` : "—"],
    ["device latency", `${sink.output_latency_ms ?? 0} ms`],
    ["generation", `${(c.pool_generate_ms_last ?? 0).toFixed(0)} ms notes · ${(c.pool_render_ms_last ?? 0).toFixed(0)} ms audio`],
    ["loops", `${c.pool_made ?? 0} made · ${c.pool_fallbacks ?? 0} fallbacks · ${health.generator ?? "?"}`],
    ["transitions", `${c.transitions ?? 0} · stingers ${c.stingers ?? 0} (${c.stingers_cooldown ?? 0} cooled down)`],
    ["reloads", `${c.reloads ?? 0} · errors ${c.reload_errors ?? 0}`, !!view.error],
    ["memory", `${health.rss_mb} MB (daemon)`],
    ["OSC", `${c.osc_messages ?? 0} messages · ${(c.osc_malformed ?? 0) + (c.osc_bad_args ?? 0) + (c.osc_unknown_address ?? 0)} refused`],
    ["live view", `${health.ui_pushes ?? 0} pushes · ${health.ui_commands ?? 0} commands`],
  ];
  const list = $("stats");
  if (list.children.length !== 2 * stats.length) {
    list.replaceChildren(...stats.flatMap(([k]) => [el("dt", {}, k), el("dd")]));
  }
  stats.forEach(([, v, bad], i) => {
    const dd = list.children[2 * i + 1];
    setText(dd, String(v));
    toggle(dd, "bad", !!bad);
  });
  if (view.responsesDrawn !== view.responsesSeen) {  // histograms move only with new responses
    view.responsesDrawn = view.responsesSeen;
    histogram("hist-ack", view.responses.map((r) => r.ack_ms));
    histogram("hist-audible", view.responses.map((r) => r.audible_ms).filter((v) => v !== undefined));
    histogram("hist-musical", view.responses.map((r) => r.musical_ms).filter((v) => v !== undefined));
  }
}

const BINS_MS = [0.5, 1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, Infinity];

function histogram(id, values) {
  view.draws.histograms += 1;
  const { ctx, w, h } = fitCanvas($(id));
  ctx.clearRect(0, 0, w, h);
  const counts = BINS_MS.map(() => 0);
  for (const v of values) counts[BINS_MS.findIndex((edge) => v <= edge)] += 1;
  const top = Math.max(1, ...counts), bw = w / BINS_MS.length;
  counts.forEach((n, i) => {
    ctx.fillStyle = BINS_MS[i] > 200 ? "#ef5b5b" : "#5fb3f0";
    const bh = (n / top) * (h - 16);
    ctx.fillRect(i * bw + 1, h - 12 - bh, bw - 2, bh);
  });
  ctx.fillStyle = "#8a93a3";
  ctx.font = "8px system-ui, sans-serif";
  [1, 10, 100, 1000].forEach((edge) => ctx.fillText(String(edge), BINS_MS.indexOf(edge) * bw + 1, h - 2));
  if (values.length) {
    const sorted = [...values].sort((a, b) => a - b);
    ctx.font = "9px system-ui, sans-serif";
    ctx.fillText(`p50 ${sorted[Math.floor(sorted.length / 2)].toFixed(1)} · max ${sorted[sorted.length - 1].toFixed(1)}`, 4, 10);
  }
}

$("reload").addEventListener("click", () => send("/segue/reload"));
document.addEventListener("visibilitychange", () => {
  if (!document.hidden && view.live) { view.pictureAt = 0; view.litState = null; apply({ live: view.live, timeline: [], responses: [] }); }
});
connect();
