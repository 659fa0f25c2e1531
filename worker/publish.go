package worker

import (
	"context"
	"errors"
	"time"

	"github.com/rs/zerolog"

	"github.com/pulsaga/pulsaga/bus"
	"github.com/pulsaga/pulsaga/protocol"
)

// Results are pipelined: a job's result is queued on its producer and the
// worker takes the next job at once; when the broker confirms the result
// its command is acknowledged (or released, if the send failed) by one
// goroutine. At most MaxPendingResults wait for their confirmation.

// settlement is the outcome of sending one result.
type settlement struct {
	msg *bus.Message
	err error
	log zerolog.Logger
}

// ackTimeout bounds one acknowledgement.
const ackTimeout = 30 * time.Second

// startSettling starts the goroutine that acknowledges commands whose
// results the broker confirmed; it ends when w.settled is closed and
// drained.
func (w *Worker) startSettling(cons bus.Consumer) <-chan struct{} {
	w.settled = make(chan settlement, w.opts.MaxPendingResults)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for s := range w.settled {
			if s.err != nil {
				s.log.Warn().Err(s.err).Msg("could not publish the result; the command will be delivered again")
				cons.Nack(s.msg, s.err)
			} else {
				ctx, cancel := context.WithTimeout(context.Background(), ackTimeout)
				if err := cons.Ack(ctx, s.msg); err != nil {
					s.log.Warn().Err(err).Msg("ack failed; the command may be delivered again (same idempotency key)")
				}
				cancel()
			}
			<-w.pending
			w.unacked.Done()
		}
	}()
	return done
}

// publish queues a job's result; its command is settled when the broker
// answers.
func (w *Worker) publish(cons bus.Consumer, msg *bus.Message, jr *jobRun, res *protocol.Result, log zerolog.Logger) {
	c := &jr.job.Command
	out, err := w.message(protocol.TypeResult, "result:"+c.CommandID, c, res)
	if err == nil {
		if err = bus.CheckSize(jr.p.Topic(), out); errors.Is(err, bus.ErrTooLarge) {
			// Running the job again would make the same result: say so instead.
			log.Warn().Err(err).Msg("result too large for the bus; reporting a smaller one")
			out, err = w.message(protocol.TypeResult, "result:"+c.CommandID, c, shrink(res))
		}
	}
	if err != nil {
		log.Warn().Err(err).Msg("could not encode the result; the command will be delivered again")
		cons.Nack(msg, err)
		return
	}
	w.pending <- struct{}{}
	w.unacked.Add(1)
	jr.p.SendAsync(context.Background(), out, func(_ bus.MessageID, err error) {
		w.settled <- settlement{msg: msg, err: err, log: log}
	})
}

// drain waits until every queued result is confirmed or failed and its
// command settled; after ShutdownGrace it closes the producers, which
// fails what they still hold (those commands are delivered again).
func (w *Worker) drain() {
	done := make(chan struct{})
	go func() {
		w.unacked.Wait()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(w.opts.ShutdownGrace):
		w.log.Warn().Dur("waited", w.opts.ShutdownGrace).Msg("results still unconfirmed at shutdown; closing the producers")
		w.closeProducers()
		<-done
	}
}
