// Package join lets a node join a stead server with one token, the way
// kubelets join kubeadm clusters: the token pins the cluster CA (so the
// agent trusts the right server before it sends anything) and is a
// bootstrap token (so the API server authenticates it) whose only right is
// to ask, through the CertificateSigningRequest API, for the node's client
// certificate. Upstream's CSR approver and signer, in the controller
// manager, do the rest; stead approves nodes' serving certificates itself.
package join

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"fmt"
	"strings"

	bootstraputil "k8s.io/cluster-bootstrap/token/util"
)

// tokenPrefix marks a token that pins the CA by the SHA-256 of its DER,
// in the shape k3s gives its secure tokens: K10<hash>::<id>.<secret>.
const tokenPrefix = "K10"

// Token is what `stead agent --token` takes.
type Token struct {
	CAHash [sha256.Size]byte
	// ID and Secret are the bootstrap token's halves: ID names the Secret
	// kube-system/bootstrap-token-<ID>, Secret is the password.
	ID, Secret string
}

// NewToken makes a fresh token for the CA whose DER is caDER.
func NewToken(caDER []byte) (Token, error) {
	raw, err := bootstraputil.GenerateBootstrapToken()
	if err != nil {
		return Token{}, err
	}
	id, secret, _ := strings.Cut(raw, ".")
	return Token{CAHash: sha256.Sum256(caDER), ID: id, Secret: secret}, nil
}

// ParseToken reads a token as String writes it; the error says what is
// wrong without repeating the secret.
func ParseToken(s string) (Token, error) {
	s = strings.TrimSpace(s)
	hash, bootstrap, ok := strings.Cut(strings.TrimPrefix(s, tokenPrefix), "::")
	if !strings.HasPrefix(s, tokenPrefix) || !ok {
		return Token{}, fmt.Errorf("--token: not a stead join token (want %s<CA hash>::<id>.<secret>, as the server writes to <data-dir>/agent-token)", tokenPrefix)
	}
	var t Token
	if b, err := hex.DecodeString(hash); err != nil || len(b) != sha256.Size {
		return Token{}, fmt.Errorf("--token: the CA hash is not %d hex digits", 2*sha256.Size)
	} else {
		copy(t.CAHash[:], b)
	}
	if !bootstraputil.IsValidBootstrapToken(bootstrap) {
		return Token{}, fmt.Errorf("--token: the part after :: is not a bootstrap token ([a-z0-9]{6}.[a-z0-9]{16})")
	}
	t.ID, t.Secret, _ = strings.Cut(bootstrap, ".")
	return t, nil
}

func (t Token) String() string {
	return tokenPrefix + hex.EncodeToString(t.CAHash[:]) + "::" + t.Bootstrap()
}

// Bootstrap is the bearer token the API server authenticates.
func (t Token) Bootstrap() string { return bootstraputil.TokenFromIDAndSecret(t.ID, t.Secret) }

// Pins reports whether caDER is the CA the token names.
func (t Token) Pins(caDER []byte) bool {
	sum := sha256.Sum256(caDER)
	return subtle.ConstantTimeCompare(sum[:], t.CAHash[:]) == 1
}
