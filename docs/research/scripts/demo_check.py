"""Check that the demo raises at least one alert per loop of its clip with the given weights.

    python docs/research/scripts/demo_check.py [--weights W] [--config docker/demo.yaml] [--live 30]

1. Offline: the clip played twice in a row (so the loop seam is included) through the service's clip scorer
   and the demo's alert settings; prints the smoothed score per second and the events of each loop, and the
   highest smoothed score on the normal part vs the anomalous part (to choose thresholds).
2. With --live N: runs `python -m service --config ...` on a free port, listens on the WebSocket for N
   seconds and counts scores and event starts per loop (the README's demo, end to end).
"""
from __future__ import annotations

import argparse
import json
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import cv2
import httpx
from websockets.sync.client import connect

ROOT = Path(__file__).resolve().parents[3]  # docs/research/scripts/ -> the repository
ANOMALY_FROM = 30  # first anomalous frame of the demo clip (Ped2 test 04 labels, see service/demo/ATTRIBUTION.md)


def offline(weights: Path | None, config: Path) -> None:
    from model import load_predictor
    from service.clips import ClipLimits, score_clip
    from service.settings import load_settings

    settings = load_settings(config)
    cam = settings.cameras[0]
    alerts = cam.alert_settings(settings.alerts)
    cap = cv2.VideoCapture(str(ROOT / cam.url))
    fps = cap.get(cv2.CAP_PROP_FPS)
    frames = []
    while (f := cap.read())[0]:
        frames.append(f[1])
    with tempfile.TemporaryDirectory() as tmp:
        twice = Path(tmp) / "twice.avi"
        out = cv2.VideoWriter(str(twice), cv2.VideoWriter_fourcc(*"MJPG"), fps, frames[0].shape[1::-1])
        for f in frames + frames:
            out.write(f)
        out.release()
        res = score_clip(load_predictor(weights, device=settings.device), twice, alerts=alerts,
                         limits=ClipLimits.from_settings(settings), model_lock=threading.Lock())
    n = len(frames)
    sm = [r["smoothed"] for r in res.frames]
    loop2 = sm[n:]
    normal = [v for i, v in enumerate(loop2) if v is not None and 5 <= i < ANOMALY_FROM]
    anomalous = [v for i, v in enumerate(loop2) if v is not None and i >= ANOMALY_FROM]
    print(f"demo clip: {n} frames at {fps:g} fps; alerts: on {alerts.on_threshold} off {alerts.off_threshold} "
          f"min_duration {alerts.min_duration_s}s")
    print("smoothed score per second (loop 1 | loop 2):")
    per_s = round(fps)
    for s in range(0, 2 * n, per_s):
        vals = [v for v in sm[s:s + per_s] if v is not None]
        print(f"  t={s / fps:5.1f}s  max {max(vals) if vals else float('nan'):6.2f}")
    print(f"loop 2, normal frames 5..{ANOMALY_FROM - 1}: max smoothed {max(normal):.2f}; "
          f"anomalous frames: max {max(anomalous):.2f}, median {sorted(anomalous)[len(anomalous) // 2]:.2f}")
    for e in res.events:
        loop = 1 + int(e["start_ts"] * fps) // n
        print(f"  event {e['start_ts']:6.2f}s - {e['end_ts']}s  loop {loop}  peak {e['peak_score']:.2f}")


def live(weights: Path | None, config: Path, seconds: float) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, "-m", "service", "--config", str(config), "--port", str(port), "--data-dir", tmp]
        proc = subprocess.Popen(cmd + (["--weights", str(weights)] if weights else []), cwd=ROOT)
        try:
            deadline = time.monotonic() + 60
            while True:
                try:
                    httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2).raise_for_status()
                    break
                except httpx.HTTPError:
                    if proc.poll() is not None or time.monotonic() > deadline:
                        raise SystemExit("the service did not start") from None
                    time.sleep(0.3)
            scores, starts, t0 = 0, [], time.monotonic()
            with connect(f"ws://127.0.0.1:{port}/v1/ws") as ws:
                while time.monotonic() - t0 < seconds:
                    try:
                        msg = json.loads(ws.recv(timeout=1))
                    except TimeoutError:
                        continue
                    if msg["type"] == "score":
                        scores += 1
                    elif msg["type"] == "event" and msg["kind"] == "start":
                        starts.append(round(time.monotonic() - t0, 1))
        finally:
            proc.send_signal(signal.SIGINT)
            proc.wait(30)
    loops = seconds / 10.0
    print(f"live {seconds:g}s: {scores} scores ({scores / seconds:.1f}/s), {len(starts)} event starts at {starts} "
          f"(~{len(starts) / loops:.2f} per 10 s loop)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--weights", type=Path)
    ap.add_argument("--config", type=Path, default=ROOT / "docker" / "demo.yaml")
    ap.add_argument("--live", type=float, default=0.0, help="also run the demo service for this many seconds")
    args = ap.parse_args()
    offline(args.weights, args.config)
    if args.live:
        live(args.weights, args.config, args.live)


if __name__ == "__main__":
    main()
