package agent

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
	"k8s.io/utils/ptr"
)

func readString(t *testing.T, path string) string {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(data)
}

func TestWriteProjectedUpdatesInPlace(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "config")
	if err := writeProjected(dir, map[string][]byte{"a": []byte("one"), "b": []byte("two")}, nil); err != nil {
		t.Fatal(err)
	}
	if got := readString(t, filepath.Join(dir, "a")); got != "one" {
		t.Fatalf("a = %q", got)
	}
	// A reader holding the directory (a container's bind mount) sees the
	// new content at the same paths, and a key gone is gone.
	if err := writeProjected(dir, map[string][]byte{"a": []byte("uno")}, nil); err != nil {
		t.Fatal(err)
	}
	if got := readString(t, filepath.Join(dir, "a")); got != "uno" {
		t.Errorf("a after the update = %q, want uno", got)
	}
	if _, err := os.Stat(filepath.Join(dir, "b")); !os.IsNotExist(err) {
		t.Errorf("b after it left the ConfigMap: %v", err)
	}

	items := filepath.Join(t.TempDir(), "items")
	err := writeProjected(items, map[string][]byte{"key": []byte("v"), "other": []byte("x")},
		[]corev1.KeyToPath{{Key: "key", Path: "conf/app.conf", Mode: ptr.To[int32](0o600)}})
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(filepath.Join(items, "conf", "app.conf"))
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("item conf/app.conf: %v %v, want mode 0600", fi, err)
	}
	if _, err := os.Stat(filepath.Join(items, "other")); !os.IsNotExist(err) {
		t.Errorf("a key not in items was written: %v", err)
	}
}

func TestSubPathSource(t *testing.T) {
	vol := filepath.Join(t.TempDir(), "vol")
	if err := writeProjected(vol, map[string][]byte{"nginx.conf": []byte("conf")}, nil); err != nil {
		t.Fatal(err)
	}
	// A configMap key: a link into the current version, bound as the file.
	src, err := subPathSource(vol, "nginx.conf")
	if err != nil {
		t.Fatal(err)
	}
	if readString(t, src) != "conf" || src == filepath.Join(vol, "nginx.conf") || !strings.HasPrefix(src, vol+"/..") {
		t.Errorf("subPath nginx.conf binds %s, want the file in the current version's directory", src)
	}
	// A directory not there yet is made, as the kubelet makes it.
	if src, err := subPathSource(vol, "data/new"); err != nil {
		t.Fatal(err)
	} else if fi, err := os.Stat(src); err != nil || !fi.IsDir() {
		t.Errorf("subPath data/new: %v %v", fi, err)
	}
	// A link the pod made to somewhere outside is refused.
	if err := os.Symlink("/etc", filepath.Join(vol, "escape")); err != nil {
		t.Fatal(err)
	}
	if _, err := subPathSource(vol, "escape"); err == nil || !strings.Contains(err.Error(), "outside the volume") {
		t.Errorf("subPath through a link to /etc: %v, want refused", err)
	}
	if src, err := subPathSource(vol, "../../etc"); err != nil || !strings.HasPrefix(src, vol) {
		t.Errorf("subPath ../../etc: %s %v, want kept inside the volume", src, err)
	}
}

func TestTokenRenewal(t *testing.T) {
	issued := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	for _, tt := range []struct {
		lifetime, renewAfter time.Duration
	}{
		{time.Hour, 48 * time.Minute},
		{10 * time.Minute, 8 * time.Minute},
		{365 * 24 * time.Hour, 24 * time.Hour}, // the API server's extended tokens
	} {
		if got := tokenRenewal(issued, issued.Add(tt.lifetime)).Sub(issued); got != tt.renewAfter {
			t.Errorf("a token for %v renewed after %v, want %v", tt.lifetime, got, tt.renewAfter)
		}
	}
}

// TestServiceAccountTokenReusedUntilDue: refreshing a projected volume
// every few seconds keeps its token until it is due, then asks for a new one.
func TestServiceAccountTokenReusedUntilDue(t *testing.T) {
	client := fake.NewClientset()
	var issued int
	client.PrependReactor("create", "serviceaccounts", func(action k8stesting.Action) (bool, runtime.Object, error) {
		if action.GetSubresource() != "token" {
			return false, nil, nil
		}
		issued++
		req := action.(k8stesting.CreateAction).GetObject().(*authenticationv1.TokenRequest).DeepCopy()
		req.Status.Token = fmt.Sprintf("token-%d", issued)
		req.Status.ExpirationTimestamp = metav1.NewTime(time.Now().Add(time.Duration(*req.Spec.ExpirationSeconds) * time.Second))
		return true, req, nil
	})
	n := &NodeRuntime{Client: client}
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "web-0", UID: "uid-0"}}
	src := &corev1.ServiceAccountTokenProjection{Path: "token", ExpirationSeconds: ptr.To[int64](3607)}

	for range 3 {
		token, err := n.serviceAccountToken(t.Context(), pod, src)
		if err != nil || token != "token-1" {
			t.Fatalf("token %q, %v; want token-1 reused", token, err)
		}
	}
	volume := &corev1.ProjectedVolumeSource{Sources: []corev1.VolumeProjection{{ServiceAccountToken: src}}}
	if n.tokenDue(pod, volume) {
		t.Error("a fresh token is due: its volume would be rewritten every refresh")
	}
	key := tokenKey{pod: pod.UID, path: "token"}
	due := n.tokens[key]
	if left := time.Until(due.renewAt); left < 47*time.Minute || left > 49*time.Minute {
		t.Errorf("renewal in %v, want about 48 min (80%% of an hour)", left)
	}
	due.renewAt = time.Now().Add(-time.Second)
	n.tokens[key] = due
	if !n.tokenDue(pod, volume) {
		t.Error("a token past its renewal time is not due")
	}
	if token, err := n.serviceAccountToken(t.Context(), pod, src); err != nil || token != "token-2" {
		t.Errorf("once due: token %q, %v; want a new one", token, err)
	}
}
