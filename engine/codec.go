package engine

import (
	"encoding/json"
	"fmt"
	"math"
	"strings"
	"sync"
	"time"

	"github.com/klauspost/compress/zstd"
	"google.golang.org/protobuf/proto"

	"github.com/pulsaga/pulsaga/bus"
	"github.com/pulsaga/pulsaga/engine/enginepb"
	"github.com/pulsaga/pulsaga/internal/jsonfast"
	"github.com/pulsaga/pulsaga/workflow"
)

// The engine's internal records — history entries, snapshots, checkpoints
// and status rows — are protobuf messages (engine/enginepb/records.proto).
// A payload is a two-byte header, the format (recordFormat) and the record
// type, then the message. Records of the JSON format written before (a
// bus.Envelope: the payload starts with '{') are still read, so a topic
// written by an older engine loads; every record written now is protobuf.
// The worker-facing envelopes (events, commands, timers) stay JSON.

// recordFormat is the first byte of a protobuf record.
const recordFormat = 0x01

// Record types: the second byte of a protobuf record.
const (
	recHistory    = 'h'
	recSnapshot   = 's'
	recCheckpoint = 'c'
	recStatus     = 'r'
)

// stateZstdAbove is the size of a state's JSON above which a snapshot holds
// it compressed.
const stateZstdAbove = 512

// maxStateBytes bounds a decompressed state (a corrupt or hostile payload
// cannot make the decoder allocate more).
const maxStateBytes = 64 << 20

var (
	zenc = sync.OnceValue(func() *zstd.Encoder {
		e, err := zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedDefault), zstd.WithEncoderConcurrency(1), zstd.WithLowerEncoderMem(true),
			zstd.WithWindowSize(1<<17)) // states are small: a small window keeps the encoder's own memory small
		if err != nil {
			panic(fmt.Sprintf("engine: zstd encoder: %v", err))
		}
		return e
	})
	zdec = sync.OnceValue(func() *zstd.Decoder {
		d, err := zstd.NewReader(nil, zstd.WithDecoderConcurrency(0), zstd.WithDecoderMaxMemory(maxStateBytes), zstd.WithDecoderLowmem(true))
		if err != nil {
			panic(fmt.Sprintf("engine: zstd decoder: %v", err))
		}
		return d
	})
)

// isJSONRecord says whether a payload is a record of the JSON format.
func isJSONRecord(payload []byte) bool {
	for _, c := range payload {
		switch c {
		case ' ', '\t', '\r', '\n':
			continue
		}
		return c == '{'
	}
	return false
}

// protoRecord checks a protobuf record's header and returns its type and
// message bytes.
func protoRecord(payload []byte) (byte, []byte, error) {
	if len(payload) < 2 || payload[0] != recordFormat {
		return 0, nil, fmt.Errorf("%w: not an engine record (format byte %s)", bus.ErrUndecodable, formatByte(payload))
	}
	return payload[1], payload[2:], nil
}

func formatByte(p []byte) string {
	if len(p) == 0 {
		return "none: empty payload"
	}
	return fmt.Sprintf("%#02x", p[0])
}

func marshalRecord(typ byte, m proto.Message) ([]byte, error) {
	out := make([]byte, 2, 2+proto.Size(m))
	out[0], out[1] = recordFormat, typ
	return proto.MarshalOptions{}.MarshalAppend(out, m)
}

func recordTypeName(t byte) string {
	switch t {
	case recHistory:
		return TypeHistory
	case recSnapshot:
		return TypeSnapshot
	case recCheckpoint:
		return TypeCheckpoint
	case recStatus:
		return TypeStatus
	}
	return fmt.Sprintf("record type %#02x", t)
}

// Times are Unix nanoseconds (0: the zero time). Times beyond what int64
// nanoseconds hold (before 1678, after 2262) are written as those bounds.
var (
	minNanoTime = time.Unix(0, math.MinInt64+1)
	maxNanoTime = time.Unix(0, math.MaxInt64)
)

func nanos(t time.Time) int64 {
	switch {
	case t.IsZero():
		return 0
	case t.Before(minNanoTime):
		return math.MinInt64 + 1
	case t.After(maxNanoTime):
		return math.MaxInt64
	}
	if n := t.UnixNano(); n != 0 {
		return n
	}
	return 1 // the epoch itself: 0 means the zero time
}

