package bus

import (
	"fmt"
	"strings"
)

// Namespace is the Pulsar tenant and namespace the engine's topics live in.
// Short topic names ("events") resolve to "persistent://tenant/ns/events".
type Namespace struct {
	Tenant    string
	Namespace string
}

// DefaultNamespace is public/pulsaga.
var DefaultNamespace = Namespace{Tenant: "public", Namespace: "pulsaga"}

// String is "tenant/namespace".
func (n Namespace) String() string { return n.Tenant + "/" + n.Namespace }

// Topic resolves a topic name: a full name ("persistent://...",
// "non-persistent://...") is returned unchanged, a short one is put in n.
func (n Namespace) Topic(name string) string {
	if strings.Contains(name, "://") {
		return name
	}
	return fmt.Sprintf("persistent://%s/%s/%s", n.Tenant, n.Namespace, name)
}

// Partition names partition i of a partitioned topic.
func (n Namespace) Partition(topic string, i int) string {
	return fmt.Sprintf("%s-partition-%d", n.Topic(topic), i)
}

// KeyPartition is the partition of a partitioned topic of n partitions that
// a message with this key goes to, on both buses: Java's String.hashCode
// over the key's bytes, modulo n, as pulsar-client-go's default router
// (other clients may route differently: Pulsar's Java client defaults to
// Murmur3; so routing that must not depend on the sender's client names
// the partition, see ProducerOptions.Topic). A message without a key goes
// to any partition; n <= 1 is partition 0.
func KeyPartition(key string, n int) int {
	if n <= 1 {
		return 0
	}
	var h uint32
	for i := 0; i < len(key); i++ {
		h = 31*h + uint32(key[i])
	}
	return int(h % uint32(n))
}

// ShortName is the last path element of a topic name.
func ShortName(topic string) string {
	if i := strings.LastIndexByte(topic, '/'); i >= 0 {
		return topic[i+1:]
	}
	return topic
}

// BaseTopic strips a "-partition-N" suffix.
func BaseTopic(topic string) string {
	if i := strings.LastIndex(topic, "-partition-"); i >= 0 {
		rest := topic[i+len("-partition-"):]
		if rest != "" && strings.Trim(rest, "0123456789") == "" {
			return topic[:i]
		}
	}
	return topic
}

// Validate checks the names are usable in Pulsar topic names.
func (n Namespace) Validate() error {
	for _, p := range []struct{ key, v string }{{"tenant", n.Tenant}, {"namespace", n.Namespace}} {
		if p.v == "" {
			return fmt.Errorf("%w: %s is empty", ErrBadOptions, p.key)
		}
		if strings.ContainsAny(p.v, "/: ") {
			return fmt.Errorf("%w: %s %q must not contain '/', ':' or spaces", ErrBadOptions, p.key, p.v)
		}
	}
	return nil
}

// MaxPayloadBytes is the largest payload both buses accept. Pulsar's default
// maxMessageSize is 5 MiB including metadata; 64 KiB are left for headers.
// Larger data belongs in an external store, referenced from the message
// (claim check).
const MaxPayloadBytes = 5*1024*1024 - 64*1024

// CheckSize returns an error wrapping ErrTooLarge when msg is over the limit.
func CheckSize(topic string, msg *OutMessage) error {
	size := len(msg.Payload) + len(msg.Key)
	for k, v := range msg.Properties {
		size += len(k) + len(v)
	}
	if size > MaxPayloadBytes {
		return fmt.Errorf("%w: %d bytes to %s, the limit is %d bytes; store large data elsewhere and send a reference",
			ErrTooLarge, size, topic, MaxPayloadBytes)
	}
	return nil
}
