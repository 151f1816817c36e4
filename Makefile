# The two commands in the README:  `make serve`  and  `make test`.
VENV ?= .venv
PORT ?= 8765

.PHONY: setup serve test lint bench

setup:
	bash scripts/setup.sh

serve: setup
	$(VENV)/bin/loom serve --port $(PORT)

test: setup
	$(VENV)/bin/ruff check core plugins tests bench
	$(VENV)/bin/python -m pytest -q
	bash scripts/conformance.sh

bench: setup
	for b in bench/*.py; do echo "== $$b"; $(VENV)/bin/python $$b || exit 1; done
