package runtime

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// output is a client's stream, read while the attach writes it.
type output struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (o *output) Write(p []byte) (int, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.buf.Write(p)
}

func (o *output) String() string {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.buf.String()
}

func (o *output) waitFor(t *testing.T, s string) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if strings.Contains(o.String(), s) {
			return
		}
	}
	t.Fatalf("%q never attached output; got %q", s, o.String())
}

// attach runs Attach in the background; its result arrives on the channel.
func attach(c *Container, ctx context.Context, opts AttachOptions) <-chan error {
	done := make(chan error, 1)
	go func() { done <- c.Attach(ctx, opts) }()
	return done
}

func attachResult(t *testing.T, done <-chan error) error {
	t.Helper()
	select {
	case err := <-done:
		return err
	case <-time.After(20 * time.Second):
		t.Fatal("Attach did not return")
		return nil
	}
}

func running(t *testing.T, c *Container) bool {
	t.Helper()
	st, err := c.State()
	if err != nil {
		t.Fatal(err)
	}
	return st.Running
}

// kubectl run -i with its input from a pipe: the input ends at once, and
// what the process does next must still reach the client.
func TestAttachStdinOnce(t *testing.T) {
	r := newRuntime(t)
	ensureSandbox(t, r, "pod-once", "once")
	c := start(t, r, ContainerSpec{
		ID: "once", PodUID: "pod-once", Args: toolbox("echo before ; stdin ; sleep 1 ; errecho after-eof ; echo bye ; exit 3"),
		Stdin: true, StdinOnce: true,
	})
	waitForLog(t, c.meta.LogPath, "before")
	var out, errOut output
	err := c.Attach(context.Background(), AttachOptions{Stdin: strings.NewReader("ping\npong\n"), Stdout: &out, Stderr: &errOut})
	if err != nil {
		t.Fatal(err)
	}
	// Attach returned when the container exited, having passed it all.
	if st := waitExit(t, c); st.ExitCode != 3 {
		t.Errorf("exit code %d, want 3", st.ExitCode)
	}
	if out.String() != "ping\npong\nbye\n" || errOut.String() != "after-eof\n" {
		t.Errorf("attached stdout %q stderr %q; want what came after attaching, to the end", out.String(), errOut.String())
	}
	if got, want := stdout(t, c.meta.LogPath), []string{"before", "ping", "pong", "bye"}; !slices.Equal(got, want) {
		t.Errorf("log's stdout %q, want %q", got, want)
	}
	if err := c.Attach(context.Background(), AttachOptions{Stdout: &out}); err == nil {
		t.Error("Attach to a stopped container succeeded")
	}
}

func TestAttachStdinStaysOpen(t *testing.T) {
	r := newRuntime(t)
	ensureSandbox(t, r, "pod-open", "open")
	c := start(t, r, ContainerSpec{ID: "open", PodUID: "pod-open", Args: toolbox("stdin ; echo eof"), Stdin: true})
	for _, word := range []string{"one", "two"} {
		in, client := io.Pipe()
		var out output
		done := attach(c, context.Background(), AttachOptions{Stdin: in, Stdout: &out})
		if _, err := io.WriteString(client, word+"\n"); err != nil {
			t.Fatal(err)
		}
		out.waitFor(t, word+"\n")
		// The client's input ends: it detaches, and the process's input
		// stays open for the next.
		client.Close()
		if err := attachResult(t, done); err != nil {
			t.Fatal(err)
		}
		if out.String() != word+"\n" {
			t.Errorf("client %s got %q", word, out.String())
		}
	}
	time.Sleep(100 * time.Millisecond)
	if !running(t, c) || slices.Contains(stdout(t, c.meta.LogPath), "eof") {
		t.Errorf("the process's input ended with a client's; log %q", logText(c.meta.LogPath))
	}
}

func TestAttachTerminal(t *testing.T) {
	r := newRuntime(t)
	ensureSandbox(t, r, "pod-tty", "tty")
	c := start(t, r, ContainerSpec{
		ID: "tty", PodUID: "pod-tty", Args: toolbox("isatty ; waitsize 100 30 ; stdin ; errecho bye"),
		Stdin: true, StdinOnce: true, TTY: true,
	})
	waitForLog(t, c.meta.LogPath, "true")

	// A first client resizes the terminal, types a line and goes.
	in, client := io.Pipe()
	var first output
	sizes := make(chan TermSize, 1)
	sizes <- TermSize{Width: 100, Height: 30}
	done := attach(c, context.Background(), AttachOptions{Stdin: in, Stdout: &first, TTY: true, Resize: sizes})
	first.waitFor(t, "size 100x30\r\n")
	if _, err := io.WriteString(client, "hello\n"); err != nil {
		t.Fatal(err)
	}
	// Echoed by the terminal, then copied by the process.
	first.waitFor(t, "hello\r\nhello\r\n")
	client.Close()
	if err := attachResult(t, done); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(first.String(), "true") {
		t.Errorf("the client got output from before it attached: %q", first.String())
	}
	// A terminal's input is not closed, StdinOnce or not: a second
	// client ends the process's input with the terminal's EOF character.
	time.Sleep(100 * time.Millisecond)
	if !running(t, c) {
		t.Fatal("the process ended when the first client left")
	}
	var second output
	if err := c.Attach(context.Background(), AttachOptions{Stdin: strings.NewReader("\x04"), Stdout: &second, TTY: true}); err != nil {
		t.Fatal(err)
	}
	// Its input ended with the EOF character: it may have detached
	// before the process's goodbye, which the log has in any case.
	if st := waitExit(t, c); st.ExitCode != 0 {
		t.Errorf("exit code %d", st.ExitCode)
	}
	// One stream, stdout, as containerd logs a terminal; lines without
	// the terminal's \r.
	var got []string
	for _, rec := range readLog(t, c.meta.LogPath) {
		got = append(got, rec.stream+" "+rec.content)
	}
	want := []string{"stdout true", "stdout size 100x30", "stdout hello", "stdout hello", "stdout bye"}
	if !slices.Equal(got, want) {
		t.Errorf("log %q, want %q", got, want)
	}

	other := start(t, r, ContainerSpec{ID: "no-tty", PodUID: "pod-tty", Args: toolbox("sleep 600")})
	if err := other.Attach(context.Background(), AttachOptions{Stdout: &second, TTY: true}); err == nil {
		t.Error("Attach with TTY to a container without a terminal succeeded")
	}
}

