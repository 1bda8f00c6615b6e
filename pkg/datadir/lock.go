// Package datadir owns the layout of stead's data directory and the lock
// that keeps two servers from sharing it.
package datadir

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// Default is where stead keeps its state unless told otherwise.
const Default = "/var/lib/stead"

// Lock is an exclusive hold on a data directory. The kernel releases it when
// the process dies, even by kill -9, so a stale lock never needs cleaning.
type Lock struct {
	file *os.File
}

// ErrInUse is returned when another live process holds the data directory.
var ErrInUse = errors.New("data directory is in use")

// Acquire creates dir if needed and locks it, failing at once (never
// waiting) if another process holds it: two etcd instances on one data
// directory would corrupt it.
func Acquire(dir string) (*Lock, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("data dir %s: %w", dir, err)
	}
	info, err := os.Stat(dir)
	if err != nil {
		return nil, fmt.Errorf("data dir %s: %w", dir, err)
	}
	if !info.IsDir() {
		return nil, fmt.Errorf("data dir %s: not a directory", dir)
	}
	path := filepath.Join(dir, "stead.lock")
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("data dir %s: %w", dir, err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		holder, _ := os.ReadFile(path)
		f.Close()
		if errors.Is(err, unix.EWOULDBLOCK) {
			pid := strings.TrimSpace(string(holder))
			if pid == "" {
				pid = "unknown"
			}
			return nil, fmt.Errorf("%w: %s is held by another stead (pid %s); stop it first or choose another --data-dir", ErrInUse, dir, pid)
		}
		return nil, fmt.Errorf("data dir %s: lock: %w", dir, err)
	}
	// The pid is only a hint for the error message above; the flock is the lock.
	if err := f.Truncate(0); err == nil {
		_, _ = f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	}
	return &Lock{file: f}, nil
}

// Release gives the directory up.
func (l *Lock) Release() error {
	if l == nil || l.file == nil {
		return nil
	}
	err := l.file.Close()
	l.file = nil
	return err
}
