# The two commands in the README:  `make serve`  and  `make test`.
VENV ?= .venv
PORT ?= 8765

.PHONY: setup serve test lint bench

setup:
	bash scripts/setup.sh

serve: setup
	$(VENV)/bin/loom serve --port $(PORT)

# The MCP conformance suite runs before pytest so the last line is pytest's summary.
test: setup
	$(VENV)/bin/ruff check core plugins tests bench scripts
	bash scripts/conformance.sh
	$(VENV)/bin/python -m pytest -q

bench: setup
	@failed=; for b in bench/[!_]*.py; do echo "== $$b"; $(VENV)/bin/python $$b || failed="$$failed $$b"; done; \
	if [ -n "$$failed" ]; then echo "missed a target or failed:$$failed"; exit 1; fi
