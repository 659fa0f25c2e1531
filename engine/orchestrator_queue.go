package engine

// Backpressure (remote decider mode): at most MaxOutstanding decisions in
// flight per instance.
//
// A process needs a decision when it has pending events, no decision
// outstanding and is not finished. It then takes a free slot at once or
// waits in a FIFO queue; while it waits, its new events are appended to its
// pending events, so when its turn comes it gets one task with all of them.
// A slot is taken when the task is issued (its decision timeout counts from
// then, not from when the process joined the queue) and freed when its
// result is applied (or rejected), or when the process's partition is lost.
// A re-issue of a task left unanswered (orchestrator_remote.go) keeps its
// slot.
//
// The queue is not stored: a process's pending events are in its snapshot,
// so loading a partition queues again every process that has pending events
// and no outstanding decision, and counts those with one as in flight.

// slots are the decision slots and the queue of processes waiting for one.
// They belong to the orchestrator's loop.
type slots struct {
	max      int
	inflight map[string]bool
	queue    []string
	head     int
	queued   map[string]bool
	// overdue are processes whose outstanding task is due to be issued
	// again (orchestrator_remote.go).
	overdue []string
}

func newSlots(max int) *slots {
	return &slots{max: max, inflight: map[string]bool{}, queued: map[string]bool{}}
}

// enqueue puts pid at the back of the queue unless it is queued already.
func (s *slots) enqueue(pid string) {
	if s.queued[pid] {
		return
	}
	s.queued[pid] = true
	s.queue = append(s.queue, pid)
}

// pop takes the process at the front of the queue (skipping the places
// of processes taken out of turn: unqueue).
func (s *slots) pop() (string, bool) {
	for s.head < len(s.queue) {
		pid := s.queue[s.head]
		s.queue[s.head] = ""
		s.head++
		if s.head == len(s.queue) {
			s.queue, s.head = s.queue[:0], 0
		} else if s.head >= 1024 && s.head*2 >= len(s.queue) {
			s.queue, s.head = append([]string(nil), s.queue[s.head:]...), 0
		}
		if s.queued[pid] {
			delete(s.queued, pid)
			return pid, true
		}
	}
	return "", false
}

// unqueue takes pid out of turn; its place in the queue is skipped.
func (s *slots) unqueue(pid string) { delete(s.queued, pid) }

func (s *slots) free() bool         { return len(s.inflight) < s.max }
func (s *slots) waiting() bool      { return len(s.queued) > 0 }
func (s *slots) take(pid string)    { s.inflight[pid] = true }
func (s *slots) release(pid string) { delete(s.inflight, pid) }

// forget drops the processes keep says no to from the slots and the queue
// (their partition was lost).
func (s *slots) forget(keep func(pid string) bool) {
	for pid := range s.inflight {
		if !keep(pid) {
			delete(s.inflight, pid)
		}
	}
	q := make([]string, 0, len(s.queue)-s.head)
	for _, pid := range s.queue[s.head:] {
		if keep(pid) {
			q = append(q, pid)
		} else {
			delete(s.queued, pid)
		}
	}
	s.queue, s.head = q, 0
}

// issueQueued issues tasks to queued processes while slots are free
// (remote mode). Inline, the queue holds only processes loaded with pending
// events (written by a remote-mode orchestrator): they are decided at once.
//
// At most room processes are decided or issued (adaptive.go); the others
// keep their place in the queue.
func (o *Orchestrator) issueQueued(b *batch, room int) {
	var busy []string // in an uncommitted batch: their turn comes after it
	defer func() {
		for _, pid := range busy {
			o.slots.enqueue(pid)
		}
	}()
	for room > 0 && (o.slots.free() || !o.m.remote) {
		pid, ok := o.slots.pop()
		if !ok {
			return
		}
		img := o.images[pid]
		if img == nil || !o.live(img) || !img.needsDecision() {
			continue // gone, or issued already
		}
		if o.busy[pid] > 0 && b.fx[img] == nil {
			busy = append(busy, pid)
			continue
		}
		room--
		b.units++
		if !o.m.remote {
			o.m.decide(img, b.now, b.effects(img))
			continue
		}
		o.m.issue(img, b.now, b.effects(img))
		o.slots.take(pid) // again in emit: counted once
	}
}

// issueTouched issues tasks, while slots are free, to the processes in b
// that wait for one (remote mode), beyond issueQueued's room: they are in
// the batch already, so a task costs it one message and no process more.
// Without it a full batch (its room taken by inputs) recorded the events
// and a later batch issued their task: a batch of latency per decision
// under load, and the events' records apart from the decision's even when
// the answer came in time (orchestrator_hold.go). The process's place in
// the queue is left behind and skipped (slots.pop).
func (o *Orchestrator) issueTouched(b *batch) {
	if !o.m.remote {
		return
	}
	for _, img := range b.touched {
		if !o.slots.free() {
			return
		}
		if o.slots.queued[img.pid] && o.live(img) && img.needsDecision() {
			o.slots.unqueue(img.pid)
			o.m.issue(img, b.now, b.fx[img])
			o.slots.take(img.pid)
			b.units++
		}
	}
}

// DecisionQueue returns the decisions in flight (issued, not yet answered)
// and the processes waiting for a slot, as of the last batch committed (the
// batches still on their way are counted as they were built). It is safe to
// call from any goroutine.
func (o *Orchestrator) DecisionQueue() (outstanding, queued int) {
	o.statsMu.Lock()
	defer o.statsMu.Unlock()
	return o.outstanding, o.queued
}

// publishQueue makes the loop's slot counts visible to DecisionQueue and
// the observer.
func (o *Orchestrator) publishQueue() {
	out, q := len(o.slots.inflight), len(o.slots.queued)
	o.statsMu.Lock()
	changed := out != o.outstanding || q != o.queued
	o.outstanding, o.queued = out, q
	o.statsMu.Unlock()
	if qo, ok := o.opts.Observer.(DecisionQueueObserver); ok && changed {
		qo.DecisionQueue(out, q)
	}
}
