"""The live view: the worker's previews (bounded, rate-capped, best effort) and ``posestream view``'s page,
JSON, tiles and token, against a real Redis and a real worker; the page in a real browser (Chromium)."""

from __future__ import annotations

import os
import shutil
import time
import urllib.request

import cv2
import numpy as np
from scripted_people import ScriptedPeople, numbered_image, person
from stream_helpers import consumer_settings, frame_payload, publish, run_worker
from view_helpers import RunningView

from schemas.streams import shard_for
from schemas.wire import FramePreview

CAMERA = "yard-cam"


def publish_frames(sync_redis, settings, frame_ids, camera=CAMERA, size=(960, 720)) -> None:
    for frame_id in frame_ids:
        publish(
            sync_redis, settings, camera, frame_payload(camera, frame_id, numbered_image(frame_id, *size))
        )


def walk_then_run(frames: int) -> dict:
    half = frames // 2
    return {i: [person(100.0 + 8 * i, "walking" if i < half else "running", y=200.0)] for i in range(frames)}


def preview_key(settings, camera=CAMERA) -> str:
    return settings.shard_keys(shard_for(camera, settings.shards)).preview(camera)


def test_worker_writes_one_small_rate_capped_preview_per_camera(redis_url, sync_redis):
    settings = consumer_settings(redis_url, shards=1, preview_fps=2.0, preview_max_side=320, preview_ttl_s=30)
    publish_frames(sync_redis, settings, range(20))
    stats = run_worker(redis_url, sync_redis, settings, ScriptedPeople(walk_then_run(20)), 20)

    preview = FramePreview.from_bytes(sync_redis.get(preview_key(settings)))
    image = cv2.imdecode(np.frombuffer(preview.image, np.uint8), cv2.IMREAD_COLOR)
    assert image.shape[:2] == (240, 320)  # longest side at the cap, aspect kept
    assert (preview.width, preview.height) == (960, 720)  # the frame's own size, to scale events by
    assert 0 <= preview.frame_id < 20
    assert 0 < sync_redis.pttl(preview_key(settings)) <= 30_000
    assert sync_redis.memory_usage(preview_key(settings)) < 64 * 1024  # one small value per camera
    # 20 frames go by in well under the run's seconds: at 2 previews/s most are skipped
    assert 1 <= stats["previews_written"] < 20 and stats["previews_failed"] == 0
    assert stats["frames_ok"] == 20


def test_previews_off_writes_nothing(redis_url, sync_redis):
    settings = consumer_settings(redis_url, shards=1, preview_fps=0)
    publish_frames(sync_redis, settings, range(3))
    stats = run_worker(redis_url, sync_redis, settings, ScriptedPeople(walk_then_run(3)), 3)
    assert sync_redis.get(preview_key(settings)) is None and stats["previews_written"] == 0


def test_view_shows_cameras_tracks_changes_and_drawn_tiles(redis_url, sync_redis):
    settings = consumer_settings(redis_url, shards=2, preview_fps=30.0)
    publish_frames(sync_redis, settings, range(30))
    with RunningView(redis_url, settings, start="0") as view:
        run_worker(redis_url, sync_redis, settings, ScriptedPeople(walk_then_run(30)), 30)
        deadline = time.monotonic() + 10
        while view.state()["received"] < 30 + 30 and time.monotonic() < deadline:
            time.sleep(0.1)
        state = view.state()
        assert [c["camera_id"] for c in state["cameras"]] == [CAMERA]
        camera = state["cameras"][0]
        assert camera["persons"] == 1 and camera["tracks"] == [1]
        assert camera["activities"] == {"running": 1} and camera["frames_ok"] == 30
        assert [(c["previous"], c["activity"]) for c in state["changes"]] == [("walking", "running")]

        status, body, kind = view.get(f"/camera/{CAMERA}.jpg")
        assert status == 200 and kind == "image/jpeg"
        tile = cv2.imdecode(np.frombuffer(body, np.uint8), cv2.IMREAD_COLOR)
        preview = FramePreview.from_bytes(sync_redis.get(preview_key(settings)))
        bare = cv2.imdecode(np.frombuffer(preview.image, np.uint8), cv2.IMREAD_COLOR)
        assert tile.shape == bare.shape
        changed = np.abs(tile.astype(int) - bare.astype(int)).max(axis=2) > 60
        assert changed.mean() > 0.002  # box, skeleton and label drawn on it

        assert view.get("/camera/nobody-here.jpg")[0] == 404
        assert view.get("/camera/..%2Fetc.jpg")[0] == 404
        status, page, kind = view.get("/")
        assert status == 200 and b"posestream" in page and "text/html" in kind
        assert b"https://" not in page  # no CDN assets: works without internet


