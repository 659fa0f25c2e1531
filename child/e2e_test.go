package child_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/pulsaga/pulsaga/bus"
	"github.com/pulsaga/pulsaga/bus/memory"
	"github.com/pulsaga/pulsaga/child"
	"github.com/pulsaga/pulsaga/engine"
	"github.com/pulsaga/pulsaga/internal/pulsartest"
	"github.com/pulsaga/pulsaga/protocol"
	"github.com/pulsaga/pulsaga/worker"
	"github.com/pulsaga/pulsaga/workflow"
)

func testLogger(t testing.TB) zerolog.Logger {
	return zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.WarnLevel).With().Timestamp().Logger()
}

func TestChildSagasMemory(t *testing.T) {
	t.Parallel()
	b := memory.New(memory.Options{})
	t.Cleanup(func() { _ = b.Close() })
	childSagas(t, func(*testing.T) bus.Bus { return b })
}

func TestChildSagasPulsar(t *testing.T) {
	if testing.Short() {
		t.Skip("needs a Pulsar broker; run without -short (make test)")
	}
	t.Parallel()
	ns := pulsartest.Namespace("children")
	childSagas(t, func(t *testing.T) bus.Bus { return pulsartest.Bus(t, ns, testLogger(t)) })
}

// calls records what the services did, by process.
type calls struct {
	mu sync.Mutex
	m  map[string][]string
}

func (c *calls) add(pid, what string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.m[pid] = append(c.m[pid], what)
}

func (c *calls) of(pid string) string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return strings.Join(c.m[pid], " ")
}

