"""Distillation into one network (lossensemble.compression.student): objective, teacher, end-to-end training, cost."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from compression_helpers import NO_NMI
from lossensemble.compression import Teacher, train_student
from lossensemble.compression.student import build_student, student_loss
from lossensemble.data import build_split
from lossensemble.errors import UserError
from lossensemble.models import independent_embedding
from lossensemble.training.loading import load_run


@pytest.fixture(scope="module")
def teacher_runs(tmp_path_factory, tiny_config):
    """Two finished tiny single-loss runs (triplet, proxy_nca): the independent ensemble's members."""
    from lossensemble.training import Trainer

    root = tmp_path_factory.mktemp("teachers")
    runs = []
    for loss in ("triplet", "proxy_nca"):
        Trainer(tiny_config(NO_NMI, f"losses=[{loss}]"), root / loss).fit()
        runs.append(root / loss)
    return runs


def fixed_batch(cfg, n=16):
    """``n`` training images of ``cfg`` with the evaluation transforms (the same tensors every call)."""
    from lossensemble.data import build_transforms

    ds = build_split(cfg.data, cfg.data.train_split, transform=None)
    ds.transform = build_transforms(ds.kind, cfg.data.image_size, train=False)
    idx = np.linspace(0, len(ds) - 1, n).astype(int)
    return torch.stack([ds[int(i)][0] for i in idx])


def hand_sq_distances(x):
    return torch.cdist(x.double(), x.double()) ** 2


def test_objective_is_distance_matching_of_normalised_student_vs_teacher():
    g = torch.Generator().manual_seed(0)
    heads, teacher = torch.randn(6, 4, generator=g) * 3, torch.randn(6, 8, generator=g)
    ds, dt = hand_sq_distances(F.normalize(heads, dim=1)), hand_sq_distances(teacher)
    frob = torch.sqrt(((ds / ds.sum() - dt / dt.sum()) ** 2).sum())  # the paper's norm, without its 1/n^2
    assert float(student_loss(heads, teacher, "frobenius")) == pytest.approx(float(frob), rel=1e-4)
    off = ~torch.eye(6, dtype=torch.bool)
    s, t = ds[off].view(6, 5), dt[off].view(6, 5)
    ps, pt = torch.softmax(-s / (0.1 * s.mean()), 1), torch.softmax(-t / (0.1 * t.mean()), 1)
    kl = (pt * (pt.log() - ps.log())).sum(1).mean()
    assert float(student_loss(heads, teacher, "softmax")) == pytest.approx(float(kl), rel=1e-4)
    # the student's scale does not matter (it is L2-normalised), the teacher's batch geometry does
    assert float(student_loss(heads * 5, teacher, "softmax")) == pytest.approx(float(kl), rel=1e-4)
    same = F.normalize(teacher[:, :4], dim=1)
    assert float(student_loss(same, same, "frobenius")) < 1e-4


def test_teacher_is_the_independent_embedding_of_its_runs(teacher_runs, tiny_config):
    images = fixed_batch(tiny_config(NO_NMI), 8)
    names = ["heads.triplet", "heads.proxy_nca"]
    teacher = Teacher.load(teacher_runs, names, device="cpu")
    parts = []
    for run, name in zip(teacher_runs, names):
        loaded = load_run(run, device="cpu")
        parts.append(loaded.model.embed(images, loaded.weights, names=[name])[name].numpy())
    expected = independent_embedding(parts)
    assert expected.shape == (8, 32)
    np.testing.assert_allclose(teacher(images).numpy(), expected, atol=1e-5)
    # one run: its embedding as it is (a shared ensemble's "ensemble")
    single = Teacher.load(teacher_runs[:1], ["ensemble"], device="cpu")
    np.testing.assert_allclose(single(images).numpy(), parts[0], atol=1e-5)
    with pytest.raises(UserError, match="one embedding name per run"):
        Teacher.load(teacher_runs, names[:1], device="cpu")


def test_training_lowers_the_distillation_loss_end_to_end(teacher_runs, tiny_config, tmp_path):
    cfg = tiny_config(NO_NMI, "losses=[triplet]", "train.steps_per_epoch=6", "compression.objective=softmax")
    teacher = Teacher.load(teacher_runs, ["heads.triplet", "heads.proxy_nca"], device="cpu")
    images = fixed_batch(cfg)
    target = teacher(images)
    initial = build_student(cfg)[1].eval()
    with torch.no_grad():
        before = float(student_loss(initial(images)[0], target, "softmax"))
    student, facts = train_student(teacher, tmp_path / "student", cfg, factor=2.0)
    with torch.no_grad():
        after = float(student_loss(student.model(images)[0], target, "softmax"))
    assert after < 0.9 * before, (before, after)
    assert facts["steps"] == 12 and facts["steps_per_epoch"] == 12 and facts["label_loss"] is None
    # end to end: the backbone moved, not only the head
    init_bb, new_bb = initial.backbone.state_dict(), student.model.backbone.state_dict()
    moved = [k for k in init_bb if init_bb[k].is_floating_point() and not torch.equal(init_bb[k], new_bb[k])]
    assert any("weight" in k for k in moved)
    # a normal run folder: its config has the one loss, the checkpoint reloads, the history has the losses
    again = load_run(tmp_path / "student", device="cpu")
    assert again.model.head_names == ["triplet"] and again.state["resumable"] is False
    with torch.no_grad():
        torch.testing.assert_close(again.model(images)[0], student.model(images)[0])
    assert "loss_distill" in (tmp_path / "student" / "history.csv").read_text()


