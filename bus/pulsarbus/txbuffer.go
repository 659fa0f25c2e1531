package pulsarbus

import (
	"context"
	"errors"
	"strings"
	"sync"
	"time"

	"github.com/apache/pulsar-client-go/pulsar"
	"github.com/apache/pulsar-client-go/pulsaradmin/pkg/utils"
)

// Pulsar 3.2 to 4.0.7 chain every transactional write to a topic on the
// one before it (TopicTransactionBuffer, apache/pulsar#24945): once one
// fails, every later transactional write to that topic fails with the same
// error until the topic is unloaded. Two ways in are known: a send in a
// transaction that has already ended (a deposed orchestrator's late batch:
// "Transaction ... has been ended"), and two clients' first transactional
// writes to a topic racing for its first buffer snapshot ("Transaction
// Buffer take first snapshot failed"). Every orchestrator writing that topic
// would then fail each batch for ever.
//
// On such a broker the bus heals the topic: a transactional send that the
// broker refused with one of those errors unloads the topic (all its
// partitions) through the admin API, at most once per txHealEvery per topic
// and bus, in the background. The unload drops the broken buffer; its
// producers and consumers reconnect by themselves and the caller's next
// transaction writes again. The refused send's transaction fails as before
// (bus.ErrTxFailed): the heal is for the transactions after it.

// txHealEvery bounds how often one bus unloads one topic.
const txHealEvery = 10 * time.Second

type txHealer struct {
	mu       sync.Mutex
	version  string // the broker's version once known
	affected bool   // the version has apache/pulsar#24945
	last     map[string]time.Time
	unloads  int // topics unloaded (tests)
	inflight sync.WaitGroup
	ctx      context.Context // ends with the bus (stop)
	cancel   context.CancelFunc
}

// stop ends the heals under way and waits for them (Bus.Close).
func (h *txHealer) stop() {
	h.mu.Lock()
	if h.cancel != nil {
		h.cancel()
	}
	h.mu.Unlock()
	h.inflight.Wait()
}

// stuckTxBufferError says whether a transactional send's error is one a
// stuck transaction buffer of Pulsar 3.2–4.0.7 answers with.
func stuckTxBufferError(err error) bool {
	if err == nil {
		return false
	}
	msg := strings.ToLower(err.Error())
	if strings.Contains(msg, "has been ended") || strings.Contains(msg, "transaction buffer") {
		return true
	}
	// A buffer stuck behind a failed first snapshot can also make the
	// broker drop the producer after each refused write: the client then
	// only sees its send time out (a CI run: jobs.payments stuck for 100 s,
	// 20,000 reconnections, no refusal ever reported). A timeout on a
	// healthy topic costs one needless unload at most every txHealEvery.
	if strings.Contains(msg, "send timeout") || strings.Contains(msg, "timeouterror") {
		return true
	}
	var pe *pulsar.Error
	return errors.As(err, &pe) && pe.Result() == pulsar.BrokerPersistenceError
}

// brokerAffected says whether the broker runs a version with
// apache/pulsar#24945, asking it once (a failed question is asked again
// next time).
func (b *Bus) brokerAffected(ctx context.Context) bool {
	h := &b.txHeal
	h.mu.Lock()
	if h.version != "" {
		defer h.mu.Unlock()
		return h.affected
	}
	h.mu.Unlock()
	v, err := b.BrokerVersion(ctx)
	if err != nil || v == "" {
		return false
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	h.version = v
	h.affected = stuckTxBufferVersion(v)
	return h.affected
}

// healTxBuffer unloads topic in the background when err is a refusal of
// a stuck transaction buffer on an affected broker (see above).
func (b *Bus) healTxBuffer(topic string, err error) {
	if !stuckTxBufferError(err) || b.isClosed() {
		return
	}
	h := &b.txHeal
	now := time.Now()
	h.mu.Lock()
	if h.last == nil {
		h.last = map[string]time.Time{}
		h.ctx, h.cancel = context.WithCancel(context.Background())
	}
	if t, ok := h.last[topic]; ok && now.Sub(t) < txHealEvery {
		h.mu.Unlock()
		return
	}
	h.last[topic] = now
	h.inflight.Add(1)
	parent := h.ctx
	h.mu.Unlock()
	go func() {
		defer h.inflight.Done()
		ctx, cancel := context.WithTimeout(parent, 2*b.cfg.OperationTimeout)
		defer cancel()
		if !b.brokerAffected(ctx) {
			return
		}
		if uerr := b.unloadTopic(ctx, topic); uerr != nil {
			b.log.Warn().Err(uerr).Str("topic", topic).AnErr("send_error", err).
				Msg("a transactional send was refused as by a stuck transaction buffer (apache/pulsar#24945); unloading the topic failed")
			return
		}
		h.mu.Lock()
		h.unloads++
		v := h.version
		h.mu.Unlock()
		b.log.Warn().Str("topic", topic).Str("broker_version", v).AnErr("send_error", err).
			Msg("a transactional send was refused as by a stuck transaction buffer (apache/pulsar#24945, Pulsar 3.2-4.0.7): the topic was unloaded so that later transactions write again")
	}()
}

// unloadTopic unloads a topic (every partition of a partitioned one).
func (b *Bus) unloadTopic(ctx context.Context, full string) error {
	tn, err := utils.GetTopicName(full)
	if err != nil {
		return err
	}
	rc, err := b.restClient()
	if err != nil {
		return err
	}
	if err := rc.PutWithContext(ctx, "/admin/v2/"+tn.GetRestPath()+"/unload", nil); err != nil {
		return wrap(err, "unload %s", full)
	}
	return nil
}

// TxBufferUnloads is how many topics the bus has unloaded to heal a stuck
// transaction buffer (apache/pulsar#24945), for tests and diagnostics.
func (b *Bus) TxBufferUnloads() int {
	b.txHeal.mu.Lock()
	defer b.txHeal.mu.Unlock()
	return b.txHeal.unloads
}
