"""The page template (Jinja2, autoescaped), its stylesheet and its script.

Kept as Python strings so they ship inside the package with no package-data configuration.
Division of labour, for escaping safety:

* Jinja2 (``autoescape=True``) writes every piece of text on the page: title, feature names,
  numbers, the overview and the alert log tables. Nothing is marked ``|safe`` except the three
  blocks the renderer prepares itself: the JSON data (``<``, ``>``, ``&`` escaped as ``\\u003c``
  etc.), the Plotly bundle and the script below.
* The script only draws charts: it reads the JSON block with ``JSON.parse`` and gives Plotly
  numbers plus strings passed through ``ptext`` (Plotly interprets a small HTML subset in its text,
  so ``<``, ``>`` and ``&`` are turned into entities, which Plotly shows literally). The sparklines
  are SVG elements created with ``createElementNS`` from numbers. No data reaches ``innerHTML``.
* A Content-Security-Policy allows only the page's own two scripts (by SHA-256 hash) and no
  network at all (``connect-src 'self'`` only when served by ``divmon dashboard --serve``).
"""

PAGE_TEMPLATE = r"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta http-equiv="Content-Security-Policy" content="{{ csp }}">
<meta name="generator" content="divtransforms dashboard">
<title>{{ p.title }}</title>
<style>{{ css }}</style>
</head>
<body>
<header>
  <h1>{{ p.title }}</h1>
  <p class="meta">Generated {{ p.generated_at }} from <code>{{ p.history }}</code> ·
    {{ p.n_features }} feature{{ '' if p.n_features == 1 else 's' }} ·
    {{ "{:,}".format(p.n_records) }} records ·
    <span class="{{ 'bad' if p.n_breaches else 'good' }}">{{ p.n_breaches }} in breach</span> ·
    {{ p.n_alerts }} alert{{ '' if p.n_alerts == 1 else 's' }}
    ({{ p.n_alerts_pending }} not delivered)</p>
</header>
<noscript><p class="note">Charts need JavaScript (inline; nothing is fetched).
The tables below work without it.</p></noscript>
<main>
<section id="overview" aria-labelledby="overview-h">
  <h2 id="overview-h">Features <small>breaches first</small></h2>
  {% for s in p.stale %}{% if s.end is none %}<p class="note stale" id="feed-stale">The feed is
    stale: no new data since {{ s.start|ts }}.</p>{% endif %}{% endfor %}
  {% if not p.features %}
  <p id="empty-history" class="note">No drift records yet in this history. Run a check
    (<code>divmon check</code> or the monitoring flow) and reload.</p>
  {% else %}
  <table id="overview-table" class="grid">
    <thead><tr><th>Feature</th><th>Severity</th><th>Quality</th><th>Judged value</th>
      <th>JS divergence</th><th>p-value</th><th>Samples</th><th>Missing</th><th>Windows</th>
      <th>Metric over time</th><th>Last window end</th></tr></thead>
    <tbody>
    {% for f in p.features %}
    <tr class="sev-{{ f.latest.severity }}" data-feature-index="{{ loop.index0 }}">
      <td class="name"><a href="#f-{{ loop.index0 }}">{{ f.name }}</a>
        <span class="kind">{{ f.kind or '' }}</span></td>
      <td><span class="badge sev-{{ f.latest.severity }}">{{ f.latest.severity }}</span></td>
      <td><span class="badge sev-{{ f.quality.latest.severity }}"
        title="{{ f.quality.latest.reason or '' }}">{{ f.quality.latest.severity }}</span></td>
      <td class="num" title="{{ f.judged }} (warn {{ f.threshold.warn }},
 critical {{ f.threshold.critical }})">{{ f.latest.metric|num }}</td>
      <td class="num">{{ f.latest.js_divergence|num }}</td>
      <td class="num">{{ f.latest.p_value|num }}</td>
      <td class="num">{{ f.latest.n|cnt }}</td>
      <td class="num">{{ f.latest.missing_rate|pct }}</td>
      <td class="num">{{ "{:,}".format(f.n_windows) }}</td>
      <td class="spark" data-feature-index="{{ loop.index0 }}"></td>
      <td class="time">{{ f.latest.time|ts }}</td>
    </tr>
    {% endfor %}
    </tbody>
  </table>
  {% endif %}
