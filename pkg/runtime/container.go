package runtime

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/moby/sys/capability"
	"github.com/opencontainers/cgroups"
	"github.com/opencontainers/runc/libcontainer"
	"github.com/opencontainers/runc/libcontainer/configs"
	"github.com/opencontainers/runc/libcontainer/specconv"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// Mount is a bind mount into a container.
type Mount struct {
	Source, Destination string
	ReadOnly            bool
}

// ContainerSpec is what a container is made of.
type ContainerSpec struct {
	// ID names the container on this node: letters, digits and _ + - .
	// An id is used once; a restarted container gets a new one.
	ID string
	// PodUID names the sandbox, made by EnsureSandbox, whose network, IPC
	// and UTS namespaces (so hostname) the container joins.
	PodUID string
	// PIDNamespace, when set, is the path of a PID namespace the container
	// joins (/proc/<pid>/ns/pid of another container's process: an
	// ephemeral container aimed at a target); otherwise it has its own.
	PIDNamespace string
	// LowerDirs are the image's layer directories, top layer first, as
	// overlayfs's lowerdir option wants them.
	LowerDirs []string
	// Args is the command; Args[0] is looked up in Env's PATH inside the
	// container. Env gets a default PATH when it has none.
	Args, Env          []string
	WorkingDir         string
	UID, GID           uint32
	SupplementalGroups []uint32
	Mounts             []Mount
	// HostsFile and ResolvConf, when set, are bind-mounted at /etc/hosts
	// and /etc/resolv.conf.
	HostsFile, ResolvConf string
	// TerminationMessagePath is where in the container the termination
	// message file is; /dev/termination-log when empty.
	TerminationMessagePath string
	// Privileged gives every capability and device access, no masked
	// paths, and allows gaining privileges (setuid binaries); otherwise
	// the process runs with no_new_privs.
	Privileged, ReadOnlyRootFS bool
	// CapAdd and CapDrop adjust the default capabilities (containerd's);
	// names with or without CAP_, any case; "ALL" is every capability.
	CapAdd, CapDrop []string
	// OOMScoreAdj is the process's oom_score_adj, as the kubelet sets by
	// QoS class.
	OOMScoreAdj int
	// Zero means no limit.
	CPUShares   uint64
	CPUQuota    int64
	CPUPeriod   uint64
	MemoryLimit int64
	PidsLimit   int64
	// LogPath receives stdout and stderr in the CRI log format; when
	// empty the output is discarded, and clients that attach see none
	// unless the container has a terminal.
	LogPath string
	// Stdin gives the process a standard input that attached clients
	// write to; with StdinOnce it is closed once the first client's input
	// ends. TTY gives the process a terminal as its standard input, output
	// and error. They are the pod's container's fields of the same names;
	// the package documentation says what becomes of each when stead
	// restarts.
	Stdin, StdinOnce, TTY bool
}

// State is what is known of a container's process.
type State struct {
	Running bool
	// ExitCode, once not Running: the process's status, 128+n for signal
	// n, or ExitCodeUnknown (see the package documentation).
	ExitCode   int
	OOMKilled  bool
	StartedAt  time.Time
	FinishedAt time.Time
}

// ExitCodeUnknown is the exit code of a container that exited while no
// stead that could learn its status was its parent.
const ExitCodeUnknown = -1

// Container is a container that this runtime started or adopted. Its
// methods are safe for concurrent use.
type Container struct {
	id      string
	dir     string
	runtime *Runtime
	meta    metadata
	lc      *libcontainer.Container // nil if stead died before creating it

	exited   chan struct{} // closed once exit is set
	logsDone <-chan struct{}

	// terminal is the master side of the process's terminal, with TTY,
	// read for the log and attached clients; nil in an adopted container,
	// whose terminal hung up when the stead that held it exited.
	terminal *os.File
	// stdout and stderr pass the output to the clients attached at the
	// time; with a terminal, stdout carries all of it.
	stdout, stderr fanout

	mu   sync.Mutex
	exit *exitRecord
	// watched is true while a goroutine waits for the process (as its
	// parent, or through a pidfd) and will record its exit; otherwise
	// State asks libcontainer.
	watched bool
	// stdin, with StdinOnce and no terminal, is the write end of the
	// process's standard input, until an attached client's input ends;
	// stdinDups are the attached clients' duplicates of it.
	stdin     *os.File
	stdinDups []*os.File
}

