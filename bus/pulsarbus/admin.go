package pulsarbus

import (
	"context"
	"errors"
	"fmt"
	"net/http"

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
		if !isStatus(err, http.StatusConflict) || attempt > 0 {
			return wrap(err, "create topic %s with %d partitions", full, want)
		}
		// Created meanwhile by someone else: check it is what we want.
	}
}

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
