package runtime

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"syscall"

	"github.com/opencontainers/runc/libcontainer"
	"golang.org/x/sys/unix"
)

// TermSize is a terminal's size in characters.
type TermSize struct {
	Width, Height uint16
}

// ExecOptions describe a process to run in a running container.
type ExecOptions struct {
	Args []string
	// Env is the process's environment; nil means the container's.
	Env []string
	// Stdin, Stdout and Stderr may be nil. With TTY, Stdout receives the
	// terminal's output (stdout and stderr both) and Stderr is unused.
	Stdin          io.Reader
	Stdout, Stderr io.Writer
	TTY            bool
	// Resize, with TTY, carries the client terminal's size changes.
	Resize <-chan TermSize
}

// Exec runs a process in the running container, as the container's user
// and in its working directory, and returns its exit code (128+n when
// signal n ended it). Cancelling ctx kills the process. Exec returns once
// the process has exited and its output has been copied.
func (c *Container) Exec(ctx context.Context, opts ExecOptions) (int, error) {
	if c.lc == nil {
		return -1, fmt.Errorf("container %s never started", c.id)
	}
	if len(opts.Args) == 0 {
		return -1, errors.New("exec: no command")
	}
	env := opts.Env
	if env == nil {
		env = c.meta.Env
	}
	groups := make([]int, len(c.meta.Groups))
	for i, g := range c.meta.Groups {
		groups[i] = int(g)
	}
	p := &libcontainer.Process{
		Args: opts.Args, Env: env, Cwd: c.meta.WorkingDir,
		UID: int(c.meta.UID), GID: int(c.meta.GID), AdditionalGroups: groups,
	}
	var streams execStreams
	defer streams.closeAll()
	if opts.TTY {
		if err := streams.consoleSocket(p); err != nil {
			return -1, err
		}
	} else if err := streams.pipes(p, opts); err != nil {
		return -1, err
	}
	if err := c.lc.Run(p); err != nil {
		reapStrayStages()
		return -1, fmt.Errorf("exec in container %s: %w", c.id, err)
	}
	// Only the process may hold the ends it was given: the output reaches
	// EOF when it and its children are done with them.
	streams.closeChildEnds()
	if opts.TTY {
		if err := streams.terminal(opts); err != nil {
			_ = p.Signal(unix.SIGKILL)
			_, _ = p.Wait()
			return -1, err
		}
	}

	exited := make(chan struct{})
	go func() {
		select {
		case <-ctx.Done():
			_ = p.Signal(unix.SIGKILL)
		case <-exited:
		}
	}()
	status, err := p.Wait()
	close(exited)
	if status == nil {
		return -1, fmt.Errorf("exec in container %s: %w", c.id, err)
	}
	select {
	case <-streams.outputDone():
	case <-ctx.Done():
		// What the process left running may hold its output open: end
		// the copies, so that none writes once Exec has returned.
		streams.closeAll()
		<-streams.outputDone()
	}
	if ws, ok := status.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		return 128 + int(ws.Signal()), nil
	}
	return status.ExitCode(), nil
}

// execStreams connects an exec'd process to its caller's streams.
type execStreams struct {
	childEnds  []*os.File // given to the process; closed here once it has them
	parentEnds []*os.File // closed when Exec returns
	copiers    sync.WaitGroup
	socket     *os.File // receives the terminal's master side
}

func (s *execStreams) closeChildEnds() {
	for _, f := range s.childEnds {
		f.Close()
	}
	s.childEnds = nil
}

func (s *execStreams) closeAll() {
	s.closeChildEnds()
	for _, f := range s.parentEnds {
		f.Close()
	}
}

func (s *execStreams) outputDone() <-chan struct{} {
	done := make(chan struct{})
	go func() {
		s.copiers.Wait()
		close(done)
	}()
	return done
}

