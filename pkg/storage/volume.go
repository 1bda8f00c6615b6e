package storage

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"unsafe"

	"golang.org/x/sys/unix"
	"k8s.io/apimachinery/pkg/api/resource"
)

// A volume is an ext4 filesystem in a sparse image file, <root>/images/<name>.img,
// attached to a loop device and mounted at <root>/<name>, the directory the
// PV's local.path names. The filesystem's size is the claim's request, so a
// write past it fails with ENOSPC, whatever filesystem the data dir is on;
// project quotas would be cheaper but need the data dir's filesystem mounted
// with prjquota, which stead cannot assume (docs/storage.md).

const (
	mib = 1 << 20
	// Below this ext4's journal and metadata leave next to no room for data.
	minImageSize = 16 * mib
)

// imageSize is the size of the image for a request: whole MiB, at least
// minImageSize.
func imageSize(request resource.Quantity) int64 {
	size := (request.Value() + mib - 1) / mib * mib
	return max(size, minImageSize)
}

func (l *LocalPath) imagePath(name string) string {
	return filepath.Join(l.root, "images", name+".img")
}

func (l *LocalPath) volumeDir(name string) string { return filepath.Join(l.root, name) }

// createImage makes a formatted image of size bytes at path unless a file
// is there already: an image that exists may hold data and is never formatted
// again. It is formatted under a temporary name and renamed into place, so
// that a crash leaves either no image or a whole one.
func createImage(path string, size int64) error {
	if _, err := os.Stat(path); err == nil || !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	err = f.Truncate(size)
	if closeErr := f.Close(); err == nil {
		err = closeErr
	}
	if err != nil {
		return err
	}
	// The new file reads as zeros, so the journal need not be written out
	// (lazy_journal_init), which keeps an empty volume from taking 32MiB of
	// disk per GiB; inode tables are zeroed by mkfs (holes punched in the
	// file, nothing written) rather than later by the kernel's lazyinit thread
	// writing to the disk behind the pods' backs. No reserved blocks: the
	// whole volume is the claim's.
	mkfs, err := command("mkfs.ext4")
	if err != nil {
		return err
	}
	out, err := exec.Command(mkfs, "-q", "-F", "-b", "4096", "-m", "0",
		"-E", "lazy_itable_init=0,lazy_journal_init=1", tmp).CombinedOutput()
	if err != nil {
		return fmt.Errorf("mkfs.ext4 %s: %w: %s", tmp, err, strings.TrimSpace(string(out)))
	}
	if err := os.Rename(tmp, path); err != nil {
		return err
	}
	return syncDir(filepath.Dir(path))
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// command finds an e2fsprogs tool also where PATH leaves out sbin, as it
// does for a non-login root shell on some systems.
func command(name string) (string, error) {
	if path, err := exec.LookPath(name); err == nil {
		return path, nil
	}
	for _, dir := range []string{"/usr/sbin", "/sbin"} {
		path := filepath.Join(dir, name)
		if _, err := os.Stat(path); err == nil {
			return path, nil
		}
	}
	return "", fmt.Errorf("%s not found: install e2fsprogs (hack/setup-debian.sh)", name)
}

// mountImage makes sure image's filesystem is mounted at dir and returns its
// loop device. A filesystem mounted there already must be image's own.
func mountImage(image, dir string) (string, error) {
	dev, err := mountedLoop(image, dir)
	if err != nil || dev != "" {
		return dev, err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", err
	}
	loop, err := attach(image)
	if err != nil {
		return "", fmt.Errorf("attach %s to a loop device: %w", image, err)
	}
	// The loop device clears itself when its last user goes (autoclear):
	// from here that is the mount, or, when mounting fails, this Close.
	defer loop.Close()
	if err := unix.Mount(loop.Name(), dir, "ext4", 0, ""); err != nil {
		return "", fmt.Errorf("mount %s (%s) at %s: %w", loop.Name(), image, dir, err)
	}
	return loop.Name(), nil
}

// attach binds image to a free loop device, which it returns open.
func attach(image string) (*os.File, error) {
	img, err := os.OpenFile(image, os.O_RDWR, 0)
	if err != nil {
		return nil, err
	}
	defer img.Close() // the loop device holds its own reference
	ctl, err := os.OpenFile("/dev/loop-control", os.O_RDWR, 0)
	if err != nil {
		return nil, err
	}
	defer ctl.Close()
	config := unix.LoopConfig{
		Fd: uint32(img.Fd()),
		// Direct I/O keeps the data in the page cache once (the volume's
		// filesystem) rather than twice (also the image's).
		Info: unix.LoopInfo64{Flags: unix.LO_FLAGS_AUTOCLEAR | unix.LO_FLAGS_DIRECT_IO},
	}
	copy(config.Info.File_name[:len(config.Info.File_name)-1], image)
	// Another process may take the free device between GET_FREE and
	// CONFIGURE; then the device is busy and the next free one is tried.
	for range 16 {
		n, err := unix.IoctlRetInt(int(ctl.Fd()), unix.LOOP_CTL_GET_FREE)
		if err != nil {
			return nil, fmt.Errorf("LOOP_CTL_GET_FREE: %w", err)
		}
		loop, err := os.OpenFile(fmt.Sprintf("/dev/loop%d", n), os.O_RDWR, 0)
		if err != nil {
			return nil, err
		}
		err = unix.IoctlLoopConfigure(int(loop.Fd()), &config)
		if err == nil {
			return loop, nil
		}
		loop.Close()
		if !errors.Is(err, unix.EBUSY) {
			return nil, fmt.Errorf("LOOP_CONFIGURE %s: %w", loop.Name(), err)
		}
	}
	return nil, errors.New("no free loop device")
}

// mountedLoop is the loop device of image when its filesystem is mounted at
// dir, and "" when nothing is mounted there.
func mountedLoop(image, dir string) (string, error) {
	dev, mounted, err := mountPoint(dir)
	if err != nil || !mounted {
		return "", err
	}
	uevent, err := os.ReadFile(fmt.Sprintf("/sys/dev/block/%d:%d/uevent", unix.Major(dev), unix.Minor(dev)))
	if err != nil {
		return "", fmt.Errorf("%s is a mount point, not of a loop device: %w", dir, err)
	}
	var name string
	for line := range strings.Lines(string(uevent)) {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "DEVNAME="); ok {
			name = v
		}
	}
	if !strings.HasPrefix(name, "loop") {
		return "", fmt.Errorf("%s is mounted from /dev/%s, not from %s", dir, name, image)
	}
	loop := "/dev/" + name
	f, err := os.Open(loop)
	if err != nil {
		return "", err
	}
	defer f.Close()
	info, err := unix.IoctlLoopGetStatus64(int(f.Fd()))
	if err != nil {
		return "", fmt.Errorf("%s: %w", loop, err)
	}
	var st unix.Stat_t
	if err := unix.Stat(image, &st); err != nil {
		return "", fmt.Errorf("%s is mounted from %s: %w", dir, loop, err)
	}
	if info.Device != st.Dev || info.Inode != st.Ino {
		return "", fmt.Errorf("%s is mounted from %s, which is not backed by %s", dir, loop, image)
	}
	return loop, nil
}

