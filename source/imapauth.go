package source

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/emersion/go-imap/v2"
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
// before they expire: from refresh (the newest refresh token, when there
// is one), else from the client credentials alone. Token requests time
// out like commands.
func tokenSource(o *config.OAuth2, refresh string, timeout time.Duration) (oauth2.TokenSource, error) {
	secret, err := readSecret("oauth2 client secret", o.ClientSecretFile, o.ClientSecretEnv)
	if err != nil {
		return nil, err
	}
	// The token source outlives any one call; its requests are bounded
	// by the client's timeout.
	ctx := context.WithValue(context.Background(), oauth2.HTTPClient, &http.Client{Timeout: timeout})
	if refresh == "" {
		cc := &clientcredentials.Config{ClientID: o.ClientID, ClientSecret: secret, TokenURL: o.TokenURL, Scopes: o.Scopes}
		return oauth2.ReuseTokenSourceWithExpiry(nil, cc.TokenSource(ctx), tokenEarly), nil
	}
	conf := &oauth2.Config{ClientID: o.ClientID, ClientSecret: secret, Scopes: o.Scopes,
		Endpoint: oauth2.Endpoint{TokenURL: o.TokenURL}}
	return oauth2.ReuseTokenSourceWithExpiry(nil, conf.TokenSource(ctx, &oauth2.Token{RefreshToken: refresh}), tokenEarly), nil
}

// login authenticates with the configured mechanism. A refusal by the
// server (NO) or by the token endpoint, and a password or token that
// cannot be read, are authErrors; a dropped connection is not.
func (s *IMAP) login(c *imapclient.Client) error {
	cfg := s.cfg
	s.tokenEnds = time.Time{}
	var client sasl.Client
	switch cfg.Auth {
	case "plain", "login":
		pw, err := readSecret("password", cfg.PasswordFile, cfg.PasswordEnv)
		if err != nil {
			return &authError{err}
		}
		if c.Caps().Has("LOGINDISABLED") {
			return &authError{errors.New("the server refuses logins on this connection (LOGINDISABLED): use tls or starttls")}
		}
		if cfg.Auth == "login" || !c.Caps().Has("AUTH=PLAIN") {
			return refused(s.within(c, func() error { return c.Login(cfg.Username, pw).Wait() }))
		}
		client = sasl.NewPlainClient("", cfg.Username, pw)
	case "xoauth2", "oauthbearer":
		if s.tokens == nil {
			// The configured refresh token; a new one there (the user
			// replaced a revoked token) wins over one the provider
			// rotated in memory.
			r, err := readSecret("oauth2 refresh token", cfg.OAuth2.RefreshTokenFile, cfg.OAuth2.RefreshTokenEnv)
			if err != nil {
				return &authError{err}
			}
			if r != s.configured {
				s.configured, s.refresh = r, r
			}
			ts, err := tokenSource(cfg.OAuth2, s.refresh, time.Duration(cfg.Timeout))
			if err != nil {
				return &authError{err}
			}
			s.tokens = ts
		}
		tok, err := s.tokens.Token()
		if err != nil {
			s.tokens = nil // ask the endpoint again next time
			// A refusal (400, 401, 403: a bad or revoked token or client)
			// is an auth failure; an outage (5xx, 429) is not.
			var re *oauth2.RetrieveError
			if errors.As(err, &re) && re.Response != nil && re.Response.StatusCode >= 400 && re.Response.StatusCode < 500 &&
				re.Response.StatusCode != http.StatusTooManyRequests {
				return &authError{fmt.Errorf("token endpoint: %w", err)}
			}
			return fmt.Errorf("token endpoint: %w", err)
		}
		if tok.RefreshToken != "" && tok.RefreshToken != s.refresh {
			s.log.Info("the token endpoint rotated the refresh token: the new one is kept in memory; after a restart the configured one is used")
			s.refresh = tok.RefreshToken // the newest
		}
		s.tokenEnds = tok.Expiry
		client = &bearerClient{mech: strings.ToUpper(cfg.Auth), user: cfg.Username, token: tok.AccessToken}
	}
	err := s.within(c, func() error { return c.Authenticate(client) })
	if err != nil && cfg.OAuth2 != nil {
		s.tokens = nil // the token may have been revoked: get a new one (from the newest refresh token) next time
		if b, ok := client.(*bearerClient); ok && b.challenge != "" {
			err = fmt.Errorf("%w (token refused: %s)", err, b.challenge)
		}
	}
	return refused(err)
}

// refused marks a server's refusal (NO or BAD) as an authError, but for
// a server that cannot check credentials just now (UNAVAILABLE,
// SERVERBUG): that is not the credentials' fault.
func refused(err error) error {
	var ie *imap.Error
	if errors.As(err, &ie) {
		if ie.Code == imap.ResponseCodeUnavailable || ie.Code == imap.ResponseCodeServerBug {
			return err
		}
		return &authError{err}
	}
	var be *bearerError
	if errors.As(err, &be) {
		return &authError{err}
	}
	return err
}

// bearerClient is the client side of XOAUTH2 (Google's and Microsoft's
// mechanism) and OAUTHBEARER (RFC 7628). When the server refuses the
// token it sends a JSON error as a challenge and waits for one more client
// response before its tagged NO. The client answers with a single ^A
// (RFC 7628 §3.2.3): go-imap sends an empty response as "=", which
// Dovecot refuses as bad base64. The challenge is kept, so that the error
// gives the server's words either way.
type bearerClient struct {
	mech, user, token string
	refused           bool
	challenge         string
}

// bearerError is a second challenge after the refusal: not a hang, a
// refusal all the same.
type bearerError struct{ challenge string }

func (e *bearerError) Error() string { return "unexpected challenge after the refusal: " + e.challenge }

func (b *bearerClient) Start() (string, []byte, error) {
	if b.mech == sasl.OAuthBearer {
		return b.mech, []byte("n,a=" + b.user + ",\x01auth=Bearer " + b.token + "\x01\x01"), nil
	}
	return b.mech, []byte("user=" + b.user + "\x01auth=Bearer " + b.token + "\x01\x01"), nil
}

func (b *bearerClient) Next(challenge []byte) ([]byte, error) {
	if b.refused {
		return nil, &bearerError{string(challenge)}
	}
	b.refused, b.challenge = true, string(challenge)
	return []byte{1}, nil
}
