package agent

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
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
