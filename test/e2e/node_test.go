package e2e

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// nodeNamespace makes the namespace the node tests share, once.
func nodeNamespace(t *testing.T, c *cluster) string {
	const ns = "node"
	if out, err := c.kubectl("", "create", "namespace", ns); err != nil && !strings.Contains(out, "AlreadyExists") {
		t.Fatalf("create namespace %s: %v\n%s", ns, err, out)
	}
	return ns
}

// nsKubectl is mustKubectl in the namespace ns.
func nsKubectl(c *cluster, ns string) func(args ...string) string {
	return func(args ...string) string {
		c.t.Helper()
		return c.mustKubectl("", append([]string{"-n", ns}, args...)...)
	}
}

// deleteAtEnd deletes the pod when the test ends, without waiting out a
// grace period.
func deleteAtEnd(t *testing.T, c *cluster, ns, pod string) {
	t.Cleanup(func() {
		_, _ = c.kubectl("", "-n", ns, "delete", "pod", pod, "--grace-period=0", "--force", "--ignore-not-found")
	})
}

// waitFor polls a jsonpath of the pod until it reads want.
func waitFor(t *testing.T, c *cluster, ns, pod, jsonpath, want string, timeout time.Duration) {
	t.Helper()
	eventually(t, timeout, fmt.Sprintf("pod %s: %s = %q", pod, jsonpath, want), func() error {
		out, err := c.kubectl("", "-n", ns, "get", "pod", pod, "-o", "jsonpath="+jsonpath)
		if err != nil || out != want {
			return fmt.Errorf("got %q (%v)", out, err)
		}
		return nil
	})
}

// watchPod prints the jsonpath template on every change of the pod, so that
// states that last only between two polls are seen too. Started before the
// pod is created, it sees the pod's every state.
func watchPod(t *testing.T, c *cluster, ns, pod, template string) <-chan string {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	lines, err := c.watchLines(ctx, "-n", ns, "get", "pods", "--field-selector", "metadata.name="+pod, "-w", "-o", "jsonpath="+template+`{"\n"}`)
	if err != nil {
		t.Fatal(err)
	}
	return lines
}

