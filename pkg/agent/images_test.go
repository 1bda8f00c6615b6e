package agent

import (
	"context"
	"encoding/base64"
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/steadhq/stead/pkg/image"
)

func TestSecretCredentials(t *testing.T) {
	auth := base64.StdEncoding.EncodeToString([]byte("alice:s3cret"))
	for _, tc := range []struct {
		name    string
		secret  corev1.Secret
		want    []image.Credentials
		wantErr string
	}{{
		name: "dockerconfigjson, auth and explicit fields",
		secret: corev1.Secret{Type: corev1.SecretTypeDockerConfigJson, Data: map[string][]byte{
			corev1.DockerConfigJsonKey: []byte(`{"auths":{"registry.example:5000":{"auth":"` + auth + `"},"https://index.docker.io/v1/":{"username":"bob","password":"pw"}}}`),
		}},
		want: []image.Credentials{
			{Registry: "https://index.docker.io/v1/", Username: "bob", Password: "pw"},
			{Registry: "registry.example:5000", Username: "alice", Password: "s3cret"},
		},
	}, {
		name: "dockercfg",
		secret: corev1.Secret{Type: corev1.SecretTypeDockercfg, Data: map[string][]byte{
			corev1.DockerConfigKey: []byte(`{"127.0.0.1:5000":{"auth":"` + auth + `"}}`),
		}},
		want: []image.Credentials{{Registry: "127.0.0.1:5000", Username: "alice", Password: "s3cret"}},
	}, {
		name:    "not a docker config",
		secret:  corev1.Secret{Type: corev1.SecretTypeOpaque},
		wantErr: `type "Opaque" is not`,
	}, {
		name: "malformed",
		secret: corev1.Secret{Type: corev1.SecretTypeDockerConfigJson, Data: map[string][]byte{
			corev1.DockerConfigJsonKey: []byte(`{"auths":`),
		}},
		wantErr: "data[.dockerconfigjson]",
	}} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := secretCredentials(&tc.secret)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want one containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(got, tc.want) {
				t.Errorf("credentials %+v, want %+v", got, tc.want)
			}
		})
	}
}

// A pod's imagePullSecrets are read from its namespace; one that does not
// exist is skipped, as the kubelet pulls without it.
func TestPullCredentialsFromThePodsSecrets(t *testing.T) {
	auth := base64.StdEncoding.EncodeToString([]byte("alice:s3cret"))
	client := fake.NewClientset(&corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "regcred"},
		Type:       corev1.SecretTypeDockerConfigJson,
		Data:       map[string][]byte{corev1.DockerConfigJsonKey: []byte(`{"auths":{"127.0.0.1:5000":{"auth":"` + auth + `"}}}`)},
	}, &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "regcred"},
		Type:       corev1.SecretTypeDockerConfigJson,
		Data:       map[string][]byte{corev1.DockerConfigJsonKey: []byte(`{"auths":{"127.0.0.1:5000":{"username":"mallory","password":"x"}}}`)},
	})
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "p"},
		Spec: corev1.PodSpec{ImagePullSecrets: []corev1.LocalObjectReference{{Name: "missing"}, {Name: "regcred"}}}}
	got, err := pullCredentials(context.Background(), client, pod)
	if err != nil {
		t.Fatal(err)
	}
	want := []image.Credentials{{Registry: "127.0.0.1:5000", Username: "alice", Password: "s3cret"}}
	if !slices.Equal(got, want) {
		t.Errorf("credentials %+v, want %+v (the pod's namespace's secret only)", got, want)
	}
}
