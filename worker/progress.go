package worker

import (
	"context"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/rs/zerolog"

	"github.com/pulsaga/pulsaga/bus"
	"github.com/pulsaga/pulsaga/protocol"
)

// DefaultStartedAfter is the recommended Options.StartedAfter: work that
// ends within it sends no started report (its result proves the start),
// longer work costs one message more and gets its timeout counted from the
// start. See docs/protocol.md ("Started and heartbeats") for the figures.
const DefaultStartedAfter = time.Second

// minBeatInterval bounds how often a job heartbeats.
const minBeatInterval = 50 * time.Millisecond

type runKey struct{}

// jobRun is one job being run: it reports the start and the heartbeats of
// the job to the engine, on the producer its result goes to (so they reach
// the engine in order, before the result).
type jobRun struct {
	w         *Worker
	job       *Job
	p         bus.Producer
	log       zerolog.Logger
	startedAt time.Time
	token     uint64 // tells this start from other starts of the same command

	timer *time.Timer   // reports the start after StartedAfter
	quit  chan struct{} // stops the heartbeats

	mu       sync.Mutex
	reported bool // the started report is queued
	ended    bool // the result is about to be queued: no more reports
	progress bool // Heartbeat was called since the last heartbeat
	beats    int
}

// begin starts reporting on a job about to run.
func (w *Worker) begin(job *Job, p bus.Producer, log zerolog.Logger) *jobRun {
	jr := &jobRun{w: w, job: job, p: p, log: log, startedAt: w.opts.Clock().UTC(), token: rand.Uint64()}
	if w.opts.StartedAfter <= 0 || job.ScheduleTimeoutMS > 0 || job.Delivery > 0 {
		jr.reportStarted()
	} else {
		jr.timer = time.AfterFunc(w.opts.StartedAfter, jr.reportStarted)
	}
	if hb := job.HeartbeatTimeout(); hb > 0 {
		jr.quit = make(chan struct{})
		go jr.heartbeats(max(hb/3, minBeatInterval))
	}
	return jr
}

// stop ends the reports; the caller queues the result next.
func (jr *jobRun) stop() {
	if jr.timer != nil {
		jr.timer.Stop()
	}
	jr.mu.Lock()
	jr.ended = true
	jr.mu.Unlock()
	if jr.quit != nil {
		close(jr.quit)
	}
}

func (jr *jobRun) reportStarted() {
	jr.mu.Lock()
	defer jr.mu.Unlock()
	jr.startedLocked()
}

func (jr *jobRun) startedLocked() {
	if jr.reported || jr.ended {
		return
	}
	jr.reported = true
	p := protocol.ProgressFor(&jr.job.Command, jr.w.opts.Name, jr.w.opts.Clock())
	p.Delivery = jr.job.Delivery
	jr.send(protocol.TypeStarted, protocol.StartedID(jr.job.CommandID, jr.w.opts.Name, jr.token), p)
}

func (jr *jobRun) heartbeats(every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-jr.quit:
			return
		case <-t.C:
		}
		jr.mu.Lock()
		if !jr.ended {
			jr.startedLocked() // a heartbeat needs the start reported first
			if !jr.w.opts.ManualHeartbeat || jr.progress {
				jr.progress = false
				jr.beats++
				jr.send(protocol.TypeHeartbeat, protocol.HeartbeatID(jr.job.CommandID, jr.w.opts.Name, jr.token, jr.beats),
					protocol.ProgressFor(&jr.job.Command, jr.w.opts.Name, jr.w.opts.Clock()))
			}
		}
		jr.mu.Unlock()
	}
}

// send queues a report; a report that fails is only logged (the result,
// or the next heartbeat, says more).
func (jr *jobRun) send(typ, id string, p *protocol.Progress) {
	msg, err := jr.w.message(typ, id, &jr.job.Command, p)
	if err != nil {
		jr.log.Warn().Err(err).Str("type", typ).Msg("progress report not encoded")
		return
	}
	jr.p.SendAsync(context.Background(), msg, func(_ bus.MessageID, err error) {
		if err != nil {
			jr.log.Debug().Err(err).Str("type", typ).Msg("progress report not sent")
		}
	})
}

// Heartbeat tells the engine that the job its ctx belongs to is making
// progress. With Options.ManualHeartbeat the worker heartbeats a running
// job only after such calls (at most one heartbeat per third of the
// command's heartbeat timeout, so calling it often is cheap); otherwise
// the worker heartbeats on its own and this call changes nothing. It does
// nothing outside a handler or for a command without a heartbeat timeout.
func Heartbeat(ctx context.Context) {
	jr, ok := ctx.Value(runKey{}).(*jobRun)
	if !ok {
		return
	}
	jr.mu.Lock()
	jr.progress = true
	jr.mu.Unlock()
}
