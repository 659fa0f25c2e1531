package pulsarbus

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/apache/pulsar-client-go/pulsaradmin/pkg/rest"
	"github.com/apache/pulsar-client-go/pulsaradmin/pkg/utils"

	"github.com/pulsaga/pulsaga/bus"
)

var _ bus.TxEnder = (*Bus)(nil)

// The broker's transaction admin API (Pulsar 3.3 and later), used by
// EndTransactions:
//
//   - GET /admin/v3/transactions/slowTransactions/0 lists every transaction
//     of every coordinator that has been open for at least 0 ms, i.e. every
//     transaction not yet ended, with the partitions it produced to and the
//     subscriptions it acknowledged on (TransactionMetadata);
//   - POST /admin/v3/transactions/abortTransaction/{coordinator}/{id} aborts
//     one, as its client's Abort would: the coordinator writes the abort
//     markers to those partitions and subscriptions before it answers.
//
// Both need the super-user role when the broker checks authorization.
const (
	slowTransactionsPath = "/admin/v3/transactions/slowTransactions/0"
	abortTransactionPath = "/admin/v3/transactions/abortTransaction/%d/%d"
	tbStatsPath          = "/admin/v3/transactions/transactionBufferStats/%s/%s/%s"
)

// txMetadata is the broker's TransactionMetadata (the fields used here).
type txMetadata struct {
	TxnID              string                        `json:"txnId"`
	Status             string                        `json:"status"`
	ProducedPartitions map[string]ignored            `json:"producedPartitions"`
	AckedPartitions    map[string]map[string]ignored `json:"ackedPartitions"`
	TimeoutAt          int64                         `json:"timeoutAt"`
}

// ignored stands for the per-partition statistics, which are not needed:
// only the keys (partition and subscription names) are.
type ignored struct{}

// EndTransactions implements bus.TxEnder with the broker's transaction admin
// API, in two steps:
//
//  1. abort: list the open transactions and abort those in scope (both
//     Topics and Acks) that are still open; the listing is bounded by
//     listTimeout and tried once: the broker builds it from one statistics
//     call per partition of every open transaction, and one that fails (a
//     topic deleted under an open transaction) makes the whole listing fail
//     or hang. A failed listing is logged and the transactions are then
//     left to the broker's own timeout;
//  2. wait: until the transaction buffer of every topic (partition) of
//     scope.Topics has no transaction in progress (ongoingTxnSize 0): those
//     that were committing when they were listed, and those the listing
//     could not show, end by themselves, at the latest at their timeout.
//
// Step 2 is what the promise rests on for Topics; Acks are covered by
// step 1 only (a broker does not count pending acknowledgements per
// subscription).
func (b *Bus) EndTransactions(ctx context.Context, scope bus.TxScope) (bus.TxEnded, error) {
	var out bus.TxEnded
	if b.isClosed() {
		return out, fmt.Errorf("pulsarbus: end transactions: %w", bus.ErrClosed)
	}
	m := b.txMatcher(scope)
	list := b.listTransactions
	if b.listTx != nil {
		list = b.listTx
	}
	open, err := b.listings.get(ctx, list)
	switch {
	case ctx.Err() != nil:
		return out, fmt.Errorf("pulsarbus: end transactions: %w", ctx.Err())
	case err != nil:
		b.log.Warn().Err(err).Msg("open transactions could not be listed; waiting for those in scope to end by themselves")
	}
	var abort []txMetadata
	for _, t := range open {
		switch {
		case !m.match(t):
		case strings.EqualFold(t.Status, "OPEN"):
			abort = append(abort, t)
		default:
			out.Waited++
		}
	}
	var wg sync.WaitGroup
	errs := make([]error, len(abort))
	for i, t := range abort {
		wg.Go(func() { errs[i] = b.abortTransaction(ctx, t.TxnID) })
	}
	wg.Wait()
	for i := range abort {
		switch err := errs[i]; {
		case err == nil:
			out.Aborted++
		case errors.Is(err, errTxNotOpen):
			out.Waited++ // committing, aborting or gone meanwhile
		default:
			return out, err
		}
	}
	topics, err := b.scopePartitions(ctx, scope.Topics)
	if err != nil {
		return out, err
	}
	pause := 10 * time.Millisecond
	for {
		// The topics' transaction buffers are asked at once, and again
		// only those still busy.
		ns := make([]int64, len(topics))
		errs := make([]error, len(topics))
		var wg sync.WaitGroup
		for i, t := range topics {
			wg.Go(func() { ns[i], errs[i] = b.ongoingTransactions(ctx, t) })
		}
		wg.Wait()
		busy, still := "", topics[:0:0]
		for i, t := range topics {
			if errs[i] != nil {
				return out, errs[i]
			}
			if ns[i] > 0 {
				busy = fmt.Sprintf("%s has %d transactions in progress", t, ns[i])
				still = append(still, t)
			}
		}
		if busy == "" {
			return out, nil
		}
		topics = still
		select {
		case <-ctx.Done():
			return out, fmt.Errorf("pulsarbus: end transactions: %s: %w", busy, ctx.Err())
		case <-time.After(pause):
		}
		pause = min(2*pause, 250*time.Millisecond)
	}
}

