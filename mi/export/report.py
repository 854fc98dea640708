"""``report.html``: one self-contained page per run (plots embedded as PNG data URIs, CSS inline).

Sections: the run at a glance, the Pareto front (plot), property distributions, the top-k table, a
passport card per top candidate (also written as ``passport/<id>.json``, `mi.export.passport`), the run's
notes, and how the figures are defined.

Plots are drawn with matplotlib's Agg canvas on `matplotlib.figure.Figure` objects, so nothing touches
pyplot's global state or needs a display.
"""

from __future__ import annotations

import base64
import html
import io
import logging
import math
from collections.abc import Mapping, Sequence
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

import mi
from mi.candidates.base import Failure
from mi.config import ScreenConfig
from mi.files import atomic_write_text
from mi.export.passport import PASSPORT_DIR, write_passports
from mi.ranking.constraints import describe

log = logging.getLogger(__name__)

REPORT_FILE = "report.html"
# Property columns worth a histogram when present (after the objectives).
DISTRIBUTION_COLUMNS = (
    "capacity_mAh_g",
    "specific_energy_Wh_kg",
    "cost_usd_kg",
    "cost_usd_kwh",
    "supply_risk",
    "co2_lower_bound_kg_per_kg",
    "formation_enthalpy_eV_atom",
    "e_hull_eV_atom",
    "esw_oxidation_V",
    "log10_conductivity_S_cm",
)
FLAG_COLUMNS = ("feoc_exposed", "crma_concentration_flag", "co_free", "ni_free")
# Shown in the top-k table when they vary.
EXTRA_COLUMNS = ("capacity_mAh_g", "cost_usd_kg", "supply_risk", "co2_lower_bound_kg_per_kg")
MAX_PANELS = 9
_FRONT = "#c0392b"
_OTHER = "#7f8c8d"
_TOP = "#2c3e50"


# --- plots -------------------------------------------------------------------------------------------


def _png(fig) -> str:
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _numeric(frame: pd.DataFrame, column: str) -> np.ndarray:
    return pd.to_numeric(frame[column], errors="coerce").to_numpy(dtype=float, na_value=np.nan)


# What a column means and its unit, for axis labels and titles: a figure must say what it shows.
COLUMN_MEANINGS = {
    "capacity_mAh_g": "theoretical gravimetric capacity [mAh/g]",
    "capacity_redox_mAh_g": "theoretical capacity, redox-limited [mAh/g]",
    "capacity_formula_mAh_g": "theoretical capacity, every working ion [mAh/g]",
    "capacity_mAh_cm3": "theoretical volumetric capacity [mAh/cm³]",
    "specific_energy_Wh_kg": "theoretical specific energy of the active material [Wh/kg] (not a cell value)",
    "energy_density_Wh_L": "theoretical energy density of the active material [Wh/L] (not a cell value)",
    "cost_usd_kg": "raw-material cost of the elements [USD per kg of material]",
    "cost_usd_kwh": "raw-material cost per kWh of theoretical energy [USD/kWh] (not a cell cost)",
    "co2_kg_per_kg": "cradle-to-gate CO2 of the elements [kg CO2e per kg]",
    "co2_lower_bound_kg_per_kg": "CO2 lower bound, elements with a factor [kg CO2e/kg]",
    "co2_kg_per_kwh": "CO2 of the elements per kWh of theoretical energy [kg CO2e/kWh]",
    "supply_risk": "supply risk [0-1, higher is riskier]",
    "formation_enthalpy_eV_atom": "formation enthalpy [eV/atom]",
    "formation_energy_eV_atom": "formation energy [eV/atom]",
    "e_hull_eV_atom": "energy above the convex hull [eV/atom]",
    "voltage_V": "average voltage vs the working-ion metal [V]",
    "esw_oxidation_V": "stability window, oxidation limit [V vs the working-ion metal]",
    "esw_reduction_V": "stability window, reduction limit [V vs the working-ion metal]",
    "log10_conductivity_S_cm": "ionic conductivity [log10 of S/cm]",
    "density_g_cm3": "density [g/cm³]",
    "volume_per_atom_A3": "volume per atom [Å³]",
    "packing_fraction": "packing fraction [0-1]",
    "rank": "rank [1 = best]",
    "score": "weighted score [0-1]",
}
_UNIT_SUFFIXES = (
    ("_eV_atom", "eV/atom"), ("_mAh_g", "mAh/g"), ("_mAh_cm3", "mAh/cm³"), ("_Wh_kg", "Wh/kg"), ("_Wh_L", "Wh/L"),
    ("_usd_kg", "USD/kg"), ("_usd_kwh", "USD/kWh"), ("_g_cm3", "g/cm³"), ("_A3", "Å³"), ("_S_cm", "S/cm"),
    ("_kg_per_kg", "kg/kg"), ("_kg_per_kwh", "kg/kWh"), ("_pct", "%"), ("_V", "V"), ("_A", "Å"),
)


def column_meaning(column: str) -> str:
    """What `column` holds and its unit (``[...]``), from `COLUMN_MEANINGS` or the unit its name ends in;
    the bare name when neither says."""
    if column in COLUMN_MEANINGS:
        return COLUMN_MEANINGS[column]
    base = column[: -len("_std")] if column.endswith("_std") else column
    for suffix, unit in _UNIT_SUFFIXES:
        if base.endswith(suffix):
            words = base[: -len(suffix)].replace("_", " ")
            return f"{'std of ' if base != column else ''}{words} [{unit}]"
    return column


def _label(column: str, direction: str | None = None) -> str:
    """An axis label: the meaning with its unit, then the column name and which way is better."""
    arrow = {"max": ", higher is better", "min": ", lower is better"}.get(direction or "", "")
    meaning = column_meaning(column)
    return f"{meaning}\n({column}{arrow})" if meaning != column else f"{column}{arrow}"


MAX_LABELLED = 60  # numbered points per Pareto plot; more front points are listed in ranked.csv


