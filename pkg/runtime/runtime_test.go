package runtime

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	goruntime "runtime"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/opencontainers/cgroups"
	"golang.org/x/sys/unix"

	"github.com/steadhq/stead/pkg/internal/netnstest"
)

// layers are the test image: the toolbox program and a few files in a
// bottom layer, a top layer that shadows one file and whites out another.
// Top layer first.
var layers []string

func TestMain(m *testing.M) {
	// The test binary is its containers' init, as stead is.
	Init()
	if config := os.Getenv(agentEnv); config != "" {
		os.Exit(runAgent(config))
	}
	if os.Geteuid() != 0 {
		fmt.Println("pkg/runtime tests need root: skipped")
		os.Exit(0)
	}
	dir, err := os.MkdirTemp("", "stead-runtime-image-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	layers, err = buildImage(dir)
	code := 1
	if err != nil {
		fmt.Fprintln(os.Stderr, "test image:", err)
	} else {
		code = m.Run()
	}
	os.RemoveAll(dir)
	os.Exit(code)
}

func buildImage(dir string) ([]string, error) {
	top, bottom := filepath.Join(dir, "top"), filepath.Join(dir, "bottom")
	for _, d := range []string{"bin", "etc", "tmp", "data"} {
		if err := os.MkdirAll(filepath.Join(bottom, d), 0o755); err != nil {
			return nil, err
		}
	}
	if err := os.Chmod(filepath.Join(bottom, "tmp"), 0o1777); err != nil {
		return nil, err
	}
	build := exec.Command("go", "build", "-o", filepath.Join(bottom, "bin", "toolbox"), "./testdata/toolbox")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("build toolbox: %v\n%s", err, out)
	}
	files := map[string]string{
		"bottom/etc/bottom": "from the bottom layer", "bottom/etc/shadowed": "bottom",
		"bottom/etc/removed": "whited out", "top/etc/shadowed": "top",
	}
	for name, content := range files {
		path := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			return nil, err
		}
		if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
			return nil, err
		}
	}
	// An overlay whiteout, as image layers are unpacked with.
	if err := unix.Mknod(filepath.Join(top, "etc", "removed"), unix.S_IFCHR, 0); err != nil {
		return nil, err
	}
	return []string{top, bottom}, nil
}

var runtimeCount atomic.Int32

// newRuntime is a runtime with a cgroup parent of its own, which cleanup
// removes with anything a failed test left in it.
func newRuntime(t testing.TB) *Runtime {
	t.Helper()
	root := t.TempDir() // removed last: after every unmount below
	parent := fmt.Sprintf("stead-test-%d-%d", os.Getpid(), runtimeCount.Add(1))
	r, err := New(root, parent)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		for _, dir := range cgroupDirs(parent) {
			removeCgroupTree(t, dir)
		}
	})
	return r
}

// cgroupDirs are where a cgroup of this path is, in each v1 hierarchy or
// in the v2 tree.
func cgroupDirs(path string) []string {
	if cgroups.IsCgroup2UnifiedMode() {
		dirs := []string{filepath.Join("/sys/fs/cgroup", path)}
		return slices.DeleteFunc(dirs, func(d string) bool { return !exists(d) })
	}
	dirs, _ := filepath.Glob(filepath.Join("/sys/fs/cgroup/*", path))
	return dirs
}

func removeCgroupTree(t testing.TB, dir string) {
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		if e.IsDir() {
			removeCgroupTree(t, filepath.Join(dir, e.Name()))
		}
	}
	// Processes a failed test left behind: they are the test's own.
	if procs, err := os.ReadFile(filepath.Join(dir, "cgroup.procs")); err == nil {
		for _, field := range strings.Fields(string(procs)) {
			if pid, err := strconv.Atoi(field); err == nil {
				_ = unix.Kill(pid, unix.SIGKILL)
			}
		}
	}
	for i := 0; ; i++ {
		err := os.Remove(dir)
		if err == nil || os.IsNotExist(err) {
			return
		}
		if i == 50 {
			t.Errorf("cgroup %s: %v", dir, err)
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func exists(path string) bool {
	_, err := os.Lstat(path)
	return err == nil
}

func ensureSandbox(t testing.TB, r *Runtime, podUID, hostname string) *Sandbox {
	t.Helper()
	s, err := r.EnsureSandbox(podUID, SandboxOptions{Hostname: hostname})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := r.RemoveSandbox(podUID); err != nil {
			t.Errorf("remove sandbox: %v", err)
		}
	})
	return s
}

// toolbox is a container's command: toolbox commands separated by ";".
func toolbox(script string) []string {
	return append([]string{"/bin/toolbox"}, strings.Fields(script)...)
}

// start starts a container with the test image and the log under the
// test's directory; cleanup kills and removes it if the test did not.
func start(t testing.TB, r *Runtime, spec ContainerSpec) *Container {
	t.Helper()
	spec.LowerDirs = layers
	if spec.LogPath == "" {
		spec.LogPath = filepath.Join(t.TempDir(), "log")
	}
	c, err := r.Start(context.Background(), spec)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if !exists(c.dir) {
			return
		}
		_ = c.Signal(unix.SIGKILL)
		waitExit(t, c)
		if err := c.Remove(); err != nil {
			t.Errorf("remove container: %v", err)
		}
	})
	return c
}

