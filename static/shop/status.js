// Keep an order page true without a manual reload: pushed updates (Server-Sent Events) while
// the server has a stream slot free, and a short poll every three seconds (paused in a hidden
// tab) either way. The server holds only a few streams per process and answers the rest at
// once, so hundreds of open pages cost no web thread each. When the page no longer matches
// the order, the server renders it again (it decides what to show); a payment page whose
// order is paid goes to the receipt.
(function () {
  "use strict";
  var box = document.getElementById("order-status");
  if (!box || document.querySelector("a[data-autoforward]")) { return; }
  var shownKey = box.dataset.key;
  var resultUrl = box.dataset.resultUrl;
  var text = box.querySelector(".state-text");
  var source = null;
  var timer = null;
  var leaving = false;

  function stop() {
    leaving = true;
    if (source) { source.close(); }
    if (timer) { window.clearInterval(timer); }
  }

  function apply(state) {
    if (leaving || !state || !state.key) { return; }
    if (text && state.text && text.textContent !== state.text) {
      text.textContent = state.text;  // announced through the aria-live region
      box.className = "state state-" + state.state;
    }
    if (state.key === shownKey) { return; }
    stop();
    if (state.state === "paid" && resultUrl) {
      window.location.assign(resultUrl);
    } else {
      window.location.reload();
    }
  }

  function poll() {
    if (leaving || document.visibilityState === "hidden") { return; }
    fetch(box.dataset.statusUrl, { credentials: "same-origin", cache: "no-store", headers: { Accept: "application/json" } })
      .then(function (response) { return response.ok ? response.json() : null; })
      .then(apply)
      .catch(function () { /* offline for a moment: the next poll tries again */ });
  }

  // The shopper is submitting a form (pay, check now, cancel): let that navigation win.
  document.addEventListener("submit", function (event) { if (!event.defaultPrevented) { stop(); } });
  window.addEventListener("pagehide", stop);
  document.addEventListener("visibilitychange", function () {
    if (document.visibilityState === "visible") { poll(); }
  });

  if (window.EventSource) {
    source = new EventSource(box.dataset.eventsUrl);
    source.addEventListener("status", function (event) {
      try { apply(JSON.parse(event.data)); } catch (error) { /* ignore a malformed event */ }
    });
  }
  timer = window.setInterval(poll, 3000);
  poll();
})();
