"""Model refresh (`learning.refresh_days`): an armed camera's own model is fine-tuned on its recent clean footage
now and then, so that slow changes (seasons, new furniture) are absorbed.

While a camera is armed with a model of its own (the registry's active version) and no learning job records or
trains it, its recent alert-free footage is kept rolling (service.recent_footage) in data_dir/cameras/{id}/recent/.
Its refresh is due `refresh_days` after the later of: the active model's creation, the moment another version
became active (a rollback restarts the clock), the last refresh attempt (a failed one is not retried at once).
That clock (service.refresh_state) is kept in data_dir/cameras/{id}/refresh.json, so a restart does not reset it.
When due, the recent window full and a training slot free (no camera waits for one to learn: service.learning's
queue goes first), the footage moves into a fresh run folder and `python -m model.learn` trains
on it exactly as learning does (service.training_run: same recipe, niced, threads), from the active model's file
(`--init`), within `refresh_train_minutes`, and measures the active model on the same held-out tail (`--baseline`).

Meanwhile the camera stays armed and keeps scoring with its model; its `learning` view says `"refresh": true`.
The new model is registered and activated unless the run failed, the active model changed meanwhile, or its
held-out PSNR is more than `refresh_max_psnr_drop_db` below the active model's on that same held-out footage;
then the old model stays, and the reason is in the camera's last_error, its `learning.last_refresh` and a
`camera` WebSocket message. Earlier versions stay in the registry (rollback: POST .../models/{v}/activate).
"""
from __future__ import annotations

import logging
import shutil
import subprocess
import threading
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Protocol

from model import Footage, ModelConfig, WeightsError, footage_frames, sha256_file, write_json_atomic

from . import training_run
from .camera_records import CameraRecords
from .capture import FrameTap
from .frames import CameraMessage, EventMessage, ModelStatus, ScoreMessage
from .learning_view import finite_or_none, finite_values, learning_view
from .recent_footage import CleanFootage
from .refresh_state import RefreshState, is_due, judge, next_refresh_at, observe_active
from .registry import ModelEntry, ModelRegistry
from .settings import CameraSettings, LearningSettings
from .training_run import read_json

log = logging.getLogger(__name__)
REFRESH_FILE = "refresh.json"


class RefreshHost(Protocol):
    """What a refresh uses of the pipeline (service.pipeline.Pipeline)."""

    registry: ModelRegistry

    def camera_ids(self) -> list[str]: ...

    def camera_settings(self, camera_id: str) -> CameraSettings: ...

    def detection_delay_s(self, camera_id: str) -> float: ...

    def set_tap(self, camera_id: str, tap: FrameTap | None) -> None: ...

    def activate_model(self, camera_id: str, version: str | None) -> ModelStatus: ...

    def report_error(self, camera_id: str, error: str) -> None: ...

    def publish_camera(self, camera_id: str) -> None: ...

    def add_listener(self, fn: Callable[[ScoreMessage | EventMessage | CameraMessage], None]) -> Any: ...


@dataclass
class _Cam:
    state: RefreshState
    recent: CleanFootage | None = None
    proc: subprocess.Popen[bytes] | None = None
    progress: dict[str, Any] = field(default_factory=dict)
    reported: str | None = None  # the recent footage's write error, once reported


def _waiting(cam: _Cam) -> bool:
    """A resumed refresh waits for a training slot: it has a run, and no process since the restart."""
    return cam.proc is None and cam.state.run is not None and cam.state.pid is None


