"""Acceptance table of issue 36: replays each abuse case against a real service on loopback and says whether the
service held.

    python benchmarks/abuse.py [--only NAME ...] [--list]

Starts its own service (`python -m service`, its own process, like production; the shipped weights, the demo clip
as a live camera) with small limits so each case finishes in seconds, runs the cases one after the other and
prints one row per case: name, expected, observed, pass. Exits 1 if a case fails. Loopback only; every case is
bounded in connections, bytes and time.

A case is a function `(Target) -> Observed` registered with `@case(name, expected)`: adding a case is appending
a function. `Target` has the base URL, the API key, the service's settings file and a scratch folder. A case that
needs other cameras names them (`@case(..., cameras=[...])`) and gets a service of its own, started after the
shared one stopped, so the two never compete for the CPU.

Throughout every case a monitor probes `/healthz` twice a second and counts the frames the service's first camera
scores: a case fails if `/healthz` took longer than 1 s once, or if the live camera fell below LIVE_RATE of its fps
(judged on cases that last at least LIVE_WINDOW_S; shorter ones only report it).
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
from service_proc import stop_service

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "service" / "demo" / "ped2_demo.mp4"
KEY = "abuse-key"
HEALTHZ_S = 1.0  # /healthz must answer within this, throughout
LIVE_RATE = 0.7  # the live camera keeps this share of its fps throughout (the bar of the concurrent-uploads case)
LIVE_WINDOW_S = 3.0  # shorter cases are too short to judge a rate from a frame count


@dataclass
class Target:
    """The service under test."""

    url: str
    port: int
    key: str
    work: Path
    settings: dict[str, Any]
    pid: int
    log: Path  # the service's stdout and stderr

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
    cameras: list[dict[str, Any]] | None = None  # a service of its own with these cameras


CASES: list[Case] = []


def case(name: str, expected: str, cameras: list[dict[str, Any]] | None = None
         ) -> Callable[[Callable[[Target], Observed]], Callable[[Target], Observed]]:
    def register(fn: Callable[[Target], Observed]) -> Callable[[Target], Observed]:
        CASES.append(Case(name, expected, fn, cameras))
        return fn
    return register


# -- the service under test ----------------------------------------------------------------------------------

# Limits small enough that each case finishes in seconds (the defaults are documented in service/README.md).
SETTINGS: dict[str, Any] = {
    "api_key": KEY,
    "log_level": "WARNING",
    "max_upload_mb": 20,
    "max_clip_seconds": 120,
    "max_clip_frames": 1000,
    "upload_queue": 2,
    "upload_workers": 1,
    "http": {"header_timeout_s": 2.0, "keep_alive_s": 2.0, "max_idle_connections": 64, "idle_grace_s": 0.5,
             "max_connections": 512,
             "body_idle_timeout_s": 3.0, "body_min_rate_kbps": 4.0, "body_grace_s": 3.0, "body_timeout_s": 30.0},
    "max_cameras": 8,
    "cameras": [{"id": "demo", "url": str(DEMO), "fps": 10, "loop": True}],
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def service(work: Path, cameras: list[dict[str, Any]] | None = None) -> Iterator[Target]:
    port = free_port()
    work.mkdir(parents=True, exist_ok=True)
    settings = {**SETTINGS, "port": port, "host": "127.0.0.1", "data_dir": str(work / "data")}
    if cameras is not None:
        settings["cameras"] = cameras
    cfg = work / "abuse.yaml"
    cfg.write_text(yaml.safe_dump(settings))
    env = {k: v for k, v in os.environ.items() if k != "FFP_API_KEY"}
    log = work / "service.log"
    with log.open("w") as out:  # the cases read it back (no secret in any line); printed if it did not start
        proc = subprocess.Popen([sys.executable, "-m", "service", "--config", str(cfg)], cwd=ROOT, env=env,
                                stdout=out, stderr=subprocess.STDOUT)
    target = Target(f"http://127.0.0.1:{port}", port, KEY, work, settings, proc.pid, log)
    try:
        deadline = time.monotonic() + 90
        while target.healthz_s() == float("inf"):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the service did not start (exit code {proc.poll()}):\n{log.read_text()}")
            time.sleep(0.3)
        with target.client() as c:  # the cameras scoring (weights loaded, warm-up done): the monitor's baseline
            while min(int(x["frames_scored"]) for x in c.get("/v1/stats").json()["cameras"].values()) < 20:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"the cameras did not start scoring:\n{log.read_text()}")
                time.sleep(0.3)
        yield target
    finally:
        stop_service(proc)


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


# -- cases: connections and uploads (issue 36 items 1, 2) and the RTSP connect burst (item 8) ----------------

def _closed(s: socket.socket, wait_s: float) -> bool:
    s.settimeout(wait_s)
    try:
        while s.recv(65536):
            pass
        return True
    except (ConnectionResetError, BrokenPipeError):
        return True
    except (TimeoutError, OSError):
        return False


def _raw(port: int) -> socket.socket:
    return socket.create_connection(("127.0.0.1", port), timeout=10)


def _post_head(t: Target, length: int, ctype: str = "application/octet-stream") -> bytes:
    return (f"POST /v1/score HTTP/1.1\r\nHost: x\r\nX-API-Key: {t.key}\r\nContent-Type: {ctype}\r\n"
            f"Content-Length: {length}\r\n\r\n").encode()


@case("slow-headers", "300 heads never finished: all closed within header_timeout_s + 2 s; /healthz < 1 s")
def slow_headers(t: Target) -> Observed:
    deadline_s = t.settings["http"]["header_timeout_s"]
    socks = []
    for _ in range(300):
        s = _raw(t.port)
        s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        socks.append(s)
    t0 = time.monotonic()
    health = t.healthz_s()
    closed = sum(_closed(s, max(0.05, t0 + deadline_s + 2 - time.monotonic())) for s in socks)
    took = time.monotonic() - t0
    for s in socks:
        s.close()
    return Observed(f"{closed}/300 closed in {took:.1f} s; /healthz {health:.2f} s",
                    closed == 300 and health < HEALTHZ_S)


@case("slow-body", "body at 100 B / 2 s: cut off with 408 within body_grace_s + 3 s")
def slow_body(t: Target) -> Observed:
    grace = t.settings["http"]["body_grace_s"]
    s = _raw(t.port)
    s.sendall(_post_head(t, 1_000_000))
    t0 = time.monotonic()
    answer = b""
    s.settimeout(2.0)
    while time.monotonic() - t0 < grace + 10:
        try:
            s.sendall(b"\0" * 100)
            chunk = s.recv(4096)
        except TimeoutError:
            continue
        except (ConnectionResetError, BrokenPipeError):
            break
        if not chunk:
            break
        answer += chunk
    took = time.monotonic() - t0
    s.close()
    status = answer.split(b"\r\n", 1)[0].decode(errors="replace") or "nothing"
    return Observed(f"{status!s} after {took:.1f} s", answer.startswith(b"HTTP/1.1 408") and took < grace + 3)


@case("idle-connection-cap", "200 idle connections (cap 64): the oldest beyond the cap closed; /healthz < 1 s")
def idle_cap(t: Target) -> Observed:
    cap = t.settings["http"]["max_idle_connections"]
    fds0 = open_fds(t.pid)
    socks = [_raw(t.port) for _ in range(200)]
    time.sleep(t.settings["http"]["idle_grace_s"] + 0.5)  # all idle for longer than the grace by now
    health = t.healthz_s()
    fds = open_fds(t.pid) - fds0
    closed = sum(_closed(s, 0.05) for s in socks)
    for s in socks:
        s.close()
    return Observed(f"{closed} closed, service fds +{fds}, /healthz {health:.2f} s",
                    closed >= 200 - cap and health < HEALTHZ_S and fds <= cap + 16)


@case("slow-uploads", "100 uploads trickling at once: queue places only, the rest 503 + Retry-After; fds bounded")
def slow_uploads(t: Target) -> Observed:
    places = t.settings["upload_workers"] + t.settings["upload_queue"]
    fds0 = open_fds(t.pid)
    socks = []
    for _ in range(100):
        s = _raw(t.port)
        s.sendall(_post_head(t, 5_000_000) + b"\0" * 1000)
        socks.append(s)
    time.sleep(1.0)
    fds = open_fds(t.pid) - fds0
    health = t.healthz_s()
    refused = 0
    for s in socks:
        s.settimeout(0.2)
        try:
            head = s.recv(4096)
        except (TimeoutError, ConnectionResetError):
            head = b""
        refused += head.startswith(b"HTTP/1.1 503") and b"retry-after" in head.lower()
        s.close()
    return Observed(f"{refused} refused 503 + Retry-After, {100 - refused} held; service fds +{fds}; "
                    f"/healthz {health:.2f} s",
                    refused == 100 - places and fds <= 100 + 2 * places + 16 and health < HEALTHZ_S)


def _upload(t: Target, path: Path, timeout: float = 120) -> tuple[int, float, str]:
    t0 = time.monotonic()
    with t.client(timeout) as c:
        r = c.post("/v1/score", files={"file": (path.name, path.read_bytes(), "application/octet-stream")})
    detail = r.json().get("detail", "") if r.status_code != 200 else ""
    return r.status_code, time.monotonic() - t0, str(detail)


def _cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@case("huge-frames", "4096x4096 at 120 fps: 422 before decoding, < 2 s")
def huge_frames(t: Target) -> Observed:
    import cv2
    import numpy as np

    path = t.work / "huge.mp4"
    out = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 120, (4096, 4096))
    for _ in range(3):
        out.write(np.zeros((4096, 4096, 3), np.uint8))
    out.release()
    cpu0 = _cpu_s(t.pid)
    status, took, detail = _upload(t, path)
    cpu = _cpu_s(t.pid) - cpu0
    return Observed(f"{status} in {took:.1f} s, {cpu:.1f} CPU-s ({len(path.read_bytes()) // 1024} KB): {detail}",
                    status == 422 and "before decoding" in detail and took < 2)


@case("lying-header", "AVI claiming 1 s, holding 2000 frames: 422 once decoding passes max_clip_frames")
def lying_header(t: Target) -> Observed:
    import struct

    import cv2
    import numpy as np

    path = t.work / "liar.avi"
    out = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 25, (64, 48))
    for i in range(2000):
        out.write(np.full((48, 64, 3), i % 256, np.uint8))
    out.release()
    data = bytearray(path.read_bytes())
    for tag, offset in ((b"avih", 8 + 16), (b"strh", 8 + 32)):  # dwTotalFrames, dwLength: 25 frames = 1 s
        struct.pack_into("<I", data, data.find(tag) + offset, 25)
    path.write_bytes(bytes(data))
    cpu0 = _cpu_s(t.pid)
    status, took, detail = _upload(t, path)
    cpu = _cpu_s(t.pid) - cpu0
    return Observed(f"{status} in {took:.1f} s, {cpu:.1f} CPU-s: {detail}",
                    status == 422 and "while decoding" in detail)


@case("concurrent-uploads", "8 demo uploads at once: queue places scored, the rest 503 + Retry-After; camera "
                            "keeps 70 % of its rate")
def concurrent_uploads(t: Target) -> Observed:
    import threading

    places = t.settings["upload_workers"] + t.settings["upload_queue"]
    results: list[tuple[int, float, str]] = []
    with t.client() as c:
        before = c.get("/v1/cameras/demo").json()["frames_scored"]
    t0 = time.monotonic()
    threads = [threading.Thread(target=lambda: results.append(_upload(t, DEMO))) for _ in range(8)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(300)
    elapsed = time.monotonic() - t0
    with t.client() as c:
        rate = (c.get("/v1/cameras/demo").json()["frames_scored"] - before) / elapsed
    codes = sorted(r[0] for r in results)
    ok = codes.count(200) >= places and set(codes) <= {200, 503} and rate >= 0.7 * 10
    return Observed(f"{codes.count(200)} x 200, {codes.count(503)} x 503 in {elapsed:.1f} s; camera "
                    f"{rate:.1f} fps", ok)


@case("upload-client-leaves", "a client leaving mid-scoring frees the slot: the next upload is scored promptly")
def client_leaves(t: Target) -> Observed:
    import cv2

    cap = cv2.VideoCapture(str(DEMO))
    frames = []
    while (got := cap.read())[0]:
        frames.append(got[1])
    long_clip = t.work / "long.avi"
    out = cv2.VideoWriter(str(long_clip), cv2.VideoWriter_fourcc(*"MJPG"), 10, frames[0].shape[1::-1])
    for f in frames * 5:  # 50 s at 10 fps
        out.write(f)
    out.release()
    data = long_clip.read_bytes()
    s = _raw(t.port)
    s.sendall(_post_head(t, len(data)) + data)
    time.sleep(3.0)  # received and being scored
    s.close()
    status, took, detail = _upload(t, DEMO)
    return Observed(f"next upload {status} in {took:.1f} s{': ' + detail if detail else ''}",
                    status == 200 and took < 30)


@contextlib.contextmanager
def rtsp_camera() -> Iterator[tuple[str, subprocess.Popen[str]]]:
    """GStreamer's RTSP server from the tests (Debian's python3 with gi): its URL and process."""
    server = ROOT / "tests" / "service" / "rtsp_server.py"
    if not Path("/usr/bin/python3").exists():
        raise RuntimeError("no /usr/bin/python3 with GStreamer's RTSP server")
    proc = subprocess.Popen(["/usr/bin/python3", str(server), "--port", "0"], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        if not line.startswith("PORT "):
            raise RuntimeError(f"the RTSP server did not start: {line!r}")
        yield f"rtsp://127.0.0.1:{int(line.split()[1])}/cam", proc
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGCONT)  # a case may have frozen it
        proc.kill()
        proc.wait(5)
        for pipe in (proc.stdin, proc.stdout):
            if pipe is not None:
                pipe.close()


@case("rtsp-connect-burst", "4 RTSP cameras connecting together: their first windows scored, none skipped")
def rtsp_burst(t: Target) -> Observed:
    with rtsp_camera() as (url, _):
        ids = [f"rtsp{i}" for i in range(4)]
        with t.client() as c:
            for cid in ids:
                r = c.post("/v1/cameras", json={"id": cid, "url": url, "fps": 10})
                if r.status_code != 201:
                    return Observed(f"adding {cid}: {r.status_code} {r.text[:200]}", False)
            deadline = time.monotonic() + 30
            while True:
                cams = {cid: c.get(f"/v1/cameras/{cid}").json() for cid in ids}
                if all(x["frames_scored"] >= 15 for x in cams.values()) or time.monotonic() > deadline:
                    break
                time.sleep(0.2)
            for cid in ids:
                c.delete(f"/v1/cameras/{cid}")
    scored = [cams[c]["frames_scored"] for c in ids]
    skipped = [cams[c]["frames_skipped"] for c in ids]
    return Observed(f"first ~15 windows per camera: scored {scored}, skipped {skipped}",
                    all(n >= 15 for n in scored) and sum(skipped) == 0)


# -- cases: camera URLs, credentials, liveness, WebSocket input, Origin (issue 36 items 3-7) -------------------

SECRETS = ("p@ssw0rd", "pa%40ss", "tok3n-SECRET")


@case("camera-url-limits", "10 MB URL: 422 with a short answer; cameras beyond max_cameras (8): 409")
def url_limits(t: Target) -> Observed:
    with t.client(30) as c:
        r = c.post("/v1/cameras", json={"id": "huge", "url": "rtsp://cam/" + "x" * 10_000_000})
        huge = f"{r.status_code} ({len(r.content)} B)"
        codes = [c.post("/v1/cameras", json={"id": f"n{i}", "url": f"rtsp://10.255.0.{i + 1}/s"}).status_code
                 for i in range(12)]
        for i in range(12):
            c.delete(f"/v1/cameras/n{i}")
    room = t.settings["max_cameras"] - 1  # the demo camera counts
    return Observed(f"10 MB URL: {huge}; 12 adds: {codes.count(201)} x 201, {codes.count(409)} x 409",
                    r.status_code == 422 and len(r.content) < 1000 and codes == [201] * room + [409] * (12 - room))


@case("camera-host-policy", "metadata, link-local, decimal/hex/octal spellings, the service's own port: all 422; "
                            "a LAN camera 201")
def host_policy(t: Target) -> Observed:
    bad = ["http://169.254.169.254/latest/meta-data/", "http://2852039166/", "http://0xa9fea9fe/",
           "http://0251.0376.0251.0376/", "http://[::ffff:169.254.169.254]/", "http://[fe80::1]/",
           "http://metadata.google.internal/", f"http://127.0.0.1:{t.port}/v1/stats", f"http://127.1:{t.port}/",
           f"http://localhost:{t.port}/", f"rtsp://0.0.0.0:{t.port}/"]
    with t.client() as c:
        codes = [c.post("/v1/cameras", json={"id": "probe", "url": u}).status_code for u in bad]
        lan = c.post("/v1/cameras", json={"id": "lan", "url": "rtsp://192.168.77.7/stream"}).status_code
        c.delete("/v1/cameras/probe")
        c.delete("/v1/cameras/lan")
    refused = codes.count(422)
    return Observed(f"{refused}/{len(bad)} refused with 422; LAN camera {lan}", refused == len(bad) and lan == 201)


@case("credentials-redacted", "password with @ or %40 and ?access_token=: in no answer, /v1/stats, last_error "
                              "or log line; 422 echoes no input")
def credentials(t: Target) -> Observed:
    answers = []
    with t.client() as c:
        for i, pw in enumerate(SECRETS[:2]):  # nothing listens on port 9: the cameras fail and say why
            url = f"rtsp://admin:{pw}@127.0.0.1:9/live?access_token={SECRETS[2]}&channel=1"
            answers.append(c.post("/v1/cameras", json={"id": f"cred{i}", "url": url, "open_timeout_s": 1,
                                                      "read_timeout_s": 1}).text)
        answers.append(c.post("/v1/cameras", json={"id": "bad", "url": f"ftp://admin:{SECRETS[0]}@cam/x"}).text)
        answers.append(c.post("/v1/cameras", json={"id": "bad", "url": f"rtsp://u:{SECRETS[2]}@cam/x",
                                                   "fps": "fast"}).text)
        deadline = time.monotonic() + 15
        while not all(c.get(f"/v1/cameras/cred{i}").json()["last_error"] for i in range(2)):
            if time.monotonic() > deadline:
                break
            time.sleep(0.3)
        answers += [c.get("/v1/cameras").text, c.get("/v1/stats").text]
        for i in range(2):
            c.delete(f"/v1/cameras/cred{i}")
    places = {"answers": "\n".join(answers), "log": t.log.read_text()}
    leaks = [f"{s!r} in {where}" for where, text in places.items() for s in SECRETS if s in text]
    return Observed(f"{len(leaks)} leaks{': ' + ', '.join(leaks) if leaks else ''} "
                    f"({len(places['log'].splitlines())} log lines read)", not leaks)


@case("key-docs-origin", "malformed JSON without key: 401; /docs, /openapi.json: 401 without key; cross-site "
                         "upload: 403")
def key_docs_origin(t: Target) -> Observed:
    with httpx.Client(base_url=t.url, timeout=10) as anon:
        malformed = anon.post("/v1/cameras", content=b"{nope", headers={"Content-Type": "application/json"})
        docs = [anon.get(p).status_code for p in ("/docs", "/openapi.json")]
    with t.client(30) as c:
        cross = c.post("/v1/score", files={"file": ("x.mp4", b"\0" * 1000, "video/mp4")},
                       headers={"Origin": "https://evil.example"}).status_code
    return Observed(f"malformed JSON {malformed.status_code}; docs {docs}; cross-site upload {cross}",
                    malformed.status_code == 401 and docs == [401, 401] and cross == 403)


def _ws_close(t: Target, query: str, send: str | bytes | None = None,
              origin: str | None = None) -> tuple[int | None, str]:
    from websockets.exceptions import ConnectionClosed
    from websockets.sync.client import connect

    try:
        with connect(f"ws://127.0.0.1:{t.port}/v1/ws?api_key={t.key}&{query}", origin=origin,  # type: ignore[arg-type]
                     open_timeout=5) as ws:
            if send is not None:
                ws.recv(timeout=5)  # subscribed
                ws.send(send)
            while True:
                ws.recv(timeout=10)
    except ConnectionClosed as e:
        return (e.rcvd.code, e.rcvd.reason) if e.rcvd else (None, "no close frame")
    except TimeoutError:
        return None, "still open"


@case("ws-bad-input", "binary frame, garbage JSON, resume_from 2^70, foreign Origin: 4400 / 4400 / 4400 / 1008, "
                      "no traceback in the log")
def ws_bad_input(t: Target) -> Observed:
    before = t.log.read_text().count("Traceback")
    codes = [_ws_close(t, "kinds=scores", b"\x00\x01")[0], _ws_close(t, "kinds=scores", "{garbage")[0],
             _ws_close(t, "resume_from=1180591620717411303424")[0],
             _ws_close(t, "kinds=scores", origin="https://evil.example")[0]]
    tracebacks = t.log.read_text().count("Traceback") - before
    return Observed(f"close codes {codes}; {tracebacks} tracebacks logged",
                    codes == [4400, 4400, 4400, 1008] and tracebacks == 0)


@case("frozen-rtsp-stall", "RTSP server frozen (SIGSTOP), default stall_after_s = read_timeout_s = 5 s: stalled "
                           "and restarted within 9 s")
def frozen_rtsp(t: Target) -> Observed:
    with rtsp_camera() as (url, proc), t.client() as c:
        c.post("/v1/cameras", json={"id": "frozen", "url": url, "fps": 10})
        try:
            deadline = time.monotonic() + 30
            while c.get("/v1/cameras/frozen").json()["frames_scored"] < 5:
                if time.monotonic() > deadline:
                    return Observed("the camera never went live", False)
                time.sleep(0.2)
            os.kill(proc.pid, signal.SIGSTOP)
            t0 = time.monotonic()
            stalled_at = None
            while time.monotonic() - t0 < 15:
                st = c.get("/v1/cameras/frozen").json()
                if st["stalls"] and stalled_at is None:
                    stalled_at = time.monotonic() - t0
                if st["restarts"]:
                    break
                time.sleep(0.2)
            took = time.monotonic() - t0
        finally:
            c.delete("/v1/cameras/frozen")
    return Observed(f"stalls {st['stalls']} after {stalled_at if stalled_at is None else round(stalled_at, 1)} s, "
                    f"restarts {st['restarts']} after {took:.1f} s, state {st['state']}",
                    st["stalls"] >= 1 and st["restarts"] >= 1 and took < 9)


@case("ws-slow-client", "a client that stops reading, 5 cameras live: closed with 4000 (not keepalive's 1011) "
                        "within 30 s, < 512 KB buffered for it")
def ws_slow_client(t: Target) -> Observed:
    with rtsp_camera() as (url, _), t.client() as c:
        ids = [f"busy{i}" for i in range(4)]
        for cid in ids:
            c.post("/v1/cameras", json={"id": cid, "url": url, "fps": 10})
        try:
            sock = socket.socket()
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
            sock.settimeout(10)
            sock.connect(("127.0.0.1", t.port))
            sock.sendall(f"GET /v1/ws?kinds=scores&api_key={t.key} HTTP/1.1\r\nHost: 127.0.0.1:{t.port}\r\n"
                         "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                         "Sec-WebSocket-Version: 13\r\n\r\n".encode())
            t0 = time.monotonic()
            while c.get("/v1/stats").json()["websocket"]["slow_closes"] == 0 and time.monotonic() - t0 < 45:
                time.sleep(0.5)  # the client reads nothing meanwhile
            closed_after = time.monotonic() - t0
            data = b""
            with contextlib.suppress(OSError):
                while chunk := sock.recv(65536):  # read it all now: the messages, then the close frame
                    data += chunk
            sock.close()
        finally:
            for cid in ids:
                c.delete(f"/v1/cameras/{cid}")
    code = _close_code(data.split(b"\r\n\r\n", 1)[-1])
    return Observed(f"close {code} after {closed_after:.1f} s; {len(data) // 1024} KB buffered",
                    code == 4000 and closed_after < 30 and len(data) < 512 * 1024)


FANOUT_CAMERAS = [{"id": f"cam{i}", "url": str(DEMO), "fps": 10, "loop": True} for i in range(4)]
FANOUT_WINDOW_S = 10.0  # per window; windows alternate 1 and 100 clients, so a load change elsewhere hits both
FANOUT_ROUNDS = 3


class Listeners:
    """WebSocket clients (the websockets library, default options, as an application would use it) on their own
    event loop in a thread; each reads every message and counts it."""

    def __init__(self, url: str) -> None:
        import asyncio
        import threading

        self.url = url
        self.received = 0
        self.open = 0
        self.failed: list[str] = []
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()

    async def _client(self) -> None:
        import asyncio

        from websockets.asyncio.client import connect

        try:
            async with connect(self.url, open_timeout=30) as ws:
                self.open += 1
                try:
                    async for _ in ws:
                        self.received += 1
                finally:
                    self.open -= 1
        except asyncio.CancelledError:
            raise
        except Exception as e:  # noqa: BLE001 - counted and reported by the case
            self.failed.append(f"{type(e).__name__}: {e}"[:200])

    def add(self, n: int, timeout: float = 60) -> list[Any]:
        """n more clients, all connecting at the same instant (more than the server's idle-connection cap: a
        connection waiting for its handshake is not idle); their futures, for remove()."""
        import asyncio

        want = self.open + n
        futures = [asyncio.run_coroutine_threadsafe(self._client(), self._loop) for _ in range(n)]
        deadline = time.monotonic() + timeout
        while self.open < want and not self.failed and time.monotonic() < deadline:
            time.sleep(0.05)
        return futures

    def remove(self, futures: list[Any], timeout: float = 30) -> None:
        want = self.open - len(futures)
        for f in futures:
            self._loop.call_soon_threadsafe(f.cancel)
        deadline = time.monotonic() + timeout
        while self.open > want and time.monotonic() < deadline:
            time.sleep(0.05)

    def close(self) -> None:
        import asyncio

        async def cancel_all() -> None:
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        with contextlib.suppress(Exception):
            asyncio.run_coroutine_threadsafe(cancel_all(), self._loop).result(30)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)


def _window(t: Target, listeners: Listeners, seconds: float) -> tuple[float, float]:
    """Frames/s scored by all cameras over `seconds`, and the share of the messages published meanwhile that
    each open client received."""
    def now() -> tuple[int, int, int]:
        with t.client() as c:
            st = c.get("/v1/stats").json()
        return sum(int(x["frames_scored"]) for x in st["cameras"].values()), st["websocket"]["published"], \
            listeners.received

    (n0, p0, m0), t0 = now(), time.monotonic()
    time.sleep(seconds)
    (n1, p1, m1), t1 = now(), time.monotonic()
    return (n1 - n0) / (t1 - t0), (m1 - m0) / max(listeners.open * (p1 - p0), 1)


@case("ws-fanout", "4 cameras at 10 fps: scoring rate with 100 WebSocket clients within 10 % of the rate with one "
                   "(windows alternate); every client gets every message", cameras=FANOUT_CAMERAS)
def ws_fanout(t: Target) -> Observed:
    listeners = Listeners(f"ws://127.0.0.1:{t.port}/v1/ws?kinds=scores,events&api_key={t.key}")
    one: list[tuple[float, float]] = []
    many: list[tuple[float, float]] = []
    most = 0
    try:
        listeners.add(1)
        for _ in range(FANOUT_ROUNDS):
            time.sleep(1.0)
            one.append(_window(t, listeners, FANOUT_WINDOW_S))
            others = listeners.add(99)
            most = max(most, listeners.open)
            time.sleep(1.0)
            many.append(_window(t, listeners, FANOUT_WINDOW_S))
            listeners.remove(others)
    finally:
        listeners.close()
    with t.client() as c:
        ws = c.get("/v1/stats").json()["websocket"]
    rate1, rate100 = (sum(r for r, _ in w) / len(w) for w in (one, many))
    share = min(m for _, m in many)
    failed = f"; {len(listeners.failed)} clients failed: {listeners.failed[0]}" if listeners.failed else ""
    windows = ", ".join(f"{a:.1f}/{b:.1f}" for (a, _), (b, _) in zip(one, many, strict=True))
    return Observed(f"frames/s with 1/100 clients {windows}: {rate1:.1f} vs {rate100:.1f} = {rate100 / rate1:.0%}; "
                    f"{most} clients received {share:.0%} of the messages published (per client, worst window); "
                    f"dropped_scores {ws['dropped_scores_total']}, slow_closes {ws['slow_closes']}{failed}",
                    not listeners.failed and most == 100 and rate100 >= 0.9 * rate1 and share >= 0.95
                    and ws["slow_closes"] == 0)


def _close_code(stream: bytes) -> int | None:
    """The code of the first close frame in a server's WebSocket byte stream (frames unmasked)."""
    at = 0
    while at + 2 <= len(stream):
        opcode, n, head = stream[at] & 0x0F, stream[at + 1] & 0x7F, 2
        if n >= 126:
            size = 2 if n == 126 else 8
            n, head = int.from_bytes(stream[at + 2:at + 2 + size], "big"), 2 + size
        if opcode == 0x8:
            return int.from_bytes(stream[at + head:at + head + 2], "big")
        at += head + n
    return None


