from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from pydantic import Field, ValidationError

from model import AlertParams, SceneParams
from service.settings import (
    AlertSettings,
    CameraSettings,
    SceneSettings,
    SettingsError,
    _fields_of,
    load_settings,
)
from service.urls import HostPolicy, check_host, check_scheme, parse_ip, redact_text, redact_url, resolve_source

pytestmark = pytest.mark.timeout(10)


def test_yaml_env_and_overrides(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = tmp_path / "ffp.yaml"
    cfg.write_text("port: 9000\ninference: {max_batch: 4}\nalerts: {on_threshold: 5}\n"
                   "cameras:\n  - {id: door, url: 'rtsp://u:p@cam/1', alerts: {hold_s: 3}}\n")
    monkeypatch.setenv("FFP_INFERENCE__MAX_WAIT_MS", "25")
    monkeypatch.setenv("FFP_API_KEY", "s3cret")
    monkeypatch.setenv("FFP_PORT", "9100")
    s = load_settings(cfg, host="0.0.0.0")
    assert (s.port, s.host, s.inference.max_batch, s.inference.max_wait_ms) == (9100, "0.0.0.0", 4, 25)
    assert s.api_key is not None and s.api_key.get_secret_value() == "s3cret" and "s3cret" not in repr(s)
    cam = s.cameras[0]
    a = cam.alert_settings(s.alerts)
    assert (a.on_threshold, a.hold_s, a.off_threshold) == (5, 3, AlertParams().off_threshold)
    assert load_settings(None).cameras == []


@pytest.mark.parametrize("text, fragment", [
    ("port: [1\n", "invalid YAML"),
    ("- 1\n", "top level must be a mapping"),
    ("prot: 1\n", "prot"),
    ("port: 99999\n", "port"),
    ("cameras: [{id: 'Bad Id', url: 'rtsp://h/x'}]\n", "cameras.0.id"),
    ("cameras: [{id: a, url: 'ftp://h/x'}]\n", "unsupported url scheme"),
    ("cameras: [{id: a, url: 'rtsp://h/x', alerts: {on_treshold: 3}}]\n", "on_treshold"),
    ("cameras: [{id: a, url: 'x.mp4'}, {id: a, url: 'y.mp4'}]\n", "duplicate camera ids"),
    ("alerts: {on_threshold: 2, off_threshold: 3}\n", "off_threshold"),
    ("cameras: [{id: a, url: 'x.mp4', fps: yes}]\n", "cameras.0.fps"),  # YAML's yes is true, not 1 fps
    ("alerts: {on_threshold: true}\n", "must not be a boolean"),
    ("device: gpu\n", "device"),
    ("max_upload_mb: true\n", "max_upload_mb"),
])
def test_settings_errors_are_clear(tmp_path: Path, text: str, fragment: str) -> None:
    cfg = tmp_path / "bad.yaml"
    cfg.write_text(text)
    with pytest.raises(SettingsError, match=fragment) as e:
        load_settings(cfg)
    assert str(cfg) in str(e.value)


def test_missing_file() -> None:
    with pytest.raises(SettingsError, match="cannot read"):
        load_settings(Path("/nonexistent/ffp.yaml"))


@pytest.mark.parametrize("url", ["concat:/etc/passwd", "pipe:0", "ftp://h/x", "data:video/mp4,xx", "gopher://h",
                                 "webcam:x", "rtsp:///nohost", "", "a\nb"])
def test_unsupported_urls(url: str) -> None:
    with pytest.raises(ValueError):
        check_scheme(url)


def test_media_dir_rules(tmp_path: Path) -> None:
    media = tmp_path / "media"
    media.mkdir()
    (media / "clip.mp4").write_bytes(b"x")
    (tmp_path / "secret.mp4").write_bytes(b"x")
    (media / "link.mp4").symlink_to(tmp_path / "secret.mp4")
    ok = resolve_source("clip.mp4", trusted=False, media_dir=media)
    assert ok.kind == "file" and ok.target == str((media / "clip.mp4").resolve())
    assert resolve_source(str(media / "clip.mp4"), trusted=False, media_dir=media).kind == "file"
    for bad in ["../secret.mp4", str(tmp_path / "secret.mp4"), "link.mp4", "/etc/passwd",
                f"file://{tmp_path}/secret.mp4", "webcam:0"]:
        with pytest.raises(ValueError):
            resolve_source(bad, trusted=False, media_dir=media)
    with pytest.raises(ValueError, match="media_dir is unset"):
        resolve_source(str(media / "clip.mp4"), trusted=False, media_dir=None)
    # Config-file cameras are trusted; network URLs are fine for anyone.
    assert resolve_source(str(tmp_path / "secret.mp4"), trusted=True, media_dir=None).kind == "file"
    assert resolve_source("webcam:0", trusted=True, media_dir=None).target == 0
    assert resolve_source("rtsp://cam/1", trusted=False, media_dir=None).kind == "network"


def test_redaction() -> None:
    assert redact_url("rtsp://admin:hunter2@10.0.0.5:554/s?token=abc&x=1") == "rtsp://***@10.0.0.5:554/s?token=***&x=***"
    assert redact_url("/videos/a.mp4") == "/videos/a.mp4"
    assert "hunter2" not in redact_text("failed to open rtsp://admin:hunter2@cam/x: timeout")
    cam = CameraSettings(id="c", url="rtsp://admin:hunter2@cam/x")
    assert cam.url.startswith("rtsp://admin")  # kept for connecting; every output path redacts it


@pytest.mark.parametrize("password", ["hunter#2", "hun/ter2", "hu@nter2", "hun%40ter2", "h?nter2", "h:un:ter2"])
def test_redaction_of_awkward_passwords(password: str) -> None:
    url = f"rtsp://admin:{password}@10.0.0.5:554/live?channel=1"
    assert redact_url(url) == "rtsp://***@10.0.0.5:554/live?channel=***"
    text = redact_text(f"cannot open '{url}': Connection refused; retrying {url}")
    assert password not in text and "admin" not in text and "10.0.0.5:554/live" in text


def test_every_query_value_is_redacted() -> None:
    url = "http://cam.local/video.mjpg?access_token=secret&user=bob&flag&x=a%20b#frag"
    assert redact_url(url) == "http://cam.local/video.mjpg?access_token=***&user=***&flag&x=***#***"
    assert "secret" not in redact_text(f"GET {url} failed")
    assert redact_url("/media/a.mp4?x=1") == "/media/a.mp4?x=1"  # not a URL: a file path is shown as is


@pytest.mark.parametrize("host, ip", [
    ("2852039166", "169.254.169.254"), ("0xa9fea9fe", "169.254.169.254"), ("0251.0376.0251.0376", "169.254.169.254"),
    ("169.254.43518", "169.254.169.254"), ("0xa9.0xfe.0xa9.0xfe", "169.254.169.254"), ("127.1", "127.0.0.1"),
    ("::ffff:169.254.169.254", "169.254.169.254"), ("0", "0.0.0.0"), ("10.0.0.5.", "10.0.0.5"),
    ("cam.local", None), ("1.2.3.4.5", None), ("08.1.1.1", None), ("4294967296", None)])
def test_ip_spellings_are_normalised(host: str, ip: str | None) -> None:
    got = parse_ip(host)
    assert (None if got is None else str(got)) == ip


OWN = HostPolicy(own=frozenset({("", 8000), ("192.168.1.10", 8000)}))


@pytest.mark.parametrize("url", [
    "http://169.254.169.254/latest/meta-data/", "http://2852039166/", "http://0xa9fea9fe/", "http://[fe80::1]/",
    "http://[::ffff:169.254.169.254]/", "http://metadata.google.internal/", "http://100.100.100.200/",
    "http://[fd00:ec2::254]/", "rtsp://0.0.0.0:8000/", "http://127.0.0.1:8000/v1/cameras", "http://127.1:8000/",
    "http://localhost:8000/", "http://[::1]:8000/", "http://192.168.1.10:8000/", "rtsp://224.1.1.1/s"])
def test_host_policy_refuses(url: str) -> None:
    with pytest.raises(ValueError):
        check_host(url, OWN)


@pytest.mark.parametrize("url", ["rtsp://192.168.1.20/stream", "rtsp://10.0.0.5:554/s", "http://127.0.0.1:8554/x",
                                 "rtsps://cam.example.com/live", "http://[2001:db8::1]/x", "/media/clip.mp4",
                                 "webcam:0"])
def test_host_policy_allows_cameras(url: str) -> None:
    check_host(url, OWN)


def test_host_policy_private_off_and_allow_list() -> None:
    with pytest.raises(ValueError, match="private"):
        check_host("rtsp://192.168.1.20/s", HostPolicy(private=False))
    with pytest.raises(ValueError, match="private"):
        check_host("rtsp://127.0.0.1:8554/s", HostPolicy(private=False))
    check_host("rtsp://8.8.8.8/s", HostPolicy(private=False))
    allow = HostPolicy(allowed=("10.1.0.0/16", ".cams.example.com", "gate"))
    for ok in ("rtsp://10.1.2.3/s", "rtsp://012.1.2.3/s", "rtsp://a.cams.example.com/s", "rtsp://gate:554/s"):
        check_host(ok, allow)
    for bad in ("rtsp://10.2.0.1/s", "rtsp://cams.example.com.evil.net/s", "rtsp://gate2/s", "rtsp://8.8.8.8/s"):
        with pytest.raises(ValueError, match="camera_allowed_hosts"):
            check_host(bad, allow)
    # An explicit allow-list entry is the operator's choice, even for a link-local camera.
    check_host("rtsp://169.254.10.20/s", HostPolicy(allowed=("169.254.10.0/24",)))


def test_host_settings_are_validated() -> None:
    s = load_settings(None, camera_allowed_hosts=["10.0.0.0/8", "Cam.Example.com", "::1"],
                      allowed_origins=["https://ops.example.com"])
    assert s.camera_allowed_hosts == ["10.0.0.0/8", "cam.example.com", "::1"]
    with pytest.raises(SettingsError, match="camera_allowed_hosts"):
        load_settings(None, camera_allowed_hosts=["not a host!"])
    with pytest.raises(SettingsError, match="allowed_origins"):
        load_settings(None, allowed_origins=["https://ops.example.com/path"])


def test_alert_settings_convert_to_the_engine_params_field_by_field() -> None:
    s = AlertSettings(on_threshold=3.5, off_threshold=1.5, min_duration_s=0.2, hold_s=0.7, cooldown_s=3.0,
                      smoothing_half_life_frames=1.0, warmup_s=2.0, warmup_blend=0.25, update_interval_s=0.5,
                      strong_margin=1.25)
    assert s.params() == AlertParams(3.5, 1.5, 0.2, 0.7, 3.0, 1.0, 2.0, 0.25, 0.5, 1.25)
    assert AlertSettings().params() == AlertParams()  # one set of defaults
    with pytest.raises(ValidationError, match="off_threshold"):
        AlertSettings(on_threshold=2, off_threshold=3)
    with pytest.raises(ValidationError, match="strong_margin"):
        AlertSettings(strong_margin=-0.5)


@pytest.mark.parametrize(("settings", "params"), [(AlertSettings, AlertParams), (SceneSettings, SceneParams)])
def test_parameter_settings_declare_each_dataclass_field_once(settings: type[AlertSettings | SceneSettings],
                                                              params: type[AlertParams | SceneParams]) -> None:
    fields = dataclasses.fields(params)
    assert list(settings.model_fields) == [f.name for f in fields]  # same order: the JSON schema lists them so
    for f in fields:
        info = settings.model_fields[f.name]
        assert info.default == f.default
        assert info.description
    assert settings().params() == params()


def test_parameter_settings_refuse_a_field_without_its_description() -> None:
    described = {f.name: Field(description="x") for f in dataclasses.fields(SceneParams)}
    del described["hold_s"]
    with pytest.raises(TypeError, match="hold_s"):
        _fields_of(SceneParams, described)
    with pytest.raises(TypeError, match="bogus"):
        _fields_of(SceneParams, {**described, "hold_s": Field(), "bogus": Field()})
