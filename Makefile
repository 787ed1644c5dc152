# Two commands do everything: `make test` and `make demo`.  Both bring the
# environment (.venv) up first; a second call rebuilds nothing.
VENV ?= .venv
PY := $(VENV)/bin/python
ENV_STAMP := $(VENV)/.mmdcn-env-ready
PYTEST_ARGS ?=

.PHONY: env test test-all demo study clean-env

env: $(ENV_STAMP)

$(ENV_STAMP): setup.py tools/setup_env.sh $(wildcard mmdcn_plugin/csrc/*.cpp)
	VENV=$(VENV) bash tools/setup_env.sh
	touch $@

test: env
	$(PY) -m pytest tests $(PYTEST_ARGS)

# Includes the tests marked slow.
test-all: env
	$(PY) -m pytest tests --runslow $(PYTEST_ARGS)

demo: env
	$(PY) tools/demo.py

# The deformation study (docs/study/); resumable: run it again to continue.
# STUDY_ARGS=--quick for the smoke version.
STUDY_ARGS ?=
study: env
	$(PY) tools/study.py $(STUDY_ARGS)

clean-env:
	rm -rf $(VENV)
