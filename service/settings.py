"""Service settings: a YAML file plus FFP_* environment variables (secrets come from the environment).

Validators never do I/O: whether a camera URL is reachable or a path exists is the pipeline's business.
Precedence: explicit kwargs > environment (FFP_PORT, FFP_INFERENCE__MAX_BATCH, FFP_API_KEY) > YAML > defaults.
"""
from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar, get_args, get_type_hints

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    ValidationInfo,
    create_model,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, InitSettingsSource, PydanticBaseSettingsSource, SettingsConfigDict

from model import AlertParams, SceneParams

from .urls import check_host_entry, check_scheme

SLUG = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")


class SettingsError(ValueError):
    """The settings file or environment is invalid; the message says where and why."""


def no_boolean_numbers(cls: type[BaseModel], value: Any, info: ValidationInfo) -> Any:
    """A model's field validator (every field, before parsing): pydantic reads JSON's and YAML's true as the
    number 1, so "fps": true would score at 1 fps. A boolean belongs only in a field that is one."""
    if isinstance(value, bool) and info.field_name is not None:
        annotation = cls.model_fields[info.field_name].annotation
        if annotation is not bool and bool not in get_args(annotation):
            raise ValueError("must not be a boolean")
    return value


class _Model(BaseModel):
    # NaN compares false with everything: a NaN threshold would let every score through. JSON and YAML can spell
    # both NaN and infinity, so every number of the settings must be finite.
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)
    _no_boolean_numbers = field_validator("*", mode="before")(no_boolean_numbers)


_Params = TypeVar("_Params", AlertParams, SceneParams)
_M = TypeVar("_M", bound=_Model)


def _fields_of(params: type[_Params], fields: dict[str, Any]) -> Callable[[type[_M]], type[_M]]:
    """The validated form of a model/ parameter dataclass: one pydantic field per dataclass field, with the
    dataclass's type, default and bounds (`BOUNDS`: they live with the engine) and the description in `fields`
    (the service's concern: what /docs and the JSON schema say)."""
    names = [f.name for f in dataclasses.fields(params)]
    if sorted(names) != sorted(fields):
        raise TypeError(f"{params.__name__}: fields {sorted(names)} but settings for {sorted(fields)}")
    hints = get_type_hints(params)

    def build(cls: type[_M]) -> type[_M]:
        declared: dict[str, Any] = {
            f.name: (Annotated[hints[f.name], Field(**params.BOUNDS.get(f.name, {})),  # type: ignore[call-overload]
                               fields[f.name]], f.default)
            for f in dataclasses.fields(params)}
        return create_model(cls.__name__, __base__=cls, __doc__=cls.__doc__, __module__=cls.__module__,
                            **declared)
    return build


@_fields_of(AlertParams, {
    "on_threshold": Field(description="An event may start when the smoothed z score reaches this."),
    "off_threshold": Field(description="An event may end once the smoothed z score falls below this."),
    "min_duration_s": Field(description="The score must stay above on_threshold this long before an event "
                                        "starts (filters single-frame spikes)."),
    "hold_s": Field(description="An active event stays open this long after the score drops below "
                                "off_threshold (bridges short dips)."),
    "cooldown_s": Field(description="No new event starts this soon after the previous one ended (so a scene "
                                    "that keeps crossing the thresholds does not raise a burst of events)."),
    "smoothing_half_life_frames": Field(description="Half-life of the causal EMA over scores, in frames; 0 "
                                                    "disables smoothing."),
    "warmup_s": Field(description="Adapt calibration to the camera: estimate mean/std of the raw score over "
                                  "its first warmup_s seconds (0 = off). Weights without calibration always "
                                  "warm up (5 s when this is 0), and the camera has no score until then."),
    "warmup_blend": Field(description="Weight of the camera's own statistics after warm-up (0 = shipped "
                                      "calibration only)."),
    "update_interval_s": Field(description="At most one 'update' message per event this often."),
    "strong_margin": Field(description="A smoothed z score this far above on_threshold starts an event at "
                                       "once, without waiting min_duration_s (null: every event waits)."),
})
class AlertSettings(_Model):
    """Turns a camera's calibrated score stream (z units) into events. Times are in seconds. The validated
    form of model.AlertParams (`params()`), which the alert engine takes."""

    @model_validator(mode="after")
    def _hysteresis(self) -> AlertSettings:
        self.params()  # AlertParams checks off_threshold <= on_threshold
        return self

    def params(self) -> AlertParams:
        return AlertParams(**self.model_dump())


