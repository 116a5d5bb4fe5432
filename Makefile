# The two commands a newcomer needs: `make run` and `make test`.
VENV   ?= .venv
# The first Python >= 3.11 on PATH (macOS ships an older python3).
PYTHON ?= $(shell for p in python3.13 python3.12 python3.11 python3; do \
	command -v $$p >/dev/null 2>&1 && $$p -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null && { echo $$p; break; }; done)
PY     := $(VENV)/bin/python
# MLX's build on Linux: cpu (the default, no GPU needed) or cuda (an NVIDIA GPU, MLX's CUDA 13 build).
# macOS always uses Metal, whatever this says.
MLX    ?= cpu
$(if $(filter-out cpu cuda,$(MLX)),$(error MLX=$(MLX): expected MLX=cpu (the default) or MLX=cuda))
STAMP  := $(VENV)/.canrun-installed-$(MLX)

.PHONY: run test lint bench install clean

# Without DISCORD_TOKEN (environment or keychain), `canrun bot` explains how to get one and exits 2: that is advice, not a failed install,
# so make ends without an error of its own.
run: $(STAMP) config.toml
	@$(VENV)/bin/canrun bot || test $$? -eq 2

test: $(STAMP)
	$(PY) -m pytest

# ruff with the rules in pyproject.toml ([tool.ruff]); it only reports: it changes nothing.
lint: $(STAMP)
	$(VENV)/bin/ruff check .

bench: $(STAMP)
	@for b in bench/[!_]*.py; do echo "== $$b"; $(PY) $$b || exit 1; echo; done  # bench/_common.py is their setup

install: $(STAMP)

config.toml:
	cp config.example.toml config.toml
	@echo "created config.toml from config.example.toml: edit it to taste"

$(PY):
	@test -n "$(PYTHON)" || { echo "canrun needs Python 3.11 or newer (on macOS: brew install python@3.13)"; exit 1; }
	$(PYTHON) -m venv $(VENV)

# Reinstall when the dependencies or the MLX build change. The other build goes first: both install the same
# library file, so they cannot be installed together.
$(STAMP): pyproject.toml | $(PY)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip uninstall --quiet --yes $(if $(filter cuda,$(MLX)),mlx-cpu,mlx-cuda-13 mlx-cuda-12) 2>/dev/null || true
	$(PY) -m pip install --quiet -e '.[test,$(MLX)]'
	@rm -f $(VENV)/.canrun-installed*
	@touch $@

clean:
	rm -rf $(VENV) .pytest_cache
