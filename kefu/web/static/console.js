// kefu console: small helpers shared by every page (no framework, no build step).
"use strict";
window.kefu = (function () {
  const toastEl = () => document.getElementById("toast");
  let toastTimer = null;

  function toast(message, kind) {
    const el = toastEl();
    if (!el) return;
    el.textContent = message;
    el.className = "toast" + (kind === "error" ? " error" : "");
    el.hidden = false;
    clearTimeout(toastTimer);
    toastTimer = setTimeout(() => { el.hidden = true; }, kind === "error" ? 6000 : 2500);
  }

  // JSON API call with the sign-in cookie; throws an Error carrying the service's message.
  async function api(path, options) {
    const opts = Object.assign({ method: "GET", headers: {} }, options || {});
    if (opts.json !== undefined) {
      opts.body = JSON.stringify(opts.json);
      opts.headers["Content-Type"] = "application/json";
      delete opts.json;
    }
    opts.credentials = "same-origin";
    const res = await fetch(path, opts);
    const text = await res.text();
    let data = null;
    try { data = text ? JSON.parse(text) : null; } catch (e) { data = { message: text }; }
    if (!res.ok) {
      const msg = (data && (data.message || data.detail)) || res.statusText;
      const err = new Error(typeof msg === "string" ? msg : JSON.stringify(msg));
      err.status = res.status;
      throw err;
    }
    return data;
  }

  function escapeHtml(s) {
    return String(s == null ? "" : s).replace(/[&<>"']/g, (c) => (
      { "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c]));
  }

  async function copy(text) {
    try {
      await navigator.clipboard.writeText(text);
    } catch (e) {  // clipboard API needs a secure context; fall back to a hidden textarea
      const ta = document.createElement("textarea");
      ta.value = text; document.body.appendChild(ta); ta.select();
      try { document.execCommand("copy"); } finally { ta.remove(); }
    }
  }

  return { toast, api, escapeHtml, copy };
})();
