package server

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"net"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"

	"github.com/steadhq/stead/pkg/pki"
)

const soon = 10 * 24 * time.Hour // within the 30 days before expiry: due

// replaceWithDue puts a certificate for the same subject, names and uses,
// valid for 10 days only, in the place of certFile's.
func replaceWithDue(t *testing.T, ca *pki.CA, certFile, keyFile string) {
	t.Helper()
	old := readCert(t, certFile)
	spec := pki.Spec{
		CommonName: old.Subject.CommonName, Organization: old.Subject.Organization,
		DNSNames: old.DNSNames, IPs: old.IPAddresses,
		Server: slices.Contains(old.ExtKeyUsage, x509.ExtKeyUsageServerAuth),
		Client: slices.Contains(old.ExtKeyUsage, x509.ExtKeyUsageClientAuth),
	}
	der, key, err := ca.Issue(spec, soon)
	if err != nil {
		t.Fatal(err)
	}
	certPEM, keyPEM, err := pki.EncodeCertKey(der, key)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, keyPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(certFile, certPEM, 0o644); err != nil {
		t.Fatal(err)
	}
}

func readCert(t *testing.T, path string) *x509.Certificate {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := pki.ParseCertPEM(data)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return cert
}

func mustRead(t *testing.T, path string) []byte {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

func TestRenewDueRenewsWhatIsDueAndNothingElse(t *testing.T) {
	cfg := Config{DataDir: t.TempDir()}
	cfg.Defaults()
	pkiDir := filepath.Join(cfg.DataDir, "pki")
	creds, err := ensureCredentials(pkiDir, &cfg)
	if err != nil {
		t.Fatal(err)
	}
	s := &Server{cfg: cfg, creds: creds}
	for _, id := range []clientIdentity{
		{name: "scheduler", user: schedulerUser},
		{name: "node", user: "system:node:vm", groups: []string{"system:nodes"}},
	} {
		if _, err := s.ClientKubeconfig(id.name, id.user, id.groups); err != nil {
			t.Fatal(err)
		}
	}
	credDir := filepath.Join(cfg.DataDir, "cred")

	// Due: the API server's serving certificate, the scheduler's client
	// one and the administrator's kubeconfig.
	replaceWithDue(t, creds.ca, creds.servingCert, creds.servingKey)
	replaceWithDue(t, creds.ca, filepath.Join(credDir, "scheduler.crt"), filepath.Join(credDir, "scheduler.key"))
	der, key, err := creds.ca.Issue(pki.Spec{CommonName: adminUser, Organization: adminGroups, Client: true}, soon)
	if err != nil {
		t.Fatal(err)
	}
	certPEM, keyPEM, err := pki.EncodeCertKey(der, key)
	if err != nil {
		t.Fatal(err)
	}
	if err := writeKubeconfigFor(cfg.KubeconfigPath, &clientcmdapi.Cluster{Server: cfg.URL(), CertificateAuthorityData: creds.ca.CertPEM()}, adminUser,
		&clientcmdapi.AuthInfo{ClientCertificateData: certPEM, ClientKeyData: keyPEM}); err != nil {
		t.Fatal(err)
	}
	if !kubeconfigDue(cfg.KubeconfigPath) {
		t.Fatal("a kubeconfig whose certificate ends in 10 days is not due")
	}
	notDue := map[string][]byte{}
	for _, path := range []string{creds.etcdCert, creds.kubeletCert, filepath.Join(credDir, "node.crt"), filepath.Join(credDir, "node.kubeconfig")} {
		notDue[path] = mustRead(t, path)
	}

	if err := s.renewDue(); err != nil {
		t.Fatal(err)
	}
	for _, path := range []string{creds.servingCert, filepath.Join(credDir, "scheduler.crt")} {
		if cert := readCert(t, path); pki.Due(cert) {
			t.Errorf("%s not renewed: ends %v", path, cert.NotAfter)
		}
	}
	if got := readCert(t, creds.servingCert); !slices.Contains(got.DNSNames, "kubernetes.default.svc") || got.Subject.CommonName != "kube-apiserver" {
		t.Errorf("renewed serving certificate for %q %v, want the API server's names", got.Subject.CommonName, got.DNSNames)
	}
	// The API server serves the chain: the new leaf, then the CA.
	if chain := mustRead(t, creds.servingChain); !bytes.HasPrefix(chain, mustRead(t, creds.servingCert)) {
		t.Error("serving chain does not begin with the renewed certificate")
	}
	if kubeconfigDue(cfg.KubeconfigPath) {
		t.Error("administrator's kubeconfig not renewed")
	}
	for path, before := range notDue {
		if !bytes.Equal(mustRead(t, path), before) {
			t.Errorf("%s rewritten although it was not due", path)
		}
	}

	// A component's kubeconfig names its files, so that client-go reloads
	// them once renewed, and holds no certificate of its own.
	restCfg, err := clientcmd.BuildConfigFromFlags("", filepath.Join(credDir, "scheduler.kubeconfig"))
	if err != nil {
		t.Fatal(err)
	}
	if restCfg.CertFile != filepath.Join(credDir, "scheduler.crt") || restCfg.KeyFile != filepath.Join(credDir, "scheduler.key") || len(restCfg.CertData) != 0 {
		t.Errorf("scheduler's kubeconfig: cert file %q, key file %q, %d bytes of certificate data; want the files only",
			restCfg.CertFile, restCfg.KeyFile, len(restCfg.CertData))
	}

	// Nothing is due now: a second look writes nothing, not even the chain
	// (the API server reloads it whenever it changes).
	chainInfo, err := os.Stat(creds.servingChain)
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(10 * time.Millisecond) // so that a rewrite would show in the mtime
	if err := s.renewDue(); err != nil {
		t.Fatal(err)
	}
	if after, err := os.Stat(creds.servingChain); err != nil || !after.ModTime().Equal(chainInfo.ModTime()) {
		t.Errorf("serving chain rewritten with nothing due (%v)", err)
	}
}

func TestRenewServingCertificateWhenDue(t *testing.T) {
	defer func(d time.Duration) { certificateCheck = d }(certificateCheck)
	certificateCheck = 10 * time.Millisecond
	cfg := Config{DataDir: t.TempDir()}
	cfg.Defaults()
	creds, err := ensureCredentials(filepath.Join(cfg.DataDir, "pki"), &cfg)
	if err != nil {
		t.Fatal(err)
	}
	s := &Server{cfg: cfg, creds: creds}
	ips := []net.IP{net.ParseIP("10.0.0.7").To4()}
	der, _, err := creds.ca.Issue(pki.Spec{CommonName: "vm", DNSNames: []string{"vm", "localhost"}, IPs: ips, Server: true}, soon)
	if err != nil {
		t.Fatal(err)
	}
	current, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan tls.Certificate, 1)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go s.RenewServingCertificate(ctx, current, func(c tls.Certificate) { served <- c })
	select {
	case c := <-served:
		leaf := c.Leaf
		if pki.Due(leaf) || leaf.Subject.CommonName != "vm" || !slices.Equal(leaf.DNSNames, current.DNSNames) ||
			len(leaf.IPAddresses) != 1 || !leaf.IPAddresses[0].Equal(ips[0]) {
			t.Errorf("renewed certificate: %q %v %v ending %v", leaf.Subject.CommonName, leaf.DNSNames, leaf.IPAddresses, leaf.NotAfter)
		}
		if _, err := leaf.Verify(x509.VerifyOptions{Roots: certPool(creds.ca.Cert), KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}); err != nil {
			t.Errorf("renewed certificate not issued by the cluster CA for serving: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("a serving certificate due in 10 days was not renewed")
	}
}

func certPool(certs ...*x509.Certificate) *x509.CertPool {
	pool := x509.NewCertPool()
	for _, c := range certs {
		pool.AddCert(c)
	}
	return pool
}
