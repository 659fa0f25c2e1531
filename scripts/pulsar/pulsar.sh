#!/usr/bin/env bash
# Runs a real Apache Pulsar standalone on loopback from the official broker artifacts on
# Maven Central (no Docker needed). See docs/operations.md.
#
#   scripts/pulsar/pulsar.sh start    # idempotent: reuses this folder's running broker; waits until ready
#   scripts/pulsar/pulsar.sh stop
#   scripts/pulsar/pulsar.sh status
#   scripts/pulsar/pulsar.sh env      # prints PULSAR_URL / PULSAR_ADMIN_URL exports
#   scripts/pulsar/pulsar.sh probe    # does the binary port answer a protocol handshake (CONNECT)?
#   scripts/pulsar/pulsar.sh threads  # one thread dump of the broker's JVM per broker process
#   scripts/pulsar/pulsar.sh health   # one line: status, handshake probe, thread dump (make test prints
#                                     # it when the tests fail; a wedged broker gets its dump here)
#
# Environment:
#   PULSAR_URL, PULSAR_ADMIN_URL    use an existing broker instead (start only checks it)
#   PULSAGA_PULSAR_PORT             binary protocol port (default 6650)
#   PULSAGA_PULSAR_HTTP_PORT        admin/HTTP port (default 8080)
#   PULSAGA_PULSAR_BOOKIE_PORT      bookie port (default 3181). Without these three, a start whose
#                                   default ports another program holds takes free ones (16651/18081/
#                                   13182 and up), kept in $PULSAGA_PULSAR_HOME/ports until stop: env,
#                                   status and the tests (internal/pulsartest) follow them
#   PULSAGA_PULSAR_HOME             where jars, data and logs live (default <repo>/.pulsar)
#   PULSAGA_PULSAR_START_TIMEOUT    seconds to wait for readiness (default 240)
#   PULSAGA_PULSAR_CONF_EXTRA       a file of key=value lines that replace (or add to) the keys of
#                                   standalone.conf: authentication, TLS ports (the auth test's broker)
#   PULSAGA_PULSAR_ADMIN_TOKEN_FILE a token the readiness checks send (a broker with authentication)
#   PULSAGA_PULSAR_FAST_START       1: start (and restart) fast, run a little slower: C1 JIT only, serial
#                                   GC — about half the CPU to become ready. For brokers that are killed
#                                   and started again by tests (the chaos kit's); not for benchmarks
#   PULSAGA_PULSAR_JAVA_OPTS        more JVM options, appended to the defaults (space-separated)
#   JAVA_HOME                       the JDK to run (default: the java on PATH; needs 17+)
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)
home=${PULSAGA_PULSAR_HOME:-$repo/.pulsar}
broker_port=${PULSAGA_PULSAR_PORT:-6650}
http_port=${PULSAGA_PULSAR_HTTP_PORT:-8080}
bookie_port=${PULSAGA_PULSAR_BOOKIE_PORT:-3181}
# Ports given by the environment are kept; without them, a start whose default ports another
# program holds (a broker of another checkout, a frozen leftover) picks free ones and records
# them in $home/ports, which every later command of this folder reads (stop removes it).
explicit_ports=${PULSAGA_PULSAR_PORT:-}${PULSAGA_PULSAR_HTTP_PORT:-}${PULSAGA_PULSAR_BOOKIE_PORT:-}
if [[ -z $explicit_ports && -s $home/ports ]]; then
	read -r b h k <"$home/ports" || true
	if [[ $b =~ ^[0-9]+$ && $h =~ ^[0-9]+$ && $k =~ ^[0-9]+$ ]]; then
		broker_port=$b http_port=$h bookie_port=$k
	fi
	unset b h k
