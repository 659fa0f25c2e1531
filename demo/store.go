package demo

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
)

// Store is what makes a demo service idempotent, as a real one must be:
// the first call with an idempotency key does the work and keeps its
// output; a later call with the same key (another attempt of the step, a
// redelivery, a late duplicate) does nothing and answers with that output.
type Store interface {
	// Claim records output as the work done under key, unless work is
	// recorded already: then it returns that work's output and first false.
	Claim(key string, output []byte) (stored []byte, first bool, err error)
}

// MemoryStore is a Store for the services of one process.
type MemoryStore struct {
	mu   sync.Mutex
	done map[string][]byte
}

// NewMemoryStore creates an empty store.
func NewMemoryStore() *MemoryStore { return &MemoryStore{done: map[string][]byte{}} }

// Claim implements Store.
func (s *MemoryStore) Claim(key string, output []byte) ([]byte, bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if prev, ok := s.done[key]; ok {
		return prev, false, nil
	}
	s.done[key] = output
	return output, true, nil
}

// DirStore is a Store shared by the demo workers of one machine (one file
// per key in a directory, claimed with a hard link, which only one process
// can make), so that two worker processes running two attempts of one step
// still do its work once.
type DirStore struct{ Dir string }

// Claim implements Store.
func (s DirStore) Claim(key string, output []byte) ([]byte, bool, error) {
	if err := os.MkdirAll(s.Dir, 0o755); err != nil {
		return nil, false, err
	}
	sum := sha256.Sum256([]byte(key))
	final := filepath.Join(s.Dir, hex.EncodeToString(sum[:16]))
	tmp, err := os.CreateTemp(s.Dir, ".claim-*")
	if err != nil {
		return nil, false, err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(output); err != nil {
		tmp.Close()
		return nil, false, err
	}
	if err := tmp.Close(); err != nil {
		return nil, false, err
	}
	switch err := os.Link(tmp.Name(), final); {
	case err == nil:
		return output, true, nil
	case errors.Is(err, fs.ErrExist):
		prev, err := os.ReadFile(final)
		if err != nil {
			return nil, false, fmt.Errorf("demo store: %w", err)
		}
		return prev, false, nil
	default:
		return nil, false, fmt.Errorf("demo store: %w", err)
	}
}
