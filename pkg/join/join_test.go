package join

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"math/big"
	"net"
	"strings"
	"testing"
	"time"

	certificatesv1 "k8s.io/api/certificates/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func TestTokenRoundTripAndPin(t *testing.T) {
	caDER := []byte("a CA's DER")
	tok, err := NewToken(caDER)
	if err != nil {
		t.Fatal(err)
	}
	parsed, err := ParseToken(" " + tok.String() + "\n")
	if err != nil {
		t.Fatal(err)
	}
	if parsed != tok {
		t.Fatalf("parsed %+v, want %+v", parsed, tok)
	}
	if !parsed.Pins(caDER) || parsed.Pins([]byte("another CA")) {
		t.Fatal("Pins does not tell the pinned CA from another")
	}
	if b := parsed.Bootstrap(); len(b) != 23 || !strings.Contains(b, ".") {
		t.Fatalf("bootstrap token %q", b)
	}
}

func TestParseTokenErrorsNameTheFlag(t *testing.T) {
	hash := strings.Repeat("ab", 32)
	for _, tc := range []struct{ token, want string }{
		{"", "not a stead join token"},
		{"abcdef.0123456789abcdef", "not a stead join token"},
		{"K10" + hash, "not a stead join token"},
		{"K10zz::abcdef.0123456789abcdef", "CA hash"},
		{"K10" + hash[:10] + "::abcdef.0123456789abcdef", "CA hash"},
		{"K10" + hash + "::abcdef", "not a bootstrap token"},
		{"K10" + hash + "::ABCDEF.0123456789abcdef", "not a bootstrap token"},
	} {
		_, err := ParseToken(tc.token)
		if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.HasPrefix(err.Error(), "--token") {
			t.Errorf("ParseToken(%q) = %v, want an error about %q", tc.token, err, tc.want)
		}
		if err != nil && strings.Contains(err.Error(), "0123456789abcdef") {
			t.Errorf("ParseToken(%q)'s error repeats the secret: %v", tc.token, err)
		}
	}
}

type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
}

func newTestCA(t *testing.T) testCA {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test-ca"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	return testCA{cert, key}
}

func (ca testCA) leaf(t *testing.T, ips ...net.IP) *x509.Certificate {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "kube-apiserver"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: ips, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	return cert
}

func TestPinnedCA(t *testing.T) {
	ca, other := newTestCA(t), newTestCA(t)
	tok, _ := NewToken(ca.cert.Raw)
	serverIP := net.ParseIP("10.0.0.1")
	leaf, otherLeaf := ca.leaf(t, serverIP), other.leaf(t, serverIP)
	for _, tc := range []struct {
		name   string
		chain  []*x509.Certificate
		server string
		want   string // "" for the CA
	}{
		{"the pinned CA's server", []*x509.Certificate{leaf, ca.cert}, "10.0.0.1", ""},
		{"no CA in the chain", []*x509.Certificate{leaf}, "10.0.0.1", "did not present the CA"},
		{"another cluster", []*x509.Certificate{otherLeaf, other.cert}, "10.0.0.1", "did not present the CA"},
		{"the pinned CA beside another's certificate", []*x509.Certificate{otherLeaf, ca.cert}, "10.0.0.1", "not the pinned CA's"},
		{"a certificate for another address", []*x509.Certificate{leaf, ca.cert}, "10.0.0.2", "not the pinned CA's"},
		{"nothing", nil, "10.0.0.1", "no certificate"},
	} {
		got, err := pinnedCA(tc.chain, tok, tc.server)
		switch {
		case tc.want == "" && (err != nil || !got.Equal(ca.cert)):
			t.Errorf("%s: %v, want the CA", tc.name, err)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("%s: %v, want an error with %q", tc.name, err, tc.want)
		}
	}
	leafPin, _ := NewToken(leaf.Raw)
	if _, err := pinnedCA([]*x509.Certificate{leaf, ca.cert}, leafPin, "10.0.0.1"); err == nil || !strings.Contains(err.Error(), "not a CA") {
		t.Errorf("a token pinning a leaf: %v, want not a CA", err)
	}
}

