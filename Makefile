# Two entry points, both idempotent: the first run builds .venv (minutes,
# mmcv is compiled once and then cached by pip), later runs reuse it.
VENV ?= .venv
PYTHON ?= python3
PY := $(VENV)/bin/python
STAMP := $(VENV)/.flexvit-mm-env
ENV_INPUTS := requirements/constraints.txt requirements/runtime.txt \
	requirements/tests.txt setup.py tools/setup_env.sh

# Tests use both cores; every test process runs torch on one thread.
PYTEST_ARGS ?= -n 2

.PHONY: env test demo clean-env

env: $(STAMP)

$(STAMP): $(ENV_INPUTS)
	PYTHON=$(PYTHON) tools/setup_env.sh $(VENV)
	touch $@

# pytest exits 5 when it collected no test; that is a failure here too.
test: env
	@$(PY) -m pytest $(PYTEST_ARGS) tests; rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "make test: pytest collected no tests, failing."; fi; \
	exit $$rc

demo: env
	$(PY) tools/demo.py

clean-env:
	rm -rf $(VENV)
