package pulsarbus_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"syscall"
	"testing"
	"time"

	"github.com/apache/pulsar-client-go/pulsar"
	plog "github.com/apache/pulsar-client-go/pulsar/log"
	"github.com/rs/zerolog"

	"github.com/pulsaga/pulsaga/bus"
	"github.com/pulsaga/pulsaga/bus/pulsarbus"
	"github.com/pulsaga/pulsaga/internal/pulsartest"
)

// The test binary doubles as a consumer process that the tests kill with
// SIGKILL (kill -9) while it holds a message: with holderEnv set it runs
// holderMain instead of the tests. A consumer closed in-process (the other
// tests) says goodbye to the broker; a killed process does not, and its
// connection dies with it.
const holderEnv = "PULSAGA_PULSARBUS_HOLDER"

func TestMain(m *testing.M) {
	if spec := os.Getenv(holderEnv); spec != "" {
		os.Exit(holderMain(spec))
	}
	os.Exit(m.Run())
}

// holderSpec tells a holder process what to subscribe to and what to do
// with the message it receives.
type holderSpec struct {
	ServiceURL, AdminURL, Tenant, Namespace string
	Topic, Subscription                     string
	// Raw: a plain pulsar-client-go Shared consumer (to read the broker's
	// own redelivery count); else a pulsarbus consumer with Options.
	Raw     bool
	Options bus.SubscribeOptions
	// Die: kill itself (SIGKILL) as soon as it has the message, like a
	// command that crashes its worker.
	Die bool
	// Nack: nack the message after holding it this long (-1: at once),
	// like a worker releasing a command at shutdown; then wait to be
	// killed.
	Nack time.Duration
}

// holderMain subscribes, prints "ready", receives one message, prints
// "held <redelivery count> <payload>", then holds it until killed (or
// kills itself with Die).
func holderMain(raw string) int {
	var s holderSpec
	if err := json.Unmarshal([]byte(raw), &s); err != nil {
		fmt.Fprintln(os.Stderr, "holder spec:", err)
		return 2
	}
	ctx := context.Background()
	held := func(count int, payload []byte) {
		fmt.Printf("held %d %s\n", count, payload)
		if s.Die {
			_ = syscall.Kill(os.Getpid(), syscall.SIGKILL)
		}
		select {} // hold it until killed
	}
	if s.Raw {
		cl, err := pulsar.NewClient(pulsar.ClientOptions{URL: s.ServiceURL, Logger: plog.DefaultNopLogger()})
		if err != nil {
			fmt.Fprintln(os.Stderr, "client:", err)
			return 1
		}
		c, err := cl.Subscribe(pulsar.ConsumerOptions{
			Topic: bus.Namespace{Tenant: s.Tenant, Namespace: s.Namespace}.Topic(s.Topic), SubscriptionName: s.Subscription,
			Type: pulsar.Shared, SubscriptionInitialPosition: pulsar.SubscriptionPositionEarliest,
		})
		if err != nil {
			fmt.Fprintln(os.Stderr, "subscribe:", err)
			return 1
		}
		fmt.Println("ready")
		m, err := c.Receive(ctx)
		if err != nil {
			fmt.Fprintln(os.Stderr, "receive:", err)
			return 1
		}
		held(int(m.RedeliveryCount()), m.Payload())
	}
	b, err := pulsarbus.New(ctx, pulsarbus.Config{ServiceURL: s.ServiceURL, AdminURL: s.AdminURL,
		Namespace: bus.Namespace{Tenant: s.Tenant, Namespace: s.Namespace}}, zerolog.New(os.Stderr).Level(zerolog.WarnLevel))
	if err != nil {
		fmt.Fprintln(os.Stderr, "bus:", err)
		return 1
	}
	c, err := b.Subscribe(ctx, s.Options)
	if err != nil {
		fmt.Fprintln(os.Stderr, "subscribe:", err)
		return 1
	}
	fmt.Println("ready")
	m, err := c.Receive(ctx)
	if err != nil {
		fmt.Fprintln(os.Stderr, "receive:", err)
		return 1
	}
	if s.Nack != 0 {
		go func() {
			time.Sleep(max(s.Nack, 0))
			c.Nack(m, errors.New("released at shutdown"))
		}()
	}
	held(m.RedeliveryCount, m.Payload)
	return 0
}

