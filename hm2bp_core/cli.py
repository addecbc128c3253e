"""`hm2bp` command line: local training, evaluation and export.

The service commands (serve, token, worker, submit, ...) are registered on this same ``app`` by
``api.cli``, so the core stays free of HTTP, Celery and database imports.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer
from pydantic import ValidationError

app = typer.Typer(no_args_is_help=True, add_completion=False, help="HM2-BP training for spiking neural networks.")


def fail(message: str) -> None:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code=1)


def _spec_errors(exc: ValidationError) -> str:
    return "; ".join(f"{'.'.join(str(p) for p in err['loc']) or 'spec'}: {err['msg']}" for err in exc.errors())


@app.command()
def train(
    spec: Annotated[Path | None, typer.Argument(help="training spec (JSON or YAML); paper defaults if omitted")] = None,
    data: Annotated[
        str, typer.Option(help="dataset: builtin:NAME, an .npz file, or IDX files (folder or zip)")
    ] = "builtin:digits",
    out: Annotated[Path, typer.Option(help="output folder for model, metrics and checkpoint")] = Path("runs/latest"),
    resume: Annotated[bool, typer.Option(help="continue from OUT/checkpoint if present")] = False,
    data_dir: Annotated[Path | None, typer.Option(help="where built-in datasets are cached")] = None,
) -> None:
    """Train a spiking network with HM2-BP; writes OUT/model.safetensors, spec.json, metrics.json."""
    from .data import DatasetError, load_dataset, provenance
    from .spec import load_spec
    from .train import TrainingDiverged
    from .train import train as run_training

    try:
        training_spec = load_spec(spec)
        dataset = load_dataset(data, data_dir=data_dir)
        metrics = run_training(training_spec, dataset, out, resume=resume, progress_bar=sys.stderr.isatty(),
                               callback=lambda e: typer.echo(e["message"], err=True) if e["type"] == "log" else None,
                               dataset_record=provenance(data, dataset))
    except ValidationError as exc:
        fail(f"invalid spec: {_spec_errors(exc)}")
    except (DatasetError, ValueError, OSError, TrainingDiverged) as exc:
        fail(str(exc))
    final = metrics["final"]
    typer.echo(json.dumps({"out": str(out), **final}))


@app.command()
def evaluate(
    model_dir: Annotated[Path, typer.Argument(help="folder written by `hm2bp train`")],
    data: Annotated[str | None, typer.Option(
        help="dataset whose test split is evaluated (default: the one the model file records)",
        show_default=False)] = None,
    data_dir: Annotated[Path | None, typer.Option(help="where built-in datasets are cached")] = None,
) -> None:
    """Print the test accuracy of a trained model, on the dataset it was trained on unless --data
    names another; prints {"test_accuracy", "dataset"}."""
    from .checkpoint import model_dataset
    from .data import DatasetError, file_sha256, load_dataset
    from .train import evaluate as run_evaluation

    try:
        recorded = model_dataset(model_dir)
        ref = data or _recorded_dataset(model_dir, recorded)
        if data is None and recorded and recorded.get("sha256") and file_sha256(ref) != recorded["sha256"]:
            fail(f"{ref} has changed since {model_dir} was trained on it (sha256 {recorded['sha256'][:12]}...); "
                 "pass --data to evaluate on it anyway")
        accuracy = run_evaluation(model_dir, load_dataset(ref, data_dir=data_dir))
    except ValidationError as exc:
        fail(f"invalid spec in {model_dir}: {_spec_errors(exc)}")
    except (DatasetError, ValueError, OSError, KeyError) as exc:
        fail(str(exc))
    typer.echo(json.dumps({"test_accuracy": accuracy, "dataset": ref}))


def _recorded_dataset(model_dir: Path, recorded: dict | None) -> str:
    """The dataset reference ``evaluate`` uses without --data, or an error saying what to pass."""
    if recorded is None:
        fail(f"{model_dir}'s model file records no dataset (trained before models recorded it): pass --data")
    assert recorded is not None
    ref = str(recorded["ref"])
    if ref.startswith("builtin:") or Path(ref).exists():
        return ref
    sha = f", sha256 {recorded['sha256']}" if recorded.get("sha256") else ""
    fail(f"{model_dir} was trained on {ref} ({recorded.get('name')}{sha}), which is not a file here "
         "(a service dataset, or a file moved since): pass --data with that file")
    return ref


kernels_app = typer.Typer(no_args_is_help=True, help="The compiled C++ CPU kernels.")
app.add_typer(kernels_app, name="kernels")


@kernels_app.command("build")
def kernels_build() -> None:
    """Build the CPU kernels (or find them in HM2BP_KERNEL_CACHE) and load them; prints
    {"kernels", "module", "built"} (built: compiled now, not found in the cache). Exits 1 with the
    reason when they cannot be built (training would use the slower tensor code). `make setup`,
    images, `hm2bp serve` and every worker run this before taking jobs, so no job waits for a compiler."""
    from .kernels import MODULE_FILE, build_cpu_kernels, build_dir

    built = not (build_dir() / MODULE_FILE).exists()
    try:
        module = build_cpu_kernels()
    except Exception as exc:
        fail(f"the CPU kernels could not be built: {exc}")
    typer.echo(json.dumps({"kernels": "cpu", "module": str(getattr(module, "__file__", "")), "built": built}))


def _shape(text: str | None) -> tuple[int, ...] | None:
    if text is None:
        return None
    try:
        shape = tuple(int(part) for part in text.split(","))
    except ValueError:
        shape = ()
    if not shape or min(shape) < 1:
        fail(f"--input-shape {text!r}: expected positive integers separated by commas, e.g. 28,28")
    return shape


@app.command()
def export(
    model_dir: Annotated[Path, typer.Argument(
        help="folder written by `hm2bp train` (or a job's downloaded artifacts)")],
    out: Annotated[Path, typer.Option(help="file to write")] = Path("model.nir"),
    fmt: Annotated[str, typer.Option("--format", help="export format; 'nir' (docs/nir.md)")] = "nir",
    dt: Annotated[float, typer.Option(help="seconds per simulation step written into the file")] = 1e-4,
    input_shape: Annotated[str | None, typer.Option(
        help="shape of one input sample, e.g. 28,28 (needed when the spec has no network.input_shape "
             "and the first layer is conv)")] = None,
) -> None:
    """Export a trained model to another format; prints the file written."""
    from .nir_export import NirExportError, export_nir

    if fmt != "nir":
        fail(f"--format {fmt!r}: the only export format is 'nir'")
    try:
        path = export_nir(model_dir, out, dt=dt, input_shape=_shape(input_shape))
    except NirExportError as exc:
        fail(str(exc))
    typer.echo(json.dumps({"out": str(path), "format": fmt}))


if __name__ == "__main__":
    app()
