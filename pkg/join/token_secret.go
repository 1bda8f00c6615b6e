package join

import (
	"context"
	"fmt"
	"os"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	bootstrapapi "k8s.io/cluster-bootstrap/token/api"
	bootstraputil "k8s.io/cluster-bootstrap/token/util"

	"github.com/steadhq/stead/pkg/fsutil"
)

// AgentGroup is the group the API server gives a request authenticated by
// an agent's join token, beside system:bootstrappers; RBAC lets it ask for
// node client certificates and nothing else.
const AgentGroup = "system:bootstrappers:stead:agents"

// EnsureToken returns the cluster's join token, stored in path (mode
// 0600), making it on first start, and makes sure the API server knows it:
// the bootstrap token Secret in kube-system. A token file that pins
// another CA (the PKI was made anew) is replaced.
func EnsureToken(ctx context.Context, client kubernetes.Interface, path string, caDER []byte) (Token, error) {
	var token Token
	data, err := os.ReadFile(path)
	if err == nil {
		token, err = ParseToken(string(data))
	}
	if err != nil || !token.Pins(caDER) {
		if token, err = NewToken(caDER); err != nil {
			return Token{}, err
		}
	}
	secret := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: bootstraputil.BootstrapTokenSecretName(token.ID), Namespace: metav1.NamespaceSystem},
		Type:       bootstrapapi.SecretTypeBootstrapToken,
		StringData: map[string]string{
			bootstrapapi.BootstrapTokenIDKey:               token.ID,
			bootstrapapi.BootstrapTokenSecretKey:           token.Secret,
			bootstrapapi.BootstrapTokenDescriptionKey:      "stead agents join with this token (stead agent --token)",
			bootstrapapi.BootstrapTokenUsageAuthentication: "true",
			bootstrapapi.BootstrapTokenExtraGroupsKey:      AgentGroup,
		},
	}
	secrets := client.CoreV1().Secrets(metav1.NamespaceSystem)
	if _, err := secrets.Create(ctx, secret, metav1.CreateOptions{}); apierrors.IsAlreadyExists(err) {
		if _, err := secrets.Update(ctx, secret, metav1.UpdateOptions{}); err != nil {
			return Token{}, fmt.Errorf("join token secret: %w", err)
		}
	} else if err != nil {
		return Token{}, fmt.Errorf("join token secret: %w", err)
	}
	if err := fsutil.WriteFile(path, []byte(token.String()+"\n"), 0o600); err != nil {
		return Token{}, err
	}
	return token, nil
}
