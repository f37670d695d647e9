// Room wall display: sweeping waveforms, big numerics, alarms, recovery, alarm recall.
"use strict";

const ROOM = decodeURIComponent(location.pathname.split("/").pop());
const MM_PER_S = 25;
const CSS_PX_PER_MM = 96 / 25.4;  // CSS pixels are 1/96 inch
const ERASE_PX = 18;

// A sweep: samples drawn at their own time, x = t * speed mod width, erase bar ahead.
class Sweep {
  constructor(canvas, { mmPerS = MM_PER_S, color = "#41e35b", range = null } = {}) {
    this.canvas = canvas;
    this.ctx = canvas.getContext("2d");
    this.cssPxPerS = mmPerS * CSS_PX_PER_MM;
    this.color = color;
    this.range = range;
    this.chunks = [];
    this.lastT = null;
    this.lo = Infinity; this.hi = -Infinity;
    this.lag = 0.3;
    this.resize();
  }
  resize() {
    const dpr = window.devicePixelRatio || 1;
    this.w = Math.max(1, Math.round(this.canvas.clientWidth * dpr));
    this.h = Math.max(1, Math.round(this.canvas.clientHeight * dpr));
    this.canvas.width = this.w; this.canvas.height = this.h;
    this.pxPerS = this.cssPxPerS * dpr;
    this.lastT = null;
  }
  push(t0, fs, samples) {
    const x = Float32Array.from(samples);
    const dur = x.length / fs;
    this.chunks.push({ t0, fs, x });
    // draw behind the newest data by about one chunk, so the sweep runs smoothly
    this.lag = 0.9 * this.lag + 0.1 * (dur + 0.2);
    let lo = Infinity, hi = -Infinity;
    for (const v of x) { if (v < lo) lo = v; if (v > hi) hi = v; }
    if (!Number.isFinite(this.lo) || !Number.isFinite(this.hi)) { this.lo = lo; this.hi = hi; }
    // the range follows the signal: widens at once, narrows slowly
    const span = this.hi - this.lo;
    this.lo = Math.min(lo, this.lo + 0.02 * span);
    this.hi = Math.max(hi, this.hi - 0.02 * span);
    const keep = t0 + dur - (this.w / this.pxPerS) * 1.5;
    while (this.chunks.length && this.chunks[0].t0 + this.chunks[0].x.length / this.chunks[0].fs < keep) {
      this.chunks.shift();
    }
  }
  xAt(t) { return ((t * this.pxPerS) % this.w + this.w) % this.w; }
  yAt(v) {
    const [lo, hi] = this.range || [this.lo, this.hi];
    const span = hi - lo || 1;
    return this.h - 6 - ((v - lo) / span) * (this.h - 12);
  }
  clearBand(xa, xb) {
    const c = this.ctx;
    if (xb - xa >= this.w) { c.clearRect(0, 0, this.w, this.h); return; }
    const a = ((xa % this.w) + this.w) % this.w, b = a + (xb - xa);
    c.clearRect(a, 0, Math.min(b, this.w) - a, this.h);
    if (b > this.w) c.clearRect(0, 0, b - this.w, this.h);
  }
  draw(now) {
    const T = now - this.lag;
    if (this.lastT === null || T < this.lastT || T - this.lastT > this.w / this.pxPerS) {
      this.lastT = T - 0.001;
    }
    const from = this.lastT;
    if (T <= from) return;
    const c = this.ctx;
    this.clearBand(this.xAt(from) + 1, this.xAt(from) + (T - from) * this.pxPerS + ERASE_PX);
    c.strokeStyle = this.color; c.lineWidth = 2 * (window.devicePixelRatio || 1);
    c.beginPath();
    let prevX = null;
    for (const ch of this.chunks) {
      const end = ch.t0 + ch.x.length / ch.fs;
      if (end <= from - 1 / ch.fs || ch.t0 > T) continue;
      const i0 = Math.max(0, Math.floor((from - ch.t0) * ch.fs));
      const i1 = Math.min(ch.x.length - 1, Math.floor((T - ch.t0) * ch.fs));
      for (let i = i0; i <= i1; i++) {
        const t = ch.t0 + i / ch.fs;
        const x = this.xAt(t), y = this.yAt(ch.x[i]);
        if (prevX === null || x < prevX) c.moveTo(x, y); else c.lineTo(x, y);
        prevX = x;
      }
    }
    c.stroke();
    this.lastT = T;
  }
}