</section>

<section id="alerts" aria-labelledby="alerts-h">
  <h2 id="alerts-h">Alert log <small>newest first</small></h2>
  {% if not p.alerts %}
  <p class="note">No alerts recorded{% if p.features %} (<code>_alerts.json</code> is empty or
    absent){% endif %}.</p>
  {% else %}
  {% if p.n_alerts > p.alerts|length %}<p class="note">Showing the newest
    {{ p.alerts|length }} of {{ p.n_alerts }} alerts.</p>{% endif %}
  <div class="scroll">
  <table id="alert-table" class="grid">
    <thead><tr><th>Time (window end)</th><th>Feature</th><th>Severity</th><th>Metric</th>
      <th>Value</th><th>Status</th><th>Attempts</th><th>Targets</th></tr></thead>
    <tbody>
    {% for a in p.alerts %}
    <tr class="alert-row{{ ' undelivered' if a.status != 'delivered' else '' }}">
      <td class="time">{{ a.time|ts }}</td><td>{{ a.feature }}</td>
      <td><span class="badge sev-{{ a.severity }}">{{ a.severity }}</span></td>
      <td>{{ a.metric }}</td><td class="num">{{ a.value|num }}</td>
      <td><span class="status status-{{ a.status }}">{{ a.status }}</span></td>
      <td class="num">{{ a.attempts if a.attempts is not none else '' }}</td>
      <td>{{ a.targets|join(', ') }}</td>
    </tr>
    {% endfor %}
    </tbody>
  </table>
  </div>
  {% endif %}
</section>

{% if p.features %}
<section id="features" aria-labelledby="features-h">
  <h2 id="features-h">Per feature</h2>
  {% for f in p.features %}
  <article class="feature sev-{{ f.latest.severity }}" id="f-{{ loop.index0 }}"
           data-feature-index="{{ loop.index0 }}">
    <h3><span class="fname">{{ f.name }}</span>
      <span class="badge sev-{{ f.latest.severity }}">{{ f.latest.severity }}</span></h3>
    <p class="meta">{{ f.kind or 'unknown kind' }}{% if f.mle %} · MLE family
      {{ f.mle.family }}{% if f.mle.fit_quality %} (fit to the reference
      {{ f.mle.fit_quality }}: {{ f.mle.fit|num }} bits){% endif %}{% endif %} ·
      {{ f.judged }} warn {{ f.threshold.warn }},
      critical {{ f.threshold.critical }} · latest window
      {{ f.latest.window_start|ts }} → {{ f.latest.window_end|ts }} ·
      n = {{ f.latest.n|cnt }} (reference {{ f.latest.n_reference|cnt }}) ·
      p = {{ f.latest.p_value|num }} · bias-corrected JS {{ f.latest.js_corrected|num }} ·
      reference {{ f.latest.reference_id or '?' }}</p>
    {% if f.reference_changes %}<p class="meta reference-rolled">Reference changed
      {{ f.reference_changes.count }} time{{ 's' if f.reference_changes.count != 1 }} in this
      history; the latest, to {{ f.reference_changes.to or '?' }} (from
      {{ f.reference_changes['from'] or '?' }}), judges windows from
      {{ f.reference_changes.window_start|ts }}.</p>{% endif %}
    {% if f.latest.reason %}<p class="meta reason">Why {{ f.latest.severity }}:
      {{ f.latest.reason }}</p>{% endif %}
    {% if f.quality.latest.severity not in ('ok', 'unassessed') %}<p class="meta reason quality">
      Data quality {{ f.quality.latest.severity }}: {{ f.quality.latest.reason }}</p>{% endif %}
    {% if f.quality.latest.issues %}<ul class="meta issues">{% for i in f.quality.latest.issues %}
      <li>{{ i }}</li>{% endfor %}</ul>{% endif %}
    {% if f.n_buckets %}<p class="note downsampled">{{ "{:,}".format(f.n_windows) }} windows:
      the oldest {{ "{:,}".format(f.n_bucketed_windows) }} are shown as {{ f.n_buckets }}
      buckets (mean line, min–max band); the last
      {{ "{:,}".format(f.n_windows - f.n_bucketed_windows) }} at full resolution.</p>{% endif %}
    <div class="charts">
      <figure><figcaption>{{ f.judged }} over time, thresholds and alerts
        </figcaption><div class="chart" data-chart="metric"></div></figure>
      <figure><figcaption>Latest window vs reference (share of samples per bin; hatched:
        outside the reference range / other / unseen)</figcaption>
        <div class="chart" data-chart="histogram"></div></figure>
      <figure><figcaption>Running MLE estimates ±1.96 SE, reference value
        </figcaption><div class="chart-group" data-chart="mle"></div></figure>
      <figure><figcaption>p-value (histogram test) and sample size per window
        </figcaption><div class="chart" data-chart="significance"></div></figure>
      <figure><figcaption>Persistent drift: the sequential detector (CUSUM over windows)
        against its threshold, change point marked{% if f.cusum and f.cusum.alarm %}
        (in alarm: {{ f.cusum.alarm }}){% endif %}</figcaption>
        <div class="chart" data-chart="cusum"></div></figure>
      <figure><figcaption>Data quality: missing, invalid and unseen rates, quality breaches
        and stale periods of the feed</figcaption>
        <div class="chart" data-chart="quality"></div></figure>
    </div>
  </article>
  {% endfor %}