@_fields_of(SceneParams, {
    "enabled": Field(description="Detect scene changes (off: a new view raises anomaly alerts)."),
    "changed_share": Field(description="Share of the image cells that must have moved away from the "
                                       "camera's usual picture (normal footage: at most 0.06 on Ped2 "
                                       "and vtest.avi)."),
    "cell_threshold": Field(description="A cell moved away when its distance to the usual picture exceeds "
                                        "its normal mean by this many of its normal standard deviations."),
    "steady_ratio": Field(description="The new picture is steady when it differs from the previous "
                                      "frame by less than this fraction of its difference to the usual "
                                      "picture (white noise, a passing crowd and the jump itself are "
                                      "not)."),
    "hold_s": Field(description="The new view must hold this long before the event starts, and the old view "
                                "must be back this long before it ends."),
    "reference_half_life_frames": Field(description="Half-life of the running average of normal frames that "
                                                    "is the usual picture (slow changes are absorbed)."),
    "warmup_frames": Field(description="Normal frames learnt from before detecting."),
})
class SceneSettings(_Model):
    """Detects a camera that shows another view (moved, covered, refocused, zoomed): one scene_change event, and
    no anomaly alerts while it lasts. The validated form of model.SceneParams (`params()`); model/scene.py
    explains the rule. Thresholds were checked on Ped2's test videos and vtest.avi (no scene change) against
    those clips swapped, zoomed, shifted, blurred or covered (each one scene change); see service/README.md."""

    def params(self) -> SceneParams:
        return SceneParams(**self.model_dump())


class CameraSettings(_Model):
    """One camera. `url`: rtsp://, rtsps://, http(s)://, a file path, or webcam:N."""

    id: str = Field(description="Camera id: a slug (lowercase letters, digits, - and _), unique.")
    url: str = Field(description="Source: rtsp(s)://, http(s)://, a local video file, or webcam:N. "
                                 "Credentials in the URL are never logged or returned.")
    fps: float = Field(10.0, gt=0, le=120, description="Target scoring rate; faster sources are decimated.")
    loop: bool = Field(False, description="Files only: start again at the end (the file acts as a live camera, "
                                          "paced at its native fps).")
    open_timeout_s: float = Field(10.0, gt=0, description="Give up opening the source after this long.")
    read_timeout_s: float = Field(5.0, gt=0, description="Give up on one frame read after this long.")
    stall_after_s: float = Field(5.0, gt=0, description="The camera is 'stalled' when no frame came for this long.")
    enabled: bool = Field(True, description="Disabled cameras are configured but not started.")
    alerts: dict[str, Any] | None = Field(None, description="Per-camera overrides of AlertSettings fields.")
    use_shipped: bool = Field(True, description="Without a model of its own, alert on the shipped model's scores "
                              "(its calibration, adapted by warmup_s). False: the camera is 'unarmed' until it has "
                              "learnt its own model; its scores are published with armed=false and raise no alert. "
                              "A camera added over the API with `learn` defaults to False.")

    @field_validator("id")
    @classmethod
    def _slug(cls, v: str) -> str:
        if not SLUG.match(v):
            raise ValueError(f"camera id {v!r} must be a slug: [a-z0-9][a-z0-9_-]{{0,62}}")
        return v

    @field_validator("url")
    @classmethod
    def _url(cls, v: str) -> str:
        check_scheme(v)
        return v

    @field_validator("alerts")
    @classmethod
    def _alerts(cls, v: dict[str, Any] | None) -> dict[str, Any] | None:
        if v is not None:
            AlertSettings(**v)  # validate the partial override now, so a typo fails at load time
        return v

    def alert_settings(self, base: AlertSettings) -> AlertSettings:
        return base if not self.alerts else AlertSettings(**{**base.model_dump(), **self.alerts})


