"""Zero-shot collapse horizon against the CFG scale, for constant and decaying guidance
schedules and several sampler step counts, with the one-generation schedule summaries
(variance ratio, mean shift, w_eff) and a check of the closed-form horizons against
forward iteration of the map.

Uses only the public API (qtrait.theory.*); deterministic (no random numbers; the grid
cells are independent and computed by `workers` processes). Writes
analyses/horizon_vs_cfg/results.md and the two figures named in config.toml (the tables
and figures that docs/theory.md quotes).

    python analyses/horizon_vs_cfg/run.py
"""

from __future__ import annotations

import platform
import time
import tomllib
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402
from matplotlib.ticker import FuncFormatter, LogLocator  # noqa: E402

import qtrait  # noqa: E402
from qtrait.theory.generation import Generation0, MapParams, predict  # noqa: E402
from qtrait.theory.horizon import (REASONS, Criteria, breeder_dilution_horizon,  # noqa: E402
                                   breeder_drift_horizon, breeder_variance_horizon,
                                   criteria_flags, first_crossing, tilt_variance_horizon)
from qtrait.theory.sampler import sampler_variance_factor, summarize_schedule  # noqa: E402
from qtrait.theory.schedules import GuidanceSchedule, Sampler  # noqa: E402
from qtrait.theory.zeroshot import zero_shot  # noqa: E402

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]

SHORT = {"variance": "var", "drift": "drift", "dilution": "dil"}
MARKERS = {"variance": "o", "drift": "s", "dilution": "D"}
XTICKS = (0.25, 0.5, 1, 2, 3, 5, 9)
COLOURS = {"constant": "tab:blue", "linear": "tab:orange", "cosine": "tab:green"}


# --- set-up ---------------------------------------------------------------------------------

def make_sampler(spec: dict) -> Sampler:
    spec = {k: v for k, v in spec.items() if k != "name"}
    return Sampler(**spec)


def guidance(kind: str, w: float, end: float) -> GuidanceSchedule:
    if kind == "constant":
        return GuidanceSchedule("constant", float(w))
    return GuidanceSchedule(kind, float(w), end=float(end))


def generation0(settings: list[dict], n_h2: int) -> Generation0:
    """Generation 0 shaped (h2, setting): D_0's moments equal the base model's."""
    def col(key):
        return np.broadcast_to(np.array([s[key] for s in settings], dtype=float),
                               (n_h2, len(settings)))
    return Generation0.of(mean0=col("mean0"), var0=col("var0"), m_base=col("mean0"),
                          v_base=col("var0"), m_uncond=col("m_uncond"),
                          v_uncond=col("v_uncond"))


def map_params(cfg: dict, h2, sampler: Sampler, g: GuidanceSchedule) -> MapParams:
    return MapParams(model="exact", h2=h2, anchor=cfg["anchor"], guidance=g, sampler=sampler,
                     rho=cfg["rho"], v_mut=cfg["mutation"])


# --- horizons ---------------------------------------------------------------------------------

def _horizon_task(args) -> tuple:
    """One (sampler, schedule, w) cell of the grid for all h2 and settings: a single
    zero_shot call whose per-trait horizons (Prediction.t_star) are elementwise; for one
    scalar trait the run horizon is the trait horizon (checked in scalar_check)."""
    cfg, key, spec, i, j = args
    settings, h2s = cfg["settings"], cfg["h2"]
    g0 = generation0(settings, len(h2s))
    h2 = np.array(h2s, dtype=float)[:, None]
    g = guidance(cfg["schedules"][i], cfg["w_grid"][j], cfg["schedule_end"])
    p = zero_shot(g0, map_params(cfg, h2, make_sampler(spec), g), Criteria(**cfg["criteria"]))
    gm, gv = p.trajectory["guided_mean"], p.trajectory["guided_var"]
    return key, i, j, p.t_star, p.reason, gv[1] / gv[0], (gm[1] - gm[0]) / np.sqrt(gv[0])