</section>
{% endif %}
</main>
<footer>
  <p>The judged value is what the alert policy compares with the warn/critical floors (for
  <code>js_divergence</code>, the bias-corrected JS divergence <code>js_corrected</code>; the
  plug-in value is drawn dotted). Severities come from the records (they also weigh significance,
  sample size and the MLE parameter tests).</p>
  <p>Self-contained page written by divtransforms: scripts and styles are inline and nothing is
  fetched from the network. Charts by Plotly.js {{ plotly_version }}. Large histories are reduced
  per feature: the last {{ p.full_windows }} windows are drawn at full resolution and older
  windows are grouped into at most {{ p.buckets }} equal-count buckets (mean line with a min–max
  band; sample counts summed, the smallest p-value and the worst severity kept; running MLE
  estimates take the bucket's last value). Sparklines show bucket maxima so spikes stay
  visible.</p>
</footer>
<script type="application/json" id="dashboard-data">{{ data_json }}</script>
<script>{{ plotly_js }}</script>
<script>{{ app_js }}</script>
</body>
</html>
"""

STYLE_CSS = r"""
:root { --ok:#2e7d32; --warn:#ef8a00; --crit:#c62828; --ins:#6d6d6d; --ink:#1d2330;
  --mute:#5b6474; --line:#e3e6eb; --bg:#f6f7f9; --accent:#1f5fbf; }
* { box-sizing: border-box; }
body { margin: 0; font: 14px/1.4 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif;
  color: var(--ink); background: var(--bg); }
header, main, footer { max-width: 1400px; margin: 0 auto; padding: 0 20px; }
header { padding-top: 14px; }
h1 { font-size: 22px; margin: 4px 0; }
h2 { font-size: 17px; margin: 22px 0 8px; }
h2 small { font-weight: normal; color: var(--mute); font-size: 12px; margin-left: 6px; }
h3 { font-size: 15px; margin: 0 0 4px; display: flex; gap: 10px; align-items: center;
  overflow-wrap: anywhere; }
.meta { color: var(--mute); margin: 0 0 6px; font-size: 12.5px; overflow-wrap: anywhere; }
.note { color: var(--mute); font-size: 12.5px; }
.good { color: var(--ok); font-weight: 600; } .bad { color: var(--crit); font-weight: 600; }
table.grid { border-collapse: collapse; width: 100%; background: #fff;
  border: 1px solid var(--line); }
.grid th, .grid td { padding: 5px 8px; border-bottom: 1px solid var(--line); text-align: left;
  vertical-align: middle; }
.grid th { background: #eef1f5; font-weight: 600; font-size: 12.5px; position: sticky; top: 0; }
.grid td.num { text-align: right; font-variant-numeric: tabular-nums; }
.grid td.time { white-space: nowrap; color: var(--mute); font-size: 12.5px; }
.grid td.name { max-width: 320px; overflow-wrap: anywhere; }
.grid td.name a { color: var(--accent); text-decoration: none; font-weight: 600; }
.kind { color: var(--mute); font-size: 11px; margin-left: 6px; }
.scroll { max-height: 360px; overflow: auto; border: 1px solid var(--line); }
.badge { display: inline-block; padding: 1px 8px; border-radius: 10px; font-size: 11.5px;
  font-weight: 600; color: #fff; background: var(--ins); }
.badge.sev-ok, .badge.sev-recovered { background: var(--ok); }
.badge.sev-stale { background: #6a1b9a; }
.badge.sev-unassessed { background: #9aa3b2; }
ul.issues { margin: 2px 0 6px 18px; padding: 0; }
.badge.sev-warning { background: var(--warn); }
.badge.sev-critical { background: var(--crit); }
tr.sev-critical td:first-child { box-shadow: inset 4px 0 var(--crit); }
tr.sev-warning td:first-child { box-shadow: inset 4px 0 var(--warn); }
.status { font-weight: 600; font-size: 12px; }
tr.undelivered td { background: #fff8e6; }
.status-delivered { color: var(--ok); } .status-pending { color: var(--warn); }
.status-failed { color: var(--crit); }
td.spark { width: 140px; padding: 2px 8px; }
td.spark svg { display: block; }
article.feature { background: #fff; border: 1px solid var(--line); border-radius: 6px;
  padding: 12px 14px; margin: 0 0 16px; }
article.feature.sev-critical { border-left: 5px solid var(--crit); }
article.feature.sev-warning { border-left: 5px solid var(--warn); }
.charts { display: grid; grid-template-columns: repeat(2, minmax(0, 1fr)); gap: 10px 16px; }
@media (max-width: 980px) { .charts { grid-template-columns: minmax(0, 1fr); } }
figure { margin: 0; min-width: 0; }
figcaption { font-size: 12px; color: var(--mute); margin-bottom: 2px; }
.chart { height: 260px; min-width: 0; }
.chart-group .chart { height: 200px; }
.chart-group .empty, .chart .empty { color: var(--mute); font-size: 12.5px; padding: 30px 0;
  text-align: center; }
footer { color: var(--mute); font-size: 12px; padding-bottom: 30px; }
"""

APP_JS = r"""
(function () {
  "use strict";
  var data = JSON.parse(document.getElementById("dashboard-data").textContent);
  var SEV = ["ok", "insufficient", "warning", "critical"];
  var COLOR = {ok: "#2e7d32", insufficient: "#6d6d6d", warning: "#ef8a00", critical: "#c62828",
               recovered: "#2e7d32", stale: "#6a1b9a"};
  // The periods the feed was stale (alert log): shaded on every time chart.
  function staleShapes() {
    return (data.stale || []).map(function (p) {
      return {type: "rect", xref: "x", yref: "paper", x0: p.start,
              x1: p.end === null ? Date.now() : p.end, y0: 0, y1: 1, layer: "below",
              fillcolor: "rgba(106,27,154,0.10)", line: {width: 0}};
    });
  }
  // No mode bar: drag to zoom, double-click to reset (Plotly defaults); static images come from
  // `divmon dashboard --chart`.
  var CONFIG = {displaylogo: false, responsive: true, displayModeBar: false};
  var BASE = {margin: {l: 52, r: 16, t: 8, b: 36}, font: {size: 11},
              paper_bgcolor: "#fff", plot_bgcolor: "#fff", hovermode: "closest",
              legend: {orientation: "h", y: 1.02, yanchor: "bottom", x: 0, font: {size: 10}}};
  // Plotly reads a small HTML subset in its strings; entities make user text literal.
  function ptext(s) {
    return String(s === null || s === undefined ? "" : s)
      .replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;");
  }
  function layout(extra) {
    var out = JSON.parse(JSON.stringify(BASE));
    for (var k in extra) { if (Object.prototype.hasOwnProperty.call(extra, k)) out[k] = extra[k]; }
    return out;
  }
  function empty(div, text) {
    var p = document.createElement("div");
    p.className = "empty";
    p.textContent = text;
    div.appendChild(p);
  }
  function hline(y, color, dash) {
    return {type: "line", xref: "paper", x0: 0, x1: 1, y0: y, y1: y,
            line: {color: color, width: 1.2, dash: dash}};
  }

  function metricChart(div, f) {
    var s = f.series, thr = f.threshold, name = ptext(f.judged);
    var traces = [];
    if (s.raw) {
      traces.push({x: s.t, y: s.raw, mode: "lines", name: "js_divergence (plug-in)",
                   line: {color: "#9aa3b2", width: 1, dash: "dot"}, hoverinfo: "skip"});
    }
    if (f.n_buckets) {
      traces.push({x: s.t, y: s.metric_max, mode: "lines", line: {width: 0},
                   hoverinfo: "skip", showlegend: false});
      traces.push({x: s.t, y: s.metric_min, mode: "lines", line: {width: 0}, fill: "tonexty",
                   fillcolor: "rgba(31,95,191,0.18)", name: "min–max (bucketed)",
                   hoverinfo: "skip"});
    }
    traces.push({x: s.t, y: s.metric, mode: s.t.length > 120 ? "lines" : "lines+markers",
                 name: name, line: {color: "#1f5fbf", width: 1.5}, marker: {size: 4},
                 customdata: s.n, hovertemplate: "%{x}<br>" + name +
                 " %{y:.4g}<br>n %{customdata:,}<extra></extra>"});
    ["warning", "critical"].forEach(function (sev) {
      var code = SEV.indexOf(sev), xs = [], ys = [];
      for (var i = 0; i < s.t.length; i++) {
        if (s.severity[i] === code) { xs.push(s.t[i]); ys.push(s.metric[i]); }
      }
      if (xs.length) {
        traces.push({x: xs, y: ys, mode: "markers", name: sev + " window",
                     marker: {color: COLOR[sev], size: 6}, hoverinfo: "x+y"});
      }
    });
    if (f.alerts.length) {
      traces.push({x: f.alerts.map(function (a) { return a.time; }),
                   y: f.alerts.map(function (a) { return a.value; }),
                   text: f.alerts.map(function (a) {
                     return ptext(a.severity + " · " + a.status);
                   }),
                   mode: "markers", name: "alert",
                   marker: {symbol: "diamond-open", size: 11, line: {width: 2},
                            color: f.alerts.map(function (a) {
                              return COLOR[a.severity] || "#333";
                            })},
                   hovertemplate: "alert %{text}<br>%{x}<br>%{y:.4g}<extra></extra>"});
    }
    Plotly.newPlot(div, traces, layout({
      xaxis: {type: "date"}, yaxis: {title: {text: name}, rangemode: "tozero"},
      shapes: [hline(thr.warn, COLOR.warning, "dash"),
               hline(thr.critical, COLOR.critical, "dash")].concat(staleShapes()),
      annotations: [
        {xref: "paper", x: 1, y: thr.warn, text: "warn", showarrow: false, xanchor: "right",
         yanchor: "bottom", font: {color: COLOR.warning, size: 10}},
        {xref: "paper", x: 1, y: thr.critical, text: "critical", showarrow: false,
         xanchor: "right", yanchor: "bottom", font: {color: COLOR.critical, size: 10}}]
    }), CONFIG);
  }

  function share(counts) {
    var total = counts.reduce(function (a, b) { return a + b; }, 0);
    return counts.map(function (c) { return total ? c / total : 0; });
  }
  function histogramChart(div, f) {
    var h = f.histogram;
    if (!h.labels.length) { empty(div, "No bins recorded for the latest window."); return; }
    var labels = h.labels.map(ptext);
    var tail = {};
    h.tail.forEach(function (i) { tail[i] = true; });
    var pattern = labels.map(function (_, i) { return tail[i] ? "/" : ""; });
    var bar = function (counts, name, color) {
      return {type: "bar", x: labels, y: share(counts), customdata: counts, name: name,
              marker: {color: color, pattern: {shape: pattern, solidity: 0.35}},
              hovertemplate: "%{x}<br>%{y:.2%} (%{customdata:,} samples)<extra>" + name +
                             "</extra>"};
    };
    Plotly.newPlot(div, [bar(h.reference_counts, "reference", "#9aa3b2"),
                         bar(h.counts, "latest window", "#1f5fbf")],
                   layout({barmode: "group", bargap: 0.12,
                           xaxis: {type: "category", automargin: true, tickfont: {size: 9}},
                           yaxis: {tickformat: ".0%", title: {text: "share"}}}), CONFIG);
  }

  function band(x, mid, se, sign) {
    return mid.map(function (v, i) {
      return (v === null || se[i] === null) ? null : v + sign * 1.96 * se[i];
    });
  }
  function mleCharts(group, f) {
    if (!f.mle || !f.mle.params.length) {
      empty(group, "No MLE family configured for this feature.");
      return;
    }
    var s = f.series;
    f.mle.params.forEach(function (prm) {
      var div = document.createElement("div");
      div.className = "chart";
      group.appendChild(div);
      var pname = ptext(prm.name);
      var traces = [
        {x: s.t, y: band(prm.running, prm.running_se, 1), mode: "lines", line: {width: 0},
         hoverinfo: "skip", showlegend: false},
        {x: s.t, y: band(prm.running, prm.running_se, -1), mode: "lines", line: {width: 0},
         fill: "tonexty", fillcolor: "rgba(31,95,191,0.18)", name: "±1.96 SE",
         hoverinfo: "skip"},
        {x: s.t, y: prm.running, mode: "lines", name: "running " + pname,
         line: {color: "#1f5fbf", width: 1.6}},
        {x: s.t, y: prm.window, mode: "markers", name: "window " + pname,
         marker: {color: "#7f8fa9", size: 3}}
      ];
      var shapes = [], annotations = [];
      if (prm.reference !== null) {
        shapes.push(hline(prm.reference, "#333", "dot"));
        if (prm.reference_se !== null) {
          shapes.push({type: "rect", xref: "paper", x0: 0, x1: 1, line: {width: 0},
                       y0: prm.reference - 1.96 * prm.reference_se,
                       y1: prm.reference + 1.96 * prm.reference_se,
                       fillcolor: "rgba(0,0,0,0.07)"});
        }
        annotations.push({xref: "paper", x: 0, y: prm.reference, showarrow: false,
                          xanchor: "left", yanchor: "bottom", font: {size: 10},
                          text: "reference " + pname + " = " + prm.reference.toPrecision(4)});
      }
      var ytitle = pname +
        (prm.latest_z === null ? "" : " (z " + prm.latest_z.toFixed(2) + ")");
      Plotly.newPlot(div, traces, layout({
        xaxis: {type: "date"}, yaxis: {title: {text: ytitle}}, shapes: shapes,
        annotations: annotations, showlegend: false}), CONFIG);
    });
  }

  function cusumChart(div, f) {
    var c = f.cusum;
    if (!c) {
      empty(div, "No sequential detector for this feature (unwindowed checks, or turned off).");
      return;
    }
    var s = f.series;
    var traces = [
      {x: s.t, y: c.statistic, mode: "lines", name: "mean detector",
       line: {color: "#1f5fbf", width: 1.6}},
      {x: s.t, y: c.threshold, mode: "lines", name: "mean threshold",
       line: {color: "#1f5fbf", width: 1, dash: "dash"}},
      {x: s.t, y: c.histogram, mode: "lines", name: "histogram detector",
       line: {color: "#bc4c00", width: 1.4}},
      {x: s.t, y: c.histogram_threshold, mode: "lines", name: "histogram threshold",
       line: {color: "#bc4c00", width: 1, dash: "dash"}}
    ];
    var shapes = [], annotations = [];
    if (c.change_point !== null) {
      shapes.push({type: "line", xref: "x", yref: "paper", x0: c.change_point,
                   x1: c.change_point, y0: 0, y1: 1, line: {color: "#cf222e", dash: "dot"}});
      annotations.push({xref: "x", yref: "paper", x: c.change_point, y: 1, showarrow: false,
                        xanchor: "left", yanchor: "top", font: {size: 10},
                        text: "change point"});
    }
    Plotly.newPlot(div, traces, layout({
      xaxis: {type: "date"}, yaxis: {title: {text: "score units"}, rangemode: "tozero"},
      shapes: shapes, annotations: annotations}), CONFIG);
  }

  function significanceChart(div, f) {
    var s = f.series;
    // p = 0 (underflow) cannot sit on a log axis: draw it at the smallest double's decade.
    var p = s.p_value.map(function (v) { return v === null ? null : Math.max(v, 1e-300); });
    var finite = p.filter(function (v) { return v !== null; });
    var lo = finite.length ? Math.min.apply(null, finite) : 0.01;
    var decades = Math.max(1, Math.ceil(-Math.log10(lo)) + 1);
    Plotly.newPlot(div, [
      {type: "bar", x: s.t, y: s.n, name: "samples (n)", yaxis: "y2",
       marker: {color: "rgba(154,163,178,0.55)"}, hovertemplate: "n %{y:,}<extra></extra>"},
      {x: s.t, y: p, mode: s.t.length > 120 ? "lines" : "lines+markers",
       name: "p-value", line: {color: "#7b1fa2", width: 1.4}, marker: {size: 4},
       hovertemplate: "p %{y:.3g}<extra></extra>"}
    ], layout({
      xaxis: {type: "date"}, bargap: 0,
      yaxis: {type: "log", title: {text: "p-value"}, exponentformat: "e",
              range: [-decades, 0.05], dtick: Math.max(1, Math.ceil(decades / 6))},
      yaxis2: {overlaying: "y", side: "right", title: {text: "n"}, showgrid: false,
               rangemode: "tozero", tickmode: "auto", nticks: 5},
      margin: {l: 52, r: 52, t: 8, b: 36},
      shapes: [hline(0.05, "#7b1fa2", "dot")]
    }), CONFIG);
  }

  function qualityChart(div, f) {
    var s = f.series, q = f.quality.series, traces = [];
    [["missing_rate", "missing", "#1f5fbf"], ["invalid_rate", "invalid", "#c62828"],
     ["unseen_rate", "unseen", "#ef8a00"]].forEach(function (r) {
      if (q[r[0]].some(function (v) { return v !== null; })) {
        traces.push({x: s.t, y: q[r[0]], mode: s.t.length > 120 ? "lines" : "lines+markers",
                     name: r[1], line: {color: r[2], width: 1.4}, marker: {size: 4},
                     hovertemplate: r[1] + " %{y:.1%}<extra></extra>"});
      }
    });
    ["warning", "critical"].forEach(function (sev) {
      var code = SEV.indexOf(sev), xs = [];
      for (var i = 0; i < s.t.length; i++) { if (q.severity[i] === code) xs.push(s.t[i]); }
      if (xs.length) {
        traces.push({x: xs, y: xs.map(function () { return 1; }), mode: "markers",
                     name: "quality " + sev, marker: {color: COLOR[sev], size: 7,
                     symbol: "triangle-down"}, hoverinfo: "x+name"});
      }
    });
    if (!traces.length) { empty(div, "No quality rates recorded (histories before v3)."); return; }
    Plotly.newPlot(div, traces, layout({
      xaxis: {type: "date"}, yaxis: {title: {text: "rate"}, rangemode: "tozero", tickformat: ".1%"},
      shapes: staleShapes()
    }), CONFIG);
  }

  function sparkline(td, f) {
    var v = f.spark, w = 130, h = 26, ns = "http://www.w3.org/2000/svg";
    var svg = document.createElementNS(ns, "svg");
    svg.setAttribute("width", w); svg.setAttribute("height", h);
    svg.setAttribute("viewBox", "0 0 " + w + " " + h);
    svg.setAttribute("role", "img");
    svg.setAttribute("aria-label", "metric over time");
    var finite = v.filter(function (x) { return x !== null; });
    var hi = Math.max.apply(null, finite.concat([f.threshold.critical, 1e-12]));
    var lo = Math.min.apply(null, finite.concat([0]));
    var y = function (x) { return (h - 2 - (x - lo) / (hi - lo || 1) * (h - 4)).toFixed(1); };
    var warn = document.createElementNS(ns, "line");
    warn.setAttribute("x1", 0); warn.setAttribute("x2", w);
    warn.setAttribute("y1", y(f.threshold.warn)); warn.setAttribute("y2", y(f.threshold.warn));
    warn.setAttribute("stroke", COLOR.warning); warn.setAttribute("stroke-dasharray", "2 2");
    svg.appendChild(warn);
    var pts = [];
    v.forEach(function (x, i) {
      if (x !== null) pts.push((v.length > 1 ? i / (v.length - 1) * (w - 4) + 2 : w / 2)
                               .toFixed(1) + "," + y(x));
    });
    if (pts.length === 1) {  // one window: a short dash, so the mark is visible
      var yy = pts[0].split(",")[1];
      pts = [(w / 2 - 5) + "," + yy, (w / 2 + 5) + "," + yy];
    }
    var line = document.createElementNS(ns, "polyline");
    line.setAttribute("points", pts.join(" "));
    line.setAttribute("fill", "none");
    line.setAttribute("stroke", COLOR[f.latest.severity] || "#1f5fbf");
    line.setAttribute("stroke-width", "1.5");
    svg.appendChild(line);
    td.appendChild(svg);
  }

  var state = {rendered: 0, errors: []};
  function renderFeature(article) {
    if (article.getAttribute("data-rendered")) return;
    article.setAttribute("data-rendered", "1");
    var f = data.features[Number(article.getAttribute("data-feature-index"))];
    var draw = {metric: metricChart, histogram: histogramChart, mle: mleCharts,
                significance: significanceChart, quality: qualityChart, cusum: cusumChart};
    article.querySelectorAll("[data-chart]").forEach(function (div) {
      try { draw[div.getAttribute("data-chart")](div, f); }
      catch (e) { state.errors.push(String(e)); throw e; }
    });
    state.rendered += 1;
  }
  document.querySelectorAll("td.spark").forEach(function (td) {
    sparkline(td, data.features[Number(td.getAttribute("data-feature-index"))]);
  });
  var articles = Array.prototype.slice.call(document.querySelectorAll("article.feature"));
  // Draw a feature's charts when it scrolls near the viewport: 50 features x 4 charts would
  // otherwise all be laid out at load.
  if ("IntersectionObserver" in window) {
    var io = new IntersectionObserver(function (entries) {
      entries.forEach(function (e) {
        if (e.isIntersecting) { io.unobserve(e.target); renderFeature(e.target); }
      });
    }, {rootMargin: "800px 0px"});
    articles.forEach(function (a) { io.observe(a); });
  } else {
    articles.forEach(renderFeature);
  }
  window.divtransformsDashboard = {
    data: data, state: state,
    renderAll: function () { articles.forEach(renderFeature); return state.rendered; }
  };
  if (data.live && data.live.url) {
    setInterval(function () {
      fetch(data.live.url, {cache: "no-store"})
        .then(function (r) { return r.json(); })
        .then(function (v) { if (v.version !== data.live.version) location.reload(); })
        .catch(function () { /* server stopped: keep showing the last page */ });
    }, data.live.interval_ms);
  }
})();
"""
