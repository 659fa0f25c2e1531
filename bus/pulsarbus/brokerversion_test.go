package pulsarbus_test

import (
	"strings"
	"testing"
	"time"

	"github.com/pulsaga/pulsaga/bus/pulsarbus"
)

func TestKnownBrokerProblem(t *testing.T) {
	for _, tc := range []struct {
		version string
		bug     bool
	}{
		{"3.1.2", false},
		{"3.2.0", true},
		{"3.3.6", true},
		{"4.0.7", true},
		{"4.0.7-SNAPSHOT", true},
		{"4.0.8", false},
		{"4.1.1", true}, // the fix of the 4.1 line is not known here: a warning to check
		{"4.2.0", false},
		{"4.2.4", false},
		{"5.0.0", false},
		{"", false},
		{"garbage", false},
	} {
		t.Run(tc.version, func(t *testing.T) {
			got := pulsarbus.KnownBrokerProblem(tc.version)
			if (got != "") != tc.bug {
				t.Fatalf("KnownBrokerProblem(%q) = %q, want a problem: %v", tc.version, got, tc.bug)
			}
			if tc.bug && !strings.Contains(got, "apache/pulsar#24945") {
				t.Fatalf("the problem does not name the upstream fix: %q", got)
			}
		})
	}
}

// TestBrokerVersion: the broker names its version, in a form
// KnownBrokerProblem reads.
func TestBrokerVersion(t *testing.T) {
	b := newBus(t)
	v, err := b.BrokerVersion(ctxFor(t, 30*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	parts := strings.Split(strings.SplitN(v, "-", 2)[0], ".")
	if len(parts) != 3 {
		t.Fatalf("broker version %q is not major.minor.patch", v)
	}
	t.Logf("broker %s; known problem: %q", v, pulsarbus.KnownBrokerProblem(v))
}
