"""The fake-cluster step runs in its own pytest process, after the main suite:

    .venv/bin/pytest -q tests/cluster

It starts its own Ray head and drives it from this process, which therefore must not run the main suite's
in-process Ray: collected together with other tests (a bare ``pytest``), its tests are deselected.

Ray 2.60's token authentication: this process is the driver of a cluster the test starts with the ``ray``
CLI, so both get one token of this run (never the user's ~/.ray/auth_token). Ray reads the mode when it is
first imported, so it is set in ``pytest_configure``, before any test module imports Ray.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent


def _only_this_step(config: pytest.Config) -> bool:
    paths = [Path(str(arg).split("::")[0]).resolve() for arg in config.args]
    return bool(paths) and all(path == HERE or HERE in path.parents for path in paths)


def pytest_configure(config: pytest.Config) -> None:
    if _only_this_step(config):
        os.environ["RAY_AUTH_MODE"] = "token"
        os.environ["RAY_AUTH_TOKEN"] = uuid.uuid4().hex
        for key in [k for k in os.environ if k.startswith("RAY_ADDRESS")]:
            del os.environ[key]


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if _only_this_step(config):
        return
    ours = [item for item in items if HERE in Path(str(item.path)).parents]
    if ours:
        config.hook.pytest_deselected(items=ours)
        items[:] = [item for item in items if item not in ours]
