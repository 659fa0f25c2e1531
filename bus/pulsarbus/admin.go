package pulsarbus

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"regexp"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/apache/pulsar-client-go/pulsar"

	"github.com/apache/pulsar-client-go/pulsaradmin/pkg/rest"
	"github.com/apache/pulsar-client-go/pulsaradmin/pkg/utils"

	"github.com/pulsaga/pulsaga/bus"
)

// What the bus sets on the broker, and where:
//
//   - Namespace (at New): created if missing (its tenant too, allowed on
//     every cluster the broker lists); deduplication turned on; retention set
//     to Config.RetentionTime / RetentionSizeMB. Broker defaults (retention
//     0 = acknowledged messages deleted at once) are never relied on.
//   - Topic (EnsureTopic): created partitioned or not; a partitioned topic
//     with fewer partitions than asked is grown (Pulsar cannot shrink one).
//     Topic-level retention when TopicSpec asks for one (a zero field takes
//     the namespace's value); for a compacted topic a topic-level compaction
//     threshold (Config.CompactionThresholdBytes), so the broker compacts it
//     by itself, and infinite retention unless the spec says otherwise,
//     because a compacted topic is a table the engine must keep.

func (b *Bus) ensureNamespace(ctx context.Context) error {
	ctx, cancel := b.opCtx(ctx)
	defer cancel()
	ns := b.cfg.Namespace
	if _, err := b.admin.Tenants().GetWithContext(ctx, ns.Tenant); err != nil {
		if !isStatus(err, http.StatusNotFound) {
			return wrap(err, "get tenant %s at %s", ns.Tenant, b.cfg.AdminURL)
		}
		clusters, err := b.admin.Clusters().ListWithContext(ctx)
		if err != nil {
			return wrap(err, "list clusters at %s", b.cfg.AdminURL)
		}
		err = b.admin.Tenants().CreateWithContext(ctx, utils.TenantData{Name: ns.Tenant, AllowedClusters: clusters})
		if err != nil && !isStatus(err, http.StatusConflict) {
			return wrap(err, "create tenant %s (clusters %v)", ns.Tenant, clusters)
		}
	}
	err := b.admin.Namespaces().CreateNamespaceWithContext(ctx, ns.String())
	if err != nil && !isStatus(err, http.StatusConflict) {
		return wrap(err, "create namespace %s", ns)
	}
	if err := b.admin.Namespaces().SetDeduplicationStatusWithContext(ctx, ns.String(), true); err != nil {
		return wrap(err, "enable deduplication on namespace %s", ns)
	}
	want := utils.RetentionPolicies{
		RetentionTimeInMinutes: retentionMinutes(b.cfg.RetentionTime),
		RetentionSizeInMB:      b.cfg.RetentionSizeMB,
	}
	have, err := b.admin.Namespaces().GetRetentionWithContext(ctx, ns.String())
	if err != nil {
		return wrap(err, "get retention of namespace %s", ns)
	}
	if have == nil || *have != want {
		if err := b.admin.Namespaces().SetRetentionWithContext(ctx, ns.String(), want); err != nil {
			return wrap(err, "set retention of namespace %s", ns)
		}
	}
	return nil
}

