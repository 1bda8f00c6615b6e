package join

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/url"
)

// FetchCA learns the cluster CA from the server's TLS handshake, before
// any credential is sent: the server presents its chain with the CA in it
// (see server's apiserver-chain.crt), and the CA is taken only if its hash
// is the one the token pins and it signed the server's certificate for
// the address dialled. A server without that CA is refused.
func FetchCA(ctx context.Context, serverURL string, token Token) (*x509.Certificate, error) {
	u, err := url.Parse(serverURL)
	if err != nil || u.Scheme != "https" || u.Host == "" {
		return nil, fmt.Errorf("--server %q: want https://host:port", serverURL)
	}
	host := u.Host
	if u.Port() == "" {
		host = net.JoinHostPort(u.Hostname(), "6443")
	}
	var ca *x509.Certificate
	cfg := &tls.Config{
		// Verified below, against the pinned CA, instead.
		InsecureSkipVerify: true,
		MinVersion:         tls.VersionTLS12,
		VerifyConnection: func(cs tls.ConnectionState) error {
			var err error
			ca, err = pinnedCA(cs.PeerCertificates, token, u.Hostname())
			return err
		},
	}
	d := tls.Dialer{Config: cfg}
	conn, err := d.DialContext(ctx, "tcp", host)
	if err != nil {
		return nil, fmt.Errorf("--server %s: %w", serverURL, err)
	}
	conn.Close()
	return ca, nil
}

// pinnedCA finds, among the certificates a server presented, the CA the
// token pins, and checks that it signed the server's own certificate for
// serverName.
func pinnedCA(chain []*x509.Certificate, token Token, serverName string) (*x509.Certificate, error) {
	if len(chain) == 0 {
		return nil, errors.New("the server presented no certificate")
	}
	for _, c := range chain {
		if !token.Pins(c.Raw) {
			continue
		}
		if !c.IsCA {
			return nil, errors.New("the certificate the token pins is not a CA")
		}
		roots := x509.NewCertPool()
		roots.AddCert(c)
		if _, err := chain[0].Verify(x509.VerifyOptions{Roots: roots, DNSName: serverName}); err != nil {
			return nil, fmt.Errorf("the server's certificate is not the pinned CA's for %s: %w", serverName, err)
		}
		return c, nil
	}
	return nil, errors.New("the server did not present the CA this token pins: wrong server, or a token of another cluster")
}
