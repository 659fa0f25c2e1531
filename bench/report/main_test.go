package main

import (
	"strings"
	"testing"
)

const sample = `goos: linux
pkg: github.com/pulsaga/pulsaga/bus/pulsarbus
BenchmarkRelay/Pipelined/Raw-2   	   56708	     58567 ns/op	     17000 msgs/s	        24.50 p50-ms
BenchmarkRelay/Pipelined/Raw-2   	   56708	     58567 ns/op	     16000 msgs/s	        24.50 p50-ms
BenchmarkRelay/Pipelined/Raw-2   	   56708	     58567 ns/op	     18000 msgs/s	        24.50 p50-ms
pkg: github.com/pulsaga/pulsaga/bench
BenchmarkTrip/decider=inline/inflight=1000-2 	1	1 ns/op	2000 sagas/s	15 msgs/saga	18 msgs-eventual/saga	8 KB/saga	1 timers/saga	3 engine-cpu-ms/saga	4 broker-cpu-ms/saga
BenchmarkTrip/decider=inline/inflight=2000-2 	1	1 ns/op	1800 sagas/s	15 msgs/saga	18 msgs-eventual/saga	8 KB/saga	1 timers/saga	3 engine-cpu-ms/saga	4 broker-cpu-ms/saga
BenchmarkTrip/decider=remote/inflight=1000-2 	1	1 ns/op	900 sagas/s	15 msgs/saga	18 msgs-eventual/saga	8 KB/saga	1 timers/saga	3 engine-cpu-ms/saga	4 broker-cpu-ms/saga
BenchmarkTripUnloaded/decider=inline-2 	1	1 ns/op	90 p50-ms
`

func TestMaxTrip(t *testing.T) {
	r := parse(strings.NewReader(sample))
	v, name, ok := r.maxTrip()
	if !ok || v != 2000 || name != "bench.BenchmarkTrip/decider=inline/inflight=1000" {
		t.Fatalf("maxTrip = %v %q %v", v, name, ok)
	}
	if got := r.modes(); strings.Join(got, ",") != "inline,remote" {
		t.Fatalf("modes = %v", got)
	}
}

func TestPrint(t *testing.T) {
	for _, tc := range []struct {
		name   string
		input  string
		quick  bool
		wantOK bool
		want   []string // lines that must appear
	}{
		{
			name: "quick run with every quick figure", input: sample, quick: true, wantOK: true,
			want: []string{
				"| sagas/s × 5 ÷ raw pipelined relay msgs/s | ≥ 0.5 | 0.588 (2000 sagas/s",
				"| Pulsar messages per trip saga (with the relays of its timers) | ≤ 20.0 | 18.0 | pass |",
				"| unloaded p50 (ms) | ≤ 100 | 90.0 | pass |",
				"| decider inline ÷ remote, sagas/s at 1000 in flight | ≤ 2 | 2.22 (2000 vs 900.0) | **miss** |",
				"| starts/s through the HTTP API | ≥ 1000 | not measured (quick) |  |",
			},
		},
		{
			name: "full run misses the figures a quick run leaves out", input: sample, quick: false, wantOK: false,
			want: []string{"| starts/s through the CLI | ≥ 1000 | missing | **missing** |"},
		},
		{
			name: "each entrance judged on its fastest way in", input: sample + "BenchmarkStarts-2 	1	1 ns/op	900 http-starts/s	1500 http-batch-starts/s	5 cli-starts/s\n", quick: true, wantOK: true,
			want: []string{
				"| starts/s through the HTTP API | ≥ 1000 | 1500 (http 900.0, http-batch 1500) | pass |",
				"| starts/s through the CLI | ≥ 1000 | 5 (cli 5) | **miss** |",
			},
		},
		{
			name: "sagas that did not complete fail the report", input: sample + "BenchmarkTrip/decider=inline/inflight=1000-2 	1	1 ns/op	2000 sagas/s	3 failed-sagas\n", quick: true, wantOK: false,
			want: []string{"**BenchmarkTrip/decider=inline/inflight=1000: 3 sagas did not complete in a run"},
		},
		{
			name: "a failure fails the report", input: sample + "--- FAIL: BenchmarkTrip/decider=inline/inflight=1000\n", quick: true, wantOK: false,
			want: []string{"**The benchmark output holds a failure"},
		},
		{
			name: "a baseline slower than pulsaga's own traffic gets no verdict", quick: true, wantOK: false,
			input: "pkg: github.com/pulsaga/pulsaga/bus/pulsarbus\nBenchmarkRelay/Pipelined/Raw-2 	117	251037355 ns/op	3.98 msgs/s	29368 p50-ms\n" + sample[strings.Index(sample, "pkg: github.com/pulsaga/pulsaga/bench"):],
			want:  []string{"| sagas/s × 5 ÷ raw pipelined relay msgs/s | ≥ 0.5 | 2513 (2000 sagas/s", "**invalid baseline**: slower than pulsaga's own relays"},
		},
		{
			name: "no baseline: the headline ratio is missing", input: sample[strings.Index(sample, "pkg: github.com/pulsaga/pulsaga/bench"):], quick: true, wantOK: false,
			want: []string{"| sagas/s × 5 ÷ raw pipelined relay msgs/s | ≥ 0.5 | missing | **missing** |"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var sb strings.Builder
			ok := parse(strings.NewReader(tc.input)).print(&sb, tc.quick)
			if ok != tc.wantOK {
				t.Errorf("ok = %v, want %v\n%s", ok, tc.wantOK, sb.String())
			}
			for _, w := range tc.want {
				if !strings.Contains(sb.String(), w) {
					t.Errorf("missing %q in\n%s", w, sb.String())
				}
			}
		})
	}
}

func TestByPackage(t *testing.T) {
	in := `# comment
    22.82%  [kernel.kallsyms]  [k] finish_task_switch.isra.0
     3.10%  orchestrator       [.] encoding/json.appendCompact
     1.41%  orchestrator       [.] encoding/json.stateInString
     0.85%  orchestrator       [.] github.com/apache/pulsar-client-go/pulsar.(*partitionProducer).internalFlushCurrentBatch
     0.50%  orchestrator       [.] runtime.selectgo
     0.10%  libc.so.6          [.] 0x0000000000012345
`
	var sb strings.Builder
	byPackage(strings.NewReader(in), &sb)
	for _, want := range []string{"| kernel | 22.8 |", "| encoding/json | 4.5 |", "| github.com/apache/pulsar-client-go/pulsar | 0.8 |", "| runtime | 0.5 |", "| libc.so.6 | 0.1 |"} {
		if !strings.Contains(sb.String(), want) {
			t.Errorf("missing %q in\n%s", want, sb.String())
		}
	}
}
