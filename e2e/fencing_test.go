package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/pulsaga/pulsaga/bus"
	"github.com/pulsaga/pulsaga/demo"
	"github.com/pulsaga/pulsaga/engine"
	"github.com/pulsaga/pulsaga/protocol"
	"github.com/pulsaga/pulsaga/workflow"
)

// TestFrozenOwnerIsFenced: the owner of every partition is frozen
// (SIGSTOP) in the middle of its work, for longer than any grace; a
// standby joins, the broker hands it partition 0, and it takes it over and
// finishes that partition's sagas while the old owner sleeps. Then the old
// owner is resumed (SIGCONT): its batches in flight, its queued inputs and
// its stale view of partition 0 must not take effect. Checked on what the
// broker holds afterwards: each process's history is one dense stream
// (records 1, 2, 3, … once each: no fork, no gap), its status rows never go
// back (seq never decreases along the status topic, nothing after a
// terminal row but the same), every saga ends as it should with each effect
// once. No timing is part of the argument: the broker refuses the old
// owner (fenced producers, its open transactions aborted).
func TestFrozenOwnerIsFenced(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	c := newCluster(t)
	c.decider = engine.DeciderInline
	c.latency = "700ms" // sagas last a few seconds: the freeze finds them under way
	b, client, status := c.client(ctx)
	defer status.Close()
	c.start("orchestrator-b")
	c.start("worker")

	const n = 60
	pids := make([]string, n)
	for i := range pids {
		pids[i] = fmt.Sprintf("frozen-%02d-%s", i, directives[i%len(directives)])
		if err := client.Start(ctx, protocol.StartRequest{ProcessID: pids[i], Definition: "trip-booking", Input: json.RawMessage(`{"customer":"c","amount":5}`)}); err != nil {
			t.Fatal(err)
		}
	}
	waitAny(ctx, t, status, pids)
	time.Sleep(500 * time.Millisecond) // in the thick of it: results coming back, batches committing

	c.signal("orchestrator-b", syscall.SIGSTOP)
	frozenAt := time.Now()
	var p0 []string
	open := 0
	if err := status.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	for _, pid := range pids {
		if bus.KeyPartition(pid, 2) == 0 {
			p0 = append(p0, pid)
			if r, ok := status.Get(pid); !ok || !r.Status.Terminal() {
				open++
			}
		}
	}
	if open == 0 {
		t.Fatal("every saga of partition 0 had finished when the owner was frozen: nothing left to take over")
	}
	t.Logf("orchestrator-b frozen (SIGSTOP) with %d of partition 0's %d sagas under way", open, len(p0))
	c.start("orchestrator-a") // sorts first: the broker gives it partition 0

	// The standby finishes partition 0 while the old owner sleeps (at
	// least minFrozen, far longer than the takeover grace of old).
	rows := waitTerminal(ctx, t, status, p0)
	t.Logf("partition 0's sagas finished %s after the freeze, by the standby", time.Since(frozenAt).Round(time.Millisecond))
	const minFrozen = 10 * time.Second
	time.Sleep(time.Until(frozenAt.Add(minFrozen)))

	c.signal("orchestrator-b", syscall.SIGCONT)
	t.Logf("orchestrator-b resumed (SIGCONT) after %s", time.Since(frozenAt).Round(time.Millisecond))
	final := waitTerminal(ctx, t, status, pids)
	for pid, r := range rows {
		if f := final[pid]; f.Seq != r.Seq || f.Status != r.Status {
			t.Errorf("%s changed after the old owner woke up: %s seq %d -> %s seq %d", pid, r.Status, r.Seq, f.Status, f.Seq)
		}
	}
	// Let the old owner do whatever it still does, then read everything.
	time.Sleep(3 * time.Second)
	checkStreams(ctx, t, b, pids)
	checkStatusRows(ctx, t, b, pids)
	checkOutcomes(t, c, pids, final)

	logs := func(name string) string {
		data, _ := os.ReadFile(filepath.Join(c.dir, name+".log"))
		return string(data)
	}
	if a := logs("orchestrator-a"); strings.Contains(a, "previous owner ended") {
		t.Logf("orchestrator-a ended the old owner's open transactions: %s", grepLine(a, "previous owner ended"))
	} else {
		t.Logf("orchestrator-a found no open transaction of the old owner to end")
	}
	for _, what := range []string{"fenced", "not committed", "restarting"} {
		if line := grepLine(logs("orchestrator-b"), what); line != "" {
			t.Logf("orchestrator-b after SIGCONT: %s", line)
		}
	}
}

func grepLine(s, sub string) string {
	for _, line := range strings.Split(s, "\n") {
		if strings.Contains(line, sub) {
			return line
		}
	}
	return ""
}

// signal sends sig to a running component.
func (c *cluster) signal(name string, sig syscall.Signal) {
	c.t.Helper()
	c.mu.Lock()
	p := c.procs[name]
	c.mu.Unlock()
	if p == nil {
		c.t.Fatalf("signal %s: not running", name)
	}
	if err := p.cmd.Process.Signal(sig); err != nil {
		c.t.Fatalf("signal %s: %v", name, err)
	}
}

