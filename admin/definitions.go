package admin

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"slices"
	"strconv"
	"time"

	"github.com/pulsaga/pulsaga/workflow"
)

// StepInfo is the shape of one step, for the step graph.
type StepInfo struct {
	ID         string   `json:"id"`
	Kind       string   `json:"kind"`
	Service    string   `json:"service,omitempty"`
	Command    string   `json:"command,omitempty"`
	Needs      []string `json:"needs,omitempty"`
	Compensate bool     `json:"compensate,omitempty"`
	OnFailure  string   `json:"on_failure,omitempty"`
	// CompensateCommand is the compensation's command.
	CompensateCommand string `json:"compensate_command,omitempty"`
	// Signal is what a wait step waits for; Sleep a sleep step's duration.
	Signal string `json:"signal,omitempty"`
	Sleep  string `json:"sleep,omitempty"`
	// Conditional (when:) and ForEach (for_each:) steps.
	Conditional bool `json:"conditional,omitempty"`
	ForEach     bool `json:"for_each,omitempty"`
	// Timeout per attempt, MaxAttempts of the retry policy.
	Timeout     string `json:"timeout,omitempty"`
	MaxAttempts int    `json:"max_attempts,omitempty"`
	// Line is where the step starts in the definition's YAML.
	Line int `json:"line,omitempty"`
}

// DefinitionVersion is one registered version of a definition, with how
// many processes of it the status table holds.
type DefinitionVersion struct {
	Version      int       `json:"version"`
	File         string    `json:"file,omitempty"`
	RegisteredAt time.Time `json:"registered_at,omitzero"`
	Processes    int       `json:"processes"`
	Live         int       `json:"live"`
}

// DefinitionInfo describes a registered definition.
type DefinitionInfo struct {
	Name         string     `json:"name"`
	Version      int        `json:"version"`
	Description  string     `json:"description,omitempty"`
	File         string     `json:"file,omitempty"`
	RegisteredAt time.Time  `json:"registered_at,omitzero"`
	Steps        []StepInfo `json:"steps,omitempty"`
	Source       string     `json:"source,omitempty"`
	// Versions are every registered version of the definition, oldest
	// first (GET /api/v1/definitions/{name} only).
	Versions []DefinitionVersion `json:"versions,omitempty"`
}

func describe(def *workflow.Definition) DefinitionInfo {
	d := DefinitionInfo{Name: def.Name, Version: def.Version, Description: def.Description, File: def.File}
	for _, st := range def.Steps {
		si := StepInfo{ID: st.ID, Kind: string(st.Kind), Service: st.Service, Command: st.Command,
			Needs: st.Needs, Compensate: st.Compensate != nil, OnFailure: string(st.OnFailure),
			Conditional: st.When != nil, ForEach: st.ForEach != nil, Line: st.Pos.Line}
		if st.Compensate != nil {
			si.CompensateCommand = st.Compensate.Command
		}
		if st.Wait != nil {
			si.Signal = st.Wait.Signal
		}
		if st.Sleep > 0 {
			si.Sleep = st.Sleep.String()
		}
		if st.Service != "" {
			si.MaxAttempts = st.Retry.MaxAttempts
			if st.Timeout > 0 {
				si.Timeout = st.Timeout.String()
			}
		}
		d.Steps = append(d.Steps, si)
	}
	return d
}

// ValidationProblem is one error found in a definition.
type ValidationProblem struct {
	Line    int    `json:"line"`
	Col     int    `json:"col"`
	Path    string `json:"path,omitempty"`
	Message string `json:"message"`
	Hint    string `json:"hint,omitempty"`
	Text    string `json:"text"` // file:line:col: message (hint)
}

// ValidationResult answers a validate request.
type ValidationResult struct {
	Valid      bool                `json:"valid"`
	Definition *DefinitionInfo     `json:"definition,omitempty"`
	Errors     []ValidationProblem `json:"errors,omitempty"`
}

