// The console's only script: keyboard shortcuts. Every view works without it.
// j / k move a row focus, Enter opens the focused row, / focuses the id box, ? shows help,
// Esc closes it. Shortcuts are inert while a text field has focus (WCAG 2.1.4) and can be
// switched off; the choice is kept in localStorage (nothing else is stored).
(function () {
  "use strict";
  var KEY = "sl_ui_keys";
  function enabled() {
    try { return window.localStorage.getItem(KEY) !== "off"; } catch (e) { return true; }
  }
  function setEnabled(on) {
    try { window.localStorage.setItem(KEY, on ? "on" : "off"); } catch (e) { /* private mode */ }
    render();
  }
  function rows() { return Array.prototype.slice.call(document.querySelectorAll("[data-rows] [data-row]")); }
  var current = -1;
  function focusRow(i) {
    var all = rows();
    if (all.length === 0) { return; }
    current = Math.max(0, Math.min(all.length - 1, i));
    all.forEach(function (r, n) { r.classList.toggle("focused", n === current); });
    var link = all[current].querySelector("[data-open]");
    if (link) { link.focus(); }
  }
  function help(show) {
    var box = document.getElementById("keys-help");
    if (box) { box.hidden = !show; if (show) { var b = box.querySelector("[data-help-close]"); if (b) { b.focus(); } } }
  }
  function typing(el) {
    if (!el) { return false; }
    var tag = el.tagName;
    return tag === "INPUT" || tag === "TEXTAREA" || tag === "SELECT" || el.isContentEditable;
  }
  function render() {
    var on = enabled();
    var state = document.querySelector("[data-keys-state]");
    if (state) { state.textContent = on ? "on" : "off"; }
    var toggle = document.querySelector("[data-keys-toggle]");
    if (toggle) { toggle.hidden = false; toggle.setAttribute("aria-pressed", on ? "true" : "false"); }
    var hint = document.querySelector("[data-keys-help]");
    if (hint) { hint.hidden = !on; }
    document.documentElement.setAttribute("data-keys", on ? "on" : "off");
  }
  document.addEventListener("keydown", function (event) {
    if (!enabled() || event.ctrlKey || event.metaKey || event.altKey) { return; }
    if (event.key === "Escape") { help(false); return; }
    if (typing(event.target)) { return; }
    switch (event.key) {
      case "j": focusRow(current + 1); event.preventDefault(); break;
      case "k": focusRow(current - 1); event.preventDefault(); break;
      case "Enter":
        if (current >= 0) {
          var link = rows()[current] && rows()[current].querySelector("[data-open]");
          if (link && document.activeElement !== link) { link.click(); event.preventDefault(); }
        }
        break;
      case "/":
        var search = document.querySelector("[data-search]");
        if (search) { search.focus(); event.preventDefault(); }
        break;
      case "?": help(true); event.preventDefault(); break;
      default: break;
    }
  });
  document.addEventListener("DOMContentLoaded", function () {
    render();
    var toggle = document.querySelector("[data-keys-toggle]");
    if (toggle) { toggle.addEventListener("click", function () { setEnabled(!enabled()); }); }
    var close = document.querySelector("[data-help-close]");
    if (close) { close.addEventListener("click", function () { help(false); }); }
  });
}());
