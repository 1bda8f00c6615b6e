package runtime

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/opencontainers/runc/libcontainer"
	"golang.org/x/sys/unix"

	// Without it, libcontainer's cgroup managers cannot apply device rules
	// and refuse any configuration that lists devices.
	_ "github.com/opencontainers/cgroups/devices"
	// nsexec, run as a C constructor before the Go runtime starts, is what
	// joins and creates namespaces in a container's init.
	_ "github.com/opencontainers/runc/libcontainer/nsenter"
)

// Init must be the first thing main calls. In a container's init process
// (stead re-executed by libcontainer as "<argv0> init") it becomes the
// container and never returns; otherwise it returns at once.
func Init() {
	if len(os.Args) > 1 && os.Args[1] == "init" {
		libcontainer.Init()
	}
}

// Runtime runs the containers of one node. Its methods are safe for
// concurrent use.
type Runtime struct {
	root         string
	cgroupParent string

	mu         sync.Mutex
	containers map[string]*Container
	starting   map[string]bool // ids that Start is creating

	// sandboxMu serializes making and removing sandboxes, which take
	// milliseconds, so that two callers never half-make one each.
	sandboxMu sync.Mutex
}

// New keeps the runtime's state under root (for example
// <data-dir>/run/containers) and puts pods' cgroups under cgroupParent (for
// example "stead").
func New(root, cgroupParent string) (*Runtime, error) {
	if !filepath.IsAbs(root) {
		return nil, fmt.Errorf("runtime root %q is not absolute", root)
	}
	cgroupParent = strings.Trim(cgroupParent, "/")
	if cgroupParent == "" {
		return nil, errors.New("runtime needs a cgroup parent")
	}
	for _, dir := range []string{"state", "containers", "sandboxes"} {
		if err := os.MkdirAll(filepath.Join(root, dir), 0o700); err != nil {
			return nil, err
		}
	}
	return &Runtime{root: root, cgroupParent: cgroupParent, containers: map[string]*Container{}, starting: map[string]bool{}}, nil
}

func (r *Runtime) stateDir() string              { return filepath.Join(r.root, "state") }
func (r *Runtime) containerDir(id string) string { return filepath.Join(r.root, "containers", id) }

// List names every container this runtime has state for, running or not,
// including those a previous stead started.
func (r *Runtime) List() ([]string, error) {
	entries, err := os.ReadDir(filepath.Join(r.root, "containers"))
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

// Load returns the container with this id: the one this runtime already
// holds, or else one a previous stead left, adopted without being started
// again. Adopting resumes copying its output to its log, but for a
// container with a terminal, which hung up when that stead exited.
func (r *Runtime) Load(id string) (*Container, error) {
	if err := validateID(id); err != nil {
		return nil, err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if c, ok := r.containers[id]; ok {
		return c, nil
	}
	if r.starting[id] {
		return nil, fmt.Errorf("container %s is being started", id)
	}
	dir := r.containerDir(id)
	meta, err := readMetadata(dir)
	if err != nil {
		return nil, fmt.Errorf("container %s: %w", id, err)
	}
	c := &Container{id: id, dir: dir, meta: meta, runtime: r, exited: make(chan struct{})}
	if c.exit, err = readExit(dir); err != nil {
		return nil, fmt.Errorf("container %s: %w", id, err)
	}
	if c.exit != nil {
		close(c.exited)
	}
	// A stead that died between writing container.json and creating the
	// libcontainer state leaves a container that never ran: it can only
	// be removed.
	if lc, err := libcontainer.Load(r.stateDir(), id); err == nil {
		c.lc = lc
	} else if !errors.Is(err, libcontainer.ErrNotExist) {
		return nil, fmt.Errorf("container %s: %w", id, err)
	}
	if c.lc != nil && c.exit == nil {
		// A container whose init waits for the go-ahead that a crashed
		// stead never gave has not run its process: end it, so that it
		// reads as stopped rather than running forever.
		if status, err := c.lc.Status(); err == nil && status == libcontainer.Created {
			_ = c.lc.Signal(unix.SIGKILL)
		}
		if c.meta.TTY {
			c.logsDone = closedChannel()
		} else {
			c.logsDone = c.copyLogs()
		}
		c.watchAdopted()
	} else {
		c.logsDone = closedChannel()
	}
	r.containers[id] = c
	return c, nil
}

func (r *Runtime) forget(id string) {
	r.mu.Lock()
	delete(r.containers, id)
	r.mu.Unlock()
}

// validateID keeps ids to libcontainer's characters, which are also safe
// as one path element.
func validateID(id string) error {
	if id == "" || id == "." || id == ".." || len(id) > 200 {
		return fmt.Errorf("id %q: want a name of letters, digits and _ + - .", id)
	}
	for _, c := range id {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.ContainsRune("_+-.", c)) {
			return fmt.Errorf("id %q: want a name of letters, digits and _ + - .", id)
		}
	}
	return nil
}

// KillAll sends SIGKILL to every running container under root (a
// Runtime's root), reading only the state libcontainer keeps: it is how a
// node fences itself, from a process other than the stead that started
// the containers, and it leaves their records for that stead to reap.
func KillAll(root string) (killed int, err error) {
	containers, err := stateContainers(root)
	if err != nil {
		return 0, err
	}
	var errs []error
	for _, lc := range containers {
		status, err := lc.Status()
		if err != nil || status == libcontainer.Stopped {
			continue
		}
		if err := lc.Signal(unix.SIGKILL); err != nil && !errors.Is(err, libcontainer.ErrNotRunning) {
			errs = append(errs, fmt.Errorf("kill container %s: %w", lc.ID(), err))
			continue
		}
		killed++
	}
	return killed, errors.Join(errs...)
}

// DestroyAll kills every container under root and removes their state and
// cgroups, for a node that leaves this machine (--cleanup). Containers that
// appear meanwhile (a pod worker finishing a start) are killed in turn; it
// gives up after timeout.
func DestroyAll(root string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		killed, err := KillAll(root)
		if err != nil {
			return err
		}
		if killed > 0 {
			// An init that a stray holds (strays.go) reads as stopped
			// here, its thread group's leader a zombie, and is not done.
			reapStrayStages()
		}
		containers, err := stateContainers(root)
		if err != nil {
			return err
		}
		running := 0
		for _, lc := range containers {
			if status, err := lc.Status(); err != nil || status != libcontainer.Stopped {
				running++
				continue
			}
			if err := lc.Destroy(); err != nil {
				return fmt.Errorf("remove container %s: %w", lc.ID(), err)
			}
		}
		if running == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%d containers still running after %v", running, timeout)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// stateContainers loads every container that libcontainer keeps state for
// under root, but those being created or removed.
func stateContainers(root string) ([]*libcontainer.Container, error) {
	entries, err := os.ReadDir(filepath.Join(root, "state"))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	} else if err != nil {
		return nil, err
	}
	var containers []*libcontainer.Container
	for _, e := range entries {
		if lc, err := libcontainer.Load(filepath.Join(root, "state"), e.Name()); err == nil {
			containers = append(containers, lc)
		}
	}
	return containers, nil
}
