"""Secrets out of logs, errors and Serve args (workers.redacting, the URL file), and file names from camera
ids that stay inside their folder (workers.paths)."""

from __future__ import annotations

import contextlib
import io
import json
import os
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from schemas.settings import Settings
from workers.paths import safe_child, safe_component
from workers.redacting import has_secret, redact_text, redact_url

# ------------------------------------------------------------------------------------------ redaction


@pytest.mark.parametrize(
    ("url", "redacted"),
    [
        ("redis://worker:s3cret@redis.internal:6379/0", "redis://worker:***@redis.internal:6379/0"),
        ("rediss://:s3cret@10.0.0.5:6380/0?ssl_ca_certs=/ca.pem", "rediss://:***@10.0.0.5:6380/0?ssl_ca_certs=/ca.pem"),
        ("redis://s3cret@h:1/0", "redis://***@h:1/0"),  # redis: a lone userinfo is taken for a password
        ("redis://h:1/0?password=s3cret&db=1", "redis://h:1/0?password=***&db=1"),
        ("rtsp://admin:s3cret@cam-7/stream1", "rtsp://admin:***@cam-7/stream1"),
        ("rtsp://p%40ss:w%3Ard@cam/x", "rtsp://p%40ss:***@cam/x"),
        ("rtsp://admin@cam/x", "rtsp://admin@cam/x"),  # a user name alone is no secret
        ("redis://localhost:6379/0", "redis://localhost:6379/0"),
        ("/data/video.mp4", "/data/video.mp4"),
        ("0", "0"),
    ],
)  # fmt: skip
def test_redact_url_masks_passwords_and_keeps_the_rest(url: str, redacted: str) -> None:
    assert redact_url(url) == redacted
    assert has_secret(url) == (url != redacted)


def test_redact_text_masks_every_url_in_a_message() -> None:
    text = "Error 111 connecting to redis://u:pw1@h:1/0 (then tried 'rtsp://a:pw2@cam/x')."
    assert (
        redact_text(text) == "Error 111 connecting to redis://u:***@h:1/0 (then tried 'rtsp://a:***@cam/x')."
    )


@given(st.text(min_size=1, max_size=64))
def test_no_password_survives_redaction(password: str) -> None:
    from urllib.parse import quote

    url = f"redis://user:{quote(password, safe='')}@host:6379/0"
    assert redact_url(url) == "redis://user:***@host:6379/0"
    assert redact_text(f"failed: {url} (retrying)") == "failed: redis://user:***@host:6379/0 (retrying)"


def test_log_lines_are_redacted_even_when_the_caller_forgot() -> None:
    from workers.log import redact_secrets

    line = redact_secrets(
        None, "info", {"event": "x", "url": "redis://u:pw@h/0", "nested": {"a": ["rtsp://a:b@c"]}}
    )
    assert line == {"event": "x", "url": "redis://u:***@h/0", "nested": {"a": ["rtsp://a:***@c"]}}


# ---------------------------------------------------------------------------- the URL from a secret file


def test_the_url_comes_from_a_file_when_none_is_given(tmp_path: Path, monkeypatch) -> None:
    secret = tmp_path / "redis_url"
    secret.write_text("redis://worker:pw@redis:6379/0\n")
    monkeypatch.delenv("POSESTREAM_REDIS_URL", raising=False)
    monkeypatch.setenv("POSESTREAM_REDIS_URL_FILE", str(secret))
    settings = Settings()
    assert settings.redis_url == "redis://worker:pw@redis:6379/0"
    assert "pw" not in repr(settings) and "pw" not in str(settings)
    # An explicit URL wins; an explicit None (what local_stack puts in the app args) reads the file.
    assert Settings(redis_url="redis://other:6379/0").redis_url == "redis://other:6379/0"
    monkeypatch.setenv("POSESTREAM_REDIS_URL", "redis://inherited:6379/0")
    assert Settings(redis_url=None, redis_url_file=secret).redis_url == "redis://worker:pw@redis:6379/0"


@pytest.mark.parametrize("content", [None, "  \n"])
def test_a_missing_or_empty_url_file_is_refused_without_its_content(tmp_path: Path, content) -> None:
    path = tmp_path / "url"
    if content is not None:
        path.write_text(content)
    with pytest.raises(ValueError, match="redis_url_file"):
        Settings(redis_url_file=path)


def test_tls_settings_with_a_plain_url_are_refused(tmp_path: Path) -> None:
    settings = Settings(redis_ca_file=tmp_path / "ca.pem")
    with pytest.raises(ValueError, match="rediss://"):
        settings.redis_tls_options("redis://h:6379/0")
    assert settings.redis_tls_options("rediss://h:6380/0") == {"ssl_ca_certs": str(tmp_path / "ca.pem")}
    assert Settings().redis_tls_options("redis://h:6379/0") == {}
    with pytest.raises(ValueError, match="both"):
        Settings(redis_cert_file=tmp_path / "c.pem").redis_tls_options("rediss://h/0")


