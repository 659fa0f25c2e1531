package bench

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// StartFunc starts one process through one of the engine's entrances.
type StartFunc func(ctx context.Context, pid string) error

// tracker matches the processes a load generator started with the rows a
// Watcher sees: the time from start to the wanted row, per process.
type tracker struct {
	mu       sync.Mutex
	sent     map[string]time.Time // started, not yet seen
	lat      []time.Duration      // of the processes seen inside the window (all, without a window)
	seenAt   []time.Time
	inWindow func(time.Time) bool
	done     atomic.Int64
	failed   atomic.Int64
	firstBad atomic.Pointer[Row]
	keepOn   bool           // a process that ends without completing is counted, not an error
	reasons  map[string]int // why processes did not complete: "<step>: <type>" of their last error
	release  chan struct{}  // a token per process seen (closed loop); nil for open loop
	last     atomic.Int64   // unix nanos of the last process seen
}

func newTracker(capacity int) *tracker {
	return &tracker{sent: make(map[string]time.Time, capacity), inWindow: func(time.Time) bool { return true }, reasons: map[string]int{}}
}

func (t *tracker) add(pid string, at time.Time) {
	t.mu.Lock()
	t.sent[pid] = at
	t.mu.Unlock()
}

// Seen is a Watcher's OnSeen for the processes of this load.
func (t *tracker) Seen(r Row, at time.Time) {
	t.mu.Lock()
	t0, ok := t.sent[r.ProcessID]
	if ok {
		delete(t.sent, r.ProcessID)
		if t.inWindow(at) && (r.Completed || !r.Terminal) {
			t.lat = append(t.lat, at.Sub(t0))
			t.seenAt = append(t.seenAt, at)
		}
	}
	t.mu.Unlock()
	if !ok {
		return
	}
	if r.Terminal && !r.Completed {
		t.failed.Add(1)
		rr := r
		t.firstBad.CompareAndSwap(nil, &rr)
		t.mu.Lock()
		t.reasons[reason(r)]++
		t.mu.Unlock()
	}
	t.done.Add(1)
	t.last.Store(at.UnixNano())
	if t.release != nil {
		select {
		case t.release <- struct{}{}:
		default:
		}
	}
}

func (t *tracker) pending() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.sent)
}

// result is the processes that did not complete and why.
func (t *tracker) result() (int, map[string]int) {
	t.mu.Lock()
	defer t.mu.Unlock()
	r := make(map[string]int, len(t.reasons))
	for k, v := range t.reasons {
		r[k] = v
	}
	return int(t.failed.Load()), r
}

// reason is why a process did not complete: its status and the step and
// error type of its last error.
func reason(r Row) string {
	parts := strings.SplitN(r.LastError, ": ", 3)
	if len(parts) == 3 {
		return r.Status + " (" + parts[0] + ": " + parts[1] + ")"
	}
	if r.LastError != "" {
		return r.Status + " (" + r.LastError + ")"
	}
	return r.Status
}

func (t *tracker) failure() error {
	if t.keepOn {
		return nil
	}
	if n := t.failed.Load(); n > 0 {
		return fmt.Errorf("%d processes did not complete, e.g. %+v", n, *t.firstBad.Load())
	}
	return nil
}

// LoopResult is what a load generator measured.
type LoopResult struct {
	Started   int             // start requests sent
	Done      int             // processes seen at their wanted row
	Window    time.Duration   // length of the measuring window
	InWindow  int             // processes seen inside the window
	Latencies []time.Duration // start (or scheduled arrival) → wanted row, of the processes seen inside the window
	First     time.Time       // first start request
	Last      time.Time       // last process seen
	Failed    int             // processes that ended without completing (KeepGoing)
	Reasons   map[string]int  // why, by status and the step and type of the last error
	SeenAt    []time.Time     // when each of Latencies was seen (same order)
}

