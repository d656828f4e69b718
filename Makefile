# xlb: see README.md. Every target works from a fresh clone; root-only
# targets say so.
GO        ?= go
BIN       := bin/xlb
LAB_BIN   := bin/xlb-lab
PKGS      := ./...
# Pure-logic packages also run under the race detector (cheap, no kernel).
RACE_PKGS := ./ring/ ./hash/ ./config/ ./control/ ./datapath/ ./datapath/packet/ ./engine/ ./flowtable/ ./health/ ./metrics/ ./sni/ ./proxy/ ./firewall/
FUZZTIME  ?= 10s

.PHONY: all build generate check-generate test test-unit fuzz bench lint demo perf clean

all: build

# The appliance and, apart, the perf lab, so that xlb links none of the
# lab's chart, font and baseline libraries.
build:
	$(GO) build -o $(BIN) ./cmd/xlb
	$(GO) build -o $(LAB_BIN) ./cmd/xlb-lab

# Regenerate the BPF objects and their Go bindings (needs clang, llvm, libbpf-dev).
generate:
	$(GO) generate ./bpf/...

# CI: the committed generated files must be what `make generate` produces.
check-generate: generate
	@git diff --exit-code -- bpf/ || { echo "bpf/: generated files are stale: run make generate and commit"; exit 1; }

# All tests. Root tests build namespaces of their own; without root they skip.
test:
	$(GO) test -count=1 -timeout 25m $(PKGS)
	$(GO) test -count=1 -race -timeout 10m $(RACE_PKGS)

# Unit tests only (no root needed, seconds).
test-unit:
	$(GO) test -count=1 -short -timeout 10m $(PKGS)

# Run every fuzz target for FUZZTIME each.
fuzz:
	@set -e; for pkg in $$($(GO) list ./...); do \
		for f in $$($(GO) test -list '^Fuzz' $$pkg | grep '^Fuzz' || true); do \
			echo "fuzz $$pkg $$f"; \
			$(GO) test -run '^$$' -fuzz "^$$f$$" -fuzztime $(FUZZTIME) $$pkg; \
		done; \
	done

bench:
	$(GO) test -run '^$$' -bench . -benchmem -benchtime 500ms ./hash/ ./datapath/... ./engine/ ./ring/ ./bpf/ ./bpf/decap/ ./metrics/ ./sni/

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt:"; echo "$$out"; exit 1; fi
	$(GO) vet $(PKGS)
	$(GO) tool staticcheck $(PKGS)

# The embedded default: a namespace lab with a client, xlb and three backends (root).
demo: build
	./$(BIN) demo

# The perf lab's comparison of every datapath (root), with the xlb built
# beside it: make perf PERF_ARGS="--topology direct --charts charts".
PERF_ARGS ?=
perf: build
	./$(LAB_BIN) compare $(PERF_ARGS)

clean:
	rm -rf bin