class InferenceSettings(_Model):
    max_batch: int = Field(8, ge=1, le=256, description="Most windows (from all cameras) in one forward pass.")
    max_wait_ms: float = Field(10.0, ge=0, description="How long to wait for more cameras before a partial batch.")
    queue_per_camera: int = Field(2, ge=1, le=64, description="Unscored windows a camera may queue; a live camera "
                                  "drops its oldest beyond this (counted as skipped), a file camera waits.")
    catch_up_queue_per_camera: int = Field(24, ge=1, le=256, description="Unscored windows a live camera may "
                                           "queue while it catches up: its frames arrive faster than real time "
                                           "(the buffered burst at connect), which is scored instead of dropped.")
    catch_up_s: float = Field(3.0, ge=0, description="A camera catches up for at most this long after its last "
                              "faster-than-real-time frame; then queue_per_camera applies again (0 = never).")


class HttpSettings(_Model):
    """Connection limits of the HTTP server: one slow or idle client must not hold the process's sockets, file
    handles or upload slots. uvicorn's own settings where it has them, the rest in service.server."""

    header_timeout_s: float = Field(10.0, gt=0, description="A request's headers must be complete this long "
                                    "after the connection opened (or the previous response ended); the "
                                    "connection is closed otherwise (408).")
    max_header_kb: int = Field(16, ge=1, le=1024, description="Largest request head (request line and headers); "
                               "a longer one is answered 431 and the connection closed.")
    keep_alive_s: float = Field(5.0, gt=0, description="An idle keep-alive connection is closed after this long "
                                "(uvicorn's timeout_keep_alive).")
    max_idle_connections: int = Field(64, ge=1, description="Connections without a request in progress (before "
                                      "their headers are complete, or between requests) kept at once; beyond "
                                      "it the oldest idle one is closed, so idle clients cannot crowd out the "
                                      "others. Only connections idle for longer than idle_grace_s count.")
    idle_grace_s: float = Field(0.5, gt=0, description="A connection idle for less than this (just accepted, or "
                                "its response just sent) does not count against max_idle_connections: a client "
                                "connecting in a burst has had no time to send its request yet. Such connections "
                                "are still closed, oldest first, when the server holds max_connections.")
    max_connections: int = Field(256, ge=2, description="Connections and requests in progress at once; beyond it "
                                 "a request is answered 503 (uvicorn's limit_concurrency).")
    body_idle_timeout_s: float = Field(15.0, gt=0, description="A request body that stalls this long between "
                                       "two chunks is cut off (408, connection closed).")
    body_min_rate_kbps: float = Field(16.0, ge=0, description="After body_grace_s, a request body must arrive at "
                                      "this average rate (kilobytes/s) or be cut off (408); 0 disables.")
    body_grace_s: float = Field(10.0, ge=0, description="The body rate is not checked before this long.")
    body_timeout_s: float = Field(600.0, gt=0, description="Longest time one request body may take in all.")
    graceful_shutdown_s: float = Field(10.0, gt=0, description="On shutdown, requests still running after this "
                                       "long are cancelled (uvicorn's timeout_graceful_shutdown).")


