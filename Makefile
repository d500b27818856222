# XTransplant pipeline. `make demo` and `make test` work on a fresh machine (Python 3.11+).
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
TORCH  ?= torch==2.13.0
RUN    ?= runs/demo

.PHONY: install demo test test-fast report bench bench-quick bench-ray bench-reduce clean-demo

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet "$(TORCH)"
	$(PY) -m pip install --quiet -e '.[test]'
	touch $@

install: $(VENV)/.installed  ## venv with the pinned torch, the project and its test tools

demo: install  ## tiny-model sweep of the bundled sample on a local Ray cluster, then its report
	$(PY) -m pipeline.sweep granularity=[attn,ffn,block] out_dir=$(RUN)
	$(PY) -m pipeline.reduce run=$(RUN)
	@echo "report: $(RUN)/report/report.md"

test: install  ## the whole suite, slow (Ray, end-to-end) tests included
	$(PY) -m pytest -q

test-fast: install
	$(PY) -m pytest -q -m "not slow"

report: install  ## make report RUN=DIR
	$(PY) -m pipeline.reduce run=$(RUN)

bench: install  ## engine vs per-config reference loop, scaling tables, GPU cost model -> docs/performance.md (~12 min)
	$(PY) benchmarks/bench_engine.py

bench-quick: install  ## ~3 min smoke run of the engine benchmark; prints only
	$(PY) benchmarks/bench_engine.py --quick

bench-ray: install  ## the same sweep through Ray vs in-process (wall time ratio)
	$(PY) benchmarks/bench_ray.py

bench-reduce: install  ## the reduce on 2.4M synthetic rows (time, peak RSS)
	$(PY) benchmarks/reduce_scale.py

clean-demo:
	rm -rf runs/demo