func problems(err error) []ValidationProblem {
	var verrs workflow.ValidationErrors
	if !errors.As(err, &verrs) {
		return []ValidationProblem{{Message: err.Error(), Text: err.Error()}}
	}
	out := make([]ValidationProblem, 0, len(verrs))
	for _, e := range verrs {
		out = append(out, ValidationProblem{Line: e.Pos.Line, Col: e.Pos.Col, Path: e.Path, Message: e.Message, Hint: e.Hint, Text: e.Error()})
	}
	return out
}

func (s *Server) listDefinitions(w http.ResponseWriter, r *http.Request) {
	recs, err := s.opts.Registry.List(r.Context())
	if err != nil {
		s.fail(w, r, fmt.Errorf("%w: %v", ErrUnavailable, err))
		return
	}
	out := []DefinitionInfo{}
	for _, rec := range recs {
		out = append(out, DefinitionInfo{Name: rec.Name, Version: rec.Version, File: rec.File, RegisteredAt: rec.RegisteredAt})
	}
	writeJSON(w, http.StatusOK, map[string]any{"definitions": out})
}

func (s *Server) getDefinition(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	version := 0
	if v := r.URL.Query().Get("version"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			s.fail(w, r, fmt.Errorf("%w: version %q is not a positive integer", ErrBadRequest, v))
			return
		}
		version = n
	}
	def, err := s.opts.Registry.Get(r.Context(), name, version)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	info := describe(def)
	recs, err := s.opts.Registry.List(r.Context())
	if err != nil {
		s.fail(w, r, fmt.Errorf("%w: %v", ErrUnavailable, err))
		return
	}
	counts := map[int]*DefinitionVersion{}
	for _, rec := range recs {
		if rec.Name != def.Name {
			continue
		}
		if rec.Version == def.Version {
			info.Source, info.File, info.RegisteredAt = rec.Source, rec.File, rec.RegisteredAt
		}
		counts[rec.Version] = &DefinitionVersion{Version: rec.Version, File: rec.File, RegisteredAt: rec.RegisteredAt}
	}
	if err := s.refresh(r.Context()); err == nil {
		for _, row := range s.status.List() {
			if v := counts[row.Version]; v != nil && row.Definition == def.Name {
				v.Processes++
				if !row.Status.Terminal() {
					v.Live++
				}
			}
		}
	}
	for _, v := range counts {
		info.Versions = append(info.Versions, *v)
	}
	slices.SortFunc(info.Versions, func(a, b DefinitionVersion) int { return a.Version - b.Version })
	writeJSON(w, http.StatusOK, info)
}

func readYAML(w http.ResponseWriter, r *http.Request) (string, []byte, error) {
	file := r.URL.Query().Get("file")
	if file == "" {
		file = "definition.yaml"
	}
	file = filepath.Base(file)
	b, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBody))
	if err != nil {
		return "", nil, fmt.Errorf("%w: body: %v", ErrBadRequest, err)
	}
	if len(b) == 0 {
		return "", nil, fmt.Errorf("%w: empty body; send the definition's YAML", ErrBadRequest)
	}
	return file, b, nil
}

func (s *Server) validateDefinition(w http.ResponseWriter, r *http.Request) {
	file, src, err := readYAML(w, r)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	def, err := workflow.Load(file, src)
	if err != nil {
		writeJSON(w, http.StatusUnprocessableEntity, ValidationResult{Errors: problems(err)})
		return
	}
	info := describe(def)
	writeJSON(w, http.StatusOK, ValidationResult{Valid: true, Definition: &info})
}

func (s *Server) registerDefinition(w http.ResponseWriter, r *http.Request) {
	file, src, err := readYAML(w, r)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	if _, err := workflow.Load(file, src); err != nil {
		writeJSON(w, http.StatusUnprocessableEntity, ValidationResult{Errors: problems(err)})
		return
	}
	def, err := s.opts.Registry.Register(r.Context(), file, src)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	info := describe(def)
	s.log.Info().Str("definition", def.Name).Int("version", def.Version).Str("actor", PrincipalFrom(r.Context()).Name).Msg("definition registered")
	writeJSON(w, http.StatusCreated, info)
}
