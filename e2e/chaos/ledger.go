package chaos

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// Entry is one effect the chaos service did, as a real service would keep
// it: under the command's idempotency key, with the answer it gave, so
// that a command seen again under the same key is answered the same
// without doing the effect again.
type Entry struct {
	// Key is the command's idempotency key.
	Key string `json:"key"`
	// Unit names the step or for_each item: "<process>/<step>" or
	// "<process>/<step>[<item>]".
	Unit string `json:"unit"`
	// Undo marks a compensation's effect.
	Undo bool `json:"undo,omitempty"`
	// Noop marks a compensation of a unit the service has no effect of
	// (an unknown outcome that had not happened): nothing to undo.
	Noop      bool            `json:"noop,omitempty"`
	ProcessID string          `json:"process_id"`
	Step      string          `json:"step"`
	Item      *int            `json:"item,omitempty"`
	Command   string          `json:"command"`
	CommandID string          `json:"command_id"`
	Attempt   int             `json:"attempt"`
	Instance  string          `json:"instance"`
	Output    json.RawMessage `json:"output"`
	At        time.Time       `json:"at"`
}

// Ledger is the chaos service's durable record of effects, shared by all
// its instances: an append-only file of JSON lines, one per effect,
// written under an exclusive flock. An instance killed with SIGKILL loses
// nothing it acknowledged (its lock goes with it; a line it left half
// written is cut by the next writer), and every instance sees the others'
// effects before doing one.
type Ledger struct {
	path string
	sync bool

	mu      sync.Mutex // the file offset and index; flock is per open file, not per goroutine
	f       *os.File
	off     int64            // bytes indexed
	byKey   map[string]Entry // every effect by key
	forward map[string]bool  // units with a forward effect
}

// OpenLedger opens (or creates) a ledger. With sync, every effect is
// fsynced before it is answered (as a service's database would); without,
// it survives the process's death but not the machine's.
func OpenLedger(path string, sync bool) (*Ledger, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("ledger: %w", err)
	}
	return &Ledger{path: path, sync: sync, f: f, byKey: map[string]Entry{}, forward: map[string]bool{}}, nil
}

// Close closes the file.
func (l *Ledger) Close() error { return l.f.Close() }

func (l *Ledger) lock(how int) (unlock func(), err error) {
	l.mu.Lock()
	for {
		err = unix.Flock(int(l.f.Fd()), how)
		if !errors.Is(err, unix.EINTR) {
			break
		}
	}
	if err != nil {
		l.mu.Unlock()
		return nil, fmt.Errorf("ledger: lock %s: %w", l.path, err)
	}
	return func() {
		_ = unix.Flock(int(l.f.Fd()), unix.LOCK_UN)
		l.mu.Unlock()
	}, nil
}

// catchUp indexes what the other instances appended. Holding the lock
// exclusively, it also cuts a last line left incomplete by a writer that
// died mid-write.
func (l *Ledger) catchUp(exclusive bool) error {
	st, err := l.f.Stat()
	if err != nil {
		return fmt.Errorf("ledger: %w", err)
	}
	if st.Size() <= l.off {
		return nil
	}
	buf := make([]byte, st.Size()-l.off)
	if _, err := l.f.ReadAt(buf, l.off); err != nil && !errors.Is(err, io.EOF) {
		return fmt.Errorf("ledger: read %s: %w", l.path, err)
	}
	end := bytes.LastIndexByte(buf, '\n') + 1
	for _, line := range bytes.Split(buf[:end], []byte{'\n'}) {
		if len(line) == 0 {
			continue
		}
		var e Entry
		if err := json.Unmarshal(line, &e); err != nil {
			return fmt.Errorf("ledger: %s at byte %d: %w", l.path, l.off, err)
		}
		l.index(e)
	}
	l.off += int64(end)
	if end < len(buf) && exclusive {
		if err := l.f.Truncate(l.off); err != nil {
			return fmt.Errorf("ledger: cut a torn line: %w", err)
		}
	}
	return nil
}

func (l *Ledger) index(e Entry) {
	if _, ok := l.byKey[e.Key]; !ok {
		l.byKey[e.Key] = e
	}
	if !e.Undo {
		l.forward[e.Unit] = true
	}
}

// Get returns the effect recorded under key, if any.
func (l *Ledger) Get(key string) (Entry, bool, error) {
	unlock, err := l.lock(unix.LOCK_SH)
	if err != nil {
		return Entry{}, false, err
	}
	defer unlock()
	if err := l.catchUp(false); err != nil {
		return Entry{}, false, err
	}
	e, ok := l.byKey[key]
	return e, ok, nil
}

// Do records e's effect unless its key has one already: it returns the
// effect recorded under the key and whether it is new (the caller did the
// effect). An undo of a unit without a forward effect is recorded as a
// no-op.
func (l *Ledger) Do(e Entry) (Entry, bool, error) {
	unlock, err := l.lock(unix.LOCK_EX)
	if err != nil {
		return Entry{}, false, err
	}
	defer unlock()
	if err := l.catchUp(true); err != nil {
		return Entry{}, false, err
	}
	if old, ok := l.byKey[e.Key]; ok {
		return old, false, nil
	}
	if e.Undo {
		e.Noop = !l.forward[e.Unit]
	}
	line, err := json.Marshal(e)
	if err != nil {
		return Entry{}, false, err
	}
	line = append(line, '\n')
	if _, err := l.f.Write(line); err != nil {
		return Entry{}, false, fmt.Errorf("ledger: append: %w", err)
	}
	if l.sync {
		if err := l.f.Sync(); err != nil {
			return Entry{}, false, fmt.Errorf("ledger: sync: %w", err)
		}
	}
	l.off += int64(len(line))
	l.index(e)
	return e, true, nil
}

// ReadLedger reads every line of a ledger file (a torn last line is left
// out), duplicates included: the checker counts effects per key from it.
func ReadLedger(path string) ([]Entry, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("ledger: %w", err)
	}
	defer f.Close()
	var out []Entry
	r := bufio.NewReader(f)
	for {
		line, err := r.ReadBytes('\n')
		if errors.Is(err, io.EOF) {
			return out, nil // a line without its newline was torn
		}
		if err != nil {
			return nil, fmt.Errorf("ledger: %w", err)
		}
		var e Entry
		if err := json.Unmarshal(line, &e); err != nil {
			return nil, fmt.Errorf("ledger: %s: %w", path, err)
		}
		out = append(out, e)
	}
}