def horizon_grids(cfg: dict, specs: dict[str, dict], pool) -> dict[str, dict]:
    """Per sampler: t*, reason index, V_1/V_0 and the generation-1 mean shift, each shaped
    (schedule, w, h2, setting)."""
    shape = (len(cfg["schedules"]), len(cfg["w_grid"]), len(cfg["h2"]), len(cfg["settings"]))
    grids = {key: {"t": np.full(shape, -1), "reason": np.full(shape, -1),
                   "v1_ratio": np.full(shape, np.nan), "shift1": np.full(shape, np.nan)}
             for key in specs}
    tasks = [(cfg, key, spec, i, j) for key, spec in specs.items()
             for i in range(shape[0]) for j in range(shape[1])]
    for key, i, j, t, reason, v1, shift1 in pool.map(_horizon_task, tasks, chunksize=4):
        g = grids[key]
        g["t"][i, j], g["reason"][i, j], g["v1_ratio"][i, j], g["shift1"][i, j] = (
            t, reason, v1, shift1)
    return grids


def _summary_task(args):
    cfg, spec, st, kind, w = args
    return (st["name"], kind, w), summarize_schedule(
        guidance(kind, w, cfg["schedule_end"]), st["mean0"], st["var0"], st["m_uncond"],
        st["v_uncond"], make_sampler(spec))


def scalar_check(cfg: dict, sampler: Sampler, crit: Criteria, grid: dict) -> int:
    """Recompute a subset with scalar inputs and compare zero_shot's run horizon with the
    elementwise horizons of the vectorised call. Returns the number of cells compared."""
    ws = cfg["w_grid"]
    n = 0
    for i, kind in enumerate(cfg["schedules"]):
        for j in range(0, len(ws), 6):
            for k, h2 in enumerate(cfg["h2"]):
                for s_idx, s in enumerate(cfg["settings"]):
                    g0 = Generation0.of(mean0=s["mean0"], var0=s["var0"], m_base=s["mean0"],
                                        v_base=s["var0"], m_uncond=s["m_uncond"],
                                        v_uncond=s["v_uncond"])
                    p = zero_shot(g0, map_params(cfg, h2, sampler,
                                                 guidance(kind, ws[j], cfg["schedule_end"])),
                                  crit)
                    t_vec = int(grid["t"][i, j, k, s_idx])
                    r_vec = REASONS[int(grid["reason"][i, j, k, s_idx])] if t_vec > 0 else None
                    got = (p.run_t_star, p.run_reason)
                    want = (t_vec if t_vec > 0 else None, r_vec)
                    if got != want:
                        raise AssertionError(f"scalar zero_shot {got} != vectorised {want} "
                                             f"({kind}, w={ws[j]}, h2={h2}, {s['name']})")
                    n += 1
    return n


def cell(t: int, reason: int, t_max: int) -> str:
    return f"{t} {SHORT[REASONS[reason]]}" if t > 0 else f">{t_max}"


# --- closed forms against forward iteration --------------------------------------------------

def first_flag(flag, t_max: int) -> int:
    none = np.zeros_like(flag)
    return int(first_crossing((flag, none, none), t_max)[0])


def tilt_check(cfg: dict, crit: Criteria) -> tuple[list[str], int, int]:
    rows, n, bad = [], 0, 0
    for u, vu in cfg["closed_form_check"]["tilt_cases"]:
        g0 = Generation0.of(mean0=1.0, var0=u, m_base=1.0, v_base=u, m_uncond=0.0,
                            v_uncond=vu)
        summary = {"collapse": 0, "growth": 0, "stable": 0}
        mismatches = []
        for w in cfg["w_grid"]:
            closed = tilt_variance_horizon(w, u, vu, crit.q, crit.t_max)
            traj = predict(g0, MapParams(model="tilt", h2=1.0, anchor="base",
                                         guidance=GuidanceSchedule("constant", w)), crit.t_max)
            t_fwd = first_flag(criteria_flags(traj["guided_mean"], traj["guided_var"], 0.0,
                                              crit)[0], crit.t_max)
            invalid = np.flatnonzero(~traj["valid"])
            inv_fwd = int(invalid[0]) if len(invalid) else None
            t_closed = closed.t_star if closed.t_star is not None else -1
            ok = t_closed == t_fwd and closed.invalid_at == inv_fwd
            summary[closed.behaviour] += 1
            n += 1
            if not ok:
                bad += 1
                mismatches.append(f"w={w:g}: closed ({closed.t_star}, invalid "
                                  f"{closed.invalid_at}) vs forward ({t_fwd}, invalid {inv_fwd})")
        examples = []
        for w in (0.5, 2.0, 3.0, 7.5):
            c = tilt_variance_horizon(w, u, vu, crit.q, crit.t_max)
            examples.append(f"w={w:g}: " + (f"t*={c.t_star}" if c.t_star is not None else
                                            (f"invalid at {c.invalid_at}" if c.invalid_at
                                             else f"none within {crit.t_max}")))
        rows.append(f"| {u:g} | {vu:g} | {len(cfg['w_grid'])} | "
                    f"{summary['collapse']}/{summary['growth']}/{summary['stable']} | "
                    f"{'; '.join(examples)} | "
                    f"{'; '.join(mismatches) if mismatches else 'none'} |")
    return rows, n, bad


