// Package pulsarbus implements bus.Bus on Apache Pulsar with
// pulsar-client-go. It is the only package of pulsaga that imports the
// Pulsar client.
//
// What the client does not do and the bus does itself:
//
//   - Transactional sends: pulsar-client-go v0.19.0 does not put the
//     transaction id in the message metadata (so the broker delivered the
//     messages of aborted transactions), takes a batch's transaction from
//     its first message and lets the next batch inherit it. The client is
//     used with a patch for all three (third_party/pulsar-client-go).
//   - Dead-lettering (MaxDeliveries, DeadLetter) is done here, not with the
//     client's DLQ policy, so the reason travels with the message.
//   - Redelivery counts: the broker counts them on Shared and KeyShared
//     subscriptions only; on Exclusive and Failover the bus counts the
//     deliveries it saw itself (per process).
//   - Ack timeouts: the client has none; the bus nacks what was not
//     acknowledged in time.
//   - Acknowledgements of batched messages: a broker without batch-index
//     acknowledgements acknowledges whole entries, and the client mixes the
//     state of every transaction that touched an entry. The bus keeps the
//     state of each batched entry and acknowledges it on the broker only
//     when all its messages are acknowledged or committed (see entry.go).
//   - After a transaction aborts, the messages it acknowledged are nacked so
//     they are delivered again (the Go client does not do it).
package pulsarbus

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"sync"
	"time"

	"github.com/apache/pulsar-client-go/pulsar"
	"github.com/apache/pulsar-client-go/pulsaradmin"
	"github.com/apache/pulsar-client-go/pulsaradmin/pkg/rest"
	"github.com/rs/zerolog"

	"github.com/pulsaga/pulsaga/bus"
)

// Bus is a bus.Bus on a Pulsar cluster.
type Bus struct {
	cfg    Config
	log    zerolog.Logger
	client pulsar.Client
	// clientLog is shut when the bus closes: the client's goroutines that
	// outlive its Close write nothing more (logger.go).
	clientLog *logGate
	admin     pulsaradmin.Client
	// adminRT carries the admin API's credentials and TLS (AdminHTTP).
	adminRT http.RoundTripper

	mu      sync.Mutex
	closed  bool
	closers map[closer]struct{}
	dlq     map[string]pulsar.Producer // dead-letter producers by topic

	// rest is the admin REST client of EndTransactions (txend.go).
	restOnce sync.Once
	rest     *rest.Client
	// listTx replaces the listing of open transactions in tests.
	listTx func(context.Context) ([]txMetadata, error)
	// listings shares listings among concurrent EndTransactions calls.
	listings txListings
	// txHeal unloads topics whose transaction buffer is stuck (txbuffer.go).
	txHeal txHealer
}

type closer interface{ closeByBus() }

var _ bus.Bus = (*Bus)(nil)

// New connects to the broker, checks that both URLs answer, and creates the
// namespace (and its tenant) when missing. An unreachable broker fails within
// ConnectionTimeout with an error wrapping bus.ErrUnavailable.
func New(ctx context.Context, cfg Config, log zerolog.Logger) (*Bus, error) {
	cfg = cfg.WithDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	log = log.With().Str("component", "pulsarbus").Logger()
	if err := probeTCP(ctx, cfg.ServiceURL, cfg.ConnectionTimeout); err != nil {
		return nil, fmt.Errorf("pulsarbus: %w: cannot reach the Pulsar broker at %s (ServiceURL): %v; check that the broker runs (scripts/pulsar/pulsar.sh status) and that the URL and port are right",
			bus.ErrUnavailable, cfg.ServiceURL, err)
	}
	admin, adminRT, err := newAdminWithTransport(cfg)
	if err != nil {
		return nil, fmt.Errorf("pulsarbus: admin client for %s: %w", cfg.AdminURL, err)
	}
	pctx, cancel := context.WithTimeout(ctx, cfg.ConnectionTimeout)
	_, err = admin.Clusters().ListWithContext(pctx)
	cancel()
	if err != nil {
		if why := cfg.explainRefusal(err); why != "" {
			return nil, fmt.Errorf("pulsarbus: %w: the Pulsar admin API at %s (AdminURL) refused this client: %v; %s", bus.ErrBadOptions, cfg.AdminURL, err, why)
		}
		return nil, fmt.Errorf("pulsarbus: %w: the Pulsar admin API at %s (AdminURL) does not answer: %v; check that the broker runs and that AdminURL points at its web service port",
			bus.ErrUnavailable, cfg.AdminURL, err)
	}
	gate := &logGate{}
	client, err := newClient(ctx, cfg, log, gate)
	if err != nil {
		return nil, err
	}
	b := &Bus{
		cfg: cfg, log: log, client: client, clientLog: gate, admin: admin, adminRT: adminRT,
		closers: map[closer]struct{}{}, dlq: map[string]pulsar.Producer{},
	}
	if err := b.ensureNamespace(ctx); err != nil {
		b.closeClient()
		return nil, err
	}
	if err := b.probeBroker(ctx); err != nil {
		b.closeClient()
		return nil, err
	}
	return b, nil
}

