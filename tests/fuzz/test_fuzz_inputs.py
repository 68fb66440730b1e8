"""Fuzzing ``lossensemble train`` with hostile configs and CSV files (issue #14).

Whatever the input, the command either succeeds (exit 0) or exits 2 with exactly one line on
stderr that starts with ``lossensemble: error:``; it never raises, and it writes nothing
outside its output folder (the example's folder, which is also the working directory, is
compared before and after).

Configs mix keys and values of the shipped configs (``src/lossensemble/configs/*.yaml``) with
wrong types, out-of-range values, unknown keys, huge integers, NaN and odd strings. The run
itself is kept trivially short: the config the command loads is clamped after it was read and
validated (one epoch of one step, at most 16 + 16 glyph classes of 32 px), so every check of
the file still happens but nothing trains for long.
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import io
import math
import os
import signal
import tempfile
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import yaml
from hypothesis import HealthCheck, Phase, example, given, settings
from hypothesis import strategies as st
from PIL import Image

from lossensemble.cli.main import main

#: Examples per fuzz test; LOSSENSEMBLE_FUZZ_EXAMPLES=500 explores more (and randomly: a new search each run).
EXAMPLES = os.environ.get("LOSSENSEMBLE_FUZZ_EXAMPLES")
FUZZ = settings(max_examples=int(EXAMPLES or 25), deadline=None, derandomize=EXAMPLES is None, print_blob=True,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


# ----------------------------------------------------------------------------- what the shipped configs hold
def _flatten(data: Any, prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    if isinstance(data, dict):
        for key, value in data.items():
            dotted = f"{prefix}.{key}" if prefix else str(key)
            if isinstance(value, dict) and value:
                out.update(_flatten(value, dotted))
            else:
                out[dotted] = value
    return out


def _shipped_values() -> dict[str, list[Any]]:
    """Every dotted key of the shipped configs with the values they give it."""
    values: dict[str, list[Any]] = {}
    folder = resources.files("lossensemble") / "configs"
    for entry in sorted(folder.iterdir(), key=lambda e: e.name):
        if entry.name.endswith(".yaml"):
            for key, value in _flatten(yaml.safe_load(entry.read_text(encoding="utf-8"))).items():
                if value not in values.setdefault(key, []):
                    values[key].append(value)
    return values


SHIPPED = _shipped_values()
#: Keys whose shipped values would download weights, read absent data sets or train for minutes; the
#: fuzzer still gives them hostile values, and the cheap valid values below.
CHEAP_VALID = {
    "data.name": ["glyphs", "cars196", "sop", "folder", "csv"],  # absent data sets: one-line errors
    "model.backbone": ["small_cnn", "resnet18"],
    "model.pretrained": [False],
    "data.num_workers": [0],
    "train.device": ["cpu", "auto", "cuda", "cuda:7", "tpu"],
    "train.loggers": [["csv"], ["csv", "tensorboard"], ["tensorboard"], [], ["csv", "csv"], ["nope"],
                      [{"name": "tensorboard", "options": {"max_points": -1}}], [{"name": "csv", "bad": 1}]],
    "data.root": [None],
    "model.weights": [None],
}
KEYS = sorted(set(SHIPPED) | set(CHEAP_VALID) | {
    "model.weights", "train.threads", "train.grad_clip", "train.amp", "train.checkpoint_every",
    "eval.max_items", "eval.nmi", "compression.enabled", "compression.dim", "weighting.weights",
    "weighting.diversity", "weighting.diversity_margin", "data.options.images_per_class",
    "data.options.render_size", "losses.0.options", "losses.1.head", "train.loggers", "data.augment", "losses.0.miner",
})

HOSTILE = [
    None, True, False, 0, -1, 1, 2, 3, 7, 2**31, 2**63, -(2**63), 10**30, 1.5, -0.5, 1e308,
    math.nan, math.inf, -math.inf, "", " ", "nan", "1e-4", "yes", "x" * 300, "caf\u00e9 \u2603", "a\tb",
    "\u202e", "../../etc/passwd", "/nonexistent/lossensemble-fuzz", "${HOME}", "%(x)s", "{0}",
    [], [1, 2], ["triplet", "triplet"], [None], {}, {"a": 1}, {"name": 3},
]


def _values_for(key: str) -> st.SearchStrategy:
    valid = CHEAP_VALID.get(key, SHIPPED.get(key, []))
    hostile = st.sampled_from(HOSTILE) | st.integers() | st.floats(allow_nan=True) | st.text(max_size=20)
    return (st.sampled_from(valid) | hostile) if valid else hostile


unknown_keys = st.sampled_from(["sede", "data.batchsize", "trian.epochs", "model.options", "losses.9.name",
                                "eval.k.0", "", " ", "data.options.unknown_option", "x.y.z.w", "1"])
mutations = st.lists(st.one_of(st.sampled_from(KEYS).flatmap(lambda k: st.tuples(st.just(k), _values_for(k))),
                               st.tuples(unknown_keys, st.sampled_from(HOSTILE))),
                     min_size=1, max_size=5)


def _set(data: dict, dotted: str, value: Any) -> None:
    """Set ``dotted`` in nested ``data``; list indices (``losses.0``) index lists, others make mappings."""
    parts = dotted.split(".")
    node: Any = data
    for i, part in enumerate(parts):
        last = i == len(parts) - 1
        if isinstance(node, list) and part.isdigit() and int(part) < len(node):
            if last:
                node[int(part)] = value
                return
            if not isinstance(node[int(part)], dict):
                node[int(part)] = {"name": node[int(part)]} if isinstance(node[int(part)], str) else {}
            node = node[int(part)]
        elif isinstance(node, dict):
            if last:
                node[part] = value
                return
            if not isinstance(node.get(part), (dict, list)):
                node[part] = {}
            node = node[part]
        else:
            return  # the path runs through a value the fuzzer replaced: nothing to set


# ----------------------------------------------------------------------------- running the command
def _snapshot(folder: Path, skip: Path) -> dict[str, str]:
    """Every file and folder under ``folder`` (except ``skip``) with a digest of its bytes."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(folder):
        here = Path(dirpath)
        if here == skip or skip in here.parents:
            dirnames[:] = []
            continue
        for name in dirnames:
            if here / name != skip:
                out[str(here / name)] = "dir"
        for name in filenames:
            path = here / name
            out[str(path)] = hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else "other"
    return out


