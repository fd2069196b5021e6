# The two commands of the README. Both build or refresh .venv/ first (tools/setup_env.sh);
# once it is up to date they start at once.
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.focal-plugins-env

.PHONY: demo test env clean-env

demo: $(STAMP)
	$(PY) tools/demo.py $(DEMO_ARGS)

test: $(STAMP)
	$(PY) -m pytest $(PYTEST_ARGS)

env: $(STAMP)

$(STAMP): pyproject.toml requirements/env.txt tools/setup_env.sh tools/install_mmcv.sh \
		tools/install_detectron2.sh tools/detectron2_C_standin.py
	bash tools/setup_env.sh
	touch $@

clean-env:
	rm -rf $(VENV)
