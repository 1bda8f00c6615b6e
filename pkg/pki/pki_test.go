package pki

import (
	"bytes"
	"crypto/x509"
	"net"
	"os"
	"testing"
	"time"
)

func readCert(t *testing.T, path string) *x509.Certificate {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := ParseCertPEM(data)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return cert
}

func TestCAIsReused(t *testing.T) {
	dir := t.TempDir()
	first, err := LoadOrCreateCA(dir, "ca", "test-ca")
	if err != nil {
		t.Fatal(err)
	}
	second, err := LoadOrCreateCA(dir, "ca", "test-ca")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(first.Cert.Raw, second.Cert.Raw) {
		t.Fatal("a second LoadOrCreateCA made a new CA instead of loading the first")
	}
	if !first.Cert.IsCA {
		t.Fatal("CA certificate is not a CA")
	}
}

func TestEnsureCert(t *testing.T) {
	serving := Spec{CommonName: "kube-apiserver", DNSNames: []string{"localhost"}, IPs: []net.IP{net.ParseIP("127.0.0.1")}, Server: true}
	for _, tc := range []struct {
		name        string
		then        Spec
		wantReissue bool
	}{
		{"same spec is reused", serving, false},
		{"subset of SANs is reused", Spec{CommonName: "kube-apiserver", DNSNames: []string{"localhost"}, Server: true}, false},
		{"new SAN reissues", Spec{CommonName: "kube-apiserver", DNSNames: []string{"localhost", "stead.example"}, IPs: serving.IPs, Server: true}, true},
		{"new IP reissues", Spec{CommonName: "kube-apiserver", DNSNames: serving.DNSNames, IPs: []net.IP{net.ParseIP("10.0.0.1")}, Server: true}, true},
		{"client usage reissues", Spec{CommonName: "kube-apiserver", DNSNames: serving.DNSNames, Client: true}, true},
		{"other organization reissues", Spec{CommonName: "kube-apiserver", Organization: []string{"system:masters"}, Server: true}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			ca, err := LoadOrCreateCA(dir, "ca", "test-ca")
			if err != nil {
				t.Fatal(err)
			}
			certFile, _, err := ca.EnsureCert(dir, "leaf", serving)
			if err != nil {
				t.Fatal(err)
			}
			before := readCert(t, certFile)
			if err := before.CheckSignatureFrom(ca.Cert); err != nil {
				t.Fatalf("leaf not signed by the CA: %v", err)
			}
			if _, _, err := ca.EnsureCert(dir, "leaf", tc.then); err != nil {
				t.Fatal(err)
			}
			after := readCert(t, certFile)
			if reissued := !bytes.Equal(before.Raw, after.Raw); reissued != tc.wantReissue {
				t.Fatalf("reissued = %v, want %v", reissued, tc.wantReissue)
			}
			if !satisfies(after, tc.then) {
				t.Fatalf("certificate after EnsureCert does not satisfy %+v", tc.then)
			}
			if fi, err := os.Stat(certFile[:len(certFile)-len(".crt")] + ".key"); err != nil || fi.Mode().Perm() != 0o600 {
				t.Fatalf("key file mode %v (%v), want 0600", fi.Mode(), err)
			}
		})
	}
}

func TestCertFromAnotherCAIsReplaced(t *testing.T) {
	dir := t.TempDir()
	spec := Spec{CommonName: "admin", Client: true}
	other, err := LoadOrCreateCA(t.TempDir(), "ca", "other")
	if err != nil {
		t.Fatal(err)
	}
	certFile, _, err := other.EnsureCert(dir, "admin", spec)
	if err != nil {
		t.Fatal(err)
	}
	ca, err := LoadOrCreateCA(t.TempDir(), "ca", "ours")
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := ca.EnsureCert(dir, "admin", spec); err != nil {
		t.Fatal(err)
	}
	if err := readCert(t, certFile).CheckSignatureFrom(ca.Cert); err != nil {
		t.Fatalf("certificate still from the other CA: %v", err)
	}
}

func TestDue(t *testing.T) {
	for _, tc := range []struct {
		left time.Duration
		due  bool
	}{
		{-time.Hour, true}, // expired
		{10 * 24 * time.Hour, true},
		{29 * 24 * time.Hour, true},
		{31 * 24 * time.Hour, false},
		{leafValidity, false},
	} {
		cert := &x509.Certificate{NotAfter: time.Now().Add(tc.left)}
		if got := Due(cert); got != tc.due {
			t.Errorf("certificate ending in %v: due %v, want %v", tc.left, got, tc.due)
		}
	}
}

// A crash between writing a new key and its certificate leaves the old
// certificate beside the new key: it is issued anew, never served with a
// key it does not belong to.
func TestCertWithAnotherKeyIsReissued(t *testing.T) {
	dir := t.TempDir()
	ca, err := LoadOrCreateCA(dir, "ca", "test-ca")
	if err != nil {
		t.Fatal(err)
	}
	spec := Spec{CommonName: "admin", Client: true}
	certFile, keyFile, err := ca.EnsureCert(dir, "leaf", spec)
	if err != nil {
		t.Fatal(err)
	}
	before := readCert(t, certFile)
	_, otherKey, err := ca.Issue(spec, leafValidity)
	if err != nil {
		t.Fatal(err)
	}
	_, keyPEM, err := EncodeCertKey(before.Raw, otherKey)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, keyPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, _, err := ca.EnsureCert(dir, "leaf", spec); err != nil {
		t.Fatal(err)
	}
	after := readCert(t, certFile)
	if bytes.Equal(before.Raw, after.Raw) {
		t.Fatal("a certificate that does not belong to the key beside it was kept")
	}
	cert, key, err := load(certFile, keyFile)
	if err != nil || !matches(cert, key) {
		t.Fatalf("after EnsureCert the pair does not match (%v)", err)
	}
}