// The cement pressure of the current (or last) injection, against its limit. Samples are
// kept by absolute time, so chunks that arrive before the injection's start event count.
class CementCurve {
  constructor(canvas) {
    this.canvas = canvas; this.ctx = canvas.getContext("2d");
    this.start = null; this.ts = []; this.vs = []; this.t = []; this.v = []; this.dirty = true;
  }
  reset(start) { this.start = start; this.select(); }
  select() {
    this.t = []; this.v = [];
    if (this.start !== null) {
      for (let i = 0; i < this.ts.length; i++) {
        if (this.ts[i] >= this.start) { this.t.push(this.ts[i] - this.start); this.v.push(this.vs[i]); }
      }
    }
    this.dirty = true;
  }
  push(t0, fs, samples) {
    for (let i = 0; i < samples.length; i++) { this.ts.push(t0 + i / fs); this.vs.push(samples[i]); }
    if (this.ts.length > 30000) { this.ts.splice(0, 10000); this.vs.splice(0, 10000); }
    if (this.start !== null) {
      for (let i = 0; i < samples.length; i++) {
        const t = t0 + i / fs;
        if (t >= this.start) { this.t.push(t - this.start); this.v.push(samples[i]); }
      }
      if (this.t.length > 30000) { this.t.splice(0, 10000); this.v.splice(0, 10000); }
    }
    this.dirty = true;
  }
  draw(limit) {
    if (!this.dirty) return;
    this.dirty = false;
    const dpr = window.devicePixelRatio || 1;
    const w = (this.canvas.width = Math.round(this.canvas.clientWidth * dpr));
    const h = (this.canvas.height = Math.round(this.canvas.clientHeight * dpr));
    const c = this.ctx;
    c.clearRect(0, 0, w, h);
    const tmax = Math.max(60, this.t.length ? this.t[this.t.length - 1] : 0);
    const vmax = Math.max((limit || 0) * 1.15, ...this.v.slice(-3000), 500);
    const X = (t) => 40 * dpr + (t / tmax) * (w - 50 * dpr), Y = (v) => h - 16 * dpr - (v / vmax) * (h - 28 * dpr);
    c.fillStyle = "#8a96a3"; c.font = `${11 * dpr}px sans-serif`;
    c.fillText(`${Math.round(vmax)} kPa`, 2, 12 * dpr); c.fillText("0", 2, h - 16 * dpr);
    c.fillText(`${Math.round(tmax)} s`, w - 36 * dpr, h - 2);
    if (limit) {
      c.strokeStyle = "#e0201b"; c.setLineDash([8 * dpr, 6 * dpr]); c.lineWidth = 2 * dpr;
      c.beginPath(); c.moveTo(X(0), Y(limit)); c.lineTo(w, Y(limit)); c.stroke(); c.setLineDash([]);
      c.fillStyle = "#e0201b"; c.fillText(`limit ${Math.round(limit)} kPa`, X(0) + 4, Y(limit) - 4);
    }
    c.strokeStyle = "#ffb347"; c.lineWidth = 2 * dpr; c.beginPath();
    for (let i = 0; i < this.t.length; i++) {
      if (i === 0) c.moveTo(X(this.t[i]), Y(this.v[i])); else c.lineTo(X(this.t[i]), Y(this.v[i]));
    }
    c.stroke();
  }
}

const sweeps = {};
let cement = null;
let injectionsSeen = 0;
let recallList = [];

function layout() {
  const root = document.getElementById("room");
  root.innerHTML = `<section>
      <div class="panel"><h2 id="room-title"></h2><div id="room-phase"></div></div>
      <div class="waves">
        <div class="wlabel">EKG · 25 mm/s</div><canvas id="ekg-canvas" data-wave="ecg"></canvas>
        <div class="wlabel">Pleth · 25 mm/s</div><canvas id="pleth-canvas" data-wave="pleth"></canvas>
        <div class="wlabel">Cement pressure, current injection</div><canvas id="cement-canvas" data-wave="cement"></canvas>
      </div>
      <div class="panel"><h3>Alarms</h3><div id="alarm-list"></div></div>
      <div class="panel"><h3>Alarm history (click for the waveforms at the onset)</h3><div id="alarm-history"></div></div>
    </section>
    <aside>
      <div class="bignums" id="bignums"></div>
      <div class="panel" id="recovery-panel"><h3>Recovery</h3><div id="recovery-info"></div><div id="recovery-actions"></div></div>
    </aside>`;
  sweeps.ecg = new Sweep(document.getElementById("ekg-canvas"), { color: "#41e35b" });
  sweeps.pleth = new Sweep(document.getElementById("pleth-canvas"), { color: "#45c8ff" });
  cement = new CementCurve(document.getElementById("cement-canvas"));
  window.addEventListener("resize", () => { for (const s of Object.values(sweeps)) s.resize(); cement.dirty = true; });
}

function limitText(r, name) {
  const l = (r.limits || {})[name];
  if (!l) return "";
  return `limits ${l.low !== undefined ? l.low : "–"} / ${l.high !== undefined ? l.high : "–"}`;
}

