package runtime

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	goruntime "runtime"

	"github.com/opencontainers/cgroups"
	cgroupmanager "github.com/opencontainers/cgroups/manager"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// Sandbox is a pod's share of the node: the namespaces its containers
// join, its /dev/shm and its cgroup.
type Sandbox struct {
	podUID string
	dir    string
}

// NetNSPath is the pod's network namespace, for the network to put the
// pod's interface in.
func (s *Sandbox) NetNSPath() string { return filepath.Join(s.dir, "net") }

func (s *Sandbox) ipcPath() string { return filepath.Join(s.dir, "ipc") }
func (s *Sandbox) utsPath() string { return filepath.Join(s.dir, "uts") }
func (s *Sandbox) shmPath() string { return filepath.Join(s.dir, "shm") }

// namespaceFiles pairs each namespace the pod's containers share with the
// file it is bind-mounted on.
func (s *Sandbox) namespaceFiles() map[string]string {
	return map[string]string{"net": s.NetNSPath(), "ipc": s.ipcPath(), "uts": s.utsPath()}
}

// complete tells whether everything of the sandbox is in place, as it is
// after EnsureSandbox and until RemoveSandbox or a reboot.
func (s *Sandbox) complete() bool {
	for _, path := range s.namespaceFiles() {
		if !isFilesystem(path, unix.NSFS_MAGIC) {
			return false
		}
	}
	return isFilesystem(s.shmPath(), unix.TMPFS_MAGIC)
}

// DialInSandbox connects to address from inside the pod's network
// namespace, as the kubelet's runtime forwards a port: 127.0.0.1 there is
// the pod's own loopback (the node's, for a pod on the node's network).
func (r *Runtime) DialInSandbox(ctx context.Context, podUID, network, address string) (net.Conn, error) {
	s, err := r.sandbox(podUID)
	if err != nil {
		return nil, err
	}
	target, err := netns.GetFromPath(s.NetNSPath())
	if err != nil {
		return nil, fmt.Errorf("pod %s network namespace: %w", podUID, err)
	}
	defer target.Close()
	type dialed struct {
		conn net.Conn
		err  error
	}
	result := make(chan dialed, 1)
	// A goroutine of its own: if its thread cannot be brought back to
	// stead's namespace, it stays locked and ends with the goroutine.
	go func() {
		goruntime.LockOSThread()
		own, err := netns.Get()
		if err != nil {
			goruntime.UnlockOSThread()
			result <- dialed{err: err}
			return
		}
		defer own.Close()
		if err := netns.Set(target); err != nil {
			goruntime.UnlockOSThread()
			result <- dialed{err: fmt.Errorf("enter pod %s network namespace: %w", podUID, err)}
			return
		}
		// The socket belongs to the namespace it was made in, here the
		// pod's, whatever thread uses it later.
		var d net.Dialer
		conn, err := d.DialContext(ctx, network, address)
		if netns.Set(own) == nil {
			goruntime.UnlockOSThread()
		}
		result <- dialed{conn, err}
	}()
	res := <-result
	return res.conn, res.err
}

func isFilesystem(path string, magic int64) bool {
	var fs unix.Statfs_t
	return unix.Statfs(path, &fs) == nil && int64(fs.Type) == magic
}

func (r *Runtime) sandboxFor(podUID string) (*Sandbox, error) {
	if err := validateID(podUID); err != nil {
		return nil, fmt.Errorf("pod uid: %w", err)
	}
	return &Sandbox{podUID: podUID, dir: filepath.Join(r.root, "sandboxes", podUID)}, nil
}

// sandbox is the pod's sandbox, which must exist.
func (r *Runtime) sandbox(podUID string) (*Sandbox, error) {
	s, err := r.sandboxFor(podUID)
	if err != nil {
		return nil, err
	}
	if !s.complete() {
		return nil, fmt.Errorf("pod %s has no sandbox", podUID)
	}
	return s, nil
}

func (r *Runtime) podCgroup(podUID string) string { return r.cgroupParent + "/pod" + podUID }

func (r *Runtime) podCgroupManager(podUID string) (cgroups.Manager, error) {
	return cgroupmanager.New(&cgroups.Cgroup{Path: "/" + r.podCgroup(podUID), Resources: &cgroups.Resources{}})
}

// SandboxOptions say what a pod's sandbox is made of.
type SandboxOptions struct {
	// Hostname is the pod's, in a UTS namespace of its own; a pod on the
	// node's network has the node's.
	Hostname string
	// HostNetwork shares the node's network and UTS namespaces (a pod's
	// hostNetwork), HostIPC its IPC namespace and /dev/shm (hostIPC):
	// what stead's process has, on the machine or in an agent's own
	// namespaces.
	HostNetwork, HostIPC bool
}