// Attaching to a container that takes no input follows its output until
// the client leaves: ctx ends, or the client cannot be written to.
func TestAttachOutputOnly(t *testing.T) {
	r := newRuntime(t)
	ensureSandbox(t, r, "pod-out", "out")
	c := start(t, r, ContainerSpec{ID: "ticker", PodUID: "pod-out", Args: toolbox("tick")})
	waitForLog(t, c.meta.LogPath, "tick 3")

	ctx, cancel := context.WithCancel(context.Background())
	var out output
	// Input to a container without any is not read.
	done := attach(c, ctx, AttachOptions{Stdin: strings.NewReader("ignored\n"), Stdout: &out})
	out.waitFor(t, "\n")
	for strings.Count(out.String(), "\n") < 5 {
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	if err := attachResult(t, done); !errors.Is(err, context.Canceled) {
		t.Errorf("Attach after its context ended: %v", err)
	}
	got := strings.Split(strings.TrimSuffix(out.String(), "\n"), "\n")
	// Clients get the output before the log does.
	waitForLog(t, c.meta.LogPath, got[len(got)-1])
	logged := stdout(t, c.meta.LogPath)
	first := slices.Index(logged, got[0])
	if first <= 0 || !slices.Equal(got, logged[first:first+len(got)]) {
		t.Errorf("attached output %q is not a run of the log's lines after the first", got)
	}

	failing := &failingWriter{}
	if err := attachResult(t, attach(c, context.Background(), AttachOptions{Stdout: failing})); err != nil {
		t.Errorf("Attach of a client that is gone: %v", err)
	}
	if !running(t, c) {
		t.Error("the container stopped")
	}
}

type failingWriter struct{}

func (*failingWriter) Write([]byte) (int, error) { return 0, errors.New("client gone") }

// What survives the exit of the stead that started the containers: a
// standard input that is not StdinOnce does; a StdinOnce one ends, and a
// terminal hangs up (see the package documentation).
func TestAttachAfterAgentExits(t *testing.T) {
	r := newRuntime(t)
	t.Cleanup(func() {
		if err := r.RemoveSandbox("pod-adopt-in"); err != nil {
			t.Errorf("remove sandbox: %v", err)
		}
	})
	logDir := t.TempDir()
	spec := func(id, script string, once, tty bool) ContainerSpec {
		return ContainerSpec{
			ID: id, PodUID: "pod-adopt-in", LowerDirs: layers, Args: toolbox(script),
			LogPath: filepath.Join(logDir, id+".log"), Stdin: true, StdinOnce: once, TTY: tty,
		}
	}
	cfg := agentConfig{
		Root: r.root, CgroupParent: r.cgroupParent, PodUID: "pod-adopt-in",
		Containers: []ContainerSpec{
			spec("open", "stdin ; echo eof ; sleep 600", false, false),
			spec("once", "stdin ; echo eof ; sleep 600", true, false),
			spec("tty", "stdin", true, true),
		},
	}
	config, err := json.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	agent := exec.Command(os.Args[0])
	agent.Env = append(os.Environ(), agentEnv+"="+string(config))
	if out, err := agent.CombinedOutput(); err != nil {
		t.Fatalf("agent: %v\n%s", err, out)
	}
	load := func(id string) *Container {
		c, err := r.Load(id)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			_ = c.Signal(unix.SIGKILL)
			waitExit(t, c)
			_ = c.Remove()
		})
		return c
	}
	open, once, tty := load("open"), load("once"), load("tty")

	var out output
	if err := open.Attach(context.Background(), AttachOptions{Stdin: strings.NewReader("still here\n"), Stdout: &out}); err != nil {
		t.Fatal(err)
	}
	waitForLog(t, open.meta.LogPath, "still here")
	if slices.Contains(stdout(t, open.meta.LogPath), "eof") {
		t.Error("the input that is not StdinOnce ended with the agent")
	}

	// The stead that held its input's write end is gone.
	waitForLog(t, once.meta.LogPath, "eof")

	// Hung up: the process read EOF (as init, it ignores SIGHUP) and
	// exited, and a client finds no terminal.
	waitExit(t, tty)
	if err := tty.Attach(context.Background(), AttachOptions{Stdout: &out, TTY: true}); err == nil {
		t.Error("Attach to a container whose terminal hung up succeeded")
	}
}
