package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// probesNamespace makes the namespace the probe tests share, once.
func probesNamespace(t *testing.T, c *cluster) string {
	const ns = "probes"
	if out, err := c.kubectl("", "create", "namespace", ns); err != nil && !strings.Contains(out, "AlreadyExists") {
		t.Fatalf("create namespace %s: %v\n%s", ns, err, out)
	}
	return ns
}

// An exec readiness probe follows a file in the container: not Ready
// without it, Ready once it is there, not Ready again once it is gone.
func TestProbeReadinessFollowsExec(t *testing.T) {
	c := sharedCluster(t)
	ns := probesNamespace(t, c)
	kubectl := func(args ...string) string { return c.mustKubectl("", append([]string{"-n", ns}, args...)...) }
	c.mustKubectl(`apiVersion: v1
kind: Pod
metadata: {name: readiness}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: main
    image: busybox:1.28.4
    command: [sleep, "3600"]
    readinessProbe:
      exec: {command: [cat, /tmp/ready]}
      periodSeconds: 1
      failureThreshold: 1
`, "-n", ns, "apply", "-f", "-")
	defer kubectl("delete", "pod", "readiness", "--wait=true")

	state := func() string {
		return kubectl("get", "pod", "readiness", "-o",
			`jsonpath={.status.phase} started={.status.containerStatuses[0].started} ready={.status.containerStatuses[0].ready} Ready={.status.conditions[?(@.type=="Ready")].status}`)
	}
	want := func(what, expected string) {
		t.Helper()
		eventually(t, 2*time.Minute, what, func() error {
			if got := state(); got != expected {
				return fmt.Errorf("pod %q, want %q", got, expected)
			}
			return nil
		})
	}
	want("running, not ready without /tmp/ready", "Running started=true ready=false Ready=False")
	eventually(t, time.Minute, "an Unhealthy event", func() error {
		out := kubectl("get", "events", "--field-selector", "involvedObject.name=readiness,reason=Unhealthy", "-o", "jsonpath={.items[*].message}")
		if !strings.Contains(out, "Readiness probe failed: cat: can't open '/tmp/ready'") {
			return fmt.Errorf("Unhealthy events %q", out)
		}
		return nil
	})
	// Still not ready a while later: the failure is not a passing state.
	time.Sleep(3 * time.Second)
	if got := state(); got != "Running started=true ready=false Ready=False" {
		t.Fatalf("pod %q without /tmp/ready", got)
	}

	kubectl("exec", "readiness", "--", "touch", "/tmp/ready")
	want("ready once /tmp/ready exists", "Running started=true ready=true Ready=True")
	kubectl("exec", "readiness", "--", "rm", "/tmp/ready")
	want("unready once /tmp/ready is gone", "Running started=true ready=false Ready=False")
}

// httpGet and tcpSocket probes reach the pod from the node, on its IP:
// ready while the server answers 200, unready once it answers 404, and
// alive all along while the port takes connections.
func TestProbeHTTPAndTCP(t *testing.T) {
	c := sharedCluster(t)
	ns := probesNamespace(t, c)
	kubectl := func(args ...string) string { return c.mustKubectl("", append([]string{"-n", ns}, args...)...) }
	c.mustKubectl(`apiVersion: v1
kind: Pod
metadata: {name: http}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: main
    image: busybox:1.28.4
    command: [sh, -c, "mkdir -p /www && echo ok > /www/healthz && exec httpd -f -p 8080 -h /www"]
    ports: [{name: http, containerPort: 8080}]
    readinessProbe:
      httpGet: {path: /healthz, port: http, httpHeaders: [{name: X-Probe, value: "yes"}]}
      periodSeconds: 1
      failureThreshold: 1
    livenessProbe:
      tcpSocket: {port: 8080}
      periodSeconds: 1
`, "-n", ns, "apply", "-f", "-")
	defer kubectl("delete", "pod", "http", "--wait=true")

	state := func() string {
		return kubectl("get", "pod", "http", "-o", "jsonpath=ready={.status.containerStatuses[0].ready} restarts={.status.containerStatuses[0].restartCount}")
	}
	want := func(what, expected string) {
		t.Helper()
		eventually(t, 2*time.Minute, what, func() error {
			if got := state(); got != expected {
				return fmt.Errorf("pod %q, want %q", got, expected)
			}
			return nil
		})
	}
	want("ready while /healthz answers", "ready=true restarts=0")
	kubectl("exec", "http", "--", "rm", "/www/healthz")
	want("unready once /healthz is gone", "ready=false restarts=0")
	eventually(t, time.Minute, "an Unhealthy event", func() error {
		out := kubectl("get", "events", "--field-selector", "involvedObject.name=http,reason=Unhealthy", "-o", "jsonpath={.items[*].message}")
		if !strings.Contains(out, "Readiness probe failed: HTTP probe failed with statuscode: 404") {
			return fmt.Errorf("Unhealthy events %q", out)
		}
		return nil
	})
	// The liveness probe's port is open all along: never restarted.
	time.Sleep(3 * time.Second)
	if got := state(); got != "ready=false restarts=0" {
		t.Fatalf("pod %q, want it alive and unready", got)
	}
}

