package e2e

import (
	"errors"
	"fmt"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestCleanupLeavesNothingOnTheMachine stops a cluster started with
// --cleanup: what a stop otherwise leaves for the next start to adopt (the
// pods' processes and mounts, the bridge, the Service rules) is gone, and
// the next start runs the pod again.
func TestCleanupLeavesNothingOnTheMachine(t *testing.T) {
	c := newCluster(t, "--cleanup")
	if err := c.importTestImages(); err != nil {
		t.Fatal(err)
	}
	runStayingPod(t, c)
	bridge, table := c.bridge(), "stead-proxy-"+c.bridge()
	pids := c.containerPids()
	if len(pids) == 0 || len(c.mounts()) == 0 {
		t.Fatalf("before the stop: container pids %v, mounts %q: the test sees nothing to clean", pids, c.mounts())
	}
	if err := exec.Command("nft", "list", "table", "ip", table).Run(); err != nil {
		t.Fatalf("before the stop: no table %s: %v", table, err)
	}
	cgroups := c.podCgroups()
	if len(cgroups) == 0 {
		t.Fatal("before the stop: no pod cgroup")
	}

	c.stop()
	if !strings.Contains(c.stderr.String(), "(--cleanup)") {
		t.Errorf("stop did not say it cleans up:\n%s", c.stderr)
	}
	waitProcessesGone(t, "the pod's processes", pids)
	if m := c.mounts(); len(m) != 0 {
		t.Errorf("mounts left under the data dir: %q", m)
	}
	if out, err := exec.Command("ip", "link", "show", bridge).CombinedOutput(); err == nil {
		t.Errorf("bridge %s left:\n%s", bridge, out)
	}
	if out, err := exec.Command("nft", "list", "table", "ip", table).CombinedOutput(); err == nil {
		t.Errorf("table %s left:\n%s", table, out)
	}
	for _, dir := range cgroups {
		if exists(dir) {
			t.Errorf("pod cgroup left: %s", dir)
		}
	}

	// The pod's status still says Running from before the stop until the
	// node has started its container again: wait for the container.
	c.start()
	eventually(t, 60*time.Second, "the pod runs again after the restart", func() error {
		out, err := c.kubectl("", "exec", "stays", "--", "sh", "-c", "echo ok > /mem/f && cat /mem/f")
		if err != nil || strings.TrimSpace(out) != "ok" {
			return fmt.Errorf("%v %q", err, out)
		}
		return nil
	})
}

// TestAgentCleanupLeavesNothingOnTheMachine: `stead agent --cleanup`
// stopped removes, on its node machine, what a stop otherwise leaves (the
// pods' processes and mounts, the fence keeper that outlives an agent, the
// bridge and the Service rules).
func TestAgentCleanupLeavesNothingOnTheMachine(t *testing.T) {
	lan, server, agents := newAgentCluster(t, 1, "--cleanup")
	agent := agents[0]
	runStayingPod(t, server) // on node-a, the only node
	inNode := func(args ...string) error {
		return exec.Command("ip", append([]string{"netns", "exec", lan.netns[0]}, args...)...).Run()
	}
	keeper := agent.fenceKeeperPid()
	pids := agent.containerPids()
	if len(pids) == 0 || len(agent.mounts()) == 0 || keeper == 0 {
		t.Fatalf("before the stop: container pids %v, mounts %q, fence keeper %d: the test sees nothing to clean", pids, agent.mounts(), keeper)
	}
	if err := inNode("nft", "list", "table", "ip", "stead-proxy"); err != nil {
		t.Fatalf("before the stop: no Service rules on node-a: %v", err)
	}
	cgroups := agent.podCgroups()
	if len(cgroups) == 0 {
		t.Fatal("before the stop: no pod cgroup")
	}

	agent.stop()
	if !strings.Contains(agent.stderr.String(), "(--cleanup)") {
		t.Errorf("stop did not say it cleans up:\n%s", agent.stderr)
	}
	waitProcessesGone(t, "the pod's processes and the fence keeper", append(pids, keeper))
	if m := agent.mounts(); len(m) != 0 {
		t.Errorf("mounts left under the agent's data dir: %q", m)
	}
	if err := inNode("ip", "link", "show", "stead0"); err == nil {
		t.Error("bridge stead0 left on node-a")
	}
	if err := inNode("nft", "list", "table", "ip", "stead-proxy"); err == nil {
		t.Error("Service rules (table stead-proxy) left on node-a")
	}
	for _, dir := range cgroups {
		if exists(dir) {
			t.Errorf("pod cgroup left: %s", dir)
		}
	}
}

// runStayingPod runs a pod with a memory-backed emptyDir (a process and a
// mount for a stop with --cleanup to remove) through c, and waits for it
// to run.
func runStayingPod(t *testing.T, c *cluster) {
	t.Helper()
	c.mustKubectl(`apiVersion: v1
kind: Pod
metadata: {name: stays}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - {name: main, image: busybox:1.28.4, command: [sleep, "3600"], volumeMounts: [{name: mem, mountPath: /mem}]}
  volumes:
  - {name: mem, emptyDir: {medium: Memory}}
`, "apply", "-f", "-")
	eventually(t, 60*time.Second, "stays Running", func() error {
		if phase := c.mustKubectl("", "get", "pod", "stays", "-o", "jsonpath={.status.phase}"); phase != "Running" {
			return fmt.Errorf("phase %q", phase)
		}
		return nil
	})
}

// waitProcessesGone waits until none of pids is alive.
func waitProcessesGone(t *testing.T, what string, pids []int) {
	t.Helper()
	eventually(t, 10*time.Second, what+" gone", func() error {
		for _, pid := range pids {
			if err := syscall.Kill(pid, 0); !errors.Is(err, syscall.ESRCH) {
				return fmt.Errorf("process %d: %v", pid, err)
			}
		}
		return nil
	})
}
