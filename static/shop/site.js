// Page behaviour for every page. External on purpose: the CSP allows no inline script.
(function () {
  "use strict";

  // A page restored from the back/forward cache would show an order as it was, not as it is
  // (seed 002: check before showing a payment page again). Fetch it anew instead.
  window.addEventListener("pageshow", function (event) {
    if (event.persisted) { window.location.reload(); }
  });

  // A form is sent once: a double click or a second Enter is one request.
  document.querySelectorAll("form[data-once]").forEach(function (form) {
    form.addEventListener("submit", function (event) {
      if (form.dataset.sent) { event.preventDefault(); return; }
      form.dataset.sent = "1";
      form.querySelectorAll("button[type=submit]").forEach(function (button) {
        button.disabled = true;
        button.setAttribute("aria-busy", "true");
      });
    });
  });

  // The question that needs an answer first gets the focus (and the screen reader's attention).
  var first = document.querySelector("[data-autofocus]");
  if (first) { first.focus(); }

  // "Pay another way" is folded while a payment is open; a link to it unfolds it.
  document.querySelectorAll("a[href='#pay-another']").forEach(function (link) {
    link.addEventListener("click", function () {
      var target = document.getElementById("pay-another");
      if (target && target.tagName === "DETAILS") { target.open = true; }
    });
  });

  // Right after the shopper chose to pay in this browser, go on to the gateway in this window
  // (no new window; the gateway brings them back). Coming back here does not forward again.
  var forward = document.querySelector("a[data-autoforward]");
  if (forward) { window.location.assign(forward.href); }
})();
