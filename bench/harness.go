// Package bench measures pulsaga end to end on a real Pulsar broker: the
// figures of DESIGN.md §7 (completed sagas per second, end-to-end latency,
// Pulsar messages per saga, memory per waiting process, restart time with
// many live processes, timer lateness). The benchmarks are in the _test
// files and run with `make bench`, next to the raw-Pulsar baseline of
// bus/pulsarbus; bench/report turns the output into medians and ratios.
//
// This file holds the helpers: a watcher of the status topic (when each
// process reached a status, as a client sees it), the namespace's message
// counters from the admin API, and percentiles.
package bench

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/pulsaga/pulsaga/bus"
)

// Watcher reads the status topic from its start (or its end) and records,
// for every process, when this client first saw a row matching its
// predicate, so waiting for a process costs no polling and the time is
// what a client observes.
type Watcher struct {
	mu      sync.Mutex
	rows    map[string]Row
	seen    map[string]time.Time // first time a row matched the wanted predicate
	want    func(Row) bool
	onSeen  func(r Row, at time.Time)
	waiters map[string][]chan struct{}
	count   int
	countCh chan struct{}
	cancel  context.CancelFunc
	done    chan struct{}
	err     error
}

// Terminal says whether a row is a finished process.
func Terminal(r Row) bool { return r.Terminal }

// Any matches every row: the process exists.
func Any(Row) bool { return true }

// StepIs says whether a row shows a step with that status.
func StepIs(step, st string) func(Row) bool {
	return func(r Row) bool { return r.Steps[step] == st }
}

// WatchOptions say what a Watcher reads and wants.
type WatchOptions struct {
	// Want says which rows count as "reached" (e.g. Terminal).
	Want func(Row) bool
	// Latest reads from the topic's end: rows written before are not read.
	Latest bool
	// OnSeen, when set, is called once per process when its wanted row is
	// first seen, from the reader's goroutine (it must not block).
	OnSeen func(r Row, at time.Time)
	// KeepRows keeps each process's latest row (Row, Statuses); off, only
	// the time the wanted row was seen is kept (less memory for 100,000
	// processes).
	KeepRows bool
}

// Watch starts reading the status topic of b.
func Watch(ctx context.Context, b bus.Bus, opts WatchOptions) (*Watcher, error) {
	rd, err := b.Reader(ctx, bus.ReaderOptions{Topic: StatusTopic(), StartLatest: opts.Latest})
	if err != nil {
		return nil, fmt.Errorf("status reader: %w", err)
	}
	rctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	w := &Watcher{
		seen: map[string]time.Time{}, want: opts.Want, onSeen: opts.OnSeen,
		waiters: map[string][]chan struct{}{}, countCh: make(chan struct{}, 1), cancel: cancel, done: make(chan struct{}),
	}
	if opts.KeepRows {
		w.rows = map[string]Row{}
	}
	go func() {
		defer close(w.done)
		defer rd.Close()
		for {
			m, err := rd.Next(rctx)
			if err != nil {
				if rctx.Err() == nil {
					w.mu.Lock()
					w.err = err
					w.mu.Unlock()
				}
				return
			}
			now := time.Now()
			r, ok := decodeStatus(m)
			if !ok {
				continue
			}
			w.mu.Lock()
			if w.rows != nil {
				if old, ok := w.rows[r.ProcessID]; !ok || old.Seq <= r.Seq {
					w.rows[r.ProcessID] = r
				}
			}
			if _, ok := w.seen[r.ProcessID]; !ok && w.want(r) {
				w.seen[r.ProcessID] = now
				w.count++
				for _, c := range w.waiters[r.ProcessID] {
					close(c)
				}
				delete(w.waiters, r.ProcessID)
				select {
				case w.countCh <- struct{}{}:
				default:
				}
				if w.onSeen != nil {
					w.onSeen(r, now)
				}
			}
			w.mu.Unlock()
		}
	}()
	return w, nil
}

// Close stops the reader.
func (w *Watcher) Close() {
	w.cancel()
	<-w.done
}

// Seen returns when pid's wanted row was first seen.
func (w *Watcher) Seen(pid string) (time.Time, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	t, ok := w.seen[pid]
	return t, ok
}

// Count is the number of processes whose wanted row was seen.
func (w *Watcher) Count() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.count
}

// Row returns the latest row of pid (KeepRows).
func (w *Watcher) Row(pid string) Row {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.rows[pid]
}