// newClient creates the client. With transactions enabled the client
// connects to the transaction coordinators at once, and its lookups only
// give up after their own timeouts: the wait is bounded here by
// ConnectionTimeout+OperationTimeout.
func newClient(ctx context.Context, cfg Config, log zerolog.Logger, gate *logGate) (pulsar.Client, error) {
	type res struct {
		c   pulsar.Client
		err error
	}
	auth, err := cfg.clientAuth()
	if err != nil {
		return nil, fmt.Errorf("pulsarbus: %w: credentials: %v", bus.ErrBadOptions, err)
	}
	ch := make(chan res, 1)
	go func() {
		c, err := pulsar.NewClient(pulsar.ClientOptions{
			URL:               cfg.ServiceURL,
			ConnectionTimeout: cfg.ConnectionTimeout,
			OperationTimeout:  cfg.OperationTimeout,
			Logger:            newClientLogger(log, gate),
			Authentication:    auth,
			// The broker's name is checked against its certificate
			// unless the configuration accepts any certificate.
			TLSTrustCertsFilePath:      cfg.TLS.TrustCertsFile,
			TLSAllowInsecureConnection: cfg.TLS.AllowInsecure,
			TLSValidateHostname:        !cfg.TLS.AllowInsecure,
			EnableTransaction:          true,
			// The client's Prometheus metrics would register on the default
			// registry once per client; pulsaga exports its own.
			MetricsCardinality: pulsar.MetricsCardinalityNone,
		})
		ch <- res{c, err}
	}()
	limit := cfg.ConnectionTimeout + cfg.OperationTimeout
	t := time.NewTimer(limit)
	defer t.Stop()
	abandon := func() {
		gate.close() // the caller is told it failed: nothing more of this client in its log
		go func() {
			if r := <-ch; r.err == nil && r.c != nil {
				r.c.Close()
			}
		}()
	}
	select {
	case r := <-ch:
		if r.err != nil {
			if why := cfg.explainRefusal(r.err); why != "" {
				return nil, fmt.Errorf("pulsarbus: %w: the Pulsar broker at %s (ServiceURL) refused this client: %v; %s", bus.ErrBadOptions, cfg.ServiceURL, r.err, why)
			}
			err := wrap(r.err, "connect to the Pulsar broker at %s (ServiceURL) and its transaction coordinator", cfg.ServiceURL)
			if !bus.Retryable(err) {
				err = fmt.Errorf("%w: %w; check that the broker runs with transactionCoordinatorEnabled=true", bus.ErrUnavailable, err)
			}
			return nil, err
		}
		return r.c, nil
	case <-t.C:
		abandon()
		return nil, fmt.Errorf("pulsarbus: %w: the Pulsar broker at %s (ServiceURL) did not answer within %s; check that the URL is the broker's binary protocol port and that the broker is not stuck",
			bus.ErrUnavailable, cfg.ServiceURL, limit)
	case <-ctx.Done():
		abandon()
		return nil, fmt.Errorf("pulsarbus: connect to %s: %w", cfg.ServiceURL, ctx.Err())
	}
}

// probeTCP dials the host of a pulsar:// URL: the client connects lazily and
// would otherwise only fail at the first operation.
func probeTCP(ctx context.Context, serviceURL string, timeout time.Duration) error {
	u, err := url.Parse(serviceURL)
	if err != nil {
		return err
	}
	d := net.Dialer{Timeout: timeout}
	dctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var last error
	// A service URL may list several hosts: host1:6650,host2:6650.
	for _, h := range splitHosts(u.Host) {
		c, err := d.DialContext(dctx, "tcp", h)
		if err == nil {
			return c.Close()
		}
		last = err
	}
	return last
}

