// Package worker is the Go SDK for service workers: register a handler per
// command, run, and the worker takes commands from the service's job queue,
// calls the handler with a context carrying the job's identity and deadline,
// and publishes the result back to the engine. Any language can do the same
// with a plain Pulsar client (docs/protocol.md); this package is the
// reference implementation.
package worker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"runtime/debug"
	"strings"
	"sync"
	"time"

	"github.com/rs/zerolog"

	"github.com/pulsaga/pulsaga/bus"
	"github.com/pulsaga/pulsaga/protocol"
)

// Options configure a Worker.
type Options struct {
	// Service is the job queue to serve (topic "jobs.<service>").
	Service string
	// Subscription is shared by every instance of the service
	// (default "workers").
	Subscription string
	// Name identifies this instance in results and logs (default: service).
	Name string
	// Concurrency is the number of jobs run at once (default 8).
	Concurrency int
	// ShutdownGrace is how long Run waits, once its context is done, for
	// jobs in hand to finish; jobs still running then are released to other
	// instances, not failed (default 10s).
	ShutdownGrace time.Duration
	// MaxDeliveries dead-letters a command delivered that many times without
	// being acknowledged (default 10). A delivery to an instance that crashes
	// or stops holding the command within CrashWindow of its start counts
	// too (a command that kills its worker is dead-lettered, not
	// redelivered for ever), unless DisableDurableDeliveryCount is set.
	MaxDeliveries int
	// DisableDurableDeliveryCount stops counting the deliveries to instances
	// that crash or stop holding a command (bus.SubscribeOptions
	// CountDeliveriesDurably off): MaxDeliveries then counts only failed
	// and timed-out attempts. Set it only when handlers cannot crash their
	// process (a panic is recovered and counts as a failure either way).
	DisableDurableDeliveryCount bool
	// EagerDeliveryRecords records every delivery on the
	// "jobs.<service>-<subscription>-deliveries" topic before its handler
	// runs (a broker round trip, and a tombstone once settled: 2 messages
	// per command). By default the records are lazy
	// (bus.SubscribeOptions.LazyDeliveryRecords): only a command delivered
	// again, or received in the instance's first DeliveryRecordWarmUp, is
	// recorded, so the clean path writes none; a command that kills every
	// instance taking it is still dead-lettered, after up to one uncounted
	// crash per instance running past its warm-up.
	EagerDeliveryRecords bool
	// DeliveryRecordWarmUp is how long after it starts an instance records
	// every delivery (default 10s; negative: never; see
	// bus.SubscribeOptions.DeliveryRecordWarmUp).
	DeliveryRecordWarmUp time.Duration
	// CrashWindow charges an instance's death only to the commands it began
	// less than this long before (default DefaultCrashWindow; negative:
	// every death counts): a command still running after CrashWindow is
	// recorded as survived, so an instance killed for another reason while
	// it runs long work does not bring its commands nearer to
	// MaxDeliveries, and the quick deaths charged to it before are cleared
	// (only consecutive ones count: a restarted instance takes a burst of
	// redeliveries, and a poison among them kills it with them all). Other
	// deaths count towards 10 × MaxDeliveries only.
	CrashWindow time.Duration
	// NackDelay is how long a released command waits before redelivery
	// (default 1s).
	NackDelay time.Duration
	// StartedAfter is how long a job runs before the worker reports it
	// started (the engine's attempt timeout counts from that report). A job
	// that ends sooner sends no report: its result proves the start. A
	// command with a schedule timeout, or delivered again (its last holder
	// may have crashed), is reported at once. A negative value reports
	// every job at once (default DefaultStartedAfter).
	StartedAfter time.Duration
	// ManualHeartbeat makes the worker heartbeat a running job only after
	// its handler called Heartbeat (at most one heartbeat per third of the
	// command's heartbeat timeout), so a handler that hangs stops
	// heartbeating and the engine retries the step. By default the worker
	// heartbeats every running job with a heartbeat timeout by itself.
	ManualHeartbeat bool
	// MaxPendingResults bounds the results sent but not yet confirmed by
	// the broker; receiving waits beyond it (default 1024).
	MaxPendingResults int
	// Clock returns the current time (default time.Now).
	Clock func() time.Time
}

