"""Unreadable images at evaluation and the data's own issues reach the metrics and summary.json."""

from __future__ import annotations

import json
import sys
import warnings
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "data"))
from fabricate import write_image  # noqa: E402

from lossensemble.data import build_dataset  # noqa: E402
from lossensemble.evaluation import EvaluationWarning, compute_metrics, evaluate_model  # noqa: E402
from lossensemble.training.summary import data_and_evaluation_issues  # noqa: E402


@pytest.fixture
def csv_with_problems(tmp_path):
    """8 train + 16 test images (4 test classes); test rows repeated once; one test image corrupt."""
    for k in range(24):
        write_image(tmp_path / "imgs" / f"{k}.png", seed=k, size=8)
    (tmp_path / "imgs" / "13.png").write_bytes(b"\x89PNG\r\n\x1a\n not really a png")
    train = [f"imgs/{k}.png,{k // 2},train" for k in range(8)]
    test = [f"imgs/{k}.png,{100 + k // 4},test" for k in range(8, 24)]
    path = tmp_path / "data.csv"
    path.write_text("\n".join(["path,label,split", *train, *test, *test[:2]]) + "\n")
    return path


def embed(images: torch.Tensor) -> dict[str, torch.Tensor]:
    return {"ensemble": images.flatten(1), "heads.a": images.mean(dim=(2, 3))}


def test_unreadable_eval_images_and_data_issues_are_counted(csv_with_problems):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # the data's own warnings (duplicates, unreadable file)
        train = build_dataset("csv", "train", csv_with_problems, image_size=8)
        test = build_dataset("csv", "test", csv_with_problems, image_size=8)
    assert len(test) == 16 and test.data_issues["duplicates_dropped"] == 2
    with pytest.warns(EvaluationWarning, match="1 of 16 images could not be read: left out of the evaluation"):
        metrics = evaluate_model(embed, test, k=(1, 2), nmi=False)
    for name, values in metrics.items():
        assert values.skipped_images == 1
        assert values.warnings[0].startswith("1 of 16 images could not be read")
    # the metrics are those of the 15 readable items (an independent recomputation)
    readable = [i for i in range(16) if i != 5]  # test item 5 is imgs/13.png
    pixels = torch.stack([test[i][0] for i in readable])
    labels = np.asarray(test.labels)[readable]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", EvaluationWarning)
        want = compute_metrics(pixels.flatten(1).numpy(), labels, k=(1, 2), nmi=False)
    assert metrics["ensemble"] == pytest.approx(want)

    trainer = SimpleNamespace(train_set=train, val_set=None, test_set=test, _last_test=metrics)
    issues = data_and_evaluation_issues(trainer)
    assert issues["eval_skipped_images"] == 1
    assert set(issues["evaluation_warnings"]) == {"ensemble", "heads.a"}
    assert issues["data_issues"]["test"]["duplicates_dropped"] == 2
    assert set(issues["data_issues"]) == {"train", "test"}
    json.dumps(issues, allow_nan=False)  # summary.json stays strict JSON


def test_a_clean_run_has_empty_issues(csv_with_problems, tmp_path):
    trainer = SimpleNamespace(train_set=None, val_set=None, test_set=None, _last_test=None)
    assert data_and_evaluation_issues(trainer) == {"eval_skipped_images": 0, "evaluation_warnings": {},
                                                   "data_issues": {}}