func waitExit(t testing.TB, c *Container) State {
	t.Helper()
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		st, err := c.State()
		if err != nil {
			t.Fatal(err)
		}
		if !st.Running {
			return st
		}
	}
	t.Fatalf("container %s did not exit", c.id)
	return State{}
}

type record struct {
	time        time.Time
	stream, tag string
	content     string
	line        string
}

func readLog(t testing.TB, path string) []record {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var records []record
	for line := range strings.Lines(string(data)) {
		fields := strings.SplitN(strings.TrimSuffix(line, "\n"), " ", 4)
		if len(fields) != 4 {
			t.Fatalf("log line %q is not a CRI record", line)
		}
		ts, err := time.Parse(time.RFC3339Nano, fields[0])
		if err != nil {
			t.Fatalf("log line %q: %v", line, err)
		}
		records = append(records, record{time: ts, stream: fields[1], tag: fields[2], content: fields[3], line: line})
	}
	return records
}

// stdout is the container's standard output lines, from its log.
func stdout(t testing.TB, path string) []string {
	var lines []string
	for _, r := range readLog(t, path) {
		if r.stream == "stdout" {
			lines = append(lines, r.content)
		}
	}
	return lines
}

func TestContainerProcess(t *testing.T) {
	r := newRuntime(t)
	ensureSandbox(t, r, "pod-a", "web-0")
	volume := t.TempDir()
	if err := os.WriteFile(filepath.Join(volume, "file"), []byte("on the host"), 0o644); err != nil {
		t.Fatal(err)
	}
	hosts := filepath.Join(t.TempDir(), "hosts")
	if err := os.WriteFile(hosts, []byte("10.0.0.7 web-0.web.default.svc.cluster.local web-0"), 0o644); err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name     string
		spec     ContainerSpec
		script   string
		wantExit int
		want     []string
		check    func(t *testing.T, c *Container)
	}{
		{name: "hostname is the pod's", script: "hostname", want: []string{"web-0"}},
		{name: "process is pid 1", script: "pid", want: []string{"1"}},
		{name: "exit code", script: "echo bye ; exit 3", wantExit: 3, want: []string{"bye"}},
		{
			name:   "args env and working dir",
			spec:   ContainerSpec{Env: []string{"GREETING=hello", "PATH=/bin"}, WorkingDir: "/etc"},
			script: "env GREETING ; pwd ; echo two words ; env PATH",
			want:   []string{"hello", "/etc", "two words", "/bin"},
		},
		{name: "default PATH", script: "env PATH", want: []string{strings.TrimPrefix(defaultPath, "PATH=")}},
		{
			name:   "user and groups",
			spec:   ContainerSpec{UID: 1000, GID: 2000, SupplementalGroups: []uint32{3000, 3001}},
			script: "id ; status NoNewPrivs ; status CapEff",
			// Capabilities are gone with the root user, as in Docker.
			want: []string{"uid=1000 gid=2000 groups=[3000 3001]", "1", "0000000000000000"},
		},
		{
			name:   "root with containerd's capabilities and no new privileges",
			script: "status CapEff ; status CapBnd ; status NoNewPrivs",
			want:   []string{"00000000a80425fb", "00000000a80425fb", "1"},
		},
		{
			name:   "capabilities dropped and added",
			spec:   ContainerSpec{CapDrop: []string{"ALL"}, CapAdd: []string{"net_bind_service", "CAP_NET_ADMIN"}},
			script: "status CapEff",
			want:   []string{"0000000000001400"},
		},
		{
			name:   "privileged",
			spec:   ContainerSpec{Privileged: true},
			script: "status NoNewPrivs ; size /proc/keys",
			check: func(t *testing.T, c *Container) {
				got := stdout(t, c.meta.LogPath)
				if len(got) != 2 || got[0] != "0" || got[1] == "0" {
					t.Errorf("output %q, want no_new_privs off and /proc/keys readable", got)
				}
			},
		},
		{
			name:   "masked and read-only paths",
			script: "size /proc/keys ; write /proc/sys/vm/drop_caches 1",
			want:   []string{"0", "write failed: EROFS"},
		},
		{
			name:   "read-only bind mount",
			spec:   ContainerSpec{Mounts: []Mount{{Source: volume, Destination: "/data", ReadOnly: true}}},
			script: "cat /data/file ; write /data/new x",
			want:   []string{"on the host", "write failed: EROFS"},
		},
		{
			name:   "writable bind mount",
			spec:   ContainerSpec{Mounts: []Mount{{Source: volume, Destination: "/data"}}},
			script: "write /data/written from-the-container",
			want:   []string{"write ok"},
			check: func(t *testing.T, c *Container) {
				if data, err := os.ReadFile(filepath.Join(volume, "written")); string(data) != "from-the-container" {
					t.Errorf("host sees %q, %v", data, err)
				}
			},
		},
		{
			name:   "read-only root filesystem",
			spec:   ContainerSpec{ReadOnlyRootFS: true},
			script: "write /tmp/x x ; write /dev/termination-log fine",
			want:   []string{"write failed: EROFS", "write ok"},
		},
		{
			name:   "writable root filesystem",
			script: "write /etc/new x ; cat /etc/new",
			want:   []string{"write ok", "x"},
		},
		{
			name:   "overlay of the image layers",
			script: "cat /etc/bottom ; cat /etc/shadowed ; exists /etc/removed",
			want:   []string{"from the bottom layer", "top", "false"},
		},
		{
			name:   "dev symlinks",
			script: "readlink /dev/stdout ; readlink /dev/stderr ; readlink /dev/fd ; write /dev/stdout via-dev-stdout",
			// What went through /dev/stdout has no newline of its own.
			want: []string{"/proc/self/fd/1", "/proc/self/fd/2", "/proc/self/fd", "via-dev-stdoutwrite ok"},
		},
		{
			name:   "hosts file",
			spec:   ContainerSpec{HostsFile: hosts},
			script: "cat /etc/hosts",
			want:   []string{"10.0.0.7 web-0.web.default.svc.cluster.local web-0"},
		},
		{
			name:   "oom score",
			spec:   ContainerSpec{OOMScoreAdj: 999},
			script: "cat /proc/self/oom_score_adj",
			want:   []string{"999"},
		},
		{
			name:     "OOM killed",
			spec:     ContainerSpec{MemoryLimit: 32 << 20},
			script:   "alloc 256",
			wantExit: 137,
			check: func(t *testing.T, c *Container) {
				if st, _ := c.State(); !st.OOMKilled {
					t.Error("not reported as OOM killed")
				}
			},
		},
		{
			name:   "termination message",
			script: "write /dev/termination-log goodbye ; exit 1",
			want:   []string{"write ok"}, wantExit: 1,
			check: func(t *testing.T, c *Container) {
				if msg, err := c.TerminationMessage(); msg != "goodbye" || err != nil {
					t.Errorf("termination message %q, %v", msg, err)
				}
			},
		},
		{
			name:   "termination message at another path",
			spec:   ContainerSpec{TerminationMessagePath: "/tmp/why"},
			script: "write /tmp/why elsewhere",
			want:   []string{"write ok"},
			check: func(t *testing.T, c *Container) {
				if msg, _ := c.TerminationMessage(); msg != "elsewhere" {
					t.Errorf("termination message %q", msg)
				}
			},
		},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			spec := tt.spec
			spec.ID, spec.PodUID, spec.Args = fmt.Sprintf("process-%d", i), "pod-a", toolbox(tt.script)
			c := start(t, r, spec)
			st := waitExit(t, c)
			if st.ExitCode != tt.wantExit {
				t.Errorf("exit code %d, want %d; log %q", st.ExitCode, tt.wantExit, logText(c.meta.LogPath))
			}
			if st.StartedAt.IsZero() || st.FinishedAt.Before(st.StartedAt) {
				t.Errorf("started %v, finished %v", st.StartedAt, st.FinishedAt)
			}
			if tt.want != nil {
				if got := stdout(t, c.meta.LogPath); !slices.Equal(got, tt.want) {
					t.Errorf("output %q, want %q (log %q)", got, tt.want, logText(c.meta.LogPath))
				}
			}
			if tt.check != nil {
				tt.check(t, c)
			}
		})
	}
}

