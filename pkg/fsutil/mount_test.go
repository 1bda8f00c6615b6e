package fsutil

import (
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// As in stead's main package: the main thread is the main goroutine's, so
// the test's threads are never the one /proc/self describes.
func init() { runtime.LockOSThread() }

// The thread that unmounts may be in another mount namespace than the
// process's main thread, whose table /proc/self shows: UnmountBelow must
// find the mounts where it acts. The test's thread gets a namespace of its
// own, with a tmpfs that the main thread's namespace does not have.
func TestUnmountBelowFindsTheThreadsOwnMounts(t *testing.T) {
	dir := t.TempDir()
	mem := filepath.Join(dir, "volumes", "mem")
	if err := os.MkdirAll(mem, 0o755); err != nil {
		t.Fatal(err)
	}
	errc := make(chan error, 1)
	var before, after string
	go func() {
		// Never unlocked: the thread ends with the goroutine, taking its
		// namespace with it.
		runtime.LockOSThread()
		if err := unix.Unshare(unix.CLONE_FS | unix.CLONE_NEWNS); err != nil {
			errc <- err
			return
		}
		if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
			errc <- err
			return
		}
		if err := unix.Mount("tmpfs", mem, "tmpfs", 0, "size=1m"); err != nil {
			errc <- err
			return
		}
		before = mountedAt(mem)
		err := UnmountBelow(dir)
		after = mountedAt(mem)
		errc <- err
	}()
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	if before == "" {
		t.Fatal("the tmpfs was not mounted in the thread's namespace")
	}
	if after != "" {
		t.Errorf("still mounted after UnmountBelow: %s", after)
	}
}

// mountedAt is the calling thread's mountinfo line for path, if any.
func mountedAt(path string) string {
	data, _ := MountInfo()
	for _, line := range strings.Split(string(data), "\n") {
		if f := strings.Fields(line); len(f) > 4 && f[4] == path {
			return line
		}
	}
	return ""
}
