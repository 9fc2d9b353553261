// secops console: small progressive enhancements (the pages work without them). No inline handlers: CSP.
"use strict";
document.addEventListener("DOMContentLoaded", () => {
  for (const box of document.querySelectorAll("input.select-all")) {
    box.addEventListener("change", () => {
      for (const pick of box.closest("form").querySelectorAll("input.pick")) pick.checked = box.checked;
    });
  }
  for (const form of document.querySelectorAll("form.confirm")) {
    form.addEventListener("submit", (ev) => {
      if (!window.confirm(form.dataset.confirm || "?")) ev.preventDefault();
    });
  }
  for (const sel of document.querySelectorAll("select.autosubmit")) {
    sel.addEventListener("change", () => sel.form.submit());
  }
});
