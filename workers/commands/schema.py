"""``posestream schema``: export the wire contract (JSON Schema, optionally golden msgpack files)."""

from __future__ import annotations

from pathlib import Path

import typer


def register(app: typer.Typer) -> None:
    @app.command("schema")
    def schema(
        out: Path = typer.Option(..., "--out", help="Folder to write <kind>.schema.json into."),
        golden: bool = typer.Option(False, help="Also write the golden <kind>.msgpack examples."),
    ) -> None:
        """Write the JSON Schema of every wire message (and the golden msgpack examples)."""
        from schemas.examples import write_golden, write_json_schemas

        paths = write_golden(out) if golden else write_json_schemas(out)
        for path in paths:
            typer.echo(str(path))
