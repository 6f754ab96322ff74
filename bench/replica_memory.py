"""RSS of each model-stage replica kind: the whole model (as every replica loaded it before) vs its part only.

Each row is a fresh process that does what a Serve replica of that kind does at start: import the deployment
module and ``reconfigure`` it with the deploy config's ``user_config`` (the packaged demo checkpoint by
default), on CPU. "whole" forces the old path (the whole ``PosePipeline``, all four parts, torchvision);
"part" is today's (``model.checkpoint.load_part``: the PRN or activity module alone). Baselines split the
rest of the footprint: the interpreter, ``import torch``, and the replica's own imports (Ray Serve, the
deployment module) before any weights. The process is not a Ray worker: a real replica adds Ray's core
worker runtime, the same for every kind, on top (DESIGN.md's ≈ 1.1 GiB per replica includes it).

    python -m bench.replica_memory            # 3 repeats, bench/results/replica_memory.json (+ .md)
    python -m bench.replica_memory --smoke    # 1 repeat, to /tmp: checks that it runs
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

from bench.common import REPO, RESULTS, LoadMonitor, environment, markdown_table, write_json

# One measured process: prints {"rss_mb", "peak_mb", "modules"} after doing what its kind does.
_PROBE = r"""
import json, sys
kind, checkpoint = sys.argv[1], sys.argv[2]

def rss():
    fields = dict(line.split(":", 1) for line in open("/proc/self/status") if ":" in line)
    return int(fields["VmRSS"].split()[0]) / 1024, int(fields["VmHWM"].split()[0]) / 1024

if kind != "python":
    import torch
    torch.set_num_threads(1)
if kind not in ("python", "torch"):
    import asyncio
    from workers.serve.activity import ActivityClassifier
    from workers.serve.backbone import PoseBackbone
    from workers.serve.residual import PoseResidual
    deployments = {d.name: d for d in (PoseBackbone, PoseResidual, ActivityClassifier)}
if kind not in ("python", "torch", "imports"):
    name, how = kind.split(":")
    cls = deployments[name].func_or_class
    if how == "whole":
        cls = type(name, (cls,), {"part": None})  # the path every replica took before: all four parts
    replica = cls()
    config = {"max_batch_size": 8, "batch_wait_timeout_s": 0.0, "drain_grace_s": 0.0, "device": "cpu"}
    if checkpoint != "default":
        config["checkpoint"] = checkpoint
    asyncio.run(replica.reconfigure(config))
    with replica._versions.acquire(None) as (_, stage):
        module = getattr(stage, "module", None)
        tensors = module.state_dict().values() if module is not None else None
        weights = sum(t.numel() * t.element_size() for t in tensors) if tensors is not None else None
else:
    weights = None
import gc; gc.collect()
now, peak = rss()
heavy = sorted(m for m in ("torch", "torchvision", "ray", "model.multiposenet") if m in sys.modules)
weights_mb = weights / 2**20 if weights is not None else None
print(json.dumps({"rss_mb": now, "peak_mb": peak, "modules": heavy, "stage_weights_mb": weights_mb}))
"""

BASELINES = ("python", "torch", "imports")
REPLICAS = (
    "PoseResidual:whole",
    "PoseResidual:part",
    "ActivityClassifier:whole",
    "ActivityClassifier:part",
    "PoseBackbone:whole",  # the backbone needs the whole detector: for reference
)


def probe(kind: str, checkpoint: str) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, "-c", _PROBE, kind, checkpoint],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
        env={"OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO)},
    )
    if done.returncode != 0:
        raise RuntimeError(f"{kind}: {done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def measure(args: argparse.Namespace) -> dict[str, Any]:
    kinds = list(BASELINES) + [k for k in REPLICAS if not (args.smoke and k.startswith("PoseBackbone"))]
    runs: dict[str, list[dict[str, Any]]] = {k: [] for k in kinds}
    with LoadMonitor() as load:
        for _ in range(args.repeats):
            for kind in kinds:  # interleaved: a drift in the machine's state touches every kind alike
                runs[kind].append(probe(kind, args.checkpoint))
    rows = {}
    for kind, samples in runs.items():
        rss = [s["rss_mb"] for s in samples]
        rows[kind] = {
            "rss_mb_median": round(statistics.median(rss), 1),
            "rss_mb_min": round(min(rss), 1),
            "rss_mb_max": round(max(rss), 1),
            "peak_mb_median": round(statistics.median(s["peak_mb"] for s in samples), 1),
            "modules": samples[-1]["modules"],
            "stage_weights_mb": samples[-1]["stage_weights_mb"],
            "repeats": len(samples),
        }
    base = rows["imports"]["rss_mb_median"]
    saved = {
        name: round(rows[f"{name}:whole"]["rss_mb_median"] - rows[f"{name}:part"]["rss_mb_median"], 1)
        for name in ("PoseResidual", "ActivityClassifier")
    }
    return {
        "benchmark": "replica_memory",
        "command": "python -m bench.replica_memory " + " ".join(args.argv),
        "checkpoint": args.checkpoint,
        "smoke": args.smoke,
        "what": "RSS (MiB) of a fresh process doing what a replica of each kind does at start, on CPU; "
        "no Ray worker runtime (a real replica adds it, the same for every kind)",
        "rows": rows,
        "footprint_mb": {
            "python": rows["python"]["rss_mb_median"],
            "import_torch": round(rows["torch"]["rss_mb_median"] - rows["python"]["rss_mb_median"], 1),
            "replica_imports_ray_serve": round(base - rows["torch"]["rss_mb_median"], 1),
        },
        "saved_by_part_loading_mb": saved,
        "load": load.summary(),
        "environment": environment(),
    }


def markdown(result: dict[str, Any]) -> str:
    rows = [
        [kind, r["rss_mb_median"], f"{r['rss_mb_min']}–{r['rss_mb_max']}", r["peak_mb_median"],
         r["stage_weights_mb"], ", ".join(r["modules"]) or "–"]
        for kind, r in result["rows"].items()
    ]  # fmt: skip
    load, env = result["load"], result["environment"]
    lines = [
        "# Replica memory (RSS, MiB)",
        "",
        result["what"] + ".",
        "",
        markdown_table(["kind", "RSS median", "range", "peak", "stage weights", "heavy modules"], rows),
        "",
        f"Saved by loading the part only: {result['saved_by_part_loading_mb']}",
        f"Rest of the footprint: {result['footprint_mb']}",
        f"Commit {env.get('git_commit')} (dirty: {env.get('git_dirty')}); "
        f"load average before {load['load_average_before']}, after {load['load_average_after']}"
        + (f"; {load['warning']}" if load.get("warning") else ""),
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--checkpoint", default="default", help="checkpoint path (default: the packaged demo)"
    )
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--smoke", action="store_true", help="1 repeat, no backbone row, results to /tmp")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    args.argv = list(argv) if argv is not None else sys.argv[1:]
    if args.smoke:
        args.repeats = 1
    out = args.out or (
        Path("/tmp/replica_memory.smoke.json") if args.smoke else RESULTS / "replica_memory.json"
    )
    result = measure(args)
    write_json(out, result)
    text = markdown(result)
    out.with_suffix(".md").write_text(text)
    print(text)
    print(f"wrote {out}")
    return result


if __name__ == "__main__":
    main()