func (o *Options) defaults() error {
	if o.Service == "" {
		return fmt.Errorf("%w: worker needs a service name", bus.ErrBadOptions)
	}
	if o.Subscription == "" {
		o.Subscription = protocol.WorkerSubscription
	}
	if o.Name == "" {
		o.Name = o.Service
	}
	if o.Concurrency <= 0 {
		o.Concurrency = 8
	}
	if o.ShutdownGrace <= 0 {
		o.ShutdownGrace = 10 * time.Second
	}
	if o.MaxDeliveries <= 0 {
		o.MaxDeliveries = 10
	}
	if o.NackDelay <= 0 {
		o.NackDelay = time.Second
	}
	if o.CrashWindow == 0 {
		o.CrashWindow = DefaultCrashWindow
	}
	if o.StartedAfter == 0 {
		o.StartedAfter = DefaultStartedAfter
	}
	if o.MaxPendingResults <= 0 {
		o.MaxPendingResults = 1024
	}
	if o.Clock == nil {
		o.Clock = time.Now
	}
	return nil
}

// DefaultCrashWindow is the default Options.CrashWindow: a command that
// crashes its worker typically does so at once (a segfault or an
// out-of-memory kill while decoding or preparing the work).
const DefaultCrashWindow = time.Second

// Job is one command to run.
type Job struct {
	protocol.Command
	// Delivery counts earlier deliveries of this command to the service (a
	// redelivery after a crash has the same CommandID and IdempotencyKey).
	Delivery int
}

// DecodeInput unmarshals the job's input into v.
func (j *Job) DecodeInput(v any) error {
	if len(j.Input) == 0 {
		return nil
	}
	if err := json.Unmarshal(j.Input, v); err != nil {
		return NonRetryable("BadInput", fmt.Errorf("decode input of %s: %w", j.Command.Command, err))
	}
	return nil
}

type jobKey struct{}

// JobFrom returns the job a handler's context carries.
func JobFrom(ctx context.Context) (*Job, bool) {
	j, ok := ctx.Value(jobKey{}).(*Job)
	return j, ok
}

// Handler runs one job and returns its output (marshalled to JSON) or an
// error. Errors are retryable unless made with NonRetryable.
type Handler func(ctx context.Context, job *Job) (any, error)

// Error is a handler error with a type that retry policies can name.
type Error struct {
	Type      string
	Retryable bool
	Err       error
}

func (e *Error) Error() string {
	if e == nil {
		return "nil *worker.Error"
	}
	if e.Err == nil {
		return e.Type
	}
	return e.Type + ": " + e.Err.Error()
}

// message is the error's message for a result: its cause, or its type.
func (e *Error) message() string {
	if e.Err == nil {
		return e.Type
	}
	return e.Err.Error()
}

func (e *Error) Unwrap() error {
	if e == nil {
		return nil
	}
	return e.Err
}

// NonRetryable marks err as not worth retrying (a business refusal such as
// "NoSeats"); the step fails for good at once.
func NonRetryable(typ string, err error) error { return &Error{Type: typ, Err: err} }

// Retryable marks err as transient with a type; the engine retries it as
// the step's policy says.
func Retryable(typ string, err error) error { return &Error{Type: typ, Retryable: true, Err: err} }

// Worker serves one service's job queue.
type Worker struct {
	bus      bus.Bus
	opts     Options
	log      zerolog.Logger
	handlers map[string]Handler

	mu        sync.Mutex
	producers map[string]bus.Producer

	// results are published without waiting (publish.go): pending bounds
	// them, settled hands their outcomes to the goroutine that acks.
	pending chan struct{}
	settled chan settlement
	unacked sync.WaitGroup
}

// New creates a worker; register handlers with Handle, then Run it.
func New(b bus.Bus, opts Options, log zerolog.Logger) (*Worker, error) {
	if err := opts.defaults(); err != nil {
		return nil, err
	}
	return &Worker{
		bus: b, opts: opts, handlers: map[string]Handler{}, producers: map[string]bus.Producer{},
		pending: make(chan struct{}, opts.MaxPendingResults),
		log:     log.With().Str("service", opts.Service).Str("worker", opts.Name).Logger(),
	}, nil
}

