// The operator's dashboard: camera grid, live scores, events, a camera page, add/remove cameras.
// Plain ES module, no framework: the API (REST under /v1, WebSocket /v1/ws) is documented in service/README.md.

const KEY_STORE = "ffp.apiKey";  // sessionStorage: the key lives as long as the tab
const SPARK_POINTS = 150;        // smoothed scores kept per camera (15 s at 10 fps)
const STATUS_EVERY_MS = 2000;
const FRAME_EVERY_MS = 500;      // grid tiles refresh their picture this often (the camera page streams MJPEG)
const MAX_EVENTS = 100;

const $ = (id) => document.getElementById(id);
const cameras = new Map();       // id -> {status, scores: number[], tile, busy, url}
const events = new Map();        // id -> event (REST shape = WebSocket `event` field)
const imageCache = new Map();    // "url@peak_ts" -> object URL of a JPEG fetched with the key
let lastSeq = null;              // last event seq seen: the WebSocket resumes from it
let ws = null;
let wsBackoff = 1000;
let wsTimer = null;
let started = false;
let timers = [];

class AuthError extends Error {}

// -- API key ---------------------------------------------------------------------------------------------

const apiKey = () => sessionStorage.getItem(KEY_STORE) || "";

function askKey(message) {
  stop();
  setConn("refused", "API key needed");
  const dlg = $("key-dialog");
  $("key-error").textContent = message || "";
  $("key-error").hidden = !message;
  $("key-input").value = "";
  if (!dlg.open) dlg.showModal();
  $("key-input").focus();
}

$("key-form").addEventListener("submit", (e) => {
  e.preventDefault();
  sessionStorage.setItem(KEY_STORE, $("key-input").value.trim());
  $("key-dialog").close();
  start();
});
$("key-dialog").addEventListener("cancel", (e) => e.preventDefault());  // nothing works without it

// -- REST --------------------------------------------------------------------------------------------------

async function api(path, options = {}) {
  const headers = { ...(options.headers || {}) };
  if (apiKey()) headers["X-API-Key"] = apiKey();
  const r = await fetch(path, { ...options, headers });
  if (r.status === 401) {
    askKey("The service refused this API key.");
    throw new AuthError("401");
  }
  return r;
}

async function apiJson(path, options) {
  const r = await api(path, options);
  if (!r.ok) throw new Error(await detail(r));
  return r.status === 204 ? null : r.json();
}

async function detail(r) {
  try {
    const body = await r.json();
    if (Array.isArray(body.detail)) return body.detail.map((d) => `${d.loc.slice(1).join(".")}: ${d.msg}`).join("; ");
    return body.detail || `${r.status} ${r.statusText}`;
  } catch {
    return `${r.status} ${r.statusText}`;
  }
}

// An <img> cannot send the key header: event images and grid pictures are fetched as blobs.
async function blobUrl(path) {
  const r = await api(path);
  if (!r.ok) return null;
  return URL.createObjectURL(await r.blob());
}

// For the MJPEG <img>: the key as a query parameter (the server redacts it from its logs).
function withKey(path) {
  if (!apiKey()) return path;
  return `${path}${path.includes("?") ? "&" : "?"}api_key=${encodeURIComponent(apiKey())}`;
}

// -- lifecycle ---------------------------------------------------------------------------------------------

async function boot() {
  const cfg = await (await fetch("/ui/config.json")).json();
  if (cfg.api_key_required && !apiKey()) askKey("");
  else start();
}

async function start() {
  stop();
  started = true;
  try {
    // Events up to `last_event_seq` come from the list; the WebSocket replays everything after it: no gap.
    const stats = await apiJson("/v1/stats");
    lastSeq = stats.last_event_seq ?? 0;
    const list = await apiJson(`/v1/events?limit=${MAX_EVENTS}`);
    for (const ev of list.events) events.set(ev.id, ev);
    await refreshCameras();
  } catch (e) {
    if (e instanceof AuthError) return;
    throw e;
  }
  renderEvents();
  connectWs();
  timers.push(setInterval(() => refreshCameras().catch(ignoreAuth), STATUS_EVERY_MS));
  timers.push(setInterval(refreshPictures, FRAME_EVERY_MS));
  route();
}

