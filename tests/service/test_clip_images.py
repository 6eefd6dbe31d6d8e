"""Event images of scored clips: kept for the TTL, then neither served nor on disk; ids never leave the folder."""
from __future__ import annotations

import os
from pathlib import Path

from service.clip_images import ClipImages

EVENT = "0123456789abcdef0123456789abcdef"


def test_images_are_served_until_they_expire(tmp_path: Path) -> None:
    now = [1000.0]
    store = ClipImages(tmp_path / "clips", ttl_s=60, clock=lambda: now[0])
    result_id, names = store.save({EVENT: (b"snap", b"heat")})
    snap_name, heat_name = names[EVENT]
    assert (snap_name, heat_name) == (f"{EVENT}-snapshot.jpg", f"{EVENT}-heatmap.jpg")
    folder = tmp_path / "clips" / result_id
    os.utime(folder, (now[0], now[0]))
    path = store.path(result_id, snap_name)
    assert path is not None and path.read_bytes() == b"snap"
    assert not [p for p in folder.iterdir() if p.name.startswith(".")]  # written atomically, no leftovers
    now[0] += 61
    assert store.path(result_id, snap_name) is None  # expired: not served even before the cleanup
    other, _ = store.save({})  # each save first deletes what has expired
    assert not folder.exists() and (tmp_path / "clips" / other).is_dir()


def test_malformed_ids_are_refused(tmp_path: Path) -> None:
    store = ClipImages(tmp_path / "clips", ttl_s=60)
    result_id, _ = store.save({EVENT: (b"s", b"h")})
    (tmp_path / "secret.jpg").write_bytes(b"x")
    for rid, name in ((result_id, "../../secret.jpg"), ("..", f"{EVENT}-snapshot.jpg"),
                      (result_id, f"{EVENT}-other.jpg"), (result_id.upper(), f"{EVENT}-snapshot.jpg"),
                      (result_id, "ffffffffffffffffffffffffffffffff-snapshot.jpg")):
        assert store.path(rid, name) is None, (rid, name)
    assert store.path(result_id, f"{EVENT}-heatmap.jpg") is not None
