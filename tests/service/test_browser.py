"""The dashboard in a real browser: Debian's chromium driven by chromium-driver through selenium, against the
real service (uvicorn) with the demo clip as a looped camera, the shipped weights, the demo's alert settings
and an API key; and, with model refresh on, a camera whose refresh trains beside one with none.

Skips, with the reason, where chromium, chromedriver or selenium is missing; fails instead when CI is set
(`.ci/run` installs them). Screenshots go to $FFP_ARTIFACTS or tests/artifacts/browser (git-ignored); the
folder is printed.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from live_server import LiveServer, serve
from test_registry import weights_file

from service.api import create_app
from service.refresh_state import DAY_S
from service.registry import ModelRegistry
from service.settings import load_settings
from service.wiring import build_service

ROOT = Path(__file__).parents[2]
DEMO_CLIP = ROOT / "service" / "demo" / "ped2_demo.mp4"
DEMO_CONFIG = ROOT / "docker" / "demo.yaml"
KEY = "browser-key-789"
# Generous: the machine may be busy; every wait is on a condition, and returns as soon as it holds.
LOAD_S = 60
EVENT_S = 240  # the demo's cart comes 3 s into each 10 s loop, on a CPU shared with the browser


def _browser_paths() -> tuple[str, str]:
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    missing = [name for name, path in (("chromium", chromium), ("chromedriver", driver)) if path is None]
    try:
        import selenium  # noqa: F401
    except ImportError:
        missing.append("the selenium package (pip install -e '.[test]')")
    if missing:
        reason = (f"browser test needs {', '.join(missing)}: apt-get install chromium chromium-driver "
                  "(.ci/run does)")
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)
    assert chromium is not None and driver is not None
    return chromium, driver


@pytest.fixture
def artifacts(capsys: pytest.CaptureFixture[str]) -> Path:
    folder = Path(os.environ.get("FFP_ARTIFACTS") or ROOT / "tests" / "artifacts") / "browser"
    folder.mkdir(parents=True, exist_ok=True)
    with capsys.disabled():  # shown on a passing run too
        print(f"\nbrowser screenshots: {folder}")
    return folder


@pytest.fixture
def server(tmp_path: Path) -> Iterator[LiveServer]:
    alerts = yaml.safe_load(DEMO_CONFIG.read_text())["alerts"]
    settings = load_settings(None, data_dir=tmp_path / "data", api_key=KEY, alerts=alerts,
                             cameras=[{"id": "demo", "url": str(DEMO_CLIP), "fps": 10, "loop": True}])
    with serve(create_app(build_service(settings)), timeout=120) as srv:  # loads the shipped weights
        yield srv


REFRESH_DAYS = 7.0
UNREACHABLE = "rtsp://127.0.0.1:9/stream"  # the badges need no picture: no capture or scoring load
REFRESH_STARTED = time.time() - 3600.0  # the running refresh's attempt: the clock's latest start
REFRESH_PROGRESS = {"step": 40, "steps_planned": 100, "minutes": 4.0, "eta_s": 360.0}  # 4 of 10 min: 40 %


def stand_in_training(calls: list[Path]) -> Callable[..., subprocess.Popen[bytes]]:
    """training_run.launch with a process that only waits (in its own group, as the real one, for the service's
    stop to end it): the run's progress.json, written beforehand, stays what the service reads."""
    def launch(settings: Any, footage: Path, run_dir: Path, train_minutes: float, **kw: Any) -> subprocess.Popen[bytes]:
        calls.append(run_dir)
        return subprocess.Popen(["sleep", "3600"], stdin=subprocess.DEVNULL, start_new_session=True)
    return launch