// A container's output, stdout and stderr, is in kubectl logs, and the
// flags do what they say: -f follows, --previous shows the run before a
// restart, --tail the last lines, --timestamps each line's time.
func TestNodeLogs(t *testing.T) {
	c := sharedCluster(t)
	ns := nodeNamespace(t, c)
	kubectl := nsKubectl(c, ns)
	started := time.Now()
	// Each run numbers itself (the count lives in an emptyDir, which
	// outlives a container) and waits for the test's go-ahead twice: once
	// to print a line, once to exit. stdout and stderr are two pipes, read
	// apart, as containerd reads them: the pause between the two streams'
	// lines keeps their order in the log certain.
	c.mustKubectl(`apiVersion: v1
kind: Pod
metadata: {name: logs}
spec:
  terminationGracePeriodSeconds: 1
  volumes: [{name: state, emptyDir: {}}]
  containers:
  - name: main
    image: busybox:1.28.4
    volumeMounts: [{name: state, mountPath: /state}]
    command:
    - sh
    - -c
    - |
      n=$(( $(cat /state/n 2>/dev/null || echo 0) + 1 )); echo $n > /state/n
      echo run-$n stderr >&2
      sleep 1
      echo run-$n start
      for i in 1 2 3 4 5; do echo run-$n line-$i; done
      while [ ! -f /state/go-$n ]; do sleep 0.2; done
      echo run-$n followed
      while [ ! -f /state/exit-$n ]; do sleep 0.2; done
      echo run-$n exiting
      exit 1
`, "-n", ns, "apply", "-f", "-")
	deleteAtEnd(t, c, ns, "logs")
	waitFor(t, c, ns, "logs", "{.status.phase}", "Running", 2*time.Minute)

	run1 := []string{"run-1 stderr", "run-1 start", "run-1 line-1", "run-1 line-2", "run-1 line-3", "run-1 line-4", "run-1 line-5"}
	eventually(t, time.Minute, "the first run's output in kubectl logs", func() error {
		if got := lines(kubectl("logs", "logs")); !slices.Equal(got, run1) {
			return fmt.Errorf("kubectl logs: %q, want %q", got, run1)
		}
		return nil
	})

	if got, want := lines(kubectl("logs", "logs", "--tail=2")), run1[5:]; !slices.Equal(got, want) {
		t.Errorf("kubectl logs --tail=2: %q, want %q", got, want)
	}
	if got := lines(kubectl("logs", "logs", "--tail=0")); len(got) != 0 {
		t.Errorf("kubectl logs --tail=0: %q, want nothing", got)
	}

	stamped := lines(kubectl("logs", "logs", "--timestamps"))
	if len(stamped) != len(run1) {
		t.Errorf("kubectl logs --timestamps: %q, want %d lines", stamped, len(run1))
	}
	var last time.Time
	for i, line := range stamped {
		ts, text, _ := strings.Cut(line, " ")
		at, err := time.Parse(time.RFC3339Nano, ts)
		if err != nil {
			t.Errorf("kubectl logs --timestamps line %q: no RFC3339 time first: %v", line, err)
			continue
		}
		if at.Before(started.Add(-time.Minute)) || at.After(time.Now().Add(time.Minute)) || at.Before(last) {
			t.Errorf("kubectl logs --timestamps line %q: time %v is not when the line was written", line, at)
		}
		last = at
		if i < len(run1) && text != run1[i] {
			t.Errorf("kubectl logs --timestamps line %q: text %q, want %q", line, text, run1[i])
		}
	}

	// -f: what the container prints after kubectl started comes through,
	// and kubectl returns once the container has exited.
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	follow, err := c.watchLines(ctx, "-n", ns, "logs", "-f", "logs")
	if err != nil {
		t.Fatal(err)
	}
	next := func(want string) {
		t.Helper()
		for {
			select {
			case line, ok := <-follow:
				if !ok {
					t.Fatalf("kubectl logs -f ended before %q", want)
				}
				if line == want {
					return
				}
			case <-ctx.Done():
				t.Fatalf("kubectl logs -f: no %q", want)
			}
		}
	}
	next("run-1 line-5")
	kubectl("exec", "logs", "--", "touch", "/state/go-1")
	next("run-1 followed")
	kubectl("exec", "logs", "--", "touch", "/state/exit-1")
	next("run-1 exiting")
	for line := range follow {
		t.Errorf("kubectl logs -f printed %q after the container's last line", line)
	}
	if ctx.Err() != nil {
		t.Errorf("kubectl logs -f did not end when the container exited")
	}

	// The restart: --previous is the first run, the log the second.
	waitFor(t, c, ns, "logs", "{.status.containerStatuses[0].restartCount}", "1", 2*time.Minute)
	run2 := []string{"run-2 stderr", "run-2 start", "run-2 line-1", "run-2 line-2", "run-2 line-3", "run-2 line-4", "run-2 line-5"}
	eventually(t, time.Minute, "the second run's output in kubectl logs", func() error {
		if got := lines(kubectl("logs", "logs")); !slices.Equal(got, run2) {
			return fmt.Errorf("kubectl logs: %q, want %q", got, run2)
		}
		return nil
	})
	want := append(slices.Clone(run1), "run-1 followed", "run-1 exiting")
	if got := lines(kubectl("logs", "logs", "--previous")); !slices.Equal(got, want) {
		t.Errorf("kubectl logs --previous: %q, want %q", got, want)
	}
	if got := lines(kubectl("logs", "logs", "--previous", "--tail=1")); !slices.Equal(got, want[len(want)-1:]) {
		t.Errorf("kubectl logs --previous --tail=1: %q, want %q", got, want[len(want)-1:])
	}
}

func lines(s string) []string {
	s = strings.TrimSuffix(s, "\n")
	if s == "" {
		return nil
	}
	return strings.Split(s, "\n")
}