class Refresher:
    """The cameras' refreshes, polled by the learning thread.

    Two locks. `_ops` orders the operations on a camera's refresh (a poll, a release for a relearn or a delete,
    start, stop): one never meets another half done; the slow work (copying and hashing a model, loading it,
    deleting footage, stopping a process) happens under it. `lock` is the learning's, which the views
    (GET /v1/cameras, the WebSocket's camera messages) take: it is held only to read or swap state, never for
    slow work. A learning job takes the camera's tap under `lock`, and the recent footage's tap is installed under
    it only when no job holds it."""

    def __init__(self, settings: LearningSettings, records: CameraRecords, host: RefreshHost,
                 config: Callable[[], ModelConfig], busy: Callable[[str], bool], lock: threading.RLock, *,
                 may_train: Callable[[], bool] = lambda: True, device: str = "auto",
                 clock: Callable[[], float]) -> None:
        self.settings, self.records, self.host, self.config = settings, records, host, config
        self.busy, self.lock, self.device, self.clock = busy, lock, device, clock
        self.may_train = may_train  # a training slot is free for a refresh (service.learning's queue)
        self._ops = threading.RLock()
        self._cams: dict[str, _Cam] = {}
        self._listening = False

    @property
    def enabled(self) -> bool:
        return self.settings.refresh_days is not None

    def exclusive(self) -> threading.RLock:
        """Held, no refresh operation runs; learning holds it to start a camera's job, to poll it and to remove a
        camera, so that no poll (a refresh's or a job's) nor a job's start sees a camera half removed."""
        return self._ops

    # -- lifecycle ------------------------------------------------------------------------------------------

    def start(self) -> None:
        """Resume the refresh trainings a stopped service left (their run folders hold their footage), or finish
        one whose training had ended. One camera's unreadable state does not keep the others down."""
        if not self.enabled:
            return
        if not self._listening:
            self.host.add_listener(self._on_message)
            self._listening = True
        with self._ops:
            for camera_id in self.host.camera_ids():
                try:
                    self._resume(camera_id)
                except Exception as e:  # noqa: BLE001 - one camera's bad state must not stop the service
                    log.exception("camera %s: model refresh not resumed", camera_id)
                    self._give_up(camera_id, f"refresh not resumed: {e}")

    def _resume(self, camera_id: str) -> None:
        cam = self._cam(camera_id)
        st = cam.state
        if st.run is None or st.base is None:
            return
        run_dir = self._run_dir(camera_id, st.run)
        training_run.kill_stale(st.pid, run_dir)
        progress = read_json(run_dir / "progress.json") or {}
        with self.lock:
            cam.progress, st.pid = progress, None  # no process until a training slot is free
        final = run_dir / "final.pt"
        if final.is_file():  # it had ended: stopped before its outcome was saved
            self._finish(camera_id, cam, training_run.Ended(final, None))
            return
        log.info("camera %s: model refresh in %s resumes when a training slot is free", camera_id, run_dir)

    def start_waiting(self) -> None:
        """Start the resumed refreshes' trainings while slots are free (the polls start the others later)."""
        if not self.enabled:
            return
        with self._ops:
            with self.lock:
                cams = list(self._cams.items())
            for camera_id, cam in cams:
                if _waiting(cam) and self.may_train():
                    try:
                        self._start(camera_id, cam)
                    except Exception as e:  # noqa: BLE001 - one camera's bad state must not stop the service
                        log.exception("camera %s: model refresh not resumed", camera_id)
                        self._give_up(camera_id, f"refresh not resumed: {e}")

    def _give_up(self, camera_id: str, error: str) -> None:
        try:
            cam = self._cam(camera_id)
            if cam.state.run is not None:
                self._end(camera_id, cam, {"run": cam.state.run, "base": cam.state.base, "error": error,
                                           "activated": False}, publish=False)
        except Exception:  # noqa: BLE001 - its state cannot even be written: the next start tries again
            log.exception("camera %s: refresh state not saved", camera_id)

    def stop(self) -> None:
        """Close the recent footage and stop refresh trainings: their state stays and the next start resumes."""
        with self._ops:
            with self.lock:
                cams = list(self._cams.items())
            for camera_id, cam in cams:
                self._stop_recording(camera_id, cam, untap=True)
                proc, cam.proc = cam.proc, None
                if proc is not None:
                    training_run.kill_group(proc)

    def release(self, camera_id: str, reason: str) -> None:
        """A learning job takes the camera (a relearn, a delete): stop its recent footage (the job owns the tap
        now) and delete it (it shows the view being replaced), and cancel its refresh."""
        with self._ops:
            with self.lock:
                cam = self._cams.get(camera_id)
            if cam is None:
                return
            self._stop_recording(camera_id, cam, untap=False, remove=True)
            self._cancel(camera_id, cam, reason, publish=False)

    def _cancel(self, camera_id: str, cam: _Cam, reason: str, *, publish: bool) -> None:
        """Stop the camera's refresh training, if one runs, and end it with `reason`."""
        proc, cam.proc = cam.proc, None
        if proc is not None:
            training_run.kill_group(proc)
        run = cam.state.run
        if run is not None:
            self._end(camera_id, cam, {"run": run, "base": cam.state.base,
                                       "error": f"refresh cancelled: {reason}", "activated": False},
                      publish=publish)
            shutil.rmtree(self._run_dir(camera_id, run) / "footage", ignore_errors=True)

    def forget(self, camera_id: str) -> None:
        with self._ops:
            self.release(camera_id, "the camera is removed")
            with self.lock:
                self._cams.pop(camera_id, None)

    def restart_recording(self, camera_id: str, *, discard: bool) -> None:
        """The camera's settings changed (fps, alerts): its recent footage is recorded anew with them from the next
        poll on; `discard`: the camera runs at another fps, so what was recorded goes too and a refresh training
        (footage of the old rate) is cancelled."""
        with self._ops:
            with self.lock:
                cam = self._cams.get(camera_id)
            if cam is not None:
                self._stop_recording(camera_id, cam, untap=True, remove=discard)
                if discard:
                    self._cancel(camera_id, cam, "the camera's fps changed", publish=True)

    # -- the learning thread --------------------------------------------------------------------------------

    def poll(self, camera_id: str) -> None:
        if not self.enabled:
            return
        with self._ops:
            try:
                self.host.camera_settings(camera_id)
            except KeyError:  # removed since the camera list was read
                return
            cam = self._cam(camera_id)
            if cam.proc is not None:
                self._poll_training(camera_id, cam)
            elif _waiting(cam) and self.may_train():
                self._start(camera_id, cam)
            entry = self._own_model(camera_id)
            with self.lock:
                changed = observe_active(cam.state, None if entry is None else entry.version,
                                         0.0 if entry is None else entry.created, self.clock())
            if changed:
                self._save(camera_id, cam.state)
            if entry is None:
                self._stop_recording(camera_id, cam, untap=True, remove=True)
                return
            if not self._ensure_recording(camera_id, cam):
                return
            recent = cam.recent
            assert recent is not None and self.settings.refresh_days is not None
            self._surface_error(camera_id, cam, recent)
            if (cam.proc is None and cam.state.run is None and is_due(cam.state, self.settings.refresh_days,
                                                                     self.clock())
                    and recent.enough() and self.may_train()):
                self._begin(camera_id, cam, entry, recent)

    def _own_model(self, camera_id: str) -> ModelEntry | None:
        """The camera's active version, if it scores the camera (learnt at the camera's fps)."""
        try:
            entry = self.host.registry.active(camera_id)
        except WeightsError as e:
            log.error("camera %s: no refresh, its registry cannot be read: %s", camera_id, e)
            return None
        if entry is None or entry.rate_mismatch(self.host.camera_settings(camera_id).fps) is not None:
            return None
        return entry

    def _ensure_recording(self, camera_id: str, cam: _Cam) -> bool:
        with self.lock:
            busy = self.busy(camera_id)  # a learning job records or trains: its tap, its footage
            recent = cam.recent
            if busy:
                cam.recent = None
            elif recent is None:
                s = self.settings
                fps = self.host.camera_settings(camera_id).fps
                margin = s.refresh_margin_s
                cam.recent = CleanFootage(self._folder(camera_id) / "recent", self.config(), fps=fps,
                                          max_frames=footage_frames(s.footage_minutes, fps),
                                          max_bytes=int(s.disk_cap_mb * 1e6), margin_s=margin,
                                          hold_s=margin + self.host.detection_delay_s(camera_id) + 1.0)
                self.host.set_tap(camera_id, cam.recent.tap)
        if busy and recent is not None:
            recent.close()
        return not busy

    def _stop_recording(self, camera_id: str, cam: _Cam, *, untap: bool, remove: bool = False) -> None:
        with self.lock:
            recent, cam.recent = cam.recent, None
            if recent is not None and untap:
                self.host.set_tap(camera_id, None)
        if recent is not None:
            recent.close(remove=remove)

    def _surface_error(self, camera_id: str, cam: _Cam, recent: CleanFootage) -> None:
        """A write error of the recent footage: reported once (the camera's last_error), and the writer opened
        again."""
        error = recent.error
        if error is not None and cam.reported is None:
            log.error("camera %s: %s", camera_id, error)
            self.host.report_error(camera_id, error)
        cam.reported = error
        if error is not None:
            recent.recover()

    def _on_message(self, msg: ScoreMessage | EventMessage | CameraMessage) -> None:
        """Inference thread: scores move the recent footage's horizon; alerts and scene changes are left out."""
        camera_id = msg.event.camera_id if isinstance(msg, EventMessage) else msg.camera_id
        cam = self._cams.get(camera_id)
        recent = None if cam is None else cam.recent
        if recent is None:
            return
        if isinstance(msg, ScoreMessage):
            recent.scored(msg.ts)
        elif isinstance(msg, EventMessage):
            recent.exclude(msg.event.id, msg.event.start_ts, msg.event.end_ts)

    # -- a refresh ------------------------------------------------------------------------------------------

    def _begin(self, camera_id: str, cam: _Cam, entry: ModelEntry, recent: CleanFootage) -> None:
        run = training_run.next_run(self._folder(camera_id))
        footage = self._run_dir(camera_id, run) / "footage"
        frames = recent.rotate(footage)
        segments = len(Footage(footage).segment_dirs())
        st = cam.state
        with self.lock:
            st.run, st.base, st.frames, st.segments = run, entry.version, frames, segments
            st.last_attempt, st.train_minutes = self.clock(), self.settings.refresh_budget_minutes
            cam.progress = {}
        if self._start(camera_id, cam):
            log.info("camera %s: refreshing model %s from %d frames of recent footage in %s", camera_id,
                     entry.version, frames, run)

    def _start(self, camera_id: str, cam: _Cam) -> bool:
        """Start (or resume) the refresh's training; one that cannot start ends with the reason."""
        st = cam.state
        try:
            self._launch(camera_id, cam)
        except (OSError, KeyError, WeightsError) as e:
            assert st.run is not None
            footage = self._run_dir(camera_id, st.run) / "footage"
            self._end(camera_id, cam, {"run": st.run, "base": st.base, "frames": st.frames, "activated": False,
                                       "error": f"refresh failed: its training cannot start: {e}"}, publish=True)
            shutil.rmtree(footage, ignore_errors=True)
            return False
        return True

    def _launch(self, camera_id: str, cam: _Cam) -> None:
        st = cam.state
        assert st.run is not None and st.base is not None and st.train_minutes is not None
        run_dir = self._run_dir(camera_id, st.run)
        base = self.host.registry.path(camera_id, self.host.registry.entry(camera_id, st.base))
        proc = training_run.launch(self.settings, run_dir / "footage", run_dir, st.train_minutes,
                                   device=self.device, init=str(base), baseline=True)
        with self.lock:
            cam.proc, st.pid = proc, proc.pid
        self._save(camera_id, st)
        self.host.publish_camera(camera_id)

    def _poll_training(self, camera_id: str, cam: _Cam) -> None:
        assert cam.proc is not None and cam.state.run is not None
        progress, ended = training_run.poll(cam.proc, self._run_dir(camera_id, cam.state.run))
        if progress is not None:
            with self.lock:
                cam.progress = progress
        if ended is not None:
            cam.proc = None
            self._finish(camera_id, cam, ended)

    def _finish(self, camera_id: str, cam: _Cam, ended: training_run.Ended) -> None:
        """The refresh's training ended: adopt its model or say why not; the outcome is saved before the run's
        footage copy is deleted."""
        st = cam.state
        assert st.run is not None
        run_dir = self._run_dir(camera_id, st.run)
        outcome: dict[str, Any] = {"run": st.run, "base": st.base, "frames": st.frames,
                                   "heldout_psnr": finite_or_none(cam.progress.get("heldout_psnr")),
                                   "base_heldout_psnr": finite_or_none(cam.progress.get("init_heldout_psnr")),
                                   "activated": False}
        if ended.final is None:
            outcome["error"] = f"refresh failed: {ended.error}"
        else:
            outcome.update(self._adopt(camera_id, st, ended.final, outcome))
        self._end(camera_id, cam, outcome, publish=True)
        shutil.rmtree(run_dir / "footage", ignore_errors=True)  # learnt from; the disk cap is for recent footage

    def _adopt(self, camera_id: str, st: RefreshState, final: Path, outcome: dict[str, Any]) -> dict[str, Any]:
        """Register and activate the refreshed model, or say why not. A service stopped after registering or
        activating it finds it again by its sha256."""
        registry = self.host.registry
        try:
            sha = sha256_file(final)
            registered = next((v for v in registry.versions(camera_id) if v.sha256 == sha), None)
        except (OSError, WeightsError) as e:
            return {"error": f"refresh failed: the refreshed model cannot be registered: {e}"}
        active = self._own_model(camera_id)
        if registered is not None and active is not None and active.version == registered.version:
            return {"version": active.version, "activated": True}
        if active is None or active.version != st.base:
            current = "no model of its own" if active is None else f"model {active.version}"
            return {"error": f"refresh not activated: the camera moved from model {st.base} to {current} meanwhile"}
        reason = judge(outcome["heldout_psnr"], outcome["base_heldout_psnr"], self.settings.refresh_max_psnr_drop_db)
        if reason is not None:
            return {"error": f"refresh rejected: {reason}"}
        try:
            entry = registered or registry.add(camera_id, final)
            self.host.activate_model(camera_id, entry.version)
        except (OSError, KeyError, WeightsError) as e:
            return {"error": f"refresh failed: the refreshed model cannot be registered or activated: {e}"}
        log.info("camera %s: model refreshed, %s -> %s", camera_id, st.base, entry.version)
        return {"version": entry.version, "activated": True}

    def _end(self, camera_id: str, cam: _Cam, outcome: dict[str, Any], *, publish: bool) -> None:
        st = cam.state
        with self.lock:
            st.last = {"time": self.clock(), "error": None, **outcome}
            st.run, st.base, st.pid, st.frames, st.segments, st.train_minutes = None, None, None, 0, 0, None
            cam.progress = {}
            error = st.last.get("error")
        self._save(camera_id, st)
        training_run.prune_runs(self._folder(camera_id))
        if error:
            log.error("camera %s: %s", camera_id, error)
            self.host.report_error(camera_id, error)
        if publish:
            self.host.publish_camera(camera_id)

    def running_left_s(self) -> list[float]:
        """The seconds each running refresh training has left (its progress's ETA, else its budget)."""
        with self.lock:
            cams = [c for c in self._cams.values() if c.proc is not None]
            return [float(c.progress.get("eta_s") or 60 * (c.state.train_minutes or 0.0)) for c in cams]

    # -- what GET /v1/cameras/{id} shows --------------------------------------------------------------------

    def view(self, camera_id: str) -> dict[str, Any] | None:
        """The refresh's part of the camera's `learning`: None when refresh is off or the camera has no model of
        its own (and no refresh of one trains)."""
        if not self.enabled:
            return None
        assert self.settings.refresh_days is not None
        with self.lock:
            cam = self._cams.get(camera_id)
            if cam is None or (cam.state.version is None and cam.state.run is None):
                return None
            st, recent, progress = replace(cam.state), cam.recent, dict(cam.progress)
        out: dict[str, Any] = {
            "refresh": st.run is not None, "next_refresh": next_refresh_at(st, self.settings.refresh_days),
            "recent_frames": None if recent is None else recent.frames,
            "recent_excluded": None if recent is None else recent.excluded,
            "recent_error": None if recent is None else recent.error, "last_refresh": finite_values(st.last)}
        if st.run is not None:
            out.update(learning_view("queued" if st.pid is None else "training", frames_recorded=st.frames,
                                     frames_wanted=st.frames, segments=st.segments, progress=progress,
                                     train_minutes=st.train_minutes or 0.0, eta_s=progress.get("eta_s")))
        return out

    # -- state on disk --------------------------------------------------------------------------------------

    def _folder(self, camera_id: str) -> Path:
        return self.records.folder(camera_id)

    def _run_dir(self, camera_id: str, run: str) -> Path:
        return self._folder(camera_id) / "runs" / run

    def _cam(self, camera_id: str) -> _Cam:
        with self.lock:
            cam = self._cams.get(camera_id)
        if cam is not None:
            return cam
        saved = read_json(self._folder(camera_id) / REFRESH_FILE)
        try:
            state = RefreshState.from_dict(saved) if saved else RefreshState()
        except TypeError as e:
            log.error("camera %s: refresh state unreadable (%s): its clock starts again", camera_id, e)
            state = RefreshState()
        with self.lock:
            return self._cams.setdefault(camera_id, _Cam(state))

    def _save(self, camera_id: str, state: RefreshState) -> None:
        with self.lock:
            data = asdict(state)
        folder = self._folder(camera_id)
        folder.mkdir(parents=True, exist_ok=True)
        write_json_atomic(folder / REFRESH_FILE, data)
