// roommon display: the live connection, the site's state, banners, sign-in, actions, sound.
// Shared by every page; each page registers a render function with R.onChange.
"use strict";

const R = (() => {
  const PRIORITY = { high: 3, medium: 2, low: 1 };
  const PHASES = {
    idle: "Idle", patient_connected: "Patient connected", procedure: "Procedure",
    cement_injection: "Cement injection", recovery: "Recovery",
    ready_for_discharge: "Ready for discharge",
  };
  const st = {
    rooms: {}, health: null, connected: false, lastUpdateWall: null,
    clock: { now: null, wall: 0, rate: 1 }, user: null, csrf: null, watch: null,
  };
  const changeHandlers = [];
  const waveHandlers = [];
  let ws = null;
  let retry = 0;

  // ---------------------------------------------------------------- time
  function serverNow() {
    if (st.clock.now === null) return Date.now() / 1000;
    return st.clock.now + ((performance.now() - st.clock.wall) / 1000) * st.clock.rate;
  }
  function setClock(now, rate) {
    st.clock = { now, wall: performance.now(), rate: rate === undefined ? st.clock.rate : rate };
  }
  const pad = (n) => String(n).padStart(2, "0");
  function clockTime(epoch) {
    if (epoch === null || epoch === undefined) return "--:--";
    const d = new Date(epoch * 1000);
    return `${pad(d.getHours())}:${pad(d.getMinutes())}`;
  }
  function clockTimeSec(epoch) {
    const d = new Date(epoch * 1000);
    return `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
  }
  function duration(s) {
    s = Math.max(0, Math.round(s));
    const h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60), sec = s % 60;
    return h ? `${h} h ${pad(m)} min` : `${m}:${pad(sec)}`;
  }
  function age(s) {
    if (s < 60) return `${Math.max(0, Math.round(s))} s ago`;
    if (s < 3600) return `${Math.round(s / 60)} min ago`;
    return `${(s / 3600).toFixed(1)} h ago`;
  }
  function esc(text) {
    return String(text ?? "").replace(/[&<>"']/g, (c) => ({
      "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c]));
  }

  // ---------------------------------------------------------------- state
  function room(id) {
    if (!st.rooms[id]) {
      st.rooms[id] = { room: id, name: id, limits: {}, state: null, timer: null, alarms: [],
        origin: "live", history: [], waves: [] };
    }
    return st.rooms[id];
  }
  function onMessage(m) {
    st.lastUpdateWall = performance.now();
    switch (m.type) {
      case "snapshot":
        st.rooms = m.rooms; st.health = m; setClock(m.now); break;
      case "tick": case "health":
        st.health = m; setClock(m.now, m.type === "tick" ? m.rate : undefined); break;
      case "state": {
        const r = room(m.room); r.state = m.state; r.name = m.name; r.alarms = m.alarms;
        r.origin = m.origin; break;
      }
      case "alarm": {
        const r = room(m.room); r.alarms = m.alarms; r.origin = m.origin;
        r.history.push({ kind: "alarm", ...m.event }); break;
      }
      case "timer": room(m.room).timer = m.timer; break;
      case "timer_event": room(m.room).history.push({ kind: "timer", ...m.event }); break;
      case "event": room(m.room).history.push({ kind: "event", ...m.event }); break;
      case "wave": for (const h of waveHandlers) h(m); return;
      case "recall": break;
      default: return;
    }
    changed(m);
  }
  function changed(m) {
    for (const h of changeHandlers) h(m);
    banners();
    sound.update();
  }
  function connect() {
    const proto = location.protocol === "https:" ? "wss" : "ws";
    ws = new WebSocket(`${proto}://${location.host}/ws`);
    ws.onopen = () => {
      st.connected = true; retry = 0;
      if (st.watch) ws.send(JSON.stringify({ watch: st.watch }));
      banners();
    };
    ws.onmessage = (e) => onMessage(JSON.parse(e.data));
    ws.onclose = () => {
      st.connected = false; banners();
      setTimeout(connect, Math.min(5000, 500 * 2 ** retry++));
    };
  }
  function watch(roomId) {
    st.watch = roomId;
    if (ws && ws.readyState === WebSocket.OPEN) ws.send(JSON.stringify({ watch: roomId }));
  }

  // ---------------------------------------------------------------- derived
  function activeAlarms(r) {
    return (r.alarms || []).filter((a) => a.state !== "cleared");
  }
  function topAlarm(r) { return activeAlarms(r)[0] || null; }
  function priorityOf(r) { const a = topAlarm(r); return a ? a.priority : "none"; }
  function unmonitored(id) {
    return !!(st.health && st.health.unmonitored && st.health.unmonitored.includes(id));
  }
  function alarmStateText(a, r) {
    const parts = [];
    if (a.state === "acknowledged") parts.push("acknowledged");
    if (a.state === "latched") parts.push("latched: condition ended, reset needed");
    const until = r.state && r.state.audio_paused_until;
    if (until && until > serverNow() && !a.audible) {
      parts.push(`audio paused, ${duration(until - serverNow())} left`);
    } else if (!a.audible && a.state === "active") {
      parts.push("silent");
    }
    return parts.join(" · ");
  }
  function phaseText(r) { return PHASES[r.state && r.state.phase] || "no data"; }
  function originBadge(r) {
    return r.origin && r.origin !== "live"
      ? `<span class="origin" data-origin="${esc(r.origin)}">${esc(r.origin.toUpperCase())} DATA</span>`
      : "";
  }
  // A measurement's display: value text, its age, and whether it is stale.
  function measurement(r, name, digits = 0) {
    const m = r.state && r.state.measurements && r.state.measurements[name];
    if (!m) return { text: "--", unit: "", stale: true, age: null };
    const feed = r.state.feeds && r.state.feeds[m.feed];
    const a = serverNow() - m.t;
    const stale = (feed && feed.status !== "ok") || unmonitored(r.room) || m.value === null;
    return { text: m.value === null ? "--" : m.value.toFixed(digits), unit: m.unit, stale, age: a,
      feedStatus: feed ? feed.status : null };
  }
  function roomStale(r) {
    return !r.state || serverNow() - r.state.t > 15;
  }

  // ---------------------------------------------------------------- banners
  function banners() {
    const el = document.getElementById("banners");
    if (!el) return;
    const out = [];
    const since = st.lastUpdateWall === null ? null : (performance.now() - st.lastUpdateWall) / 1000;
    if (!st.connected) {
      out.push(`<div class="banner conn" data-banner="service">No connection to the display service`
        + (since !== null ? `: last update ${age(since)}` : "") + ". What you see may be out of date.</div>");
    } else if (st.health && !st.health.link.connected) {
      const a = st.health.link.age_s;
      out.push(`<div class="banner conn" data-banner="broker">No connection to the ${esc(st.health.link.name)}`
        + (a !== null && a !== undefined ? `: last update ${age(a)}` : "") + ". What you see may be out of date.</div>");
    }
    if (st.health && st.health.unmonitored && st.health.unmonitored.length) {
      const names = st.health.unmonitored.map((id) => (st.rooms[id] ? st.rooms[id].name : id));
      out.push(`<div class="banner offline" data-banner="offline">roommon offline: these rooms are not monitored: ${esc(names.join(", "))}</div>`);
    }
    out.push(sound.bannerHtml());
    el.innerHTML = out.join("");
    const b = el.querySelector("button[data-enable-sound]");
    if (b) b.onclick = () => sound.enable();
    const clock = document.getElementById("clock");
    if (clock) clock.textContent = clockTimeSec(serverNow());
  }

  // ---------------------------------------------------------------- account and actions
  async function session() {
    const r = await fetch("/api/session", { credentials: "same-origin" });
    const s = await r.json();
    st.user = s.user; st.csrf = s.csrf; account();
  }
  function account() {
    const el = document.getElementById("account");
    if (!el) return;
    if (st.user) {
      el.innerHTML = `<span>Signed in: <b data-user>${esc(st.user)}</b></span> <button data-signout>Sign out</button>`;
      el.querySelector("[data-signout]").onclick = signOut;
    } else {
      el.innerHTML = `<form data-signin><input name="user" placeholder="user" autocomplete="username">`
        + `<input name="password" type="password" placeholder="password" autocomplete="current-password">`
        + `<button type="submit">Sign in</button></form>`;
      el.querySelector("form").onsubmit = async (e) => {
        e.preventDefault();
        const f = e.target;
        const r = await fetch("/api/login", { method: "POST", credentials: "same-origin",
          headers: { "Content-Type": "application/json" },
          body: JSON.stringify({ user: f.user.value, password: f.password.value }) });
        const body = await r.json();
        if (body.ok) { st.user = body.user; st.csrf = body.csrf; account(); changed({ type: "session" }); }
        else notice(false, body.error || "sign-in failed");
      };
    }
  }
  async function signOut() {
    await fetch("/api/logout", { method: "POST", credentials: "same-origin",
      headers: { "X-CSRF-Token": st.csrf || "" } });
    st.user = null; st.csrf = null; account(); changed({ type: "session" });
  }
  function notice(ok, text) {
    const el = document.getElementById("notice");
    if (!el) return;
    el.className = ok ? "ok" : "refused";
    el.dataset.ok = ok ? "true" : "false";
    el.textContent = text;
    el.style.display = "block";
    clearTimeout(notice.timer);
    notice.timer = setTimeout(() => { el.style.display = "none"; }, 8000);
  }
  // Send one action; the daemon's reply (or the refusal, in plain words) is shown.
  async function act(roomId, action, params = {}, label = action) {
    const r = await fetch("/api/command", { method: "POST", credentials: "same-origin",
      headers: { "Content-Type": "application/json", "X-CSRF-Token": st.csrf || "" },
      body: JSON.stringify({ room: roomId, action, ...params }) });
    let body = {};
    try { body = await r.json(); } catch (e) { body = { ok: false, error: `HTTP ${r.status}` }; }
    const name = (st.rooms[roomId] && st.rooms[roomId].name) || roomId;
    if (body.ok) notice(true, `${name}: ${label}: ${body.text}`);
    else notice(false, `${name}: ${label} refused: ${body.text || body.error || r.status}`);
    if (r.status === 401) { st.user = null; account(); }
    return body;
  }

  // ---------------------------------------------------------------- sound (IEC 60601-1-8)
  // Burst patterns: high 10 pulses (3+2, pause, 3+2), medium 3 pulses, low 2 pulses.
  const sound = (() => {
    const PATTERNS = {
      high: { pulses: [0, .25, .5, 1.0, 1.25, 2.25, 2.5, 2.75, 3.25, 3.5], freq: 880, len: .15, repeat: 6 },
      medium: { pulses: [0, .3, .6], freq: 660, len: .2, repeat: 8 },
      low: { pulses: [0, .4], freq: 440, len: .25, repeat: 20 },
    };
    let ctx = null;
    let playing = "none";
    let nextAt = 0;
    let timer = null;
    function enabled() { return ctx !== null && ctx.state === "running"; }
    function enable() {
      try {
        ctx = ctx || new (window.AudioContext || window.webkitAudioContext)();
        ctx.resume().then(() => { document.body.dataset.sound = "on"; banners(); update(); });
      } catch (e) { ctx = null; }
    }
    function wanted() {
      // the highest priority among audible alarms of the rooms this page shows
      let best = "none";
      for (const r of R.shownRooms()) {
        for (const a of activeAlarms(r)) {
          if (a.audible && (PRIORITY[a.priority] || 0) > (PRIORITY[best] || 0)) best = a.priority;
        }
      }
      return best;
    }
    function burst(p) {
      const t0 = ctx.currentTime + 0.05;
      for (const dt of p.pulses) {
        const osc = ctx.createOscillator(), gain = ctx.createGain();
        osc.type = "square"; osc.frequency.value = p.freq;
        gain.gain.setValueAtTime(0, t0 + dt);
        gain.gain.linearRampToValueAtTime(0.15, t0 + dt + 0.02);
        gain.gain.setValueAtTime(0.15, t0 + dt + p.len - 0.03);
        gain.gain.linearRampToValueAtTime(0, t0 + dt + p.len);
        osc.connect(gain).connect(ctx.destination);
        osc.start(t0 + dt); osc.stop(t0 + dt + p.len + 0.01);
      }
      document.body.dataset.bursts = String(Number(document.body.dataset.bursts || 0) + 1);
      document.body.dataset.pattern = `${p.name}:${p.pulses.length}`;
    }
    function loop() {
      timer = null;
      const want = wanted();
      playing = want;
      document.body.dataset.playing = want;
      if (want === "none" || !enabled()) { nextAt = 0; return; }
      const p = { name: want, ...PATTERNS[want] };
      if (performance.now() >= nextAt) { burst(p); nextAt = performance.now() + p.repeat * 1000; }
      timer = setTimeout(loop, 250);
    }
    function update() {
      const want = wanted();
      if (want !== playing) nextAt = 0; // a new or higher priority sounds at once
      if (timer === null || want === "none") { clearTimeout(timer); loop(); }
    }
    function bannerHtml() {
      if (enabled()) return "";
      return `<div class="banner sound" data-banner="sound">Sound is OFF on this screen: alarms here are silent.`
        + `<button data-enable-sound>Enable sound</button></div>`;
    }
    return { enable, update, bannerHtml, enabled, get playing() { return playing; } };
  })();

  // ---------------------------------------------------------------- start
  function start() {
    document.body.dataset.sound = "off";
    connect();
    session();
    setInterval(() => { banners(); for (const h of changeHandlers) h({ type: "second" }); }, 1000);
  }

  return {
    st, start, onChange: (f) => changeHandlers.push(f), onWave: (f) => waveHandlers.push(f),
    watch, serverNow, clockTime, clockTimeSec, duration, age, esc, activeAlarms, topAlarm,
    priorityOf, alarmStateText, phaseText, originBadge, measurement, roomStale, unmonitored,
    act, notice, sound, PRIORITY,
    shownRooms: () => Object.values(st.rooms),
  };
})();