// mountPoint tells whether a filesystem is mounted at dir, and its device.
func mountPoint(dir string) (dev uint64, mounted bool, err error) {
	var st, parent unix.Stat_t
	if err := unix.Stat(dir, &st); err != nil {
		if errors.Is(err, unix.ENOENT) {
			return 0, false, nil
		}
		return 0, false, fmt.Errorf("stat %s: %w", dir, err)
	}
	if err := unix.Stat(filepath.Dir(dir), &parent); err != nil {
		return 0, false, fmt.Errorf("stat %s: %w", filepath.Dir(dir), err)
	}
	return st.Dev, st.Dev != parent.Dev, nil
}

// unmount takes every filesystem off dir; a loop device under one detaches
// itself (autoclear).
func unmount(dir string) error {
	for range 16 {
		_, mounted, err := mountPoint(dir)
		if err != nil || !mounted {
			return err
		}
		if err := unix.Unmount(dir, 0); err != nil && !errors.Is(err, unix.EINVAL) {
			return fmt.Errorf("unmount %s: %w", dir, err)
		}
	}
	return fmt.Errorf("unmount %s: still mounted", dir)
}

// growImage grows image, whose filesystem is mounted at dir from loop, to
// size bytes while it stays in use. Each step is a no-op once done, so an
// expansion cut short is finished by the next one.
func growImage(image, dir, loop string, size int64) error {
	fi, err := os.Stat(image)
	if err != nil {
		return err
	}
	if fi.Size() < size {
		if err := os.Truncate(image, size); err != nil {
			return err
		}
	}
	// Read-only: a mounted block device may refuse to open for writing.
	f, err := os.Open(loop)
	if err != nil {
		return err
	}
	err = unix.IoctlSetInt(int(f.Fd()), unix.LOOP_SET_CAPACITY, 0)
	f.Close()
	if err != nil {
		return fmt.Errorf("LOOP_SET_CAPACITY %s: %w", loop, err)
	}
	err = resizeOnline(dir, size)
	if !errors.Is(err, unix.EPERM) {
		return err
	}
	// Growing a mounted ext4 takes CAP_SYS_RESOURCE, which stead lacks in
	// some containers; there it grows the filesystem unmounted, when no pod
	// has it mounted.
	return resizeOffline(dir, loop)
}