def breeder_check(cfg: dict, crit: Criteria) -> tuple[int, int, list[str]]:
    cc = cfg["closed_form_check"]
    lam = np.array(cc["breeder_lambda"], dtype=float)[:, None, None]
    vm = np.array(cc["breeder_mutation"], dtype=float)[None, :, None]
    gam = np.array(cc["breeder_gamma"], dtype=float)[None, None, :]
    shape = np.broadcast(lam, vm, gam).shape
    v0, mu0, c = 0.36, 1.0, 0.0
    g0 = Generation0.of(mean0=np.full(shape, mu0), var0=np.full(shape, v0),
                        m_base=np.full(shape, mu0), v_base=np.full(shape, v0),
                        m_uncond=np.full(shape, c), v_uncond=np.full(shape, 1.0))
    traj = predict(g0, MapParams(model="breeder", lam=lam, gamma=gam, v_mut=vm),
                   crit.t_max)
    flags = criteria_flags(traj["guided_mean"], traj["guided_var"], c, crit)
    fwd = [first_crossing((f, np.zeros_like(f), np.zeros_like(f)), crit.t_max)[0]
           for f in flags]
    n, bad, mismatches = 0, 0, []
    for idx in np.ndindex(shape):
        L, M, G = lam.flat[idx[0]], vm.flat[idx[1]], gam.flat[idx[2]]
        closed = (breeder_variance_horizon(L, M, v0, crit.q, crit.t_max),
                  breeder_drift_horizon(G, mu0, c, v0, crit.d, crit.t_max),
                  breeder_dilution_horizon(G, crit.r, crit.t_max))
        for name, cl, f in zip(REASONS, closed, fwd):
            n += 1
            if (cl if cl is not None else -1) != int(f[idx]):
                bad += 1
                mismatches.append(f"{name}: lambda={L:g}, V_m={M:g}, gamma={G:g}: closed "
                                  f"{cl}, forward {int(f[idx])}")
    return n, bad, mismatches


# --- figures ------------------------------------------------------------------------------

