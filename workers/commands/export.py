"""``posestream export onnx``: the backbone stage's graph, the PRN and the activity MLP as ONNX files."""

from __future__ import annotations

from pathlib import Path

import typer

export_app = typer.Typer(name="export", help="Export the network for other runtimes.", no_args_is_help=True)


@export_app.command("onnx")
def onnx(
    out: Path = typer.Option(
        ..., "--out", help="Folder for backbone.onnx, prn.onnx, activity.onnx, manifest.json."
    ),
    checkpoint: Path | None = typer.Option(
        None, "--checkpoint", help="Checkpoint file (default: the packaged model/weights/demo.pt)."
    ),
    check: bool = typer.Option(
        True, "--check/--no-check", help="Run each graph in onnxruntime against torch and print the max |Δ|."
    ),
    int8: bool = typer.Option(
        False, "--int8", help="Also quantise the backbone graph to static int8 (QDQ, per-channel weights)."
    ),
    calibration_images: int = typer.Option(
        64, "--calibration-images", min=1, help="With --int8: generated scenes to calibrate on."
    ),
) -> None:
    """Export for ONNX Runtime: the backbone graph gives raw head outputs (heatmaps, cls_logits,
    bbox_regression; dynamic batch and canvas), NMS and peak decoding stay outside; `posestream infer
    --backend onnx` and the Serve backbone's `backend: onnx` run it."""
    from model.checkpoint import DEFAULT_CHECKPOINT, CheckpointError, load_checkpoint
    from model.onnx_export import export_onnx, require

    path = checkpoint if checkpoint is not None else DEFAULT_CHECKPOINT
    try:
        require("onnx", "onnxscript", *(["onnxruntime"] if check else []))
        model, meta = load_checkpoint(path)
        manifest = export_onnx(model, out, str(meta["version"]))
        if int8:
            from model.onnx_quantize import quantize_backbone

            manifest = quantize_backbone(out, model, calibration_images)
    except (CheckpointError, ValueError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(code=2) from None
    for name, graph in manifest.graphs.items():
        typer.echo(f"{out / graph.file}: {name}, inputs {graph.inputs}, outputs {list(graph.outputs)}")
    typer.echo(f"{out / 'manifest.json'}: model {manifest.model_version}, input {manifest.input_size}")
    if check:
        from model.onnx_backend import graph_differences

        for name, difference in graph_differences(model, out).items():
            # int8 moves the raw outputs by far more than fp32's 1e-6: reported, not held to a bound
            note = " (int8)" if name == "backbone" and manifest.quantization else ""
            typer.echo(f"check {name}{note}: max |onnxruntime - torch| = {difference:.2e}")


def register(app: typer.Typer) -> None:
    app.add_typer(export_app, name="export")