// A container that keeps failing is restarted with a back-off between its
// runs, CrashLoopBackOff, and its status keeps the last run's exit code.
func TestNodeCrashLoopBackOff(t *testing.T) {
	c := sharedCluster(t)
	ns := nodeNamespace(t, c)
	kubectl := nsKubectl(c, ns)
	updates := watchPod(t, c, ns, "crash", "{.status.containerStatuses[0].restartCount} "+
		"{.status.containerStatuses[0].lastState.terminated.exitCode}/{.status.containerStatuses[0].lastState.terminated.reason} "+
		"{.status.containerStatuses[0].state.waiting.reason}")
	c.mustKubectl(`apiVersion: v1
kind: Pod
metadata: {name: crash}
spec:
  restartPolicy: Always
  terminationGracePeriodSeconds: 1
  containers:
  - name: main
    image: busybox:1.28.4
    command: [sh, -c, "echo crash; exit 3"]
`, "-n", ns, "apply", "-f", "-")
	deleteAtEnd(t, c, ns, "crash")

	deadline := time.After(3 * time.Minute)
	var seen []string
	backOffAt := -1 // the restart count at which CrashLoopBackOff was seen
	for done := false; !done; {
		select {
		case line, ok := <-updates:
			if !ok {
				t.Fatalf("kubectl get -w ended; saw %q", seen)
			}
			seen = append(seen, line)
			f := strings.Fields(line)
			if len(f) < 2 {
				continue
			}
			count, _ := strconv.Atoi(f[0])
			if len(f) == 3 && f[2] == "CrashLoopBackOff" && backOffAt < 0 {
				backOffAt = count
			}
			done = count >= 2 && backOffAt >= 0 && backOffAt < count
			if count >= 1 && f[1] != "3/Error" {
				t.Fatalf("restartCount %d with last state %q, want exit code 3 (Error); saw %q", count, f[1], seen)
			}
		case <-deadline:
			t.Fatalf("no CrashLoopBackOff followed by a restart after 3m; saw %q", seen)
		}
	}
	t.Logf("states: %q", seen)
	out := kubectl("get", "pod", "crash", "-o", "jsonpath={.status.containerStatuses[0].lastState.terminated.exitCode}")
	if out != "3" {
		t.Errorf("lastState.terminated.exitCode %q, want 3", out)
	}
	if got := lines(kubectl("logs", "crash", "--previous")); !slices.Equal(got, []string{"crash"}) {
		t.Errorf("kubectl logs --previous: %q, want the crashed run's line", got)
	}
	events := kubectl("get", "events", "--field-selector", "involvedObject.name=crash", "-o", `jsonpath={range .items[*]}{.reason}: {.message}{"\n"}{end}`)
	if !strings.Contains(events, "BackOff: Back-off restarting failed container") {
		t.Logf("no BackOff event (the kubelet records one); the pod's events:\n%s", events)
	}
}

// proc is a process on the host: its pid and start time, which together
// tell it from a later process given the same pid.
type proc struct {
	pid   int
	start string
}

func procStat(pid int) (state, start string, ok bool) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return "", "", false
	}
	// pid (comm) state ppid ... starttime is the 22nd field; comm may hold
	// spaces and parentheses, so count from its last ')'.
	s := string(data)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	if len(f) < 20 {
		return "", "", false
	}
	return f[0], f[19], true
}

// podProcesses finds the host's processes in the pod's cgroup,
// <parent>/pod<uid>/<container>.
func podProcesses(t *testing.T, uid string) []proc {
	t.Helper()
	entries, err := os.ReadDir("/proc")
	if err != nil {
		t.Fatal(err)
	}
	var procs []proc
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		cgroup, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cgroup"))
		if err != nil || !strings.Contains(string(cgroup), "/pod"+uid+"/") {
			continue
		}
		if _, start, ok := procStat(pid); ok {
			procs = append(procs, proc{pid, start})
		}
	}
	return procs
}

// left is the processes of procs that still exist, zombies included.
func left(procs []proc) []string {
	var alive []string
	for _, p := range procs {
		if state, start, ok := procStat(p.pid); ok && start == p.start {
			cmdline, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", p.pid))
			alive = append(alive, fmt.Sprintf("%d (%s, %s)", p.pid, state, strings.ReplaceAll(string(cmdline), "\x00", " ")))
		}
	}
	return alive
}