func timeOf(n int64) time.Time {
	if n == 0 {
		return time.Time{}
	}
	return time.Unix(0, n).UTC()
}

func nanosList(ts []time.Time) []int64 {
	if len(ts) == 0 {
		return nil
	}
	out := make([]int64, len(ts))
	for i, t := range ts {
		out[i] = nanos(t)
	}
	return out
}

func timeList(ns []int64) []time.Time {
	if len(ns) == 0 {
		return nil
	}
	out := make([]time.Time, len(ns))
	for i, n := range ns {
		out[i] = timeOf(n)
	}
	return out
}

func idsOut(ids []bus.MessageID) [][]byte {
	if len(ids) == 0 {
		return nil
	}
	out := make([][]byte, len(ids))
	for i, id := range ids {
		out[i] = id
	}
	return out
}

func idsIn(ids [][]byte) []bus.MessageID {
	if len(ids) == 0 {
		return nil
	}
	out := make([]bus.MessageID, len(ids))
	for i, id := range ids {
		out[i] = id
	}
	return out
}

func raw(b []byte) json.RawMessage {
	if len(b) == 0 {
		return nil
	}
	return json.RawMessage(b)
}

func bytesOrNil(b []byte) []byte {
	if len(b) == 0 {
		return nil
	}
	return b
}

// Ids inside a process's records mostly hold its process id (command ids
// "<pid>/<step>/<n>", timer ids, envelope ids "result:<pid>/..."): they are
// written relative to it. rel(s) is s with the first occurrence of pid
// replaced: "\x00" + before + "\x00" + after; a string that holds a NUL or
// starts with "\x01" is written "\x01" + s; any other string as it is.
func rel(pid, s string) string {
	if strings.IndexByte(s, 0) >= 0 || strings.HasPrefix(s, "\x01") {
		return "\x01" + s
	}
	if pid != "" {
		if i := strings.Index(s, pid); i >= 0 {
			return "\x00" + s[:i] + "\x00" + s[i+len(pid):]
		}
	}
	return s
}

// unrel undoes rel.
func unrel(pid, s string) string {
	if s == "" {
		return s
	}
	switch s[0] {
	case 1:
		return s[1:]
	case 0:
		if j := strings.IndexByte(s[1:], 0); j >= 0 {
			return s[1:1+j] + pid + s[2+j:]
		}
	}
	return s
}

func relList(pid string, ss []string) []string {
	if len(ss) == 0 {
		return nil
	}
	out := make([]string, len(ss))
	for i, s := range ss {
		out[i] = rel(pid, s)
	}
	return out
}

func unrelList(pid string, ss []string) []string {
	if len(ss) == 0 {
		return nil
	}
	out := make([]string, len(ss))
	for i, s := range ss {
		out[i] = unrel(pid, s)
	}
	return out
}

// History entries.

var recordKinds = map[string]enginepb.RecordKind{
	RecordEvent: enginepb.RecordKind_RECORD_KIND_EVENT, RecordDecision: enginepb.RecordKind_RECORD_KIND_DECISION,
	RecordRejected: enginepb.RecordKind_RECORD_KIND_REJECTED, RecordFailed: enginepb.RecordKind_RECORD_KIND_FAILED,
}

var recordKindNames = map[enginepb.RecordKind]string{
	enginepb.RecordKind_RECORD_KIND_EVENT: RecordEvent, enginepb.RecordKind_RECORD_KIND_DECISION: RecordDecision,
	enginepb.RecordKind_RECORD_KIND_REJECTED: RecordRejected, enginepb.RecordKind_RECORD_KIND_FAILED: RecordFailed,
}

// encodeHistory encodes a history entry.
func encodeHistory(e *HistoryEntry) ([]byte, error) {
	m := &enginepb.HistoryEntry{ProcessId: e.ProcessID, Records: make([]*enginepb.Record, len(e.Records))}
	for i := range e.Records {
		m.Records[i] = recordOut(e.ProcessID, &e.Records[i])
	}
	return marshalRecord(recHistory, m)
}

