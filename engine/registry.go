package engine

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/pulsaga/pulsaga/bus"
	"github.com/pulsaga/pulsaga/workflow"
)

// ErrUnknownDefinition: no definition has that name (and version).
var ErrUnknownDefinition = errors.New("unknown definition")

// ErrVersionConflict: name@version is registered with other content.
var ErrVersionConflict = errors.New("definition version already registered with different content")

// Registry holds the registered definitions, read from the compacted
// definitions topic. Definitions are versioned; a process is pinned to the
// version it started with.
type Registry struct {
	bus   bus.Bus
	topic string
	clock func() time.Time

	mu     sync.Mutex
	reader bus.Reader
	defs   map[string]map[int]*regEntry // name → version → entry
}

type regEntry struct {
	rec DefinitionRecord
	def *workflow.Definition
}

// NewRegistry reads definitions from topic.
func NewRegistry(b bus.Bus, topic string, clock func() time.Time) *Registry {
	if clock == nil {
		clock = time.Now
	}
	return &Registry{bus: b, topic: topic, clock: clock, defs: map[string]map[int]*regEntry{}}
}

// Sync reads every definition registered so far.
func (r *Registry) Sync(ctx context.Context) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.syncLocked(ctx)
}

func (r *Registry) syncLocked(ctx context.Context) error {
	if r.reader == nil {
		rd, err := r.bus.Reader(ctx, bus.ReaderOptions{Topic: r.topic, Compacted: true})
		if err != nil {
			return fmt.Errorf("definitions: %w", err)
		}
		r.reader = rd
	}
	for {
		more, err := r.reader.HasNext(ctx)
		if err != nil {
			return fmt.Errorf("definitions: %w", err)
		}
		if !more {
			return nil
		}
		m, err := r.reader.Next(ctx)
		if err != nil {
			return fmt.Errorf("definitions: %w", err)
		}
		env, err := bus.DecodeEnvelope(m.Payload)
		if err != nil || env.Type != TypeDefinition {
			continue // not ours; the topic is written only through Register
		}
		var rec DefinitionRecord
		if env.DecodePayload(&rec) != nil {
			continue
		}
		def, err := workflow.Load(rec.File, []byte(rec.Source))
		if err != nil {
			continue // registered by a newer build with a language this one lacks
		}
		r.put(rec, def)
	}
}

func (r *Registry) put(rec DefinitionRecord, def *workflow.Definition) {
	vs := r.defs[rec.Name]
	if vs == nil {
		vs = map[int]*regEntry{}
		r.defs[rec.Name] = vs
	}
	vs[rec.Version] = &regEntry{rec: rec, def: def}
}

// Get returns name@version (version 0: the latest). It reads new
// registrations from the topic when the definition is not known yet.
func (r *Registry) Get(ctx context.Context, name string, version int) (*workflow.Definition, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if d := r.lookup(name, version); d != nil {
		return d, nil
	}
	if err := r.syncLocked(ctx); err != nil {
		return nil, err
	}
	if d := r.lookup(name, version); d != nil {
		return d, nil
	}
	if version == 0 {
		return nil, fmt.Errorf("%w: %q", ErrUnknownDefinition, name)
	}
	return nil, fmt.Errorf("%w: %s version %d", ErrUnknownDefinition, name, version)
}

func (r *Registry) lookup(name string, version int) *workflow.Definition {
	vs := r.defs[name]
	if version > 0 {
		if e := vs[version]; e != nil {
			return e.def
		}
		return nil
	}
	best := 0
	for v := range vs {
		best = max(best, v)
	}
	if best == 0 {
		return nil
	}
	return vs[best].def
}

// List returns every registered definition record, by name then version.
func (r *Registry) List(ctx context.Context) ([]DefinitionRecord, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if err := r.syncLocked(ctx); err != nil {
		return nil, err
	}
	var out []DefinitionRecord
	for _, vs := range r.defs {
		for _, e := range vs {
			out = append(out, e.rec)
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Name != out[j].Name {
			return out[i].Name < out[j].Name
		}
		return out[i].Version < out[j].Version
	})
	return out, nil
}