@pytest.fixture
def refreshing_server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[LiveServer]:
    """Refresh on; camera `yard` armed on a model of its own whose refresh was training when the service last
    stopped (its refresh.json and run folder on disk: the service resumes it), camera `gate` on the shipped
    model (no refresh). Both unreachable."""
    data = tmp_path / "data"
    registry = ModelRegistry(data)
    version = registry.add("yard", weights_file(tmp_path / "own.pt")).version
    registry.activate("yard", version)
    yard = data / "cameras" / "yard"
    run = yard / "runs" / "run-0002"
    run.mkdir(parents=True)
    (run / "progress.json").write_text(json.dumps(REFRESH_PROGRESS))
    (yard / "refresh.json").write_text(json.dumps({
        "version": version, "since": REFRESH_STARTED - DAY_S, "last_attempt": REFRESH_STARTED, "run": run.name,
        "base": version, "pid": None, "frames": 600, "segments": 1, "train_minutes": 10.0}))
    calls: list[Path] = []
    monkeypatch.setattr("service.training_run.launch", stand_in_training(calls))
    settings = load_settings(None, data_dir=data, learning={"refresh_days": REFRESH_DAYS},
                             cameras=[{"id": "yard", "url": UNREACHABLE, "fps": 5},
                                      {"id": "gate", "url": UNREACHABLE, "fps": 5}])
    with serve(create_app(build_service(settings)), timeout=120) as srv:
        assert calls == [run]  # the refresh was resumed, in its own run folder
        yield srv


@pytest.fixture
def browser() -> Iterator[Any]:
    chromium, driver_path = _browser_paths()
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = chromium
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                "--window-size=1440,960", "--no-first-run", "--disable-extensions"):
        opts.add_argument(arg)
    opts.set_capability("goog:loggingOptions", {"browser": "ALL"})
    drv = webdriver.Chrome(service=Service(executable_path=driver_path), options=opts)
    drv.set_page_load_timeout(LOAD_S)
    try:
        yield drv
    finally:
        drv.quit()


def console_errors(drv: Any) -> list[str]:
    """Console errors since the last call (the log is drained on read)."""
    return [e["message"] for e in drv.get_log("browser") if e["level"] == "SEVERE"]


def wait(drv: Any, what: str, check: Callable[[Any], Any], timeout: float = LOAD_S) -> Any:
    from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException
    from selenium.webdriver.support.ui import WebDriverWait

    # The pages re-render on every status: an element found may be replaced before it is read.
    return WebDriverWait(drv, timeout, poll_frequency=0.25,
                         ignored_exceptions=(NoSuchElementException, StaleElementReferenceException)
                         ).until(check, message=f"waited {timeout} s for {what}")


def js(drv: Any, script: str, *args: Any) -> Any:
    return drv.execute_script(script, *args)


def image_shown(selector: str) -> Callable[[Any], bool]:
    return lambda d: bool(js(d, "const i = document.querySelector(arguments[0]);"
                                "return !!i && i.complete && i.naturalWidth > 0;", selector))


def key_prompt_open(drv: Any) -> bool:
    return bool(js(drv, "return document.getElementById('key-dialog').open"))


def submit_key(drv: Any, key: str) -> None:
    from selenium.webdriver.common.by import By

    field = drv.find_element(By.ID, "key-input")
    field.clear()
    field.send_keys(key)
    drv.find_element(By.ID, "key-submit").click()


