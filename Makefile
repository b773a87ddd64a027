# The two set-up commands of the README: `make demo` and `make test`.
# Each creates its own virtual environment on first use (.venv, .venv-test).

PYTHON ?= python3
PIP_FLAGS ?= -q --disable-pip-version-check --progress-bar off
DEMO_VENV := .venv
TEST_VENV := .venv-test
RUN ?= data/runs/chain_042
# the demo's forecast: a shipped real run whose horizon lies after the fitted generations
# (chain_w3, w = 3: detected at generation 4 under the benchmark's q = 0.3; README)
FORECAST_RUN ?= data/runs/chain_w3
FORECAST_OPTS ?= --from-generations 3 --q 0.3
# the demo's reports: the first two principal-component traits (20 of chain_042's 150
# cells) and breeder only, so they take minutes on a 2-core machine; the ReDiFine report
# measures rho from the probes and takes h2 from the zero-shot calibration (README;
# docs/cli.md section 14)
DEMO_REPORT ?= --traits pc_1,pc_2 --compare-models breeder

.PHONY: demo test test-slow bench examples clean

## demo: install the base package (statistics only, no torch), analyse the example run and
##       write the reports (reports/chain_042, reports/redifine)
demo: $(DEMO_VENV)/.installed
	$(DEMO_VENV)/bin/qtrait validate $(RUN)
	$(DEMO_VENV)/bin/qtrait summarize $(RUN)
	$(DEMO_VENV)/bin/qtrait theory horizon --run $(RUN)
	$(DEMO_VENV)/bin/qtrait predict $(FORECAST_RUN) $(FORECAST_OPTS)
	$(DEMO_VENV)/bin/qtrait report data/runs/chain_042 --out reports/chain_042 $(DEMO_REPORT)
	$(DEMO_VENV)/bin/qtrait report data/runs/chain_042_redifine --baseline data/runs/chain_042 --out reports/redifine $(DEMO_REPORT)

$(DEMO_VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(DEMO_VENV)
	$(DEMO_VENV)/bin/pip install $(PIP_FLAGS) -e .
	touch $@

## test: install everything (chain runner, sweeps, tests) and run the default test suite
test: $(TEST_VENV)/.installed
	$(TEST_VENV)/bin/ruff check qtrait tests bench analyses data
	$(TEST_VENV)/bin/ruff check tools
	$(TEST_VENV)/bin/python -m pytest -m "not slow"

## test-slow: the long statistical studies (calibration), marked `slow`
test-slow: $(TEST_VENV)/.installed
	$(TEST_VENV)/bin/python -m pytest -m slow

$(TEST_VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(TEST_VENV)
	$(TEST_VENV)/bin/pip install $(PIP_FLAGS) -e '.[chain,sweep,test]'
	touch $@

## bench: benchmarks that print figures (see bench/README.md)
bench: $(TEST_VENV)/.installed
	$(TEST_VENV)/bin/python bench/bench_import_summarize.py
	$(TEST_VENV)/bin/python bench/bench_chain.py
	$(TEST_VENV)/bin/python bench/bench_fit.py --with-exact
	$(TEST_VENV)/bin/python bench/bench_fit.py --simulated --skip-baseline

## examples: regenerate the shipped example runs in data/runs (the chains need torch)
examples: $(TEST_VENV)/.installed
	$(TEST_VENV)/bin/python data/make_example_runs.py

## benchmark: the real-chain forecasting benchmark (docs/results.md section 4): the pilot
##     (seed 1 of 26 candidate designs), the 16 chosen designs x seeds 1-3 (CPU miniature
##     chains, 898 images, generations 0..15), packed into data/benchmark/chains/*.parquet.
##     Resumable. Measured on the 2-core development machine: the first 20 pilot chains in
##     21 min 36 s (65 s a chain, lightly loaded), so the 58 chains take about 63 min idle
##     (the chains' own wall times are in data/benchmark/chains.json)
.PHONY: benchmark benchmark-scores
benchmark: $(TEST_VENV)/.installed
	OMP_WAIT_POLICY=PASSIVE $(TEST_VENV)/bin/qtrait chain sweep data/benchmark/pilot.toml --out runs/benchmark --engine local
	OMP_WAIT_POLICY=PASSIVE $(TEST_VENV)/bin/qtrait chain sweep data/benchmark/sweep.toml --out runs/benchmark --engine local
	$(TEST_VENV)/bin/python data/benchmark/pack.py runs/benchmark data/benchmark/sweep.toml

## benchmark-scores: the benchmark's scores from the packed chains (analyses/benchmark;
##     resumes from its committed records)
benchmark-scores: $(TEST_VENV)/.installed
	$(TEST_VENV)/bin/python analyses/benchmark/run.py pilot
	$(TEST_VENV)/bin/python analyses/benchmark/run.py nochange
	$(TEST_VENV)/bin/python analyses/benchmark/run.py statespace
	$(TEST_VENV)/bin/python analyses/benchmark/run.py backtest --seeds 1,2,3 --k 2,3,4,5
	$(TEST_VENV)/bin/python analyses/benchmark/run.py k1 --seeds 1,2,3
	$(TEST_VENV)/bin/python analyses/benchmark/run.py report

## docs: regenerate docs/api.md from the docstrings (tests/test_docs.py fails when it is stale)
.PHONY: docs
docs: $(TEST_VENV)/.installed
	$(TEST_VENV)/bin/python tools/gen_api_docs.py

## studies: the studies of analyses/ and the generated tables of docs/results.md. Each
## study resumes from its committed records (*.jsonl), so this only rewrites reports and
## figures unless records are deleted; the miniature-chain studies then run their chains
## (analyses/cfg_sweep/runs etc.; see docs/results.md for the times)
.PHONY: studies
studies: $(TEST_VENV)/.installed
	$(TEST_VENV)/bin/python analyses/horizon_vs_cfg/run.py
	$(TEST_VENV)/bin/python analyses/toy_chain_phenomena/run.py
	$(TEST_VENV)/bin/python analyses/interval_coverage/run.py
	$(TEST_VENV)/bin/python analyses/sbc/run.py
	$(TEST_VENV)/bin/python analyses/horizon_calibration/run.py
	$(TEST_VENV)/bin/python analyses/cfg_sweep/run.py
	$(TEST_VENV)/bin/python analyses/redifine_study/run.py
	$(TEST_VENV)/bin/python analyses/forecasting/run.py
	$(TEST_VENV)/bin/python analyses/results_summary.py

clean:
	rm -rf $(DEMO_VENV) $(TEST_VENV) build *.egg-info .pytest_cache