// deletePod runs kubectl delete pod, which waits for the pod to be gone,
// and tells how long that took.
func deletePod(t *testing.T, c *cluster, ns, pod string) time.Duration {
	t.Helper()
	begin := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, steadBin, "kubectl", "-n", ns, "delete", "pod", pod)
	cmd.Env = append(os.Environ(), "STEAD_DATA_DIR="+c.dataDir, "KUBECONFIG=")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("kubectl delete pod %s: %v (after %v)\n%s", pod, err, time.Since(begin), out)
	}
	return time.Since(begin)
}

// A deleted pod's containers are stopped: one that ignores SIGTERM is
// killed once its grace period is over, and nothing of it is left running;
// one that exits on SIGTERM is gone without waiting out its grace period.
func TestNodeDeleteStopsContainers(t *testing.T) {
	c := sharedCluster(t)
	ns := nodeNamespace(t, c)
	kubectl := nsKubectl(c, ns)
	parent := t
	defer func() { c.t = parent }()

	t.Run("IgnoresSIGTERM", func(t *testing.T) {
		c.t = t
		c.mustKubectl(`apiVersion: v1
kind: Pod
metadata: {name: stubborn}
spec:
  terminationGracePeriodSeconds: 3
  containers:
  - name: main
    image: busybox:1.28.4
    command: [sh, -c, 'trap "" TERM; sleep 3600 & sleep 3600']
`, "-n", ns, "apply", "-f", "-")
		deleteAtEnd(t, c, ns, "stubborn")
		waitFor(t, c, ns, "stubborn", "{.status.phase}", "Running", 2*time.Minute)

		uid := kubectl("get", "pod", "stubborn", "-o", "jsonpath={.metadata.uid}")
		id := strings.TrimPrefix(kubectl("get", "pod", "stubborn", "-o", "jsonpath={.status.containerStatuses[0].containerID}"), "stead://")
		data, err := os.ReadFile(filepath.Join(c.dataDir, "run", "state", id, "state.json"))
		if err != nil {
			t.Fatalf("container %s's state: %v", id, err)
		}
		var state struct {
			Pid int `json:"init_process_pid"`
		}
		if err := json.Unmarshal(data, &state); err != nil || state.Pid <= 0 {
			t.Fatalf("container %s's state.json: init pid %d, %v", id, state.Pid, err)
		}
		var procs []proc
		// sh runs the first sleep in the background and execs the second.
		eventually(t, time.Minute, "the container's two sleeps in the pod's cgroup", func() error {
			procs = podProcesses(t, uid)
			if len(procs) < 2 {
				return fmt.Errorf("processes in the pod's cgroup: %v", procs)
			}
			return nil
		})
		if !slices.ContainsFunc(procs, func(p proc) bool { return p.pid == state.Pid }) {
			t.Fatalf("the container's init pid %d is not among its cgroup's processes %v", state.Pid, procs)
		}
		if alive := left(procs); len(alive) != len(procs) {
			t.Fatalf("some of %v already gone: %q", procs, alive)
		}

		took := deletePod(t, c, ns, "stubborn")
		t.Logf("kubectl delete took %v with a grace period of 3s", took)
		if alive := left(procs); len(alive) > 0 {
			t.Errorf("after kubectl delete returned, processes of the pod are left: %q", alive)
		}
		if again := podProcesses(t, uid); len(again) > 0 {
			t.Errorf("after kubectl delete returned, the pod's cgroup holds %v: %q", again, left(again))
		}
		if out, err := c.kubectl("", "-n", ns, "get", "pod", "stubborn"); err == nil || !strings.Contains(out, "NotFound") {
			t.Errorf("get pod after delete: %v %s", err, out)
		}
	})

	t.Run("ExitsOnSIGTERM", func(t *testing.T) {
		c.t = t
		// With a grace period of ten minutes, a delete that returns within
		// the test's two shows the container was not waited out.
		c.mustKubectl(`apiVersion: v1
kind: Pod
metadata: {name: polite}
spec:
  terminationGracePeriodSeconds: 600
  containers:
  - name: main
    image: busybox:1.28.4
    command: [sh, -c, 'trap "exit 0" TERM; while true; do sleep 0.2; done']
`, "-n", ns, "apply", "-f", "-")
		deleteAtEnd(t, c, ns, "polite")
		waitFor(t, c, ns, "polite", "{.status.phase}", "Running", 2*time.Minute)
		uid := kubectl("get", "pod", "polite", "-o", "jsonpath={.metadata.uid}")
		var procs []proc
		eventually(t, time.Minute, "the pod's processes in its cgroup", func() error {
			if procs = podProcesses(t, uid); len(procs) == 0 {
				return fmt.Errorf("no process in the pod's cgroup")
			}
			return nil
		})
		took := deletePod(t, c, ns, "polite")
		t.Logf("kubectl delete took %v with a grace period of 600s", took)
		if alive := left(procs); len(alive) > 0 {
			t.Errorf("after kubectl delete returned, processes of the pod are left: %q", alive)
		}
	})
}