// metadata is what Exec and an adopting stead need to know of a container
// beyond libcontainer's state.
type metadata struct {
	PodUID     string    `json:"podUID"`
	LogPath    string    `json:"logPath,omitempty"`
	Env        []string  `json:"env,omitempty"`
	WorkingDir string    `json:"workingDir"`
	UID        uint32    `json:"uid"`
	GID        uint32    `json:"gid"`
	Groups     []uint32  `json:"groups,omitempty"`
	StartedAt  time.Time `json:"startedAt"`
	Stdin      bool      `json:"stdin,omitempty"`
	StdinOnce  bool      `json:"stdinOnce,omitempty"`
	TTY        bool      `json:"tty,omitempty"`
}

type exitRecord struct {
	ExitCode   int       `json:"exitCode"`
	OOMKilled  bool      `json:"oomKilled,omitempty"`
	FinishedAt time.Time `json:"finishedAt"`
}

const defaultPath = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// Start creates the container and starts its process. The container runs
// until its process exits, whatever becomes of stead.
func (r *Runtime) Start(ctx context.Context, spec ContainerSpec) (c *Container, err error) {
	if err := validateID(spec.ID); err != nil {
		return nil, err
	}
	if len(spec.LowerDirs) == 0 {
		return nil, fmt.Errorf("container %s has no image layers", spec.ID)
	}
	if len(spec.Args) == 0 {
		return nil, fmt.Errorf("container %s has no command", spec.ID)
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	sandbox, err := r.sandbox(spec.PodUID)
	if err != nil {
		return nil, fmt.Errorf("container %s: %w", spec.ID, err)
	}
	r.mu.Lock()
	if r.containers[spec.ID] != nil || r.starting[spec.ID] {
		r.mu.Unlock()
		return nil, fmt.Errorf("container %s exists already", spec.ID)
	}
	r.starting[spec.ID] = true
	r.mu.Unlock()
	defer func() {
		r.mu.Lock()
		delete(r.starting, spec.ID)
		if err == nil {
			r.containers[spec.ID] = c
		}
		r.mu.Unlock()
	}()

	dir := r.containerDir(spec.ID)
	if err := os.Mkdir(dir, 0o700); err != nil {
		if errors.Is(err, os.ErrExist) {
			return nil, fmt.Errorf("container %s exists already", spec.ID)
		}
		return nil, err
	}
	var lc *libcontainer.Container
	defer func() {
		if err != nil {
			if lc != nil {
				_ = lc.Destroy()
			}
			// Never remove through a mount that is still there.
			if unmountAll(filepath.Join(dir, "rootfs")) == nil {
				_ = os.RemoveAll(dir)
			}
		}
	}()

	env := spec.Env
	if !slices.ContainsFunc(env, func(e string) bool { return strings.HasPrefix(e, "PATH=") }) {
		env = append(slices.Clip(env), defaultPath)
	}
	cwd := spec.WorkingDir
	if cwd == "" {
		cwd = "/"
	}
	meta := metadata{
		PodUID: spec.PodUID, LogPath: spec.LogPath, Env: env, WorkingDir: cwd,
		UID: spec.UID, GID: spec.GID, Groups: spec.SupplementalGroups,
		Stdin: spec.Stdin, StdinOnce: spec.StdinOnce, TTY: spec.TTY,
	}
	// Written first, so that whatever a crash leaves is listed and can be
	// removed.
	if err := writeJSON(filepath.Join(dir, "container.json"), meta); err != nil {
		return nil, err
	}
	rootfs := filepath.Join(dir, "rootfs")
	if err := mountOverlay(dir, spec.LowerDirs); err != nil {
		return nil, fmt.Errorf("container %s: %w", spec.ID, err)
	}
	termination := filepath.Join(dir, "termination-log")
	if err := os.WriteFile(termination, nil, 0o600); err != nil {
		return nil, err
	}
	// Any user in the container may write its termination message.
	if err := os.Chmod(termination, 0o666); err != nil {
		return nil, err
	}

	config, err := r.config(spec, sandbox, rootfs, termination)
	if err != nil {
		return nil, fmt.Errorf("container %s: %w", spec.ID, err)
	}
	lc, err = libcontainer.Create(r.stateDir(), spec.ID, config)
	if err != nil {
		return nil, fmt.Errorf("create container %s: %w", spec.ID, err)
	}

	c = &Container{id: spec.ID, dir: dir, runtime: r, meta: meta, lc: lc, watched: true, exited: make(chan struct{})}
	groups := make([]int, len(spec.SupplementalGroups))
	for i, g := range spec.SupplementalGroups {
		groups[i] = int(g)
	}
	process := &libcontainer.Process{
		Args: spec.Args, Env: env, Cwd: cwd,
		UID: int(spec.UID), GID: int(spec.GID), AdditionalGroups: groups,
		Init: true,
	}
	var console *os.File
	if spec.TTY {
		var child *os.File
		if console, child, err = consoleSocketPair(); err != nil {
			return nil, err
		}
		defer console.Close()
		defer child.Close()
		process.ConsoleSocket = child
	} else {
		stdout, stderr, err := c.outputFiles()
		if err != nil {
			return nil, err
		}
		defer stdout.Close()
		defer stderr.Close()
		process.Stdout, process.Stderr = stdout, stderr
		if spec.Stdin {
			stdin, err := c.stdinFile()
			if err != nil {
				return nil, err
			}
			defer stdin.Close()
			process.Stdin = stdin
		}
		// The readers are open before our copies of the write ends
		// close, so that a container that exits at once still leaves its
		// output to read.
		if spec.LogPath != "" {
			c.logsDone = c.copyLogs()
		} else {
			c.logsDone = closedChannel()
		}
	}
	if err := lc.Run(process); err != nil {
		reapStrayStages()
		if c.stdin != nil {
			c.stdin.Close()
		}
		return nil, fmt.Errorf("start container %s: %w", spec.ID, err)
	}
	if spec.TTY {
		// Only the init may hold the other end: should it have sent no
		// terminal, the read below ends rather than waits.
		process.ConsoleSocket.Close()
		// The init sent the terminal before its go-ahead, so it is there
		// to read now that Run has returned.
		if c.terminal, err = receiveFile(console); err != nil {
			_ = process.Signal(unix.SIGKILL)
			_, _ = process.Wait()
			return nil, fmt.Errorf("start container %s: terminal: %w", spec.ID, err)
		}
		c.logsDone = c.copyLogs()
	}
	c.meta.StartedAt = time.Now()
	// The process runs: failing now over its metadata would be worse than
	// a start time that only an adopting stead misses.
	_ = writeJSON(filepath.Join(dir, "container.json"), c.meta)
	go c.wait(process)
	return c, nil
}

// stdinFile is what the process gets as its standard input. With
// StdinOnce it is a pipe's read end, and stead keeps the only write end,
// so that closing it gives the process EOF. Otherwise it is a FIFO in the
// container's directory, opened for reading and writing, so that the
// process never reads EOF, whatever becomes of stead: each client that
// attaches opens the FIFO for writing, a restarted stead's as well.
func (c *Container) stdinFile() (*os.File, error) {
	if c.meta.StdinOnce {
		r, w, err := os.Pipe()
		if err != nil {
			return nil, err
		}
		c.stdin = w
		return r, nil
	}
	path := filepath.Join(c.dir, "stdin")
	if err := unix.Mkfifo(path, 0o600); err != nil {
		return nil, fmt.Errorf("fifo %s: %w", path, err)
	}
	return os.OpenFile(path, os.O_RDWR, 0)
}

// outputFiles are what the container gets as stdout and stderr: its log
// FIFOs opened for reading and writing (see the package documentation),
// or /dev/null when there is no log.
func (c *Container) outputFiles() (stdout, stderr *os.File, err error) {
	if c.meta.LogPath == "" {
		if stdout, err = os.OpenFile(os.DevNull, os.O_WRONLY, 0); err != nil {
			return nil, nil, err
		}
		if stderr, err = os.OpenFile(os.DevNull, os.O_WRONLY, 0); err != nil {
			stdout.Close()
			return nil, nil, err
		}
		return stdout, stderr, nil
	}
	open := func(stream string) (*os.File, error) {
		path := filepath.Join(c.dir, stream)
		if err := unix.Mkfifo(path, 0o600); err != nil {
			return nil, fmt.Errorf("fifo %s: %w", path, err)
		}
		f, err := os.OpenFile(path, os.O_RDWR, 0)
		if err != nil {
			return nil, err
		}
		// A larger buffer lets the container go on writing longer while
		// stead is away; pages are only used when it fills.
		_, _ = unix.FcntlInt(f.Fd(), unix.F_SETPIPE_SZ, 1<<20)
		return f, nil
	}
	if stdout, err = open("stdout"); err != nil {
		return nil, nil, err
	}
	if stderr, err = open("stderr"); err != nil {
		stdout.Close()
		return nil, nil, err
	}
	return stdout, stderr, nil
}

func closedChannel() <-chan struct{} {
	ch := make(chan struct{})
	close(ch)
	return ch
}

func (c *Container) wait(p *libcontainer.Process) {
	// Wait would hold a thread per container, blocked in waitid; the
	// pidfd parks a goroutine only, and then Wait reaps at once.
	if pid, err := p.Pid(); err == nil {
		if pidfd, err := openPidfd(pid); err == nil {
			_ = awaitExit(pidfd)
			pidfd.Close()
		}
	}
	status, _ := p.Wait()
	finished := time.Now()
	code := 255
	if status != nil {
		if ws, ok := status.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			code = 128 + int(ws.Signal())
		} else {
			code = status.ExitCode()
		}
	}
	c.waitForLogs()
	c.mu.Lock()
	defer c.mu.Unlock()
	c.recordExitLocked(&exitRecord{ExitCode: code, OOMKilled: c.oomKilled(), FinishedAt: finished})
}