class WatchdogSettings(_Model):
    """Restarts a camera's capture or the inference worker when it died or hangs (Frigate's watchdog)."""

    interval_s: float = Field(0.5, gt=0, description="How often every camera and the inference worker are "
                                                     "checked. A stalled camera is restarted at the check after "
                                                     "the one that found it stalled.")
    max_restarts: int = Field(5, ge=1, description="Restarts allowed per camera (and for inference) within "
                                                   "restart_window_s; one more makes it 'failed' (until re-added "
                                                   "or restarted).")
    restart_window_s: float = Field(60.0, gt=0, description="The sliding window of max_restarts.")
    inference_stuck_after_s: float = Field(30.0, gt=0, description="Restart inference when one batch runs "
                                                                   "longer than this (model lock wait included).")


class LearningSettings(_Model):
    """How a camera learns its own model: footage recorded from its stream, then a training process of its own
    (`python -m model.learn`, niced, with few torch threads) so that live cameras keep scoring."""

    footage_minutes: float = Field(10.0, gt=0, description="Minutes of footage recorded at the camera's fps.")
    train_minutes: float = Field(15.0, gt=0, description="Training budget, wall clock. With the footage and the "
                                 "final calibration, a camera is armed within 30 minutes of being added.")
    threads: int = Field(1, ge=1, le=64, description="Torch CPU threads of a training process.")
    max_trainings: int | None = Field(None, ge=1, le=64, description="Training processes at once, cameras' "
                                      "learning and model refreshes together (None: half the CPU cores divided by "
                                      "threads, at least one: one on 2 cores). Each holds torch and its footage in "
                                      "memory (0.7 GB with 4 minutes of footage) and gets the CPU its budget "
                                      "assumes; more cameras wait their turn, queued in the order their footage "
                                      "was complete, with their place and ETA shown.")
    disk_cap_mb: float = Field(500.0, gt=0, description="Most footage one camera's learning may store (megabytes); "
                               "recording stops there and training takes what was recorded. With refresh_days, "
                               "its recent window has a cap of its own, and a refresh's copy of it: up to three "
                               "times this per camera.")
    nice: int = Field(10, ge=0, le=19, description="Niceness of a training process: live scoring comes first.")
    holdout: float = Field(0.15, gt=0, lt=1, description="Tail of the footage held out for validation and "
                           "calibration.")
    recipe: str = Field("camera-lite", description="Training recipe: a packaged recipe name or a YAML file.")
    init: str = Field("none", description="Starting weights: none (from scratch), shipped, or a weights file.")
    poll_s: float = Field(1.0, gt=0, description="How often recording and training progress are checked.")
    auto_relearn: bool = Field(False, description="On a scene_change event, or when a PATCH gives a camera another "
                               "fps than its model learnt, relearn the camera's model by itself; off: the event "
                               "or the model's error prompts the user to relearn.")
    refresh_days: float | None = Field(None, gt=0, description="Refresh an armed camera's own model this often "
                                       "(days, from the active model's creation) by fine-tuning it on its recent "
                                       "alert-free footage, so that slow changes are absorbed; None: never.")
    refresh_train_minutes: float | None = Field(None, gt=0, description="Training budget of a refresh (None: a "
                                                "third of train_minutes); it starts from the active model.")
    refresh_margin_s: float = Field(5.0, ge=0, description="Seconds before and after an alert or scene change "
                                    "also left out of the recent footage a refresh learns from.")
    refresh_max_psnr_drop_db: float = Field(0.5, ge=0, description="A refreshed model whose held-out PSNR is more "
                                            "than this below the active model's, on the same recent held-out "
                                            "footage, is not activated.")

    @property
    def refresh_budget_minutes(self) -> float:
        return self.refresh_train_minutes or self.train_minutes / 3

    @property
    def training_slots(self) -> int:
        """How many training processes may run at once: max_trainings, or half the cores' worth of threads."""
        return self.max_trainings or max(1, (os.cpu_count() or 2) // 2 // self.threads)


def _section(cls: type[_Model], description: str) -> Any:
    """A nested settings section (`alerts:`, `http:`, ...): its own defaults where the file leaves it out."""
    return Field(default_factory=lambda: cls.model_validate({}), description=description)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="FFP_", env_nested_delimiter="__", extra="forbid",
                                      allow_inf_nan=False, frozen=True)
    _no_boolean_numbers = field_validator("*", mode="before")(no_boolean_numbers)

    host: str = Field("127.0.0.1", description="Address the HTTP server binds.")
    port: int = Field(8000, ge=0, le=65535, description="Port the HTTP server binds.")
    data_dir: Path = Field(Path("data"), description="Events database and images, cameras added "
                          "over the API, their footage, training runs and models live here.")
    weights: Path | None = Field(None, description="Weights file; None = the shipped default weights.")
    device: str = Field("auto", pattern=r"^(auto|cpu|cuda(:[0-9]+)?)$",
                        description="'auto' (CUDA when present, else CPU), 'cpu', 'cuda' or 'cuda:N'.")
    precision: Literal["auto", "fp32", "bf16", "fp16"] = Field(
        "auto", description="Model precision: 'auto' is bf16 (else fp16) on a GPU, and on a CPU whichever of "
                            "fp32 and bf16 measures faster for this model at start.")
    torch_threads: int | None = Field(None, ge=1, description="CPU threads for PyTorch (None: half the cores, at "
                                      "least one). The rest are left to decoding, scoring and the API: on 2 cores, "
                                      "1 thread measured steadier and faster end to end than 2.")
    api_key: SecretStr | None = Field(None, description="When set, every route requires it (X-API-Key header).")
    metrics_public: bool = Field(False, description="Serve GET /metrics (Prometheus) without the API key, for a "
                                 "scraper that cannot send one; the metrics name cameras but hold no URL.")
    max_upload_mb: float = Field(100, gt=0, description="Largest clip upload accepted by POST /v1/score.")
    max_clip_seconds: float = Field(120, gt=0, description="Longest clip accepted by POST /v1/score.")
    max_clip_frames: int = Field(3600, ge=1, description="Most frames of an uploaded clip (checked against its "
                                 "header before decoding, and counted while decoding since headers lie).")
    max_clip_frame_pixels: int = Field(3840 * 2160, ge=1, description="Largest frame of an uploaded clip, in "
                                       "pixels (width x height); refused from the header before decoding.")
    max_clip_megapixels: float = Field(2000, gt=0, description="Most pixels decoded from one clip in all "
                                       "(frames x width x height, in millions): the decoding cost of an upload.")
    clip_images_ttl_s: float = Field(3600, gt=0, description="How long the event images of a clip scored by POST "
                                     "/v1/score stay available at their URLs (data_dir/clips), in seconds.")
    upload_workers: int = Field(1, ge=1, le=2, description="Uploaded clips scored at once (they share the cores "
                                "with the live cameras).")
    upload_queue: int = Field(4, ge=0, description="Uploads that may wait for a worker (receiving or queued); "
                              "one more is answered 503 with Retry-After.")
    media_dir: Path | None = Field(None, description="Local files/devices a camera added through the API may "
                                                     "read live under this folder; None = none at all.")
    max_url_length: int = Field(2048, ge=64, le=65536, description="Longest camera URL accepted by POST "
                                "/v1/cameras (422 beyond it).")
    max_cameras: int = Field(32, ge=1, le=1024, description="Most cameras the service runs; POST /v1/cameras "
                             "answers 409 beyond it (cameras from this file count too).")
    camera_allowed_hosts: list[str] = Field(default_factory=list, description="Hosts a camera added through the "
                                            "API may connect to: CIDRs, addresses or names ('.example.com' = the "
                                            "domain and its subdomains). Empty = any host but metadata, link-local, "
                                            "unspecified and multicast addresses and the service itself.")
    camera_private_hosts: bool = Field(True, description="Without camera_allowed_hosts: cameras added through the "
                                       "API may use private and loopback addresses (where cameras usually live).")
    docs_public: bool = Field(False, description="Serve /docs and /openapi.json without the API key.")
    allowed_origins: list[str] = Field(default_factory=list, description="Browser origins (scheme://host[:port]) "
                                       "besides the service's own that may open the WebSocket and post forms; "
                                       "'*' = any. Clients that send no Origin (not browsers) are always allowed.")
    retention_max_events: int | None = Field(10000, ge=1, description="Keep at most this many events.")
    retention_days: float | None = Field(30, gt=0, description="Delete events older than this.")
    inference: InferenceSettings = _section(InferenceSettings, "Batching of windows from all cameras.")
    alerts: AlertSettings = _section(AlertSettings, "Default alert settings (a camera may override fields).")
    http: HttpSettings = _section(HttpSettings, "Connection limits: header, body and idle deadlines, caps.")
    scene: SceneSettings = _section(SceneSettings, "Scene-change detection (a camera moved, covered, refocused, "
                                                   "zoomed).")
    watchdog: WatchdogSettings = _section(WatchdogSettings, "Restarts of dead or hung workers, and their budget.")
    learning: LearningSettings = _section(LearningSettings, "Defaults of a camera's learning (footage, training "
                                                            "budget).")
    cameras: list[CameraSettings] = Field(default_factory=list, description="Cameras started at boot.")
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field("INFO", description="Logging level.")

    @field_validator("camera_allowed_hosts")
    @classmethod
    def _hosts(cls, v: list[str]) -> list[str]:
        return [check_host_entry(e) for e in v]

    @field_validator("allowed_origins")
    @classmethod
    def _origins(cls, v: list[str]) -> list[str]:
        for o in v:
            if o != "*" and not re.match(r"^https?://[^/?#\s]+$", o):
                raise ValueError(f"allowed origin {o!r} must be scheme://host[:port] (no path) or '*'")
        return [o.lower() for o in v]

    @field_validator("cameras")
    @classmethod
    def _unique(cls, v: list[CameraSettings]) -> list[CameraSettings]:
        ids = [c.id for c in v]
        dup = sorted({i for i in ids if ids.count(i) > 1})
        if dup:
            raise ValueError(f"duplicate camera ids: {dup}")
        return v


