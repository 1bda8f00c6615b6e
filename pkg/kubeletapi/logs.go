package kubeletapi

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"time"
)

// Container logs are files in the CRI format, one record a line:
//
//	2026-11-25T08:00:00.000000001Z stdout F the line's content
//
// where F ends a line and P is a part of a longer one.

// LogOptions are the containerLogs query's, as kubectl logs sends them.
type LogOptions struct {
	Follow     bool
	Timestamps bool
	TailLines  *int64
	LimitBytes *int64
	Since      time.Time // zero: from the start
}

type record struct {
	time    time.Time
	stream  []byte
	partial bool
	content []byte
}

func parseRecord(line []byte) (record, error) {
	ts, rest, ok := bytes.Cut(line, []byte{' '})
	if !ok {
		return record{}, fmt.Errorf("log line without a time: %q", line)
	}
	t, err := time.Parse(time.RFC3339Nano, string(ts))
	if err != nil {
		return record{}, fmt.Errorf("log line time %q: %w", ts, err)
	}
	stream, rest, ok := bytes.Cut(rest, []byte{' '})
	if !ok {
		return record{}, fmt.Errorf("log line without a stream: %q", line)
	}
	tag, content, _ := bytes.Cut(rest, []byte{' '})
	return record{time: t, stream: stream, partial: bytes.Equal(tag, []byte("P")), content: content}, nil
}

// writer applies timestamps and limitBytes to what goes to the client.
type writer struct {
	w          io.Writer
	timestamps bool
	left       int64 // bytes still allowed; negative: no limit
	lineStart  bool
}

var errLimitReached = errors.New("limit reached")

func (lw *writer) write(r record) error {
	var b []byte
	if lw.timestamps && lw.lineStart {
		b = append(b, r.time.UTC().Format(time.RFC3339Nano)...)
		b = append(b, ' ')
	}
	b = append(b, r.content...)
	if !r.partial {
		b = append(b, '\n')
	}
	lw.lineStart = !r.partial
	if lw.left >= 0 && int64(len(b)) >= lw.left {
		_, err := lw.w.Write(b[:lw.left])
		lw.left = 0
		if err != nil {
			return err
		}
		return errLimitReached
	}
	if lw.left >= 0 {
		lw.left -= int64(len(b))
	}
	_, err := lw.w.Write(b)
	if f, ok := lw.w.(interface{ Flush() }); ok {
		f.Flush()
	}
	return err
}

// WriteLogs copies the log at path to w as opts ask. With Follow it keeps
// reading new records until running says the container has stopped (and
// what it wrote last is sent) or ctx ends.
func WriteLogs(ctx context.Context, path string, opts LogOptions, running func() bool, w io.Writer) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	lw := &writer{w: w, timestamps: opts.Timestamps, left: -1, lineStart: true}
	if opts.LimitBytes != nil {
		lw.left = *opts.LimitBytes
	}

	reader := bufio.NewReader(f)
	var pending []byte // a record not yet ended by a newline
	emit := func(line []byte) error {
		r, err := parseRecord(line)
		if err != nil || r.time.Before(opts.Since) {
			return nil // a damaged line (a crash mid-write) is skipped
		}
		return lw.write(r)
	}

	// Without a tail the file streams as it is read; with one, the last
	// lines are kept first (counting whole lines, as the kubelet does).
	if opts.TailLines != nil {
		lines, rest, err := lastLines(reader, *opts.TailLines)
		if err != nil {
			return err
		}
		pending = append(pending, rest...)
		for _, line := range lines {
			if err := emit(line); err != nil {
				return ignoreLimit(err)
			}
		}
	}
	for {
		chunk, err := reader.ReadBytes('\n')
		pending = append(pending, chunk...)
		if err == nil {
			if err := emit(bytes.TrimSuffix(pending, []byte{'\n'})); err != nil {
				return ignoreLimit(err)
			}
			pending = pending[:0]
			continue
		}
		if !errors.Is(err, io.EOF) {
			return err
		}
		if !opts.Follow {
			return nil
		}
		stopped := !running()
		if stopped {
			// One more read after seeing it stopped: its last words.
			if _, err := reader.Peek(1); err == nil {
				continue
			}
			return nil
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func ignoreLimit(err error) error {
	if errors.Is(err, errLimitReached) {
		return nil
	}
	return err
}

// lastLines reads r to its end and returns the records of its last n lines
// (a line ends with an F record; P records are parts of the next line), and
// an unfinished last record, which a follower completes.
func lastLines(r *bufio.Reader, n int64) (lines [][]byte, rest []byte, err error) {
	var ring [][]byte
	var count int64
	for {
		line, err := r.ReadBytes('\n')
		if len(line) > 0 && line[len(line)-1] == '\n' {
			line = line[:len(line)-1]
			rec, perr := parseRecord(line)
			if perr != nil {
				continue // damaged: WriteLogs would skip it too
			}
			ring = append(ring, line)
			if !rec.partial {
				count++
			}
			for count > n {
				// Drop the oldest whole line: its parts and its end.
				for len(ring) > 0 {
					first, _ := parseRecord(ring[0])
					ring = ring[1:]
					if !first.partial {
						break
					}
				}
				count--
			}
		} else {
			rest = line
		}
		if errors.Is(err, io.EOF) {
			return ring, rest, nil
		}
		if err != nil {
			return nil, nil, err
		}
	}
}
