package e2e

import (
	"strings"
	"testing"
)

// TestBrokerProblemsCounted: the broker's warnings and errors about the
// test's namespace are counted once per kind (numbers aside), the most
// frequent first; other namespaces' lines and the "already exists" of
// every component creating its topics are left out. The lines are the
// CI broker's of 2026-12-04 01:19 (Pulsar 4.0.7's stuck transaction
// buffer on the decisions topic, apache/pulsar#24945).
func TestBrokerProblemsCounted(t *testing.T) {
	const ns = "crash-1796347145121581695"
	log := `2026-12-04T01:19:06,023 [pulsar-web-52-5] WARN  org.apache.pulsar.broker.admin.impl.PersistentTopicsBase - [null] Topic persistent://public/crash-1796347145121581695/decisions already exists
2026-12-04T01:19:06,675 [pulsar-io-20-2] ERROR org.apache.pulsar.broker.transaction.buffer.impl.TopicTransactionBuffer - [persistent://public/crash-1796347145121581695/decisions]Failed to change state of transaction buffer to Ready from NoSnapshot
2026-12-04T01:19:06,683 [pulsar-io-20-2] WARN  org.apache.pulsar.broker.service.persistent.PersistentTopic - [persistent://public/crash-1796347145121581695/decisions] Failed to persist msg in store: org.apache.pulsar.broker.service.BrokerServiceException$ServiceUnitNotReadyException: Transaction Buffer take first snapshot failed, the current state is: Ready
2026-12-04T01:19:06,684 [pulsar-io-20-1] WARN  org.apache.pulsar.broker.service.persistent.PersistentTopic - [persistent://public/crash-1796347145121581695/decisions] Failed to persist msg in store: org.apache.pulsar.broker.service.BrokerServiceException$ServiceUnitNotReadyException: Transaction Buffer take first snapshot failed, the current state is: Ready
2026-12-04T01:24:05,001 [pulsar-io-20-1] WARN  org.apache.pulsar.broker.service.persistent.PersistentTopic - [persistent://public/crash-1796347145121581695/decisions] Failed to persist msg in store: org.apache.pulsar.broker.service.BrokerServiceException$ServiceUnitNotReadyException: Transaction Buffer take first snapshot failed, the current state is: Ready
2026-12-04T01:19:06,694 [pulsar-io-20-2] WARN  org.apache.pulsar.broker.service.ServerCnx - [/127.0.0.1:54754] Failed to add producer to topic persistent://public/crash-1796347145121581695/decisions: producerId=7, Topic is temporarily unavailable
2026-12-04T01:19:06,721 [pulsar-io-20-1] WARN  org.apache.pulsar.broker.service.ServerCnx - [/127.0.0.1:41728] Failed to add producer to topic persistent://public/crash-1796347145121581695/decisions: producerId=8, Topic is temporarily unavailable
2026-12-04T01:19:07,000 [pulsar-io-20-1] WARN  org.apache.pulsar.broker.service.ServerCnx - something about persistent://public/crash-1/decisions
2026-12-04T01:19:07,000 [pulsar-io-20-1] INFO  org.apache.pulsar.broker.service.ServerCnx - [/127.0.0.1:41728] Created new producer on persistent://public/crash-1796347145121581695/decisions
`
	got := brokerProblemsIn(strings.NewReader(log), ns).top(6)
	want := []string{
		"    3× WARN PersistentTopic: [decisions] Failed to persist msg in store: BrokerServiceException$ServiceUnitNotReadyException: Transaction Buffer take first snapshot failed, the current state is: Ready (01:19:06–01:24:05)",
		"    2× WARN ServerCnx: [/#.#.#.#:#] Failed to add producer to topic decisions: producerId=#, Topic is temporarily unavailable (01:19:06)",
		"    1× ERROR TopicTransactionBuffer: [decisions]Failed to change state of transaction buffer to Ready from NoSnapshot (01:19:06)",
	}
	if len(got) != len(want) {
		t.Fatalf("got %d kinds, want %d: %v", len(got), len(want), got)
	}
	for i := range want {
		if got[i].String() != want[i] {
			t.Errorf("kind %d:\n got %s\nwant %s", i, got[i], want[i])
		}
	}
}
