# make test   - CPU test suite (GPU tests are skipped with a reason where there is no GPU)
# make bench  - the benchmark tier for this machine; results and report under runs/bench/<tier>
#               (git-ignored; the committed reference results are in results/reference/bench/).
#               Resumes a killed run; FRESH=1 starts afresh. BENCH_ARGS="--space quick
#               --patterns 2:4" etc. are passed to suite bench.
#               On a GPU host the tier is bounded (an 18-minute sweep budget); FULL=1 runs the
#               full sweep. Then the measured training step (suite step; STEP_ARGS="..." are
#               passed to it) under runs/bench/step-<tier>.
SHELL := /bin/bash
PY = $(shell scripts/ensure-env.sh)
BENCH_OUT ?= runs/bench
TIER = $(shell $(PY) -c "import torch; print('gpu' if torch.cuda.is_available() else 'cpu')")
# suite step in make bench: the real shapes on every backend within 4 minutes on a GPU; on a CPU
# the shapes scaled by 8 (suite step's CPU default) within one minute
STEP_TIER_ARGS = $(if $(filter gpu,$(TIER)),--full-shapes --time-budget 240,--budget-s 0.5 --time-budget 60)

.PHONY: install test bench bench-ci lint format clean compare-masks first-look

install:
	@scripts/ensure-env.sh >/dev/null && echo "environment ready: $$(scripts/ensure-env.sh)"

test:
	$(PY) -m pytest -q

bench:
	@# resumes from $(BENCH_OUT)/$(TIER)/cache.jsonl when a run was killed; FRESH=1 starts afresh
	@# (suite bench checks every argument first, then moves the old cache aside, never deletes it)
	$(PY) -m suite bench --tier auto --out $(BENCH_OUT)/$(TIER) $(if $(FRESH),--fresh) $(if $(FULL),--full) $(BENCH_ARGS)
	@# the measured training step of the MLP blocks, with the sweep's projection beside it
	$(PY) -m suite step --out $(BENCH_OUT)/step-$(TIER) --force --sweep $(BENCH_OUT)/$(TIER) $(STEP_TIER_ARGS) $(STEP_ARGS)
	$(PY) -m pytest -q benchmarks --benchmark-only --benchmark-columns=min,median,iqr,rounds \
		--benchmark-json=$(BENCH_OUT)/pytest-benchmark-$(TIER).json -s

# A time-boxed first look at a GPU host (6 minutes; one archive). FIRST_LOOK_ARGS="--dry-run
# --for-device H100 --kernel-cache DIR" prints the plan on any host.
first-look:
	$(PY) -m suite first-look $(FIRST_LOOK_ARGS)

# CI regression check on CPU: micro-benchmarks vs the committed pytest-benchmark baseline, and a
# fresh quick sweep vs the committed results baseline (noise-aware; fails on a real slowdown).
CI_BASE := results/ci
bench-ci:
	$(PY) -m pytest -q benchmarks/test_bench_ci.py --benchmark-only \
		--benchmark-storage=file://$(CI_BASE)/pytest-benchmark --benchmark-compare=0001 \
		--benchmark-compare-fail=min:50%
	rm -rf $(BENCH_OUT)/ci-quick
	$(PY) -m suite bench --tier cpu --quick --no-progress --out $(BENCH_OUT)/ci-quick
	@# the committed baseline is from one 2-core CI-class VM; another CPU of that class may run CI
	$(PY) -m suite compare $(CI_BASE)/suite-quick/results.csv $(BENCH_OUT)/ci-quick \
		--best-only --gate geomean --threshold 0.3 --allow-cross-device

lint:
	$(PY) -m ruff check bimask kernels suite tests benchmarks scripts
	$(PY) -m ruff format --check bimask kernels suite tests benchmarks scripts

format:
	$(PY) -m ruff format bimask kernels suite tests benchmarks scripts
	$(PY) -m ruff check --fix bimask kernels suite tests benchmarks scripts

clean:
	rm -rf .venv .pytest_cache .benchmarks build *.egg-info

# Train every mask method x pattern x 3 seeds on Fashion-MNIST; report under results/accuracy/.
compare-masks:
	@test -d /usr/share/datasets/fashion-mnist || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    apt-get update -qq && apt-get install -y -qq dataset-fashion-mnist; \
	  else echo "Fashion-MNIST missing: run 'apt-get install dataset-fashion-mnist' as root" \
	    "(or pass DATA_DIR=... with the four IDX files)"; exit 2; fi; }
	$(PY) -m bimask.compare $(if $(PROFILE),--profile $(PROFILE),$(if $(FULL),,--quick)) $(if $(DATA_DIR),--data-dir $(DATA_DIR))
