"""Helpers shared by the subcommands: config lookup, result printing."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from lossensemble.errors import UserError

__all__ = ["packaged_configs", "resolve_config", "add_overrides_argument", "load_run_config", "prepare_process",
           "progress_enabled", "show_progress", "add_progress_argument", "add_json_arguments", "check_output_file",
           "emit_json"]


def packaged_configs() -> dict[str, Path]:
    """Configs shipped with the package (``configs/*.yaml``), by name without extension."""
    root = resources.files("lossensemble") / "configs"
    out = {}
    try:
        for entry in root.iterdir():
            if entry.name.endswith(".yaml"):
                out[entry.name[:-5]] = Path(str(entry))
    except FileNotFoundError:  # pragma: no cover - broken install
        pass
    return out


def resolve_config(name_or_path: str | None) -> Path | None:
    """A config path: an existing file, or the name of a packaged config (``glyphs-demo``)."""
    if name_or_path is None:
        return None
    path = Path(name_or_path)
    if path.is_file():
        return path
    shipped = packaged_configs()
    key = path.name[:-5] if path.name.endswith(".yaml") else path.name
    if key in shipped and (path.parent == Path(".") or path.parent.name == "configs"):
        return shipped[key]
    names = ", ".join(sorted(shipped)) or "none"
    raise UserError(f"config file not found: {name_or_path} (packaged configs: {names})")


def add_overrides_argument(parser) -> None:
    parser.add_argument(
        "overrides", nargs="*", metavar="KEY=VALUE",
        help="dotted config overrides, e.g. train.epochs=3 model.embedding_dim=128 losses=[triplet,binomial]",
    )


def load_run_config(name_or_path: str | None, overrides: list[str]):
    """Load a config (file or packaged name) with overrides and check every registry name in it."""
    from lossensemble.config import load_config
    from lossensemble.models import check_components

    path = resolve_config(name_or_path)
    if path is not None and not Path(name_or_path).is_file():  # found by name: say which file it is
        import sys

        print(f"lossensemble: config {name_or_path}: read {path}", file=sys.stderr)
    cfg = load_config(path, overrides)
    check_components(cfg)
    return cfg


def prepare_process(cfg):
    """The CLI's one place for process-wide settings (threads, torchrun process group); returns the context."""
    from lossensemble.runtime import prepare_process as prepare

    return prepare(cfg)


def progress_enabled(args) -> bool | None:
    """False with ``--no-progress`` or when stderr is not a terminal; else None (the config decides)."""
    import sys

    if getattr(args, "no_progress", False) or not sys.stderr.isatty():
        return False
    return None


def show_progress(args) -> bool:
    """Progress bars for a command without a config: on unless ``--no-progress`` or stderr is not a terminal."""
    return progress_enabled(args) is not False


def add_progress_argument(parser) -> None:
    """``--no-progress``, on every long-running command."""
    parser.add_argument("--no-progress", action="store_true",
                        help="no progress bars (also off when stderr is not a terminal)")


def add_json_arguments(parser, what: str = "the metrics") -> None:
    """``--json`` (print JSON to stdout instead of the table) and ``-o/--output FILE.json`` (also write it)."""
    parser.add_argument("--json", action="store_true",
                        help=f"print {what} as JSON on stdout instead of the table (to write a file: -o FILE.json)")
    parser.add_argument("-o", "--output", type=Path, metavar="FILE.json", default=None,
                        help=f"also write {what} as JSON to FILE.json (atomically; an existing file must be JSON)")


def check_output_file(path: Path | None, option: str = "--output") -> None:
    """Refuse (before any long work) a JSON output path that is a folder, under a file, or a non-JSON file."""
    if path is None:
        return
    path = Path(path)
    if path.is_dir():
        raise UserError(f"{option} {path}: is a folder; give a file name (e.g. {path / 'metrics.json'})")
    for parent in path.parents:
        if parent.exists():
            if not parent.is_dir():
                raise UserError(f"{option} {path}: {parent} is a file, not a folder")
            break
    if path.exists():
        import json

        try:
            json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, ValueError):
            raise UserError(f"{option} {path}: exists and is not a JSON file; not overwriting it "
                            "(remove it or choose another name)") from None


def emit_json(args, data, table: str) -> None:
    """Print ``data`` as JSON (``--json``) or ``table``, and write the JSON to ``--output`` when given."""
    import json
    import sys

    text = json.dumps(data, indent=2, allow_nan=False)
    print(text if getattr(args, "json", False) else table)
    output = getattr(args, "output", None)
    if output is not None:
        from lossensemble.io import atomic_write_text

        try:
            atomic_write_text(output, text + "\n")
        except OSError as exc:
            raise UserError(f"cannot write {output}: {exc.strerror or exc}") from None
        print(f"wrote {output}", file=sys.stderr)
