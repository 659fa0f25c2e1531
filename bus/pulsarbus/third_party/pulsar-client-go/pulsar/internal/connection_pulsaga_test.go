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

package internal

// pulsaga patch: a NotAllowedError send error goes to the producer it
// concerns (which fails that one message and goes on) instead of detaching
// the producer from the connection.

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/protobuf/proto"

	pb "github.com/apache/pulsar-client-go/pulsar/internal/pulsar_proto"
	"github.com/apache/pulsar-client-go/pulsar/log"
)

type sendErrorRecorder struct {
	ConnectionListener
	got []*pb.CommandSendError
}

func (r *sendErrorRecorder) ReceivedSendError(e *pb.CommandSendError) { r.got = append(r.got, e) }

func TestNotAllowedSendErrorReachesItsProducer(t *testing.T) {
	r := &sendErrorRecorder{}
	c := &connection{listeners: map[uint64]ConnectionListener{7: r}, log: log.DefaultNopLogger()}
	c.handleSendError(&pb.CommandSendError{ProducerId: proto.Uint64(7), SequenceId: proto.Uint64(42),
		Error: pb.ServerError_NotAllowedError.Enum(), Message: proto.String("Transaction [(0,117)] has been ended.")})
	if len(r.got) != 1 || r.got[0].GetSequenceId() != 42 {
		t.Fatalf("the producer got %v, want the send error of sequence id 42", r.got)
	}
	if _, ok := c.listeners[7]; !ok {
		t.Fatal("the producer was detached from the connection: no receipt would reach it any more")
	}
}

func TestTransactionBufferSendErrorReachesItsProducer(t *testing.T) {
	r := &sendErrorRecorder{}
	c := &connection{listeners: map[uint64]ConnectionListener{7: r}, log: log.DefaultNopLogger()}
	c.handleSendError(&pb.CommandSendError{ProducerId: proto.Uint64(7), SequenceId: proto.Uint64(43),
		Error:   pb.ServerError_PersistenceError.Enum(),
		Message: proto.String("org.apache.pulsar.broker.service.BrokerServiceException$ServiceUnitNotReadyException: Transaction Buffer take first snapshot failed, the current state is: Ready")})
	if len(r.got) != 1 || r.got[0].GetSequenceId() != 43 || r.got[0].GetError() != pb.ServerError_PersistenceError {
		t.Fatalf("the producer got %v, want the persistence error of sequence id 43", r.got)
	}
	if _, ok := c.listeners[7]; !ok {
		t.Fatal("the producer was detached from the connection")
	}
}

// pulsaga patch: an ACTIVE_CONSUMER_CHANGE that arrives before its consumer
// registered (the broker sends it before answering the SUBSCRIBE) reaches
// the consumer when it registers, and later ones follow it.
type activeRecorder struct {
	ConsumerHandler
	got []bool
}

func (r *activeRecorder) ActiveConsumerChanged(active bool) { r.got = append(r.got, active) }

func TestActiveConsumerChangeBeforeRegistration(t *testing.T) {
	c := &connection{consumerHandlers: map[uint64]ConsumerHandler{}, log: log.DefaultNopLogger()}
	change := func(id uint64, active bool) {
		c.handleActiveConsumerChange(&pb.CommandActiveConsumerChange{ConsumerId: proto.Uint64(id), IsActive: proto.Bool(active)})
	}
	change(3, false)
	change(3, true) // the latest one counts
	change(4, true)
	r := &activeRecorder{}
	if err := c.AddConsumeHandler(3, r); err != nil {
		t.Fatal(err)
	}
	change(3, false)
	if len(r.got) != 2 || !r.got[0] || r.got[1] {
		t.Fatalf("consumer 3 got %v, want [true false]: the held-back change, then the live one", r.got)
	}
	if _, held := c.earlyActiveChanges[3]; held {
		t.Fatal("the change delivered to consumer 3 is still held back")
	}
	if _, held := c.earlyActiveChanges[4]; !held {
		t.Fatal("the change of consumer 4, not registered yet, was dropped")
	}
	// One that waited longer than earlyActiveChangeTTL is stale: its
	// consumer closed before registering, or the id is reused much later.
	c.earlyActiveChanges[4] = earlyActiveChange{active: true, at: time.Now().Add(-2 * earlyActiveChangeTTL)}
	r4 := &activeRecorder{}
	if err := c.AddConsumeHandler(4, r4); err != nil {
		t.Fatal(err)
	}
	if len(r4.got) != 0 {
		t.Fatalf("consumer 4 got a stale change: %v", r4.got)
	}
	change(9, true)
	c.earlyActiveChanges[9] = earlyActiveChange{active: true, at: time.Now().Add(-2 * earlyActiveChangeTTL)}
	change(10, true) // purges the stale one of 9
	if _, held := c.earlyActiveChanges[9]; held {
		t.Fatal("a stale held-back change is never purged")
	}
}

// pulsaga patch: requests made while the connection closes (a consumer's
// dispatcher asking for permits, a producer writing, an RPC) never add to
// incomingRequestsWG concurrently with the close's Wait — upstream did: a
// data race under -race and, since Go 1.25, a "WaitGroup misuse" panic —
// and every RPC made meanwhile gets its answer (ErrConnectionClosed if it
// was not sent), none is left in the queues.
func TestRequestsWhileTheConnectionCloses(t *testing.T) {
	metrics := NewMetricsProvider(4, map[string]string{}, prometheus.NewRegistry())
	for trial := range 20 {
		c := &connection{
			log:                log.DefaultNopLogger(),
			metrics:            metrics,
			closeCh:            make(chan struct{}),
			incomingRequestsCh: make(chan *request, 10),
			writeRequestsCh:    make(chan *dataRequest, 256),
			pendingReqs:        map[uint64]*request{},
		}
		c.setStateReady()
		var answered atomic.Int32
		var wg sync.WaitGroup
		const senders = 30
		for i := range senders {
			wg.Go(func() {
				switch i % 3 {
				case 0:
					c.SendRequest(uint64(i), &pb.BaseCommand{}, func(*pb.BaseCommand, error) { answered.Add(1) })
				case 1:
					_ = c.SendRequestNoWait(&pb.BaseCommand{})
				default:
					c.WriteData(context.Background(), NewBuffer(8))
				}
			})
		}
		// What run does when the connection closes.
		wg.Go(func() {
			c.Close()
			c.failLeftRequestsWhenClose()
		})
		wg.Wait()
		c.failLeftRequestsWhenClose() // what slipped in after the first drain
		if n := len(c.incomingRequestsCh) + len(c.writeRequestsCh); n > 0 {
			t.Fatalf("trial %d: %d requests left in the queues of a closed connection", trial, n)
		}
		// No run loop here: every RPC was queued and drained, or refused.
		if got := answered.Load(); got != senders/3 {
			t.Fatalf("trial %d: %d of %d RPCs got an answer", trial, got, senders/3)
		}
	}
}
