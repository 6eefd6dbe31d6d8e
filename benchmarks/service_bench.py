"""End-to-end service benchmark: frames/s scored, capture-to-WebSocket latency, dropped windows, peak RSS.

    python benchmarks/service_bench.py [--weights W | --untrained] [--own-models] [--seconds 20] [--json out.json]

Runs the real service (`python -m service`, its own process, like production) twice:
  1. one camera at max rate: the demo clip re-timed to 120 fps, looped, fps target 120;
  2. four cameras at 10 fps each: the demo clip and vtest.avi (768x576), two of each, looped at native 10 fps.
A WebSocket client (this process) receives every score; latency = arrival time - the frame's capture time
(ScoreMessage.ts). With --own-models every camera is scored by a model of its own (the weights registered and
activated in each camera's model registry before the service starts, as a learnt camera's would be: one forward
per model per round instead of one batch). Scored/skipped windows come from /v1/stats, over the measurement
window only; peak memory is the service's VmHWM. Prints a table; a benchmark, not a test: the numbers depend on
the machine.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import cv2
import httpx
import numpy as np
import yaml
from service_proc import stop_service, wait_until_healthy
from websockets.sync.client import connect

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"  # the project's shared data sits next to the repository (../shared)
DEMO = ROOT / "service" / "demo" / "ped2_demo.mp4"
VTEST = Path(os.environ.get("FFP_BENCH_VTEST", SHARED / "fixtures" / "vtest.avi"))


def retime(src: Path, dst: Path, fps: float) -> Path:
    """The same frames, declared at another frame rate (so a looped file camera delivers `fps`)."""
    cap = cv2.VideoCapture(str(src))
    ok, frame = cap.read()
    out = cv2.VideoWriter(str(dst), cv2.VideoWriter_fourcc(*"mp4v"), fps, (frame.shape[1], frame.shape[0]))
    while ok:
        out.write(frame)
        ok, frame = cap.read()
    out.release()
    cap.release()
    return dst


def untrained_weights(path: Path, flownet: Path | None) -> Path:
    """The lite architecture with random weights: the same compute as the trained model when `flownet` is the
    shipped flow net (L_flow is part of every score)."""
    import torch

    from model import Calibration, Predictor, ScoreConfig, get_preset
    from model.checkpoint import atomic_save
    from model.flownet import load_flownet
    from model.scoring import METRICS
    from model.unet import Generator

    cfg = get_preset("lite")
    cal = Calibration({k: 0.0 for k in METRICS}, {k: 1.0 for k in METRICS}, {}, 1, "bench")
    flow = load_flownet(flownet) if flownet else None
    atomic_save(Predictor(cfg, Generator(cfg), flow, cal, ScoreConfig(), {}, torch.device("cpu"),
                          "bf16").weights_blob(), path)
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def peak_rss_mb(pid: int) -> float:
    m = re.search(r"VmHWM:\s+(\d+) kB", Path(f"/proc/{pid}/status").read_text())
    return int(m.group(1)) / 1024 if m else float("nan")


def cpu_seconds(pid: int) -> float:
    """user + system CPU time of a process (all its threads): a cost that contention does not inflate much."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def machine_ticks() -> tuple[int, int]:
    """(steal, total) jiffies of all CPUs from /proc/stat: steal = time the hypervisor gave our vCPUs away."""
    fields = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    return (fields[7] if len(fields) > 7 else 0), sum(fields[:8])


def register_own_models(data_dir: Path, cameras: list[dict[str, Any]], weights: Path | None) -> None:
    """Each camera's registry gets its own copy of the weights, active: a model per camera, loaded separately."""
    from model.checkpoint import default_weights_path
    from service.registry import ModelRegistry

    registry = ModelRegistry(data_dir)
    for cam in cameras:
        registry.activate(cam["id"], registry.add(cam["id"], weights or default_weights_path()).version)


