# Two commands do everything: `make test` and `make demo`.  Both bring the
# environment (.venv) up first; a second call rebuilds nothing.
VENV ?= .venv
PY := $(VENV)/bin/python
ENV_STAMP := $(VENV)/.mmdcn-env-ready
PYTEST_ARGS ?=

.PHONY: env test test-all demo study clean-env gpu-check

env: $(ENV_STAMP)

$(ENV_STAMP): setup.py tools/setup_env.sh $(wildcard mmdcn_plugin/csrc/*.cpp)
	VENV=$(VENV) bash tools/setup_env.sh
	touch $@

# --durations: CI's log names the slowest tests, so the 15-minute budget is kept by
# looking, not guessing.
test: env
	$(PY) -m pytest tests --durations=15 $(PYTEST_ARGS)

# Includes the tests marked slow.
test-all: env
	$(PY) -m pytest tests --runslow $(PYTEST_ARGS)

demo: env
	$(PY) tools/demo.py

# The robustness study (docs/study/): 4 variants x 2 arms x 5 seeds on the quick-start
# recipe, each swept over rotation, scale and shear; one JSON per finished run under
# docs/study/runs/ (commit them), so a later call continues where it stopped.
# STUDY_ARGS=--quick for the smoke version, STUDY_ARGS='--max-runs 1' for one run.
STUDY_ARGS ?=
study: env
	$(PY) tools/study.py $(STUDY_ARGS)

# The end-to-end check of a GPU machine (docs/gpu/README.md): environment, CUDA tests, a
# one-epoch train/test, op and model timings; report.md, gpu_check.json and logs/ in
# GPU_CHECK_DIR.  No env: the lent GPU machine has no .venv (its packages come from the
# GPU kit), so the Python on PATH runs it there.  GPU_CHECK_ARGS='--steps ops-float32'.
GPU_PY ?= $(if $(wildcard $(PY)),$(PY),python3)
GPU_CHECK_DIR ?= work_dirs/gpu-check
GPU_CHECK_ARGS ?=
gpu-check:
	$(GPU_PY) tools/gpu_check.py --out-dir $(GPU_CHECK_DIR) $(GPU_CHECK_ARGS)

clean-env:
	rm -rf $(VENV)
