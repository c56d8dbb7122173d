# The two commands (see README): `make run` and `make test`.
# Both build or install what is missing: the pinned Vault server is built once
# from the Go module proxy and cached outside the tree (about 10 minutes cold on
# 2 cores); PostgreSQL is found or started by test/harness.

GO  ?= go
BIN := bin/mediator

.PHONY: run test build vault toolchain vet lint unit e2e interop fuzz clean

# The binary uses cgo for the PKCS#11 custodian, so it needs gcc too.
build: toolchain
	$(GO) build -o $(BIN) ./cmd/mediator

# toolchain installs what is missing from Debian: gcc (race detector, cgo)
# and SoftHSM2 (the PKCS#11 custodian's tests).
toolchain:
	@bash scripts/ensure-toolchain.sh

# vault builds the pinned Vault server into the cache, or finds it there.
vault: build
	@echo "vault: $$($(BIN) vault build)"

# ARGS go to `mediator dev`: make run ARGS="--addr 127.0.0.1:9090 --keep".
ARGS ?=
run: vault
	$(BIN) dev $(ARGS)

# vet fails on any file gofmt would change, then runs go vet.
vet:
	@unformatted=$$(gofmt -l .); if [ -n "$$unformatted" ]; then \
	  echo "gofmt -l: these files need gofmt -w:"; echo "$$unformatted"; exit 1; fi
	$(GO) vet ./...

# lint checks api/openapi.yaml with the pinned Spectral CLI ("oas" ruleset,
# warnings fail); Node.js and the CLI are installed once when missing.
lint:
	@bash scripts/lint-openapi.sh

# unit runs every package but the end-to-end stories, which follow verbosely
# so the log shows the real PostgreSQL and Vault versions in use.
unit: toolchain vault
	$(GO) test -race -count=1 -timeout 20m $$($(GO) list ./... | grep -v /test/e2e)

e2e: toolchain vault
	$(GO) test -race -count=1 -timeout 20m -v ./test/e2e

# interop checks the log's C2SP tlog-proof and tlog-policy files, and the
# subtree consistency proofs of its mirror uploads, with code
# we did not write, filippo.io/torchwood v0.10.0. It needs Go 1.27, so it is
# a module of its own under tools/torchwood, run with GOTOOLCHAIN=go1.27.3
# (the go command fetches that toolchain from the module proxy once, about
# 76 MB); the main module stays on the machine's Go.
interop: toolchain
	cd tools/torchwood && GOTOOLCHAIN=go1.27.3 $(GO) vet ./... && GOTOOLCHAIN=go1.27.3 $(GO) test -count=1 ./...

# fuzz runs every fuzz target briefly: a count of executions, not a duration,
# because a duration's deadline can fail a target that found nothing (a race
# in Go 1.26's fuzz coordinator, golang/go#75804, fixed in Go 1.27). For a
# long run: FUZZTIME=2000000x make fuzz (or FUZZTIME=5m, with that risk).
FUZZTIME ?= 20000x
FUZZ_TARGETS := ./redact:FuzzDecodeAndMinimize ./audit:FuzzOpenCheckpoint ./audit:FuzzVerifyBundle ./audit:FuzzLeafCanonical ./redact:FuzzCanonicalRecord ./audit:FuzzBundleProofs ./approval:FuzzApprovalSignature ./approval:FuzzCanonicalRequest ./shares:FuzzRecover ./roster:FuzzVerifyChain ./tlogpolicy:FuzzParse ./audit:FuzzParseTlogProof ./subtree:FuzzCheck
fuzz: toolchain
	@for t in $(FUZZ_TARGETS); do \
	  pkg=$${t%%:*}; name=$${t##*:}; \
	  echo "fuzz $$pkg $$name for $(FUZZTIME)"; \
	  $(GO) test -run '^$$' -fuzz "^$$name\$$" -fuzztime $(FUZZTIME) $$pkg || exit 1; \
	done

test: vet lint unit e2e interop fuzz

clean:
	rm -rf bin
