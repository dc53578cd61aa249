"""report tokens: pane values against direct reads of token_losses; the page in headless Chromium."""

from __future__ import annotations

import pytest

from quanta_db.errors import InputError
from tests.helpers import headless_page


def test_pane_values_equal_the_losses(losses_store):  # noqa: F811
    from quanta_db.results.corpus.token_report import page_data, panes_from_options

    sql = "doubled=SELECT doc_id, pos, 2 * loss_nats AS value FROM token_losses WHERE model = 'small' AND step = 8;"
    panes = panes_from_options("toy", loss=["small@8"], stepwise=["small@8"], model_difference=["small,large@8"],
                               sql=[sql])
    assert [p.label for p in panes] == ["loss small step 8", "stepwise difference small step 8",
                                        "small − large step 8", "doubled"]
    _, data = page_data(losses_store, "toy", panes, doc_ids=[0, 2], n_docs=20)
    losses = losses_store.query_df("SELECT model, step, doc_id, pos, loss_nats FROM token_losses WHERE doc_id IN (0, 2)")
    loss = losses.set_index(["model", "step", "doc_id", "pos"]).loss_nats
    assert [d for d, _ in data["docs"]] == [0, 2]
    for d, (doc_id, ids) in enumerate(data["docs"]):
        assert data["values"][0][d][0] is None  # position 0 has no loss
        for pos in range(1, len(ids)):
            assert data["values"][0][d][pos] == pytest.approx(loss["small", 8, doc_id, pos])
            assert data["values"][1][d][pos] == pytest.approx(loss["small", 8, doc_id, pos] - loss["small", 4, doc_id, pos])
            assert data["values"][2][d][pos] == pytest.approx(loss["small", 8, doc_id, pos] - loss["large", 8, doc_id, pos])
            assert data["values"][3][d][pos] == pytest.approx(2 * loss["small", 8, doc_id, pos])
    import numpy as np

    raw = np.array([v for doc in data["values"][0] for v in doc if v is not None])
    assert (raw > 0).all() and data["centres"][0] == pytest.approx(np.median(raw))  # one sign: centred on the median
    stepwise = np.array([v for doc in data["values"][1] for v in doc if v is not None])
    assert stepwise.min() < 0 < stepwise.max() and data["centres"][1] == 0.0  # both signs: centred on 0


@pytest.mark.parametrize("kwargs, message", [
    ({}, "choose at least one pane"),
    ({"loss": ["small"]}, "--loss expects MODEL@STEP"),
    ({"model_difference": ["small@8"]}, "--model-diff expects MODEL_A,MODEL_B@STEP"),
    ({"sql": ["SELECT 1"]}, "--sql expects LABEL=SELECT"),
])
def test_bad_pane_options(kwargs, message):
    from quanta_db.results.corpus.token_report import panes_from_options

    with pytest.raises(InputError, match=message):
        panes_from_options("toy", **kwargs)


def test_bad_pane_query_and_documents(losses_store):  # noqa: F811
    from quanta_db.results.corpus.token_report import panes_from_options, render_tokens_html

    bad = panes_from_options("toy", sql=["x=SELECT doc_id, pos FROM token_losses"])
    with pytest.raises(InputError, match="pane 'x'.*doc_id, pos, value"):
        render_tokens_html(losses_store, "toy", bad)
    with pytest.raises(InputError, match="has no document"):
        render_tokens_html(losses_store, "toy", panes_from_options("toy", loss=["small@8"]), doc_ids=[99999])


def test_tokens_page_in_headless_chromium(hostile_fit, tmp_path):  # noqa: F811
    from click.testing import CliRunner

    from quanta_db.cli.main import cli

    store, _ = hostile_fit
    out = tmp_path / "tokens.html"
    result = CliRunner().invoke(cli, ["--store", str(store.root), "report", "tokens", "--corpus", "hostile", "--docs", "3",
                                      "--loss", "<i>small</i>@5", "--model-diff", "<i>small</i>,large@5", "-o", str(out)])
    assert result.exit_code == 0, result.output
    page = out.read_text()
    assert "<b>bold" not in page and "<img" not in page
    n_tokens = store.query_df("SELECT count(*) AS n FROM tokens WHERE corpus = 'hostile' AND doc_id IN "
                              "(SELECT doc_id FROM tokens WHERE corpus = 'hostile' GROUP BY doc_id ORDER BY doc_id "
                              "LIMIT 3)")["n"][0]
    with headless_page(out.as_uri()) as (tab, errors):
        tab.wait_for_selector("body[data-pane='0']", timeout=10_000)
        assert tab.locator("#docs .tok").count() == n_tokens
        assert tab.locator("#docs .tok.none").count() == 3  # position 0 of each document
        tab.keyboard.press("ArrowRight")
        tab.wait_for_selector("body[data-pane='1']", timeout=10_000)
        text = tab.inner_text("#docs")
        assert "<b>bold</b>" in text or "<img src=x onerror=alert(1)>" in text
        assert tab.locator("b, img, #docs script").count() == 0
        assert "position 1" in tab.locator("#docs .tok").nth(1).get_attribute("title")
    assert errors == []
