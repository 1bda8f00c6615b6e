package e2e

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

// The seed's StatefulSet, with a claim template as the seed's storage
// chapter adds.
const seedStatefulSet = `apiVersion: v1
kind: Service
metadata: {name: nginx, labels: {app: nginx}}
spec:
  clusterIP: None
  selector: {app: nginx}
  ports: [{name: web, port: 80}]
---
apiVersion: apps/v1
kind: StatefulSet
metadata: {name: web}
spec:
  serviceName: nginx
  replicas: 2
  selector: {matchLabels: {app: nginx}}
  template:
    metadata: {labels: {app: nginx}}
    spec:
      containers:
      - name: nginx
        image: nginx:1.9.1
        ports: [{containerPort: 80, name: web}]
        volumeMounts: [{name: www, mountPath: /usr/share/nginx/html}]
  volumeClaimTemplates:
  - metadata: {name: www}
    spec:
      accessModes: [ReadWriteOnce]
      resources: {requests: {storage: 1Gi}}
`

// markReady plays the node's part for a pod (pods do not run yet): it
// reports the pod Running and Ready, as the agent will.
func markReady(c *cluster, namespace, pod string) {
	c.t.Helper()
	c.mustKubectl("", "-n", namespace, "patch", "pod", pod, "--subresource=status", "--type=merge", "-p",
		`{"status":{"phase":"Running","conditions":[{"type":"Ready","status":"True"}]}}`)
}

func TestStatefulSetOrderedIdentityAndStorage(t *testing.T) {
	c := sharedCluster(t)
	c.mustKubectl("", "create", "namespace", "seed")
	c.mustKubectl(seedStatefulSet, "-n", "seed", "apply", "-f", "-")
	kubectl := func(args ...string) string { return c.mustKubectl("", append([]string{"-n", "seed"}, args...)...) }
	podNames := func() string {
		return strings.TrimSpace(kubectl("get", "pods", "-l", "app=nginx", "-o", "jsonpath={range .items[*]}{.metadata.name} {end}"))
	}

	eventually(t, 20*time.Second, "web-0 and its claim www-web-0", func() error {
		if got := podNames(); got != "web-0" {
			return fmt.Errorf("pods %q", got)
		}
		if out, err := c.kubectl("", "-n", "seed", "get", "pvc", "www-web-0", "-o", "jsonpath={.spec.storageClassName}"); err != nil || out != "local-path" {
			return fmt.Errorf("claim: %v %q", err, out)
		}
		return nil
	})
	// web-1 is not even created while web-0 is not Running and Ready.
	time.Sleep(2 * time.Second)
	if got := podNames(); got != "web-0" {
		t.Fatalf("pods %q while web-0 is not ready; want web-0 alone", got)
	}
	identity := kubectl("get", "pod", "web-0", "-o", `jsonpath={.spec.hostname} {.spec.subdomain} {.metadata.labels.statefulset\.kubernetes\.io/pod-name} {.metadata.labels.apps\.kubernetes\.io/pod-index} {.spec.volumes[?(@.name=="www")].persistentVolumeClaim.claimName}`)
	if identity != "web-0 nginx web-0 0 www-web-0" {
		t.Fatalf("web-0 identity %q", identity)
	}

	markReady(c, "seed", "web-0")
	eventually(t, 20*time.Second, "web-1 once web-0 is ready", func() error {
		if got := podNames(); got != "web-0 web-1" {
			return fmt.Errorf("pods %q", got)
		}
		return nil
	})
	eventually(t, 20*time.Second, "status counts the ready replica", func() error {
		out := kubectl("get", "sts", "web", "-o", "jsonpath={.status.replicas} {.status.readyReplicas} {.status.currentRevision}")
		if !strings.HasPrefix(out, "2 1 web-") {
			return fmt.Errorf("status %q", out)
		}
		return nil
	})

	// The replacement of a deleted pod has the same name and the same claim.
	uid := kubectl("get", "pod", "web-0", "-o", "jsonpath={.metadata.uid}")
	kubectl("delete", "pod", "web-0", "--wait=true")
	eventually(t, 20*time.Second, "web-0 comes back with its claim", func() error {
		out, err := c.kubectl("", "-n", "seed", "get", "pod", "web-0", "-o", `jsonpath={.metadata.uid} {.spec.volumes[?(@.name=="www")].persistentVolumeClaim.claimName}`)
		if err != nil || strings.HasPrefix(out, uid) || !strings.HasSuffix(out, " www-web-0") {
			return fmt.Errorf("%v %q", err, out)
		}
		return nil
	})

	// Scale down removes the highest ordinal and keeps its claim (Retain).
	markReady(c, "seed", "web-0")
	kubectl("scale", "sts", "web", "--replicas=1")
	eventually(t, 20*time.Second, "scale down to web-0", func() error {
		if got := podNames(); got != "web-0" {
			return fmt.Errorf("pods %q", got)
		}
		return nil
	})
	kubectl("get", "pvc", "www-web-1")
}