def _place_labels(
    ax, points: Sequence[tuple[float, float, str]], fontsize: float, markers: np.ndarray | None = None
) -> int:
    """Write each text next to its point where it overlaps no label placed before and no marker (the
    ``(n, 2)`` data coordinates `markers`), tried around the point at growing distances, with a leader line
    when away from it; returns how many found no room."""
    fig = ax.figure  # drawn once by the caller: the axes limits and transforms are final only after a draw
    scale = fig.dpi / 72.0
    height = fontsize * scale * 1.1
    radius = 3.5 * scale  # a marker of size 46 pt² is about 7 pt across
    drawn = ax.transData.transform(markers) if markers is not None and len(markers) else np.empty((0, 2))
    # the markers' boxes as arrays (tested all at once: a screen draws thousands), the labels' as a list
    mx0, my0, mx1, my1 = drawn[:, 0] - radius, drawn[:, 1] - radius, drawn[:, 0] + radius, drawn[:, 1] + radius
    placed: list[tuple[float, float, float, float]] = []
    frame = ax.get_window_extent()
    skipped = 0
    for x, y, text in points:
        px, py = ax.transData.transform((x, y))
        width = 0.62 * fontsize * scale * len(text) + 2
        spot = None
        for ring in (1.0, 2.2, 3.6, 5.2):
            for dx, dy in ((1, 1), (1, -1), (-1, 1), (-1, -1), (0, 1.4), (0, -1.4), (1.4, 0), (-1.4, 0)):
                ox, oy = dx * ring * 5 * scale, dy * ring * 5 * scale
                left = px + ox if dx > 0 else px + ox - width if dx < 0 else px - width / 2
                bottom = py + oy if dy > 0 else py + oy - height if dy < 0 else py - height / 2
                box = (left, bottom, left + width, bottom + height)
                inside = frame.x0 <= box[0] and box[2] <= frame.x1 and frame.y0 <= box[1] and box[3] <= frame.y1
                if (
                    inside
                    and all(box[2] < b[0] or box[0] > b[2] or box[3] < b[1] or box[1] > b[3] for b in placed)
                    and not ((box[2] >= mx0) & (box[0] <= mx1) & (box[3] >= my0) & (box[1] <= my1)).any()
                ):
                    spot = (box, ring)
                    break
            if spot:
                break
        if spot is None:
            skipped += 1
            continue
        box, ring = spot
        placed.append(box)
        tx, ty = ax.transData.inverted().transform(((box[0] + box[2]) / 2, (box[1] + box[3]) / 2))
        ax.annotate(
            text, (x, y), xytext=(tx, ty), textcoords="data", fontsize=fontsize, color=_TOP, ha="center",
            va="center", arrowprops={"arrowstyle": "-", "color": "#95a5a6", "lw": 0.5} if ring > 1 else None,
        )
    return skipped


