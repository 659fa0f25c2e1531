package pulsartest

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// Secrets are what a broker with token authentication and TLS needs, made
// by the test that starts it: a test certificate authority, the broker's
// certificate (for the name "localhost" only, so that hostname checks can
// be seen to fail for 127.0.0.1), an RSA key whose public half the broker
// checks tokens with, and tokens.
type Secrets struct {
	Dir string
	// CAFile is the test authority's certificate (PEM).
	CAFile string
	// AdminTokenFile holds the broker's own token (superuser "admin").
	AdminTokenFile string
	// ConfFile holds the broker's extra configuration (PrivateOptions.ConfExtra).
	ConfFile string
	// TLSPort and TLSHTTPPort are the broker's TLS ports.
	TLSPort, TLSHTTPPort int

	key *rsa.PrivateKey
}

// NewSecrets writes the secrets of a broker with token authentication and
// TLS (ports tlsPort for pulsar+ssl://, tlsHTTPPort for https://) into a
// folder of the test.
func NewSecrets(t testing.TB, tlsPort, tlsHTTPPort int) *Secrets {
	t.Helper()
	dir := t.TempDir()
	s := &Secrets{Dir: dir, TLSPort: tlsPort, TLSHTTPPort: tlsHTTPPort}
	var err error
	if s.key, err = rsa.GenerateKey(rand.Reader, 2048); err != nil {
		t.Fatal(err)
	}
	pub, err := x509.MarshalPKIXPublicKey(&s.key.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	write(t, dir, "token-public.der", pub, 0o644)

	// The authority and the broker's certificate.
	caKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "pulsaga test CA"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	s.CAFile = write(t, dir, "ca.cert.pem", pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}), 0o644)
	ca, err := x509.ParseCertificate(caDER)
	if err != nil {
		t.Fatal(err)
	}
	brokerKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	brokerDER, err := x509.CreateCertificate(rand.Reader, &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "localhost"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour),
		DNSNames: []string{"localhost"}, // no IP address: 127.0.0.1 does not match
		KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}, ca, &brokerKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	certFile := write(t, dir, "broker.cert.pem", pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: brokerDER}), 0o644)
	pk8, err := x509.MarshalPKCS8PrivateKey(brokerKey)
	if err != nil {
		t.Fatal(err)
	}
	keyFile := write(t, dir, "broker.key-pk8.pem", pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: pk8}), 0o600)

	s.AdminTokenFile = s.TokenFile(t, "admin", "admin", time.Hour)
	conf := []string{
		"authenticationEnabled=true",
		"authenticationProviders=org.apache.pulsar.broker.authentication.AuthenticationProviderToken",
		"tokenPublicKey=file://" + filepath.Join(dir, "token-public.der"),
		"authorizationEnabled=false",
		"superUserRoles=admin",
		"brokerClientAuthenticationPlugin=org.apache.pulsar.client.impl.auth.AuthenticationToken",
		"brokerClientAuthenticationParameters=file://" + s.AdminTokenFile,
		fmt.Sprintf("brokerServicePortTls=%d", tlsPort),
		fmt.Sprintf("webServicePortTls=%d", tlsHTTPPort),
		"tlsCertificateFilePath=" + certFile,
		"tlsKeyFilePath=" + keyFile,
		"tlsTrustCertsFilePath=" + s.CAFile,
		"tlsAllowInsecureConnection=false",
	}
	s.ConfFile = write(t, dir, "broker-extra.conf", []byte(strings.Join(conf, "\n")+"\n"), 0o644)
	return s
}

func write(t testing.TB, dir, name string, b []byte, mode os.FileMode) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, b, mode); err != nil {
		t.Fatal(err)
	}
	return p
}

// Token signs a token for role (the JWT subject) that expires after ttl
// (negative: expired already).
func (s *Secrets) Token(t testing.TB, role string, ttl time.Duration) string {
	t.Helper()
	tok, err := jwt.NewWithClaims(jwt.SigningMethodRS256, jwt.MapClaims{"sub": role, "exp": time.Now().Add(ttl).Unix()}).SignedString(s.key)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// TokenFile writes a token for role into a file (mode 0600) and returns
// its path.
func (s *Secrets) TokenFile(t testing.TB, name, role string, ttl time.Duration) string {
	t.Helper()
	return write(t, s.Dir, name+".token", []byte(s.Token(t, role, ttl)+"\n"), 0o600)
}

// ForeignToken is a well-formed token signed by a key the broker does not
// know.
func ForeignToken(t testing.TB, role string) string {
	t.Helper()
	other, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	tok, err := jwt.NewWithClaims(jwt.SigningMethodRS256, jwt.MapClaims{"sub": role}).SignedString(other)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// Issuer is an OAuth2 authorization server for tests: the client
// credentials flow of Pulsar's clients (discovery, then the token
// endpoint), answered with tokens the broker of these Secrets accepts.
type Issuer struct {
	URL string
	// CredentialsFile is the JSON key file a client presents
	// (client_id, client_secret).
	CredentialsFile string
	// Issued counts the tokens handed out.
	Issued atomic.Int64
}

// NewIssuer starts an issuer for the client id and secret written to its
// credentials file; it stops when the test ends.
func (s *Secrets) NewIssuer(t testing.TB, clientID, secret string) *Issuer {
	t.Helper()
	is := &Issuer{}
	mux := http.NewServeMux()
	srv := httptest.NewUnstartedServer(mux)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv.Listener = ln
	is.URL = "http://" + ln.Addr().String()
	mux.HandleFunc("GET /.well-known/openid-configuration", func(w http.ResponseWriter, _ *http.Request) {
		_ = json.NewEncoder(w).Encode(map[string]string{"issuer": is.URL, "token_endpoint": is.URL + "/oauth/token"})
	})
	mux.HandleFunc("POST /oauth/token", func(w http.ResponseWriter, r *http.Request) {
		if err := r.ParseForm(); err != nil || r.PostForm.Get("grant_type") != "client_credentials" ||
			r.PostForm.Get("client_id") != clientID || r.PostForm.Get("client_secret") != secret {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusUnauthorized)
			_, _ = w.Write([]byte(`{"error":"invalid_client","error_description":"wrong client id or secret"}`))
			return
		}
		is.Issued.Add(1)
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]any{"access_token": s.Token(t, "oauth-"+clientID, time.Hour), "token_type": "Bearer", "expires_in": 3600})
	})
	srv.Start()
	t.Cleanup(srv.Close)
	creds, _ := json.Marshal(map[string]string{"type": "client_credentials", "client_id": clientID, "client_secret": secret, "issuer_url": is.URL})
	is.CredentialsFile = write(t, s.Dir, "oauth2-"+clientID+".json", creds, 0o600)
	return is
}