func TestLogsInCRIFormat(t *testing.T) {
	r := newRuntime(t)
	ensureSandbox(t, r, "pod-logs", "logs")
	before := time.Now()
	c := start(t, r, ContainerSpec{
		ID: "logs", PodUID: "pod-logs",
		Args: toolbox("echo one ; errecho oops ; echo two ; long 20000 ; partial no newline"),
	})
	waitExit(t, c)
	records := readLog(t, c.meta.LogPath)
	var got []string
	for _, rec := range records {
		if rec.time.Before(before.Add(-time.Second)) || rec.time.After(time.Now()) {
			t.Errorf("record %q: time %v out of range", rec.line, rec.time)
		}
		content := rec.content
		if strings.Trim(content, "x") == "" {
			content = fmt.Sprintf("%d x", len(content))
		}
		got = append(got, rec.stream+" "+rec.tag+" "+content)
	}
	// Streams are read apart: each keeps its order, not their interleaving.
	byStream := func(prefix string) []string {
		return slices.DeleteFunc(slices.Clone(got), func(s string) bool { return !strings.HasPrefix(s, prefix) })
	}
	wantStdout := []string{"stdout F one", "stdout F two", "stdout P 16384 x", "stdout F 3616 x", "stdout F no newline"}
	if s := byStream("stdout"); !slices.Equal(s, wantStdout) {
		t.Errorf("stdout records %q, want %q", s, wantStdout)
	}
	if s := byStream("stderr"); !slices.Equal(s, []string{"stderr F oops"}) {
		t.Errorf("stderr records %q", s)
	}
}

