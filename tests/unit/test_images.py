"""Image housekeeping that must not break a check running beside it (no engine needed)."""
import fcntl
import threading

import pytest

from socketlab import images
from socketlab.errors import LabError


def test_old_builds_are_not_removed_while_an_overlay_builds_on_them(monkeypatch, tmp_path):
    monkeypatch.setattr(images, "PARENTS_LOCK", tmp_path / "parents.lock")
    removed = []

    class Images:
        def list(self, **_):
            return [type("Image", (), {"id": "sha256:old"})()]

        def remove(self, image_id):
            removed.append(image_id)

    builder = images.ImageBuilder.__new__(images.ImageBuilder)
    builder.client = type("Client", (), {"images": Images()})()
    building, done = threading.Event(), threading.Event()

    def overlay_build():
        with images.parents_lock(fcntl.LOCK_SH):
            building.set()
            done.wait(5)

    worker = threading.Thread(target=overlay_build)
    worker.start()
    assert building.wait(5)
    builder._drop_replaced("socketlab/lessons:latest")
    assert removed == []                      # the overlay may stand on it: left for the next build
    done.set()
    worker.join(5)
    builder._drop_replaced("socketlab/lessons:latest")
    assert removed == ["sha256:old"]


def test_an_overlay_whose_parent_vanished_is_built_again_then_explained(monkeypatch, tmp_path):
    monkeypatch.setattr(images, "PARENTS_LOCK", tmp_path / "parents.lock")
    monkeypatch.setattr(images.time, "sleep", lambda _: None)
    calls = []

    def build(*args, **kwargs):
        calls.append(args)
        raise LabError("building x failed at Step 2/3 : COPY: failed to export image: failed to set parent "
                       "sha256:e73a: unknown parent image ID sha256:e73a", "")

    builder = images.ImageBuilder.__new__(images.ImageBuilder)
    builder.lessons_tag = "socketlab/lessons:latest"
    builder._build = build
    with pytest.raises(LabError) as err:
        builder.build_overlay("socketlab/check-ftp:x", {"my_client.py": b""}, owner="check")
    assert len(calls) == images.OVERLAY_ATTEMPTS
    assert "replaced meanwhile" in err.value.message and "run the same command again" in err.value.fix