function stop() {
  started = false;
  timers.forEach(clearInterval);
  timers = [];
  clearTimeout(wsTimer);
  if (ws) {
    ws.onclose = null;
    ws.close();
    ws = null;
  }
  $("cam-stream").removeAttribute("src");
}

function ignoreAuth(e) {
  if (!(e instanceof AuthError)) console.warn(e);
}

// -- WebSocket ---------------------------------------------------------------------------------------------

function setConn(state, text) {
  const el = $("conn");
  el.dataset.state = state;
  el.textContent = text || state;
}

function connectWs() {
  const params = new URLSearchParams();
  if (lastSeq !== null) params.set("resume_from", String(lastSeq));
  if (apiKey()) params.set("api_key", apiKey());
  const proto = location.protocol === "https:" ? "wss" : "ws";
  const sock = new WebSocket(`${proto}://${location.host}/v1/ws?${params}`);
  ws = sock;
  setConn("connecting", "connecting");
  sock.onmessage = (m) => onMessage(JSON.parse(m.data));
  sock.onclose = (e) => {
    if (ws !== sock) return;
    ws = null;
    if (e.code === 1008) {
      askKey("The service refused this API key.");
      return;
    }
    // 4000: this tab fell behind on events; any other close: the service restarted or the network dropped.
    setConn("reconnecting", `reconnecting in ${Math.round(wsBackoff / 1000)} s`);
    wsTimer = setTimeout(connectWs, wsBackoff * (0.8 + 0.4 * Math.random()));
    wsBackoff = Math.min(wsBackoff * 2, 30000);
  };
}

function onMessage(msg) {
  if (msg.type === "subscribed") {
    wsBackoff = 1000;
    setConn("live", "live");
  } else if (msg.type === "score") {
    onScore(msg);
  } else if (msg.type === "event") {
    lastSeq = Math.max(lastSeq ?? 0, msg.seq);
    events.set(msg.event.id, msg.event);
    renderEvents();
  } else if (msg.type === "camera") {
    const cam = cameras.get(msg.camera_id);
    if (!cam) return;
    Object.assign(cam.status, { mode: msg.mode, learning: msg.learning });
    cam.status.model = { ...(cam.status.model || {}), version: msg.model };
    updateTile(cam);
    if (currentCamera() === msg.camera_id) renderCameraPage();
  } else if (msg.type === "heartbeat" && msg.last_seq !== null) {
    lastSeq = Math.max(lastSeq ?? 0, msg.last_seq);
  }
}

function onScore(msg) {
  const cam = cameras.get(msg.camera_id);
  if (!cam || msg.smoothed === null) return;
  cam.scores.push(msg.smoothed);
  if (cam.scores.length > SPARK_POINTS) cam.scores.shift();
  updateScore(cam);
}

// -- cameras -----------------------------------------------------------------------------------------------

async function refreshCameras() {
  const list = await apiJson("/v1/cameras");
  const seen = new Set();
  for (const status of list) {
    seen.add(status.id);
    let cam = cameras.get(status.id);
    if (!cam) {
      cam = { status, scores: [], tile: makeTile(status.id), busy: false, url: null };
      cameras.set(status.id, cam);
    }
    cam.status = status;
    updateTile(cam);
  }
  for (const [id, cam] of cameras) {
    if (!seen.has(id)) {
      cam.tile.remove();
      if (cam.url) URL.revokeObjectURL(cam.url);
      cameras.delete(id);
    }
  }
  const grid = $("grid");
  for (const id of [...cameras.keys()].sort()) grid.appendChild(cameras.get(id).tile);
  $("grid-empty").hidden = cameras.size > 0;
  if (currentCamera()) renderCameraPage();
}

function el(tag, cls, text) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined) e.textContent = text;
  return e;
}

function makeTile(id) {
  const tile = el("article", "tile");
  tile.dataset.camera = id;
  const pic = el("div", "picture");
  const img = el("img", "frame");
  img.alt = `camera ${id}`;
  pic.append(img, el("span", "placeholder", "no picture yet"));
  const head = el("div", "tile-head");
  head.append(el("span", "tile-name", id), el("span", "badge state"), el("span", "badge mode"),
    el("span", "score", "–"));
  const bar = el("div", "progress");
  bar.append(el("div", "progress-fill"));
  const spark = el("canvas", "spark");
  const foot = el("div", "tile-foot");
  foot.append(el("span", "fps"), el("span", "threshold"));
  tile.append(pic, head, bar, spark, foot);
  tile.addEventListener("click", () => { location.hash = `#/camera/${encodeURIComponent(id)}`; });
  return tile;
}

