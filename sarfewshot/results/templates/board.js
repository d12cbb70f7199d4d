"use strict";
// The board's behaviour: sorting, filters, cell details, shot curves, reference choice.
// Record values reach the page only through textContent and setAttribute, never as markup.
(function () {
  var CURVES = JSON.parse(document.getElementById("board-curves").textContent);
  var details = null;  // the largest block: parsed when a first cell is opened
  function detailOf(index) {
    if (details === null) details = JSON.parse(document.getElementById("board-details").textContent);
    return details[index];
  }
  var SVG = "http://www.w3.org/2000/svg";
  var table = document.getElementById("board-table");
  var tbody = table.tBodies[0];
  var sortState = { col: null, dir: 1 };

  function el(tag, text, attrs) {
    var node = document.createElement(tag);
    if (text !== undefined && text !== null) node.textContent = String(text);
    Object.keys(attrs || {}).forEach(function (k) { node.setAttribute(k, attrs[k]); });
    return node;
  }
  function svg(tag, attrs, parent) {
    var node = document.createElementNS(SVG, tag);
    Object.keys(attrs || {}).forEach(function (k) { node.setAttribute(k, attrs[k]); });
    if (parent) parent.appendChild(node);
    return node;
  }
  function fmt(v, d) { return v === null || v === undefined ? "–" : Number(v).toFixed(d); }

  // ------------------------------------------------------------------ sorting
  function cellValue(tr, col) {
    var cell = tr.children[col];
    var v = cell ? cell.getAttribute("data-v") : "";
    return v;
  }
  function compareRows(col, dir) {
    return function (a, b) {
      var va = cellValue(a, col), vb = cellValue(b, col);
      if (col >= 2) {
        // empty cells sort last in either direction
        if (va === "" || vb === "") return (va === "") - (vb === "");
        return dir * (parseFloat(va) - parseFloat(vb)) || (a.dataset.order - b.dataset.order);
      }
      return dir * va.localeCompare(vb) || (a.dataset.order - b.dataset.order);
    };
  }
  function sortBy(th) {
    var col = parseInt(th.getAttribute("data-col"), 10);
    // numbers sort best first, names alphabetically
    var dir = sortState.col === col ? -sortState.dir : (col >= 2 ? -1 : 1);
    sortState = { col: col, dir: dir };
    var rows = Array.prototype.slice.call(tbody.rows);
    rows.sort(compareRows(col, dir));
    rows.forEach(function (tr) { tbody.appendChild(tr); });
    table.querySelectorAll("th[data-col]").forEach(function (h) { h.setAttribute("aria-sort", "none"); });
    th.setAttribute("aria-sort", dir > 0 ? "ascending" : "descending");
  }
  table.querySelectorAll("th[data-col] button.sort").forEach(function (button) {
    button.addEventListener("click", function () { sortBy(button.parentNode); });
  });

  // ------------------------------------------------------------------ filters
  var form = document.getElementById("filters");
  function filterValue(name) { return form.elements[name].value; }
  function applyFilters() {
    var ds = filterValue("dataset"), pr = filterValue("protocol"), k = filterValue("shots"), bb = filterValue("backbone");
    var shown = 0;
    Array.prototype.forEach.call(tbody.rows, function (tr) {
      var hide = (pr && tr.dataset.protocol !== pr) || (bb && tr.dataset.backbone !== bb);
      tr.classList.toggle("hidden", !!hide);
      if (!hide) shown += 1;
    });
    table.querySelectorAll("[data-dataset]").forEach(function (cell) {
      var hide = (ds && cell.dataset.dataset !== ds) || (k && cell.dataset.shots !== undefined && cell.dataset.shots !== k);
      cell.classList.toggle("hidden", !!hide);
    });
    // group headers span only the K columns still shown
    table.querySelectorAll("th.group").forEach(function (g) {
      var sel = "thead th[data-shots][data-dataset=\"" + CSS.escape(g.dataset.dataset) + "\"]";
      if (g.dataset.condition !== undefined) sel += "[data-condition=\"" + CSS.escape(g.dataset.condition) + "\"]";
      var span = Array.prototype.filter.call(table.querySelectorAll(sel), function (h) { return !h.classList.contains("hidden"); }).length;
      g.classList.toggle("hidden", span === 0);
      if (span) g.colSpan = span;
    });
    document.querySelectorAll("#curve-panels figure").forEach(function (f) {
      var hide = (ds && f.dataset.dataset !== ds) || (pr && f.dataset.protocol !== pr);
      f.classList.toggle("hidden", !!hide);
    });
    document.getElementById("visible-count").textContent = shown + " of " + tbody.rows.length + " rows shown";
  }
  form.addEventListener("change", applyFilters);
  form.addEventListener("reset", function () { setTimeout(applyFilters, 0); });

  // ------------------------------------------------------------------ cell detail
  var panel = document.getElementById("detail");
  function fillRows(tbodyNode, rows) {
    tbodyNode.textContent = "";
    rows.forEach(function (cells) {
      var tr = el("tr");
      cells.forEach(function (c, i) { tr.appendChild(el(i === 0 ? "th" : "td", c, i === 0 ? { scope: "row" } : {})); });
      tbodyNode.appendChild(tr);
    });
  }
  function fillConfusion(node, conf) {
    node.textContent = "";
    if (!conf) { node.appendChild(el("caption", "no confusion matrix recorded")); return; }
    var head = el("tr");
    head.appendChild(el("th", "true \\ predicted"));
    conf.classes.forEach(function (c) { head.appendChild(el("th", c, { scope: "col" })); });
    var thead = el("thead"); thead.appendChild(head); node.appendChild(thead);
    var body = el("tbody");
    conf.matrix.forEach(function (line, i) {
      var tr = el("tr");
      tr.appendChild(el("th", conf.classes[i], { scope: "row" }));
      var total = line.reduce(function (s, v) { return s + v; }, 0) || 1;
      line.forEach(function (v) {
        var td = el("td", fmt(v, 1));
        // shade by the row's fraction: darker = more of the true class went there
        var f = v / total;
        td.style.background = "rgba(0, 85, 164, " + (0.75 * f).toFixed(3) + ")";
        if (f > 0.5) td.style.color = "#fff";
        tr.appendChild(td);
      });
      body.appendChild(tr);
    });
    node.appendChild(body);
  }
  var opener = null;  // the cell button that opened the panel gets the focus back
  function closeDetail() {
    panel.hidden = true;
    if (opener) opener.focus();
  }
  function openDetail(index) {
    var d = detailOf(index);
    document.getElementById("detail-title").textContent = d.title;
    fillRows(document.querySelector("#detail-classes tbody"), d.per_class.map(function (c) { return [c.name, fmt(c.acc, 2), c.n]; }));
    fillRows(document.querySelector("#detail-seeds tbody"), d.seeds.map(function (s) { return [s.seed, fmt(s.acc, 2), s.split || "–"]; }));
    fillConfusion(document.getElementById("detail-confusion"), d.confusion);
    panel.hidden = false;
    panel.focus();
  }
  tbody.addEventListener("click", function (ev) {
    var button = ev.target.closest("button.cell");
    if (!button) return;
    opener = button;
    openDetail(parseInt(button.getAttribute("data-detail"), 10));
  });
  document.getElementById("detail-close").addEventListener("click", closeDetail);
  panel.addEventListener("keydown", function (ev) { if (ev.key === "Escape") closeDetail(); });

  // ------------------------------------------------------------------ shot curves
  // Okabe-Ito: told apart by colour-blind readers; dashes and markers keep lines apart in greyscale.
  var COLORS = ["#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000", "#F0E442"];
  var DASHES = ["", "6 3", "2 3", "8 3 2 3", "1 2", "10 4"];
  var MARKERS = ["circle", "square", "triangle", "diamond", "cross", "down"];
  var labels = [];
  CURVES.forEach(function (p) { p.series.forEach(function (s) { if (labels.indexOf(s.label) < 0) labels.push(s.label); }); });
  labels.sort();
  function style(label) {
    var i = labels.indexOf(label);
    return { color: COLORS[i % COLORS.length], dash: DASHES[i % DASHES.length], marker: MARKERS[i % MARKERS.length] };
  }
  function marker(g, kind, x, y, color) {
    var r = 4;
    var common = { fill: color, stroke: "#fff", "stroke-width": 1 };
    var pts;
    if (kind === "circle") return svg("circle", Object.assign({ cx: x, cy: y, r: r }, common), g);
    if (kind === "square") return svg("rect", Object.assign({ x: x - r, y: y - r, width: 2 * r, height: 2 * r }, common), g);
    if (kind === "triangle") pts = [[x, y - r - 1], [x + r + 1, y + r], [x - r - 1, y + r]];
    else if (kind === "down") pts = [[x, y + r + 1], [x + r + 1, y - r], [x - r - 1, y - r]];
    else if (kind === "diamond") pts = [[x, y - r - 1], [x + r + 1, y], [x, y + r + 1], [x - r - 1, y]];
    else return svg("path", { d: "M" + (x - r) + " " + (y - r) + "L" + (x + r) + " " + (y + r) + "M" + (x - r) + " " + (y + r) + "L" + (x + r) + " " + (y - r), stroke: color, "stroke-width": 2.5 }, g);
    return svg("polygon", Object.assign({ points: pts.map(function (p) { return p.join(","); }).join(" ") }, common), g);
  }
  function sample(label) {
    var st = style(label);
    var s = svg("svg", { width: 34, height: 12, "aria-hidden": "true" });
    svg("line", { x1: 1, y1: 6, x2: 33, y2: 6, stroke: st.color, "stroke-width": 2, "stroke-dasharray": st.dash }, s);
    marker(s, st.marker, 17, 6, st.color);
    return s;
  }
  function drawPanel(p) {
    var W = 360, H = 230, L = 44, R = 10, T = 10, B = 34;
    var ks = [], lo = 100, hi = 0;
    p.series.forEach(function (s) { s.points.forEach(function (pt) {
      if (ks.indexOf(pt.k) < 0) ks.push(pt.k);
      lo = Math.min(lo, pt.low === null ? pt.mean : pt.low);
      hi = Math.max(hi, pt.high === null ? pt.mean : pt.high);
    }); });
    ks.sort(function (a, b) { return a - b; });
    lo = Math.max(0, Math.floor(lo / 10) * 10); hi = Math.min(100, Math.ceil(hi / 10) * 10);
    if (hi - lo < 10) { lo = Math.max(0, hi - 10); hi = lo + 10; }
    var x = function (k) { return ks.length === 1 ? (L + W - R) / 2 : L + (W - L - R) * ks.indexOf(k) / (ks.length - 1); };
    var y = function (v) { return T + (H - T - B) * (hi - v) / (hi - lo); };
    var fig = el("figure", null, { "data-dataset": p.dataset, "data-protocol": p.protocol });
    var title = p.dataset + " · " + p.protocol + (p.condition !== "in-distribution" ? " · " + p.condition : "");
    fig.appendChild(el("figcaption", title));
    var s = svg("svg", { viewBox: "0 0 " + W + " " + H, width: "100%", role: "img", "aria-label": "accuracy against K: " + title });
    var step = (hi - lo) > 40 ? 20 : 10;
    for (var v = lo; v <= hi + 1e-9; v += step) {
      svg("line", { x1: L, x2: W - R, y1: y(v), y2: y(v), stroke: "#e2e2e2" }, s);
      svg("text", { x: L - 6, y: y(v) + 4, "text-anchor": "end" }, s).textContent = v;
    }
    ks.forEach(function (k) { svg("text", { x: x(k), y: H - B + 16, "text-anchor": "middle" }, s).textContent = k; });
    svg("text", { x: (L + W - R) / 2, y: H - 4, "text-anchor": "middle" }, s).textContent = "shots per class (K)";
    svg("text", { x: 12, y: (T + H - B) / 2, "text-anchor": "middle", transform: "rotate(-90 12 " + (T + H - B) / 2 + ")" }, s).textContent = "accuracy (%)";
    p.series.forEach(function (ser) {
      var st = style(ser.label), pts = ser.points.slice().sort(function (a, b) { return a.k - b.k; });
      var band = pts.filter(function (pt) { return pt.low !== null; });
      if (band.length > 1) {
        var poly = band.map(function (pt) { return x(pt.k) + "," + y(pt.high); })
          .concat(band.slice().reverse().map(function (pt) { return x(pt.k) + "," + y(pt.low); }));
        svg("polygon", { points: poly.join(" "), fill: st.color, "fill-opacity": 0.14, stroke: "none" }, s);
      }
      var d = pts.map(function (pt, i) { return (i ? "L" : "M") + x(pt.k) + " " + y(pt.mean); }).join("");
      svg("path", { d: d, fill: "none", stroke: st.color, "stroke-width": 2, "stroke-dasharray": st.dash }, s);
      pts.forEach(function (pt) {
        var m = marker(s, st.marker, x(pt.k), y(pt.mean), st.color);
        svg("title", {}, m).textContent = ser.label + " K=" + pt.k + ": " + fmt(pt.mean, 2) + (pt.low === null ? "" : " [" + fmt(pt.low, 2) + ", " + fmt(pt.high, 2) + "]") + " (n=" + pt.n + ")";
      });
    });
    fig.appendChild(s);
    var legend = el("ul", null, { class: "legend" });
    p.series.forEach(function (ser) { var li = el("li"); li.appendChild(sample(ser.label)); li.appendChild(el("span", ser.label)); legend.appendChild(li); });
    fig.appendChild(legend);
    return fig;
  }
  var panels = document.getElementById("curve-panels");
  function drawCurves() {
    CURVES.forEach(function (p) { panels.appendChild(drawPanel(p)); });
    applyFilters();
  }

  // ------------------------------------------------------------------ comparisons
  var ref = document.getElementById("reference");
  if (ref) ref.addEventListener("change", function () {
    document.querySelectorAll("div.cmp").forEach(function (div) { div.hidden = div.dataset.reference !== ref.value; });
  });

  applyFilters();
  // the table paints first; the curves follow in the next frame
  requestAnimationFrame(function () { setTimeout(drawCurves, 0); });
})();
