package server

import (
	"time"

	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"

	"github.com/steadhq/stead/pkg/fsutil"
	"github.com/steadhq/stead/pkg/pki"
)

// clientValidity is long because a kubeconfig handed to a user is expected
// to keep working; it is reissued at every start anyway.
const clientValidity = 365 * 24 * time.Hour

// writeKubeconfig issues a client certificate for user (in the groups given)
// and writes a kubeconfig for it, readable only by its owner because it
// carries the private key.
func writeKubeconfig(path, serverURL string, ca *pki.CA, user string, groups []string) error {
	der, key, err := ca.Issue(pki.Spec{CommonName: user, Organization: groups, Client: true}, clientValidity)
	if err != nil {
		return err
	}
	certPEM, keyPEM, err := pki.EncodeCertKey(der, key)
	if err != nil {
		return err
	}
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters["stead"] = &clientcmdapi.Cluster{Server: serverURL, CertificateAuthorityData: ca.CertPEM()}
	cfg.AuthInfos[user] = &clientcmdapi.AuthInfo{ClientCertificateData: certPEM, ClientKeyData: keyPEM}
	cfg.Contexts["stead"] = &clientcmdapi.Context{Cluster: "stead", AuthInfo: user}
	cfg.CurrentContext = "stead"
	data, err := clientcmd.Write(*cfg)
	if err != nil {
		return err
	}
	return fsutil.WriteFile(path, data, 0o600)
}
