// pyhbb web console: live online dots, without reloading the page (progressive
// enhancement: without JavaScript the page shows the state at render time).
// Every element with data-online-id is refreshed from /devices/online.json every
// REFRESH_MS while the tab is visible; only the IDs on the page are asked for.
"use strict";
(function () {
  var REFRESH_MS = 5000;
  var dots = document.querySelectorAll("[data-online-id]");
  var status = document.getElementById("live-status");
  if (!dots.length || !window.fetch) { return; }
  var ids = [];
  dots.forEach(function (el) {
    var id = el.getAttribute("data-online-id");
    if (ids.indexOf(id) < 0) { ids.push(id); }
  });
  var query = ids.map(function (id) { return "id=" + encodeURIComponent(id); }).join("&");

  function show(states) {
    dots.forEach(function (el) {
      var id = el.getAttribute("data-online-id");
      var state = states === null ? "unknown" : (states[id] ? "on" : "off");
      el.className = "dot " + state;
      el.setAttribute("aria-label", state === "on" ? "online" : state === "off" ? "offline"
        : "online state unknown");
    });
    if (status) {
      status.textContent = states === null
        ? "hbbs did not answer: online state unknown (retrying)."
        : "Online state live from hbbs, updated " + new Date().toLocaleTimeString() + ".";
    }
  }

  function refresh() {
    if (document.visibilityState === "hidden") { return; }
    fetch("/devices/online.json?" + query, {credentials: "same-origin",
      headers: {"Accept": "application/json"}})
      .then(function (r) { return r.ok ? r.json() : Promise.reject(r.status); })
      .then(function (body) { show(body.online); })
      .catch(function () { show(null); });
  }

  setInterval(refresh, REFRESH_MS);
  document.addEventListener("visibilitychange", refresh);
})();