// waitForLogs lets the copying of the output end, so that whoever sees
// the exit finds the log complete.
func (c *Container) waitForLogs() {
	select {
	case <-c.logsDone:
	case <-time.After(2 * time.Second):
	}
}

// watchAdopted waits, through a pidfd, for the exit of a container that
// another stead started, to record it when it happens rather than when
// State is next asked.
func (c *Container) watchAdopted() {
	pidfd, err := openPidfd(c.Pid())
	if err != nil {
		return // State polls libcontainer instead
	}
	// Opened after the pid was read: if the container had already gone
	// and the pid been reused, libcontainer (which checks the start
	// time) says so now, and the pidfd would be a stranger's.
	if status, err := c.lc.Status(); err != nil || status == libcontainer.Stopped {
		pidfd.Close()
		return
	}
	c.watched = true
	go func() {
		defer pidfd.Close()
		if err := awaitExit(pidfd); err != nil { // State polls instead
			c.mu.Lock()
			c.watched = false
			c.mu.Unlock()
			return
		}
		finished := time.Now()
		c.waitForLogs()
		c.mu.Lock()
		defer c.mu.Unlock()
		exit := c.unknownExit()
		exit.FinishedAt = finished
		c.recordExitLocked(exit)
	}()
}

func openPidfd(pid int) (*os.File, error) {
	// Non-blocking, so that Go's poller waits on it.
	fd, err := unix.PidfdOpen(pid, unix.PIDFD_NONBLOCK)
	if err != nil {
		return nil, err
	}
	return os.NewFile(uintptr(fd), "pidfd"), nil
}