// EnsureTopic creates the topic if needed and applies its policies. It is
// idempotent and only writes policies that differ.
func (b *Bus) EnsureTopic(ctx context.Context, spec bus.TopicSpec) error {
	if b.isClosed() {
		return bus.ErrClosed
	}
	if spec.Name == "" {
		return fmt.Errorf("%w: EnsureTopic: %w", bus.ErrBadOptions, errNoTopic)
	}
	if spec.Partitions < 0 {
		return fmt.Errorf("%w: EnsureTopic %s: partitions must not be negative", bus.ErrBadOptions, spec.Name)
	}
	if spec.RetentionTime < -1 || spec.RetentionSizeMB < -1 {
		return fmt.Errorf("%w: EnsureTopic %s: retention must be positive, 0 or -1", bus.ErrBadOptions, spec.Name)
	}
	full := b.cfg.Namespace.Topic(spec.Name)
	tn, err := utils.GetTopicName(full)
	if err != nil {
		return fmt.Errorf("%w: EnsureTopic: topic name %q: %v", bus.ErrBadOptions, full, err)
	}
	ctx, cancel := b.opCtx(ctx)
	defer cancel()
	if err := b.ensurePartitions(ctx, tn, full, spec.Partitions); err != nil {
		return err
	}
	if !tn.IsPersistent() {
		return nil // non-persistent topics have no retention or compaction
	}
	retention := spec.RetentionTime != 0 || spec.RetentionSizeMB != 0
	minutes := retentionMinutes(b.cfg.RetentionTime)
	size := b.cfg.RetentionSizeMB
	if spec.Compacted {
		retention, minutes, size = true, -1, -1
	}
	if spec.RetentionTime != 0 {
		minutes = retentionMinutes(spec.RetentionTime)
	}
	if spec.RetentionSizeMB != 0 {
		size = spec.RetentionSizeMB
	}
	if retention {
		want := utils.RetentionPolicies{RetentionTimeInMinutes: minutes, RetentionSizeInMB: size}
		have, err := b.admin.Topics().GetRetentionWithContext(ctx, *tn, false)
		if err != nil && !isStatus(err, http.StatusNotFound) {
			return wrap(err, "get retention of %s", full)
		}
		if have == nil || *have != want {
			if err := b.admin.Topics().SetRetentionWithContext(ctx, *tn, want); err != nil {
				return wrap(err, "set retention of %s", full)
			}
		}
	}
	if spec.Compacted {
		have, err := b.admin.Topics().GetCompactionThresholdWithContext(ctx, *tn, false)
		if err != nil && !isStatus(err, http.StatusNotFound) {
			return wrap(err, "get compaction threshold of %s", full)
		}
		if have != b.cfg.CompactionThresholdBytes {
			if err := b.admin.Topics().SetCompactionThresholdWithContext(ctx, *tn, b.cfg.CompactionThresholdBytes); err != nil {
				return wrap(err, "set compaction threshold of %s", full)
			}
		}
	}
	return nil
}

func (b *Bus) ensurePartitions(ctx context.Context, tn *utils.TopicName, full string, want int) error {
	for attempt := 0; ; attempt++ {
		have, err := b.partitions(ctx, tn)
		if err != nil {
			return wrap(err, "get metadata of %s", full)
		}
		switch {
		case want == 0 && have > 0:
			return fmt.Errorf("%w: topic %s has %d partitions, a topic without partitions was asked",
				bus.ErrBadOptions, full, have)
		case want == 0:
			err := b.admin.Topics().CreateWithContext(ctx, *tn, 0)
			if err != nil && !isStatus(err, http.StatusConflict) {
				return wrap(err, "create topic %s", full)
			}
			return nil
		case have == want:
			return nil
		case have > want:
			return fmt.Errorf("%w: topic %s has %d partitions, %d asked; Pulsar cannot remove partitions",
				bus.ErrBadOptions, full, have, want)
		case have > 0:
			if err := b.admin.Topics().UpdateWithContext(ctx, *tn, want); err != nil {
				return wrap(err, "grow %s from %d to %d partitions", full, have, want)
			}
			return nil
		case b.topicExists(ctx, tn):
			return fmt.Errorf("%w: topic %s exists without partitions, %d asked; delete it or ask for 0",
				bus.ErrBadOptions, full, want)
		}
		err = b.admin.Topics().CreateWithContext(ctx, *tn, want)
		if err == nil {
			return nil
		}
		if !isStatus(err, http.StatusConflict) || attempt >= createConflictRetries {
			return wrap(err, "create topic %s with %d partitions", full, want)
		}
		// Created meanwhile by someone else (two orchestrators starting
		// at once): check it is what we want. The broker that answered
		// "exists" may still report no partitions for a moment (a CI run
		// saw it: the orchestrator that lost the race failed to start), so
		// look again a little later.
		select {
		case <-ctx.Done():
			return wrap(ctx.Err(), "create topic %s with %d partitions", full, want)
		case <-time.After(createConflictWait):
		}
	}
}

// createConflictRetries and createConflictWait bound how long EnsureTopic
// waits for a topic someone else created meanwhile to show its partitions.
const (
	createConflictRetries = 20
	createConflictWait    = 100 * time.Millisecond
)

// partitions is the partition count of a topic (0: not partitioned or
// missing).
func (b *Bus) partitions(ctx context.Context, tn *utils.TopicName) (int, error) {
	md, err := b.admin.Topics().GetMetadataWithContext(ctx, *tn)
	if err != nil {
		if isStatus(err, http.StatusNotFound) {
			return 0, nil
		}
		return 0, err
	}
	return md.Partitions, nil
}

