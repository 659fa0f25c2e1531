package chaos

import (
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
)

// TestLedgerSharedByInstances: instances with their own handles (as
// processes have) do overlapping keys at once; each key gets one effect,
// and every instance answers a key with the effect recorded first.
func TestLedgerSharedByInstances(t *testing.T) {
	path := filepath.Join(t.TempDir(), "ledger.jsonl")
	const instances, keys = 4, 200
	var wg sync.WaitGroup
	fresh := make([]int, instances)
	answers := make([]map[string]string, instances)
	for i := range instances {
		l, err := OpenLedger(path, false)
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		answers[i] = map[string]string{}
		wg.Add(1)
		go func() {
			defer wg.Done()
			for k := range keys {
				key := fmt.Sprintf("p%d/step", k)
				e, isNew, err := l.Do(Entry{Key: key, Unit: key, ProcessID: fmt.Sprintf("p%d", k), Step: "step", Instance: fmt.Sprint(i)})
				if err != nil {
					t.Error(err)
					return
				}
				if isNew {
					fresh[i]++
				}
				answers[i][key] = e.Instance
			}
		}()
	}
	wg.Wait()
	total := 0
	for _, n := range fresh {
		total += n
	}
	if total != keys {
		t.Errorf("%d effects done for %d keys", total, keys)
	}
	entries, err := ReadLedger(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != keys {
		t.Errorf("ledger has %d lines for %d keys", len(entries), keys)
	}
	for k := range keys {
		key := fmt.Sprintf("p%d/step", k)
		for i := 1; i < instances; i++ {
			if answers[i][key] != answers[0][key] {
				t.Errorf("%s: instance %d was answered with the effect of %s, instance 0 with %s", key, i, answers[i][key], answers[0][key])
			}
		}
	}
}

// TestLedgerTornLine: a line left half written by an instance killed
// mid-write is cut by the next writer and never read as an effect.
func TestLedgerTornLine(t *testing.T) {
	path := filepath.Join(t.TempDir(), "ledger.jsonl")
	l, err := OpenLedger(path, true)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if _, _, err := l.Do(Entry{Key: "a", Unit: "p/a", ProcessID: "p", Step: "a"}); err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteString(`{"key":"b","unit":"p/b","pro`); err != nil {
		t.Fatal(err)
	}
	f.Close()
	if got, err := ReadLedger(path); err != nil || len(got) != 1 {
		t.Fatalf("ReadLedger with a torn line = %d entries, %v; want 1", len(got), err)
	}
	other, err := OpenLedger(path, true)
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	if _, isNew, err := other.Do(Entry{Key: "b", Unit: "p/b", ProcessID: "p", Step: "b"}); err != nil || !isNew {
		t.Fatalf("Do(b) after a torn line = new %v, %v; want a new effect", isNew, err)
	}
	got, err := ReadLedger(path)
	if err != nil || len(got) != 2 || got[1].Key != "b" {
		t.Fatalf("ledger after the cut: %+v, %v", got, err)
	}
	// The first handle catches up past the cut.
	if _, ok, err := l.Get("b"); err != nil || !ok {
		t.Errorf("Get(b) from another handle = %v, %v", ok, err)
	}
}

func TestUndoOfNothingIsANoop(t *testing.T) {
	l, err := OpenLedger(filepath.Join(t.TempDir(), "ledger.jsonl"), false)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	e, _, err := l.Do(Entry{Key: "p/a/compensate", Unit: "p/a", Undo: true, ProcessID: "p", Step: "a"})
	if err != nil || !e.Noop {
		t.Errorf("undo of a unit without effect: noop %v, %v", e.Noop, err)
	}
	if _, _, err := l.Do(Entry{Key: "p/b", Unit: "p/b", ProcessID: "p", Step: "b"}); err != nil {
		t.Fatal(err)
	}
	e, _, err = l.Do(Entry{Key: "p/b/compensate", Unit: "p/b", Undo: true, ProcessID: "p", Step: "b"})
	if err != nil || e.Noop {
		t.Errorf("undo of a unit with an effect: noop %v, %v", e.Noop, err)
	}
}
