package engine

import (
	"time"
)

// Retention of finished processes without a timer each. A finished process
// stays (frozen, frozen.go) for Retention, so that a second start with its
// id is refused and a late result finds it; then its snapshot and status row
// get tombstones and it leaves memory. Instead of one retention timer per
// process (a message to the timer relay and one back, per saga), the loop
// keeps the finished processes in buckets by the minute their retention
// ends; once a second the sweep takes the buckets that have passed.

// bucketWidth is the width of the buckets for a retention: a sixtieth of
// it, between a second (the sweep's period) and a minute. A process leaves
// at most one bucket late.
func bucketWidth(retention time.Duration) time.Duration {
	return min(max(retention/60, time.Second), time.Minute)
}

// expiry is a finished process due to expire, at the sequence number it
// finished with (re-opened since — a compensated child — it is not expired
// by this entry).
type expiry struct {
	pid string
	seq int64
}

// retention is the loop's buckets of finished processes.
type retention struct {
	buckets map[int64][]expiry // by bucket end (Unix seconds)
	width   time.Duration
	n       int
}

func newRetention(width time.Duration) *retention {
	return &retention{buckets: map[int64][]expiry{}, width: width}
}

// add schedules img's expiry at.
func (r *retention) add(img *image, at time.Time) {
	k := at.Truncate(r.width).Add(r.width).Unix()
	r.buckets[k] = append(r.buckets[k], expiry{img.pid, img.seq})
	r.n++
}

// due removes and returns the entries of the buckets ended by now.
func (r *retention) due(now time.Time) []expiry {
	var out []expiry
	for k, b := range r.buckets {
		if k <= now.Unix() {
			out = append(out, b...)
			delete(r.buckets, k)
			r.n -= len(b)
		}
	}
	return out
}

// sweepRetention queues the finished processes whose retention has passed
// for expiry in the next batches.
func (o *Orchestrator) sweepRetention(now time.Time) {
	for _, e := range o.retention.due(now) {
		img := o.images[e.pid]
		if img == nil || img.seq != e.seq || !img.ended() {
			continue
		}
		o.expiring = append(o.expiring, img)
	}
}
