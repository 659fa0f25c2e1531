package pulsarbus

import (
	"crypto/x509"
	"errors"
	"fmt"
	"net/http"
	"os"
	"strings"

	"github.com/apache/pulsar-client-go/pulsar"
	"github.com/apache/pulsar-client-go/pulsaradmin"
	"github.com/apache/pulsar-client-go/pulsaradmin/pkg/admin"
	adminauth "github.com/apache/pulsar-client-go/pulsaradmin/pkg/admin/auth"
	"github.com/apache/pulsar-client-go/pulsaradmin/pkg/rest"

	"github.com/pulsaga/pulsaga/bus"
)

// Auth is how the bus authenticates to the broker, on the binary protocol
// and on the admin API alike. At most one method may be set; none means no
// authentication.
type Auth struct {
	// Token is a JWT for the broker's token authentication.
	Token string
	// TokenFile is a file holding the token; it is read again at each
	// connection, so a rotated token is picked up without a restart.
	TokenFile string
	// OAuth2, when set, takes tokens from an OAuth2 issuer with the client
	// credentials flow.
	OAuth2 *OAuth2
}

// OAuth2 configures the client credentials flow of Pulsar's clients.
type OAuth2 struct {
	// IssuerURL is the issuer; its /.well-known/openid-configuration names
	// the token endpoint.
	IssuerURL string
	// CredentialsFile is a JSON key file: {"type": "client_credentials",
	// "client_id": ..., "client_secret": ...}.
	CredentialsFile string
	// Audience and Scope are asked for with the token (optional).
	Audience, Scope string
}

// TLS configures the TLS of pulsar+ssl:// and https:// URLs. The broker's
// certificate must chain to TrustCertsFile (or the system's roots) and name
// the host of the URL, unless AllowInsecure.
type TLS struct {
	// TrustCertsFile is a PEM file of the certificates to trust.
	TrustCertsFile string
	// AllowInsecure accepts any certificate unchecked (tests only).
	AllowInsecure bool
}

func (a Auth) method() string {
	switch {
	case a.Token != "" || a.TokenFile != "":
		return "token"
	case a.OAuth2 != nil:
		return "oauth2"
	}
	return ""
}

func (c Config) validateSecurity() error {
	a := c.Auth
	if a.Token != "" && a.TokenFile != "" {
		return fmt.Errorf("%w: pulsarbus: Auth: set Token or TokenFile, not both", bus.ErrBadOptions)
	}
	if a.method() == "token" && a.OAuth2 != nil {
		return fmt.Errorf("%w: pulsarbus: Auth: a token and OAuth2 are both set", bus.ErrBadOptions)
	}
	if o := a.OAuth2; o != nil && (o.IssuerURL == "" || o.CredentialsFile == "") {
		return fmt.Errorf("%w: pulsarbus: Auth.OAuth2 needs IssuerURL and CredentialsFile", bus.ErrBadOptions)
	}
	if f := c.TLS.TrustCertsFile; f != "" {
		b, err := os.ReadFile(f)
		if err != nil {
			return fmt.Errorf("%w: pulsarbus: TLS.TrustCertsFile: %v", bus.ErrBadOptions, err)
		}
		if !x509.NewCertPool().AppendCertsFromPEM(b) {
			return fmt.Errorf("%w: pulsarbus: TLS.TrustCertsFile %s holds no PEM certificate", bus.ErrBadOptions, f)
		}
	}
	return nil
}

// clientAuth is the binary client's authentication (nil: none).
func (c Config) clientAuth() (pulsar.Authentication, error) {
	a := c.Auth
	switch {
	case a.Token != "":
		return pulsar.NewAuthenticationToken(a.Token), nil
	case a.TokenFile != "":
		return pulsar.NewAuthenticationTokenFromFile(a.TokenFile), nil
	case a.OAuth2 != nil:
		return pulsar.NewAuthenticationOAuth2(map[string]string{
			"type": "client_credentials", "issuerUrl": a.OAuth2.IssuerURL, "privateKey": a.OAuth2.CredentialsFile,
			"audience": a.OAuth2.Audience, "scope": a.OAuth2.Scope,
		}), nil
	}
	return nil, nil
}

// AdminHTTP is an HTTP client for the broker's admin REST API (AdminURL)
// with the bus's credentials and TLS, for the calls pulsaradmin does not
// offer (transactions' admin endpoints, say).
func (b *Bus) AdminHTTP() *http.Client {
	return &http.Client{Transport: b.adminRT, Timeout: b.cfg.OperationTimeout}
}

// newAdminWithTransport makes the admin API client, with the same
// credentials and TLS as the binary client, and the round tripper that
// adds them (AdminHTTP).
func newAdminWithTransport(c Config) (pulsaradmin.Client, http.RoundTripper, error) {
	cfg := &pulsaradmin.Config{
		WebServiceURL: c.AdminURL, TLSTrustCertsFilePath: c.TLS.TrustCertsFile,
		TLSAllowInsecureConnection: c.TLS.AllowInsecure, TLSEnableHostnameVerification: !c.TLS.AllowInsecure,
	}
	transport, err := adminauth.NewDefaultTransport(cfg)
	if err != nil {
		return nil, nil, err
	}
	var provider adminauth.Provider
	a := c.Auth
	switch {
	case a.Token != "":
		provider, err = adminauth.NewAuthenticationToken(a.Token, transport)
	case a.TokenFile != "":
		provider, err = adminauth.NewAuthenticationTokenFromFile(a.TokenFile, transport)
	case a.OAuth2 != nil:
		provider, err = adminauth.NewAuthenticationOAuth2WithParams(a.OAuth2.IssuerURL, "", a.OAuth2.Audience, a.OAuth2.CredentialsFile, transport)
	default:
		provider = adminauth.NewDefaultProvider(transport)
	}
	if err != nil {
		return nil, nil, fmt.Errorf("pulsarbus: admin credentials: %w", err)
	}
	cl, err := admin.NewPulsarClientWithAuthProvider(cfg, provider)
	return cl, provider, err
}

// explainRefusal says what to fix when the broker refuses the client's
// credentials or certificate, or returns "" for other errors.
func (c Config) explainRefusal(err error) string {
	msg := err.Error()
	status := 0
	var rerr rest.Error
	if errors.As(err, &rerr) {
		status = rerr.Code
	}
	switch {
	case status == http.StatusUnauthorized || status == http.StatusForbidden ||
		strings.Contains(msg, "AuthenticationError") || strings.Contains(msg, "Unauthorized"):
		if c.Auth.method() == "" {
			return "the broker requires authentication: set pulsar.auth_token_file (or auth_token, or the oauth2_* keys)"
		}
		return fmt.Sprintf("the broker refused the %s credentials: check that they are valid, not expired, and signed with the key the broker trusts", c.Auth.method())
	case strings.Contains(msg, "certificate signed by unknown authority"):
		return "the broker's certificate is signed by an authority this client does not trust: set pulsar.tls_trust_certs_file to its CA's PEM file"
	case strings.Contains(msg, "certificate is valid for") || strings.Contains(msg, "doesn't contain any IP SANs"):
		return "the broker's certificate does not name the host of the URL: use a host name its certificate names (hostname verification cannot be turned off short of tls_allow_insecure)"
	case strings.Contains(msg, "first record does not look like a TLS handshake") || strings.Contains(msg, "malformed HTTP response") ||
		strings.Contains(msg, "server gave HTTP response to HTTPS client"):
		return "TLS and plain text are mixed up: pulsar+ssl:// and https:// need the broker's TLS ports, pulsar:// and http:// its plain ones"
	}
	return ""
}
