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

// pulsaga patch: acknowledge a list of messages in a transaction with one
// CommandAck per partition (the Java client's acknowledgeAsync(List,
// Transaction)). Upstream acknowledges one message at a time with a
// transaction, and makes the round trip inside the partition consumer's
// event loop, so a partition's transactional acknowledgements wait for each
// other (and for everything else the loop does). Here the request is sent
// from the caller's goroutine, straight on the connection, as the Java
// client does: the partitions of one list are acknowledged at once and the
// event loop is never held.

import (
	"errors"
	"fmt"
	"time"

	"google.golang.org/protobuf/proto"

	pb "github.com/apache/pulsar-client-go/pulsar/internal/pulsar_proto"
)

// TxListAcker is a consumer that acknowledges a list of messages in a
// transaction at once (pulsaga patch). *consumer (a consumer of one topic,
// partitioned or not) and the zero-queue consumer have it.
type TxListAcker interface {
	AckIDListWithTxn(msgIDs []MessageID, txn Transaction) error
}

var (
	_ TxListAcker = (*consumer)(nil)
	_ TxListAcker = (*zeroQueueConsumer)(nil)
)

// AckIDListWithTxn acknowledges msgIDs in txn: one CommandAck per
// partition, the partitions at once. The error joins the partitions'
// errors; a failed acknowledgement puts txn in its error state (it cannot
// commit), as AckWithTxn does.
func (c *consumer) AckIDListWithTxn(msgIDs []MessageID, txn Transaction) error {
	byPartition := map[int32][]MessageID{}
	for _, id := range msgIDs {
		if err := c.checkMsgIDPartition(id); err != nil {
			return err
		}
		byPartition[id.PartitionIdx()] = append(byPartition[id.PartitionIdx()], id)
	}
	if len(byPartition) == 1 {
		for p, ids := range byPartition {
			return c.consumers[p].AckIDListWithTxn(ids, txn)
		}
	}
	errs := make(chan error, len(byPartition))
	for p, ids := range byPartition {
		go func() { errs <- c.consumers[p].AckIDListWithTxn(ids, txn) }()
	}
	var all []error
	for range byPartition {
		if err := <-errs; err != nil {
			all = append(all, err)
		}
	}
	return errors.Join(all...)
}

// AckIDListWithTxn acknowledges msgIDs in txn (see consumer's).
func (z *zeroQueueConsumer) AckIDListWithTxn(msgIDs []MessageID, txn Transaction) error {
	for _, id := range msgIDs {
		if err := z.checkMsgIDPartition(id); err != nil {
			return err
		}
	}
	return z.pc.AckIDListWithTxn(msgIDs, txn)
}

// AckIDListWithTxn acknowledges msgIDs of this partition in txn with one
// CommandAck, sent from the caller's goroutine, and waits for the broker's
// answer. A message of a batch is acknowledged as AckIDWithTxn does: its
// entry once every message of the batch is acknowledged (or by batch index
// when batch index acknowledgements are on).
func (pc *partitionConsumer) AckIDListWithTxn(msgIDs []MessageID, txn Transaction) error {
	if state := pc.getConsumerState(); state == consumerClosed || state == consumerClosing {
		pc.log.WithField("state", state).Error("Failed to ack by closing or closed consumer")
		return newError(ConsumerClosed, "Failed to ack by closing or closed consumer")
	}
	t, ok := txn.(*transaction)
	if !ok || t == nil {
		return newError(InvalidConfiguration, fmt.Sprintf("transaction of type %T", txn))
	}
	if t.state.Load() != int32(TxnOpen) {
		pc.log.WithField("state", t.state.Load()).Error("Failed to ack by a non-open transaction.")
		return newError(InvalidStatus, "Failed to ack by a non-open transaction.")
	}
	ids := make([]*pb.MessageIdData, 0, len(msgIDs))
	var chunked []*chunkMessageID
	entry := func(ledger, entryID int64) *pb.MessageIdData {
		return &pb.MessageIdData{LedgerId: proto.Uint64(uint64(ledger)), EntryId: proto.Uint64(uint64(entryID))}
	}
	for _, msgID := range msgIDs {
		if msgID.PartitionIdx() != pc.partitionIdx {
			return fmt.Errorf("%v: inconsistent partition index %d (current: %d)", msgID, msgID.PartitionIdx(), pc.partitionIdx)
		}
		if cmid, ok := msgID.(*chunkMessageID); ok {
			for _, id := range pc.unAckChunksTracker.get(cmid) {
				ids = append(ids, entry(id.LedgerID(), id.EntryID()))
			}
			chunked = append(chunked, cmid)
			continue
		}
		tid := toTrackingMessageID(msgID)
		if tid == nil {
			return fmt.Errorf("invalid message id type %T", msgID)
		}
		switch {
		case tid.ack():
			ids = append(ids, entry(tid.ledgerID, tid.entryID))
			pc.metrics.ProcessingTime.Observe(float64(time.Now().UnixNano()-tid.receivedTime.UnixNano()) / 1.0e9)
		case pc.options.enableBatchIndexAck && tid.tracker != nil:
			d := entry(tid.ledgerID, tid.entryID)
			d.AckSet = tid.tracker.toAckSet()
			ids = append(ids, d)
		}
		// Otherwise the batch's entry is acknowledged with its last message.
	}
	if len(ids) == 0 {
		return nil
	}
	if err := t.registerAckTopic(pc.options.topic, pc.options.subscription); err != nil {
		return err
	}
	if err := t.registerSendOrAckOp(); err != nil {
		return err
	}
	txnID := t.GetTxnID()
	reqID := pc.client.rpcClient.NewRequestID()
	cmdAck := &pb.CommandAck{
		ConsumerId:     proto.Uint64(pc.consumerID),
		MessageId:      ids,
		AckType:        pb.CommandAck_Individual.Enum(),
		TxnidMostBits:  proto.Uint64(txnID.MostSigBits),
		TxnidLeastBits: proto.Uint64(txnID.LeastSigBits),
		RequestId:      proto.Uint64(reqID),
	}
	_, err := pc.client.rpcClient.RequestOnCnx(pc._getConn(), reqID, pb.BaseCommand_ACK, cmdAck)
	if err != nil {
		pc.log.WithError(err).Error("Ack list with transaction: error response")
	}
	t.endSendOrAckOp(err)
	if err != nil {
		return err
	}
	pc.metrics.AcksCounter.Add(float64(len(ids)))
	for _, cmid := range chunked {
		pc.unAckChunksTracker.remove(cmid)
	}
	for _, id := range msgIDs {
		pc.options.interceptors.OnAcknowledge(pc.parentConsumer, id)
	}
	return nil
}
