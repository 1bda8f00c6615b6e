// Package runtime runs containers in-process with libcontainer, the library
// inside runc: no runtime daemon and no shim. The stead binary re-executes
// itself as each container's init (see Init).
//
// A container's stdout and stderr are FIFOs under its directory. The
// container holds each open for reading and writing, so that it never gets
// SIGPIPE when stead is away (it blocks once the pipe's buffer is full
// instead); stead reads them and writes the CRI log format, one timestamped
// record per line, which `kubectl logs --timestamps` reads back. Containers
// keep running when stead stops; a new stead adopts them (Load). The exit
// code of a container that exits while no stead runs is not known.
package runtime

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/moby/sys/capability"
	"github.com/opencontainers/runc/libcontainer"
	"github.com/opencontainers/runc/libcontainer/configs"
	"github.com/opencontainers/runc/libcontainer/specconv"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	// cgroup device rules need the devices package registered.
	_ "github.com/opencontainers/cgroups/devices"
	// nsenter joins namespaces before the Go runtime starts, in init.
	_ "github.com/opencontainers/runc/libcontainer/nsenter"
)

// Init must run in the main package's init: in a container's init process
// (stead re-executed as "stead init") it becomes the container and never
// returns; otherwise it returns at once.
func Init() {
	if len(os.Args) > 1 && os.Args[1] == "init" {
		libcontainer.Init()
	}
}

// Runtime runs the containers of one node.
type Runtime struct {
	root         string
	cgroupParent string

	mu      sync.Mutex
	running map[string]*Container
}

// New keeps its state under root; containers' cgroups go under cgroupParent.
func New(root, cgroupParent string) (*Runtime, error) {
	for _, dir := range []string{"state", "containers", "netns"} {
		if err := os.MkdirAll(filepath.Join(root, dir), 0o700); err != nil {
			return nil, err
		}
	}
	return &Runtime{root: root, cgroupParent: cgroupParent, running: map[string]*Container{}}, nil
}

// Mount is a bind mount into a container.
type Mount struct {
	Source, Destination string
	ReadOnly            bool
}

// ContainerSpec is what a container is made of.
type ContainerSpec struct {
	ID string
	// NetNSPath is the pod sandbox's network namespace.
	NetNSPath string
	// LowerDirs are the image's layer directories, top layer first.
	LowerDirs          []string
	Args, Env          []string
	WorkingDir         string
	UID, GID           uint32
	SupplementalGroups []uint32
	Hostname           string
	Mounts             []Mount
	// HostsFile and ResolvConf are bind-mounted at /etc/hosts and
	// /etc/resolv.conf.
	HostsFile, ResolvConf string
	Privileged            bool
	ReadOnlyRootFS        bool
	CapAdd, CapDrop       []string
	CPUShares             uint64
	CPUQuota              int64
	CPUPeriod             uint64
	MemoryLimit           int64
	PidsLimit             int64
	LogPath               string
}

// Container is a container this runtime started or adopted.
type Container struct {
	id      string
	dir     string
	lc      *libcontainer.Container
	started time.Time

	mu       sync.Mutex
	exited   bool
	exitCode int
	finished time.Time
	logsDone chan struct{}
}

func (r *Runtime) dir(id string) string { return filepath.Join(r.root, "containers", id) }