// AnyCommand registers a handler for every command without its own.
const AnyCommand = "*"

// Handle registers the handler of a command (or AnyCommand). Call it
// before Run.
func (w *Worker) Handle(command string, h Handler) { w.handlers[command] = h }

// Run serves the job queue until ctx is done, then stops taking jobs, lets
// the jobs in hand finish for up to ShutdownGrace, releases the others and
// returns nil. It returns an error only if the queue cannot be served.
func (w *Worker) Run(ctx context.Context) error {
	if err := w.bus.EnsureTopic(ctx, protocol.JobTopicSpec(w.opts.Service)); err != nil {
		return fmt.Errorf("worker %s: %w", w.opts.Service, err)
	}
	cons, err := w.bus.Subscribe(ctx, bus.SubscribeOptions{
		Topic: protocol.JobTopic(w.opts.Service), Subscription: w.opts.Subscription, Type: bus.Shared,
		ConsumerName: w.opts.Name, MaxDeliveries: w.opts.MaxDeliveries, NackDelay: w.opts.NackDelay,
		CountDeliveriesDurably: !w.opts.DisableDurableDeliveryCount, ReceiveQueueSize: w.opts.Concurrency,
		LazyDeliveryRecords: !w.opts.EagerDeliveryRecords, DeliveryRecordWarmUp: w.opts.DeliveryRecordWarmUp,
		CrashWindow: max(w.opts.CrashWindow, 0),
	})
	if err != nil {
		return fmt.Errorf("worker %s: subscribe: %w", w.opts.Service, err)
	}
	defer cons.Close()
	// Results in flight are confirmed (and their commands acknowledged)
	// before the producers close, then the consumer.
	acked := w.startSettling(cons)
	defer func() {
		w.drain()
		close(w.settled)
		<-acked
		w.closeProducers()
	}()

	// Handlers run under jobCtx, which outlives ctx by ShutdownGrace.
	jobCtx, cancelJobs := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelJobs()
	stopGrace := context.AfterFunc(ctx, func() {
		t := time.NewTimer(w.opts.ShutdownGrace)
		defer t.Stop()
		select {
		case <-t.C:
			cancelJobs()
		case <-jobCtx.Done():
		}
	})
	defer stopGrace()

	var wg sync.WaitGroup
	errc := make(chan error, w.opts.Concurrency)
	for i := 0; i < w.opts.Concurrency; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				msg, err := cons.Receive(ctx)
				if err != nil {
					if ctx.Err() == nil && !errors.Is(err, context.Canceled) {
						errc <- fmt.Errorf("worker %s: receive: %w", w.opts.Service, err)
					}
					return
				}
				w.process(jobCtx, cons, msg)
			}
		}()
	}
	wg.Wait()
	cancelJobs()
	select {
	case err := <-errc:
		return err
	default:
		return nil
	}
}

