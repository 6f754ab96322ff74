"""Build posestream's Serve application; load, check and deploy the Serve config file.

``workers.serve.app:build_app`` is the ``import_path`` of ``deploy/serve_config.yaml``: Serve calls it with
the application's ``args`` (an ``AppConfig``). Replicas, resources, batching and autoscaling are in the
config file's ``deployments`` section, never in code; the model checkpoint and the batching numbers are
each stage's ``user_config``, so changing them is a lightweight update (``reconfigure``, a live model swap)
while changing ``args`` restarts every replica.

``deploy_config_file`` runs a config file the way ``serve run config.yaml`` does (``deploy_apps`` through
the Serve controller), so ``posestream serve`` and the tests apply exactly what ``serve deploy`` applies.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, model_validator
from ray import serve
from ray.serve.deployment import Application
from ray.serve.schema import ServeDeploySchema

from workers.redacting import has_secret, redact_url
from workers.serve.activity import ActivityClassifier
from workers.serve.backbone import PoseBackbone
from workers.serve.consumer import FrameConsumer
from workers.serve.pipeline import StageRetry
from workers.serve.residual import PoseResidual

DEFAULT_CONFIG = Path(__file__).resolve().parents[2] / "deploy" / "serve_config.yaml"
BATCHED_DEPLOYMENTS = ("PoseBackbone", "PoseResidual", "ActivityClassifier")


class AppConfig(BaseModel):
    """The application's ``args`` in the Serve config file."""

    model_config = ConfigDict(extra="forbid")

    # Overrides of schemas.settings.Settings (shards, stream_prefix, in_flight, redis_url_file, ...);
    # anything not given comes from the replicas' POSESTREAM_* environment (runtime_env env_vars on a
    # cluster). A redis_url with a password is refused here: args are shown by `serve status` and the
    # dashboard, so the replicas take such a URL from their environment or a file (docs/SECURITY.md).
    settings: dict[str, Any] = Field(default_factory=dict)
    stage_retry: StageRetry
    # A pipeline call awaited longer than this means the consumer's work is stuck: the replica reports
    # itself unhealthy, Serve replaces it, and the shard's next owner retries the frames. It must exceed
    # what three stage calls may legitimately take (every attempt timing out).
    stuck_call_s: float = Field(600.0, gt=0)
    stats_interval_s: float = Field(gt=0)  # how often the consumer refreshes its metrics and backlog
    consume: bool = True  # False: the stages only (the consumer replica serves `infer` calls)

    @model_validator(mode="after")
    def _no_secret_in_args(self) -> AppConfig:
        url = self.settings.get("redis_url")
        if isinstance(url, str) and has_secret(url):
            raise ValueError(
                f"settings.redis_url {redact_url(url)} holds a password: give it to the replicas as "
                "POSESTREAM_REDIS_URL or in a file named by redis_url_file (POSESTREAM_REDIS_URL_FILE), "
                "not in the application's args"
            )
        return self

    @model_validator(mode="after")
    def _stuck_beyond_retries(self) -> AppConfig:
        slowest = 3 * self.stage_retry.longest_s  # backbone, residual, activity one after another
        if self.stuck_call_s <= slowest:
            raise ValueError(
                f"stuck_call_s={self.stuck_call_s:g} must exceed 3 stage calls at their longest "
                f"({slowest:g} s with stage_retry's attempts, timeout_s and backoff), or healthy replicas "
                "would be replaced"
            )
        return self


def build_app(args: dict[str, Any]) -> Application:
    config = AppConfig.model_validate(args or {})
    return FrameConsumer.bind(
        PoseBackbone.bind(),
        PoseResidual.bind(),
        ActivityClassifier.bind(),
        config.model_dump(mode="json"),
    )


def load_deploy_config(path: str | Path = DEFAULT_CONFIG) -> ServeDeploySchema:
    """Parse and validate a Serve config file, and check what Serve cannot check for us."""
    raw = yaml.safe_load(Path(path).read_text())
    schema = ServeDeploySchema.model_validate(raw)
    check_deploy_config(schema)
    return schema


def check_deploy_config(schema: ServeDeploySchema) -> None:
    """Each batched stage's ``max_ongoing_requests`` must admit a full batch, or batches never fill."""
    for app in schema.applications:
        AppConfig.model_validate(app.args or {})
        for deployment in app.deployments:
            if deployment.name not in BATCHED_DEPLOYMENTS:
                continue
            user_config = deployment.user_config if isinstance(deployment.user_config, dict) else {}
            batch = user_config.get("max_batch_size")
            ongoing = deployment.max_ongoing_requests
            if batch is None or not isinstance(ongoing, int):
                raise ValueError(f"{app.name}/{deployment.name}: set max_ongoing_requests and max_batch_size")
            if ongoing < batch:
                raise ValueError(
                    f"{app.name}/{deployment.name}: max_ongoing_requests {ongoing} < max_batch_size {batch}"
                )


def deploy_config_file(schema: ServeDeploySchema, timeout_s: float = 300.0) -> None:
    """Deploy (or update in place) the config's applications on the running Serve; wait until RUNNING.

    Serve must have been started (``serve.start``); this is what ``serve run config.yaml`` does.
    """
    from ray.serve.context import _get_global_client

    _get_global_client().deploy_apps(schema, _blocking=False)
    wait_running([app.name for app in schema.applications], timeout_s)


def wait_running(app_names: list[str], timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        statuses = serve.status().applications
        states = {name: statuses[name].status if name in statuses else "NOT_STARTED" for name in app_names}
        if all(state == "RUNNING" for state in states.values()):
            return
        failed = {name: statuses[name].message for name, state in states.items() if state == "DEPLOY_FAILED"}
        if failed:
            raise RuntimeError(f"Serve application failed to deploy: {failed}")
        if time.monotonic() > deadline:
            raise TimeoutError(f"Serve applications not RUNNING after {timeout_s} s: {states}")
        time.sleep(0.5)
