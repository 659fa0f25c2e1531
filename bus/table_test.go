package bus_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/pulsaga/pulsaga/bus"
	"github.com/pulsaga/pulsaga/bus/memory"
)

type row struct {
	Name string
	Seq  int
	Tags []string
}

// TestTable: the latest row of each key, tombstones deleting, stale rows
// dropped, what Get and Rows hand out copied, Put and Delete for the
// writer's own rows, Read catching up from where it stopped.
func TestTable(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	b := memory.New(memory.Options{})
	defer b.Close()
	p, err := b.Producer(ctx, bus.ProducerOptions{Topic: "rows"})
	if err != nil {
		t.Fatal(err)
	}
	send := func(key, payload string) {
		t.Helper()
		if _, err := p.Send(ctx, &bus.OutMessage{Key: key, Payload: []byte(payload)}); err != nil {
			t.Fatal(err)
		}
	}
	ensured := 0
	tbl := bus.NewTable(b, bus.TableOptions[row]{
		Topic:  "rows",
		Ensure: func(context.Context) error { ensured++; return nil },
		Decode: func(m *bus.Message) (string, row, bool) {
			// payload "name:seq:tag,tag"; anything else is not a row
			f := strings.Split(string(m.Payload), ":")
			if len(f) != 3 {
				return "", row{}, false
			}
			seq := len(f[1])
			return m.Key, row{Name: f[0], Seq: seq, Tags: strings.Split(f[2], ",")}, true
		},
		Stale: func(old, r row) bool { return old.Seq > r.Seq },
		Copy: func(r row) row {
			r.Tags = append([]string(nil), r.Tags...)
			return r
		},
	})
	defer tbl.Close()

	send("a", "alpha:x:t1")
	send("b", "beta:x:t1")
	send("c", "not a row")
	send("a", "alpha2:xx:t2")
	if err := tbl.Read(ctx); err != nil {
		t.Fatal(err)
	}
	// (a compacted read may see a key's latest message only: stale rows are
	// those read after the table has a newer one)
	send("b", "beta-stale::t0")
	if err := tbl.Read(ctx); err != nil {
		t.Fatal(err)
	}
	if r, ok := tbl.Get("a"); !ok || r.Name != "alpha2" {
		t.Fatalf("a = %+v, %v; want the latest row alpha2", r, ok)
	}
	if r, ok := tbl.Get("b"); !ok || r.Name != "beta" {
		t.Fatalf("b = %+v, %v; want beta (the stale row dropped)", r, ok)
	}
	if _, ok := tbl.Get("c"); ok {
		t.Fatal("a message that is not a row made one")
	}
	r, _ := tbl.Get("a")
	r.Tags[0] = "changed"
	if again, _ := tbl.Get("a"); again.Tags[0] != "t2" {
		t.Fatal("Get handed out the table's own memory")
	}
	if rows := tbl.Rows(); len(rows) != 2 {
		t.Fatalf("%d rows, want 2", len(rows))
	}

	send("a", "") // tombstone
	send("d", "delta:x:t1")
	if err := tbl.Read(ctx); err != nil {
		t.Fatal(err)
	}
	if _, ok := tbl.Get("a"); ok {
		t.Fatal("a tombstone did not delete its key")
	}
	if _, ok := tbl.Get("d"); !ok {
		t.Fatal("a row written after the first Read is missing after the second")
	}
	tbl.Put("e", row{Name: "mine"})
	tbl.Delete("d")
	if _, ok := tbl.Get("e"); !ok {
		t.Fatal("Put row missing")
	}
	if _, ok := tbl.Get("d"); ok {
		t.Fatal("Deleted row still there")
	}
	if ensured != 1 {
		t.Fatalf("Ensure ran %d times, want once (before the first read)", ensured)
	}
}
