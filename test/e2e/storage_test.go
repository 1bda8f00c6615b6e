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

const diskPod = `---
apiVersion: v1
kind: Pod
metadata: {name: disk}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: main
    image: busybox:1.28.4
    imagePullPolicy: Never
    command: [sleep, "3600"]
    volumeMounts:
    - {name: small, mountPath: /data}
    - {name: kept, mountPath: /kept}
    - {name: config, mountPath: /config}
    - {name: config, mountPath: /etc/app.conf, subPath: app.conf}
  volumes:
  - {name: small, persistentVolumeClaim: {claimName: small}}
  - {name: kept, persistentVolumeClaim: {claimName: kept}}
  - {name: config, configMap: {name: app}}
`

// capSysResource is CAP_SYS_RESOURCE's number.
const capSysResource = 24

// hasCapability says whether this process (and so the stead it starts)
// has the capability in its effective set.
func hasCapability(t *testing.T, bit uint) bool {
	t.Helper()
	status, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(status), "\n") {
		if hex, ok := strings.CutPrefix(line, "CapEff:"); ok {
			caps, err := strconv.ParseUint(strings.TrimSpace(hex), 16, 64)
			if err != nil {
				t.Fatal(err)
			}
			return caps&(1<<bit) != 0
		}
	}
	t.Fatal("no CapEff in /proc/self/status")
	return false
}

