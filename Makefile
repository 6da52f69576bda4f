# qplay — the two commands: `make lab` and `make test`. Everything else is a step of those.
SHELL := /bin/bash
ENV := source scripts/env.sh &&

.PHONY: setup lab app test test-rust test-python lint models bench browser screenshot sweep

setup:
	@scripts/setup.sh

lab: setup
	$(ENV) cd notebooks && jupyter lab playground.ipynb $$([ "$$(id -u)" = 0 ] && echo --allow-root)

# The playground as a web app (Voilà, code hidden, widgets live; notebooks/voila.json keeps one
# kernel pre-started with the notebook already run, so a visitor sees results at once).
app: setup
	$(ENV) cd notebooks && voila playground.ipynb

test: setup browser
	@$(MAKE) --no-print-directory test-rust test-python

test-rust:
	$(ENV) cargo test --release --workspace

test-python:
	$(ENV) python -m pytest -q --durations=20 tests

lint:
	$(ENV) cargo fmt --check && cargo clippy --release --workspace --all-targets -- -D warnings

models: setup
	$(ENV) python models/build.py && python scripts/models_md.py

# The playground in batch over the bundled models (papermill): target/sweep/*.ipynb and *.json.
sweep: setup
	$(ENV) python scripts/sweep.py --out target/sweep

bench: setup
	$(ENV) qplay bench eval && qplay bench startup && qplay bench reactive && qplay bench calibrate

# Headless Chromium (Debian's package) and playwright-core, for the JupyterLab test and screenshots.
browser:
	@command -v chromium >/dev/null || (apt-get update -q && apt-get install -y -q chromium)
	@[ -d node_modules/playwright-core ] || npm ci --no-audit --no-fund

screenshot: setup browser
	$(ENV) node tests/browser/lab.mjs screenshot notebooks/01-evaluate.ipynb docs/screenshot-evaluate.png
	$(ENV) node tests/browser/playground.mjs target/browser && cp target/browser/playground-edit.png docs/screenshot-playground.png
