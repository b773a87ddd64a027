"""The report's figures, drawn with matplotlib's Agg canvas (no pyplot, no display, no
global backend switch) and returned as PNG bytes. Each function takes plain tables and
arrays; none reads a run or a fit."""

from __future__ import annotations

import io

import numpy as np
import pandas as pd

BAND = {"90": 0.18, "50": 0.38}
COLOURS = ("#0969da", "#8250df", "#bf3989", "#1a7f37")


def _figure(width: float, height: float):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def png(fig) -> bytes:
    """A figure as PNG bytes, without the ``Software`` metadata entry."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", metadata={"Software": None})
    return buf.getvalue()


def _band(ax, x, lo, hi, colour, alpha, label=None):
    ok = np.isfinite(lo) & np.isfinite(hi)
    if ok.any():
        ax.fill_between(np.asarray(x)[ok], np.asarray(lo)[ok], np.asarray(hi)[ok],
                        color=colour, alpha=alpha, linewidth=0, label=label)


def trajectories(table: pd.DataFrame, traits: list[str], model: str) -> bytes:
    """Rows: traits; columns: guided mean and variance (generation-0 units), observed with
    the posterior predictive 50%/90% bands and the zero-shot theory."""
    fig = _figure(10, 2.3 * len(traits) + 0.4)
    axes = fig.subplots(len(traits), 2, squeeze=False)
    for i, trait in enumerate(traits):
        for j, stat in enumerate(("mean", "var")):
            ax = axes[i, j]
            d = table[(table["trait"] == trait) & (table["stat"] == stat)]
            x = d["generation"].to_numpy()
            _band(ax, x, d["pp_q05"], d["pp_q95"], COLOURS[0], BAND["90"],
                  f"{model} posterior predictive 90%")
            _band(ax, x, d["pp_q25"], d["pp_q75"], COLOURS[0], BAND["50"], "50%")
            if d["zeroshot"].notna().any():
                ax.plot(x, d["zeroshot"], "--", color="#cf222e", label="zero-shot theory")
            ax.plot(x, d["observed"], "o-", color="black", markersize=3.5, linewidth=1,
                    label="observed (mean over concepts)")
            ax.set_title(f"{trait}: {'guided mean' if stat == 'mean' else 'guided variance'}",
                         fontsize=9)
            ax.set_ylabel("gen-0 SD units" if stat == "mean" else "V_t / V_0", fontsize=8)
            ax.tick_params(labelsize=8)
            ax.set_xlabel("generation", fontsize=8)
    axes[0, 0].legend(fontsize=7, loc="best")
    return png(fig)


def selection(sel: pd.DataFrame, herit: pd.DataFrame, traits: list[str]) -> bytes:
    """Selection differential and variance ratio per generation (median over concepts),
    and realized h2 per trait (median over concepts, range of the concepts)."""
    fig = _figure(11, 3.2)
    a1, a2, a3 = fig.subplots(1, 3)
    for k, trait in enumerate(traits):
        d = sel[sel["trait"] == trait].groupby("generation")[["S", "var_ratio"]].median()
        c = COLOURS[k % len(COLOURS)]
        a1.plot(d.index, d["S"], "o-", color=c, markersize=3, label=trait)
        a2.plot(d.index, d["var_ratio"], "o-", color=c, markersize=3, label=trait)
    a1.axhline(0, color="grey", linewidth=0.8)
    a2.axhline(1, color="grey", linewidth=0.8)
    a2.set_yscale("log")
    a1.set_title("selection differential S (median over concepts)", fontsize=9)
    a2.set_title("variance ratio guided / w=1 probe", fontsize=9)
    for ax in (a1, a2):
        ax.set_xlabel("generation", fontsize=8)
        ax.tick_params(labelsize=8)
    a1.legend(fontsize=7)
    if not herit.empty:
        h = herit[herit["trait"].isin(traits)].groupby("trait", sort=False)["h2"]
        med = h.median().reindex(traits)
        lo, hi = h.min().reindex(traits), h.max().reindex(traits)
        x = np.arange(len(traits))
        a3.errorbar(x, med, yerr=[med - lo, hi - med], fmt="o", color="black", capsize=3)
        a3.set_xticks(x, traits, rotation=30, fontsize=8)
        a3.axhline(1, color="grey", linewidth=0.8)
        a3.axhline(0, color="grey", linewidth=0.8)
    a3.set_title("realized h2 (median, range over concepts)", fontsize=9)
    a3.tick_params(labelsize=8)
    return png(fig)


def variance_decay(table: pd.DataFrame, models: list[str], q: float, k: int,
                   baselines: dict) -> bytes:
    """Observed total variance ratio, each model's posterior predictive band, the forecast
    from generations 0..K-1, the criterion q and the two naive baselines' horizons."""
    fig = _figure(9, 4)
    ax = fig.subplots()
    x = table["generation"].to_numpy()
    for i, m in enumerate(models):
        c = COLOURS[i % len(COLOURS)]
        _band(ax, x, table[f"{m}_q05"], table[f"{m}_q95"], c, BAND["90"],
              f"{m} posterior predictive 90%")
        _band(ax, x, table[f"{m}_q25"], table[f"{m}_q75"], c, BAND["50"], f"{m} 50%")
    if "forecast_median" in table:
        ax.plot(x, table["forecast_median"], ":", color="#57606a",
                label=f"forecast from generations 0..{k - 1} (median, 90%)")
        ax.plot(x, table["forecast_q05"], ":", color="#57606a", linewidth=0.7)
        ax.plot(x, table["forecast_q95"], ":", color="#57606a", linewidth=0.7)
    ax.plot(x, table["observed"], "o-", color="black", markersize=4, label="observed")
    ax.axhline(q, color="#cf222e", linewidth=1, label=f"variance criterion q = {q}")
    for (name, t), style in zip(baselines.items(), ("-.", (0, (5, 2)))):
        if t is not None and t <= x.max():
            ax.axvline(t, color="#9a6700", linestyle=style, linewidth=1,
                       label=f"{name} baseline horizon ({t})")
    ax.set_xlabel("generation")
    ax.set_ylabel("total variance ratio V_t / V_0")
    ax.legend(fontsize=7)
    return png(fig)


