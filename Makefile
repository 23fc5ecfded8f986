# crawl2model — two commands: `make demo` and `make test`. Every target does its own set-up
# and is safe to rerun: stamps inside the venvs skip work that is already done.

SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
PYTHON ?= python3
C2M_CACHE ?= $(HOME)/.cache/crawl2model
export C2M_CACHE
JOBS_VENV := .venv-jobs
AIRFLOW_VENV := .venv-airflow
JOBS_STAMP := $(JOBS_VENV)/.c2m-installed
AIRFLOW_STAMP := $(AIRFLOW_VENV)/.c2m-installed
HOROVOD_STAMP := $(JOBS_VENV)/.c2m-horovod
DATASETS_STAMP := $(C2M_CACHE)/datasets/.fetched
# Debian packages the stack needs: Java for Spark, a compiler and cmake for Horovod,
# Python's HTML docs as the demo website, ssh and sshd for the two-host Horovod test.
APT_PACKAGES := openjdk-17-jre-headless g++ cmake make python3.11-doc openssh-server openssh-client iproute2
PIP := pip
export PIP_DISABLE_PIP_VERSION_CHECK := 1
# Set-up prints one line per step: pip runs with -q (errors stay visible), and setuptools'
# "Editable installation" box, a notice about how an editable install is wired, is filtered
# by its message; every other warning still shows (tests/ops/test_packaging.py keeps the build clean).
QUIET_INSTALL := PYTHONWARNINGS='ignore:Editable installation'

.PHONY: help demo test test-setup test-cluster test-unit test-deploy test-integration browser-deps up down status clean venvs system-deps datasets k8s-tools s3a-jars images test-images

help:
	@echo "make demo   - set up everything, start the local stack, run the whole life cycle through Airflow"
	@echo "make test   - set up everything and run the test suite"
	@echo "make up / make down / make status - start, stop, inspect the local stack"
	@echo "make clean  - stop the stack and remove venvs, data and stack state (caches stay)"

system-deps:
	@missing=""; for p in $(APT_PACKAGES); do \
	  dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "[make] installing Debian packages:$$missing"; \
	  if [ "$$(id -u)" = 0 ]; then SUDO=""; elif command -v sudo >/dev/null; then SUDO=sudo; \
	  else echo "[make] need root to install:$$missing — run: apt-get install -y$$missing" >&2; exit 1; fi; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends $$missing; \
	fi

$(JOBS_STAMP): setup.cfg pyproject.toml | system-deps
	@echo "[make] creating $(JOBS_VENV) (pyspark, torch CPU, mlflow, tokenizers…)"
	@test -x $(JOBS_VENV)/bin/python || $(PYTHON) -m venv $(JOBS_VENV)
	@$(JOBS_VENV)/bin/$(PIP) install -q --upgrade pip wheel setuptools
	@$(QUIET_INSTALL) $(JOBS_VENV)/bin/$(PIP) install -q -e '.[spark,train,dev]'
	@touch $@

$(HOROVOD_STAMP): $(JOBS_STAMP) ops/install/build_horovod.sh ops/install/horovod-0.28.1.patch
	bash ops/install/build_horovod.sh $(JOBS_VENV)
	@touch $@

# Order-only on the jobs venv: both are editable installs of this checkout, which write its
# crawl2model.egg-info, so they never run at the same time (under make -j, see test-setup).
$(AIRFLOW_STAMP): setup.cfg pyproject.toml | $(JOBS_STAMP)
	@echo "[make] creating $(AIRFLOW_VENV) (apache-airflow 3.3.2 and providers)"
	@test -x $(AIRFLOW_VENV)/bin/python || $(PYTHON) -m venv $(AIRFLOW_VENV)
	@$(AIRFLOW_VENV)/bin/$(PIP) install -q --upgrade pip wheel setuptools
	@$(QUIET_INSTALL) $(AIRFLOW_VENV)/bin/$(PIP) install -q -e '.[airflow,dev]'
	@touch $@

# After the jobs venv: the script downloads with its pip, which that venv's set-up upgrades.
$(DATASETS_STAMP): ops/install/fetch_datasets.sh | $(JOBS_STAMP)
	bash ops/install/fetch_datasets.sh
	@touch $@

datasets: $(DATASETS_STAMP)

venvs: system-deps $(JOBS_STAMP) $(HOROVOD_STAMP) $(AIRFLOW_STAMP) datasets

up: venvs
	$(AIRFLOW_VENV)/bin/crawl2model up

down:
	@if [ -x $(AIRFLOW_VENV)/bin/crawl2model ]; then $(AIRFLOW_VENV)/bin/crawl2model down; \
	else echo "[make] no venv, nothing to stop"; fi

status:
	$(AIRFLOW_VENV)/bin/crawl2model status

demo: venvs
	$(AIRFLOW_VENV)/bin/crawl2model demo

# The standalone Spark cluster and two-host Horovod tests (marker distributed), a step of make test
# and a target of their own. They need root (mount and network namespaces); -rs prints the reason
# each skips where they cannot run.
test-cluster: venvs s3a-jars
	$(JOBS_VENV)/bin/python -m pytest -q -rs -m distributed tests/spark_jobs/test_standalone_cluster.py tests/training/test_multihost_horovod.py

# Unit tests run where their libraries live: data and training tests in the jobs venv,
# DAG and stack tests in the Airflow venv. The distributed tests run in make test-cluster.
test-unit: venvs k8s-tools s3a-jars
	@echo "[make] the standalone-cluster and two-host Horovod tests are deselected here: make test-cluster runs them"
	$(JOBS_VENV)/bin/python -m pytest -q -rs -m "not distributed" tests/ops tests/spark_jobs tests/training tests/bench
	$(AIRFLOW_VENV)/bin/python -m pytest -q -rs tests/dags

