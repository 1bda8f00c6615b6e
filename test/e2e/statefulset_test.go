package e2e

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

// A StatefulSet in the seed's shape, on the busybox image (the nginx test
// image has no shell to exec into). Its init container holds each pod
// Pending for a moment, so that the order of creation can be seen.
const orderedStatefulSet = `apiVersion: v1
kind: Service
metadata: {name: nginx}
spec:
  clusterIP: None
  selector: {app: web}
  ports: [{name: web, port: 80}]
---
apiVersion: apps/v1
kind: StatefulSet
metadata: {name: web}
spec:
  serviceName: nginx
  replicas: 2
  selector: {matchLabels: {app: web}}
  template:
    metadata:
      labels: {app: web}
      annotations: {kubectl.kubernetes.io/default-container: main}
    spec:
      terminationGracePeriodSeconds: 2
      initContainers:
      - {name: settle, image: "busybox:1.28.4", command: [sleep, "2"]}
      containers:
      - name: main
        image: busybox:1.28.4
        command: [sh, -c, "hostname > /data/hostname-at-start; exec httpd -f -p 80 -h /data"]
        volumeMounts: [{name: www, mountPath: /data}]
  volumeClaimTemplates:
  - metadata: {name: www}
    spec:
      accessModes: [ReadWriteOnce]
      resources: {requests: {storage: 1Gi}}
`