func TestNoLog(t *testing.T) {
	r := newRuntime(t)
	ensureSandbox(t, r, "pod-quiet", "quiet")
	c, err := r.Start(context.Background(), ContainerSpec{
		ID: "quiet", PodUID: "pod-quiet", LowerDirs: layers, Args: toolbox("long 2000000 ; exit 4"),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Signal(unix.SIGKILL); waitExit(t, c); _ = c.Remove() })
	// Its output, more than a pipe holds, goes nowhere without blocking it.
	if st := waitExit(t, c); st.ExitCode != 4 {
		t.Errorf("exit code %d, want 4", st.ExitCode)
	}
	if exists(filepath.Join(c.dir, "stdout")) {
		t.Error("a container without a log has output FIFOs")
	}
}

func TestCgroupResources(t *testing.T) {
	r := newRuntime(t)
	ensureSandbox(t, r, "pod-res", "res")
	c := start(t, r, ContainerSpec{
		ID: "limited", PodUID: "pod-res", Args: toolbox("sleep 600"),
		MemoryLimit: 64 << 20, PidsLimit: 50, CPUShares: 512, CPUQuota: 50000, CPUPeriod: 100000,
	})
	st, err := c.lc.State()
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{}
	if cgroups.IsCgroup2UnifiedMode() {
		p := st.CgroupPaths[""]
		want[filepath.Join(p, "memory.max")] = "67108864"
		want[filepath.Join(p, "pids.max")] = "50"
		want[filepath.Join(p, "cpu.max")] = "50000 100000"
	} else {
		want[filepath.Join(st.CgroupPaths["memory"], "memory.limit_in_bytes")] = "67108864"
		want[filepath.Join(st.CgroupPaths["pids"], "pids.max")] = "50"
		want[filepath.Join(st.CgroupPaths["cpu"], "cpu.shares")] = "512"
		want[filepath.Join(st.CgroupPaths["cpu"], "cpu.cfs_quota_us")] = "50000"
		if swapAccounting() {
			want[filepath.Join(st.CgroupPaths["memory"], "memory.memsw.limit_in_bytes")] = "67108864"
		}
	}
	for file, value := range want {
		if !strings.HasSuffix(filepath.Dir(file), "/"+r.cgroupParent+"/podpod-res/limited") {
			t.Errorf("cgroup %s is not the pod's", filepath.Dir(file))
		}
		data, err := os.ReadFile(file)
		if got := strings.TrimSpace(string(data)); got != value || err != nil {
			t.Errorf("%s = %q (%v), want %q", file, got, err, value)
		}
	}
	// The container's processes are in it.
	procs, err := c.lc.Processes()
	if err != nil || !slices.Contains(procs, c.Pid()) {
		t.Errorf("processes in the cgroup %v (%v), want the init %d", procs, err, c.Pid())
	}
}

func TestSignal(t *testing.T) {
	r := newRuntime(t)
	ensureSandbox(t, r, "pod-sig", "sig")
	for _, tt := range []struct {
		signal   syscall.Signal
		wantExit int
	}{
		{unix.SIGTERM, 143}, // the program's own code on TERM
		{unix.SIGKILL, 137},
	} {
		t.Run(tt.signal.String(), func(t *testing.T) {
			c := start(t, r, ContainerSpec{ID: "sleeper-" + strconv.Itoa(int(tt.signal)), PodUID: "pod-sig", Args: toolbox("echo ready ; sleep 600")})
			// Until the program handles TERM, the kernel ignores TERM to a
			// namespace's init.
			waitForLog(t, c.meta.LogPath, "ready")
			if st, err := c.State(); err != nil || !st.Running {
				t.Fatalf("state %+v, %v: want running", st, err)
			}
			if err := c.Signal(tt.signal); err != nil {
				t.Fatal(err)
			}
			select {
			case <-c.Exited():
			case <-time.After(10 * time.Second):
				t.Fatal("Exited not closed")
			}
			if st, err := c.State(); err != nil || st.Running || st.ExitCode != tt.wantExit {
				t.Errorf("state %+v, %v; want exit code %d", st, err, tt.wantExit)
			}
			if err := c.Signal(tt.signal); err != nil {
				t.Errorf("signal to a stopped container: %v", err)
			}
		})
	}
}