// Start creates and starts a container. Its root filesystem is an overlay
// of the image's layers with a writable layer of its own.
func (r *Runtime) Start(spec ContainerSpec) (c *Container, err error) {
	if spec.ID == "" || strings.ContainsAny(spec.ID, "/.") {
		return nil, fmt.Errorf("container id %q: want a plain name", spec.ID)
	}
	dir := r.dir(spec.ID)
	rootfs := filepath.Join(dir, "rootfs")
	for _, d := range []string{"upper", "work", "rootfs"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o700); err != nil {
			return nil, err
		}
	}
	defer func() {
		if err != nil {
			_ = unix.Unmount(rootfs, unix.MNT_DETACH)
			_ = os.RemoveAll(dir)
		}
	}()
	if len(spec.LowerDirs) == 0 {
		return nil, errors.New("container has no image layers")
	}
	opts := fmt.Sprintf("lowerdir=%s,upperdir=%s,workdir=%s", strings.Join(spec.LowerDirs, ":"), filepath.Join(dir, "upper"), filepath.Join(dir, "work"))
	if err := unix.Mount("overlay", rootfs, "overlay", 0, opts); err != nil {
		return nil, fmt.Errorf("overlay root filesystem: %w", err)
	}
	termination := filepath.Join(dir, "termination-log")
	if err := os.WriteFile(termination, nil, 0o666); err != nil {
		return nil, err
	}

	config, err := r.config(spec, rootfs, termination)
	if err != nil {
		return nil, err
	}
	lc, err := libcontainer.Create(filepath.Join(r.root, "state"), spec.ID, config)
	if err != nil {
		return nil, fmt.Errorf("create container %s: %w", spec.ID, err)
	}
	defer func() {
		if err != nil {
			_ = lc.Destroy()
		}
	}()

	stdout, err := openFIFO(filepath.Join(dir, "stdout"))
	if err != nil {
		return nil, err
	}
	defer stdout.Close()
	stderr, err := openFIFO(filepath.Join(dir, "stderr"))
	if err != nil {
		return nil, err
	}
	defer stderr.Close()

	groups := make([]int, len(spec.SupplementalGroups))
	for i, g := range spec.SupplementalGroups {
		groups[i] = int(g)
	}
	cwd := spec.WorkingDir
	if cwd == "" {
		cwd = "/"
	}
	process := &libcontainer.Process{
		Args: spec.Args, Env: spec.Env, Cwd: cwd,
		UID: int(spec.UID), GID: int(spec.GID), AdditionalGroups: groups,
		Stdout: stdout, Stderr: stderr, Init: true,
	}
	c = &Container{id: spec.ID, dir: dir, lc: lc, started: time.Now(), logsDone: make(chan struct{})}
	if err := lc.Run(process); err != nil {
		return nil, fmt.Errorf("start container %s: %w", spec.ID, err)
	}
	go c.wait(process)
	go c.copyLogs(spec.LogPath)
	r.mu.Lock()
	r.running[spec.ID] = c
	r.mu.Unlock()
	return c, nil
}

// openFIFO makes a FIFO and opens it for reading and writing: the file the
// container gets as stdout or stderr.
func openFIFO(path string) (*os.File, error) {
	if err := unix.Mkfifo(path, 0o600); err != nil && !errors.Is(err, os.ErrExist) {
		return nil, fmt.Errorf("fifo %s: %w", path, err)
	}
	return os.OpenFile(path, os.O_RDWR, 0)
}

func (c *Container) wait(p *libcontainer.Process) {
	state, err := p.Wait()
	code := 255
	if state != nil {
		if ws, ok := state.Sys().(syscall.WaitStatus); ok {
			code = ws.ExitStatus()
			if ws.Signaled() {
				code = 128 + int(ws.Signal())
			}
		}
	} else if err != nil {
		code = 255
	}
	c.mu.Lock()
	c.exited, c.exitCode, c.finished = true, code, time.Now()
	c.mu.Unlock()
}

// copyLogs turns the container's output into CRI log records in path.
func (c *Container) copyLogs(path string) {
	defer close(c.logsDone)
	if path == "" {
		return
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return
	}
	out, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return
	}
	defer out.Close()
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, stream := range []string{"stdout", "stderr"} {
		f, err := os.OpenFile(filepath.Join(c.dir, stream), os.O_RDONLY|syscall.O_NONBLOCK, 0)
		if err != nil {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer f.Close()
			copyStream(f, stream, out, &mu, c.done)
		}()
	}
	wg.Wait()
}

// done is true once the container has exited and its pipes are drained.
func (c *Container) done() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.exited
}

func copyStream(f *os.File, stream string, out io.Writer, mu *sync.Mutex, done func() bool) {
	reader := bufio.NewReaderSize(f, 64<<10)
	var partial []byte
	for {
		line, err := reader.ReadSlice('\n')
		if len(line) > 0 {
			tag := "F"
			if line[len(line)-1] == '\n' {
				line = line[:len(line)-1]
			} else if err == bufio.ErrBufferFull {
				tag = "P"
			} else {
				// A piece of a line not yet ended: wait for the rest.
				partial = append(partial, line...)
				line = nil
			}
			if line != nil {
				record := append(append([]byte(nil), partial...), line...)
				partial = partial[:0]
				mu.Lock()
				fmt.Fprintf(out, "%s %s %s %s\n", time.Now().UTC().Format(time.RFC3339Nano), stream, tag, record)
				mu.Unlock()
			}
		}
		if err == nil || err == bufio.ErrBufferFull {
			continue
		}
		if done() {
			if len(partial) > 0 {
				mu.Lock()
				fmt.Fprintf(out, "%s %s F %s\n", time.Now().UTC().Format(time.RFC3339Nano), stream, partial)
				mu.Unlock()
			}
			return
		}
		time.Sleep(50 * time.Millisecond) // EAGAIN: nothing written yet
	}
}

