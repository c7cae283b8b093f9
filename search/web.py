"""The search page (`trimo-search serve INDEX`): a FastAPI app with one HTML page and a JSON API.

    GET  /                      the page: a query box, hits with rendered previews, a moment view
    GET  /api/query?q=&k=       text -> motion hits (search.library.Hit as JSON)
    POST /api/query_motion      an uploaded clip (.bvh, or joints / features .npy) -> hits
    GET  /api/moments?q=&k=[&motion=ID]   moments with the head's P_start / P_end per snippet
    GET  /preview?id=&start=&end=         an mp4 of that part of a motion (capsule body, 10 fps),
                                          rendered once and cached beside the index

Every answer goes through search.library.Searcher, the library API the CLI uses.
"""
from __future__ import annotations

import hashlib
import tempfile
from dataclasses import asdict
from pathlib import Path

import numpy as np
from fastapi import FastAPI, File, HTTPException, UploadFile
from fastapi.responses import HTMLResponse, Response

from search.library import FPS, MotionIndex, Searcher, SkippedFile, read_file_motions

PREVIEW_FPS, PREVIEW_SIZE = 10.0, 192
UPLOAD_SUFFIXES = (".bvh", ".npy")


def create_app(searcher: Searcher, index: MotionIndex, cache_dir: str | Path) -> FastAPI:
    searcher.check(index)
    cache = Path(cache_dir)
    cache.mkdir(parents=True, exist_ok=True)
    app = FastAPI(title="trimo search")

    @app.get("/", response_class=HTMLResponse)
    def page() -> str:
        return PAGE.replace("{{TITLE}}", f"{len(index)} motions, model {Path(index.model).name}")

    @app.get("/api/query")
    def query(q: str, k: int = 5) -> list[dict]:
        return [asdict(h) for h in searcher.search_text(index, q, k)]

    @app.post("/api/query_motion")
    async def query_motion(file: UploadFile = File(...), k: int = 5) -> list[dict]:
        suffix = Path(file.filename or "").suffix.lower()
        if suffix not in UPLOAD_SUFFIXES:
            raise HTTPException(400, f"{file.filename}: upload a {' or '.join(UPLOAD_SUFFIXES)} clip")
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / f"upload{suffix}"
            path.write_bytes(await file.read())
            try:
                [(_, features)] = read_file_motions(path, searcher.motion_features)
            except SkippedFile as err:
                raise HTTPException(400, f"{file.filename}: {err}") from None
        return [asdict(h) for h in searcher.search_motion(index, features, k)]

    @app.get("/api/moments")
    def moments(q: str, k: int = 3, motion: str | None = None) -> list[dict]:
        try:
            return [asdict(m) for m in searcher.moments(index, q, k, motion_id=motion)]
        except KeyError as err:
            raise HTTPException(404, str(err.args[0])) from None

    @app.get("/preview")
    def preview(id: str, start: float = 0.0, end: float | None = None) -> Response:
        try:
            position = index.position(id)
        except KeyError as err:
            raise HTTPException(404, str(err.args[0])) from None
        features = index.features[position]
        first = max(0, min(int(start * FPS), len(features) - 2))
        stop = len(features) if end is None else max(first + 2, min(int(round(end * FPS)), len(features)))
        name = hashlib.sha256(f"{index.fingerprint}/{id}/{first}/{stop}".encode()).hexdigest()[:24] + ".mp4"
        if not (cache / name).is_file():
            _render(features[first:stop], cache / name)
        return Response((cache / name).read_bytes(), media_type="video/mp4")

    return app


