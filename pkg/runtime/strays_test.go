package runtime

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	goruntime "runtime"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// zombie starts a child whose name (comm) is name, which exits at once
// and which nothing waits for.
func zombie(t *testing.T, name string) *exec.Cmd {
	t.Helper()
	// comm is the base name of what was executed.
	path := filepath.Join(t.TempDir(), name)
	if err := os.Symlink("/bin/true", path); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(path)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(5 * time.Second); !isZombie(cmd.Process.Pid); time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%s never became a zombie", name)
		}
	}
	t.Cleanup(func() { _ = cmd.Wait() })
	return cmd
}

func isZombie(pid int) bool {
	_, state, ok := procState(pid)
	return ok && state == 'Z'
}

func TestReapStraysReapsOnlyDeadStagesNobodyWaitsFor(t *testing.T) {
	second := zombie(t, "runc:[1:CHILD]")
	third := zombie(t, "runc:[2:INIT]")
	first := zombie(t, "runc:[0:PARENT]") // os/exec's: libcontainer waits for it
	other := zombie(t, "true")
	owned := zombie(t, "runc:[2:INIT]")
	// An owner that reaps within the grace keeps its process, and its
	// exit status.
	ownerDone := make(chan error, 1)
	go func() {
		time.Sleep(50 * time.Millisecond)
		ownerDone <- owned.Wait()
	}()

	// A failed exec of another test may have a pass of its own under
	// way, which reaps these as well: what counts is what is left.
	reapStrays(time.Second)
	if err := <-ownerDone; err != nil {
		t.Errorf("the owner's wait: %v", err)
	}
	for _, c := range []struct {
		name   string
		cmd    *exec.Cmd
		reaped bool
	}{
		{"second stage", second, true},
		{"third stage", third, true},
		{"first stage", first, false},
		{"another program", other, false},
	} {
		if got := !isZombie(c.cmd.Process.Pid); got != c.reaped {
			t.Errorf("%s reaped: %v, want %v", c.name, got, c.reaped)
		}
	}
	if n := reapStrays(0); n != 0 {
		t.Errorf("second pass reaped %d, want 0", n)
	}
}

// strayIn starts a process that stands for libcontainer's third stage
// after a failed exec: a child of this process, named as that stage is,
// in the PID namespace of pid, and never waited for.
func strayIn(t *testing.T, pid int) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "runc:[2:INIT]")
	if err := os.Symlink("/bin/sleep", path); err != nil {
		t.Fatal(err)
	}
	started := make(chan error, 1)
	go func() {
		// Not unlocked: the thread stays in the namespace, so Go ends it
		// with the goroutine.
		goruntime.LockOSThread()
		ns, err := os.Open(fmt.Sprintf("/proc/%d/ns/pid", pid))
		if err != nil {
			started <- err
			return
		}
		defer ns.Close()
		// The thread's children are born in the namespace.
		if err := unix.Setns(int(ns.Fd()), unix.CLONE_NEWPID); err != nil {
			started <- err
			return
		}
		started <- exec.Command(path, "600").Start()
	}()
	if err := <-started; err != nil {
		t.Fatal(err)
	}
}

// A container whose PID namespace holds a dead process that nobody reaps
// cannot finish dying: a kill still ends it, the stray reaped, whether the
// node kills it or --cleanup kills everything.
func TestKilledContainerExitsDespiteAStrayInItsNamespace(t *testing.T) {
	for _, tt := range []struct {
		name string
		kill func(r *Runtime, c *Container) error
	}{
		{"Signal", func(_ *Runtime, c *Container) error { return c.Signal(unix.SIGKILL) }},
		{"DestroyAll", func(r *Runtime, _ *Container) error { return DestroyAll(r.root, 10*time.Second) }},
	} {
		t.Run(tt.name, func(t *testing.T) {
			r := newRuntime(t)
			ensureSandbox(t, r, "pod-stray", "stray")
			c := start(t, r, ContainerSpec{ID: "strayed", PodUID: "pod-stray", Args: toolbox("echo ready ; sleep 600")})
			waitForLog(t, c.meta.LogPath, "ready")
			strayIn(t, c.Pid())
			if err := tt.kill(r, c); err != nil {
				t.Fatal(err)
			}
			select {
			case <-c.Exited():
			case <-time.After(10 * time.Second):
				t.Fatal("the container still runs 10s after SIGKILL")
			}
			if st, err := c.State(); err != nil || st.ExitCode != 137 {
				t.Errorf("state %+v, %v; want exit code 137", st, err)
			}
		})
	}
}
