//go:build chaos

package chaos

import "testing"

// The frozen-owner test takes about seven minutes: it is behind the chaos
// build tag (make chaos-frozen), not in the test command. TestChaosShort
// joins the test command (no tag) as soon as per-step idempotency keys
// (issue #11 item 1) are on main: without them it fails, honestly (steps
// done under two or three per-attempt keys).

// TestChaosShort is the kit's short run, for the test command
// (ShortConfig: 150 sagas with known outcomes over a minute, kill -9 of a
// random component every 3 to 5s, the broker killed and restarted, an
// owner frozen; about three minutes on two cores). It fails when a single
// saga ends wrong or does not end.
func TestChaosShort(t *testing.T) {
	runKit(t, ShortConfig())
}

// TestFrozenOwner freezes an owner (SIGSTOP) for longer than the broker
// takes to give its partitions to the standby, checks that the standby
// took them over and made progress, resumes the old owner (SIGCONT) and
// checks that nothing it wrote took effect: every event stream dense with
// one record per number, no status going back, every saga right with each
// effect once.
func TestFrozenOwner(t *testing.T) {
	runKit(t, FrozenOwnerConfig())
}
