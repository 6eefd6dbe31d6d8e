"""Issue 33's acceptance benchmark: Ped2 and vtest.avi as new cameras, learnt by the service over real RTSP.

    python benchmarks/learn_camera.py [--train-minutes T] [--footage-minutes M] [--only ped2|vtest]
                                      [--smoke] [--json out.json]

Everything runs on loopback: ffmpeg encodes the footage as H.264 into a temp dir, GStreamer's RTSP server
(tests/service/rtsp_server.py --files, Debian's /usr/bin/python3) serves each file as a live stream, and the real
service (`python -m service`, its own process, a temp data_dir) learns and scores it. This process talks to it
over HTTP and reads every message of its WebSocket.

1. ped2: Ped2's 16 training videos as ONE stream; POST /v1/cameras with "learn" (default learning settings,
   footage_minutes = the stream's length); POST -> armed time and the learning progress over time. Meanwhile an
   already armed camera (the demo clip, looped at 10 fps, shipped model) keeps scoring: its scored fps and p99
   capture -> WebSocket latency while the learning camera trains. Then the 12 test videos, one stream each
   (PATCH url per video: a fresh capture and alert engine per video, as `ffp eval` restarts per video), go to the
   armed camera and, beside it, to a camera on the shipped weights (use_shipped). For each: causal frame AUC of
   the smoothed calibrated score as published, first k frames of each video excluded (model.evaluate's
   protocol), and the episode-level numbers of model.events from the alerts the service raised.
2. vtest: vtest.avi's first 60 % as the learning stream, then the rest streamed to the armed camera: its alerts.

Alerts are placed on each video's frame timeline through the scores they follow: raised at the frame of the last
score before the event's start message, spanning the frames whose capture times its start_ts and end_ts name.
A benchmark, not a test: the numbers depend on the machine and on its other load.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import yaml
from websockets.sync.client import connect

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run as a script from anywhere: the model package of this checkout

from service_proc import stop_service, wait_until_healthy  # noqa: E402

from model.evaluate import roc_auc  # noqa: E402
from model.events import Alert, event_metrics  # noqa: E402
from model.labels import load_labels  # noqa: E402

SHARED = ROOT.parent / "shared"  # the project's shared data sits next to the repository (../shared)
PED2 = SHARED / "datasets" / "ped2"
VTEST = SHARED / "fixtures" / "vtest.avi"
DEMO = ROOT / "service" / "demo" / "ped2_demo.mp4"
RTSP_SERVER = ROOT / "tests" / "service" / "rtsp_server.py"
FPS = 10.0  # Ped2 and vtest.avi are both 10 fps; every camera here scores at 10 fps
K = 8  # frames of history of the lite models (shipped and camera-lite): the first K frames go unscored
VTEST_LEARN = 0.6


# -- media ------------------------------------------------------------------------------------------------------

def encode(args: list[str], out: Path) -> Path:
    """ffmpeg -> H.264 at 10 fps, a keyframe every second, no B-frames (a live camera's stream)."""
    subprocess.run(["ffmpeg", "-loglevel", "error", "-y", *args, "-r", str(int(FPS)), "-c:v", "libx264",
                    "-preset", "veryfast", "-crf", "18", "-x264-params", f"keyint={int(FPS)}:bframes=0",
                    "-pix_fmt", "yuv420p", str(out)], check=True)
    return out


def encode_frames(folder: Path, out: Path) -> Path:
    return encode(["-framerate", str(int(FPS)), "-pattern_type", "glob", "-i", str(folder / "*.jpg")], out)


def concat(parts: list[Path], out: Path) -> Path:
    listing = out.with_suffix(".txt")
    listing.write_text("".join(f"file '{p}'\n" for p in parts))
    subprocess.run(["ffmpeg", "-loglevel", "error", "-y", "-f", "concat", "-safe", "0", "-i", str(listing),
                    "-c", "copy", str(out)], check=True)
    return out


def frame_count(folder: Path) -> int:
    return len(list(folder.glob("*.jpg")))


@contextmanager
def rtsp_files(media: Path) -> Iterator[str]:
    """The GStreamer RTSP server serving media/NAME.mp4 at /NAME -> its base URL."""
    proc = subprocess.Popen(["/usr/bin/python3", str(RTSP_SERVER), "--port", "0", "--files", str(media)],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline() if proc.stdout else ""
        if not line.startswith("PORT "):
            raise RuntimeError(f"the RTSP server did not start: {line!r}")
        yield f"rtsp://127.0.0.1:{int(line.split()[1])}"
    finally:
        if proc.stdin:
            proc.stdin.close()  # the server quits when its stdin closes
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()


# -- the service and its WebSocket ----------------------------------------------------------------------------

@dataclass
class Feed:
    """Every WebSocket message, in arrival order, with its arrival time (time.time())."""

    messages: list[tuple[float, dict[str, Any]]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, now: float, msg: dict[str, Any]) -> None:
        with self.lock:
            self.messages.append((now, msg))

    def snapshot(self) -> list[tuple[float, dict[str, Any]]]:
        with self.lock:
            return list(self.messages)


@dataclass
class Service:
    proc: subprocess.Popen[bytes]
    http: httpx.Client
    feed: Feed

    def camera(self, cid: str) -> dict[str, Any]:
        r = self.http.get(f"/v1/cameras/{cid}")
        r.raise_for_status()
        return dict(r.json())

    def post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        r = self.http.post(path, json=body)
        if r.status_code >= 300:
            raise RuntimeError(f"POST {path}: {r.status_code} {r.text}")
        return dict(r.json())

    def patch(self, cid: str, body: dict[str, Any]) -> None:
        r = self.http.patch(f"/v1/cameras/{cid}", json=body)
        if r.status_code >= 300:
            raise RuntimeError(f"PATCH {cid}: {r.status_code} {r.text}")


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def service(work: Path, footage_minutes: float) -> Iterator[Service]:
    """The real service with the demo camera (shipped model, looped file at 10 fps) and default learning settings
    but footage_minutes."""
    port = free_port()
    cfg = work / "service.yaml"
    cfg.write_text(yaml.safe_dump({
        "data_dir": str(work / "data"), "port": port, "log_level": "WARNING",
        "learning": {"footage_minutes": footage_minutes},
        "cameras": [{"id": "demo", "url": str(DEMO), "fps": FPS, "loop": True}]}))
    proc = subprocess.Popen([sys.executable, "-m", "service", "--config", str(cfg)], cwd=ROOT)
    feed, stop = Feed(), threading.Event()

    def client() -> None:
        with connect(f"ws://127.0.0.1:{port}/v1/ws", open_timeout=10, max_size=None) as ws:
            while not stop.is_set():
                try:
                    raw = ws.recv(timeout=0.5)
                except TimeoutError:
                    continue
                feed.add(time.time(), json.loads(raw))

    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as http:
            wait_until_healthy(http, proc, 90, 0.3)
            t = threading.Thread(target=client, daemon=True)
            t.start()
            yield Service(proc, http, feed)
            stop.set()
            t.join(5)
    finally:
        stop_service(proc)


# -- phases ---------------------------------------------------------------------------------------------------

def learn(svc: Service, cid: str, url: str, train_minutes: float | None, timeout_s: float) -> dict[str, Any]:
    """POST the camera with "learn", poll until armed -> POST -> armed time, the progress timeline, and the
    already armed demo camera's scoring while this one trained."""
    body: dict[str, Any] = {}
    if train_minutes is not None:
        body["train_minutes"] = train_minutes
    t0 = time.time()
    svc.post("/v1/cameras", {"id": cid, "url": url, "fps": FPS, "learn": body})
    timeline: list[dict[str, Any]] = []
    deadline = t0 + timeout_s
    while True:
        cam = svc.camera(cid)
        lr = cam.get("learning") or {}
        timeline.append({"t_s": round(time.time() - t0, 1), "mode": cam["mode"], "state": cam["state"],
                         **{k: lr.get(k) for k in ("phase", "frames_recorded", "frames_wanted", "step", "minutes",
                                                   "heldout_psnr", "eta_s", "error")}})
        last = timeline[-1]
        print(f"  [{cid} {last['t_s']:7.1f}s] {last['mode']:<8} {last['phase']} frames {last['frames_recorded']}/"
              f"{last['frames_wanted']} step {last['step']} psnr {last['heldout_psnr']} eta {last['eta_s']}",
              flush=True)
        if cam["mode"] == "armed":
            break
        if cam["mode"] == "unarmed" and lr.get("error"):
            raise RuntimeError(f"learning {cid} failed: {lr['error']}")
        if time.time() > deadline:
            raise RuntimeError(f"{cid} not armed after {timeout_s:.0f} s: {cam}")
        time.sleep(5 if len(timeline) > 12 else 1)
    armed_s = time.time() - t0
    modes = [(now, m["mode"]) for now, m in svc.feed.snapshot()
             if m.get("type") == "camera" and m.get("camera_id") == cid]
    train_start = next((now for now, mode in modes if mode == "training"), None)
    train_end = next((now for now, mode in modes if mode == "armed"), time.time())
    return {"post_to_armed_s": round(armed_s, 1),
            "recording_s": round(train_start - t0, 1) if train_start else None,
            "training_s": round(train_end - train_start, 1) if train_start else None,
            "model": cam.get("model"), "timeline": timeline,
            "demo_during_training": scoring_stats(svc.feed, "demo", train_start or t0, train_end)}


def scoring_stats(feed: Feed, cid: str, t0: float, t1: float) -> dict[str, Any]:
    """A camera's scores that arrived in [t0, t1]: rate and capture -> WebSocket latency."""
    lat = np.array([(now - m["ts"]) * 1000 for now, m in feed.snapshot()
                    if m.get("type") == "score" and m.get("camera_id") == cid and t0 <= now <= t1])
    span = max(t1 - t0, 1e-9)
    return {"seconds": round(span, 1), "scores": int(lat.size), "scored_fps": round(lat.size / span, 2),
            "latency_ms_p50": round(float(np.percentile(lat, 50)), 1) if lat.size else None,
            "latency_ms_p99": round(float(np.percentile(lat, 99)), 1) if lat.size else None,
            "latency_ms_max": round(float(lat.max()), 1) if lat.size else None}


@dataclass
class Segment:
    """One test video streamed to one camera: from the PATCH (or POST) that pointed it there."""

    video: str
    frames: int
    since: float  # wall time just before the request: its capture worker's frames are all later


def stream_videos(svc: Service, cams: dict[str, dict[str, Any]], base_url: str,
                  videos: list[tuple[str, int]]) -> dict[str, list[Segment]]:
    """Each test video in turn to every camera of `cams` (id -> POST body when it does not exist yet, else {}):
    the next video once each camera's first run through the file is over (all its frames, the stream ended, or
    the video's length + 20 s)."""
    segments: dict[str, list[Segment]] = {cid: [] for cid in cams}
    for name, n in videos:
        url = f"{base_url}/{name}"
        for cid, create in cams.items():
            since = time.time()
            if create and not segments[cid]:
                svc.post("/v1/cameras", {**create, "id": cid, "url": url, "fps": FPS})
            else:
                svc.patch(cid, {"url": url})
            segments[cid].append(Segment(name, n, since))
        deadline = time.time() + n / FPS + 20
        while time.time() < deadline:
            feed = svc.feed.snapshot()
            runs = [first_run(feed, cid, segs[-1], float("inf")) for cid, segs in segments.items()]
            if all(r.complete or r.ended or (r.scores and time.time() - r.last_arrival > 3) for r in runs):
                break
            time.sleep(0.5)
        feed = svc.feed.snapshot()
        print(f"  {name}: {n} frames, scores " + ", ".join(
            f"{cid} {len(first_run(feed, cid, segs[-1], float('inf')).scores)}" for cid, segs in segments.items()),
            flush=True)
    time.sleep(1.0)  # the last events' end messages
    return segments


@dataclass
class Run:
    """A camera's first run through one test video, its scores keyed by the video's frame index."""

    scores: dict[int, dict[str, Any]]
    offset: int  # video frame = frame_index + offset: frames the stream lost at its start
    complete: bool  # every frame from K on scored
    ended: bool  # the stream ended and the camera reconnected (a replay of the file began)
    last_arrival: float  # arrival of its last score (0: none)


def first_run(feed: list[tuple[float, dict[str, Any]]], cid: str, seg: Segment, until: float) -> Run:
    """The scores of the camera's capture of this video until the file ended. A reconnect (the file played again)
    shows as a jump in frame_index (its first k frames are unscored) or a pause in capture time. Frames are lost
    at the start of a stream, not at its end, so the last score belongs to the video's last frame."""
    msgs = sorted(((m["frame_index"], m["ts"], now, m) for now, m in feed
                   if m.get("type") == "score" and m.get("camera_id") == cid and seg.since <= m["ts"] < until),
                  key=lambda x: x[0])
    run: list[tuple[int, float, float, dict[str, Any]]] = []
    ended = False
    for x in msgs:
        # a reconnect: >= 0.4 s of backoff, then k unscored frames; a gap inside the stream keeps capture time
        if run and ((x[0] - run[-1][0] > 1 and x[1] - run[-1][1] > 0.35) or x[1] - run[-1][1] > 1.5):
            ended = True
            break
        run.append(x)
    if not run:
        return Run({}, 0, False, False, 0.0)
    # A run that reached the file's end (the stream ended, or all but the frames lost at its start came): its
    # last score is the video's last frame. A run cut short (the time limit) stays as it is.
    reached_end = ended or len(run) >= seg.frames - K - 2
    offset = max(0, seg.frames - 1 - run[-1][0]) if reached_end else 0
    scores = {i + offset: m for i, _, _, m in run if i + offset < seg.frames}
    return Run(scores, offset, len(scores) >= seg.frames - K, ended, max(x[2] for x in run))


def segment_messages(feed: list[tuple[float, dict[str, Any]]], cid: str, offset: int,
                     since: float, until: float) -> list[tuple[float, dict[str, Any]]]:
    """The camera's score and live event messages that arrived in [since, until), frame_index made the video's."""
    out = []
    for now, m in feed:
        if now < since or now >= until:
            continue
        if m.get("type") == "score" and m.get("camera_id") == cid and m["ts"] >= since:
            out.append((now, {**m, "frame_index": m["frame_index"] + offset}))
        elif m.get("type") == "event" and m["event"]["camera_id"] == cid and not m.get("replay"):
            out.append((now, m))
    return out


def video_alerts(msgs: list[tuple[float, dict[str, Any]]], scores: dict[int, dict[str, Any]],
                 n: int) -> tuple[list[Alert], list[dict[str, Any]]]:
    """The anomaly alerts of one segment on its frame timeline (seconds = frame / FPS), and its scene changes."""
    ts = np.array([scores[i]["ts"] for i in sorted(scores)])
    idx = np.array(sorted(scores))

    def frame_at(t: float) -> int:
        return int(idx[int(np.argmin(np.abs(ts - t)))]) if idx.size else 0

    last_frame, opened, scene = K, {}, []
    for _, m in msgs:
        if m["type"] == "score":
            if m["frame_index"] < n:
                last_frame = m["frame_index"]
            continue
        ev = m["event"]
        if ev.get("type") == "scene_change":
            if m["kind"] == "start":
                scene.append(ev)
            continue
        if m["kind"] == "start":
            opened[ev["id"]] = [last_frame, frame_at(ev["start_ts"]), None]
        elif m["kind"] == "end" and ev["id"] in opened and ev["end_ts"] is not None:
            opened[ev["id"]][2] = frame_at(ev["end_ts"])
    alerts = [Alert(raised / FPS, start / FPS, (end if end is not None else n - 1) / FPS)
              for raised, start, end in opened.values()]
    return alerts, scene


def evaluate_camera(feed: list[tuple[float, dict[str, Any]]], cid: str, segs: list[Segment],
                    labels: dict[str, np.ndarray] | None) -> dict[str, Any]:
    """Causal frame AUC (smoothed as published) and model.events' episode numbers from the service's alerts."""
    scores_all, y_all, per_video, videos = [], [], {}, {}
    alerts_total, scenes_total = 0, 0
    for i, seg in enumerate(segs):
        until = segs[i + 1].since if i + 1 < len(segs) else float("inf")
        run = first_run(feed, cid, seg, until)
        scores = run.scores
        # events of a replay of the file (after the first run ended) are not this video's
        cut = min(until, run.last_arrival + 0.5) if run.ended else until
        alerts, scene = video_alerts(segment_messages(feed, cid, run.offset, seg.since, cut), scores, seg.frames)
        alerts_total += len(alerts)
        scenes_total += len(scene)
        got = [f for f in range(K, seg.frames) if f in scores and scores[f]["smoothed"] is not None]
        per_video[seg.video] = {
            "frames": seg.frames, "expected_scores": seg.frames - K, "scores": len(scores), "smoothed": len(got),
            "first_frame": min(scores, default=None), "last_frame": max(scores, default=None),
            "frames_lost_at_start": run.offset, "stream_ended": run.ended,
            "alerts": [[a.raised_s, a.start_s, a.end_s] for a in alerts], "scene_changes": len(scene),
            # per scored frame: index, capture ts, calibrated z, smoothed z, psnr (to check the frame alignment)
            "scores_detail": [[f, m["ts"], m["score"], m["smoothed"], m.get("psnr")]
                              for f, m in sorted(scores.items())]}
        if labels is not None:
            y = np.asarray(labels[seg.video]).astype(np.int8)
            scores_all.append(np.array([scores[f]["smoothed"] for f in got]))
            y_all.append(y[got])
            videos[seg.video] = (y, alerts)
    out: dict[str, Any] = {"alerts": alerts_total, "scene_changes": scenes_total, "per_video": per_video,
                           "missing_scores": sum(v["expected_scores"] - v["smoothed"] for v in per_video.values())}
    if labels is not None:
        out["auc_causal"] = roc_auc(np.concatenate(scores_all), np.concatenate(y_all))
        out.update(event_metrics(videos, K, FPS))
    return out


# -- the two parts --------------------------------------------------------------------------------------------

def run_ped2(work: Path, args: argparse.Namespace) -> dict[str, Any]:
    media = work / "media"
    media.mkdir()
    train_dirs = sorted((PED2 / "training" / "frames").iterdir())
    test_dirs = sorted((PED2 / "testing" / "frames").iterdir())
    if args.smoke:
        train_dirs, test_dirs = train_dirs[:2], test_dirs[:2]
    parts = [encode_frames(d, work / f"train{d.name}.mp4") for d in train_dirs]
    concat(parts, media / "ped2_train.mp4")
    for d in test_dirs:
        encode_frames(d, media / f"ped2_test{d.name}.mp4")
    train_frames = sum(frame_count(d) for d in train_dirs)
    test = [(f"ped2_test{d.name}", frame_count(d)) for d in test_dirs]
    gt = load_labels(PED2 / "labels_frame_level.json", [d.name for d in test_dirs], [n for _, n in test])
    labels = {f"ped2_test{d.name}": gt[d.name] for d in test_dirs}
    footage = args.footage_minutes or train_frames / FPS / 60
    print(f"ped2: {len(train_dirs)} training videos, {train_frames} frames = {footage:.2f} min of footage; "
          f"{len(test)} test videos", flush=True)
    with rtsp_files(media) as base, service(work, footage) as svc:
        time.sleep(5)  # the demo camera opens and scores
        learnt = learn(svc, "ped2", f"{base}/ped2_train", args.train_minutes, timeout_s=footage * 60 * 2 + 3600)
        segs = stream_videos(svc, {"ped2": {}, "shipped": {"use_shipped": True}}, base, test)
        feed = svc.feed.snapshot()
    return {"footage_minutes": round(footage, 3), "train_frames": train_frames, **learnt, "feed": feed,
            "segments": {cid: [[g.video, g.frames, g.since] for g in gs] for cid, gs in segs.items()},
            "learnt": evaluate_camera(feed, "ped2", segs["ped2"], labels),
            "shipped": evaluate_camera(feed, "shipped", segs["shipped"], labels)}


def run_vtest(work: Path, args: argparse.Namespace) -> dict[str, Any]:
    import cv2

    media = work / "media"
    media.mkdir()
    cap = cv2.VideoCapture(str(VTEST))
    n = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
    cap.release()
    cut = int(round(n * VTEST_LEARN))
    encode(["-i", str(VTEST), "-vf", f"select=lt(n\\,{cut})"], media / "vtest_learn.mp4")
    encode(["-i", str(VTEST), "-vf", f"select=gte(n\\,{cut}),setpts=N/FRAME_RATE/TB"], media / "vtest_rest.mp4")
    footage = args.footage_minutes or cut / FPS / 60
    print(f"vtest: learn on frames 0-{cut - 1} ({footage:.2f} min), watch {n - cut} frames", flush=True)
    with rtsp_files(media) as base, service(work, footage) as svc:
        time.sleep(5)
        learnt = learn(svc, "vtest", f"{base}/vtest_learn", args.train_minutes, timeout_s=footage * 60 * 2 + 3600)
        segs = stream_videos(svc, {"vtest": {}}, base, [("vtest_rest", n - cut)])
        feed = svc.feed.snapshot()
    return {"footage_minutes": round(footage, 3), "learn_frames": cut, "watch_frames": n - cut, **learnt,
            "feed": feed, "segments": {cid: [[g.video, g.frames, g.since] for g in gs] for cid, gs in segs.items()},
            "watch": evaluate_camera(feed, "vtest", segs["vtest"], None)}


# -- report ---------------------------------------------------------------------------------------------------

def fmt(v: Any, spec: str = "") -> str:
    return "-" if v is None else format(v, spec)


def print_table(res: dict[str, Any]) -> None:
    print(f"\nlearn-camera benchmark ({os.cpu_count()} cores; load avg at start {res['load_avg_start']:.1f}, at end "
          f"{os.getloadavg()[0]:.1f}: other work's load is in every timing)"
          f"{' SMOKE (tiny budgets)' if res['smoke'] else ''}")
    if "ped2" in res:
        p = res["ped2"]
        print(f"\nPed2 as a new camera: {p['footage_minutes']:.2f} min footage, "
              f"POST -> armed {p['post_to_armed_s']:.0f} s "
              f"(recording {fmt(p['recording_s'])} s, training+calibration {fmt(p['training_s'])} s)")
        print(f"{'camera':<22} {'auc_causal':>10} {'episodes':>9} {'false al.':>9} {'delay med':>9} "
              f"{'delay max':>9} {'missing':>8}")
        for name, key in (("learnt (from scratch)", "learnt"), ("shipped weights", "shipped")):
            r = p[key]
            print(f"{name:<22} {r['auc_causal']:>10.4f} {r['episodes_alerted']:>4}/{r['episodes']:<4} "
                  f"{r['false_alarms']:>9} {fmt(r['delay_s_median'], '.1f'):>8}s {fmt(r['delay_s_max'], '.1f'):>8}s "
                  f"{r['missing_scores']:>8}")
        d = p["demo_during_training"]
        print(f"armed demo camera while ped2 trained ({d['seconds']:.0f} s): {d['scored_fps']:.2f} scored fps, "
              f"latency p50 {fmt(d['latency_ms_p50'])} ms, p99 {fmt(d['latency_ms_p99'])} ms, "
              f"max {fmt(d['latency_ms_max'])} ms")
    if "vtest" in res:
        v = res["vtest"]
        w = v["watch"]
        d = v["demo_during_training"]
        print(f"\nvtest.avi as a new camera: learnt on {v['learn_frames']} frames, POST -> armed "
              f"{v['post_to_armed_s']:.0f} s; watched {v['watch_frames']} frames: {w['alerts']} alert(s) "
              f"(bar: at most 1), {w['scene_changes']} scene change(s), {w['missing_scores']} scores missing")
        print(f"armed demo camera while vtest trained ({d['seconds']:.0f} s): {d['scored_fps']:.2f} scored fps, "
              f"latency p99 {fmt(d['latency_ms_p99'])} ms")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--train-minutes", type=float, help="training budget (default: the service's setting)")
    ap.add_argument("--footage-minutes", type=float, help="footage to record (default: the learning stream's length)")
    ap.add_argument("--only", choices=("ped2", "vtest"), help="run one part")
    ap.add_argument("--smoke", action="store_true",
                    help="tiny budgets to check the plumbing: 2 Ped2 training and test videos, 0.5 min training")
    ap.add_argument("--json", type=Path, help="also write the results here")
    args = ap.parse_args()
    if args.smoke and args.train_minutes is None:
        args.train_minutes = 0.5
    for tool in ("ffmpeg", "/usr/bin/python3"):
        if shutil.which(tool) is None:
            sys.exit(f"{tool} is needed")
    res: dict[str, Any] = {"smoke": args.smoke, "cores": os.cpu_count(), "load_avg_start": os.getloadavg()[0],
                           "started": time.strftime("%Y-%m-%dT%H:%M:%S")}
    for part, fn in (("ped2", run_ped2), ("vtest", run_vtest)):
        if args.only in (None, part):
            with tempfile.TemporaryDirectory(prefix=f"ffp-learn-{part}-") as tmp:
                res[part] = fn(Path(tmp), args)
                if args.json:  # every WebSocket message, to analyse the run again
                    with args.json.with_suffix(f".{part}.feed.jsonl").open("w") as f:
                        f.writelines(json.dumps([now, m]) + "\n" for now, m in res[part].pop("feed"))
            if args.json:  # each part as soon as it is done: a long run keeps what it measured
                args.json.write_text(json.dumps(res, indent=2, default=float))
    res["finished"] = time.strftime("%Y-%m-%dT%H:%M:%S")
    print_table(res)
    if args.json:
        args.json.write_text(json.dumps(res, indent=2, default=float))


if __name__ == "__main__":
    main()
