package admin

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"net/http"
	"os"
	"strings"
)

// Role is what a token may do.
type Role string

// Roles, from least to most powerful.
const (
	// RoleRead may read processes, dead letters and definitions.
	RoleRead Role = "read"
	// RoleOperator may also act: start, signal, retry, skip, cancel,
	// terminate, replay and purge dead letters, register definitions.
	RoleOperator Role = "operator"
)

func (r Role) allows(need Role) bool {
	return r == RoleOperator || r == need
}

// Token is a bearer token. Name is recorded as the actor of every action
// made with it.
type Token struct {
	Name   string
	Role   Role
	Secret string
}

// ErrBadToken: a token specification is malformed.
var ErrBadToken = errors.New("bad token")

// ParseToken reads "name:role:secret" (role read or operator).
func ParseToken(s string) (Token, error) {
	parts := strings.SplitN(s, ":", 3)
	if len(parts) != 3 {
		return Token{}, fmt.Errorf("%w: want name:role:secret", ErrBadToken)
	}
	t := Token{Name: parts[0], Role: Role(parts[1]), Secret: parts[2]}
	switch {
	case t.Name == "":
		return Token{}, fmt.Errorf("%w: empty name", ErrBadToken)
	case t.Role != RoleRead && t.Role != RoleOperator:
		return Token{}, fmt.Errorf("%w: role %q of %s (want read or operator)", ErrBadToken, t.Role, t.Name)
	case len(t.Secret) < 8:
		return Token{}, fmt.Errorf("%w: the secret of %s is shorter than 8 characters", ErrBadToken, t.Name)
	}
	return t, nil
}

// Principal is who makes a request.
type Principal struct {
	Name string
	Role Role
}

type principalKey struct{}

// PrincipalFrom returns the authenticated caller of a request.
func PrincipalFrom(ctx context.Context) Principal {
	p, _ := ctx.Value(principalKey{}).(Principal)
	return p
}

// authenticator checks bearer tokens. With no tokens configured every
// caller is the operator "anonymous" (the server then listens on loopback
// only; config enforces it).
type authenticator struct {
	tokens []Token
	hashes [][32]byte
}

func newAuthenticator(tokens []Token) *authenticator {
	a := &authenticator{tokens: tokens}
	for _, t := range tokens {
		a.hashes = append(a.hashes, sha256.Sum256([]byte(t.Secret)))
	}
	return a
}

func (a *authenticator) principal(r *http.Request) (Principal, error) {
	if len(a.tokens) == 0 {
		return Principal{Name: "anonymous", Role: RoleOperator}, nil
	}
	secret, ok := bearer(r.Header.Get("Authorization"))
	if !ok {
		return Principal{}, errUnauthenticated
	}
	sum := sha256.Sum256([]byte(secret))
	for i, t := range a.tokens {
		if subtle.ConstantTimeCompare(sum[:], a.hashes[i][:]) == 1 {
			return Principal{Name: t.Name, Role: t.Role}, nil
		}
	}
	return Principal{}, errUnauthenticated
}

// bearer reads "Bearer <token>"; the scheme is case-insensitive (RFC
// 9110, 11.1) and blanks around the token do not count.
func bearer(h string) (string, bool) {
	scheme, token, ok := strings.Cut(strings.TrimSpace(h), " ")
	token = strings.TrimSpace(token)
	if !ok || !strings.EqualFold(scheme, "Bearer") || token == "" {
		return "", false
	}
	return token, true
}

// ReadTokens reads tokens from a file: one name:role:secret per line;
// blank lines and lines starting with # are skipped. Errors name the file
// and line, never the secret.
func ReadTokens(path string) ([]Token, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadToken, err)
	}
	var out []Token
	for i, line := range strings.Split(string(b), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		t, err := ParseToken(line)
		if err != nil {
			return nil, fmt.Errorf("%s:%d: %w", path, i+1, err)
		}
		out = append(out, t)
	}
	return out, nil
}

// require wraps h: the caller needs a valid token with the role need.
func (s *Server) require(need Role, h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		p, err := s.auth.principal(r)
		if err != nil {
			w.Header().Set("WWW-Authenticate", `Bearer realm="pulsaga"`)
			s.fail(w, r, err)
			return
		}
		if !p.Role.allows(need) {
			s.fail(w, r, fmt.Errorf("%w: this token (%s) is %s-only; this needs the %s role", ErrForbidden, p.Name, p.Role, need))
			return
		}
		h(w, r.WithContext(context.WithValue(r.Context(), principalKey{}, p)))
	}
}