def horizon_figure(cfg, grids, crit, path: Path) -> None:
    settings, h2s, ws = cfg["settings"], cfg["h2"], np.array(cfg["w_grid"])
    names = [s["name"] for s in cfg["samplers"]]
    rows = [(k, s) for s in range(len(settings)) for k in range(len(h2s))]
    t_cens = crit.t_max * 1.45
    jitter = dict(zip(cfg["schedules"], (0.93, 1.0, 1.075)))
    fig, axes = plt.subplots(len(rows), len(names), figsize=(12, 2.8 * len(rows) + 1.3),
                             sharex=True, sharey=True)
    axes = np.atleast_2d(axes)
    for r, (k, s) in enumerate(rows):
        st = settings[s]
        for c, name in enumerate(names):
            ax = axes[r, c]
            g = grids[name]
            ax.axhline(crit.t_max, color="0.6", lw=0.8, ls="--")
            ax.axvline(1.0, color="0.85", lw=0.8)
            for i, kind in enumerate(cfg["schedules"]):
                t, reason = g["t"][i, :, k, s], g["reason"][i, :, k, s]
                y = np.where(t > 0, t, t_cens) * jitter[kind]
                ax.plot(ws, y, color=COLOURS[kind], lw=1.0, alpha=0.6)
                for rsn, mk in MARKERS.items():
                    sel = (t > 0) & (reason == REASONS.index(rsn))
                    ax.plot(ws[sel], y[sel], ls="none", marker=mk, ms=5,
                            color=COLOURS[kind])
                sel = t <= 0
                ax.plot(ws[sel], y[sel], ls="none", marker="^", ms=6, mfc="white",
                        color=COLOURS[kind])
            ax.set_xscale("log")
            ax.set_xticks(XTICKS)
            ax.xaxis.set_major_formatter(FuncFormatter(lambda x, _: f"{x:g}"))
            ax.set_yscale("log")
            ax.set_ylim(0.8, t_cens * 1.3)
            ticks = [1, 2, 5, 10, 20, crit.t_max, t_cens]
            ax.set_yticks(ticks)
            ax.set_yticklabels([f"{x:g}" for x in ticks[:-1]] + [f">{crit.t_max}"])
            ax.minorticks_off()
            ax.grid(True, which="major", color="0.9", lw=0.6)
            ax.set_title(f"{st['name']}: u = {st['var0']:g}, h\u00b2 = {h2s[k]:g}; {name}",
                         fontsize=10)
            if c == 0:
                ax.set_ylabel("predicted horizon t* (generations)")
    handles = [Line2D([], [], color=COLOURS[k], lw=1.5,
                      label=k if k == "constant" else f"{k} decay to {cfg['schedule_end']:g}")
               for k in cfg["schedules"]]
    handles += [Line2D([], [], color="0.3", ls="none", marker=m, label=f"collapse: {rsn}")
                for rsn, m in MARKERS.items()]
    handles += [Line2D([], [], color="0.3", ls="none", marker="^", mfc="white", ms=6,
                       label=f"no collapse within T_max = {crit.t_max}")]
    fig.legend(handles=handles, loc="upper center", ncol=4, fontsize=9, frameon=False,
               bbox_to_anchor=(0.5, 0.985))
    fig.suptitle("Zero-shot collapse horizon against CFG scale (exact Gaussian sampler map, "
                 "anchor base, no mutation)", y=0.998, fontsize=11)
    fig.supxlabel("CFG scale w (log scale; for decaying schedules the value at the first "
                  "step)", y=0.03, fontsize=10)
    fig.text(0.5, 0.004, "m = 1, m_u = 0, V_u = 1; DDIM on linear betas, floor-linspace "
             "timesteps. The three schedules are offset vertically by about 7% so that equal "
             "horizons stay visible;\nexact values in analyses/horizon_vs_cfg/results.md.",
             ha="center", fontsize=8, color="0.3")
    fig.tight_layout(rect=(0, 0.04, 1, 0.95))
    fig.savefig(path, dpi=cfg["figures"]["dpi"], pil_kwargs={"optimize": True})
    plt.close(fig)


def summary_figure(cfg, summ, path: Path) -> None:
    settings, ws = cfg["settings"], np.array(cfg["w_grid"])
    fig, axes = plt.subplots(len(settings), 3, figsize=(12.5, 3.4 * len(settings) + 0.8))
    axes = np.atleast_2d(axes)
    for s, st in enumerate(settings):
        for kind in cfg["schedules"]:
            ratio = np.array([summ[(st["name"], kind, w)].variance_ratio for w in ws])
            shift = np.array([summ[(st["name"], kind, w)].mean_shift for w in ws])
            weff = np.array([summ[(st["name"], kind, w)].w_eff for w in ws])
            label = kind if kind == "constant" else f"{kind} decay to {cfg['schedule_end']:g}"
            kw = dict(color=COLOURS[kind], marker="o", ms=3.5, lw=1.2, label=label)
            axes[s, 0].plot(ws, ratio, **kw)
            axes[s, 1].plot(ws, shift, **kw)
            axes[s, 2].plot(ws, weff, **kw)
        axes[s, 0].set_yscale("log")
        lo, hi = axes[s, 0].get_ylim()
        subs = (1.0,) if hi / lo > 100 else (1.0, 2.0, 5.0)   # label 1-2-5 on short ranges
        axes[s, 0].yaxis.set_major_locator(LogLocator(base=10, subs=subs))
        axes[s, 0].yaxis.set_major_formatter(FuncFormatter(lambda x, _: f"{x:g}"))
        axes[s, 0].yaxis.set_minor_formatter(FuncFormatter(lambda x, _: ""))
        axes[s, 0].set_ylabel("variance ratio, guided / (w = 1)")
        axes[s, 1].set_ylabel("mean shift (w = 1 sd units)")
        axes[s, 2].set_ylabel("w_eff (constant w, same variance ratio)")
        axes[s, 2].plot(ws, ws, color="0.6", lw=0.8, ls=":", label="w_eff = w")
        for ax in axes[s]:
            ax.axvline(1.0, color="0.85", lw=0.8)
            ax.grid(True, color="0.92", lw=0.6)
            ax.set_title(f"{st['name']}: m = {st['mean0']:g}, u = {st['var0']:g}, "
                         f"m_u = {st['m_uncond']:g}, V_u = {st['v_uncond']:g}", fontsize=10)
            if s == len(settings) - 1:
                ax.set_xlabel("CFG scale w (start value for decaying schedules)")
        axes[s, 1].axhline(0.0, color="0.6", lw=0.8)
    axes[0, 2].legend(fontsize=9, loc="upper left")
    fig.suptitle(f"One generation of guided sampling, summarised "
                 f"({cfg['summary_sampler']}, floor-linspace timesteps; "
                 "qtrait.theory.sampler.summarize_schedule)", fontsize=11)
    fig.tight_layout(rect=(0, 0, 1, 0.97))
    fig.savefig(path, dpi=cfg["figures"]["dpi"], pil_kwargs={"optimize": True})
    plt.close(fig)


