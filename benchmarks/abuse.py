"""Acceptance table of issue 36: replays each abuse case against a real service on loopback and says whether the
service held.

    python benchmarks/abuse.py [--only NAME ...] [--list]

Starts its own service (`python -m service`, its own process, like production; the shipped weights, the demo clip
as a live camera) with small limits so each case finishes in seconds, runs the cases one after the other and
prints one row per case: name, expected, observed, pass. Exits 1 if a case fails. Loopback only; every case is
bounded in connections, bytes and time.

A case is a function `(Target) -> Observed` registered with `@case(name, expected)`: adding a case is appending
a function. `Target` has the base URL, the API key, the service's settings file and a scratch folder.
"""
from __future__ import annotations

import argparse
import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import yaml

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "service" / "demo" / "ped2_demo.mp4"
KEY = "abuse-key"
HEALTHZ_S = 1.0  # /healthz must answer within this, throughout


@dataclass
class Target:
    """The service under test."""

    url: str
    port: int
    key: str
    work: Path
    settings: dict[str, Any]
    pid: int

    @property
    def headers(self) -> dict[str, str]:
        return {"X-API-Key": self.key}

    def client(self, timeout: float = 10.0) -> httpx.Client:
        return httpx.Client(base_url=self.url, headers=self.headers, timeout=timeout)

    def healthz_s(self) -> float:
        """Seconds /healthz took to answer (inf when it did not within 5 s)."""
        t0 = time.monotonic()
        try:
            ok = httpx.get(f"{self.url}/healthz", timeout=5).status_code == 200
        except httpx.HTTPError:
            ok = False
        return time.monotonic() - t0 if ok else float("inf")


@dataclass
class Observed:
    observed: str
    passed: bool


@dataclass
class Row:
    name: str
    expected: str
    observed: str
    passed: bool


@dataclass
class Case:
    name: str
    expected: str
    run: Callable[[Target], Observed]


CASES: list[Case] = []


def case(name: str, expected: str) -> Callable[[Callable[[Target], Observed]], Callable[[Target], Observed]]:
    def register(fn: Callable[[Target], Observed]) -> Callable[[Target], Observed]:
        CASES.append(Case(name, expected, fn))
        return fn
    return register


# -- the service under test ----------------------------------------------------------------------------------

# Limits small enough that each case finishes in seconds (the defaults are documented in service/README.md).
SETTINGS: dict[str, Any] = {
    "api_key": KEY,
    "log_level": "WARNING",
    "max_upload_mb": 20,
    "max_clip_seconds": 60,
    "upload_queue": 2,
    "upload_workers": 1,
    "http": {"header_timeout_s": 2.0, "keep_alive_s": 2.0, "max_idle_connections": 64, "max_connections": 512,
             "body_idle_timeout_s": 3.0, "body_min_rate_kbps": 4.0, "body_grace_s": 3.0, "body_timeout_s": 30.0},
    "cameras": [{"id": "demo", "url": str(DEMO), "fps": 10, "loop": True}],
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def service(work: Path) -> Iterator[Target]:
    port = free_port()
    settings = {**SETTINGS, "port": port, "host": "127.0.0.1", "data_dir": str(work / "data")}
    cfg = work / "abuse.yaml"
    cfg.write_text(yaml.safe_dump(settings))
    env = {k: v for k, v in os.environ.items() if k != "FFP_API_KEY"}
    proc = subprocess.Popen([sys.executable, "-m", "service", "--config", str(cfg)], cwd=ROOT, env=env)
    target = Target(f"http://127.0.0.1:{port}", port, KEY, work, settings, proc.pid)
    try:
        deadline = time.monotonic() + 90
        while target.healthz_s() == float("inf"):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the service did not start (exit code {proc.poll()})")
            time.sleep(0.3)
        yield target
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


# -- cases: connections and uploads (issue 36 items 1, 2) and the RTSP connect burst (item 8) ----------------


# -- the table -----------------------------------------------------------------------------------------------

def run(cases: list[Case], target: Target) -> list[Row]:
    rows = []
    for c in cases:
        t0 = time.monotonic()
        try:
            got = c.run(target)
        except Exception as e:  # a case that crashes has failed; the others still run
            traceback.print_exc()
            got = Observed(f"error: {type(e).__name__}: {e}", False)
        health = target.healthz_s()
        if health > HEALTHZ_S:
            got = Observed(f"{got.observed}; /healthz took {health:.1f} s afterwards", False)
        rows.append(Row(c.name, c.expected, got.observed, got.passed))
        print(f"  {c.name}: {'pass' if got.passed else 'FAIL'} ({time.monotonic() - t0:.1f} s)", flush=True)
    return rows


def print_table(rows: list[Row]) -> None:
    w = [max(len(h), *(len(getattr(r, a)) for r in rows)) for h, a in
         (("case", "name"), ("expected", "expected"), ("observed", "observed"))]
    print(f"\n{'case':<{w[0]}}  {'expected':<{w[1]}}  {'observed':<{w[2]}}  pass")
    for r in rows:
        print(f"{r.name:<{w[0]}}  {r.expected:<{w[1]}}  {r.observed:<{w[2]}}  {'yes' if r.passed else 'NO'}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", nargs="+", metavar="NAME", help="run these cases only")
    ap.add_argument("--list", action="store_true", help="list the cases and exit")
    args = ap.parse_args()
    if args.list:
        for c in CASES:
            print(f"{c.name}: {c.expected}")
        return 0
    cases = [c for c in CASES if not args.only or c.name in args.only]
    if not cases:
        print(f"no such case: {args.only}", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="ffp-abuse-") as tmp, service(Path(tmp)) as target:
        rows = run(cases, target)
    print_table(rows)
    return 0 if all(r.passed for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