func TestSandboxIsShared(t *testing.T) {
	r := newRuntime(t)
	sandbox := ensureSandbox(t, r, "pod-shared", "shared")
	again, err := r.EnsureSandbox("pod-shared", SandboxOptions{Hostname: "shared"})
	if err != nil || again.NetNSPath() != sandbox.NetNSPath() {
		t.Fatalf("EnsureSandbox again: %v, %v", again, err)
	}
	ensureSandbox(t, r, "pod-other", "other")
	if uids, err := r.ListSandboxes(); err != nil || !slices.Equal(uids, []string{"pod-other", "pod-shared"}) {
		t.Errorf("ListSandboxes: %q, %v", uids, err)
	}
	// They run together: the kernel reuses a namespace's inode number
	// once the namespace is gone.
	script := "ns net ; ns pid ; ns ipc ; ns uts ; cat /sys/class/net/lo/flags ; write /dev/shm/x x ; echo done ; sleep 600"
	namespaces := map[string][]string{}
	for _, id := range []string{"first", "second", "other"} {
		pod := "pod-shared"
		if id == "other" {
			pod = "pod-other"
		}
		c := start(t, r, ContainerSpec{ID: id, PodUID: pod, Args: toolbox(script)})
		waitForLog(t, c.meta.LogPath, "done")
		namespaces[id] = stdout(t, c.meta.LogPath)
		if len(namespaces[id]) != 7 {
			t.Fatalf("%s printed %q", id, namespaces[id])
		}
		if flags, _ := strconv.ParseUint(namespaces[id][4], 0, 32); flags&unix.IFF_UP == 0 {
			t.Errorf("%s: loopback flags %s, want up", id, namespaces[id][4])
		}
	}
	var st unix.Stat_t
	if err := unix.Stat(sandbox.NetNSPath(), &st); err != nil {
		t.Fatal(err)
	}
	if want := fmt.Sprintf("net:[%d]", st.Ino); namespaces["first"][0] != want {
		t.Errorf("container's network namespace %s, want the sandbox's %s", namespaces["first"][0], want)
	}
	first, second, other := namespaces["first"], namespaces["second"], namespaces["other"]
	for i, ns := range []string{"net", "pid", "ipc", "uts"} {
		shared := ns != "pid"
		if (first[i] == second[i]) != shared {
			t.Errorf("%s namespaces of one pod %s and %s: want shared %v", ns, first[i], second[i], shared)
		}
		if first[i] == other[i] {
			t.Errorf("%s namespace %s shared with another pod", ns, first[i])
		}
	}
	if !exists(filepath.Join(sandbox.shmPath(), "x")) {
		t.Error("/dev/shm is not the sandbox's")
	}
}

func TestExec(t *testing.T) {
	r := newRuntime(t)
	ensureSandbox(t, r, "pod-exec", "exec-host")
	c := start(t, r, ContainerSpec{
		ID: "execd", PodUID: "pod-exec", Args: toolbox("sleep 600"),
		Env: []string{"WHO=container", "PATH=/bin"}, WorkingDir: "/etc",
	})
	sizes := make(chan TermSize, 1)
	sizes <- TermSize{Width: 100, Height: 30}
	tests := []struct {
		name       string
		opts       ExecOptions
		timeout    time.Duration
		wantCode   int
		wantStdout string
		wantStderr string
	}{
		{name: "exit code", opts: ExecOptions{Args: toolbox("exit 7")}, wantCode: 7},
		{name: "stdout and stderr", opts: ExecOptions{Args: toolbox("echo out ; errecho err")}, wantStdout: "out\n", wantStderr: "err\n"},
		{name: "container's environment, directory and hostname", opts: ExecOptions{Args: toolbox("env WHO ; pwd ; hostname")}, wantStdout: "container\n/etc\nexec-host\n"},
		{name: "own environment", opts: ExecOptions{Args: toolbox("env WHO"), Env: []string{"WHO=exec", "PATH=/bin"}}, wantStdout: "exec\n"},
		{name: "stdin", opts: ExecOptions{Args: toolbox("stdin"), Stdin: strings.NewReader("ping\npong\n")}, wantStdout: "ping\npong\n"},
		{name: "not a terminal", opts: ExecOptions{Args: toolbox("isatty")}, wantStdout: "false\n"},
		{name: "terminal", opts: ExecOptions{Args: toolbox("isatty ; errecho to-the-terminal"), TTY: true}, wantStdout: "true\r\nto-the-terminal\r\n"},
		{name: "terminal resized", opts: ExecOptions{Args: toolbox("waitsize 100 30"), TTY: true, Resize: sizes}, wantStdout: "size 100x30\r\n"},
		{name: "cancelled", opts: ExecOptions{Args: toolbox("sleep 600")}, timeout: 300 * time.Millisecond, wantCode: 137},
		{name: "no such command", opts: ExecOptions{Args: []string{"/bin/nothing"}}, wantCode: -1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := context.Background()
			if tt.timeout > 0 {
				var cancel context.CancelFunc
				ctx, cancel = context.WithTimeout(ctx, tt.timeout)
				defer cancel()
			}
			var stdout, stderr bytes.Buffer
			tt.opts.Stdout, tt.opts.Stderr = &stdout, &stderr
			code, err := c.Exec(ctx, tt.opts)
			if tt.wantCode == -1 {
				if err == nil {
					t.Errorf("exec of a missing command: code %d, want an error", code)
				}
				return
			}
			if err != nil || code != tt.wantCode {
				t.Errorf("exec: code %d, %v; want %d", code, err, tt.wantCode)
			}
			if stdout.String() != tt.wantStdout || stderr.String() != tt.wantStderr {
				t.Errorf("stdout %q stderr %q, want %q %q", stdout.String(), stderr.String(), tt.wantStdout, tt.wantStderr)
			}
		})
	}
	if st, _ := c.State(); !st.Running {
		t.Error("the container stopped")
	}
}

