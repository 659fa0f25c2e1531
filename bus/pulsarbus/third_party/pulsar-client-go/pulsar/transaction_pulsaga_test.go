// Licensed to the Apache Software Foundation (ASF) under one
// or more contributor license agreements.  See the NOTICE file
// distributed with this work for additional information
// regarding copyright ownership.  The ASF licenses this file
// to you under the Apache License, Version 2.0 (the
// "License"); you may not use this file except in compliance
// with the License.  You may obtain a copy of the License at
//
//   http://www.apache.org/licenses/LICENSE-2.0
//
// Unless required by applicable law or agreed to in writing,
// software distributed under the License is distributed on an
// "AS IS" BASIS, WITHOUT WARRANTIES OR CONDITIONS OF ANY
// KIND, either express or implied.  See the License for the
// specific language governing permissions and limitations
// under the License.

package pulsar

// pulsaga patch: tests of the single-flight registration (registerOnce) and
// of a closed transaction handler; they need no broker.

import (
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/protobuf/proto"

	"github.com/apache/pulsar-client-go/pulsar/internal"
	pb "github.com/apache/pulsar-client-go/pulsar/internal/pulsar_proto"
	"github.com/apache/pulsar-client-go/pulsar/log"
)

func TestRegisterOnceOverlapsDifferentKeys(t *testing.T) {
	txn := &transaction{}
	m := map[string]*registration{}
	var inFlight, maxInFlight atomic.Int32
	release := make(chan struct{})
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	for _, key := range []string{"p-0", "p-1", "p-2", "p-3"} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs <- registerOnce(txn, m, key, func() error {
				n := inFlight.Add(1)
				for {
					old := maxInFlight.Load()
					if n <= old || maxInFlight.CompareAndSwap(old, n) {
						break
					}
				}
				<-release
				inFlight.Add(-1)
				return nil
			})
		}()
	}
	deadline := time.After(10 * time.Second)
	for maxInFlight.Load() < 4 {
		select {
		case <-deadline:
			t.Fatalf("registrations of 4 different partitions never overlapped (at most %d in flight)", maxInFlight.Load())
		case <-time.After(time.Millisecond):
		}
	}
	close(release)
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
}

func TestRegisterOnceSameKey(t *testing.T) {
	boom := errors.New("boom")
	tests := []struct {
		name      string
		result    error
		wantCalls int32 // calls after a second round of callers
	}{
		{name: "success is registered once", result: nil, wantCalls: 1},
		{name: "failure reaches every waiter and is retried", result: boom, wantCalls: 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			txn := &transaction{}
			m := map[subscription]*registration{}
			key := subscription{topic: "t", subscription: "s"}
			var calls atomic.Int32
			started := make(chan struct{})
			release := make(chan struct{})
			register := func() error {
				if calls.Add(1) == 1 {
					close(started)
					<-release
				}
				return tt.result
			}
			const callers = 5
			errs := make(chan error, callers)
			go func() { errs <- registerOnce(txn, m, key, register) }()
			<-started
			for range callers - 1 {
				go func() { errs <- registerOnce(txn, m, key, register) }()
			}
			// The waiters must be waiting on the first registration, not
			// registering themselves.
			time.Sleep(50 * time.Millisecond)
			if n := calls.Load(); n != 1 {
				t.Fatalf("%d registrations in flight for one subscription, want 1", n)
			}
			close(release)
			for range callers {
				if err := <-errs; !errors.Is(err, tt.result) {
					t.Fatalf("a caller got %v, want %v", err, tt.result)
				}
			}
			_ = registerOnce(txn, m, key, register)
			if n := calls.Load(); n != tt.wantCalls {
				t.Fatalf("%d registrations after a later call, want %d", n, tt.wantCalls)
			}
		})
	}
}

