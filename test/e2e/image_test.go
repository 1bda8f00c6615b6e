package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// testImages is where `make testimages` wrote the images built from
// Debian's packages (busybox.tar, nginx.tar).
func testImages(t *testing.T) string {
	dir := os.Getenv("STEAD_TESTIMAGES")
	if dir == "" {
		t.Fatal("set STEAD_TESTIMAGES to the directory `make testimages` fills (make e2e does)")
	}
	return dir
}

func TestImageImportWhileUp(t *testing.T) {
	c := sharedCluster(t)
	images := testImages(t)
	stead := func(args ...string) (string, error) {
		out, err := exec.Command(steadBin, args...).CombinedOutput()
		return string(out), err
	}
	// The form scripts rely on: stead image import [--data-dir D] FILE.
	out, err := stead("image", "import", "--data-dir", c.dataDir, filepath.Join(images, "busybox.tar"), filepath.Join(images, "nginx.tar"))
	if err != nil {
		t.Fatalf("import while stead up runs: %v\n%s", err, out)
	}
	for _, ref := range []string{"docker.io/library/busybox:1.28.4", "docker.io/library/nginx:1.9.1"} {
		if !strings.Contains(out, "Imported "+ref) {
			t.Errorf("import output %q does not name %s", out, ref)
		}
	}
	out, err = stead("--data-dir", c.dataDir, "image", "ls")
	if err != nil {
		t.Fatalf("image ls: %v\n%s", err, out)
	}
	for _, row := range []string{"docker.io/library/busybox", "1.28.4", "docker.io/library/nginx", "1.9.1"} {
		if !strings.Contains(out, row) {
			t.Errorf("image ls %q lacks %s", out, row)
		}
	}
	if out, err := stead("image", "import", "--data-dir", c.dataDir, "/nonexistent.tar"); err == nil || !strings.Contains(out, "/nonexistent.tar") {
		t.Errorf("import of a missing file: err=%v out=%q, want an error naming it", err, out)
	}
	// The cluster is unharmed by a second process on its data dir.
	c.mustKubectl("", "get", "namespaces")
}
