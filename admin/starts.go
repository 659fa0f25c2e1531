package admin

import (
	"errors"
	"fmt"
	"net/http"

	"github.com/pulsaga/pulsaga/engine"
	"github.com/pulsaga/pulsaga/protocol"
)

// MaxBatchStarts is the most starts one POST /api/v1/processes/batch takes.
const MaxBatchStarts = 1000

// BatchStartBody is the body of a batch start.
type BatchStartBody struct {
	Starts []StartBody `json:"starts"`
}

// BatchStartItem is the outcome of one start of a batch, in the order of
// the request.
type BatchStartItem struct {
	ProcessID string `json:"process_id,omitempty"`
	// Accepted is true when the start request was handed to the engine.
	Accepted bool `json:"accepted"`
	// Created is false for a start of an id that existed already.
	Created *bool `json:"created,omitempty"`
	// Error says why it was not accepted: code as in error bodies
	// (bad_request, not_found, unavailable) and a message.
	Error *ErrorDetail `json:"error,omitempty"`
}

// ErrorDetail is an error's code and message.
type ErrorDetail struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

// BatchStartResult answers a batch start.
type BatchStartResult struct {
	Accepted int              `json:"accepted"`
	Failed   int              `json:"failed"`
	Actor    string           `json:"actor"`
	Results  []BatchStartItem `json:"results"`
}

// startBatch starts many processes with one request: each start is checked
// as a single start is (a start of an existing id is accepted without
// being sent when it asks for the same process, a conflict otherwise); the
// others are sent together (one round trip to the broker for all), and the
// answer lists every start's outcome in order. A start that fails does not hold back the others; the status is
// 200 when at least one was accepted or all were refused for their own
// reasons, 503 when the engine could take none.
func (s *Server) startBatch(w http.ResponseWriter, r *http.Request) {
	var body BatchStartBody
	if err := decodeBody(w, r, &body); err != nil {
		s.fail(w, r, err)
		return
	}
	switch n := len(body.Starts); {
	case n == 0:
		s.fail(w, r, fmt.Errorf("%w: no starts; send {\"starts\": [{\"definition\": ..., \"input\": ...}, ...]}", ErrBadRequest))
		return
	case n > MaxBatchStarts:
		s.fail(w, r, fmt.Errorf("%w: %d starts in one request; send at most %d per request", ErrBadRequest, n, MaxBatchStarts))
		return
	}
	p := PrincipalFrom(r.Context())
	res := BatchStartResult{Actor: p.Name, Results: make([]BatchStartItem, len(body.Starts))}
	if err := s.refresh(r.Context()); err != nil {
		s.fail(w, r, err)
		return
	}
	var reqs []protocol.StartRequest
	var slots []int // index in Results of each request
	seen := map[string]int{}
	for i, b := range body.Starts {
		req, def, err := s.startRequest(r.Context(), b)
		if err == nil {
			if j, dup := seen[req.ProcessID]; dup {
				err = fmt.Errorf("%w: process_id %s is also start #%d of this batch", ErrBadRequest, req.ProcessID, j+1)
			}
		}
		if err != nil {
			res.Results[i] = BatchStartItem{ProcessID: b.ProcessID, Error: detail(err)}
			continue
		}
		seen[req.ProcessID] = i
		res.Results[i].ProcessID = req.ProcessID
		if row, exists := s.status.Get(req.ProcessID); exists {
			// As a single start: the same start again changes nothing,
			// another one is a conflict; neither is sent.
			if err := ExistingStart(r.Context(), row, def, req.Input, s.opts.ReadProcess); err != nil {
				res.Results[i].Error = detail(err)
				continue
			}
			created := false
			res.Results[i].Accepted, res.Results[i].Created = true, &created
			continue
		}
		req.Actor = p.Name
		reqs = append(reqs, req)
		slots = append(slots, i)
		created := true
		res.Results[i].Created = &created
	}
	if len(reqs) > 0 {
		err := s.acts.StartMany(r.Context(), reqs)
		var se *engine.StartErrors
		if err != nil && !errors.As(err, &se) {
			s.fail(w, r, fmt.Errorf("%w: send starts: %v", ErrUnavailable, err))
			return
		}
		for k, i := range slots {
			if se != nil && se.Errs[k] != nil {
				res.Results[i].Created = nil
				res.Results[i].Error = detail(fmt.Errorf("%w: send start: %v", ErrUnavailable, se.Errs[k]))
				continue
			}
			res.Results[i].Accepted = true
		}
	}
	for _, it := range res.Results {
		if it.Accepted {
			res.Accepted++
		} else {
			res.Failed++
		}
	}
	code := http.StatusOK
	if res.Accepted == 0 && len(reqs) > 0 {
		code = http.StatusServiceUnavailable
	}
	s.log.Info().Int("accepted", res.Accepted).Int("failed", res.Failed).Str("actor", p.Name).Msg("batch start")
	writeJSON(w, code, res)
}

func detail(err error) *ErrorDetail {
	_, name := statusOf(err)
	return &ErrorDetail{Code: name, Message: err.Error()}
}
