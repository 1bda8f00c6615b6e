package datadir

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

func TestAcquireIsExclusiveAndReleasable(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	first, err := Acquire(dir)
	if err != nil {
		t.Fatalf("first acquire: %v", err)
	}
	// flock is per open file description, so a second open in this same
	// process contends exactly as another process would.
	if _, err := Acquire(dir); !errors.Is(err, ErrInUse) {
		t.Fatalf("second acquire: got %v, want ErrInUse", err)
	}
	if err := first.Release(); err != nil {
		t.Fatal(err)
	}
	again, err := Acquire(dir)
	if err != nil {
		t.Fatalf("acquire after release: %v", err)
	}
	again.Release()
}

func TestLockDiesWithItsProcess(t *testing.T) {
	// A child takes the lock with flock(1)-like semantics and is killed;
	// the lock must be free afterwards without any cleanup. (The child
	// makes no temporary dir: killed, it could not remove one.)
	if os.Getenv("STEAD_LOCK_CHILD") != "" {
		if _, err := Acquire(os.Getenv("STEAD_LOCK_CHILD")); err != nil {
			os.Exit(3)
		}
		os.Stdout.WriteString("locked\n")
		select {}
	}
	dir := t.TempDir()
	cmd := exec.Command(os.Args[0], "-test.run=^TestLockDiesWithItsProcess$")
	cmd.Env = append(os.Environ(), "STEAD_LOCK_CHILD="+dir)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 7)
	if _, err := out.Read(buf); err != nil || !strings.HasPrefix(string(buf), "locked") {
		cmd.Process.Kill()
		t.Fatalf("child did not lock: %q %v", buf, err)
	}
	if _, err := Acquire(dir); !errors.Is(err, ErrInUse) {
		cmd.Process.Kill()
		t.Fatalf("while child holds it: got %v, want ErrInUse", err)
	} else if !strings.Contains(err.Error(), "pid ") {
		t.Errorf("error does not name the holder: %v", err)
	}
	cmd.Process.Kill()
	cmd.Wait()
	l, err := Acquire(dir)
	if err != nil {
		t.Fatalf("after the holder was killed: %v", err)
	}
	l.Release()
}

func TestAcquireRejectsAFile(t *testing.T) {
	file := filepath.Join(t.TempDir(), "f")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Acquire(file); err == nil || !strings.Contains(err.Error(), file) {
		t.Fatalf("got %v, want an error naming %s", err, file)
	}
}