// A pod's image is pulled from a registry (here one on loopback, spoken to
// over plain HTTP as containerd and docker do), and one that is not there
// leaves the pod in ErrImagePull and then ImagePullBackOff, the registry's
// reason in the message.
func TestNodeImagePull(t *testing.T) {
	c := sharedCluster(t)
	ns := nodeNamespace(t, c)
	kubectl := nsKubectl(c, ns)

	var manifestGets atomic.Int32
	reg := registry.New(registry.Logger(log.New(testWriter{t}, "registry: ", 0)))
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodGet && r.URL.Path == "/v2/test/busybox/manifests/pulled" {
			manifestGets.Add(1)
		}
		// The private repository is read only with its credentials, as
		// a registry answers: 401 with a Basic challenge.
		if user, password, _ := r.BasicAuth(); strings.HasPrefix(r.URL.Path, "/v2/private/") &&
			(r.Method == http.MethodGet || r.Method == http.MethodHead) && (user != "alice" || password != "s3cret") {
			w.Header().Set("WWW-Authenticate", `Basic realm="test"`)
			http.Error(w, `{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}`, http.StatusUnauthorized)
			return
		}
		reg.ServeHTTP(w, r)
	}))
	defer srv.Close()
	host := strings.TrimPrefix(srv.URL, "http://")

	tag := host + "/test/busybox:pulled"
	srcTag, err := name.NewTag("busybox:1.28.4")
	if err != nil {
		t.Fatal(err)
	}
	img, err := tarball.ImageFromPath(filepath.Join(testImages(t), "busybox.tar"), &srcTag)
	if err != nil {
		t.Fatal(err)
	}
	pushImage(t, srv.URL, "test/busybox", "pulled", img)
	digest, err := img.Digest()
	if err != nil {
		t.Fatal(err)
	}

	c.mustKubectl(fmt.Sprintf(`apiVersion: v1
kind: Pod
metadata: {name: pulled}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: main
    image: %s
    imagePullPolicy: Always
    command: [sh, -c, "echo pulled; sleep 3600"]
`, tag), "-n", ns, "apply", "-f", "-")
	deleteAtEnd(t, c, ns, "pulled")
	waitFor(t, c, ns, "pulled", "{.status.phase}", "Running", 2*time.Minute)
	if manifestGets.Load() == 0 {
		t.Errorf("the pod runs, but its image's manifest was never fetched from the registry")
	}
	// As containerd's CRI reports a pulled image: by its manifest's digest.
	if got, want := kubectl("get", "pod", "pulled", "-o", "jsonpath={.status.containerStatuses[0].imageID}"), host+"/test/busybox@"+digest.String(); got != want {
		t.Errorf("imageID %q, want %q", got, want)
	}
	eventually(t, time.Minute, "the pulled image's container's output", func() error {
		if got := lines(kubectl("logs", "pulled")); !slices.Equal(got, []string{"pulled"}) {
			return fmt.Errorf("kubectl logs: %q", got)
		}
		return nil
	})

	// The node's events tell of the pull, in the kubelet's words.
	pullEvents := kubectl("get", "events", "--field-selector", "involvedObject.name=pulled", "-o", `jsonpath={range .items[*]}{.reason}: {.message}{"\n"}{end}`)
	for _, want := range []string{"Pulling: Pulling image \"" + tag + "\"", "Pulled: Successfully pulled image \"" + tag + "\" in ", "Created: Container created", "Started: Container started"} {
		if !strings.Contains(pullEvents, want) {
			t.Errorf("events of pod pulled:\n%s\nwant %q", pullEvents, want)
		}
	}

	// A private image: pulled with the pod's imagePullSecrets, refused
	// without them (Always: once present, IfNotPresent would not ask).
	pushImage(t, srv.URL, "private/busybox", "v1", img)
	private := host + "/private/busybox:v1"
	auth := base64.StdEncoding.EncodeToString([]byte("alice:s3cret"))
	c.mustKubectl(fmt.Sprintf(`apiVersion: v1
kind: Secret
metadata: {name: regcred}
type: kubernetes.io/dockerconfigjson
stringData:
  .dockerconfigjson: '{"auths":{"%s":{"auth":"%s"}}}'
---
apiVersion: v1
kind: Pod
metadata: {name: private}
spec:
  terminationGracePeriodSeconds: 1
  imagePullSecrets: [{name: regcred}]
  containers:
  - {name: main, image: %s, command: [sleep, "3600"]}
---
apiVersion: v1
kind: Pod
metadata: {name: private-without-secret}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - {name: main, image: %s, imagePullPolicy: Always, command: [sleep, "3600"]}
`, host, auth, private, private), "-n", ns, "apply", "-f", "-")
	deleteAtEnd(t, c, ns, "private")
	deleteAtEnd(t, c, ns, "private-without-secret")
	waitFor(t, c, ns, "private", "{.status.phase}", "Running", 2*time.Minute)
	eventually(t, 2*time.Minute, "the pod without the secret refused its image", func() error {
		reason := kubectl("get", "pod", "private-without-secret", "-o", "jsonpath={.status.containerStatuses[0].state.waiting.reason}|{.status.containerStatuses[0].state.waiting.message}")
		if !strings.HasPrefix(reason, "ErrImagePull|") && !strings.HasPrefix(reason, "ImagePullBackOff|") || !strings.Contains(reason, "UNAUTHORIZED") {
			return fmt.Errorf("waiting %q, want ErrImagePull or ImagePullBackOff with the registry's UNAUTHORIZED", reason)
		}
		return nil
	})

	missing := host + "/test/nothing:1"
	updates := watchPod(t, c, ns, "missing", "{.status.containerStatuses[0].state.waiting.reason}|{.status.containerStatuses[0].state.waiting.message}")
	c.mustKubectl(fmt.Sprintf(`apiVersion: v1
kind: Pod
metadata: {name: missing}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - {name: main, image: %s, command: [sleep, "3600"]}
`, missing), "-n", ns, "apply", "-f", "-")
	deleteAtEnd(t, c, ns, "missing")
	deadline := time.After(2 * time.Minute)
	var seen []string
	var errSeen, backOffSeen bool
	for !backOffSeen {
		select {
		case line, ok := <-updates:
			if !ok {
				t.Fatalf("kubectl get -w ended; saw %q", seen)
			}
			seen = append(seen, line)
			reason, message, _ := strings.Cut(line, "|")
			switch reason {
			case "ErrImagePull", "ImagePullBackOff":
				if !strings.Contains(message, "NAME_UNKNOWN") || !strings.Contains(message, missing) {
					t.Errorf("%s message %q lacks the registry's reason (NAME_UNKNOWN) or the image", reason, message)
				}
				errSeen = errSeen || reason == "ErrImagePull"
				backOffSeen = reason == "ImagePullBackOff"
			case "":
			default:
				t.Fatalf("waiting reason %q; saw %q", reason, seen)
			}
		case <-deadline:
			t.Fatalf("no ImagePullBackOff after 2m; saw %q", seen)
		}
	}
	t.Logf("states: %q", seen)
	if !errSeen {
		// The first failure may be over before the watch saw it; the
		// event says it was there.
		events := kubectl("get", "events", "--field-selector", "involvedObject.name=missing", "-o", `jsonpath={range .items[*]}{.reason}: {.message}{"\n"}{end}`)
		if !strings.Contains(events, "ErrImagePull") {
			t.Errorf("ImagePullBackOff without ErrImagePull before it; states %q; events:\n%s", seen, events)
		}
	}
}