// Why summarises Reasons.
func (r LoopResult) Why() string {
	var parts []string
	for k, n := range r.Reasons {
		parts = append(parts, fmt.Sprintf("%d %s", n, k))
	}
	sort.Strings(parts)
	return strings.Join(parts, ", ")
}

// Rate is the processes seen inside the window per second.
func (r LoopResult) Rate() float64 {
	if r.Window <= 0 {
		return 0
	}
	return float64(r.InWindow) / r.Window.Seconds()
}

// ClosedLoop keeps InFlight processes running: each one seen at its
// wanted row lets the next start. It first runs until Warmup processes
// have been seen, then measures over a window (OnWindow is called when the
// window opens and when it closes, to read counters) that lasts at least
// Window and until WindowCount processes were seen in it, then stops
// starting and returns without waiting for the processes in flight.
//
// Why a count as well as a time: processes started together move through
// the engine together, and a closed loop keeps them in step for many
// generations (they complete in waves one latency apart), so a window of
// fixed length shorter than a few latencies measures a crest or a trough.
// A window of at least one whole generation (WindowCount = InFlight)
// averages over the waves.
//
// With Total > 0 it stops after Total starts instead, waits until all are
// seen, and the window is the whole run.
type ClosedLoop struct {
	InFlight    int
	Senders     int // goroutines sending start requests (default min(InFlight, 64))
	Warmup      int
	Window      time.Duration
	WindowCount int // default InFlight
	Total       int
	Prefix      string // process ids are Prefix-<run>-<n>
	Start       StartFunc
	OnWindow    func(open bool) error
	Alive       func() error // checked every second; an error stops the run
	Drain       time.Duration
	// KeepGoing counts the processes that end without completing
	// (LoopResult.Failed) instead of stopping with an error; their latency
	// is left out.
	KeepGoing bool

	t *tracker
}

// Seen is the OnSeen of the Watcher this loop reads.
func (l *ClosedLoop) Seen(r Row, at time.Time) {
	if t := l.tracker(); t != nil {
		t.Seen(r, at)
	}
}

var trackers sync.Mutex

func (l *ClosedLoop) tracker() *tracker {
	trackers.Lock()
	defer trackers.Unlock()
	return l.t
}