function updateTile(cam) {
  const s = cam.status;
  const badge = cam.tile.querySelector(".state");
  badge.textContent = s.state;
  badge.className = `badge state ${s.state}`;
  badge.title = s.last_error || "";
  updateMode(cam.tile.querySelector(".mode"), cam.tile.querySelector(".progress"), s);
  cam.tile.querySelector(".fps").textContent = `${s.frames_scored} scored · ${s.fps_target} fps`;
  cam.tile.querySelector(".threshold").textContent = s.on_threshold !== null ? `alert ≥ ${s.on_threshold}` : "";
  cam.tile.querySelector(".placeholder").textContent =
    s.last_frame_age_s === null ? (s.last_error ? s.state : "no picture yet") : "";
  cam.tile.classList.toggle("alerting", activeEventOf(s.id) !== undefined);
  updateScore(cam);
}

// The camera's mode: learning (footage recorded, with a progress bar), training (step and ETA; or queued for a
// training slot, its place and ETA), armed, unarmed;
// an armed camera whose model is being refreshed (learning.refresh_days) shows the refresh's progress.
const refreshing = (s) => s.mode === "armed" && Boolean(s.learning && s.learning.refresh);

function learningText(s) {
  const l = s.learning;
  if (!l) return "";
  if (refreshing(s)) {
    return l.phase === "queued" ? "refresh queued" : `refreshing ${Math.round(100 * learningFraction(s))}%`;
  }
  if (s.mode === "learning") return `recording ${l.frames_recorded} / ${l.frames_wanted} frames`;
  if (s.mode === "training" && l.phase === "queued") {
    const place = l.queue_position > 1 ? `${l.queue_position - 1} ahead` : "next";
    const text = l.eta_s !== null ? `queued for training (${place}) · ${Math.ceil(l.eta_s / 60)} min left`
                                  : `queued for training (${place})`;
    return l.error ? `${text} · ${l.error}` : text;  // a training that could not start waits for its retry
  }
  if (s.mode === "training") {
    const step = l.steps_planned ? `step ${l.step ?? 0} / ${l.steps_planned}` : `step ${l.step ?? 0}`;
    return l.eta_s !== null ? `${step} · ${Math.ceil(l.eta_s / 60)} min left` : step;
  }
  if (l.phase === "failed") return `learning failed: ${l.error}`;
  if (l.phase === "cancelled") return "learning cancelled";
  return l.stopped || "";
}

function learningFraction(s) {
  const l = s.learning;
  if (!l) return 0;
  if (s.mode === "learning") return Math.min(1, l.frames_recorded / Math.max(1, l.frames_wanted));
  if (s.mode === "training" || refreshing(s)) return Math.min(1, (l.minutes || 0) / Math.max(1e-9, l.train_minutes));
  return 0;
}

function updateMode(badge, bar, s) {
  const mode = s.mode || "armed";
  badge.textContent = refreshing(s) ? `${mode} · ${learningText(s)}` : mode;
  badge.className = `badge mode ${mode}`;
  badge.title = learningText(s);
  const busy = mode === "learning" || mode === "training" || refreshing(s);
  bar.hidden = !busy;
  bar.title = learningText(s);
  bar.firstChild.style.width = `${(100 * learningFraction(s)).toFixed(1)}%`;
}

function updateScore(cam) {
  const value = cam.scores.length ? cam.scores[cam.scores.length - 1] : null;
  const threshold = cam.status.on_threshold;
  for (const [score, spark] of scoreTargets(cam)) {
    score.textContent = value === null ? "–" : value.toFixed(1);
    score.classList.toggle("high", value !== null && threshold !== null && value >= threshold);
    drawSpark(spark, cam.scores, threshold);
  }
}

