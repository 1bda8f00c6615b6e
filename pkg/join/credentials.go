package join

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"time"

	certificatesv1 "k8s.io/api/certificates/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/util/certificate/csr"
	"k8s.io/client-go/util/keyutil"
	"k8s.io/klog/v2"

	"github.com/steadhq/stead/pkg/fsutil"
)

// certificateWait bounds how long the agent waits for a CSR to be
// approved and signed: the controller manager does it in well under a
// second, so a minute means it is not running.
const certificateWait = time.Minute

// renewAt is the part of a certificate's lifetime after which the node asks
// for a new one, at start or while it runs: the kubelet's certificate
// manager picks a point between 70 and 90 %.
const renewAt = 0.8

// rotationCheck is how often a running node looks at its certificates.
var rotationCheck = time.Hour

// renewalDue says whether cert is past renewAt of its lifetime.
func renewalDue(cert *x509.Certificate, now time.Time) bool {
	life := cert.NotAfter.Sub(cert.NotBefore)
	return !now.Before(cert.NotBefore.Add(time.Duration(float64(life) * renewAt)))
}

// Credentials are a node's files under dir (<data-dir>/agent): the CA it
// pinned, its client certificate (system:node:<name>) and its kubelet API
// serving certificate.
type Credentials struct {
	ServerURL string
	NodeName  string
	Dir       string
	CA        *x509.Certificate
	caPEM     []byte
}

func (c *Credentials) path(name string) string { return filepath.Join(c.Dir, name) }

// Join returns the node's credentials for the server, asking for a client
// certificate with the token's bootstrap identity unless a valid one from
// the same CA is already on disk. It is idempotent: an agent restarted, or
// killed half-way, joins again with what it kept.
func Join(ctx context.Context, serverURL string, token Token, dir, nodeName string) (*Credentials, error) {
	c := &Credentials{ServerURL: serverURL, NodeName: nodeName, Dir: dir}
	if ca, err := readCert(c.path("ca.crt")); err == nil && token.Pins(ca.Raw) {
		c.CA = ca
	} else {
		if c.CA, err = FetchCA(ctx, serverURL, token); err != nil {
			return nil, err
		}
		if err := fsutil.WriteFile(c.path("ca.crt"), encodeCert(c.CA.Raw), 0o644); err != nil {
			return nil, err
		}
	}
	c.caPEM = encodeCert(c.CA.Raw)
	if c.usable("node", anyCertificate) {
		return c, nil
	}
	bootstrap, err := kubernetes.NewForConfig(&rest.Config{
		Host:            serverURL,
		BearerToken:     token.Bootstrap(),
		TLSClientConfig: rest.TLSClientConfig{CAData: c.caPEM},
		UserAgent:       "stead-agent/bootstrap",
	})
	if err != nil {
		return nil, err
	}
	if err := c.requestClientCertificate(ctx, bootstrap); err != nil {
		return nil, fmt.Errorf("node client certificate (is the token still valid?): %w", err)
	}
	return c, nil
}

// requestClientCertificate asks, as client, for the node's client
// certificate (system:node:<name>) and stores it as node.crt and node.key.
func (c *Credentials) requestClientCertificate(ctx context.Context, client kubernetes.Interface) error {
	return c.request(ctx, client, "node", certificatesv1.KubeAPIServerClientKubeletSignerName,
		[]certificatesv1.KeyUsage{certificatesv1.UsageDigitalSignature, certificatesv1.UsageClientAuth}, nil, nil)
}

// ClientConfig is the node's client configuration: system:node:<name>.
func (c *Credentials) ClientConfig() *rest.Config {
	return &rest.Config{
		Host: c.ServerURL,
		TLSClientConfig: rest.TLSClientConfig{
			CAData:   c.caPEM,
			CertFile: c.path("node.crt"),
			KeyFile:  c.path("node.key"),
		},
		UserAgent: "stead-agent",
	}
}

// ServingCertificate returns the kubelet API's certificate for the node's
// names and addresses, signed by kubernetes.io/kubelet-serving once the
// server has checked that they are the node's own.
func (c *Credentials) ServingCertificate(ctx context.Context, client kubernetes.Interface, dnsNames []string, ips []net.IP) (tls.Certificate, error) {
	covers := func(cert *x509.Certificate) bool {
		for _, n := range dnsNames {
			if !slices.Contains(cert.DNSNames, n) {
				return false
			}
		}
		for _, ip := range ips {
			if !slices.ContainsFunc(cert.IPAddresses, ip.Equal) {
				return false
			}
		}
		return true
	}
	if !c.usable("serving", covers) {
		err := c.request(ctx, client, "serving", certificatesv1.KubeletServingSignerName,
			[]certificatesv1.KeyUsage{certificatesv1.UsageDigitalSignature, certificatesv1.UsageServerAuth}, dnsNames, ips)
		if err != nil {
			return tls.Certificate{}, fmt.Errorf("kubelet API serving certificate: %w", err)
		}
	}
	return tls.LoadX509KeyPair(c.path("serving.crt"), c.path("serving.key"))
}