func childSagas(t *testing.T, newBus func(*testing.T) bus.Bus) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	log := &calls{m: map[string][]string{}}
	hold := make(chan struct{})
	handler := func(name string, out func(j *worker.Job) (any, error)) worker.Handler {
		return func(ctx context.Context, j *worker.Job) (any, error) {
			log.add(j.ProcessID, name)
			return out(j)
		}
	}
	ok := func(v any) func(*worker.Job) (any, error) { return func(*worker.Job) (any, error) { return v, nil } }
	services := map[string]map[string]worker.Handler{
		"payments": {
			"Authorize": handler("Authorize", func(j *worker.Job) (any, error) {
				if strings.HasPrefix(j.ProcessID, "o-cancel") {
					<-hold
				}
				return map[string]string{"auth_id": "a-" + j.ProcessID}, nil
			}),
			"Capture":           handler("Capture", ok(map[string]string{"charge_id": "ch-1"})),
			"Refund":            handler("Refund", ok(nil)),
			"VoidAuthorization": handler("VoidAuthorization", ok(nil)),
		},
		"carriers": {
			"BookCarrier": handler("BookCarrier", func(j *worker.Job) (any, error) {
				var in struct{ Parcel string }
				_ = json.Unmarshal(j.Input, &in)
				if in.Parcel == "bad" {
					return nil, worker.NonRetryable("NoCarrier", errors.New("no carrier takes this parcel"))
				}
				return map[string]string{"booking": "b-" + in.Parcel}, nil
			}),
			"PrintLabel":    handler("PrintLabel", func(j *worker.Job) (any, error) { return map[string]string{"tracking": "T-" + j.ProcessID}, nil }),
			"CancelCarrier": handler("CancelCarrier", ok(nil)),
		},
		"notifications": {"NotifyCustomer": handler("NotifyCustomer", ok(nil))},
	}
	topics := protocol.DefaultTopics()
	topics.Partitions = 2
	b := newBus(t)
	stack, err := engine.StartStack(ctx, b, engine.StackOptions{Topics: topics, Services: services}, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	defer stack.Stop()
	for _, f := range []string{"charge-card", "ship-parcel", "shop-order"} {
		src, err := os.ReadFile("../testdata/" + f + ".yaml")
		if err != nil {
			t.Fatal(err)
		}
		if _, err := stack.Registry.Register(ctx, f+".yaml", src); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
	}
	// two engine services, as in two orchestrator binaries
	for _, name := range []string{"a", "b"} {
		sb := newBus(t)
		reg := engine.NewRegistry(sb, topics.Definitions, nil)
		defer reg.Close()
		svc := child.New(sb, child.Options{Name: name, Topics: topics, Registry: reg, Every: 100 * time.Millisecond}, testLogger(t))
		sctx, stop := context.WithCancel(ctx)
		done := make(chan error, 1)
		go func() { done <- svc.Run(sctx) }()
		defer func() {
			stop()
			if err := <-done; err != nil {
				t.Errorf("engine service: %v", err)
			}
		}()
	}
	start := func(pid string, parcels ...string) {
		t.Helper()
		in, _ := json.Marshal(map[string]any{"order_id": pid, "customer": "cy", "total": 30, "parcels": parcels})
		if err := stack.Client.Start(ctx, protocol.StartRequest{ProcessID: pid, Definition: "shop-order", Input: in}); err != nil {
			t.Fatal(err)
		}
	}
	status := func(pid string) (engine.StatusRecord, bool) {
		if err := stack.Status.Refresh(ctx); err != nil {
			t.Fatal(err)
		}
		return stack.Status.Get(pid)
	}
	waitStatus := func(pid string, want workflow.Status) engine.StatusRecord {
		t.Helper()
		for {
			row, ok := status(pid)
			if ok && row.Status == want {
				return row
			}
			if ctx.Err() != nil || (ok && row.Status.Terminal()) {
				t.Fatalf("%s is %s (%s), want %s; calls %q (%v)", pid, row.Status, row.LastError, want, log.of(pid), ctx.Err())
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	start("o-ok", "p1", "p2")
	start("o-comp", "p1", "bad")
	start("o-cancel", "p1")

	t.Run("children complete: their outputs are the steps' outputs", func(t *testing.T) {
		waitStatus("o-ok", workflow.StatusCompleted)
		for _, c := range []string{"o-ok:pay:1", "o-ok:ship.0:1", "o-ok:ship.1:1"} {
			waitStatus(c, workflow.StatusCompleted)
		}
		eq(t, "payment child", log.of("o-ok:pay:1"), "Authorize Capture")
		eq(t, "parcel child", log.of("o-ok:ship.1:1"), "BookCarrier PrintLabel")
		eq(t, "parent", log.of("o-ok"), "NotifyCustomer")
		view, err := engine.ReadProcess(ctx, b, topics, stack.Registry, waitStatus("o-ok", workflow.StatusCompleted))
		if err != nil {
			t.Fatal(err)
		}
		eq(t, "output", string(view.State.Output), `{"charge":"ch-1","tracking":["T-o-ok:ship.0:1","T-o-ok:ship.1:1"]}`)
	})
	t.Run("a failed child fails the step; completed children compensate themselves, dependents first", func(t *testing.T) {
		waitStatus("o-comp", workflow.StatusCompensated)
		waitStatus("o-comp:ship.1:1", workflow.StatusCompensated) // failed booking: nothing of its own to undo
		waitStatus("o-comp:ship.0:1", workflow.StatusCompensated)
		waitStatus("o-comp:pay:1", workflow.StatusCompensated)
		eq(t, "parcel child undone", log.of("o-comp:ship.0:1"), "BookCarrier PrintLabel CancelCarrier")
		eq(t, "payment child undone, refund first", log.of("o-comp:pay:1"), "Authorize Capture Refund VoidAuthorization")
		eq(t, "the parent itself ran nothing", log.of("o-comp"), "")
	})
	t.Run("cancel of the parent reaches the child", func(t *testing.T) {
		for {
			if _, ok := status("o-cancel:pay:1"); ok {
				break
			}
			time.Sleep(50 * time.Millisecond)
		}
		if err := stack.Client.Admin(ctx, protocol.AdminRequest{ProcessID: "o-cancel", Action: protocol.ActionCancel, Actor: "test"}, "cancel-1"); err != nil {
			t.Fatal(err)
		}
		waitStatus("o-cancel", workflow.StatusCompensating)
		close(hold) // the child's Authorize finishes, then the child compensates
		waitStatus("o-cancel:pay:1", workflow.StatusCompensated)
		waitStatus("o-cancel", workflow.StatusCompensated)
		eq(t, "the child undid its authorization", log.of("o-cancel:pay:1"), "Authorize VoidAuthorization")
	})
	var ids []string
	for _, r := range stack.Status.List() {
		ids = append(ids, fmt.Sprintf("%s=%s", r.ProcessID, r.Status))
	}
	sort.Strings(ids)
	t.Logf("processes: %s", strings.Join(ids, " "))
}

func eq[T comparable](t *testing.T, what string, got, want T) {
	t.Helper()
	if got != want {
		t.Fatalf("%s: got %v, want %v", what, got, want)
	}
}