@pytest.mark.timeout(600)
def test_dashboard_in_chromium(browser: Any, server: LiveServer, artifacts: Path) -> None:
    from selenium.webdriver.common.by import By

    drv = browser
    try:
        # The page loads and, the service needing a key, asks for it at once (no failed request).
        drv.get(server.url + "/")
        wait(drv, "the API key prompt", key_prompt_open)
        assert console_errors(drv) == []

        # A wrong key is refused: the prompt comes back saying so; the only console errors are the 401s.
        submit_key(drv, "not-the-key")
        wait(drv, "the prompt to come back with an error",
             lambda d: key_prompt_open(d) and d.find_element(By.ID, "key-error").is_displayed())
        assert "refused" in drv.find_element(By.ID, "key-error").text
        drv.save_screenshot(str(artifacts / "wrong-key.png"))
        errors = console_errors(drv)
        assert errors and all("401" in e for e in errors), errors

        # The right key: the demo camera's tile shows a picture, a score arrives, an event with its snapshot.
        submit_key(drv, KEY)
        wait(drv, "the prompt to close", lambda d: not key_prompt_open(d))
        tile = "article.tile[data-camera='demo']"
        wait(drv, "the demo camera's picture", image_shown(f"{tile} img.frame"))
        wait(drv, "a live score", lambda d: js(d, "return document.querySelector(arguments[0]).textContent",
                                               f"{tile} .score") not in ("", "–"))
        assert js(drv, "return document.getElementById('conn').dataset.state") == "live"
        wait(drv, "an event with its snapshot", image_shown("#events li.event img.snapshot"), timeout=EVENT_S)
        wait(drv, "its heatmap", image_shown("#events li.event img.heatmap"))
        drv.save_screenshot(str(artifacts / "dashboard.png"))

        # The camera page: status, the MJPEG stream, its events.
        drv.find_element(By.CSS_SELECTOR, f"{tile} .picture").click()
        wait(drv, "the camera page", lambda d: d.find_element(By.ID, "view-camera").is_displayed())
        wait(drv, "the MJPEG stream", image_shown("#cam-stream"))
        assert drv.find_element(By.CSS_SELECTOR, "#cam-status .field-state").text in ("live", "stalled")
        assert drv.find_element(By.CSS_SELECTOR, "#cam-status .field-stream").text == "360x240 h264 · 10 fps"
        wait(drv, "the camera's events", lambda d: d.find_elements(By.CSS_SELECTOR, "#cam-events li.event"))
        drv.save_screenshot(str(artifacts / "camera.png"))
        drv.get(server.url + "/#/")
        wait(drv, "the grid again", lambda d: d.find_element(By.ID, "view-grid").is_displayed())

        # Add a camera from the form: it appears in the grid and in the API (unreachable: it says so).
        drv.find_element(By.ID, "add-camera-open").click()
        drv.find_element(By.ID, "add-id").send_keys("gate")
        drv.find_element(By.ID, "add-url").send_keys("rtsp://127.0.0.1:9/stream")
        fps = drv.find_element(By.ID, "add-fps")
        fps.clear()
        fps.send_keys("5")
        drv.find_element(By.ID, "add-submit").click()
        gate = "article.tile[data-camera='gate']"
        wait(drv, "the new camera's tile", lambda d: d.find_elements(By.CSS_SELECTOR, gate))
        # The form's "learn" box is ticked by default: the camera starts learning, and its tile says so.
        wait(drv, "the learning badge", lambda d: d.find_element(By.CSS_SELECTOR, f"{gate} .badge.mode").text.lower()
             == "learning")
        with httpx.Client(base_url=server.url, headers={"X-API-Key": KEY}, timeout=20) as api:
            cam = api.get("/v1/cameras/gate").json()
            assert cam["fps_target"] == 5 and cam["url"] == "rtsp://127.0.0.1:9/stream"
            assert cam["mode"] == "learning" and cam["learning"]["phase"] == "recording"
            drv.save_screenshot(str(artifacts / "added-camera.png"))
            assert console_errors(drv) == []  # the whole session with the right key

            # Its page: learning, it can be cancelled (and not learnt again meanwhile).
            drv.get(server.url + "/#/camera/gate")
            button = wait(drv, "the remove button", lambda d: d.find_element(By.ID, "cam-remove"))
            wait(drv, "the learning badge", lambda d: d.find_element(By.CSS_SELECTOR, "#cam-learning .badge.mode")
                 .text.lower() == "learning")
            assert not drv.find_element(By.ID, "cam-learn").is_enabled()  # learning already
            drv.find_element(By.ID, "cam-cancel-learning").click()
            wait(drv, "learning cancelled", lambda d: d.find_element(By.CSS_SELECTOR, "#cam-learning .badge.mode")
                 .text.lower() == "unarmed")  # added to learn: the shipped model does not alert on it
            page = js(drv, "return [document.querySelector('#cam-learning .learning-text').textContent, "
                           "document.getElementById('cam-learn').disabled, "
                           "document.getElementById('cam-cancel-learning').hidden]")
            assert page == ["learning cancelled", False, True], page  # it may learn again; nothing to cancel
            assert api.get("/v1/cameras/gate").json()["learning"]["phase"] == "cancelled"

            # ... and remove it (two clicks: the button asks to be clicked again).
            button.click()
            button.click()
            wait(drv, "the tile to go", lambda d: not d.find_elements(By.CSS_SELECTOR, gate)
                 and d.find_element(By.ID, "view-grid").is_displayed())
            assert api.get("/v1/cameras/gate").status_code == 404
    except Exception:
        drv.save_screenshot(str(artifacts / "failure.png"))
        print("browser console:", drv.get_log("browser"))  # shown with the failure
        raise



