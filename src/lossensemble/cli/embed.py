"""``lossensemble embed``: embed image files with an exported model into a .npy file."""

from __future__ import annotations

import argparse
import io
import sys
from pathlib import Path

from lossensemble.cli.common import add_progress_argument, show_progress

def register(sub) -> None:
    p = sub.add_parser(
        "embed",
        help="embed images with an exported model (writes E.npy and E.paths.jsonl)",
        description="Embed image files and/or folders (searched recursively for image files) with a model "
        "written by 'lossensemble export'. Writes a float32 (N, D) array to OUTPUT and the path of each row "
        "to OUTPUT with '.paths.jsonl' instead of '.npy' (JSON lines: one JSON string per line, row i on "
        "line i). Unreadable files are skipped and listed on stderr.",
    )
    p.add_argument("model", metavar="MODEL_DIR", help="exported model folder")
    p.add_argument("images", nargs="+", metavar="IMAGES", help="image files and/or folders")
    p.add_argument("-o", "--output", required=True, metavar="E.npy", help="output .npy file")
    p.add_argument("--batch-size", type=int, default=64, help="images per batch (default 64)")
    p.add_argument("--device", default="cpu", help="cpu (default), cuda, ...")
    add_progress_argument(p)
    p.set_defaults(func=run)


def paths_file(output: Path) -> Path:
    """``E.npy`` -> ``E.paths.jsonl``."""
    return output.with_name((output.name[:-4] if output.name.endswith(".npy") else output.name) + ".paths.jsonl")


def report_skipped(skipped: list[str]) -> None:
    if skipped:
        print(f"skipped {len(skipped)} unreadable file(s):", file=sys.stderr)
        for p in skipped:
            print(f"  {p if p.isprintable() else repr(p)}", file=sys.stderr)


def run(args: argparse.Namespace) -> int:
    import numpy as np

    from lossensemble.errors import UserError
    from lossensemble.inference import list_images, load_model, write_paths
    from lossensemble.io import atomic_write_bytes

    out = Path(args.output)
    if out.is_dir():
        raise UserError(f"-o {out}: is a folder; give a file name such as {out / 'E.npy'}")
    if paths_file(out).is_dir():
        raise UserError(f"-o {out}: its paths file {paths_file(out)} would replace a folder; choose another name")
    model = load_model(args.model, device=args.device)
    files = list_images(args.images)
    if not files:
        raise UserError(f"no image files found in {', '.join(args.images)}")
    result = model.embed_files(files, batch_size=args.batch_size, progress=show_progress(args))
    report_skipped(result.skipped)
    if not result.paths:
        raise UserError(f"none of the {len(files)} files could be read as an image")
    buf = io.BytesIO()
    np.save(buf, result.embeddings.astype(np.float32))
    atomic_write_bytes(out, buf.getvalue())
    write_paths(paths_file(out), result.paths)
    print(f"wrote {out} ({result.embeddings.shape[0]} x {result.embeddings.shape[1]}) and {paths_file(out)}")
    return 0
