"""The HTTP service of ``lossensemble serve``: embed and search uploaded images (FastAPI).

Needs the optional FastAPI stack (fastapi, uvicorn, python-multipart); this module
imports FastAPI at import time, so only ``lossensemble serve`` and code that wants the
app import it (``lossensemble.inference`` does not).

:func:`create_app` serves an index folder (search + embed) or a model folder (embed only):

* ``GET /health``: ``{"status": "ok", "embedding", "dim", "index": {"count", "type"} | null}``.
* ``POST /embed`` (multipart ``file``): ``{"embedding": [...], "dim": D}``.
* ``POST /search`` (multipart ``file``, optional ``k``): ``[{"path", "distance", "url"}]``,
  nearest first; ``url`` is the neighbour's image at ``GET /images/{row}``.
* ``GET /images/{row}``: the indexed image of faiss row ``row``. Only files listed in the
  index can be named (by row number, never by path), and only if they are still images.
* ``GET /``: a page to upload an image and see its neighbours as a grid; a click on a
  neighbour searches with it, and ``/?row=N&k=K`` opens with the search of indexed image N.

Bad input is a 400 with ``{"detail": "<one line>"}``, never a 500: a request body over
the upload limit (refused before it is read into memory), a zero-byte upload, a file that
is not a decodable image, an image over the pixel limit, a missing field or a bad ``k``.
Embedding and search run one request at a time (a lock): the model is not re-entrant
on every device, and one request already uses the cores.
"""

import html
import io
import json
import threading
from pathlib import Path
from typing import Any

from fastapi import FastAPI, File, Form, HTTPException, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse
from PIL import Image, UnidentifiedImageError

from lossensemble.errors import UserError
from lossensemble.inference.index import ImageIndex
from lossensemble.inference.model import CONFIG_FILE, LEGACY_CONFIG_FILE, InferenceModel, load_model
from lossensemble.preprocess import to_rgb

__all__ = ["create_app", "open_target", "DEFAULT_MAX_UPLOAD_BYTES", "DEFAULT_MAX_PIXELS"]

DEFAULT_MAX_UPLOAD_BYTES = 20 * 2**20
DEFAULT_MAX_PIXELS = 40_000_000
MAX_K = 1000
_MULTIPART_OVERHEAD = 64 * 1024  # boundaries, part headers and the k field around the file


def open_target(path: str | Path, device: str = "cpu") -> tuple[InferenceModel, ImageIndex | None]:
    """(model, index) of an index folder, or (model, None) of an exported model folder."""
    p = Path(path)
    if (p / "index.json").is_file():
        index = ImageIndex(p, device=device)
        return index.model, index
    if p.is_dir() and not any((p / name).is_file() for name in (CONFIG_FILE, LEGACY_CONFIG_FILE)):
        raise UserError(f"{p} is neither an index folder (no index.json) nor an exported model (no {CONFIG_FILE})")
    return load_model(p, device=device), None


class _BodyLimit:
    """ASGI middleware: a POST body over ``limit`` bytes gets a 400 before the app reads it."""

    def __init__(self, app, limit: int, message: str) -> None:
        self.app, self.limit, self.message = app, limit, message

    async def _refuse(self, scope, receive, send) -> None:
        await JSONResponse({"detail": self.message}, status_code=400)(scope, receive, send)

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        length = dict(scope["headers"]).get(b"content-length")
        if length is not None and (not length.isdigit() or int(length) > self.limit):
            await self._refuse(scope, receive, send)
            return
        chunks, total, more = [], 0, True
        while more:  # a body without (or lying about) its length is counted as it arrives
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunks.append(message.get("body", b""))
            total += len(chunks[-1])
            if total > self.limit:
                await self._refuse(scope, receive, send)
                return
            more = message.get("more_body", False)
        body, replayed = b"".join(chunks), False

        async def replay():
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)