@pytest.mark.timeout(300)
def test_refresh_badge_and_next_refresh_in_chromium(browser: Any, refreshing_server: LiveServer,
                                                    artifacts: Path) -> None:
    from selenium.webdriver.common.by import By

    drv, url = browser, refreshing_server.url
    expected_next = REFRESH_STARTED + REFRESH_DAYS * DAY_S
    with httpx.Client(base_url=url, timeout=20) as api:  # what the dashboard is given
        yard, gate = api.get("/v1/cameras/yard").json(), api.get("/v1/cameras/gate").json()
    assert yard["mode"] == "armed" and yard["learning"]["refresh"], yard
    assert yard["learning"]["next_refresh"] == pytest.approx(expected_next), yard
    assert gate["mode"] == "armed" and gate["learning"] is None, gate

    def text(selector: str) -> str:
        return str(drv.find_element(By.CSS_SELECTOR, selector).text).lower()  # the badge's CSS upper-cases it

    try:
        # The grid: the refreshing camera's badge says so, with the refresh's progress bar; the other's does not.
        drv.get(url + "/")
        wait(drv, "the refresh badge", lambda d: text("article.tile[data-camera='yard'] .badge.mode")
             == "armed · refreshing 40%")
        assert drv.find_element(By.CSS_SELECTOR, "article.tile[data-camera='yard'] .progress").is_displayed()
        assert text("article.tile[data-camera='gate'] .badge.mode") == "armed"
        assert not drv.find_element(By.CSS_SELECTOR, "article.tile[data-camera='gate'] .progress").is_displayed()
        drv.save_screenshot(str(artifacts / "refresh-grid.png"))

        # The refreshing camera's page: the badge, the refresh's text and when the next refresh is due.
        drv.get(url + "/#/camera/yard")
        wait(drv, "the next refresh", lambda d: d.find_elements(By.CSS_SELECTOR, "#cam-status .field-next_refresh"))
        shown = drv.find_element(By.CSS_SELECTOR, "#cam-status .field-next_refresh").text
        assert shown == js(drv, "return new Date(arguments[0] * 1000).toLocaleString()", expected_next)
        assert text("#cam-learning .badge.mode") == "armed · refreshing 40%"
        assert text("#cam-learning .learning-text") == "refreshing 40%"
        drv.save_screenshot(str(artifacts / "refresh-camera.png"))

        # The other camera's page: no refresh, no next refresh.
        drv.get(url + "/#/camera/gate")
        wait(drv, "the gate camera's page", lambda d: d.find_element(By.ID, "cam-title").text == "gate"
             and d.find_elements(By.CSS_SELECTOR, "#cam-status .field-state"))
        assert text("#cam-learning .badge.mode") == "armed"
        assert not drv.find_elements(By.CSS_SELECTOR, "#cam-status .field-next_refresh")
        assert console_errors(drv) == []
    except Exception:
        drv.save_screenshot(str(artifacts / "refresh-failure.png"))
        print("browser console:", drv.get_log("browser"))  # shown with the failure
        raise