func TestRemoveLeavesNothing(t *testing.T) {
	r := newRuntime(t)
	ensureSandbox(t, r, "pod-rm", "rm") // its cleanup finds it removed: fine
	c := start(t, r, ContainerSpec{ID: "removed", PodUID: "pod-rm", Args: toolbox("sleep 600")})
	cgroupPaths := func() []string {
		st, err := c.lc.State()
		if err != nil {
			t.Fatal(err)
		}
		var paths []string
		for _, p := range st.CgroupPaths {
			paths = append(paths, p)
		}
		return paths
	}()
	if err := c.Remove(); err == nil {
		t.Fatal("Remove of a running container succeeded")
	}
	if err := r.RemoveSandbox("pod-rm"); err == nil {
		t.Fatal("RemoveSandbox with a running container succeeded")
	}
	if err := c.Signal(unix.SIGKILL); err != nil {
		t.Fatal(err)
	}
	waitExit(t, c)
	if err := c.Remove(); err != nil {
		t.Fatal(err)
	}
	for _, p := range cgroupPaths {
		if exists(p) {
			t.Errorf("cgroup %s left", p)
		}
	}
	if exists(filepath.Join(r.stateDir(), "removed")) || exists(c.dir) {
		t.Error("container's state left")
	}
	if ids, _ := r.List(); len(ids) != 0 {
		t.Errorf("List after Remove: %q", ids)
	}
	if err := r.RemoveSandbox("pod-rm"); err != nil {
		t.Fatal(err)
	}
	mounts, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(mounts), r.root) {
		t.Errorf("mounts left under %s:\n%s", r.root, mounts)
	}
	for _, d := range cgroupDirs(r.podCgroup("pod-rm")) {
		t.Errorf("pod cgroup %s left", d)
	}
	if exists(filepath.Join(r.root, "sandboxes", "pod-rm")) {
		t.Error("sandbox directory left")
	}
}

// agentEnv makes the test binary a stand-in for stead (runAgent): it
// starts containers and exits, as stead does when it restarts.
const agentEnv = "STEAD_RUNTIME_TEST_AGENT"

type agentConfig struct {
	Root, CgroupParent, PodUID string
	// Containers to start; those in WaitFor are waited for before the
	// agent exits.
	Containers []ContainerSpec
	WaitFor    []string
}

func runAgent(config string) int {
	var cfg agentConfig
	if err := json.Unmarshal([]byte(config), &cfg); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	r, err := New(cfg.Root, cfg.CgroupParent)
	if err == nil {
		_, err = r.EnsureSandbox(cfg.PodUID, SandboxOptions{Hostname: "adopted"})
	}
	started := map[string]*Container{}
	for _, spec := range cfg.Containers {
		if err != nil {
			break
		}
		started[spec.ID], err = r.Start(context.Background(), spec)
	}
	for _, id := range cfg.WaitFor {
		for err == nil {
			var st State
			if st, err = started[id].State(); err == nil && !st.Running {
				break
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return 0
}

func TestAdoptionAfterAgentExits(t *testing.T) {
	r := newRuntime(t)
	// The agent made the sandbox; this test removes it.
	t.Cleanup(func() {
		if err := r.RemoveSandbox("pod-adopt"); err != nil {
			t.Errorf("remove sandbox: %v", err)
		}
	})
	logDir := t.TempDir()
	cfg := agentConfig{
		Root: r.root, CgroupParent: r.cgroupParent, PodUID: "pod-adopt",
		Containers: []ContainerSpec{
			{ID: "ticker", PodUID: "pod-adopt", LowerDirs: layers, Args: toolbox("tick"), LogPath: filepath.Join(logDir, "ticker.log")},
			{ID: "quick", PodUID: "pod-adopt", LowerDirs: layers, Args: toolbox("exit 5"), LogPath: filepath.Join(logDir, "quick.log")},
		},
		WaitFor: []string{"quick"},
	}
	config, err := json.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	agent := exec.Command(os.Args[0])
	agent.Env = append(os.Environ(), agentEnv+"="+string(config))
	if out, err := agent.CombinedOutput(); err != nil {
		t.Fatalf("agent: %v\n%s", err, out)
	}
	// stead is away for a while: the ticker goes on writing, unread.
	time.Sleep(200 * time.Millisecond)
	// From here on the test's runtime is the restarted stead.
	var adopted []*Container
	t.Cleanup(func() {
		for _, c := range adopted {
			_ = c.Signal(unix.SIGKILL)
			waitExit(t, c)
			_ = c.Remove()
		}
	})
	ids, err := r.List()
	if err != nil || !slices.Equal(ids, []string{"quick", "ticker"}) {
		t.Fatalf("List: %q, %v", ids, err)
	}
	ticker, err := r.Load("ticker")
	if err != nil {
		t.Fatal(err)
	}
	adopted = append(adopted, ticker)
	quick, err := r.Load("quick")
	if err != nil {
		t.Fatal(err)
	}
	adopted = append(adopted, quick)
	if again, _ := r.Load("ticker"); again != ticker {
		t.Error("a second Load made another Container")
	}
	if _, err := r.Start(context.Background(), cfg.Containers[0]); err == nil {
		t.Error("Start of an adopted container's id succeeded")
	}

	// An exit that the first agent saw is still known.
	if st, err := quick.State(); err != nil || st.Running || st.ExitCode != 5 || st.FinishedAt.IsZero() {
		t.Errorf("quick: %+v, %v; want exited 5", st, err)
	}
	select {
	case <-quick.Exited():
	default:
		t.Error("Exited of a stopped container is not closed")
	}
	// The ticker outlived its agent, kept writing while no one read (no
	// SIGPIPE), and its output reaches the log again.
	st, err := ticker.State()
	if err != nil || !st.Running || st.StartedAt.IsZero() {
		t.Fatalf("ticker: %+v, %v; want running", st, err)
	}
	if ppid := parentOf(t, ticker.Pid()); ppid == os.Getpid() {
		t.Errorf("ticker's parent is the test")
	}
	logged := len(readLog(t, cfg.Containers[0].LogPath))
	for deadline := time.Now().Add(5 * time.Second); len(readLog(t, cfg.Containers[0].LogPath)) < logged+5; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the adopted container's output does not reach its log")
		}
	}
	records := readLog(t, cfg.Containers[0].LogPath)
	for i, rec := range records {
		if rec.content != fmt.Sprintf("tick %d", i) {
			t.Fatalf("record %d is %q: lines lost or repeated across the restart", i, rec.content)
		}
	}
	var out bytes.Buffer
	if code, err := ticker.Exec(context.Background(), ExecOptions{Args: toolbox("hostname"), Stdout: &out}); code != 0 || err != nil || out.String() != "adopted\n" {
		t.Errorf("exec in the adopted container: %d, %v, %q", code, err, out.String())
	}
	// Its exit is not this process's to collect.
	signalled := time.Now()
	if err := ticker.Signal(unix.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-ticker.Exited():
	case <-time.After(10 * time.Second):
		t.Fatal("Exited not closed after the adopted container stopped")
	}
	st, err = ticker.State()
	if err != nil || st.Running || st.ExitCode != ExitCodeUnknown || st.FinishedAt.Before(signalled) || time.Since(st.FinishedAt) > 5*time.Second {
		t.Errorf("adopted container's exit: %+v, %v; want ExitCodeUnknown, finished after %v", st, err, signalled)
	}
	for _, c := range adopted {
		if err := c.Remove(); err != nil {
			t.Fatal(err)
		}
	}
	adopted = nil
}

func parentOf(t *testing.T, pid int) int {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	scanner := bufio.NewScanner(f)
	for scanner.Scan() {
		if v, ok := strings.CutPrefix(scanner.Text(), "PPid:"); ok {
			ppid, _ := strconv.Atoi(strings.TrimSpace(v))
			return ppid
		}
	}
	t.Fatalf("no PPid for %d", pid)
	return 0
}

// logText is the log as it is, for failure messages.
func logText(path string) string {
	data, _ := os.ReadFile(path)
	return string(data)
}

func waitForLog(t testing.TB, path, line string) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if exists(path) && slices.Contains(stdout(t, path), line) {
			return
		}
	}
	t.Fatalf("%q never logged; log %q", line, logText(path))
}