def _clamp(cfg) -> None:
    """Make a loaded, validated config trivially short (in place); the values that were checked stay."""
    t, d, m = cfg.train, cfg.data, cfg.model
    t.epochs = 1
    t.steps_per_epoch = 1
    t.threads = 1
    t.progress = False
    d.image_size = min(d.image_size, 32)
    d.num_workers = 0
    m.embedding_dim = min(m.embedding_dim, 32)
    m.pretrained = False  # never download weights
    cfg.compression.epochs = min(cfg.compression.epochs, 1)
    cfg.eval.batch_size = min(cfg.eval.batch_size, 256)
    if d.name == "glyphs":
        for key in ("num_train_classes", "num_test_classes"):
            value = d.options.get(key, 16)
            if isinstance(value, int) and not isinstance(value, bool) and value > 16:
                d.options[key] = 16
            d.options.setdefault(key, 16)
        value = d.options.get("images_per_class")
        if isinstance(value, int) and not isinstance(value, bool) and value > 16:
            d.options["images_per_class"] = 16
        d.options["progress"] = False


def run_train(config_bytes: bytes, root: Path) -> tuple[int, str]:
    """``lossensemble train -c CONFIG -o OUT`` in-process, in ``root`` (also the working directory).

    Returns (exit status, stderr). Fails the test on an exception, a write outside OUT, or a
    process-wide setting left changed.
    """
    import lossensemble.cli.train as train_cli

    (root / "config.yaml").write_bytes(config_bytes)
    out = root / "out"
    before = _snapshot(root, out)
    real_load = train_cli.load_run_config

    def load_and_clamp(*args, **kwargs):
        cfg = real_load(*args, **kwargs)
        _clamp(cfg)
        return cfg

    threads = torch.get_num_threads()
    handlers = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT)}
    cwd = os.getcwd()
    stdout, stderr = io.StringIO(), io.StringIO()
    try:
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(train_cli, "load_run_config", load_and_clamp)
            mp.chdir(root)
            with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
                try:
                    code = main(["train", "-c", str(root / "config.yaml"), "-o", str(out), "--no-progress"])
                except SystemExit as exc:  # argparse: not expected with this fixed command line
                    code = exc.code
    finally:
        torch.set_num_threads(threads)
        for sig, handler in handlers.items():
            signal.signal(sig, handler)
    assert os.getcwd() == cwd
    after = _snapshot(root, out)
    changed = sorted(k for k in set(before) | set(after) if before.get(k) != after.get(k))
    assert not changed, f"files outside the output folder were created or changed: {changed}"
    return code, stderr.getvalue()


def assert_success_or_one_line_error(code: int, err: str) -> None:
    if code == 0:
        return
    assert code == 2, f"exit {code}, stderr: {err!r}"
    lines = err.strip("\n").split("\n")
    assert len(lines) == 1 and lines[0].startswith("lossensemble: error:"), err


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("fuzz")


def _fresh(workdir: Path) -> Path:
    return Path(tempfile.mkdtemp(dir=workdir))


