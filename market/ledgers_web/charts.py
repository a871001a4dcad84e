"""Ledger charts: matplotlib (Agg) figures rendered to SVG that obeys the page's CSP.

The site's Content-Security-Policy has ``style-src 'self'``, which also blocks inline
``style="..."`` attributes and ``<style>`` elements, exactly what matplotlib's SVG is made
of. So every figure goes through ``_clean``: style declarations become SVG presentation
attributes (``fill="#1f77b4"``, which CSP does not govern), the ``<style>`` element and the
RDF metadata go, every id gets a per-chart prefix (several charts share a page), and a
``<title>``/``<desc>`` plus ``role="img"`` describe the chart to assistive technology.

Determinism: ``svg.hashsalt`` fixes the ids and ``metadata={"Date": None}`` drops the date,
so one input gives byte-identical SVG. Text stays text (``svg.fonttype = none``) and is
never parsed as mathtext (titles may hold ``$``). Rendering holds a lock because
``rc_context`` changes matplotlib's process-wide settings.

Figures are ``matplotlib.figure.Figure`` objects, never pyplot's: they are not registered in
pyplot's global list, so nothing needs closing and threads do not share a current figure.

Only ledger figures are plotted (epsilons, seconds, kWh, kg, money), never data rows.
"""

from __future__ import annotations

import io
import threading
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any

import matplotlib

matplotlib.use("Agg")

from markupsafe import Markup  # noqa: E402
from matplotlib.dates import AutoDateLocator, ConciseDateFormatter  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.layout_engine import ConstrainedLayoutEngine  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

SVG_NS = "http://www.w3.org/2000/svg"
XLINK_NS = "http://www.w3.org/1999/xlink"
ET.register_namespace("", SVG_NS)
ET.register_namespace("xlink", XLINK_NS)

RC: dict[Any, Any] = {
    "svg.hashsalt": "market-ledgers",
    "svg.fonttype": "none",
    "text.parse_math": False,
    "font.size": 9,
    "axes.spines.top": False,
    "axes.spines.right": False,
}
ACCENT = "#2f5d8a"
BAD = "#a4262c"
GREEN = "#2e7d4f"
TERM_COLOURS = ["#2f5d8a", "#d9822b", "#2e7d4f", "#7b4f9d", "#8a8f98"]

# CSS properties matplotlib writes that SVG also accepts as presentation attributes.
PRESENTATION = {
    "clip-path",
    "fill",
    "fill-opacity",
    "fill-rule",
    "font-family",
    "font-size",
    "font-style",
    "font-weight",
    "opacity",
    "stroke",
    "stroke-dasharray",
    "stroke-dashoffset",
    "stroke-linecap",
    "stroke-linejoin",
    "stroke-miterlimit",
    "stroke-opacity",
    "stroke-width",
    "text-anchor",
    "dominant-baseline",
}

_lock = threading.Lock()


def _q(name: str, ns: str = SVG_NS) -> str:
    return f"{{{ns}}}{name}"


def _render(fig: Figure) -> str:
    out = io.StringIO()
    fig.savefig(out, format="svg", metadata={"Date": None}, bbox_inches="tight")
    return out.getvalue()


def _clean(svg: str, *, prefix: str, title: str, description: str) -> Markup:
    """matplotlib's SVG made CSP-safe, uniquely identified and labelled (see module doc)."""
    root = ET.fromstring(svg)
    for parent in list(root.iter()):
        for child in list(parent):
            if child.tag in (_q("metadata"), _q("style")):
                parent.remove(child)
    # The removed <style> said *{stroke-linejoin: round; stroke-linecap: butt}: inherited.
    root.set("stroke-linejoin", "round")
    root.set("stroke-linecap", "butt")
    href = _q("href", XLINK_NS)
    for element in root.iter():
        style = element.attrib.pop("style", None)
        if style:
            for declaration in style.split(";"):
                name, _, value = declaration.partition(":")
                name, value = name.strip(), value.strip()
                if name in PRESENTATION and value:
                    element.set(name, value)
        if "id" in element.attrib:
            element.set("id", f"{prefix}-{element.attrib['id']}")
        for attribute in ("clip-path", "mask", "filter"):
            value = element.attrib.get(attribute, "")
            if value.startswith("url(#"):
                element.set(attribute, f"url(#{prefix}-{value[5:]}")
        link = element.attrib.get(href)
        if link and link.startswith("#"):
            element.set(href, f"#{prefix}-{link[1:]}")
    # Scale with the page: keep the viewBox, let CSS set the width.
    for attribute in ("width", "height"):
        root.attrib.pop(attribute, None)
    root.set("role", "img")
    root.set("aria-labelledby", f"{prefix}-title {prefix}-desc")
    root.set("class", "chart")
    title_el = ET.Element(_q("title"), {"id": f"{prefix}-title"})
    title_el.text = title
    desc_el = ET.Element(_q("desc"), {"id": f"{prefix}-desc"})
    desc_el.text = description
    root.insert(0, desc_el)
    root.insert(0, title_el)
    return Markup(ET.tostring(root, encoding="unicode"))


def _figure(width: float, height: float, rows: int = 1) -> tuple[Figure, list]:
    fig = Figure(figsize=(width, height), layout=ConstrainedLayoutEngine(w_pad=0.12, h_pad=0.06))
    # Text stays text (svg.fonttype none), so the browser sets it in its own font, often
    # wider than the one matplotlib measured: a margin keeps the axis labels inside.
    axes = fig.subplots(rows, 1, sharex=True, squeeze=False)[:, 0]
    return fig, list(axes)


