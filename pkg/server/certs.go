package server

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"path/filepath"

	"github.com/steadhq/stead/pkg/fsutil"
	"github.com/steadhq/stead/pkg/pki"
)

// Identities of the in-process components. Their names are the ones the API
// server's bootstrap RBAC policy already grants the right roles to.
const (
	adminUser             = "stead-admin"
	controllerManagerUser = "system:kube-controller-manager"
	schedulerUser         = "system:kube-scheduler"
	// kubeletClientUser is how the API server presents itself to agents
	// when it proxies exec, logs and port-forward.
	kubeletClientUser = "kube-apiserver-kubelet-client"
	// SteadControllerUser runs stead's own controllers (the StatefulSet
	// engine, storage, DNS); its rights are granted by ensureRBAC.
	SteadControllerUser = "system:stead-controller"
)

// adminGroups are the administrator's: every right.
var adminGroups = []string{"system:masters"}

// credentials are the files the control plane is started with.
type credentials struct {
	dir         string
	ca          *pki.CA
	servingCert string
	servingKey  string
	// servingChain is servingCert followed by the CA: agents joining with
	// a token learn the CA from it (pkg/join).
	servingChain string
	etcdCert     string // etcd's serving and peer certificate
	etcdKey      string
	etcdClient   string // the API server's client certificate for etcd
	etcdClientK  string
	kubeletCert  string
	kubeletKey   string
	saKey        string
	saPub        string
}

// ensureCredentials makes or reuses the cluster's PKI under dir.
func ensureCredentials(dir string, cfg *Config) (*credentials, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	ca, err := pki.LoadOrCreateCA(dir, "ca", "stead-ca")
	if err != nil {
		return nil, fmt.Errorf("cluster CA: %w", err)
	}
	c := &credentials{dir: dir, ca: ca}
	hostname, _ := os.Hostname()
	serving := pki.Spec{
		CommonName: "kube-apiserver",
		DNSNames: []string{"localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc",
			"kubernetes.default.svc." + cfg.ClusterDomain},
		IPs:    []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback, cfg.apiServiceIP()},
		Server: true,
	}
	if hostname != "" {
		serving.DNSNames = append(serving.DNSNames, hostname)
	}
	if ip := net.ParseIP(cfg.BindAddress); ip != nil && !ip.IsUnspecified() && !ip.IsLoopback() {
		serving.IPs = append(serving.IPs, ip)
	}
	for _, san := range cfg.TLSSANs {
		if ip := net.ParseIP(san); ip != nil {
			serving.IPs = append(serving.IPs, ip)
		} else {
			serving.DNSNames = append(serving.DNSNames, san)
		}
	}
	steps := []struct {
		name      string
		spec      pki.Spec
		cert, key *string
	}{
		{"apiserver", serving, &c.servingCert, &c.servingKey},
		{"etcd", pki.Spec{CommonName: "etcd", DNSNames: []string{"localhost"},
			IPs: []net.IP{net.IPv4(127, 0, 0, 1)}, Server: true, Client: true}, &c.etcdCert, &c.etcdKey},
		{"apiserver-etcd-client", pki.Spec{CommonName: "kube-apiserver-etcd-client", Client: true}, &c.etcdClient, &c.etcdClientK},
		{"apiserver-kubelet-client", pki.Spec{CommonName: kubeletClientUser, Organization: []string{"system:masters"}, Client: true},
			&c.kubeletCert, &c.kubeletKey},
	}
	for _, s := range steps {
		if *s.cert, *s.key, err = ca.EnsureCert(dir, s.name, s.spec); err != nil {
			return nil, fmt.Errorf("certificate %s: %w", s.name, err)
		}
	}
	leaf, err := os.ReadFile(c.servingCert)
	if err != nil {
		return nil, err
	}
	// Written only when it changes: the API server reloads it on every
	// change, and a running server calls this every hour.
	c.servingChain = filepath.Join(dir, "apiserver-chain.crt")
	chain := append(leaf, ca.CertPEM()...)
	if old, err := os.ReadFile(c.servingChain); err != nil || !bytes.Equal(old, chain) {
		if err := fsutil.WriteFile(c.servingChain, chain, 0o644); err != nil {
			return nil, err
		}
	}
	c.saKey, c.saPub = filepath.Join(dir, "service-account.key"), filepath.Join(dir, "service-account.pub")
	if err := pki.EnsureKey(c.saKey, c.saPub); err != nil {
		return nil, fmt.Errorf("service account key: %w", err)
	}
	return c, nil
}
