"""Learning: each camera learns its own model, from its own stream, in the background.

    recording the camera's kept frames (its fps, before the scorer's preprocessing) are recorded as footage
              (model.footage) under data_dir/cameras/{id}/footage/, until footage_minutes or the disk cap;
    queued    the footage waits for a training slot: at most `learning.training_slots` training processes run
              at once (a camera's learning and the refreshes together), so that each gets the CPU and memory its
              budget assumes; cameras take their turn in the order their footage was complete, before refreshes;
    training  `python -m model.learn` trains on it in a process of its own (niced, its own process group,
              learning.threads torch threads) in a fresh run folder data_dir/cameras/{id}/runs/run-NNNN/;
              progress.json is polled;
    done      final.pt goes into the model registry and is activated: the camera is armed with its own model.

Recording is service.recording, the training process service.training_run; this module drives a camera's job
through its phases, and polls the cameras' model refreshes (service.refresh) beside them. A frozen or uniform
stream is refused after recording (the camera's last_error says why). The job's state is kept in
data_dir/cameras/{id}/learning.json: a restarted service goes on recording, or resumes the training from its
last checkpoint (first in the queue for a slot again). Deleting a camera cancels its job (the training's process
group is killed) and removes its folder and models.
"""
from __future__ import annotations

import logging
import shutil
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

from model import ModelConfig, WeightsError, footage_frames, min_footage_frames, recipe_model, write_json_atomic

from . import tombstones, training_run
from .camera_records import CameraRecords
from .frames import CameraStatus
from .learning_job import BUSY, IN_LINE, Job, Phase, in_turn, schedule
from .learning_view import learning_view
from .recording import FootageRecording
from .refresh import Refresher, RefreshHost
from .settings import CameraSettings, LearningSettings
from .training_run import read_json

log = logging.getLogger(__name__)
STATE_FILE = "learning.json"
# A training that could not start (memory, process limit) is tried again once a slot is free and this much time
# has passed, at most LAUNCH_TRIES times in all: a cause that lasts (a folder it cannot write) fails the job.
LAUNCH_RETRY_S = 60.0
LAUNCH_TRIES = 5


class LearningHost(RefreshHost, Protocol):
    """What learning uses of the pipeline (service.pipeline.Pipeline), which owns it: what a refresh uses, and
    these."""

    def add_camera(self, cam: CameraSettings, *, trusted: bool = False) -> CameraStatus: ...

    def update_camera(self, cam: CameraSettings, *, trusted: bool = False) -> CameraStatus: ...

    def remove_camera(self, camera_id: str) -> None: ...

    def get_camera(self, camera_id: str) -> CameraStatus: ...

    def list_cameras(self) -> list[CameraStatus]: ...

    def camera_live(self, camera_id: str) -> bool: ...


class LearningBusy(Exception):
    """The camera is learning or training already (the API answers 409)."""


class NotLearning(Exception):
    """The camera has no learning to cancel (the API answers 409)."""


