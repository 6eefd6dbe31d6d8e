"""What a camera's training gets when several train at once: why `learning.max_trainings` defaults to one on 2 cores.

    python benchmarks/concurrent_training.py [--trainings 3] [--train-minutes 1]

Runs `ffp learn` on Ped2's 16 training videos (as a camera's footage, 10 fps) the way the service runs a camera's
training (`nice 10`, one torch thread, a wall-clock budget): first one alone, then --trainings of them at once.
Prints, per training, the steps it got through in its budget, its held-out PSNR at the end and its peak resident
memory (VmHWM). The budget is wall-clock time, so a training that shares the CPU ends with fewer steps.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FOOTAGE = ROOT.parent / "shared" / "datasets" / "ped2" / "training" / "frames"


def peak_rss_mb(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def run(n: int, train_minutes: float, work: Path) -> list[dict[str, float]]:
    """n trainings at once -> each one's steps, held-out PSNR and peak RSS."""
    procs = []
    for i in range(n):
        w = work / f"n{n}-{i}"
        cmd = ["nice", "-n", "10", sys.executable, "-m", "model.cli", "learn", str(FOOTAGE), "--footage-minutes", "5",
               "--train-minutes", str(train_minutes), "--threads", "1", "--out", str(w / "out.pt"), "--work", str(w)]
        procs.append((w, subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT,
                                          env={**os.environ, "OMP_NUM_THREADS": "1"})))
    peaks = [0.0] * n
    while any(p.poll() is None for _, p in procs):
        for i, (_, p) in enumerate(procs):
            rss = peak_rss_mb(p.pid) if p.poll() is None else None
            peaks[i] = max(peaks[i], rss or 0.0)
        time.sleep(0.5)
    out = []
    for i, (w, p) in enumerate(procs):
        if p.returncode != 0:
            raise SystemExit(f"ffp learn failed (exit {p.returncode}) in {w}")
        progress = json.loads((w / "run" / "progress.json").read_text())
        out.append({"steps": progress["step"], "heldout_psnr": progress["heldout_psnr"], "peak_rss_mb": peaks[i]})
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--trainings", type=int, default=3, help="trainings at once in the second round")
    ap.add_argument("--train-minutes", type=float, default=1.0)
    a = ap.parse_args()
    if not FOOTAGE.is_dir():
        raise SystemExit(f"{FOOTAGE}: Ped2 is not there")
    with tempfile.TemporaryDirectory(prefix="ffp-concurrent-") as tmp:
        for n in (1, a.trainings):
            rows = run(n, a.train_minutes, Path(tmp))
            for i, r in enumerate(rows):
                print(f"{n} at once, training {i + 1}: {r['steps']} steps in {a.train_minutes:g} min, held-out PSNR "
                      f"{r['heldout_psnr']:.2f} dB, peak RSS {r['peak_rss_mb']:.0f} MB", flush=True)


if __name__ == "__main__":
    main()
