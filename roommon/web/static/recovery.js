// Nurses' station: every room in recovery, most urgent first (overdue checks, then next due).
"use strict";

function cardHtml(r) {
  const t = r.timer;
  const od = Recovery.overdue(t);
  const minLeft = Recovery.left(t.min_deadline), targetLeft = Recovery.left(t.target_deadline);
  const a = R.topAlarm(r);
  return `<h2>${R.esc(r.name)} ${R.originBadge(r)} <small class="phase">${R.esc(Recovery.STATES[t.state] || t.state)}`
    + `${t.injections ? ` · ${t.injections} injection(s)` : ""}</small></h2>`
    + (a ? `<div class="alarmline prio-${a.priority}">${R.esc(a.text)} <span class="astate">${R.esc(R.alarmStateText(a, r))}</span></div>` : "")
    + `<div class="countdowns">`
    + `<div data-countdown="minimum" data-epoch="${t.min_deadline}">minimum bed rest <b data-left>${t.min_reached || minLeft <= 0 ? "reached" : R.duration(minLeft)}</b> at <span data-at>${R.clockTime(t.min_deadline)}</span></div>`
    + `<div data-countdown="target" data-epoch="${t.target_deadline}">target <b data-left>${t.target_reached || targetLeft <= 0 ? "reached" : R.duration(targetLeft)}</b> at <span data-at>${R.clockTime(t.target_deadline)}</span>`
    + `${t.extended_s ? ` (extended ${Math.round(t.extended_s / 60)} min)` : ""}</div>`
    + `<div>${Recovery.nextCheckText(t)}</div></div>`
    + RecoveryUi.checksTable(t) + (od.length ? "" : "");
}

function renderStations() {
  const root = document.getElementById("stations");
  const rooms = Object.values(R.st.rooms).filter((r) => Recovery.active(r.timer));
  rooms.sort((a, b) => {
    const ua = Recovery.urgency(a.timer), ub = Recovery.urgency(b.timer);
    return ua[0] - ub[0] || ua[1] - ub[1] || a.room.localeCompare(b.room);
  });
  const seen = new Set();
  let prev = null;
  for (const r of rooms) {
    seen.add(r.room);
    let el = root.querySelector(`.rcard[data-room="${CSS.escape(r.room)}"]`);
    if (!el) {
      el = document.createElement("div");
      el.className = "rcard"; el.dataset.room = r.room;
      el.innerHTML = `<div class="cbody"></div><div class="cactions"></div>`;
    }
    // keep the order most urgent first without rebuilding (a nurse may be typing)
    const want = prev ? prev.nextSibling : root.firstChild;
    if (want !== el) root.insertBefore(el, want);
    prev = el;
    const html = cardHtml(r);
    if (el.children[0]._html !== html) { el.children[0].innerHTML = html; el.children[0]._html = html; }
    el.classList.toggle("is-overdue", Recovery.overdue(r.timer).length > 0);
    RecoveryUi.render(el.children[1], r.room, r.timer);
  }
  for (const el of [...root.querySelectorAll(".rcard")]) if (!seen.has(el.dataset.room)) el.remove();
  let empty = root.querySelector(".empty.none");
  if (!rooms.length && !empty) {
    empty = document.createElement("div"); empty.className = "empty none";
    empty.textContent = "No room is in recovery."; root.appendChild(empty);
  } else if (rooms.length && empty) empty.remove();
}

R.onChange(renderStations);
R.start();