// pipes gives the process pipes rather than the caller's readers and
// writers, which libcontainer (os/exec) would wait on: a stdin that never
// ends would keep Exec from returning.
func (s *execStreams) pipes(p *libcontainer.Process, opts ExecOptions) error {
	if opts.Stdin != nil {
		r, w, err := os.Pipe()
		if err != nil {
			return err
		}
		s.childEnds, s.parentEnds = append(s.childEnds, r), append(s.parentEnds, w)
		p.Stdin = r
		// Not waited for: it may block reading the caller's stream.
		go func() {
			_, _ = io.Copy(w, opts.Stdin)
			w.Close() // the process reads EOF
		}()
	}
	output := func(dst io.Writer) (*os.File, error) {
		if dst == nil {
			return nil, nil
		}
		r, w, err := os.Pipe()
		if err != nil {
			return nil, err
		}
		s.childEnds, s.parentEnds = append(s.childEnds, w), append(s.parentEnds, r)
		s.copiers.Go(func() { _, _ = io.Copy(dst, r) })
		return w, nil
	}
	stdout, err := output(opts.Stdout)
	if err != nil {
		return err
	}
	stderr, err := output(opts.Stderr)
	if err != nil {
		return err
	}
	// Typed nils would not read as "no file" to os/exec.
	if stdout != nil {
		p.Stdout = stdout
	}
	if stderr != nil {
		p.Stderr = stderr
	}
	return nil
}

// consoleSocket asks libcontainer for a terminal, whose master side it
// sends over a socket.
func (s *execStreams) consoleSocket(p *libcontainer.Process) error {
	parent, child, err := consoleSocketPair()
	if err != nil {
		return err
	}
	s.socket = parent
	s.parentEnds = append(s.parentEnds, s.socket)
	s.childEnds = append(s.childEnds, child)
	p.ConsoleSocket = child
	return nil
}

// consoleSocketPair is a socket over which a process's init sends the
// master side of the terminal it makes (receiveFile reads it), and the
// other end, which the init gets.
func consoleSocketPair() (parent, child *os.File, err error) {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, nil, fmt.Errorf("console socket: %w", err)
	}
	return os.NewFile(uintptr(fds[0]), "console-socket"), os.NewFile(uintptr(fds[1]), "console-socket-child"), nil
}

func (s *execStreams) terminal(opts ExecOptions) error {
	master, err := receiveFile(s.socket)
	if err != nil {
		return fmt.Errorf("exec terminal: %w", err)
	}
	s.parentEnds = append(s.parentEnds, master)
	if opts.Stdin != nil {
		go func() { _, _ = io.Copy(master, opts.Stdin) }()
	}
	s.copiers.Go(func() {
		dst := opts.Stdout
		if dst == nil {
			dst = io.Discard
		}
		// Ends with EIO once the last holder of the terminal has gone.
		_, _ = io.Copy(dst, master)
	})
	if opts.Resize != nil {
		// Until the output ends, which is after the copier above started.
		done := s.outputDone()
		go func() {
			for {
				select {
				case size, ok := <-opts.Resize:
					if !ok {
						return
					}
					_ = resize(master, size)
				case <-done:
					return
				}
			}
		}()
	}
	return nil
}

func resize(terminal *os.File, size TermSize) error {
	conn, err := terminal.SyscallConn()
	if err != nil {
		return err
	}
	var ioctlErr error
	err = conn.Control(func(fd uintptr) {
		ioctlErr = unix.IoctlSetWinsize(int(fd), unix.TIOCSWINSZ, &unix.Winsize{Row: size.Height, Col: size.Width})
	})
	return errors.Join(err, ioctlErr)
}

// receiveFile reads one file descriptor sent over a unix socket, and
// makes it non-blocking so that closing it ends a pending read.
func receiveFile(socket *os.File) (*os.File, error) {
	conn, err := socket.SyscallConn()
	if err != nil {
		return nil, err
	}
	oob := make([]byte, unix.CmsgSpace(4))
	name := make([]byte, 4096)
	var n, oobn int
	var recvErr error
	if err := conn.Read(func(fd uintptr) bool {
		n, oobn, _, _, recvErr = unix.Recvmsg(int(fd), name, oob, unix.MSG_CMSG_CLOEXEC)
		return !errors.Is(recvErr, unix.EAGAIN)
	}); err != nil {
		return nil, err
	}
	if recvErr != nil {
		return nil, recvErr
	}
	msgs, err := unix.ParseSocketControlMessage(oob[:oobn])
	if err != nil {
		return nil, err
	}
	if len(msgs) != 1 {
		return nil, fmt.Errorf("got %d control messages, want one file (did the process fail to start?)", len(msgs))
	}
	fds, err := unix.ParseUnixRights(&msgs[0])
	if err != nil {
		return nil, err
	}
	for _, fd := range fds[1:] {
		unix.Close(fd)
	}
	if err := unix.SetNonblock(fds[0], true); err != nil {
		unix.Close(fds[0])
		return nil, err
	}
	return os.NewFile(uintptr(fds[0]), string(name[:n])), nil
}