func recordOut(pid string, r *Record) *enginepb.Record {
	m := &enginepb.Record{
		Seq: r.Seq, At: nanos(r.At), EnvelopeId: rel(pid, r.EnvelopeID), Definition: r.Definition, Version: int64(r.Version),
		Upto: r.Upto, Status: string(r.Status), Commands: relList(pid, r.Commands), Timers: relList(pid, r.Timers), Error: r.Error,
		Wake: nanosList(r.Wake),
	}
	if k, ok := recordKinds[r.Kind]; ok {
		m.Kind = k
	} else {
		m.KindName = r.Kind
	}
	if r.ProcessID != pid {
		// Never the case: a record belongs to its entry's process. Keep it
		// visible rather than lose it.
		m.KindName = r.Kind
		m.Kind = enginepb.RecordKind_RECORD_KIND_UNSPECIFIED
		m.Error = fmt.Sprintf("%s (record of process %q)", r.Error, r.ProcessID)
	}
	if r.TaskID != "" && r.TaskID == taskID(pid, r.Upto) {
		m.TaskIdDefault = true
	} else {
		m.TaskId = rel(pid, r.TaskID)
	}
	if !r.Now.IsZero() && r.Now.Equal(r.At) {
		m.NowIsAt = true
	} else {
		m.Now = nanos(r.Now)
	}
	if r.Event != nil {
		m.Event = pbEventOut(pid, r.Event)
	}
	for _, ig := range r.Ignored {
		m.Ignored = append(m.Ignored, &enginepb.Ignored{Index: int64(ig.Index), Type: string(ig.Type), Reason: string(ig.Reason), Detail: ig.Detail})
	}
	return m
}

func recordIn(pid string, m *enginepb.Record) Record {
	r := Record{
		ProcessID: pid, Seq: m.Seq, At: timeOf(m.At), EnvelopeID: unrel(pid, m.EnvelopeId), Definition: m.Definition, Version: int(m.Version),
		Upto: m.Upto, Status: workflow.Status(m.Status), Commands: unrelList(pid, m.Commands), Timers: unrelList(pid, m.Timers), Error: m.Error,
		Wake: timeList(m.Wake), Kind: recordKindNames[m.Kind], TaskID: unrel(pid, m.TaskId),
	}
	if m.Kind == enginepb.RecordKind_RECORD_KIND_UNSPECIFIED {
		r.Kind = m.KindName
	}
	if m.TaskIdDefault {
		r.TaskID = taskID(pid, m.Upto)
	}
	if m.NowIsAt {
		r.Now = r.At
	} else {
		r.Now = timeOf(m.Now)
	}
	if m.Event != nil {
		ev := pbEventIn(pid, m.Event)
		r.Event = &ev
	}
	for _, ig := range m.Ignored {
		r.Ignored = append(r.Ignored, workflow.Ignored{Index: int(ig.Index), Type: workflow.EventType(ig.Type), Reason: workflow.IgnoreReason(ig.Reason), Detail: ig.Detail})
	}
	return r
}

func pbEventOut(pid string, ev *workflow.Event) *enginepb.Event {
	m := &enginepb.Event{
		V: int64(ev.V), Type: string(ev.Type), Time: nanos(ev.Time), Input: ev.Input, CommandId: rel(pid, ev.CommandID),
		Attempt: int64(ev.Attempt), Compensation: ev.Compensation, Output: ev.Output, TimerId: rel(pid, ev.TimerID),
		Signal: ev.Signal, Data: ev.Data, StepId: ev.StepID, Actor: ev.Actor, Reason: ev.Reason,
		Error: errorOut(ev.Error), BeatAt: nanos(ev.BeatAt), FiredAt: nanos(ev.FiredAt),
	}
	switch ev.ProcessID {
	case pid:
	case "":
		m.ProcessIdEmpty = true
	default:
		m.ProcessId = ev.ProcessID
	}
	if ev.Item != nil {
		m.HasItem, m.Item = true, int64(*ev.Item)
	}
	if p := ev.Parent; p != nil {
		m.Parent = &enginepb.ParentRef{ProcessId: p.ProcessID, CommandId: p.CommandID, ReplyTo: p.ReplyTo, Depth: int64(p.Depth)}
	}
	return m
}

