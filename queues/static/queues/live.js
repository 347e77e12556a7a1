/* The admin's live view: listens to the staff event stream (admin/events/stream) with
   EventSource and tells the page, at most every 300 ms, which queues changed
   ("flashq:changed" on document, detail.queues). window.flashqLive.open says whether
   the stream is up: pages poll as before whenever it is not. The stream closes while
   the tab is hidden. No payload ever comes this way: ids, states and counts only. */
(function () {
  "use strict";
  var script = document.currentScript;
  var url = script && script.dataset.stream;
  var kinds = ["pushed", "waiting", "active", "progress", "completed", "failed", "retried",
    "cancelled", "expired", "removed", "reset"];
  var live = window.flashqLive = {open: false, events: 0};
  var source = null, timer = null, retry = null, changed = {};

  function announce() {
    timer = null;
    var queues = Object.keys(changed);
    changed = {};
    document.dispatchEvent(new CustomEvent("flashq:changed", {detail: {queues: queues}}));
  }
  function heard(event) {
    live.events += 1;
    try {
      var data = JSON.parse(event.data);
      if (data && data.queue) { changed[data.queue] = true; }
    } catch (ignored) { /* a reset carries no queue: every queue may have changed */ }
    if (!timer) { timer = setTimeout(announce, 300); }
  }
  function setOpen(open) {
    if (live.open !== open) {
      live.open = open;
      document.dispatchEvent(new CustomEvent("flashq:live", {detail: {open: open}}));
    }
  }
  function connect() {
    if (source || !url || !window.EventSource || document.hidden) { return; }
    source = new EventSource(url);
    source.onopen = function () { setOpen(true); };
    source.onerror = function () {
      setOpen(false);
      if (source && source.readyState === EventSource.CLOSED) {
        // Refused (logged out, no longer allowed) or gone: try again later, poll meanwhile.
        source = null;
        if (!retry) { retry = setTimeout(function () { retry = null; connect(); }, 15000); }
      }
    };
    kinds.forEach(function (kind) { source.addEventListener(kind, heard); });
  }
  function disconnect() {
    if (source) { source.close(); source = null; }
    setOpen(false);
  }
  document.addEventListener("visibilitychange", function () {
    if (document.hidden) { disconnect(); } else { connect(); }
  });
  connect();
})();
