// Package pki makes the cluster's certificate authority and the certificates
// issued from it, on first start, and reuses them on every start after.
//
// Keys are ECDSA P-256: they are generated in microseconds, which matters for
// a cluster that aims to be ready in about a second, and every Kubernetes
// component accepts them.
package pki

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"slices"
	"time"

	"k8s.io/client-go/util/keyutil"

	"github.com/steadhq/stead/pkg/fsutil"
)

const (
	caValidity   = 10 * 365 * 24 * time.Hour
	leafValidity = 365 * 24 * time.Hour
	// A leaf closer than this to expiry is renewed (Due), at a start or by
	// a running server's hourly look.
	renewBefore = 30 * 24 * time.Hour
)

// CA is a certificate authority whose key is on disk beside its certificate.
type CA struct {
	Cert     *x509.Certificate
	Key      crypto.Signer
	CertFile string
	KeyFile  string
}

// Spec says what a leaf certificate must hold. A certificate on disk that
// does not hold all of it is issued anew, so that changing --bind-address or
// the node's name never leaves a server with a certificate that lies.
type Spec struct {
	CommonName   string
	Organization []string
	DNSNames     []string
	IPs          []net.IP
	Server       bool
	Client       bool
}

// LoadOrCreateCA returns the CA stored as dir/name.crt and dir/name.key,
// creating it if neither file exists.
func LoadOrCreateCA(dir, name, commonName string) (*CA, error) {
	ca := &CA{CertFile: filepath.Join(dir, name+".crt"), KeyFile: filepath.Join(dir, name+".key")}
	cert, key, err := load(ca.CertFile, ca.KeyFile)
	switch {
	case err == nil:
		ca.Cert, ca.Key = cert, key
		return ca, nil
	case !errors.Is(err, os.ErrNotExist):
		return nil, err
	}
	key, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{CommonName: commonName},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(caValidity),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, err
	}
	if ca.Cert, err = x509.ParseCertificate(der); err != nil {
		return nil, err
	}
	ca.Key = key
	if err := store(ca.CertFile, ca.KeyFile, der, key); err != nil {
		return nil, err
	}
	return ca, nil
}

// EnsureCert makes sure dir/name.crt and dir/name.key hold a certificate
// issued by ca for the key beside it that satisfies spec and is not about
// to expire, issuing a new one otherwise. It returns the two paths.
func (ca *CA) EnsureCert(dir, name string, spec Spec) (certFile, keyFile string, err error) {
	certFile, keyFile = filepath.Join(dir, name+".crt"), filepath.Join(dir, name+".key")
	cert, key, err := load(certFile, keyFile)
	if err == nil && ca.issued(cert) && matches(cert, key) && satisfies(cert, spec) && !Due(cert) {
		return certFile, keyFile, nil
	}
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return "", "", err
	}
	der, key, err := ca.Issue(spec, leafValidity)
	if err != nil {
		return "", "", err
	}
	return certFile, keyFile, store(certFile, keyFile, der, key)
}

// Due tells whether a leaf certificate is close enough to its expiry to be
// renewed now.
func Due(cert *x509.Certificate) bool {
	return time.Until(cert.NotAfter) <= renewBefore
}

// Issue signs a new certificate for spec and returns it (DER) with its key.
func (ca *CA) Issue(spec Spec, validity time.Duration) ([]byte, crypto.Signer, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber: serial(),
		Subject:      pkix.Name{CommonName: spec.CommonName, Organization: spec.Organization},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(validity),
		KeyUsage:     x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
		DNSNames:     spec.DNSNames,
		IPAddresses:  spec.IPs,
	}
	if spec.Server {
		tmpl.ExtKeyUsage = append(tmpl.ExtKeyUsage, x509.ExtKeyUsageServerAuth)
	}
	if spec.Client {
		tmpl.ExtKeyUsage = append(tmpl.ExtKeyUsage, x509.ExtKeyUsageClientAuth)
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, key.Public(), ca.Key)
	if err != nil {
		return nil, nil, err
	}
	return der, key, nil
}

