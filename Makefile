# pulsaga — see README.md. Every target that needs a broker starts one itself
# (scripts/pulsar/pulsar.sh start is idempotent); PULSAR_URL / PULSAR_ADMIN_URL
# point everything at an existing broker instead.

GO        ?= go
PKGS      ?= ./...
BIN       := bin
PULSAR    := scripts/pulsar/pulsar.sh
# The whole suite must stay well under 20 minutes on a 2-core machine.
TEST_TIMEOUT ?= 15m
# make bench: sizes of the full run (about 25 minutes on the 2-core machine
# with the new engine); every one can be raised or lowered on the command
# line (make bench BENCH_RESTART=20000) — docs/benchmarks.md, "How to run".
# make bench-quick: the closed loop at 1,000 in flight (one run, 10 s
# window), the unloaded latency and the raw baseline, in about 2 minutes.
BENCH_COUNT             ?= 3
BENCH_RELAY_TIME        ?= 3s
BENCH_INFLIGHT          ?= 1000,2000
BENCH_OTHER_INFLIGHT    ?= 1000
BENCH_MODES             ?=
BENCH_WINDOW            ?= 20s
BENCH_OPEN_STEPS        ?= 25,50,75,100
BENCH_OPEN_DURATION     ?= 15s
BENCH_SERIAL            ?= 20
BENCH_STARTS            ?= 3000
BENCH_STARTS_CLI        ?= 60
BENCH_ENTRANCES         ?= client,client-many,topic,http,http-batch,cli,cli-api,cli-from,cli-from-api
BENCH_WAITING           ?= 20000
BENCH_RESTART           ?= 100000
BENCH_RESTART_INFLIGHT  ?= 2000
BENCH_TIMERPROCS        ?= 100
BENCH_BURST             ?= 500
BENCH_PERF              ?=
BENCH_KNOBS = BENCH_COUNT='$(BENCH_COUNT)' BENCH_RELAY_TIME='$(BENCH_RELAY_TIME)' BENCH_INFLIGHT='$(BENCH_INFLIGHT)' \
	BENCH_OTHER_INFLIGHT='$(BENCH_OTHER_INFLIGHT)' BENCH_MODES='$(BENCH_MODES)' BENCH_WINDOW='$(BENCH_WINDOW)' \
	BENCH_OPEN_STEPS='$(BENCH_OPEN_STEPS)' BENCH_OPEN_DURATION='$(BENCH_OPEN_DURATION)' BENCH_SERIAL='$(BENCH_SERIAL)' \
	BENCH_STARTS='$(BENCH_STARTS)' BENCH_STARTS_CLI='$(BENCH_STARTS_CLI)' BENCH_ENTRANCES='$(BENCH_ENTRANCES)' \
	BENCH_WAITING='$(BENCH_WAITING)' BENCH_RESTART='$(BENCH_RESTART)' BENCH_RESTART_INFLIGHT='$(BENCH_RESTART_INFLIGHT)' \
	BENCH_TIMERPROCS='$(BENCH_TIMERPROCS)' BENCH_BURST='$(BENCH_BURST)' BENCH_PERF='$(BENCH_PERF)' GO='$(GO)'

.PHONY: all build chromium test test-short lint fmt pulsar pulsar-stop pulsar-status bench bench-quick fuzz proto demo dev clean chaos chaos-short chaos-frozen chaos-outage

all: build

## build: compile every binary into bin/
build:
	@mkdir -p $(BIN)
	$(GO) build -o $(BIN)/ ./cmd/...

## test: the whole test suite against a real Pulsar broker (started if needed) — what CI runs
# Tests that stop the shared broker (SIGSTOP) run on their own, after the rest,
# so that no other test sees the broker frozen.
# When the tests fail, the last lines say whether the broker still answers its
# binary protocol (and where its thread dump is when it does not): CI shows the tail.
CHAOS_TESTS := TestBrokerStopped
BROKER_HEALTH = { GO='$(GO)' $(PULSAR) health; exit 1; }
test: pulsar chromium lint
	$(GO) test -race -count=1 -timeout $(TEST_TIMEOUT) -skip '^($(CHAOS_TESTS))$$' $(PKGS) || $(BROKER_HEALTH)
	$(GO) test -race -count=1 -timeout 5m -run '^($(CHAOS_TESTS))$$' ./bus/pulsarbus/ || $(BROKER_HEALTH)

## test-short: unit tests only (no broker), fast
test-short:
	$(GO) test -short -count=1 $(PKGS)