// portForward runs kubectl port-forward to the pod's remote port until ctx
// ends, and returns the local port once kubectl says it forwards.
func portForward(ctx context.Context, t *testing.T, c *cluster, ns, pod string, remote int) int {
	t.Helper()
	port := freePort(t)
	out, err := c.watchLines(ctx, "-n", ns, "port-forward", "pod/"+pod, fmt.Sprintf("%d:%d", port, remote))
	if err != nil {
		t.Fatal(err)
	}
	want := fmt.Sprintf("Forwarding from 127.0.0.1:%d -> %d", port, remote)
	for line := range out {
		if line == want {
			break
		}
		t.Logf("kubectl port-forward: %s", line)
	}
	if ctx.Err() != nil {
		t.Fatalf("kubectl port-forward did not say %q", want)
	}
	go func() {
		for range out { // "Handling connection for ..."
		}
	}()
	return port
}

// kubectl port-forward connects inside the pod's network namespace, as the
// kubelet's runtime does: a server listening on the pod's loopback only is
// reached, and a hostNetwork pod's loopback is the node's.
func TestNodePortForwardToLoopback(t *testing.T) {
	c := sharedCluster(t)
	ns := nodeNamespace(t, c)
	for _, tc := range []struct {
		pod         string
		hostNetwork bool
		port        int
	}{{"localweb", false, 8080}, {"hostweb", true, freePort(t)}} {
		t.Run(tc.pod, func(t *testing.T) {
			c.mustKubectl(fmt.Sprintf(`apiVersion: v1
kind: Pod
metadata: {name: %s}
spec:
  hostNetwork: %t
  terminationGracePeriodSeconds: 1
  containers:
  - name: httpd
    image: busybox:1.28.4
    command: [sh, -c, 'mkdir -p /tmp/www && echo from-%s > /tmp/www/index.html && exec httpd -f -p 127.0.0.1:%d -h /tmp/www']
`, tc.pod, tc.hostNetwork, tc.pod, tc.port), "-n", ns, "apply", "-f", "-")
			deleteAtEnd(t, c, ns, tc.pod)
			waitFor(t, c, ns, tc.pod, "{.status.phase}", "Running", 2*time.Minute)

			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			port := portForward(ctx, t, c, ns, tc.pod, tc.port)
			eventually(t, time.Minute, tc.pod+"'s page through the port-forward", func() error {
				req, _ := http.NewRequestWithContext(ctx, http.MethodGet, fmt.Sprintf("http://127.0.0.1:%d/", port), nil)
				req.Close = true
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					return err
				}
				defer resp.Body.Close()
				body, err := io.ReadAll(resp.Body)
				if err != nil || strings.TrimSpace(string(body)) != "from-"+tc.pod {
					return fmt.Errorf("%d %q, %v", resp.StatusCode, body, err)
				}
				return nil
			})
		})
	}
}