// A node runs many containers: waiting for them must not take a thread
// each.
func TestNoThreadPerContainer(t *testing.T) {
	r := newRuntime(t)
	ensureSandbox(t, r, "pod-many", "many")
	// Warm up: the first starts grow Go's thread pool for good.
	for i := range 3 {
		start(t, r, ContainerSpec{ID: fmt.Sprintf("warm-%d", i), PodUID: "pod-many", Args: toolbox("sleep 600")})
	}
	before := threads(t)
	const n = 20
	for i := range n {
		start(t, r, ContainerSpec{ID: fmt.Sprintf("many-%d", i), PodUID: "pod-many", Args: toolbox("sleep 600")})
	}
	time.Sleep(100 * time.Millisecond)
	if grown := threads(t) - before; grown >= n/2 {
		t.Errorf("threads grew by %d for %d containers", grown, n)
	}
}

func threads(t *testing.T) int {
	data, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Fatal(err)
	}
	for line := range strings.Lines(string(data)) {
		if v, ok := strings.CutPrefix(line, "Threads:"); ok {
			n, _ := strconv.Atoi(strings.TrimSpace(v))
			return n
		}
	}
	t.Fatal("no Threads in /proc/self/status")
	return 0
}

// A container given another's PID namespace (an ephemeral container aimed
// at a target) runs in it; killing it leaves the target running.
func TestJoinsAnotherContainersPIDNamespace(t *testing.T) {
	r := newRuntime(t)
	ensureSandbox(t, r, "pod-debugged", "debugged")
	script := "ns pid ; echo done ; sleep 600"
	target := start(t, r, ContainerSpec{ID: "target", PodUID: "pod-debugged", Args: toolbox(script)})
	waitForLog(t, target.meta.LogPath, "done")
	debug := start(t, r, ContainerSpec{ID: "debug", PodUID: "pod-debugged", Args: toolbox(script),
		PIDNamespace: fmt.Sprintf("/proc/%d/ns/pid", target.Pid())})
	waitForLog(t, debug.meta.LogPath, "done")
	if got, want := stdout(t, debug.meta.LogPath)[0], stdout(t, target.meta.LogPath)[0]; got != want {
		t.Errorf("debug container's PID namespace %s, want the target's %s", got, want)
	}
	if err := debug.Signal(unix.SIGKILL); err != nil {
		t.Fatal(err)
	}
	waitExit(t, debug)
	if st, err := target.State(); err != nil || !st.Running {
		t.Errorf("target after the debug container's kill: %+v, %v; want it running", st, err)
	}
}

