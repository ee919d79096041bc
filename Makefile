# atlas-akv-guard — build, test, package, run, deploy.
# `make test` is the one test command (CI runs exactly it): it installs what it
# needs (Go modules, Azurite and the Bicep parser from npm) and runs every test.

SHELL        := bash
GO           ?= go
VERSION      ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS      := -s -w -X main.version=$(VERSION)
AZURITE_VERSION := 3.37.0
AZURITE      := $(CURDIR)/.cache/azurite/node_modules/.bin/azurite-blob
# The Bicep syntax check (handler/infracheck): tree-sitter-bicep's wasm grammar
# run by web-tree-sitter in Node, pinned, no native build.
BICEP_PARSER_DIR := $(CURDIR)/.cache/bicep-parser/node_modules
BICEP_PARSER := $(BICEP_PARSER_DIR)/tree-sitter-bicep/tree-sitter-bicep.wasm
FUNCTIONS    := KeyVaultEvents PrivateLinkEvents Reconcile Status

RESOURCE_GROUP ?=
PARAMS       ?= infra/main.bicepparam

.PHONY: all build build-local test test-ui perf lint package run demo sandbox bench fuzz clean tools deploy

all: lint test build

## build: static linux/amd64 binary for the Functions host → bin/handler
build:
	CGO_ENABLED=0 GOOS=linux GOARCH=amd64 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o bin/handler ./handler

## build-local: handler for this machine's OS/arch → bin/handler-local (for `handler check` on a laptop, the demo and the sandbox)
build-local:
	$(GO) build -trimpath -ldflags '$(LDFLAGS)' -o bin/handler-local ./handler

$(AZURITE):
	@command -v npm >/dev/null || { echo "npm is required to install Azurite (the storage emulator the tests use)"; exit 1; }
	npm install --no-audit --no-fund --no-update-notifier --loglevel=error --prefix .cache/azurite azurite@$(AZURITE_VERSION)

$(BICEP_PARSER):
	@command -v npm >/dev/null || { echo "npm is required to install the Bicep parser the tests use"; exit 1; }
	npm install --no-audit --no-fund --no-update-notifier --ignore-scripts --legacy-peer-deps --loglevel=error \
	  --prefix .cache/bicep-parser web-tree-sitter@0.24.7 tree-sitter-bicep@1.1.0

## tools: install what the tests need (Go modules, Azurite, the Bicep parser)
tools: $(AZURITE) $(BICEP_PARSER)
	$(GO) mod download

## test: every test, against real Azurite storage and the in-repo simulators; parses every infra/**/*.bicep
test: tools
	node handler/infracheck/parse-bicep.cjs $(BICEP_PARSER_DIR) infra
	BICEP_PARSER_DIR=$(BICEP_PARSER_DIR) AZURITE_BIN=$(AZURITE) $(GO) test -count=1 -timeout 30m ./...

## lint: go vet and a gofmt check
lint:
	$(GO) vet ./...
	@out=$$(gofmt -l handler); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi

## package: the staged app folder dist/app/ and dist/app.zip (executable bit kept)
package: build
	rm -rf dist && mkdir -p dist/app
	cp host.json dist/app/
	for f in $(FUNCTIONS); do mkdir -p dist/app/$$f && cp functions/$$f/function.json dist/app/$$f/; done
	cp bin/handler dist/app/handler && chmod 0755 dist/app/handler
	$(GO) run ./handler/tools/zipdir dist/app dist/app.zip

## run: func start in dist/app (needs Azure Functions Core Tools and Azurite)
run: package
	@command -v func >/dev/null || { echo "Azure Functions Core Tools ('func') not found: install them from https://learn.microsoft.com/azure/azure-functions/functions-run-local"; exit 1; }
	@[ -f local.settings.json ] || { echo "copy local.settings.json.example to local.settings.json and fill it in"; exit 1; }
	@(exec 3<>/dev/tcp/127.0.0.1/10000) 2>/dev/null || { echo "Azurite is not listening on 127.0.0.1:10000: start it with 'npx azurite-blob' (AzureWebJobsStorage=UseDevelopmentStorage=true)"; exit 1; }
	cp local.settings.json dist/app/
	cd dist/app && func start

## demo: the whole story against the simulated Atlas + Azure world, no cloud account (handler built for this machine)
demo: tools build-local
	AZURITE_BIN=$(AZURITE) $(GO) run ./handler/demo -handler bin/handler-local

## sandbox: the demo's world and the real handler, kept running until Ctrl-C (see README "Sandbox"); PERIOD=10s speeds it up
PERIOD ?= 1m
sandbox: tools build-local
	$(GO) build -o bin/sandbox ./handler/sandbox
	AZURITE_BIN=$(AZURITE) bin/sandbox -handler bin/handler-local -period $(PERIOD)

## bench: the micro-benchmarks (planning, Atlas reads, state updates); the figures users feel come from make perf
bench: tools
	AZURITE_BIN=$(AZURITE) $(GO) test -run '^$$' -bench . -benchmem -benchtime=200x ./handler/...

## test-ui: render the Status page in headless Chromium → handler/status/status.png (installs Debian's chromium if missing: root, apt)
test-ui:
	@command -v chromium >/dev/null || { apt-get update && apt-get install -y --no-install-recommends chromium; }
	GUARD_BROWSER_TEST=1 GUARD_SCREENSHOT_DIR=$(CURDIR)/handler/status $(GO) test -count=1 -run TestBrowser ./handler/status/
	@echo "screenshot saved to handler/status/status.png"

## perf: the README's figures at full size → handler/perf/out (see README "Performance")
perf: tools
	AZURITE_BIN=$(AZURITE) $(GO) test -count=1 -timeout 30m -v -run 'Test(React|Scale|Startup|SteadyStateRequests)$$' ./handler/perf -args -full

## fuzz: a short run of every fuzz target (the corpus lives in testdata/fuzz)
fuzz:
	@for p in $$($(GO) list ./handler/...); do \
	  for f in $$($(GO) test -list '^Fuzz' $$p 2>/dev/null | grep '^Fuzz'); do \
	    echo "== $$p $$f"; $(GO) test -run '^$$' -fuzz "^$$f$$" -fuzztime 20s $$p || exit 1; \
	  done; \
	done

## deploy: make deploy RESOURCE_GROUP=<rg> [PARAMS=infra/main.bicepparam] (your copy of infra/example.bicepparam; see infra/README.md)
deploy: package
	@test -n "$(RESOURCE_GROUP)" || { echo "usage: make deploy RESOURCE_GROUP=<rg> [PARAMS=infra/main.bicepparam|infra/main.parameters.json]" >&2; exit 1; }
	infra/deploy.sh "$(RESOURCE_GROUP)" "$(PARAMS)" dist/app.zip

clean:
	rm -rf bin dist
