package source

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/emersion/go-imap/v2/imapclient"
	"github.com/emersion/go-sasl"
	"golang.org/x/oauth2"
	"golang.org/x/oauth2/clientcredentials"

	"github.com/dmarc-exporter/dmarc-exporter/config"
)

// tokenEarly is how long before its expiry an access token is replaced,
// so that a token never expires between being fetched and being used.
const tokenEarly = 5 * time.Minute

// authError marks a login refused by the server or by the token endpoint:
// a wrong password or token, not a network fault.
type authError struct{ err error }

func (e *authError) Error() string { return e.err.Error() }
func (e *authError) Unwrap() error { return e.err }

// readSecret reads a password, client secret or refresh token from a file
// or an environment variable, without the trailing newline editors add.
// It is read at each use, so a rotated secret needs no restart.
func readSecret(what, file, env string) (string, error) {
	var v string
	switch {
	case file != "":
		b, err := os.ReadFile(file)
		if err != nil {
			return "", fmt.Errorf("read %s: %w", what, err)
		}
		v = string(b)
	case env != "":
		var ok bool
		if v, ok = os.LookupEnv(env); !ok {
			return "", fmt.Errorf("%s: environment variable %s is not set", what, env)
		}
	default:
		return "", nil
	}
	v = strings.TrimRight(v, "\r\n")
	if v == "" {
		return "", fmt.Errorf("%s is empty", what)
	}
	return v, nil
}

// tokenSource returns a source of access tokens that refreshes them
// before they expire: from a refresh token when one is configured, else
// from the client credentials alone.
func tokenSource(o *config.OAuth2) (oauth2.TokenSource, error) {
	secret, err := readSecret("oauth2 client secret", o.ClientSecretFile, o.ClientSecretEnv)
	if err != nil {
		return nil, err
	}
	refresh, err := readSecret("oauth2 refresh token", o.RefreshTokenFile, o.RefreshTokenEnv)
	if err != nil {
		return nil, err
	}
	ctx := context.Background() // the token source outlives any one call
	if refresh == "" {
		cc := &clientcredentials.Config{ClientID: o.ClientID, ClientSecret: secret, TokenURL: o.TokenURL, Scopes: o.Scopes}
		return oauth2.ReuseTokenSourceWithExpiry(nil, cc.TokenSource(ctx), tokenEarly), nil
	}
	conf := &oauth2.Config{ClientID: o.ClientID, ClientSecret: secret, Scopes: o.Scopes,
		Endpoint: oauth2.Endpoint{TokenURL: o.TokenURL}}
	return oauth2.ReuseTokenSourceWithExpiry(nil, conf.TokenSource(ctx, &oauth2.Token{RefreshToken: refresh}), tokenEarly), nil
}

// login authenticates with the configured mechanism. Errors the server or
// the token endpoint gave are authErrors.
func (s *IMAP) login(c *imapclient.Client) error {
	cfg := s.cfg
	var client sasl.Client
	switch cfg.Auth {
	case "plain", "login":
		pw, err := readSecret("password", cfg.PasswordFile, cfg.PasswordEnv)
		if err != nil {
			return err
		}
		if c.Caps().Has("LOGINDISABLED") {
			return &authError{errors.New("the server refuses logins on this connection (LOGINDISABLED): use tls or starttls")}
		}
		if cfg.Auth == "login" || !c.Caps().Has("AUTH=PLAIN") {
			if err := c.Login(cfg.Username, pw).Wait(); err != nil {
				return &authError{err}
			}
			return nil
		}
		client = sasl.NewPlainClient("", cfg.Username, pw)
	case "xoauth2", "oauthbearer":
		if s.tokens == nil {
			ts, err := tokenSource(cfg.OAuth2)
			if err != nil {
				return err
			}
			s.tokens = ts
		}
		tok, err := s.tokens.Token()
		if err != nil {
			s.tokens = nil // start from the refresh token again
			var re *oauth2.RetrieveError
			if errors.As(err, &re) {
				return &authError{fmt.Errorf("token endpoint: %w", err)}
			}
			return fmt.Errorf("token endpoint: %w", err)
		}
		client = &bearerClient{mech: strings.ToUpper(cfg.Auth), user: cfg.Username, token: tok.AccessToken}
	}
	if err := c.Authenticate(client); err != nil {
		if cfg.OAuth2 != nil {
			s.tokens = nil // the token may have been revoked: get a new one next time
		}
		return &authError{err}
	}
	return nil
}

// bearerClient is the client side of XOAUTH2 (Google's and Microsoft's
// mechanism) and OAUTHBEARER (RFC 7628). When the server refuses the
// token it sends a JSON error as a challenge and waits for one more client
// response before its tagged NO; the client answers with a single ^A, as
// RFC 7628 §3.2.3 says, so that the exchange ends with the server's own
// words rather than a hang.
type bearerClient struct {
	mech, user, token string
	refused           bool
}

func (b *bearerClient) Start() (string, []byte, error) {
	if b.mech == sasl.OAuthBearer {
		return b.mech, []byte("n,a=" + b.user + ",\x01auth=Bearer " + b.token + "\x01\x01"), nil
	}
	return b.mech, []byte("user=" + b.user + "\x01auth=Bearer " + b.token + "\x01\x01"), nil
}

func (b *bearerClient) Next(challenge []byte) ([]byte, error) {
	if b.refused {
		return nil, fmt.Errorf("%s: unexpected challenge %q", b.mech, challenge)
	}
	b.refused = true
	return []byte{1}, nil
}