// awaitExit returns once the pidfd's process has exited, parked in Go's
// poller rather than holding a thread: a node runs a thousand containers.
func awaitExit(pidfd *os.File) error {
	conn, err := pidfd.SyscallConn()
	if err != nil {
		return err
	}
	return conn.Read(func(fd uintptr) bool {
		// A pidfd reads as ready once its process has exited.
		ready, _ := unix.Poll([]unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}, 0)
		return ready > 0
	})
}

// unknownExit is the exit of a process whose status went to another
// parent: only an OOM kill is known.
func (c *Container) unknownExit() *exitRecord {
	exit := &exitRecord{ExitCode: ExitCodeUnknown, FinishedAt: time.Now()}
	if c.oomKilled() {
		exit.ExitCode, exit.OOMKilled = 128+int(unix.SIGKILL), true
	}
	return exit
}

// recordExitLocked keeps the exit on disk, so that it reads the same
// after a restart, and tells whoever waits on Exited.
func (c *Container) recordExitLocked(exit *exitRecord) {
	if c.exit != nil {
		return
	}
	// If this fails, the exit is known until stead restarts, not after.
	_ = writeJSON(filepath.Join(c.dir, "exit.json"), exit)
	c.exit = exit
	close(c.exited)
}

// Exited is closed once the container has stopped and State says how.
func (c *Container) Exited() <-chan struct{} { return c.exited }

