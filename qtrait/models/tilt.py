"""The ``tilt`` model: CFG as selection on a Gaussian trait (theory.md sections 2 and 4).

Per cell (concept, trait), generation t >= 1, from the observed guided moments of t-1:

1. inheritance toward the anchor a (the base model, or the previous learned model):
   m_t = m_a + h2 (zbar_{t-1} - m_a) + sigma_m e_t,
   u_t = (h2 s2_{t-1} + (1 - h2) V_a) exp(tau f_t)       (e, f ~ N(0, 1): learning noise)
2. condition drop (when the run's p_drop > 0): the unconditional branch adapts toward the
   learned conditional by rho in natural parameters;
3. selection: the tilt with w_eff = 1 + kappa (w - 1);
4. mutation: V_m added to the guided set.

Observations: the guided set samples (mu_t, V_t), the w = 1 probe samples (m_t, u_t), the
unconditional probe the unconditional branch; at generation 0 the probes sample the base
model, which identifies (m_b, V_b) and the unconditional moments. h2, kappa and V_m are
partially pooled over the cells. The ``exact`` model is this model with the tilt replaced
by the exact Gaussian sampler map.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..errors import QtraitError
from .base import FORWARD_KEYS, ModelSpec, first_row, pooled, sample_guided, start_state
from .data import ChainData, design_schedule

#: Priors, in standardised trait units (generation-0 SD = 1). Stated in docs/models.md.
DEFAULT_PRIORS = {
    "logit_h2_mu": (1.5, 1.0),     # Normal: h2 ~ 0.8 (0.4..0.95) at the population level
    "logit_h2_sd": 0.5,            # HalfNormal: spread across cells
    "log_kappa_mu": (0.0, 0.5),    # Normal: w_eff - 1 = kappa (w - 1); kappa ~ 0.4..2.7
    "log_kappa_sd": 0.3,
    "v_mut_scale": 0.3,            # HalfNormal scale of the population V_m scale
    "m_base": (0.0, 2.0),          # Normal: base model's conditional mean
    "log_v_base": (0.0, 1.0),      # Normal: its log variance
    "m_uncond": (0.0, 3.0),        # Normal: base unconditional mean
    "log_v_uncond": (0.5, 1.0),    # Normal: its log variance (wider than conditional)
    "rho": (1.0, 1.0),             # Beta: condition-drop adaptation (only when p_drop > 0)
    "sigma_learn": 0.1,            # HalfNormal: learning noise on the learned mean
    "tau": 0.2,                    # HalfNormal: learning noise on the learned log variance
}


def _pt_tilt(m, u, mu_u, vu, w_e):
    import pytensor.tensor as pt

    # the tilt exists while its precision is positive; outside, a tiny precision makes
    # the likelihood vanishingly small instead of undefined
    prec = pt.maximum(w_e / u - (w_e - 1.0) / vu, 1e-8)
    var = 1.0 / prec
    return m + (w_e - 1.0) * (var / vu) * (m - mu_u), var


@dataclass(frozen=True)
class TiltSpec(ModelSpec):
    """CFG as a tilt, inheritance with h2, condition drop, mutation; fitted with probes."""

    name: str = "tilt"
    priors: dict = field(default_factory=lambda: dict(DEFAULT_PRIORS))
    selection: str = "tilt"
    reported = ("h2", "kappa", "w_eff", "v_mut", "rho", "sigma_learn", "tau")
    population = ("logit_h2_mu", "logit_h2_sd", "log_kappa_mu", "log_kappa_sd",
                  "v_mut_scale")
    needs_probes = True

    def describe(self) -> str:
        return (f"{self.name}: inheritance (h2) toward the anchor, CFG as "
                f"{'the tilt' if self.selection == 'tilt' else 'the exact sampler map'} with "
                "w_eff - 1 = kappa (w - 1), condition drop (rho), mutation V_m; pooled over "
                "traits and concepts")

    def schedule(self, cd: ChainData):
        return design_schedule(cd.design())

    def check(self, cd: ChainData) -> None:
        super().check(cd)
        guidance, _ = self.schedule(cd)
        if self.selection == "tilt" and guidance.kind != "constant":
            raise QtraitError(f"the tilt has no form for a guidance schedule "
                              f"({guidance.describe()}); use --model exact")
        if cd.design().get("anchor", "base") not in ("base", "previous"):
            raise QtraitError(f"unknown anchor {cd.design().get('anchor')!r} in the manifest")

    def design_constants(self, cd: ChainData) -> tuple:
        guidance, sampler = self.schedule(cd)
        d = cd.design()
        return (repr(guidance), repr(sampler), d.get("anchor", "base"),
                float(d.get("p_drop", 0.0)) > 0)

    def sampled_moments(self, cd: ChainData, m, u, mu_u, vu, gain) -> dict:
        """Moments the three sets sample, from the learned and unconditional moments
        (symbolic): the guided set through the tilt, the probes at w = 1 (where the tilt
        is the identity)."""
        guidance, _ = self.schedule(cd)
        w = float(guidance.values(1)[0])
        return {"guided": _pt_tilt(m, u, mu_u, vu, 1.0 + gain * (w - 1.0)),
                "probe_w1": (m, u), "probe_uncond": (mu_u, vu)}

    def build(self, cd: ChainData):
        import pymc as pm
        import pytensor.tensor as pt

        p = self.priors
        lay = self.layout(cd)
        design = cd.design()
        anchor = design.get("anchor", "base")
        G = cd.G
        with pm.Model(coords=self.coords(cd, lay)) as model:
            D = self.data_vars(cd)
            h2 = pm.Deterministic("h2", pm.math.sigmoid(pooled("logit_h2", p["logit_h2_mu"],
                                                                p["logit_h2_sd"])), dims="cell")
            kappa = pm.Deterministic("kappa", pt.exp(pooled("log_kappa", p["log_kappa_mu"],
                                                            p["log_kappa_sd"])), dims="cell")
            guidance, _ = self.schedule(cd)
            pm.Deterministic("w_eff", 1.0 + kappa * (float(guidance.scale) - 1.0), dims="cell")
            vm_scale = pm.HalfNormal("v_mut_scale", p["v_mut_scale"])
            v_mut = pm.Deterministic("v_mut", vm_scale * pm.HalfNormal("v_mut_z", 1.0,
                                                                       dims="cell"),
                                     dims="cell")
            m_b = pm.Normal("m_base", *p["m_base"], dims="cell")
            v_b = pm.Deterministic("v_base", pt.exp(pm.Normal("log_v_base", *p["log_v_base"],
                                                              dims="cell")), dims="cell")
            mu_b = pm.Normal("m_uncond", *p["m_uncond"], dims="cell")
            vu_b = pm.Deterministic("v_uncond", pt.exp(pm.Normal(
                "log_v_uncond", *p["log_v_uncond"], dims="cell")), dims="cell")
            if float(design.get("p_drop", 0.0)) > 0:
                rho = pm.Beta("rho", *p["rho"])
            else:
                rho = None
            sigma = pm.HalfNormal("sigma_learn", p["sigma_learn"])
            tau = pm.HalfNormal("tau", p["tau"])
            e_m = pm.Normal("learn_z_mean", 0, 1, dims=("generation", "cell"))
            e_v = pm.Normal("learn_z_logvar", 0, 1, dims=("generation", "cell"))
            zbar, s2 = D["prev_mean"], D["prev_var"]
            base = first_row(G) > 0       # generation 0 is the base model itself
            if anchor == "base":
                m = m_b + h2 * (zbar - m_b) + sigma * e_m
                u = (h2 * s2 + (1 - h2) * v_b) * pt.exp(tau * e_v)
            else:
                ms, us = [m_b], [v_b]
                for t in range(1, G):
                    ms.append(ms[-1] + h2 * (zbar[t] - ms[-1]) + sigma * e_m[t])
                    us.append((h2 * s2[t] + (1 - h2) * us[-1]) * pt.exp(tau * e_v[t]))
                m, u = pt.stack(ms), pt.stack(us)
            m_all = pt.switch(base, m_b, m)
            u_all = pt.switch(base, v_b, u)
            if rho is None:       # frozen unconditional branch
                mu_all = pt.zeros((G, 1)) + mu_b
                vu_all = pt.zeros((G, 1)) + vu_b
            else:                 # condition drop: natural-parameter mixing
                prec_u = (1 - rho) / vu_b + rho / u_all
                mu_all = pt.switch(base, mu_b, ((1 - rho) * mu_b / vu_b + rho * m_all / u_all)
                                   / prec_u)
                vu_all = pt.switch(base, vu_b, 1.0 / prec_u)
            pm.Deterministic("learned_mean", m_all, dims=("generation", "cell"))
            pm.Deterministic("learned_var", u_all, dims=("generation", "cell"))
            moments = self.sampled_moments(cd, m_all, u_all, mu_all, vu_all, kappa)
            gm, gv = moments["guided"]
            gv = gv + v_mut
            moments["guided"] = (gm, gv)
            pm.Deterministic("guided_mean", gm, dims=("generation", "cell"))
            pm.Deterministic("guided_var", gv, dims=("generation", "cell"))
            self.likelihood(D, lay, moments)
        return model

    def map_params(self, cd: ChainData, draws: dict):
        from ..theory.generation import MapParams

        guidance, sampler = self.schedule(cd)
        S = draws["h2"].shape[0]
        rho = draws["rho"][:, None] if "rho" in draws else np.zeros((S, 1))
        return MapParams(model=self.selection, h2=draws["h2"],
                         anchor=cd.design().get("anchor", "base"), guidance=guidance,
                         sampler=sampler, rho=rho, v_mut=draws["v_mut"], gain=draws["kappa"])

    def forward(self, draws: dict, cd: ChainData, start: int, t_end: int,
                rng: np.random.Generator) -> dict:
        """Guided moments of generations start..t_end per draw (the same generation map
        as the simulator), latent and as observed in a set of the run's size, from the
        observed guided set of start-1 (keys FORWARD_KEYS)."""
        from ..theory.generation import Generation0, generation_step

        h2 = draws["h2"]
        S, J = h2.shape
        params = self.map_params(cd, draws)
        g0 = Generation0.of(mean0=np.zeros(J), var0=np.ones(J), m_base=draws["m_base"],
                            v_base=draws["v_base"], m_uncond=draws["m_uncond"],
                            v_uncond=draws["v_uncond"])
        lm, lv = draws["learned_mean"], draws["learned_var"]   # (S, G, J)
        prev = (lm[:, start - 1], lv[:, start - 1])
        st = start_state(cd, start, (S, J))
        sigma, tau = draws["sigma_learn"][:, None], draws["tau"][:, None]
        out = {k: np.empty((S, t_end - start + 1, J)) for k in FORWARD_KEYS}
        for i in range(t_end - start + 1):
            noise = (sigma * rng.standard_normal((S, J)), tau * rng.standard_normal((S, J)))
            with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
                r = generation_step(st.parents.mean, st.parents.var, prev, g0, params,
                                    noise)
            gm = np.where(r.valid, r.guided_mean, np.nan)
            gv = np.where(r.valid, r.guided_var, np.nan)
            prev = (r.learned_mean, r.learned_var)
            zbar, s2 = sample_guided(rng, gm, gv, st.n, st.kurt, st.skew)
            st.parents.add(st.n, zbar, s2)
            for k, v in zip(FORWARD_KEYS, (gm, gv, zbar, s2)):
                out[k][:, i] = v
        return out | {"m_uncond": draws["m_uncond"]}