## lint: formatting and vet
lint:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi
	$(GO) vet $(PKGS)

fmt:
	gofmt -w $$(git ls-files '*.go')

## chromium: the headless browser of the dashboard test (installed when missing)
chromium:
	@scripts/ensure-chromium.sh

## pulsar: start (or reuse) a Pulsar standalone on loopback and wait until it is ready
pulsar:
	@$(PULSAR) start

## pulsar-stop: stop the broker started by `make pulsar`
pulsar-stop:
	@$(PULSAR) stop

pulsar-status:
	@$(PULSAR) status

## demo: the trip saga end to end on real Pulsar (several sagas, some failing and compensated)
demo: pulsar
	eval "$$($(PULSAR) env)" && $(GO) run ./cmd/pulsaga dev --pulsar --sagas 8 --exit-when-done

## dev: everything in one process on the embedded bus, no broker needed
dev:
	$(GO) run ./cmd/pulsaga dev

## bench: benchmarks on a real broker, with the raw-Pulsar baseline measured in the same run (bench/run.sh)
bench: pulsar
	@$(BENCH_KNOBS) bench/run.sh full

## bench-quick: sagas/s, messages/KB/timers per saga and p50 in about 2 minutes (for iterating on the engine)
bench-quick: pulsar
	@BENCH_COUNT=1 BENCH_INFLIGHT=1000 BENCH_WINDOW=10s BENCH_SERIAL=10 BENCH_MODES='$(BENCH_MODES)' GO='$(GO)' bench/run.sh quick

## chaos: the chaos kit's long run (e2e/chaos, docs/reliability.md): the real binaries on a private
## broker it starts fresh, kills and restarts (CHAOS_PULSAR_HOME, default .pulsar-chaos; ports
## CHAOS_PULSAR_PORT/HTTP_PORT/BOOKIE_PORT, default 6651/8081/3182), thousands of sagas with known
## outcomes, kill -9 every few seconds, a frozen owner; then every saga checked. Exit 1 on any finding.
CHAOS_SAGAS    ?= 2500
CHAOS_DURATION ?= 10m
CHAOS_DRAIN    ?= 10m
CHAOS_SEED     ?= 1
CHAOS_ARGS     ?=
chaos:
	$(GO) run ./e2e/chaos/cmd/chaos -sagas $(CHAOS_SAGAS) -duration $(CHAOS_DURATION) -drain $(CHAOS_DRAIN) \
		-seed $(CHAOS_SEED) $(CHAOS_ARGS)

## chaos-short: the kit's short run alone (about 3 minutes, its broker included): TestChaosShort,
## which make test runs with the rest of the suite
chaos-short:
	$(GO) test -count=1 -timeout 20m -run '^TestChaosShort$$' ./e2e/chaos/

## chaos-frozen: an owner frozen (SIGSTOP) past its takeover, then resumed: nothing it writes may take effect
chaos-frozen:
	$(GO) test -tags chaos -count=1 -timeout 20m -run '^TestFrozenOwner$$' ./e2e/chaos/

## chaos-outage: the broker killed mid-run and kept down for 60s (six attempt timeouts): no saga's
## outcome may change and no attempt may be lost to the outage (issue #11 item 2)
chaos-outage:
	$(GO) test -tags chaos -count=1 -timeout 20m -run '^TestBrokerOutage$$' ./e2e/chaos/

## fuzz: run each fuzz target for FUZZTIME (default 30s)
FUZZTIME ?= 30s
fuzz:
	@for pkg in $$($(GO) list $(PKGS)); do \
	  for f in $$($(GO) test -list '^Fuzz' $$pkg 2>/dev/null | grep '^Fuzz'); do \
	    echo "== $$pkg $$f"; $(GO) test -run '^$$' -fuzz "^$$f$$" -fuzztime $(FUZZTIME) $$pkg || exit 1; \
	  done; \
	done

## proto: regenerate the engine's record code from engine/enginepb/records.proto
## (needs protoc — apt-get install protobuf-compiler — and protoc-gen-go, which
## this target installs at the version go.mod pins). The generated file is
## committed: building and testing never need protoc.
proto:
	$(GO) install google.golang.org/protobuf/cmd/protoc-gen-go@$$($(GO) list -m -f '{{.Version}}' google.golang.org/protobuf)
	PATH="$$($(GO) env GOPATH)/bin:$$PATH" $(GO) generate ./engine/enginepb

clean:
	rm -rf $(BIN) bench/results