// ID is the container's id.
func (c *Container) ID() string { return c.id }

// State reports whether the container runs and, once it has stopped, how.
func (c *Container) State() (State, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	st := State{StartedAt: c.meta.StartedAt}
	if c.exit == nil && !c.watched {
		running := false
		if c.lc != nil {
			status, err := c.lc.Status()
			if err != nil {
				return st, fmt.Errorf("container %s: %w", c.id, err)
			}
			running = status != libcontainer.Stopped
		}
		if !running {
			c.recordExitLocked(c.unknownExit())
		}
	}
	if c.exit == nil {
		st.Running = true
		return st, nil
	}
	st.ExitCode, st.OOMKilled, st.FinishedAt = c.exit.ExitCode, c.exit.OOMKilled, c.exit.FinishedAt
	return st, nil
}

// Pid is the container's init process as the host sees it, or 0.
func (c *Container) Pid() int {
	if c.lc == nil {
		return 0
	}
	st, err := c.lc.State()
	if err != nil {
		return 0
	}
	return st.InitProcessPid
}

// Signal sends sig to the container's init process; SIGKILL ends every
// process of the container. A container that has stopped is left alone.
func (c *Container) Signal(sig os.Signal) error {
	if c.lc == nil {
		return nil
	}
	if err := c.lc.Signal(sig); err != nil && !errors.Is(err, libcontainer.ErrNotRunning) {
		return fmt.Errorf("signal container %s: %w", c.id, err)
	}
	if sig == unix.SIGKILL {
		// An init that outlives a kill by long is held by a process in
		// its namespace that nobody has reaped (see strays.go).
		go func() {
			select {
			case <-c.exited:
			case <-time.After(strayGrace):
				reapStrayStages()
			}
		}()
	}
	return nil
}

// TerminationMessage is what the container wrote to its termination
// message file, at most 4096 bytes as the kubelet keeps.
func (c *Container) TerminationMessage() (string, error) {
	f, err := os.Open(filepath.Join(c.dir, "termination-log"))
	if err != nil {
		return "", err
	}
	defer f.Close()
	msg, err := io.ReadAll(io.LimitReader(f, 4096))
	return string(msg), err
}