def _decode(upload: UploadFile, max_bytes: int, max_pixels: int) -> Image.Image:
    """The uploaded file as an RGB image; anything else is a 400 with a one-line reason."""
    data = upload.file.read(max_bytes + 1)
    if not data:
        raise HTTPException(400, "empty upload (0 bytes): send an image file")
    if len(data) > max_bytes:
        raise HTTPException(400, f"upload larger than the limit of {max_bytes:,} bytes")
    try:
        with Image.open(io.BytesIO(data)) as img:
            width, height = img.size
            if width * height > max_pixels:
                raise HTTPException(400, f"image of {width}x{height} pixels exceeds the limit of {max_pixels:,}")
            return to_rgb(img)  # decodes the whole file (a truncated one fails here), as indexing reads it
    except HTTPException:
        raise
    except UnidentifiedImageError:
        raise HTTPException(400, "not a readable image (not a recognised image format)") from None
    except Exception as exc:  # PIL raises many types for non-images and damaged files
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise HTTPException(400, f"not a readable image ({reason})") from None


def _validation_message(exc: RequestValidationError) -> str:
    parts = []
    for err in exc.errors():
        loc = ".".join(str(x) for x in err.get("loc", ()) if x not in ("body", "query", "path"))
        parts.append(f"{loc or 'request'}: {err.get('msg', 'invalid')}" + (" (send the image as field 'file')"
                                                                         if loc == "file" else ""))
    return "; ".join(parts) or "invalid request"


def create_app(target: str | Path | ImageIndex | InferenceModel, *, device: str = "cpu",
               max_upload_bytes: int = DEFAULT_MAX_UPLOAD_BYTES, max_pixels: int = DEFAULT_MAX_PIXELS,
               default_k: int = 10) -> FastAPI:
    """The FastAPI app serving an index (folder or :class:`ImageIndex`) or a model (folder or instance)."""
    if isinstance(target, ImageIndex):
        model, index = target.model, target
    elif isinstance(target, InferenceModel):
        model, index = target, None
    else:
        model, index = open_target(target, device=device)
    if max_upload_bytes < 1 or max_pixels < 1 or not 1 <= default_k <= MAX_K:
        raise UserError(f"upload limit and pixel limit must be >= 1 and k within 1..{MAX_K}")
    lock = threading.Lock()
    app = FastAPI(title="lossensemble", description="Embed and search images with an exported lossensemble model.",
                  docs_url="/docs", redoc_url=None)

    @app.exception_handler(RequestValidationError)
    async def _bad_request(request, exc: RequestValidationError):
        return JSONResponse({"detail": _validation_message(exc)}, status_code=400)

    def embed(upload: UploadFile):
        image = _decode(upload, max_upload_bytes, max_pixels)
        with lock:
            return model.embed_images([image], batch_size=1)

    @app.get("/health")
    def health() -> dict[str, Any]:
        return {"status": "ok", "embedding": model.embedding, "dim": model.output_dim,
                "index": None if index is None else {"count": len(index), "type": index.type}}

    @app.post("/embed")
    def embed_route(file: UploadFile = File(...)) -> dict[str, Any]:
        vector = embed(file)[0]
        return {"embedding": [float(v) for v in vector], "dim": int(vector.shape[0])}

    @app.post("/search")
    def search_route(file: UploadFile = File(...), k: int = Form(default_k)) -> list[dict[str, Any]]:
        if index is None:
            raise HTTPException(404, "this server holds a model only: serve an index folder to search")
        if not 1 <= k <= MAX_K:
            raise HTTPException(400, f"k must be within 1..{MAX_K}, got {k}")
        query = embed(file)
        with lock:
            dist, ids = index.search_vectors(query, k)
        return [{"path": index.paths[i], "distance": float(d), "url": f"/images/{int(i)}"}
                for d, i in zip(dist[0], ids[0]) if i >= 0]

    @app.get("/images/{row}")
    def image_route(row: int):
        if index is None or not 0 <= row < len(index):
            raise HTTPException(404, "no such indexed image")
        path = Path(index.paths[row])
        try:
            with Image.open(path) as img:  # reads the header only: still an image, and which type
                media_type = Image.MIME.get(img.format or "", "application/octet-stream")
        except Exception:  # moved, deleted or replaced since indexing
            raise HTTPException(404, f"indexed image {row} is no longer a readable image file") from None
        return FileResponse(path, media_type=media_type, headers={"X-Content-Type-Options": "nosniff"})

    page = _page(model, index, default_k)

    @app.get("/", response_class=HTMLResponse)
    def home() -> str:
        return page

    app.add_middleware(_BodyLimit, limit=max_upload_bytes + _MULTIPART_OVERHEAD,
                       message=f"request larger than the upload limit of {max_upload_bytes:,} bytes")
    return app