# -- the table -----------------------------------------------------------------------------------------------

class Monitor:
    """Alongside a case: /healthz probed every PROBE_S (the slowest answer kept) and the frames the service's first
    camera scored, from /v1/stats at the start and the end."""

    PROBE_S = 0.5

    def __init__(self, target: Target) -> None:
        import threading

        self.target = target
        self.camera = target.settings["cameras"][0]
        self.slowest = 0.0
        self.probes = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._probe, daemon=True)

    def _scored(self) -> int | None:
        try:
            with self.target.client(5) as c:
                return int(c.get(f"/v1/cameras/{self.camera['id']}").json()["frames_scored"])
        except (httpx.HTTPError, KeyError, ValueError):
            return None

    def _probe(self) -> None:
        while not self._stop.wait(self.PROBE_S):
            self.slowest = max(self.slowest, self.target.healthz_s())
            self.probes += 1

    def __enter__(self) -> Monitor:
        self._t0, self._scored0 = time.monotonic(), self._scored()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)
        self.slowest = max(self.slowest, self.target.healthz_s())
        self.elapsed = time.monotonic() - self._t0
        end = self._scored()
        self.rate = None if end is None or self._scored0 is None else (end - self._scored0) / self.elapsed

    def verdict(self) -> tuple[str, bool]:
        """What the monitor saw and whether it held."""
        fps = float(self.camera["fps"])
        if self.rate is None:
            return "live camera: no stats", False
        judged = self.elapsed >= LIVE_WINDOW_S
        ok = self.slowest < HEALTHZ_S and (not judged or self.rate >= LIVE_RATE * fps)
        return (f"/healthz max {self.slowest:.2f} s ({self.probes + 1} probes), live camera {self.rate:.1f}/{fps:g} "
                f"fps{'' if judged else ' (not judged: < 3 s)'}", ok)


def run(cases: list[Case], target: Target) -> list[Row]:
    rows = []
    for c in cases:
        t0 = time.monotonic()
        with Monitor(target) as mon:
            try:
                got = c.run(target)
            except Exception as e:  # noqa: BLE001 - a case that crashes has failed; the others still run
                traceback.print_exc()
                got = Observed(f"error: {type(e).__name__}: {e}", False)
        seen, held = mon.verdict()
        rows.append(Row(c.name, c.expected, f"{got.observed} | {seen}", got.passed and held))
        print(f"  {c.name}: {'pass' if got.passed and held else 'FAIL'} ({time.monotonic() - t0:.1f} s)",
              flush=True)
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
    rows: list[Row] = []
    with tempfile.TemporaryDirectory(prefix="ffp-abuse-") as tmp:
        shared = [c for c in cases if c.cameras is None]
        if shared:
            with service(Path(tmp) / "shared") as target:
                rows += run(shared, target)
        for c in cases:
            if c.cameras is not None:
                with service(Path(tmp) / c.name, c.cameras) as target:
                    rows += run([c], target)
    print_table(rows)
    return 0 if all(r.passed for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
