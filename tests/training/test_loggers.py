"""train.loggers: history.csv, TensorBoard and MLflow record the trainer's values; custom loggers; resume."""

from __future__ import annotations

import json
import signal
from pathlib import Path

import pytest

from lossensemble.config import config_to_dict, load_config
from lossensemble.errors import UserError
from lossensemble.training import Trainer, TrainingInterrupted
from lossensemble.training.loggers import (LOGGERS, TrainingLogger, flatten_params, mlflow_key, register_logger,
                                           row_scalars)
from lossensemble.training.run import read_history, write_history

# tensorboard and mlflow(-skinny) come with the dev extra: missing is a broken set-up, not a skip.

from tensorboard.backend.event_processing.event_accumulator import EventAccumulator  # noqa: E402

TRACKERS = "train.loggers=[csv,{name: tensorboard, options: {max_points: 20}},{name: mlflow, options: {experiment: glyphs}}]"


@pytest.fixture
def tiny(tiny_config):
    """``tiny(*overrides)``: the suite's tiny run (``tiny_config``) for two epochs, then the overrides."""
    return lambda *extra: tiny_config("train.epochs=2", *extra)


class Recorder(TrainingLogger):
    """A user's logger: records every call; ``SCRIPT`` makes it fail or send SIGTERM at a step."""

    SCRIPT: dict[int, str] = {}
    instances: list["Recorder"] = []

    def __init__(self, *, label: str = "") -> None:
        self.label = label
        self.calls: list[tuple] = []
        Recorder.instances.append(self)

    def open(self, ctx):
        self.calls.append(("open", ctx.resume, ctx.global_step, ctx.run_name))

    def log_scalars(self, step, scalars):
        self.calls.append(("scalars", step, dict(scalars)))
        action = Recorder.SCRIPT.pop(step, None)
        if action == "fail":
            raise RuntimeError("logger failure at step %d" % step)
        if action == "stop":
            signal.raise_signal(signal.SIGTERM)

    def log_history(self, history):
        self.calls.append(("history", len(history)))

    def log_final(self, metrics, summary):
        self.calls.append(("final", json.loads(json.dumps(metrics)), summary["steps"]))

    def close(self, status):
        self.calls.append(("close", status))


@pytest.fixture
def recorder():
    register_logger("recorder")(Recorder)
    Recorder.instances.clear()
    Recorder.SCRIPT.clear()
    yield Recorder
    LOGGERS.unregister("recorder")


def _client(run: Path, monkeypatch):
    """An MlflowClient on the run's store (mlflow imported here, inside a test: no telemetry starts)."""
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")  # MLflow 3 opens a file store only with it
    monkeypatch.setenv("MLFLOW_DISABLE_TELEMETRY", "true")
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri="file:" + str((run / "mlruns").resolve()))


def _mlflow_run(client, experiment: str = "glyphs"):
    exp = client.get_experiment_by_name(experiment)
    runs = client.search_runs([exp.experiment_id])
    assert len(runs) == 1
    return runs[0]


def _tb(run: Path) -> EventAccumulator:
    acc = EventAccumulator(str(run / "tensorboard"), size_guidance={"scalars": 0, "tensors": 0})
    acc.Reload()
    return acc


