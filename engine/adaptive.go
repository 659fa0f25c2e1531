package engine

import (
	"math"
	"time"
)

// Adaptive batches. A batch is one transaction, and the broker aborts a
// transaction that stays open longer than OrchestratorOptions.TxTimeout.
// On an overloaded machine a batch of BatchSize inputs can take longer
// than that to send: its transaction times out, the orchestrator starts
// over, and the inputs come back all at once — as big a batch as before,
// which fails the same way, for ever (the chaos kit saw no saga progress
// for minutes). So the size of a batch follows what the machine manages:
//
//   - a batch whose flight fails is halved: the next batch takes at most
//     half the work units of the one that failed;
//   - a batch that took longer than the target (a third of TxTimeout) makes
//     the limit shrink to what would have fit in the target at the
//     measured pace;
//   - a batch that was full (the limit bound it) and took less than half
//     the target lets the limit grow by an eighth (at least one unit), so
//     the engine finds its way back to full batches when the load goes.
//
// A work unit is one input, or one process the batch snapshots by the idle
// sweep or whose timer it recovers after a load: each costs a few sends
// and acknowledgements of the transaction. The limit lives as long as the
// orchestrator, across the restarts of its subscription.
type adaptive struct {
	min, max int
	cur      float64
	target   time.Duration
	// failures and shrinks count the decreases (tests, logs).
	failures, shrinks int
}

func newAdaptive(maxUnits int, txTimeout time.Duration) *adaptive {
	return &adaptive{min: 1, max: maxUnits, cur: float64(maxUnits), target: txTimeout / 3}
}

// limit is how many work units the next batch may take.
func (a *adaptive) limit() int {
	return max(a.min, min(a.max, int(math.Floor(a.cur))))
}

// failed: a flight of units work units did not commit.
func (a *adaptive) failed(units int) {
	a.failures++
	a.cur = max(float64(a.min), min(a.cur, float64(units))/2)
}

// succeeded: a flight of units work units committed, took after its
// transaction began.
func (a *adaptive) succeeded(units int, took time.Duration) {
	if units <= 0 {
		return
	}
	switch {
	case took > a.target:
		fit := float64(units) * float64(a.target) / float64(took)
		if fit < a.cur {
			a.cur = max(float64(a.min), fit)
			a.shrinks++
		}
	case units >= a.limit() && took < a.target/2:
		a.cur = min(float64(a.max), a.cur+max(1, a.cur/8))
	}
}
