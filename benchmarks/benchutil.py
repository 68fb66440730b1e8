"""Helpers shared by the benchmark scripts: machine stamp and marked-section rewriting of BENCHMARKS.md.

A section owned by a script lives between ``<!-- bench:NAME -->`` and ``<!-- /bench:NAME -->``;
:func:`replace_section` rewrites only the text between the two markers and leaves everything
else (other people's sections included) byte for byte as it was.
"""

from __future__ import annotations

import datetime as _dt
import os
import platform
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BENCHMARKS_MD = ROOT / "BENCHMARKS.md"

TITLES = {
    "index": "Index",
    "train_step": "Training step overhead",
    "input_pipeline": "Input pipeline",
    "demo": "Demo wall time",
    "gpu": "GPU (not run)",
    "cli_start": "CLI start-up",
    "ann": "Approximate indexes",
    "frozen": "Frozen backbone",
    "serve": "Serving",
    "compile": "Compiled step",
    "study": "Study: the ensemble against the best single loss at equal compute",
}


def markers(name: str) -> tuple[str, str]:
    return f"<!-- bench:{name} -->", f"<!-- /bench:{name} -->"


def replace_section(text: str, name: str, body: str, title: str | None = None) -> str:
    """``text`` with the content between ``name``'s markers replaced by ``body``.

    Without the markers, a ``## title`` section holding them is appended at the end.
    Raises ValueError if the markers are present but out of order or duplicated.
    """
    begin, end = markers(name)
    nb, ne = text.count(begin), text.count(end)
    if nb == 0 and ne == 0:
        heading = f"## {title or TITLES.get(name, name)}\n\n"
        return text.rstrip("\n") + f"\n\n{heading}{begin}\n{body.strip()}\n{end}\n"
    if nb != 1 or ne != 1:
        raise ValueError(f"BENCHMARKS.md: markers of {name!r} appear {nb}/{ne} times (expected once each)")
    i, j = text.index(begin), text.index(end)
    if j < i:
        raise ValueError(f"BENCHMARKS.md: end marker of {name!r} comes before its begin marker")
    return text[: i + len(begin)] + "\n" + body.strip() + "\n" + text[j:]


def write_section(name: str, body: str, path: Path = BENCHMARKS_MD, title: str | None = None) -> None:
    text = path.read_text(encoding="utf-8") if path.is_file() else "# Benchmarks\n"
    new = replace_section(text, name, body, title)
    tmp = path.with_suffix(".md.tmp")
    tmp.write_text(new, encoding="utf-8")
    os.replace(tmp, path)


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def load_average() -> str:
    try:
        return " / ".join(f"{v:.1f}" for v in os.getloadavg())
    except OSError:
        return "n/a"


def versions() -> str:
    parts = [f"Python {platform.python_version()}"]
    for mod in ("torch", "torchvision", "numpy", "faiss", "pytorch_metric_learning", "PIL"):
        try:
            m = __import__(mod)
            parts.append(f"{mod} {getattr(m, '__version__', '?')}")
        except Exception:  # noqa: BLE001 - optional
            pass
    try:
        import lossensemble

        parts.append(f"lossensemble {lossensemble.__version__}")
    except Exception:  # noqa: BLE001
        pass
    return ", ".join(parts)


def machine() -> str:
    return f"{cpu_model()}, nproc {os.cpu_count()}"


def stamp(body: str, command: str) -> str:
    """``body`` followed by the command, machine, versions and date lines."""
    date = _dt.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")
    return (f"{body.rstrip()}\n"
            f"- Command: `{command}`\n"
            f"- Machine: {machine()} (shared with other sessions); {versions()}\n"
            f"- Date: {date}\n")


def publish(section: str, body: str, script: str, argv: list[str] | None, write: bool) -> int:
    """Stamp ``body`` with the command that made it (``script`` + ``argv``), print it, and with
    ``write`` rewrite ``section`` of BENCHMARKS.md; the bench scripts' common ending (returns 0)."""
    import sys

    cmd = f"python benchmarks/{script} " + " ".join(argv if argv is not None else sys.argv[1:])
    text = stamp(body, cmd.strip())
    print(text)
    if write:
        write_section(section, text)
    return 0


_SECTION_RE = re.compile(r"<!-- bench:([a-z_]+) -->")


def owned_sections(text: str) -> list[str]:
    return _SECTION_RE.findall(text)