def test_csv_tensorboard_mlflow_and_a_custom_logger_record_the_same_values(tmp_path, monkeypatch, recorder, tiny):
    run = tmp_path / "run"
    cfg = tiny(TRACKERS[:-1] + ",recorder]")
    metrics = Trainer(cfg, run).fit()
    history = read_history(run / "history.csv")
    assert [r["step"] for r in history] == [3, 6]

    # TensorBoard: every history column under its tag at the epoch's step; per-step losses at steps 1..6
    acc = _tb(run)
    tags = set(acc.Tags()["scalars"])
    for row in history:
        for tag, value in row_scalars(row).items():
            assert tag in tags, tag
            events = {e.step: e.value for e in acc.Scalars(tag)}
            assert events[int(row["step"])] == pytest.approx(value, rel=1e-5, abs=1e-6), tag
    for tag in ("loss/raw/triplet", "loss/raw/proxy_nca", "loss/total", "weight/triplet", "scale/proxy_nca"):
        assert [e.step for e in acc.Scalars(tag)] == [1, 2, 3, 4, 5, 6]
    for tag in ("lr/backbone", "lr/heads", "time/epoch_seconds", "time/seconds_per_step",
                "metrics/test/ensemble/map@r", "epoch_mean/loss/raw/triplet"):
        assert [e.step for e in acc.Scalars(tag)] == [3, 6], tag
    assert acc.Scalars("final/test/ensemble/recall@1")[0].value == pytest.approx(metrics["ensemble"]["recall@1"])
    # the projector: at most max_points test items of each embedding, labelled
    proj = run / "tensorboard" / "00006" / "test_ensemble"
    assert len((proj / "metadata.tsv").read_text().splitlines()) == 20
    rows = (proj / "tensors.tsv").read_text().splitlines()
    assert len(rows) == 20 and len(rows[0].split("\t")) == 32  # two heads of 16
    assert "test_ensemble" in (run / "tensorboard" / "projector_config.pbtxt").read_text()

    # MLflow: the run (named after its folder) holds the flattened config and every history value per step
    client = _client(run, monkeypatch)
    found = _mlflow_run(client)
    assert found.info.run_name == "run" and found.info.status == "FINISHED"
    params = found.data.params
    assert params == flatten_params(config_to_dict(cfg))
    assert params["train.epochs"] == "2" and params["losses.1.name"] == "proxy_nca"
    for column in history[0]:
        if column == "step":
            continue
        (tag,) = row_scalars({column: 0.0})
        got = [(m.step, m.value) for m in client.get_metric_history(found.info.run_id, mlflow_key(tag))]
        want = [(int(r["step"]), r[column]) for r in history]
        assert [s for s, _ in got] == [s for s, _ in want], tag
        assert [v for _, v in got] == pytest.approx([v for _, v in want], rel=1e-5, abs=1e-6), tag
    steps = client.get_metric_history(found.info.run_id, "loss/raw/triplet")
    assert [m.step for m in steps] == [1, 2, 3, 4, 5, 6]
    saved = json.loads((run / "metrics.json").read_text())
    assert found.data.metrics["final/test/ensemble/map_at_r"] == pytest.approx(saved["ensemble"]["map@r"])

    # the custom logger got the same calls
    (rec,) = Recorder.instances
    assert rec.calls[0] == ("open", False, 0, "run")
    assert [c[1] for c in rec.calls if c[0] == "scalars" and "loss/total" in c[2]] == [1, 2, 3, 4, 5, 6]
    assert [c[1] for c in rec.calls if c[0] == "history"] == [1, 2]
    assert ("final", saved, 6) in rec.calls
    assert rec.calls[-1] == ("close", "finished")


def test_history_csv_is_written_even_when_the_list_leaves_csv_out(tiny):
    entries = tiny("train.loggers=[{name: tensorboard, options: {max_points: 5}}]").train.logger_entries()
    assert [e.name for e in entries] == ["csv", "tensorboard"]  # compare and selection read history.csv


def test_csv_only_is_the_default_and_writes_history_csv_as_before(tmp_path, tiny):
    assert load_config().train.loggers == ["csv"]
    run = tmp_path / "run"
    trainer = Trainer(tiny(), run)
    trainer.fit()
    text = (run / "history.csv").read_text()
    header = text.splitlines()[0].split(",")
    assert header[:10] == ["epoch", "step", "loss_triplet", "loss_proxy_nca", "loss_total", "weight_triplet",
                           "weight_proxy_nca", "scale_triplet", "scale_proxy_nca", "penalty"]
    assert header[10] == "lr_backbone" and header[11] == "test/heads.triplet/recall@1"
    assert len(text.splitlines()) == 3
    write_history(tmp_path / "again.csv", trainer.history)  # what the trainer wrote before loggers existed
    assert (tmp_path / "again.csv").read_bytes() == (run / "history.csv").read_bytes()
    assert not (run / "tensorboard").exists() and not (run / "mlruns").exists()


def test_logging_survives_a_failure_and_an_interrupt_then_resume_without_repeats(tmp_path, monkeypatch, recorder, tiny):
    run = tmp_path / "run"
    cfg = tiny("train.epochs=3", "train.checkpoint_every=2", TRACKERS[:-1] + ",recorder]")
    Recorder.SCRIPT.update({8: "fail"})  # step 8 of 9: after the epoch-2 checkpoint (step 6)
    with pytest.raises(RuntimeError, match="step 8"):
        Trainer(cfg, run).fit()
    Recorder.SCRIPT.update({8: "stop"})  # the replayed step 8 now gets a SIGTERM: checkpoint at step 8
    with pytest.raises(TrainingInterrupted):
        Trainer(None, run, resume=True).fit()
    Trainer(None, run, resume=True).fit()
    assert [c[-1] for r in Recorder.instances for c in r.calls if c[0] == "close"] == ["failed", "interrupted",
                                                                                      "finished"]
    assert [r.calls[0][:3] for r in Recorder.instances] == [("open", False, 0), ("open", True, 6),
                                                           ("open", True, 8)]
    history = read_history(run / "history.csv")
    assert [r["epoch"] for r in history] == [1, 2, 3]  # no repeated rows
    acc = _tb(run)
    assert [e.step for e in acc.Scalars("loss/total")] == list(range(1, 10))
    assert [e.step for e in acc.Scalars("metrics/test/ensemble/map@r")] == [3, 6, 9]
    client = _client(run, monkeypatch)
    found = _mlflow_run(client)  # one MLflow run, continued
    assert found.info.status == "FINISHED"
    assert [m.step for m in client.get_metric_history(found.info.run_id, "loss/total")] == list(range(1, 10))
    got = client.get_metric_history(found.info.run_id, "epoch_mean/loss/total")
    assert [(m.step, m.value) for m in got] == [(int(r["step"]), pytest.approx(r["loss_total"], rel=1e-5))
                                                for r in history]