func TestStatefulSetOrderedIdentityAndStorage(t *testing.T) {
	c := sharedCluster(t)
	const ns = "seed"
	c.mustKubectl("", "create", "namespace", ns)
	kubectl := func(args ...string) string { return c.mustKubectl("", append([]string{"-n", ns}, args...)...) }
	pods := func() string {
		return strings.TrimSpace(kubectl("get", "pods", "-l", "app=web", "-o", "jsonpath={range .items[*]}{.metadata.name}:{.status.phase} {end}"))
	}
	c.mustKubectl(orderedStatefulSet, "-n", ns, "apply", "-f", "-")

	// web-1 is not even created until web-0 is Running and Ready.
	sawWeb0Alone := false
	eventually(t, 60*time.Second, "both pods Running", func() error {
		got := pods()
		if strings.Contains(got, "web-0:Pending") && !strings.Contains(got, "web-1") {
			sawWeb0Alone = true
		}
		if strings.Contains(got, "web-1") && !strings.Contains(got, "web-0:Running") {
			t.Fatalf("web-1 exists while web-0 is not Running: %q", got)
		}
		if got != "web-0:Running web-1:Running" {
			return fmt.Errorf("pods %q", got)
		}
		return nil
	})
	if !sawWeb0Alone {
		t.Error("never saw web-0 pending alone: ordering not observed")
	}

	// Identity: hostname = pod name; claims bound to provisioned volumes.
	if got := kubectl("exec", "web-1", "--", "hostname"); strings.TrimSpace(got) != "web-1" {
		t.Errorf("hostname in web-1 = %q", got)
	}
	for _, claim := range []string{"www-web-0", "www-web-1"} {
		if phase := kubectl("get", "pvc", claim, "-o", "jsonpath={.status.phase}"); phase != "Bound" {
			t.Errorf("claim %s is %s, want Bound", claim, phase)
		}
	}

	// DNS: web-0's own name, from another pod, answers web-0's address.
	ip0 := kubectl("get", "pod", "web-0", "-o", "jsonpath={.status.podIP}")
	out := kubectl("exec", "web-1", "--", "nslookup", "web-0.nginx."+ns+".svc.cluster.local")
	if !strings.Contains(out, "Address 1: "+ip0+" ") {
		t.Errorf("nslookup web-0 from web-1:\n%s\nwant web-0's address %s", out, ip0)
	}
	// And HTTP by that name, through the pod network.
	kubectl("exec", "web-0", "--", "sh", "-c", "echo served-by-web-0 > /data/index.html")
	if out := kubectl("exec", "web-1", "--", "wget", "-qO-", "http://web-0.nginx/index.html"); strings.TrimSpace(out) != "served-by-web-0" {
		t.Errorf("wget web-0.nginx from web-1: %q", out)
	}

	// Storage: the replacement of a deleted pod mounts the same data.
	kubectl("exec", "web-0", "--", "sh", "-c", "echo kept > /data/mark")
	uid := kubectl("get", "pod", "web-0", "-o", "jsonpath={.metadata.uid}")
	kubectl("delete", "pod", "web-0", "--wait=true")
	eventually(t, 60*time.Second, "web-0 replaced and Running", func() error {
		out, err := c.kubectl("", "-n", ns, "get", "pod", "web-0", "-o", "jsonpath={.metadata.uid}:{.status.phase}")
		if err != nil || strings.HasPrefix(out, uid) || !strings.HasSuffix(out, ":Running") {
			return fmt.Errorf("%v %q", err, out)
		}
		return nil
	})
	if got := strings.TrimSpace(kubectl("exec", "web-0", "--", "cat", "/data/mark")); got != "kept" {
		t.Errorf("data after the pod's replacement: %q, want kept", got)
	}

	// Scale down removes the highest ordinal and keeps its claim (Retain).
	kubectl("scale", "sts", "web", "--replicas=1")
	eventually(t, 60*time.Second, "scale down to web-0", func() error {
		if got := pods(); got != "web-0:Running" {
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
    spec:
      terminationGracePeriodSeconds: 1
      containers: [{name: main, image: "busybox:1.28.4", command: [sleep, "3600"]}]
`, "-n", "roll", "apply", "-f", "-")
	revisions := func() string {
		return strings.TrimSpace(kubectl("get", "pods", "-l", "app=db", "-o", `jsonpath={range .items[*]}{.metadata.name}={.metadata.labels.controller-revision-hash} {end}`))
	}
	running := func(want int) func() error {
		return func() error {
			out := kubectl("get", "sts", "db", "-o", "jsonpath={.status.readyReplicas}")
			if out != fmt.Sprint(want) {
				return fmt.Errorf("ready replicas %q", out)
			}
			return nil
		}
	}
	// Parallel: all three at once.
	eventually(t, 60*time.Second, "three pods ready", running(3))
	oldRev := kubectl("get", "sts", "db", "-o", "jsonpath={.status.currentRevision}")

	// partition 2: only ordinals ≥ 2 move to the new template.
	kubectl("set", "env", "sts/db", "MODE=new")
	var newRev string
	eventually(t, 60*time.Second, "db-2 updated, db-0 and db-1 held by the partition", func() error {
		newRev = kubectl("get", "sts", "db", "-o", "jsonpath={.status.updateRevision}")
		want := fmt.Sprintf("db-0=%s db-1=%s db-2=%s", oldRev, oldRev, newRev)
		if newRev == oldRev || revisions() != want {
			return fmt.Errorf("revisions %q, want %q", revisions(), want)
		}
		return nil
	})
	eventually(t, 60*time.Second, "db-2 of the new revision ready", func() error {
		out := kubectl("get", "pod", "db-2", "-o", `jsonpath={.metadata.labels.controller-revision-hash} {.status.containerStatuses[0].ready}`)
		if out != newRev+" true" {
			return fmt.Errorf("db-2: %q", out)
		}
		return nil
	})
	if out := kubectl("exec", "db-2", "--", "sh", "-c", "echo $MODE"); strings.TrimSpace(out) != "new" {
		t.Errorf("db-2's environment after the update: MODE=%q", out)
	}

	// partition 0: the rest follow, highest ordinal first.
	kubectl("patch", "sts", "db", "--type=merge", "-p", `{"spec":{"updateStrategy":{"rollingUpdate":{"partition":0}}}}`)
	eventually(t, 90*time.Second, "rollout complete", func() error {
		out := kubectl("get", "sts", "db", "-o", "jsonpath={.status.currentRevision} {.status.updatedReplicas} {.status.readyReplicas}")
		if out != newRev+" 3 3" {
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
		out := kubectl("get", "sts", "db", "-o", "jsonpath={.status.updateRevision}")
		if out != oldRev {
			return fmt.Errorf("updateRevision after undo %q, want %s", out, oldRev)
		}
		return nil
	})
	if n := strings.Count(kubectl("get", "controllerrevisions", "-o", "name"), "controllerrevision"); n != 2 {
		t.Errorf("%d ControllerRevisions after rollback, want the 2 reused", n)
	}
}
