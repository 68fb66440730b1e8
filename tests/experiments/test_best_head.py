"""Choosing an ensemble's best head on the validation classes (never on test)."""

from __future__ import annotations

import csv
import json

import pytest

from lossensemble.errors import UserError
from lossensemble.experiments.selection import best_head


def write_run(folder, rows, metrics):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "metrics.json").write_text(json.dumps(metrics))
    keys = sorted({k for r in rows for k in r})
    with open(folder / "history.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=keys)
        writer.writeheader()
        writer.writerows(rows)


def test_the_last_validation_map_at_r_decides_not_test(tmp_path):
    metrics = {"ensemble": {"map@r": 30.0}, "heads.a": {"map@r": 40.0}, "heads.b": {"map@r": 10.0}}
    rows = [
        # epoch 1: b leads on validation, epoch 2 (the last): a leads on validation
        {"epoch": 1, "step": 2, "val/heads.a/map@r": 1.0, "val/heads.b/map@r": 9.0,
         "test/heads.a/map@r": 1.0, "test/heads.b/map@r": 2.0},
        {"epoch": 2, "step": 4, "val/heads.a/map@r": 5.0, "val/heads.b/map@r": 4.0,
         "test/heads.a/map@r": 1.0, "test/heads.b/map@r": 50.0},
    ]
    write_run(tmp_path / "r", rows, metrics)
    chosen = best_head(tmp_path / "r")
    assert chosen.best == "heads.a" and chosen.split == "validation"
    assert chosen.scores == {"heads.a": 5.0, "heads.b": 4.0}
    # the same run with the last validation order reversed picks b, whatever test says
    rows[1]["val/heads.b/map@r"] = 6.0
    write_run(tmp_path / "r2", rows, metrics)
    assert best_head(tmp_path / "r2").best == "heads.b"


def test_without_validation_metrics_it_refuses(tmp_path):
    metrics = {"ensemble": {"map@r": 30.0}, "heads.a": {"map@r": 40.0}, "heads.b": {"map@r": 10.0}}
    write_run(tmp_path / "r", [{"epoch": 1, "step": 2, "test/heads.a/map@r": 1.0, "test/heads.b/map@r": 2.0}],
              metrics)
    with pytest.raises(UserError, match="data.val_fraction"):
        best_head(tmp_path / "r")
