package bench

import (
	"context"
	"fmt"
	"os"
	"sort"
	"strings"
	"time"

	"github.com/pulsaga/pulsaga/bus"
)

// Snapshot is the counters a measuring window is taken between: CPU time
// of the engine's processes, of the broker and of the benchmark's own
// process, the machine's busy time, and the messages written to the
// namespace by topic.
type Snapshot struct {
	At      time.Time
	CPU     map[string]time.Duration // by process name
	Machine time.Duration            // every processor's busy time since boot
	Topics  map[string]TopicCount
}

// Self names the benchmark's own process (workers, load generator, status
// reader) in a Snapshot.
const Self = "bench"

// Take reads the counters: CPU of every process of pids (name → pid) and
// of this process, then the namespace's topic counters.
func Take(ctx context.Context, adminURL string, ns bus.Namespace, pids map[string]int) (Snapshot, error) {
	s := Snapshot{At: time.Now(), CPU: map[string]time.Duration{}, Topics: map[string]TopicCount{}}
	var err error
	if s.Machine, err = MachineCPU(); err != nil {
		return s, err
	}
	for name, pid := range pids {
		if s.CPU[name], err = ProcCPU(pid); err != nil {
			return s, err
		}
	}
	if s.CPU[Self], err = ProcCPU(os.Getpid()); err != nil {
		return s, err
	}
	_, by, err := MessagesIn(ctx, adminURL, ns)
	if err != nil {
		return s, err
	}
	for _, c := range by {
		s.Topics[c.Topic] = c
	}
	return s, nil
}

// Window is what happened between two snapshots.
type Window struct {
	Wall    time.Duration
	CPU     map[string]time.Duration
	Machine time.Duration
	Topics  []TopicCount // differences, most messages first
}

// Sub is the window from a to s.
func (s Snapshot) Sub(a Snapshot) Window {
	w := Window{Wall: s.At.Sub(a.At), CPU: map[string]time.Duration{}, Machine: s.Machine - a.Machine}
	for n, c := range s.CPU {
		w.CPU[n] = c - a.CPU[n]
	}
	for t, c := range s.Topics {
		o := a.Topics[t]
		d := TopicCount{Topic: t, Messages: c.Messages - o.Messages, Bytes: c.Bytes - o.Bytes, Out: c.Out - o.Out, Entries: c.Entries - o.Entries}
		if d.Messages != 0 || d.Out != 0 {
			w.Topics = append(w.Topics, d)
		}
	}
	sort.Slice(w.Topics, func(i, j int) bool { return w.Topics[i].Messages > w.Topics[j].Messages })
	return w
}

// Messages and Bytes are the window's totals written.
func (w Window) Messages() (msgs, bytes int64) {
	for _, c := range w.Topics {
		msgs += c.Messages
		bytes += c.Bytes
	}
	return msgs, bytes
}

// Entries is the window's total of broker entries added.
func (w Window) Entries() (n int64) {
	for _, c := range w.Topics {
		n += c.Entries
	}
	return n
}

// Topic is the window's counts of one topic.
func (w Window) Topic(name string) TopicCount {
	for _, c := range w.Topics {
		if c.Topic == name {
			return c
		}
	}
	return TopicCount{Topic: name}
}

// PerUnit prints the messages per unit (saga) by topic, with the mean
// message size and the broker entries per unit.
func (w Window) PerUnit(n int) string {
	var parts []string
	for _, c := range w.Topics {
		if c.Messages == 0 {
			continue
		}
		parts = append(parts, fmt.Sprintf("%s %.2f (%.0fB, %.2f entries)", c.Topic, float64(c.Messages)/float64(n), float64(c.Bytes)/float64(c.Messages), float64(c.Entries)/float64(n)))
	}
	return strings.Join(parts, ", ")
}
