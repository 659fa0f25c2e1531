//go:build chaos

package chaos

import "testing"

// The frozen-owner test takes about seven minutes: it is behind the chaos
// build tag (make chaos-frozen), not in the test command.

// TestFrozenOwner freezes an owner (SIGSTOP) for longer than the broker
// takes to give its partitions to the standby, checks that the standby
// took them over and made progress, resumes the old owner (SIGCONT) and
// checks that nothing it wrote took effect: every event stream dense with
// one record per number, no status going back, every saga right with each
// effect once.
func TestFrozenOwner(t *testing.T) {
	runKit(t, FrozenOwnerConfig())
}
