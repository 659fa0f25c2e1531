package chaos

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"slices"
	"sort"
	"time"

	"github.com/pulsaga/pulsaga/bus"
	"github.com/pulsaga/pulsaga/engine"
	"github.com/pulsaga/pulsaga/workflow"
)

// check reads what the run left (statuses, the service's ledger, the
// event streams, the status topic, the dead-letter topics) and judges it.
func (r *run) check(ctx context.Context, status *statusWatch) (*Report, error) {
	rep := &Report{
		Config: r.cfg, Dir: r.cfg.Dir, Sagas: len(r.sagas), ByStatus: map[workflow.Status]int{},
		Wrong: map[string][]string{}, Unfinished: map[string]string{},
	}
	entries, err := ReadLedger(r.path("service", "ledger.jsonl"))
	if err != nil && !os.IsNotExist(err) {
		return nil, err
	}
	fx := EffectsOf(entries)
	for _, e := range entries {
		if e.Undo {
			if e.Noop {
				rep.NoopUndos++
			} else {
				rep.Undos++
			}
		} else {
			rep.Effects++
		}
	}
	perKey := map[string]int{}
	for _, e := range entries {
		perKey[e.Key]++
	}
	for _, n := range perKey {
		rep.MaxEffectsPerKey = max(rep.MaxEffectsPerKey, n)
	}
	rep.Replays, rep.Deliveries, rep.CallResults = readCalls(r.path("service", "calls.jsonl"))
	rep.ExtraAttempts = extraAttempts(r.sagas, r.path("service", "calls.jsonl"))
	r.mu.Lock()
	down := slices.Clone(r.brokerDown)
	r.mu.Unlock()
	rep.AnsweredWhileDown = answeredWhile(down, r.path("service", "calls.jsonl"))
	for _, s := range r.sagas {
		st, _ := status.status(s.ID)
		v := Judge(s, st, fx[s.ID])
		rep.ByStatus[st]++
		switch v.Status {
		case Right:
			rep.Right++
		case Wrong:
			rep.Wrong[s.ID] = v.Problems
		case Unfinished:
			rep.Unfinished[s.ID] = string(st)
		}
	}
	if err := r.checkStreams(ctx, rep); err != nil {
		return nil, err
	}
	if err := r.checkDeadLetters(ctx, rep); err != nil {
		return nil, err
	}
	r.mu.Lock()
	rep.BrokerKills, rep.BrokerDown = r.brokerKills, slices.Clone(r.brokerDown)
	for _, f := range r.freezes {
		rep.Freezes = append(rep.Freezes, Freeze{Name: f.name, For: f.until.Sub(f.at), Owned: f.owned})
	}
	kills, freezes := slices.Clone(r.kills), slices.Clone(r.freezes)
	r.mu.Unlock()
	if r.probe != nil {
		rep.TimersBefore, rep.TimersAgain, rep.TimersReplayed = r.probe.counts()
	}
	rep.Components = r.cluster.stats()
	rep.Takeovers, rep.TakeoverMisses = r.takeovers(kills, freezes, rep.historyTimes, rep.fenceTimes)
	if r.cfg.FreezeTakeover {
		rep.FrozenProgress = frozenProgress(freezes, rep.historyTimes)
		if len(freezes) == 0 {
			rep.FrozenProblems = append(rep.FrozenProblems, "no owner was frozen")
		}
		for _, f := range freezes {
			for _, p := range f.owned {
				if _, ok := rep.FrozenProgress[p]; !ok {
					rep.FrozenProblems = append(rep.FrozenProblems, fmt.Sprintf("partition %d made no progress while its owner %s was frozen for %s: nobody took it over", p, f.name, f.until.Sub(f.at).Round(time.Second)))
				}
			}
		}
	}
	rep.Elapsed = time.Since(r.t0)
	return rep, nil
}

// readCalls counts the service's deliveries and those it answered from
// its ledger (duplicates its idempotency absorbed).
func readCalls(path string) (replays, deliveries int, results map[string]int) {
	results = map[string]int{}
	eachCall(path, func(c Call) {
		results[c.Result]++
		if c.Result == "late" {
			return // the late answer of a lost delivery
		}
		deliveries++
		if c.Result == "replay" {
			replays++
		}
	})
	return replays, deliveries, results
}

