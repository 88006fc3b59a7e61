# timed: build, test, cross-compile, fuzz. See DEVELOPERS.md.

GO           ?= go
# Time limit of each `go test` run.
TEST_TIMEOUT ?= 25m
# How many inputs make test runs through each fuzz target, and make fuzz (by
# hand). Counts, not durations: a duration-bounded run of Go 1.26's fuzzer can
# fail with "context deadline exceeded" when the time is up and no input failed
# (go.dev/issue/75804, fixed in Go 1.27).
FUZZ_SHORT   ?= 50000x
FUZZTIME     ?= 5000000x
# The platforms the module must build for.
PLATFORMS    := linux/amd64 linux/arm64 linux/arm linux/386 freebsd/amd64 darwin/arm64

# The end-to-end tests run on their own, after the rest, so that other
# packages' tests do not load the CPU while they measure microseconds.
INTEROP      := ./test/interop

.PHONY: all build test peers vet unit interop fuzz-short fuzz cross perf perf-footprint man schema golden deb clean

all: build

# Without cgo: a static binary, and one whose threads can all drop
# CAP_NET_BIND_SERVICE once the server's sockets are bound (Go cannot reach
# every thread of a cgo program).
build:
	CGO_ENABLED=0 $(GO) build -o bin/ ./cmd/...

# Everything: peers (installed when missing), vet, unit and simulation
# tests, the end-to-end tests, and every fuzz target for a short time.
# Written as one recipe so that `make -j` cannot reorder it.
test:
	scripts/install-peers.sh
	$(GO) vet ./...
	$(GO) test -timeout $(TEST_TIMEOUT) $$($(GO) list ./... | grep -v '/test/interop$$')
	$(GO) test -timeout $(TEST_TIMEOUT) -v $(INTEROP)
	$(MAKE) --no-print-directory fuzz-short

peers:
	scripts/install-peers.sh

vet:
	$(GO) vet ./...
	$(GO) vet -tags bench ./internal/ntpload/bench

unit:
	$(GO) test -timeout $(TEST_TIMEOUT) $$($(GO) list ./... | grep -v '/test/interop$$')

interop:
	$(GO) test -timeout $(TEST_TIMEOUT) -v $(INTEROP)

# Every FuzzXxx target in the module (found by scripts/fuzz-targets.sh), one
# after the other, FUZZ_SHORT inputs each (make test) or FUZZTIME each (make fuzz).
fuzz-short:
	@scripts/fuzz-targets.sh | while read -r dir name; do \
		echo "fuzz $$dir $$name -fuzztime=$(FUZZ_SHORT)"; \
		$(GO) test -run='^$$' -fuzz="^$$name\$$" -fuzztime=$(FUZZ_SHORT) -fuzzminimizetime=5s "$$dir" || exit 1; \
	done

fuzz:
	@scripts/fuzz-targets.sh | while read -r dir name; do \
		echo "fuzz $$dir $$name -fuzztime=$(FUZZTIME)"; \
		$(GO) test -run='^$$' -fuzz="^$$name\$$" -fuzztime=$(FUZZTIME) -fuzzminimizetime=5s "$$dir" || exit 1; \
	done

# Build for every supported platform, without cgo.
cross:
	@for p in $(PLATFORMS); do \
		echo "GOOS=$${p%/*} GOARCH=$${p#*/} go build ./..."; \
		CGO_ENABLED=0 GOOS=$${p%/*} GOARCH=$${p#*/} $(GO) build ./... || exit 1; \
	done

# Regenerate docs/PERFORMANCE.md: the simulator's scenario table, then the
# footprint of timed next to chronyd (needs root and chronyd).
perf:
	$(GO) run ./internal/sim/cmd/scenarios -w docs/PERFORMANCE.md
	$(MAKE) --no-print-directory perf-footprint

perf-footprint:
	TIMED_WRITE_PERF=1 $(GO) test -count=1 -timeout $(TEST_TIMEOUT) -v -run '^TestChrony$$' $(INTEROP)

# The NTP server benchmark, not part of `make test` (minutes; needs chronyd,
# gcc and 2 CPUs): timed's server next to chronyd and a minimal C responder,
# BENCH_ROUNDS rounds, written into docs/PERFORMANCE.md between the server markers.
BENCH_ROUNDS ?= 5
.PHONY: bench-server
bench-server:
	TIMED_WRITE_PERF=1 $(GO) test -tags bench -count=1 -timeout 30m -v -run '^TestServerBench$$' ./internal/ntpload/bench -args -rounds $(BENCH_ROUNDS)

# bench-nts: chronyd's and timed's NTS servers side by side (NTS responses per
# CPU-second, NTS-KE exchanges per second); rewrites the NTS section of
# docs/PERFORMANCE.md.
.PHONY: bench-nts
bench-nts:
	TIMED_WRITE_PERF=1 $(GO) test -tags bench -count=1 -timeout 30m -v -run '^TestNTSBench$$' ./internal/ntpload/bench -args -nts-rounds $(BENCH_ROUNDS)

# bench-csptp: timed's CSPTP server (CSPTP and SPTP requests) next to its NTP
# server and facebook/time's ptp4u (root, 2 CPUs; a network namespace of its
# own); rewrites the CSPTP section of docs/PERFORMANCE.md.
.PHONY: bench-csptp
bench-csptp:
	TIMED_WRITE_PERF=1 $(GO) test -tags bench -count=1 -timeout 30m -v -run '^TestCSPTPServerBench$$' ./internal/ntpload/bench -args -rounds $(BENCH_ROUNDS)

# Man pages of timectl (section 1) and timed (section 8), generated from
# their cobra commands into man/man1 and man/man8 (git-ignored; `man -M man
# timectl` reads them; MANDIR moves them). Built with the genman tag:
# the installed binaries carry no man page generator.
MANDIR ?= man
man:
	$(GO) run -tags genman ./cmd/timectl __man $(MANDIR)/man1
	$(GO) run -tags genman ./cmd/timed __man $(MANDIR)/man8

# The JSON Schemas of timectl's -o json output, docs/schema/*.json, written
# by cmd/timectl's TestSchema from the reply types it lists; without -update
# the test fails when the committed files differ from what the code writes.
schema:
	$(GO) test -count=1 -run '^TestSchema$$' ./cmd/timectl -update

# Rewrite timectl's golden files, cmd/timectl/testdata/golden/CMD.txt and
# CMD.json (its output for each command on a fabricated reply), after a
# deliberate change of an output; review the diff.
golden:
	$(GO) test -count=1 -run '^TestGolden$$' ./cmd/timectl -update

# The Debian package, bin/timed_VERSION_ARCH.deb (packaging/build-deb.sh;
# offline). DEB_VERSION defaults to 0.0~git<date>.<commit>.
DEB_VERSION ?=
deb:
	GO=$(GO) packaging/build-deb.sh bin $(DEB_VERSION)

clean:
	rm -rf bin/ man/