func pbEventIn(pid string, m *enginepb.Event) workflow.Event {
	ev := workflow.Event{
		V: int(m.V), Type: workflow.EventType(m.Type), ProcessID: m.ProcessId, Time: timeOf(m.Time), Input: raw(m.Input),
		CommandID: unrel(pid, m.CommandId), Attempt: int(m.Attempt), Compensation: m.Compensation, Output: raw(m.Output),
		TimerID: unrel(pid, m.TimerId), Signal: m.Signal, Data: raw(m.Data), StepID: m.StepId, Actor: m.Actor, Reason: m.Reason,
		Error: errorIn(m.Error), BeatAt: timeOf(m.BeatAt), FiredAt: timeOf(m.FiredAt),
	}
	if ev.ProcessID == "" && !m.ProcessIdEmpty {
		ev.ProcessID = pid
	}
	if m.HasItem {
		item := int(m.Item)
		ev.Item = &item
	}
	if p := m.Parent; p != nil {
		ev.Parent = &workflow.ParentRef{ProcessID: p.ProcessId, CommandID: p.CommandId, ReplyTo: p.ReplyTo, Depth: int(p.Depth)}
	}
	return ev
}

func errorOut(e *workflow.ErrorInfo) *enginepb.ErrorInfo {
	if e == nil {
		return nil
	}
	m := &enginepb.ErrorInfo{Type: e.Type, Message: e.Message}
	if e.Retryable != nil {
		m.Retryable = 2
		if *e.Retryable {
			m.Retryable = 1
		}
	}
	return m
}

func errorIn(m *enginepb.ErrorInfo) *workflow.ErrorInfo {
	if m == nil {
		return nil
	}
	e := &workflow.ErrorInfo{Type: m.Type, Message: m.Message}
	if m.Retryable != 0 {
		r := m.Retryable == 1
		e.Retryable = &r
	}
	return e
}

// DecodeHistory decodes a message of the history topic: the records one
// batch appended to one process's stream (protobuf, or the JSON format of
// older engines). Errors wrap bus.ErrUndecodable.
func DecodeHistory(payload []byte) (*HistoryEntry, error) {
	if isJSONRecord(payload) {
		return decodeJSONHistory(payload)
	}
	typ, b, err := protoRecord(payload)
	if err != nil {
		return nil, err
	}
	if typ != recHistory {
		return nil, fmt.Errorf("%w: a %s on the history topic", bus.ErrUndecodable, recordTypeName(typ))
	}
	var m enginepb.HistoryEntry
	if err := proto.Unmarshal(b, &m); err != nil {
		return nil, fmt.Errorf("%w: history entry: %v", bus.ErrUndecodable, err)
	}
	e := &HistoryEntry{ProcessID: m.ProcessId, Records: make([]Record, len(m.Records))}
	for i, r := range m.Records {
		e.Records[i] = recordIn(m.ProcessId, r)
	}
	return e, nil
}

func decodeJSONHistory(payload []byte) (*HistoryEntry, error) {
	env, err := bus.DecodeEnvelope(payload)
	if err != nil {
		return nil, err
	}
	if env.Type != TypeHistory {
		return nil, fmt.Errorf("%w: a %q message on the history topic", bus.ErrUndecodable, env.Type)
	}
	var e HistoryEntry
	if err := env.DecodePayload(&e); err != nil {
		return nil, err
	}
	return &e, nil
}

// Snapshots and checkpoints (the snapshots topic).

// encodeSnapshot encodes a process's memory image.
func encodeSnapshot(s *Snapshot) ([]byte, error) {
	m := &enginepb.Snapshot{
		ProcessId: s.ProcessID, Definition: s.Definition, Version: int64(s.Version), Seq: s.Seq, Seen: relList(s.ProcessID, s.Seen),
		Armed: nanosList(s.Armed), HistoryIds: idsOut(s.HistoryIDs), Partition: int64(s.Partition), CreatedAt: nanos(s.CreatedAt),
	}
	if s.State != nil {
		m.Status, m.EndedAt = string(s.State.Status), nanos(s.State.EndedAt)
		if !s.State.Status.Terminal() {
			var d time.Time
			for _, t := range s.State.Timers {
				if d.IsZero() || t.FireAt.Before(d) {
					d = t.FireAt
				}
			}
			m.NextDeadline = nanos(d)
		}
		if len(s.StateZstd) > 0 {
			m.StateZstd = s.StateZstd // (the state's bytes, known already)
		} else {
			b, err := json.Marshal(s.State)
			if err != nil {
				return nil, fmt.Errorf("snapshot of %s: %w", s.ProcessID, err)
			}
			if len(b) > stateZstdAbove {
				m.StateZstd = zenc().EncodeAll(b, make([]byte, 0, len(b)/3))
			} else {
				m.State = b
			}
		}
	}
	for _, p := range s.Pending {
		m.Pending = append(m.Pending, &enginepb.PendingEvent{Seq: p.Seq, Event: pbEventOut(s.ProcessID, &p.Event)})
	}
	if o := s.Outstanding; o != nil {
		m.Outstanding = &enginepb.Outstanding{TaskId: rel(s.ProcessID, o.TaskID), Upto: o.Upto, Now: nanos(o.Now), Issued: int64(o.Issued), IssuedAt: nanos(o.IssuedAt)}
	}
	return marshalRecord(recSnapshot, m)
}