def test_the_serve_app_refuses_a_password_in_its_args() -> None:
    import yaml

    from workers.serve.app import DEFAULT_CONFIG, AppConfig

    args = yaml.safe_load(DEFAULT_CONFIG.read_text())["applications"][0]["args"]
    AppConfig.model_validate({**args, "settings": {"redis_url": "redis://redis:6379/0"}})  # no secret: fine
    with pytest.raises(ValueError, match="POSESTREAM_REDIS_URL") as error:
        AppConfig.model_validate({**args, "settings": {"redis_url": "redis://w:hunter2@redis:6379/0"}})
    assert "hunter2" not in str(error.value)


def test_local_stack_gives_the_replicas_a_private_file_not_the_url(monkeypatch) -> None:
    from workers.local_stack import OUR_APP, _with_overrides, write_secret_file
    from workers.serve.app import DEFAULT_CONFIG, load_deploy_config

    url = "redis://worker:hunter2@127.0.0.1:6379/0"
    with contextlib.ExitStack() as stack:
        path = write_secret_file(stack, url)
        assert path.read_text() == url
        assert (path.stat().st_mode & 0o077) == 0 and (path.parent.stat().st_mode & 0o077) == 0
        schema = _with_overrides(
            load_deploy_config(DEFAULT_CONFIG), {"redis_url": None, "redis_url_file": str(path)}, {}
        )
        dumped = json.dumps([app.args for app in schema.applications])
        assert "hunter2" not in dumped
        ours = next(app for app in schema.applications if app.import_path == OUR_APP)
        monkeypatch.setenv("POSESTREAM_REDIS_URL", "redis://inherited:6379/0")
        assert Settings(**ours.args["settings"]).redis_url == url  # what a replica will connect to
    assert not path.exists()  # removed with the stack


# ------------------------------------------------------------------------------------ safe file names


@pytest.mark.parametrize(
    ("name", "component"),
    [
        ("cam-1", "cam-1"),
        ("front_door.2", "front_door.2"),
        ("..", "%2E."),
        (".", "%2E"),
        (".hidden", "%2Ehidden"),
        ("site:cam", "site%3Acam"),
        ("a/b", "a%2Fb"),
        ("../../etc/passwd", "%2E.%2F..%2Fetc%2Fpasswd"),
        ("100%", "100%25"),
        ("é", "%C3%A9"),
    ],
)
def test_safe_component_maps_names_to_one_readable_component(name: str, component: str) -> None:
    assert safe_component(name) == component


@given(st.text(min_size=1, max_size=300).filter(lambda s: "\x00" not in s))
def test_safe_child_stays_in_its_folder_for_any_name(name: str) -> None:
    folder = Path("/srv/out")
    child = safe_child(folder, name, ".webm")
    assert child.parent == folder
    assert child.name not in (".", "..") and "/" not in child.name and not child.name.startswith(".")
    assert len(child.name.encode()) <= 255


@given(
    st.lists(st.from_regex(r"[A-Za-z0-9._:-]{1,128}", fullmatch=True), min_size=2, max_size=2, unique=True)
)
def test_different_camera_ids_never_share_a_file(names: list[str]) -> None:
    first, second = names
    assert safe_component(first) != safe_component(second)


def test_long_names_are_cut_with_a_hash_and_stay_distinct() -> None:
    long_a, long_b = ":" * 128, ":" * 127 + "-"
    assert len(safe_component(long_a)) <= 200 and "~" in safe_component(long_a)
    assert safe_component(long_a) != safe_component(long_b)


def test_safe_child_writes_inside_the_folder_for_a_dotdot_camera(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    camera_dir = safe_child(out, "..")
    camera_dir.mkdir()
    (camera_dir / "0.jpg").write_bytes(b"x")
    assert [p.relative_to(out).parts[0] for p in out.rglob("*")] == ["%2E.", "%2E."]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]  # nothing next to the folder


def test_a_symlink_planted_in_the_folder_is_refused(tmp_path: Path) -> None:
    out, elsewhere = tmp_path / "out", tmp_path / "elsewhere"
    out.mkdir()
    elsewhere.mkdir()
    os.symlink(elsewhere / "x.webm", out / "cam.webm")
    with pytest.raises(ValueError, match="outside"):
        safe_child(out, "cam", ".webm")
    with pytest.raises(ValueError):
        safe_child(out, "cam", "/../x")
    with pytest.raises(ValueError):
        safe_component("")


def test_the_cli_log_output_is_redacted() -> None:
    """structlog as the CLI sets it up: a URL logged as it is comes out masked."""
    import structlog

    from workers.log import configure_logging

    configure_logging(level="INFO", json=True)
    stream = io.StringIO()
    with contextlib.redirect_stderr(stream):
        structlog.get_logger().warning(
            "redis_unavailable", error="connecting to redis://w:hunter2@h:1/0 failed"
        )
    assert "hunter2" not in stream.getvalue()
    assert "redis://w:***@h:1/0" in stream.getvalue()
