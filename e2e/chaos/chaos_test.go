//go:build chaos

package chaos

import "testing"

// The frozen-owner and outage tests take several minutes each: they are
// behind the chaos build tag (make chaos-frozen, make chaos-outage), not in
// the test command.

// TestFrozenOwner freezes an owner (SIGSTOP) for longer than the broker
// takes to give its partitions to the standby, checks that the standby
// took them over and made progress, resumes the old owner (SIGCONT) and
// checks that nothing it wrote took effect: every event stream dense with
// one record per number, no status going back, every saga right with each
// effect once.
func TestFrozenOwner(t *testing.T) {
	runKit(t, FrozenOwnerConfig())
}

// TestBrokerOutage kills the broker in the middle of a run and keeps it
// down for a minute, six times the definitions' attempt timeout, while
// the service holds attempts: every saga must end as its scripts say and
// no unit may get an attempt its script does not use (OutageConfig).
func TestBrokerOutage(t *testing.T) {
	runKit(t, OutageConfig())
}