func (w *Worker) process(ctx context.Context, cons bus.Consumer, msg *bus.Message) {
	env, err := bus.DecodeOrDeadLetter(ctx, cons, msg)
	if err != nil {
		w.log.Warn().Err(err).Str("topic", msg.Topic).Msg("undecodable command dead-lettered")
		return
	}
	log := w.log.With().Str("process_id", env.ProcessID).Logger()
	if env.Type != protocol.TypeCommand {
		w.deadLetter(ctx, cons, msg, log, fmt.Sprintf("unexpected message type %q on a job queue, want %q", env.Type, protocol.TypeCommand))
		return
	}
	job := &Job{Delivery: msg.RedeliveryCount}
	if err := env.DecodePayload(&job.Command); err != nil {
		w.deadLetter(ctx, cons, msg, log, err.Error())
		return
	}
	if err := job.Validate(); err != nil {
		w.deadLetter(ctx, cons, msg, log, "invalid command: "+err.Error())
		return
	}
	log = log.With().Str("step", job.Step).Int("attempt", job.Attempt).Str("command", job.Command.Command).Logger()
	h, ok := w.handlers[job.Command.Command]
	if !ok {
		h, ok = w.handlers[AnyCommand]
	}
	if !ok {
		reason := fmt.Sprintf("no handler for command %q on service %q", job.Command.Command, w.opts.Service)
		// Tell the engine at once rather than let the step wait for its timeout.
		res := protocol.ResultFor(&job.Command)
		res.Status, res.Error = protocol.StatusFailed, &protocol.Error{Type: "UnknownCommand", Message: reason}
		res.Worker = w.opts.Name
		if err := w.replyNow(ctx, &job.Command, res); err != nil {
			log.Warn().Err(err).Msg("could not report the unknown command; releasing it")
			cons.Nack(msg, err)
			return
		}
		w.deadLetter(ctx, cons, msg, log, reason)
		return
	}
	if !job.Deadline.IsZero() && !w.opts.Clock().Before(job.Deadline) {
		// The engine has given up on this attempt (its timeout fired); a newer
		// attempt, if any, comes as a new command.
		log.Info().Time("deadline", job.Deadline).Msg("command expired before it ran; dropped")
		_ = cons.Ack(ctx, msg)
		return
	}
	reply, err := w.producer(ctx, job.ReplyTo)
	if err != nil {
		log.Warn().Err(err).Msg("no producer for the reply topic; releasing the command")
		cons.Nack(msg, err)
		return
	}
	jr := w.begin(job, reply, log)
	res := w.run(ctx, h, jr, log)
	jr.stop()
	if res == nil { // shutting down: release it to another instance
		cons.Nack(msg, errors.New("worker shut down before the job finished"))
		return
	}
	w.publish(cons, msg, jr, res, log)
}

// run calls the handler; nil means the job was interrupted by shutdown.
func (w *Worker) run(ctx context.Context, h Handler, jr *jobRun, log zerolog.Logger) (res *protocol.Result) {
	job := jr.job
	res = protocol.ResultFor(&job.Command)
	res.Worker = w.opts.Name
	res.StartedAt = jr.startedAt
	hctx := context.WithValue(context.WithValue(ctx, jobKey{}, job), runKey{}, jr)
	// The handler's deadline: the attempt's start-to-close timeout from
	// now, or the step's deadline, the earlier.
	deadline := job.Deadline
	if t := job.Timeout(); t > 0 && (deadline.IsZero() || jr.startedAt.Add(t).Before(deadline)) {
		deadline = jr.startedAt.Add(t)
	}
	if !deadline.IsZero() {
		var cancel context.CancelFunc
		hctx, cancel = context.WithDeadline(hctx, deadline)
		defer cancel()
	}
	// The handler runs on its own goroutine so that a handler that ignores
	// its context cannot hold the worker past ShutdownGrace: when ctx ends
	// the job is released and whatever the handler returns later is dropped.
	// What touches the handler's values (its error, its output's JSON) runs
	// there too, under the same recover: a typed nil error or a panicking
	// MarshalJSON fails the attempt, not the worker process.
	type outcome struct {
		err    error // as the handler returned it
		failed *protocol.Error
		output json.RawMessage
	}
	done := make(chan outcome, 1)
	go func() {
		defer func() {
			if p := recover(); p != nil {
				log.Error().Interface("panic", p).Bytes("stack", debug.Stack()).Msg("handler panicked")
				err := fmt.Errorf("handler panicked: %v", p)
				done <- outcome{err: err, failed: &protocol.Error{Type: "Panic", Message: err.Error(), Retryable: true}}
			}
		}()
		out, err := h(hctx, job)
		if err != nil {
			done <- outcome{err: err, failed: classify(err, hctx)}
			return
		}
		b, merr := json.Marshal(out)
		if merr != nil {
			done <- outcome{err: merr, failed: &protocol.Error{Type: "BadOutput", Message: "handler output is not JSON: " + merr.Error()}}
			return
		}
		done <- outcome{output: b}
	}()
	var o outcome
	select {
	case o = <-done:
	case <-ctx.Done():
		log.Warn().Msg("job still running at the end of the shutdown grace; released")
		return nil
	}
	res.FinishedAt = w.opts.Clock().UTC()
	if o.err != nil && ctx.Err() != nil {
		return nil
	}
	if o.failed != nil {
		res.Status, res.Error = protocol.StatusFailed, o.failed
		log.Info().Str("error_type", res.Error.Type).Bool("retryable", res.Error.Retryable).Msg("job failed")
		return res
	}
	res.Status, res.Output = protocol.StatusCompleted, o.output
	return res
}