func servingCSR(t *testing.T, user string, groups []string, cn string, org []string, dns []string, ips []net.IP, usages ...certificatesv1.KeyUsage) *certificatesv1.CertificateSigningRequest {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{
		Subject: pkix.Name{CommonName: cn, Organization: org}, DNSNames: dns, IPAddresses: ips,
	}, key)
	if err != nil {
		t.Fatal(err)
	}
	if usages == nil {
		usages = []certificatesv1.KeyUsage{certificatesv1.UsageDigitalSignature, certificatesv1.UsageServerAuth}
	}
	return &certificatesv1.CertificateSigningRequest{
		ObjectMeta: metav1.ObjectMeta{Name: "csr-1"},
		Spec: certificatesv1.CertificateSigningRequestSpec{
			Request:    pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der}),
			SignerName: certificatesv1.KubeletServingSignerName,
			Usages:     usages, Username: user, Groups: groups,
		},
	}
}

func TestServingVerdict(t *testing.T) {
	nodes := map[string]*corev1.Node{
		"node-a": {
			ObjectMeta: metav1.ObjectMeta{Name: "node-a"},
			Status: corev1.NodeStatus{Addresses: []corev1.NodeAddress{
				{Type: corev1.NodeInternalIP, Address: "10.0.0.2"}, {Type: corev1.NodeHostName, Address: "node-a"},
			}},
		},
	}
	lookup := func(name string) (*corev1.Node, error) {
		if n, ok := nodes[name]; ok {
			return n, nil
		}
		return nil, errNodeUnknown
	}
	nodeGroups := []string{"system:nodes", "system:authenticated"}
	ip := func(s string) []net.IP { return []net.IP{net.ParseIP(s)} }
	const a = "system:node:node-a"
	org := []string{"system:nodes"}
	for _, tc := range []struct {
		name string
		csr  *certificatesv1.CertificateSigningRequest
		want string // "" approves
	}{
		{"its own name and address", servingCSR(t, a, nodeGroups, a, org, []string{"node-a"}, ip("10.0.0.2")), ""},
		{"its address only", servingCSR(t, a, nodeGroups, a, org, nil, ip("10.0.0.2")), ""},
		{"another node's address", servingCSR(t, a, nodeGroups, a, org, []string{"node-a"}, ip("10.0.0.3")), "IP address 10.0.0.3 is not node node-a's"},
		{"the API server's name", servingCSR(t, a, nodeGroups, a, org, []string{"kubernetes.default.svc"}, ip("10.0.0.2")), `DNS name "kubernetes.default.svc"`},
		{"another node's identity", servingCSR(t, a, nodeGroups, "system:node:node-b", org, nil, ip("10.0.0.2")), "not the requester's"},
		{"not a node", servingCSR(t, "alice", []string{"system:authenticated"}, "system:node:alice", org, nil, ip("10.0.0.2")), "not by a node"},
		{"a node without the nodes group", servingCSR(t, a, []string{"system:authenticated"}, a, org, nil, ip("10.0.0.2")), "not by a node"},
		{"wrong organization", servingCSR(t, a, nodeGroups, a, []string{"system:masters"}, nil, ip("10.0.0.2")), "not the requester's"},
		{"client auth too", servingCSR(t, a, nodeGroups, a, org, nil, ip("10.0.0.2"), certificatesv1.UsageServerAuth, certificatesv1.UsageClientAuth), `"client auth"`},
		{"no server auth", servingCSR(t, a, nodeGroups, a, org, nil, ip("10.0.0.2"), certificatesv1.UsageDigitalSignature), "no server auth"},
		{"no names at all", servingCSR(t, a, nodeGroups, a, org, nil, nil), "no DNS name or IP address"},
		{"a node not registered yet", servingCSR(t, "system:node:node-c", nodeGroups, "system:node:node-c", org, nil, ip("10.0.0.4")), errNodeUnknown.Error()},
	} {
		err := servingVerdict(tc.csr, lookup)
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("%s: denied: %v", tc.name, err)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("%s: %v, want %q", tc.name, err, tc.want)
		}
	}
	garbled := servingCSR(t, a, nodeGroups, a, org, nil, ip("10.0.0.2"))
	garbled.Spec.Request = []byte("not PEM")
	if err := servingVerdict(garbled, lookup); err == nil || errors.Is(err, errNodeUnknown) {
		t.Errorf("a garbled request: %v, want a denial", err)
	}
}
