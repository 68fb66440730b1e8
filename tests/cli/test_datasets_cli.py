"""``lossensemble datasets``: the table of datasets."""

from __future__ import annotations

import json
from pathlib import Path

from PIL import Image

from lossensemble.cli.main import main


def make_pets(root: Path, per_class: dict[int, int]) -> None:
    """A tiny Oxford-IIIT Pet layout: annotations/list.txt + images/<Breed>_<k>.jpg."""
    base = root / "oxford-iiit-pet"
    (base / "annotations").mkdir(parents=True)
    (base / "images").mkdir()
    lines = ["#Image CLASS-ID SPECIES BREED ID"]
    for cid, n in per_class.items():
        for k in range(1, n + 1):
            Image.new("RGB", (8, 8), (cid, 0, 0)).save(base / "images" / f"breed{cid}_{k}.jpg")
            lines.append(f"breed{cid}_{k} {cid} 1 {cid}")
    (base / "annotations" / "list.txt").write_text("\n".join(lines) + "\n")


def test_table_lists_every_dataset(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("LOSSENSEMBLE_DATA", str(tmp_path / "empty"))
    assert main(["datasets"]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert lines[0].split()[:2] == ["name", "train"]
    for name in ("glyphs", "cub200", "cars196", "sop", "inshop", "flowers102", "pets", "folder", "csv"):
        assert any(line.startswith(name + " ") for line in lines), name
    glyph_line = next(line for line in lines if line.startswith("glyphs"))
    assert "300 / 4800" in glyph_line
    cub_line = next(line for line in lines if line.startswith("cub200"))
    assert "not found" in cub_line and str(tmp_path / "empty" / "CUB_200_2011") in cub_line
    assert "https://www.vision.caltech.edu/datasets/cub_200_2011/" in cub_line


def test_root_dir_finds_present_data(tmp_path, capsys):
    make_pets(tmp_path, {1: 2, 2: 3, 30: 2})
    assert main(["datasets", "--root-dir", str(tmp_path)]) == 0
    pets = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("pets"))
    assert "2 / 5" in pets and "1 / 2" in pets


def test_json_output(tmp_path, capsys):
    assert main(["datasets", "--root-dir", str(tmp_path), "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert {r["name"] for r in rows} >= {"glyphs", "sop"}
    assert next(r for r in rows if r["name"] == "sop")["status"] == "not found"


def test_user_data_rows_name_the_config_override(tmp_path, capsys):
    assert main(["datasets", "--root-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    for name in ("folder", "csv"):
        line = next(line for line in out.splitlines() if line.startswith(name + " "))
        assert "(pass data.root=...)" in line  # the CLI override syntax, not the Python keyword
    assert main(["datasets", "--root-dir", str(tmp_path), "--json"]) == 0
    rows = {r["name"]: r for r in json.loads(capsys.readouterr().out)}
    assert rows["folder"]["location"] == "(pass data.root=...)"