// ext4IocResizeFS is EXT4_IOC_RESIZE_FS, _IOW('f', 16, __u64): what
// resize2fs asks of the kernel for a mounted filesystem.
const ext4IocResizeFS = 0x40086610

func resizeOnline(dir string, size int64) error {
	f, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer f.Close()
	var st unix.Statfs_t
	if err := unix.Fstatfs(int(f.Fd()), &st); err != nil {
		return err
	}
	blocks := uint64(size / st.Bsize)
	if _, _, errno := unix.Syscall(unix.SYS_IOCTL, f.Fd(), ext4IocResizeFS, uintptr(unsafe.Pointer(&blocks))); errno != 0 {
		return fmt.Errorf("grow the filesystem at %s to %d blocks: %w", dir, blocks, errno)
	}
	return nil
}

// errInUse: a volume that can only grow unmounted is mounted by a pod.
var errInUse = errors.New("in use by a pod; growing a mounted filesystem needs CAP_SYS_RESOURCE, which stead lacks here, so it grows once its pods are gone")

// resizeOffline unmounts the filesystem at dir, checks it, grows it to its
// loop device's size and mounts it again.
func resizeOffline(dir, loop string) (err error) {
	mounts, err := mountsOf(loop)
	if err != nil {
		return err
	}
	if mounts > 1 {
		return fmt.Errorf("%s (mounted %d times): %w", dir, mounts, errInUse)
	}
	// Held open, the loop device outlives its unmount (autoclear).
	hold, err := os.Open(loop)
	if err != nil {
		return err
	}
	defer hold.Close()
	if err := unmount(dir); err != nil {
		return err
	}
	defer func() {
		if mountErr := unix.Mount(loop, dir, "ext4", 0, ""); mountErr != nil {
			err = errors.Join(err, fmt.Errorf("mount %s at %s again: %w", loop, dir, mountErr))
		}
	}()
	// A mount this process cannot see (in another mount namespace) would
	// still hold the device: then it must not be touched.
	excl, err := os.OpenFile(loop, os.O_RDONLY|unix.O_EXCL, 0)
	if err != nil {
		return fmt.Errorf("%s is in use: %w", loop, err)
	}
	excl.Close()
	e2fsck, err := command("e2fsck")
	if err != nil {
		return err
	}
	// resize2fs wants a freshly checked filesystem; 1 is "errors corrected".
	out, err := exec.Command(e2fsck, "-f", "-p", loop).CombinedOutput()
	if exit := (*exec.ExitError)(nil); err != nil && !(errors.As(err, &exit) && exit.ExitCode() == 1) {
		return fmt.Errorf("e2fsck %s: %w: %s", loop, err, strings.TrimSpace(string(out)))
	}
	resize2fs, err := command("resize2fs")
	if err != nil {
		return err
	}
	if out, err := exec.Command(resize2fs, loop).CombinedOutput(); err != nil {
		return fmt.Errorf("resize2fs %s: %w: %s", loop, err, strings.TrimSpace(string(out)))
	}
	return nil
}

// mountsOf counts the mounts of the block device dev in every mount
// namespace: a pod's container sees its volume through a bind mount of its
// own.
func mountsOf(dev string) (int, error) {
	var st unix.Stat_t
	if err := unix.Stat(dev, &st); err != nil {
		return 0, err
	}
	want := fmt.Sprintf("%d:%d", unix.Major(st.Rdev), unix.Minor(st.Rdev))
	procs, err := filepath.Glob("/proc/[0-9]*")
	if err != nil {
		return 0, err
	}
	seen := map[string]bool{}
	mounts := 0
	for _, proc := range procs {
		ns, err := os.Readlink(filepath.Join(proc, "ns", "mnt"))
		if err != nil || seen[ns] {
			continue // gone, or a namespace counted already
		}
		mountinfo, err := os.ReadFile(filepath.Join(proc, "mountinfo"))
		if err != nil {
			continue
		}
		seen[ns] = true
		for line := range strings.Lines(string(mountinfo)) {
			if fields := strings.Fields(line); len(fields) > 2 && fields[2] == want {
				mounts++
			}
		}
	}
	return mounts, nil
}