def load_settings(path: Path | None = None, **overrides: Any) -> Settings:
    """YAML file (optional) + FFP_* environment -> Settings; raises SettingsError with a readable message."""
    data: dict[str, Any] = {}
    if path is not None:
        try:
            raw = yaml.safe_load(Path(path).read_text())
        except OSError as e:
            raise SettingsError(f"cannot read settings file {path}: {e.strerror or e}") from e
        except yaml.YAMLError as e:
            raise SettingsError(f"{path}: invalid YAML: {e}") from e
        if raw is not None and not isinstance(raw, dict):
            raise SettingsError(f"{path}: the top level must be a mapping, got {type(raw).__name__}")
        data = raw or {}

    class _FromFile(Settings):
        # Precedence: explicit overrides > FFP_* environment > the YAML file > defaults.
        @classmethod
        def settings_customise_sources(cls, settings_cls: type[BaseSettings],
                                       init_settings: PydanticBaseSettingsSource,
                                       env_settings: PydanticBaseSettingsSource,
                                       dotenv_settings: PydanticBaseSettingsSource,
                                       file_secret_settings: PydanticBaseSettingsSource,
                                       ) -> tuple[PydanticBaseSettingsSource, ...]:
            return init_settings, env_settings, InitSettingsSource(settings_cls, data), file_secret_settings

    try:
        merged = _FromFile(**overrides)
        # Re-validate as a plain Settings so callers get the public type (values are already checked).
        return Settings.model_construct(**{k: getattr(merged, k) for k in Settings.model_fields})
    except ValidationError as e:
        where = f"{path}" if path is not None else "settings"
        lines = [f"  {'.'.join(map(str, err['loc'])) or '(root)'}: {err['msg']}" for err in e.errors()]
        raise SettingsError(f"{where}: {e.error_count()} invalid value(s):\n" + "\n".join(lines)) from None
