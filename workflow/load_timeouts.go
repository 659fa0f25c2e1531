package workflow

import "time"

// Keys of the progress timeouts, accepted in defaults, in command steps and
// in compensate blocks (docs/language.md, "Time counts from the start of
// work").
const (
	keyScheduleTimeout  = "schedule_timeout"
	keyHeartbeatTimeout = "heartbeat_timeout"
)

// progressTimeouts reads schedule_timeout and heartbeat_timeout from fields
// into *schedule and *heartbeat (which hold the inherited values), and
// checks that a heartbeat timeout set here is shorter than the attempt
// timeout it goes with.
func (l *loader) progressTimeouts(fields map[string]*field, path string, timeout time.Duration, schedule, heartbeat *time.Duration) {
	if f := fields[keyScheduleTimeout]; f != nil && f.val != nil {
		if d, ok := l.duration(f, join(path, keyScheduleTimeout), keyScheduleTimeout); ok {
			*schedule = d
		}
	}
	f := fields[keyHeartbeatTimeout]
	if f == nil || f.val == nil {
		return
	}
	d, ok := l.duration(f, join(path, keyHeartbeatTimeout), keyHeartbeatTimeout)
	if !ok {
		return
	}
	*heartbeat = d
	if timeout > 0 && d >= timeout {
		l.errorAt(f.valPos, join(path, keyHeartbeatTimeout),
			"a heartbeat timeout is for noticing a dead worker before the attempt timeout; make it shorter than timeout or remove it",
			"heartbeat_timeout %s is not shorter than the attempt timeout %s", d, timeout)
	}
}