// A sandbox that asks for the node's network and IPC (hostNetwork,
// hostIPC) runs its containers in the namespaces stead runs in, with the
// node's hostname and /dev/shm; with the node's PID namespace as well
// (hostPID), they see the node's processes. Removing it leaves the node's
// namespaces and /dev/shm as they were.
func TestSandboxOnTheNodesNamespaces(t *testing.T) {
	r := newRuntime(t)
	ensureSandbox := func() {
		if _, err := r.EnsureSandbox("pod-host", SandboxOptions{Hostname: "ignored", HostNetwork: true, HostIPC: true}); err != nil {
			t.Fatal(err)
		}
	}
	ensureSandbox()
	c := start(t, r, ContainerSpec{ID: "host", PodUID: "pod-host", PIDNamespace: fmt.Sprintf("/proc/%d/ns/pid", os.Getpid()),
		Args: toolbox("ns net ; ns uts ; ns ipc ; ns pid ; hostname ; echo done ; sleep 600")})
	waitForLog(t, c.meta.LogPath, "done")
	got := stdout(t, c.meta.LogPath)
	hostname, err := os.Hostname()
	if err != nil {
		t.Fatal(err)
	}
	want := []string{}
	for _, ns := range []string{"net", "uts", "ipc", "pid"} {
		var st unix.Stat_t
		if err := statOwnNamespace(ns, &st); err != nil {
			t.Fatal(err)
		}
		want = append(want, fmt.Sprintf("%s:[%d]", ns, st.Ino))
	}
	want = append(want, hostname, "done")
	if !slices.Equal(got, want) {
		t.Errorf("container on the node's namespaces printed %q, want %q", got, want)
	}
	if err := c.Signal(unix.SIGKILL); err != nil {
		t.Fatal(err)
	}
	waitExit(t, c)
	if err := c.Remove(); err != nil {
		t.Fatal(err)
	}
	if err := r.RemoveSandbox("pod-host"); err != nil {
		t.Fatal(err)
	}
	if !isFilesystem("/dev/shm", unix.TMPFS_MAGIC) {
		t.Error("the node's /dev/shm is gone with the sandbox")
	}
	if host, _ := os.Hostname(); host != hostname {
		t.Errorf("the node's hostname became %q", host)
	}
}

// BenchmarkExec is an exec probe's way into a running container: a
// process started in its namespaces and cgroup, and its exit waited for.
func BenchmarkExec(b *testing.B) {
	r := newRuntime(b)
	ensureSandbox(b, r, "pod-bench-exec", "bench")
	c := start(b, r, ContainerSpec{ID: "bench-exec", PodUID: "pod-bench-exec", Args: toolbox("sleep 600")})
	ctx := context.Background()
	for b.Loop() {
		if code, err := c.Exec(ctx, ExecOptions{Args: toolbox("exit 0")}); err != nil || code != 0 {
			b.Fatalf("exec: %d, %v", code, err)
		}
	}
}

// statOwnNamespace stats the namespace of this kind that the test's
// goroutines run in. Not /proc/self's: that is the main thread's, and the
// main thread can be the one a sandbox was made on (a locked main thread
// whose goroutine ends is parked, not ended), left in a pod's namespaces.
func statOwnNamespace(kind string, st *unix.Stat_t) error {
	goruntime.LockOSThread()
	defer goruntime.UnlockOSThread()
	return unix.Stat("/proc/thread-self/ns/"+kind, st)
}

// DialInSandbox reaches a server on the pod's own loopback, which the node
// cannot reach itself; for a sandbox on the node's network, the node's.
func TestDialInSandbox(t *testing.T) {
	r := newRuntime(t)
	sandbox := ensureSandbox(t, r, "pod-dial", "dial")
	if _, err := r.EnsureSandbox("pod-dial-host", SandboxOptions{HostNetwork: true}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = r.RemoveSandbox("pod-dial-host") })
	var inPod net.Listener
	netnstest.Run(t, sandbox.NetNSPath(), func() {
		var err error
		if inPod, err = net.Listen("tcp4", "127.0.0.1:0"); err != nil {
			t.Fatal(err)
		}
	})
	defer inPod.Close()
	onNode, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer onNode.Close()
	for _, tc := range []struct {
		pod string
		ln  net.Listener
	}{{"pod-dial", inPod}, {"pod-dial-host", onNode}} {
		accepted := make(chan error, 1)
		go func() {
			conn, err := tc.ln.Accept()
			if err == nil {
				_, err = conn.Write([]byte("hello"))
				conn.Close()
			}
			accepted <- err
		}()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		conn, err := r.DialInSandbox(ctx, tc.pod, "tcp4", tc.ln.Addr().String())
		cancel()
		if err != nil {
			t.Fatalf("%s: DialInSandbox: %v", tc.pod, err)
		}
		got, err := io.ReadAll(conn)
		conn.Close()
		if err != nil || string(got) != "hello" || <-accepted != nil {
			t.Errorf("%s: read %q, %v; want the server's hello", tc.pod, got, err)
		}
	}
}