def test_the_watch_sees_files_written_outside_the_output_folder(workdir, monkeypatch):
    """The check of (c) itself: a stray file in the working directory, or a changed input, is reported."""
    import lossensemble.runtime as runtime

    real = runtime.configure_logging
    for name in ("stray.txt", "config.yaml"):  # a new file in the working directory; the input file changed
        def write_then_configure(*args, name=name, **kwargs):
            Path(name).write_text("x")
            return real(*args, **kwargs)

        monkeypatch.setattr(runtime, "configure_logging", write_then_configure)
        with pytest.raises(AssertionError, match=name):
            run_train(b"42\n", _fresh(workdir))


# ----------------------------------------------------------------------------- (a) configs
def _tiny_dict(tiny_config) -> dict:
    from lossensemble.config import config_to_dict

    return config_to_dict(tiny_config("eval.nmi=false"))


def _yaml(data: Any) -> bytes:
    return yaml.safe_dump(data, allow_unicode=True, sort_keys=False).encode("utf-8")


raw_files = st.one_of(
    st.binary(max_size=64),
    st.sampled_from([b"", b"\xff\xfe\x00", b"- a\n- b\n", b"[1, 2", b"seed: &a [*a]\n", b"seed: !!python/none x\n",
                     b"data: {name: glyphs\n", b"42\n", b"\xef\xbb\xbfseed: 1\n", "seed: caf\u00e9".encode("latin-1"),
                     b"train:\n  epochs: 1\n   lr: [1\n", b"data: !!binary AAAA\n"]),
)


@pytest.mark.slow  # ~25 short training runs: 10-30 s on 2 busy cores
@FUZZ
@given(edits=mutations)
@example(edits=[("train.epochs", 1)])  # an untouched tiny config trains
@example(edits=[("model.embedding_dim", 2**63)])
@example(edits=[("data.options.num_train_classes", math.nan)])
@example(edits=[("train.loggers", ["nope"])])
@example(edits=[("losses", [None])])
@example(edits=[("eval.k.0", 10**20)])  # was an OverflowError after training (fixed in 4bfe823)
def test_random_configs_succeed_or_fail_in_one_line(tiny_config, workdir, edits):
    check_config(tiny_config, workdir, edits)


def check_config(tiny_config, workdir: Path, edits) -> None:
    data = _tiny_dict(tiny_config)
    for key, value in edits:
        _set(data, key, value)
    code, err = run_train(_yaml(data), _fresh(workdir))
    assert_success_or_one_line_error(code, err)


@settings(max_examples=15, deadline=None, derandomize=True)
@given(content=raw_files)
def test_files_that_are_not_configs_fail_in_one_line(workdir, content):
    code, err = run_train(content, _fresh(workdir))
    assert_success_or_one_line_error(code, err)


# ----------------------------------------------------------------------------- (b) CSV data sets
def _images(root: Path) -> None:
    """Eight images of four classes under root/in/imgs, odd ones under root/in/odd, one outside the CSV's folder."""
    rng = np.random.default_rng(0)
    for k in range(8):
        path = root / "in" / "imgs" / f"{k}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 255, (12, 12, 3), dtype=np.uint8)).save(path)
    (root / "outside").mkdir()
    Image.fromarray(rng.integers(0, 255, (12, 12, 3), dtype=np.uint8)).save(root / "outside" / "x.png")
    (root / "in" / "notes.txt").write_text("not an image")
    odd = root / "in" / "odd"
    odd.mkdir()
    (odd / "truncated.png").write_bytes((root / "in" / "imgs" / "0.png").read_bytes()[:40])
    Image.new("RGB", (1, 1)).save(odd / "one-pixel.png")
    Image.fromarray(rng.integers(0, 65535, (9, 30), dtype=np.uint16)).save(odd / "gray16.png")
    Image.new("RGBA", (5, 7), (1, 2, 3, 0)).save(odd / "transparent.png")


GOOD_ROWS = [["imgs/0.png", "a", "train"], ["imgs/1.png", "a", "train"], ["imgs/2.png", "b", "train"],
             ["imgs/3.png", "b", "train"], ["imgs/4.png", "c", "test"], ["imgs/5.png", "c", "test"],
             ["imgs/6.png", "d", "test"], ["imgs/7.png", "d", "test"]]
paths = st.sampled_from(["imgs/0.png", "imgs/3.png", "imgs/6.png", "imgs/missing.png", "imgs", "notes.txt",
                         "../outside/x.png", "OUTSIDE_ABS", "/etc/passwd", "/nonexistent/x.png", "", " imgs/1.png",
                         "odd/truncated.png", "odd/one-pixel.png", "odd/gray16.png", "odd/transparent.png",
                         "imgs/../imgs/2.png", "imgs\\4.png", "~/x.png", "\x00", "caf\u00e9.png"]) \
    | st.text(max_size=12)
