"""``lossensemble serve``'s app in process (FastAPI TestClient): search, embed, images, bad uploads are 400s."""

from __future__ import annotations

import io
import socket
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

# fastapi, python-multipart and httpx2 (the client of Starlette's TestClient) come with the
# ``dev`` extra (through ``serve``): a missing one is a broken set-up, not a reason to skip.
from fastapi.testclient import TestClient  # noqa: E402

from lossensemble.cli.main import main  # noqa: E402
from lossensemble.inference import ImageIndex, build_index, list_images, load_model  # noqa: E402
from lossensemble.inference.server import create_app  # noqa: E402


@pytest.fixture(scope="module")
def index_dir(tiny_model, images, tmp_path_factory):
    out = tmp_path_factory.mktemp("served") / "idx"
    build_index(tiny_model, images, out, index_type="hnsw")
    return out


@pytest.fixture(scope="module")
def client(index_dir):
    return TestClient(create_app(index_dir, max_upload_bytes=200_000, max_pixels=1_000_000), raise_server_exceptions=False)


def _png(path) -> bytes:
    return open(path, "rb").read()


def _bad(response, *needles: str) -> str:
    assert response.status_code == 400, (response.status_code, response.text)
    detail = response.json()["detail"]
    assert isinstance(detail, str) and "\n" not in detail
    for needle in needles:
        assert needle in detail, detail
    return detail


def test_search_embed_health_and_images(client, index_dir, images):
    files = [str(f) for f in list_images([images])]
    health = client.get("/health").json()
    assert health == {"status": "ok", "embedding": "ensemble", "dim": 16, "index": {"count": 30, "type": "hnsw"}}
    idx = ImageIndex(index_dir)
    for row in (0, 11, 29):
        hits = client.post("/search", files={"file": ("q.png", _png(files[row]), "image/png")}, data={"k": "4"})
        assert hits.status_code == 200
        got = hits.json()
        assert [h["path"] for h in got] == [h["path"] for h in idx.search(files[row], k=4)]
        assert got[0]["path"] == files[row] and got[0]["distance"] == pytest.approx(0, abs=1e-4)
        image = client.get(got[0]["url"])
        assert image.status_code == 200 and image.headers["content-type"] == "image/png"
        assert image.content == _png(files[row])
    assert len(client.post("/search", files={"file": ("q.png", _png(files[0]))}).json()) == 10  # default k
    emb = client.post("/embed", files={"file": ("q.png", _png(files[5]), "image/png")}).json()
    want = load_model(index_dir / "model").embed_images([files[5]])[0]
    assert emb["dim"] == 16 and np.allclose(emb["embedding"], want, atol=1e-5)
    page = client.get("/")
    assert page.status_code == 200 and "<form" in page.text and "30 images, hnsw index" in page.text


def test_bad_uploads_are_400_with_a_message(client, images, tmp_path):
    png = _png(next(iter(list_images([images]))))
    _bad(client.post("/search", files={"file": ("empty.png", b"", "image/png")}), "empty upload")
    _bad(client.post("/embed", files={"file": ("notes.txt", b"hello, not an image", "text/plain")}),
         "not a readable image (not a recognised image format)")
    _bad(client.post("/search", files={"file": ("cut.png", png[: len(png) // 2], "image/png")}),
         "not a readable image")
    _bad(client.post("/embed", files={"file": ("big.bin", b"\0" * 150_000)}), "not a readable image")
    _bad(client.post("/embed", files={"file": ("huge.bin", b"\0" * 300_000)}), "upload limit of 200,000 bytes")
    _bad(client.post("/search", files={"file": ("huge.bin", b"\0" * 300_000)},
                     headers={"content-length": "99999999"}), "upload limit")
    buf = io.BytesIO()
    Image.new("L", (2000, 1000)).save(buf, "PNG")  # small file, 2 Mpx: over the 1 Mpx limit
    _bad(client.post("/embed", files={"file": ("wide.png", buf.getvalue())}), "2000x1000 pixels exceeds")
    _bad(client.post("/search", data={"k": "3"}), "file")
    _bad(client.post("/search", files={"file": ("q.png", png)}, data={"k": "ten"}), "k:")
    _bad(client.post("/search", files={"file": ("q.png", png)}, data={"k": "0"}), "k must be within")
    _bad(client.post("/search", content=b"raw bytes", headers={"content-type": "application/octet-stream"}))


def test_images_route_serves_only_indexed_files(client, index_dir):
    assert client.get("/images/30").status_code == 404
    assert client.get("/images/-1").status_code == 404
    assert client.get("/images/..%2Fmodel%2Fconfig.json").status_code in (400, 404)
    assert client.get("/images/%2Fetc%2Fpasswd").status_code in (400, 404)
    assert client.get("/files/etc/passwd").status_code == 404


def test_image_replaced_after_indexing_is_404(tiny_model, tmp_path):
    folder = tmp_path / "imgs"
    folder.mkdir()
    Image.new("RGB", (32, 32), (200, 10, 10)).save(folder / "a.png")
    Image.new("RGB", (32, 32), (10, 10, 200)).save(folder / "b.png")
    build_index(tiny_model, folder, tmp_path / "idx")
    (folder / "a.png").write_text("<script>alert(1)</script>")  # no longer an image: not served
    (folder / "b.png").unlink()
    client = TestClient(create_app(tmp_path / "idx"))
    assert client.get("/images/0").status_code == 404 and client.get("/images/1").status_code == 404


def test_model_only_server_embeds_but_does_not_search(tiny_model, images):
    client = TestClient(create_app(tiny_model))
    png = _png(next(iter(list_images([images]))))
    assert client.get("/health").json()["index"] is None
    assert len(client.post("/embed", files={"file": ("q.png", png)}).json()["embedding"]) == 16
    response = client.post("/search", files={"file": ("q.png", png)})
    assert response.status_code == 404 and "model only" in response.json()["detail"]
    assert "no index" in client.get("/").text


def test_serve_cli_errors_are_one_line(tmp_path, capsys, index_dir):
    assert main(["serve", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "neither an index folder" in err and len(err.strip().splitlines()) == 1
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert main(["serve", str(index_dir), "--port", str(port)]) == 2
    assert "cannot listen on 127.0.0.1:" in capsys.readouterr().err.strip().splitlines()[-1]


def test_help_does_not_import_fastapi():
    code = "import sys; from lossensemble.cli.main import main\ntry: main(['--help'])\nexcept SystemExit: pass\n" \
           "assert 'fastapi' not in sys.modules and 'uvicorn' not in sys.modules, 'imported'"
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    assert "serve" in res.stdout