def test_token_guards_everything_but_health(redis_url, sync_redis):
    settings = consumer_settings(redis_url, shards=1)
    with RunningView(redis_url, settings, token="s3cret-token") as view:
        assert view.get("/api/state")[0] == 401
        assert view.get("/")[0] == 401
        assert view.get("/api/state?token=wrong")[0] == 401
        assert view.state(token="s3cret-token")["cameras"] == []
        assert view.get("/api/state", headers={"Authorization": "Bearer s3cret-token"})[0] == 200
        assert view.get("/healthz")[0] == 200


def test_mjpeg_tile_streams_jpeg_parts(redis_url, sync_redis):
    settings = consumer_settings(redis_url, shards=1, preview_fps=30.0)
    publish_frames(sync_redis, settings, range(4))
    run_worker(redis_url, sync_redis, settings, ScriptedPeople(walk_then_run(4)), 4)
    with RunningView(redis_url, settings, start="0") as view:
        with urllib.request.urlopen(f"{view.url}/camera/{CAMERA}/mjpeg", timeout=10) as response:
            assert response.headers["content-type"].startswith("multipart/x-mixed-replace")
            head = response.read(200)
        assert head.startswith(b"--posestream-frame\r\nContent-Type: image/jpeg")
        assert b"\xff\xd8" in head  # a JPEG's start follows the part's headers


CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"


def test_page_in_a_real_browser_shows_tiles_and_live_counts(redis_url, sync_redis, tmp_path):
    if not (os.path.exists(CHROMIUM) and os.path.exists(CHROMEDRIVER)):
        from stream_helpers import skip_unless_available

        skip_unless_available("Debian's chromium and chromium-driver (installed by .ci/run)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    settings = consumer_settings(redis_url, shards=1, preview_fps=30.0)
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1280,800"):
        options.add_argument(flag)
    walker = {i: [person(60.0 + 6 * i, "walking", y=200.0)] for i in range(24)}
    one = {i: walker[i] for i in range(12)}
    two = {i: walker[i] + [person(600.0, "sitting", y=260.0)] for i in range(12, 24)}
    with RunningView(redis_url, settings) as view:
        driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
        try:
            driver.get(view.url + "/")
            publish_frames(sync_redis, settings, range(12), camera="gate-cam")
            run_worker(redis_url, sync_redis, settings, ScriptedPeople(one), 12)
            tile = WebDriverWait(driver, 20).until(
                lambda d: d.find_elements(By.CSS_SELECTOR, '.tile[data-camera="gate-cam"][data-persons="1"]')
            )[0]
            assert "walking" in tile.text
            # A second person appears: the page's count follows without a reload.
            publish_frames(sync_redis, settings, range(12, 24), camera="gate-cam")
            run_worker(redis_url, sync_redis, settings, ScriptedPeople(one | two), 24)
            WebDriverWait(driver, 20).until(
                lambda d: d.find_elements(By.CSS_SELECTOR, '.tile[data-camera="gate-cam"][data-persons="2"]')
            )
            WebDriverWait(driver, 20).until(
                lambda d: d.execute_script(
                    "const i = document.querySelector('.tile img'); return i && i.naturalWidth > 0;"
                )
            )
            screenshot = tmp_path / "view.png"
            driver.save_screenshot(str(screenshot))
            assert screenshot.stat().st_size > 10_000
            if target := os.environ.get("POSESTREAM_VIEW_SCREENSHOT"):  # how docs/view.png is made
                shutil.copy(screenshot, target)
        finally:
            driver.quit()
