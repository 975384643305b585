# make run   - set up .venv and start the app and one import worker on the embedded defaults
# make worker - one more import worker
# make test  - set up .venv with the test tools and run the whole suite
# make test-unit - the fast layer: only the tests that need no database, model, S3, IMAP or browser
# make bench - every benchmark of the cache (python -m benchmarks.cache all); results in bench-results/
# make compare-gptcache - our cache against GPTCache, which gets a venv of its own
# make threshold - what each matching technique buys on the shared word pairs, and its cost
# make attack - the full-size hostile-input attacks (slow; the fast ones are in make test)
# make load  - 8 browser sessions searching and 2 imports against the real app, on loopback
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PORT ?= 8501
BENCH_ENTRIES ?= 10000 100000 1000000
GPTCACHE_VENV := bench-results/gptcache-venv

.PHONY: run worker test test-unit attack venv venv-dev demo bench threshold compare-gptcache load clean

$(VENV)/.installed: requirements.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	# torch is pinned to the CPU build in requirements.txt and installed in this same command.
	$(PY) -m pip install --quiet -r requirements.txt
	touch $@

$(VENV)/.installed-dev: $(VENV)/.installed requirements-dev.txt
	$(PY) -m pip install --quiet -r requirements-dev.txt
	touch $@

venv: $(VENV)/.installed
venv-dev: $(VENV)/.installed-dev

# The app and one import worker; the worker stops when the app does (Ctrl-C stops both).
run: venv
	$(PY) -m mail worker & worker=$$!; \
	trap 'kill $$worker 2>/dev/null; wait $$worker 2>/dev/null' EXIT INT TERM; \
	$(VENV)/bin/streamlit run asgi.py --server.port $(PORT) --server.headless true --browser.gatherUsageStats false

# One more import worker (any number may run, on any machine with the same settings)
worker: venv
	$(PY) -m mail worker

demo: venv
	$(PY) -m mail demo --import

test: venv-dev
	$(PY) -m pytest -q

test-unit: venv-dev
	$(PY) -m pytest -q -m "not pg and not model and not s3 and not imap and not browser and not attack"

attack: venv-dev
	$(PY) -m pytest -q -m attack

# make bench BENCH_ENTRIES="10000 100000" - leave out the million (its index takes 10-20+ minutes)
bench: venv-dev
	$(PY) -m benchmarks.cache all --entries $(BENCH_ENTRIES) --mail ../shared/data/mail

threshold: venv
	$(PY) -m benchmarks.threshold --pairs ../shared/data/pairs --latency \
		--json bench-results/threshold.json --markdown bench-results/threshold.md

load: venv-dev
	$(PY) -m benchmarks.load --seconds 120 --workers 8 --imports 2 --json bench-results/load.json

$(GPTCACHE_VENV)/.installed: benchmarks/gptcache-requirements.txt
	test -x $(GPTCACHE_VENV)/bin/python || $(PYTHON) -m venv $(GPTCACHE_VENV)
	$(GPTCACHE_VENV)/bin/python -m pip install --quiet -r benchmarks/gptcache-requirements.txt
	touch $@

compare-gptcache: venv $(GPTCACHE_VENV)/.installed
	$(PY) -m benchmarks.gptcache_compare --gptcache-python $(GPTCACHE_VENV)/bin/python \
		--pairs ../shared/data/pairs --json bench-results/gptcache-compare.json \
		--markdown bench-results/gptcache-compare.md

clean:
	rm -rf $(VENV) .pytest_cache
