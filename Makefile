# make run   - set up .venv and start the app on the embedded defaults
# make test  - set up .venv with the test tools and run the whole suite
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PORT ?= 8501

.PHONY: run test venv venv-dev demo bench threshold clean

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

run: venv
	$(VENV)/bin/streamlit run app.py --server.port $(PORT) --server.headless true --browser.gatherUsageStats false

demo: venv
	$(PY) -m mail demo --import

test: venv-dev
	$(PY) -m pytest -q

bench: venv-dev
	$(PY) -m benchmarks.cache_bench --json bench-results/cache-wordnet-100k.json
	$(PY) -m benchmarks.mail_bench --mail ../shared/data/mail --json bench-results/mail.json

threshold: venv
	$(PY) -m benchmarks.threshold --pairs ../shared/data/pairs

clean:
	rm -rf $(VENV) .pytest_cache