function big(r, cls, label, name, extra = "") {
  const m = R.measurement(r, name);
  return `<div class="bignum ${cls}${m.stale ? " stale" : ""}" data-num="${name}"><div>${label}</div>`
    + `<span class="value">${m.text}</span> <span class="unit">${R.esc(m.unit)}</span>`
    + `<div class="limits">${limitText(r, name)}${m.stale && m.age !== null ? ` · ${R.age(m.age)}` : ""}${extra}</div></div>`;
}

function render() {
  const r = R.st.rooms[ROOM];
  if (!r) return;
  document.getElementById("room-title").innerHTML = `${R.esc(r.name)} ${R.originBadge(r)}`;
  const t = r.timer;
  const injections = Math.max(injectionsSeen, t && Recovery.active(t) ? t.injections : 0);
  document.getElementById("room-phase").innerHTML = `<span data-phase="${R.esc(r.state ? r.state.phase : "")}">${R.esc(R.phaseText(r))}</span>`
    + ` · injections: <b data-injections>${injections}</b>`;
  const s = R.measurement(r, "nibp_systolic"), d = R.measurement(r, "nibp_diastolic"), mean = R.measurement(r, "nibp_mean");
  document.getElementById("bignums").innerHTML = big(r, "hr", "HR", "heart_rate") + big(r, "spo2", "SpO2", "spo2")
    + big(r, "pr", "Pulse", "pulse_rate")
    + `<div class="bignum nibp${s.stale ? " stale" : ""}" data-num="nibp"><div>NIBP</div><span class="value">${s.text}/${d.text}</span>`
    + ` <span class="unit">(${mean.text}) mmHg</span><div class="limits">${limitText(r, "nibp_systolic")}${s.age !== null ? ` · ${R.age(s.age)}` : ""}</div></div>`
    + big(r, "cement", "Cement", "cement_pressure");
  const signed = !!R.st.user;
  const rows = R.activeAlarms(r).map((a) => `<tr class="recallable" data-alarm-id="${R.esc(a.alarm_id)}" data-priority="${a.priority}" data-alarm-state="${R.esc(a.state)}">`
    + `<td><span class="pill prio-${a.priority}">${a.priority.toUpperCase()}</span></td>`
    + `<td data-alarm-text>${R.esc(a.text)}${a.value !== null && a.value !== undefined ? ` (${Math.round(a.value * 10) / 10})` : ""}</td>`
    + `<td>since ${R.clockTimeSec(a.since)}</td><td data-astate>${R.esc(R.alarmStateText(a, r) || "active")}</td>`
    + `<td>${a.audible ? "audible" : "silent"}</td>`
    + `<td>${a.state === "active" ? `<button data-ack="${R.esc(a.alarm_id)}"${signed ? "" : " disabled"}>Acknowledge</button>` : ""}</td></tr>`).join("");
  const list = document.getElementById("alarm-list");
  const html = (rows ? `<table>${rows}</table>` : `<div class="empty">No active alarm</div>`)
    + `<div class="actions"><button data-audio-pause${signed ? "" : " disabled"}>Audio pause</button>${signed ? "" : `<span class="empty">sign in to act</span>`}</div>`;
  if (list._html !== html) { list.innerHTML = html; list._html = html; }
  const hist = document.getElementById("alarm-history");
  const hhtml = recallList.length ? `<table>${recallList.map((h) => `<tr class="recallable" data-recall="${R.esc(h.alarm_id)}">`
    + `<td><span class="pill prio-${h.priority}">${h.priority.toUpperCase()}</span></td><td>${R.esc(h.text)}</td><td>${R.clockTimeSec(h.onset)}</td></tr>`).join("")}</table>`
    : `<div class="empty">No alarm in the last hour</div>`;
  if (hist._html !== hhtml) { hist.innerHTML = hhtml; hist._html = hhtml; }
  const info = document.getElementById("recovery-info");
  if (t && Recovery.active(t)) {
    info.innerHTML = Recovery.summary(t) + RecoveryUi.checksTable(t);
    RecoveryUi.render(document.getElementById("recovery-actions"), ROOM, t);
  } else {
    info.innerHTML = `<div class="empty">No recovery running${t && t.ended ? ` (last ended ${R.clockTime(t.ended.t)})` : ""}</div>`;
    document.getElementById("recovery-actions").innerHTML = "";
    document.getElementById("recovery-actions")._key = null;
  }
}

