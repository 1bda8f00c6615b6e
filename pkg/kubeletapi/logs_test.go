package kubeletapi

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"k8s.io/utils/ptr"
)

const sampleLog = `2026-11-25T08:00:01.000000000Z stdout F one
2026-11-25T08:00:02.000000000Z stderr F two
2026-11-25T08:00:03.000000000Z stdout P thr
2026-11-25T08:00:03.500000000Z stdout F ee
not a record
2026-11-25T08:00:04.000000000Z stdout F four
`

func writeLog(t *testing.T, content string) string {
	path := filepath.Join(t.TempDir(), "0.log")
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestWriteLogs(t *testing.T) {
	for _, tc := range []struct {
		name string
		opts LogOptions
		want string
	}{
		{"everything, partial records joined, damage skipped", LogOptions{}, "one\ntwo\nthree\nfour\n"},
		{"timestamps once per line", LogOptions{Timestamps: true}, "2026-11-25T08:00:01Z one\n2026-11-25T08:00:02Z two\n2026-11-25T08:00:03Z three\n2026-11-25T08:00:04Z four\n"},
		{"tail counts lines, not records", LogOptions{TailLines: ptr.To[int64](2)}, "three\nfour\n"},
		{"tail 0", LogOptions{TailLines: ptr.To[int64](0)}, ""},
		{"tail beyond the file", LogOptions{TailLines: ptr.To[int64](10)}, "one\ntwo\nthree\nfour\n"},
		{"limitBytes cuts mid-line", LogOptions{LimitBytes: ptr.To[int64](6)}, "one\ntw"},
		{"since", LogOptions{Since: time.Date(2026, 11, 25, 8, 0, 2, 0, time.UTC)}, "two\nthree\nfour\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var out bytes.Buffer
			if err := WriteLogs(context.Background(), writeLog(t, sampleLog), tc.opts, func() bool { return false }, &out); err != nil {
				t.Fatal(err)
			}
			if out.String() != tc.want {
				t.Fatalf("got %q, want %q", out.String(), tc.want)
			}
		})
	}
}

func TestFollowUntilTheContainerStops(t *testing.T) {
	path := writeLog(t, "2026-11-25T08:00:01.000000000Z stdout F first\n")
	var running atomic.Bool
	running.Store(true)
	var out bytes.Buffer
	done := make(chan error)
	go func() {
		done <- WriteLogs(context.Background(), path, LogOptions{Follow: true}, running.Load, &out)
	}()
	time.Sleep(200 * time.Millisecond)
	f, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	// A record written in two pieces, then the container's last words.
	_, _ = f.WriteString("2026-11-25T08:00:02.000000000Z stdout F sec")
	time.Sleep(200 * time.Millisecond)
	_, _ = f.WriteString("ond\n2026-11-25T08:00:03.000000000Z stdout F last\n")
	f.Close()
	running.Store(false)
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("follow did not end after the container stopped")
	}
	if out.String() != "first\nsecond\nlast\n" {
		t.Fatalf("followed %q", out.String())
	}
}
