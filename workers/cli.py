"""The ``posestream`` command line: one Typer app, each command group in its own module."""

from __future__ import annotations

import importlib

import typer

from workers.log import configure_logging

app = typer.Typer(
    name="posestream",
    help="Multi-person pose and activity recognition over Redis streams, served by Ray.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)

# Each module exposes ``register(app)``; adding a command group is one line here.
_COMMAND_MODULES = (
    "workers.commands.schema",
    "workers.commands.infer",
    "workers.commands.data",
    "workers.commands.train",
    "workers.commands.serve",
    "workers.commands.worker",
    "workers.commands.publish",
    "workers.commands.events",
    "workers.commands.view",
    "workers.commands.export",
    "workers.commands.annotate",
    "workers.commands.demo",
    "workers.commands.eval",
)


@app.callback()
def _root(log_level: str = typer.Option("INFO", envvar="POSESTREAM_LOG_LEVEL", help="Log level.")) -> None:
    configure_logging(level=log_level)


for _name in _COMMAND_MODULES:
    importlib.import_module(_name).register(app)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