// A container that uses more memory than its limit is killed by the
// kernel, and its status says OOMKilled.
func TestNodeOOMKilled(t *testing.T) {
	c := sharedCluster(t)
	ns := nodeNamespace(t, c)
	kubectl := nsKubectl(c, ns)
	// The shell holds 100 MB in a variable, three times its limit.
	c.mustKubectl(`apiVersion: v1
kind: Pod
metadata: {name: oom}
spec:
  restartPolicy: Never
  terminationGracePeriodSeconds: 1
  containers:
  - name: main
    image: busybox:1.28.4
    command: [sh, -c, 'echo allocating; x=$(head -c 100000000 /dev/zero | tr "\0" a); echo survived ${#x}']
    resources:
      limits: {memory: 32Mi}
`, "-n", ns, "apply", "-f", "-")
	deleteAtEnd(t, c, ns, "oom")
	waitFor(t, c, ns, "oom", "{.status.phase}", "Failed", 2*time.Minute)
	got := kubectl("get", "pod", "oom", "-o", "jsonpath={.status.containerStatuses[0].state.terminated.reason} {.status.containerStatuses[0].state.terminated.exitCode}")
	if got != "OOMKilled 137" {
		t.Errorf("terminated state %q, want OOMKilled 137; logs:\n%s", got, kubectl("logs", "oom"))
	}
	if logs := kubectl("logs", "oom"); strings.Contains(logs, "survived") {
		t.Errorf("the container held 100 MB under a 32Mi limit: %q", logs)
	}
}

