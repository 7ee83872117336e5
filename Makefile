.PHONY: setup demo test test-all clean

setup:
	@bash scripts/setup.sh

demo: setup
	.venv/bin/qtts demo

test: setup
	.venv/bin/python -m pytest -q

test-all: setup
	.venv/bin/python -m pytest -q -m "slow or not slow"

clean:
	rm -rf demo_out runs
