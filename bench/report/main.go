// Command report reads `go test -bench` output (the file `make bench`
// writes) and prints, as Markdown, the median of every metric of every
// benchmark over its -count runs, then the end-to-end figures as ratios to
// the raw-Pulsar baseline (bus/pulsarbus BenchmarkRaw) of the same run.
// It exits non-zero when the output holds a failure or a figure is missing.
//
//	go run ./bench/report bench/results/bench-….txt
package main

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"regexp"
	"sort"
	"strconv"
	"strings"
)

var procSuffix = regexp.MustCompile(`-\d+$`)

type series map[string][]float64 // unit → values, one per run

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: report BENCH_OUTPUT")
		os.Exit(2)
	}
	f, err := os.Open(os.Args[1])
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	defer f.Close()
	res, order, failed := parse(f)
	ok := !failed
	if failed {
		fmt.Println("**The benchmark output holds a failure (FAIL or panic); the figures below are incomplete.**")
		fmt.Println()
	}
	fmt.Println("| benchmark | runs | medians |")
	fmt.Println("| --- | --- | --- |")
	for _, name := range order {
		s := res[name]
		units := make([]string, 0, len(s))
		for u := range s {
			if u != "ns/op" && u != "B/op" && u != "allocs/op" || !strings.HasPrefix(name, "bench.") {
				units = append(units, u)
			}
		}
		sort.Strings(units)
		var cells []string
		runs := 0
		for _, u := range units {
			cells = append(cells, fmt.Sprintf("%s %s", num(med(s[u])), u))
			runs = max(runs, len(s[u]))
		}
		fmt.Printf("| %s | %d | %s |\n", name, runs, strings.Join(cells, ", "))
	}
	const (
		thr    = "bench.BenchmarkTripThroughput"
		serial = "bench.BenchmarkTripLatencyUnloaded"
		raw    = "pulsarbus.BenchmarkRaw/" // the baseline's first name
	)
	get := func(name, unit string) (float64, bool) {
		v := res[name][unit]
		if mode, ok := strings.CutPrefix(name, raw); ok && len(v) == 0 {
			// The baseline's current name: BenchmarkRelay/<mode>/Raw.
			v = res["pulsarbus.BenchmarkRelay/"+mode+"/Raw"][unit]
		}
		if len(v) == 0 {
			return 0, false
		}
		return med(v), true
	}
	type ratio struct {
		what       string
		num, den   [2]string
		mul        [2]string // optional factor of the numerator
		multiplied bool
	}
	ratios := []ratio{
		{what: "unloaded saga p50 ÷ raw keyed round trip p50 (OneAtATime)", num: [2]string{serial, "p50-ms"}, den: [2]string{raw + "OneAtATime", "p50-ms"}},
		{what: "unloaded saga p50 ÷ raw transactional round trip p50 (OneAtATimeTx)", num: [2]string{serial, "p50-ms"}, den: [2]string{raw + "OneAtATimeTx", "p50-ms"}},
		{what: "loaded saga p50 ÷ raw pipelined round trip p50 (Pipelined)", num: [2]string{thr, "p50-ms"}, den: [2]string{raw + "Pipelined", "p50-ms"}},
		{what: "sagas/s × msgs/saga ÷ raw msgs/s (Pipelined): share of raw Pulsar's message rate used", num: [2]string{thr, "sagas/s"}, mul: [2]string{thr, "msgs/saga"}, multiplied: true, den: [2]string{raw + "Pipelined", "msgs/s"}},
		{what: "sagas/s × msgs/saga ÷ raw msgs/s (PipelinedTxBatch, 100 per transaction)", num: [2]string{thr, "sagas/s"}, mul: [2]string{thr, "msgs/saga"}, multiplied: true, den: [2]string{raw + "PipelinedTxBatch", "msgs/s"}},
		{what: "sagas/s ÷ raw transactions/s (PipelinedTx: one transaction per message)", num: [2]string{thr, "sagas/s"}, den: [2]string{raw + "PipelinedTx", "msgs/s"}},
	}
	fmt.Println()
	fmt.Println("| ratio to the raw-Pulsar baseline (medians) | value |")
	fmt.Println("| --- | --- |")
	for _, r := range ratios {
		n, ok1 := get(r.num[0], r.num[1])
		d, ok2 := get(r.den[0], r.den[1])
		m := 1.0
		ok3 := true
		if r.multiplied {
			m, ok3 = get(r.mul[0], r.mul[1])
		}
		if !ok1 || !ok2 || !ok3 || d == 0 {
			fmt.Printf("| %s | missing |\n", r.what)
			ok = false
			continue
		}
		fmt.Printf("| %s | %s |\n", r.what, num(n*m/d))
	}
	if !ok {
		os.Exit(1)
	}
}

// parse reads benchmark lines; names are prefixed with the last element
// of their package ("pkg: …/bench" → "bench.").
func parse(r io.Reader) (map[string]series, []string, bool) {
	res := map[string]series{}
	var order []string
	pkg := ""
	failed := false
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "pkg: ") {
			p := strings.TrimSpace(strings.TrimPrefix(line, "pkg: "))
			pkg = p[strings.LastIndex(p, "/")+1:]
			continue
		}
		if strings.HasPrefix(line, "FAIL") || strings.HasPrefix(line, "--- FAIL") || strings.HasPrefix(line, "panic:") {
			failed = true
			continue
		}
		if !strings.HasPrefix(line, "Benchmark") {
			continue
		}
		fields := strings.Fields(line)
		if len(fields) < 4 {
			continue
		}
		if _, err := strconv.Atoi(fields[1]); err != nil {
			continue
		}
		name := pkg + "." + procSuffix.ReplaceAllString(fields[0], "")
		s, seen := res[name]
		if !seen {
			s = series{}
			res[name] = s
			order = append(order, name)
		}
		for i := 2; i+1 < len(fields); i += 2 {
			v, err := strconv.ParseFloat(fields[i], 64)
			if err != nil {
				break
			}
			s[fields[i+1]] = append(s[fields[i+1]], v)
		}
	}
	return res, order, failed
}

func med(xs []float64) float64 {
	s := append([]float64(nil), xs...)
	sort.Float64s(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

func num(v float64) string {
	switch {
	case v >= 1000:
		return strconv.FormatFloat(v, 'f', 0, 64)
	case v >= 10:
		return strconv.FormatFloat(v, 'f', 1, 64)
	default:
		return strconv.FormatFloat(v, 'g', 3, 64)
	}
}
