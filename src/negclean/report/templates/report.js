(function () {
  "use strict";
  var search = document.getElementById("ex-search");
  var filter = document.getElementById("ex-filter");
  var count = document.getElementById("ex-count");
  var examples = Array.prototype.slice.call(document.querySelectorAll("details.example"));
  function matches(ex, f, q) {
    if (f === "fn" && ex.dataset.fn === "0") return false;
    if (f === "none" && ex.dataset.stages.trim() !== "") return false;
    if (f.indexOf("stage:") === 0 && (" " + ex.dataset.stages + " ").indexOf(" " + f.slice(6) + " ") < 0) return false;
    return !q || ex.textContent.toLowerCase().indexOf(q) >= 0;
  }
  function apply() {
    var f = filter.value, q = search.value.trim().toLowerCase(), shown = 0;
    examples.forEach(function (ex) {
      var ok = matches(ex, f, q);
      ex.hidden = !ok;
      if (ok) shown += 1;
    });
    count.textContent = shown + " of " + examples.length + " shown";
  }
  if (search && filter) {
    search.addEventListener("input", apply);
    filter.addEventListener("change", apply);
    apply();
  }
  document.addEventListener("click", function (e) {
    var t = e.target;
    if (t.classList && t.classList.contains("text") && t.tagName === "P") t.classList.toggle("full");
  });
})();
