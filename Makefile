# The commands the README names. `make run` needs nothing installed but Rust;
# `make test` starts PostgreSQL and RabbitMQ on 127.0.0.1 if they are not running.

SHELL := /bin/bash
CARGO ?= cargo
PG_URL ?= postgres://postgres@127.0.0.1:5432/postgres
BUF_VERSION ?= 1.75.0
export CRM_TEST_DATABASE_URL ?= $(PG_URL)
export CRM_TEST_AMQP_URL ?= amqp://guest:guest@127.0.0.1:5672/%2f
export CRM_KUBERNETES_VALIDATE ?= $(CURDIR)/target/tools/venv/bin/kubernetes-validate

.PHONY: run serve test test-fast services tools lint api-baseline bench bench-quick chaos up build

## run: the demo on the embedded default (SQLite + in-process transport). The first
## build takes minutes on a fresh machine, so it shows its progress; the demo after
## it prints only what a person follows.
run:
	@echo "building the suite (the first time takes a few minutes)…"
	$(CARGO) build -p crm
	@$(CARGO) run --quiet -p crm -- demo

## serve: every service on 127.0.0.1:50051 (SQLite under ./data unless CRM_DATABASE_URL)
## A development-only PII key is made once under ./data (never used in production,
## where CRM_PII_KEY comes from the deployment's secret store).
serve:
	@mkdir -p data && { test -s data/.dev-pii-key || head -c 32 /dev/urandom | base64 > data/.dev-pii-key; }
	CRM_JWT_SECRET=$${CRM_JWT_SECRET:-dev-secret-change-me-0123456789abcdef} \
	CRM_PII_KEY=$${CRM_PII_KEY:-$$(cat data/.dev-pii-key)} \
	$(CARGO) run -p crm -- serve

build:
	$(CARGO) build --workspace --all-targets

## services: make sure PostgreSQL and RabbitMQ answer on 127.0.0.1
services:
	@scripts/ensure-services.sh

## test: the whole suite against real PostgreSQL and RabbitMQ. Every test file is
## found by cargo, none is listed here. Tests that stop or cut the broker or the
## database are #[ignore]d and run after the others, alone, one at a time. The
## `crm` binary is built first: tests that start it as separate processes need
## target/debug/crm, which `cargo test` alone does not build.
test: services tools
	$(CARGO) build -p crm
	$(CARGO) test --workspace --all-targets
	$(CARGO) test --workspace --all-targets -- --ignored --test-threads=1

## chaos: the distributed mode under fire — a `crm serve` process per service (two
## referrals replicas) over a fresh database and queue prefix; 10,000 referrals at
## 80/s while every broker connection is cut, the broker stops and starts, a
## referrals replica and the clients service are killed with SIGKILL, and
## PostgreSQL restarts; then every key is checked. The release build, as deployed.
## It restarts this machine's RabbitMQ and PostgreSQL (as root), so it runs alone.
## Logs and report: target/chaos/
chaos: services
	$(CARGO) build --release -p crm -p crm-chaos
	$(CARGO) run --release --quiet -p crm-chaos

## bench: the benchmarks, release build, against the real PostgreSQL and RabbitMQ;
## each scenario measures the raw infrastructure doing the same work first, in the
## same run, and prints suite, baseline and ratio (JSON under bench/results/). The
## first run seeds 1,000,000 clients into schema bench_clients (a few minutes); later
## runs reuse them. Referrals: bare RPC, INSERT + SELECT, confirmed publish →
## consume and a referral's durable work, then CreateReferral open-loop at 500/s
## for 30 s over 20 branches with every RM watching, then 600, 750, 1,000 and 1,500/s
## for 15 s each (stopping at the first not sustained); the same in the distributed
## mode (`crm serve` per service, referrals twice, the load in its own process); the
## events service: IngestEvents and the feed against raw INSERT and a bare consumer,
## and hold-and-notify while referrals are created at 200/s; campaigns: the
## quarterly HNW job over 1,000,000 clients against the raw INSERT … SELECT and
## confirmed publish + consume, and the projection's backfill rate. Client reads:
## GetClient and SearchClients at 64 callers against a bare RPC and PostgreSQL's
## own SELECT + INSERT. Phones: 10,000 RM streams on one referrals process (memory
## per stream, item → phone with all open, the reconnect storm).
bench: services
	$(CARGO) build --release -p crm-bench -p crm
	$(CARGO) run --release -p crm-bench -- clients
	$(CARGO) run --release -p crm-bench -- referrals
	$(CARGO) run --release -p crm-bench -- referrals --distributed --also-at 600,750,1000
	$(CARGO) run --release -p crm-bench -- phones
	$(CARGO) run --release -p crm-bench -- events
	$(CARGO) run --release -p crm-bench -- campaigns

## bench-quick: the referral scenario alone, short (under 2 minutes after the
## release build): baselines and the suite at 300/s for 10 s, then 600/s.
bench-quick: services
	$(CARGO) build --release -p crm-bench
	$(CARGO) run --release -p crm-bench -- referrals --rate 300 --seconds 10 --warm-up-secs 2 --also-at 600 --step-seconds 10

## lint: formatting, clippy with warnings as errors, unused dependencies
## (cargo-machete, installed from crates.io where missing) and buf lint of the API
lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings
	@command -v cargo-machete >/dev/null || $(CARGO) install --locked cargo-machete@0.9.2
	cargo machete
	cd proto && npx --yes @bufbuild/buf@$(BUF_VERSION) lint
	cd proto && npx --yes @bufbuild/buf@$(BUF_VERSION) breaking --against api-baseline.binpb

## tools: what the tests use beyond Rust: kubernetes-validate (the Kubernetes
## schemas, offline) in a virtualenv under target/tools.
KUBERNETES_VALIDATE_VERSION ?= 1.37.0
tools: target/tools/venv/bin/kubernetes-validate
target/tools/venv/bin/kubernetes-validate:
	python3 -m venv target/tools/venv
	target/tools/venv/bin/pip install --quiet kubernetes-validate==$(KUBERNETES_VALIDATE_VERSION) \
		|| { echo "could not install kubernetes-validate from PyPI (make tools)" >&2; exit 1; }

## api-baseline: the API image `make lint` holds every change to (buf breaking). Run it
## only in a commit that says it breaks compatibility on purpose: the teller app, the
## RM mobile backend and the scheduler jobs are built against the baseline.
api-baseline:
	cd proto && npx --yes @bufbuild/buf@$(BUF_VERSION) build -o api-baseline.binpb

## up: the distributed mode in containers (needs a container engine)
up:
	docker compose -f deploy/compose.yaml up --build