// ParseCertPEM parses the first certificate in PEM data.
func ParseCertPEM(data []byte) (*x509.Certificate, error) {
	block, _ := pem.Decode(data)
	if block == nil || block.Type != "CERTIFICATE" {
		return nil, errors.New("no PEM certificate")
	}
	return x509.ParseCertificate(block.Bytes)
}

// CertPEM is the CA certificate in PEM, as kubeconfigs embed it.
func (ca *CA) CertPEM() []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ca.Cert.Raw})
}

// EnsureKey makes sure path holds a private key (for signing service
// account tokens), creating one if it does not, and writes its public half
// beside it as pubPath.
func EnsureKey(path, pubPath string) error {
	keyPEM, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			return err
		}
		if keyPEM, err = keyutil.MarshalPrivateKeyToPEM(key); err != nil {
			return err
		}
		if err := fsutil.WriteFile(path, keyPEM, 0o600); err != nil {
			return err
		}
	} else if err != nil {
		return err
	}
	key, err := keyutil.ParsePrivateKeyPEM(keyPEM)
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	signer, ok := key.(crypto.Signer)
	if !ok {
		return fmt.Errorf("%s: not a signing key", path)
	}
	pubDER, err := x509.MarshalPKIXPublicKey(signer.Public())
	if err != nil {
		return err
	}
	pubPEM := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pubDER})
	if old, err := os.ReadFile(pubPath); err == nil && bytes.Equal(old, pubPEM) {
		return nil
	}
	return fsutil.WriteFile(pubPath, pubPEM, 0o644)
}

// EncodeCertKey returns a certificate and key in PEM, as kubeconfigs embed them.
func EncodeCertKey(der []byte, key crypto.Signer) (certPEM, keyPEM []byte, err error) {
	keyPEM, err = keyutil.MarshalPrivateKeyToPEM(key)
	if err != nil {
		return nil, nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), keyPEM, nil
}

func matches(cert *x509.Certificate, key crypto.Signer) bool {
	pub, ok := cert.PublicKey.(interface{ Equal(crypto.PublicKey) bool })
	return ok && pub.Equal(key.Public())
}

func (ca *CA) issued(cert *x509.Certificate) bool {
	return cert.CheckSignatureFrom(ca.Cert) == nil
}

func satisfies(cert *x509.Certificate, spec Spec) bool {
	if cert.Subject.CommonName != spec.CommonName || !slices.Equal(cert.Subject.Organization, spec.Organization) {
		return false
	}
	for _, name := range spec.DNSNames {
		if !slices.Contains(cert.DNSNames, name) {
			return false
		}
	}
	for _, ip := range spec.IPs {
		if !slices.ContainsFunc(cert.IPAddresses, ip.Equal) {
			return false
		}
	}
	return (!spec.Server || slices.Contains(cert.ExtKeyUsage, x509.ExtKeyUsageServerAuth)) &&
		(!spec.Client || slices.Contains(cert.ExtKeyUsage, x509.ExtKeyUsageClientAuth))
}

func load(certFile, keyFile string) (*x509.Certificate, crypto.Signer, error) {
	certPEM, err := os.ReadFile(certFile)
	if err != nil {
		return nil, nil, err
	}
	keyPEM, err := os.ReadFile(keyFile)
	if err != nil {
		return nil, nil, err
	}
	cert, err := ParseCertPEM(certPEM)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", certFile, err)
	}
	key, err := keyutil.ParsePrivateKeyPEM(keyPEM)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", keyFile, err)
	}
	signer, ok := key.(crypto.Signer)
	if !ok {
		return nil, nil, fmt.Errorf("%s: not a signing key", keyFile)
	}
	return cert, signer, nil
}

// store writes the key before the certificate: a crash between the two
// leaves a certificate that does not match, which EnsureCert reissues,
// rather than a certificate with no key.
func store(certFile, keyFile string, der []byte, key crypto.Signer) error {
	certPEM, keyPEM, err := EncodeCertKey(der, key)
	if err != nil {
		return err
	}
	if err := fsutil.WriteFile(keyFile, keyPEM, 0o600); err != nil {
		return err
	}
	return fsutil.WriteFile(certFile, certPEM, 0o644)
}

func serial() *big.Int {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		panic(err)
	}
	return n
}
