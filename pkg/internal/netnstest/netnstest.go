// Package netnstest makes network namespaces for tests, as pod sandboxes
// and nodes, and runs code inside them. Needs root.
package netnstest

import (
	"os/exec"
	"runtime"
	"testing"

	"github.com/vishvananda/netns"
)

// New makes a named network namespace with iproute2 and removes it, with
// every link and nftables table in it, when the test ends.
func New(t testing.TB, name string) string {
	t.Helper()
	if out, err := exec.Command("ip", "netns", "add", name).CombinedOutput(); err != nil {
		t.Fatalf("ip netns add %s: %v %s", name, err, out)
	}
	t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", name).Run() })
	return "/var/run/netns/" + name
}

// Exec runs a command inside the named namespace.
func Exec(t testing.TB, name string, args ...string) {
	t.Helper()
	out, err := exec.Command("ip", append([]string{"netns", "exec", name}, args...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("in %s: %v: %v %s", name, args, err, out)
	}
}

// Run runs fn on an OS thread inside the namespace at path; sockets that fn
// opens, and processes it starts, live in that namespace.
func Run(t testing.TB, path string, fn func()) {
	t.Helper()
	if err := Do(path, func() error { fn(); return nil }); err != nil {
		t.Fatal(err)
	}
}

// Do is Run for goroutines other than the test's, which must not call
// t.Fatal: it returns fn's error, or why it could not enter the namespace.
func Do(path string, fn func() error) error {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	orig, err := netns.Get()
	if err != nil {
		return err
	}
	defer orig.Close()
	target, err := netns.GetFromPath(path)
	if err != nil {
		return err
	}
	defer target.Close()
	if err := netns.Set(target); err != nil {
		return err
	}
	defer func() {
		if err := netns.Set(orig); err != nil {
			panic(err) // a thread left in another namespace must not run anything else
		}
	}()
	return fn()
}
