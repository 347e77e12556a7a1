/* The dashboard's refresh, on the home page and on a queue's page: the figures (and the
   charts, charts.js) are fetched again when the event stream (live.js) reports a change
   to a shown queue, and every chosen interval while the stream is down. Nothing is
   fetched while the tab is hidden; the chosen interval is remembered (localStorage)
   across reloads and pages. Each count is a link to the job list filtered to exactly
   those jobs (the links come with the figures). */
(function () {
  "use strict";
  var script = document.currentScript;
  var url = script && script.dataset.url;
  var rows = document.getElementById("dashboard-rows");
  var select = document.getElementById("refresh-interval");
  var note = document.getElementById("dashboard-updated");
  if (!url || !rows || !select) { return; }
  var KEY = "flashq:refresh-interval";
  var timer = null, shown = {};
  var live = window.flashqLive = window.flashqLive || {open: false, events: 0};
  live.refreshes = 0;

  function remembered() {
    try { return window.localStorage.getItem(KEY); } catch (ignored) { return null; }
  }
  function remember(value) {
    try { window.localStorage.setItem(KEY, value); } catch (ignored) { /* private mode */ }
  }
  function text(value) { return value === null || value === undefined || value === "" ? "–" : String(value); }
  function cell(tr, value, cls) {
    var td = document.createElement("td");
    if (cls) { td.className = cls; }
    td.textContent = value;
    tr.appendChild(td);
    return td;
  }
  function link(parent, href, value, cls) {
    var a = document.createElement("a");
    a.href = href; a.textContent = String(value);
    if (cls) { a.className = cls; }
    parent.appendChild(a);
  }
  function pair(tr, q, kind, cls) {
    var td = cell(tr, "", cls);
    link(td, q.links[kind + "_1h"], q[kind + "_1h"], kind + "_1h");
    td.appendChild(document.createTextNode(" / "));
    link(td, q.links[kind + "_24h"], q[kind + "_24h"], kind + "_24h");
  }
  function render(queues) {
    rows.textContent = "";
    shown = {};
    queues.forEach(function (q) {
      shown[q.name] = true;
      var tr = document.createElement("tr"); tr.dataset.queue = q.name;
      cell(tr, q.name + (q.legal_hold ? " (legal hold)" : ""), "queue");
      q.cells.forEach(function (c) { link(cell(tr, "", c[0]), c[2], c[1]); });
      cell(tr, q.oldest_waiting_s === null ? "–" : q.oldest_waiting_s + " s");
      pair(tr, q, "completed", "done"); pair(tr, q, "failed", "failures");
      cell(tr, q.failure_rate_24h === null ? "–" : Math.round(q.failure_rate_24h * 100) + " %");
      cell(tr, q.paused ? "paused" : ""); cell(tr, text(q.rate_limit)); cell(tr, text(q.concurrency));
      rows.appendChild(tr);
    });
    live.refreshes += 1;
    note.textContent = "Updated " + new Date().toLocaleTimeString([], {hour12: false});
  }
  function refresh() {
    if (document.hidden) { return; }
    fetch(url, {credentials: "same-origin"})
      .then(function (r) { return r.ok ? r.json() : Promise.reject(r.status); })
      .then(function (body) { render(body.queues); })
      .catch(function () { note.textContent = "Could not refresh."; });
    if (window.flashqCharts) { window.flashqCharts.refresh(); }
  }
  // The interval polls only while the event stream is down.
  function tick() { if (!live.open) { refresh(); } }
  function schedule() {
    if (timer) { clearInterval(timer); timer = null; }
    var seconds = parseInt(select.value, 10);
    if (seconds > 0 && !document.hidden) { timer = setInterval(tick, seconds * 1000); }
  }
  function concerned(queues) {
    if (!queues || !queues.length) { return true; }  // a reset: anything may have changed
    return queues.some(function (name) { return shown[name]; }) || !rows.dataset.single;
  }
  Array.prototype.forEach.call(rows.querySelectorAll("tr[data-queue]"), function (tr) {
    shown[tr.dataset.queue] = true;
  });
  if (document.getElementById("dashboard").dataset.queueId) { rows.dataset.single = "1"; }
  var saved = remembered();
  if (saved !== null && select.querySelector('option[value="' + saved + '"]')) { select.value = saved; }
  document.addEventListener("flashq:changed", function (event) {
    if (select.value !== "0" && concerned(event.detail && event.detail.queues)) { refresh(); }
  });
  select.addEventListener("change", function () { remember(select.value); schedule(); });
  document.addEventListener("visibilitychange", function () {
    if (!document.hidden && select.value !== "0") { refresh(); }
    schedule();
  });
  schedule();
})();
