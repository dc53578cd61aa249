"""The cluster viewer: escaping, size, and a real headless Chromium (Debian's) driven by Playwright."""

import base64
import gzip
import json
import re

import pytest

from quanta_db.demo.toy_corpus import write_jsonl
from quanta_db.results.corpus.job import ingest_corpus
from quanta_db.results.losses.job import ingest_losses
from quanta_db.results.quanta.job import ingest_clusters
from quanta_db.results.quanta.viewer import render_clusters_html
from tests.helpers import headless_page

# Whole tags are single vocabulary entries, so a token itself is markup (not split into harmless
# pieces), and the model and corpus names are markup too.
TAG_TOKENS = ["<b>bold</b>", "<img src=x onerror=alert(1)>"]
HOSTILE = "<script>alert('x')</script>\n\t<b>bold</b> & done <img src=x onerror=alert(1)> "
MODEL, CORPUS = "<script>m</script>", "<i>corpus</i>"


@pytest.fixture
def clustered(store, toy_inputs, tmp_path):
    from transformers import AutoTokenizer

    from quanta_db.demo.toy_models import gpt_neox_config, random_model

    tokenizer = AutoTokenizer.from_pretrained(str(toy_inputs["tokenizer"]))
    tokenizer.add_tokens(TAG_TOKENS)
    model_dir = tmp_path / "step0"
    tokenizer.save_pretrained(model_dir)
    random_model(gpt_neox_config(len(tokenizer), 32, 2, 4, n_ctx=256)).save_pretrained(model_dir)
    assert [tokenizer.decode([i]) for i in tokenizer.encode(TAG_TOKENS[0] + TAG_TOKENS[1])] == TAG_TOKENS
    records = [{"text": HOSTILE * 3 + r["text"][:300], "meta": {"pile_set_name": "x"}} for r in toy_inputs["records"][:12]]
    source = write_jsonl(records, tmp_path / "hostile.jsonl")
    ingest_corpus(store, source, CORPUS, str(model_dir), max_tokens=96, progress=False)
    ingest_losses(store, str(model_dir), CORPUS, name=MODEL, progress=False)
    result = ingest_clusters(store, MODEL, 0, CORPUS, loss_below=20.0, n_tokens=60, skip=3, n_clusters=3,
                             n_init=3, progress=False)
    return store, result.run_id


def _payload(page: str) -> dict:
    b64 = re.search(r'<script id="payload" type="application/octet-stream">([^<]*)</script>', page).group(1)
    return json.loads(gzip.decompress(base64.b64decode(b64)))


@pytest.mark.slow
def test_page_is_self_contained_small_and_deterministic(clustered):
    store, run_id = clustered
    page = render_clusters_html(store, run_id, before=50, after=5)
    assert page == render_clusters_html(store, run_id, before=50, after=5)
    assert "alert(" not in page and "<b>" not in page and "<img" not in page  # tokens travel compressed
    assert MODEL not in page and CORPUS not in page  # names are escaped by the template
    assert "&lt;script&gt;m&lt;/script&gt;" in page and "&lt;i&gt;corpus&lt;/i&gt;" in page
    assert "http" not in page.split("<script>")[0]  # no external resources
    data = _payload(page)
    assert sum(data["sizes"]) == 60 and data["sizes"] == sorted(data["sizes"], reverse=True)
    assert len(page.encode()) < 200_000


def test_viewer_in_headless_chromium(clustered, tmp_path):
    store, run_id = clustered
    path = tmp_path / "clusters.html"
    path.write_text(render_clusters_html(store, run_id, before=100, after=3), encoding="utf-8")
    with headless_page(path.as_uri()) as (page, errors):
        page.wait_for_selector("body[data-cluster='0']", timeout=10_000)
        first = page.locator(".sample").count()
        page.keyboard.press("ArrowRight")
        page.wait_for_selector("body[data-cluster='1']", timeout=10_000)
        assert page.input_value("#cluster") == "1"
        page.keyboard.press("ArrowLeft")
        page.wait_for_selector("body[data-cluster='0']", timeout=10_000)
        assert page.locator(".sample").count() == first > 0
        text = page.inner_text("#samples")
        assert "<b>bold</b>" in text and TAG_TOKENS[1] in text  # whole-tag tokens shown literally...
        assert page.locator("b, img, i").count() == 0  # ...never as markup
        assert page.locator("script").count() == 2  # the page's own payload and code only
        assert f"Clusters of {MODEL} step 0 on {CORPUS}" in page.inner_text("h1")
        assert "⏎" in text and "→" in text  # newlines and tabs are visible
        page.screenshot(path=str(tmp_path / "clusters.png"))
    assert errors == []
    assert (tmp_path / "clusters.png").stat().st_size > 1000
