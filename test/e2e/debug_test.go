package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// kubectl debug, as a user debugs a running pod in place: an ephemeral
// container that shares the pod's network and hostname and, with
// --target, sees the target container's processes; its output in
// `kubectl logs -c`, its status in ephemeralContainerStatuses, the node's
// events naming it, and a terminal session with `debug -it`. The pod's
// own container runs on untouched throughout.
func TestDebugWithEphemeralContainers(t *testing.T) {
	c := sharedCluster(t)
	c.mustKubectl("", "run", "dbg", "--image", "nginx:1.9.1", "--restart=Never")
	t.Cleanup(func() { _, _ = c.kubectl("", "delete", "pod", "dbg", "--wait=false") })
	c.mustKubectl("", "wait", "--for=condition=Ready", "pod/dbg", "--timeout=2m")

	c.mustKubectl("", "debug", "dbg", "--image", "busybox:1.28.4", "-c", "peek", "--target", "dbg", "--",
		"sh", "-c", "ps; hostname; wget -q -O - http://127.0.0.1/ | grep -o 'Welcome to nginx'")
	eventually(t, 2*time.Minute, "ephemeral container peek terminated", func() error {
		code, err := c.kubectl("", "get", "pod", "dbg", "-o", "jsonpath={.status.ephemeralContainerStatuses[?(@.name==\"peek\")].state.terminated.exitCode}")
		if err != nil || code != "0" {
			return fmt.Errorf("exit code %q (%v)", code, err)
		}
		return nil
	})
	logs := c.mustKubectl("", "logs", "dbg", "-c", "peek")
	lines := strings.Split(logs, "\n")
	if !strings.Contains(logs, "nginx: master process") || !slices.Contains(lines, "dbg") || !slices.Contains(lines, "Welcome to nginx") {
		t.Errorf("kubectl logs -c peek: %q; want nginx's processes (the target's PID namespace), the pod's hostname and its nginx on localhost", logs)
	}

	started := c.mustKubectl("", "get", "events", "--field-selector", "involvedObject.name=dbg,reason=Started",
		"-o", "jsonpath={range .items[*]}{.involvedObject.fieldPath} {.source.component}{\"\\n\"}{end}")
	for _, want := range []string{"spec.containers{dbg} kubelet", "spec.ephemeralContainers{peek} kubelet"} {
		if !strings.Contains(started, want) {
			t.Errorf("Started events:\n%s\nwant one for %s", started, want)
		}
	}

	term := c.kubectlAtTerminal(t, "debug", "-it", "dbg", "--image", "busybox:1.28.4", "-c", "shell", "--", "sh")
	term.waitFor(t, "If you don't see a command prompt")
	term.send(t, "hostname\r")
	term.waitFor(t, "\ndbg\r\n")
	term.send(t, "exit\r")
	if err := term.wait(t); err != nil {
		t.Fatalf("kubectl debug -it: %v\n%s", err, term.out.String())
	}

	eventually(t, time.Minute, "ephemeral container shell terminated", func() error {
		state, err := c.kubectl("", "get", "pod", "dbg", "-o", "jsonpath={.status.ephemeralContainerStatuses[?(@.name==\"shell\")].state.terminated.reason}")
		if err != nil || state == "" {
			return fmt.Errorf("state %q (%v)", state, err)
		}
		return nil
	})
	own := c.mustKubectl("", "get", "pod", "dbg", "-o", "jsonpath={.status.phase} {.status.containerStatuses[0].ready} {.status.containerStatuses[0].restartCount}")
	if own != "Running true 0" {
		t.Errorf("pod dbg: phase, ready, restarts = %q after two debug sessions, want Running true 0", own)
	}
}

// kubectl debug node/NAME: a pod on the node's network, PID and IPC
// namespaces (hostNetwork, hostPID, hostIPC), with the node's root
// filesystem at /host, as a user inspects a node.
func TestDebugNode(t *testing.T) {
	c := sharedCluster(t)
	node := c.mustKubectl("", "get", "nodes", "-o", "jsonpath={.items[0].metadata.name}")
	script := fmt.Sprintf("hostname; ip -o link show %s; test -d /proc/%d && echo sees-stead; ls %s", c.bridge(), c.cmd.Process.Pid, filepath.Join("/host", c.dataDir))
	out := c.mustKubectl("", "debug", "node/"+node, "--image", "busybox:1.28.4", "--", "sh", "-c", script)
	_, rest, ok := strings.Cut(out, "Creating debugging pod ")
	pod, _, _ := strings.Cut(rest, " ")
	if !ok || pod == "" {
		t.Fatalf("kubectl debug node/%s printed %q; want the debugging pod's name", node, out)
	}
	t.Cleanup(func() { _, _ = c.kubectl("", "delete", "pod", pod, "--wait=false") })
	eventually(t, 2*time.Minute, "pod "+pod+" succeeded", func() error {
		phase, err := c.kubectl("", "get", "pod", pod, "-o", "jsonpath={.status.phase}")
		if err != nil || phase != "Succeeded" {
			events, _ := c.kubectl("", "get", "events", "--field-selector", "involvedObject.name="+pod)
			return fmt.Errorf("phase %q (%v); events:\n%s", phase, err, events)
		}
		return nil
	})
	hostname, err := os.Hostname()
	if err != nil {
		t.Fatal(err)
	}
	logs := c.mustKubectl("", "logs", pod)
	lines := strings.Split(logs, "\n")
	if !slices.Contains(lines, hostname) || !strings.Contains(logs, ": "+c.bridge()+":") || !slices.Contains(lines, "sees-stead") || !slices.Contains(lines, "kubeconfig") {
		t.Errorf("kubectl logs %s: %q; want the node's hostname %q, its bridge %s, stead's process and the node's files under /host", pod, logs, hostname, c.bridge())
	}
	ips := c.mustKubectl("", "get", "pod", pod, "-o", "jsonpath={.status.podIP} {.status.hostIP}")
	if podIP, hostIP, _ := strings.Cut(ips, " "); podIP == "" || podIP != hostIP {
		t.Errorf("podIP, hostIP = %q; want the node's address for both", ips)
	}
}
