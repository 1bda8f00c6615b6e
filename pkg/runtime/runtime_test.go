package runtime

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/steadhq/stead/pkg/image"
	"github.com/steadhq/stead/pkg/internal/netnstest"
)

// The test binary is its containers' init, as stead is.
func init() { Init() }

// busybox unpacks the busybox:1.28.4 test image that `make testimages`
// built from Debian's packages.
func busybox(t *testing.T) []string {
	t.Helper()
	dir := os.Getenv("STEAD_TESTIMAGES")
	if dir == "" {
		t.Fatal("set STEAD_TESTIMAGES to the directory `make testimages` fills (make unit does)")
	}
	store, err := image.Open(filepath.Join(t.TempDir(), "images"))
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if _, err := store.Import(ctx, filepath.Join(dir, "busybox.tar")); err != nil {
		t.Fatal(err)
	}
	rootfs, err := store.Unpack(ctx, "busybox:1.28.4")
	if err != nil {
		t.Fatal(err)
	}
	return rootfs.LowerDirs
}

func newRuntime(t *testing.T) *Runtime {
	parent := fmt.Sprintf("stead-test-%d", os.Getpid())
	r, err := New(t.TempDir(), parent)
	if err != nil {
		t.Fatal(err)
	}
	// Containers' own cgroups go with them; the parent is the test's.
	t.Cleanup(func() {
		dirs, _ := filepath.Glob("/sys/fs/cgroup/*/" + parent)
		if d := "/sys/fs/cgroup/" + parent; fileExists(d) {
			dirs = append(dirs, d)
		}
		for _, d := range dirs {
			if err := os.Remove(d); err != nil {
				t.Errorf("cgroup %s: %v", d, err)
			}
		}
	})
	return r
}

func fileExists(p string) bool { _, err := os.Stat(p); return err == nil }

func waitExit(t *testing.T, c *Container) int {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		if running, code, _, _ := c.State(); !running {
			return code
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatal("container did not exit")
	return 0
}

func TestContainerRunsIsolatedAndLogs(t *testing.T) {
	layers := busybox(t)
	r := newRuntime(t)
	netns := netnstest.New(t, fmt.Sprintf("stead-rt-%d", os.Getpid()))
	logPath := filepath.Join(t.TempDir(), "main.log")
	c, err := r.Start(ContainerSpec{
		ID: "web-0-main", NetNSPath: netns, LowerDirs: layers, Hostname: "web-0",
		Args:    []string{"sh", "-c", `echo hello; hostname; echo $GREETING; echo $$; echo oops >&2; exit 3`},
		Env:     []string{"PATH=/bin", "GREETING=hi"},
		LogPath: logPath, MemoryLimit: 64 << 20,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = r.Remove(c) })
	if code := waitExit(t, c); code != 3 {
		t.Fatalf("exit code %d, want 3", code)
	}
	if err := r.Remove(c); err != nil {
		t.Fatal(err)
	}
	log, err := os.ReadFile(logPath)
	if err != nil {
		t.Fatal(err)
	}
	// Each stream keeps its order; the two interleave as they were read.
	lines := map[string][]string{}
	for _, line := range strings.Split(strings.TrimSpace(string(log)), "\n") {
		f := strings.SplitN(line, " ", 4)
		if len(f) != 4 {
			t.Fatalf("log line %q is not a CRI record", line)
		}
		if _, err := time.Parse(time.RFC3339Nano, f[0]); err != nil {
			t.Fatalf("log line %q: %v", line, err)
		}
		lines[f[1]] = append(lines[f[1]], f[2]+" "+f[3])
	}
	// The hostname is the pod's; the process is pid 1 of its namespace.
	want := map[string][]string{"stdout": {"F hello", "F web-0", "F hi", "F 1"}, "stderr": {"F oops"}}
	for stream, w := range want {
		if strings.Join(lines[stream], "|") != strings.Join(w, "|") {
			t.Errorf("%s records %q, want %q", stream, lines[stream], w)
		}
	}
	// Nothing of the container is left mounted.
	mounts, _ := os.ReadFile("/proc/self/mountinfo")
	if strings.Contains(string(mounts), "web-0-main") {
		t.Fatal("container's root filesystem still mounted after Remove")
	}
}

func TestExecAndSignal(t *testing.T) {
	layers := busybox(t)
	r := newRuntime(t)
	netns := netnstest.New(t, fmt.Sprintf("stead-rt-exec-%d", os.Getpid()))
	c, err := r.Start(ContainerSpec{
		ID: "db-0-main", NetNSPath: netns, LowerDirs: layers, Hostname: "db-0",
		Args: []string{"sleep", "600"}, Env: []string{"PATH=/bin"},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Signal(syscall.SIGKILL); waitExit(t, c); _ = r.Remove(c) })
	if running, _, _, _ := c.State(); !running {
		t.Fatal("container not running")
	}
	var out bytes.Buffer
	code, err := c.Exec(context.Background(), []string{"sh", "-c", "hostname; exit 7"}, []string{"PATH=/bin"}, nil, &out, &out)
	if err != nil || code != 7 || strings.TrimSpace(out.String()) != "db-0" {
		t.Fatalf("exec: code %d err %v output %q", code, err, out.String())
	}
	if err := c.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	if code := waitExit(t, c); code != 137 {
		t.Fatalf("exit code after SIGKILL %d, want 137", code)
	}
}
