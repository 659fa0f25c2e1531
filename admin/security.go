package admin

import (
	"fmt"
	"mime"
	"net"
	"net/http"
	"net/url"
	"strings"
)

// RequestHeader marks a request as made by a pulsaga client (the CLI, the
// dashboard, a script): a page of another site cannot send it without the
// browser asking the server first (a CORS preflight, which this server
// never grants). docs/api.md, "Security".
const RequestHeader = "X-Pulsaga-Request"

// The checks that keep other sites out, before authentication:
//
//   - A request that changes something (any method but GET, HEAD,
//     OPTIONS) must say it comes from a client: a Content-Type of
//     application/json or application/yaml, or the X-Pulsaga-Request
//     header. A form or a no-cors fetch of another page can send neither
//     (their content types are form data and text/plain).
//   - A request with an Origin header (browsers send it on cross-origin
//     and on state-changing requests) must come from the server's own
//     origin (its host and port are the Host header) or one of
//     Options.AllowedOrigins.
//   - Without tokens (every caller is the operator "anonymous", so the
//     server listens on loopback), the Host header must name a loopback
//     address, "localhost", the listen address or one of
//     Options.AllowedHosts: a DNS-rebinding page whose name resolves to
//     127.0.0.1 sends its own name as Host.
func (s *Server) crossSite(r *http.Request) error {
	if len(s.opts.Tokens) == 0 && !s.hostAllowed(r.Host) {
		return fmt.Errorf("%w: Host %q is not this server's: without tokens the API answers only to a loopback address or %s (see docs/api.md#security)", ErrForbidden, r.Host, strings.Join(s.hostNames(), ", "))
	}
	if o := r.Header.Get("Origin"); o != "" && !s.originAllowed(r, o) {
		return fmt.Errorf("%w: a request from origin %s is refused: the API takes requests from its own pages and from clients that send no Origin (see docs/api.md#security)", ErrForbidden, o)
	}
	switch r.Method {
	case http.MethodGet, http.MethodHead, http.MethodOptions:
		return nil
	}
	if r.Header.Get(RequestHeader) != "" {
		return nil
	}
	mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	switch mt {
	case "application/json", "application/yaml", "application/x-yaml":
		return nil
	}
	return fmt.Errorf("%w: %s %s needs a Content-Type of application/json (or the header %s: 1); got %q (see docs/api.md#security)", ErrForbidden, r.Method, r.URL.Path, RequestHeader, r.Header.Get("Content-Type"))
}

// hostNames are the names a server without tokens answers to, besides
// loopback addresses.
func (s *Server) hostNames() []string {
	names := []string{"localhost"}
	if h, _, err := net.SplitHostPort(s.opts.Listen); err == nil && h != "" {
		if ip := net.ParseIP(h); ip == nil || !ip.IsUnspecified() {
			names = append(names, h)
		}
	}
	return append(names, s.opts.AllowedHosts...)
}

func (s *Server) hostAllowed(host string) bool {
	h := host
	if hh, _, err := net.SplitHostPort(host); err == nil {
		h = hh
	}
	h = strings.TrimSuffix(strings.Trim(h, "[]"), ".")
	if h == "" {
		return false
	}
	if ip := net.ParseIP(h); ip != nil && ip.IsLoopback() {
		return true
	}
	for _, n := range s.hostNames() {
		if strings.EqualFold(h, n) {
			return true
		}
	}
	return false
}

func (s *Server) originAllowed(r *http.Request, origin string) bool {
	for _, o := range s.opts.AllowedOrigins {
		if strings.EqualFold(strings.TrimSuffix(o, "/"), origin) {
			return true
		}
	}
	u, err := url.Parse(origin)
	if err != nil || u.Host == "" {
		return false // "null" (sandboxed frames, file: pages) included
	}
	// The scheme is not compared: behind a proxy that ends TLS the page is
	// https and the request reaches this server as http.
	return strings.EqualFold(u.Host, r.Host)
}