// Run runs the loop.
func (l *ClosedLoop) Run(ctx context.Context) (LoopResult, error) {
	if l.InFlight <= 0 || l.Start == nil || (l.Window <= 0 && l.Total <= 0) {
		return LoopResult{}, errors.New("closed loop: InFlight, Start and a Window or a Total are required")
	}
	senders := l.Senders
	if senders <= 0 {
		senders = min(l.InFlight, 64)
	}
	if l.Drain <= 0 {
		l.Drain = 10 * time.Minute
	}
	t := newTracker(l.InFlight)
	t.keepOn = l.KeepGoing
	t.release = make(chan struct{}, l.InFlight)
	var winOpen, winClose atomic.Int64
	t.inWindow = func(at time.Time) bool {
		o, c := winOpen.Load(), winClose.Load()
		return o != 0 && at.UnixNano() >= o && (c == 0 || at.UnixNano() < c)
	}
	if l.Window <= 0 {
		winOpen.Store(1) // the whole run
	}
	trackers.Lock()
	l.t = t
	trackers.Unlock()

	run := time.Now().UnixNano()
	tokens := make(chan struct{}, l.InFlight)
	for range l.InFlight {
		tokens <- struct{}{}
	}
	sctx, stopSending := context.WithCancel(ctx)
	defer stopSending()
	var next, started atomic.Int64
	var first atomic.Int64
	errc := make(chan error, senders+1)
	var wg sync.WaitGroup
	for range senders {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-sctx.Done():
					return
				case <-tokens:
				}
				n := next.Add(1)
				if l.Total > 0 && n > int64(l.Total) {
					return
				}
				pid := fmt.Sprintf("%s-%d-%d", l.Prefix, run, n)
				now := time.Now()
				first.CompareAndSwap(0, now.UnixNano())
				t.add(pid, now)
				if err := l.Start(sctx, pid); err != nil {
					if sctx.Err() == nil {
						errc <- fmt.Errorf("start %s: %w", pid, err)
					}
					return
				}
				started.Add(1)
			}
		}()
	}
	// Tokens come back as processes are seen.
	go func() {
		for {
			select {
			case <-sctx.Done():
				return
			case <-t.release:
				select {
				case tokens <- struct{}{}:
				case <-sctx.Done():
					return
				}
			}
		}
	}()

	res := LoopResult{}
	fail := func(err error) (LoopResult, error) {
		stopSending()
		wg.Wait()
		return res, err
	}
	check := func() error {
		select {
		case err := <-errc:
			return err
		default:
		}
		if err := t.failure(); err != nil {
			return err
		}
		if l.Alive != nil {
			return l.Alive()
		}
		return nil
	}
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	lastCheck := time.Now()
	wait := func(until func() bool, what string, limit time.Duration) error {
		deadline := time.Now().Add(limit)
		for !until() {
			select {
			case <-ctx.Done():
				return fmt.Errorf("%s: %w (%d started, %d seen)", what, ctx.Err(), started.Load(), t.done.Load())
			case <-tick.C:
			}
			if time.Since(lastCheck) >= time.Second {
				lastCheck = time.Now()
				if err := check(); err != nil {
					return err
				}
				if time.Now().After(deadline) {
					return fmt.Errorf("%s: not within %s (%d started, %d seen)", what, limit, started.Load(), t.done.Load())
				}
			}
		}
		return check()
	}
	if l.Window > 0 {
		warm := int64(l.Warmup)
		if err := wait(func() bool { return t.done.Load() >= warm }, "warm-up", l.Drain); err != nil {
			return fail(err)
		}
		if l.OnWindow != nil {
			if err := l.OnWindow(true); err != nil {
				return fail(err)
			}
		}
		open := time.Now()
		winOpen.Store(open.UnixNano())
		end := open.Add(l.Window)
		count := int64(l.WindowCount)
		if count <= 0 {
			count = int64(l.InFlight)
		}
		done0 := t.done.Load()
		if err := wait(func() bool { return !time.Now().Before(end) && t.done.Load()-done0 >= count }, "window", l.Window+l.Drain); err != nil {
			return fail(err)
		}
		winClose.Store(time.Now().UnixNano())
		res.Window = time.Since(open)
		if l.OnWindow != nil {
			if err := l.OnWindow(false); err != nil {
				return fail(err)
			}
		}
		stopSending()
		wg.Wait()
		t.mu.Lock()
		res.Latencies = t.lat
		res.SeenAt = t.seenAt
		res.InWindow = len(t.lat)
		t.mu.Unlock()
		res.Started, res.Done = int(started.Load()), int(t.done.Load())
		res.First, res.Last = time.Unix(0, first.Load()), time.Unix(0, t.last.Load())
		res.Failed, res.Reasons = t.result()
		return res, nil
	} else {
		total := int64(l.Total)
		if err := wait(func() bool { return started.Load()+int64(len(errc)) >= total || sctx.Err() != nil }, "sending", l.Drain); err != nil {
			return fail(err)
		}
		stopSending() // senders waiting for a token that will not come
		wg.Wait()
	}
	n := started.Load()
	if err := wait(func() bool { return t.done.Load() >= n }, "drain", l.Drain); err != nil {
		return fail(err)
	}
	t.mu.Lock()
	res.Latencies = t.lat
	res.SeenAt = t.seenAt
	res.InWindow = len(t.lat)
	t.mu.Unlock()
	res.Started, res.Done = int(n), int(t.done.Load())
	res.First, res.Last = time.Unix(0, first.Load()), time.Unix(0, t.last.Load())
	res.Window = res.Last.Sub(res.First)
	res.Failed, res.Reasons = t.result()
	return res, nil
}

