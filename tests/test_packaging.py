"""The built wheel carries the committed demo checkpoint (package data, ``model/weights/demo.pt``), and
``model.checkpoint.DEFAULT_CHECKPOINT`` finds it whatever the working directory: in this checkout's
editable install and in an installed copy of the wheel with the repository nowhere on ``sys.path``."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SOURCE_CHECKPOINT = REPO / "model" / "weights" / "demo.pt"
SOURCE_CARD = REPO / "model" / "weights" / "demo.md"


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def run(args: list[str], cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    done = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, f"{args}\nstdout:\n{done.stdout}\nstderr:\n{done.stderr}"
    return done


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """posestream's wheel, built from a copy of the sources (so the build writes nothing into the
    checkout: no build/ or egg-info beside other people's work), offline and without build isolation."""
    root = tmp_path_factory.mktemp("wheel")
    src = root / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(REPO / name, src / name)
    for package in ("model", "workers", "schemas"):
        shutil.copytree(REPO / package, src / package, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check"]
    run(
        [
            *pip,
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "--no-index",
            "-q",
            "-w",
            str(root / "dist"),
            ".",
        ],
        src,
    )
    [built] = (root / "dist").glob("posestream-*.whl")
    return built


def test_the_wheel_carries_the_demo_checkpoint_and_its_card(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        assert "model/weights/demo.pt" in names and "model/weights/demo.md" in names
        assert sha256(archive.read("model/weights/demo.pt")) == sha256(SOURCE_CHECKPOINT.read_bytes())
        assert archive.read("model/weights/demo.md") == SOURCE_CARD.read_bytes()


def test_the_checkout_finds_it_from_another_working_directory(tmp_path: Path) -> None:
    script = "from model.checkpoint import DEFAULT_CHECKPOINT as p; print(p.resolve(), p.is_file())"
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    out = run([sys.executable, "-c", script], tmp_path, env).stdout.split()
    assert out == [str(SOURCE_CHECKPOINT.resolve()), "True"]


def test_an_installed_wheel_finds_and_loads_its_own_checkpoint(wheel: Path, tmp_path: Path) -> None:
    """``pip install --no-deps --target``: the copy in SITE is what gets imported (the checkout is not on
    ``sys.path``; torch and the other dependencies come from this interpreter's site-packages)."""
    site = tmp_path / "site"
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check"]
    run([*pip, "install", "--no-deps", "--no-index", "-q", "--target", str(site), str(wheel)], tmp_path)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    script = textwrap.dedent(
        """
        import json, sys
        from pathlib import Path
        import model
        from model.checkpoint import DEFAULT_CHECKPOINT, load_checkpoint
        _, meta = load_checkpoint(DEFAULT_CHECKPOINT)
        print(json.dumps({
            "path": sys.path,
            "package": str(Path(model.__file__).resolve()),
            "checkpoint": str(DEFAULT_CHECKPOINT.resolve()),
            "version": meta["version"],
        }))
        """
    )
    env = {**os.environ, "PYTHONPATH": str(site)}
    found = json.loads(run([sys.executable, "-c", script], elsewhere, env).stdout.strip().splitlines()[-1])
    assert not any((elsewhere / entry).resolve() == REPO for entry in found["path"]), found["path"]
    assert Path(found["package"]).is_relative_to(site.resolve()), found["package"]
    assert found["checkpoint"] == str((site / "model" / "weights" / "demo.pt").resolve())
    assert found["version"].startswith("demo-synthetic")