function onEvent(m) {
  if (m.room !== ROOM && m.type !== "snapshot") return;
  if (m.type === "event" && m.event.name === "cement.injection_started") {
    cement.reset(m.event.t);
    injectionsSeen = Math.max(injectionsSeen, (m.event.data && m.event.data.injection) || injectionsSeen + 1);
  }
  if (m.type === "recall" || m.type === "snapshot") loadRecalls();
  if (m.type === "snapshot") {
    const r = R.st.rooms[ROOM];
    const events = r ? r.history.filter((h) => h.kind === "event") : [];
    const starts = events.filter((h) => h.name === "cement.injection_started");
    injectionsSeen = Math.max(0, ...starts.map((h) => (h.data && h.data.injection) || 0), starts.length ? 1 : 0);
    const started = starts.pop();
    if (started) cement.reset(started.t);
  }
}

async function loadRecalls() {
  const r = await fetch(`/api/recalls/${encodeURIComponent(ROOM)}`);
  recallList = await r.json();
  render();
}

async function showRecall(alarmId) {
  const box = document.getElementById("recall");
  const r = await fetch(`/api/recall/${encodeURIComponent(alarmId)}`);
  if (!r.ok) { R.notice(false, "No waveform strip is kept for that alarm (yet, or any more)."); return; }
  const strip = await r.json();
  box.innerHTML = `<h3>${R.esc(strip.text)} · ${R.esc(strip.priority)} · onset ${R.clockTimeSec(strip.onset)}`
    + ` (${RECALL_LABEL})</h3>` + Object.entries(strip.feeds).map(([feed, f]) => `<div class="wlabel">${R.esc(feed)} (${R.esc(f.kind)})</div><canvas data-recall-feed="${R.esc(feed)}"></canvas>`).join("")
    + `<button data-close>Close</button>`;
  box.style.display = "block";
  box.querySelector("[data-close]").onclick = () => { box.style.display = "none"; };
  for (const [feed, f] of Object.entries(strip.feeds)) {
    const cv = box.querySelector(`canvas[data-recall-feed="${CSS.escape(feed)}"]`);
    const dpr = window.devicePixelRatio || 1;
    const w = (cv.width = Math.round(cv.clientWidth * dpr)), h = (cv.height = Math.round(cv.clientHeight * dpr));
    const c = cv.getContext("2d");
    const span = strip.to - strip.from;
    const X = (t) => ((t - strip.from) / span) * w;
    const lo = Math.min(...f.samples), hi = Math.max(...f.samples);
    const Y = (v) => h - 4 - ((v - lo) / (hi - lo || 1)) * (h - 8);
    c.strokeStyle = "#e0201b"; c.beginPath(); c.moveTo(X(strip.onset), 0); c.lineTo(X(strip.onset), h); c.stroke();
    c.strokeStyle = "#41e35b"; c.lineWidth = 1.5 * dpr; c.beginPath();
    f.samples.forEach((v, i) => { const x = X(f.t0 + i / f.fs); if (i) c.lineTo(x, Y(v)); else c.moveTo(x, Y(v)); });
    c.stroke();
  }
}
const RECALL_LABEL = "10 s before, 5 s after";

function frame() {
  const now = R.serverNow();
  for (const s of Object.values(sweeps)) s.draw(now);
  const r = R.st.rooms[ROOM];
  const lim = r && r.limits && r.limits.cement_pressure ? r.limits.cement_pressure.high : null;
  if (cement) cement.draw(lim);
  requestAnimationFrame(frame);
}

layout();
R.shownRooms = () => (R.st.rooms[ROOM] ? [R.st.rooms[ROOM]] : []);
document.getElementById("room").addEventListener("click", (e) => {
  const ack = e.target.closest("button[data-ack]");
  if (ack) { R.act(ROOM, "acknowledge", { alarm_id: ack.dataset.ack }, "acknowledge"); return; }
  if (e.target.closest("button[data-audio-pause]")) { R.act(ROOM, "audio_pause", {}, "audio pause"); return; }
  const row = e.target.closest("tr[data-recall], tr.recallable[data-alarm-id]");
  if (row && !e.target.closest("button")) showRecall(row.dataset.recall || row.dataset.alarmId);
});
R.onWave((m) => {
  if (m.room !== ROOM) return;
  if (m.kind === "ecg" && sweeps.ecg) sweeps.ecg.push(m.t0, m.fs, m.samples);
  else if (m.kind === "pleth" && sweeps.pleth) sweeps.pleth.push(m.t0, m.fs, m.samples);
  else if (m.kind === "cement_pressure" && cement) {
    const r = R.st.rooms[ROOM];
    if (cement.start === null && r && r.state && r.state.phase === "cement_injection") cement.reset(m.t0);
    cement.push(m.t0, m.fs, m.samples);
  }
});
R.onChange((m) => { onEvent(m); render(); });
R.watch(ROOM);
R.start();
requestAnimationFrame(frame);
