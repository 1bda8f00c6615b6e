package runtime

import (
	"bufio"
	"bytes"
	"io"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"time"
)

// maxLogLine is where a longer line is cut into partial (P) records, as
// containerd cuts at 16 KiB by default.
const maxLogLine = 16 << 10

// copyLogs appends the container's output to its log as CRI records, and
// passes it to the attached clients, until the container's last writer is
// gone. The output is its terminal when it has one, logged as stdout as
// containerd logs it, or else its stdout and stderr FIFOs, open when it
// returns. The returned channel closes when copying ends.
func (c *Container) copyLogs() <-chan struct{} {
	done := make(chan struct{})
	var out io.Writer = io.Discard
	var logFile *os.File
	// The container must be drained even if its log cannot be written,
	// or it blocks once its pipe is full.
	if c.meta.LogPath != "" {
		if err := os.MkdirAll(filepath.Dir(c.meta.LogPath), 0o755); err == nil {
			if f, err := os.OpenFile(c.meta.LogPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o640); err == nil {
				out, logFile = f, f
			}
		}
	}
	log := &criLog{out: out}
	var wg sync.WaitGroup
	if c.terminal != nil {
		// Remove closes it: Attach may still use it after the copy ends.
		wg.Go(func() { log.copy(io.TeeReader(c.terminal, &c.stdout), "stdout", true) })
	} else {
		for _, stream := range []string{"stdout", "stderr"} {
			// Non-blocking, so that the open does not wait for a writer
			// and reads go through Go's poller rather than hold a thread
			// each.
			f, err := os.OpenFile(filepath.Join(c.dir, stream), os.O_RDONLY|syscall.O_NONBLOCK, 0)
			if err != nil {
				continue
			}
			clients := &c.stdout
			if stream == "stderr" {
				clients = &c.stderr
			}
			wg.Go(func() {
				defer f.Close()
				log.copy(io.TeeReader(f, clients), stream, false)
			})
		}
	}
	go func() {
		wg.Wait()
		if logFile != nil {
			logFile.Close()
		}
		close(done)
	}()
	return done
}

// criLog writes the CRI log format that the kubelet reads:
// "<RFC3339Nano time> <stream> <F|P> <content>", one record per line, P for
// the pieces of a line longer than maxLogLine but its last.
type criLog struct {
	mu  sync.Mutex
	out io.Writer
	buf []byte
}

// copy logs r's lines; a terminal's end in "\r\n", whose "\r" is no more
// part of the line than the "\n" is.
func (l *criLog) copy(r io.Reader, stream string, terminal bool) {
	reader := bufio.NewReaderSize(r, maxLogLine)
	for {
		line, err := reader.ReadSlice('\n')
		if len(line) > 0 {
			switch {
			case err == nil:
				line = line[:len(line)-1]
				if terminal {
					line = bytes.TrimSuffix(line, []byte("\r"))
				}
				l.write(stream, "F", line)
			case err == bufio.ErrBufferFull:
				l.write(stream, "P", line)
			default: // the last line, with no newline
				l.write(stream, "F", line)
			}
		}
		if err != nil && err != bufio.ErrBufferFull {
			return
		}
	}
}

func (l *criLog) write(stream, tag string, content []byte) {
	l.mu.Lock()
	defer l.mu.Unlock()
	b := time.Now().UTC().AppendFormat(l.buf[:0], time.RFC3339Nano)
	b = append(b, ' ')
	b = append(b, stream...)
	b = append(b, ' ')
	b = append(b, tag...)
	b = append(b, ' ')
	b = append(b, content...)
	b = append(b, '\n')
	// One write per record: with O_APPEND, a reader never sees half of one.
	_, _ = l.out.Write(b)
	l.buf = b
}
