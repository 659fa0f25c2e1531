package admin

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/http"
	"regexp"
	"sync"
)

// IdempotencyHeader names the key that makes a retried request apply once.
const IdempotencyHeader = "Idempotency-Key"

var idemKeyRE = regexp.MustCompile(`^[A-Za-z0-9._:\-]{1,128}$`)

// idempotency remembers the answers to recent keyed requests, so a client
// that retries (its first answer was lost) gets the same answer. Across
// instances the key also becomes the envelope id of what is sent, so the
// orchestrator drops the duplicate whichever instance sent it.
type idempotency struct {
	mu    sync.Mutex
	max   int
	order []string
	done  map[string]recorded
}

type recorded struct {
	code int
	body []byte
	hdr  http.Header
}

func newIdempotency(max int) *idempotency {
	return &idempotency{max: max, done: map[string]recorded{}}
}

func (c *idempotency) get(k string) (recorded, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	r, ok := c.done[k]
	return r, ok
}

func (c *idempotency) put(k string, r recorded) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.done[k]; ok {
		return
	}
	c.done[k] = r
	c.order = append(c.order, k)
	if len(c.order) > c.max {
		delete(c.done, c.order[0])
		c.order = c.order[1:]
	}
}

type requestIDKey struct{}

// requestID returns the request's idempotency key, or a fresh random id.
func requestID(r *http.Request) string {
	if v, ok := r.Context().Value(requestIDKey{}).(string); ok && v != "" {
		return v
	}
	var b [12]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

type recorder struct {
	http.ResponseWriter
	code int
	buf  bytes.Buffer
}

func (r *recorder) WriteHeader(code int) { r.code = code; r.ResponseWriter.WriteHeader(code) }
func (r *recorder) Write(b []byte) (int, error) {
	r.buf.Write(b)
	return r.ResponseWriter.Write(b)
}

// idempotent replays the recorded answer of a request seen with the same
// Idempotency-Key (per caller and route); successful answers only are kept,
// so a request that failed may be retried.
func (s *Server) idempotent(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		key := r.Header.Get(IdempotencyHeader)
		if key == "" {
			h(w, r)
			return
		}
		if !idemKeyRE.MatchString(key) {
			s.fail(w, r, fmt.Errorf("%w: %s must be 1 to 128 letters, digits or ._:-", ErrBadRequest, IdempotencyHeader))
			return
		}
		ck := PrincipalFrom(r.Context()).Name + " " + r.Method + " " + r.URL.Path + " " + key
		if rec, ok := s.idem.get(ck); ok {
			for k, v := range rec.hdr {
				w.Header()[k] = v
			}
			w.Header().Set("Idempotent-Replayed", "true")
			w.WriteHeader(rec.code)
			_, _ = w.Write(rec.body)
			return
		}
		rw := &recorder{ResponseWriter: w, code: http.StatusOK}
		h(rw, r.WithContext(contextWithRequestID(r, key)))
		if rw.code < 300 {
			s.idem.put(ck, recorded{code: rw.code, body: rw.buf.Bytes(), hdr: w.Header().Clone()})
		}
	}
}

func contextWithRequestID(r *http.Request, id string) context.Context {
	return context.WithValue(r.Context(), requestIDKey{}, id)
}
