"""The scene-change detector on synthetic pictures: a swapped view fires once; a local anomaly, white noise and
an exposure change do not."""
from __future__ import annotations

import itertools

import numpy as np

from model import EventUpdate, SceneChangeDetector, SceneParams
from tests.model.synthetic import background, scene_frames

FPS = 10


def detector(**kw: object) -> SceneChangeDetector:
    ids = (f"sc{i}" for i in itertools.count())
    return SceneChangeDetector("cam", SceneParams(**kw), new_id=lambda: next(ids))  # type: ignore[arg-type]


def pictures(frames: list[np.ndarray]) -> list[np.ndarray]:
    """Grey uint8 frames -> preprocessed (1, H, W) float32 in [-1, 1], as the pipeline's windows hold them."""
    return [(f.astype(np.float32) / 127.5 - 1)[None] for f in frames]


def run(d: SceneChangeDetector, frames: list[np.ndarray], t0: float = 0.0) -> tuple[list[EventUpdate], list[bool]]:
    """Feed frames at FPS; (updates, suppressing after each frame)."""
    out, held = [], []
    for i, p in enumerate(pictures(frames)):
        out += d.update(p, t0 + i / FPS)
        held.append(d.suppressing)
    return out, held


def other_scene(length: int, size: int = 64) -> list[np.ndarray]:
    """Another view: a coarser texture, the square crossing lower down."""
    yy, xx = np.mgrid[0:size, 0:size]
    bg = (120 + 50 * np.sign(np.sin(xx / 3.0 + yy / 4.0))).astype(np.uint8)
    frames = []
    for t in range(length):
        img = bg.copy()
        x = (3 * t) % (size - 8)
        img[44:52, x:x + 8] = 230
        frames.append(img)
    return frames


def test_a_swapped_view_raises_one_scene_change_and_moving_back_ends_it() -> None:
    d = detector()
    before, after = scene_frames(60), other_scene(60)
    ups, held = run(d, before + after)
    assert not any(held[:60])
    assert [u.kind for u in ups] == ["start"]
    start = ups[0]
    assert start.type == "scene_change" and start.camera_id == "cam"
    assert 6.0 <= start.start_ts <= 6.3  # the new view's first steady frames, not when it was confirmed
    assert d.state == "changed" and d.suppressing and d.active
    assert all(held[62:])  # anomaly alerts are held back from the second frame of the new view on

    back, _ = run(d, scene_frames(60, offset=120), t0=12.0)
    assert [u.kind for u in back] == ["end"] and back[0].event_id == start.event_id
    assert back[0].end_ts is not None and 12.0 <= back[0].end_ts <= 12.3
    assert d.state == "normal" and not d.active


def test_a_local_anomaly_is_not_a_scene_change() -> None:
    rng = np.random.default_rng(0)
    frames = scene_frames(120)
    for f in frames[50:100]:  # a dark blob jumping about in one corner for 5 s
        x, y = rng.integers(0, 12, 2)
        f[y:y + 10, x:x + 10] = 15
    ups, held = run(detector(), frames)
    assert ups == [] and not any(held)


def test_white_noise_and_an_exposure_change_are_not_a_scene_change() -> None:
    rng = np.random.default_rng(1)
    frames = scene_frames(60)
    frames += [rng.integers(0, 256, (64, 64), dtype=np.uint8) for _ in range(60)]  # 6 s of noise
    frames += [(f * 0.6).astype(np.uint8) for f in scene_frames(60, offset=60)]  # the same view, darker
    d = detector()
    ups, held = run(d, frames)
    assert ups == [] and d.state == "normal"
    assert sum(held) <= 2  # noise is never steady: at most a frame's doubt at its edges


def test_close_ends_an_open_scene_change_and_disabled_detects_nothing() -> None:
    d = detector(hold_s=1.0)
    ups, _ = run(d, scene_frames(40) + other_scene(30))
    assert [u.kind for u in ups] == ["start"]
    end = d.close(10.0)
    assert [u.kind for u in end] == ["end"] and end[0].end_ts == 10.0 and not d.suppressing
    assert d.close(11.0) == []
    off, held = run(detector(enabled=False), scene_frames(40) + other_scene(60))
    assert off == [] and not any(held)


def test_a_covered_lens_is_a_scene_change() -> None:
    rng = np.random.default_rng(2)
    dark = [np.clip(rng.normal(6, 1.0, (64, 64)), 0, 255).astype(np.uint8) for _ in range(50)]
    ups, _ = run(detector(), scene_frames(50) + dark)
    assert [u.kind for u in ups] == ["start"] and ups[0].peak_score >= 0.3


def test_the_background_texture_is_the_synthetic_scenes() -> None:
    # other_scene must differ from the synthetic scene everywhere, or the tests above would prove less.
    other = other_scene(1)[0].astype(np.float32)
    assert np.abs(other - background(64).astype(np.float32)).mean() > 20


def test_a_pending_change_is_held_again_after_a_break_in_the_frames() -> None:
    d = detector(hold_s=1.0)
    before = scene_frames(60)
    ups, held = run(d, before + other_scene(5))  # the new view for 0.4 s: pending
    assert ups == [] and d.state == "pending" and held[-1]
    d.restart()
    assert d.state == "normal" and not d.suppressing
    # The same view after the break: held for hold_s from its first frames after the break, not from before.
    later = other_scene(30)[5:]
    ups, _ = run(d, later, t0=60.0)
    assert [u.kind for u in ups] == ["start"]
    assert 60.0 < ups[0].start_ts <= 60.3