func snapshotIn(m *enginepb.Snapshot) (*Snapshot, error) {
	s := &Snapshot{
		ProcessID: m.ProcessId, Definition: m.Definition, Version: int(m.Version), Seq: m.Seq, Seen: unrelList(m.ProcessId, m.Seen),
		Armed: timeList(m.Armed), HistoryIDs: idsIn(m.HistoryIds), Partition: int(m.Partition), CreatedAt: timeOf(m.CreatedAt),
	}
	state := m.State
	if len(m.StateZstd) > 0 {
		b, err := zdec().DecodeAll(m.StateZstd, nil)
		if err != nil {
			return nil, fmt.Errorf("%w: snapshot of %s: state: %v", bus.ErrUndecodable, m.ProcessId, err)
		}
		state, s.StateZstd = b, m.StateZstd
	}
	if len(state) > 0 {
		s.State = new(workflow.State)
		if err := jsonfast.Unmarshal(state, s.State); err != nil {
			return nil, fmt.Errorf("%w: snapshot of %s: state: %v", bus.ErrUndecodable, m.ProcessId, err)
		}
	}
	for _, p := range m.Pending {
		var ev workflow.Event
		if p.Event != nil {
			ev = pbEventIn(m.ProcessId, p.Event)
		}
		s.Pending = append(s.Pending, PendingEvent{Seq: p.Seq, Event: ev})
	}
	if o := m.Outstanding; o != nil {
		s.Outstanding = &Outstanding{TaskID: unrel(m.ProcessId, o.TaskId), Upto: o.Upto, Now: timeOf(o.Now), Issued: int(o.Issued), IssuedAt: timeOf(o.IssuedAt)}
	}
	return s, nil
}

// snapshotHead is what loading reads of a snapshot without decoding its
// state (peekSnapshot).
type snapshotHead struct {
	pid, definition string
	version         int
	seq             int64
	partition       int
	createdAt       time.Time
	// busy: pending events or a decision in flight (the image is needed
	// decoded at once).
	busy         bool
	armed        []time.Time
	status       workflow.Status
	endedAt      time.Time
	nextDeadline time.Time
}

// peekSnapshot reads a protobuf snapshot's head; ok is false for anything
// else (a checkpoint, a JSON record: decode it whole).
func peekSnapshot(payload []byte) (snapshotHead, bool) {
	if isJSONRecord(payload) {
		return snapshotHead{}, false
	}
	typ, b, err := protoRecord(payload)
	if err != nil || typ != recSnapshot {
		return snapshotHead{}, false
	}
	var m enginepb.Snapshot
	if err := (proto.UnmarshalOptions{DiscardUnknown: true}).Unmarshal(b, &m); err != nil {
		return snapshotHead{}, false
	}
	if len(m.State) == 0 && len(m.StateZstd) == 0 {
		return snapshotHead{}, false // no state yet: decode it whole
	}
	return snapshotHead{
		pid: m.ProcessId, definition: m.Definition, version: int(m.Version), seq: m.Seq, partition: int(m.Partition),
		createdAt: timeOf(m.CreatedAt), busy: len(m.Pending) > 0 || m.Outstanding != nil, armed: timeList(m.Armed),
		status: workflow.Status(m.Status), endedAt: timeOf(m.EndedAt), nextDeadline: timeOf(m.NextDeadline),
	}, true
}

// encodeCheckpoint encodes a partition's checkpoint.
func encodeCheckpoint(c *Checkpoint) ([]byte, error) {
	return marshalRecord(recCheckpoint, &enginepb.Checkpoint{Partition: int64(c.Partition), Start: c.Start, After: c.After})
}

