"""CSV files as spreadsheets and editors write them: byte-order mark, CRLF, quotes; errors name the line."""

from __future__ import annotations

from pathlib import Path

import pytest

from fabricate import write_image
from lossensemble.data import build_dataset
from lossensemble.errors import DataError

ROWS = ["imgs/0.png,1,train", "imgs/1.png,1,train", "imgs/2.png,2,train", "imgs/3.png,2,train",
        "imgs/4.png,3,test", "imgs/5.png,3,test"]


def _write(tmp_path: Path, data: bytes) -> Path:
    for k in range(6):
        write_image(tmp_path / "imgs" / f"{k}.png", seed=k)
    path = tmp_path / "data.csv"
    path.write_bytes(data)
    return path


def _error(path: Path) -> str:
    with pytest.raises(DataError) as info:
        build_dataset("csv", "train", path)
    message = str(info.value)
    assert "\n" not in message and "\ufeff" not in message
    return message


def test_byte_order_mark_and_crlf_are_accepted(tmp_path):
    text = "\r\n".join(["path,label,split", *ROWS]) + "\r\n"
    path = _write(tmp_path, b"\xef\xbb\xbf" + text.encode("utf-8"))
    train = build_dataset("csv", "train", path)
    assert train.class_names == ["1", "2"] and len(train) == 4
    assert train.paths[0] == str(tmp_path / "imgs" / "0.png")


def test_quoted_fields_and_blank_lines(tmp_path):
    write_image(tmp_path / "imgs" / "a, b.png", seed=9)
    text = "\n".join(["path,label,split", '"imgs/a, b.png",1,train', "", *ROWS[1:], ""]) + "\n"
    train = build_dataset("csv", "train", _write(tmp_path, text.encode()))
    assert len(train) == 4 and train.paths[0].endswith("a, b.png")


def test_line_numbers_count_blank_lines_and_multiline_fields(tmp_path):
    text = "\n".join(["path,label,split", ROWS[0], "", ROWS[1], '"imgs/2.png",2,"hold\nout"', "imgs/3.png,2,later"])
    message = _error(_write(tmp_path, (text + "\n").encode()))
    assert "2 rows with a split other than train/validation/test: line 5 ('hold\\nout'), line 7 ('later')" in message


def test_text_that_is_not_utf8_names_the_line(tmp_path):
    text = "\n".join(["path,label,split", *ROWS[:2], "imgs/caf\xe9.png,2,train"]) + "\n"
    message = _error(_write(tmp_path, text.encode("latin-1")))
    assert message.endswith("line 4 is not UTF-8 text (byte 0xe9); save the file as UTF-8")
    message = _error(_write(tmp_path, b"\xef\xbb\xbf" + text.encode("latin-1")))
    assert "line 4 is not UTF-8 text (byte 0xe9)" in message


def test_rows_with_more_fields_than_the_header(tmp_path):
    rows = [ROWS[0] + ",,", ROWS[1], ROWS[2] + ",extra", *ROWS[3:]]  # empty trailing fields are fine
    message = _error(_write(tmp_path, ("\n".join(["path,label,split", *rows]) + "\n").encode()))
    assert "1 rows with more fields than the 3 columns of the header: line 4 ('imgs/2.png,2,train,extra')" in message
    short = ["imgs/0.png,1", *ROWS[1:]]  # a missing split is named like a wrong one
    message = _error(_write(tmp_path, ("\n".join(["path,label,split", *short]) + "\n").encode()))
    assert "split other than train/validation/test: line 2 ('')" in message


def test_unclosed_quote_and_repeated_column(tmp_path):
    text = "\n".join(["path,label,split", *ROWS[:3], '"imgs/3.png,2,train', *ROWS[4:]]) + "\n"
    message = _error(_write(tmp_path, text.encode()))
    assert "line 5: unexpected end of data (a quote that is never closed?)" in message
    text = "\n".join(["path,label,split,label", *(r + ",x" for r in ROWS)]) + "\n"
    assert "the header names column(s) label more than once" in _error(_write(tmp_path, text.encode()))
