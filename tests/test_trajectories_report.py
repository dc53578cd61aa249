"""report trajectories: the page in headless Chromium (hostile tokens), the PNG figures."""

from __future__ import annotations

import pytest

from tests.helpers import headless_page


def test_trajectories_page_in_headless_chromium(hostile_fit, tmp_path):
    from quanta_db.results.trajectories.report import render_trajectories_html, write_report

    store, fit = hostile_fit
    page = render_trajectories_html(store, fit)
    assert page == render_trajectories_html(store, fit)
    assert "<b>bold" not in page and "<img" not in page and "<i>small" not in page and "&lt;i&gt;small" in page
    paths = write_report(store, fit, tmp_path / "report")
    assert [p.name for p in paths] == ["index.html", "explained-variance.png", "trajectories.png"]
    import matplotlib.image

    assert all(matplotlib.image.imread(p).shape[0] > 100 for p in paths[1:])
    with headless_page(paths[0].as_uri()) as (tab, errors):
        tab.wait_for_selector("body[data-pair='1,2'][data-component='1']", timeout=10_000)
        assert tab.locator("#plot path.curve").count() == 2
        assert tab.locator("#plot circle.raw").count() == 12  # 2 models x 6 checkpoints
        assert tab.locator("#variance rect").count() == 4
        tab.select_option("#pcx", "3")
        tab.wait_for_selector("body[data-pair='3,2']", timeout=10_000)
        tab.select_option("#component", "2")
        tab.wait_for_selector("body[data-component='2']", timeout=10_000)
        rows = tab.locator("#tokens .example")
        assert rows.count() > 0 and tab.locator("#tokens .hit").count() == rows.count()
        text = tab.inner_text("#tokens")
        assert "<b>bold</b>" in text or "<img src=x onerror=alert(1)>" in text or "<script>" in text
        assert tab.locator("b, img, i, main script").count() == 0  # tokens and names never become markup
        titles = tab.locator("#plot circle.raw title").all_text_contents()
        assert "<i>small</i> step 0" in titles
    assert errors == []


def test_unknown_fit_is_a_one_line_error(store):
    from quanta_db.errors import InputError
    from quanta_db.results.trajectories.report import render_trajectories_html

    with pytest.raises(InputError, match="unknown trajectory fit 'nope'"):
        render_trajectories_html(store, "nope")
