package admin

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"

	"github.com/pulsaga/pulsaga/engine"
	"github.com/pulsaga/pulsaga/workflow"
)

// Errors the API answers with; each maps to an HTTP status.
var (
	// ErrNotFound: no such process, definition, step or message (404).
	ErrNotFound = errors.New("not found")
	// ErrBadRequest: the request is malformed (400).
	ErrBadRequest = errors.New("bad request")
	// ErrConflict: the process's state does not allow the action (409).
	ErrConflict = errors.New("conflict")
	// ErrForbidden: the token's role does not allow the request (403).
	ErrForbidden = errors.New("forbidden")
	// ErrUnavailable: the engine is not reachable (503).
	ErrUnavailable = errors.New("unavailable")
	// ErrTooLarge: a piece of data is over a limit (413).
	ErrTooLarge = errors.New("too large")

	errUnauthenticated = errors.New("unauthenticated: send Authorization: Bearer <token>")
)

// ErrorBody is the JSON body of every error answer.
type ErrorBody struct {
	Error struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
}

func statusOf(err error) (int, string) {
	var verrs workflow.ValidationErrors
	switch {
	case errors.Is(err, errUnauthenticated):
		return http.StatusUnauthorized, "unauthenticated"
	case errors.Is(err, ErrForbidden):
		return http.StatusForbidden, "forbidden"
	case errors.Is(err, ErrNotFound), errors.Is(err, engine.ErrUnknownDefinition):
		return http.StatusNotFound, "not_found"
	case errors.Is(err, ErrConflict), errors.Is(err, engine.ErrVersionConflict):
		return http.StatusConflict, "conflict"
	case errors.As(err, &verrs), errors.Is(err, workflow.ErrInvalidDefinition):
		return http.StatusUnprocessableEntity, "invalid_definition"
	case errors.Is(err, ErrTooLarge):
		return http.StatusRequestEntityTooLarge, "too_large"
	case errors.Is(err, ErrBadRequest):
		return http.StatusBadRequest, "bad_request"
	case errors.Is(err, ErrUnavailable):
		return http.StatusServiceUnavailable, "unavailable"
	}
	return http.StatusInternalServerError, "internal"
}

func (s *Server) fail(w http.ResponseWriter, r *http.Request, err error) {
	code, name := statusOf(err)
	var body ErrorBody
	body.Error.Code, body.Error.Message = name, err.Error()
	if code >= 500 {
		s.log.Error().Err(err).Str("method", r.Method).Str("path", r.URL.Path).Msg("admin request failed")
	}
	writeJSON(w, code, body)
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

// maxBody bounds request bodies (definitions included).
const maxBody = 4 << 20

func decodeBody(w http.ResponseWriter, r *http.Request, v any) error {
	r.Body = http.MaxBytesReader(w, r.Body, maxBody)
	dec := json.NewDecoder(r.Body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return fmt.Errorf("%w: the body is over %d bytes", ErrTooLarge, mbe.Limit)
		}
		if err.Error() == "EOF" {
			return fmt.Errorf("%w: empty body; send a JSON object", ErrBadRequest)
		}
		return fmt.Errorf("%w: body: %v", ErrBadRequest, err)
	}
	if dec.More() {
		return fmt.Errorf("%w: body: more than one JSON value", ErrBadRequest)
	}
	return nil
}