labels = st.sampled_from(["a", "b", "c", "d", "1", "-1", "0", "1.5", "nan", "", "None", str(2**70), " a", "A",
                          "\u00e9", "[1]"]) | st.integers().map(str)
splits = st.sampled_from(["train", "test", "validation", "query", "gallery", "Train", "", "hold out"])
rows = st.one_of(st.sampled_from(GOOD_ROWS), st.lists(st.one_of(paths, labels, splits), max_size=5),
                 st.tuples(paths, labels, splits).map(list))
headers = st.sampled_from([["path", "label", "split"]] * 4 + [
    ["label", "path", "split"], ["path", "label"], ["path", "label", "split", "extra"], ["path", "label", "label"],
    ["path", "label", "split", "is_query"], ["path", "label", "split", "is_query", "is_gallery"],
    ["Path", "Label", "Split"],
    [], ["\ufeffpath", "label", "split"]])


@st.composite
def csv_files(draw) -> bytes:
    header = draw(headers)
    if draw(st.booleans()):
        body = draw(st.lists(rows, max_size=12))
    else:
        body = list(GOOD_ROWS) + draw(st.lists(rows, max_size=3))
    if draw(st.booleans()):
        body = body + body[: draw(st.integers(0, len(body)))]  # duplicate rows
    text = io.StringIO()
    writer = csv.writer(text, lineterminator=draw(st.sampled_from(["\n", "\r\n"])))
    for row in [header, *body]:
        writer.writerow(row)
    data = text.getvalue().encode("utf-8")
    damage = draw(st.sampled_from(["none"] * 4 + ["latin1", "bom", "nul", "truncate", "empty"]))
    if damage == "latin1":
        data += "imgs/caf\u00e9.png,a,train\n".encode("latin-1")
    elif damage == "bom":
        data = b"\xef\xbb\xbf" + data
    elif damage == "nul":
        data = data.replace(b",", b"\x00,", 1)
    elif damage == "truncate":
        data = data[: draw(st.integers(0, len(data)))]
    elif damage == "empty":
        data = b""
    return data


def _csv_config(tiny_config, csv_path: Path, options: dict) -> bytes:
    data = _tiny_dict(tiny_config)
    data["data"].update(name="csv", root=str(csv_path), options=options, batch_size=4, m_per_class=2)
    return _yaml(data)


GOOD_CSV = ("\n".join(["path,label,split", *(",".join(r) for r in GOOD_ROWS)]) + "\n").encode()


@pytest.mark.slow  # ~25 short training runs: 20-60 s on 2 busy cores
@FUZZ
@given(content=csv_files(), options=st.sampled_from([{}, {}, {"dataset_root": "DATASET_ROOT"},
                                                     {"max_image_pixels": 10**6}, {"unknown": 1}]))
@example(content=GOOD_CSV, options={})  # a well-formed CSV trains
@example(content=GOOD_CSV.replace(b"imgs/0.png", b"OUTSIDE_ABS"), options={})
@example(content=GOOD_CSV.replace(b"imgs/0.png", b"../outside/x.png"), options={})
@example(content=b"", options={})
def test_random_csv_files_succeed_or_fail_in_one_line(tiny_config, workdir, content, options):
    check_csv(tiny_config, workdir, content, options)


def check_csv(tiny_config, workdir: Path, content: bytes, options: dict) -> None:
    root = _fresh(workdir)
    _images(root)
    content = content.replace(b"OUTSIDE_ABS", str(root / "outside" / "x.png").encode())
    options = {k: (str(root / "in") if v == "DATASET_ROOT" else v) for k, v in options.items()}
    csv_path = root / "in" / "data.csv"
    csv_path.write_bytes(content)
    code, err = run_train(_csv_config(tiny_config, csv_path, options), root)
    assert_success_or_one_line_error(code, err)
    if content == GOOD_CSV and not options:
        assert code == 0, err


# ----------------------------------------------------------------------------- what the fuzzer found
# Tracebacks in src the fuzzer found (now one-line errors), kept as explicit examples.
ONLY_EXAMPLES = settings(phases=[Phase.explicit], deadline=None)


@pytest.mark.parametrize("options", [
    pytest.param({"dataset_root": 3}, id="dataset_root-not-a-string"),  # was a TypeError from Path(3)
    pytest.param({"max_image_pixels": "x"}, id="max_image_pixels-not-a-number"),  # was a ValueError from int('x')
    pytest.param({"max_image_pixels": 0}, id="max_image_pixels-zero"),
    pytest.param({"max_image_pixels": 10}, id="no-test-image-readable"),  # was a KeyError after training
])
@ONLY_EXAMPLES
@given(content=st.just(GOOD_CSV))  # only the example runs
@example(content=GOOD_CSV)
def test_found_csv_tracebacks(tiny_config, workdir, options, content):
    check_csv(tiny_config, workdir, content, options)
