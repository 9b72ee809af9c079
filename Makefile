# Two commands on a fresh machine: `make demo` and `make test`.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

# Debian packages: the emoji dataset's sources (fonts, Unicode and CLDR data), the speech
# synthesiser that voices the spoken-digits dataset, and the headless browser for tests.
SYSTEM_PACKAGES := fonts-noto-color-emoji unicode-data unicode-cldr-core espeak-ng chromium \
  tuxpaint-stamps-default

.PHONY: demo test lint format clean system-deps

$(PY):
	python3 -m venv $(VENV)

# torch is installed first, pinned, so pip takes the local CPU wheel instead of CUDA builds.
$(STAMP): $(PY) pyproject.toml
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP) system-deps
	$(VENV)/bin/jointspace demo --force  # replaces only an earlier demo run holding nothing else

test: $(STAMP) system-deps
	$(PY) -m pytest -q

system-deps:
	@dpkg -s $(SYSTEM_PACKAGES) >/dev/null 2>&1 || { \
	  command -v apt-get >/dev/null || { echo "install $(SYSTEM_PACKAGES) with your package manager"; exit 1; }; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $(SYSTEM_PACKAGES); }

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests benchmarks
	$(VENV)/bin/ruff format --check src tests benchmarks
	$(VENV)/bin/mypy  # the packages named in pyproject's [tool.mypy]
	$(VENV)/bin/lint-imports --no-cache  # the import contracts in pyproject

format: $(STAMP)
	$(VENV)/bin/ruff format src tests benchmarks
	$(VENV)/bin/ruff check --fix src tests benchmarks

clean:
	rm -rf $(VENV) build *.egg-info src/*.egg-info .pytest_cache .ruff_cache
