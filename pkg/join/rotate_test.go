package join

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	certificatesv1 "k8s.io/api/certificates/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"
	clienttesting "k8s.io/client-go/testing"
	"k8s.io/client-go/util/keyutil"

	"github.com/steadhq/stead/pkg/fsutil"
)

func TestRenewalDue(t *testing.T) {
	start := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	cert := &x509.Certificate{NotBefore: start, NotAfter: start.Add(100 * time.Hour)}
	for _, tc := range []struct {
		at   time.Duration
		want bool
	}{
		{0, false},
		{79 * time.Hour, false},
		{80 * time.Hour, true},
		{99 * time.Hour, true},
		{101 * time.Hour, true},
	} {
		if got := renewalDue(cert, start.Add(tc.at)); got != tc.want {
			t.Errorf("%v into a 100h certificate: due %v, want %v", tc.at, got, tc.want)
		}
	}
}

// signer signs every CSR made through client with ca, for validity, as the
// controller manager's signer does once a CSR is approved; it records
// what was asked.
type signer struct {
	mu      sync.Mutex
	ca      testCA
	signers []string
}

func (s *signer) react(action clienttesting.Action) (bool, runtime.Object, error) {
	csr := action.(clienttesting.CreateAction).GetObject().(*certificatesv1.CertificateSigningRequest)
	block, _ := pem.Decode(csr.Spec.Request)
	req, err := x509.ParseCertificateRequest(block.Bytes)
	if err != nil {
		return true, nil, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(now.UnixNano()), Subject: req.Subject,
		NotBefore: now.Add(-time.Minute), NotAfter: now.Add(240 * time.Hour),
		DNSNames: req.DNSNames, IPAddresses: req.IPAddresses,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, s.ca.cert, req.PublicKey, s.ca.key)
	if err != nil {
		return true, nil, err
	}
	csr.Status.Certificate = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	csr.Status.Conditions = []certificatesv1.CertificateSigningRequestCondition{{Type: certificatesv1.CertificateApproved, Status: corev1.ConditionTrue}}
	s.mu.Lock()
	s.signers = append(s.signers, csr.Spec.SignerName)
	s.mu.Unlock()
	return false, nil, nil // the tracker stores it, signed
}

// writePair stores a certificate for the node, signed by ca, valid from
// notBefore for life, as <name>.crt and .key in dir.
func writePair(t *testing.T, ca testCA, dir, name, node string, notBefore time.Time, life time.Duration) *x509.Certificate {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(notBefore.UnixNano()), Subject: pkix.Name{CommonName: "system:node:" + node},
		NotBefore: notBefore, NotAfter: notBefore.Add(life),
		DNSNames: []string{node}, IPAddresses: []net.IP{net.IPv4(10, 0, 0, 5)},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	keyPEM, _ := keyutil.MarshalPrivateKeyToPEM(key)
	if err := fsutil.WriteFile(filepath.Join(dir, name+".key"), keyPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := fsutil.WriteFile(filepath.Join(dir, name+".crt"), encodeCert(der), 0o644); err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	return cert
}

func TestRotateRenewsWhatIsDue(t *testing.T) {
	ca := newTestCA(t)
	dir := t.TempDir()
	const node = "node-a"
	ips := []net.IP{net.IPv4(10, 0, 0, 5)}
	now := time.Now()
	// The client certificate is 90 % through its life, the serving one 10 %.
	oldClient := writePair(t, ca, dir, "node", node, now.Add(-90*time.Hour), 100*time.Hour)
	oldServing := writePair(t, ca, dir, "serving", node, now.Add(-10*time.Hour), 100*time.Hour)

	s := &signer{ca: ca}
	// The fake ignores field selectors, by which a CSR is waited for: one
	// clientset per CSR.
	signing := func() *fake.Clientset {
		client := fake.NewClientset()
		client.PrependReactor("create", "certificatesigningrequests", s.react)
		return client
	}
	client := signing()
	c := &Credentials{NodeName: node, Dir: dir, CA: ca.cert}
	var served []tls.Certificate
	serve := func(cert tls.Certificate) { served = append(served, cert) }
	onDisk := func(name string) *x509.Certificate {
		t.Helper()
		cert, err := readCert(filepath.Join(dir, name+".crt"))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := tls.LoadX509KeyPair(filepath.Join(dir, name+".crt"), filepath.Join(dir, name+".key")); err != nil {
			t.Fatalf("%s: key and certificate do not match: %v", name, err)
		}
		return cert
	}

	c.rotateDue(context.Background(), client, []string{node}, ips, serve)
	if got := onDisk("node"); got.Equal(oldClient) || got.Subject.CommonName != "system:node:"+node {
		t.Fatalf("client certificate 90%% through its life: still %v (serial %v)", got.Subject, got.SerialNumber)
	}
	if got := onDisk("serving"); !got.Equal(oldServing) || len(served) != 0 {
		t.Fatalf("serving certificate 10%% through its life was renewed (%d served)", len(served))
	}
	if want := []string{certificatesv1.KubeAPIServerClientKubeletSignerName}; !slices.Equal(s.signers, want) {
		t.Fatalf("signers asked %q, want %q", s.signers, want)
	}

	// Nothing is due now; then the serving certificate is.
	c.rotateDue(context.Background(), client, []string{node}, ips, serve)
	if len(s.signers) != 1 {
		t.Fatalf("%d CSRs after a check with nothing due, want 1 still", len(s.signers))
	}
	writePair(t, ca, dir, "serving", node, now.Add(-85*time.Hour), 100*time.Hour)
	c.rotateDue(context.Background(), signing(), []string{node}, ips, serve)
	if len(served) != 1 {
		t.Fatalf("serving certificate 85%% through its life: %d handed to the kubelet API, want 1", len(served))
	}
	leaf, _ := x509.ParseCertificate(served[0].Certificate[0])
	if got := onDisk("serving"); !leaf.Equal(got) || !slices.Equal(got.DNSNames, []string{node}) || !got.IPAddresses[0].Equal(ips[0]) {
		t.Fatalf("served %v, on disk %v (names %v %v)", leaf.SerialNumber, got.SerialNumber, got.DNSNames, got.IPAddresses)
	}
	if s.signers[len(s.signers)-1] != certificatesv1.KubeletServingSignerName {
		t.Fatalf("signers asked %q, want the kubelet-serving signer last", s.signers)
	}
}
