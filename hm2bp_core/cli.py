"""`hm2bp` command line: local training and evaluation.

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
    from .data import DatasetError, load_dataset
    from .spec import load_spec
    from .train import TrainingDiverged
    from .train import train as run_training

    try:
        training_spec = load_spec(spec)
        dataset = load_dataset(data, data_dir=data_dir)
        metrics = run_training(training_spec, dataset, out, resume=resume, progress_bar=sys.stderr.isatty(),
                               callback=lambda e: typer.echo(e["message"], err=True) if e["type"] == "log" else None)
    except ValidationError as exc:
        fail(f"invalid spec: {_spec_errors(exc)}")
    except (DatasetError, ValueError, OSError, TrainingDiverged) as exc:
        fail(str(exc))
    final = metrics["final"]
    typer.echo(json.dumps({"out": str(out), **final}))


@app.command()
def evaluate(
    model_dir: Annotated[Path, typer.Argument(help="folder written by `hm2bp train`")],
    data: Annotated[str, typer.Option(help="dataset whose test split is evaluated")] = "builtin:digits",
    data_dir: Annotated[Path | None, typer.Option(help="where built-in datasets are cached")] = None,
) -> None:
    """Print the test accuracy of a trained model."""
    from .data import DatasetError, load_dataset
    from .train import evaluate as run_evaluation

    try:
        accuracy = run_evaluation(model_dir, load_dataset(data, data_dir=data_dir))
    except ValidationError as exc:
        fail(f"invalid spec in {model_dir}: {_spec_errors(exc)}")
    except (DatasetError, ValueError, OSError, KeyError) as exc:
        fail(str(exc))
    typer.echo(json.dumps({"test_accuracy": accuracy}))


kernels_app = typer.Typer(no_args_is_help=True, help="The compiled C++ CPU kernels.")
app.add_typer(kernels_app, name="kernels")


@kernels_app.command("build")
def kernels_build() -> None:
    """Build the CPU kernels (or find them in HM2BP_KERNEL_CACHE) and load them; prints the module's
    file. Exits 1 with the reason when they cannot be built (training would use the slower tensor code).
    Images and cluster set-ups run this once, so no job waits for a compiler."""
    from .kernels import build_cpu_kernels

    try:
        module = build_cpu_kernels()
    except Exception as exc:
        fail(f"the CPU kernels could not be built: {exc}")
    typer.echo(json.dumps({"kernels": "cpu", "module": str(getattr(module, "__file__", ""))}))


if __name__ == "__main__":
    app()