// topicExists says whether a non-partitioned topic exists.
func (b *Bus) topicExists(ctx context.Context, tn *utils.TopicName) bool {
	_, err := b.admin.Topics().GetInternalStatsWithContext(ctx, *tn)
	return err == nil
}

func isStatus(err error, code int) bool {
	var re rest.Error
	return errors.As(err, &re) && re.Code == code
}

// Backlogs (bus.Backlogs): what an operator's tool does with the broker.
//
//   - Topics: the admin API's topic list of the namespace (persistent and
//     non-persistent, partitioned topics once).
//   - Backlog: the subscription is created at the earliest message when
//     missing (admin API); its size is the subscription's msgBacklog (topic
//     stats); its messages are read with a reader from the cursor's
//     mark-delete position, leaving out the individually deleted ranges of
//     the cursor (internal stats), which is exactly the backlog. The size
//     is exact when the whole backlog is read; otherwise (limit reached,
//     or 0) it is the broker's msgBacklog, which also counts transaction
//     markers and messages of aborted transactions written to the topic
//     (dead-letter topics get neither: dead-lettering is not
//     transactional).
//   - Acknowledge: the admin REST API can only move a cursor (skip N from
//     the head, clear the whole backlog, reset, expire) and none of those
//     removes one message in the middle, which replaying or purging one dead
//     letter must do. So it is an individual acknowledgement by message id
//     through a consumer of the subscription (zero receive queue: it is
//     never dispatched anything), with the broker's answer awaited, or in a
//     transaction. That consumer stays open until the bus closes, so a
//     transaction's pending acknowledgement keeps its consumer.

var _ bus.Backlogs = (*Bus)(nil)

// Topics implements bus.Backlogs.
func (b *Bus) Topics(ctx context.Context) ([]string, error) {
	if b.isClosed() {
		return nil, fmt.Errorf("pulsarbus: list topics: %w", bus.ErrClosed)
	}
	ctx, cancel := b.opCtx(ctx)
	defer cancel()
	ns, err := utils.GetNamespaceName(b.cfg.Namespace.String())
	if err != nil {
		return nil, fmt.Errorf("%w: namespace %s: %v", bus.ErrBadOptions, b.cfg.Namespace, err)
	}
	parted, plain, err := b.admin.Topics().ListWithContext(ctx, *ns)
	if err != nil {
		return nil, wrap(err, "list the topics of %s at %s", b.cfg.Namespace, b.cfg.AdminURL)
	}
	set := map[string]bool{}
	for _, t := range append(parted, plain...) {
		set[bus.ShortName(bus.BaseTopic(t))] = true
	}
	return slices.Sorted(maps.Keys(set)), nil
}

func (b *Bus) backlogTopic(ctx context.Context, topic, sub string) (*utils.TopicName, string, error) {
	if topic == "" || sub == "" {
		return nil, "", fmt.Errorf("%w: a backlog needs a topic and a subscription", bus.ErrBadOptions)
	}
	if b.isClosed() {
		return nil, "", fmt.Errorf("pulsarbus: backlog of %s: %w", topic, bus.ErrClosed)
	}
	full := b.cfg.Namespace.Topic(topic)
	tn, err := utils.GetTopicName(full)
	if err != nil {
		return nil, "", fmt.Errorf("%w: topic name %q: %v", bus.ErrBadOptions, full, err)
	}
	if !tn.IsPersistent() {
		return nil, "", fmt.Errorf("%w: %s is not persistent; it has no backlog", bus.ErrBadOptions, full)
	}
	n, err := b.partitions(ctx, tn)
	if err != nil {
		return nil, "", wrap(err, "get metadata of %s", full)
	}
	if n > 0 || bus.BaseTopic(full) != full {
		return nil, "", fmt.Errorf("%w: %s is partitioned; backlogs work on topics without partitions", bus.ErrBadOptions, full)
	}
	err = b.admin.Subscriptions().CreateWithContext(ctx, *tn, sub, utils.Earliest)
	if err != nil && !isStatus(err, http.StatusConflict) {
		return nil, "", wrap(err, "create subscription %s on %s", sub, full)
	}
	return tn, full, nil
}