// Wait waits until pid's wanted row is seen and returns when it was.
func (w *Watcher) Wait(ctx context.Context, pid string) (time.Time, error) {
	w.mu.Lock()
	if t, ok := w.seen[pid]; ok {
		w.mu.Unlock()
		return t, nil
	}
	c := make(chan struct{})
	w.waiters[pid] = append(w.waiters[pid], c)
	w.mu.Unlock()
	select {
	case <-c:
		t, _ := w.Seen(pid)
		return t, nil
	case <-ctx.Done():
		return time.Time{}, fmt.Errorf("process %s: %w (last row %+v, reader error %v)", pid, ctx.Err(), w.Row(pid), w.readErr())
	}
}

// WaitCount waits until n processes have reached the wanted row; alive,
// when set, is checked every second (an engine process that died is not
// waited for).
func (w *Watcher) WaitCount(ctx context.Context, n int, alive func() error) error {
	for {
		w.mu.Lock()
		c := w.count
		w.mu.Unlock()
		if c >= n {
			return nil
		}
		if alive != nil {
			if err := alive(); err != nil {
				return err
			}
		}
		select {
		case <-w.countCh:
		case <-time.After(time.Second):
		case <-ctx.Done():
			return fmt.Errorf("%d of %d processes reached the wanted status: %w (reader error %v)", c, n, ctx.Err(), w.readErr())
		}
	}
}

func (w *Watcher) readErr() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.err
}

// Statuses counts the latest rows by status (KeepRows).
func (w *Watcher) Statuses() map[string]int {
	w.mu.Lock()
	defer w.mu.Unlock()
	out := map[string]int{}
	for _, r := range w.rows {
		out[r.Status]++
	}
	return out
}

// TopicCount is the messages written to one topic (partitions summed).
type TopicCount struct {
	Topic    string
	Messages int64 // written (msgInCounter)
	Bytes    int64 // written (bytesInCounter)
	Out      int64 // delivered to subscriptions (msgOutCounter)
	// Entries is the broker entries added (internal stats'
	// entriesAddedCounter, since the topic was loaded): a batch of
	// messages is one entry, and the broker's cost follows entries more
	// than messages.
	Entries int64
}

// MessagesIn sums the admin API's msgInCounter (messages written, including
// those of aborted transactions) and the entries added (internal stats)
// over every persistent topic of the namespace, partitions summed into
// their topic; system topics (names starting with "__") are left out.
func MessagesIn(ctx context.Context, adminURL string, ns bus.Namespace) (total int64, by []TopicCount, err error) {
	base := strings.TrimSuffix(adminURL, "/") + "/admin/v2/persistent/" + url.PathEscape(ns.Tenant) + "/" + url.PathEscape(ns.Namespace)
	var topics []string
	if err := getJSON(ctx, base, &topics); err != nil {
		return 0, nil, fmt.Errorf("list topics of %s: %w", ns, err)
	}
	sums := map[string]*TopicCount{}
	for _, full := range topics {
		name := full[strings.LastIndex(full, "/")+1:]
		if strings.HasPrefix(name, "__") {
			continue
		}
		var st struct {
			MsgInCounter   int64 `json:"msgInCounter"`
			BytesInCounter int64 `json:"bytesInCounter"`
			MsgOutCounter  int64 `json:"msgOutCounter"`
		}
		if err := getJSON(ctx, base+"/"+url.PathEscape(name)+"/stats", &st); err != nil {
			return 0, nil, fmt.Errorf("stats of %s: %w", full, err)
		}
		var ist struct {
			EntriesAddedCounter int64 `json:"entriesAddedCounter"`
		}
		if err := getJSON(ctx, base+"/"+url.PathEscape(name)+"/internalStats", &ist); err != nil {
			return 0, nil, fmt.Errorf("internal stats of %s: %w", full, err)
		}
		short := name
		if i := strings.LastIndex(name, "-partition-"); i > 0 {
			short = name[:i]
		}
		c := sums[short]
		if c == nil {
			c = &TopicCount{Topic: short}
			sums[short] = c
		}
		c.Messages += st.MsgInCounter
		c.Bytes += st.BytesInCounter
		c.Out += st.MsgOutCounter
		c.Entries += ist.EntriesAddedCounter
		total += st.MsgInCounter
	}
	for _, c := range sums {
		by = append(by, *c)
	}
	sort.Slice(by, func(i, j int) bool { return by[i].Messages > by[j].Messages })
	return total, by, nil
}