def _render(features: np.ndarray, out: Path) -> None:
    from motion.features import features_to_joints
    from render import render_joints

    joints = features_to_joints(np.asarray(features, np.float64))[::int(FPS // PREVIEW_FPS)]
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_bytes(render_joints(joints, size=PREVIEW_SIZE, fps=PREVIEW_FPS))
    tmp.replace(out)


def serve(searcher: Searcher, index: MotionIndex, cache_dir: str | Path, host: str = "127.0.0.1",
          port: int = 7860) -> None:
    import uvicorn

    print(f"trimo-search: serving {len(index)} motions on http://{host}:{port}/ (Ctrl-C stops)")
    uvicorn.run(create_app(searcher, index, cache_dir), host=host, port=port, log_level="warning")


PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>trimo search</title>
<style>
 body { font-family: system-ui, sans-serif; margin: 1.5em; max-width: 70em; color: #222; }
 form { display: flex; gap: .5em; margin-bottom: .6em; } #q { flex: 1; font-size: 1.1em; padding: .3em; }
 .hit { display: flex; gap: 1em; align-items: center; border-bottom: 1px solid #ddd; padding: .4em 0; }
 .hit video { width: 192px; height: 192px; background: #f4f4f4; } .score { font-family: monospace; }
 #moments { margin-top: 1em; } #moments svg { border: 1px solid #ccc; background: #fafafa; }
 .legend span { margin-right: 1em; } .error { color: #b00; }
</style></head><body>
<h2>trimo search <small style="color:#777">({{TITLE}})</small></h2>
<form id="text-form"><input id="q" placeholder="describe a motion, e.g. a person walks forward" autofocus>
 <button id="search" type="submit">Search</button></form>
<form id="clip-form">or find motions like a clip (.bvh, .npy): <input id="clip" type="file" accept=".bvh,.npy">
 <button id="clip-search" type="submit">Search by clip</button></form>
<div id="status"></div><div id="results"></div><div id="moments"></div>
<script>
const $ = (id) => document.getElementById(id);
function fmt(x) { return x.toFixed(1); }
function showHits(hits, query) {
  $("status").textContent = hits.length + " results";
  $("results").innerHTML = ""; $("moments").innerHTML = "";
  hits.forEach((h, i) => {
    const row = document.createElement("div"); row.className = "hit";
    const src = "/preview?id=" + encodeURIComponent(h.id) + "&start=" + h.start_s + "&end=" + h.end_s;
    row.innerHTML = `<b>${i + 1}</b><video class="preview" src="${src}" autoplay loop muted playsinline></video>
      <div><div class="id">${h.id}</div><div class="score">score ${h.score.toFixed(3)}</div>
      <div>best part ${fmt(h.start_s)}-${fmt(h.end_s)} s</div></div>`;
    if (query) {
      const b = document.createElement("button"); b.className = "moments-btn"; b.textContent = "Where?";
      b.onclick = () => showMoments(query, h.id); row.appendChild(b);
    }
    $("results").appendChild(row);
  });
}
function curve(values, width, height, color) {
  const n = values.length, max = Math.max(...values, 1e-9);
  const pts = values.map((v, i) => `${(i + 0.5) * width / n},${height - v / max * (height - 10)}`).join(" ");
  return `<polyline class="curve" points="${pts}" fill="none" stroke="${color}" stroke-width="2"/>`;
}
async function showMoments(query, id) {
  const r = await fetch("/api/moments?k=3&q=" + encodeURIComponent(query) + "&motion=" + encodeURIComponent(id));
  const found = await r.json(); const W = 800, H = 160;
  if (!found.length) { $("moments").textContent = "no moment found"; return; }
  const m = found[0], x = (t) => t / m.duration_s * W;
  let svg = `<svg id="timeline" width="${W}" height="${H + 20}"><rect class="span" x="${x(m.start_s)}" y="0"
    width="${x(m.end_s) - x(m.start_s)}" height="${H}" fill="#8fd18f" opacity="0.45"/>`;
  if (m.p_start.length) svg += curve(m.p_start, W, H, "#1f77b4") + curve(m.p_end, W, H, "#ff7f0e");
  for (let t = 0; t <= m.duration_s; t += Math.max(1, Math.round(m.duration_s / 10)))
    svg += `<text x="${x(t)}" y="${H + 15}" font-size="11">${t}s</text>`;
  svg += "</svg>";
  const src = "/preview?id=" + encodeURIComponent(id) + "&start=" + m.start_s + "&end=" + m.end_s;
  $("moments").innerHTML = `<h3>"${query}" in ${id}</h3><div class="legend">
    <span style="color:#1f77b4">P_start</span><span style="color:#ff7f0e">P_end</span>
    <span style="color:#3a3">predicted span ${fmt(m.start_s)}-${fmt(m.end_s)} s (${m.method})</span></div>${svg}
    <div><video class="moment-preview" src="${src}" autoplay loop muted playsinline width="192" height="192"></video></div>
    <ol>${found.map((f) => `<li class="moment">${fmt(f.start_s)}-${fmt(f.end_s)} s, score ${f.score.toExponential(2)}</li>`).join("")}</ol>`;
}
async function answer(r, query) {
  if (!r.ok) { $("status").innerHTML = `<span class="error">${(await r.json()).detail}</span>`; return; }
  showHits(await r.json(), query);
}
$("text-form").onsubmit = async (e) => {
  e.preventDefault(); const q = $("q").value.trim(); if (!q) return;
  $("status").textContent = "searching ...";
  answer(await fetch("/api/query?k=5&q=" + encodeURIComponent(q)), q);
};
$("clip-form").onsubmit = async (e) => {
  e.preventDefault(); if (!$("clip").files.length) return;
  const body = new FormData(); body.append("file", $("clip").files[0]);
  $("status").textContent = "searching ...";
  answer(await fetch("/api/query_motion?k=5", {method: "POST", body}), null);
};
</script></body></html>
"""