// waitTerminal waits until every pid has a terminal status row.
func waitTerminal(ctx context.Context, t *testing.T, status *engine.StatusTable, pids []string) map[string]engine.StatusRecord {
	t.Helper()
	rows := map[string]engine.StatusRecord{}
	for len(rows) < len(pids) {
		if err := status.Refresh(ctx); err != nil {
			t.Fatal(err)
		}
		for _, pid := range pids {
			if r, ok := status.Get(pid); ok && r.Status.Terminal() {
				rows[pid] = r
			}
		}
		select {
		case <-ctx.Done():
			for _, pid := range pids {
				if _, ok := rows[pid]; !ok {
					r, _ := status.Get(pid)
					t.Errorf("%s did not finish: %+v", pid, r)
				}
			}
			t.FailNow()
		case <-time.After(100 * time.Millisecond):
		}
	}
	return rows
}

// readTopic reads every message of topic (all partitions) up to its end.
func readTopic(ctx context.Context, t *testing.T, b bus.Bus, topic string, each func(*bus.Message)) {
	t.Helper()
	// Opening a reader is a round trip to the broker bounded by the bus's
	// operation timeout; a loaded machine may miss it once: try again
	// within the test's time.
	rd, err := b.Reader(ctx, bus.ReaderOptions{Topic: topic})
	for err != nil && ctx.Err() == nil && (bus.Retryable(err) || errors.Is(err, context.DeadlineExceeded)) {
		t.Logf("open a reader on %s: %v; trying again", topic, err)
		time.Sleep(time.Second)
		rd, err = b.Reader(ctx, bus.ReaderOptions{Topic: topic})
	}
	if err != nil {
		t.Fatal(err)
	}
	defer rd.Close()
	for {
		more, err := rd.HasNext(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if !more {
			return
		}
		m, err := rd.Next(ctx)
		if err != nil {
			t.Fatal(err)
		}
		each(m)
	}
}

// checkStreams: each process's history records are numbered 1, 2, 3, …,
// each number once (two writers would fork the stream: a number twice, or
// a gap where one's records were lost).
func checkStreams(ctx context.Context, t *testing.T, b bus.Bus, pids []string) {
	t.Helper()
	want := map[string]bool{}
	for _, pid := range pids {
		want[pid] = true
	}
	for p := range 2 {
		seqs := map[string][]int64{}
		readTopic(ctx, t, b, b.Namespace().Partition(protocol.HistoryTopic, p), func(m *bus.Message) {
			e, err := engine.DecodeHistory(m.Payload)
			if err != nil || e == nil {
				t.Errorf("undecodable history entry at %v: %v", m.ID, err)
				return
			}
			for _, r := range e.Records {
				seqs[e.ProcessID] = append(seqs[e.ProcessID], r.Seq)
			}
		})
		for pid, s := range seqs {
			if !want[pid] {
				continue
			}
			delete(want, pid)
			for i, seq := range s {
				if seq != int64(i+1) {
					t.Errorf("%s: history record %d has seq %d (stream %v): two writers forked it", pid, i+1, seq, s)
					break
				}
			}
		}
	}
	for pid := range want {
		t.Errorf("%s has no history", pid)
	}
}

// checkStatusRows: along the status topic, a process's rows never go back
// (seq does not decrease) and nothing follows a terminal row but the same
// status.
func checkStatusRows(ctx context.Context, t *testing.T, b bus.Bus, pids []string) {
	t.Helper()
	last := map[string]*engine.StatusRecord{}
	readTopic(ctx, t, b, protocol.StatusTopic, func(m *bus.Message) {
		r, err := engine.DecodeStatus(m.Payload)
		if err != nil || r == nil {
			return // tombstone
		}
		if prev := last[r.ProcessID]; prev != nil {
			if r.Seq < prev.Seq {
				t.Errorf("%s: status went back from seq %d (%s) to %d (%s)", r.ProcessID, prev.Seq, prev.Status, r.Seq, r.Status)
			}
			if prev.Status.Terminal() && r.Status != prev.Status {
				t.Errorf("%s: status %s after the terminal %s", r.ProcessID, r.Status, prev.Status)
			}
		}
		last[r.ProcessID] = r
	})
	for _, pid := range pids {
		if last[pid] == nil {
			t.Errorf("%s has no status row on the topic", pid)
		}
	}
}

// checkOutcomes: every saga ended as its directive says; each step
// succeeded in one attempt and was compensated by one command at most
// (a command run twice must be a redelivery of that attempt).
func checkOutcomes(t *testing.T, c *cluster, pids []string, rows map[string]engine.StatusRecord) {
	t.Helper()
	calls := c.readCalls()
	for _, pid := range pids {
		want, steps := expect(pid[len("frozen-00-"):])
		if rows[pid].Status != want {
			t.Errorf("%s: status %s, want %s (%v %s)", pid, rows[pid].Status, want, rows[pid].Steps, rows[pid].LastError)
			continue
		}
		done, comps := successesByStep(calls, pid, func(c demo.Call) (string, bool) { return c.CommandID, true })
		for _, step := range steps {
			if len(done[step]) != 1 {
				t.Errorf("%s: step %s succeeded in %d attempts, want 1", pid, step, len(done[step]))
			}
			wantComp := 0
			if want == workflow.StatusCompensated && step != "notify" {
				wantComp = 1
			}
			if len(comps[step]) != wantComp {
				t.Errorf("%s: step %s compensated by %d commands, want %d", pid, step, len(comps[step]), wantComp)
			}
		}
		if len(done) != len(steps) {
			t.Errorf("%s: steps %v succeeded, want %v", pid, keys(done), steps)
		}
	}
}
