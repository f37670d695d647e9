// Recovery timer texts shared by the overview tiles, the room page and the nurses' station.
"use strict";

const Recovery = (() => {
  const ACTIVE = new Set(["unconfirmed", "interrupted", "confirmed", "target_reached"]);
  const STATES = {
    unconfirmed: "recovery (not yet confirmed)", interrupted: "recovery interrupted",
    confirmed: "recovery", target_reached: "target bed rest reached",
  };
  function active(t) { return !!t && ACTIVE.has(t.state); }
  // seconds until a deadline on the site clock (negative: passed)
  function left(deadline) { return deadline - R.serverNow(); }
  function overdue(t) {
    return (t.checks || []).filter((c) => c.status !== "done" && R.serverNow() >= c.overdue_at);
  }
  // [urgency group, time]: overdue checks first (oldest first), then the next due.
  function urgency(t) {
    const od = overdue(t);
    if (od.length) return [0, od[0].due];
    const next = t.next_check;
    return [1, next ? next.due : Infinity];
  }
  function deadlineText(label, deadline, reached) {
    if (deadline === null || deadline === undefined) return "";
    const l = left(deadline);
    return `<span data-deadline="${label}" data-epoch="${deadline}">${label} ${R.clockTime(deadline)} `
      + (reached || l <= 0 ? "(reached)" : `(in <span data-left>${R.duration(l)}</span>)`) + "</span>";
  }
  function nextCheckText(t) {
    const od = overdue(t);
    if (od.length) {
      return od.map((c) => `<span class="overdue" data-overdue="${c.no}">check ${c.no} OVERDUE since ${R.clockTime(c.overdue_at)}</span>`).join(" ");
    }
    const c = t.next_check;
    if (!c) return "no check left";
    const l = left(c.due);
    return `<span data-next-check="${c.no}">next check ${c.no} at ${R.clockTime(c.due)} `
      + (l > 0 ? `(in ${R.duration(l)})` : "(due now)") + "</span>";
  }
  function summary(t) {
    if (!active(t)) return "";
    return `<div class="recovery" data-recovery="${R.esc(t.state)}">`
      + `<div>${R.esc(STATES[t.state] || t.state)}: ${deadlineText("minimum", t.min_deadline, t.min_reached)} · `
      + `${deadlineText("target", t.target_deadline, t.target_reached)}</div>`
      + `<div>${nextCheckText(t)}</div></div>`;
  }
  return { active, left, overdue, urgency, deadlineText, nextCheckText, summary, STATES };
})();

// The checks of a recovery, the extensions, and the nurses' actions (room page and station).
const RecoveryUi = (() => {
  const VITALS = { heart_rate: "HR", spo2: "SpO2", pulse_rate: "PR", nibp_systolic: "sys",
    nibp_diastolic: "dia", nibp_mean: "mean" };
  function vitalsText(v) {
    if (!v) return "";
    return Object.entries(VITALS).filter(([k]) => k in v)
      .map(([k, label]) => `${label} ${v[k] === null ? "--" : Math.round(v[k])}`).join(", ");
  }
  function checksTable(t) {
    const rows = (t.checks || []).map((c) => {
      const od = c.status !== "done" && R.serverNow() >= c.overdue_at;
      const status = c.status === "done"
        ? `done ${R.clockTime(c.done_t)} by <b data-done-by>${R.esc(c.done_by)}</b>`
        : od ? `<span class="overdue">OVERDUE</span>` : R.esc(c.status);
      return `<tr data-check="${c.no}" data-status="${od ? "overdue" : R.esc(c.status)}"><td>${c.no}</td>`
        + `<td>${R.clockTime(c.due)}</td><td>${status}</td><td>${R.esc(vitalsText(c.vitals))}`
        + `${c.note ? ` <i>${R.esc(c.note)}</i>` : ""}</td></tr>`;
    }).join("");
    const ext = (t.extensions || []).map((e) => `<li>+${Math.round(e.seconds / 60)} min at ${R.clockTime(e.t)} by ${R.esc(e.by)}: ${R.esc(e.reason)}</li>`).join("");
    return `<table class="checks"><tr><th>check</th><th>due</th><th>status</th><th>vitals / note</th></tr>${rows}</table>`
      + (ext ? `<div>Extensions:<ul data-extensions>${ext}</ul></div>` : "");
  }
  function actionsHtml(t) {
    const signed = !!R.st.user;
    const dis = signed ? "" : " disabled";
    const open = (t.checks || []).filter((c) => c.status !== "done");
    const options = open.map((c) => `<option value="${c.no}">check ${c.no} (${R.clockTime(c.due)})</option>`).join("");
    const confirm = t.state === "unconfirmed" || t.state === "interrupted"
      ? `<button data-act="recovery_confirm"${dis}>Confirm recovery</button>` : "";
    return `<div class="actions" data-recovery-actions>${confirm}`
      + (open.length ? `<select data-field="check_no">${options}</select>`
        + `<label><input type="checkbox" data-field="vitals" checked> record current vitals</label>`
        + `<input data-field="note" placeholder="note" maxlength="200">`
        + `<button data-act="check_done"${dis}>Check done</button>` : "")
      + `</div><div class="actions"><input data-field="minutes" type="number" min="1" max="240" value="15" style="width:4.5rem"> min`
      + `<input data-field="ext_reason" placeholder="reason to extend" maxlength="200">`
      + `<button data-act="recovery_extend"${dis}>Extend</button>`
      + `<input data-field="end_reason" placeholder="reason to end early" maxlength="200">`
      + `<button data-act="recovery_end"${dis}>End early</button>`
      + (signed ? "" : ` <span class="empty">sign in to act</span>`) + "</div>";
  }
  // Keep what a nurse is typing: the action block is rebuilt only when its shape changes.
  function bind(el, roomId) {
    el.onclick = (e) => {
      const b = e.target.closest("button[data-act]");
      if (!b) return;
      e.stopPropagation();
      const f = (name) => el.querySelector(`[data-field="${name}"]`);
      const act = b.dataset.act;
      if (act === "recovery_confirm") R.act(roomId, act, {}, "confirm recovery");
      else if (act === "check_done") {
        R.act(roomId, act, { check_no: Number(f("check_no").value), vitals: f("vitals").checked,
          note: f("note").value }, `check ${f("check_no").value} done`);
        f("note").value = "";
      } else if (act === "recovery_extend") {
        R.act(roomId, act, { seconds: Number(f("minutes").value) * 60, reason: f("ext_reason").value }, "extend");
      } else if (act === "recovery_end") R.act(roomId, act, { reason: f("end_reason").value }, "end early");
    };
  }
  function render(el, roomId, t) {
    const key = JSON.stringify([t.state, (t.checks || []).map((c) => c.status), !!R.st.user]);
    if (el._key === key) return;
    // what a nurse has typed survives the rebuild
    const kept = {};
    for (const f of el.querySelectorAll("[data-field]")) kept[f.dataset.field] = f.type === "checkbox" ? f.checked : f.value;
    el.innerHTML = actionsHtml(t); el._key = key; bind(el, roomId);
    for (const f of el.querySelectorAll("[data-field]")) {
      const v = kept[f.dataset.field];
      if (v === undefined) continue;
      if (f.type === "checkbox") f.checked = v;
      else if (f.tagName !== "SELECT" || [...f.options].some((o) => o.value === v)) f.value = v;
    }
  }
  return { checksTable, render, vitalsText };
})();
