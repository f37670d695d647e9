// Site overview: one tile per room, readable across a room.
"use strict";

function numHtml(r, label, name, digits = 0) {
  const m = R.measurement(r, name, digits);
  const ageText = m.age !== null && (m.stale || name.startsWith("nibp")) ? `<span class="age">${R.age(m.age)}</span>` : "";
  return `<div class="num${m.stale ? " stale" : ""}" data-num="${name}"><div class="label">${label}</div>`
    + `<span class="value">${m.text}</span><span class="unit">${R.esc(m.unit)}</span>${ageText}</div>`;
}

function nibpHtml(r) {
  const s = R.measurement(r, "nibp_systolic"), d = R.measurement(r, "nibp_diastolic");
  const mean = R.measurement(r, "nibp_mean");
  const stale = s.stale || d.stale;
  return `<div class="num${stale ? " stale" : ""}" data-num="nibp"><div class="label">NIBP</div>`
    + `<span class="value">${s.text}/${d.text}</span><span class="unit">(${mean.text}) mmHg</span>`
    + (s.age !== null ? `<span class="age">${R.age(s.age)}</span>` : "") + "</div>";
}

// A tile keeps its alarm line element across updates, so its flashing never restarts.
function alarmLine(r) {
  const a = R.topAlarm(r);
  if (!a) return { cls: "alarmline none", html: "No active alarm", id: "", state: "" };
  const flash = a.priority !== "low" && a.state === "active" ? ` flash-${a.priority}` : "";
  const more = R.activeAlarms(r).length - 1;
  return {
    cls: `alarmline prio-${a.priority}${flash}`,
    html: `<span data-alarm-text>${R.esc(a.text)}</span>` + (more > 0 ? ` <small>+${more} more</small>` : "")
      + `<span class="astate" data-astate>${R.esc(R.alarmStateText(a, r))}</span>`,
    id: a.alarm_id, state: a.state,
  };
}

function tileHead(r) {
  return `<h2><span>${R.esc(r.name)}</span>${R.originBadge(r)}</h2>`
    + `<div class="phase" data-phase="${R.esc(r.state ? r.state.phase : "")}">${R.esc(R.phaseText(r))}</div>`;
}

function tileBody(r) {
  const injecting = r.state && r.state.phase === "cement_injection";
  const stale = R.roomStale(r) ? `<div class="stalestate" data-stale>no room state for ${r.state ? R.age(R.serverNow() - r.state.t) : "ever"}</div>` : "";
  return stale
    + `<div class="nums">${numHtml(r, "HR", "heart_rate")}${numHtml(r, "SpO2", "spo2")}${numHtml(r, "Pulse", "pulse_rate")}`
    + nibpHtml(r) + (injecting ? numHtml(r, "Cement", "cement_pressure") : "") + "</div>"
    + Recovery.summary(r.timer);
}

function setHtml(el, html) { if (el._html !== html) { el.innerHTML = html; el._html = html; } }

function renderOverview() {
  const root = document.getElementById("tiles");
  const ids = Object.keys(R.st.rooms).sort();
  const empty = root.querySelector(".empty");
  if (ids.length && empty) empty.remove();
  for (const id of ids) {
    const r = R.st.rooms[id];
    let el = root.querySelector(`.tile[data-room="${CSS.escape(id)}"]`);
    if (!el) {
      el = document.createElement("div");
      el.className = "tile";
      el.dataset.room = id;
      el.innerHTML = `<div class="thead"></div><div class="alarmline none"></div><div class="tbody"></div>`;
      el.onclick = () => { location.href = `/room/${encodeURIComponent(id)}`; };
      root.appendChild(el);
    }
    setHtml(el.children[0], tileHead(r));
    const line = alarmLine(r), a = el.children[1];
    if (a.className !== line.cls) a.className = line.cls;
    a.dataset.alarmId = line.id; a.dataset.alarmState = line.state;
    setHtml(a, line.html);
    setHtml(el.children[2], tileBody(r));
    el.dataset.priority = R.priorityOf(r);
  }
  if (!ids.length && !empty) root.innerHTML = `<div class="empty">No room has reported yet.</div>`;
}

R.onChange(renderOverview);
R.start();
