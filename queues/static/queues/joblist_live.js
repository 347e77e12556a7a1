/* The job list, live. Its rows are fetched again and swapped in, with the count, the
   "select all" links, the paginator and when the list was counted (what "select all"
   acts on: queues.admin.selection), unless a row is selected for an action (the
   selection would be lost). "refresh every" sets how often: when the event stream
   (live.js) is up, at most that often and only after a change; when it is down, by
   polling at that interval; never, with "never". Nothing is fetched while the tab is
   hidden; it refreshes at once when shown again. The choice is remembered in
   localStorage. "Updated ..." says when it last refreshed. */
(function () {
  "use strict";
  var KEY = "flashq.joblist.refresh";
  var select = document.getElementById("refresh-interval");
  var busy = false, missed = false, poller = null, pending = null, last = 0;

  // Django's actions.js keeps the row checkboxes it found at load; rows swapped in
  // later would escape "select all on this page". Give it the current ones instead.
  function boxes() { return document.querySelectorAll("#result_list tbody input.action-select"); }
  var current = {
    forEach: function (fn) { boxes().forEach(fn); }
  };
  Object.defineProperty(current, "length", { get: function () { return boxes().length; } });
  current[Symbol.iterator] = function () { return boxes()[Symbol.iterator](); };
  if (window.Actions) {
    var actions = window.Actions;
    window.Actions = function (found, options) { return actions(current, options); };
  }

  function seconds() { return select ? parseInt(select.value, 10) || 0 : 5; }
  function selected() {
    return document.querySelector("#result_list input.action-select:checked") !== null;
  }
  function note(text) {
    var where = document.getElementById("joblist-updated");
    if (where) { where.textContent = text; }
  }
  function same(fresh, selector, copy) {
    var mine = document.querySelector(selector), theirs = fresh.querySelector(selector);
    if (mine && theirs) { copy(mine, theirs); }
  }
  function apply(fresh) {
    var rows = document.querySelector("#result_list tbody");
    var freshRows = fresh.querySelector("#result_list tbody");
    var heads = function (doc) {
      var head = doc.querySelector("#result_list thead");
      return head ? head.textContent : "";
    };
    if (!rows !== !freshRows || heads(document) !== heads(fresh)) {
      // The table came or went (an empty list has none): load the page again.
      window.location.reload();
      return;
    }
    if (rows) {
      rows.replaceChildren.apply(rows, Array.prototype.map.call(
        freshRows.children, function (row) { return document.importNode(row, true); }));
    }
    same(fresh, "span.action-counter", function (mine, theirs) {
      mine.dataset.actionsIcnt = theirs.dataset.actionsIcnt;
      mine.textContent = theirs.textContent;
    });
    same(fresh, "#select-across", function (mine, theirs) { mine.hidden = theirs.hidden; });
    ["#select-across span.all", "#select-across span.question a"].forEach(function (selector) {
      same(fresh, selector, function (mine, theirs) { mine.textContent = theirs.textContent; });
    });
    ["listed_at", "listed_count"].forEach(function (name) {
      same(fresh, "#changelist-form input[name=" + name + "]",
        function (mine, theirs) { mine.value = theirs.value; });
    });
    same(fresh, "#changelist-form .paginator",
      function (mine, theirs) { mine.innerHTML = theirs.innerHTML; });
    note("Updated " + new Date().toLocaleTimeString());
  }
  function refresh() {
    if (busy || document.hidden) { return; }
    if (selected()) { missed = true; return; }
    busy = true;
    missed = false;
    last = Date.now();
    fetch(window.location.href, {credentials: "same-origin"})
      .then(function (r) { return r.ok ? r.text() : Promise.reject(r.status); })
      .then(function (html) {
        if (selected()) { missed = true; return; }
        apply(new DOMParser().parseFromString(html, "text/html"));
      })
      .catch(function () { note("Could not refresh."); })
      .then(function () { busy = false; });
  }
  function changed() {
    if (seconds() === 0 || document.hidden || pending) { return; }
    var wait = last + seconds() * 1000 - Date.now();
    if (wait <= 0) { refresh(); return; }
    pending = setTimeout(function () { pending = null; refresh(); }, wait);
  }
  function schedule() {
    if (poller) { clearInterval(poller); poller = null; }
    if (pending) { clearTimeout(pending); pending = null; }
    var every = seconds();
    if (every > 0 && !document.hidden) {
      poller = setInterval(function () {
        if (!(window.flashqLive && window.flashqLive.open)) { refresh(); }
      }, every * 1000);
    }
  }

  if (select) {
    try {
      var saved = window.localStorage.getItem(KEY);
      if (saved !== null && select.querySelector("option[value='" + saved + "']")) {
        select.value = saved;
      }
    } catch (ignored) { /* no storage (private mode): the default interval */ }
    select.addEventListener("change", function () {
      try { window.localStorage.setItem(KEY, select.value); } catch (ignored) { /* kept for this page */ }
      schedule();
    });
  }
  document.addEventListener("flashq:changed", changed);
  document.addEventListener("change", function (event) {
    // A refresh skipped for a selection is made up once nothing is selected.
    if (missed && event.target.matches("input.action-select, #action-toggle") && !selected()) {
      changed();
    }
  });
  document.addEventListener("visibilitychange", function () {
    if (!document.hidden && seconds() > 0) { refresh(); }
    schedule();
  });
  schedule();
})();