class Learning:
    """The cameras' learning jobs and the cameras added over the API (kept in data_dir). Owned by the pipeline,
    which asks it for a camera's phase; it drives the pipeline's footage taps and model activation."""

    def __init__(self, settings: LearningSettings, data_dir: Path, pipeline: LearningHost, *,
                 device: str = "auto", clock: Callable[[], float] = time.time) -> None:
        self.settings, self.pipeline, self.device = settings, pipeline, device
        self.records = CameraRecords(data_dir)
        self._jobs: dict[str, Job] = {}
        self._lock = threading.RLock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._config: ModelConfig | None = None
        self.clock = clock
        self.refresher = Refresher(settings, self.records, pipeline, self._model_config, self._busy, self._lock,
                                   may_train=self._may_refresh, device=device, clock=clock)

    # -- lifecycle ------------------------------------------------------------------------------------------

    def start(self) -> None:
        """Remove what deletes stopped by a crash left, bring back the cameras added over the API, resume their
        jobs, start polling."""
        tombstones.sweep(self.records.root)
        tombstones.sweep(self.pipeline.registry.root)
        known = {c.id for c in self.pipeline.list_cameras()}
        for cam in self.records.load():
            if cam.id not in known:
                try:
                    self.pipeline.add_camera(cam, trusted=False)
                except Exception as e:  # noqa: BLE001 - one bad record must not keep the others down
                    log.error("camera %s not restored: %s", cam.id, e)
        for c in self.pipeline.list_cameras():
            self._resume(c.id)
        self.refresher.start()
        self._start_queued()  # resumed trainings go on at once, as far as the slots allow: learning first
        self.refresher.start_waiting()
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="learning", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop polling, close the recordings and stop the training processes: their state stays on disk and
        the next start resumes them."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        with self._lock:
            jobs = list(self._jobs.values())
        for job in jobs:
            self._halt(job)
        self.refresher.stop()

    def _run(self) -> None:
        while not self._stop.wait(self.settings.poll_s):
            with self._lock:
                jobs = list(self._jobs.values())
            for job in jobs:
                try:
                    self._poll(job)
                except Exception:  # a bug in one job must not stop the others' polling
                    log.exception("camera %s: learning poll failed", job.camera_id)
            try:
                self._start_queued()
            except Exception:
                log.exception("queued trainings not started")
            for camera_id in self.pipeline.camera_ids():
                try:
                    self.refresher.poll(camera_id)
                except Exception:
                    log.exception("camera %s: model refresh poll failed", camera_id)

    # -- the API's operations -------------------------------------------------------------------------------

    def add_camera(self, cam: CameraSettings, *, learn: bool = False, footage_minutes: float | None = None,
                   train_minutes: float | None = None) -> None:
        """A camera added over the API: run it, keep it in data_dir, and start its learning when asked."""
        self.pipeline.add_camera(cam, trusted=False)
        self.records.save(cam)
        if learn:
            self.learn(cam.id, footage_minutes, train_minutes)

    def update_camera(self, cam: CameraSettings, *, trusted: bool) -> None:
        """PATCH: new URL, fps or alert settings; the camera keeps its mode, models and job. Its recent footage
        (refresh) is recorded anew with them. A model learns motion at its footage's rate, so at another fps what
        was recorded goes (the learning footage starts again at the new rate), and LearningBusy refuses it while
        footage of the old rate waits for or is in training. With `auto_relearn`, a camera whose own model learnt
        another rate learns again at the new one, as after a scene change."""
        with self.refresher.exclusive():  # no learn nor poll gives the camera a tap while it is dropped and re-added
            old_fps = self.pipeline.camera_settings(cam.id).fps
            with self._lock:
                job = self._jobs.get(cam.id)
            new_rate = cam.fps != old_fps
            if new_rate and job is not None and job.phase in IN_LINE:
                raise LearningBusy(f"camera {cam.id!r} is {job.phase} on footage at {old_fps:g} fps: its fps can "
                                   "change once the training ends (relearn then), or after DELETE .../learn")
            learnt = self._outgrown(cam) if new_rate and self.settings.auto_relearn and (
                job is None or job.phase not in BUSY) else None
            self.pipeline.update_camera(cam, trusted=trusted)
            if new_rate and job is not None and job.phase == "recording":
                self._record_again(job, cam.fps)
        if (self.records.folder(cam.id) / "camera.json").is_file():
            self.records.save(cam)
        self.refresher.restart_recording(cam.id, discard=new_rate)
        if learnt is not None:
            log.info("camera %s: relearning at %g fps (its model learnt %g fps)", cam.id, cam.fps, learnt)
            try:
                self.learn(cam.id)
            except (LearningBusy, KeyError) as e:  # a learn or a delete came first
                log.info("camera %s: no relearn at the new fps: %s", cam.id, e)

    def _outgrown(self, cam: CameraSettings) -> float | None:
        """The rate the camera's own model learnt, when it cannot score the camera at its fps and footage at that
        fps can be recorded and learnt from (the camera runs; enough frames in `footage_minutes`); else None."""
        try:
            entry = self.pipeline.registry.active(cam.id)
        except WeightsError:
            return None
        if entry is None or entry.rate_mismatch(cam.fps) is None:
            return None
        why_not = "the camera is stopped" if not cam.enabled else self.footage_too_short(None, cam.fps)
        if why_not is not None:
            log.info("camera %s: no relearn at %g fps: %s", cam.id, cam.fps, why_not)
            return None
        return entry.fps

    def _record_again(self, job: Job, fps: float) -> None:
        """The camera's learning footage starts again at `fps` (its refresher's lock held)."""
        self.pipeline.set_tap(job.camera_id, None)
        with job.lock:
            recording, job.recording = job.recording, None
        if recording is not None:
            recording.close()
        shutil.rmtree(job.footage, ignore_errors=True)
        try:
            with job.lock:
                job.fps, job.frames_wanted = fps, footage_frames(job.footage_minutes, fps)
                job.frames_recorded, job.segments, job.stopped = 0, 0, None
                self._open_writer(job)
            self._save(job)
        except OSError as e:
            self._fail(job, f"footage cannot be recorded again at {fps:g} fps: {e}")
            return
        log.info("camera %s: learning footage recorded again at %g fps", job.camera_id, fps)
        self.pipeline.publish_camera(job.camera_id)

    def delete_camera(self, camera_id: str) -> None:
        """Cancel the camera's job, stop it, and remove its record, footage, runs and models. KeyError: unknown."""
        self.pipeline.get_camera(camera_id)  # KeyError -> 404 before anything is removed
        # No poll, of a refresh or of the job, nor a learn sees the camera half removed (and records, saves or arms
        # it again): one that began first ends first, and what it made goes below. The job stops and its folders
        # move aside under the lock too: once it is released, a camera added again with the id owns those paths,
        # and neither the old job's writes nor the removal of its files can touch what that camera writes there.
        with self.refresher.exclusive():
            with self._lock:
                job = self._jobs.pop(camera_id, None)
            self.refresher.forget(camera_id)
            self.pipeline.set_tap(camera_id, None)
            self.pipeline.remove_camera(camera_id)
            if job is not None:
                self._halt(job)
            tombs = [tombstones.entomb(self.records.folder(camera_id)),
                     self.pipeline.registry.entomb_camera(camera_id)]
        tombstones.remove(tombs)
        if job is not None and job.phase in IN_LINE:
            self._publish_queued()

    def learn(self, camera_id: str, footage_minutes: float | None = None,
              train_minutes: float | None = None) -> dict[str, Any]:
        """Start (or restart) learning: fresh footage, then a fresh run. KeyError: unknown camera; LearningBusy:
        it is learning or training already."""
        # A delete never meets it half done (a tap for a camera gone, its folder made again): one that began first
        # ends first, and the camera is read under the lock (KeyError); one after it removes the job made here.
        with self.refresher.exclusive():
            cam = self.pipeline.camera_settings(camera_id)  # KeyError -> 404
            folder = self.records.folder(camera_id)
            fm = footage_minutes or self.settings.footage_minutes
            job = Job(camera_id, folder, fm, train_minutes or self.settings.train_minutes,
                      footage_frames(fm, cam.fps), cam.fps, training_run.next_run(folder))
            with self._lock:  # from here on the camera is busy: no refresh records it or starts
                old = self._jobs.get(camera_id)
                if old is not None and old.phase in BUSY:
                    raise LearningBusy(f"camera {camera_id!r} is {old.phase} already")
                self._jobs[camera_id] = job
            self.refresher.release(camera_id, "the camera relearns")  # before the job is saved: never both on disk
            shutil.rmtree(job.footage, ignore_errors=True)  # a new view: nothing of the old footage is learnt
            self._save(job)
            with job.lock:
                self._open_writer(job)
        log.info("camera %s: learning (%d frames of footage, then %g min of training in %s)", camera_id,
                 job.frames_wanted, job.train_minutes, job.run)
        self.pipeline.publish_camera(camera_id)
        eta, place = self._eta(job)
        with job.lock:
            return job.view(eta, place)

    def cancel(self, camera_id: str) -> dict[str, Any]:
        """Stop the camera's learning (recording, queued or training): its footage and run folder go; its models,
        and its mode as it was before, stay. KeyError: unknown camera; NotLearning: nothing to cancel."""
        with self.refresher.exclusive():  # no poll meets the job half stopped
            self.pipeline.camera_settings(camera_id)  # KeyError -> 404
            with self._lock:
                job = self._jobs.get(camera_id)
                if job is None or job.phase not in BUSY:
                    raise NotLearning(f"camera {camera_id!r} is not learning")
                was = job.phase
                job.phase, job.pid, job.error = "cancelled", None, None
            self.pipeline.set_tap(camera_id, None)
            self._halt(job)
            self._save(job)
            shutil.rmtree(job.footage, ignore_errors=True)
            shutil.rmtree(job.run_dir, ignore_errors=True)
        log.info("camera %s: learning cancelled", camera_id)
        self.pipeline.publish_camera(camera_id)
        if was in IN_LINE:
            self._publish_queued()
        with job.lock:
            return job.view()

    def activate(self, camera_id: str, version: str) -> None:
        """Roll the camera back or forward to a version of its model (CameraModels.activate), never beside a PATCH
        that changes its fps: the version's rate is checked against the camera as it stays."""
        with self.refresher.exclusive():
            self.pipeline.activate_model(camera_id, version)

    def footage_too_short(self, footage_minutes: float | None, fps: float) -> str | None:
        """Why footage of `footage_minutes` (None: the setting) at `fps` cannot be learnt from (None: it can),
        said before it is recorded rather than by a training that fails on it."""
        minutes = footage_minutes or self.settings.footage_minutes
        frames = footage_frames(minutes, fps)
        need = min_footage_frames(self._model_config().history)
        if frames >= need:
            return None
        return (f"footage_minutes {minutes:g} is {frames} frames at {fps:g} fps; learning needs at least {need} "
                f"({need / fps:.1f} s)")

    # -- what the pipeline asks -----------------------------------------------------------------------------

    def _busy(self, camera_id: str) -> bool:
        """A job records, waits to train or trains the camera: it owns its footage tap, and no refresh runs."""
        return self.phase(camera_id) in BUSY

    def phase(self, camera_id: str) -> Phase | None:
        with self._lock:
            job = self._jobs.get(camera_id)
        return None if job is None else job.phase

    def view(self, camera_id: str) -> dict[str, Any] | None:
        """The camera's `learning`: its job's progress, and with refresh on, its refresh (while one trains, the
        refresh's progress, `"refresh": true`)."""
        with self._lock:
            job = self._jobs.get(camera_id)
        refresh = self.refresher.view(camera_id)
        if job is None and refresh is None:
            return None
        if job is not None:
            eta, place = self._eta(job)
            with job.lock:
                base = job.view(eta, place)
        else:  # armed with a model of its own that it did not learn here (a settings-file camera, an upload)
            base = learning_view("done")
        return {**base, **(refresh or {})}

    # -- recording ------------------------------------------------------------------------------------------

    def _model_config(self) -> ModelConfig:
        if self._config is None:
            self._config = recipe_model(self.settings.recipe)
        return self._config

    def _open_writer(self, job: Job) -> None:
        job.recording = FootageRecording(job.footage, self._model_config(), fps=job.fps,
                                         max_frames=job.frames_wanted,
                                         max_bytes=int(self.settings.disk_cap_mb * 1e6))
        self.pipeline.set_tap(job.camera_id, job.recording.tap)

    def _finish_recording(self, job: Job) -> None:
        with job.lock:
            recording, job.recording = job.recording, None
        assert recording is not None
        self.pipeline.set_tap(job.camera_id, None)
        done = recording.close()
        with job.lock:
            job.frames_recorded, job.segments = done.frames, done.segments
            job.stopped = done.stopped or job.stopped
        if done.static is not None:
            self._fail(job, f"footage refused: {done.static}")
            return
        self._enqueue(job)

    # -- the queue of training slots ------------------------------------------------------------------------

    def _enqueue(self, job: Job) -> None:
        job.phase, job.queued_at = "queued", self.clock()
        self._save(job)
        log.info("camera %s: footage complete (%d frames), queued for training", job.camera_id, job.frames_recorded)
        self.pipeline.publish_camera(job.camera_id)

    def _all(self) -> list[Job]:
        with self._lock:
            return list(self._jobs.values())

    def _queued(self) -> list[Job]:
        """The jobs waiting for a training slot, in their turn."""
        return in_turn(self._all())

    def _running(self) -> int:
        """Training processes running now: the jobs' and the refreshes'."""
        return sum(1 for j in self._all() if j.proc is not None) + len(self.refresher.running_left_s())

    def _may_refresh(self) -> bool:
        """A refresh may start its training: a slot is free and no camera waits for one (learning goes first; one
        waiting to retry a training that could not start does not hold the slot meanwhile)."""
        return not self._ready() and self._running() < self.settings.training_slots

    def _ready(self) -> list[Job]:
        """The queued jobs that may start now, in turn."""
        now = self.clock()
        return [j for j in self._queued() if j.retry_at <= now]

    def _start_queued(self) -> None:
        """Start the queued jobs' trainings, in turn, while slots are free."""
        with self.refresher.exclusive():  # no delete or relearn between taking a job and starting it
            free = self.settings.training_slots - self._running()
            taken = self._ready()[:max(0, free)]
            for job in taken:
                # No process (memory, process limit): said, the footage stays, and the slot goes to the next in
                # turn until the retry.
                try:
                    self._launch(job)
                except OSError as e:
                    self._launch_failed(job, e)
            if taken:
                self._publish_queued()

    def _launch_failed(self, job: Job, e: OSError) -> None:
        job.launch_tries += 1
        if job.launch_tries >= LAUNCH_TRIES:
            self._fail(job, f"training cannot start: {e} ({job.launch_tries} tries)")
            return
        job.retry_at = self.clock() + LAUNCH_RETRY_S
        self._say_error(job, f"training cannot start: {e} (try {job.launch_tries} of {LAUNCH_TRIES}; the next once "
                             f"a slot is free, in {LAUNCH_RETRY_S:g} s at the earliest)")

    def _publish_queued(self) -> None:
        """The cameras still queued moved up (or their wait changed): each one's `camera` message says its new
        place and ETA."""
        for job in self._queued():
            self.pipeline.publish_camera(job.camera_id)

    def _eta(self, job: Job) -> tuple[float | None, int | None]:
        """The job's ETA and place in the queue; no ETA while its footage waits for frames that do not come (a
        camera reconnecting, stalled or disabled, a file that ended)."""
        eta, place = self._schedule().get(job.camera_id, (None, None))
        if job.phase == "recording" and not self.pipeline.camera_live(job.camera_id):
            eta = None
        return eta, place

    def _schedule(self) -> dict[str, tuple[float, int | None]]:
        return schedule(self._all(), self.refresher.running_left_s(), self.settings.training_slots, self.clock())

    # -- training -------------------------------------------------------------------------------------------

    def _launch(self, job: Job) -> None:
        job.proc = training_run.launch(self.settings, job.footage, job.run_dir, job.train_minutes,
                                       device=self.device)
        job.phase, job.pid, job.error = "training", job.proc.pid, None
        self._save(job)
        log.info("camera %s: training in %s (pid %d)", job.camera_id, job.run_dir, job.proc.pid)
        self.pipeline.publish_camera(job.camera_id)

    def _poll(self, job: Job) -> None:
        with self.refresher.exclusive():  # a delete waits for the poll, and a poll after it finds no job
            with self._lock:
                if self._jobs.get(job.camera_id) is not job:
                    return  # deleted (or relearnt) since its job was read
            self._poll_job(job)

    def _poll_job(self, job: Job) -> None:
        recording = job.recording
        if job.phase == "recording" and recording is not None and recording.full:
            self._finish_recording(job)
        elif job.phase == "recording" and recording is not None:
            segments = recording.segments()
            with job.lock:
                job.segments = segments
        elif job.phase == "training" and job.proc is not None:
            progress, ended = training_run.poll(job.proc, job.run_dir)
            if progress is not None:
                with job.lock:
                    job.progress = progress
            if ended is None:
                return
            job.proc = None
            if ended.final is not None:
                self._arm(job, ended.final)
            else:
                self._fail(job, f"training failed: {ended.error}")
            training_run.prune_runs(job.folder, spare=(job.run,))

    def _arm(self, job: Job, final: Path) -> None:
        try:
            entry = self.pipeline.registry.add(job.camera_id, final)
        except (OSError, WeightsError) as e:
            self._fail(job, f"the trained model cannot be registered: {e}")
            return
        job.phase, job.pid = "done", None
        self._save(job)
        try:
            self.pipeline.activate_model(job.camera_id, entry.version)
        except (KeyError, WeightsError) as e:
            self._fail(job, f"model {entry.version} cannot be activated: {e}")
            return
        log.info("camera %s: armed with its own model %s", job.camera_id, entry.version)

    def _fail(self, job: Job, error: str) -> None:
        job.phase, job.pid = "failed", None
        self._say_error(job, error)

    def _say_error(self, job: Job, error: str) -> None:
        """The job's error, kept with its state and told: the log, the camera's last_error, a `camera` message."""
        job.error = error
        self._save(job)
        log.error("camera %s: %s", job.camera_id, error)
        self.pipeline.report_error(job.camera_id, error)
        self.pipeline.publish_camera(job.camera_id)

    def _halt(self, job: Job) -> None:
        """Close the recording and stop the training process (state on disk untouched)."""
        with job.lock:
            recording, job.recording = job.recording, None
        if recording is not None:
            recording.close()
        proc, job.proc = job.proc, None
        if proc is not None:
            training_run.kill_group(proc)

    # -- state on disk --------------------------------------------------------------------------------------

    def _save(self, job: Job) -> None:
        job.folder.mkdir(parents=True, exist_ok=True)
        write_json_atomic(job.folder / STATE_FILE, job.saved())

    def _resume(self, camera_id: str) -> None:
        folder = self.records.folder(camera_id)
        saved = read_json(folder / STATE_FILE)
        if saved is None:
            return
        try:
            job = Job.from_saved(camera_id, folder, saved)
        except (KeyError, TypeError, ValueError) as e:
            log.error("camera %s: learning state %s unreadable (%s): not resumed", camera_id, folder / STATE_FILE, e)
            return
        with self._lock:
            self._jobs[camera_id] = job
        fps = self.pipeline.camera_settings(camera_id).fps
        if job.phase in BUSY and job.fps != fps:  # the settings file gives the camera another rate now
            if job.phase == "recording":
                self._record_again(job, fps)
                return
            training_run.kill_stale(job.pid, job.run_dir)
            self._fail(job, f"its footage was recorded at {job.fps:g} fps and the camera runs at {fps:g} fps now: "
                       "learn again")
            return
        if job.phase == "recording":
            self._open_writer(job)  # goes on in a new segment: the time the service was down is a gap
            log.info("camera %s: recording resumed (%d of %d frames)", camera_id,
                     job.recording.frames if job.recording else 0, job.frames_wanted)
        elif job.phase == "training":
            training_run.kill_stale(job.pid, job.run_dir)
            progress = read_json(job.run_dir / "progress.json")
            job.progress = progress or {}
            job.phase, job.pid = "queued", None  # model.learn resumes from the run's last.pt when its turn comes
            self._save(job)
            log.info("camera %s: training in %s resumes when a slot is free", camera_id, job.run_dir)

