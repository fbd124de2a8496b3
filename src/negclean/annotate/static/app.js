// negclean annotate: label a sample of judged candidates. Every label is POSTed at once; a label that could not be
// sent waits in localStorage and is retried, so neither a closed tab nor a server restart loses it.
(function () {
  "use strict";
  var LABELS = { relevant: "relevant", not_relevant: "not relevant", unsure: "unsure" };
  var KEYS = { r: "relevant", "1": "relevant", n: "not_relevant", "2": "not_relevant", u: "unsure", "3": "unsure" };
  var state = { items: [], labels: {}, idx: 0, annotator: localStorage.getItem("negclean.annotator") || "" };
  var $ = function (id) { return document.getElementById(id); };

  function api(path, opts) {
    return fetch(path, opts).then(function (r) {
      return r.json().then(function (body) {
        if (!r.ok) throw new Error(body.error || ("HTTP " + r.status));
        return body;
      });
    });
  }

  // ---- pending labels (survive a closed tab) --------------------------------------------------------------
  function pending() { try { return JSON.parse(localStorage.getItem("negclean.pending") || "[]"); } catch (e) { return []; } }
  function setPending(list) { localStorage.setItem("negclean.pending", JSON.stringify(list)); }
  var flushing = false;
  function flush() {
    var queue = pending();
    if (flushing || !queue.length) return Promise.resolve();
    flushing = true;
    var first = queue[0];
    return api("/api/labels", { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(first) })
      .then(function () {
        setPending(pending().slice(1));
        flushing = false;
        if (first.annotator === state.annotator) {
          status("saved: item " + (indexOf(first.item) + 1) + " → " + LABELS[first.label], false);
          setProgress();
        }
        return flush();
      })
      .catch(function (err) {
        flushing = false;
        if (/no item|annotator name|label must/.test(err.message)) {  // the server will never take it: drop it
          setPending(pending().slice(1));
          status("not saved: " + err.message, true);
          return flush();
        }
        status(pending().length + " label(s) not saved yet (" + err.message + "); retrying…", true);
      });
  }
  setInterval(flush, 3000);

  // ---- rendering -------------------------------------------------------------------------------------------
  function status(text, bad) { var s = $("status"); s.textContent = text; s.className = "status" + (bad ? " bad" : ""); }
  function indexOf(id) { for (var i = 0; i < state.items.length; i++) if (state.items[i].id === id) return i; return -1; }
  function labeledCount() { return state.items.filter(function (it) { return state.labels[it.id]; }).length; }
  function setProgress() { $("progress").textContent = labeledCount() + " / " + state.items.length + " labeled"; }

  function renderStrip() {
    var strip = $("strip");
    if (strip.children.length !== state.items.length) {
      strip.textContent = "";
      state.items.forEach(function (it, i) {
        var b = document.createElement("button");
        b.className = "dot"; b.title = "item " + (i + 1); b.dataset.item = it.id;
        b.addEventListener("click", function () { go(i); });
        strip.appendChild(b);
      });
    }
    Array.prototype.forEach.call(strip.children, function (b, i) {
      var lab = state.labels[state.items[i].id];
      if (lab) b.dataset.label = lab; else delete b.dataset.label;
      b.classList.toggle("current", i === state.idx);
    });
  }

  function render() {
    var it = state.items[state.idx];
    if (!it) return;
    var lab = state.labels[it.id];
    $("item-counter").textContent = "Item " + (state.idx + 1) + " of " + state.items.length;
    var st = $("item-state");
    st.textContent = lab ? "labeled: " + LABELS[lab] : "not labeled yet";
    st.className = "state " + (lab || "");
    $("query").textContent = it.query;
    var pos = $("positives");
    pos.textContent = "";
    it.positives.forEach(function (p) {
      var el = document.createElement("p");
      el.textContent = (p.title ? p.title + " — " : "") + p.text;
      pos.appendChild(el);
    });
    $("pos-count").textContent = it.positives.length > 1 ? " (" + it.positives.length + ")" : "";
    $("cand-title").textContent = it.title || "";
    $("candidate").textContent = it.text;
    document.querySelectorAll(".choice").forEach(function (b) { b.classList.toggle("chosen", b.dataset.label === lab); });
    history.replaceState(null, "", "#item=" + it.id);
    renderStrip();
    setProgress();
  }

  function go(i) { state.idx = Math.max(0, Math.min(state.items.length - 1, i)); render(); }
  function nextUnlabeled() {
    for (var k = 1; k <= state.items.length; k++) {
      var j = (state.idx + k) % state.items.length;
      if (!state.labels[state.items[j].id]) return j;
    }
    return -1;
  }

  function choose(label) {
    var it = state.items[state.idx];
    state.labels[it.id] = label;
    setPending(pending().concat([{ annotator: state.annotator, item: it.id, label: label }]));
    status("saving…", false);
    flush();
    var j = nextUnlabeled();
    if (j >= 0) go(j); else { render(); status("all " + state.items.length + " items labeled — thank you", false); }
  }

  // ---- views -----------------------------------------------------------------------------------------------
  function show(view) {
    $("label-view").hidden = view !== "label";
    $("agreement-view").hidden = view !== "agreement";
    $("name-form").hidden = view !== "name";
    $("tab-label").classList.toggle("active", view === "label");
    $("tab-agreement").classList.toggle("active", view === "agreement");
    if (view === "agreement") loadAgreement();
    if (view === "name") { $("annotator-name").value = state.annotator; $("annotator-name").focus(); }
  }

  function kappaCell(k) {
    var td = document.createElement("td");
    td.className = "k";
    td.dataset.a = k.a; td.dataset.b = k.b;
    td.title = k.note || ("observed agreement " + (k.observed == null ? "–" : (100 * k.observed).toFixed(1) + "%"));
    td.innerHTML = "";
    var v = document.createElement("span");
    v.className = "kappa";
    v.textContent = k.kappa == null ? "–" : k.kappa.toFixed(3);
    var n = document.createElement("span");
    n.className = "n"; n.textContent = "(n=" + k.n + ")";
    td.appendChild(v); td.appendChild(n);
    return td;
  }

  function table(headers, rows) {
    var t = document.createElement("table"), tr = document.createElement("tr");
    headers.forEach(function (h, i) { var th = document.createElement("th"); th.textContent = h; if (i) th.className = "k"; tr.appendChild(th); });
    var thead = document.createElement("thead"); thead.appendChild(tr); t.appendChild(thead);
    var tb = document.createElement("tbody");
    rows.forEach(function (cells) {
      var r = document.createElement("tr");
      cells.forEach(function (c) {
        if (c instanceof HTMLElement) r.appendChild(c);
        else { var td = document.createElement("td"); td.textContent = c; if (r.children.length) td.className = "k"; r.appendChild(td); }
      });
      tb.appendChild(r);
    });
    t.appendChild(tb);
    return t;
  }

  function loadAgreement() {
    api("/api/agreement").then(function (a) {
      var raters = a.annotators.slice();
      if (raters.length > 1) raters.push("consensus");
      var box = $("agreement-judges");
      box.textContent = "";
      if (!raters.length) { box.textContent = "No labels yet."; }
      else {
        var rows = a.stages.concat(["cascade"]).map(function (judge) {
          return [judge].concat(raters.map(function (r) {
            var k = a.judges.filter(function (x) { return x.a === judge && x.b === r; })[0];
            return kappaCell(k);
          }));
        });
        box.appendChild(table(["judge"].concat(raters), rows));
      }
      var pairs = $("agreement-annotators");
      pairs.textContent = "";
      if (!a.between_annotators.length) pairs.textContent = "Needs two annotators.";
      else pairs.appendChild(table(["annotators", "kappa"], a.between_annotators.map(function (k) {
        return [k.a + " / " + k.b, kappaCell(k)];
      })));
      var strata = $("agreement-strata");
      strata.textContent = "";
      strata.appendChild(table(["stratum (last stage: its verdict)", "candidates in run", "in sample"],
        a.strata.map(function (s) { return [s.stratum, String(s.candidates), String(s.sampled)]; })));
    }).catch(function (e) { $("agreement-judges").textContent = "Could not load agreement: " + e.message; });
  }

  function loadItems() {
    return api("/api/items?annotator=" + encodeURIComponent(state.annotator)).then(function (d) {
      state.items = d.items;
      state.labels = d.labels;
      pending().forEach(function (p) { if (p.annotator === state.annotator) state.labels[p.item] = p.label; });
      var m = /#item=([0-9a-f]+)/.exec(location.hash), i = m ? indexOf(m[1]) : -1;
      if (i < 0) { state.idx = 0; i = state.labels[state.items[0].id] ? nextUnlabeled() : 0; }
      go(i < 0 ? 0 : i);
      $("annotator-shown").textContent = state.annotator;
      $("qrels-mine").href = "/api/qrels?annotator=" + encodeURIComponent(state.annotator);
      show("label");
    });
  }

  // ---- events ----------------------------------------------------------------------------------------------
  $("name-form").addEventListener("submit", function (e) {
    e.preventDefault();
    var name = $("annotator-name").value.trim();
    if (!name) return;
    state.annotator = name;
    localStorage.setItem("negclean.annotator", name);
    $("name-error").hidden = true;
    loadItems().catch(function (err) { $("name-error").textContent = err.message; $("name-error").hidden = false; show("name"); });
  });
  $("change-name").addEventListener("click", function () { show("name"); });
  $("tab-label").addEventListener("click", function () { show(state.annotator ? "label" : "name"); });
  $("tab-agreement").addEventListener("click", function () { show("agreement"); });
  $("prev").addEventListener("click", function () { go(state.idx - 1); });
  $("next").addEventListener("click", function () { go(state.idx + 1); });
  document.querySelectorAll(".choice").forEach(function (b) { b.addEventListener("click", function () { choose(b.dataset.label); }); });
  document.addEventListener("keydown", function (e) {
    if ($("label-view").hidden || e.ctrlKey || e.metaKey || e.altKey) return;
    var tag = (e.target.tagName || "").toLowerCase();
    if (tag === "input" || tag === "textarea" || tag === "select") return;
    var key = e.key.toLowerCase();
    if (KEYS[key]) { e.preventDefault(); choose(KEYS[key]); }
    else if (key === "arrowleft" || key === "k") { e.preventDefault(); go(state.idx - 1); }
    else if (key === "arrowright" || key === "j") { e.preventDefault(); go(state.idx + 1); }
    else if (key === " ") { e.preventDefault(); var j = nextUnlabeled(); if (j >= 0) go(j); }
  });

  api("/api/session").then(function (s) {
    $("run-name").textContent = s.run + " · " + s.items + " items";
    document.title = "negclean annotate · " + s.run;
    flush();
    if (state.annotator) return loadItems().catch(function () { show("name"); });
    show("name");
  }).catch(function (e) { $("fatal").textContent = "Cannot reach the annotation server: " + e.message; $("fatal").hidden = false; });
})();