// Backlog implements bus.Backlogs.
func (b *Bus) Backlog(ctx context.Context, topic, sub string, limit int) ([]*bus.Message, int, error) {
	if limit < 0 {
		return nil, 0, fmt.Errorf("%w: backlog limit %d is negative", bus.ErrBadOptions, limit)
	}
	octx, cancel := b.opCtx(ctx)
	defer cancel()
	tn, full, err := b.backlogTopic(octx, topic, sub)
	if err != nil {
		return nil, 0, err
	}
	stats, err := b.admin.Topics().GetStatsWithContext(octx, *tn)
	if err != nil {
		return nil, 0, wrap(err, "get stats of %s", full)
	}
	ss, ok := stats.Subscriptions[sub]
	if !ok {
		return nil, 0, fmt.Errorf("pulsarbus: %w: subscription %s of %s is gone", bus.ErrUnavailable, sub, full)
	}
	total := int(ss.MsgBacklog)
	if limit == 0 || total == 0 {
		return nil, total, nil
	}
	internal, err := b.admin.Topics().GetInternalStatsWithContext(octx, *tn)
	if err != nil {
		return nil, 0, wrap(err, "get internal stats of %s", full)
	}
	cs, ok := internal.Cursors[sub]
	if !ok {
		return nil, 0, fmt.Errorf("pulsarbus: %w: no cursor %s on %s", bus.ErrUnavailable, sub, full)
	}
	from, err := parsePosition(cs.MarkDeletePosition)
	if err != nil {
		return nil, 0, fmt.Errorf("pulsarbus: cursor %s of %s: %w", sub, full, err)
	}
	deleted, err := parseRanges(cs.IndividuallyDeletedMessages)
	if err != nil {
		return nil, 0, fmt.Errorf("pulsarbus: cursor %s of %s: %w", sub, full, err)
	}
	ro := bus.ReaderOptions{Topic: full}
	if from.entry >= 0 {
		ro.StartID = pulsar.NewMessageID(from.ledger, from.entry, -1, 0).Serialize()
	}
	rd, err := b.Reader(ctx, ro)
	if err != nil {
		return nil, 0, err
	}
	defer rd.Close()
	var out []*bus.Message
	for len(out) < limit {
		more, err := rd.HasNext(ctx)
		if err != nil {
			return nil, 0, err
		}
		if !more {
			// The whole backlog was read: its size is exact (msgBacklog
			// also counts the markers of transactions and the messages of
			// aborted ones).
			return out, len(out), nil
		}
		m, err := rd.Next(ctx)
		if err != nil {
			return nil, 0, err
		}
		id, err := pulsar.DeserializeMessageID(m.ID)
		if err != nil {
			return nil, 0, fmt.Errorf("pulsarbus: backlog of %s: %w", full, err)
		}
		p := position{id.LedgerID(), id.EntryID()}
		if !p.after(from) || deleted.has(p) {
			continue
		}
		out = append(out, m)
	}
	return out, max(total, len(out)), nil
}

// Acknowledge implements bus.Backlogs.
func (b *Bus) Acknowledge(ctx context.Context, topic, sub string, t bus.Tx, ids ...bus.MessageID) error {
	var txn pulsar.Transaction
	if t != nil {
		x, ok := t.(*tx)
		if !ok {
			return fmt.Errorf("%w: transaction %T was not made by the Pulsar bus", bus.ErrBadOptions, t)
		}
		txn = x.t
	}
	pids := make([]pulsar.MessageID, 0, len(ids))
	for _, raw := range ids {
		id, err := pulsar.DeserializeMessageID(raw)
		if err != nil {
			return fmt.Errorf("%w: %s is not a Pulsar message id: %v", bus.ErrBadOptions, bus.FormatMessageID(raw), err)
		}
		// The acknowledging consumer is on a topic without partitions.
		pids = append(pids, pulsar.NewMessageID(id.LedgerID(), id.EntryID(), id.BatchIdx(), 0))
	}
	octx, cancel := b.opCtx(ctx)
	defer cancel()
	_, full, err := b.backlogTopic(octx, topic, sub)
	if err != nil {
		return err
	}
	a, err := b.acker(octx, full, sub)
	if err != nil {
		return err
	}
	for _, id := range pids {
		done := make(chan error, 1)
		go func() {
			if txn != nil {
				done <- a.c.AckWithTxn(entryMessage{id: id}, txn)
			} else {
				done <- a.c.AckID(id)
			}
		}()
		select {
		case err := <-done:
			if err != nil && txn != nil && !errors.Is(err, bus.ErrTxFailed) {
				// The broker refuses a transactional acknowledgement of a
				// message acknowledged already, or pending in another
				// transaction (TransactionConflict).
				return fmt.Errorf("pulsarbus: acknowledge %v on %s of %s in transaction %v: %w: %w", id, sub, full, txn.GetTxnID(), bus.ErrTxFailed, err)
			}
			if err != nil {
				return wrap(err, "acknowledge %v on %s of %s", id, sub, full)
			}
		case <-octx.Done():
			return wrap(octx.Err(), "acknowledge %v on %s of %s", id, sub, full)
		}
	}
	return nil
}

