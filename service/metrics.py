"""Prometheus metrics of one service instance, in a registry of its own (tests run several apps in one process,
so the process-wide default registry would mix them).

Counters the pipeline already keeps (frames, reconnects, stalls, restarts) and the camera states are read at
scrape time by a collector, so nothing is counted twice. Histograms are observed where their value is measured:
an inference batch's size and forward time in the pipeline's batch listener, and the capture-to-WebSocket
latency where the hub hands a score message to the WebSocket connections. Event messages are counted by kind and
event type as the pipeline emits them.
"""
from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Protocol, get_args

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from .frames import CameraMessage, CameraMode, CameraState, CameraStatus, EventMessage, ScoreMessage
from .learning_job import IN_LINE
from .listeners import BatchListener, Listener

CAMERA_STATES: tuple[str, ...] = get_args(CameraState)
CAMERA_MODES: tuple[str, ...] = get_args(CameraMode)
INFERENCE_STATES = ("stopped", "running", "failed")
# max_batch is at most 256 (service/settings.py).
BATCH_SIZE_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)
BATCH_SECONDS_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
LATENCY_SECONDS_BUCKETS = (0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class PipelineSource(Protocol):
    """What the metrics read from and subscribe to (service.pipeline.Pipeline)."""

    def list_cameras(self) -> list[CameraStatus]: ...

    def camera_ids(self) -> list[str]: ...

    def stats(self) -> Mapping[str, object]: ...

    def add_listener(self, fn: Listener) -> Callable[[], None]: ...

    def add_batch_listener(self, fn: BatchListener) -> Callable[[], None]: ...


class HubSource(Protocol):
    """service.hub.Hub: `stats()` has `clients` and the cumulative `dropped_scores_total`."""

    def stats(self) -> Mapping[str, int]: ...


class _Collector(Collector):
    """Reads the pipeline's and the hub's own counters at scrape time."""

    def __init__(self, pipeline: PipelineSource, hub: HubSource) -> None:
        self._pipeline, self._hub = pipeline, hub

    def describe(self) -> Iterable[Metric]:
        return []  # no describe-time scrape: metrics depend on the cameras present at scrape time

    def collect(self) -> Iterable[Metric]:
        cams = self._pipeline.list_cameras()
        per_camera = {
            "frames_captured": ("ffp_frames_captured", "Frames kept after decimation and preprocessed."),
            "frames_scored": ("ffp_frames_scored", "Frames scored by the model."),
            "frames_skipped": ("ffp_frames_skipped", "Windows dropped unscored because inference was behind."),
            "reconnects": ("ffp_camera_reconnects", "Reconnects after a source fault."),
            "stalls": ("ffp_camera_stalls", "Times the camera went stalled (no frame for stall_after_s)."),
            "restarts": ("ffp_camera_restarts", "Capture restarts by the watchdog (thread died or stalled)."),
            "history_resets": ("ffp_camera_history_resets", "Restarts of the k-frame history (a gap, a loop seam)."),
        }
        for attr, (name, doc) in per_camera.items():
            family = CounterMetricFamily(name, doc, labels=["camera"])
            for c in cams:
                family.add_metric([c.id], getattr(c, attr))
            yield family
        state = GaugeMetricFamily("ffp_camera_state", "1 for the camera's current capture state, 0 for the others.",
                                  labels=["camera", "state"])
        for c in cams:
            for s in CAMERA_STATES:
                state.add_metric([c.id, s], 1.0 if c.state == s else 0.0)
        yield state
        mode = GaugeMetricFamily("ffp_camera_mode", "1 for the camera's current mode (learning, training, armed, "
                                 "unarmed), 0 for the others.", labels=["camera", "mode"])
        progress = GaugeMetricFamily("ffp_camera_learning_progress", "How far the camera's learning is, 0 to 1: "
                                     "footage recorded of footage wanted while learning, training minutes of the "
                                     "budget while training or queued for a training slot (a resumed training "
                                     "counts the minutes it spent), 1 once done.",
                                     labels=["camera", "phase"])
        for c in cams:
            for m in CAMERA_MODES:
                mode.add_metric([c.id, m], 1.0 if c.mode == m else 0.0)
            if c.learning is not None:
                progress.add_metric([c.id, str(c.learning["phase"])], learning_progress(c.learning))
        yield mode
        yield progress

        inference = self._pipeline.stats().get("inference")
        if isinstance(inference, Mapping):
            yield CounterMetricFamily("ffp_inference_restarts", "Inference restarts by the watchdog.",
                                      value=_number(inference.get("restarts")))
            yield CounterMetricFamily("ffp_inference_errors", "Batches whose forward pass raised.",
                                      value=_number(inference.get("errors")))
            inf_state = GaugeMetricFamily("ffp_inference_state", "1 for the inference worker's current state.",
                                          labels=["state"])
            for s in INFERENCE_STATES:
                inf_state.add_metric([s], 1.0 if inference.get("state") == s else 0.0)
            yield inf_state

        hub = self._hub.stats()
        yield GaugeMetricFamily("ffp_websocket_clients", "Connected WebSocket clients.", value=hub["clients"])
        yield CounterMetricFamily("ffp_websocket_dropped_scores", "Score messages dropped for slow WebSocket "
                                  "clients (event messages are never dropped).", value=hub["dropped_scores_total"])


def learning_progress(learning: Mapping[str, object]) -> float:
    phase = learning.get("phase")
    if phase == "recording":
        return min(1.0, _number(learning.get("frames_recorded")) / max(1.0, _number(learning.get("frames_wanted"))))
    if phase in IN_LINE:
        return min(1.0, _number(learning.get("minutes")) / max(1e-9, _number(learning.get("train_minutes"))))
    return 1.0 if phase == "done" else 0.0


def _number(v: object) -> float:
    return float(v) if isinstance(v, (int, float)) else 0.0


class ServiceMetrics:
    """The registry of one app and the metrics observed as they happen; `attach` wires a running pipeline."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock  # the capture timestamps (Window.ts) are wall time
        self.registry = CollectorRegistry()
        self.batch_size = Histogram("ffp_inference_batch_size", "Windows per inference batch (all cameras).",
                                    buckets=BATCH_SIZE_BUCKETS, registry=self.registry)
        self.batch_seconds = Histogram("ffp_inference_batch_seconds", "Forward time of one inference batch "
                                       "(waiting for the model lock included).", buckets=BATCH_SECONDS_BUCKETS,
                                       registry=self.registry)
        self.capture_to_websocket = Histogram(
            "ffp_capture_to_websocket_seconds", "From a frame's capture to its score message handed to the "
            "WebSocket connections.", ["camera"], buckets=LATENCY_SECONDS_BUCKETS, registry=self.registry)
        self.events = Counter("ffp_events", "Event messages emitted, by kind (start, update, end) and event type "
                              "(anomaly, scene_change).", ["camera", "kind", "type"], registry=self.registry)
        # The label values of the two metrics above, so that a removed camera's series go with it (a site that
        # adds and removes cameras must not grow its metrics forever).
        self._lock = threading.Lock()
        self._event_labels: set[tuple[str, str, str]] = set()
        self._latency_cameras: set[str] = set()
        self._camera_ids: Callable[[], list[str]] | None = None

    def attach(self, pipeline: PipelineSource, hub: HubSource) -> Callable[[], None]:
        """Collect from `pipeline` and `hub` at scrape time and observe its batches and events; returns detach."""
        collector = _Collector(pipeline, hub)
        self.registry.register(collector)
        self._camera_ids = pipeline.camera_ids
        unsubscribe = (pipeline.add_listener(self.observe_event), pipeline.add_batch_listener(self.observe_batch))

        def detach() -> None:
            for fn in unsubscribe:
                fn()
            self.registry.unregister(collector)
            self._camera_ids = None
        return detach

    def observe_batch(self, size: int, ms: float) -> None:
        """Pipeline batch listener (inference thread)."""
        self.batch_size.observe(size)
        self.batch_seconds.observe(ms / 1000)

    def observe_event(self, msg: ScoreMessage | EventMessage | CameraMessage) -> None:
        """Pipeline listener (inference thread)."""
        if isinstance(msg, EventMessage):
            labels = (msg.event.camera_id, msg.kind, msg.event.type)
            with self._lock:
                self._event_labels.add(labels)
                self.events.labels(*labels).inc()

    def observe_dispatch(self, msg: ScoreMessage | EventMessage | CameraMessage) -> None:
        """Hub dispatch hook (event loop): a score message reaches the WebSocket connections now."""
        if isinstance(msg, ScoreMessage):
            with self._lock:
                self._latency_cameras.add(msg.camera_id)
                self.capture_to_websocket.labels(msg.camera_id).observe(max(0.0, self._clock() - msg.ts))

    def exposition(self) -> bytes:
        """The registry in Prometheus' text format."""
        if self._camera_ids is not None:
            self._forget_removed(set(self._camera_ids()))
        return generate_latest(self.registry)

    def _forget_removed(self, cameras: set[str]) -> None:
        """Drop the series of cameras no longer running, at each scrape: a message of a removed camera still in
        flight (the end of its open event) is counted, and its series goes at the next scrape."""
        with self._lock:
            for labels in [x for x in self._event_labels if x[0] not in cameras]:
                self.events.remove(*labels)
                self._event_labels.discard(labels)
            for camera in [c for c in self._latency_cameras if c not in cameras]:
                self.capture_to_websocket.remove(camera)
                self._latency_cameras.discard(camera)
