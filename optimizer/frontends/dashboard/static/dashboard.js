// The dashboard's charts. Data comes from the page's JSON block (never from HTML strings), every label
// in it was escaped by the server, and links are built from numeric ids only.
(function () {
  "use strict";
  const data = JSON.parse(document.getElementById("page-data").textContent || "{}");
  const CONFIG = {displaylogo: false, responsive: true};
  const SPLIT_STYLE = {
    train: {name: "racing estimate (train)", color: "#9aa5b1", symbol: "circle-open"},
    val: {name: "validation score", color: "#1d5fd1", symbol: "circle"},
    test: {name: "test score", color: "#d1761d", symbol: "diamond"},
  };
  const AXIS_TITLE = {calls: "LLM calls paid so far", s: "seconds since the start", usd: "dollars spent so far"};
  let axis = "calls";

  function goTo(id) {
    if (data.links && Number.isInteger(id)) { window.location.href = "/candidates/" + id; }
  }

  function onClick(div) {
    div.on("plotly_click", (event) => {
      const point = event.points && event.points[0];
      if (point && point.customdata !== undefined) { goTo(Number(point.customdata)); }
    });
  }

  function timeline(live) {
    const div = document.getElementById("timeline");
    if (!div) { return; }
    const t = live.timeline, traces = [];
    for (const split of ["train", "val", "test"]) {
      const s = t.splits[split];
      if (!s) { continue; }
      const style = SPLIT_STYLE[split];
      traces.push({type: "scatter", mode: "markers", name: style.name, x: s[axis], y: s.mean, text: s.text,
        customdata: s.id, hovertemplate: "%{text}<extra></extra>",
        marker: {color: style.color, symbol: style.symbol,
                 size: s.n.map((n) => Math.max(5, Math.min(16, 4 + 2 * Math.sqrt(n)))), opacity: 0.75}});
    }
    if (t.best.best.length) {
      traces.push({type: "scatter", mode: "lines", name: "best validation so far", x: t.best[axis], y: t.best.best,
        text: t.best.text, hovertemplate: "%{text}<extra></extra>", line: {shape: "hv", color: "#11632a", width: 3}});
    }
    const proposals = t.proposals[axis];
    traces.push({type: "histogram", name: "proposals", x: proposals, yaxis: "y2", opacity: 0.25,
      marker: {color: "#7a4d00"}, nbinsx: Math.min(60, Math.max(5, proposals.length)), hoverinfo: "x+y"});
    const layout = {margin: {t: 20, r: 60, b: 50, l: 60}, legend: {orientation: "h", y: -0.2},
      xaxis: {title: {text: AXIS_TITLE[axis]}, rangemode: "tozero"},
      yaxis: {title: {text: "score"}, range: [-0.02, 1.02]},
      yaxis2: {title: {text: "proposals"}, overlaying: "y", side: "right", showgrid: false, rangemode: "tozero"}};
    Plotly.react(div, traces, layout, CONFIG);
    if (!div.dataset.bound) { onClick(div); div.dataset.bound = "1"; }
    const free = !(t.usd_total > 0);
    const usd = document.getElementById("axis-usd");
    if (usd) { usd.disabled = free; }
    const note = document.getElementById("usd-note");
    if (note) { note.textContent = free ? "(nothing was paid in dollars: a free endpoint, so there is no dollar axis)" : ""; }
    document.querySelectorAll("#axis-buttons button").forEach((b) => b.classList.toggle("active", b.dataset.axis === axis));
  }

  function strategies(live) {
    const div = document.getElementById("strategies");
    if (!div) { return; }
    const traces = Object.entries(live.strategies).map(([name, values]) => ({
      type: "box", name: name, y: values, boxpoints: "all", jitter: 0.4, pointpos: 0}));
    Plotly.react(div, traces, {margin: {t: 20, r: 20, b: 60, l: 60}, showlegend: false,
      yaxis: {title: {text: "validation score"}, range: [-0.02, 1.02]}}, CONFIG);
  }

  function pareto(live) {
    const div = document.getElementById("pareto");
    if (!div) { return; }
    const p = live.pareto;
    Plotly.react(div, [{type: "scatter", mode: "markers", x: p.tokens, y: p.mean, text: p.text, customdata: p.id,
      hovertemplate: "%{text}<extra></extra>",
      marker: {size: p.front.map((f) => (f ? 13 : 7)), color: p.front.map((f) => (f ? "#d1761d" : "#1d5fd1")),
               line: {width: 1, color: "#1d2430"}}}],
      {margin: {t: 20, r: 20, b: 50, l: 60}, xaxis: {title: {text: "tokens per example"}},
       yaxis: {title: {text: "validation score"}, range: [-0.02, 1.02]}}, CONFIG);
    if (!div.dataset.bound) { onClick(div); div.dataset.bound = "1"; }
  }

  function network(id, drawing, colours, sizes) {
    const div = document.getElementById(id);
    if (!div || !drawing) { return; }
    const ex = [], ey = [];
    for (const [x0, y0, x1, y1] of drawing.edges) { ex.push(x0, x1, null); ey.push(y0, y1, null); }
    const traces = [
      {type: "scatter", mode: "lines", x: ex, y: ey, hoverinfo: "skip", line: {color: "#9aa5b1", width: 1.5}},
      {type: "scatter", mode: "markers+text", x: drawing.x, y: drawing.y, text: drawing.label,
       textposition: "top center", hovertext: drawing.text, hovertemplate: "%{hovertext}<extra></extra>",
       customdata: drawing.id, marker: {size: sizes, color: colours, line: {width: 2, color: "#1d2430"}}},
    ];
    const annotations = drawing.edges.map(([x0, y0, x1, y1]) => ({x: x1, y: y1, ax: x0, ay: y0, xref: "x", yref: "y",
      axref: "x", ayref: "y", showarrow: true, arrowhead: 2, arrowsize: 1.2, arrowcolor: "#9aa5b1", standoff: 9}));
    Plotly.react(div, traces, {margin: {t: 30, r: 30, b: 30, l: 30}, showlegend: false, annotations: annotations,
      hoverlabel: {align: "left"}, xaxis: {visible: false}, yaxis: {visible: false}}, CONFIG);
    onClick(div);
  }

  function drawLineage(lineage) {
    if (lineage) {
      network("lineage", lineage, lineage.current.map((c) => (c ? "#d1761d" : "#1d5fd1")),
        lineage.current.map((c) => (c ? 22 : 14)));
    }
  }

  function setLive(live) {
    const fields = {
      state: live.state, active_s: String(live.active_s), candidates: String(live.candidates),
      spent: live.spent.calls + " LLM calls, " + live.spent.tokens + " tokens, $" + live.spent.usd.toFixed(4),
      best: live.best ? "#" + live.best.id + ": " + (100 * live.best.mean).toFixed(1) + " % on " + live.best.split : "-",
      dedup: live.dedup.candidates + " candidates stored, " + live.dedup.functional_twins +
        " merged into a functional twin, " + live.dedup.distinct_behaviours + " distinct behaviours among " +
        live.dedup.fingerprinted + " fingerprinted",
    };
    for (const [name, text] of Object.entries(fields)) {
      document.querySelectorAll('[data-live="' + name + '"]').forEach((el) => { el.textContent = text; });
    }
    const gauges = document.querySelector('[data-live="gauges"]');
    if (gauges && !live.gauges.length) {
      const none = document.createElement("span");
      none.className = "muted"; none.textContent = "no limit set";
      gauges.replaceChildren(none);
    } else if (gauges) {
      gauges.replaceChildren(...live.gauges.map((g) => {
        const line = document.createElement("div"), meter = document.createElement("meter");
        line.className = "gauge-line";
        meter.min = 0; meter.max = 1; meter.value = g.fraction;
        line.append(meter, " " + g.name + " " + g.spent + " / " + g.limit);
        return line;
      }));
    }
  }

  function drawCampaign(live) {
    timeline(live); strategies(live); pareto(live); setLive(live);
  }

  function poll() {
    fetch(data.live_url, {cache: "no-store"}).then((r) => r.json()).then((live) => {
      data.live = live;
      drawCampaign(live);
      document.body.dataset.updates = String(Number(document.body.dataset.updates || 0) + 1);
      if (live.state === "running") { window.setTimeout(poll, data.poll_ms); }
    }).catch(() => window.setTimeout(poll, 4 * data.poll_ms));
  }

  if (data.page === "campaign") {
    document.querySelectorAll("#axis-buttons button").forEach((b) => b.addEventListener("click", () => {
      axis = b.dataset.axis; timeline(data.live);
    }));
    drawCampaign(data.live);
    drawLineage(data.lineage);
    if (data.live_url && data.live.state === "running") { window.setTimeout(poll, data.poll_ms); }
  } else if (data.page === "candidate") {
    drawLineage(data.lineage);
    if (data.graph) { data.graph.id = data.graph.x.map(() => undefined); }
    network("agent-graph", data.graph, "#11632a", 18);
  }
  document.body.dataset.charts = String(document.querySelectorAll(".js-plotly-plot").length);
})();
