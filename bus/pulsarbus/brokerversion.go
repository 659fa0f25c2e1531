package pulsarbus

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
)

// BrokerVersion asks the broker (its admin API) which Pulsar version it
// runs, e.g. "4.2.4".
func (b *Bus) BrokerVersion(ctx context.Context) (string, error) {
	rc, err := b.restClient()
	if err != nil {
		return "", err
	}
	resp, err := rc.MakeRequestWithContext(ctx, http.MethodGet, "/admin/v2/brokers/version")
	if err != nil {
		return "", wrap(err, "broker version")
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 256))
	if err != nil {
		return "", wrap(err, "broker version")
	}
	return strings.TrimSpace(string(body)), nil
}

// KnownBrokerProblem says what a Pulsar version is known to get wrong that
// pulsaga depends on, or "" when nothing is known.
//
// Pulsar 3.2 to 4.0.7 chain every transactional write to a topic on the
// one before it (TopicTransactionBuffer): once one fails — two clients'
// first transactional writes racing for the topic's first buffer snapshot,
// or a send in a transaction already ended, as a deposed orchestrator's
// late batch is — every later transactional write to that topic fails
// too, until the topic is unloaded. Every orchestrator writing that topic
// (status, decisions, jobs, timers) then fails each batch and starts
// over, for ever. Fixed by apache/pulsar#24945 in 4.0.8 and 4.2. The bus
// unloads such a topic when it sees the refusal (txbuffer.go), so the
// warning says what an operator should upgrade, not that the engine stops.
func KnownBrokerProblem(version string) string {
	major, minor, _, ok := parseVersion(version)
	if !ok {
		return ""
	}
	const bug = "its transaction buffer can refuse every transactional write to a topic after one failed " +
		"(apache/pulsar#24945): orchestrators writing that topic stop until it is unloaded"
	switch {
	case stuckTxBufferVersion(version):
		return fmt.Sprintf("Pulsar %s: %s; use 4.0.8 or later, or 4.2", version, bug)
	case major == 4 && minor == 1:
		return fmt.Sprintf("Pulsar %s: check that it has the fix of apache/pulsar#24945, else %s; 4.0.8 and 4.2 have it", version, bug)
	}
	return ""
}

// stuckTxBufferVersion says whether a Pulsar version is one known to have
// apache/pulsar#24945: 3.2 up to 4.0.7.
func stuckTxBufferVersion(version string) bool {
	major, minor, patch, ok := parseVersion(version)
	v := major*1_000_000 + minor*1_000 + patch
	return ok && v >= 3_002_000 && v < 4_000_008
}

// parseVersion reads "major.minor.patch" with an optional suffix
// ("4.0.7", "4.2.0-SNAPSHOT").
func parseVersion(s string) (major, minor, patch int, ok bool) {
	s, _, _ = strings.Cut(strings.TrimSpace(s), "-")
	parts := strings.Split(s, ".")
	if len(parts) != 3 {
		return 0, 0, 0, false
	}
	var n [3]int
	for i, p := range parts {
		v, err := strconv.Atoi(p)
		if err != nil || v < 0 {
			return 0, 0, 0, false
		}
		n[i] = v
	}
	return n[0], n[1], n[2], true
}
