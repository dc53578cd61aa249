"""LaTeX tables for papers via pandas' ``Styler.to_latex`` (booktabs rules, escaping).

Numbers are shown with a fixed number of significant digits per column; ``maximize`` /
``minimize`` columns bold their best value, ties (equal as displayed) all bold. With
``siunitx`` numeric columns become ``S`` columns, bold uses ``\\bfseries`` (the preamble
needs ``\\robustify\\bfseries`` from etoolbox and ``\\sisetup{detect-weight=true}``).
"""

from __future__ import annotations

import decimal
import math
import re
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from quanta_db.errors import InputError

PREAMBLE_BOOKTABS = r"\usepackage{booktabs}"
PREAMBLE_SIUNITX = r"\usepackage{siunitx} \usepackage{etoolbox} \robustify\bfseries \sisetup{detect-weight=true}"

LABEL = re.compile(r"[A-Za-z0-9:._/+-]+")
_LATEX_SPECIALS = {
    "\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
    "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}",
}


@dataclass
class LatexOptions:
    caption: str | None = None
    label: str | None = None
    digits: int = 3
    column_digits: dict[str, int] = field(default_factory=dict)
    maximize: list[str] = field(default_factory=list)
    minimize: list[str] = field(default_factory=list)
    siunitx: bool = False
    source: str | None = None


def escape_latex(text: str) -> str:
    """Escape the ten LaTeX special characters of plain text."""
    return re.sub(r"[\\&%$#_{}~^]", lambda m: _LATEX_SPECIALS[m.group(0)], text)


def format_significant(value: float, digits: int) -> str:
    """``value`` rounded to ``digits`` significant digits, in fixed (never scientific) notation."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if value == 0 or not math.isfinite(value):
        return "0" if value == 0 else str(value)
    decimals = max(0, digits - 1 - math.floor(math.log10(abs(value))))
    rounded = round(value, decimals)
    # Rounding can carry into a new leading digit (9.996 -> 10.00): recompute once.
    decimals = max(0, digits - 1 - math.floor(math.log10(abs(rounded)))) if rounded else decimals
    return f"{rounded:.{decimals}f}"


def _decimals_as_float(df: pd.DataFrame) -> pd.DataFrame:
    """SQL DECIMAL columns arrive as objects holding ``decimal.Decimal``: make them numbers."""
    converted = {}
    for column in df.columns:
        values = df[column].dropna()
        if df[column].dtype == object and len(values) and all(isinstance(v, decimal.Decimal) for v in values):
            converted[column] = df[column].map(lambda v: np.nan if v is None or pd.isna(v) else float(v))
    return df.assign(**converted) if converted else df


def check_label(label: str | None) -> None:
    """A ``\\label`` key is matched verbatim by ``\\ref``, so it cannot be escaped: only characters
    that are safe inside it are allowed."""
    if label is not None and not LABEL.fullmatch(label):
        raise InputError(f"--label {label!r}: use letters, digits and : - _ . / + only (it must match \\ref verbatim)")


def _escape_cell(value) -> str:
    return "--" if value is None or (not isinstance(value, str) and pd.isna(value)) else escape_latex(str(value))


def _displayed(series: pd.Series, digits: int) -> pd.Series:
    if pd.api.types.is_integer_dtype(series) or pd.api.types.is_bool_dtype(series):
        return series.astype("string").fillna("")
    return series.map(lambda v: "" if pd.isna(v) else format_significant(float(v), digits))


def _best_mask(shown: pd.Series, direction: str) -> np.ndarray:
    values = pd.to_numeric(shown.replace("", np.nan), errors="coerce")
    if values.isna().all():
        return np.zeros(len(values), dtype=bool)
    best = values.max() if direction == "max" else values.min()
    return (values == best).to_numpy()


def to_latex(df: pd.DataFrame, options: LatexOptions) -> str:
    """Render ``df`` as a booktabs ``table`` environment; the output is deterministic."""
    check_label(options.label)
    df = _decimals_as_float(df)
    for column in [*options.maximize, *options.minimize, *options.column_digits]:
        if column not in df.columns:
            raise InputError(f"column {column!r} is not in the result (columns: {', '.join(map(str, df.columns))})")
    numeric = [c for c in df.columns if pd.api.types.is_numeric_dtype(df[c]) and not pd.api.types.is_bool_dtype(df[c])]
    shown = pd.DataFrame(
        {c: _displayed(df[c], options.column_digits.get(c, options.digits)) if c in numeric else df[c] for c in df.columns}
    )
    empty = "{--}" if options.siunitx else "--"
    for column in numeric:
        shown[column] = shown[column].replace("", empty)
    styler = (
        shown.style.format(_escape_cell, subset=[c for c in df.columns if c not in numeric])
        .format_index(lambda name: escape_latex(str(name)), axis=1)
        .hide(axis="index")
    )
    for columns, direction in ((options.maximize, "max"), (options.minimize, "min")):
        for column in columns:
            mask = _best_mask(shown[column], direction)
            styler = styler.apply(lambda s, m=mask: np.where(m, "bfseries: ;", ""), axis=0, subset=[column])
    numeric_format = "S" if options.siunitx else "r"
    column_format = "".join(numeric_format if c in numeric else "l" for c in df.columns)
    body = styler.to_latex(
        hrules=True,
        caption=escape_latex(options.caption) if options.caption else None,
        label=options.label,
        position_float="centering",
        column_format=column_format,
        siunitx=options.siunitx,
    )
    header = [f"% quanta-db export latex; source: {' '.join(options.source.split())}"] if options.source else []
    header.append(f"% needs: {PREAMBLE_BOOKTABS}" + (f" {PREAMBLE_SIUNITX}" if options.siunitx else ""))
    return "\n".join(header) + "\n" + body