// eachCall hands fn every call the service logged in path, in order,
// skipping a line cut by a kill -9; a missing log has no calls.
func eachCall(path string, fn func(Call)) {
	f, err := os.Open(path)
	if err != nil {
		return
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var c Call
		if json.Unmarshal(sc.Bytes(), &c) == nil {
			fn(c)
		}
	}
}

// extraAttempts lists the units whose service saw an attempt beyond what
// their scripts use (UnitExpect.Attempts): an attempt lost to a fault of
// the run (an outage, a kill whose redelivery came after the attempt's
// timeout) rather than to the script.
func extraAttempts(sagas []Saga, path string) []string {
	type unitKey struct {
		pid, unit string
		undo      bool
	}
	most := map[unitKey]int{}
	eachCall(path, func(c Call) {
		k := unitKey{c.ProcessID, c.Unit, c.Undo}
		most[k] = max(most[k], c.Attempt)
	})
	var out []string
	for _, s := range sagas {
		for u, ue := range s.Expect.Units {
			if n := most[unitKey{s.ID, u, false}]; n > ue.Attempts {
				out = append(out, fmt.Sprintf("%s %s: attempt %d delivered, its script uses %d", s.ID, u, n, ue.Attempts))
			}
			if n := most[unitKey{s.ID, u, true}]; n > ue.UndoAttempts {
				out = append(out, fmt.Sprintf("%s %s compensation: attempt %d delivered, its script uses %d", s.ID, u, n, ue.UndoAttempts))
			}
		}
	}
	sort.Strings(out)
	return out
}

// answeredWhile counts the attempts the service finished (answered, or
// failed) while the broker was away: their answers had to wait for it,
// past their attempts' timeouts when the outage was longer.
func answeredWhile(down []interval, path string) int {
	if len(down) == 0 {
		return 0
	}
	n := 0
	eachCall(path, func(c Call) {
		if c.Result == "lost" {
			return
		}
		for _, d := range down {
			if c.At.After(d.from) && c.At.Before(d.to) {
				n++
			}
		}
	})
	return n
}

// historyRecord is what the check needs of one event-stream record.
type historyRecord struct {
	seq     int64
	kind    string
	id      string // envelope or task id: what the record is of
	publish time.Time
}

// decodeHistory decodes a message of the history topic: the records one
// batch appended to one process's stream.
func decodeHistory(payload []byte) ([]engine.Record, bool) {
	e, err := engine.DecodeHistory(payload)
	if err != nil || e == nil || len(e.Records) == 0 {
		return nil, false
	}
	return e.Records, true
}

// decodeStatus decodes a row of the status topic (nil for a tombstone).
func decodeStatus(payload []byte) (*engine.StatusRecord, bool) {
	row, err := engine.DecodeStatus(payload)
	if err != nil || row == nil {
		return nil, false
	}
	return row, true
}

// readAll reads a topic (or partition) from its first message to its end.
func (r *run) readAll(ctx context.Context, topic string, each func(*bus.Message)) error {
	rd, err := r.bus.Reader(ctx, bus.ReaderOptions{Topic: topic})
	if err != nil {
		return fmt.Errorf("read %s: %w", topic, err)
	}
	defer rd.Close()
	for {
		more, err := rd.HasNext(ctx)
		if err != nil {
			return fmt.Errorf("read %s: %w", topic, err)
		}
		if !more {
			return nil
		}
		m, err := rd.Next(ctx)
		if err != nil {
			return fmt.Errorf("read %s: %w", topic, err)
		}
		each(m)
	}
}