// The storage issue's walkthrough beyond the seed, as a user types it: a
// claim holds what it asked and no more; expanding it grows the filesystem
// under the running pod; a ConfigMap's change reaches the files the pod
// reads; and a released volume's data is deleted or kept as its class's
// reclaim policy says.
func TestStorageCapacityExpansionConfigAndReclaim(t *testing.T) {
	c := sharedCluster(t)
	const ns = "storage"
	retain := fmt.Sprintf("stead-e2e-retain-%d", os.Getpid())
	c.mustKubectl("", "create", "namespace", ns)
	t.Cleanup(func() { _, _ = c.kubectl("", "delete", "storageclass", retain, "--wait=false") })
	k := func(args ...string) string {
		t.Helper()
		return c.mustKubectl("", append([]string{"-n", ns}, args...)...)
	}
	c.mustKubectl(fmt.Sprintf(`apiVersion: storage.k8s.io/v1
kind: StorageClass
metadata: {name: %s}
provisioner: stead.dev/local-path
reclaimPolicy: Retain
volumeBindingMode: WaitForFirstConsumer
---
apiVersion: v1
kind: PersistentVolumeClaim
metadata: {name: small}
spec:
  accessModes: [ReadWriteOnce]
  resources: {requests: {storage: 32Mi}}
---
apiVersion: v1
kind: PersistentVolumeClaim
metadata: {name: kept}
spec:
  storageClassName: %s
  accessModes: [ReadWriteOnce]
  resources: {requests: {storage: 16Mi}}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: app}
data: {greeting: hello, app.conf: v1}
`, retain, retain)+diskPod, "-n", ns, "apply", "-f", "-")
	eventually(t, 90*time.Second, "disk Running", func() error {
		if phase := k("get", "pod", "disk", "-o", "jsonpath={.status.phase}"); phase != "Running" {
			return fmt.Errorf("phase %q", phase)
		}
		return nil
	})

	// Capacity is real: 64 MiB do not fit in 32.
	sizeKiB := func() int {
		t.Helper()
		out := k("exec", "disk", "--", "sh", "-c", "df -k /data | tail -1 | awk '{print $2}'")
		n, err := strconv.Atoi(strings.TrimSpace(out))
		if err != nil {
			t.Fatalf("df /data: %q", out)
		}
		return n
	}
	before := sizeKiB()
	if before > 32*1024 {
		t.Errorf("a 32Mi claim's filesystem has %d KiB", before)
	}
	if out, err := c.kubectl("", "-n", ns, "exec", "disk", "--", "dd", "if=/dev/zero", "of=/data/fill", "bs=1M", "count=64"); err == nil || !strings.Contains(out, "No space left") {
		t.Errorf("writing 64 MiB to a 32Mi claim: %v %q, want ENOSPC", err, out)
	}
	k("exec", "disk", "--", "rm", "/data/fill")

	// Expansion: online where stead may grow a mounted filesystem
	// (CAP_SYS_RESOURCE); elsewhere the claim says it waits for its pod,
	// and grows once the pod is gone.
	k("patch", "pvc", "small", "-p", `{"spec":{"resources":{"requests":{"storage":"64Mi"}}}}`)
	if !hasCapability(t, capSysResource) {
		eventually(t, 30*time.Second, "the claim waiting for its pod to go", func() error {
			got := k("get", "pvc", "small", "-o", `jsonpath={.status.conditions[?(@.type=="FileSystemResizePending")].message}`)
			if !strings.Contains(got, "CAP_SYS_RESOURCE") {
				return fmt.Errorf("FileSystemResizePending %q", got)
			}
			return nil
		})
		k("delete", "pod", "disk", "--wait=true")
		c.mustKubectl(diskPod, "-n", ns, "apply", "-f", "-")
		eventually(t, 90*time.Second, "disk Running again", func() error {
			if phase := k("get", "pod", "disk", "-o", "jsonpath={.status.phase}"); phase != "Running" {
				return fmt.Errorf("phase %q", phase)
			}
			return nil
		})
	}
	eventually(t, 60*time.Second, "the claim and its filesystem grown to 64Mi", func() error {
		if got := k("get", "pvc", "small", "-o", "jsonpath={.status.capacity.storage}"); got != "64Mi" {
			return fmt.Errorf("status.capacity %q", got)
		}
		if now := sizeKiB(); now < before+24*1024 {
			return fmt.Errorf("df /data: %d KiB, was %d", now, before)
		}
		return nil
	})
	k("exec", "disk", "--", "dd", "if=/dev/zero", "of=/data/fill", "bs=1M", "count=40")

	// A ConfigMap's change reaches the mounted files; a subPath mount keeps
	// the version it started with, as upstream.
	if got := k("exec", "disk", "--", "cat", "/config/greeting", "/etc/app.conf"); got != "hellov1" {
		t.Errorf("config files: %q", got)
	}
	k("patch", "configmap", "app", "-p", `{"data":{"greeting":"bonjour","app.conf":"v2"}}`)
	eventually(t, 60*time.Second, "the ConfigMap's change in the pod", func() error {
		if got := k("exec", "disk", "--", "cat", "/config/greeting"); got != "bonjour" {
			return fmt.Errorf("/config/greeting %q", got)
		}
		return nil
	})
	if got := k("exec", "disk", "--", "cat", "/etc/app.conf"); got != "v1" {
		t.Errorf("subPath /etc/app.conf after the change: %q, want v1", got)
	}

	// Reclaim: Delete removes the volume and its data, Retain keeps both.
	k("exec", "disk", "--", "sh", "-c", "echo kept > /kept/mark")
	pvOf := func(claim string) (name, path string) {
		f := strings.Fields(k("get", "pvc", claim, "-o", "jsonpath={.spec.volumeName}"))
		if len(f) != 1 {
			t.Fatalf("claim %s has no volume", claim)
		}
		return f[0], c.mustKubectl("", "get", "pv", f[0], "-o", "jsonpath={.spec.local.path}")
	}
	smallPV, smallPath := pvOf("small")
	keptPV, keptPath := pvOf("kept")
	t.Cleanup(func() { _, _ = c.kubectl("", "delete", "pv", keptPV, "--wait=false") })
	// A claim in use is not removed from under its pod (pvc-protection):
	// deleted, it waits, Bound, until the pod is gone.
	k("delete", "pvc", "small", "kept", "--wait=false")
	time.Sleep(2 * time.Second)
	if got := k("get", "pvc", "small", "-o", "jsonpath={.status.phase} {.metadata.finalizers}"); !strings.HasPrefix(got, "Bound ") || !strings.Contains(got, "kubernetes.io/pvc-protection") {
		t.Errorf("a claim in use, deleted: %q, want it Bound and protected", got)
	}
	if got := k("exec", "disk", "--", "cat", "/kept/mark"); got != "kept\n" && got != "kept" {
		t.Errorf("the pod's data under a deleted claim: %q", got)
	}
	k("delete", "pod", "disk", "--wait=true")
	eventually(t, 60*time.Second, "both claims gone with their pod", func() error {
		if out := k("get", "pvc", "-o", "name"); strings.TrimSpace(out) != "" {
			return fmt.Errorf("claims %s", out)
		}
		return nil
	})
	eventually(t, 60*time.Second, "the Delete volume gone, the Retain one Released", func() error {
		if out, err := c.kubectl("", "get", "pv", smallPV); err == nil {
			return fmt.Errorf("PV %s still there: %s", smallPV, out)
		}
		if phase := c.mustKubectl("", "get", "pv", keptPV, "-o", "jsonpath={.status.phase}"); phase != "Released" {
			return fmt.Errorf("PV %s %s", keptPV, phase)
		}
		return nil
	})
	if _, err := os.Stat(smallPath); !os.IsNotExist(err) {
		t.Errorf("the deleted volume's directory %s: %v, want it gone", smallPath, err)
	}
	if images, _ := filepath.Glob(filepath.Join(c.dataDir, "storage", "images", filepath.Base(smallPath)+".img")); len(images) != 0 {
		t.Errorf("the deleted volume's image remains: %v", images)
	}
	if data, err := os.ReadFile(filepath.Join(keptPath, "mark")); err != nil || string(data) != "kept\n" {
		t.Errorf("the retained volume's data at %s: %q %v", keptPath, data, err)
	}

	// A statically provisioned hostPath volume binds to a claim that asks
	// for it and is mounted with what the administrator put there.
	static := t.TempDir()
	if err := os.WriteFile(filepath.Join(static, "seeded"), []byte("by hand\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	staticPV := fmt.Sprintf("stead-e2e-static-%d", os.Getpid())
	t.Cleanup(func() { _, _ = c.kubectl("", "delete", "pv", staticPV, "--wait=false") })
	c.mustKubectl(fmt.Sprintf(`apiVersion: v1
kind: PersistentVolume
metadata: {name: %s}
spec:
  capacity: {storage: 1Gi}
  accessModes: [ReadWriteOnce]
  persistentVolumeReclaimPolicy: Retain
  storageClassName: ""
  hostPath: {path: %s}
---
apiVersion: v1
kind: PersistentVolumeClaim
metadata: {name: static, namespace: %s}
spec:
  storageClassName: ""
  volumeName: %s
  accessModes: [ReadWriteOnce]
  resources: {requests: {storage: 1Gi}}
---
apiVersion: v1
kind: Pod
metadata: {name: static, namespace: %s}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: main
    image: busybox:1.28.4
    imagePullPolicy: Never
    command: [sleep, "3600"]
    volumeMounts: [{name: data, mountPath: /data}]
  volumes: [{name: data, persistentVolumeClaim: {claimName: static}}]
`, staticPV, static, ns, staticPV, ns), "apply", "-f", "-")
	eventually(t, 60*time.Second, "the static volume bound and mounted", func() error {
		if phase := k("get", "pod", "static", "-o", "jsonpath={.status.phase}"); phase != "Running" {
			return fmt.Errorf("pod %q, claim %q", phase, k("get", "pvc", "static", "-o", "jsonpath={.status.phase}"))
		}
		return nil
	})
	if got := k("exec", "static", "--", "cat", "/data/seeded"); got != "by hand\n" && got != "by hand" {
		t.Errorf("the static volume's file in the pod: %q", got)
	}
	k("delete", "pod", "static", "--wait=true")
}