fi
timeout=${PULSAGA_PULSAR_START_TIMEOUT:-240}
version=$(sed -n 's:.*<pulsar.version>\(.*\)</pulsar.version>.*:\1:p' "$here/pom.xml")
admin_url=${PULSAR_ADMIN_URL:-http://127.0.0.1:$http_port}
service_url=${PULSAR_URL:-pulsar://127.0.0.1:$broker_port}

log() { printf 'pulsar: %s\n' "$*" >&2; }
die() { printf 'pulsar: error: %s\n' "$*" >&2; exit 1; }

# curl_admin: curl with the admin token when the broker wants one.
curl_admin() {
	if [[ -n ${PULSAGA_PULSAR_ADMIN_TOKEN_FILE:-} ]]; then
		curl -H "Authorization: Bearer $(cat "$PULSAGA_PULSAR_ADMIN_TOKEN_FILE")" "$@"
	else
		curl "$@"
	fi
}

# ready: the admin API answers and every transaction coordinator is assigned and ready.
admin_up() { curl_admin -sf -m 3 "$admin_url/admin/v2/clusters" >/dev/null 2>&1; }
# coordinators: how many transaction coordinators the broker has (partitions of the
# coordinators' assignment topic; 0 before it exists).
coordinators() {
	curl_admin -sf -m 5 "$admin_url/admin/v2/persistent/pulsar/system/transaction_coordinator_assign/partitions" 2>/dev/null |
		sed -n 's/.*"partitions":\([0-9][0-9]*\).*/\1/p'
}
txn_ready() {
	# Each coordinator's partition must be owned by this broker (a lookup assigns it);
	# a coordinator itself loads when the first client connects to it.
	local n i
	n=$(coordinators)
	[[ -n $n && $n -ge 1 ]] || return 1
	for ((i = 0; i < n; i++)); do
		curl_admin -sf -m 10 "$admin_url/lookup/v2/topic/persistent/pulsar/system/transaction_coordinator_assign-partition-$i" 2>/dev/null |
			grep -q brokerUrl || return 1
	done
}
ready() { admin_up && txn_ready; }

port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# pick_ports: the first free set of three ports above the defaults' range (16651/18081/13182,
# then +1 ...), for a start whose ports another program holds; sets the URLs to match.
pick_ports() {
	local i
	for ((i = 1; i <= 200; i++)); do
		if ! port_busy $((16650 + i)) && ! port_busy $((18080 + i)) && ! port_busy $((13181 + i)); then
			broker_port=$((16650 + i)) http_port=$((18080 + i)) bookie_port=$((13181 + i))
			admin_url=http://127.0.0.1:$http_port
			service_url=pulsar://127.0.0.1:$broker_port
			return 0
		fi
	done
	return 1
}

running_pid() {
	local pid
	[[ -f $home/pid ]] || return 1
	pid=$(cat "$home/pid")
	[[ -n $pid ]] && kill -0 "$pid" 2>/dev/null && echo "$pid"
}

need_tools() {
	local java=${JAVA_HOME:+$JAVA_HOME/bin/}java
	command -v "$java" >/dev/null 2>&1 ||
		die "Java is missing: install a JDK 17 or newer (Debian: apt-get install openjdk-17-jdk-headless) or set JAVA_HOME"
	local jv
	jv=$("$java" -version 2>&1 | sed -n 's/.*version "\([0-9]*\).*/\1/p' | head -1)
	[[ -n $jv && $jv -ge 17 ]] || die "Java $jv found at $(command -v "$java"); Pulsar $version needs Java 17 or newer (set JAVA_HOME)"
	JAVA=$java
	if [[ ! -f $home/lib/.complete-$version ]]; then
		command -v mvn >/dev/null 2>&1 ||
			die "Maven is missing; it downloads the Pulsar broker from Maven Central (Debian: apt-get install maven)"
	fi
}

fetch_jars() {
	[[ -f $home/lib/.complete-$version ]] && return 0
	log "downloading Apache Pulsar $version broker artifacts from Maven Central (first run only)..."
	local t0=$SECONDS
	rm -rf "$home/lib"
	mkdir -p "$home/lib"
	if ! mvn -q -B -s "$here/settings.xml" -f "$here/pom.xml" dependency:copy-dependencies \
		-DincludeScope=runtime -DoutputDirectory="$home/lib" >"$home/mvn.log" 2>&1; then
		tail -20 "$home/mvn.log" >&2
		die "Maven could not resolve org.apache.pulsar:pulsar-broker:$version (log: $home/mvn.log)"
	fi
	touch "$home/lib/.complete-$version"
	log "downloaded $(ls "$home/lib" | wc -l) jars in $((SECONDS - t0))s"
}

start() {
	if [[ -n ${PULSAR_URL:-} || -n ${PULSAR_ADMIN_URL:-} ]]; then
		[[ -n ${PULSAR_URL:-} && -n ${PULSAR_ADMIN_URL:-} ]] || die "set both PULSAR_URL and PULSAR_ADMIN_URL to use an existing broker"
		ready || die "the broker at $PULSAR_ADMIN_URL is not ready (admin API or transaction coordinator not answering)"
		log "using the existing broker at $PULSAR_URL"
		return 0
	fi
	local pid
	# Only this folder's own broker is reused: one another checkout (or an earlier session)
	# left on the same ports may be stopped or frozen under the tests at any time.
	if pid=$(running_pid) && ready; then
		log "reusing this folder's broker (pid $pid) at $service_url"
		return 0
	fi
	if ! pid=$(running_pid); then
		local busy="" p
		for p in "$broker_port" "$http_port" "$bookie_port"; do
			port_busy "$p" && busy="$busy $p"
		done
		if [[ -n $busy ]]; then
			[[ -z $explicit_ports ]] ||
				die "port(s)$busy on 127.0.0.1 are taken by another program (not the broker of $home); stop it, or choose other ports with PULSAGA_PULSAR_PORT / PULSAGA_PULSAR_HTTP_PORT / PULSAGA_PULSAR_BOOKIE_PORT"
			pick_ports || die "port(s)$busy on 127.0.0.1 are taken by another program and no free set of three ports was found; set PULSAGA_PULSAR_PORT / PULSAGA_PULSAR_HTTP_PORT / PULSAGA_PULSAR_BOOKIE_PORT"
			log "port(s)$busy on 127.0.0.1 are taken by another program (not the broker of $home): this folder's broker uses $broker_port (binary), $http_port (admin), $bookie_port (bookie); pulsar.sh env prints its URLs"
		fi
		mkdir -p "$home"
		echo "$broker_port $http_port $bookie_port" >"$home/ports"
		need_tools
		fetch_jars
		mkdir -p "$home/data" "$home/logs"
		sed -e "s|@BROKER_PORT@|$broker_port|g" -e "s|@HTTP_PORT@|$http_port|g" \
			-e "s|@BOOKIE_PORT@|$bookie_port|g" -e "s|@DATA_DIR@|$home/data|g" \
			"$here/standalone.conf" >"$home/standalone.conf"
		if [[ -n ${PULSAGA_PULSAR_CONF_EXTRA:-} ]]; then
			# Each key of the extra file replaces the base's (a key given twice would
			# become a list to the bookie's configuration reader).
			[[ -r $PULSAGA_PULSAR_CONF_EXTRA ]] || die "PULSAGA_PULSAR_CONF_EXTRA=$PULSAGA_PULSAR_CONF_EXTRA cannot be read"
			awk -F= 'NR == FNR { if ($0 !~ /^[[:space:]]*(#|$)/) extra[$1] = 1; next }
				$0 ~ /^[[:space:]]*(#|$)/ || !($1 in extra)' \
				"$PULSAGA_PULSAR_CONF_EXTRA" "$home/standalone.conf" >"$home/standalone.conf.base"
			{ cat "$home/standalone.conf.base"; echo "# from $PULSAGA_PULSAR_CONF_EXTRA"; cat "$PULSAGA_PULSAR_CONF_EXTRA"; } >"$home/standalone.conf"
			rm -f "$home/standalone.conf.base"
		fi
		local opts=(
			-Xms256m -Xmx1g -XX:MaxDirectMemorySize=1g -XX:+UseG1GC -XX:+ExitOnOutOfMemoryError
			-Dpulsar.log.dir="$home/logs" -Dlog4j.configurationFile="$here/log4j2.xml"
			-Dlog4j2.formatMsgNoLookups=true -Dio.netty.tryReflectionSetAccessible=true
			-Dpulsar.allocator.exit_on_oom=true -Dzookeeper.4lw.commands.whitelist=ruok
			# the --add-opens flags Pulsar's own bin/pulsar passes on Java 17+
			--add-opens java.base/java.io=ALL-UNNAMED --add-opens java.base/java.util.zip=ALL-UNNAMED
			--add-opens java.base/sun.net=ALL-UNNAMED --add-opens java.management/sun.management=ALL-UNNAMED
			--add-opens jdk.management/com.sun.management.internal=ALL-UNNAMED
			--add-opens java.base/java.nio=ALL-UNNAMED --add-opens java.base/jdk.internal.misc=ALL-UNNAMED
			--add-opens java.base/jdk.internal.platform=ALL-UNNAMED --add-opens java.base/java.lang=ALL-UNNAMED
		)
		if [[ ${PULSAGA_PULSAR_FAST_START:-} == 1 ]]; then
			# Most of a start is the JIT compiling the start-up code with C2 and
			# G1's threads, on few cores: C1 alone needs half the CPU (measured
			# 23 s -> 11 s of CPU to readiness on two cores, docs/reliability.md).
			opts=("${opts[@]/-XX:+UseG1GC/-XX:+UseSerialGC}" -XX:TieredStopAtLevel=1)
		fi
		if [[ -n ${PULSAGA_PULSAR_JAVA_OPTS:-} ]]; then
			local extra
			read -r -a extra <<<"$PULSAGA_PULSAR_JAVA_OPTS"
			opts+=("${extra[@]}")
		fi
		log "starting Apache Pulsar $version standalone on $service_url (admin $admin_url, data $home/data)"
		(
			cd "$home"
			nohup setsid "$JAVA" "${opts[@]}" -cp "$home/lib/*" org.apache.pulsar.PulsarStandaloneStarter \
				--config "$home/standalone.conf" --no-functions-worker --no-stream-storage \
				--bookkeeper-port "$bookie_port" \
				--bookkeeper-dir "$home/data/bookkeeper" --zookeeper-dir "$home/data/zookeeper" \
				--metadata-dir "$home/data/metadata" \
				>"$home/logs/stdout.log" 2>&1 </dev/null &
			echo $! >"$home/pid"
		)
		pid=$(cat "$home/pid")
	else
		log "a broker (pid $pid) is starting; waiting for it"
	fi
	local t0=$SECONDS
	until ready; do
		if ! kill -0 "$pid" 2>/dev/null; then
			tail -30 "$home/logs/stdout.log" "$home/logs/pulsar.log" 2>/dev/null >&2 || true
			die "the broker exited during start-up (logs: $home/logs)"
		fi
		((SECONDS - t0 < timeout)) || die "the broker did not become ready within ${timeout}s (logs: $home/logs)"
		sleep 1
	done
	log "ready in $((SECONDS - t0))s (pid $pid): $service_url, admin $admin_url"
}

stop() {
	local pid
	if pid=$(running_pid); then
		kill "$pid" 2>/dev/null || true
		for _ in $(seq 1 60); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
		kill -9 "$pid" 2>/dev/null || true
		log "stopped (pid $pid)"
	else
		log "not running"
	fi
	rm -f "$home/pid" "$home/ports"
}

status() {
	local pid
	if pid=$(running_pid); then
		if ready; then echo "ready: $service_url (admin $admin_url)"; return 0; fi
		echo "starting (pid $pid)"; return 1
	fi
	if [[ -z ${PULSAR_URL:-} ]] && ready; then
		echo "not running (another program's broker answers at $service_url: not this folder's)"; return 1
	fi
	if [[ -n ${PULSAR_URL:-} ]] && ready; then echo "ready: $service_url (admin $admin_url)"; return 0; fi
	echo "not running"; return 1
}

# probe: send the binary protocol's CONNECT and wait for the broker's first answer frame.
# The admin API can answer while the binary port does not: a broker whose IO threads are
# stuck accepts TCP connections (the kernel does) and never answers the handshake.
probe_timeout=${PULSAGA_PULSAR_PROBE_TIMEOUT:-5}
probe() {
	local hp=${service_url#*://}
	hp=${hp%%/*}
	hp=${hp%%,*}
	if [[ $service_url != pulsar://* ]]; then
		echo "not probed ($service_url is not plain pulsar://)"
		return 0
	fi
	local host=${hp%:*} port=${hp##*:} t0=$EPOCHREALTIME out rc=0
	# CONNECT: frame = total size, command size, BaseCommand{type: CONNECT, connect:
	# {client_version: "probe", protocol_version: 21}}; any answer frame counts.
	out=$(timeout "$((probe_timeout + 1))" bash -c '
		exec 3<>"/dev/tcp/$1/$2" || exit 3
		printf "\x00\x00\x00\x11\x00\x00\x00\x0d\x08\x02\x12\x09\x0a\x05probe\x20\x15" >&3
		timeout "$3" head -c 10 <&3 | od -An -tx1 | tr -d " \n"
	' _ "$host" "$port" "$probe_timeout" 2>/dev/null) || rc=$?
	local ms=$(( (${EPOCHREALTIME/./} - ${t0/./}) / 1000 ))
	if [[ $rc == 3 ]]; then
		echo "REFUSED (nothing listens on $host:$port)"
		return 1
	fi
	case $out in
	????????????????0803*) echo "answered CONNECTED in ${ms}ms" ;;
	????????????????08*) echo "answered (command type 0x${out:18:2}, not CONNECTED) in ${ms}ms" ;;
	"") echo "NO ANSWER within ${probe_timeout}s (TCP accepted, handshake unanswered: broker wedged?)"; return 1 ;;
	*) echo "answered garbage ($out) in ${ms}ms"; return 1 ;;
	esac
}

# threads: one thread dump of the running broker's JVM into logs/threads-<time>-<pid>.txt and
# print its path. Once per broker process: later calls (any process) print the first dump's
# path, unless "threads again". jcmd, else jstack, else SIGQUIT (the JVM prints to stdout.log).
threads() {
	local pid
	pid=$(running_pid) || { echo "none (no live broker pid in $home/pid)" >&2; return 1; }
	mkdir -p "$home/logs"
	local marker=$home/logs/threads-pid$pid.last
	(
		flock 9
		# The marker is this broker process's when newer than its pid file (pids get reused).
		if [[ ${1:-} != again && -s $marker && $marker -nt $home/pid && -s $(cat "$marker") ]]; then
			cat "$marker"
			exit 0
		fi
		local out=$home/logs/threads-$(date -u +%Y%m%dT%H%M%SZ)-$pid.txt bin=${JAVA_HOME:+$JAVA_HOME/bin/}
		if timeout 60 "${bin}jcmd" "$pid" Thread.print -l >"$out.tmp" 2>&1 && grep -q '^"' "$out.tmp"; then
			:
		elif timeout 60 "${bin}jstack" -l "$pid" >"$out.tmp" 2>&1 && grep -q '^"' "$out.tmp"; then
			:
		elif [[ $(readlink "/proc/$pid/exe" 2>/dev/null) == */java ]]; then
			# Only a JVM gets SIGQUIT (a stale pid file may name another program).
			local size
			size=$(stat -c %s "$home/logs/stdout.log" 2>/dev/null || echo 0)
			kill -QUIT "$pid" 2>/dev/null || true
			sleep 5
			tail -c "+$((size + 1))" "$home/logs/stdout.log" >"$out.tmp" 2>/dev/null || true
		fi
		if ! grep -q '^"' "$out.tmp" 2>/dev/null; then
			echo "none (jcmd, jstack and SIGQUIT gave no dump of pid $pid: $(head -c 160 "$out.tmp" 2>/dev/null | tr '\n' ' '))" >&2
			rm -f "$out.tmp"
			exit 1
		fi
		mv "$out.tmp" "$out"
		echo "$out" >"$marker"
		echo "$out"
	) 9>"$home/threads.lock"
}

# log_hints (a deaf broker): whether the JVM still works (threads started and young GCs over
# 3 s: a healthy broker under test load starts hundreds of threads a second), when each IO
# thread last logged (a wedged one stops), the broker's StackOverflowErrors (Pulsar 4.0.7's
# exclusive-consumer addConsumer recursion, apache/pulsar#24934, docs/operations.md) and the
# last ERROR line. The JVM's perf data file is kept in logs/ (a later JVM deletes it from /tmp).
log_hints() {
	local f=$home/logs/pulsar.log io err pid a b bin=${JAVA_HOME:+$JAVA_HOME/bin/}
	if pid=$(running_pid); then
		cp "${TMPDIR:-/tmp}/hsperfdata_$(id -un)/$pid" "$home/logs/hsperfdata-$pid" 2>/dev/null || true
		counters() { timeout 20 "${bin}jcmd" "$pid" PerfCounter.print 2>/dev/null |
			sed -n 's/^java.threads.started=\([0-9]*\)/\1/p; s/^sun.gc.collector.0.invocations=\([0-9]*\)/\1/p' | paste -sd' '; }
		a=$(counters)
		sleep 3
		b=$(counters)
		if [[ -n $a && -n $b ]]; then
			read -r ts0 gc0 <<<"$a"
			read -r ts1 gc1 <<<"$b"
			echo "  JVM over 3 s: $((ts1 - ts0)) threads started (total $ts1), $((gc1 - gc0)) young GCs (total $gc1)"
		fi
	fi
	[[ -s $f ]] || return 0
	io=$(tail -c 50000000 "$f" | grep -o '^[0-9T:.,-]* \[pulsar-io-[0-9-]*\]' |
		awk '{ t[$2] = substr($1, 12, 8) } END { for (k in t) printf "%s %s, ", k, t[k] }')
	echo "  now $(date -u +%T) UTC; last log line of each IO thread: ${io%, }; StackOverflowErrors logged: $(zcat -f "$home"/logs/pulsar*.log* 2>/dev/null | grep -c 'Caused by: java.lang.StackOverflowError')"
	err=$(grep -E '^[0-9T:.,-]+ \[[^]]+\] ERROR ' "$f" | tail -1 | cut -c1-220)
	[[ -z $err ]] || echo "  last ERROR: $err"
}

# log_errors: what the broker logged as ERROR since it started, grouped (topic names and
# numbers masked), most frequent first; and when a topic's transaction buffer recovery
# failed. A test that waited in vain for the broker usually finds its cause here (a
# recovery timing out stalls every topic loading behind it, see standalone.conf).
log_errors() {
	local since
	[[ -f $home/pid ]] || return 0
	since=$(date -r "$home/pid" +%Y-%m-%dT%H:%M:%S)
	zcat -f "$home"/logs/pulsar*.log* 2>/dev/null |
		awk -v since="$since" '/^[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9]T/ { keep = (substr($1, 1, 19) >= since) }
			keep && / ERROR / { print }' >"$home/logs/errors.since-start" || true
	[[ -s $home/logs/errors.since-start ]] || { echo "  broker ERRORs since its start ($since): none"; return 0; }
	echo "  broker ERRORs since its start ($since): $(wc -l <"$home/logs/errors.since-start"), most frequent:"
	sed -E 's/^[^ ]+ \[[^]]*\] ERROR +//; s#(persistent|non-persistent)://[^] ,:]*#<topic>#g; s/[0-9a-f]*[0-9][0-9a-f]*/N/g' \
		"$home/logs/errors.since-start" | cut -c1-160 | sort | uniq -c | sort -rn | head -5 | sed 's/^/   /' || true
	local tb
	tb=$(grep 'failed to recover snapshot' "$home/logs/errors.since-start" | cut -c1-19 | sort -u | paste -sd' ') || true
	[[ -z $tb ]] || echo "  transaction buffer recoveries failed at: $tb" | cut -c1-400
	return 0
}

# health: one line for the end of a failed test run (make test prints it last), and the
# thread dump's summary when there is one (the tests write <dump>.summary).
health() {
	local st pr pid dump="" marker
	st=$(status 2>&1) || true
	if pid=$(running_pid) && [[ $st != *"pid $pid"* ]]; then st="$st (pid $pid)"; fi
	if pr=$(probe); then
		marker=$home/logs/threads-pid$pid.last
		[[ -n $pid && -s $marker && $marker -nt $home/pid ]] && dump=$(cat "$marker")
	elif [[ -n $pid ]]; then
		dump=$(threads 2>&1) || true
	fi
	echo "pulsar health: $st; binary handshake: $pr; thread dump: ${dump:-none}"
	[[ $pr == NO\ ANSWER* ]] && log_hints
	log_errors
	if [[ -f $dump ]]; then
		if [[ ! -s $dump.summary ]] && command -v "${GO:-go}" >/dev/null 2>&1; then
			(cd "$repo" && "${GO:-go}" run ./internal/pulsartest/threadsummary "$dump" >/dev/null 2>&1) || true
		fi
		[[ -s $dump.summary ]] && sed 's/^/  /' "$dump.summary"
	fi
	return 0
}

case ${1:-} in
start) start ;;
stop) stop ;;
restart) stop; start ;;
status) status ;;
wipe) stop; rm -rf "$home/data"; log "data wiped" ;;
probe) probe ;;
threads) threads "${2:-}" ;;
health) health ;;
env) printf 'export PULSAR_URL=%s\nexport PULSAR_ADMIN_URL=%s\n' "$service_url" "$admin_url" ;;
*) echo "usage: $0 start|stop|restart|status|wipe|env|probe|threads [again]|health" >&2; exit 2 ;;
esac