// Remove destroys a stopped container: its libcontainer state, its cgroup,
// its root filesystem and its directory. The log file stays.
func (c *Container) Remove() error {
	st, err := c.State()
	if err != nil {
		return err
	}
	if st.Running {
		return fmt.Errorf("container %s is running", c.id)
	}
	c.waitForLogs()
	if c.lc != nil {
		if err := c.lc.Destroy(); err != nil {
			return fmt.Errorf("remove container %s: %w", c.id, err)
		}
	}
	if err := unmountAll(filepath.Join(c.dir, "rootfs")); err != nil {
		return fmt.Errorf("remove container %s: %w", c.id, err)
	}
	if err := os.RemoveAll(c.dir); err != nil {
		return err
	}
	if c.terminal != nil {
		c.terminal.Close()
	}
	c.closeStdin()
	c.runtime.forget(c.id)
	return nil
}

// oomKilled tells whether the kernel's OOM killer killed a process of the
// container's cgroup; the count outlives the processes, not the cgroup.
func (c *Container) oomKilled() bool {
	if c.lc == nil {
		return false
	}
	st, err := c.lc.State()
	if err != nil {
		return false
	}
	file := ""
	if p, ok := st.CgroupPaths["memory"]; ok {
		file = filepath.Join(p, "memory.oom_control") // cgroup v1
	} else if p, ok := st.CgroupPaths[""]; ok {
		file = filepath.Join(p, "memory.events") // cgroup v2
	}
	f, err := os.Open(file)
	if err != nil {
		return false
	}
	defer f.Close()
	scanner := bufio.NewScanner(f)
	for scanner.Scan() {
		if name, value, ok := strings.Cut(scanner.Text(), " "); ok && name == "oom_kill" {
			n, _ := strconv.Atoi(value)
			return n > 0
		}
	}
	return false
}

func mountOverlay(dir string, lowerDirs []string) error {
	for _, d := range []string{"upper", "rootfs"} {
		// The upper directory's mode is the container's / mode.
		if err := os.Mkdir(filepath.Join(dir, d), 0o755); err != nil {
			return err
		}
	}
	if err := os.Mkdir(filepath.Join(dir, "work"), 0o700); err != nil {
		return err
	}
	for _, l := range lowerDirs {
		if strings.ContainsAny(l, ":,") {
			return fmt.Errorf("layer directory %q: overlayfs cannot take ':' or ','", l)
		}
	}
	opts := fmt.Sprintf("lowerdir=%s,upperdir=%s,workdir=%s",
		strings.Join(lowerDirs, ":"), filepath.Join(dir, "upper"), filepath.Join(dir, "work"))
	if len(opts) >= os.Getpagesize() {
		return fmt.Errorf("overlay of %d layers: mount options longer than a page", len(lowerDirs))
	}
	if err := unix.Mount("overlay", filepath.Join(dir, "rootfs"), "overlay", 0, opts); err != nil {
		return fmt.Errorf("overlay root filesystem: %w", err)
	}
	return nil
}

// unmountAll unmounts whatever is mounted at path, however many times.
func unmountAll(path string) error {
	for range 16 {
		err := unix.Unmount(path, 0)
		switch {
		case err == nil:
			continue
		case errors.Is(err, unix.EINVAL), errors.Is(err, unix.ENOENT):
			return nil // not a mount point (any more)
		case errors.Is(err, unix.EBUSY):
			if err := unix.Unmount(path, unix.MNT_DETACH); err != nil {
				return fmt.Errorf("unmount %s: %w", path, err)
			}
		default:
			return fmt.Errorf("unmount %s: %w", path, err)
		}
	}
	return fmt.Errorf("unmount %s: still mounted", path)
}

