package demo

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/pulsaga/pulsaga/protocol"
	"github.com/pulsaga/pulsaga/worker"
)

func job(pid, step, command string, attempt int, compensation bool) *worker.Job {
	key := pid + "/" + step
	if compensation {
		key += "/compensate"
	}
	return &worker.Job{Command: protocol.Command{
		CommandID: fmt.Sprintf("%s/%d", key, attempt), ProcessID: pid, Step: step, Attempt: attempt, Command: command,
		Compensation: compensation, IdempotencyKey: key, ReplyTo: "events",
	}}
}

// The trip services answer, refuse and fail as their faults and the
// process id's directives say, and record every attempt.
func TestTrip(t *testing.T) {
	type attempt struct {
		service, command string
		pid              string
		attempt          int
		compensation     bool
		faults           Faults
		ctxTimeout       time.Duration
		wantOutputKey    string // key of the output map, "" when it fails
		wantType         string // error type when it fails
		wantRetryable    bool
		replay           bool // the key's work was done by an earlier call
	}
	tests := []struct {
		name     string
		attempts []attempt
	}{
		{"every forward command answers with a reference", []attempt{
			{service: "payments", command: "ProcessPayment", pid: "t1", attempt: 1, wantOutputKey: "payment_id"},
			{service: "flights", command: "BookFlight", pid: "t1", attempt: 1, wantOutputKey: "booking_id"},
			{service: "hotels", command: "BookHotel", pid: "t1", attempt: 1, wantOutputKey: "reservation_id"},
			{service: "notifications", command: "NotifyCustomer", pid: "t1", attempt: 1, wantOutputKey: "ok"},
		}},
		{"compensations answer ok", []attempt{
			{service: "payments", command: "RefundPayment", pid: "t1", attempt: 1, compensation: true, wantOutputKey: "ok"},
			{service: "flights", command: "CancelFlight", pid: "t1", attempt: 1, compensation: true, wantOutputKey: "ok"},
			{service: "hotels", command: "CancelHotel", pid: "t1", attempt: 1, compensation: true, wantOutputKey: "ok"},
		}},
		{"fail directive refuses for good with the service's reason", []attempt{
			{service: "flights", command: "BookFlight", pid: "trip-fail-BookFlight", attempt: 1, wantType: "NoSeats"},
			{service: "flights", command: "BookFlight", pid: "trip-fail-BookFlight", attempt: 2, wantType: "NoSeats"},
			{service: "hotels", command: "BookHotel", pid: "trip-fail-BookHotel", attempt: 1, wantType: "NoRooms"},
			{service: "payments", command: "ProcessPayment", pid: "trip-fail-ProcessPayment", attempt: 1, wantType: "CardDeclined"},
			{service: "notifications", command: "NotifyCustomer", pid: "trip-fail-NotifyCustomer", attempt: 1, wantType: "Refused"},
			{service: "hotels", command: "BookHotel", pid: "trip-fail-BookFlight", attempt: 1, wantOutputKey: "reservation_id"},
		}},
		{"flaky directive fails the first attempt only", []attempt{
			{service: "hotels", command: "BookHotel", pid: "trip-flaky-BookHotel", attempt: 1, wantType: "Unavailable", wantRetryable: true},
			{service: "hotels", command: "BookHotel", pid: "trip-flaky-BookHotel", attempt: 2, wantOutputKey: "reservation_id"},
		}},
		{"the work of a key is done once: later attempts and redeliveries answer as the first", []attempt{
			{service: "flights", command: "BookFlight", pid: "t5", attempt: 1, wantOutputKey: "booking_id"},
			{service: "flights", command: "BookFlight", pid: "t5", attempt: 1, wantOutputKey: "booking_id", replay: true},
			{service: "flights", command: "BookFlight", pid: "t5", attempt: 2, wantOutputKey: "booking_id", replay: true},
			{service: "flights", command: "CancelFlight", pid: "t5", attempt: 1, compensation: true, wantOutputKey: "ok"},
			{service: "flights", command: "CancelFlight", pid: "t5", attempt: 2, compensation: true, wantOutputKey: "ok", replay: true},
		}},
		{"faulty command fails for good", []attempt{
			{service: "payments", command: "ProcessPayment", pid: "t2", attempt: 1, faults: Faults{Command: "ProcessPayment"}, wantType: "CardDeclined"},
			{service: "flights", command: "BookFlight", pid: "t2", attempt: 1, faults: Faults{Command: "ProcessPayment"}, wantOutputKey: "booking_id"},
		}},
		{"certain random failure spares compensations", []attempt{
			{service: "flights", command: "BookFlight", pid: "t3", attempt: 1, faults: Faults{Probability: 1}, wantType: "Unavailable", wantRetryable: true},
			{service: "flights", command: "CancelFlight", pid: "t3", attempt: 1, compensation: true, faults: Faults{Probability: 1}, wantOutputKey: "ok"},
		}},
		{"slow directive outlasts the attempt's deadline", []attempt{
			{service: "hotels", command: "BookHotel", pid: "trip-slow-BookHotel", attempt: 1, ctxTimeout: 50 * time.Millisecond, wantType: "ctx"},
		}},
		{"latency gives way to the deadline", []attempt{
			{service: "hotels", command: "BookHotel", pid: "t4", attempt: 1, faults: Faults{Latency: time.Hour}, ctxTimeout: 50 * time.Millisecond, wantType: "ctx"},
			{service: "hotels", command: "BookHotel", pid: "t4", attempt: 2, faults: Faults{Latency: time.Millisecond}, wantOutputKey: "reservation_id"},
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			calls := NewCalls()
			var log bytes.Buffer
			// One set of services per fault setting, as a worker would have.
			services := map[string]Services{}
			for _, a := range tc.attempts {
				k := fmt.Sprintf("%+v", a.faults)
				if services[k] == nil {
					f := a.faults
					f.Log = &log
					services[k] = Trip(f, calls)
				}
				h := services[k][a.service][a.command]
				if h == nil {
					t.Fatalf("no handler for %s.%s", a.service, a.command)
				}
				ctx := context.Background()
				if a.ctxTimeout > 0 {
					var cancel context.CancelFunc
					ctx, cancel = context.WithTimeout(ctx, a.ctxTimeout)
					defer cancel()
				}
				out, err := h(ctx, job(a.pid, "s-"+a.command, a.command, a.attempt, a.compensation))
				switch {
				case a.wantType == "ctx":
					if !errors.Is(err, context.DeadlineExceeded) {
						t.Errorf("%s %s: error %v, want the context's deadline", a.command, a.pid, err)
					}
				case a.wantType != "":
					var we *worker.Error
					if !errors.As(err, &we) || we.Type != a.wantType || we.Retryable != a.wantRetryable {
						t.Errorf("%s %s attempt %d: error %v, want %s retryable %v", a.command, a.pid, a.attempt, err, a.wantType, a.wantRetryable)
					}
				default:
					var m map[string]any
					raw, ok := out.(json.RawMessage)
					if ok {
						ok = json.Unmarshal(raw, &m) == nil
					}
					if err != nil || !ok || m[a.wantOutputKey] == nil {
						t.Errorf("%s %s attempt %d: output %v error %v, want %s", a.command, a.pid, a.attempt, out, err, a.wantOutputKey)
					}
				}
			}
			// Every attempt is recorded, in order, with its outcome, and
			// logged as one JSON line.
			all := calls.All()
			if len(all) != len(tc.attempts) {
				t.Fatalf("%d calls recorded, want %d: %+v", len(all), len(tc.attempts), all)
			}
			sc := bufio.NewScanner(&log)
			for i, a := range tc.attempts {
				c := all[i]
				if c.ProcessID != a.pid || c.Command != a.command || c.Attempt != a.attempt || c.Compensation != a.compensation || c.Failed != (a.wantType != "") ||
					c.Effect != (a.wantType == "" && !a.replay) {
					t.Errorf("call %d: %+v, want %s %s attempt %d failed=%v", i, c, a.pid, a.command, a.attempt, a.wantType != "")
				}
				if !sc.Scan() {
					t.Fatalf("log has %d lines, want %d", i, len(tc.attempts))
				}
				var logged Call
				if err := json.Unmarshal(sc.Bytes(), &logged); err != nil || logged != c {
					t.Errorf("log line %q (%v), want %+v", sc.Bytes(), err, c)
				}
			}
			if got := calls.Of(tc.attempts[0].pid); len(got) == 0 || got[0].ProcessID != tc.attempts[0].pid {
				t.Errorf("Of(%s) = %+v", tc.attempts[0].pid, got)
			}
		})
	}
}