// decodeSnapshotsMessage decodes a message of the snapshots topic: a
// snapshot or a checkpoint (exactly one of them is not nil).
func decodeSnapshotsMessage(payload []byte) (*Snapshot, *Checkpoint, error) {
	if isJSONRecord(payload) {
		env, err := bus.DecodeEnvelope(payload)
		if err != nil {
			return nil, nil, err
		}
		switch env.Type {
		case TypeCheckpoint:
			var c Checkpoint
			if err := env.DecodePayload(&c); err != nil {
				return nil, nil, err
			}
			return nil, &c, nil
		case TypeSnapshot:
			var s Snapshot
			if err := env.DecodePayload(&s); err != nil {
				return nil, nil, err
			}
			return &s, nil, nil
		}
		return nil, nil, fmt.Errorf("%w: a %q message on the snapshots topic", bus.ErrUndecodable, env.Type)
	}
	typ, b, err := protoRecord(payload)
	if err != nil {
		return nil, nil, err
	}
	switch typ {
	case recCheckpoint:
		var m enginepb.Checkpoint
		if err := proto.Unmarshal(b, &m); err != nil {
			return nil, nil, fmt.Errorf("%w: checkpoint: %v", bus.ErrUndecodable, err)
		}
		return nil, &Checkpoint{Partition: int(m.Partition), Start: bytesOrNil(m.Start), After: m.After}, nil
	case recSnapshot:
		var m enginepb.Snapshot
		if err := proto.Unmarshal(b, &m); err != nil {
			return nil, nil, fmt.Errorf("%w: snapshot: %v", bus.ErrUndecodable, err)
		}
		s, err := snapshotIn(&m)
		return s, nil, err
	}
	return nil, nil, fmt.Errorf("%w: a %s on the snapshots topic", bus.ErrUndecodable, recordTypeName(typ))
}

// DecodeSnapshot decodes a snapshot of the snapshots topic (a checkpoint
// is an error).
func DecodeSnapshot(payload []byte) (*Snapshot, error) {
	s, _, err := decodeSnapshotsMessage(payload)
	if err == nil && s == nil {
		err = fmt.Errorf("%w: a checkpoint, not a snapshot", bus.ErrUndecodable)
	}
	return s, err
}

// Status rows.

// encodeStatus encodes a process's status row.
func encodeStatus(r *StatusRecord) ([]byte, error) {
	return marshalRecord(recStatus, &enginepb.StatusRow{
		ProcessId: r.ProcessID, Definition: r.Definition, Version: int64(r.Version), Status: string(r.Status), Steps: r.Steps,
		LastError: r.LastError, Seq: r.Seq, StartedAt: nanos(r.StartedAt), UpdatedAt: nanos(r.UpdatedAt), EndedAt: nanos(r.EndedAt),
		Partition: int64(r.Partition), HistoryIds: idsOut(r.HistoryIDs),
	})
}

// DecodeStatus decodes a message of the status topic (a process's row,
// protobuf or the JSON format of older engines); an empty payload is a
// tombstone: (nil, nil). Errors wrap bus.ErrUndecodable.
func DecodeStatus(payload []byte) (*StatusRecord, error) {
	if len(payload) == 0 {
		return nil, nil
	}
	if isJSONRecord(payload) {
		env, err := bus.DecodeEnvelope(payload)
		if err != nil {
			return nil, err
		}
		if env.Type != TypeStatus {
			return nil, fmt.Errorf("%w: a %q message on the status topic", bus.ErrUndecodable, env.Type)
		}
		var r StatusRecord
		if err := env.DecodePayload(&r); err != nil {
			return nil, err
		}
		return &r, nil
	}
	typ, b, err := protoRecord(payload)
	if err != nil {
		return nil, err
	}
	if typ != recStatus {
		return nil, fmt.Errorf("%w: a %s on the status topic", bus.ErrUndecodable, recordTypeName(typ))
	}
	var m enginepb.StatusRow
	if err := proto.Unmarshal(b, &m); err != nil {
		return nil, fmt.Errorf("%w: status row: %v", bus.ErrUndecodable, err)
	}
	r := &StatusRecord{
		ProcessID: m.ProcessId, Definition: m.Definition, Version: int(m.Version), Status: workflow.Status(m.Status), Steps: m.Steps,
		LastError: m.LastError, Seq: m.Seq, StartedAt: timeOf(m.StartedAt), UpdatedAt: timeOf(m.UpdatedAt), EndedAt: timeOf(m.EndedAt),
		Partition: int(m.Partition), HistoryIDs: idsIn(m.HistoryIds),
	}
	if len(r.Steps) == 0 {
		r.Steps = nil
	}
	return r, nil
}