// acker is the consumer Acknowledge uses on one subscription.
type acker struct {
	b   *Bus
	key string
	c   pulsar.Consumer
}

var (
	ackersMu sync.Mutex
	ackers   = map[*Bus]map[string]*acker{}
)

func (a *acker) closeByBus() {
	ackersMu.Lock()
	delete(ackers[a.b], a.key)
	if len(ackers[a.b]) == 0 {
		delete(ackers, a.b)
	}
	ackersMu.Unlock()
	a.c.Close()
}

func (b *Bus) acker(ctx context.Context, full, sub string) (*acker, error) {
	key := full + "\x00" + sub
	ackersMu.Lock()
	a := ackers[b][key]
	ackersMu.Unlock()
	if a != nil {
		return a, nil
	}
	type res struct {
		c   pulsar.Consumer
		err error
	}
	ch := make(chan res, 1)
	go func() {
		c, err := b.client.Subscribe(pulsar.ConsumerOptions{
			Topic: full, SubscriptionName: sub, Type: pulsar.Shared, Name: "pulsaga-backlog-acker",
			SubscriptionInitialPosition: pulsar.SubscriptionPositionEarliest,
			EnableZeroQueueConsumer:     true, AckWithResponse: true,
		})
		ch <- res{c, err}
	}()
	var c pulsar.Consumer
	select {
	case r := <-ch:
		if r.err != nil {
			return nil, wrap(r.err, "open a consumer of %s on %s", sub, full)
		}
		c = r.c
	case <-ctx.Done():
		go func() {
			if r := <-ch; r.err == nil && r.c != nil {
				r.c.Close()
			}
		}()
		return nil, wrap(ctx.Err(), "open a consumer of %s on %s", sub, full)
	}
	ackersMu.Lock()
	if have := ackers[b][key]; have != nil {
		ackersMu.Unlock()
		c.Close()
		return have, nil
	}
	a = &acker{b: b, key: key, c: c}
	if ackers[b] == nil {
		ackers[b] = map[string]*acker{}
	}
	ackers[b][key] = a
	ackersMu.Unlock()
	if err := b.register(a); err != nil {
		a.closeByBus()
		return nil, fmt.Errorf("pulsarbus: acknowledge on %s: %w", full, err)
	}
	return a, nil
}

// position is a managed-ledger position (ledger:entry).
type position struct{ ledger, entry int64 }

func (p position) after(q position) bool {
	return p.ledger > q.ledger || p.ledger == q.ledger && p.entry > q.entry
}

func parsePosition(s string) (position, error) {
	var p position
	if _, err := fmt.Sscanf(s, "%d:%d", &p.ledger, &p.entry); err != nil {
		return p, fmt.Errorf("position %q: %w", s, err)
	}
	return p, nil
}

// ranges are a cursor's individually deleted messages: each range
// (from..to] holds the positions after from up to and including to.
type ranges [][2]position

var rangeRE = regexp.MustCompile(`\((-?\d+):(-?\d+)\.\.(-?\d+):(-?\d+)\]`)

func parseRanges(s string) (ranges, error) {
	var out ranges
	for _, m := range rangeRE.FindAllStringSubmatch(s, -1) {
		var n [4]int64
		for i := range n {
			v, err := strconv.ParseInt(m[i+1], 10, 64)
			if err != nil {
				return nil, fmt.Errorf("deleted range %q: %w", m[0], err)
			}
			n[i] = v
		}
		out = append(out, [2]position{{n[0], n[1]}, {n[2], n[3]}})
	}
	if s != "" && s != "[]" && len(out) == 0 {
		return nil, fmt.Errorf("cannot read the deleted ranges %q", s)
	}
	return out, nil
}

func (r ranges) has(p position) bool {
	for _, x := range r {
		if p.after(x[0]) && !p.after(x[1]) {
			return true
		}
	}
	return false
}