// holder is a running holder process.
type holder struct {
	t     *testing.T
	cmd   *exec.Cmd
	lines chan string
	log   *bytes.Buffer
}

// startHolder runs a holder process and waits until it has subscribed.
func startHolder(t *testing.T, s holderSpec) *holder {
	t.Helper()
	raw, err := json.Marshal(s)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), holderEnv+"="+string(raw))
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	h := &holder{t: t, cmd: cmd, lines: make(chan string, 4), log: &bytes.Buffer{}}
	cmd.Stderr = h.log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(h.kill)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			h.lines <- sc.Text()
		}
		close(h.lines)
		_, _ = io.Copy(io.Discard, out)
	}()
	if l := h.next("ready", time.Minute); l != "ready" {
		t.Fatalf("holder process: %q; its stderr:\n%s", l, h.log)
	}
	return h
}

// next waits for the holder's next line ("" when it did not come in time
// or the process ended).
func (h *holder) next(what string, wait time.Duration) string {
	select {
	case l := <-h.lines:
		return l
	case <-time.After(wait):
		return ""
	}
}

// held waits until the holder has the message and returns the redelivery
// count it saw; ok is false when nothing came within wait.
func (h *holder) held(wait time.Duration) (count int, ok bool) {
	h.t.Helper()
	l := h.next("held", wait)
	if l == "" {
		return 0, false
	}
	if _, err := fmt.Sscanf(l, "held %d", &count); err != nil {
		h.t.Fatalf("holder said %q; its stderr:\n%s", l, h.log)
	}
	return count, true
}

// kill sends SIGKILL and reaps the process.
func (h *holder) kill() {
	if h.cmd.ProcessState != nil {
		return
	}
	_ = h.cmd.Process.Signal(syscall.SIGKILL)
	_ = h.cmd.Wait()
}