def epsilon_steps(
    epsilons_after: Sequence[float], *, cap: float, prefix: str = "epsilon"
) -> Markup:
    """Composed epsilon after each counted release (a post step line, one marker per
    release, gid ``epsilon-after``) against the dataset's cap (gid ``epsilon-cap``)."""
    with _lock, matplotlib.rc_context(RC):
        fig, (ax,) = _figure(7.0, 3.0)
        xs = list(range(1, len(epsilons_after) + 1))
        if xs:
            (line,) = ax.step(
                xs,
                list(epsilons_after),
                where="post",
                marker="o",
                color=ACCENT,
                label="composed ε after the release",
            )
            line.set_gid("epsilon-after")
        cap_line = ax.axhline(cap, color=BAD, linestyle="--", label=f"cap ε = {cap:g}")
        cap_line.set_gid("epsilon-cap")
        top = max([cap, *epsilons_after])
        ax.set_ylim(0, top * 1.12 if top > 0 else 1)
        ax.set_xlim(0.5, max(len(xs), 1) + 0.5)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("release # (the table's # column)")
        ax.set_ylabel("composed ε")
        fig.legend(loc="outside upper right", ncols=2, frameon=False)
        svg = _render(fig)
    return _clean(
        svg,
        prefix=prefix,
        title="Composed epsilon after each release",
        description=(
            f"{len(xs)} releases; the last brings the composed epsilon to "
            f"{epsilons_after[-1]:.4g} of a cap of {cap:g}."
            if xs
            else f"No release counts yet; the cap is {cap:g}."
        ),
    )


def over_time(
    times: Sequence[datetime],
    series: Sequence[tuple[str, str, Sequence[Decimal | float]]],
    *,
    prefix: str = "costs",
) -> Markup:
    """Running totals over time, one panel per series (``(label, gid, values)``), a marker
    at each run. Panel ``gid`` groups hold one ``<use>`` marker per point."""
    with _lock, matplotlib.rc_context(RC):
        fig, axes = _figure(8.0, 1.5 * max(len(series), 1), rows=max(len(series), 1))
        for ax, (label, gid, values) in zip(axes, series, strict=False):
            running: list[float] = []
            total = Decimal(0)
            for value in values:
                total += Decimal(str(value))
                running.append(float(total))
            if running:
                (line,) = ax.step(list(times), running, where="post", marker="o", color=ACCENT)
                line.set_gid(gid)
            ax.set_ylabel(label)
            ax.set_ylim(bottom=0)
            ax.yaxis.set_major_locator(MaxNLocator(nbins=4))
        locator = AutoDateLocator()
        axes[-1].xaxis.set_major_locator(locator)
        axes[-1].xaxis.set_major_formatter(ConciseDateFormatter(locator))
        svg = _render(fig)
    names = ", ".join(label for label, _, _ in series)
    return _clean(
        svg,
        prefix=prefix,
        title="Running totals over time",
        description=f"{len(times)} runs; running totals of {names}, one marker per run.",
    )


def cost_breakdown(terms: Sequence[tuple[str, Decimal]], *, currency: str, prefix: str) -> Markup:
    """A run's price by term, one horizontal bar each (gid ``term-<n>``)."""
    with _lock, matplotlib.rc_context(RC):
        fig, (ax,) = _figure(4.2, 0.45 * len(terms) + 0.9)
        labels = [label for label, _ in terms]
        values = [float(value) for _, value in terms]
        bars = ax.barh(labels, values, color=TERM_COLOURS[: len(terms)])
        for index, (bar, (_, value)) in enumerate(zip(bars, terms, strict=True)):
            bar.set_gid(f"term-{index}")
            ax.annotate(
                f"{value}",
                (bar.get_width(), bar.get_y() + bar.get_height() / 2),
                xytext=(3, 0),
                textcoords="offset points",
                va="center",
                fontsize=8,
            )
        ax.invert_yaxis()
        ax.set_xlabel(currency)
        ax.set_xlim(0, (max(values) if values and max(values) > 0 else 1) * 1.3)
        svg = _render(fig)
    return _clean(
        svg,
        prefix=prefix,
        title="Measured price by term",
        description="; ".join(f"{label} {value} {currency}" for label, value in terms),
    )


def budget_bars(budgets: Sequence[tuple[str, float, float]], *, prefix: str = "budgets") -> Markup:
    """Each dataset's committed epsilon (gid ``committed-<n>``) against its total."""
    with _lock, matplotlib.rc_context(RC):
        fig, (ax,) = _figure(7.0, 0.5 * len(budgets) + 1.0)
        labels = [label for label, _, _ in budgets]
        totals = [total for _, _, total in budgets]
        committed = [min(spent, total) for _, spent, total in budgets]
        ax.barh(labels, totals, color="#dde1e8", label="total ε")
        bars = ax.barh(labels, committed, color=ACCENT, label="committed ε")
        for index, bar in enumerate(bars):
            bar.set_gid(f"committed-{index}")
        ax.invert_yaxis()
        ax.set_xlabel("ε")
        fig.legend(loc="outside upper right", ncols=2, frameon=False)
        svg = _render(fig)
    return _clean(
        svg,
        prefix=prefix,
        title="Privacy budget committed per dataset",
        description="; ".join(
            f"{label}: {spent:.3g} of {total:g}" for label, spent, total in budgets
        ),
    )