LAUNCH_ERROR = ("training cannot start: [errno 12] cannot allocate memory (try 1 of 5; the next once a slot is free, "
                "in 60 s at the earliest)")


@pytest.fixture
def queue_server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[LiveServer]:
    """One training slot: camera `pier` was training when the service last stopped (4 of its 10 min spent), camera
    `dock`'s footage was complete and waiting for the slot, its last try to start failed. The service resumes
    pier's training; dock waits."""
    data = tmp_path / "data"
    for cam, phase, queued_at, error in (("pier", "training", 1.0, None), ("dock", "queued", 2.0, LAUNCH_ERROR)):
        folder = data / "cameras" / cam
        (folder / "runs" / "run-0001").mkdir(parents=True)
        (folder / "learning.json").write_text(json.dumps({
            "phase": phase, "footage_minutes": 1.0, "train_minutes": 10.0, "frames_wanted": 300, "fps": 5.0,
            "run": "run-0001", "error": error, "stopped": None, "pid": None, "frames_recorded": 300, "segments": 1,
            "queued_at": queued_at}))
    (data / "cameras/pier/runs/run-0001/progress.json").write_text(json.dumps(REFRESH_PROGRESS))
    calls: list[Path] = []
    monkeypatch.setattr("service.training_run.launch", stand_in_training(calls))
    settings = load_settings(None, data_dir=data, learning={"max_trainings": 1},
                             cameras=[{"id": "pier", "url": UNREACHABLE, "fps": 5},
                                      {"id": "dock", "url": UNREACHABLE, "fps": 5}])
    with serve(create_app(build_service(settings)), timeout=120) as srv:
        assert calls == [data / "cameras/pier/runs/run-0001"]  # pier's turn first; dock waits
        yield srv


@pytest.mark.timeout(300)
def test_a_queued_camera_shows_its_place_and_eta_in_chromium(browser: Any, queue_server: LiveServer,
                                                              artifacts: Path) -> None:
    from selenium.webdriver.common.by import By

    drv, url = browser, queue_server.url
    with httpx.Client(base_url=url, timeout=20) as api:  # what the dashboard is given
        pier, dock = api.get("/v1/cameras/pier").json(), api.get("/v1/cameras/dock").json()
    assert pier["mode"] == "training" and pier["learning"]["phase"] == "training", pier
    assert dock["mode"] == "training" and dock["learning"]["phase"] == "queued", dock
    assert dock["learning"]["queue_position"] == 1 and dock["learning"]["eta_s"] == 360.0 + 600.0, dock
    assert dock["learning"]["error"] == LAUNCH_ERROR, dock

    def text(selector: str) -> str:
        return str(drv.find_element(By.CSS_SELECTOR, selector).text).lower()

    try:
        drv.get(url + "/#/camera/dock")
        wait(drv, "the queued camera's page", lambda d: d.find_element(By.ID, "cam-title").text == "dock"
             and text("#cam-learning .learning-text") != "")
        assert text("#cam-learning .learning-text") == f"queued for training (next) · 16 min left · {LAUNCH_ERROR}"
        assert text("#cam-learning .badge.mode") == "training"
        drv.get(url + "/#/camera/pier")
        wait(drv, "the training camera's page", lambda d: d.find_element(By.ID, "cam-title").text == "pier"
             and text("#cam-learning .learning-text") != "")
        assert text("#cam-learning .learning-text") == "step 40 / 100 · 6 min left"
        drv.save_screenshot(str(artifacts / "queue-camera.png"))
        assert console_errors(drv) == []
    except Exception:
        drv.save_screenshot(str(artifacts / "queue-failure.png"))
        print("browser console:", drv.get_log("browser"))  # shown with the failure
        raise
