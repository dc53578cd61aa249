"""The cluster viewer: escaping, size, and a real headless Chromium (Debian's) driven by Playwright."""

import base64
import gzip
import json
import os
import re
import shutil

import pytest

from quanta_db.demo.toy_corpus import write_jsonl
from quanta_db.results.corpus.job import ingest_corpus
from quanta_db.results.losses.job import ingest_losses
from quanta_db.results.quanta.job import ingest_clusters
from quanta_db.results.quanta.viewer import render_clusters_html

HOSTILE = "<script>alert('x')</script>\n\t<b>bold</b> & done. "


@pytest.fixture
def clustered(store, toy_inputs, toy_model, tmp_path):
    records = [{"text": HOSTILE * 3 + r["text"][:300], "meta": {"pile_set_name": "x"}} for r in toy_inputs["records"][:12]]
    source = write_jsonl(records, tmp_path / "hostile.jsonl")
    ingest_corpus(store, source, "hostile", str(toy_inputs["tokenizer"]), max_tokens=96, progress=False)
    ingest_losses(store, str(toy_model["dir"]), "hostile", name="tiny", steps=[8], progress=False)
    result = ingest_clusters(store, "tiny", 8, "hostile", loss_below=10.0, n_tokens=60, skip=3, n_clusters=3,
                             n_init=3, progress=False)
    return store, result.run_id


def _payload(page: str) -> dict:
    b64 = re.search(r'<script id="payload" type="application/octet-stream">([^<]*)</script>', page).group(1)
    return json.loads(gzip.decompress(base64.b64decode(b64)))


def test_page_is_self_contained_small_and_deterministic(clustered):
    store, run_id = clustered
    page = render_clusters_html(store, run_id, before=50, after=5)
    assert page == render_clusters_html(store, run_id, before=50, after=5)
    assert "alert(" not in page and "<b>" not in page  # token text only travels inside the compressed payload
    assert "http" not in page.split("<script>")[0]  # no external resources
    data = _payload(page)
    assert sum(data["sizes"]) == 60 and data["sizes"] == sorted(data["sizes"], reverse=True)
    assert len(page.encode()) < 200_000


def test_viewer_in_headless_chromium(clustered, tmp_path):
    chromium = shutil.which("chromium")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        sync_playwright = None
    if chromium is None or sync_playwright is None:
        if os.environ.get("CI"):
            pytest.fail("Chromium and Playwright are required on CI (.ci/run installs them)")
        pytest.skip("chromium or playwright not installed")
    store, run_id = clustered
    path = tmp_path / "clusters.html"
    path.write_text(render_clusters_html(store, run_id, before=100, after=3), encoding="utf-8")
    errors = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, args=[
            "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
            "--disable-sync", "--no-first-run"])
        page = browser.new_page()
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(path.as_uri())
        page.wait_for_selector("body[data-cluster='0']", timeout=10_000)
        first = page.locator(".sample").count()
        page.keyboard.press("ArrowRight")
        page.wait_for_selector("body[data-cluster='1']", timeout=10_000)
        assert page.input_value("#cluster") == "1"
        page.keyboard.press("ArrowLeft")
        page.wait_for_selector("body[data-cluster='0']", timeout=10_000)
        assert page.locator(".sample").count() == first > 0
        text = page.inner_text("#samples")
        assert "<script>" in text or "<b>" in text  # shown literally...
        assert page.locator("#samples b, #samples script").count() == 0  # ...never as markup
        assert "⏎" in text and "→" in text  # newlines and tabs are visible
        page.screenshot(path=str(tmp_path / "clusters.png"))
        browser.close()
    assert errors == []
    assert (tmp_path / "clusters.png").stat().st_size > 1000
