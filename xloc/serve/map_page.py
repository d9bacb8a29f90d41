"""The live map page: the environment's area (over its floor plan, if one was uploaded), reference points, APs/BSs
and the latest located positions with error circles, redrawn every second from ``/environments/{id}/map-data``;
a selector pins the serving model version; a line gives the site's drift score every 30 s. Open it as
``/environments/{id}/map#key=ENV_KEY`` (the fragment stays in the browser)."""

from __future__ import annotations

import base64
import hashlib
import html

__all__ = ["map_html", "MAP_CSP"]

_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>xloc map</title>
<style>
 body { font-family: system-ui, sans-serif; margin: 1rem; color: #222; }
 canvas { border: 1px solid #bbb; background: #fbfbf8; }
 .legend span { margin-right: 1.2rem; }
 .ref { color: #777; } .ap { color: #c0392b; } .located { color: #1f6fd1; }
 #status, #hover, #drift { color: #666; font-size: 0.9rem; }
 .controls { margin: 0.4rem 0; font-size: 0.9rem; }
</style></head>
<body data-env-id="__ENV_ID__">
<h1 id="title">xloc map</h1>
<div class="legend"><span class="ref">&#9679; reference points</span>
<span class="ap">&#9650; APs / BSs</span>
<span class="located">&#9679; located, circle = uncertainty</span></div>
<div class="controls"><label>serving model version <select id="version"></select></label></div>
<canvas id="map" width="900" height="600" data-drawn="0" data-floor-plan="0"></canvas>
<p id="status">loading...</p>
<p id="drift">drift: waiting for located scans</p>
<p id="hover">hover over a located position for its details</p>
<script>
const envId = encodeURIComponent(document.body.dataset.envId);
const key = new URLSearchParams(location.hash.slice(1)).get("key");
const canvas = document.getElementById("map"), ctx = canvas.getContext("2d");
const status = document.getElementById("status");

const versionSelect = document.getElementById("version");
let references = [], polls = 0, last = null, view = null, plan = null, planAt = null, versionsShown = "";

function niceStep(span) {  // 1, 2 or 5 x 10^k metres: about 6 ticks across the span
  const raw = span / 6, p = Math.pow(10, Math.floor(Math.log10(raw)));
  return [1, 2, 5, 10].map(m => m * p).find(v => v >= raw);
}

function axes(x0, x1, y0, y1, X, Y, s) {
  ctx.fillStyle = "#555"; ctx.strokeStyle = "#ddd"; ctx.font = "11px system-ui"; ctx.lineWidth = 1;
  const step = niceStep(Math.max(x1 - x0, y1 - y0));
  for (let x = Math.ceil(x0 / step) * step; x <= x1 + 1e-9; x += step) {
    ctx.beginPath(); ctx.moveTo(X(x), Y(y0)); ctx.lineTo(X(x), Y(y1)); ctx.stroke();
    ctx.textAlign = "center"; ctx.fillText(`${+x.toFixed(3)}`, X(x), Y(y0) + 14);
  }
  for (let y = Math.ceil(y0 / step) * step; y <= y1 + 1e-9; y += step) {
    ctx.beginPath(); ctx.moveTo(X(x0), Y(y)); ctx.lineTo(X(x1), Y(y)); ctx.stroke();
    ctx.textAlign = "right"; ctx.fillText(`${+y.toFixed(3)}`, X(x0) - 4, Y(y) + 4);
  }
  ctx.textAlign = "left"; ctx.fillText("x [m]", X(x1) - 30, Y(y0) + 26);
  // scale bar: one step in metres, bottom right
  const bx = canvas.width - 50 - step * s, by = canvas.height - 8;
  ctx.strokeStyle = "#222"; ctx.lineWidth = 2;
  ctx.beginPath(); ctx.moveTo(bx, by); ctx.lineTo(bx + step * s, by); ctx.stroke();
  ctx.fillStyle = "#222"; ctx.fillText(`${step} m`, bx + step * s + 4, by + 3); ctx.lineWidth = 1;
}

function extent(d) {
  if (d.bounds_m) return d.bounds_m;
  const pts = references.concat(d.ap_positions_m || [], d.located.map(p => [p.x_m, p.y_m]));
  if (!pts.length) return [0, 1, 0, 1];
  const xs = pts.map(p => p[0]), ys = pts.map(p => p[1]);
  return [Math.min(...xs) - 1, Math.max(...xs) + 1, Math.min(...ys) - 1, Math.max(...ys) + 1];
}

function draw(d) {
  const [x0, x1, y0, y1] = extent(d);
  const pad = 40, s = Math.min((canvas.width - 2 * pad) / (x1 - x0), (canvas.height - 2 * pad) / (y1 - y0));
  const X = x => pad + (x - x0) * s, Y = y => canvas.height - pad - (y - y0) * s;
  ctx.clearRect(0, 0, canvas.width, canvas.height);
  if (plan && d.bounds_m) {  // the floor plan stretched over the site's bounds
    const [b0, b1, b2, b3] = d.bounds_m;
    ctx.globalAlpha = 0.6; ctx.drawImage(plan, X(b0), Y(b3), (b1 - b0) * s, (b3 - b2) * s); ctx.globalAlpha = 1;
  }
  canvas.dataset.floorPlan = plan && d.bounds_m ? "1" : "0";
  axes(x0, x1, y0, y1, X, Y, s);
  last = d; view = {X, Y};
  ctx.strokeStyle = "#333"; ctx.strokeRect(X(x0), Y(y1), (x1 - x0) * s, (y1 - y0) * s);
  ctx.fillStyle = "#777";
  for (const [x, y] of references) { ctx.beginPath(); ctx.arc(X(x), Y(y), 2.5, 0, 7); ctx.fill(); }
  ctx.fillStyle = "#c0392b";
  for (const [x, y] of d.ap_positions_m || []) {
    ctx.beginPath(); ctx.moveTo(X(x), Y(y) - 7); ctx.lineTo(X(x) - 6, Y(y) + 5); ctx.lineTo(X(x) + 6, Y(y) + 5);
    ctx.fill();
  }
  d.located.forEach((p, i) => {
    const alpha = 0.25 + 0.75 * (i + 1) / d.located.length;
    ctx.fillStyle = `rgba(31,111,209,${alpha})`; ctx.strokeStyle = `rgba(31,111,209,${alpha * 0.6})`;
    if (p.uncertainty_m) { ctx.beginPath(); ctx.arc(X(p.x_m), Y(p.y_m), p.uncertainty_m * s, 0, 7); ctx.stroke(); }
    ctx.beginPath(); ctx.arc(X(p.x_m), Y(p.y_m), 4, 0, 7); ctx.fill();
  });
  canvas.dataset.drawn = String(Number(canvas.dataset.drawn) + 1);
  canvas.dataset.references = String(d.n_references);
  canvas.dataset.located = String(d.located.length);
  document.getElementById("title").textContent = `xloc map: ${d.name}`;
  const shown = references.length < d.n_references ? ` (${references.length} drawn)` : "";
  status.textContent = `${d.n_references} reference points${shown}, ${d.located.length} located, ` +
    `serving version ${d.serving_version ?? "none"} (updated ${new Date().toLocaleTimeString()})`;
}

canvas.addEventListener("mousemove", ev => {
  if (!last || !view || !last.located.length) return;
  const r = canvas.getBoundingClientRect(), mx = ev.clientX - r.left, my = ev.clientY - r.top;
  let best = null, bestD = 12;  // pixels
  for (const p of last.located) {
    const dd = Math.hypot(view.X(p.x_m) - mx, view.Y(p.y_m) - my);
    if (dd < bestD) { best = p; bestD = dd; }
  }
  document.getElementById("hover").textContent = best === null ? "hover over a located position for its details" :
    `located at (${best.x_m.toFixed(2)}, ${best.y_m.toFixed(2)}) m, uncertainty ` +
    `${best.uncertainty_m === null ? "not given" : best.uncertainty_m.toFixed(2) + " m"}, ` +
    `${new Date(best.t * 1000).toLocaleTimeString()}`;
});

function showVersions(d) {
  const shown = JSON.stringify([d.versions, d.pinned_version, d.serving_version]);
  if (shown === versionsShown) return;  // rebuilt only when something changed, not under the user's pointer
  versionsShown = shown;
  versionSelect.replaceChildren();
  const latest = d.versions.length ? d.versions[d.versions.length - 1] : null;
  versionSelect.add(new Option(latest === null ? "latest (none yet)" : `latest (${latest})`, ""));
  for (const v of d.versions) {
    versionSelect.add(new Option(d.pinned_version === v ? `version ${v} (pinned)` : `version ${v}`, String(v)));
  }
  versionSelect.value = d.pinned_version === null ? "" : String(d.pinned_version);
}

versionSelect.addEventListener("change", async () => {
  const v = versionSelect.value === "" ? null : Number(versionSelect.value);
  const r = await fetch(`/environments/${envId}/pin`, {method: "PUT", body: JSON.stringify({version: v}),
    headers: {"X-API-Key": key || "", "Content-Type": "application/json"}});
  if (!r.ok) status.textContent = `error ${r.status} pinning: ${(await r.json()).detail}`;
  versionsShown = ""; refresh();
});

async function loadPlan(at) {
  planAt = at;
  if (at === null) { plan = null; return; }
  const r = await fetch(`/environments/${envId}/floor-plan`, {headers: {"X-API-Key": key || ""}});
  plan = r.ok ? await createImageBitmap(await r.blob()) : null;
}

async function refresh() {
  try {
    // the reference points change rarely: fetch them on the first poll and every 30th, only the rest in between
    const withRefs = polls++ % 30 === 0;
    const r = await fetch(`/environments/${envId}/map-data?references=${withRefs}`,
                          {headers: {"X-API-Key": key || ""}});
    const body = await r.json();
    if (!r.ok) { status.textContent = `error ${r.status}: ${body.detail}`; return; }
    if (body.references_m) references = body.references_m;
    if (body.floor_plan_updated_at !== planAt) await loadPlan(body.floor_plan_updated_at);
    showVersions(body);
    draw(body);
  } catch (e) { status.textContent = `error: ${e}`; }
}
const driftLine = document.getElementById("drift");
async function refreshDrift() {  // the score costs a permutation test: every 30 s, not every second
  try {
    const r = await fetch(`/environments/${envId}/drift`, {headers: {"X-API-Key": key || ""}});
    const d = await r.json();
    if (!r.ok) { driftLine.textContent = `drift: ${d.detail}`; return; }
    if (d.z === null) { driftLine.textContent = `drift: ${d.message}`; return; }
    const gone = d.aps_gone.length ? `; APs gone: ${d.aps_gone.join(", ")}` : "";
    driftLine.textContent = `drift vs version ${d.version} (${d.scans} recent scans): z = ${d.z.toFixed(1)}, ` +
      `p = ${d.p_value.toFixed(3)}, mean level shift ${d.mean_shift_db ?? "?"} dB${gone}. ${d.message}`;
    driftLine.style.color = d.drifted ? "#b03a2e" : "#666";
  } catch (e) { driftLine.textContent = `drift: error ${e}`; }
}
if (!key) status.textContent = "add #key=YOUR_ENVIRONMENT_KEY to the address";
else { refresh(); setInterval(refresh, 1000); refreshDrift(); setInterval(refreshDrift, 30000); }
</script></body></html>
"""


def _between(text: str, start: str, end: str) -> str:
    return text[text.index(start) + len(start):text.index(end)]


def _sha256(text: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode()).digest()).decode() + "'"


#: The page's Content-Security-Policy: only its own inline script and style (pinned by hash, so no injected
#: script runs), fetches to this origin, no frames, forms or base changes.
MAP_CSP = (f"default-src 'none'; script-src {_sha256(_between(_PAGE, '<script>', '</script>'))}; "
           f"style-src {_sha256(_between(_PAGE, '<style>', '</style>'))}; connect-src 'self'; "
           "frame-ancestors 'none'; base-uri 'none'; form-action 'none'")


def map_html(env_id: str) -> str:
    """The page for environment ``env_id``; the id travels HTML-escaped in a data attribute, never in the script."""
    return _PAGE.replace("__ENV_ID__", html.escape(env_id, quote=True))
