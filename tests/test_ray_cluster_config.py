"""ray_cluster.yaml (the `ray up` file) against Ray's own cluster schema and config validation, and the
choices the deployment depends on: the image's tag is the pinned Ray version, GPU nodes only on demand,
posestream's wheel and checkpoint shipped to the nodes. No Ray is started."""

from __future__ import annotations

import copy
import json
import re
import sys
import tomllib
from pathlib import Path

import jsonschema
import pytest
import ray
import yaml

REPO = Path(__file__).resolve().parents[1]
CLUSTER = REPO / "ray_cluster.yaml"


def cluster_config() -> dict:
    return yaml.safe_load(CLUSTER.read_text())


def pinned(package: str) -> str:
    """The exact version pyproject.toml pins ``package`` to (``name[extras]==version``)."""
    dependencies = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    for spec in dependencies:
        match = re.fullmatch(rf"{package}(\[[^\]]*\])?==([0-9][^,; ]*)", spec.strip())
        if match:
            return match.group(2)
    raise AssertionError(f"{package} is not pinned with == in pyproject.toml")


def test_the_cluster_file_validates_against_rays_schema() -> None:
    schema_path = Path(ray.__file__).parent / "autoscaler" / "ray-schema.json"
    jsonschema.validate(cluster_config(), json.loads(schema_path.read_text()))


def test_rays_own_validation_accepts_the_prepared_config() -> None:
    from ray.autoscaler._private.util import prepare_config, validate_config

    prepared = prepare_config(copy.deepcopy(cluster_config()))  # merged with Ray's AWS defaults
    validate_config(prepared)
    assert prepared["provider"]["type"] == "aws"
    assert prepared["head_node_type"] in prepared["available_node_types"]


def test_a_broken_cluster_file_is_refused() -> None:
    """The checks above can fail: an unknown key and a head type that does not exist are caught."""
    from ray.autoscaler._private.util import prepare_config, validate_config

    broken = cluster_config()
    broken["available_node_types"]["ray.worker.gpu"]["gpus_please"] = 1
    with pytest.raises(jsonschema.ValidationError):
        validate_config(prepare_config(broken))
    broken = cluster_config()
    broken["head_node_type"] = "ray.head.missing"
    with pytest.raises(ValueError, match="head_node_type"):
        validate_config(prepare_config(broken))


def test_the_image_tag_is_the_pinned_ray_version() -> None:
    version = pinned("ray")
    assert version == ray.__version__  # the installed Ray is the pinned one (the schema above is its)
    image = cluster_config()["docker"]["image"]
    match = re.fullmatch(r"rayproject/ray:(?P<version>[^-]+)-py(?P<python>3\d+)-gpu", image)
    assert match, image
    assert match["version"] == version
    # The image's Python is the one posestream needs (and the one these tests run on).
    requires = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["requires-python"]
    minimum = tuple(int(x) for x in requires.removeprefix(">=").split("."))
    image_python = (3, int(match["python"][1:]))
    assert image_python >= minimum
    assert image_python == sys.version_info[:2]


def test_gpu_workers_come_and_go_and_the_head_runs_no_gpu_work() -> None:
    config = cluster_config()
    types = config["available_node_types"]
    head = types[config["head_node_type"]]
    assert head["resources"].get("GPU", 0) == 0 and head["resources"].get("CPU", 0) == 0
    [head_start] = [c for c in config["head_start_ray_commands"] if "ray start" in c]
    assert "--num-gpus=0" in head_start and "--num-cpus=0" in head_start
    gpu = [t for name, t in types.items() if t.get("resources", {}).get("GPU", 0) >= 1]
    assert len(gpu) == 1
    assert gpu[0]["resources"] == {"CPU": 4, "GPU": 1}
    assert gpu[0]["node_config"]["InstanceType"] == "g4dn.xlarge"
    assert gpu[0]["min_workers"] == 0 and gpu[0]["max_workers"] >= 4
    cpu = [
        t
        for name, t in types.items()
        if name != config["head_node_type"] and t.get("resources", {}).get("GPU", 0) == 0
    ]
    assert cpu and all(t["resources"].get("CPU", 0) > 0 for t in cpu)


def test_the_wheel_and_checkpoint_reach_the_nodes_and_get_installed() -> None:
    config = cluster_config()
    mounts = config["file_mounts"]
    sources = {Path(source).name: target for target, source in mounts.items()}
    assert "dist" in sources
    setup = " ".join(config["setup_commands"])
    assert "pip install" in setup and f"{sources['dist']}/posestream-" in setup and ".whl" in setup
    # The cluster Serve config loads the checkpoint the wheel carries (package data: tests/test_packaging.py
    # checks the built wheel holds it), or a file from where a mount puts it.
    serve = yaml.safe_load((REPO / "deploy" / "serve_config.cluster.yaml").read_text())
    backbone = next(d for d in serve["applications"][0]["deployments"] if d["name"] == "PoseBackbone")
    checkpoint = backbone["user_config"]["checkpoint"]
    if checkpoint is None:
        package_data = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"][
            "package-data"
        ]
        assert "weights/*.pt" in package_data["model"]
    else:
        assert any(checkpoint.startswith(target + "/") for target in mounts), checkpoint
    assert backbone["ray_actor_options"]["num_gpus"] > 0
