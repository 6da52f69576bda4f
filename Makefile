# qplay — the two commands: `make lab` and `make test`. Everything else is a step of those.
SHELL := /bin/bash
ENV := source scripts/env.sh &&

.PHONY: setup lab test test-rust test-python lint models bench

setup:
	@scripts/setup.sh

lab: setup
	$(ENV) cd notebooks && jupyter lab 01-evaluate.ipynb $$([ "$$(id -u)" = 0 ] && echo --allow-root)

test: setup
	@$(MAKE) --no-print-directory test-rust test-python

test-rust:
	$(ENV) cargo test --release --workspace

test-python:
	$(ENV) python -m pytest -q tests

lint:
	$(ENV) cargo fmt --check && cargo clippy --release --workspace --all-targets -- -D warnings

models: setup
	$(ENV) python models/build.py && python scripts/models_md.py

bench: setup
	$(ENV) qplay bench eval
