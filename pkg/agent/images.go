package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/kubernetes/pkg/credentialprovider"

	"github.com/steadhq/stead/pkg/image"
)

// PullImage is part of ContainerRuntime.
func (n *NodeRuntime) PullImage(ctx context.Context, pod *corev1.Pod, c *corev1.Container, pulling func()) (ImagePull, error) {
	if _, err := image.Resolve(c.Image); err != nil {
		return ImagePull{}, &ImageError{Reason: "InvalidImageName", Message: err.Error()}
	}
	policy := pullPolicy(c.ImagePullPolicy)
	img, err := n.Images.Get(c.Image)
	present := err == nil
	if err != nil && !errors.Is(err, image.ErrNotFound) {
		return ImagePull{}, &ImageError{Reason: "ErrImagePull", Message: err.Error()}
	}
	switch {
	case present && (policy == image.PullIfNotPresent || policy == image.PullNever):
		return ImagePull{Image: img}, nil
	case !present && policy == image.PullNever:
		return ImagePull{}, &ImageError{Reason: "ErrImageNeverPull", Message: fmt.Sprintf("%s: %v", c.Image, image.ErrNeverPull)}
	}
	creds, err := pullCredentials(ctx, n.Client, pod)
	if err != nil {
		return ImagePull{}, &ImageError{Reason: "ErrImagePull", Message: err.Error()}
	}
	pulling()
	began := time.Now()
	img, err = n.Images.Pull(ctx, c.Image, creds, policy)
	if err != nil {
		return ImagePull{}, &ImageError{Reason: "ErrImagePull", Message: err.Error()}
	}
	return ImagePull{Image: img, Fetched: true, Duration: time.Since(began)}, nil
}

// pullCredentials reads the pod's imagePullSecrets as the kubelet does: a
// secret of type kubernetes.io/dockerconfigjson or kubernetes.io/dockercfg
// gives one set of credentials per registry it names. A secret that is
// missing is skipped (the kubelet pulls without it and says so in its log);
// one that cannot be read otherwise fails the pull.
func pullCredentials(ctx context.Context, client kubernetes.Interface, pod *corev1.Pod) ([]image.Credentials, error) {
	var creds []image.Credentials
	for _, ref := range pod.Spec.ImagePullSecrets {
		if ref.Name == "" {
			continue
		}
		secret, err := client.CoreV1().Secrets(pod.Namespace).Get(ctx, ref.Name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("imagePullSecrets %s: %w", ref.Name, err)
		}
		found, err := secretCredentials(secret)
		if err != nil {
			return nil, fmt.Errorf("imagePullSecrets %s: %w", ref.Name, err)
		}
		creds = append(creds, found...)
	}
	return creds, nil
}

// secretCredentials returns the credentials of one docker config secret,
// sorted by registry so that pulls try them in a stable order.
func secretCredentials(secret *corev1.Secret) ([]image.Credentials, error) {
	var config credentialprovider.DockerConfig
	switch secret.Type {
	case corev1.SecretTypeDockerConfigJson:
		var file credentialprovider.DockerConfigJSON
		if err := json.Unmarshal(secret.Data[corev1.DockerConfigJsonKey], &file); err != nil {
			return nil, fmt.Errorf("data[%s]: %w", corev1.DockerConfigJsonKey, err)
		}
		config = file.Auths
	case corev1.SecretTypeDockercfg:
		if err := json.Unmarshal(secret.Data[corev1.DockerConfigKey], &config); err != nil {
			return nil, fmt.Errorf("data[%s]: %w", corev1.DockerConfigKey, err)
		}
	default:
		return nil, fmt.Errorf("type %q is not %s or %s", secret.Type, corev1.SecretTypeDockerConfigJson, corev1.SecretTypeDockercfg)
	}
	creds := make([]image.Credentials, 0, len(config))
	for registry, entry := range config {
		creds = append(creds, image.Credentials{Registry: registry, Username: entry.Username, Password: entry.Password})
	}
	sort.Slice(creds, func(i, j int) bool { return creds[i].Registry < creds[j].Registry })
	return creds, nil
}