function scoreTargets(cam) {
  const out = [[cam.tile.querySelector(".score"), cam.tile.querySelector(".spark")]];
  if (currentCamera() === cam.status.id) out.push([$("cam-score"), $("cam-spark")]);
  return out;
}

// Refresh the grid's pictures, one request per camera at a time, only for cameras that have a frame.
function refreshPictures() {
  if (!started || currentCamera()) return;
  for (const cam of cameras.values()) {
    if (cam.busy || cam.status.last_frame_age_s === null) continue;
    cam.busy = true;
    blobUrl(`/v1/cameras/${encodeURIComponent(cam.status.id)}/frame.jpg`)
      .then((url) => {
        if (!url) return;
        const img = cam.tile.querySelector(".frame");
        const old = cam.url;
        cam.url = url;
        img.src = url;
        if (old) URL.revokeObjectURL(old);
      })
      .catch(ignoreAuth)
      .finally(() => { cam.busy = false; });
  }
}

function drawSpark(canvas, values, threshold) {
  const dpr = window.devicePixelRatio || 1;
  const w = Math.max(1, Math.round(canvas.clientWidth * dpr));
  const h = Math.max(1, Math.round(canvas.clientHeight * dpr));
  if (canvas.width !== w || canvas.height !== h) { canvas.width = w; canvas.height = h; }
  const ctx = canvas.getContext("2d");
  ctx.clearRect(0, 0, w, h);
  const top = Math.max(threshold !== null ? threshold * 1.4 : 1, ...values, 1);
  const bottom = Math.min(0, ...values);
  const y = (v) => h - 3 * dpr - ((v - bottom) / (top - bottom)) * (h - 6 * dpr);
  const x = (i) => (i / (SPARK_POINTS - 1)) * w;
  if (threshold !== null) {
    ctx.strokeStyle = "rgba(249, 115, 22, .8)";
    ctx.setLineDash([4 * dpr, 4 * dpr]);
    ctx.lineWidth = dpr;
    ctx.beginPath(); ctx.moveTo(0, y(threshold)); ctx.lineTo(w, y(threshold)); ctx.stroke();
    ctx.setLineDash([]);
  }
  if (values.length < 2) return;
  const x0 = SPARK_POINTS - values.length;
  ctx.beginPath();
  values.forEach((v, i) => (i ? ctx.lineTo(x(x0 + i), y(v)) : ctx.moveTo(x(x0 + i), y(v))));
  ctx.strokeStyle = "#38bdf8";
  ctx.lineWidth = 1.5 * dpr;
  ctx.stroke();
  ctx.lineTo(x(x0 + values.length - 1), h); ctx.lineTo(x(x0), h); ctx.closePath();
  ctx.fillStyle = "rgba(56, 189, 248, .12)";
  ctx.fill();
}

// -- events ------------------------------------------------------------------------------------------------

const activeEventOf = (cameraId) => [...events.values()].find((e) => e.camera_id === cameraId && e.end_ts === null);
const fmtTime = (ts) => new Date(ts * 1000).toLocaleTimeString();

function sortedEvents(cameraId) {
  const list = [...events.values()].filter((e) => !cameraId || e.camera_id === cameraId);
  return list.sort((a, b) => b.start_ts - a.start_ts).slice(0, MAX_EVENTS);
}

function renderEvents() {
  const all = sortedEvents(null);
  for (const id of [...events.keys()]) if (!all.some((e) => e.id === id)) events.delete(id);
  renderEventList($("events"), all);
  $("events-empty").hidden = all.length > 0;
  const cam = currentCamera();
  if (cam) renderEventList($("cam-events"), sortedEvents(cam));
  for (const c of cameras.values()) c.tile.classList.toggle("alerting", activeEventOf(c.status.id) !== undefined);
}

function renderEventList(list, items) {
  const existing = new Map([...list.children].map((li) => [li.dataset.event, li]));
  for (const ev of items) {
    let li = existing.get(ev.id);
    existing.delete(ev.id);
    if (!li) li = makeEvent(ev.id);
    updateEvent(li, ev);
    list.appendChild(li);  // moves an existing item into order
  }
  for (const li of existing.values()) li.remove();
}