def run_scenario(name: str, cameras: list[dict[str, Any]], weights: Path | None, seconds: float,
                 warmup: float, work: Path, extra_args: list[str], own_models: bool = False) -> dict[str, Any]:
    port = free_port()
    cfg = work / f"{name}.yaml"
    data_dir = work / f"data-{name}"
    if own_models:
        register_own_models(data_dir, cameras, weights)
    cfg.write_text(yaml.safe_dump({"data_dir": str(data_dir), "port": port, "cameras": cameras,
                                   "log_level": "WARNING"}))
    cmd = [sys.executable, "-m", "service", "--config", str(cfg), *extra_args]
    cmd += ["--weights", str(weights)] if weights else []
    proc = subprocess.Popen(cmd, cwd=ROOT)
    base = f"http://127.0.0.1:{port}"
    try:
        with httpx.Client(base_url=base, timeout=10) as http:
            wait_until_healthy(http, proc, 60, 0.2)
            latencies: list[float] = []
            counts: dict[str, int] = {}
            measuring = threading.Event()
            stop = threading.Event()

            def client() -> None:
                with connect(f"ws://127.0.0.1:{port}/v1/ws?kinds=scores", open_timeout=10,
                             max_size=None) as ws:
                    while not stop.is_set():
                        try:
                            raw = ws.recv(timeout=0.5)
                        except TimeoutError:
                            continue
                        now = time.time()
                        msg = json.loads(raw)
                        if msg["type"] == "score" and measuring.is_set():
                            latencies.append((now - msg["ts"]) * 1000)
                            counts[msg["camera_id"]] = counts.get(msg["camera_id"], 0) + 1

            t = threading.Thread(target=client, daemon=True)
            t.start()
            time.sleep(warmup)
            before = http.get("/v1/stats").json()
            cpu0 = cpu_seconds(proc.pid)
            steal0, total0 = machine_ticks()
            measuring.set()
            t0 = time.monotonic()
            time.sleep(seconds)
            measuring.clear()
            elapsed = time.monotonic() - t0
            cpu = cpu_seconds(proc.pid) - cpu0
            steal1, total1 = machine_ticks()
            after = http.get("/v1/stats").json()
            stop.set()
            t.join(5)
            rss = peak_rss_mb(proc.pid)
    finally:
        stop_service(proc)
    per_cam = {}
    for cid in after["cameras"]:
        a, b = after["cameras"][cid], before["cameras"].get(cid, {})
        per_cam[cid] = {
            "scored_fps": round((a["frames_scored"] - b.get("frames_scored", 0)) / elapsed, 2),
            "ws_fps": round(counts.get(cid, 0) / elapsed, 2),
            "skipped": a["frames_skipped"] - b.get("frames_skipped", 0),
            "captured_fps": round((a["frames_captured"] - b.get("frames_captured", 0)) / elapsed, 2),
            "state": a["state"], "reconnects": a["reconnects"], "stalls": a["stalls"]}
    lat = np.array(latencies) if latencies else np.array([np.nan])
    scored = sum(c["scored_fps"] for c in per_cam.values()) * elapsed
    return {"scenario": name, "seconds": round(elapsed, 1), "cameras": per_cam,
            "cpu_cores_used": round(cpu / elapsed, 2),
            "cpu_steal_pct": round(100 * (steal1 - steal0) / max(1, total1 - total0), 1),
            "cpu_ms_per_frame": round(1000 * cpu / max(scored, 1), 1),
            "total_scored_fps": round(sum(c["scored_fps"] for c in per_cam.values()), 2),
            "total_skipped": sum(c["skipped"] for c in per_cam.values()),
            "latency_ms": {"p50": round(float(np.percentile(lat, 50)), 1),
                           "p99": round(float(np.percentile(lat, 99)), 1),
                           "max": round(float(np.max(lat)), 1), "n": len(latencies)},
            "peak_rss_mb": round(rss, 1), "inference": after["inference"],
            "device": after["device"], "precision": after["precision"], "torch_threads": after.get("torch_threads")}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--weights", type=Path, help="weights file (default: the shipped weights)")
    ap.add_argument("--untrained", action="store_true", help="random lite weights (when none are trained yet)")
    ap.add_argument("--flownet", type=Path,
                    help="with --untrained: attach this flow net (e.g. weights/flownet-lite.pt)")
    ap.add_argument("--seconds", type=float, default=20.0, help="measurement window per scenario")
    ap.add_argument("--warmup", type=float, default=5.0, help="seconds before measuring (cameras open, ring fills)")
    ap.add_argument("--max-fps", type=float, default=120.0, help="source and target rate of scenario 1")
    ap.add_argument("--precision", default="auto", help="passed to the service (auto, fp32, bf16)")
    ap.add_argument("--only", choices=("1cam-max", "4cam-10fps"), help="run one scenario")
    ap.add_argument("--own-models", action="store_true", help="a model of its own for every camera (registry)")
    ap.add_argument("--json", type=Path, help="also write the results here")
    args = ap.parse_args()

    with tempfile.TemporaryDirectory(prefix="ffp-bench-") as tmp:
        work = Path(tmp)
        weights = untrained_weights(work / "untrained.pt", args.flownet) if args.untrained else args.weights
        fast = retime(DEMO, work / "demo_fast.mp4", args.max_fps)
        scenarios = {
            "1cam-max": [{"id": "fast", "url": str(fast), "fps": args.max_fps, "loop": True}],
            "4cam-10fps": [{"id": f"cam{i}", "url": str(DEMO if i % 2 == 0 else VTEST), "fps": 10, "loop": True}
                           for i in range(4)],
        }
        results = [run_scenario(name, cams, weights, args.seconds, args.warmup, work, ["--precision", args.precision],
                                args.own_models)
                   for name, cams in scenarios.items() if args.only in (None, name)]

    print(f"\nservice benchmark ({os.cpu_count()} cores, {results[0]['device']} {results[0]['precision']}, "
          f"{results[0]['torch_threads']} torch threads, "
          f"weights: {'untrained lite' if args.untrained else weights or 'shipped default'}"
          f"{' + ' + str(args.flownet) if args.untrained and args.flownet else ''}"
          f"{', a model per camera' if args.own_models else ''}; load avg {os.getloadavg()[0]:.1f})")
    print(f"{'scenario':<12} {'scored fps':>10} {'skipped':>8} {'lat p50':>8} {'lat p99':>8} {'lat max':>8} "
          f"{'peak RSS':>9} {'batch':>6} {'CPU':>5} {'CPU ms/frame':>12} {'steal':>6}")
    for r in results:
        print(f"{r['scenario']:<12} {r['total_scored_fps']:>10.1f} {r['total_skipped']:>8d} "
              f"{r['latency_ms']['p50']:>6.1f}ms {r['latency_ms']['p99']:>6.1f}ms {r['latency_ms']['max']:>6.1f}ms "
              f"{r['peak_rss_mb']:>7.0f}MB {r['inference']['mean_batch_size'] or 0:>6.2f} "
              f"{r['cpu_cores_used']:>5.2f} {r['cpu_ms_per_frame']:>12.1f} {r['cpu_steal_pct']:>5.1f}%")
        for cid, c in r["cameras"].items():
            print(f"  {cid:<10} scored {c['scored_fps']:6.2f}/s  ws {c['ws_fps']:6.2f}/s  captured "
                  f"{c['captured_fps']:6.2f}/s  skipped {c['skipped']}  {c['state']}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