def pareto_figure(
    ranked: pd.DataFrame, objectives: Sequence[tuple[str, str]], top_k: int
) -> tuple[str, str, pd.DataFrame] | None:
    """A PNG data URI of the objective pairs (at most three panels) with front 1 in red, a caption, and
    the numbered points: every Pareto-front and top-k candidate (at most `MAX_LABELLED`, best ranks
    first) carries its rank as a number placed where it overprints no other, and the returned rows
    (sorted by rank) are the legend table that names them. None when there is nothing to plot."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    usable = [(c, d) for c, d in objectives if c in ranked.columns and np.isfinite(_numeric(ranked, c)).any()]
    if not usable or ranked.empty:
        return None
    pairs = [(usable[i], usable[j]) for i in range(len(usable)) for j in range(i + 1, len(usable))][:3]
    if not pairs:  # one objective: plot it against the rank
        pairs = [(("rank", "min"), usable[0])]
    fig = Figure(figsize=(5.6 * len(pairs), 4.8))
    FigureCanvasAgg(fig)
    front = ranked["pareto_rank"].to_numpy() == 1 if "pareto_rank" in ranked.columns else np.zeros(len(ranked), bool)
    top = ranked["rank"].to_numpy() <= top_k if "rank" in ranked.columns else np.zeros(len(ranked), bool)
    numbers = (
        pd.to_numeric(ranked["rank"], errors="coerce").to_numpy() if "rank" in ranked.columns
        else np.arange(1, len(ranked) + 1, dtype=float)
    )
    marked = np.flatnonzero(front | top)
    marked = marked[np.argsort(numbers[marked], kind="stable")][:MAX_LABELLED]
    hidden, crowded = 0, 0
    axes = []
    for k, ((xc, xd), (yc, yd)) in enumerate(pairs, start=1):
        ax = fig.add_subplot(1, len(pairs), k)
        axes.append(ax)
        x, y = _numeric(ranked, xc), _numeric(ranked, yc)
        ok = np.isfinite(x) & np.isfinite(y)
        hidden = max(hidden, int((~ok).sum()))
        ax.scatter(x[ok & ~front], y[ok & ~front], s=28, color=_OTHER, alpha=0.6, label="dominated")
        ax.scatter(x[ok & front], y[ok & front], s=46, color=_FRONT, edgecolor="black", linewidth=0.5,
                   label="Pareto front (rank 1)", zorder=3)
        ax.set_xlabel(_label(xc, xd), fontsize=8)
        ax.set_ylabel(_label(yc, yd), fontsize=8)
        ax.grid(alpha=0.3)
        ax.tick_params(labelsize=8)
        if k == 1:
            ax.legend(fontsize=7, loc="best")
    fig.tight_layout()
    fig.canvas.draw()  # once for every panel: labels on one panel move no other panel's axes
    for ax, ((xc, _), (yc, _)) in zip(axes, pairs):
        x, y = _numeric(ranked, xc), _numeric(ranked, yc)
        points = [(x[i], y[i], f"{numbers[i]:.0f}") for i in marked if np.isfinite(x[i]) and np.isfinite(y[i])]
        ok = np.isfinite(x) & np.isfinite(y)
        crowded = max(crowded, _place_labels(ax, points, 7, np.column_stack([x[ok], y[ok]])))
    caption = (
        "Each panel plots two of the ranking objectives; red points are on the Pareto front over all "
        f"{len(usable)} objectives (so a red point may look dominated in one projection). Numbers are ranks: "
        f"every Pareto-front and top-{top_k} candidate is numbered and named in the table below."
    )
    n_front = int(front.sum())
    if len(marked) < int((front | top).sum()):
        caption += (
            f" Only the {MAX_LABELLED} best-ranked of them are numbered; the other {n_front} front members are "
            "the rows of ranked.csv with pareto_rank 1."
        )
    if crowded:
        caption += f" Up to {crowded} numbers per panel found no free room and are left off; the table lists them."
    if hidden:
        caption += f" Up to {hidden} candidates lack a value on a panel's axes and are not drawn there."
    return _png(fig), caption, ranked.iloc[marked]


def distribution_figure(
    ranked: pd.DataFrame, columns: Sequence[str], top_k: int
) -> tuple[str, list[str], list[str]] | None:
    """Histograms of `columns` (all ranked candidates, top-k stacked on top in dark); the columns with
    no value at all, and those with one value everywhere, are returned for the caption instead."""
    from matplotlib.figure import Figure

    present = [c for c in dict.fromkeys(columns) if c in ranked.columns]
    empty = [c for c in present if not np.isfinite(_numeric(ranked, c)).any()]
    # A column with one value everywhere (capacity 0 for electrolytes) says nothing as a histogram.
    constant = [c for c in present if c not in empty and _informative(ranked, c) is False]
    drawn = [c for c in present if c not in empty and c not in constant][:MAX_PANELS]
    if not drawn:
        return None
    ncols = min(3, len(drawn))
    nrows = math.ceil(len(drawn) / ncols)
    fig = Figure(figsize=(4.4 * ncols, 2.9 * nrows))
    top = ranked["rank"].to_numpy() <= top_k if "rank" in ranked.columns else np.zeros(len(ranked), bool)
    for k, column in enumerate(drawn, start=1):
        ax = fig.add_subplot(nrows, ncols, k)
        values = _numeric(ranked, column)
        finite = np.isfinite(values)
        bins = np.histogram_bin_edges(values[finite], bins=min(20, max(5, int(finite.sum()))))
        ax.hist([values[finite & ~top], values[finite & top]], bins=bins, stacked=True,
                color=["#bdc3c7", _TOP], label=["others", f"top {top_k}"])
        ax.set_title(_label(column), fontsize=8)
        missing = int((~finite).sum())
        if missing:
            ax.text(0.98, 0.95, f"{missing} missing", transform=ax.transAxes, ha="right", va="top", fontsize=7,
                    color="#7f8c8d")
        ax.set_ylabel("candidates", fontsize=7)
        ax.tick_params(labelsize=7)
        if k == 1:
            ax.legend(fontsize=7)
    fig.tight_layout()
    return _png(fig), empty, constant


def _informative(frame: pd.DataFrame, column: str) -> bool:
    """More than one distinct finite value."""
    values = _numeric(frame, column)
    return len(np.unique(values[np.isfinite(values)])) > 1


# --- html pieces ---------------------------------------------------------------------------------------


def _e(text: Any) -> str:
    return html.escape(str(text), quote=True)


GOOD_WHEN_TRUE = frozenset({"co_free", "ni_free"})  # the other flags are exposures


def _fmt(value: Any, column: str = "") -> str:
    """A table cell: 4 significant digits, '∞' for inf, '–' for missing, yes/no for flags (red for an
    exposure, green for a Co-/Ni-free finding)."""
    if value is None or value is pd.NA:
        return '<span class="na" title="missing">–</span>'
    if isinstance(value, (bool, np.bool_)):
        kind = ("good" if column in GOOD_WHEN_TRUE else "bad") if value else "no"
        return f'<span class="{kind}">{"yes" if value else "no"}</span>'
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    if isinstance(value, (float, np.floating)):
        v = float(value)
        if math.isnan(v):
            return '<span class="na" title="missing">–</span>'
        if math.isinf(v):
            return "∞" if v > 0 else "−∞"
        return f"{v:.4g}"
    return _e(value)


def _table(frame: pd.DataFrame, columns: Sequence[str], numeric: set[str] | None = None) -> str:
    numeric = numeric or set()
    head = "".join(f"<th>{_e(c).replace('_', '_<wbr>')}</th>" for c in columns)  # long names may wrap
    body = []
    for row in frame[list(columns)].itertuples(index=False, name=None):
        cells = "".join(
            f'<td class="{"num" if c in numeric else "txt"}">{_fmt(v, c)}</td>' for c, v in zip(columns, row)
        )
        body.append(f"<tr>{cells}</tr>")
    return f'<div class="scroll"><table><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table></div>'


def _with_std(frame: pd.DataFrame, columns: Sequence[str]) -> tuple[pd.DataFrame, list[str]]:
    """`frame` with each column that has a ``<c>_std`` companion written as ``value ± std`` text under the
    header ``<c> ± std``, and the new column names (the others unchanged). A value outside its model's
    domain (``<c>_in_domain`` false) is marked ``(out of domain)``."""
    from mi.ranking.domain import out_of_domain

    out = frame.copy()
    names = []
    for c in columns:
        std = f"{c}_std"
        if std not in frame.columns or c.endswith("_std"):
            names.append(c)
            continue
        values, stds, outside = _numeric(frame, c), _numeric(frame, std), out_of_domain(frame, c)
        name = f"{c} ± std"
        out[name] = [
            (None if not np.isfinite(v) else (f"{v:.4g} ± {sd:.2g}" if np.isfinite(sd) else f"{v:.4g}")
             + (" (out of domain)" if far else ""))
            for v, sd, far in zip(values, stds, outside)
        ]
        names.append(name)
    return out, names


def _chip(text: str, kind: str) -> str:
    return f'<span class="chip {kind}">{_e(text)}</span>'


def _pct(x: float | None) -> str:
    return "–" if x is None else f"{100 * x:.1f}%"


def _num(x: Any, unit: str = "", digits: str = ".3g") -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return '<span class="na">unknown</span>'
    return f"{format(float(x), digits)}{(' ' + unit) if unit else ''}"


def passport_card(record: Mapping[str, Any], file_name: str | None) -> str:
    ident = record["identity"]
    mat = record["materials_and_composition"]
    sup = record["supply_chain"]
    co2 = record["carbon_footprint"]
    circ = record["circularity"]
    rows = []
    for el in mat["elements"]:
        country = el["top_mine_country"]
        share = el["top_mine_share_pct"]
        top_text = "–" if country is None else f"{country}" + ("" if share is None else f" {share:g}%")
        rows.append(
            "<tr>"
            f"<td>{_e(el['element'])}</td><td class='num'>{_pct(el['mass_fraction'])}</td>"
            f"<td>{_fmt(el['eu_crm_2023'])}</td><td>{_e(top_text)}</td>"
            f"<td class='num'>{_fmt(el['china_refining_share_pct'])}</td>"
            f"<td class='num'>{_fmt(el['hhi_production'])}</td><td class='num'>{_fmt(el['co2_kg_per_kg'])}</td>"
            "</tr>"
        )
    elements = (
        "<div class='scroll'><table class='mini'><thead><tr><th>element</th><th>mass</th><th>EU CRMA</th>"
        "<th>top mining country</th><th>China refining %</th><th>HHI</th><th>CO2 kg/kg</th></tr></thead>"
        f"<tbody>{''.join(rows)}</tbody></table></div>"
    )
    chips = [
        _chip("FEOC exposed: " + ", ".join(sup["feoc_elements"]), "bad")
        if sup["feoc_exposed"] else _chip("no FEOC flag", "good"),
        _chip("CRMA: " + "; ".join(sup.get("crma_concentration") or sup["crma_concentration_elements"]), "bad")
        if sup["crma_concentration_flag"] else _chip("no CRMA concentration flag", "good"),
        _chip("Co-free", "good") if mat["cobalt_free"] else _chip("contains Co", "warn"),
        _chip("Ni-free", "good") if mat["nickel_free"] else _chip("contains Ni", "warn"),
    ]
    unknown = sup.get("unknown", {})
    words = {"top_mine_share_pct": "top mining share", "china_refining_share_pct": "China refining share",
             "hhi_production": "production HHI"}
    gaps = "; ".join(f"{words.get(k, k)} unknown for {', '.join(v)}" for k, v in unknown.items())
    if co2["co2_kg_per_kg"] is not None:
        co2_text = _num(co2["co2_kg_per_kg"], "kg CO2e/kg")
    elif co2["co2_lower_bound_kg_per_kg"] is not None:
        co2_text = (f"≥ {_num(co2['co2_lower_bound_kg_per_kg'], 'kg CO2e/kg')} "
                    f"<span class='na'>(no factor for {_e(', '.join(co2['elements_without_co2_factor']))})</span>")
    else:
        co2_text = '<span class="na">unknown</span>'
    recycled = ", ".join(
        f"{r['element']} ≥ {r['minimum_pct']:g}% recycled ({r['recycled_kg_per_kg_material'] * 1000:.3g} g recycled "
        f"{r['element']} per kg)"
        for r in circ["recycled_content_2031"]
    ) or "none of Co, Li, Ni, Pb present: no 2031 minimum applies"
    recovery = ", ".join(f"{r['element']} {r['target_pct']:g}%" for r in circ["recovery_targets_2031"]) or "none"
    link = f' · <a href="{PASSPORT_DIR}/{_e(file_name)}">{_e(PASSPORT_DIR)}/{_e(file_name)}</a>' if file_name else ""
    perf = record.get("performance", {})
    perf_text = ", ".join(f"{_e(k)} {_fmt(v)}" for k, v in perf.items() if v is not None) or "–"
    crm = ", ".join(mat["critical_raw_materials_eu_2023"]) or "none"
    return f"""