// anyCertificate is usable's check when any certificate of the node will do.
func anyCertificate(*x509.Certificate) bool { return true }

// usable says whether <name>.crt and .key hold the node's certificate,
// issued by the pinned CA, far from expiry, and accepted by check.
func (c *Credentials) usable(name string, check func(*x509.Certificate) bool) bool {
	pair, err := tls.LoadX509KeyPair(c.path(name+".crt"), c.path(name+".key"))
	if err != nil {
		return false
	}
	cert, err := x509.ParseCertificate(pair.Certificate[0])
	if err != nil {
		return false
	}
	return cert.Subject.CommonName == "system:node:"+c.NodeName &&
		cert.CheckSignatureFrom(c.CA) == nil &&
		!renewalDue(cert, time.Now()) &&
		check(cert)
}

// Rotate renews the node's certificates while ctx lasts, each once it is
// due, asking as the node itself (client): its client certificate, which
// client-go reloads from node.crt and node.key within minutes (closing its
// connections to make new ones with it), and its kubelet API serving
// certificate for dnsNames and ips, which is handed to serve. A request
// that fails is made again at the next check.
func (c *Credentials) Rotate(ctx context.Context, client kubernetes.Interface, dnsNames []string, ips []net.IP, serve func(tls.Certificate)) {
	tick := time.NewTicker(rotationCheck)
	defer tick.Stop()
	for {
		c.rotateDue(ctx, client, dnsNames, ips, serve)
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// rotateDue renews what is due now.
func (c *Credentials) rotateDue(ctx context.Context, client kubernetes.Interface, dnsNames []string, ips []net.IP, serve func(tls.Certificate)) {
	if !c.usable("node", anyCertificate) {
		if err := c.requestClientCertificate(ctx, client); err != nil {
			klog.ErrorS(err, "Renewing the node's client certificate", "retryIn", rotationCheck)
		} else {
			klog.InfoS("Renewed the node's client certificate")
		}
	}
	if !c.usable("serving", anyCertificate) {
		cert, err := c.ServingCertificate(ctx, client, dnsNames, ips)
		if err != nil {
			klog.ErrorS(err, "Renewing the kubelet API's serving certificate", "retryIn", rotationCheck)
			return
		}
		klog.InfoS("Renewed the kubelet API's serving certificate")
		serve(cert)
	}
}

// request asks the API server for a certificate of the node's identity
// with a fresh key, waits for it to be signed, and stores both as
// <name>.key and <name>.crt (the key first: a crash between leaves a pair
// that does not match, which usable rejects).
func (c *Credentials) request(ctx context.Context, client kubernetes.Interface, name, signer string, usages []certificatesv1.KeyUsage, dnsNames []string, ips []net.IP) error {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	csrPEM, err := certificateRequest(key, c.NodeName, dnsNames, ips)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, certificateWait)
	defer cancel()
	reqName, reqUID, err := csr.RequestCertificateWithContext(ctx, client, csrPEM, "", signer, nil, usages, key)
	if err != nil {
		return err
	}
	certPEM, err := csr.WaitForCertificate(ctx, client, reqName, reqUID)
	if err != nil {
		return fmt.Errorf("CSR %s not signed: %w", reqName, err)
	}
	keyPEM, err := keyutil.MarshalPrivateKeyToPEM(key)
	if err != nil {
		return err
	}
	if err := fsutil.WriteFile(c.path(name+".key"), keyPEM, 0o600); err != nil {
		return err
	}
	return fsutil.WriteFile(c.path(name+".crt"), certPEM, 0o644)
}

func certificateRequest(key crypto.Signer, nodeName string, dnsNames []string, ips []net.IP) ([]byte, error) {
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{
		Subject:     pkix.Name{CommonName: "system:node:" + nodeName, Organization: []string{"system:nodes"}},
		DNSNames:    dnsNames,
		IPAddresses: ips,
	}, key)
	if err != nil {
		return nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der}), nil
}

func encodeCert(der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}

func readCert(path string) (*x509.Certificate, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	block, _ := pem.Decode(data)
	if block == nil {
		return nil, fmt.Errorf("%s: no PEM certificate", path)
	}
	return x509.ParseCertificate(block.Bytes)
}
