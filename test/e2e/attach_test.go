package e2e

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// kubectl run -i with its input from a pipe: the commands run, their
// output comes back, and the pod is gone when the shell exits.
func TestRunInteractive(t *testing.T) {
	c := sharedCluster(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, steadBin, "kubectl", "run", "-i", "--rm", "--restart=Never", "--image", "busybox:1.28.4", "x", "--", "sh")
	cmd.Env = append(os.Environ(), "STEAD_DATA_DIR="+c.dataDir, "KUBECONFIG=")
	cmd.Stdin = strings.NewReader("hostname\nexit\n")
	outBytes, err := cmd.CombinedOutput()
	out := string(outBytes)
	if err != nil {
		t.Fatalf("kubectl run -i: %v\n%s", err, out)
	}
	if !slices.Contains(strings.Split(out, "\n"), "x") || strings.Contains(out, "couldn't attach") {
		t.Errorf("kubectl run -i printed %q; want the pod's hostname, x, from the attached shell", out)
	}
	podGone(t, c, "x")
}

// kubectl run -it, as a user types it at a terminal.
func TestRunTerminal(t *testing.T) {
	c := sharedCluster(t)
	term := c.kubectlAtTerminal(t, "run", "-i", "--tty", "--image", "busybox:1.28.4", "dns-test", "--restart=Never", "--rm", "/bin/sh")
	term.waitFor(t, "If you don't see a command prompt")
	term.send(t, "hostname\r")
	// The container's terminal ends lines in \r\n, which kubectl, its
	// own terminal raw, passes as they are.
	term.waitFor(t, "\ndns-test\r\n")
	term.send(t, "exit\r")
	if err := term.wait(t); err != nil {
		t.Fatalf("kubectl run -it: %v\n%s", err, term.out.String())
	}
	if out := term.out.String(); strings.Contains(out, "Unable to use a TTY") || strings.Contains(out, "couldn't attach") {
		t.Errorf("kubectl run -it did not attach to the container's terminal:\n%s", out)
	}
	podGone(t, c, "dns-test")
}

// kubectl attach -it to a pod's terminal, detaching with kubectl's keys
// and attaching again: the shell lives on in between.
func TestAttachTerminal(t *testing.T) {
	c := sharedCluster(t)
	c.mustKubectl(`apiVersion: v1
kind: Pod
metadata: {name: attach-me}
spec:
  restartPolicy: Never
  containers:
  - {name: sh, image: busybox:1.28.4, command: [sh], stdin: true, tty: true}
`, "apply", "-f", "-")
	t.Cleanup(func() { _, _ = c.kubectl("", "delete", "pod", "attach-me", "--grace-period=0", "--force") })
	phase := func(want string) func() error {
		return func() error {
			out, err := c.kubectl("", "get", "pod", "attach-me", "-o", "jsonpath={.status.phase}")
			if err != nil || out != want {
				return fmt.Errorf("phase %q (%v), want %s", out, err, want)
			}
			return nil
		}
	}
	eventually(t, 2*time.Minute, "pod attach-me running", phase("Running"))

	term := c.kubectlAtTerminal(t, "attach", "-it", "attach-me")
	term.waitFor(t, "If you don't see a command prompt")
	term.send(t, "hostname\r")
	term.waitFor(t, "\nattach-me\r\n")
	// ctrl-p ctrl-q, kubectl's detach keys, end its input: a detach.
	term.send(t, "\x10\x11")
	if err := term.wait(t); err != nil {
		t.Fatalf("kubectl attach -it, detached: %v\n%s", err, term.out.String())
	}
	if err := phase("Running")(); err != nil {
		t.Fatalf("after a detach: %v", err)
	}

	term = c.kubectlAtTerminal(t, "attach", "-it", "attach-me")
	term.waitFor(t, "If you don't see a command prompt")
	term.send(t, "echo again-$((40+2))\r")
	term.waitFor(t, "\nagain-42\r\n")
	term.send(t, "exit 0\r")
	if err := term.wait(t); err != nil {
		t.Fatalf("kubectl attach -it, shell exited: %v\n%s", err, term.out.String())
	}
	eventually(t, time.Minute, "pod attach-me succeeded", phase("Succeeded"))
	// The session is in the container's log, a line a record.
	logs := c.mustKubectl("", "logs", "attach-me")
	if lines := strings.Split(logs, "\n"); !slices.Contains(lines, "attach-me") || !slices.Contains(lines, "again-42") {
		t.Errorf("kubectl logs: %q; want the session's output lines", logs)
	}
}