function makeEvent(id) {
  const li = el("li", "event");
  li.dataset.event = id;
  const imgs = el("div", "event-imgs");
  const snap = el("img", "snapshot");
  snap.alt = "snapshot";
  const heat = el("img", "heatmap");
  heat.alt = "error heatmap";
  for (const img of [snap, heat]) img.addEventListener("click", () => showImage(img.src));
  imgs.append(snap, heat);
  const meta = el("div", "event-meta");
  meta.append(el("a", "camera"), el("span", "time"), el("span", "badge"), el("span", "kind"), el("b", "peak"));
  li.append(imgs, meta);
  return li;
}

function updateEvent(li, ev) {
  li.classList.toggle("active", ev.end_ts === null);
  const cam = li.querySelector(".camera");
  cam.textContent = ev.camera_id;
  cam.href = `#/camera/${encodeURIComponent(ev.camera_id)}`;
  li.querySelector(".time").textContent = fmtTime(ev.start_ts);
  const badge = li.querySelector(".badge");
  badge.textContent = ev.end_ts === null ? "active" : `${Math.max(0, ev.end_ts - ev.start_ts).toFixed(1)} s`;
  badge.className = ev.end_ts === null ? "badge alert" : "badge";
  // A scene change is no anomaly: the camera shows another view, and its model should be relearnt.
  const scene = ev.type === "scene_change";
  li.classList.toggle("scene-change", scene);
  li.querySelector(".kind").textContent = scene ? "scene changed: relearn" : "";
  li.querySelector(".peak").textContent = scene ? `${Math.round(ev.peak_score * 100)} % changed`
    : `peak ${ev.peak_score.toFixed(1)}`;
  setEventImage(li.querySelector(".snapshot"), ev.snapshot_url, ev.peak_ts);
  setEventImage(li.querySelector(".heatmap"), ev.heatmap_url, ev.peak_ts);
}

// The image of an open event is rewritten when its peak moves: peak_ts is part of the cache key.
function setEventImage(img, url, peakTs) {
  if (!url) return;
  const key = `${url}@${peakTs}`;
  if (img.dataset.key === key) return;
  img.dataset.key = key;
  const cached = imageCache.get(key);
  if (cached) { img.src = cached; return; }
  blobUrl(url).then((obj) => {
    if (!obj) return;
    imageCache.set(key, obj);
    if (img.dataset.key === key) img.src = obj;
  }).catch(ignoreAuth);
}

function showImage(src) {
  if (!src) return;
  $("image-full").src = src;
  $("image-dialog").showModal();
}

// -- camera page -------------------------------------------------------------------------------------------