<section class="card" id="passport-{_e(ident['id'])}">
  <h3>#{_fmt(ident['rank'])} {_e(ident['formula'])} <small>{_e(ident['id'])}{link}</small></h3>
  <div class="chips">{''.join(chips)}</div>
  <div class="grid2">
    <div>{elements}
      {f'<p class="na small">{_e(gaps)} (no flag raised by these)</p>' if gaps else ''}
    </div>
    <dl>
      <dt>EU critical raw materials</dt><dd>{_e(crm)} ({_pct(mat['eu_crm_mass_fraction'])} of the mass)</dd>
      <dt>supply risk</dt><dd>{_num(sup['supply_risk'])} (0-1; production HHI {_num(sup['hhi_production'], '', '.0f')})</dd>
      <dt>CO2 (elements, cradle-to-gate)</dt><dd>{co2_text}</dd>
      <dt>recycled content, EU 2031 minimums</dt><dd>{_e(recycled)}</dd>
      <dt>recovery targets 2031</dt><dd>{_e(recovery)}; recoverable value {_num(circ['recoverable_value_usd_kg'], 'USD/kg')}</dd>
      <dt>performance</dt><dd class="small">{perf_text}</dd>
    </dl>
  </div>
</section>"""


# --- scale-up demand (mi.properties.demand) -----------------------------------------------------------


def demand_figure(records: Sequence[tuple[str, Mapping[str, Any]]]) -> str | None:
    """A PNG data URI: per top candidate (label, passport ``scale_up_demand``), bars of the supply share of
    each element with a known world production, on a log axis with the world's output at 1; None when no
    candidate has a share."""
    from matplotlib.figure import Figure

    shares = [
        (label, {e["element"]: e["supply_share"] for e in rec["elements"] if e["supply_share"] is not None})
        for label, rec in records
    ]
    shares = [(label, s) for label, s in shares if s]
    if not shares:
        return None
    elements = sorted({e for _, s in shares for e in s}, key=lambda e: -max(s.get(e, 0) for _, s in shares))
    fig = Figure(figsize=(min(12.0, 2.0 + 1.1 * len(shares) * max(1, len(elements)) / 2), 3.6))
    ax = fig.add_subplot(1, 1, 1)
    width = 0.8 / len(elements)
    colours = ["#c0392b", "#2980b9", "#27ae60", "#8e44ad", "#d35400", "#16a085", "#7f8c8d"]
    x = np.arange(len(shares))
    for k, element in enumerate(elements):
        values = [s.get(element, np.nan) for _, s in shares]
        bars = ax.bar(x + (k - (len(elements) - 1) / 2) * width, values, width, label=element,
                      color=colours[k % len(colours)])
        ax.bar_label(bars, labels=["" if np.isnan(v) else f"{v:.2g}×" for v in values], fontsize=7, padding=1)
    ax.axhline(1.0, color="black", linewidth=1, linestyle="--")
    ax.set_yscale("log")
    finite = [v for _, s in shares for v in s.values() if v > 0]
    low, high = min([*finite, 1.0]) / 1.6, max([*finite, 1.0]) * 1.8
    ax.set_ylim(low, high)
    ticks = [m * 10.0**p for p in range(-4, 5) for m in (1, 3) if low <= m * 10.0**p <= high]
    ax.set_yticks(ticks, [f"{t:g}×" for t in ticks])
    ax.minorticks_off()
    ax.set_xticks(x, [label for label, _ in shares], fontsize=8, rotation=20, ha="right")
    ax.set_ylabel("demand / world mine output", fontsize=9)
    ax.tick_params(labelsize=8)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=8, title="element", title_fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    fig.tight_layout()
    return _png(fig)


def demand_section(top_ids: Sequence[str], passports: Mapping[str, dict]) -> str:
    """The scale-up section: one sentence per top candidate and the supply-share plot."""
    records = [(cid, passports[cid]) for cid in top_ids if cid in passports and "scale_up_demand" in passports[cid]]
    if not records:
        return "<p class='na'>No passports, so no demand figures.</p>"
    items, plotted = [], []
    for cid, record in records:
        rec = record["scale_up_demand"]
        head = f"#{_fmt(record['identity']['rank'])} {_e(record['identity']['formula'])} <small>{_e(cid)}</small>: "
        if rec.get("missing"):
            items.append(f"<li>{head}<span class='na'>{_e(rec['missing'])}</span></li>")
            continue
        others = sorted(
            (e for e in rec["elements"] if e["supply_share"] is not None and e["element"] != rec["limiting_element"]),
            key=lambda e: -e["supply_share"],
        )
        tail = ", ".join(f"{e['element']} {e['supply_share']:.3g} x" for e in others)
        unknown = rec.get("elements_without_production") or []
        text = rec["statement"] or "no element of it has a world mine production figure"
        extra = f" (also {tail})" if tail else ""
        gaps = f" <span class='na small'>no production figure: {_e(', '.join(unknown))}</span>" if unknown else ""
        items.append(f"<li>{head}{_e(text)}{_e(extra)}.{gaps}</li>")
        plotted.append((f"#{record['identity']['rank']} {cid}", rec))
    scenario = records[0][1]["scale_up_demand"]["scenario"]
    figure = demand_figure(plotted)
    figure_html = (
        f'<figure><img alt="supply share per element" src="{figure}"><figcaption>Tonnes a year each top candidate '
        f"would need at {scenario['share'] * 100:g}% of {scenario['twh_per_year']:g} TWh a year, over the "
        "world's mine output of the element (dashed line: all of it). Only elements with a production figure in "
        "the element table are drawn.</figcaption></figure>"
        if figure else "<p class='na'>No top candidate has a supply share to plot.</p>"
    )
    return f'<ul class="notes">{"".join(items)}</ul>\n{figure_html}'


_CSS = """
body{font-family:-apple-system,'Segoe UI',Roboto,Helvetica,Arial,sans-serif;margin:0;color:#222;background:#f6f7f9;line-height:1.45}
main{max-width:1240px;margin:0 auto;padding:24px 28px 60px}
h1{font-size:1.6em;margin:0 0 4px} h2{font-size:1.25em;margin:34px 0 10px;border-bottom:2px solid #dfe3e8;padding-bottom:4px}
h3{font-size:1.05em;margin:0 0 8px} h3 small{font-weight:normal;color:#667;font-size:.85em;margin-left:8px}
.meta{color:#556;font-size:.92em} .small{font-size:.85em} .na{color:#8a8f98}
.kpis{display:flex;flex-wrap:wrap;gap:10px;margin:14px 0} .kpi{background:#fff;border:1px solid #dfe3e8;border-radius:6px;padding:8px 14px}
.kpi b{display:block;font-size:1.3em}
.scroll{overflow-x:auto;background:#fff;border:1px solid #dfe3e8;border-radius:6px}
table{border-collapse:collapse;font-size:.84em;width:100%} th,td{padding:5px 8px;border-bottom:1px solid #eceef1;white-space:nowrap}
th{background:#eef1f4;text-align:left;white-space:normal;vertical-align:bottom} td.num{text-align:right;font-variant-numeric:tabular-nums}
table.mini{font-size:.8em;background:#fff} td span.bad{color:#b03a2e;font-weight:600} td span.good{color:#1e8449;font-weight:600} td span.no{color:#5d6d7e}
figure{margin:0;background:#fff;border:1px solid #dfe3e8;border-radius:6px;padding:10px} figure img{max-width:100%}
figcaption{font-size:.85em;color:#556;margin-top:6px}
.card{background:#fff;border:1px solid #dfe3e8;border-radius:8px;padding:14px 16px;margin:14px 0}
.grid2{display:grid;grid-template-columns:minmax(0,1.1fr) minmax(0,1fr);gap:22px}
dl{margin:0;font-size:.88em} dt{font-weight:600;color:#445;margin-top:6px} dd{margin:0 0 2px 0}
.chips{margin:4px 0 10px} .chip{display:inline-block;border-radius:12px;padding:2px 10px;font-size:.8em;margin:0 6px 4px 0;border:1px solid}
.chip.good{background:#eafaf1;border-color:#82c99b;color:#1e6b3a} .chip.bad{background:#fdedec;border-color:#e6a19a;color:#922b21}
.chip.warn{background:#fef5e7;border-color:#f0c27b;color:#7e5109}
ul.notes{font-size:.88em;background:#fff;border:1px solid #dfe3e8;border-radius:6px;padding:10px 10px 10px 28px}
ul.notes li{margin:3px 0}
nav a{margin-right:14px;font-size:.9em}
@media (max-width:900px){.grid2{grid-template-columns:1fr}}
"""


def models_section(models: Sequence[Mapping[str, Any]], ranked: pd.DataFrame) -> str:
    """The surrogates behind the predicted columns: a card per model, and which rows were out of its domain."""
    if not models:
        return "<p class='na'>No surrogate.</p>"
    from mi.ranking.domain import out_of_domain_summary

    outside = out_of_domain_summary(ranked)
    parts = []
    for model in models:
        card = model.get("card", {})
        training = card.get("training", {})
        dataset = training.get("dataset", {})
        metrics = training.get("metrics", {}).get("val", {})
        rows = []
        for column in model.get("columns", []):
            m = metrics.get(column, {})
            mae = f"{m['mae']:.3g}" if isinstance(m.get("mae"), (int, float)) else "–"
            ids = outside.get(column, [])
            shown = ", ".join(ids[:8]) + (f" and {len(ids) - 8} more" if len(ids) > 8 else "")
            rows.append(
                f"<tr><td><code>{_e(column)}</code></td><td class='num'>{_e(mae)}</td>"
                f"<td class='num'>{len(ids)}</td><td>{_e(shown) or '–'}</td></tr>"
            )
        domain = card.get("domain") or {}
        domain_text = (
            f"out of domain: an element seen in fewer than {domain.get('min_element_rows')} training rows, a distance "
            f"to the training rows beyond their {domain.get('percentile'):g}th percentile ({domain.get('space')}), or a "
            f"std beyond that percentile of the validation rows' std"
            if domain else "this checkpoint has no domain statistics: no row is flagged"
        )
        source = training.get("data") or dataset.get("name", "?")
        parts.append(
            f"<div class='card'><b>{_e(model.get('key'))}</b>: <code>{_e(model.get('checkpoint'))}</code> "
            f"<span class='small'>({_e(card.get('model_kind', '?'))}, {_e(model.get('sha256', ''))[:19]}…)"
            f"{'; blended: a column it shares with other blend entries is their average' if model.get('blend') else ''}</span>"
            f"<p class='small'>{_e(training.get('description', ''))} Trained on {_e(source)}: "
            f"{_e(training.get('n_used', training.get('n_rows', '?')))} rows. "
            f"Licence: {_e(training.get('licence', 'not stated'))}. {_e(training.get('attribution', ''))}</p>"
            "<table><thead><tr><th>column</th><th>validation MAE</th><th>rows out of domain</th><th>which</th></tr>"
            f"</thead><tbody>{''.join(rows)}</tbody></table><p class='small na'>{_e(domain_text)} "
            f"(ranking.out_of_domain decides what ranking does with them).</p></div>"
        )
    return "".join(parts)


def parity_figure(parity: Sequence[Mapping[str, Any]], pairs: Sequence[Sequence[str]]) -> str | None:
    """Surrogate (with its std) against oracle, one panel per column pair that has refined values."""
    from matplotlib.figure import Figure

    panels = []
    for surrogate, oracle in pairs:
        rows = [(r.get(f"surrogate_{surrogate}"), r.get(f"surrogate_{surrogate}_std"), r.get(oracle), r.get("id"))
                for r in parity]
        rows = [(float(s), float(sd) if sd is not None else math.nan, float(o), i) for s, sd, o, i in rows
                if s is not None and o is not None and np.isfinite(float(s)) and np.isfinite(float(o))]
        if rows:
            panels.append((surrogate, rows))
    if not panels:
        return None
    fig = Figure(figsize=(4.2 * len(panels), 3.8))
    for k, (column, rows) in enumerate(panels, start=1):
        ax = fig.add_subplot(1, len(panels), k)
        s, sd, o, ids = (np.array([r[j] for r in rows], dtype=float if j < 3 else object) for j in range(4))
        ax.errorbar(o, s, yerr=np.where(np.isfinite(sd), sd, 0.0), fmt="o", color=_TOP, ms=4, capsize=2)
        lo, hi = float(min(s.min(), o.min())), float(max(s.max(), o.max()))
        pad = 0.05 * (hi - lo or 1.0)
        ax.plot([lo - pad, hi + pad], [lo - pad, hi + pad], color=_OTHER, lw=0.8, ls="--")
        for x, y, label in zip(o, s, ids):
            ax.annotate(str(label), (x, y), fontsize=6, xytext=(3, 3), textcoords="offset points")
        ax.set_xlabel(f"oracle {column}", fontsize=8)
        ax.set_ylabel(f"surrogate {column} (± std)", fontsize=8)
        ax.tick_params(labelsize=7)
    fig.tight_layout()
    return _png(fig)


def funnel_section(funnel: Mapping[str, Any] | None, ranked: pd.DataFrame, top_k: int) -> str:
    """The refinement (`mi.refine`): counts, a parity plot of the refined rows, the top-k with the source
    of each ranked value. Empty when the run did not refine."""
    if not funnel:
        return ""
    moved = funnel.get("moved", {})
    failed = funnel.get("failed", [])
    kpis = [
        ("ranked", funnel.get("ranked_in")),
        (f"selected (by {funnel.get('select')})", funnel.get("selected")),
        ("formula only, skipped", len(funnel.get("skipped_no_structure", []))),
        ("refined by the oracle", funnel.get("refined")),
        ("failed", len(failed)),
        ("left the ranking", len(funnel.get("removed_by_constraints", {}))),
        ("ranks moved", len(moved)),
        (f"disagree > {funnel.get('sigma', 3):g} std", funnel.get("disagreeing_rows")),
    ]
    kpi_html = "".join(f'<div class="kpi"><b>{_e(v)}</b>{_e(k)}</div>' for k, v in kpis)
    parity = parity_figure(funnel.get("parity", []), funnel.get("columns", []))
    parity_html = (
        f'<figure><img alt="surrogate against oracle for the refined candidates" src="{parity}"><figcaption>'
        "Surrogate (± std) against the oracle for the refined candidates; the dashed line is agreement."
        "</figcaption></figure>" if parity else "<p class='na'>No refined value to compare.</p>"
    )
    sources = [c for c in ranked.columns if str(c).endswith("_source")]
    top = ranked.head(top_k).copy()
    columns = [c for c in ("rank", "surrogate_rank", "id", "formula") if c in top.columns]
    for c in sources:
        base = c[: -len("_source")]
        if base in top.columns:
            top[base] = [
                ("–" if not isinstance(v, (int, float)) or not np.isfinite(v) else f"{v:.4g}") + f" ({src})"
                for v, src in zip(pd.to_numeric(top[base], errors="coerce"), top[c].astype(str))
            ]
            columns.append(base)
    table_html = _table(top, columns, {"rank", "surrogate_rank"}) if len(top) else "<p class='na'>Nothing ranked.</p>"
    seconds = funnel.get("seconds_per_candidate")
    limits = f" {funnel['time_limit_hits']} relaxations hit their time limit." if funnel.get("time_limit_hits") else ""
    failed_html = f" Failed: {_e(', '.join(failed))} (see failures.csv)." if failed else ""
    return (
        f'<h2 id="funnel">Funnel: the oracle on the best {funnel.get("selected")}</h2>'
        f'<div class="kpis">{kpi_html}</div>'
        f"<p class='small'>Oracle time {_e(funnel.get('oracle_seconds'))} s"
        f"{f', {seconds} s per refined candidate' if seconds is not None else ''} (load factor "
        f"{_e(funnel.get('load_factor'))}, {funnel.get('chunks_reused', 0)} of {funnel.get('chunks', 0)} chunks "
        f"reused).{_e(limits)}{failed_html} Each row: <a href=\"{_e(funnel.get('refined_file'))}\">"
        f"{_e(funnel.get('refined_file'))}</a>; the labels for the next training round: "
        f"<code>{_e(funnel.get('labels_file'))}</code>.</p>"
        f"{parity_html}<p class='small'>Top {top_k} after refinement, each ranked value with its source "
        "(oracle values are ranked as exact, std 0):</p>" + table_html
    )


def render_report(
    ranked: pd.DataFrame,
    cfg: ScreenConfig,
    *,
    run_dir: Path,
    notes: Sequence[str],
    summary: Mapping[str, Any],
    counts: Mapping[str, Any],
    failures: Sequence[Failure],
    passports: Mapping[str, dict],
    passport_files: Mapping[str, str],
    models: Sequence[Mapping[str, Any]] = (),
    top: pd.DataFrame | None = None,
    pareto: Future | None = None,
) -> str:
    """The page as a string (`export_report` writes it; `ranked`, `top` and `pareto` as there)."""
    objectives = plotted_objectives(cfg, summary)
    top_k = cfg.ranking.top_k
    top = (ranked if top is None else top).head(top_k)
    n_removed = sum(int(v) for v in summary.get("removed", {}).values())
    kpis = [
        ("candidates read", counts.get("read", "?")),
        ("failed (any stage)", len(failures)),
        ("removed by constraints", n_removed),
        ("after constraints", len(ranked)),
        ("on the Pareto front", int((ranked["pareto_rank"] == 1).sum()) if "pareto_rank" in ranked.columns else "–"),
    ]
    kpi_html = "".join(f'<div class="kpi"><b>{_e(v)}</b>{_e(k)}</div>' for k, v in kpis)

    def status(column: str) -> str:
        if column not in ranked.columns:
            return " <em>(skipped: no such column)</em>"
        if column not in summary.get("objectives", [column]):
            return " <em>(left out: no candidate has a value)</em>"
        return ""

    objective_list = "".join(
        f"<li>{_e(o.direction)} <code>{_e(o.column)}</code>, weight {o.weight:g}, {_e(o.normalise)}"
        f"{status(o.column)}</li>"
        for o in cfg.ranking.objectives
    )
    removed = summary.get("removed", {})
    constraint_list = "".join(
        f"<li><code>{_e(describe(c))}</code>: "
        + (f"removed {removed[describe(c)]}" if describe(c) in removed else "<em>skipped: no such column</em>")
        + "</li>"
        for c in cfg.ranking.constraints
    ) or "<li>none</li>"

    pareto = _drawn(pareto, lambda: pareto_figure(ranked, objectives, top_k))
    if pareto:
        legend_columns = [c for c in ("rank", "id", "formula", "pareto_rank") if c in ranked.columns]
        legend, legend_names = _with_std(pareto[2], [*legend_columns, *(c for c, _ in objectives)])
        pareto_html = (
            f'<figure><img alt="Pareto front: objectives plotted in pairs, front and top candidates numbered by rank" '
            f'src="{pareto[0]}"><figcaption>{_e(pareto[1])}</figcaption></figure>'
            f'<p class="small">The numbered points (number = rank):</p>'
            + _table(legend, legend_names, {c for c in legend_names if c not in ("id", "formula")})
        )
    else:
        pareto_html = "<p class='na'>No objective has values to plot.</p>"
    dist_columns = [c for c, _ in objectives] + list(DISTRIBUTION_COLUMNS)
    dist = distribution_figure(ranked, dist_columns, top_k)
    if dist:
        empty_note = f" No values at all (not drawn): {', '.join(dist[1])}." if dist[1] else ""
        if dist[2]:
            same = ", ".join(f"{c} = {_numeric(ranked, c)[np.isfinite(_numeric(ranked, c))][0]:.4g}" for c in dist[2])
            empty_note += f" The same for every candidate (not drawn): {same}."
        dist_html = (
            f'<figure><img alt="property distributions" src="{dist[0]}"><figcaption>Ranked candidates '
            f"(after constraints); the top {top_k} are stacked in dark.{_e(empty_note)}</figcaption></figure>"
        )
    else:
        dist_html = "<p class='na'>No property has values to plot.</p>"

    lead = ["rank", "id", "formula"]
    objective_columns = [c for c, _ in objectives]
    tail = [c for c in ("score", "ucb_score", "pareto_rank", "crowding_distance") if c in top.columns]
    flags = [c for c in FLAG_COLUMNS if c in top.columns]
    extra = [c for c in EXTRA_COLUMNS if c in top.columns and _informative(ranked, c)]
    # every predicted column (one with a _std companion), shown as value ± std
    predicted = [c for c in top.columns if f"{c}_std" in top.columns and not str(c).endswith("_std")]
    columns = list(dict.fromkeys([*lead, *objective_columns, *predicted, *extra, *tail, *flags]))
    columns = [c for c in columns if c in top.columns]
    shown, columns = _with_std(top, columns)
    numeric = {c for c in columns if c not in ("id", "formula") and c not in flags}
    table_html = (
        _table(shown, columns, numeric) if len(top) else "<p class='na'>No candidate passed the constraints.</p>"
    )

    cards = "".join(
        passport_card(passports[cid], passport_files.get(cid)) for cid in top["id"].astype(str) if cid in passports
    )
    notes_html = "".join(f"<li>{_e(n)}</li>" for n in notes) or "<li>none</li>"
    # trusted markup: only counts are interpolated
    failure_note = (
        f'{len(failures)} inputs or stages failed; see <a href="failures.csv">failures.csv</a>.'
        if failures else "Nothing failed."
    ) + (
        f' {n_removed} candidates were removed by constraints; see <a href="removed.csv">removed.csv</a>.'
        if n_removed else " No candidate was removed by a constraint."
    )
    table_version = next(iter(passports.values()))["provenance"].get("element_table") if passports else None
    demand_html = demand_section(list(top["id"].astype(str)), passports)
    p = cfg.properties
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>mi screen: {_e(cfg.name)}</title><style>{_CSS}</style></head>
<body><main>
<h1>Screening report: {_e(cfg.name)}</h1>
<div class="meta">run directory <code>{_e(run_dir)}</code> · mi {_e(mi.__version__)} · working ion {_e(p.working_ion)} ·
capacity mode {_e(p.capacity_mode)} · element table {_e(table_version or 'packaged')}</div>
<nav><a href="#ranking">ranking</a><a href="#pareto">Pareto front</a><a href="#distributions">distributions</a>
<a href="#top">top {top_k}</a>{'<a href="#funnel">funnel</a>' if summary.get("funnel") else ""}<a href="#models">models</a><a href="#demand">scale-up demand</a><a href="#passports">passports</a><a href="#notes">notes</a><a href="#methods">methods</a></nav>
<div class="kpis">{kpi_html}</div>

<h2 id="ranking">How candidates were ranked</h2>
<div class="grid2"><div><b>Objectives</b> (weighted score, sorted by <code>{_e(cfg.ranking.sort_by)}</code>)<ul>{objective_list}</ul></div>
<div><b>Constraints</b><ul>{constraint_list}</ul></div></div>

<h2 id="pareto">Pareto front</h2>
{pareto_html}

<h2 id="distributions">Property distributions</h2>
{dist_html}

<h2 id="top">Top {top_k}</h2>
{table_html}
<p class="small na">Full table: <a href="ranked.csv">ranked.csv</a>. Crowding distance is ∞ at the extremes of a front. {failure_note}</p>

{funnel_section(summary.get("funnel"), top, top_k)}

<h2 id="models">The models behind the predicted columns</h2>
{models_section(models, ranked)}

<h2 id="demand">Scale-up demand of the top {top_k}</h2>
{demand_html}

<h2 id="passports">Passports of the top {top_k}</h2>
<p class="small">Screening records modelled on the EU battery passport data clusters (Regulation (EU) 2023/1542,
Annex XIII) for a candidate material, not regulatory passports. Each is also in <code>{PASSPORT_DIR}/&lt;id&gt;.json</code>.</p>
{cards or "<p class='na'>No passports.</p>"}

<h2 id="notes">Notes from this run</h2>
<ul class="notes">{notes_html}</ul>

<h2 id="methods">How the figures are defined</h2>
<ul class="notes">
<li><b>capacity_mAh_g</b>: n F / (3.6 M) with n the working ions that can leave: in <em>redox</em> mode bounded by the
oxidation headroom of the redox-active cations (starting states from pymatgen's oxidation-state guesses), in
<em>formula</em> mode every working ion. Both are written (<code>capacity_redox_mAh_g</code>, <code>capacity_formula_mAh_g</code>).</li>
<li><b>supply_risk</b> (0-1): mass-weighted max(production HHI, top-mining-share², China-refining-share²) / 10000.
<b>FEOC exposed</b>: an element with mass fraction ≥ {p.supply.min_mass_fraction:g} whose China refining share exceeds
{p.supply.feoc_china_refining_pct:g}%. <b>CRMA concentration</b>: such an element whose top mining country, or China at
refining, holds more than {p.supply.crma_top_country_pct:g}% (the flag names stage and country). An unknown share raises
no flag (see the notes).</li>
<li><b>Scale-up demand</b>: kg of each element per kWh = mass fraction / theoretical specific energy (kWh/kg), times
{p.demand.share:g} of {p.demand.twh_per_year:g} TWh a year, over the element's world mine production (IEA 2023 figures
where the table has one; others unknown). Active material only, every releasable working ion: a lower bound.</li>
<li><b>CO2</b>: mass-weighted cradle-to-gate factors of the elements (Nuss &amp; Eckelman 2014); missing when any
element lacks a factor, with a lower bound over the known ones.</li>
<li><b>Circularity</b>: EU Battery Regulation 2023/1542 — recycled-content minimums from 2031 (Co 16%, Li 6%, Ni 6%,
Pb 85%) and material-recovery targets by end-2031 (Co, Cu, Ni, Pb 95%, Li 80%) valued at the table's prices.</li>
<li><b>Energy</b>: <em>theoretical</em> figures of the active material alone (no cell overhead, not a cell value):
capacity × average voltage (from a <code>voltage_V</code> column of the surrogate, or the oracle's);
the _std columns carry the voltage std. <b>cost_usd_kwh</b> is the raw-material cost per kWh of theoretical energy
(element prices of the active material / theoretical specific energy), not a cell or pack cost; <b>cost_usd_kg</b> the
raw-material cost per kg of material. <b>Stability window</b>: grand-potential phase diagrams over pymatgen's bundled
Materials Project entries and the surrogate's formation enthalpy (mi/properties/stability.py).</li>
<li>Element facts: prices USGS MCS 2026 / pymatgen costdb, shares IEA / USGS, HHI Gaultois et al. 2013, lists EU CRMA
2023 and USGS 2022 (mi/data/SOURCES.md). Screening proxies, not quotations or legal determinations.</li>
</ul>
</main></body></html>
"""


def plotted_objectives(cfg: ScreenConfig, summary: Mapping[str, Any]) -> list[tuple[str, str]]:
    """(column, direction) of the objectives the ranking used (`summary["objectives"]`), as the figures plot them."""
    used = summary.get("objectives")
    return [(o.column, o.direction) for o in cfg.ranking.objectives if used is None or o.column in used]


# Fewer ranked rows than this: the Pareto figure is drawn in the screen's own process (a worker process
# takes longer to start than such a figure takes to draw). More than BACKGROUND_MAX_ROWS: drawn here too,
# after the table is released: the copy handed to the worker would come on top of the merge's peak
# (24 MiB at a million candidates, 57,000 ranked rows, for one second of wall time).
BACKGROUND_MIN_ROWS = 5000
BACKGROUND_MAX_ROWS = 20000


def start_pareto_figure(ranked: pd.DataFrame, cfg: ScreenConfig, summary: Mapping[str, Any]) -> Future | None:
    """`pareto_figure` of `ranked`, drawn by a worker process while this one writes ranked.csv, the
    passports and the other figures (the Pareto figure is the report's largest single step: 1.5 s at
    6,000 rows), for `render_report`'s ``pareto``. None where that does not pay: no report, one core, or
    fewer than `BACKGROUND_MIN_ROWS` or more than `BACKGROUND_MAX_ROWS` rows. The worker gets only the columns
    the figure and its legend read."""
    from concurrent.futures import ProcessPoolExecutor

    from mi.features.engine import pool_context, resolve_workers

    if not cfg.export.report or not BACKGROUND_MIN_ROWS <= len(ranked) <= BACKGROUND_MAX_ROWS:
        return None
    if resolve_workers(cfg.execution.workers) < 2:
        return None
    objectives = plotted_objectives(cfg, summary)
    read = {"rank", "id", "formula", "pareto_rank", *(c for c, _ in objectives), *(f"{c}_std" for c, _ in objectives)}
    view = ranked[[c for c in ranked.columns if c in read or str(c).endswith("_in_domain")]]
    pool = ProcessPoolExecutor(max_workers=1, mp_context=pool_context(()))  # the chunks' server, if it runs
    try:
        return pool.submit(pareto_figure, view, objectives, cfg.ranking.top_k)
    finally:
        pool.shutdown(wait=False)  # the submitted figure still runs; the worker exits after it


_NOT_DRAWN = object()


def _drawn(pending: Future | None, draw):
    """The figure a worker drew (`pending`), else `draw()` here: also where the worker failed."""
    result = _NOT_DRAWN
    if pending is not None:
        try:
            result = pending.result()
        except Exception as exc:  # noqa: BLE001 - a lost worker costs the time, not the figure
            log.warning("the figure's worker process failed (%s); drawing it here", exc)
    return draw() if result is _NOT_DRAWN else result


def report_columns(columns: Sequence[str], cfg: ScreenConfig) -> list[str]:
    """Of `columns`, those the report reads on every ranked row (`export_report` with `top`): ids, the
    objectives with their std, the plotted and flagged properties, the ranking's own columns, in-domain
    flags and refined values' sources."""
    objectives = [o.column for o in cfg.ranking.objectives]
    wanted = {
        "rank", "id", "formula", "source", "score", "ucb_score", "pareto_rank", "crowding_distance",
        *objectives, *(f"{c}_std" for c in objectives), *DISTRIBUTION_COLUMNS, *FLAG_COLUMNS, *EXTRA_COLUMNS,
    }
    return [c for c in columns if c in wanted or str(c).endswith(("_in_domain", "_source"))]


def export_report(
    run_dir: str | Path,
    ranked: pd.DataFrame,
    cfg: ScreenConfig,
    *,
    element_table: pd.DataFrame | None,
    notes: Sequence[str],
    summary: Mapping[str, Any],
    counts: Mapping[str, Any],
    failures: Sequence[Failure],
    models: Sequence[Mapping[str, Any]] = (),
    top: pd.DataFrame | None = None,
    pareto: Future | None = None,
) -> list[Failure]:
    """Write ``passport/<id>.json`` for the top-k rows and ``report.html``; return new failures (stage
    ``export``) instead of raising, so a report problem never loses the run's other outputs.

    `ranked` holds every ranked row, in rank order; with `top` (the first top-k rows with every column)
    it needs only the columns `report_columns` names, so that a screen of millions need not hold every
    column of every row while the figures are drawn. `pareto`: the Pareto figure a worker is drawing
    (`start_pareto_figure`), else it is drawn here."""
    from mi.data import load_element_facts

    run_dir = Path(run_dir)
    new: list[Failure] = []
    table = element_table if element_table is not None else load_element_facts()
    run_info = {"experiment": cfg.name, "run_dir": str(run_dir)}
    passports, paths, passport_failures = write_passports(
        run_dir, ranked if top is None else top, cfg.ranking.top_k, cfg.properties, table, run_info
    )
    new += passport_failures
    files = {cid: path.name for cid, path in zip(passports, paths)}
    try:
        page = render_report(
            ranked, cfg, run_dir=run_dir, notes=notes, summary=summary, counts=counts,
            failures=[*failures, *new], passports=passports, passport_files=files, models=models, top=top,
            pareto=pareto,
        )
        atomic_write_text(run_dir / REPORT_FILE, page)
    except Exception as exc:  # the ranked table and CIFs are already written; keep them
        log.exception("report.html not written")
        reason = f"report.html not written: {type(exc).__name__}: {exc}"
        new.append(Failure(source=str(run_dir), record="", stage="export", reason=reason))
    return new