def test_unknown_logger_bad_options_and_a_missing_package_are_user_errors(tmp_path, recorder, tiny):
    with pytest.raises(UserError, match=r"train.loggers: unknown logger 'tensorbord'; did you mean 'tensorboard'"):
        Trainer(tiny("train.loggers=[csv,tensorbord]"), tmp_path / "a")
    with pytest.raises(UserError, match=r"logger 'mlflow': unknown option 'experimnt'; did you mean 'experiment'"):
        Trainer(tiny("train.loggers=[{name: mlflow, options: {experimnt: x}}]"), tmp_path / "b")
    with pytest.raises(UserError, match="max_points"):
        Trainer(tiny("train.loggers=[{name: tensorboard, options: {max_points: -1}}]"), tmp_path / "c")
    monkeypatch_requires = ("no_such_package_lossensemble", "tensorboard")
    Recorder.requires = monkeypatch_requires
    try:
        with pytest.raises(UserError, match=r"pip install 'lossensemble\[tensorboard\]'"):
            Trainer(tiny("train.loggers=[recorder]"), tmp_path / "d")
    finally:
        Recorder.requires = None
    assert not any((tmp_path / n).exists() for n in "abcd")  # refused before any run folder was made
    with pytest.raises(UserError, match="each logger may appear once"):
        tiny("train.loggers=[csv,csv]")
    with pytest.raises(UserError, match=r"train.loggers.0: unknown key 'optons'"):
        tiny("train.loggers=[{name: mlflow, optons: {}}]")


def test_only_the_main_process_logs(recorder):
    """Under torchrun the trainer builds its loggers with ``enabled=dist.is_main``: other ranks log nothing."""
    from lossensemble.config.schema import LoggerConfig
    from lossensemble.training.loggers import LoggerContext, build_loggers

    ctx = LoggerContext(Path("unused"), "unused", {}, False, 0)
    for enabled in (False, True):
        loggers = build_loggers([LoggerConfig("recorder", {"label": str(enabled)})], enabled=enabled)
        loggers.open(ctx)
        loggers.log_step(1, {"loss_total": 1.0, "weight_a": 0.5})
        loggers.close("finished")
    (rec_off, rec_on) = Recorder.instances
    assert rec_off.calls == []
    assert rec_on.calls == [("open", False, 0, "unused"), ("scalars", 1, {"loss/total": 1.0, "weight/a": 0.5}),
                            ("close", "finished")]


@pytest.mark.slow
def test_under_torchrun_only_rank_0_logs(tmp_path, monkeypatch, tiny_config):
    """Two ranks train; one TensorBoard event file, one MLflow run, one history.csv row per epoch."""
    from process_helpers import torchrun_train

    run = tmp_path / "run"
    done = torchrun_train(run, tiny_config.overrides(TRACKERS))
    assert done.returncode == 0, done.stderr[-3000:]
    assert len(list((run / "tensorboard").glob("events.out.tfevents.*"))) == 1
    assert [e.step for e in _tb(run).Scalars("loss/total")] == [1, 2, 3]
    client = _client(run, monkeypatch)
    found = _mlflow_run(client)
    assert [m.step for m in client.get_metric_history(found.info.run_id, "loss/total")] == [1, 2, 3]
    assert len(read_history(run / "history.csv")) == 1


def test_mlflow_options_pick_the_store_experiment_and_run_name(tmp_path, monkeypatch):
    from lossensemble.training.loggers import LoggerContext, MlflowLogger

    store = tmp_path / "elsewhere"
    lg = MlflowLogger(tracking_uri="file:" + str(store), experiment="exp", run_name="first try")
    lg.open(LoggerContext(tmp_path / "run", "run", {"train": {"epochs": 2, "lr": {"heads": 0.1}}}, False, 0))
    lg.log_scalars(1, {"metrics/test/ensemble/recall@1": 50.0})
    lg.close("interrupted")
    assert not (tmp_path / "run" / "mlruns").exists()
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri="file:" + str(store))
    found = _mlflow_run(client, "exp")
    assert found.info.run_name == "first try" and found.info.status == "KILLED"
    assert found.data.params == {"train.epochs": "2", "train.lr.heads": "0.1"}
    assert found.data.metrics == {"metrics/test/ensemble/recall_at_1": 50.0}
    bad = MlflowLogger(tracking_uri="no-such-scheme://host")
    with pytest.raises(UserError, match="logger 'mlflow' \\(no-such-scheme://host\\)"):
        bad.open(LoggerContext(tmp_path / "run", "run", {}, False, 0))
