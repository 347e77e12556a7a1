/* The dashboard's charts (uPlot, served from our own static files): jobs pushed,
   completed, failed and retried per point, and the run-time p50/p95, over 1 h, 24 h or
   7 d, from admin/charts.json (the per-minute rollup). Axis, grid and legend colours
   are read from the admin's CSS variables and the charts are drawn again when the theme
   changes (the admin's toggle sets data-theme on <html>) or their box is resized. The
   chosen range is remembered (localStorage). dashboard.js calls refresh(). */
(function () {
  "use strict";
  var box = document.getElementById("charts");
  if (!box || !window.uPlot) { return; }
  var KEY = "flashq:chart-range";
  var url = box.dataset.url, queue = box.dataset.queueId;
  var counts = document.getElementById("chart-counts");
  var runtime = document.getElementById("chart-runtime");
  var buttons = box.querySelectorAll("button[data-range]");
  var charts = [], data = null, pending = false, last = 0, timer = null;
  var api = window.flashqCharts = {drawn: 0, data: null, range: "1h", refresh: refresh};
  // Hues that read on the light and the dark theme alike.
  var COUNT_SERIES = [
    ["pushed", "#3b82c4"], ["completed", "#2e9d57"], ["failed", "#d9443f"], ["retried", "#d98e1f"]
  ];
  var RUNTIME_SERIES = [["p50_ms", "p50 (ms)", "#8e6bd1"], ["p95_ms", "p95 (ms)", "#cf3f8a"]];

  function css(name, fallback) {
    var value = getComputedStyle(document.documentElement).getPropertyValue(name).trim();
    return value || fallback;
  }
  function stored() {
    try { return window.localStorage.getItem(KEY); } catch (ignored) { return null; }
  }
  function store(value) {
    try { window.localStorage.setItem(KEY, value); } catch (ignored) { /* private mode */ }
  }
  function axes(unit) {
    var fg = css("--body-fg", "#333"), grid = css("--hairline-color", "#e8e8e8");
    var axis = {stroke: fg, grid: {stroke: grid, width: 1}, ticks: {stroke: grid, width: 1}};
    var y = Object.assign({}, axis, {size: 60});
    if (unit) { y.values = function (u, splits) { return splits.map(function (v) { return v + " " + unit; }); }; }
    return [axis, y];
  }
  function options(title, series, unit, width) {
    return {
      title: title, width: width, height: 220, axes: axes(unit),
      scales: {x: {time: true}}, cursor: {drag: {x: false, y: false}},
      // In UTC, as the rest of the admin; the legend's time with its seconds.
      tzDate: function (ts) { return window.uPlot.tzDate(new Date(ts * 1000), "Etc/UTC"); },
      series: [{label: "time (UTC)", value: utc}].concat(series.map(function (s) {
        return {label: s.label, stroke: s.color, width: 2, spanGaps: false, points: {size: 4}};
      })),
    };
  }
  function utc(u, ts) {
    return ts === null || ts === undefined ? "--" : new Date(ts * 1000).toISOString().slice(0, 19).replace("T", " ");
  }
  function draw() {
    charts.forEach(function (chart) { chart.destroy(); });
    charts = [];
    if (!data) { return; }
    var width = Math.max(240, box.clientWidth);
    var countSeries = COUNT_SERIES.map(function (s) { return {label: s[0], color: s[1]}; });
    var timeSeries = RUNTIME_SERIES.map(function (s) { return {label: s[1], color: s[2]}; });
    charts.push(new window.uPlot(
      options("Jobs per " + stepName(data.step), countSeries, "", width),
      [data.t].concat(COUNT_SERIES.map(function (s) { return data[s[0]]; })), counts));
    charts.push(new window.uPlot(
      options("Run time of completed jobs", timeSeries, "ms", width),
      [data.t].concat(RUNTIME_SERIES.map(function (s) { return data[s[0]]; })), runtime));
    api.drawn += 1;
  }
  function stepName(step) {
    return step >= 3600 ? "hour" : step >= 60 && step % 60 === 0 && step > 60 ? (step / 60) + " min" : "minute";
  }
  function press(range) {
    api.range = range;
    Array.prototype.forEach.call(buttons, function (b) {
      b.setAttribute("aria-pressed", b.dataset.range === range ? "true" : "false");
    });
  }
  function load() {
    pending = false; last = Date.now();
    var query = "?range=" + encodeURIComponent(api.range) + (queue ? "&queue=" + encodeURIComponent(queue) : "");
    fetch(url + query, {credentials: "same-origin"})
      .then(function (r) { return r.ok ? r.json() : Promise.reject(r.status); })
      .then(function (body) { data = api.data = body; draw(); })
      .catch(function () { /* the table's note says when a refresh fails */ });
  }
  // At most one load every 2 s, however often the stream reports changes.
  function refresh() {
    if (document.hidden || pending) { return; }
    var wait = Math.max(0, 2000 - (Date.now() - last));
    pending = true;
    setTimeout(load, wait);
  }
  Array.prototype.forEach.call(buttons, function (b) {
    b.addEventListener("click", function () { press(b.dataset.range); store(b.dataset.range); load(); });
  });
  new MutationObserver(draw).observe(document.documentElement, {attributes: true, attributeFilter: ["data-theme"]});
  if (window.matchMedia) {
    var dark = window.matchMedia("(prefers-color-scheme: dark)");
    if (dark.addEventListener) { dark.addEventListener("change", draw); }
  }
  var width = box.clientWidth;
  function resized() {
    if (box.clientWidth === width) { return; }
    width = box.clientWidth;
    if (timer) { clearTimeout(timer); }
    timer = setTimeout(draw, 100);
  }
  if (window.ResizeObserver) { new ResizeObserver(resized).observe(box); }
  window.addEventListener("resize", resized);
  var saved = stored();
  press(saved && box.querySelector('button[data-range="' + saved + '"]') ? saved : "1h");
  load();
})();
