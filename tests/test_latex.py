import os
import shutil
import subprocess

import numpy as np
import pandas as pd
import pytest

from quanta_db.errors import InputError
from quanta_db.reports.latex import LatexOptions, escape_latex, format_significant, to_latex

TRICKY = ["pythia_70m", "50% & more", "#1 $x$", "a~b^c", "back\\slash", "{braces}", "Zürich"]


def _frame():
    return pd.DataFrame({
        "model": TRICKY,
        "loss_nats": [1.23456, 0.98765, 0.98765, 12.3456, np.nan, 2.0, 0.000123456],
        "accuracy_%": [0.5, 0.75, 0.75, 0.1, 0.2, 0.3, 0.4],
        "n_tokens": pd.array([1000, 2000, 3000, 4000, None, 6000, 7000], dtype="Int64"),
    })


@pytest.mark.parametrize("value, digits, expected", [
    (1.23456, 3, "1.23"), (12.3456, 3, "12.3"), (1234.56, 3, "1235"), (0.000123456, 2, "0.00012"),
    (9.996, 3, "10.0"), (-0.5, 2, "-0.50"), (0.0, 3, "0"),
])
def test_significant_digits(value, digits, expected):
    assert format_significant(value, digits) == expected


def test_escaping_bold_ties_and_comment():
    text = to_latex(_frame(), LatexOptions(caption="Loss_by model & size", label="tab:loss", digits=3,
                                           minimize=["loss_nats"], maximize=["accuracy_%"], source="SELECT *\n FROM t"))
    lines = text.splitlines()
    assert lines[0] == "% quanta-db export latex; source: SELECT * FROM t"
    assert "\\toprule" in text and "\\midrule" in text and "\\bottomrule" in text
    assert "pythia\\_70m" in text and "50\\% \\& more" in text and "\\#1 \\$x\\$" in text
    assert "accuracy\\_\\%" in text and "\\caption{Loss\\_by model \\& size}" in text
    # 0.000123 is the minimum; the two 0.75 accuracies tie for the maximum and are both bold.
    assert text.count("\\bfseries 0.000123") == 1
    assert text.count("\\bfseries 0.75") == 2
    assert to_latex(_frame(), LatexOptions(minimize=["loss_nats"])) == to_latex(_frame(), LatexOptions(minimize=["loss_nats"]))


def test_ties_are_judged_as_displayed():
    df = pd.DataFrame({"x": [1.2341, 1.2342, 1.1]})
    text = to_latex(df, LatexOptions(digits=3, maximize=["x"]))
    assert text.count("\\bfseries 1.23") == 2


def test_escape_latex_plain():
    assert escape_latex("a_b%c&d") == "a\\_b\\%c\\&d"


ALL_TEN = "\\&%$#_{}~^"
ALL_TEN_ESCAPED = ("\\textbackslash{}\\&\\%\\$\\#\\_\\{\\}\\textasciitilde{}\\textasciicircum{}")


def test_all_ten_specials_are_escaped_in_cells_headers_and_caption():
    assert escape_latex(ALL_TEN) == ALL_TEN_ESCAPED
    df = pd.DataFrame({f"col {ALL_TEN}": [f"cell {ALL_TEN}"], "x": [1.0]})
    text = to_latex(df, LatexOptions(caption=f"caption {ALL_TEN}", label="tab:ten"))
    assert f"col {ALL_TEN_ESCAPED}" in text
    assert f"cell {ALL_TEN_ESCAPED}" in text
    assert f"\\caption{{caption {ALL_TEN_ESCAPED}}}" in text
    assert "\\label{tab:ten}" in text


@pytest.mark.parametrize("label", [ALL_TEN, "tab:a b", "tab:{x}", "tab:a~b"])
def test_a_label_that_cannot_be_referenced_verbatim_is_refused(label):
    with pytest.raises(InputError, match="--label"):
        to_latex(pd.DataFrame({"x": [1.0]}), LatexOptions(label=label))


def test_decimal_columns_are_numbers():
    from decimal import Decimal

    df = pd.DataFrame({"name": ["a", "b"], "loss": [Decimal("1.23456"), Decimal("0.5")]})
    text = to_latex(df, LatexOptions(digits=2, minimize=["loss"]))
    assert "{lr}" in text and "1.2" in text and "\\bfseries 0.50" in text
    assert "1.23456" not in text


@pytest.mark.parametrize("siunitx", [False, True])
def test_compiles_with_pdflatex(tmp_path, siunitx):
    if shutil.which("pdflatex") is None:
        if os.environ.get("CI"):
            pytest.fail("pdflatex is missing on CI; .ci/run installs it")
        pytest.skip("pdflatex not installed")
    frame = _frame().rename(columns={"model": f"model {ALL_TEN}"})
    frame.loc[0, f"model {ALL_TEN}"] = ALL_TEN
    table = to_latex(frame, LatexOptions(caption=f"Tricky {ALL_TEN} table", label="tab:t", minimize=["loss_nats"],
                                            maximize=["accuracy_%"], siunitx=siunitx))
    preamble = "\\usepackage{booktabs}\n"
    if siunitx:
        preamble += "\\usepackage{siunitx}\n\\usepackage{etoolbox}\n\\robustify\\bfseries\n\\sisetup{detect-weight=true}\n"
    (tmp_path / "doc.tex").write_text(
        f"\\documentclass{{article}}\n{preamble}\\begin{{document}}\n{table}\n\\end{{document}}\n"
    )
    result = subprocess.run(["pdflatex", "-interaction=nonstopmode", "-halt-on-error", "doc.tex"],
                            cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout[-3000:]
    assert (tmp_path / "doc.pdf").stat().st_size > 0


def test_missing_values_render_as_dashes_and_the_table_is_centred():
    df = pd.DataFrame({"name": ["a", None], "x": [1.5, np.nan], "n": pd.array([1, None], dtype="Int64")})
    text = to_latex(df, LatexOptions(digits=2))
    body = [line for line in text.splitlines() if line.endswith("\\\\") and not line.startswith("name")]
    assert body[0].split("&")[0].strip() == "a" and body[1].replace(" ", "") == "--&--&--\\\\"
    assert "\\centering" in text
    siunitx = to_latex(df, LatexOptions(digits=2, siunitx=True))
    assert "{--}" in siunitx
    with pytest.raises(InputError, match="column 'nope' is not in the result \\(columns: name, x, n\\)"):
        to_latex(df, LatexOptions(maximize=["nope"]))