// config is the container's libcontainer configuration, made through an
// OCI runtime spec so that its defaults (devices, masked paths, /dev
// symlinks, mounts) are runc's.
func (r *Runtime) config(spec ContainerSpec, sandbox *Sandbox, rootfs, termination string) (*configs.Config, error) {
	s := specconv.Example()
	s.Root = &specs.Root{Path: rootfs, Readonly: spec.ReadOnlyRootFS}
	// The pod's hostname lives in the sandbox's UTS namespace.
	s.Hostname = ""
	s.Process.Terminal = false
	s.Process.Args = spec.Args
	s.Process.User = specs.User{UID: spec.UID, GID: spec.GID}
	s.Process.NoNewPrivileges = !spec.Privileged
	s.Process.OOMScoreAdj = &spec.OOMScoreAdj
	// Containers inherit stead's limits, as they inherit containerd's;
	// the example's 1024 open files is too few for a database.
	s.Process.Rlimits = nil
	for i, ns := range s.Linux.Namespaces {
		switch ns.Type {
		case specs.NetworkNamespace:
			s.Linux.Namespaces[i].Path = sandbox.NetNSPath()
		case specs.IPCNamespace:
			s.Linux.Namespaces[i].Path = sandbox.ipcPath()
		case specs.UTSNamespace:
			s.Linux.Namespaces[i].Path = sandbox.utsPath()
		case specs.PIDNamespace:
			s.Linux.Namespaces[i].Path = spec.PIDNamespace
		}
	}
	// As containerd masks it too: it exposes energy counters.
	s.Linux.MaskedPaths = append(s.Linux.MaskedPaths, "/sys/devices/virtual/powercap")

	caps := defaultCapabilities
	if spec.Privileged {
		caps = allCapabilities()
		s.Linux.MaskedPaths, s.Linux.ReadonlyPaths = nil, nil
		s.Linux.Resources.Devices = []specs.LinuxDeviceCgroup{{Allow: true, Access: "rwm"}}
		for i, m := range s.Mounts {
			if m.Destination == "/sys" || m.Destination == "/sys/fs/cgroup" {
				s.Mounts[i].Options = slices.DeleteFunc(slices.Clone(m.Options), func(o string) bool { return o == "ro" })
			}
		}
	}
	caps = adjustCapabilities(caps, spec.CapAdd, spec.CapDrop)
	s.Process.Capabilities = &specs.LinuxCapabilities{Bounding: caps, Effective: caps, Permitted: caps}

	// The pod's shared memory is the sandbox's, as its IPC namespace is.
	s.Mounts = slices.DeleteFunc(s.Mounts, func(m specs.Mount) bool { return m.Destination == "/dev/shm" })
	bind := func(src, dst string, readOnly bool) {
		opts := []string{"rbind", "rprivate"}
		if readOnly {
			opts = append(opts, "ro")
		}
		s.Mounts = append(s.Mounts, specs.Mount{Source: src, Destination: dst, Type: "bind", Options: opts})
	}
	bind(sandbox.shmPath(), "/dev/shm", false)
	if spec.HostsFile != "" {
		bind(spec.HostsFile, "/etc/hosts", false)
	}
	if spec.ResolvConf != "" {
		bind(spec.ResolvConf, "/etc/resolv.conf", false)
	}
	terminationPath := spec.TerminationMessagePath
	if terminationPath == "" {
		terminationPath = "/dev/termination-log"
	}
	bind(termination, terminationPath, false)
	for _, m := range spec.Mounts {
		if !filepath.IsAbs(m.Destination) {
			return nil, fmt.Errorf("mount destination %q is not absolute", m.Destination)
		}
		bind(m.Source, m.Destination, m.ReadOnly)
	}

	res := s.Linux.Resources
	if spec.MemoryLimit > 0 {
		res.Memory = &specs.LinuxMemory{Limit: &spec.MemoryLimit}
		// Memory and swap together no more than the limit: swap must not
		// stretch it, as the kubelet has it when pods may not swap.
		if swapAccounting() {
			res.Memory.Swap = &spec.MemoryLimit
		}
	}
	if spec.CPUShares > 0 || spec.CPUQuota > 0 {
		res.CPU = &specs.LinuxCPU{}
		if spec.CPUShares > 0 {
			res.CPU.Shares = &spec.CPUShares
		}
		if spec.CPUQuota > 0 {
			period := spec.CPUPeriod
			if period == 0 {
				period = 100000
			}
			res.CPU.Quota, res.CPU.Period = &spec.CPUQuota, &period
		}
	}
	if spec.PidsLimit > 0 {
		res.Pids = &specs.LinuxPids{Limit: &spec.PidsLimit}
	}
	s.Linux.CgroupsPath = "/" + r.podCgroup(spec.PodUID) + "/" + spec.ID
	return specconv.CreateLibcontainerConfig(&specconv.CreateOpts{CgroupName: spec.ID, Spec: s})
}

