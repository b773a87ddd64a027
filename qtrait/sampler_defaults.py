"""The sampler's default settings, in a module of its own so that the command line can
show them without importing the fitting code (:class:`qtrait.fit.SamplerSettings` and
every command's ``--chains``, ``--draws``, ``--tune``, ``--target-accept`` read them).

Why 500 tuning steps and 1,500 draws per chain (until 2026-12-07: 1,000 and 1,000, the
same 2,000 iterations): nutpie's adaptation (its own default is 300 tuning steps) had
settled long before 1,000, and the fits of the shipped runs that missed the convergence
rule did so on ESS and R-hat of their slowest population parameters, which more draws
raise. Over the four shipped runs at seeds 0, 1 and 2 (analyses/convergence/results.md)
9 of 12 default fits pass the rule, against 7 of 12 with the old split; chain_w1 fails
at every seed either way (docs/models.md section 7).
"""

#: MCMC chains
CHAINS = 4
#: draws kept per chain after tuning
DRAWS = 1500
#: tuning (warm-up) steps per chain, discarded
TUNE = 500
#: NUTS target acceptance rate
TARGET_ACCEPT = 0.9