func TestClosedTransactionHandlerFailsRequests(t *testing.T) {
	h := &transactionHandler{closeCh: make(chan any), requestCh: make(chan any)}
	h.close()
	op := &endTxnOp{errCh: make(chan error, 1)}
	done := make(chan error, 1)
	go func() {
		h.submit(op)
		done <- <-op.errCh
	}()
	select {
	case err := <-done:
		if !errors.Is(err, errTxnHandlerClosed) {
			t.Fatalf("got %v, want %v", err, errTxnHandlerClosed)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("a request to a closed handler blocked")
	}
}

// pulsaga patch: ReceivedSendError fails the refused message (the head of
// the pending queue, by sequence id) and leaves the rest pending.
func TestReceivedSendErrorFailsTheRefusedMessage(t *testing.T) {
	p := &partitionProducer{log: log.DefaultNopLogger(), pendingQueue: internal.NewBlockingQueue(10)}
	var errs []error
	item := func(seq uint64) *pendingItem {
		sr := &sendRequest{producer: p, callbackOnce: &sync.Once{}, msg: &ProducerMessage{},
			callback: func(_ MessageID, _ *ProducerMessage, err error) { errs = append(errs, err) }}
		return &pendingItem{sequenceID: seq, sendRequests: []interface{}{sr}, buffer: internal.NewBuffer(0)}
	}
	p.pendingQueue.Put(item(5))
	p.pendingQueue.Put(item(6))
	notAllowed := func(seq uint64) *pb.CommandSendError {
		return &pb.CommandSendError{SequenceId: proto.Uint64(seq), Error: pb.ServerError_NotAllowedError.Enum(), Message: proto.String("has been ended")}
	}
	p.ReceivedSendError(notAllowed(6)) // not the head: ignored
	if len(errs) != 0 || p.pendingQueue.Size() != 2 {
		t.Fatalf("an error for sequence id 6 failed %v (queue %d)", errs, p.pendingQueue.Size())
	}
	p.ReceivedSendError(notAllowed(5))
	if len(errs) != 1 || errs[0] == nil || !strings.Contains(errs[0].Error(), "has been ended") || p.pendingQueue.Size() != 1 {
		t.Fatalf("after the error for sequence id 5: callbacks %v, queue %d", errs, p.pendingQueue.Size())
	}
}

// pulsaga patch: AckIDListWithTxn refuses, without a request, a transaction
// that is not open, and ids of another partition.
func TestAckIDListWithTxnRefusals(t *testing.T) {
	pc := &partitionConsumer{log: log.DefaultNopLogger(), partitionIdx: 1}
	pc.setConsumerState(consumerReady)
	txn := &transaction{}
	txn.state.Store(int32(TxnAborted))
	err := pc.AckIDListWithTxn([]MessageID{NewMessageID(1, 2, -1, 1)}, txn)
	var pe *Error
	if !errors.As(err, &pe) || pe.Result() != InvalidStatus {
		t.Fatalf("ack list in an aborted transaction: %v, want InvalidStatus", err)
	}
	txn.state.Store(int32(TxnOpen))
	if err := pc.AckIDListWithTxn([]MessageID{NewMessageID(1, 2, -1, 0)}, txn); err == nil ||
		!strings.Contains(err.Error(), "inconsistent partition") {
		t.Fatalf("ack list of another partition's id: %v", err)
	}
	if err := pc.AckIDListWithTxn(nil, txn); err != nil {
		t.Fatalf("empty list: %v", err)
	}
	pc.setConsumerState(consumerClosed)
	if err := pc.AckIDListWithTxn([]MessageID{NewMessageID(1, 2, -1, 1)}, txn); !errors.As(err, &pe) || pe.Result() != ConsumerClosed {
		t.Fatalf("ack list on a closed consumer: %v, want ConsumerClosed", err)
	}
}

// pulsaga patch: a consumer that reconnects while its dispatcher holds part
// of a batch (taken from queueCh, not yet handed to the application)
// starts again from the first message it holds, not from the first
// message left in queueCh: a reader skipped the held ones for good.
func TestClearQueueStartsFromTheFirstHeldMessage(t *testing.T) {
	msg := func(entry int64) *message {
		return &message{msgID: newTrackingMessageID(7, entry, -1, 0, 0, nil)}
	}
	pc := &partitionConsumer{
		log:          log.DefaultNopLogger(),
		queueCh:      make(chan []*message, 4),
		messageCh:    make(chan ConsumerMessage), // unbuffered: the dispatcher holds what it cannot hand over
		clearQueueCh: make(chan func(id *trackingMessageID)),
		connectedCh:  make(chan struct{}),
		closeCh:      make(chan struct{}),
		metrics: internal.NewMetricsProvider(4, map[string]string{}, prometheus.NewRegistry()).
			GetLeveledMetrics("topic"),
		dispatcherSeekingControlCh: make(chan struct{}),
		options:                    &partitionConsumerOpts{},
		dlq:                        &dlqRouter{},
	}
	pc.availablePermits = &availablePermits{pc: pc}
	pc.setConsumerState(consumerReady)
	go pc.dispatcher()
	defer close(pc.closeCh)

	pc.queueCh <- []*message{msg(1), msg(2), msg(3)}
	if got := <-pc.messageCh; got.ID().EntryID() != 1 {
		t.Fatalf("first message handed over: entry %d, want 1", got.ID().EntryID())
	}
	// The dispatcher now holds entries 2 and 3; the next batch waits in
	// queueCh.
	pc.queueCh <- []*message{msg(4), msg(5)}
	next := pc.clearQueueAndGetNextMessage()
	if next == nil || next.entryID != 2 {
		t.Fatalf("after a reconnect the consumer starts again at %v, want entry 2 (the first message not handed over)", next)
	}
	if start := getPreviousMessage(next); start.entryID != 1 {
		t.Fatalf("start position %v, want entry 1 (so that entry 2 comes next)", start)
	}
}
