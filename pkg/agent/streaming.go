package agent

import (
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/types"
	"k8s.io/cri-streaming/pkg/streaming/remotecommand"

	"github.com/steadhq/stead/pkg/runtime"
)

// Streaming answers the kubelet API's exec, attach, port-forward and logs
// for the pods of this node (see pkg/kubeletapi).
type Streaming struct{ Node *NodeRuntime }

// latest is the newest run of the pod's container: the one with the
// highest attempt number among the runtime's containers.
func (s Streaming) latest(uid, container string, previous bool) (id string, attempt int, err error) {
	ids, err := s.Node.Containers.List()
	if err != nil {
		return "", 0, err
	}
	prefix := uid + "_" + container + "_"
	best := -1
	for _, candidate := range ids {
		if n, err := strconv.Atoi(strings.TrimPrefix(candidate, prefix)); err == nil && strings.HasPrefix(candidate, prefix) && n > best {
			best, id = n, candidate
		}
	}
	if best < 0 {
		return "", 0, fmt.Errorf("container %q of pod %s not found", container, uid)
	}
	if previous {
		best--
		if best < 0 {
			return "", 0, fmt.Errorf("container %q has no previous run", container)
		}
	}
	return id, best, nil
}

// ExecInContainer is part of kubeletapi.Runtime.
func (s Streaming) ExecInContainer(ctx context.Context, _ string, uid, container string, cmd []string, in io.Reader, out, errw io.WriteCloser, tty bool, resize <-chan remotecommand.TerminalSize, timeout time.Duration) error {
	id, _, err := s.latest(uid, container, false)
	if err != nil {
		return err
	}
	c, err := s.Node.container(id)
	if err != nil {
		return err
	}
	if timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, timeout)
		defer cancel()
	}
	streams, stop := clientStreams(ctx, in, out, errw, tty, resize)
	defer stop()
	opts := runtime.ExecOptions{Args: cmd, TTY: tty, Stdin: streams.stdin, Stdout: streams.stdout, Stderr: streams.stderr, Resize: streams.resize}
	code, err := c.Exec(ctx, opts)
	if err != nil {
		return err
	}
	if code != 0 {
		return exitError{code}
	}
	return nil
}

// streams are a client's, as the runtime takes them.
type streams struct {
	stdin          io.Reader
	stdout, stderr io.Writer
	resize         <-chan runtime.TermSize
}

// clientStreams converts the streaming library's streams for the runtime:
// nil interfaces, not typed nils, for the streams the client did not ask
// for, and its terminal's size changes until stop is called.
func clientStreams(ctx context.Context, in io.Reader, out, errw io.WriteCloser, tty bool, resize <-chan remotecommand.TerminalSize) (streams, context.CancelFunc) {
	var s streams
	if in != nil {
		s.stdin = in
	}
	if out != nil {
		s.stdout = out
	}
	if errw != nil {
		s.stderr = errw
	}
	if !tty || resize == nil {
		return s, func() {}
	}
	// Never closed: the forwarder ends with stop instead, so it cannot send
	// on a closed channel.
	fwdCtx, stop := context.WithCancel(ctx)
	sizes := make(chan runtime.TermSize, 1)
	s.resize = sizes
	go forwardResizes(fwdCtx, resize, sizes)
	return s, stop
}

// forwardResizes passes the client terminal's size changes to the runtime
// until the exec ends.
func forwardResizes(ctx context.Context, from <-chan remotecommand.TerminalSize, to chan<- runtime.TermSize) {
	for {
		select {
		case <-ctx.Done():
			return
		case size, ok := <-from:
			if !ok {
				return
			}
			select {
			case to <- runtime.TermSize{Width: size.Width, Height: size.Height}:
			case <-ctx.Done():
				return
			}
		}
	}
}

// exitError carries a command's exit code back to kubectl, which exits
// with it (the streaming library recognises ExitStatus).
type exitError struct{ code int }

func (e exitError) Error() string   { return fmt.Sprintf("command terminated with exit code %d", e.code) }
func (e exitError) String() string  { return e.Error() }
func (e exitError) Exited() bool    { return true }
func (e exitError) ExitStatus() int { return e.code }

// AttachContainer is part of kubeletapi.Runtime: it attaches to the
// newest run of the container, until the client's input ends or the
// container exits (see runtime.Container.Attach).
func (s Streaming) AttachContainer(ctx context.Context, _ string, uid, container string, in io.Reader, out, errw io.WriteCloser, tty bool, resize <-chan remotecommand.TerminalSize) error {
	id, _, err := s.latest(uid, container, false)
	if err != nil {
		return err
	}
	c, err := s.Node.container(id)
	if err != nil {
		return err
	}
	streams, stop := clientStreams(ctx, in, out, errw, tty, resize)
	defer stop()
	opts := runtime.AttachOptions{TTY: tty, Stdin: streams.stdin, Stdout: streams.stdout, Stderr: streams.stderr, Resize: streams.resize}
	return c.Attach(ctx, opts)
}

// PortForward is part of kubeletapi.Runtime: it connects to the port on
// the pod's loopback from inside the pod's network namespace, as the
// kubelet's runtime does, so that a server listening on localhost only is
// reached too (a hostNetwork pod's loopback is the node's).
func (s Streaming) PortForward(ctx context.Context, _ string, uid string, port int32, stream io.ReadWriteCloser) error {
	defer stream.Close()
	conn, err := s.Node.Containers.DialInSandbox(ctx, uid, "tcp4", net.JoinHostPort("127.0.0.1", strconv.Itoa(int(port))))
	if err != nil {
		return err
	}
	defer conn.Close()
	done := make(chan struct{}, 2)
	go func() { _, _ = io.Copy(conn, stream); done <- struct{}{} }()
	go func() { _, _ = io.Copy(stream, conn); done <- struct{}{} }()
	select {
	case <-done:
	case <-ctx.Done():
	}
	return nil
}

// ContainerLog is part of kubeletapi.Runtime.
func (s Streaming) ContainerLog(uid types.UID, container string, previous bool) (string, func() bool, error) {
	id, attempt, err := s.latest(string(uid), container, previous)
	if err != nil {
		return "", nil, err
	}
	path := filepath.Join(s.Node.PodsDir, string(uid), "logs", container, strconv.Itoa(attempt)+".log")
	if _, err := os.Stat(path); err != nil {
		return "", nil, err
	}
	running := func() bool {
		if previous {
			return false
		}
		st, err := s.Node.ContainerState(context.Background(), id)
		return err == nil && st.Running
	}
	return path, running, nil
}