// OpenLoop starts processes at Rate per second for Duration, whether or
// not earlier ones are done (arrivals of a Poisson process, seeded), and
// measures the latency of each from its scheduled arrival, not from when
// its request was sent, so a slow entrance cannot hide the queue it
// causes (no coordinated omission).
type OpenLoop struct {
	Rate     float64
	Duration time.Duration
	Senders  int // goroutines sending start requests (default 128)
	Prefix   string
	Seed     uint64
	Start    StartFunc
	Alive    func() error
	Drain    time.Duration // how long to wait for the last processes after the last arrival
	// KeepGoing, see ClosedLoop.
	KeepGoing bool

	t *tracker
}

// Seen is the OnSeen of the Watcher this loop reads.
func (l *OpenLoop) Seen(r Row, at time.Time) {
	trackers.Lock()
	t := l.t
	trackers.Unlock()
	if t != nil {
		t.Seen(r, at)
	}
}

type arrival struct {
	pid string
	at  time.Time
}

// Run runs the load.
func (l *OpenLoop) Run(ctx context.Context) (LoopResult, error) {
	if l.Rate <= 0 || l.Duration <= 0 || l.Start == nil {
		return LoopResult{}, errors.New("open loop: Rate, Duration and Start are required")
	}
	if l.Senders <= 0 {
		l.Senders = 128
	}
	if l.Drain <= 0 {
		l.Drain = 10 * time.Minute
	}
	expect := int(l.Rate*l.Duration.Seconds()) + 1
	t := newTracker(expect)
	t.keepOn = l.KeepGoing
	trackers.Lock()
	l.t = t
	trackers.Unlock()
	rng := rand.New(rand.NewPCG(l.Seed, 0x9e3779b97f4a7c15))
	run := time.Now().UnixNano()
	arrivals := make(chan arrival, expect*2)
	sctx, stopSending := context.WithCancel(ctx)
	defer stopSending()
	errc := make(chan error, l.Senders)
	var sent atomic.Int64
	var wg sync.WaitGroup
	for range l.Senders {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for a := range arrivals {
				if err := l.Start(sctx, a.pid); err != nil {
					if sctx.Err() == nil {
						select {
						case errc <- fmt.Errorf("start %s: %w", a.pid, err):
						default:
						}
					}
					stopSending()
					return
				}
				sent.Add(1)
			}
		}()
	}
	begin := time.Now()
	end := begin.Add(l.Duration)
	next := begin
	n := 0
	var schedErr error