func podGone(t *testing.T, c *cluster, name string) {
	t.Helper()
	eventually(t, time.Minute, "pod "+name+" deleted", func() error {
		out, err := c.kubectl("", "get", "pod", name)
		if err == nil || !strings.Contains(out, "NotFound") {
			return fmt.Errorf("get pod %s: %v: %s", name, err, out)
		}
		return nil
	})
}

// terminal is a kubectl whose stdin, stdout and stderr are a terminal, as
// at a user's shell: without one kubectl will not ask for the container's.
type terminal struct {
	master *os.File
	out    syncBuffer
	cmd    *exec.Cmd
	exited chan struct{}
	err    error
}

func (c *cluster) kubectlAtTerminal(t *testing.T, args ...string) *terminal {
	t.Helper()
	master, slave, err := openPty()
	if err != nil {
		t.Fatal(err)
	}
	defer slave.Close()
	if err := unix.IoctlSetWinsize(int(slave.Fd()), unix.TIOCSWINSZ, &unix.Winsize{Row: 24, Col: 80}); err != nil {
		t.Fatal(err)
	}
	term := &terminal{master: master, exited: make(chan struct{})}
	term.cmd = exec.Command(steadBin, append([]string{"kubectl"}, args...)...)
	term.cmd.Env = append(os.Environ(), "STEAD_DATA_DIR="+c.dataDir, "KUBECONFIG=", "TERM=xterm")
	term.cmd.Stdin, term.cmd.Stdout, term.cmd.Stderr = slave, slave, slave
	// Its controlling terminal, as a login shell's child has.
	term.cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Setctty: true, Ctty: 0}
	if err := term.cmd.Start(); err != nil {
		master.Close()
		t.Fatal(err)
	}
	output := make(chan struct{})
	go func() {
		// Ends with EIO once kubectl, the terminal's last user, exits.
		_, _ = io.Copy(&term.out, master)
		close(output)
	}()
	go func() {
		term.err = term.cmd.Wait()
		<-output
		close(term.exited)
	}()
	t.Cleanup(func() {
		select {
		case <-term.exited:
		default:
			_ = term.cmd.Process.Kill()
			<-term.exited
		}
		master.Close()
	})
	return term
}

func (term *terminal) send(t *testing.T, keys string) {
	t.Helper()
	if _, err := io.WriteString(term.master, keys); err != nil {
		t.Fatal(err)
	}
}

func (term *terminal) waitFor(t *testing.T, what string) {
	t.Helper()
	deadline := time.After(2 * time.Minute)
	for !strings.Contains(term.out.String(), what) {
		select {
		case <-term.exited:
			if !strings.Contains(term.out.String(), what) {
				t.Fatalf("kubectl exited (%v) before its terminal showed %q:\n%s", term.err, what, term.out.String())
			}
		case <-deadline:
			t.Fatalf("kubectl's terminal never showed %q:\n%s", what, term.out.String())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// wait returns kubectl's exit status once it has exited.
func (term *terminal) wait(t *testing.T) error {
	t.Helper()
	select {
	case <-term.exited:
		return term.err
	case <-time.After(2 * time.Minute):
		t.Fatalf("kubectl still runs:\n%s", term.out.String())
		return nil
	}
}

// openPty is a new pseudo-terminal: the master side, non-blocking so that
// closing it ends a read, and the terminal kubectl gets.
func openPty() (master, slave *os.File, err error) {
	fd, err := unix.Open("/dev/ptmx", unix.O_RDWR|unix.O_NOCTTY|unix.O_CLOEXEC|unix.O_NONBLOCK, 0)
	if err != nil {
		return nil, nil, err
	}
	master = os.NewFile(uintptr(fd), "/dev/ptmx")
	if err := unix.IoctlSetPointerInt(fd, unix.TIOCSPTLCK, 0); err != nil {
		master.Close()
		return nil, nil, err
	}
	n, err := unix.IoctlGetUint32(fd, unix.TIOCGPTN)
	if err != nil {
		master.Close()
		return nil, nil, err
	}
	slave, err = os.OpenFile(fmt.Sprintf("/dev/pts/%d", n), os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		master.Close()
		return nil, nil, err
	}
	return master, slave, nil
}