// checkStreams reads every process's event stream and the status topic:
// each stream must be dense (1, 2, 3, ...) with one record per sequence
// number (two records with one number are two owners writing: a fork),
// and a process's status rows must never go back.
func (r *run) checkStreams(ctx context.Context, rep *Report) error {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	streams := map[string][]historyRecord{}
	rep.historyTimes = map[int][]time.Time{}
	rep.fenceTimes = map[int][]time.Time{}
	for p := range max(r.topics.Partitions, 1) {
		topic := r.topics.History
		if r.topics.Partitions > 0 {
			topic = r.ns.Partition(r.ns.Topic(r.topics.History), p)
		}
		err := r.readAll(ctx, topic, func(m *bus.Message) {
			if m.Key == engine.FenceKey {
				// A new owner's fence marker (written after fencing, before
				// its load): not a commit, but when the takeover fenced.
				rep.fenceTimes[p] = append(rep.fenceTimes[p], m.PublishTime)
				return
			}
			rep.historyTimes[p] = append(rep.historyTimes[p], m.PublishTime)
			recs, ok := decodeHistory(m.Payload)
			if !ok {
				rep.Undecodable++
				return
			}
			for _, rec := range recs {
				id := rec.EnvelopeID
				if id == "" {
					id = rec.TaskID
				}
				streams[rec.ProcessID] = append(streams[rec.ProcessID], historyRecord{seq: rec.Seq, kind: rec.Kind, id: id, publish: m.PublishTime})
			}
		})
		if err != nil {
			return err
		}
		slices.SortFunc(rep.historyTimes[p], func(a, b time.Time) int { return a.Compare(b) })
		slices.SortFunc(rep.fenceTimes[p], func(a, b time.Time) int { return a.Compare(b) })
	}
	for pid, recs := range streams {
		bySeq := map[int64][]historyRecord{}
		var top int64
		for _, rec := range recs {
			bySeq[rec.seq] = append(bySeq[rec.seq], rec)
			top = max(top, rec.seq)
		}
		rep.Records += len(recs)
		for seq := int64(1); seq <= top; seq++ {
			got := bySeq[seq]
			switch {
			case len(got) == 0:
				rep.addStream(pid, fmt.Sprintf("record %d is missing (stream goes to %d)", seq, top))
			case len(got) > 1:
				same := true
				for _, g := range got[1:] {
					same = same && g.kind == got[0].kind && g.id == got[0].id
				}
				what := "forked (two owners wrote it)"
				if same {
					what = "written twice"
				}
				rep.addStream(pid, fmt.Sprintf("record %d %s: %s", seq, what, mustJSON(describe(got))))
			}
		}
	}
	last := map[string]int64{}
	err := r.readAll(ctx, r.ns.Topic(r.topics.Status), func(m *bus.Message) {
		row, ok := decodeStatus(m.Payload)
		if !ok {
			return
		}
		rep.StatusRows++
		if prev, ok := last[row.ProcessID]; ok && row.Seq < prev {
			rep.addStream(row.ProcessID, fmt.Sprintf("status went back from seq %d to %d (%s)", prev, row.Seq, row.Status))
		}
		last[row.ProcessID] = max(last[row.ProcessID], row.Seq)
	})
	if err != nil {
		return err
	}
	for pid, seq := range last {
		recs := streams[pid]
		var top int64
		for _, rec := range recs {
			top = max(top, rec.seq)
		}
		if seq > top {
			rep.addStream(pid, fmt.Sprintf("status at seq %d but the stream ends at %d", seq, top))
		}
	}
	return nil
}

func describe(recs []historyRecord) []map[string]any {
	var out []map[string]any
	for _, r := range recs {
		out = append(out, map[string]any{"kind": r.kind, "of": r.id, "published": r.publish.Format(time.RFC3339Nano)})
	}
	return out
}

// checkDeadLetters reads every dead-letter topic of the namespace: the
// run sends nothing that should be dead-lettered.
func (r *run) checkDeadLetters(ctx context.Context, rep *Report) error {
	topics, err := r.bus.Topics(ctx)
	if err != nil {
		return fmt.Errorf("list topics: %w", err)
	}
	for _, t := range topics {
		if !bus.IsDeadLetterTopic(t) {
			continue
		}
		err := r.readAll(ctx, r.ns.Topic(t), func(m *bus.Message) {
			rep.DeadLetters = append(rep.DeadLetters, fmt.Sprintf("%s key %s: %s", t, m.Key, m.Properties[bus.PropDLQReason]))
		})
		if err != nil {
			return err
		}
	}
	sort.Strings(rep.DeadLetters)
	return nil
}

