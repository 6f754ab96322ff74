"""The fault suite (marker ``faults``): real processes, real Redis servers, real faults, and the books.

Every test under tests/faults/ is marked ``faults`` here; ``make faults`` runs them alone, ``make test``
(CI) with the rest. The soak (marker ``soak``) is left out unless asked for: ``make soak``. Each test
adds a row to the table printed at the end of the run (fault, frames, outcomes, duplicates, lost, time
to recover)."""

from __future__ import annotations

from pathlib import Path

import pytest
from harness import BooksRow, format_row
from stream_helpers import DEBIAN_REDIS

from workers.redis_server import RedisServer

FAULTS_DIR = Path(__file__).resolve().parent
_ROWS: list[BooksRow] = []


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if FAULTS_DIR in Path(str(item.fspath)).resolve().parents:
            item.add_marker(pytest.mark.faults)


def pytest_terminal_summary(terminalreporter) -> None:
    if not _ROWS:
        return
    terminalreporter.section("fault suite: the books")
    terminalreporter.write_line(
        "| fault | frames | outcomes | duplicates | events redelivered | lost | recovery | notes |"
    )
    terminalreporter.write_line("|---|---|---|---|---|---|---|---|")
    for row in _ROWS:
        terminalreporter.write_line(format_row(row))


@pytest.fixture
def books_table():
    """Append a BooksRow to the end-of-run table."""
    return _ROWS.append


@pytest.fixture(scope="session")
def fault_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small model (demo preset at 128 px, thresholds 0: a few persons per frame) for worker processes."""
    from model_helpers import demo_checkpoint

    return demo_checkpoint(tmp_path_factory.mktemp("faults") / "fault.pt", "fault-v1", seed=3)


@pytest.fixture
def own_redis(tmp_path: Path):
    """A redis-server of this test alone (Debian's 7.0 where installed), append-only with fsync always,
    on a free port: restarting it loses nothing acknowledged."""
    executable = DEBIAN_REDIS if DEBIAN_REDIS.is_file() else None
    with RedisServer(tmp_path / "redis", executable=executable, appendfsync="always") as server:
        yield server