// maxErrorMessage bounds the error message of a result that was too large.
const maxErrorMessage = 4 << 10

// shrink makes a result the bus refused as too large small: an output is
// replaced by a non-retryable OutputTooLarge error, an error message is cut.
func shrink(res *protocol.Result) *protocol.Result {
	small := *res
	if small.Status == protocol.StatusCompleted {
		small.Status, small.Output = protocol.StatusFailed, nil
		small.Error = &protocol.Error{Type: "OutputTooLarge", Message: fmt.Sprintf("the output (%d bytes of JSON) is larger than the bus accepts", len(res.Output))}
		return &small
	}
	if small.Error != nil && len(small.Error.Message) > maxErrorMessage {
		e := *small.Error
		e.Message = strings.ToValidUTF8(e.Message[:maxErrorMessage], "") + fmt.Sprintf("… (%d bytes cut)", len(e.Message)-maxErrorMessage)
		small.Error = &e
	}
	return &small
}

func classify(err error, hctx context.Context) *protocol.Error {
	var we *Error
	switch {
	case errors.As(err, &we) && we != nil:
		return &protocol.Error{Type: we.Type, Message: we.message(), Retryable: we.Retryable}
	case errors.Is(err, context.DeadlineExceeded) || errors.Is(hctx.Err(), context.DeadlineExceeded):
		return &protocol.Error{Type: "Timeout", Message: err.Error(), Retryable: true}
	}
	return &protocol.Error{Type: "Error", Message: err.Error(), Retryable: true}
}

// replyNow sends a result and waits for the broker (for the rare answers
// that go with a dead-lettering; ordinary results are pipelined, publish).
func (w *Worker) replyNow(ctx context.Context, c *protocol.Command, res *protocol.Result) error {
	p, err := w.producer(ctx, c.ReplyTo)
	if err != nil {
		return err
	}
	msg, err := w.message(protocol.TypeResult, "result:"+c.CommandID, c, res)
	if err != nil {
		return err
	}
	_, err = p.Send(ctx, msg)
	return err
}

// message encodes one envelope for the engine, keyed by the process id.
func (w *Worker) message(typ, id string, c *protocol.Command, payload any) (*bus.OutMessage, error) {
	b, err := bus.EncodeEnvelope(bus.Envelope{Type: typ, ID: id, ProcessID: c.ProcessID, CausationID: c.CommandID, Time: w.opts.Clock()}, payload)
	if err != nil {
		return nil, err
	}
	return &bus.OutMessage{Key: c.ProcessID, Payload: b}, nil
}

func (w *Worker) producer(ctx context.Context, topic string) (bus.Producer, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if p, ok := w.producers[topic]; ok {
		return p, nil
	}
	p, err := w.bus.Producer(ctx, protocol.EventsProducer(topic))
	if err != nil {
		return nil, fmt.Errorf("worker %s: producer for %s: %w", w.opts.Service, topic, err)
	}
	w.producers[topic] = p
	return p, nil
}

func (w *Worker) closeProducers() {
	w.mu.Lock()
	defer w.mu.Unlock()
	for t, p := range w.producers {
		_ = p.Close()
		delete(w.producers, t)
	}
}

func (w *Worker) deadLetter(ctx context.Context, cons bus.Consumer, msg *bus.Message, log zerolog.Logger, reason string) {
	if err := cons.DeadLetter(ctx, msg, reason); err != nil {
		log.Error().Err(err).Str("reason", reason).Msg("dead-lettering failed; releasing the message")
		cons.Nack(msg, err)
		return
	}
	log.Warn().Str("reason", reason).Msg("message dead-lettered")
}
