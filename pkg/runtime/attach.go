package runtime

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"syscall"

	"golang.org/x/sys/unix"
)

// AttachOptions connect a client to the process of a running container.
type AttachOptions struct {
	// Stdin is written to the process's standard input when the container
	// has one (ContainerSpec.Stdin), and is not read otherwise.
	Stdin io.Reader
	// Stdout and Stderr receive the output from the moment of attaching,
	// not what came before (that is in the log); nil leaves a stream out.
	// A container's terminal is all on Stdout.
	Stdout, Stderr io.Writer
	// TTY says the client wants the container's terminal: a process
	// cannot be given one once it runs, so Attach fails if it has none.
	TTY bool
	// Resize carries the client terminal's size changes to the
	// container's terminal.
	Resize <-chan TermSize
}

// Attach connects a client to the running container's process, and
// returns once the client's input ends, the container exits, the client
// can no longer be written to, or ctx ends.
//
// The end of the client's input detaches it, but from a container with
// StdinOnce and no terminal: there it closes the process's standard input
// and the output goes on to the client until the container exits, so that
// what the process makes of the end of its input is seen (`kubectl run -i`
// with its input from a pipe), as containerd and Docker have it. With
// StdinOnce, the first client that was given the process's input closes
// it when it detaches, however that comes about. A terminal's input is
// never closed: a terminal has no end of input but a hangup, which would
// end the session rather than detach from it.
//
// The output reaches clients as it is read; a client that does not read
// holds it back, the log's included, as with containerd's attach.
func (c *Container) Attach(ctx context.Context, opts AttachOptions) error {
	if c.lc == nil {
		return fmt.Errorf("container %s never started", c.id)
	}
	if opts.TTY && !c.meta.TTY {
		return fmt.Errorf("container %s has no terminal", c.id)
	}
	if c.meta.TTY && c.terminal == nil {
		return fmt.Errorf("container %s: its terminal ended with the stead that started it", c.id)
	}
	select {
	case <-c.exited:
		return fmt.Errorf("container %s is not running", c.id)
	default:
	}

	// Nil channels, never ready, for the streams the client left out.
	var stdoutGone, stderrGone <-chan struct{}
	if opts.Stdout != nil {
		client := c.stdout.add(opts.Stdout)
		defer c.stdout.remove(client)
		stdoutGone = client.failed
	}
	if opts.Stderr != nil && !c.meta.TTY {
		client := c.stderr.add(opts.Stderr)
		defer c.stderr.remove(client)
		stderrGone = client.failed
	}

	var inputDone chan struct{}
	if opts.Stdin != nil {
		input, err := c.input()
		if err != nil {
			return fmt.Errorf("attach to container %s: %w", c.id, err)
		}
		if input != nil {
			// Closed when Attach returns, so that nothing the client
			// sends later reaches the process.
			defer input.Close()
			if c.meta.StdinOnce && !c.meta.TTY {
				defer c.closeStdin()
			}
			inputDone = make(chan struct{})
			// Not waited for: it may block reading the client's stream.
			go func() {
				_, _ = io.Copy(input, opts.Stdin)
				close(inputDone)
			}()
		}
	}

	if c.terminal != nil && opts.Resize != nil {
		stop := make(chan struct{})
		defer close(stop)
		go func() {
			for {
				select {
				case size, ok := <-opts.Resize:
					if !ok {
						return
					}
					_ = resize(c.terminal, size)
				case <-stop:
					return
				}
			}
		}()
	}

	for {
		select {
		case <-inputDone:
			if !c.meta.StdinOnce || c.meta.TTY {
				return nil
			}
			c.closeStdin()
			inputDone = nil
		case <-c.exited:
			// Recorded once the output was copied: the client has it all.
			return nil
		case <-stdoutGone:
			return nil
		case <-stderrGone:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// input is where a client's input goes: a file of the attach's own, so
// that closing it when the attach ends leaves the process's standard
// input open (but with StdinOnce) and ends a write that waits for the
// process to read. It is nil when there is no input to give.
func (c *Container) input() (*os.File, error) {
	switch {
	case !c.meta.Stdin:
		return nil, nil
	case c.meta.TTY:
		return dupFile(c.terminal)
	case c.meta.StdinOnce:
		c.mu.Lock()
		defer c.mu.Unlock()
		// Closed by an earlier client, or with the stead that held it.
		if c.stdin == nil {
			return nil, nil
		}
		f, err := dupFile(c.stdin)
		if err == nil {
			// Closed with c.stdin: any client's may be the last write end.
			c.stdinDups = append(c.stdinDups, f)
		}
		return f, err
	}
	// Non-blocking, so that the open needs no reader (the process holds
	// one) and writes wait in Go's poller, where closing ends them.
	f, err := os.OpenFile(filepath.Join(c.dir, "stdin"), os.O_WRONLY|syscall.O_NONBLOCK, 0)
	if errors.Is(err, unix.ENXIO) {
		return nil, nil // the process closed its standard input
	}
	return f, err
}

// closeStdin gives a StdinOnce process EOF on its standard input, once
// what was written is read.
func (c *Container) closeStdin() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.stdin != nil {
		c.stdin.Close()
		c.stdin = nil
	}
	for _, f := range c.stdinDups {
		f.Close()
	}
	c.stdinDups = nil
}

// dupFile is another descriptor for f's open file, closed on its own.
func dupFile(f *os.File) (*os.File, error) {
	conn, err := f.SyscallConn()
	if err != nil {
		return nil, err
	}
	fd := -1
	var dupErr error
	if err := conn.Control(func(raw uintptr) {
		fd, dupErr = unix.FcntlInt(raw, unix.F_DUPFD_CLOEXEC, 0)
	}); err != nil {
		return nil, err
	}
	if dupErr != nil {
		return nil, dupErr
	}
	// f is non-blocking, and so the duplicate: NewFile makes it use Go's
	// poller.
	return os.NewFile(uintptr(fd), f.Name()), nil
}

// fanout passes one output stream of the container to the clients
// attached at the time.
type fanout struct {
	mu      sync.Mutex
	clients []*attached
}

// attached is a client's writer for one stream.
type attached struct {
	mu     sync.Mutex // held while writing, so that remove waits for a write
	w      io.Writer
	done   bool
	failed chan struct{} // closed when a write fails
}

func (f *fanout) add(w io.Writer) *attached {
	a := &attached{w: w, failed: make(chan struct{})}
	f.mu.Lock()
	f.clients = append(f.clients, a)
	f.mu.Unlock()
	return a
}

// remove stops the writes to a, and returns once none is under way: the
// writer is the caller's again.
func (f *fanout) remove(a *attached) {
	f.mu.Lock()
	f.clients = slices.DeleteFunc(f.clients, func(c *attached) bool { return c == a })
	f.mu.Unlock()
	a.mu.Lock()
	a.done = true
	a.mu.Unlock()
}

// Write never fails: a client that cannot be written to is the client's
// problem, not the log's.
func (f *fanout) Write(p []byte) (int, error) {
	f.mu.Lock()
	clients := slices.Clone(f.clients)
	f.mu.Unlock()
	for _, a := range clients {
		a.write(p)
	}
	return len(p), nil
}

func (a *attached) write(p []byte) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.done {
		return
	}
	if _, err := a.w.Write(p); err != nil {
		a.done = true
		close(a.failed)
	}
}
