#!/usr/bin/env bash
# The benchmark run behind `make bench` (full) and `make bench-quick` (quick):
# every phase in one run, its output appended to one file that bench/report
# turns into medians, ratios to the raw baseline and the targets of issue #9.
# Knobs: the BENCH_* variables below (the Makefile passes its own; see
# docs/benchmarks.md). Exits non-zero when a phase failed or a figure is missing.
set -uo pipefail

mode=${1:-full}
cd "$(dirname "$0")/.."
GO=${GO:-go}

if [[ $mode == quick ]]; then
	: "${BENCH_COUNT:=1}" "${BENCH_RELAY_TIME:=3s}" "${BENCH_INFLIGHT:=1000}" "${BENCH_WINDOW:=10s}" "${BENCH_SERIAL:=10}"
else
	: "${BENCH_COUNT:=3}" "${BENCH_RELAY_TIME:=3s}" "${BENCH_INFLIGHT:=1000,2000}" "${BENCH_WINDOW:=20s}" "${BENCH_SERIAL:=20}"
fi
: "${BENCH_OTHER_INFLIGHT:=1000}" "${BENCH_MODES:=}" "${BENCH_OPEN_STEPS:=25,50,75,100}" "${BENCH_OPEN_DURATION:=15s}"
: "${BENCH_STARTS:=3000}" "${BENCH_STARTS_CLI:=60}" "${BENCH_ENTRANCES:=client,client-many,topic,http,http-batch,cli,cli-api,cli-from,cli-from-api}"
: "${BENCH_WAITING:=20000}" "${BENCH_RESTART:=100000}" "${BENCH_RESTART_INFLIGHT:=2000}"
: "${BENCH_TIMERPROCS:=100}" "${BENCH_BURST:=500}" "${BENCH_PERF:=}"
if [[ $mode == quick ]]; then : "${BENCH_RELAY_WARM:=3s}"; else : "${BENCH_RELAY_WARM:=10s}"; fi

mkdir -p bench/results
stamp=$(date -u +%Y%m%dT%H%M%SZ)
out=bench/results/bench-$stamp.txt
logs=$PWD/bench/results/bench-$stamp-logs
t0=$(date +%s)
rc=0

say() { echo "== $*" | tee -a "$out"; }
# phase NAME CMD...: runs a go test command, its output shown and appended to $out.
phase() {
	local name=$1 start
	shift
	start=$(date +%s)
	say "$name ($(date -u +%H:%M:%S) UTC, load $(cut -d' ' -f1-3 /proc/loadavg))"
	"$@" 2>&1 | grep --line-buffered -v '^go: downloading' | tee -a "$out"
	local st=${PIPESTATUS[0]}
	if [[ $st -ne 0 ]]; then
		say "FAIL: $name exited with $st"
		rc=1
	fi
	say "$name took $(($(date +%s) - start))s"
}

say "make bench ($mode) at $(git rev-parse --short HEAD 2>/dev/null)$(git diff --quiet 2>/dev/null || echo '+changes'), $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg); output $out"

common=(-inflight "$BENCH_INFLIGHT" -other-inflight "$BENCH_OTHER_INFLIGHT" -window "$BENCH_WINDOW" -logdir "$logs")
if [[ -n $BENCH_MODES ]]; then
	common+=(-modes "$BENCH_MODES")
elif [[ $mode == quick ]]; then
	common+=(-modes default) # the engine's default decider mode only
fi
[[ -n $BENCH_PERF ]] && common+=(-perf "$BENCH_PERF")

# 0. Warm the broker's relay path, not counted. A broker's JIT warms each path with traffic:
# on a broker just started (or one that has only run other work) the first relay runs read
# far low — session 12: 15,626 / 18,192 / 22,086 msgs/s in a row (the median, 18,192, made the
# ratio read 0.309), against 28,285–31,965 minutes later on the same broker; after a minute
# of sagas, a first relay run still read 17,916 and the next 31,773. A low denominator
# flatters the ratio.
warm=$BENCH_RELAY_WARM
say "warm-up: raw Pulsar relay for $warm, twice, not counted"
for _ in 1 2; do
	$GO test -run '^$' -bench '^BenchmarkRelay$/^Pipelined$/^Raw$' -count 1 -benchtime "$warm" -timeout 10m ./bus/pulsarbus/ 2>&1 |
		grep -oE '[0-9.]+ msgs/s' | sed 's/^/== warm-up relay: /' | tee -a "$out" | sed 's/^== //' >&2
