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

// pulsaga patch: registering a transaction's partitions and subscriptions
// ahead of its sends and acknowledgements, in one coordinator request each.
//
// Upstream registers each topic-partition with the transaction coordinator
// on the transaction's first send to it, and each (partition, subscription)
// on its first acknowledgement: one request each (the coordinator appends
// one entry to its log per request), made in the sending goroutine, so a
// transaction that writes a dozen partitions makes a dozen requests, and
// sends to a partition first written late in the transaction wait for its
// round trip then. RegisterAhead registers a list at once, typically while
// the caller is still waiting to send; sends and acknowledgements to what
// it registers wait for its outcome (registerOnce) and make no request of
// their own.

package pulsar

import (
	"errors"
	"sync"
)

// TxSubscription is a subscription on one topic-partition (pulsaga patch).
type TxSubscription struct {
	Topic        string
	Subscription string
}

// TxRegistrar is implemented by the client's transactions (pulsaga patch).
type TxRegistrar interface {
	// RegisterAhead registers with the transaction coordinator the
	// topic-partitions (full partition names, as a partition producer's
	// Topic) the transaction will send to and the subscriptions it will
	// acknowledge on, those not registered yet, in one request for the
	// partitions and one for the subscriptions, made concurrently. It
	// returns once both are answered. A registration that fails is
	// forgotten: the transaction's first send or acknowledgement there tries
	// again on its own.
	RegisterAhead(partitions []string, subscriptions []TxSubscription) error
}

var _ TxRegistrar = (*transaction)(nil)

// RegisterAhead implements TxRegistrar.
func (txn *transaction) RegisterAhead(partitions []string, subscriptions []TxSubscription) error {
	if err := txn.verifyOpen(); err != nil {
		return err
	}
	subs := make([]subscription, len(subscriptions))
	for i, s := range subscriptions {
		subs[i] = subscription{topic: s.Topic, subscription: s.Subscription}
	}
	newParts, partRegs := claim(txn, txn.registerPartitions, partitions)
	newSubs, subRegs := claim(txn, txn.registerAckSubscriptions, subs)
	var wg sync.WaitGroup
	var partErr, subErr error
	if len(newParts) > 0 {
		wg.Go(func() {
			partErr = txn.tcClient.addPublishPartitionToTxn(&txn.txnID, newParts)
			settle(txn, txn.registerPartitions, newParts, partRegs, partErr)
		})
	}
	if len(newSubs) > 0 {
		wg.Go(func() {
			subErr = txn.tcClient.addSubscriptionsToTxn(&txn.txnID, newSubs)
			settle(txn, txn.registerAckSubscriptions, newSubs, subRegs, subErr)
		})
	}
	wg.Wait()
	return errors.Join(partErr, subErr)
}

// claim takes the registration of the keys not registered or being
// registered yet (each once), under txn.mu: callers of registerOnce for
// them wait for settle.
func claim[K comparable](txn *transaction, m map[K]*registration, keys []K) ([]K, []*registration) {
	txn.mu.Lock()
	defer txn.mu.Unlock()
	var mine []K
	var regs []*registration
	for _, k := range keys {
		if _, ok := m[k]; ok {
			continue
		}
		r := &registration{done: make(chan struct{})}
		m[k] = r
		mine = append(mine, k)
		regs = append(regs, r)
	}
	return mine, regs
}

// settle ends the registrations claim took with the outcome of their
// request; failed ones are forgotten, as registerOnce does.
func settle[K comparable](txn *transaction, m map[K]*registration, keys []K, regs []*registration, err error) {
	if err != nil {
		txn.mu.Lock()
		for _, k := range keys {
			delete(m, k)
		}
		txn.mu.Unlock()
	}
	for _, r := range regs {
		r.err = err
		close(r.done)
	}
}

// PartitionTopic is the name of the partition a message with this key is
// routed to (pulsaga patch: what a transaction registers ahead). It is ""
// for an empty key, whose partition the router picks when it is sent.
func (p *producer) PartitionTopic(key string) string {
	if key == "" {
		return ""
	}
	return p.getPartition(&ProducerMessage{Key: key}).Topic()
}