// EnsureSandbox makes the pod's sandbox if it is not there yet and returns
// it. The namespaces are bind mounts under the runtime's root, so they
// outlive every process in them and stead too. A sandbox that exists is
// returned as it is.
func (r *Runtime) EnsureSandbox(podUID string, opts SandboxOptions) (*Sandbox, error) {
	s, err := r.sandboxFor(podUID)
	if err != nil {
		return nil, err
	}
	if len(opts.Hostname) > 64 {
		return nil, fmt.Errorf("hostname %q is longer than 64 bytes", opts.Hostname)
	}
	r.sandboxMu.Lock()
	defer r.sandboxMu.Unlock()
	cgroup, err := r.podCgroupManager(podUID)
	if err != nil {
		return nil, err
	}
	// Creating the cgroup is cheap and idempotent; -1 adds no process.
	if err := cgroup.Apply(-1); err != nil {
		return nil, fmt.Errorf("pod %s cgroup: %w", podUID, err)
	}
	if s.complete() {
		return s, nil
	}
	// What a crash or a reboot left is of no use: start again.
	if err := s.unmount(); err != nil {
		return nil, err
	}
	if err := s.create(opts); err != nil {
		_ = s.unmount()
		return nil, fmt.Errorf("pod %s sandbox: %w", podUID, err)
	}
	return s, nil
}

func (s *Sandbox) create(opts SandboxOptions) error {
	if err := os.MkdirAll(s.shmPath(), 0o700); err != nil {
		return err
	}
	if opts.HostIPC {
		if err := unix.Mount("/dev/shm", s.shmPath(), "", unix.MS_BIND, ""); err != nil {
			return fmt.Errorf("bind the node's /dev/shm: %w", err)
		}
	} else if err := unix.Mount("shm", s.shmPath(), "tmpfs", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, "mode=1777,size=65536k"); err != nil {
		return fmt.Errorf("mount /dev/shm: %w", err)
	}
	for _, path := range s.namespaceFiles() {
		f, err := os.OpenFile(path, os.O_CREATE|os.O_RDONLY, 0o600)
		if err != nil {
			return err
		}
		f.Close()
	}
	// unshare moves only the calling thread. The thread stays locked and
	// ends with this goroutine, so nothing else ever runs in the pod's
	// namespaces by accident.
	errc := make(chan error, 1)
	go func() {
		goruntime.LockOSThread()
		errc <- s.createNamespaces(opts)
	}()
	return <-errc
}

// createNamespaces unshares the pod's own namespaces and bind-mounts the
// thread's, own or the node's, on the sandbox's files.
func (s *Sandbox) createNamespaces(opts SandboxOptions) error {
	var flags int
	if !opts.HostNetwork {
		flags |= unix.CLONE_NEWNET | unix.CLONE_NEWUTS
	}
	if !opts.HostIPC {
		flags |= unix.CLONE_NEWIPC
	}
	if flags != 0 {
		if err := unix.Unshare(flags); err != nil {
			return fmt.Errorf("unshare: %w", err)
		}
	}
	if !opts.HostNetwork {
		if opts.Hostname != "" {
			if err := unix.Sethostname([]byte(opts.Hostname)); err != nil {
				return fmt.Errorf("hostname: %w", err)
			}
		}
		lo, err := netlink.LinkByName("lo")
		if err != nil {
			return fmt.Errorf("loopback: %w", err)
		}
		if err := netlink.LinkSetUp(lo); err != nil {
			return fmt.Errorf("loopback up: %w", err)
		}
	}
	for ns, path := range s.namespaceFiles() {
		if err := unix.Mount("/proc/thread-self/ns/"+ns, path, "", unix.MS_BIND, ""); err != nil {
			return fmt.Errorf("bind-mount %s namespace: %w", ns, err)
		}
	}
	return nil
}

// unmount undoes whatever part of the sandbox exists, and its directory.
func (s *Sandbox) unmount() error {
	var errs []error
	for _, path := range s.namespaceFiles() {
		errs = append(errs, unmountAll(path))
	}
	errs = append(errs, unmountAll(s.shmPath()))
	if err := errors.Join(errs...); err != nil {
		return err
	}
	return os.RemoveAll(s.dir)
}

// RemoveSandbox removes the pod's namespaces, /dev/shm and cgroup. The
// pod's containers must have been removed first; the network's interface
// in the namespace goes with it. Removing a sandbox that is not there is
// not an error.
func (r *Runtime) RemoveSandbox(podUID string) error {
	s, err := r.sandboxFor(podUID)
	if err != nil {
		return err
	}
	r.sandboxMu.Lock()
	defer r.sandboxMu.Unlock()
	cgroup, err := r.podCgroupManager(podUID)
	if err != nil {
		return err
	}
	// First, so that a pod that still has processes keeps its sandbox.
	if pids, err := cgroup.GetAllPids(); err == nil && len(pids) > 0 {
		return fmt.Errorf("pod %s still has %d processes", podUID, len(pids))
	}
	if err := cgroup.Destroy(); err != nil {
		return fmt.Errorf("pod %s cgroup (are its containers removed?): %w", podUID, err)
	}
	return s.unmount()
}

// ListSandboxes names the pods that have a sandbox, for a restarted stead
// to remove those of pods that are gone.
func (r *Runtime) ListSandboxes() ([]string, error) {
	entries, err := os.ReadDir(filepath.Join(r.root, "sandboxes"))
	if err != nil {
		return nil, err
	}
	var uids []string
	for _, e := range entries {
		if e.IsDir() {
			uids = append(uids, e.Name())
		}
	}
	return uids, nil
}