// config is the container's libcontainer configuration, made through an
// OCI runtime spec so that its defaults (capabilities, devices, masked
// paths, /dev/stdout and friends) are runc's.
func (r *Runtime) config(spec ContainerSpec, rootfs, termination string) (*configs.Config, error) {
	s := specconv.Example()
	s.Root = &specs.Root{Path: rootfs, Readonly: spec.ReadOnlyRootFS}
	s.Hostname = spec.Hostname
	s.Process.Terminal = false
	s.Process.Args = spec.Args
	s.Process.NoNewPrivileges = !spec.Privileged
	for i, ns := range s.Linux.Namespaces {
		if ns.Type == specs.NetworkNamespace {
			s.Linux.Namespaces[i].Path = spec.NetNSPath
		}
	}
	caps := defaultCapabilities
	if spec.Privileged {
		caps = allCapabilities()
		s.Linux.MaskedPaths, s.Linux.ReadonlyPaths = nil, nil
		s.Linux.Resources.Devices = []specs.LinuxDeviceCgroup{{Allow: true, Access: "rwm"}}
	}
	caps = adjustCapabilities(caps, spec.CapAdd, spec.CapDrop)
	s.Process.Capabilities = &specs.LinuxCapabilities{Bounding: caps, Effective: caps, Permitted: caps}

	bind := func(src, dst string, ro bool) {
		opts := []string{"rbind", "rprivate"}
		if ro {
			opts = append(opts, "ro")
		}
		s.Mounts = append(s.Mounts, specs.Mount{Source: src, Destination: dst, Type: "bind", Options: opts})
	}
	// Writable /tmp-like mounts runc's example lacks but images expect.
	s.Mounts = append(s.Mounts, specs.Mount{Destination: "/dev/shm", Type: "tmpfs", Source: "shm", Options: []string{"nosuid", "noexec", "nodev", "mode=1777", "size=65536k"}})
	if spec.HostsFile != "" {
		bind(spec.HostsFile, "/etc/hosts", false)
	}
	if spec.ResolvConf != "" {
		bind(spec.ResolvConf, "/etc/resolv.conf", false)
	}
	bind(termination, "/dev/termination-log", false)
	for _, m := range spec.Mounts {
		bind(m.Source, m.Destination, m.ReadOnly)
	}

	res := s.Linux.Resources
	if spec.MemoryLimit > 0 {
		res.Memory = &specs.LinuxMemory{Limit: &spec.MemoryLimit}
	}
	if spec.CPUShares > 0 || spec.CPUQuota > 0 {
		res.CPU = &specs.LinuxCPU{}
		if spec.CPUShares > 0 {
			res.CPU.Shares = &spec.CPUShares
		}
		if spec.CPUQuota > 0 {
			res.CPU.Quota, res.CPU.Period = &spec.CPUQuota, &spec.CPUPeriod
		}
	}
	if spec.PidsLimit > 0 {
		res.Pids = &specs.LinuxPids{Limit: &spec.PidsLimit}
	}
	s.Linux.CgroupsPath = "/" + r.cgroupParent + "/" + spec.ID
	return specconv.CreateLibcontainerConfig(&specconv.CreateOpts{CgroupName: spec.ID, Spec: s})
}

// defaultCapabilities are what containerd and Docker give a container.
var defaultCapabilities = []string{
	"CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_MKNOD", "CAP_NET_RAW",
	"CAP_SETGID", "CAP_SETUID", "CAP_SETFCAP", "CAP_SETPCAP", "CAP_NET_BIND_SERVICE",
	"CAP_SYS_CHROOT", "CAP_KILL", "CAP_AUDIT_WRITE",
}

func allCapabilities() []string {
	var all []string
	for _, c := range capability.ListKnown() {
		all = append(all, "CAP_"+strings.ToUpper(c.String()))
	}
	return all
}