# -rs: a skipped test (no chromium, say) says why.
# The podman-launcher test (marker images) runs in `make test-images`, where the images are built.
test-integration: venvs browser-deps
	$(AIRFLOW_VENV)/bin/python -m pytest -q -rs -m "not images" tests/integration

# Debian's chromium for the browser tests; Playwright (the dev extra) drives /usr/bin/chromium
# through executable_path, because its own browser download is not reachable. Without root the
# browser tests are skipped, and this says how to get them back.
browser-deps: | system-deps
	@if [ -x /usr/bin/chromium ]; then :; \
	elif [ "$$(id -u)" = 0 ]; then echo "[make] installing chromium for the browser tests"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium; \
	else echo "[make] /usr/bin/chromium is missing, so the browser tests will be skipped;" \
	  "install it with: sudo apt-get install -y chromium" >&2; fi

# helm (cached under $(C2M_CACHE)/k8s-tools), kubernetes-validate and hadolint into the jobs venv.
k8s-tools: $(JOBS_STAMP)
	bash ops/install/k8s_tools.sh $(JOBS_VENV) >/dev/null

# hadoop-aws 3.3.1 + SDK v1 jars (from PyPI's sagemaker-pyspark sdist, cached under $(C2M_CACHE)/s3a-jars)
# for the tests of Spark's direct s3a:// path (tests/spark_jobs/test_stages_s3a.py); not used in production.
s3a-jars: $(JOBS_STAMP)
	$(JOBS_VENV)/bin/python -m ops.lake.s3a_test_jars >/dev/null

# Offline checks of docker/ and helm/: hadolint, helm lint/template, kubernetes-validate --strict, render tests.
# The containers of tests/docker/test_images.py (marker images) run in `make test-images`.
test-deploy: k8s-tools
	$(JOBS_VENV)/bin/python -m pytest -q -rs -m "not images" tests/docker tests/helm

# Set-up for the tests, steps side by side: the Horovod build compiles C++ while the Airflow
# venv installs and the data sets, the s3a test jars and chromium download (the prerequisites
# above keep the steps that share a venv, a checkout or apt apart). The tests then run one
# target after the other.
test-setup: system-deps
	@$(MAKE) --no-print-directory -j4 venvs s3a-jars browser-deps

test: test-setup test-unit test-cluster test-deploy test-integration

# The airflow worker, spark and trainer (CPU) images, built with podman on a Debian base made here
# (ops/install/build_images.sh: installs podman, runc, mmdebstrap and uidmap with apt as root; prints
# SKIP and exits 0 where it cannot, or where podman cannot run). The worker and trainer images reuse
# the Horovod wheel `make venvs` caches, the spark image the s3a test jars.
images: s3a-jars $(HOROVOD_STAMP)
	nice -n 10 bash ops/install/build_images.sh

# Self-checks inside each built image (tests/docker/test_images.py), then data_refresh → pretrain
# through Airflow with C2M_LAUNCHER=podman (tests/integration/test_podman_launcher.py); each test is
# skipped, with the reason, where podman cannot run or an image is not built.
test-images: venvs
	$(JOBS_VENV)/bin/python -m pytest -q -rs -m images tests/docker/test_images.py
	$(AIRFLOW_VENV)/bin/python -m pytest -q -rs -m images tests/integration/test_podman_launcher.py

# Benchmarks (bench/README.md): OURS against a reference, side by side in one run, on 2 cores.
# datatrove (the data-stage reference) conflicts with the project's pins, so it gets a venv of
# its own. English word tokenisation in datatrove 0.10.1 is spaCy's blank "en" pipeline (no
# model download); regex, tokenizers and xxhash are imported by the filters and MinHash code.
BENCH_VENV := bench/.venv-datatrove
BENCH_STAMP := $(BENCH_VENV)/.c2m-installed
BENCH_PINS := datatrove==0.10.1 spacy==3.8.18 regex==2026.11.19 tokenizers==0.23.3 xxhash==3.8.2 orjson==3.13.0

.PHONY: bench bench-venv

$(BENCH_STAMP): Makefile
	@echo "[make] creating $(BENCH_VENV) (datatrove 0.10.1, the benchmarks' reference)"
	test -x $(BENCH_VENV)/bin/python || $(PYTHON) -m venv $(BENCH_VENV)
	$(BENCH_VENV)/bin/$(PIP) install -q $(BENCH_PINS)
	$(BENCH_VENV)/bin/python -c "import datatrove.pipeline.filters, datatrove.pipeline.dedup.minhash"
	@touch $@

bench-venv: $(BENCH_STAMP)

# CPU benchmarks (about 50 min on 2 cores shared with other work); results in bench/results/*.json.
bench: system-deps $(JOBS_STAMP) $(HOROVOD_STAMP) $(BENCH_STAMP)
	$(JOBS_VENV)/bin/python -m bench.corpus
	$(JOBS_VENV)/bin/python -m bench.data_filters
	$(JOBS_VENV)/bin/python -m bench.dedup --sizes 2000,4000,8000
	$(JOBS_VENV)/bin/python -m bench.tokens --sizes-mb 12.5,25,50
	$(JOBS_VENV)/bin/python -m bench.train_throughput --steps 100
	$(JOBS_VENV)/bin/python -m bench.gpu_train --dry-run

clean: down
	rm -rf $(JOBS_VENV) $(AIRFLOW_VENV) .stack data *.egg-info