// swapAccounting tells whether the cgroups can limit swap. v1 cannot when
// the kernel runs with swapaccount=0; v2's manager copes either way.
func swapAccounting() bool {
	if cgroups.IsCgroup2UnifiedMode() {
		return true
	}
	mountpoint, err := cgroups.FindCgroupMountpoint("", "memory")
	if err != nil {
		return false
	}
	_, err = os.Stat(filepath.Join(mountpoint, "memory.memsw.limit_in_bytes"))
	return err == nil
}

// defaultCapabilities are those containerd (and Docker) give a container.
var defaultCapabilities = []string{
	"CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_MKNOD", "CAP_NET_RAW",
	"CAP_SETGID", "CAP_SETUID", "CAP_SETFCAP", "CAP_SETPCAP", "CAP_NET_BIND_SERVICE",
	"CAP_SYS_CHROOT", "CAP_KILL", "CAP_AUDIT_WRITE",
}

// allCapabilities are those stead itself may give: the kernel's that are
// in stead's bounding set. A container cannot have more, and asking for
// more fails its start.
func allCapabilities() []string {
	supported, err := capability.ListSupported()
	if err != nil {
		supported = capability.ListKnown()
	}
	own, err := capability.NewPid2(0)
	if err == nil {
		err = own.Load()
	}
	names := make([]string, 0, len(supported))
	for _, c := range supported {
		if err != nil || own.Get(capability.BOUNDING, c) {
			names = append(names, "CAP_"+strings.ToUpper(c.String()))
		}
	}
	return names
}

// adjustCapabilities applies a securityContext's add and drop: drop first,
// as the kubelet does, so that adding back one capability after dropping
// ALL works. What stead does not hold itself is left out.
func adjustCapabilities(base, add, drop []string) []string {
	normalize := func(name string) string {
		name = strings.ToUpper(name)
		if name != "ALL" && !strings.HasPrefix(name, "CAP_") {
			name = "CAP_" + name
		}
		return name
	}
	set := map[string]bool{}
	for _, c := range base {
		set[c] = true
	}
	for _, d := range drop {
		if d = normalize(d); d == "ALL" {
			clear(set)
		} else {
			delete(set, d)
		}
	}
	for _, a := range add {
		if a = normalize(a); a == "ALL" {
			for _, c := range allCapabilities() {
				set[c] = true
			}
		} else {
			set[a] = true
		}
	}
	var caps []string
	for _, c := range allCapabilities() {
		if set[c] {
			caps = append(caps, c)
		}
	}
	return caps
}

func readMetadata(dir string) (metadata, error) {
	var meta metadata
	data, err := os.ReadFile(filepath.Join(dir, "container.json"))
	if err != nil {
		return meta, err
	}
	return meta, json.Unmarshal(data, &meta)
}

func readExit(dir string) (*exitRecord, error) {
	data, err := os.ReadFile(filepath.Join(dir, "exit.json"))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var exit exitRecord
	if err := json.Unmarshal(data, &exit); err != nil {
		return nil, fmt.Errorf("exit.json: %w", err)
	}
	return &exit, nil
}

// writeJSON replaces path atomically, so that a crash leaves the old
// content or the new, never a torn file.
func writeJSON(path string, v any) error {
	data, err := json.Marshal(v)
	if err != nil {
		return err
	}
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}
