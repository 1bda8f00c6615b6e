// Package e2e drives the real stead binary and its built-in kubectl, exactly
// as a user types them. STEAD_BIN names the binary (make e2e sets it).
package e2e

import (
	"bufio"
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

var steadBin = os.Getenv("STEAD_BIN")

func TestMain(m *testing.M) {
	if steadBin == "" {
		fmt.Fprintln(os.Stderr, "e2e: set STEAD_BIN to the stead binary (make e2e does)")
		os.Exit(2)
	}
	code := m.Run()
	if shared != nil {
		if err := shared.signal(syscall.SIGTERM, time.Minute); err != nil {
			fmt.Fprintln(os.Stderr, "e2e: shared cluster:", err)
			code = 1
		}
		shared.cleanupNode()
		os.RemoveAll(shared.dataDir)
	}
	os.Exit(code)
}

// cluster is one `stead up` process on its own data dir and port (or,
// with command, a `stead server` or `stead agent`).
type cluster struct {
	t       testing.TB
	dataDir string
	port    int
	extra   []string
	// command is the stead command, "up" when empty; netns, when set, is
	// the network namespace it runs in (`ip netns exec`).
	command string
	netns   string
	cmd     *exec.Cmd
	stderr  *syncBuffer
	exited  chan struct{}
	waitErr error
}

type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func freePort(t testing.TB) int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// newCluster starts `stead up` on a fresh data dir and waits until it says
// it is up. The cluster is stopped when the test ends.
func newCluster(t testing.TB, extra ...string) *cluster {
	return newClusterWithFlags(t, append(nodeFlags(t), extra...))
}

// newClusterWithFlags is newCluster with all of stead up's flags but the
// data dir and port given, for a second server of the same cluster.
func newClusterWithFlags(t testing.TB, extra []string) *cluster {
	c := &cluster{t: t, dataDir: t.TempDir(), port: freePort(t), extra: extra}
	// Before start, so that a cluster that fails to come up is cleaned too.
	t.Cleanup(func() { c.stop(); c.cleanupNode() })
	c.start()
	return c
}

var clusterCount atomic.Int32

// nodeFlags give each cluster its own bridge, pod and Service ranges and
// kubelet port, so that several clusters, of this run and of another run
// beside it, live on this machine without one's rules catching another's
// traffic.
func nodeFlags(t testing.TB) []string {
	n := clusterCount.Add(1)
	slot := freeSlot(t, int(n))
	return []string{
		"--node-bridge", fmt.Sprintf("stt%d-%d", os.Getpid()%10000, n),
		"--cluster-cidr", fmt.Sprintf("10.%d.%d.0/20", 100+n, slot),
		"--service-cidr", fmt.Sprintf("10.%d.%d.0/20", 200+n, slot),
		"--kubelet-port", fmt.Sprint(freePort(t)),
	}
}

// freeSlot is which /20 of the /16s 10.(100+n) (pods) and 10.(200+n)
// (Services) the n-th cluster of this run takes: the one the process's pid
// points to, or the next one that no route on the machine touches yet: a
// bridge an earlier, killed run had left with the same range took the pod
// traffic of a cluster here, and five tests failed.
func freeSlot(t testing.TB, n int) int {
	out, err := exec.Command("ip", "-4", "-o", "route", "show", "table", "all").Output()
	if err != nil {
		t.Fatalf("ip route: %v", err)
	}
	var routed []netip.Prefix
	for line := range strings.Lines(string(out)) {
		fields := strings.Fields(line)
		if len(fields) > 1 && (fields[0] == "local" || fields[0] == "broadcast" || fields[0] == "unicast" || fields[0] == "blackhole") {
			fields = fields[1:]
		}
		if len(fields) == 0 {
			continue
		}
		if p, err := netip.ParsePrefix(fields[0]); err == nil {
			routed = append(routed, p)
		} else if a, err := netip.ParseAddr(fields[0]); err == nil {
			routed = append(routed, netip.PrefixFrom(a, 32))
		}
	}
	first := os.Getpid() % 16
	for i := range 16 {
		slot := 16 * ((first + i) % 16)
		pods := netip.PrefixFrom(netip.AddrFrom4([4]byte{10, byte(100 + n), byte(slot), 0}), 20)
		if !slices.ContainsFunc(routed, pods.Overlaps) {
			return slot
		}
	}
	t.Fatalf("every /20 of 10.%d.0.0/16 is routed on this machine already", 100+n)
	return 0
}

// cleanupNode removes what the cluster's node leaves running by design
// once stead stops (its containers), and its bridge and Service rules.
func (c *cluster) cleanupNode() {
	// An agent's fence keeper outlives it by design (pkg/agent/fence.go).
	if pid := c.fenceKeeperPid(); pid > 0 {
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
	for _, pid := range c.containerPids() {
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
	time.Sleep(200 * time.Millisecond)
	points := c.mounts()
	for i := len(points) - 1; i >= 0; i-- {
		_ = syscall.Unmount(points[i], syscall.MNT_DETACH)
	}
	c.removePodCgroups()
	if bridge := c.bridge(); bridge != "" {
		_ = exec.Command("ip", "link", "del", bridge).Run()
		_ = exec.Command("nft", "delete", "table", "ip", "stead-proxy-"+bridge).Run()
	}
}

// removePodCgroups removes the cgroups of the pods the node still had,
// <hierarchy>/stead/pod<uid> and their containers' beneath, once their
// killed processes are gone.
func (c *cluster) removePodCgroups() {
	for _, dir := range c.podCgroups() {
		containers, _ := filepath.Glob(dir + "/*")
		for range 20 {
			for _, sub := range containers {
				if fi, err := os.Stat(sub); err == nil && fi.IsDir() {
					_ = os.Remove(sub)
				}
			}
			if err := os.Remove(dir); err == nil || errors.Is(err, os.ErrNotExist) {
				break
			}
			time.Sleep(100 * time.Millisecond) // a killed process still exiting
		}
	}
}

// podCgroups are the cgroups, in every hierarchy, of the pods the
// cluster's node has a sandbox for.
func (c *cluster) podCgroups() []string {
	sandboxes, _ := os.ReadDir(filepath.Join(c.dataDir, "run", "sandboxes"))
	var dirs []string
	for _, sandbox := range sandboxes {
		found, _ := filepath.Glob("/sys/fs/cgroup/*/stead/pod" + sandbox.Name())
		if v2 := "/sys/fs/cgroup/stead/pod" + sandbox.Name(); exists(v2) {
			found = append(found, v2)
		}
		dirs = append(dirs, found...)
	}
	return dirs
}

// fenceKeeperPid is the pid an agent's fence keeper wrote, 0 if none.
func (c *cluster) fenceKeeperPid() int {
	data, err := os.ReadFile(filepath.Join(c.dataDir, "run", "fence-keeper.pid"))
	if err != nil {
		return 0
	}
	pid, _ := strconv.Atoi(strings.TrimSpace(string(data)))
	return pid
}

// containerPids are the first processes of the node's containers, from
// their libcontainer state.
func (c *cluster) containerPids() []int {
	var pids []int
	states, _ := filepath.Glob(filepath.Join(c.dataDir, "run", "state", "*", "state.json"))
	for _, path := range states {
		data, err := os.ReadFile(path)
		if err != nil {
			continue
		}
		var st struct {
			Pid int `json:"init_process_pid"`
		}
		if json.Unmarshal(data, &st) == nil && st.Pid > 0 {
			pids = append(pids, st.Pid)
		}
	}
	return pids
}

// mounts are the mount points under the data dir, outermost first.
func (c *cluster) mounts() []string {
	mounts, _ := os.ReadFile("/proc/self/mountinfo")
	var points []string
	for _, line := range strings.Split(string(mounts), "\n") {
		if f := strings.Fields(line); len(f) > 4 && strings.HasPrefix(f[4], c.dataDir) {
			points = append(points, f[4])
		}
	}
	return points
}

// bridge is the node's bridge, from its flags.
func (c *cluster) bridge() string {
	for i, arg := range c.extra {
		if arg == "--node-bridge" && i+1 < len(c.extra) {
			return c.extra[i+1]
		}
	}
	return ""
}

func (c *cluster) start() {
	c.t.Helper()
	if err := c.startNoWait(); err != nil {
		c.t.Fatal(err)
	}
	if err := c.waitUp(2 * time.Minute); err != nil {
		c.t.Fatal(err)
	}
}

func (c *cluster) startNoWait() error {
	if c.cmd != nil {
		select {
		case <-c.exited:
		default:
			return errors.New("stead already runs for this cluster: stop it before starting it again")
		}
	}
	var args []string
	switch c.command {
	case "", "up", "server":
		args = append([]string{cmp.Or(c.command, "up"), "--data-dir", c.dataDir, "--https-port", fmt.Sprint(c.port)}, c.extra...)
	default:
		args = append([]string{c.command, "--data-dir", c.dataDir}, c.extra...)
	}
	c.cmd = exec.Command(steadBin, args...)
	if c.netns != "" {
		c.cmd = exec.Command("nsenter", netnsArgs(c.netns, args...)...)
	}
	c.stderr = &syncBuffer{}
	c.cmd.Stdout = c.stderr
	c.cmd.Stderr = c.stderr
	// stead stops if this process dies first (SIGTERM as its Ctrl-C).
	// Pdeathsig follows the thread that forks, which Go keeps for the
	// process's life unless a goroutine locked it and ended.
	c.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM}
	c.exited = make(chan struct{})
	if err := c.cmd.Start(); err != nil {
		return err
	}
	go func() { c.waitErr = c.cmd.Wait(); close(c.exited) }()
	return nil
}

// netnsArgs are nsenter's arguments to run stead in a network namespace
// and in every other respect on this machine: unlike `ip netns exec`, it
// keeps the host's /sys, where the cgroup hierarchies are mounted. nsenter
// execs stead, so the process is stead's own.
func netnsArgs(netns string, args ...string) []string {
	return append([]string{"--net=/run/netns/" + netns, "--", steadBin}, args...)
}

func (c *cluster) waitUp(timeout time.Duration) error {
	deadline := time.After(timeout)
	for !strings.Contains(c.stderr.String(), "stead: up in ") {
		select {
		case <-c.exited:
			return fmt.Errorf("stead up exited (%v) before it was up:\n%s", c.waitErr, c.stderr)
		case <-deadline:
			return fmt.Errorf("stead up not up after %v:\n%s", timeout, c.stderr)
		case <-time.After(50 * time.Millisecond):
		}
	}
	return nil
}

// stop ends stead the way a user does, with SIGTERM, and waits for it.
func (c *cluster) stop() {
	if err := c.signal(syscall.SIGTERM, time.Minute); err != nil {
		c.t.Error(err)
	}
}

// kill ends stead with SIGKILL: nothing gets a chance to flush or close.
func (c *cluster) kill() {
	if err := c.signal(syscall.SIGKILL, time.Minute); err != nil {
		c.t.Error(err)
	}
}

func (c *cluster) signal(sig syscall.Signal, wait time.Duration) error {
	if c.cmd == nil || c.cmd.Process == nil {
		return nil
	}
	select {
	case <-c.exited:
		return nil
	default:
	}
	_ = c.cmd.Process.Signal(sig)
	select {
	case <-c.exited:
		return nil
	case <-time.After(wait):
		_ = c.cmd.Process.Kill()
		<-c.exited
		return fmt.Errorf("stead did not exit within %v of %v:\n%s", wait, sig, c.stderr)
	}
}

func (c *cluster) kubeconfig() string { return filepath.Join(c.dataDir, "kubeconfig") }
func (c *cluster) url() string        { return fmt.Sprintf("https://127.0.0.1:%d", c.port) }

// kubectl runs `stead kubectl` against this cluster, as a user with
// STEAD_DATA_DIR set does.
func (c *cluster) kubectl(stdin string, args ...string) (string, error) {
	cmd := exec.Command(steadBin, append([]string{"kubectl"}, args...)...)
	cmd.Env = append(os.Environ(), "STEAD_DATA_DIR="+c.dataDir, "KUBECONFIG=")
	if stdin != "" {
		cmd.Stdin = strings.NewReader(stdin)
	}
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func (c *cluster) mustKubectl(stdin string, args ...string) string {
	c.t.Helper()
	out, err := c.kubectl(stdin, args...)
	if err != nil {
		c.t.Fatalf("kubectl %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

// eventually retries f until it succeeds or timeout passes.
func eventually(t testing.TB, timeout time.Duration, what string, f func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not true after %v: %v", what, timeout, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// watchLines runs a long-lived kubectl (get -w) and returns its output lines.
func (c *cluster) watchLines(ctx context.Context, args ...string) (<-chan string, error) {
	cmd := exec.CommandContext(ctx, steadBin, append([]string{"kubectl"}, args...)...)
	cmd.Env = append(os.Environ(), "STEAD_DATA_DIR="+c.dataDir, "KUBECONFIG=")
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	lines := make(chan string, 100)
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			lines <- sc.Text()
		}
		_ = cmd.Wait()
	}()
	return lines, nil
}

var (
	shared     *cluster
	sharedErr  error
	sharedOnce sync.Once
)

// sharedCluster is one cluster for the tests that do not restart it.
func sharedCluster(t *testing.T) *cluster {
	sharedOnce.Do(func() {
		dir, err := os.MkdirTemp("", "stead-e2e-")
		if err != nil {
			sharedErr = err
			return
		}
		// --cleanup: if this process dies before it stops the cluster
		// (a panic in a test), the SIGTERM that stead then gets
		// (Pdeathsig) leaves nothing of it on the machine.
		shared = &cluster{t: t, dataDir: dir, port: freePort(t), extra: append(nodeFlags(t), "--cleanup")}
		if sharedErr = shared.startNoWait(); sharedErr == nil {
			sharedErr = shared.waitUp(2 * time.Minute)
		}
		if sharedErr == nil {
			sharedErr = shared.importTestImages()
		}
	})
	if sharedErr != nil {
		t.Fatal("shared cluster:", sharedErr)
	}
	shared.t = t
	return shared
}

// importTestImages gives the cluster the images the tests' pods use, so
// that nothing is ever pulled from a registry (none is reachable here).
func (c *cluster) importTestImages() error {
	dir := os.Getenv("STEAD_TESTIMAGES")
	if dir == "" {
		return fmt.Errorf("set STEAD_TESTIMAGES to the directory `make testimages` fills (make e2e does)")
	}
	out, err := exec.Command(steadBin, "image", "import", "--data-dir", c.dataDir,
		filepath.Join(dir, "busybox.tar"), filepath.Join(dir, "nginx.tar")).CombinedOutput()
	if err != nil {
		return fmt.Errorf("stead image import: %v\n%s", err, out)
	}
	return nil
}

func exists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}
