# Everything a newcomer needs; the README names these targets.
#   make demo                         set up, open the dashboard, train on the synthetic phantoms beside it
#   make demo DATA=../shared/data     the same on the real COVID-CT + COVID-SemiSeg data (checked first)
#   make test                         set up and run the fast tests (minutes; docs/testing.md)
#   make test-all                     every test: the slow end-to-end set too (what CI runs)
#   make bench                        benchmarks (ratios against plain reference runs)
PY := .venv/bin/python
DATA ?=
RUN ?= $(if $(DATA),runs/real-demo,runs/demo)
# Synthetic default: a short schedule (minutes). Real data: the default recipe (`guided-two-step`,
# core/training/recipes.py: lung-field input, attention penalties, the second source for the global
# branch and the heads, 30 global epochs, then the two-step decision fitted across sources;
# `TRAIN_ARGS=... --recipe guided-heads` decides by fusion, `--recipe fast` is the one before guidance)
# and the segmenter's default schedule.
TRAIN_ARGS ?= $(if $(DATA),--data-root $(DATA),--epochs 8 --seg-epochs 8 --seg-max-rounds 1 --seg-steps-per-round 10 --seg-polish-epochs 2)
PORT ?= 8501

.venv/.installed: requirements.txt requirements-dev.txt
	python3 -m venv .venv
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements-dev.txt
	touch $@

setup: .venv/.installed

train: setup
	$(PY) -m train pipeline $(TRAIN_ARGS) --out $(RUN) --resume

# The dashboard at once, the run training beside it (train/demo.py); Ctrl-C stops both, `make demo` again resumes.
demo: setup
	$(if $(DATA),$(PY) -m train check-data --data-root $(DATA))
	$(PY) -m train demo --out $(RUN) --port $(PORT) -- $(TRAIN_ARGS)

test: setup
	$(PY) -m pytest -q -m "not slow"

test-all: setup
	$(PY) -m pytest -q

bench: setup
	$(PY) -m bench

.PHONY: setup train demo test test-all bench