function currentCamera() {
  const m = location.hash.match(/^#\/camera\/(.+)$/);
  return m ? decodeURIComponent(m[1]) : null;
}

function route() {
  const id = currentCamera();
  $("view-grid").hidden = id !== null;
  $("view-camera").hidden = id === null;
  $("events-panel").hidden = id !== null;
  $("crumbs").textContent = id ? `/ ${id}` : "";
  $("cam-stream").removeAttribute("src");
  $("cam-stream").dataset.src = "";
  if (id) renderCameraPage();
  renderEvents();
}

const STATUS_FIELDS = [
  ["mode", "mode"], ["state", "state"], ["url", "source"], ["fps_target", "target fps"], ["on_threshold", "alert threshold"],
  ["last_frame_age_s", "last frame (s ago)"], ["frames_captured", "frames captured"],
  ["frames_scored", "frames scored"], ["frames_skipped", "frames skipped"], ["reconnects", "reconnects"],
  ["stalls", "stalls"], ["restarts", "restarts"], ["history_resets", "history resets"], ["last_error", "last error"],
];

function renderCameraPage() {
  const id = currentCamera();
  const cam = cameras.get(id);
  $("cam-title").textContent = id;
  const dl = $("cam-status");
  dl.replaceChildren();
  if (!cam) {
    dl.append(el("dt", "", "state"), el("dd", "", "no such camera"));
    return;
  }
  for (const [key, label] of STATUS_FIELDS) {
    const v = cam.status[key];
    if (v === null || v === undefined) continue;
    dl.append(el("dt", "", label), el("dd", `field-${key}`, String(v)));
  }
  if (cam.status.model) dl.append(el("dt", "", "model"), el("dd", "field-model", cam.status.model.version));
  const st = cam.status.stream;
  if (st) {
    const rate = st.fps === null ? "" : ` · ${st.fps} fps`;
    dl.append(el("dt", "", "stream"), el("dd", "field-stream", `${st.width}x${st.height} ${st.codec || "?"}${rate}`));
  }
  const nextRefresh = cam.status.learning && cam.status.learning.next_refresh;
  if (nextRefresh) {
    dl.append(el("dt", "", "next refresh"), el("dd", "field-next_refresh", new Date(nextRefresh * 1000).toLocaleString()));
  }
  const box = $("cam-learning");
  box.replaceChildren();
  const badge = el("span", "badge mode");
  const bar = el("div", "progress");
  bar.append(el("div", "progress-fill"));
  updateMode(badge, bar, cam.status);
  box.append(badge, el("span", "learning-text", learningText(cam.status)), bar);
  const learningNow = cam.status.mode === "learning" || cam.status.mode === "training";
  $("cam-learn").disabled = learningNow;
  $("cam-cancel-learning").hidden = !learningNow;
  const img = $("cam-stream");
  const hasFrame = cam.status.last_frame_age_s !== null;
  $("cam-placeholder").textContent = hasFrame ? "" : `${cam.status.state}: waiting for the first frame…`;
  const overlay = $("cam-overlay").checked ? "heatmap" : "none";
  const src = withKey(`/v1/cameras/${encodeURIComponent(id)}/stream.mjpg?overlay=${overlay}`);
  if (hasFrame && img.dataset.src !== src) {
    img.dataset.src = src;
    img.src = src;
  }
  updateScore(cam);
}

$("cam-overlay").addEventListener("change", renderCameraPage);
$("cam-stream").addEventListener("error", () => { $("cam-stream").dataset.src = ""; });  // retried on next status

let removeArmed = null;
$("cam-remove").addEventListener("click", async () => {
  const btn = $("cam-remove");
  if (!removeArmed) {
    btn.textContent = "Click again to remove";
    btn.classList.add("confirm");
    removeArmed = setTimeout(disarmRemove, 4000);
    return;
  }
  disarmRemove();
  const id = currentCamera();
  try {
    await apiJson(`/v1/cameras/${encodeURIComponent(id)}`, { method: "DELETE" });
    location.hash = "#/";
    await refreshCameras();
  } catch (e) {
    ignoreAuth(e);
  }
});

function disarmRemove() {
  clearTimeout(removeArmed);
  removeArmed = null;
  $("cam-remove").textContent = "Remove camera";
  $("cam-remove").classList.remove("confirm");
}

// Learn (POST) or cancel learning (DELETE): an error (409: learning already, or not learning) is shown below.
async function learnRequest(method) {
  const id = currentCamera();
  $("cam-learn-error").hidden = true;
  try {
    const r = await api(`/v1/cameras/${encodeURIComponent(id)}/learn`, { method });
    if (!r.ok) {
      $("cam-learn-error").textContent = await detail(r);
      $("cam-learn-error").hidden = false;
      return;
    }
    await refreshCameras();
  } catch (e) {
    ignoreAuth(e);
  }
}
$("cam-learn").addEventListener("click", () => learnRequest("POST"));
$("cam-cancel-learning").addEventListener("click", () => learnRequest("DELETE"));

// -- add a camera ------------------------------------------------------------------------------------------

$("add-camera-open").addEventListener("click", () => {
  $("add-form").reset();
  $("add-error").hidden = true;
  $("add-dialog").showModal();
});
$("add-cancel").addEventListener("click", () => $("add-dialog").close());
$("add-form").addEventListener("submit", async (e) => {
  e.preventDefault();
  const body = { id: $("add-id").value.trim(), url: $("add-url").value.trim(), fps: Number($("add-fps").value) };
  if ($("add-learn").checked) body.learn = {};  // the service's default footage and training budget
  try {
    const r = await api("/v1/cameras", {
      method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body),
    });
    if (!r.ok) {
      $("add-error").textContent = await detail(r);
      $("add-error").hidden = false;
      return;
    }
    $("add-dialog").close();
    await refreshCameras();
  } catch (err) {
    ignoreAuth(err);
  }
});

window.addEventListener("hashchange", route);
boot();