# --- main ---------------------------------------------------------------------------------

def main() -> None:
    start = time.perf_counter()
    cfg = tomllib.loads((HERE / "config.toml").read_text())
    crit = Criteria(**cfg["criteria"])
    samplers = {s["name"]: make_sampler(s) for s in cfg["samplers"]}
    check_spec = cfg["spacing_check"]
    settings, h2s, ws, T = cfg["settings"], cfg["h2"], cfg["w_grid"], crit.t_max

    specs = {s["name"]: s for s in cfg["samplers"]}
    summary_spec = specs[cfg["summary_sampler"]]
    with ProcessPoolExecutor(max_workers=cfg["workers"]) as pool:
        grids = horizon_grids(cfg, {**specs, check_spec["name"]: check_spec}, pool)
        summ = dict(pool.map(_summary_task, [(cfg, summary_spec, st, kind, w)
                                             for st in settings for kind in cfg["schedules"]
                                             for w in ws], chunksize=5))
    leading = grids.pop(check_spec["name"])
    first = cfg["samplers"][0]["name"]
    n_scalar = scalar_check(cfg, samplers[first], crit, grids[first])
    weff_err = max(abs(summ[(st["name"], "constant", w)].w_eff - w)
                   for st in settings for w in ws)

    tilt_rows, tilt_n, tilt_bad = tilt_check(cfg, crit)
    br_n, br_bad, br_mis = breeder_check(cfg, crit)

    fig_h, fig_s = ROOT / cfg["figures"]["horizon"], ROOT / cfg["figures"]["summary"]
    fig_h.parent.mkdir(parents=True, exist_ok=True)
    horizon_figure(cfg, grids, crit, fig_h)
    summary_figure(cfg, summ, fig_s)

    # ---- results.md
    sched_short = {"constant": "const", "linear": "lin", "cosine": "cos"}
    text = ["# Predicted collapse horizon against CFG scale (generated by run.py; do not edit)",
            "",
            "Regenerate with `python analyses/horizon_vs_cfg/run.py` (settings in "
            "`config.toml`). Zero-shot predictions (`qtrait.theory.zeroshot.zero_shot`, "
            "exact Gaussian sampler map) for one scalar trait, iterated on expected moments "
            "(no sampling noise), anchor = base, no mutation, no condition drop. Deterministic.",
            "",
            f"Criteria: variance V_t/V_0 < q = {crit.q:g}; drift |mu_t - mu_0|/sqrt(V_0) > "
            f"d = {crit.d:g}; dilution |mu_t - m_u| < r |mu_0 - m_u|, r = {crit.r:g}; "
            f"T_max = {T}.",
            "", "Generation 0 (D_0's moments = the base model's conditional moments):", ""]
    for st in settings:
        text.append(f"- {st['name']} ({st['label']}): mean0 = m_base = {st['mean0']:g}, "
                    f"var0 = v_base = {st['var0']:g}, m_uncond = {st['m_uncond']:g}, "
                    f"v_uncond = {st['v_uncond']:g}")
    text += ["", "Samplers: DDIM, DDPM linear betas 1e-4..0.02 over 1000 training steps, "
             "epsilon prediction, x_T ~ N(0, 1):", ""]
    for spec in cfg["samplers"] + [check_spec]:
        s = make_sampler(spec)
        text.append(f"- {spec['name']}: {s.steps} steps, spacing `{s.timestep_spacing}`, "
                    f"prev = `{s.prev or 'default'}`; first timesteps "
                    f"{s.timesteps()[:3].tolist()}, last {s.timesteps()[-2:].tolist()}")
    text += ["", f"Decaying schedules go linearly or along a half cosine from w at the first "
             f"(noisiest) step to {cfg['schedule_end']:g} at the last; for w < 1 they rise "
             "to 1.", "",
             f"Software: qtrait {qtrait.__version__}, Python {platform.python_version()}, "
             f"numpy {np.__version__}, matplotlib {matplotlib.__version__}.", ""]

    text += ["## Sampler variance factor at w = 1", "",
             "Variance of the unguided samples over the model's variance "
             "(`sampler_variance_factor`): what a chain with h2 = 1 loses per generation "
             "at w = 1 from the sampler alone.", "",
             "| sampler | " + " | ".join(f"{st['name']} (u = {st['var0']:g})"
                                        for st in settings) + " |",
             "|---|" + "---|" * len(settings)]
    for spec in cfg["samplers"] + [check_spec]:
        s = make_sampler(spec)
        text.append(f"| {spec['name']} | " + " | ".join(
            f"{sampler_variance_factor(s, st['mean0'], st['var0'], st['m_uncond'], st['v_uncond']):.4f}"
            for st in settings) + " |")
    text += ["", "Against the step count, DDIM with: `floor_linspace` stepping to the next "
             "listed timestep (as above); `floor_linspace` with DDIM's default step to "
             "t - T // steps (`stride`, what `--spacing floor_linspace` gives in `qtrait "
             "theory horizon`, `theory sweep` and `simulate`); and diffusers' default "
             "`leading` spacing (also with the stride step):", "",
             "| steps | " + " | ".join(f"{st['name']} floor_linspace | {st['name']} "
                                      f"floor_linspace, stride | {st['name']} leading"
                                      for st in settings) + " |",
             "|---|" + "---|" * (3 * len(settings))]
    for n in cfg["factor_steps"]:
        variants = (Sampler("ddim", n, timestep_spacing="floor_linspace", prev="next"),
                    Sampler("ddim", n, timestep_spacing="floor_linspace", prev="stride"),
                    Sampler("ddim", n, timestep_spacing="leading"))
        text.append(f"| {n} | " + " | ".join(
            f"{sampler_variance_factor(v, st['mean0'], st['var0'], st['m_uncond'], st['v_uncond']):.4f}"
            for st in settings for v in variants) + " |")

    text += ["", "## Horizons", "",
             f"Cells: t* and the criterion that fired first (var = variance, drift, dil = "
             f"dilution); `>{T}` = no collapse within T_max. Columns: sampler steps and "
             "schedule (const = constant, lin = linear decay, cos = cosine decay).", "",
             f"Check: {n_scalar} cells recomputed with scalar inputs ({first}); zero_shot's "
             "run horizon equals the vectorised per-trait horizon in all of them.", ""]
    for s_idx, st in enumerate(settings):
        for k, h2 in enumerate(h2s):
            text += [f"### {st['name']}: u = {st['var0']:g}, h2 = {h2:g}", ""]
            cols = [(name, i) for name in samplers for i in range(len(cfg["schedules"]))]
            text.append("| w | " + " | ".join(
                f"{samplers[n].steps} {sched_short[cfg['schedules'][i]]}" for n, i in cols)
                + " |")
            text.append("|---|" + "---|" * len(cols))
            for j, w in enumerate(ws):
                text.append(f"| {w:g} | " + " | ".join(
                    cell(grids[n]["t"][i, j, k, s_idx], grids[n]["reason"][i, j, k, s_idx], T)
                    for n, i in cols) + " |")
            text.append("")

    ref = grids[cfg["summary_sampler"]]
    diff = ref["t"] != leading["t"]
    text += [f"## Spacing: {check_spec['name']} against {cfg['summary_sampler']}", "",
             f"{int(diff.sum())} of {diff.size} cells (schedule x w x h2 x setting) differ "
             f"in t*; {int(((ref['t'] != leading['t']) | (ref['reason'] != leading['reason'])).sum())} "
             "differ in t* or reason.", ""]
    if diff.any():
        text += ["| setting | h2 | schedule | w | " + cfg["summary_sampler"] + " | "
                 + check_spec["name"] + " |", "|---|---|---|---|---|---|"]
        for i, j, k, s_idx in zip(*np.nonzero(diff)):
            text.append(f"| {settings[s_idx]['name']} | {h2s[k]:g} | {cfg['schedules'][i]} | "
                        f"{ws[j]:g} | {cell(ref['t'][i, j, k, s_idx], ref['reason'][i, j, k, s_idx], T)} | "
                        f"{cell(leading['t'][i, j, k, s_idx], leading['reason'][i, j, k, s_idx], T)} |")
        text.append("")

    text += [f"## One generation, summarised ({cfg['summary_sampler']})", "",
             "From the generation-0 model (m, u) = (mean0, var0): `summarize_schedule` gives "
             "the variance ratio guided / (w = 1) (same sampler, so the sampler's own loss "
             "cancels), the mean shift (guided - (w = 1)) in units of the w = 1 standard "
             "deviation, and w_eff, the constant scale with the same variance ratio. "
             "V_1/V_0 and (mu_1 - mu_0)/sqrt(V_0) are generation 1 of the zero-shot "
             "trajectory (they include the sampler's loss; they do not depend on h2 because "
             "D_0 equals the base model). t* columns repeat the horizon tables.", "",
             f"Constant schedules: w_eff recovers w to within {weff_err:.1e} (root-finding "
             "check).", ""]
    for s_idx, st in enumerate(settings):
        for i, kind in enumerate(cfg["schedules"]):
            title = kind if kind == "constant" else f"{kind} decay to {cfg['schedule_end']:g}"
            text += [f"### {st['name']} (u = {st['var0']:g}): {title}", "",
                     "| w | variance ratio | mean shift | w_eff | V_1/V_0 | "
                     "(mu_1 - mu_0)/sqrt(V_0) | "
                     + " | ".join(f"t* (h2 = {h:g})" for h in h2s) + " |",
                     "|---|---|---|---|---|---|" + "---|" * len(h2s)]
            for j, w in enumerate(ws):
                sm = summ[(st["name"], kind, w)]
                text.append(
                    f"| {w:g} | {sm.variance_ratio:.4g} | {sm.mean_shift:+.4f} | "
                    f"{sm.w_eff:.4f} | {ref['v1_ratio'][i, j, 0, s_idx]:.4g} | "
                    f"{ref['shift1'][i, j, 0, s_idx]:+.4f} | "
                    + " | ".join(cell(ref["t"][i, j, k, s_idx], ref["reason"][i, j, k, s_idx], T)
                                 for k in range(len(h2s))) + " |")
            text.append("")

    text += ["## Closed-form horizons against forward iteration", "",
             "Tilt model, h2 = 1, frozen unconditional branch, m = 1, m_u = 0, constant w "
             "over the w grid: `tilt_variance_horizon` (t* of the variance criterion, or the "
             "generation where the tilt stops existing) against the first variance crossing "
             "and the first invalid generation of `predict(model='tilt')`.", "",
             "| u = V_0 | V_u | w values | collapse/growth/stable | examples | mismatches |",
             "|---|---|---|---|---|---|", *tilt_rows, "",
             f"{tilt_n - tilt_bad} of {tilt_n} tilt horizons agree.", "",
             f"Breeder model (V_0 = 0.36, mu_0 = 1, centre 0): `breeder_variance_horizon`, "
             f"`breeder_drift_horizon` and `breeder_dilution_horizon` against the first "
             f"crossing of each criterion by `predict(model='breeder')`, over lambda in "
             f"{cfg['closed_form_check']['breeder_lambda']}, V_m in "
             f"{cfg['closed_form_check']['breeder_mutation']}, gamma in "
             f"{cfg['closed_form_check']['breeder_gamma']}: {br_n - br_bad} of {br_n} "
             f"horizons agree.", ""]
    text += [f"- mismatch: {m}" for m in br_mis]
    if br_mis:
        text.append("")
    out = HERE / "results.md"
    out.write_text("\n".join(text))
    elapsed = time.perf_counter() - start
    print("\n".join(text))
    print(f"tilt closed form: {tilt_n - tilt_bad} of {tilt_n} agree; breeder: "
          f"{br_n - br_bad} of {br_n} agree")
    for p in (out, fig_h, fig_s):
        print(f"wrote {p.relative_to(ROOT)} ({p.stat().st_size / 1024:.0f} KB)")
    print(f"elapsed {elapsed:.1f} s")


if __name__ == "__main__":
    main()
