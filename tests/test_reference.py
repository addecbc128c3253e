"""The authors' logged curves as package data, and which paper row a spec trains."""

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from hm2bp_core.reference import paper_curve, paper_curves, paper_row, reference_for
from hm2bp_core.spec import TrainingSpec

REPO = Path(__file__).resolve().parents[1]
MIRROR = Path("/work/.mirror/jinyyy666+mm-bp-snn/repo")


def test_the_logged_mlp_run_has_the_figures_of_its_log():
    run = paper_curve("mnist-fc")
    first, fifth = run["epochs"][0], run["epochs"][4]
    assert (first["epoch"], first["train_accuracy"], first["test_accuracy"]) == (1, 0.9524, 0.9732)
    assert fifth["test_accuracy"] == 0.9845 and len(run["epochs"]) == 200
    assert paper_curve("mnist-fc-ovth5")["epochs"][0]["train_accuracy"] == 0.9472
    assert {c["row"] for c in paper_curves().values()} == {"mnist-fc", "mnist-cnn", "nmnist-fc"}
    with pytest.raises(KeyError, match="there are"):
        paper_curve("cifar")


@pytest.mark.skipif(not MIRROR.exists(), reason="the authors' repository is not mirrored on this machine")
def test_every_number_is_on_the_line_it_names():
    for run in paper_curves().values():
        text = subprocess.run(["git", "-C", str(MIRROR), "show", f"{run['commit']}:{run['file']}"], check=True,
                              capture_output=True, text=True).stdout.splitlines()
        for row in run["epochs"][:3] + run["epochs"][-2:]:
            assert text[row["lines"]["train_accuracy"] - 1] == f"train performance: {100 * row['train_accuracy']:.2f}%"
            assert text[row["lines"]["test_accuracy"] - 1].startswith(f"test {100 * row['test_accuracy']:.2f}%/")
            assert text[row["lines"]["epoch"] - 1].startswith(f"epoch={row['epoch'] - 1} ")


def test_paper_row_matches_the_model_not_the_training_settings():
    assert paper_row(TrainingSpec()) == "mnist-fc"
    fast = TrainingSpec.model_validate({"training": {"batch_size": 32, "lr": 0.01, "epochs": 3, "seed": 5}})
    assert paper_row(fast) == "mnist-fc"
    assert paper_row(TrainingSpec.model_validate({"output": {"desired_count": 30}})) is None
    cnn = TrainingSpec.model_validate(yaml.safe_load((REPO / "examples" / "mnist_cnn.yaml").read_text()))
    assert paper_row(cnn) == "mnist-cnn"
    assert set(reference_for(cnn)["runs"]) == {"mnist-cnn"}
    assert set(reference_for(TrainingSpec())["runs"]) == {"mnist-fc", "mnist-fc-ovth5"}
    assert reference_for(TrainingSpec.model_validate({"encoding": {"time_steps": 200}})) is None
    # the fast recipe trains the paper's model, so its job page draws the authors' curves beside it
    recipe = TrainingSpec.model_validate(yaml.safe_load((REPO / "examples" / "mnist_mlp_fast.yaml").read_text()))
    assert paper_row(recipe) == "mnist-fc" and recipe.training.lr_schedule == "cosine"


def test_paper_table_rows_are_the_reference_rows():
    sys.path.insert(0, str(REPO / "benchmarks"))
    try:
        from paper_table import ROWS
    finally:
        sys.path.pop(0)
    for name in ("mnist-fc", "mnist-cnn", "nmnist-fc"):
        assert paper_row(TrainingSpec.model_validate(ROWS[name]["spec"])) == name
