package fsutil

import (
	"errors"
	"fmt"
	"os"
	"runtime"
	"strings"

	"golang.org/x/sys/unix"
)

// MountInfo is the mount table of the calling thread's mount namespace,
// where mount and unmount act. /proc/self/mountinfo is the main thread's,
// which is another if a goroutine moved that thread into a container's.
// Callers that act on the table lock their goroutine to its thread.
func MountInfo() ([]byte, error) {
	return os.ReadFile("/proc/thread-self/mountinfo")
}

// UnmountBelow unmounts every mount under dir, deepest first.
func UnmountBelow(dir string) error {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	data, err := MountInfo()
	if err != nil {
		return err
	}
	var points []string
	for _, line := range strings.Split(string(data), "\n") {
		if f := strings.Fields(line); len(f) > 4 && strings.HasPrefix(f[4], dir+"/") {
			points = append(points, f[4])
		}
	}
	for i := len(points) - 1; i >= 0; i-- {
		if err := unix.Unmount(points[i], unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOENT) {
			return fmt.Errorf("unmount %s: %w", points[i], err)
		}
	}
	return nil
}