// A failing liveness probe kills the container, again and again, and each
// time it is restarted.
func TestProbeLivenessRestarts(t *testing.T) {
	c := sharedCluster(t)
	ns := probesNamespace(t, c)
	kubectl := func(args ...string) string { return c.mustKubectl("", append([]string{"-n", ns}, args...)...) }
	// sleep, as PID 1, ignores SIGTERM: each kill waits out the grace
	// period, the probe's own, which overrides the pod's long one.
	c.mustKubectl(`apiVersion: v1
kind: Pod
metadata: {name: liveness}
spec:
  terminationGracePeriodSeconds: 600
  containers:
  - name: main
    image: busybox:1.28.4
    command: [sleep, "3600"]
    livenessProbe:
      exec: {command: [cat, /tmp/healthy]}
      periodSeconds: 1
      failureThreshold: 2
      terminationGracePeriodSeconds: 1
`, "-n", ns, "apply", "-f", "-")
	defer kubectl("delete", "pod", "liveness", "--grace-period=1", "--wait=true")

	eventually(t, 3*time.Minute, "restarted twice by its liveness probe", func() error {
		out := kubectl("get", "pod", "liveness", "-o", "jsonpath={.status.containerStatuses[0].restartCount} {.status.containerStatuses[0].lastState.terminated.exitCode}")
		count, exitCode, _ := strings.Cut(out, " ")
		if n, err := strconv.Atoi(count); err != nil || n < 2 || exitCode != "137" {
			return fmt.Errorf("restartCount and last exit code %q", out)
		}
		return nil
	})
	events := kubectl("get", "events", "--field-selector", "involvedObject.name=liveness", "-o", `jsonpath={range .items[*]}{.reason}: {.message}{"\n"}{end}`)
	for _, want := range []string{
		"Unhealthy: Liveness probe failed: cat: can't open '/tmp/healthy'",
		"Killing: Container main failed liveness probe, will be restarted",
	} {
		if !strings.Contains(events, want) {
			t.Errorf("events lack %q:\n%s", want, events)
		}
	}
}

// postStart runs in the container as it starts; preStop runs in it before
// it is stopped, here leaving a file on the host.
func TestProbeLifecycleHooks(t *testing.T) {
	c := sharedCluster(t)
	ns := probesNamespace(t, c)
	kubectl := func(args ...string) string { return c.mustKubectl("", append([]string{"-n", ns}, args...)...) }
	host := t.TempDir()
	c.mustKubectl(fmt.Sprintf(`apiVersion: v1
kind: Pod
metadata: {name: hooks}
spec:
  terminationGracePeriodSeconds: 10
  volumes: [{name: host, hostPath: {path: %q}}]
  containers:
  - name: main
    image: busybox:1.28.4
    command: [sleep, "3600"]
    volumeMounts: [{name: host, mountPath: /host}]
    lifecycle:
      postStart:
        exec: {command: [sh, -c, "echo started > /tmp/poststart"]}
      preStop:
        exec: {command: [sh, -c, "echo stopping > /host/prestop"]}
    readinessProbe:
      exec: {command: [cat, /tmp/poststart]}
      periodSeconds: 1
`, host), "-n", ns, "apply", "-f", "-")

	eventually(t, 2*time.Minute, "ready after its postStart hook", func() error {
		if got := kubectl("get", "pod", "hooks", "-o", "jsonpath={.status.containerStatuses[0].ready}"); got != "true" {
			return fmt.Errorf("ready %q", got)
		}
		return nil
	})
	if got := strings.TrimSpace(kubectl("exec", "hooks", "--", "cat", "/tmp/poststart")); got != "started" {
		t.Fatalf("postStart's file holds %q", got)
	}
	if _, err := os.Stat(filepath.Join(host, "prestop")); err == nil {
		t.Fatal("preStop ran before the pod was deleted")
	}
	kubectl("delete", "pod", "hooks", "--wait=true")
	data, err := os.ReadFile(filepath.Join(host, "prestop"))
	if err != nil || strings.TrimSpace(string(data)) != "stopping" {
		t.Fatalf("preStop's file: %q, %v", data, err)
	}
}
