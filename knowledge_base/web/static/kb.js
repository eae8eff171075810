// 话术库 pages: confirm before retiring, warn before leaving an edited form unsaved.
"use strict";
(function () {
  document.querySelectorAll("button[data-confirm]").forEach((button) => {
    button.addEventListener("click", (event) => {
      if (!window.confirm(button.dataset.confirm)) event.preventDefault();
    });
  });
  const form = document.getElementById("script-form");
  if (form) {
    let dirty = form.querySelector(".invalid") !== null;  // a re-rendered form holds unsaved input
    form.addEventListener("input", () => { dirty = true; });
    form.addEventListener("submit", () => { dirty = false; });
    window.addEventListener("beforeunload", (event) => {
      if (dirty) { event.preventDefault(); event.returnValue = ""; }
    });
    const firstError = form.querySelector(".invalid");
    if (firstError) firstError.focus();
  }
})();