// UnloadTopics unloads every topic of the namespace (partitioned ones
// whole). A compacted topic whose last compaction failed cannot be
// deleted until it is unloaded (Pulsar 4.0.7 answers 422 and logs "Last
// compaction task failed … Error deleting topic", every time).
func UnloadTopics(ctx context.Context, adminURL string, ns bus.Namespace) error {
	base := strings.TrimSuffix(adminURL, "/") + "/admin/v2/persistent/" + url.PathEscape(ns.Tenant) + "/" + url.PathEscape(ns.Namespace)
	var parts, topics []string
	if err := getJSON(ctx, base+"/partitioned", &parts); err != nil {
		return err
	}
	if err := getJSON(ctx, base, &topics); err != nil {
		return err
	}
	seen := map[string]bool{}
	var errs []error
	for _, full := range append(parts, topics...) {
		name := full[strings.LastIndex(full, "/")+1:]
		if i := strings.LastIndex(name, "-partition-"); i > 0 {
			name = name[:i]
		}
		if seen[name] {
			continue
		}
		seen[name] = true
		req, err := http.NewRequestWithContext(ctx, http.MethodPut, base+"/"+url.PathEscape(name)+"/unload", nil)
		if err != nil {
			return err
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		resp.Body.Close()
		if resp.StatusCode/100 != 2 && resp.StatusCode != http.StatusNotFound {
			errs = append(errs, fmt.Errorf("unload %s: %s", name, resp.Status))
		}
	}
	return errors.Join(errs...)
}

// DeleteSystemTopics unloads and deletes the system topics left in a
// namespace whose own topics are gone: the pending-ack stores of
// transactional subscriptions ("<topic>-<subscription>__transaction_pending_ack")
// outlive their topic and keep the namespace from being deleted ("409
// Cannot delete non empty bundle"). Call it only once no client uses the
// namespace.
func DeleteSystemTopics(ctx context.Context, adminURL string, ns bus.Namespace) error {
	root := strings.TrimSuffix(adminURL, "/") + "/admin/v2/"
	var topics []string
	if err := getJSON(ctx, root+"namespaces/"+url.PathEscape(ns.Tenant)+"/"+url.PathEscape(ns.Namespace)+"/topics?includeSystemTopic=true", &topics); err != nil {
		return err
	}
	var errs []error
	for _, full := range topics {
		base := root + "persistent/" + url.PathEscape(ns.Tenant) + "/" + url.PathEscape(ns.Namespace) + "/" + url.PathEscape(full[strings.LastIndex(full, "/")+1:])
		for _, step := range []struct{ method, url string }{{http.MethodPut, base + "/unload"}, {http.MethodDelete, base + "?force=true"}} {
			req, err := http.NewRequestWithContext(ctx, step.method, step.url, nil)
			if err != nil {
				return err
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				errs = append(errs, err)
				continue
			}
			resp.Body.Close()
			if resp.StatusCode/100 != 2 && resp.StatusCode != http.StatusNotFound {
				errs = append(errs, fmt.Errorf("%s %s: %s", step.method, step.url, resp.Status))
			}
		}
	}
	return errors.Join(errs...)
}

// NamespaceExists says whether the broker still has the namespace.
func NamespaceExists(ctx context.Context, adminURL string, ns bus.Namespace) (bool, error) {
	var all []string
	if err := getJSON(ctx, strings.TrimSuffix(adminURL, "/")+"/admin/v2/namespaces/"+url.PathEscape(ns.Tenant), &all); err != nil {
		return false, err
	}
	return slices.Contains(all, ns.Tenant+"/"+ns.Namespace), nil
}

func getJSON(ctx context.Context, u string, v any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s", u, resp.Status)
	}
	return json.NewDecoder(resp.Body).Decode(v)
}

// Quantile returns the q-quantile (0..1, nearest rank) of ds, in
// milliseconds. ds is left as it is: callers pair it with other slices
// (LoopResult.SeenAt).
func Quantile(ds []time.Duration, q float64) float64 {
	if len(ds) == 0 {
		return 0
	}
	ds = slices.Clone(ds)
	slices.Sort(ds)
	i := int(q*float64(len(ds)) + 0.5)
	i = min(max(i-1, 0), len(ds)-1)
	return float64(ds[i]) / float64(time.Millisecond)
}