// listTimeout bounds the listing of open transactions.
const listTimeout = 5 * time.Second

// listGather is how long a listing waits for other callers to join it
// before it starts (see txListings).
const listGather = 20 * time.Millisecond

// txListings shares one listing of open transactions among the
// EndTransactions calls made at about the same time — the partitions one
// instance takes over together — instead of one listing each (the broker
// builds a listing from statistics of every partition of every open
// transaction: costly when many are open). A call joins only a listing
// that has not started yet, never one under way: a listing must show
// every transaction opened before its caller fenced the scope's topics.
// A listing starts listGather after its first caller came; listings may
// run side by side.
type txListings struct {
	mu      sync.Mutex
	pending *txListing // gathering callers, not started
}

type txListing struct {
	done chan struct{}
	open []txMetadata
	err  error
}

func (g *txListings) get(ctx context.Context, list func(context.Context) ([]txMetadata, error)) ([]txMetadata, error) {
	g.mu.Lock()
	l := g.pending
	if l == nil {
		l = &txListing{done: make(chan struct{})}
		g.pending = l
		time.AfterFunc(listGather, func() {
			g.mu.Lock()
			if g.pending == l {
				g.pending = nil
			}
			g.mu.Unlock()
			// Not the callers' contexts: one leaving does not end the
			// listing of the others; listTimeout bounds it.
			lctx, cancel := context.WithTimeout(context.Background(), listTimeout)
			l.open, l.err = list(lctx)
			cancel()
			close(l.done)
		})
	}
	g.mu.Unlock()
	select {
	case <-l.done:
		return l.open, l.err
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// scopePartitions turns topic names into the names of their partitions
// (a topic without partitions stands for itself).
func (b *Bus) scopePartitions(ctx context.Context, names []string) ([]string, error) {
	var out []string
	for _, name := range names {
		full := b.cfg.Namespace.Topic(name)
		if bus.BaseTopic(full) != full {
			out = append(out, full)
			continue
		}
		tn, err := utils.GetTopicName(full)
		if err != nil {
			return nil, fmt.Errorf("%w: topic %q: %v", bus.ErrBadOptions, name, err)
		}
		cctx, cancel := b.opCtx(ctx)
		n, err := b.partitions(cctx, tn)
		cancel()
		if err != nil {
			return nil, wrap(err, "partitions of %s", full)
		}
		if n == 0 {
			out = append(out, full)
		}
		for i := range n {
			out = append(out, fmt.Sprintf("%s-partition-%d", full, i))
		}
	}
	return out, nil
}

// tbStats is the broker's TransactionBufferStats (the fields used here).
type tbStats struct {
	State          string `json:"state"`
	OngoingTxnSize int64  `json:"ongoingTxnSize"`
}

// ongoingTransactions is how many transactions have sent to topic (one
// partition) and not ended, from its transaction buffer. A topic the
// broker has not loaded is loaded first (its statistics), as its
// transaction buffer only exists while it is.
func (b *Bus) ongoingTransactions(ctx context.Context, topic string) (int64, error) {
	rc, err := b.restClient()
	if err != nil {
		return 0, err
	}
	tn, err := utils.GetTopicName(topic)
	if err != nil {
		return 0, fmt.Errorf("%w: topic %q: %v", bus.ErrBadOptions, topic, err)
	}
	path := fmt.Sprintf(tbStatsPath, tn.GetTenant(), tn.GetNamespace(), tn.GetEncodedTopic())
	for {
		cctx, cancel := b.opCtx(ctx)
		var st tbStats
		err := rc.GetWithContext(cctx, path, &st)
		cancel()
		var re rest.Error
		switch {
		case err == nil && (st.State == "Ready" || st.State == "NoSnapshot"):
			return st.OngoingTxnSize, nil
		case err == nil:
			// Still recovering: it does not know its transactions yet.
		case errors.As(err, &re) && re.Code == http.StatusNotFound:
			// Not loaded: asking for its statistics loads it.
			sctx, cancel := b.opCtx(ctx)
			_, lerr := b.admin.Topics().GetStatsWithContext(sctx, *tn)
			cancel()
			if isStatus(lerr, http.StatusNotFound) {
				return 0, nil // no such topic: nothing was sent to it
			}
			if lerr != nil {
				return 0, wrap(lerr, "load %s", topic)
			}
		default:
			return 0, wrap(err, "transaction buffer of %s", topic)
		}
		select {
		case <-ctx.Done():
			return 0, fmt.Errorf("pulsarbus: transaction buffer of %s: %w", topic, ctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// errTxNotOpen: the transaction could not be aborted because it is no
// longer open (committing, aborting, or ended).
var errTxNotOpen = errors.New("transaction not open")

// listTransactions lists the transactions that have not ended.
func (b *Bus) listTransactions(ctx context.Context) ([]txMetadata, error) {
	rc, err := b.restClient()
	if err != nil {
		return nil, err
	}
	var all map[string]txMetadata
	if err := rc.GetWithContext(ctx, slowTransactionsPath, &all); err != nil {
		return nil, wrap(err, "list open transactions at %s", b.cfg.AdminURL)
	}
	out := make([]txMetadata, 0, len(all))
	for id, t := range all {
		if t.TxnID == "" {
			t.TxnID = id
		}
		out = append(out, t)
	}
	return out, nil
}

// abortTransaction aborts one transaction by its id "(coordinator,id)".
func (b *Bus) abortTransaction(ctx context.Context, txnID string) error {
	most, least, err := parseTxnID(txnID)
	if err != nil {
		return fmt.Errorf("pulsarbus: abort transaction: %w", err)
	}
	rc, err := b.restClient()
	if err != nil {
		return err
	}
	ctx, cancel := b.opCtx(ctx)
	defer cancel()
	err = rc.PostWithContext(ctx, fmt.Sprintf(abortTransactionPath, most, least), nil)
	if err == nil {
		return nil
	}
	var re rest.Error
	if errors.As(err, &re) {
		switch {
		case re.Code == http.StatusNotFound,
			re.Code == http.StatusConflict,
			strings.Contains(re.Reason, "InvalidTxnStatus"),
			strings.Contains(strings.ToLower(re.Reason), "status"):
			return fmt.Errorf("abort transaction %s: %w: %v", txnID, errTxNotOpen, err)
		}
	}
	return wrap(err, "abort transaction %s at %s", txnID, b.cfg.AdminURL)
}

// parseTxnID reads the broker's "(mostSigBits,leastSigBits)" form.
func parseTxnID(s string) (int64, int64, error) {
	in := strings.TrimSuffix(strings.TrimPrefix(strings.TrimSpace(s), "("), ")")
	a, c, ok := strings.Cut(in, ",")
	if !ok {
		return 0, 0, fmt.Errorf("%w: transaction id %q", bus.ErrBadOptions, s)
	}
	most, err1 := strconv.ParseInt(strings.TrimSpace(a), 10, 64)
	least, err2 := strconv.ParseInt(strings.TrimSpace(c), 10, 64)
	if err1 != nil || err2 != nil {
		return 0, 0, fmt.Errorf("%w: transaction id %q", bus.ErrBadOptions, s)
	}
	return most, least, nil
}

// restClient is a client of the admin REST API for the endpoints the
// pulsaradmin package does not wrap, with the bus's credentials and TLS.
func (b *Bus) restClient() (*rest.Client, error) {
	b.restOnce.Do(func() {
		b.rest = &rest.Client{ServiceURL: b.cfg.AdminURL, VersionInfo: "pulsaga", HTTPClient: b.AdminHTTP()}
	})
	return b.rest, nil
}

// txMatcher selects the transactions of a scope.
type txMatcher struct {
	topics map[string]bool            // full names: a topic, or one partition
	acks   map[string]map[string]bool // full topic (or partition) -> subscriptions
}

func (b *Bus) txMatcher(scope bus.TxScope) txMatcher {
	m := txMatcher{topics: map[string]bool{}, acks: map[string]map[string]bool{}}
	ns := b.cfg.Namespace
	for _, t := range scope.Topics {
		m.topics[ns.Topic(t)] = true
	}
	for _, a := range scope.Acks {
		full := ns.Topic(a.Topic)
		if m.acks[full] == nil {
			m.acks[full] = map[string]bool{}
		}
		m.acks[full][a.Subscription] = true
	}
	return m
}

// covers says whether a scope name covers partition (or topic) name: the
// same name, or the partitioned topic it belongs to.
func covers(names map[string]bool, name string) bool {
	return names[name] || names[bus.BaseTopic(name)]
}

func (m txMatcher) match(t txMetadata) bool {
	for p := range t.ProducedPartitions {
		if covers(m.topics, p) {
			return true
		}
	}
	for p, subs := range t.AckedPartitions {
		want := m.acks[p]
		if want == nil {
			want = m.acks[bus.BaseTopic(p)]
		}
		for s := range subs {
			if want[s] {
				return true
			}
		}
	}
	return false
}
