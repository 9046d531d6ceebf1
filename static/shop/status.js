// Keep the page true without reloading: pushed updates (SSE) and a slow poll as a fallback.
(function () {
  var box = document.getElementById("order-status");
  if (!box) { return; }
  var statusUrl = box.dataset.statusUrl, resultUrl = box.dataset.resultUrl;
  var shown = null;
  function apply(state) {
    var key = state.status + (state.confirming ? "+c" : "") + state.refunds.length;
    if (key === shown) { return; }
    if (shown !== null) { window.location.reload(); return; }
    shown = key;
    if (state.paid && resultUrl) { window.location.assign(resultUrl); }
  }
  function poll() {
    fetch(statusUrl, { credentials: "same-origin", cache: "no-store" })
      .then(function (r) { return r.ok ? r.json() : null; })
      .then(function (s) { if (s) { apply(s); } })
      .catch(function () {});
  }
  if (window.EventSource) {
    var source = new EventSource(box.dataset.eventsUrl);
    source.addEventListener("status", function (e) { apply(JSON.parse(e.data)); });
  }
  poll();
  setInterval(poll, 3000);
})();