// Register validates a definition and publishes it. Registering the same
// name@version with the same source again is a no-op; with another source
// it fails with ErrVersionConflict.
func (r *Registry) Register(ctx context.Context, file string, src []byte) (*workflow.Definition, error) {
	def, err := workflow.Load(file, src)
	if err != nil {
		return nil, err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if err := r.syncLocked(ctx); err != nil {
		return nil, err
	}
	if e := r.defs[def.Name][def.Version]; e != nil {
		if e.rec.Source == string(src) {
			return e.def, nil
		}
		return nil, fmt.Errorf("%w: %s version %d (bump version: in %s)", ErrVersionConflict, def.Name, def.Version, file)
	}
	if err := r.checkCalls(def, nil); err != nil { // registry_calls.go
		return nil, err
	}
	rec := DefinitionRecord{Name: def.Name, Version: def.Version, File: filepath.Base(file), Source: string(src), RegisteredAt: r.clock().UTC()}
	key := DefinitionKey(def.Name, def.Version)
	b, err := encode(TypeDefinition, "definition:"+key, "", r.clock(), rec)
	if err != nil {
		return nil, err
	}
	p, err := r.bus.Producer(ctx, bus.ProducerOptions{Topic: r.topic})
	if err != nil {
		return nil, fmt.Errorf("definitions: %w", err)
	}
	defer p.Close()
	if _, err := p.Send(ctx, &bus.OutMessage{Key: key, Payload: b}); err != nil {
		return nil, fmt.Errorf("definitions: register %s: %w", key, err)
	}
	r.put(rec, def)
	return def, nil
}

// RegisterPath registers a YAML file, or every .yaml/.yml file of a
// directory (not recursive). All files are validated before any is
// registered; the errors of every file are reported together.
func (r *Registry) RegisterPath(ctx context.Context, path string) ([]*workflow.Definition, error) {
	files := []string{path}
	if st, err := os.Stat(path); err != nil {
		return nil, err
	} else if st.IsDir() {
		entries, err := os.ReadDir(path)
		if err != nil {
			return nil, err
		}
		files = files[:0]
		for _, e := range entries {
			if n := e.Name(); !e.IsDir() && (strings.HasSuffix(n, ".yaml") || strings.HasSuffix(n, ".yml")) {
				files = append(files, filepath.Join(path, n))
			}
		}
	}
	srcs := make([][]byte, len(files))
	loaded := make([]*workflow.Definition, len(files))
	var errs []error
	for i, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if loaded[i], err = workflow.Load(f, b); err != nil {
			errs = append(errs, err)
		}
		srcs[i] = b
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	// the definitions called by others first (registry_calls.go), and
	// their calls checked before any is registered
	batch := map[string]map[int]bool{}
	for _, d := range loaded {
		if batch[d.Name] == nil {
			batch[d.Name] = map[int]bool{}
		}
		batch[d.Name][d.Version] = true
	}
	r.mu.Lock()
	err := r.syncLocked(ctx)
	for _, d := range loaded {
		if err == nil {
			err = r.checkCalls(d, batch)
		}
	}
	r.mu.Unlock()
	if err != nil {
		return nil, err
	}
	order := callOrder(loaded)
	files2, srcs2 := make([]string, len(files)), make([][]byte, len(files))
	for n, i := range order {
		files2[n], srcs2[n] = files[i], srcs[i]
	}
	files, srcs = files2, srcs2
	var defs []*workflow.Definition
	for i, f := range files {
		d, err := r.Register(ctx, f, srcs[i])
		if err != nil {
			return defs, err
		}
		defs = append(defs, d)
	}
	return defs, nil
}

// Close releases the reader.
func (r *Registry) Close() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.reader != nil {
		err := r.reader.Close()
		r.reader = nil
		return err
	}
	return nil
}