// kubectl port-forward to a pod's port: the test's HTTP requests to the
// local port reach nginx in the pod.
func TestNodePortForward(t *testing.T) {
	c := sharedCluster(t)
	ns := nodeNamespace(t, c)
	c.mustKubectl(`apiVersion: v1
kind: Pod
metadata: {name: web}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: nginx
    image: nginx:1.9.1
    ports: [{containerPort: 80}]
`, "-n", ns, "apply", "-f", "-")
	deleteAtEnd(t, c, ns, "web")
	waitFor(t, c, ns, "web", "{.status.containerStatuses[0].ready}", "true", 2*time.Minute)

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	port := portForward(ctx, t, c, ns, "web", 80)

	client := &http.Client{Timeout: 30 * time.Second}
	// Several requests, each its own connection and stream.
	for i := range 3 {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, fmt.Sprintf("http://127.0.0.1:%d/", port), nil)
		req.Close = true
		resp, err := client.Do(req)
		if err != nil {
			t.Fatalf("GET %d through the port-forward: %v", i, err)
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil || resp.StatusCode != http.StatusOK || !strings.Contains(string(body), "Welcome to nginx!") {
			t.Fatalf("GET %d through the port-forward: %d %q, %v", i, resp.StatusCode, body, err)
		}
	}
}

// pushImage uploads img to the registry at base the way a client pushes:
// each blob by a monolithic upload, then the manifest. (remote.Write would
// do, but its package brings in docker's config code, which go.sum lacks.)
func pushImage(t *testing.T, base, repo, tag string, img v1.Image) {
	t.Helper()
	send := func(method, url, contentType string, data []byte) {
		t.Helper()
		req, err := http.NewRequest(method, url, bytes.NewReader(data))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Content-Type", contentType)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusCreated {
			t.Fatalf("%s %s: %s %s", method, url, resp.Status, body)
		}
	}
	blob := func(digest v1.Hash, data []byte) {
		send(http.MethodPost, fmt.Sprintf("%s/v2/%s/blobs/uploads/?digest=%s", base, repo, digest), "application/octet-stream", data)
	}
	layers, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range layers {
		digest, err := l.Digest()
		if err != nil {
			t.Fatal(err)
		}
		rc, err := l.Compressed()
		if err != nil {
			t.Fatal(err)
		}
		data, err := io.ReadAll(rc)
		rc.Close()
		if err != nil {
			t.Fatal(err)
		}
		blob(digest, data)
	}
	config, err := img.RawConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	configName, err := img.ConfigName()
	if err != nil {
		t.Fatal(err)
	}
	blob(configName, config)
	manifest, err := img.RawManifest()
	if err != nil {
		t.Fatal(err)
	}
	mediaType, err := img.MediaType()
	if err != nil {
		t.Fatal(err)
	}
	send(http.MethodPut, fmt.Sprintf("%s/v2/%s/manifests/%s", base, repo, tag), string(mediaType), manifest)
}

// testWriter sends what is written to it to the test's log.
type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSuffix(string(p), "\n"))
	return len(p), nil
}