def _page(model: InferenceModel, index: ImageIndex | None, default_k: int) -> str:
    what = (f"{len(index):,} images, {index.type} index" if index is not None
            else "no index: this server embeds only (POST /embed)")
    about = html.escape(f"{model.output_dim}-d '{model.embedding}' embedding; {what}")
    disabled = "" if index is not None else " disabled"
    return _PAGE.replace("{about}", about).replace("{k}", str(default_k)).replace("{max_k}", str(MAX_K)) \
        .replace("{disabled}", disabled).replace("{has_index}", json.dumps(index is not None))


_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>lossensemble search</title>
<style>
body{font-family:system-ui,sans-serif;margin:2em;max-width:70em}
#grid{display:grid;grid-template-columns:repeat(auto-fill,minmax(150px,1fr));gap:1em;margin-top:1em}
figure{margin:0;border:1px solid #ddd;padding:.5em;text-align:center}
img{max-width:100%;max-height:140px}
figcaption{font-size:.8em;word-break:break-all}
#query img{max-height:200px}
.error{color:#b00}
</style></head>
<body>
<h1>lossensemble</h1>
<p>{about}</p>
<form id="form">
  <input type="file" name="file" accept="image/*" required>
  <label>k <input type="number" name="k" value="{k}" min="1" max="{max_k}"></label>
  <button{disabled}>Search</button>
</form>
<div id="query"></div>
<p id="message"></p>
<div id="grid"></div>
<script>
// Search with an uploaded file, or (click on a result, or open /?row=N&k=K) with an indexed image.
const form = document.getElementById("form"), grid = document.getElementById("grid");
const message = document.getElementById("message"), query = document.getElementById("query");
async function search(data, preview) {
  grid.replaceChildren(); query.replaceChildren(); message.className = ""; message.textContent = "searching...";
  if (preview) { const img = document.createElement("img"); img.src = preview; query.append(img); }
  let body;
  const response = await fetch("/search", {method: "POST", body: data});
  try { body = await response.json(); } catch (e) { body = {detail: response.statusText}; }
  if (!response.ok) { message.className = "error"; message.textContent = "Error: " + body.detail; return; }
  message.textContent = body.length + " nearest images (distance = 1 - cosine similarity); click one to search with it";
  for (const hit of body) {
    const figure = document.createElement("figure"), img = document.createElement("img");
    const caption = document.createElement("figcaption");
    img.src = hit.url; img.alt = hit.path; img.loading = "lazy";
    caption.textContent = hit.distance.toFixed(4) + " " + hit.path.split("/").pop();
    caption.title = hit.path;
    figure.dataset.row = hit.url.split("/").pop();
    figure.addEventListener("click", () => searchRow(figure.dataset.row));
    figure.append(img, caption); grid.append(figure);
  }
}
async function searchRow(row) {
  const image = await fetch("/images/" + encodeURIComponent(row));
  if (!image.ok) { message.className = "error"; message.textContent = "Error: no indexed image " + row; return; }
  const data = new FormData();
  data.append("file", await image.blob(), "indexed-" + row);
  data.append("k", form.elements.k.value);
  await search(data, "/images/" + encodeURIComponent(row));
}
form.addEventListener("submit", async (event) => {
  event.preventDefault();
  if (!{has_index}) return;
  const file = form.elements.file.files[0];
  await search(new FormData(form), file ? URL.createObjectURL(file) : null);
});
const params = new URLSearchParams(location.search);
if ({has_index} && params.has("row")) {
  if (params.has("k")) form.elements.k.value = params.get("k");
  searchRow(params.get("row"));
}
</script>
</body></html>
"""
