"""``lossensemble serve`` for real: a server process on loopback, its page run by headless Chromium.

Chromium is a browser outside this project (Debian package ``chromium``; ``.ci/run`` installs it):
without it these tests skip and say so.
"""

from __future__ import annotations

import html
import http.client
import json
import re
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from lossensemble.inference import build_index, list_images

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
needs_chromium = pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (Debian package "
                                    "chromium): a browser outside this project")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(tiny_model, images, tmp_path_factory):
    index = tmp_path_factory.mktemp("served") / "index"
    build_index(tiny_model, images, index)
    port = free_port()
    exe = str(Path(sys.executable).with_name("lossensemble"))
    proc = subprocess.Popen([exe, "serve", str(index), "--port", str(port), "--k", "4"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while True:
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            conn.request("GET", "/health")
            if conn.getresponse().status == 200:
                break
        except OSError:
            pass
        assert proc.poll() is None, proc.stderr.read()
        assert time.monotonic() < deadline, "server did not start"
        time.sleep(0.2)
    yield f"http://127.0.0.1:{port}", index
    proc.terminate()
    proc.wait(timeout=30)


def test_health_over_loopback(server):
    url, _ = server
    host, port = url.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=5)
    conn.request("GET", "/health")
    body = json.loads(conn.getresponse().read())
    assert body["status"] == "ok" and body["index"]["count"] == 30


def rendered(url: str, tmp_path: Path) -> str:
    """The page's DOM after its scripts ran (headless Chromium, no network beyond loopback)."""
    done = subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", f"--user-data-dir={tmp_path / 'profile'}",
         "--virtual-time-budget=15000", "--dump-dom", url],
        capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


@needs_chromium
def test_page_searches_with_an_indexed_image_in_chromium(server, tmp_path):
    url, index = server
    paths = [json.loads(line) for line in (index / "paths.jsonl").read_text().splitlines()]
    dom = rendered(f"{url}/?row=7&k=3", tmp_path)
    figures = re.findall(r'<figure data-row="(\d+)">.*?<figcaption title="([^"]*)">([^<]*)</figcaption>', dom)
    assert len(figures) == 3, dom[-3000:]
    row, title, caption = figures[0]
    assert int(row) == 7 and html.unescape(title) == paths[7]  # the image itself comes first, at distance 0
    assert caption.startswith("0.0000 ")
    assert "3 nearest images" in dom


@needs_chromium
def test_page_shows_the_error_of_a_bad_row_in_chromium(server, tmp_path):
    url, _ = server
    dom = rendered(f"{url}/?row=99999", tmp_path)
    assert 'class="error"' in dom and "no indexed image 99999" in dom