func TestStatefulSetRollingUpdatePartitionAndRollback(t *testing.T) {
	c := sharedCluster(t)
	c.mustKubectl("", "create", "namespace", "roll")
	kubectl := func(args ...string) string { return c.mustKubectl("", append([]string{"-n", "roll"}, args...)...) }
	c.mustKubectl(`apiVersion: apps/v1
kind: StatefulSet
metadata: {name: db}
spec:
  serviceName: db
  replicas: 3
  podManagementPolicy: Parallel
  updateStrategy: {type: RollingUpdate, rollingUpdate: {partition: 2}}
  selector: {matchLabels: {app: db}}
  template:
    metadata: {labels: {app: db}}
    spec: {containers: [{name: main, image: "busybox:1.28.4"}]}
`, "-n", "roll", "apply", "-f", "-")
	revisions := func() string {
		return strings.TrimSpace(kubectl("get", "pods", "-l", "app=db", "-o", `jsonpath={range .items[*]}{.metadata.name}={.metadata.labels.controller-revision-hash} {end}`))
	}
	// Parallel: all three at once, none waiting for another.
	var first string
	eventually(t, 20*time.Second, "three pods at once", func() error {
		first = revisions()
		if strings.Count(first, "=db-") != 3 {
			return fmt.Errorf("pods %q", first)
		}
		return nil
	})
	for _, p := range []string{"db-0", "db-1", "db-2"} {
		markReady(c, "roll", p)
	}
	oldRev := kubectl("get", "sts", "db", "-o", "jsonpath={.status.currentRevision}")

	// partition 2: only ordinals ≥ 2 move to the new template.
	kubectl("set", "image", "sts/db", "main=busybox:1.36")
	var newRev string
	eventually(t, 30*time.Second, "db-2 updated, db-0 and db-1 held by the partition", func() error {
		newRev = kubectl("get", "sts", "db", "-o", "jsonpath={.status.updateRevision}")
		want := fmt.Sprintf("db-0=%s db-1=%s db-2=%s", oldRev, oldRev, newRev)
		if newRev == oldRev || revisions() != want {
			return fmt.Errorf("revisions %q, want %q", revisions(), want)
		}
		return nil
	})
	markReady(c, "roll", "db-2")

	// partition 0: the rest, highest ordinal first, each once the last is ready.
	kubectl("patch", "sts", "db", "--type=merge", "-p", `{"spec":{"updateStrategy":{"rollingUpdate":{"partition":0}}}}`)
	for _, p := range []string{"db-1", "db-0"} {
		eventually(t, 30*time.Second, p+" updated", func() error {
			if !strings.Contains(revisions(), p+"="+newRev) {
				return fmt.Errorf("revisions %q", revisions())
			}
			return nil
		})
		markReady(c, "roll", p)
	}
	eventually(t, 30*time.Second, "rollout complete", func() error {
		out := kubectl("get", "sts", "db", "-o", "jsonpath={.status.currentRevision} {.status.updatedReplicas}")
		if out != newRev+" 3" {
			return fmt.Errorf("status %q", out)
		}
		return nil
	})

	// Rollback reuses the first revision rather than making a new one.
	if hist := kubectl("rollout", "history", "sts/db"); !strings.Contains(hist, "1 ") || !strings.Contains(hist, "2 ") {
		t.Fatalf("rollout history:\n%s", hist)
	}
	kubectl("rollout", "undo", "sts/db")
	eventually(t, 30*time.Second, "undo targets the first revision", func() error {
		out := kubectl("get", "sts", "db", "-o", "jsonpath={.status.updateRevision} {.spec.template.spec.containers[0].image}")
		if out != oldRev+" busybox:1.28.4" {
			return fmt.Errorf("after undo %q, want %s busybox:1.28.4", out, oldRev)
		}
		return nil
	})
	if n := strings.Count(kubectl("get", "controllerrevisions", "-o", "name"), "controllerrevision"); n != 2 {
		t.Errorf("%d ControllerRevisions after rollback, want the 2 reused", n)
	}
}
