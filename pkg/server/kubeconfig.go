package server

import (
	"bytes"
	"os"
	"path/filepath"
	"time"

	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"

	"github.com/steadhq/stead/pkg/fsutil"
	"github.com/steadhq/stead/pkg/pki"
)

// clientValidity is long because a kubeconfig handed to a user is expected
// to keep working; it is reissued at every start, and by a running server
// when it comes due.
const clientValidity = 365 * 24 * time.Hour

// writeKubeconfig issues a client certificate for user (in the groups given)
// and writes a kubeconfig that carries it, readable only by its owner
// because it holds the private key. This is the kind handed to users, which
// they copy elsewhere.
func writeKubeconfig(path, serverURL string, ca *pki.CA, user string, groups []string) error {
	der, key, err := ca.Issue(pki.Spec{CommonName: user, Organization: groups, Client: true}, clientValidity)
	if err != nil {
		return err
	}
	certPEM, keyPEM, err := pki.EncodeCertKey(der, key)
	if err != nil {
		return err
	}
	cluster := &clientcmdapi.Cluster{Server: serverURL, CertificateAuthorityData: ca.CertPEM()}
	return writeKubeconfigFor(path, cluster, user, &clientcmdapi.AuthInfo{ClientCertificateData: certPEM, ClientKeyData: keyPEM})
}

// clientIdentity is an in-process client of the API server.
type clientIdentity struct {
	name   string // of its files: <dir>/<name>.crt, .key and .kubeconfig
	user   string
	groups []string
}

// writeComponentKubeconfig makes sure dir holds a current certificate for
// id, renewing it when due, and a kubeconfig that names its files rather
// than carrying it: client-go reloads certificate files that change, so a
// running component goes on with the renewed one.
//
// The component asks for its responses uncompressed: it runs in the API
// server's process, and the API server would otherwise gzip every watch
// event and large list it sends it, with a compressor held for each watch,
// for a connection that never leaves the process.
func writeComponentKubeconfig(dir, serverURL string, ca *pki.CA, id clientIdentity) (string, error) {
	certFile, keyFile, err := ca.EnsureCert(dir, id.name, pki.Spec{CommonName: id.user, Organization: id.groups, Client: true})
	if err != nil {
		return "", err
	}
	path := filepath.Join(dir, id.name+".kubeconfig")
	cluster := &clientcmdapi.Cluster{Server: serverURL, CertificateAuthorityData: ca.CertPEM(), DisableCompression: true}
	return path, writeKubeconfigFor(path, cluster, id.user, &clientcmdapi.AuthInfo{ClientCertificate: certFile, ClientKey: keyFile})
}

// writeKubeconfigFor writes a kubeconfig for one user of this cluster; the
// file is left alone if it already says the same.
func writeKubeconfigFor(path string, cluster *clientcmdapi.Cluster, user string, auth *clientcmdapi.AuthInfo) error {
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters["stead"] = cluster
	cfg.AuthInfos[user] = auth
	cfg.Contexts["stead"] = &clientcmdapi.Context{Cluster: "stead", AuthInfo: user}
	cfg.CurrentContext = "stead"
	data, err := clientcmd.Write(*cfg)
	if err != nil {
		return err
	}
	if old, err := os.ReadFile(path); err == nil && bytes.Equal(old, data) {
		return nil
	}
	return fsutil.WriteFile(path, data, 0o600)
}

// kubeconfigDue tells whether the kubeconfig at path needs a new client
// certificate: it has none that parses, or the one it carries is due.
func kubeconfigDue(path string) bool {
	cfg, err := clientcmd.BuildConfigFromFlags("", path)
	if err != nil {
		return true
	}
	cert, err := pki.ParseCertPEM(cfg.CertData)
	return err != nil || pki.Due(cert)
}
