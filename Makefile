# r1ov: two commands on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml constraints.txt | sha256sum | cut -c1-12)

.PHONY: venv system-deps demo test test-fast lint compile check-compiled bench bench-data constraints clean

venv: $(STAMP)

# The environment: exact versions from constraints.txt, the package editable, dev tools.
$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -c constraints.txt -e ".[dev]"
	rm -f $(VENV)/.installed-* && touch $@

# OCR for the formalize stage (pytesseract drives this binary); Debian/Ubuntu package names.
system-deps:
	@command -v tesseract >/dev/null || { \
	  SUDO=$$(test "$$(id -u)" = 0 || echo sudo); \
	  $$SUDO apt-get update && $$SUDO apt-get install --yes --no-install-recommends tesseract-ocr tesseract-ocr-eng; }

demo: venv system-deps
	$(BIN)/r1ov demo --workdir demo-run

test: venv system-deps
	$(BIN)/pytest -q

test-fast: venv system-deps
	$(BIN)/pytest -q -m "not slow"

lint: venv
	$(BIN)/ruff check src components pipelines tests
	$(BIN)/ruff format --check src components pipelines tests

compile: venv
	$(BIN)/r1ov compile

bench: venv
	$(BIN)/python -m r1ov.bench all

bench-%: venv
	$(BIN)/python -m r1ov.bench $*

# Re-pin the whole tree after changing a direct dependency in pyproject.toml.
constraints: venv
	{ echo "# Exact versions tested together on Python 3.11 (x86_64). Regenerate with \`make constraints\`."; \
	  $(BIN)/pip freeze --exclude-editable; } > constraints.txt

clean:
	rm -rf demo-run .pytest_cache .ruff_cache build dist