// bystander connects a consumer to topic's subscription "s" that never
// receives (a zero queue asks the broker for nothing): the subscription
// keeps a consumer while the holders die, as a service with other
// instances does (the broker forgets its redelivery counts when a
// subscription's last consumer leaves).
func bystander(t *testing.T, spec holderSpec) {
	t.Helper()
	cl, err := pulsar.NewClient(pulsar.ClientOptions{URL: spec.ServiceURL, Logger: plog.DefaultNopLogger()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	c, err := cl.Subscribe(pulsar.ConsumerOptions{Topic: bus.Namespace{Tenant: spec.Tenant, Namespace: spec.Namespace}.Topic(spec.Topic),
		SubscriptionName: spec.Subscription, Type: pulsar.Shared, EnableZeroQueueConsumer: true})
	if err != nil {
		t.Fatalf("bystander: %v", err)
	}
	t.Cleanup(c.Close)
}

func holderBase(t *testing.T, topic string) holderSpec {
	svc, adm := pulsartest.URLs(t)
	return holderSpec{ServiceURL: svc, AdminURL: adm, Tenant: "public", Namespace: "pulsarbus-test", Topic: topic, Subscription: "s"}
}

// TestKilledConsumerRedeliveryCount establishes what the broker does with
// the redelivery count of a message whose Shared consumer is killed (kill
// -9, no goodbye) while holding it: the chaos kit's long run dead-lettered
// held commands, and one hypothesis was that the broker's count rises on
// such deaths, which the crash window would not cover. It does not rise:
// the broker hands the message on with its count unchanged, whether
// another consumer is connected when the holder dies or the next one comes
// later. Nacks (and ack timeouts) are what raise it.
func TestKilledConsumerRedeliveryCount(t *testing.T) {
	t.Parallel()
	b := newBus(t)
	topic := topicName(t)
	base := holderBase(t, topic)
	base.Raw = true
	first := startHolder(t, base)
	bystander(t, base)
	p := mustProducer(t, b, bus.ProducerOptions{Topic: topic})
	if _, err := p.Send(ctxFor(t, time.Minute), &bus.OutMessage{Key: "k", Payload: []byte("held")}); err != nil {
		t.Fatal(err)
	}
	var counts []int
	h := first
	// Three holders killed in turn, the next one subscribing after the
	// death (only the bystander, which takes nothing, in between).
	for i := range 3 {
		n, ok := h.held(30 * time.Second)
		if !ok {
			t.Fatalf("holder %d never got the message; its stderr:\n%s", i+1, h.log)
		}
		counts = append(counts, n)
		time.Sleep(500 * time.Millisecond) // holding it for a while
		h.kill()
		h = startHolder(t, base)
	}
	// The fourth holder is killed while another consumer (this test's) is
	// connected to the subscription: the broker redelivers to it at once.
	n, ok := h.held(30 * time.Second)
	if !ok {
		t.Fatalf("holder 4 never got the message; its stderr:\n%s", h.log)
	}
	counts = append(counts, n)
	cl, err := pulsar.NewClient(pulsar.ClientOptions{URL: base.ServiceURL, Logger: plog.DefaultNopLogger()})
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	obs, err := cl.Subscribe(pulsar.ConsumerOptions{Topic: bus.Namespace{Tenant: base.Tenant, Namespace: base.Namespace}.Topic(topic),
		SubscriptionName: "s", Type: pulsar.Shared, NackRedeliveryDelay: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer obs.Close()
	time.Sleep(500 * time.Millisecond)
	h.kill()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	m, err := obs.Receive(ctx)
	if err != nil {
		t.Fatalf("the connected consumer did not get the message after the kill: %v", err)
	}
	counts = append(counts, int(m.RedeliveryCount()))
	// And a nack does raise it (the count is not simply always 0).
	obs.Nack(m)
	m, err = obs.Receive(ctx)
	if err != nil {
		t.Fatalf("no redelivery after the nack: %v", err)
	}
	afterNack := int(m.RedeliveryCount())
	_ = obs.Ack(m)
	t.Logf("broker redelivery count seen by each holder: %v; after a nack: %d", counts, afterNack)
	for i, n := range counts {
		if n != 0 {
			t.Errorf("delivery %d after %d kills: broker redelivery count %d, want 0 (unchanged by a consumer's death)", i+1, i, n)
		}
	}
	if afterNack != 1 {
		t.Errorf("after a nack the broker redelivery count is %d, want 1", afterNack)
	}
}

// TestCrashWindowKilledProcesses: the crash window with consumers that are
// real processes killed with SIGKILL while they hold the message.
//
//   - Innocent: a held message whose holders die alternately long after it
//     began (past the window) and at once (a neighbour's poison killing the
//     instance just after a restart handed it a burst of redeliveries — the
//     chaos kit's long run). Quick deaths outnumber MaxDeliveries, but none
//     follows another: each delivery that outlived the window cleared what
//     was charged before, so the message is never dead-lettered (it was,
//     before: the 5th delivery went to the dead-letter topic).
//   - Poison: a message that once ran past the window (its holder killed
//     then for another reason) and then kills every holder at once is
//     dead-lettered after MaxDeliveries consecutive quick deaths.
//   - LateNacks: holders that release the message after the window (a
//     worker's shutdown nack) raise the broker's redelivery count each
//     time; that count does not charge them either.
//   - QuickNacks: nacks within the window are charged: the MaxDeliveries-th
//     is dead-lettered with its cause.
func TestCrashWindowKilledProcesses(t *testing.T) {
	t.Parallel()
	const max = 2
	const window = 300 * time.Millisecond
	const slow = 5 * window // held that long, then killed
	type death string
	const (
		slowDeath  death = "slow"       // killed by the test long after it began
		quickDeath death = "quick"      // killed by the test as soon as it has it
		poisoned   death = "poisoned"   // kills itself as soon as it has it
		lateNack   death = "late nack"  // nacks it after the window (the broker's count rises), then killed
		quickNack  death = "quick nack" // nacks it at once, then killed
	)
	for _, tc := range []struct {
		name   string
		deaths []death
		// reason: the delivery after the deaths is dead-lettered with it
		// (""; delivered, with RedeliveryCount len(deaths)).
		reason string
	}{
		{"Innocent", []death{slowDeath, quickDeath, slowDeath, quickDeath, slowDeath, quickDeath, slowDeath, quickDeath}, ""},
		{"Poison", []death{slowDeath, poisoned, poisoned}, fmt.Sprintf("not acknowledged after %d deliveries", max)},
		// Each late nack raises the broker's redelivery count, which used
		// to charge them (dead-lettered at the 3rd delivery).
		{"LateNacks", []death{lateNack, lateNack, lateNack, lateNack}, ""},
		{"QuickNacks", []death{quickNack, quickNack}, "released at shutdown"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			b := newBus(t)
			topic := topicName(t)
			dlq := mustSubscribe(t, b, bus.SubscribeOptions{Topic: topic + "-s-DLQ", Subscription: "d", Type: bus.Exclusive})
			spec := holderBase(t, topic)
			spec.Options = bus.SubscribeOptions{Topic: topic, Subscription: "s", Type: bus.Shared, MaxDeliveries: max,
				CountDeliveriesDurably: true, LazyDeliveryRecords: true, CrashWindow: window, NackDelay: 50 * time.Millisecond}
			hold := func(how death) holderSpec {
				s := spec
				s.Die = how == poisoned
				switch how {
				case lateNack:
					s.Nack = 3 * window
				case quickNack:
					s.Nack = -1
				}
				return s
			}
			h := startHolder(t, hold(tc.deaths[0]))
			bystander(t, spec)
			p := mustProducer(t, b, bus.ProducerOptions{Topic: topic})
			if _, err := p.Send(ctxFor(t, time.Minute), &bus.OutMessage{Key: "k", Payload: []byte("m")}); err != nil {
				t.Fatal(err)
			}
			for i, how := range tc.deaths {
				if i > 0 {
					h = startHolder(t, hold(how))
				}
				n, ok := h.held(30 * time.Second)
				if !ok {
					t.Fatalf("delivery %d (after deaths %v) never came; the holder's stderr:\n%s", i+1, tc.deaths[:i], h.log)
				}
				if n != i {
					t.Fatalf("delivery %d: RedeliveryCount %d, want %d", i+1, n, i)
				}
				switch how {
				case slowDeath, lateNack, quickNack:
					time.Sleep(slow) // (a nack reaches the broker meanwhile)
					h.kill()
				case quickDeath:
					h.kill()
				case poisoned:
					_ = h.cmd.Wait()
				}
			}
			last := startHolder(t, spec)
			n, ok := last.held(5 * time.Second)
			dead := tc.reason != ""
			switch {
			case dead && ok:
				t.Fatalf("delivered again (RedeliveryCount %d) after deaths %v with MaxDeliveries %d", n, tc.deaths, max)
			case !dead && !ok:
				d := receive(t, dlq, "the dead letter")
				t.Fatalf("dead-lettered (%q) after deaths %v, no two quick ones in a row", d.Properties[bus.PropDLQReason], tc.deaths)
			case !dead && n != len(tc.deaths):
				t.Fatalf("last delivery: RedeliveryCount %d, want %d", n, len(tc.deaths))
			case dead:
				d := receive(t, dlq, "the dead letter")
				if r := d.Properties[bus.PropDLQReason]; r != tc.reason {
					t.Fatalf("dead letter reason %q, want %q", r, tc.reason)
				}
			default:
				quiet(t, dlq, "the dead-letter topic of a message delivered again")
			}
		})
	}
}