def test_label_loss_and_bad_settings(teacher_runs, tiny_config, tmp_path):
    cfg = tiny_config(NO_NMI, "losses=[triplet]", "train.steps_per_epoch=1")
    teacher = Teacher.load(teacher_runs[:1], ["heads.triplet"], device="cpu")
    _, facts = train_student(teacher, tmp_path / "s", cfg, label_weight=0.5)
    assert facts["label_loss"] == "triplet" and facts["label_weight"] == 0.5
    hist = (tmp_path / "s" / "history.csv").read_text().splitlines()
    assert float(hist[1].split(",")[hist[0].split(",").index("loss_label")]) > 0
    for kwargs, match in ((dict(factor=0), "student-factor"), (dict(label_weight=-1), "label_weight"),
                          (dict(objective="l2"), "objective")):
        with pytest.raises(UserError, match=match):
            train_student(teacher, tmp_path / "bad", cfg, **kwargs)
    with pytest.raises(UserError, match="exactly one loss"):
        train_student(teacher, tmp_path / "bad", tiny_config(NO_NMI))


def test_train_cost_counts_teachers_student_and_teacher_forward_passes(tiny_config):
    from lossensemble.experiments.catalogue import comparison_methods
    from lossensemble.experiments.cost import train_costs

    cfg = tiny_config("train.steps_per_epoch=3", "train.epochs=2")
    methods = comparison_methods(cfg, ["single", "distilled-independent", "distilled-shared"], student_factor=2)
    names = [m.name for m in methods]
    assert names == ["single-triplet", "single-proxy_nca", "learned", "distilled-independent", "distilled-shared"]
    costs = train_costs(methods, cfg)
    # independent teacher: 2 single runs; student: 2x a single run + 2 teacher backbones' forwards at 2x
    assert costs["distilled-independent"] == 2 + 2 * (1 + 2)
    # shared teacher: the learned run; student 2x + one teacher backbone's forwards at 2x
    assert costs["distilled-shared"] == 1 + 2 * (1 + 1)
    assert "2x a single run's steps" in methods[-1].description
    with pytest.raises(UserError, match="student-factor"):
        comparison_methods(cfg, ["distilled-shared"], student_factor=0)


@pytest.mark.slow
def test_compare_with_distilled_rows_end_to_end(tiny_config, tmp_path):
    from lossensemble.cli.main import main

    out = tmp_path / "cmp"
    argv = ["compare", "-c", "glyphs-compare", "-o", str(out), "--seeds", "0", "--no-progress", "--map", "pca",
            "--no-plots", "--methods", "single", "independent", "distilled-independent", "learned",
            "distilled-shared", "--student-factor", "2",
            *tiny_config.overrides(NO_NMI, "train.steps_per_epoch=2", "compression.epochs=1")]
    assert main(argv) == 0
    rows = {r["method"]: r for r in json.loads((out / "results.json").read_text())}
    assert {"distilled-independent", "distilled-shared"} <= set(rows)
    assert rows["distilled-independent"]["train_cost"] == 2 + 2 * 3 and rows["distilled-shared"]["train_cost"] == 5
    for name in ("distilled-independent", "distilled-shared"):
        run = out / name / "seed0"
        summary = json.loads((run / "summary.json").read_text())
        metrics = json.loads((run / "metrics.json").read_text())
        assert summary["embedding"] in metrics and summary["distillation"]["steps"] == 2 * 2
        assert summary["embedding_sizes"][summary["embedding"]] == 16
        assert (run / "test-embeddings-last.npz").is_file()
    teachers = json.loads((out / "distilled-shared" / "seed0" / "distillation.json").read_text())["teacher"]
    assert teachers == [str(out / "learned" / "seed0")]
    assert "--student-factor 2" in json.loads((out / "comparison.json").read_text())["command"]
    # run again: every row is reused, nothing retrained
    ckpt = out / "distilled-shared" / "seed0" / "checkpoints" / "last.safetensors"
    before = ckpt.stat().st_mtime_ns
    assert main(argv) == 0
    assert ckpt.stat().st_mtime_ns == before
    # another student budget: the students are trained again (their teachers are reused)
    factor_at = argv.index("--student-factor") + 1
    assert main([*argv[:factor_at], "1", *argv[factor_at + 1:]]) == 0
    summary = json.loads((out / "distilled-shared" / "seed0" / "summary.json").read_text())
    assert summary["distillation"]["steps"] == 2 and summary["settings"]["factor"] == 1.0
    assert ckpt.stat().st_mtime_ns != before
    # students that also learn from the labels: trained again, the weight recorded and in the command
    assert main([*argv, "--student-labels", "0.5"]) == 0
    summary = json.loads((out / "distilled-shared" / "seed0" / "summary.json").read_text())
    assert summary["settings"]["label_weight"] == 0.5 and summary["distillation"]["label_weight"] == 0.5
    assert "--student-labels 0.5" in json.loads((out / "comparison.json").read_text())["command"]


def test_bad_student_factor_is_a_one_line_error(tmp_path, tiny_config, capsys):
    from lossensemble.cli.main import main

    rc = main(["compare", "-c", "glyphs-compare", "-o", str(tmp_path / "o"), "--methods", "distilled-shared",
               "--student-factor", "0", *tiny_config.overrides()])
    assert rc == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert "--student-factor: must be a number > 0" in err[-1]
    assert not (tmp_path / "o").exists()
    rc = main(["compare", "-c", "glyphs-compare", "-o", str(tmp_path / "o"), "--methods", "distilled-shared",
               "--student-labels", "-1", *tiny_config.overrides()])
    assert rc == 2 and "--student-labels: must be a number >= 0" in capsys.readouterr().err.strip().splitlines()[-1]
    rc = main(["compare", "-c", "glyphs-compare", "-o", str(tmp_path / "o"), "--methods", "learned",
               "--student-labels", "1", *tiny_config.overrides()])
    assert rc == 2 and "add distilled-independent or distilled-shared" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()