func splitHosts(h string) []string {
	var out []string
	start := 0
	for i := 0; i <= len(h); i++ {
		if i == len(h) || h[i] == ',' {
			if i > start {
				out = append(out, h[start:i])
			}
			start = i + 1
		}
	}
	return out
}

// probeBroker does a lookup on the binary protocol, bounded by
// ConnectionTimeout+OperationTimeout, so that a port that accepts but does
// not speak Pulsar fails now.
func (b *Bus) probeBroker(ctx context.Context) error {
	topic := b.cfg.Namespace.Topic("__pulsaga_probe")
	done := make(chan error, 1)
	go func() {
		_, err := b.client.TopicPartitions(topic)
		done <- err
	}()
	t := time.NewTimer(b.cfg.ConnectionTimeout + b.cfg.OperationTimeout)
	defer t.Stop()
	select {
	case err := <-done:
		if err != nil {
			return fmt.Errorf("pulsarbus: %w: the Pulsar broker at %s did not answer a lookup: %v", bus.ErrUnavailable, b.cfg.ServiceURL, err)
		}
		return nil
	case <-t.C:
		return fmt.Errorf("pulsarbus: %w: the Pulsar broker at %s did not answer a lookup within %s", bus.ErrUnavailable, b.cfg.ServiceURL, b.cfg.ConnectionTimeout+b.cfg.OperationTimeout)
	case <-ctx.Done():
		return fmt.Errorf("pulsarbus: probing %s: %w", b.cfg.ServiceURL, ctx.Err())
	}
}

// Namespace is the namespace short topic names resolve in.
func (b *Bus) Namespace() bus.Namespace { return b.cfg.Namespace }

// Config is the effective configuration (with defaults).
func (b *Bus) Config() Config { return b.cfg }

func (b *Bus) register(c closer) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return bus.ErrClosed
	}
	b.closers[c] = struct{}{}
	return nil
}

func (b *Bus) unregister(c closer) {
	b.mu.Lock()
	delete(b.closers, c)
	b.mu.Unlock()
}

func (b *Bus) isClosed() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.closed
}

// Close closes every producer, consumer and reader, then the client.
func (b *Bus) Close() error {
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return nil
	}
	b.closed = true
	cs := make([]closer, 0, len(b.closers))
	for c := range b.closers {
		cs = append(cs, c)
	}
	dlq := b.dlq
	b.dlq = map[string]pulsar.Producer{}
	b.mu.Unlock()
	for _, c := range cs {
		c.closeByBus()
	}
	for _, p := range dlq {
		p.Close()
	}
	b.txHeal.stop()
	b.closeClient()
	return nil
}

// closeClient closes the client, then shuts its log (logger.go).
func (b *Bus) closeClient() {
	b.client.Close()
	b.clientLog.close()
}

// dlqProducer returns the shared producer of a dead-letter topic.
func (b *Bus) dlqProducer(ctx context.Context, topic string) (pulsar.Producer, error) {
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return nil, bus.ErrClosed
	}
	if p, ok := b.dlq[topic]; ok {
		b.mu.Unlock()
		return p, nil
	}
	b.mu.Unlock()
	p, err := b.createProducer(ctx, pulsar.ProducerOptions{
		Topic:           topic,
		DisableBatching: true,
		SendTimeout:     b.cfg.OperationTimeout,
	})
	if err != nil {
		return nil, wrap(err, "open dead-letter producer on %s", topic)
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		p.Close()
		return nil, bus.ErrClosed
	}
	if q, ok := b.dlq[topic]; ok {
		p.Close()
		return q, nil
	}
	b.dlq[topic] = p
	return p, nil
}

// createProducer opens a client producer, giving up when ctx ends (the
// client itself only knows its operation timeout).
func (b *Bus) createProducer(ctx context.Context, opts pulsar.ProducerOptions) (pulsar.Producer, error) {
	type res struct {
		p   pulsar.Producer
		err error
	}
	ch := make(chan res, 1)
	go func() {
		p, err := b.client.CreateProducer(opts)
		ch <- res{p, err}
	}()
	select {
	case r := <-ch:
		return r.p, r.err
	case <-ctx.Done():
		go func() {
			// A failed CreateProducer returns a nil *producer inside a
			// non-nil interface: closing it panicked the process.
			if r := <-ch; r.err == nil && r.p != nil {
				r.p.Close()
			}
		}()
		return nil, ctx.Err()
	}
}

func (b *Bus) opCtx(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, b.cfg.OperationTimeout)
}

var errNoTopic = errors.New("topic is required")
