--------------------------------------------------------------------------
-- The dashboard (README "Dashboard"): one self-contained HTML page, Chart.js
-- inlined (src/extension/dashboard_assets.c), the data as JSON, rendered
-- by the page's own script.  No network at view time: a Content Security
-- Policy forbids every fetch.  Read with the caller's privileges (the
-- status views'); not granted to PUBLIC.
--------------------------------------------------------------------------

CREATE OR REPLACE FUNCTION rl_mlops._chart_js()
RETURNS text
AS 'MODULE_PATHNAME', 'rl_chart_js'
LANGUAGE C STABLE STRICT;

-- Everything the page shows of one agent, as JSON.  Live equity: the
-- ledger's net log returns summed over symbols per bar and accumulated,
-- per version, thinned to at most about 1,500 points per version.
CREATE OR REPLACE FUNCTION rl_mlops._dashboard_data(p_agent text)
RETURNS jsonb
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    WITH per_bar AS (
        SELECT l.version, l.ts, sum(l.net_return) AS r
          FROM rl_mlops.live_ledger l WHERE l.agent = p_agent
         GROUP BY l.version, l.ts),
    equity AS (
        SELECT version, ts, sum(r) OVER w AS eq, row_number() OVER w AS i,
               count(*) OVER (PARTITION BY version) AS n
          FROM per_bar WINDOW w AS (PARTITION BY version ORDER BY ts)),
    market_bar AS (
        SELECT ts, sum(bh) AS r
          FROM (SELECT DISTINCT ON (l.symbol, l.ts) l.ts, l.buy_hold_return AS bh
                  FROM rl_mlops.live_ledger l WHERE l.agent = p_agent
                 ORDER BY l.symbol, l.ts) x
         GROUP BY ts),
    market AS (
        SELECT ts, sum(r) OVER w AS eq, row_number() OVER w AS i, count(*) OVER () AS n
          FROM market_bar WINDOW w AS (ORDER BY ts))
    SELECT jsonb_build_object(
        'agent', a.name,
        'source', a.source::text,
        'active_version', (SELECT m.version FROM rl_mlops.models m WHERE m.agent = a.name AND m.state = 'active'),
        'equity', coalesce((
            SELECT jsonb_agg(jsonb_build_object(
                       'version', e.version,
                       'role', coalesce((SELECT p.role FROM rl_mlops.live_performance p
                                          WHERE p.agent = a.name AND p.version = e.version), 'retired'),
                       'points', e.points) ORDER BY e.version)
              FROM (SELECT version,
                           jsonb_agg(jsonb_build_array(round(extract(epoch FROM ts) * 1000),
                                                       round(eq::numeric, 6)) ORDER BY ts) AS points
                      FROM equity
                     WHERE i % greatest(1, n / 1500) = 0 OR i = n OR i = 1
                     GROUP BY version) e), '[]'),
        'buy_hold', coalesce((
            SELECT jsonb_agg(jsonb_build_array(round(extract(epoch FROM ts) * 1000),
                                               round(eq::numeric, 6)) ORDER BY ts)
              FROM market WHERE i % greatest(1, n / 1500) = 0 OR i = n OR i = 1), '[]'),
        -- where each version became champion, in bar time (the ledger's
        -- role), matched with its deployments from the newest back (the
        -- ledger may have lost the oldest to retention)
        'markers', coalesce((
            SELECT jsonb_agg(jsonb_build_object('t', round(extract(epoch FROM b.ts) * 1000),
                                                'action', coalesce(d.action, 'deploy'), 'version', b.version,
                                                'previous', d.previous_version) ORDER BY b.ts)
              FROM (SELECT version, ts, row_number() OVER (PARTITION BY version ORDER BY ts DESC) AS k
                      FROM (SELECT version, ts, role,
                                   lag(role) OVER (PARTITION BY version ORDER BY ts) AS before
                              FROM (SELECT DISTINCT l.version, l.ts, l.role FROM rl_mlops.live_ledger l
                                     WHERE l.agent = a.name) x) y
                     WHERE role = 'champion' AND before IS DISTINCT FROM 'champion') b
              LEFT JOIN (SELECT x.*, row_number() OVER (PARTITION BY x.version ORDER BY x.id DESC) AS k
                           FROM rl_mlops.deployments x WHERE x.agent = a.name) d
                     ON d.version = b.version AND d.k = b.k), '[]'),
        'ledger_retention_days', a.ledger_retention_days,
        'versions', coalesce((
            SELECT jsonb_agg(jsonb_build_object(
                       'version', m.version, 'state', m.state, 'origin', m.origin,
                       'created', round(extract(epoch FROM m.created_at) * 1000),
                       'holdout_sharpe', (m.metrics #>> '{holdout,sharpe}')::double precision,
                       'live_sharpe', lm.sharpe, 'live_decisions', lm.decisions,
                       'live_return', lm.total_return) ORDER BY m.created_at, m.version)
              FROM rl_mlops.models m
              LEFT JOIN rl_mlops.live_metrics lm ON lm.agent = m.agent AND lm.version = m.version
             WHERE m.agent = a.name), '[]'),
        'runs', coalesce((
            SELECT jsonb_agg(jsonb_build_object(
                       'id', r.id, 'state', r.state, 'trigger', r.trigger,
                       'started', round(extract(epoch FROM coalesce(r.started_at, r.created_at)) * 1000),
                       'duration_s', extract(epoch FROM r.finished_at - r.started_at),
                       'samples_per_second', r.samples_per_second, 'loss', r.loss,
                       'epochs', r.epochs, 'version', r.produced_version, 'error', r.error)
                             ORDER BY r.id)
              FROM (SELECT * FROM rl_mlops.runs x WHERE x.agent = a.name ORDER BY x.id DESC LIMIT 50) r), '[]'),
        'last_call', (SELECT jsonb_build_object('at', round(extract(epoch FROM c.called_at) * 1000),
                                                'alerts', c.result -> 'alerts', 'errors', c.result -> 'errors',
                                                'actions', c.result -> 'actions')
                        FROM rl_mlops.monitor_calls c WHERE c.agent = a.name ORDER BY c.id DESC LIMIT 1),
        'probation', (SELECT jsonb_build_object('champion', p.version, 'predecessor', p.predecessor,
                                                'paired_decisions', p.paired_decisions,
                                                'mean_difference', p.mean_difference,
                                                'statistic', p.test_statistic, 'threshold', p.test_threshold,
                                                'p_value', p.p_value)
                        FROM rl_mlops.live_performance p
                       WHERE p.agent = a.name AND p.role = 'champion' AND p.predecessor IS NOT NULL),
        'challengers', coalesce((SELECT jsonb_agg(to_jsonb(c) - 'agent' ORDER BY c.since)
                                   FROM rl_mlops.challengers c WHERE c.agent = a.name), '[]'))
      FROM rl_mlops.agents a
     WHERE a.name = p_agent
$$;

-- The page: every agent (agent NULL) or one.  psql: \o dashboard.html or
-- psql -Atc "SELECT rl_mlops.dashboard()" > dashboard.html
CREATE OR REPLACE FUNCTION rl_mlops.dashboard(agent text DEFAULT NULL)
RETURNS text
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    data jsonb;
BEGIN
    IF dashboard.agent IS NOT NULL THEN
        PERFORM rl_mlops._agent(dashboard.agent);
    END IF;
    SELECT jsonb_build_object(
               'generated_at', round(extract(epoch FROM now()) * 1000),
               'database', current_database(),
               'agents', coalesce(jsonb_agg(rl_mlops._dashboard_data(a.name) ORDER BY a.name), '[]'))
      INTO data
      FROM rl_mlops.agents a
     WHERE dashboard.agent IS NULL OR a.name = dashboard.agent;
    RETURN replace(replace(rl_mlops._dashboard_page(), '/*RL_MLOPS_CHART_JS*/', rl_mlops._chart_js()),
                   '/*RL_MLOPS_DATA*/',
                   -- JSON in a <script>: no "</" may close it early
                   replace(data::text, '</', '<\/'));
END
$$;

-- The page's HTML, style and script; data and Chart.js go in at the two
-- markers.  Text from the registry is only ever set with textContent.
CREATE OR REPLACE FUNCTION rl_mlops._dashboard_page()
RETURNS text
LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $page$
SELECT $html$<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; img-src data:">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>rl_mlops dashboard</title>
<style>
body { font: 14px/1.4 system-ui, sans-serif; margin: 1.5em auto; max-width: 1280px; color: #222; padding: 0 1em; }
h1 { font-size: 1.5em; margin-bottom: 0.2em; }
h2 { font-size: 1.25em; border-bottom: 1px solid #ccc; padding-bottom: 0.2em; margin-top: 2em; }
h3 { font-size: 1.05em; margin: 1.2em 0 0.4em; }
.meta, .note { color: #666; }
.grid { display: grid; grid-template-columns: 1fr 1fr; gap: 1.5em; }
.wide { grid-column: 1 / -1; }
.chart { position: relative; height: 320px; }
.empty { color: #666; font-style: italic; border: 1px dashed #bbb; padding: 1.5em; text-align: center; }
table { border-collapse: collapse; width: 100%; font-size: 13px; }
th, td { border-bottom: 1px solid #e5e5e5; padding: 3px 6px; text-align: left; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
.alert { color: #a40000; }
@media (max-width: 900px) { .grid { grid-template-columns: 1fr; } }
</style>
</head>
<body data-charts-expected="0" data-charts-rendered="0">
<h1>rl_mlops</h1>
<div class="meta" id="generated"></div>
<div id="agents"></div>
<script>/*RL_MLOPS_CHART_JS*/</script>
<script>
"use strict";
const DATA = /*RL_MLOPS_DATA*/;
const COLORS = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf", "#7f7f7f", "#bcbd22"];
const MARKER_COLORS = {deploy: "#1f77b4", rollback: "#ff7f0e", auto_rollback: "#d62728", promote: "#2ca02c"};
let expected = 0, rendered = 0;

function el(tag, attrs, text) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
  if (text !== undefined && text !== null) e.textContent = String(text);
  return e;
}
function utc(ms) { return ms == null ? "" : new Date(ms).toISOString().replace("T", " ").slice(0, 16) + " UTC"; }
function num(x, d) { return x == null ? "" : Number(x).toFixed(d === undefined ? 3 : d); }
function empty(parent, text) { parent.appendChild(el("p", {"class": "empty"}, text)); }
function table(parent, headers, rows) {
  const t = el("table"), tr = el("tr");
  headers.forEach(h => tr.appendChild(el("th", {}, h)));
  t.appendChild(tr);
  rows.forEach(r => {
    const row = el("tr");
    r.forEach(c => row.appendChild(el("td", typeof c === "number" ? {"class": "num"} : {}, c)));
    t.appendChild(row);
  });
  parent.appendChild(t);
}
// A chart in a box; counted when it has drawn its points.
function chart(parent, id, config) {
  expected++;
  const box = el("div", {"class": "chart"});
  const canvas = el("canvas", {id: id, role: "img", "aria-label": config.options.plugins.title.text});
  box.appendChild(canvas);
  parent.appendChild(box);
  config.options.animation = false;
  config.options.responsive = true;
  config.options.maintainAspectRatio = false;
  const c = new Chart(canvas, config);
  const points = c.data.datasets.reduce((n, ds, i) => n + c.getDatasetMeta(i).data.length, 0);
  canvas.setAttribute("data-points", points);
  if (points > 0) rendered++;
}
function timeAxis(title) {
  return {type: "linear", title: {display: true, text: title},
          ticks: {maxTicksLimit: 8, callback: v => utc(v).slice(5, 16)}};
}

// Built in place: Chart.js draws only on canvases already in the page.
function agentSection(a, root) {
  const s = el("section", {id: "agent-" + a.agent});
  root.appendChild(s);
  s.appendChild(el("h2", {}, "Agent " + a.agent));
  s.appendChild(el("div", {"class": "meta"},
    "source " + a.source + " \u00b7 champion " + (a.active_version || "none") +
    (a.last_call ? " \u00b7 last monitor() " + utc(a.last_call.at) : " \u00b7 monitor() never ran")));
  const grid = el("div", {"class": "grid"});
  s.appendChild(grid);

  // 1. Live equity against buy-and-hold, with deployment markers.
  const eq = el("div", {"class": "wide"});
  eq.appendChild(el("h3", {}, "Live equity (paper trading on bars after each deployment)"));
  grid.appendChild(eq);
  const withPoints = a.equity.filter(e => e.points.length > 0);
  if (withPoints.length === 0) {
    empty(eq, a.active_version ? "No live bars evaluated yet: monitor() writes the ledger once bars arrive after the champion's training data."
                               : "No model is active: nothing is paper-traded yet.");
  } else {
    const ds = withPoints.map((e, i) => ({label: e.version + " (" + e.role + ")", data: e.points.map(p => ({x: p[0], y: p[1]})),
      borderColor: COLORS[i % COLORS.length], borderWidth: e.role === "champion" ? 2.5 : 1.5, pointRadius: 0,
      borderDash: e.role === "shadow" || e.role === "retired" ? [4, 3] : []}));
    if (a.buy_hold.length > 0)
      ds.push({label: "buy and hold", data: a.buy_hold.map(p => ({x: p[0], y: p[1]})), borderColor: "#999", borderWidth: 1, pointRadius: 0, borderDash: [2, 2]});
    const marks = a.markers;
    if (marks.length > 0)
      ds.push({type: "scatter", label: "deploy / rollback / promote", data: marks.map(m => ({x: m.t, y: 0, m: m})),
               pointStyle: "triangle", pointRadius: 7, backgroundColor: marks.map(m => MARKER_COLORS[m.action] || "#000")});
    chart(eq, "equity-" + a.agent, {type: "line", data: {datasets: ds}, options: {
      parsing: true, plugins: {title: {display: true, text: "Cumulative net log return, summed over symbols"},
        tooltip: {callbacks: {label: c => c.raw.m ? c.raw.m.action + " " + c.raw.m.version + (c.raw.m.previous ? " (from " + c.raw.m.previous + ")" : "")
                                                 : c.dataset.label + ": " + num(c.raw.y, 4)}}},
      scales: {x: timeAxis("bar time (UTC)"), y: {title: {display: true, text: "log return (sum over symbols)"}}}}});
    eq.appendChild(el("p", {"class": "note"}, "Markers on the zero line: the bar from which a version was champion, by how it got there: deployment (blue), rollback (orange), automatic rollback (red), promotion (green). A decision at bar t earns the return to bar t+1. The ledger keeps the last " + a.ledger_retention_days + " days of bars (ledger_retention_days); live_performance's totals cover every bar."));
  }

  // 2. Version timeline: holdout and live Sharpe.
  const vt = el("div");
  vt.appendChild(el("h3", {}, "Versions: holdout and live Sharpe"));
  grid.appendChild(vt);
  if (a.versions.length === 0) empty(vt, "No model version registered yet: train one with rl_mlops.retrain() or import one.");
  else chart(vt, "versions-" + a.agent, {type: "bar", data: {labels: a.versions.map(v => v.version + " (" + v.state + ")"), datasets: [
      {label: "holdout Sharpe", data: a.versions.map(v => v.holdout_sharpe), backgroundColor: "#1f77b4"},
      {label: "live Sharpe", data: a.versions.map(v => v.live_sharpe), backgroundColor: "#2ca02c"}]},
    options: {plugins: {title: {display: true, text: "Annualised Sharpe ratio per version (oldest first)"}},
      scales: {x: {title: {display: true, text: "version (state)"}}, y: {title: {display: true, text: "Sharpe ratio (annualised)"}}}}});

  // 3. Training runs.
  const tr = el("div");
  tr.appendChild(el("h3", {}, "Training runs"));
  grid.appendChild(tr);
  const done = a.runs.filter(r => r.duration_s != null);
  if (done.length === 0) empty(tr, a.runs.length ? "No finished training run yet." : "No training run yet: rl_mlops.retrain() starts one.");
  else chart(tr, "runs-" + a.agent, {type: "bar", data: {labels: done.map(r => "run " + r.id), datasets: [
      {label: "duration (s)", data: done.map(r => r.duration_s), backgroundColor: "#9467bd", yAxisID: "y"},
      {type: "line", label: "samples/s", data: done.map(r => r.samples_per_second), borderColor: "#ff7f0e", yAxisID: "y1"}]},
    options: {plugins: {title: {display: true, text: "Duration and throughput of each run"}},
      scales: {x: {title: {display: true, text: "training run"}}, y: {title: {display: true, text: "duration (seconds)"}, position: "left"},
               y1: {title: {display: true, text: "samples per second"}, position: "right", grid: {drawOnChartArea: false}}}}});

  // Tables: alerts, probation, challengers, runs.
  const tb = el("div", {"class": "wide"});
  grid.appendChild(tb);
  tb.appendChild(el("h3", {}, "Alerts of the last monitor() call"));
  const alerts = a.last_call ? [...(a.last_call.actions || []).map(x => ["action", x]), ...(a.last_call.alerts || []).map(x => ["alert", x]),
                                ...(a.last_call.errors || []).map(x => ["error", x])] : [];
  if (!a.last_call) empty(tb, "monitor() has not run for this agent.");
  else if (alerts.length === 0) tb.appendChild(el("p", {}, "None at " + utc(a.last_call.at) + "."));
  else table(tb, ["kind", "message"], alerts);
  tb.appendChild(el("h3", {}, "Probation: the champion against the version it replaced"));
  if (!a.probation) empty(tb, "No champion in probation.");
  else table(tb, ["champion", "predecessor", "paired bars", "mean difference per bar", "log Lambda", "threshold", "p-value"],
             [[a.probation.champion, a.probation.predecessor, a.probation.paired_decisions, num(a.probation.mean_difference, 6),
               num(a.probation.statistic), num(a.probation.threshold), num(a.probation.p_value, 4)]]);
  tb.appendChild(el("h3", {}, "Challengers"));
  if (a.challengers.length === 0) empty(tb, "No challenger.");
  else table(tb, ["version", "mode", "share", "since", "paired bars", "mean difference", "log Lambda", "threshold", "p (Holm)", "beats champion"],
             a.challengers.map(c => [c.version, c.mode, c.traffic_share, utc(Date.parse(c.since)), c.paired_decisions,
                                     num(c.mean_difference, 6), num(c.test_statistic), num(c.test_threshold), num(c.p_value_holm, 4),
                                     c.beats_champion ? "yes" : "no"]));
  tb.appendChild(el("h3", {}, "Training runs (last 50)"));
  if (a.runs.length === 0) empty(tb, "No training run yet.");
  else table(tb, ["run", "state", "trigger", "started", "duration (s)", "samples/s", "final loss", "epochs", "version", "error"],
             a.runs.slice().reverse().map(r => [r.id, r.state, r.trigger, utc(r.started), r.duration_s == null ? "" : num(r.duration_s, 1),
                                                r.samples_per_second == null ? "" : Math.round(r.samples_per_second), num(r.loss, 4),
                                                r.epochs, r.version || "", r.error || ""]));
  tb.appendChild(el("p", {"class": "note"}, "Per-epoch loss is not kept: each run stores its final PPO loss (policy + value + entropy terms)."));
}

document.getElementById("generated").textContent = "database " + DATA.database + " \u00b7 generated " + utc(DATA.generated_at);
const root = document.getElementById("agents");
if (DATA.agents.length === 0) empty(root, "No agent yet: rl_mlops.create_agent() makes one.");
DATA.agents.forEach(a => agentSection(a, root));
document.body.setAttribute("data-charts-expected", expected);
document.body.setAttribute("data-charts-rendered", rendered);
document.body.setAttribute("data-resources-fetched", performance.getEntriesByType("resource").length);
document.body.setAttribute("data-ready", "true");
</script>
</body>
</html>
$html$
$page$;

-- The helpers read with the caller's privileges and show nothing by
-- themselves: like status()'s, they stay executable; the page is granted.
REVOKE ALL ON FUNCTION rl_mlops.dashboard(text) FROM PUBLIC;
