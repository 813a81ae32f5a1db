# r1ov: two commands on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml constraints.txt | sha256sum | cut -c1-12)

.PHONY: venv system-deps demo test test-fast lint compile bench constraints clean images

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

# Every image with one tag (images/docker-bake.hcl). Needs Docker with the buildx plugin (BuildKit);
# without it this says so and fails, so nobody takes a skipped build for a built one.
# BAKE_ARGS passes options through, e.g. `make images BAKE_ARGS="--push"` or `BAKE_ARGS="train"`.
BAKE_ARGS ?=
images:
	@if ! command -v docker >/dev/null 2>&1; then \
	  echo "make images: no docker command here; install Docker with the buildx plugin to build the images" >&2; exit 2; \
	elif ! docker buildx version >/dev/null 2>&1; then \
	  echo "make images: docker has no buildx plugin (BuildKit); install docker-buildx to build the images" >&2; exit 2; \
	else \
	  GIT_COMMIT=$$(git rev-parse HEAD 2>/dev/null || echo unknown) docker buildx bake -f images/docker-bake.hcl $(BAKE_ARGS); \
	fi

clean:
	rm -rf demo-run .pytest_cache .ruff_cache build dist