// adjustCapabilities applies a securityContext's add and drop; names may
// come with or without CAP_, and ALL drops everything.
func adjustCapabilities(base, add, drop []string) []string {
	norm := func(n string) string {
		n = strings.ToUpper(n)
		if !strings.HasPrefix(n, "CAP_") && n != "ALL" {
			n = "CAP_" + n
		}
		return n
	}
	set := map[string]bool{}
	for _, c := range base {
		set[c] = true
	}
	for _, d := range drop {
		if norm(d) == "ALL" {
			clear(set)
			continue
		}
		delete(set, norm(d))
	}
	for _, a := range add {
		if norm(a) == "ALL" {
			for _, c := range allCapabilities() {
				set[c] = true
			}
			continue
		}
		set[norm(a)] = true
	}
	out := make([]string, 0, len(set))
	for _, c := range allCapabilities() {
		if set[c] {
			out = append(out, c)
		}
	}
	return out
}

// Load adopts a container that a previous stead started.
func (r *Runtime) Load(id string) (*Container, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if c, ok := r.running[id]; ok {
		return c, nil
	}
	lc, err := libcontainer.Load(filepath.Join(r.root, "state"), id)
	if err != nil {
		return nil, err
	}
	c := &Container{id: id, dir: r.dir(id), lc: lc, logsDone: make(chan struct{})}
	if st, err := lc.State(); err == nil {
		c.started = st.Created
	}
	close(c.logsDone)
	r.running[id] = c
	return c, nil
}

// List names the containers whose state this runtime keeps.
func (r *Runtime) List() ([]string, error) {
	entries, err := os.ReadDir(filepath.Join(r.root, "state"))
	if err != nil {
		return nil, err
	}
	var ids []string
	for _, e := range entries {
		if e.IsDir() {
			ids = append(ids, e.Name())
		}
	}
	return ids, nil
}

// State reports whether the container runs and, once it has exited, how.
// A container adopted after a restart that has since exited reports exit
// code -1: its status was not there to be collected.
func (c *Container) State() (running bool, exitCode int, startedAt, finishedAt time.Time) {
	c.mu.Lock()
	exited, code, finished := c.exited, c.exitCode, c.finished
	c.mu.Unlock()
	if exited {
		return false, code, c.started, finished
	}
	status, err := c.lc.Status()
	if err == nil && (status == libcontainer.Running || status == libcontainer.Created || status == libcontainer.Paused) {
		return true, 0, c.started, time.Time{}
	}
	c.mu.Lock()
	if !c.exited {
		c.exited, c.exitCode, c.finished = true, -1, time.Now()
	}
	code, finished = c.exitCode, c.finished
	c.mu.Unlock()
	return false, code, c.started, finished
}

// Pid is the container's init process, as seen from the host.
func (c *Container) Pid() int {
	st, err := c.lc.State()
	if err != nil {
		return 0
	}
	return st.InitProcessPid
}

// Signal sends sig to the container's init process.
func (c *Container) Signal(sig os.Signal) error { return c.lc.Signal(sig) }

// Exec runs a command inside the running container and returns its exit
// code.
func (c *Container) Exec(ctx context.Context, args, env []string, stdin io.Reader, stdout, stderr io.Writer) (int, error) {
	p := &libcontainer.Process{Args: args, Env: env, Cwd: "/", Stdin: stdin, Stdout: stdout, Stderr: stderr}
	if err := c.lc.Run(p); err != nil {
		return -1, err
	}
	done := make(chan struct{})
	go func() {
		select {
		case <-ctx.Done():
			_ = p.Signal(unix.SIGKILL)
		case <-done:
		}
	}()
	state, err := p.Wait()
	close(done)
	if state == nil {
		return -1, err
	}
	return state.ExitCode(), nil
}

// Remove destroys a stopped container: its cgroup, its state and its root
// filesystem.
func (r *Runtime) Remove(c *Container) error {
	if running, _, _, _ := c.State(); running {
		return fmt.Errorf("container %s is running", c.id)
	}
	select {
	case <-c.logsDone:
	case <-time.After(5 * time.Second):
	}
	if err := c.lc.Destroy(); err != nil {
		return err
	}
	if err := unix.Unmount(filepath.Join(c.dir, "rootfs"), unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOENT) {
		return err
	}
	r.mu.Lock()
	delete(r.running, c.id)
	r.mu.Unlock()
	return os.RemoveAll(c.dir)
}