done

# 1. The raw-Pulsar baseline: the keyed relay without pulsaga (the ratio's denominator).
# (-bench matches each /-separated part of a name on its own, unanchored.)
relay='^BenchmarkRelay$/^(OneAtATime|Pipelined|PipelinedTxBatch)$/^Raw$'
[[ $mode == quick ]] && relay='^BenchmarkRelay$/^Pipelined$/^Raw$'
phase "baseline: raw Pulsar relay, count $BENCH_COUNT, benchtime $BENCH_RELAY_TIME" \
	$GO test -run '^$' -bench "$relay" -count "$BENCH_COUNT" -benchtime "$BENCH_RELAY_TIME" -timeout 30m ./bus/pulsarbus/
if [[ $mode != quick ]]; then
	phase "baseline: workflow.Decide" \
		$GO test -run '^$' -bench 'Decide' -benchmem -count "$BENCH_COUNT" -benchtime 1s -timeout 10m ./workflow/
fi

# 2. Closed loop: the measured maximum.
phase "closed loop: trip sagas in flight $BENCH_INFLIGHT (other modes $BENCH_OTHER_INFLIGHT), window $BENCH_WINDOW, count $BENCH_COUNT" \
	$GO test -run '^$' -bench 'BenchmarkTrip$' -benchtime 1x -count "$BENCH_COUNT" -timeout 60m ./bench/ -args "${common[@]}"

if [[ $mode == quick ]]; then
	phase "unloaded latency: $BENCH_SERIAL sagas one at a time" \
		$GO test -run '^$' -bench 'BenchmarkTripUnloaded' -benchtime 1x -count "$BENCH_COUNT" -timeout 30m ./bench/ -args "${common[@]}" -serial "$BENCH_SERIAL"
else
	# 3. Open loop at percentages of that maximum, and the rest.
	max=$($GO run ./bench/report -max-rate "$out")
	if [[ -z $max ]]; then
		say "FAIL: no measured maximum (the closed loop failed); the open loop cannot run"
		rc=1
		max=0
	fi
	phase "open loop at $BENCH_OPEN_STEPS % of $max sagas/s ($BENCH_OPEN_DURATION each); unloaded latency; starts; memory; timers" \
		$GO test -run '^$' -bench 'BenchmarkTripOpen|BenchmarkTripUnloaded|BenchmarkStarts|BenchmarkMemoryPerWaitingProcess|BenchmarkTimerLateness' \
		-benchtime 1x -count "$BENCH_COUNT" -timeout 90m ./bench/ -args "${common[@]}" -open-max "$max" -open-steps "$BENCH_OPEN_STEPS" \
		-open-duration "$BENCH_OPEN_DURATION" -serial "$BENCH_SERIAL" -starts "$BENCH_STARTS" -starts-cli "$BENCH_STARTS_CLI" \
		-entrances "$BENCH_ENTRANCES" -waiting "$BENCH_WAITING" -restart-inflight "$BENCH_RESTART_INFLIGHT" \
		-timerprocs "$BENCH_TIMERPROCS" -burst "$BENCH_BURST"
	# 4. Restart with many waiting processes (once).
	phase "restart with $BENCH_RESTART waiting processes (once)" \
		$GO test -run '^$' -bench 'BenchmarkRestart' -benchtime 1x -count 1 -timeout 90m ./bench/ -args "${common[@]}" \
		-restart "$BENCH_RESTART" -restart-inflight "$BENCH_RESTART_INFLIGHT"
fi

say "make bench ($mode) took $(($(date +%s) - t0))s; load $(cut -d' ' -f1-3 /proc/loadavg)"
flags=()
[[ $mode == quick ]] && flags=(-quick)
$GO run ./bench/report "${flags[@]}" "$out" >"$out.md"
st=$?
cat "$out.md"
echo "report: $out.md; engine logs: $logs"
[[ $st -ne 0 ]] && rc=1
exit $rc
