"""The live map page: the environment's area, reference points, APs/BSs and the latest located positions with
error circles, redrawn every second from ``/environments/{id}/map-data``. Open it as
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
 #status { color: #666; font-size: 0.9rem; }
</style></head>
<body data-env-id="__ENV_ID__">
<h1 id="title">xloc map</h1>
<div class="legend"><span class="ref">&#9679; reference points</span>
<span class="ap">&#9650; APs / BSs</span>
<span class="located">&#9679; located, circle = uncertainty</span></div>
<canvas id="map" width="900" height="600" data-drawn="0"></canvas>
<p id="status">loading...</p>
<script>
const envId = encodeURIComponent(document.body.dataset.envId);
const key = new URLSearchParams(location.hash.slice(1)).get("key");
const canvas = document.getElementById("map"), ctx = canvas.getContext("2d");
const status = document.getElementById("status");

let references = [], polls = 0;

function extent(d) {
  if (d.bounds_m) return d.bounds_m;
  const pts = references.concat(d.ap_positions_m || [], d.located.map(p => [p.x_m, p.y_m]));
  if (!pts.length) return [0, 1, 0, 1];
  const xs = pts.map(p => p[0]), ys = pts.map(p => p[1]);
  return [Math.min(...xs) - 1, Math.max(...xs) + 1, Math.min(...ys) - 1, Math.max(...ys) + 1];
}

function draw(d) {
  const [x0, x1, y0, y1] = extent(d);
  const pad = 30, s = Math.min((canvas.width - 2 * pad) / (x1 - x0), (canvas.height - 2 * pad) / (y1 - y0));
  const X = x => pad + (x - x0) * s, Y = y => canvas.height - pad - (y - y0) * s;
  ctx.clearRect(0, 0, canvas.width, canvas.height);
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

async function refresh() {
  try {
    // the reference points change rarely: fetch them on the first poll and every 30th, only the rest in between
    const withRefs = polls++ % 30 === 0;
    const r = await fetch(`/environments/${envId}/map-data?references=${withRefs}`,
                          {headers: {"X-API-Key": key || ""}});
    const body = await r.json();
    if (!r.ok) { status.textContent = `error ${r.status}: ${body.detail}`; return; }
    if (body.references_m) references = body.references_m;
    draw(body);
  } catch (e) { status.textContent = `error: ${e}`; }
}
if (!key) status.textContent = "add #key=YOUR_ENVIRONMENT_KEY to the address";
else { refresh(); setInterval(refresh, 1000); }
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
