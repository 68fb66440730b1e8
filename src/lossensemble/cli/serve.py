"""``lossensemble serve``: an HTTP service to embed and search images (FastAPI + uvicorn, optional)."""

from __future__ import annotations

import argparse
import sys

INSTALL_HINT = "pip install 'lossensemble[serve]' (fastapi, uvicorn, python-multipart)"


def register(sub) -> None:
    p = sub.add_parser(
        "serve",
        help="serve an index (search + embed) or a model (embed) over HTTP",
        description="Serve MODEL_OR_INDEX on http://HOST:PORT/ (default 127.0.0.1:8000): POST /search "
        "(multipart 'file' + optional 'k') -> [{path, distance, url}], POST /embed -> {embedding}, "
        "GET /health, GET / (a page to upload an image and see its neighbours), GET /images/ROW (the "
        "indexed images only). Needs the optional FastAPI stack: " + INSTALL_HINT + ".",
    )
    p.add_argument("target", metavar="MODEL_OR_INDEX", help="index folder ('lossensemble index') or model folder")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to listen on (default 127.0.0.1: this machine only; anyone who can reach "
                   "another address can query the index and view its images)")
    p.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    p.add_argument("--k", type=int, default=10, help="neighbours returned when a request gives no k (default 10)")
    p.add_argument("--max-upload-mb", type=float, default=20.0, help="largest accepted upload in MiB (default 20)")
    p.add_argument("--device", default="cpu", help="cpu (default), cuda, ...")
    p.set_defaults(func=run)


def _require_fastapi() -> None:
    from lossensemble.errors import UserError

    missing = []
    for module in ("fastapi", "uvicorn"):
        try:
            __import__(module)
        except ImportError:
            missing.append(module)
    try:
        __import__("python_multipart")
    except ImportError:
        try:
            __import__("multipart")
        except ImportError:
            missing.append("python-multipart")
    if missing:
        raise UserError(f"'lossensemble serve' needs {', '.join(missing)}: {INSTALL_HINT}")


def run(args: argparse.Namespace) -> int:
    from lossensemble.errors import UserError

    _require_fastapi()
    import uvicorn

    from lossensemble.inference.server import create_app

    if not 0 <= args.port <= 65535:
        raise UserError(f"--port must be within 0..65535, got {args.port}")
    if args.max_upload_mb <= 0:
        raise UserError(f"--max-upload-mb must be > 0, got {args.max_upload_mb}")
    app = create_app(args.target, device=args.device, default_k=args.k,
                     max_upload_bytes=int(args.max_upload_mb * 2**20))
    if args.host not in ("127.0.0.1", "localhost", "::1"):
        print(f"lossensemble: warning: listening on {args.host}: anyone who can reach it can query the index "
              "and view the indexed images", file=sys.stderr)
    server = uvicorn.Server(uvicorn.Config(app, host=args.host, port=args.port, log_level="info"))
    try:
        server.run()
    except SystemExit:  # uvicorn exits when it cannot listen (address in use, permission, bad host)
        raise UserError(f"cannot listen on {args.host}:{args.port} (address in use or not available; "
                        "see the message above)") from None
    return 0