def horizon(p_by: pd.DataFrame, observed: int | None, k: int, t_show: int) -> bytes:
    """P(collapse by generation t) for the run (thick) and the shown traits (thin), with
    the observed crossing and the end of the fitted window."""
    fig = _figure(9, 3.8)
    ax = fig.subplots()
    d = p_by[p_by["generation"] <= t_show]
    ax.step(d["generation"], d["run"], where="post", color="black", linewidth=2, label="run")
    for i, c in enumerate([c for c in d.columns if c not in ("generation", "run")]):
        ax.step(d["generation"], d[c], where="post", color=COLOURS[i % len(COLOURS)],
                linewidth=1, alpha=0.8, label=c)
    if observed is not None:
        ax.axvline(observed, color="#cf222e", linewidth=1.5,
                   label=f"observed crossing (generation {observed})")
    ax.axvspan(-0.5, k - 0.5, color="grey", alpha=0.12, label=f"fitted: generations 0..{k - 1}")
    ax.set_ylim(-0.02, 1.02)
    ax.set_xlim(-0.5, t_show + 0.5)
    ax.set_xlabel("generation t")
    ax.set_ylabel("P(collapse by generation t)")
    ax.legend(fontsize=7, loc="lower right")
    return png(fig)


def criteria_sensitivity(curves: dict[str, list[tuple[float, np.ndarray]]],
                         t_show: int) -> bytes:
    """One panel per criterion: P(collapse by t) for each value on the grid."""
    fig = _figure(11, 3.2)
    axes = fig.subplots(1, len(curves), squeeze=False)[0]
    for ax, (name, rows) in zip(axes, curves.items()):
        for i, (value, p_by) in enumerate(rows):
            t = np.arange(len(p_by))[: t_show + 1]
            ax.step(t, p_by[: t_show + 1], where="post", color=COLOURS[i % len(COLOURS)],
                    label=f"{name} = {value:g}")
        ax.set_ylim(-0.02, 1.02)
        ax.set_title(f"varying {name}", fontsize=9)
        ax.set_xlabel("generation t", fontsize=8)
        ax.tick_params(labelsize=8)
        ax.legend(fontsize=7, loc="lower right")
    axes[0].set_ylabel("P(collapse by t)", fontsize=8)
    return png(fig)


def redifine(rows: pd.DataFrame) -> bytes:
    """The four predictions: measured effect (with its 90% interval) beside the zero-shot
    theory's, P(direction) above each pair."""
    fig = _figure(9, 3.6)
    ax = fig.subplots()
    x = np.arange(len(rows))
    meas = rows["measured_effect"].astype(float).to_numpy()
    theo = pd.to_numeric(rows["predicted_effect"], errors="coerce").to_numpy(dtype=float)
    err = (1.645 * rows["measured_sd"].astype(float).to_numpy()
           if "measured_sd" in rows else None)
    ax.bar(x - 0.18, meas, 0.36, color=COLOURS[0], yerr=err, capsize=3,
           label="measured (mitigated - baseline, 90% interval)")
    ax.bar(x + 0.18, np.nan_to_num(theo), 0.36, color="#cf222e", alpha=0.7,
           label="zero-shot theory")
    top = np.nanmax(np.abs(np.concatenate([meas + (0 if err is None else err),
                                           meas - (0 if err is None else err),
                                           theo[np.isfinite(theo)]]))) or 1.0
    for xi, (p, v) in enumerate(zip(rows["p_direction"], rows["verdict"])):
        ax.text(xi, top * 1.08, f"P(dir) {p:.2f}\n{v}", ha="center", fontsize=8)
    ax.set_ylim(-top * 1.3, top * 1.45)
    ax.axhline(0, color="grey", linewidth=0.8)
    ax.set_xticks(x, [f"{r.prediction}. {r.quantity}" for r in rows.itertuples()],
                  fontsize=7, rotation=8)
    ax.set_ylabel("effect")
    ax.legend(fontsize=7, loc="lower left")
    return png(fig)


def training_losses(curves: dict[int, list[float]]) -> bytes:
    """The finetuning loss per optimizer step, one line per generation (the chain's
    artifacts/training.json records)."""
    fig = _figure(7, 3.2)
    ax = fig.subplots()
    from matplotlib import colormaps

    cmap = colormaps["viridis"]
    gens = sorted(curves)
    for i, g in enumerate(gens):
        y = np.asarray(curves[g], dtype=float)
        ax.plot(np.arange(1, len(y) + 1), y, color=cmap(i / max(len(gens) - 1, 1)),
                linewidth=1, label=f"generation {g}")
    ax.set_xlabel("optimizer step", fontsize=8)
    ax.set_ylabel("finetuning loss (MSE)", fontsize=8)
    ax.tick_params(labelsize=8)
    if len(gens) <= 10:
        ax.legend(fontsize=7)
    return png(fig)