// frozenProgress is, for each partition of a frozen owner, the first
// commit on it while its owner was frozen (only another instance can have
// made it), as time since the freeze.
func frozenProgress(freezes []freezeEvent, times map[int][]time.Time) map[int]time.Duration {
	out := map[int]time.Duration{}
	for _, f := range freezes {
		for _, p := range f.owned {
			ts := times[p]
			i := sort.Search(len(ts), func(i int) bool { return ts[i].After(f.at) })
			if i < len(ts) && ts[i].Before(f.until) {
				out[p] = ts[i].Sub(f.at)
			}
		}
	}
	return out
}

// takeovers measures, for each orchestrator killed (or frozen) while it
// owned partitions with work going on (a commit in the 5s before), the
// time until the first commit on each of them afterwards: the new owner's
// first commit. Kills while the broker was away are left out. Each
// takeover also says when the broker named another active consumer
// (handover) and when that owner fenced the partition (its fence marker),
// so that a slow takeover shows where its time went.
func (r *run) takeovers(kills []killEvent, freezes []freezeEvent, times, fences map[int][]time.Time) (out []Takeover, misses []string) {
	type ev struct {
		at    time.Time
		name  string
		owned []int
		kind  string
	}
	var evs []ev
	for _, k := range kills {
		if k.kind == KindOrchestrator {
			evs = append(evs, ev{k.at, k.name, k.owned, "kill"})
		}
	}
	for _, f := range freezes {
		evs = append(evs, ev{f.at, f.name, f.owned, "freeze"})
	}
	r.mu.Lock()
	down := slices.Clone(r.brokerDown)
	owners := slices.Clone(r.owners)
	r.mu.Unlock()
	for _, e := range evs {
		for _, p := range e.owned {
			ts := times[p]
			i := sort.Search(len(ts), func(i int) bool { return ts[i].After(e.at) })
			active := i > 0 && e.at.Sub(ts[i-1]) <= 5*time.Second
			if !active {
				continue
			}
			if i == len(ts) {
				misses = append(misses, fmt.Sprintf("%s of %s at %s: partition %d had no commit after it", e.kind, e.name, e.at.Format("15:04:05.000"), p))
				continue
			}
			first := ts[i]
			overlaps := false
			for _, d := range down {
				if d.from.Before(first) && d.to.After(e.at.Add(-time.Second)) {
					overlaps = true
				}
			}
			if overlaps {
				continue
			}
			t := Takeover{Event: e.kind, Name: e.name, Partition: p, At: e.at, After: first.Sub(e.at)}
			t.NewOwner, t.Handover = handover(owners, e.name, p, e.at, first)
			if fs := fences[p]; len(fs) > 0 {
				j := sort.Search(len(fs), func(j int) bool { return fs[j].After(e.at) })
				if j < len(fs) && !fs[j].After(first) {
					t.Fenced = fs[j].Sub(e.at)
				}
			}
			out = append(out, t)
		}
	}
	slices.SortFunc(out, func(a, b Takeover) int {
		if c := a.At.Compare(b.At); c != 0 {
			return c
		}
		return a.Partition - b.Partition
	})
	return out, misses
}

// handover is the first owner the broker named for partition p after at
// (someone other than old, before the first commit `until`, give or take
// the 250ms between two looks) and how long after at it was seen.
func handover(owners []ownerSnapshot, old string, p int, at, until time.Time) (string, time.Duration) {
	i := sort.Search(len(owners), func(i int) bool { return owners[i].at.After(at) })
	gone := false // the old owner's consumer was seen gone
	for ; i < len(owners) && !owners[i].at.After(until.Add(time.Second)); i++ {
		switch o := owners[i].owners[p]; {
		case o == "":
			gone = true
		case o != old:
			return o, owners[i].at.Sub(at)
		case gone:
			// The killed instance, started again, took it back.
			return o + " (restarted)", owners[i].at.Sub(at)
		}
	}
	return "", 0
}
