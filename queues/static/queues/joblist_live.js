/* The job list, live: when the event stream (live.js) reports a change, the page's
   rows are fetched again and swapped in, unless a row is selected for an action (the
   selection would be lost); "Updated ..." under the table says when. */
(function () {
  "use strict";
  var busy = false;
  function selected() {
    return document.querySelector("#result_list input.action-select:checked") !== null;
  }
  function note(text) {
    var where = document.getElementById("joblist-updated");
    if (!where) {
      var table = document.getElementById("result_list");
      if (!table) { return; }
      where = document.createElement("p");
      where.id = "joblist-updated";
      where.className = "help";
      table.parentNode.appendChild(where);
    }
    where.textContent = text;
  }
  function swap() {
    var rows = document.querySelector("#result_list tbody");
    if (busy || !rows || selected()) { return; }
    busy = true;
    fetch(window.location.href, {credentials: "same-origin"})
      .then(function (r) { return r.ok ? r.text() : Promise.reject(r.status); })
      .then(function (html) {
        var fresh = new DOMParser().parseFromString(html, "text/html")
          .querySelector("#result_list tbody");
        if (fresh && !selected()) {
          rows.replaceWith(document.importNode(fresh, true));
          note("Updated " + new Date().toLocaleTimeString());
        }
      })
      .catch(function () { note("Could not refresh."); })
      .then(function () { busy = false; });
  }
  document.addEventListener("flashq:changed", swap);
})();