schedule:
	for {
		now := time.Now()
		for !next.After(now) && next.Before(end) {
			n++
			pid := fmt.Sprintf("%s-%d-%d", l.Prefix, run, n)
			t.add(pid, next)
			select {
			case arrivals <- arrival{pid, next}:
			default:
				schedErr = fmt.Errorf("open loop: %d arrivals waiting for a sender; the load generator cannot keep up at %.0f/s", len(arrivals), l.Rate)
				break schedule
			}
			next = next.Add(time.Duration(rng.ExpFloat64() / l.Rate * float64(time.Second)))
		}
		if !next.Before(end) {
			break
		}
		select {
		case <-sctx.Done():
			break schedule
		case <-time.After(time.Until(next)):
		}
	}
	close(arrivals)
	wg.Wait()
	res := LoopResult{Started: int(sent.Load()), First: begin}
	if schedErr != nil {
		return res, schedErr
	}
	select {
	case err := <-errc:
		return res, err
	default:
	}
	if err := ctx.Err(); err != nil {
		return res, err
	}
	deadline := time.Now().Add(l.Drain)
	for t.done.Load() < int64(n) {
		if err := t.failure(); err != nil {
			return res, err
		}
		if l.Alive != nil {
			if err := l.Alive(); err != nil {
				return res, err
			}
		}
		if time.Now().After(deadline) {
			return res, fmt.Errorf("open loop at %.0f/s: %d of %d processes seen %s after the last arrival", l.Rate, t.done.Load(), n, l.Drain)
		}
		select {
		case <-ctx.Done():
			return res, ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
	if err := t.failure(); err != nil {
		return res, err
	}
	t.mu.Lock()
	res.Latencies = t.lat
	res.SeenAt = t.seenAt
	t.mu.Unlock()
	res.Done, res.InWindow = int(t.done.Load()), len(res.Latencies)
	res.Last = time.Unix(0, t.last.Load())
	res.Window = res.Last.Sub(begin)
	res.Failed, res.Reasons = t.result()
	return res, nil
}

// Burst sends N start requests through an entrance as fast as it takes
// them: Senders goroutines each sending batches of up to Batch process ids
// (StartBatch; Batch 1 for entrances that take one request at a time), and
// waits until every process has been seen. Its window is the first request
// to the last process seen.
type Burst struct {
	N, Batch, Senders int
	Prefix            string
	StartBatch        func(ctx context.Context, pids []string) error
	Alive             func() error
	Drain             time.Duration // how long to wait for the processes after the last request

	t *tracker
}

// Seen is the OnSeen of the Watcher this burst reads.
func (l *Burst) Seen(r Row, at time.Time) {
	trackers.Lock()
	t := l.t
	trackers.Unlock()
	if t != nil {
		t.Seen(r, at)
	}
}

// Run sends the burst.
func (l *Burst) Run(ctx context.Context) (LoopResult, error) {
	if l.N <= 0 || l.StartBatch == nil {
		return LoopResult{}, errors.New("burst: N and StartBatch are required")
	}
	batch, senders := max(l.Batch, 1), max(l.Senders, 1)
	if l.Drain <= 0 {
		l.Drain = 10 * time.Minute
	}
	t := newTracker(l.N)
	trackers.Lock()
	l.t = t
	trackers.Unlock()
	run := time.Now().UnixNano()
	var batches [][]string
	for i := 0; i < l.N; i += batch {
		var b []string
		for j := i; j < min(i+batch, l.N); j++ {
			b = append(b, fmt.Sprintf("%s-%d-%d", l.Prefix, run, j))
		}
		batches = append(batches, b)
	}
	work := make(chan []string, len(batches))
	for _, b := range batches {
		work <- b
	}
	close(work)
	sctx, stop := context.WithCancel(ctx)
	defer stop()
	errc := make(chan error, senders)
	var wg sync.WaitGroup
	first := time.Now()
	for range senders {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for b := range work {
				now := time.Now()
				for _, pid := range b {
					t.add(pid, now)
				}
				if err := l.StartBatch(sctx, b); err != nil {
					errc <- fmt.Errorf("start %s…: %w", b[0], err)
					stop()
					return
				}
			}
		}()
	}
	wg.Wait()
	res := LoopResult{Started: l.N, First: first}
	select {
	case err := <-errc:
		return res, err
	default:
	}
	deadline := time.Now().Add(l.Drain)
	for t.done.Load() < int64(l.N) {
		if err := t.failure(); err != nil {
			return res, err
		}
		if l.Alive != nil {
			if err := l.Alive(); err != nil {
				return res, err
			}
		}
		if time.Now().After(deadline) {
			return res, fmt.Errorf("burst: %d of %d processes seen %s after the last request", t.done.Load(), l.N, l.Drain)
		}
		select {
		case <-ctx.Done():
			return res, ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
	t.mu.Lock()
	res.Latencies = t.lat
	res.SeenAt = t.seenAt
	t.mu.Unlock()
	res.Done, res.InWindow = int(t.done.Load()), len(res.Latencies)
	res.Last = time.Unix(0, t.last.Load())
	res.Window = res.Last.Sub(first)
	return res, nil
}
